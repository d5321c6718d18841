//! Cache coherence under real concurrency: ingest, installs and acknowledgements write while
//! readers read through the cache and around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

const ROUNDS: u32 = 25;
const METERS: u32 = 4;

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The paths read, each with a measure of how far the writes it reflects have got: writers
/// only move each measure up, so a response can never measure below one read before it.
type Probe = (String, fn(&Value) -> i64);

fn probes(from: &str) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::new();
    for n in 1..=METERS {
        out.push((
            format!(
                "/api/v1/meters/{}/readings?from={from}&limit=1000",
                dev_eui(n)
            ),
            |v| items(v).len() as i64,
        ));
    }
    out.push((format!("/api/v1/meters/{}", dev_eui(3)), |v| {
        // user-3, then v1, v2, … as the installer rewrites it.
        v["userId"]
            .as_str()
            .and_then(|u| u.strip_prefix('v'))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }));
    out.push(
        ("/api/v1/alarms?state=acknowledged&limit=1000".into(), |v| {
            items(v).len() as i64
        }),
    );
    out.push(("/api/v1/regions".into(), |v| {
        // Open alarms only fall (acknowledged); meters with readings only rise.
        -items(v)
            .iter()
            .map(|r| r["openAlarms"].as_i64().unwrap_or(0))
            .sum::<i64>()
    }));
    out.push(("/api/v1/regions/south/readings/latest".into(), |v| {
        items(v)
            .iter()
            .map(|r| r["reading"]["gasVolumeLitres"].as_i64().unwrap_or(0))
            .sum()
    }));
    out.push(("/api/v1/meters?region=south".into(), |v| {
        items(v)
            .iter()
            .filter(|m| m["lastSeenAt"].is_string())
            .count() as i64
    }));
    out
}

async fn writers_and_readers(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let api = Arc::new(api);
    for n in 1..=METERS {
        assert_eq!(
            api.post("/api/v1/meters", Some(meter_body(n))).await.status,
            201
        );
    }
    // Alarms to acknowledge while everything else runs.
    let now = Utc::now();
    // One open alarm per meter and kind: each round raises a different pair.
    use firmware_protocol::AlarmKind::*;
    let kinds = [
        MagneticTamper,
        Movement,
        CableCut,
        DoorOpen,
        Leak,
        ReverseFlow,
        ClockLost,
    ];
    let alarms: Vec<(u32, Vec<u8>)> = (0..ROUNDS)
        .map(|i| {
            let at = now - chrono::Duration::minutes(i64::from(i) + 1);
            let meter = i % METERS + 1;
            let kind = kinds[(i / METERS) as usize % kinds.len()];
            (
                meter,
                alarm_event(meter, &uuid::Uuid::new_v4().to_string(), kind, at),
            )
        })
        .collect();
    let mut p = Publisher::connect(&api.env.broker, &format!("pub-{}", uuid::Uuid::new_v4())).await;
    for (n, e) in alarms {
        p.publish(topic(&dev_eui(n), "up"), e).await;
    }
    p.flush().await;
    let store = api.env.store.clone();
    let stored = wait_for(Duration::from_secs(30), i64::from(ROUNDS), || {
        let s = store.clone();
        async move {
            s.alarms(None, i64::MAX, 1000)
                .await
                .map_or(0, |v| v.len() as i64)
        }
    })
    .await;
    assert_eq!(stored, i64::from(ROUNDS));
    let alarm_ids: Vec<i64> = store
        .alarms(None, i64::MAX, 1000)
        .await
        .expect("alarms")
        .into_iter()
        .map(|a| a.id)
        .collect();

    let from =
        (now - chrono::Duration::days(60)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    // Ingest: one reading per meter per round.
    {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            let mut p =
                Publisher::connect(&api.env.broker, &format!("pub-{}", uuid::Uuid::new_v4())).await;
            for k in 0..ROUNDS {
                for n in 1..=METERS {
                    let day = days_ago(i64::from(ROUNDS - k));
                    let e = reading_event(
                        n,
                        &uuid::Uuid::new_v4().to_string(),
                        day,
                        Utc::now(),
                        100 * (k + 1),
                    );
                    p.publish(topic(&dev_eui(n), "up"), e).await;
                }
                p.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Installs: meter 3's customer changes every round.
    {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            for k in 1..=ROUNDS {
                let mut b = meter_body(3);
                b["userId"] = json!(format!("v{k}"));
                let r = api.post("/api/v1/meters", Some(b)).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    // Acknowledgements.
    {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            for id in alarm_ids {
                let r = api
                    .post(&format!("/api/v1/alarms/{id}/acknowledge"), None)
                    .await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (api, done, from) = (api.clone(), done.clone(), from.clone());
        readers.push(tokio::spawn(async move {
            let mut checks = 0u32;
            while !done.load(Ordering::Relaxed) {
                for (path, measure) in probes(&from) {
                    let before = measure(&api.get_uncached(&path).await.json());
                    let cached = api.get(&path).await;
                    assert_eq!(cached.status, 200, "{path}: {}", cached.text());
                    let during = measure(&cached.json());
                    let after = measure(&api.get_uncached(&path).await.json());
                    assert!(
                        before <= during && during <= after,
                        "{path}: uncached {before}, then cached {during} ({:?}), then uncached {after}",
                        cached.header("x-cache")
                    );
                    checks += 1;
                }
            }
            checks
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    // Ingest is asynchronous: wait for its last commit before the final comparison.
    let total = i64::from(ROUNDS * METERS);
    let got = wait_for(Duration::from_secs(30), total, || {
        let s = store.clone();
        async move { s.count_readings().await.unwrap_or(-1) }
    })
    .await;
    assert_eq!(got, total);
    // The readings are days old: the scheduler revises the periods closed before they came
    // (a write that rightly drops cached answers). Rest means it is done with them too.
    let pending = wait_for(Duration::from_secs(30), 0, || {
        let s = store.clone();
        async move { s.late_readings(1).await.map_or(-1, |l| l.len() as i64) }
    })
    .await;
    assert_eq!(pending, 0, "late readings the scheduler has not looked at");
    // Its announcement follows the commit that forgets them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
    // At rest, every cached read equals an uncached read taken after it.
    let mut hits = 0;
    for (path, _) in probes(&from) {
        let cached = api.get(&path).await;
        let first = api.get(&path).await;
        let fresh = api.get_uncached(&path).await;
        assert_eq!(cached.json(), fresh.json(), "{path}");
        assert_eq!(first.json(), fresh.json(), "{path}");
        hits += usize::from(first.header("x-cache") == Some("hit"));
    }
    assert_eq!(
        hits,
        probes(&from).len(),
        "a repeated read is served from the cache"
    );
    let metrics = request(api.addr, "GET", "/metrics", None, None, &[])
        .await
        .text();
    assert!(metrics.contains("meterhub_api_cache_entries"), "{metrics}");
    if let Ok(api) = Arc::try_unwrap(api) {
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_reads_are_never_older_than_a_read_before_them_on_sqlite() {
    writers_and_readers(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_reads_are_never_older_than_a_read_before_them_on_postgres() {
    writers_and_readers(Dialect::Postgres).await;
}

/// Installs rewrite one meter's customer while readers compare an uncached read with the
/// cached read after it: the cached one is never the older. (The installer used to read the
/// meter back between its commit and its announcement, a window in which the cache still
/// served the previous customer to a reader that had already seen the new one.)
async fn installs_and_readers(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let api = std::sync::Arc::new(api);
    assert_eq!(
        api.post("/api/v1/meters", Some(meter_body(3))).await.status,
        201
    );
    let path = format!("/api/v1/meters/{}", dev_eui(3));
    let version = |v: &Value| -> i64 {
        v["userId"]
            .as_str()
            .and_then(|u| u.strip_prefix('v'))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (api, done, path) = (api.clone(), done.clone(), path.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let before = version(&api.get_uncached(&path).await.json());
                let cached = api.get(&path).await;
                let during = version(&cached.json());
                assert!(
                    before <= during,
                    "{path}: uncached v{before}, then cached v{during} ({:?})",
                    cached.header("x-cache")
                );
            }
        }));
    }
    for k in 1..=100 {
        let mut b = meter_body(3);
        b["userId"] = json!(format!("v{k}"));
        let r = api.post("/api/v1/meters", Some(b)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    assert_eq!(version(&api.get(&path).await.json()), 100);
    if let Ok(api) = std::sync::Arc::try_unwrap(api) {
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_is_never_cached_older_than_a_read_before_it_on_sqlite() {
    installs_and_readers(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_is_never_cached_older_than_a_read_before_it_on_postgres() {
    installs_and_readers(Dialect::Postgres).await;
}

/// `meterhub meters import` runs as a process of its own while `serve` runs: its writes
/// reach the server's cache all the same (PostgreSQL: a notification; SQLite: the
/// database's data version).
async fn an_import_reaches_a_running_server(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    for n in 1..=2 {
        assert_eq!(
            api.post("/api/v1/meters", Some(meter_body(n))).await.status,
            201
        );
    }
    let path = format!("/api/v1/meters/{}", dev_eui(1));
    let mut hit = false;
    for _ in 0..100 {
        api.get(&path).await;
        if api.get(&path).await.header("x-cache") == Some("hit") {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hit, "{path} is cached");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("meters.json");
    let mut moved = meter_body(1);
    moved["userId"] = json!("imported-customer");
    std::fs::write(&file, serde_json::to_vec(&json!([moved])).expect("json")).expect("write");
    let settings = api
        .env
        .settings(&format!("import-{}", uuid::Uuid::new_v4()));
    let report = meterhub::admin::import_meters(&settings, &file, |_| {})
        .await
        .expect("import");
    assert_eq!(report.updated, 1, "{report}");
    assert!(converges(api.addr, &api.admin, &path).await, "{path}");
    assert_eq!(api.get(&path).await.json()["userId"], "imported-customer");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reaches_a_running_server_on_sqlite() {
    an_import_reaches_a_running_server(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reaches_a_running_server_on_postgres() {
    an_import_reaches_a_running_server(Dialect::Postgres).await;
}

/// Polls `path` on `addr` through the cache until it equals the uncached answer.
async fn converges(addr: std::net::SocketAddr, key: &str, path: &str) -> bool {
    for _ in 0..100 {
        let cached = get_at(addr, key, path, false).await.json();
        let fresh = get_at(addr, key, path, true).await.json();
        if cached == fresh {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_instance_invalidates_the_cache_of_another() {
    let Some(api) = TestApi::start(Dialect::Postgres).await else {
        return;
    };
    let other = api.second_instance().await;
    let b = other.app.as_ref().expect("running").http_addr();
    let key = api.admin.clone();
    for n in 1..=METERS {
        assert_eq!(
            api.post("/api/v1/meters", Some(meter_body(n))).await.status,
            201
        );
    }
    let m3 = format!("/api/v1/meters/{}", dev_eui(3));
    let readings = format!("/api/v1/meters/{}/readings", dev_eui(1));
    let paths = [m3.clone(), readings.clone(), "/api/v1/regions".to_owned()];
    // Instance B caches each answer (once the notifications of the installs have arrived)…
    for p in &paths {
        let mut hit = false;
        for _ in 0..100 {
            get_at(b, &key, p, false).await;
            if get_at(b, &key, p, false).await.header("x-cache") == Some("hit") {
                hit = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(hit, "{p} is cached on the second instance");
    }
    // …instance A installs, and B's ingest… both instances ingest the same stream; only one
    // applies each event. Then B must drop what changed.
    let mut body = meter_body(3);
    body["userId"] = json!("moved-customer");
    assert_eq!(api.post("/api/v1/meters", Some(body)).await.status, 200);
    ingest(
        &api,
        vec![(1, reading_event(1, "x-1", days_ago(1), Utc::now(), 7))],
        1,
    )
    .await;
    for p in &paths {
        assert!(converges(b, &key, p).await, "{p} on the second instance");
    }
    assert_eq!(
        get_at(b, &key, &m3, false).await.json()["userId"],
        "moved-customer"
    );
    assert_eq!(
        items(&get_at(b, &key, &readings, false).await.json()).len(),
        1
    );
    // Concurrent writes on A while B reads: B converges once they stop.
    let writer = {
        let (addr, key) = (api.addr, key.clone());
        tokio::spawn(async move {
            for k in 1..=ROUNDS {
                let mut b = meter_body(3);
                b["userId"] = json!(format!("v{k}"));
                let body = serde_json::to_vec(&b).expect("json");
                request(addr, "POST", "/api/v1/meters", Some(&key), Some(&body), &[]).await;
            }
        })
    };
    while !writer.is_finished() {
        get_at(b, &key, &m3, false).await;
    }
    writer.await.expect("writer");
    assert!(converges(b, &key, &m3).await);
    assert_eq!(
        get_at(b, &key, &m3, false).await.json()["userId"],
        format!("v{ROUNDS}")
    );
    other.stop().await;
    api.stop().await;
}
