//! Lists over plain HTTP: read through the response cache and never stale (a page read twice
//! is served from the cache the second time, and a write through the API shows on the next
//! read), and paged.

use std::time::Duration;

use serde_json::json;
use test_support::Dialect;

use super::http::{exchange, header, request, sign_in};
use super::seed;

/// Reads `path` with the session `cookie` until the cache serves it; returns that response.
async fn until_cached(addr: std::net::SocketAddr, cookie: &str, path: &str) -> String {
    for _ in 0..100 {
        let (status, response) = request(addr, "GET", path, Some(cookie), "").await;
        assert_eq!(status, 200, "{response}");
        if header(&response, "x-cache") == Some("hit") {
            return response;
        }
        // The scheduler may close the new meters' billing periods meanwhile, a write.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} is never served from the cache");
}

async fn region_list_is_cached_and_never_stale(dialect: Dialect) {
    let Some(s) = seed(dialect).await else {
        return;
    };
    let (cookie, _) = sign_in(s.addr, &s.admin).await;
    let all = "/regions/north";
    let searched = "/regions/north?q=user-77&by=userId";
    let first = until_cached(s.addr, &cookie, all).await;
    assert!(!first.contains("a1b2c3d4e5ffff77"), "not installed yet");
    let none = until_cached(s.addr, &cookie, searched).await;
    assert!(none.contains("No meter matches."), "{none}");
    // A meter written behind the server's back (nothing announced): the cached list does not
    // show it, a read around the cache does; so the list is the cache's.
    let hidden = super::meter(0xff66, "north");
    s.env
        .store
        .register_meters(std::slice::from_ref(&hidden), chrono::Utc::now())
        .await
        .expect("register");
    let (status, response) = request(s.addr, "GET", all, Some(&cookie), "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&response, "x-cache"), Some("hit"));
    assert!(!response.contains(&hidden.dev_eui), "{response}");
    let (_, around) = exchange(
        s.addr,
        "GET",
        all,
        &[("Cookie", &cookie), ("Cache-Control", "no-cache")],
        "",
    )
    .await;
    assert_eq!(header(&around, "x-cache"), Some("bypass"));
    assert!(around.contains(&hidden.dev_eui), "{around}");

    // An install through the API announces the region: both lists show the new meter at once.
    let serial = firmware_protocol::Serial::new(12, 26, 1, 0xff77).expect("valid");
    let body = json!({
        "serial": serial.to_string(),
        "devEui": "a1b2c3d4e5ffff77",
        "applicationId": super::bridge::APP,
        "bodyNumber": 77,
        "userId": "user-77",
        "region": "north",
        "usageType": "residential",
        "mode": "credit",
        "productionDate": "2026-01-15",
    })
    .to_string();
    let auth = format!("Bearer {}", s.admin);
    let (status, response) = exchange(
        s.addr,
        "POST",
        "/api/v1/meters",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 201, "{response}");
    for path in [all, searched] {
        let (status, response) = request(s.addr, "GET", path, Some(&cookie), "").await;
        assert_eq!(status, 200, "{response}");
        assert_ne!(header(&response, "x-cache"), Some("hit"), "{path}");
        assert!(response.contains("a1b2c3d4e5ffff77"), "{path}: {response}");
    }
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_list_is_cached_and_shows_an_install_at_once_sqlite() {
    region_list_is_cached_and_never_stale(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_list_is_cached_and_shows_an_install_at_once_postgres() {
    region_list_is_cached_and_never_stale(Dialect::Postgres).await;
}

/// A meter's page shows its newest commands and links to all of them, a page at a time.
async fn every_command_a_page_at_a_time(dialect: Dialect) {
    let Some(s) = seed(dialect).await else {
        return;
    };
    let m = s
        .env
        .store
        .meter_by_dev_eui(&s.dev_eui)
        .await
        .expect("read")
        .expect("meter 1");
    let start = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let rows: Vec<_> = (0..55)
        .map(|i| {
            let at = start + chrono::TimeDelta::minutes(i);
            meterhub::storage::commands::CommandRow {
                id: uuid::Uuid::new_v4(),
                meter_id: m.id,
                kind: "readNow".to_owned(),
                fport: 10,
                payload: vec![0x10],
                confirmed: false,
                requested_by: format!("caller-{i:02}"),
                state: "failed".to_owned(),
                attempts: 1,
                error: Some("expired".to_owned()),
                created_at: at,
                updated_at: at,
                expires_at: at,
                sent_at: None,
                completed_at: None,
                deadline_at: None,
                result: None,
                schedule_id: None,
            }
        })
        .collect();
    s.env.store.insert_commands(&rows).await.expect("commands");
    let (cookie, _) = sign_in(s.addr, &s.viewer).await;
    let (status, meter_page) = request(
        s.addr,
        "GET",
        &format!("/meters/{}", s.dev_eui),
        Some(&cookie),
        "",
    )
    .await;
    assert_eq!(status, 200, "{meter_page}");
    assert!(
        meter_page.contains("caller-54"),
        "the newest is on the meter's page"
    );
    assert!(!meter_page.contains("caller-34"), "only the newest 20 are");
    let list = format!("/meters/{}/commands", s.dev_eui);
    assert!(meter_page.contains(&format!("href=\"{list}\"")));

    let (status, first) = request(s.addr, "GET", &list, Some(&cookie), "").await;
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("caller-54") && first.contains("caller-05"));
    assert!(!first.contains("caller-04"), "50 on a page");
    let next = first
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the older commands")
        .replace("&amp;", "&");
    let (status, second) = request(s.addr, "GET", &next, Some(&cookie), "").await;
    assert_eq!(status, 200, "{second}");
    for i in 0..5 {
        assert!(second.contains(&format!("caller-{i:02}")), "{second}");
    }
    assert!(!second.contains("caller-05"));
    assert!(!second.contains("rel=\"next\""), "the last page");

    let (status, bad) = request(
        s.addr,
        "GET",
        &format!("{list}?cursor=nonsense"),
        Some(&cookie),
        "",
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("cursor"), "{bad}");
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_a_meter_a_page_at_a_time_sqlite() {
    every_command_a_page_at_a_time(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_a_meter_a_page_at_a_time_postgres() {
    every_command_a_page_at_a_time(Dialect::Postgres).await;
}
