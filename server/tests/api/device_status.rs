//! ChirpStack's `status` events (a meter's answer to the network's status request), published
//! on MQTT and read back over HTTP: each meter's latest report shows in its details as
//! `deviceStatus`, a replayed or older report changes nothing, and the meter's cached details
//! are dropped when a report arrives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use test_support::Dialect;

use crate::bridge::event;
use crate::support::*;

/// How long a published report may take to show: generous, for a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);

/// A `status` event of meter `n`: `battery` is `Some(level)`, or `None` with `external` saying
/// whether it runs on external power (otherwise it cannot measure its battery).
fn status_event(
    n: u32,
    dedup: &str,
    at: DateTime<Utc>,
    margin: i32,
    battery: Option<f32>,
    external: bool,
) -> Vec<u8> {
    event(
        &dev_eui(n),
        json!({
            "deduplicationId": dedup,
            "time": at.to_rfc3339(),
            "margin": margin,
            "externalPowerSource": battery.is_none() && external,
            "batteryLevelUnavailable": battery.is_none() && !external,
            "batteryLevel": battery.unwrap_or(0.0),
        }),
    )
}

/// Reads the meter's details through the cache until `done` holds for them.
async fn details_until(api: &TestApi, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let details = reply.json();
        if done(&details) {
            return details;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the meter's details never showed the report: {details}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_reports_show_in_the_meter_details(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    assert_eq!(
        api.post("/api/v1/meters", Some(meter_body(1))).await.status,
        201
    );
    let path = format!("/api/v1/meters/{}", dev_eui(1));
    let before = api.get(&path).await.json();
    assert!(before["deviceStatus"].is_null(), "{before}");
    assert_eq!(before["devEui"], dev_eui(1), "the meter's own fields stay");
    // The details are cached (the scheduler may first close the new meter's billing periods).
    api.get_until_cached(&path).await;

    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    let t1 = now - chrono::Duration::hours(2);
    let first = status_event(1, "status-1", t1, 12, Some(88.18897), false);
    let mut publisher =
        Publisher::connect(&api.env.broker, &format!("pub-{}", uuid::Uuid::new_v4())).await;
    publisher
        .publish(topic(&dev_eui(1), "status"), first.clone())
        .await;
    publisher.flush().await;
    // Read through the cache: the answer cached above must have been dropped.
    let shown = details_until(&api, &path, |d| !d["deviceStatus"].is_null()).await;
    let status = &shown["deviceStatus"];
    assert_eq!(status["battery"]["kind"], "level", "{status}");
    let percent = status["battery"]["percent"].as_f64().expect("a percentage");
    assert!((percent - 88.18897).abs() < 1e-3, "{status}");
    assert_eq!(status["marginDb"], 12);
    assert_eq!(
        status["receivedAt"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        Some(t1.fixed_offset()),
        "{status}"
    );

    // The same report again, and an older one arriving late: neither changes anything.
    let metrics = api
        .server
        .as_ref()
        .and_then(|s| s.app.as_ref())
        .expect("running")
        .metrics();
    let (decoded, duplicates) = (metrics.decoded.get(), metrics.duplicates.get());
    publisher.publish(topic(&dev_eui(1), "status"), first).await;
    let older = status_event(
        1,
        "status-0",
        t1 - chrono::Duration::hours(1),
        3,
        None,
        false,
    );
    publisher.publish(topic(&dev_eui(1), "status"), older).await;
    publisher.flush().await;
    let counted = wait_for(LIMIT, 2, || {
        let m = metrics.clone();
        async move { (m.decoded.get() - decoded + m.duplicates.get() - duplicates) as i64 }
    })
    .await;
    assert_eq!(counted, 2, "both reports were taken");
    assert_eq!(
        metrics.duplicates.get() - duplicates,
        1,
        "the replay is a duplicate"
    );
    let kept = api.get_uncached(&path).await.json();
    assert_eq!(
        kept["deviceStatus"], shown["deviceStatus"],
        "the latest stays"
    );
    assert_eq!(
        api.get(&path).await.json()["deviceStatus"],
        shown["deviceStatus"]
    );

    // A newer report replaces it: external power, a negative margin.
    let t2 = now - chrono::Duration::minutes(1);
    publisher
        .publish(
            topic(&dev_eui(1), "status"),
            status_event(1, "status-2", t2, -5, None, true),
        )
        .await;
    publisher.flush().await;
    let newer = details_until(&api, &path, |d| {
        d["deviceStatus"]["battery"]["kind"] == "externalPower"
    })
    .await;
    assert_eq!(newer["deviceStatus"]["marginDb"], -5);
    assert!(
        newer["deviceStatus"]["battery"].get("percent").is_none(),
        "{newer}"
    );
    // The list shows meters without the report.
    let list = api.get("/api/v1/meters").await.json();
    assert!(
        list["items"][0].get("deviceStatus").is_none(),
        "lists carry no status: {list}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_show_in_the_meter_details_on_sqlite() {
    status_reports_show_in_the_meter_details(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_show_in_the_meter_details_on_postgres() {
    status_reports_show_in_the_meter_details(Dialect::Postgres).await;
}
