//! Headless Chromium through chromedriver, with the few steps the page tests take.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Where a program is on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A browser for one test, and the driver it runs under.
pub struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` (after saying why) when they
    /// are not installed; panics instead under `METERHUB_REQUIRE_SERVICES=1`.
    pub async fn start() -> Option<Browser> {
        let driver = which("chromedriver");
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(which);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let why =
                "chromedriver or chromium is not installed (Debian: chromium chromium-driver)";
            let test = test_support::services::current_test().unwrap_or_default();
            if test_support::services::services_required() {
                panic!("{test}: {why}, and METERHUB_REQUIRE_SERVICES=1 forbids skipping");
            }
            eprintln!("skipped: {test}: {why}");
            return None;
        };
        let profile = tempfile::tempdir().expect("a profile folder");
        let port = test_support::free_port().expect("a free port");
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1100,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // The driver takes a moment to listen, and a browser start on a loaded machine longer.
        let deadline = Instant::now() + Duration::from_secs(90);
        let url = format!("http://127.0.0.1:{port}");
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no browser session from chromedriver at {url}: {e}"),
            }
        };
        Some(Browser {
            client,
            driver: child,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.mark().await;
        self.client.goto(url).await.expect("navigates");
        self.loaded().await;
    }

    /// The current path and query.
    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("a URL");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.path_now().await),
        }
    }

    async fn path_now(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("a search")
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.expect("an attribute")
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clears");
        e.send_keys(text).await.expect("types");
    }

    /// Marks the page shown now, so that [`Browser::loaded`] can tell when another replaced it.
    async fn mark(&self) {
        self.client
            .execute("window.meterhubOld = true;", vec![])
            .await
            .expect("a script runs");
    }

    /// Waits until the marked page was replaced by another, fully loaded.
    async fn loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = self
                .client
                .execute(
                    "return window.meterhubOld === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "a new page within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses Enter in a field: its form is sent, as a keyboard user would.
    pub async fn submit(&self, css: &str) {
        let field = self.find(css).await;
        self.mark().await;
        field.send_keys("\u{E007}").await.expect("presses Enter");
        self.loaded().await;
    }

    /// Clicks what leads to another page.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.mark().await;
        e.click().await.expect("clicks");
        self.loaded().await;
    }

    pub async fn click_link(&self, text: &str) {
        let e = self
            .client
            .find(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("no link {text:?}: {e}"));
        self.mark().await;
        e.click().await.expect("clicks");
        self.loaded().await;
    }

    /// Waits until the element `css` holds `want` in its text, on this page or one it reloads
    /// itself into; the text last seen otherwise, after `limit`.
    pub async fn wait_for_text(&self, css: &str, want: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = String::new();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if t.contains(want) {
                    return t;
                }
                seen = t;
            }
            if Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets a checkbox to `on` by clicking it when it is not already so.
    pub async fn check(&self, css: &str, on: bool) {
        let e = self.find(css).await;
        if e.is_selected().await.expect("a checkbox") != on {
            e.click().await.expect("clicks");
        }
    }

    /// Chooses the option of a `select` with this value.
    pub async fn select(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.select_by_value(value).await.expect("an option");
    }

    /// A property of an element (what a field holds now, say).
    pub async fn prop(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.prop(name).await.expect("a property")
    }

    /// Sets a field's value as a date or time picker would (typing into one depends on the
    /// browser's locale).
    pub async fn set_value(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        let e = serde_json::to_value(&e).expect("an element reference");
        self.client
            .execute(
                "arguments[0].value = arguments[1];",
                vec![e, serde_json::Value::String(value.to_owned())],
            )
            .await
            .expect("a script runs");
    }

    /// Signs in on the sign-in form shown now.
    pub async fn sign_in(&self, key: &str) {
        self.fill("#key", key).await;
        self.submit("#key").await;
        assert_eq!(self.all("header button").await.len(), 1, "signed in");
    }

    /// The session cookie as a `Cookie` header pair.
    pub async fn session_cookie(&self) -> String {
        let c = self
            .client
            .get_named_cookie(meterhub::pages::session::COOKIE)
            .await
            .expect("the session cookie");
        assert_eq!(c.http_only(), Some(true), "HttpOnly");
        assert_eq!(
            format!("{:?}", c.same_site()),
            "Some(Strict)",
            "SameSite=Strict"
        );
        format!("{}={}", c.name(), c.value())
    }

    /// Saves a screenshot as `target/page-screenshots/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| test_support::workspace_root().join("target"))
            .join("page-screenshots");
        std::fs::create_dir_all(&dir).expect("a screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is saved");
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}
