//! The operator's pages at fleet size: home, a region's first page, a search in a region by
//! serial, a meter (its 30 days of charts, alarms and commands) and the alarms, each requested
//! with a session cookie, around the response cache (`Cache-Control: no-cache`: every read goes
//! to the database) and from it (after a pass that fills it), one measured run per page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use firmware_protocol::Serial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client;
use super::fleet;
use super::load::{MakeRequest, Rng};

/// The pages measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/`: a card per region.
    Home,
    /// `/regions/{region}`: its first page of meters.
    Region,
    /// `/regions/{region}?q={serial}`: one meter found by serial.
    Search,
    /// `/meters/{devEui}`: details, 30 days of charts, alarms, commands.
    Meter,
    /// `/alarms`: the newest alarms of the whole fleet, with their meters.
    Alarms,
}

impl Page {
    /// Every page, in the order measured.
    pub const ALL: [Page; 5] = [
        Page::Home,
        Page::Region,
        Page::Search,
        Page::Meter,
        Page::Alarms,
    ];

    /// The name in the CSV's phase column.
    pub fn name(self) -> &'static str {
        match self {
            Page::Home => "home",
            Page::Region => "region",
            Page::Search => "search",
            Page::Meter => "meter",
            Page::Alarms => "alarms",
        }
    }

    /// The path of this page for fleet meter `n`.
    pub fn path(self, n: u32, regions: u32) -> String {
        match self {
            Page::Home => "/".to_owned(),
            Page::Region => format!("/regions/{}", fleet::region(n, regions)),
            Page::Search => format!(
                "/regions/{}?q={}",
                fleet::region(n, regions),
                Serial::new(13, 26, 1, n).map_or_else(String::new, |s| s.to_string())
            ),
            Page::Meter => format!("/meters/{}", fleet::dev_eui(n)),
            Page::Alarms => "/alarms".to_owned(),
        }
    }

    /// How many distinct paths the page has among `meters` meters in `regions` regions.
    pub fn paths(self, meters: u32, regions: u32) -> u32 {
        match self {
            Page::Home | Page::Alarms => 1,
            Page::Region => regions.min(meters),
            Page::Search | Page::Meter => meters,
        }
    }
}

/// Signs in with `key` as a browser would; the session cookie as a `Cookie` header value.
pub async fn sign_in(addr: SocketAddr, key: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let form = format!("key={key}");
    let head = format!(
        "POST /signin HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(head.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let cookie = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, v)| v.trim().split(';').next())
        .map(str::to_owned);
    match cookie {
        Some(c) if text.starts_with("HTTP/1.1 303") => Ok(c),
        _ => bail!("signing in to the pages failed: {text}"),
    }
}

/// The request for `page` of meter `n`, with the session and, `around` the cache, no-cache.
fn request(page: Page, n: u32, regions: u32, cookie: &str, around: bool) -> Vec<u8> {
    let mut headers = vec![("Cookie", cookie)];
    if around {
        headers.push(("Cache-Control", "no-cache"));
    }
    // The bearer key `client::request` adds is not looked at by the pages.
    client::request("GET", &page.path(n, regions), "-", &headers, None)
}

/// Requests of `page` around the cache, for random meters of the fleet.
pub fn uncached(page: Page, cookie: &str, meters: u32, regions: u32) -> Arc<MakeRequest> {
    let cookie = cookie.to_owned();
    Arc::new(move |_: u64, rng: &mut Rng, out: &mut Vec<u8>| {
        let n = rng.below(u64::from(meters)) as u32 + 1;
        out.extend(request(page, n, regions, &cookie, true));
        true
    })
}

/// Requests of `page` for meters 1 to `hot` (at most its distinct paths): first each once in
/// turn (the pass that fills the cache, which ends when they are done), then at random.
pub fn cached(
    page: Page,
    cookie: &str,
    hot: u32,
    meters: u32,
    regions: u32,
) -> (Arc<MakeRequest>, Arc<MakeRequest>) {
    let hot = hot.min(page.paths(meters, regions)).max(1);
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=hot)
            .map(|n| request(page, n, regions, cookie, false))
            .collect(),
    );
    let all = requests.clone();
    let fill =
        Arc::new(
            move |seq: u64, _: &mut Rng, out: &mut Vec<u8>| match all.get(seq as usize) {
                Some(r) => {
                    out.extend_from_slice(r);
                    true
                }
                None => false,
            },
        );
    let measured = Arc::new(move |_: u64, rng: &mut Rng, out: &mut Vec<u8>| {
        out.extend_from_slice(&requests[rng.below(u64::from(hot)) as usize]);
        true
    });
    (fill, measured)
}

/// The longest the pass that fills the cache may take.
pub const FILL_LIMIT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_has_its_path() {
        assert_eq!(Page::Home.path(7, 10), "/");
        assert_eq!(Page::Region.path(7, 10), "/regions/apibench-07");
        assert_eq!(
            Page::Meter.path(7, 10),
            format!("/meters/{}", fleet::dev_eui(7))
        );
        let search = Page::Search.path(7, 10);
        assert!(search.starts_with("/regions/apibench-07?q=13"), "{search}");
        assert_eq!(search.len(), "/regions/apibench-07?q=".len() + 14);
        assert_eq!(Page::Region.paths(1_000, 10), 10);
        assert_eq!(Page::Alarms.paths(1_000, 10), 1);
    }
}
