//! The command routes are served from the cache, so every change of a command's state must
//! reach them: each step below first makes sure the routes are cached, then changes the
//! state the way production does, and checks the cached answer shows the change and equals
//! an answer read around the cache.

use std::time::{Duration, Instant};

use chrono::Utc;
use firmware_protocol::{ClockSync, ClockSyncUp, GpsTime, Uplink};
use meterhub::storage::commands::CommandRow;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::bridge::{CommandListener, event};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// Reads `path` through the cache until an answer stays stored there for a while (so that
/// the announcement of an earlier step cannot be what makes it stale later); returns it.
async fn cache_it(api: &TestApi, path: &str) -> Value {
    for _ in 0..50 {
        let first = api.get(path).await;
        assert_eq!(first.status, 200, "{path}: {}", first.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = api.get(path).await;
        if again.header("x-cache") == Some("hit") {
            return again.json();
        }
    }
    panic!("{path} is never served from the cache");
}

/// Waits until the database shows what `done` looks for, then reads through the cache: the
/// cached answer must show it too, and equal an uncached answer read after it.
async fn shows(api: &TestApi, path: &str, what: &str, done: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let fresh = api.get_uncached(path).await.json();
        if done(&fresh) {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: {path} never shows it: {fresh}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cached = api.get(path).await;
    let after = api.get_uncached(path).await.json();
    assert!(
        done(&cached.json()),
        "{what}: {path} served from the cache ({:?}) without it: {}",
        cached.header("x-cache"),
        cached.text()
    );
    assert_eq!(cached.json(), after, "{what}: {path}");
}

fn item<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["id"] == id))
}

fn state_is<'a>(id: &'a str, want: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |v: &Value| {
        // The list holds the command among others; the detail is the command.
        item(v, id).unwrap_or(v)["state"] == want
    }
}

async fn send(api: &TestApi, path: &str, body: Value) -> String {
    let bytes = serde_json::to_vec(&body).expect("json");
    let r = request(
        api.addr,
        "POST",
        path,
        Some(&api.operator),
        Some(&bytes),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().unwrap_or_default().to_owned()
}

fn report(dev_eui: &str, kind: &str, body: Value) -> (String, Vec<u8>) {
    (topic(dev_eui, kind), event(dev_eui, body))
}

async fn every_state_change_reaches_the_cache(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    for n in [1, 3] {
        assert_eq!(
            api.post("/api/v1/meters", Some(meter_body(n))).await.status,
            201
        );
    }
    let m = dev_eui(1);
    let list = format!("/api/v1/meters/{m}/commands");
    let mut chirpstack = CommandListener::connect(&api.env.broker, &format!("cs-down-{m}")).await;
    let mut publisher = Publisher::connect(&api.env.broker, &format!("cs-up-{m}")).await;
    let mut heard = 0;
    let mut last_second = 0;
    // A reading uplink of meter 1, waited for until stored: its own batch's announcement
    // must not be what makes the next step's cached entry stale.
    let mut uplink = async |publisher: &mut Publisher| {
        heard += 1;
        // Readings are stored once per meter and second, and must carry the meter's time
        // (a drifting clock would make the server queue a resynchronisation).
        while Utc::now().timestamp() <= last_second {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last_second = Utc::now().timestamp();
        let e = reading_event(
            1,
            &uuid::Uuid::new_v4().to_string(),
            Utc::now(),
            Utc::now(),
            100 + heard,
        );
        publisher.publish(topic(&m, "up"), e).await;
        publisher.flush().await;
        let store = api.env.store.clone();
        let stored = wait_for(WAIT, i64::from(heard), || {
            let s = store.clone();
            async move { s.count_readings().await.unwrap_or(-1) }
        })
        .await;
        assert_eq!(stored, i64::from(heard), "readings stored");
    };

    // Queued through the API.
    cache_it(&api, &list).await;
    let read = send(&api, &list, json!({"kind": "readNow"})).await;
    shows(&api, &list, "enqueue", state_is(&read, "pending")).await;
    let detail = format!("/api/v1/commands/{read}");
    cache_it(&api, &detail).await;

    // Released after the meter's uplink.
    cache_it(&api, &list).await;
    uplink(&mut publisher).await;
    chirpstack.next(WAIT).await.expect("released to ChirpStack");
    shows(&api, &list, "release", state_is(&read, "queued")).await;
    shows(&api, &detail, "release", state_is(&read, "queued")).await;

    // Transmitted (txack).
    cache_it(&api, &list).await;
    cache_it(&api, &detail).await;
    let (t, b) = report(
        &m,
        "txack",
        json!({"queueItemId": read, "fCntDown": 1, "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    shows(&api, &list, "txack", state_is(&read, "sent")).await;
    shows(&api, &detail, "txack", state_is(&read, "sent")).await;

    // Completed by the reading it asked for.
    cache_it(&api, &list).await;
    cache_it(&api, &detail).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    uplink(&mut publisher).await;
    shows(&api, &list, "completion", state_is(&read, "completed")).await;
    shows(&api, &detail, "completion", |v| {
        v["state"] == "completed" && v["reading"].is_object()
    })
    .await;

    // A confirmed command: acknowledged (ack), then one the meter missed (nack).
    for (kind, acknowledged, want) in [
        ("valveClose", true, "acknowledged"),
        ("valveOpen", false, "nacked"),
    ] {
        cache_it(&api, &list).await;
        let id = send(&api, &list, json!({ "kind": kind })).await;
        shows(&api, &list, "enqueue", state_is(&id, "pending")).await;
        cache_it(&api, &list).await;
        uplink(&mut publisher).await;
        chirpstack.next(WAIT).await.expect("released to ChirpStack");
        shows(&api, &list, "release", state_is(&id, "queued")).await;
        cache_it(&api, &list).await;
        let (t, b) = report(
            &m,
            "txack",
            json!({"queueItemId": id, "fCntDown": 2, "time": Utc::now()}),
        );
        publisher.publish(t, b).await;
        shows(&api, &list, "txack", state_is(&id, "sent")).await;
        cache_it(&api, &list).await;
        let (t, b) = report(
            &m,
            "ack",
            json!({"queueItemId": id, "acknowledged": acknowledged, "fCntDown": 2, "time": Utc::now()}),
        );
        publisher.publish(t, b).await;
        shows(&api, &list, "ack", state_is(&id, want)).await;
    }

    // Dropped by ChirpStack (log).
    let id = send(&api, &list, json!({"kind": "sendInfo"})).await;
    uplink(&mut publisher).await;
    chirpstack.next(WAIT).await.expect("released to ChirpStack");
    shows(&api, &list, "release", state_is(&id, "queued")).await;
    cache_it(&api, &list).await;
    let (t, b) = report(
        &m,
        "log",
        json!({"level": "ERROR", "code": "EXPIRED", "description": "expired",
            "context": {"queue_item_id": id}, "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    shows(&api, &list, "log", state_is(&id, "expired")).await;

    // A clock answer, recorded in the audit trail by the bridge.
    cache_it(&api, &list).await;
    let gps = GpsTime::from_unix(Utc::now().timestamp()).expect("GPS").0;
    let req = Uplink::ClockSync(ClockSync::single(ClockSyncUp::AppTimeReq {
        device_time: gps - 100,
        token_req: 1,
        ans_required: false,
    }));
    let mut buf = [0u8; 16];
    let n = req.encode(&mut buf).expect("encodes");
    let up = up_event(&m, &uuid::Uuid::new_v4().to_string(), 90, 202, &buf[..n]);
    publisher.publish(topic(&m, "up"), up).await;
    shows(&api, &list, "clock answer", |v| {
        v["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|c| c["kind"] == "appTimeAns"))
    })
    .await;

    // A command for the whole region reaches each meter's list.
    cache_it(&api, &list).await;
    let r = request(
        api.addr,
        "POST",
        "/api/v1/regions/south/commands",
        Some(&api.operator),
        Some(br#"{"kind": "packageVersion"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    shows(&api, &list, "region enqueue", |v| {
        v["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|c| c["kind"] == "packageVersion"))
    })
    .await;

    // The scheduler's sweeps: never sent before its expiry, and sent without an answer by
    // the deadline. Meter 3 is never heard, so only the sweeps move its commands.
    let m3 = api
        .env
        .store
        .meter_by_dev_eui(&dev_eui(3))
        .await
        .expect("lookup")
        .expect("registered")
        .id;
    let soon = Utc::now() + chrono::Duration::seconds(4);
    let row = |state: &str| CommandRow {
        id: uuid::Uuid::new_v4(),
        meter_id: m3,
        kind: "readNow".into(),
        fport: 10,
        payload: vec![4],
        confirmed: false,
        requested_by: "test".into(),
        state: state.into(),
        attempts: 0,
        error: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        expires_at: soon,
        sent_at: (state == "sent").then(Utc::now),
        completed_at: None,
        deadline_at: (state == "sent").then_some(soon),
        result: None,
        schedule_id: None,
    };
    let (unsent, unanswered) = (row("pending"), row("sent"));
    for c in [&unsent, &unanswered] {
        api.env.store.insert_command(c).await.expect("insert");
    }
    // On SQLite the server sees this other connection's commit within a second and drops
    // its cache: that must happen before the list is cached, not after.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let list3 = format!("/api/v1/meters/{}/commands", dev_eui(3));
    let (unsent, unanswered) = (unsent.id.to_string(), unanswered.id.to_string());
    let before = cache_it(&api, &list3).await;
    assert!(
        state_is(&unsent, "pending")(&before),
        "cached before the sweep: {before}"
    );
    shows(&api, &list3, "expiry sweep", |v| {
        state_is(&unsent, "expired")(v) && state_is(&unanswered, "failed")(v)
    })
    .await;

    // A self-test schedule's run.
    cache_it(&api, &list3).await;
    let r = api
        .post(
            "/api/v1/self-test-schedules",
            Some(
                json!({"scope": "meter", "meter": dev_eui(3), "tests": ["battery"],
                "intervalMinutes": 1440}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    shows(&api, &list3, "schedule run", |v| {
        v["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|c| c["kind"] == "selfTest"))
    })
    .await;

    publisher.flush().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_state_change_reaches_the_cache_on_sqlite() {
    every_state_change_reaches_the_cache(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_state_change_reaches_the_cache_on_postgres() {
    every_state_change_reaches_the_cache(Dialect::Postgres).await;
}
