//! The operator's pages in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against a seeded server on SQLite and, when configured, PostgreSQL. Sign in,
//! home → region → meter with its charts, acknowledge an alarm; a viewer sees no action and a
//! forged form is refused. A screenshot of each page is saved under `target/page-screenshots/`.
//!
//! Skipped with a message when `chromedriver` is not installed (Debian: `chromium` and
//! `chromium-driver`), failed instead under `METERHUB_REQUIRE_SERVICES=1`.

mod actions;
#[path = "../bridge/support.rs"]
#[allow(dead_code)]
mod bridge;
mod browser;
mod http;
mod lists;
mod manage;
mod session;

use std::net::SocketAddr;

use bridge::{APP, Env, Server};
use chrono::{TimeDelta, Utc};
use meterhub::api::auth::{Role, generate};
use meterhub::storage::alarms::NewAlarm;
use meterhub::storage::meters::NewMeter;
use meterhub::storage::readings::StoredReading;
use test_support::Dialect;

use browser::Browser;

/// Days of readings meter 1 has, one a day.
const DAYS: i64 = 20;

struct Seeded {
    env: Env,
    server: Server,
    addr: SocketAddr,
    operator: String,
    viewer: String,
    admin: String,
    /// The keys' ids.
    operator_id: uuid::Uuid,
    viewer_id: uuid::Uuid,
    /// Meter 1's DevEUI.
    dev_eui: String,
    /// Meter 1's serial.
    serial: String,
}

fn meter(n: u32, region: &str) -> NewMeter {
    NewMeter {
        dev_eui: format!("a1b2c3d4e5{n:06x}"),
        serial: firmware_protocol::Serial::new(12, 26, 1, n)
            .expect("valid")
            .to_string(),
        body_number: i64::from(n),
        user_id: format!("user-{n}"),
        application_id: APP.to_owned(),
        region_id: region.to_owned(),
        usage_type: "residential".to_owned(),
        mode: "credit".to_owned(),
        production_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
        reporting_interval_minutes: 1440,
    }
}

/// Meters 1–3 in `north`, 4–5 in `south`; meter 1 has a reading a day for [`DAYS`] days and
/// two open alarms (leak, magneticTamper); meter 4 one open leak alarm.
async fn seed(dialect: Dialect) -> Option<Seeded> {
    let env = Env::new(dialect).await?;
    let now = Utc::now();
    let meters: Vec<NewMeter> = (1..=5)
        .map(|n| meter(n, if n <= 3 { "north" } else { "south" }))
        .collect();
    env.store
        .register_meters(&meters, now)
        .await
        .expect("register");
    let one = env
        .store
        .meter_by_dev_eui(&meters[0].dev_eui)
        .await
        .expect("read")
        .expect("meter 1");
    let four = env
        .store
        .meter_by_dev_eui(&meters[3].dev_eui)
        .await
        .expect("read")
        .expect("meter 4");
    let readings: Vec<StoredReading> = (0..DAYS)
        .map(|d| {
            let at = now - TimeDelta::days(DAYS - d) + TimeDelta::hours(1);
            StoredReading {
                meter_id: one.id,
                reading_time: at,
                received_at: at,
                gas_volume_litres: Some(100_000 + 1_500 * d),
                energy_wh: None,
                voltage_decivolts: None,
                current_milliamps: None,
                gas_temperature_centi_celsius: Some(1_200 + 10 * d as i32),
                gas_pressure_pa: Some(2_100 + d),
                valve: 1,
                door: 0,
                battery_millivolts: 3_600 - d as i32,
                battery_percent: 90 - d as i16 / 4,
                flags: 0,
                f_cnt: Some(d),
            }
        })
        .collect();
    env.store
        .insert_readings(&readings)
        .await
        .expect("readings");
    let alarm = |meter_id: i64, kind: &str| NewAlarm {
        meter_id,
        kind: kind.to_owned(),
        source: "meter".to_owned(),
        raised_at: now - TimeDelta::hours(2),
        value: Some(1),
        received_at: now - TimeDelta::hours(2),
        detail: None,
    };
    env.store
        .insert_alarms(&[
            alarm(one.id, "leak"),
            alarm(one.id, "magneticTamper"),
            alarm(four.id, "leak"),
        ])
        .await
        .expect("alarms");
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for (name, role) in [
        ("Olga Operator", Role::Operator),
        ("Vic Viewer", Role::Viewer),
        ("Ada Admin", Role::Admin),
    ] {
        let k = generate(name, role, now);
        env.store.insert_api_key(&k.row).await.expect("key");
        keys.push(k.secret);
        ids.push(k.row.id);
    }
    let server = Server::start(env.settings(&format!("pages-{}", uuid::Uuid::new_v4()))).await;
    let addr = server.app.as_ref().expect("running").http_addr();
    Some(Seeded {
        env,
        server,
        addr,
        operator: keys[0].clone(),
        viewer: keys[1].clone(),
        admin: keys[2].clone(),
        operator_id: ids[0],
        viewer_id: ids[1],
        dev_eui: one.dev_eui,
        serial: one.serial,
    })
}

async fn alarm_state(env: &Env, id: i64) -> String {
    env.store
        .alarm(id)
        .await
        .expect("read")
        .expect("alarm")
        .state
}

/// A browser and a seeded server for a page test, with the store's name for screenshots and
/// the server's base URL; `None` (the test skips, saying why) without a browser or a database.
async fn browse(dialect: Dialect) -> Option<(Browser, Seeded, &'static str, String)> {
    let browser = Browser::start().await?;
    let Some(s) = seed(dialect).await else {
        browser.close().await;
        return None;
    };
    let tag = match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
    };
    let base = format!("http://{}", s.addr);
    Some((browser, s, tag, base))
}

async fn walk(dialect: Dialect) {
    let Some((browser, s, tag, base)) = browse(dialect).await else {
        return;
    };
    let b = &browser;

    // Not signed in: every page leads to the sign-in form.
    b.goto(&format!("{base}/meters/{}", s.dev_eui)).await;
    assert!(b.path().await.starts_with("/signin"), "{}", b.path().await);
    b.shot(&format!("{tag}-signin")).await;
    b.fill("#key", "mh_not_a_key").await;
    b.submit("#key").await;
    assert!(b.text("[role=alert]").await.contains("not a live API key"));

    // Signed in as an operator: home with a card per region.
    b.sign_in(&s.operator).await;
    assert_eq!(b.path().await, "/");
    let cards = b.all(".card").await;
    assert_eq!(cards.len(), 2, "north and south");
    let home = b.text("main").await;
    assert!(home.contains("north") && home.contains("south"), "{home}");
    assert!(
        home.contains("leak: 1") && home.contains("magneticTamper: 1"),
        "{home}"
    );
    assert!(b.text("header").await.contains("Olga Operator (operator)"));
    b.shot(&format!("{tag}-home")).await;

    // Region: three meters; a search by serial finds one.
    b.click_link("north").await;
    assert_eq!(b.path().await, "/regions/north");
    assert_eq!(b.all("#meters tbody tr").await.len(), 3);
    b.fill("#q", &s.serial).await;
    b.submit("#q").await;
    let rows = b.all("#meters tbody tr").await;
    assert_eq!(rows.len(), 1, "one meter has this serial");
    b.shot(&format!("{tag}-region")).await;
    b.fill("#q", "user-2").await;
    b.submit("#q").await;
    assert!(b.text("#meters").await.contains("user-2"));
    b.fill("#q", &s.serial).await;
    b.submit("#q").await;

    // Meter: details, charts with their points, alarms with actions.
    b.click_link(&s.dev_eui).await;
    assert_eq!(b.path().await, format!("/meters/{}", s.dev_eui));
    assert!(b.text("#details").await.contains(&s.serial));
    let battery = b
        .attr("figure[data-quantity=Battery] svg", "data-points")
        .await;
    assert_eq!(
        battery.as_deref(),
        Some(DAYS.to_string().as_str()),
        "a point per reading"
    );
    assert_eq!(
        b.all("figure[data-quantity=Battery] svg circle")
            .await
            .len(),
        DAYS as usize
    );
    let gas = b
        .attr("figure[data-quantity='Daily gas'] svg", "data-points")
        .await
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        gas >= (DAYS as usize) - 3,
        "daily consumption for most days: {gas}"
    );
    for axis in [
        "Battery (%)",
        "Gas pressure (kPa)",
        "Gas temperature (°C)",
        "Daily gas (m³)",
    ] {
        assert!(b.text("main").await.contains(axis), "{axis}");
    }
    assert_eq!(b.all("#commands").await.len(), 0, "no command yet");
    b.shot(&format!("{tag}-meter")).await;

    // Acknowledge meter 1's leak from its page, after the confirmation.
    let leak = s
        .env
        .store
        .alarms_filtered(
            &meterhub::storage::listings::AlarmFilter {
                kind: Some("leak".into()),
                meter_id: Some(
                    s.env
                        .store
                        .meter_by_dev_eui(&s.dev_eui)
                        .await
                        .expect("read")
                        .expect("meter")
                        .id,
                ),
                ..Default::default()
            },
            i64::MAX,
            10,
        )
        .await
        .expect("alarms")[0]
        .id;
    b.click(&format!("tr[data-alarm='{leak}'] a[href*='/acknowledge']"))
        .await;
    assert!(
        b.text("h1")
            .await
            .contains(&format!("Acknowledge alarm {leak}"))
    );
    b.shot(&format!("{tag}-confirm")).await;
    b.click("#confirm").await;
    let back = b.path().await;
    assert!(
        back.starts_with(&format!("/meters/{}?days=", s.dev_eui)),
        "back where it started: {back}"
    );
    assert_eq!(alarm_state(&s.env, leak).await, "acknowledged");
    let row = b.text(&format!("tr[data-alarm='{leak}']")).await;
    assert!(row.contains("acknowledged by Olga Operator"), "{row}");

    // Alarms overall, filtered to the open ones.
    b.goto(&format!("{base}/alarms?state=open")).await;
    assert_eq!(b.all("table.alarms tbody tr").await.len(), 2);
    b.shot(&format!("{tag}-alarms")).await;

    // A form without this session's token is refused, and nothing changes.
    let cookie = b.session_cookie().await;
    let (status, _) = http::post(
        s.addr,
        &format!("/alarms/{leak}/clear"),
        &cookie,
        "csrf=forged",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = http::post(s.addr, &format!("/alarms/{leak}/clear"), &cookie, "back=/").await;
    assert_eq!(status, 403);
    assert_eq!(alarm_state(&s.env, leak).await, "acknowledged");

    // A viewer sees no action and may not act even with its own token.
    b.click("header button").await;
    assert!(b.path().await.starts_with("/signin"));
    b.sign_in(&s.viewer).await;
    b.goto(&format!("{base}/alarms")).await;
    assert_eq!(b.all("table.alarms tbody tr").await.len(), 3);
    assert_eq!(
        b.all("table.alarms a.button").await.len(),
        0,
        "no action for a viewer"
    );
    b.shot(&format!("{tag}-alarms-viewer")).await;
    b.goto(&format!("{base}/meters/{}", s.dev_eui)).await;
    assert_eq!(b.all("a.button, td.actions button").await.len(), 0);
    b.goto(&format!("{base}/alarms/{leak}/clear")).await;
    assert!(b.text("main").await.contains("needs the operator role"));
    let viewer_cookie = b.session_cookie().await;
    let (status, _) = http::post(
        s.addr,
        &format!("/alarms/{leak}/clear"),
        &viewer_cookie,
        "csrf=forged",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(alarm_state(&s.env, leak).await, "acknowledged");

    browser.close().await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_walks_the_pages_in_a_browser_sqlite() {
    walk(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_walks_the_pages_in_a_browser_postgres() {
    walk(Dialect::Postgres).await;
}
