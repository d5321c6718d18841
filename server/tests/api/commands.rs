//! Commands and self-test schedules through HTTP: a read-now queued, released after the
//! meter's uplink, transmitted, and completed by the reading it brought; schedules created,
//! changed, listed and deleted.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::bridge::CommandListener;
use crate::support::*;

async fn command_state(api: &TestApi, id: &str, want: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let c = api.get(&format!("/api/v1/commands/{id}")).await.json();
        if c["state"] == want || start.elapsed() > Duration::from_secs(15) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_now_and_schedules(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    assert_eq!(
        api.post("/api/v1/meters", Some(meter_body(1))).await.status,
        201
    );
    let m = dev_eui(1);
    let mut chirpstack = CommandListener::connect(&api.env.broker, "api-cs-down").await;
    let mut publisher = Publisher::connect(&api.env.broker, "api-cs-up").await;

    let r = request(
        api.addr,
        "POST",
        &format!("/api/v1/meters/{m}/commands"),
        Some(&api.operator),
        Some(br#"{"kind": "readNow"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/commands/{id}").as_str())
    );
    assert_eq!(r.json()["state"], "pending");
    assert_eq!(r.json()["requestedBy"], "operator-key");

    // The meter's uplink releases it; ChirpStack reports the transmission; the reading asked
    // for completes it and is shown with it.
    let heard = |litres| {
        reading_event(
            1,
            &uuid::Uuid::new_v4().to_string(),
            Utc::now(),
            Utc::now(),
            litres,
        )
    };
    publisher.publish(topic(&m, "up"), heard(100)).await;
    let (_, down) = chirpstack
        .next(Duration::from_secs(10))
        .await
        .expect("released to ChirpStack");
    assert_eq!(down.id.map(|u| u.to_string()), Some(id.clone()));
    assert_eq!(command_state(&api, &id, "queued").await["state"], "queued");
    let txack = json!({"queueItemId": id, "fCntDown": 1, "time": Utc::now(),
        "deviceInfo": {"devEui": m, "applicationId": APP}});
    publisher
        .publish(
            topic(&m, "txack"),
            serde_json::to_vec(&txack).expect("json"),
        )
        .await;
    assert_eq!(command_state(&api, &id, "sent").await["state"], "sent");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    publisher.publish(topic(&m, "up"), heard(250)).await;
    let done = command_state(&api, &id, "completed").await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["reading"]["gasVolumeLitres"], 250, "{done}");
    assert!(done["completedAt"].is_string());
    publisher.flush().await;

    // A command for a whole region.
    let r = request(
        api.addr,
        "POST",
        "/api/v1/regions/south/commands",
        Some(&api.operator),
        Some(br#"{"kind": "forceResync"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["commands"], 1);
    assert_eq!(
        request(
            api.addr,
            "POST",
            "/api/v1/regions/atlantis/commands",
            Some(&api.operator),
            Some(br#"{"kind": "forceResync"}"#),
            &[],
        )
        .await
        .status,
        404
    );

    // Schedules: create, list, change, delete.
    let r = api
        .post(
            "/api/v1/self-test-schedules",
            Some(
                json!({"scope": "meter", "meter": m, "tests": ["battery", "valve"],
                "intervalMinutes": 1440, "nextRunAt": "2030-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    assert_eq!(s["scope"], "meter");
    assert_eq!(s["tests"], json!(["battery", "valve"]));
    let sid = s["id"].as_i64().expect("id");
    let list = api.get("/api/v1/self-test-schedules").await.json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let r = request(
        api.addr,
        "PUT",
        &format!("/api/v1/self-test-schedules/{sid}"),
        Some(&api.operator),
        Some(
            br#"{"scope": "region", "region": "south", "tests": ["battery"], "intervalMinutes": 60, "enabled": false}"#,
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["region"], "south");
    assert_eq!(r.json()["enabled"], false);
    let r = request(
        api.addr,
        "DELETE",
        &format!("/api/v1/self-test-schedules/{sid}"),
        Some(&api.operator),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        api.get(&format!("/api/v1/self-test-schedules/{sid}"))
            .await
            .status,
        404
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_now_and_schedules_on_sqlite() {
    read_now_and_schedules(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_now_and_schedules_on_postgres() {
    read_now_and_schedules(Dialect::Postgres).await;
}
