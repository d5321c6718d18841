//! Every route end to end through HTTP, on SQLite and PostgreSQL.

use chrono::{Duration, Utc};
use meterhub::storage::commands::CommandRow;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().expect("items")
}

async fn every_route(dialect: Dialect) {
    let Some(f) = fixture(dialect).await else {
        return;
    };
    let api = &f.api;
    let m1 = dev_eui(1);

    // Regions: counts of meters, silent meters and open alarms.
    let r = api.get("/api/v1/regions").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let regions = r.json();
    let by_id = |id: &str| {
        items(&regions)
            .iter()
            .find(|x| x["id"] == id)
            .cloned()
            .expect("region listed")
    };
    assert_eq!(by_id("south")["meters"], 2);
    // Meter 1's three alarms and its failed self-test.
    assert_eq!(by_id("south")["openAlarms"], 4);
    assert_eq!(by_id("south")["silentMeters"], 0);
    assert_eq!(by_id("north")["meters"], 2);
    assert_eq!(by_id("north")["silentMeters"], 1, "meter 2 is silent");

    // Meters: list with filters, details by DevEUI and by serial.
    let r = api.get("/api/v1/meters?region=north").await.json();
    let devs: Vec<&str> = items(&r)
        .iter()
        .map(|m| m["devEui"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(devs, [dev_eui(2), dev_eui(4)]);
    let r = api.get("/api/v1/meters?userId=user-3").await.json();
    assert_eq!(items(&r).len(), 1);
    assert_eq!(items(&r)[0]["serial"], serial(3).to_string());
    let r = api.get("/api/v1/meters?status=installed").await.json();
    let devs: Vec<&str> = items(&r)
        .iter()
        .map(|m| m["devEui"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(devs, [dev_eui(3), dev_eui(4)], "meters never heard");
    let page1 = api.get("/api/v1/meters?limit=3").await.json();
    assert_eq!(items(&page1).len(), 3);
    let cursor = page1["nextCursor"].as_str().expect("a next page");
    let page2 = api
        .get(&format!("/api/v1/meters?limit=3&cursor={cursor}"))
        .await
        .json();
    assert_eq!(items(&page2).len(), 1);
    assert_eq!(items(&page2)[0]["devEui"], dev_eui(4));
    assert!(page2["nextCursor"].is_null());

    let by_dev = api.get(&format!("/api/v1/meters/{m1}")).await;
    assert_eq!(by_dev.status, 200);
    let d = by_dev.json();
    let by_serial = api
        .get(&format!("/api/v1/meters/{}", serial(1)))
        .await
        .json();
    assert_eq!(d, by_serial);
    assert_eq!(d["status"], "active");
    assert_eq!(d["silent"], false);
    assert_eq!(d["batteryMillivolts"], 3600);
    assert!(d["rssi"].is_number() && d["lastSeenAt"].is_string(), "{d}");
    // Measured from its readings (meter clock against the time they were heard).
    assert!(d["clockDriftMs"].is_i64(), "{d}");
    assert_eq!(api.get("/api/v1/meters/ffffffffffffffff").await.status, 404);

    // Install: again unchanged (200), a serial held by another DevEUI (409 naming serial).
    let again = api.post("/api/v1/meters", Some(meter_body(1))).await;
    assert_eq!(again.status, 200);
    let mut clash = meter_body(5);
    clash["serial"] = json!(serial(1).to_string());
    let r = api.post("/api/v1/meters", Some(clash)).await;
    assert_eq!(r.status, 409);
    assert_eq!(problem(&r)["field"], "serial");

    // Readings over a range, oldest first, paged.
    let from = (Utc::now() - Duration::days(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/v1/meters/{m1}/readings?from={from}&limit=2");
    let p1 = api.get(&path).await.json();
    assert_eq!(items(&p1).len(), 2);
    assert_eq!(items(&p1)[0]["gasVolumeLitres"], 1000, "oldest first");
    assert_eq!(items(&p1)[0]["valve"], "open");
    let c = p1["nextCursor"].as_str().expect("more");
    let p2 = api.get(&format!("{path}&cursor={c}")).await.json();
    assert_eq!(items(&p2).len(), 1);
    assert_eq!(items(&p2)[0]["gasVolumeLitres"], 3000);
    assert!(p2["nextCursor"].is_null());

    // Latest reading per meter of a region.
    let r = api
        .get("/api/v1/regions/south/readings/latest")
        .await
        .json();
    assert_eq!(items(&r).len(), 1, "only meter 1 of the south has readings");
    assert_eq!(items(&r)[0]["devEui"], m1);
    assert_eq!(items(&r)[0]["reading"]["gasVolumeLitres"], 3000);
    assert_eq!(
        api.get("/api/v1/regions/atlantis/readings/latest")
            .await
            .status,
        404
    );

    // Connectivity: the silent meter, per region.
    let r = api.get("/api/v1/connectivity?region=north").await.json();
    assert_eq!(items(&r).len(), 1);
    assert_eq!(items(&r)[0]["devEui"], dev_eui(2));
    assert_eq!(items(&r)[0]["silent"], true);
    assert!(items(&api.get("/api/v1/connectivity?region=south").await.json()).is_empty());

    // Alarms: filters, details, acknowledge, clear.
    let all = api.get("/api/v1/alarms").await.json();
    assert_eq!(items(&all).len(), 5);
    let ids: Vec<i64> = items(&all)
        .iter()
        .map(|a| a["id"].as_i64().unwrap_or(0))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let r = api.get("/api/v1/alarms?kind=leak").await.json();
    assert_eq!(items(&r).len(), 1);
    assert_eq!(items(&r)[0]["kind"], "leak");
    let north = api.get("/api/v1/alarms?region=north").await.json();
    assert_eq!(items(&north).len(), 1, "meter 2's silence");
    assert_eq!(items(&north)[0]["kind"], "noConnection");
    assert_eq!(
        items(&api.get(&format!("/api/v1/alarms?meter={m1}")).await.json()).len(),
        4
    );
    let since =
        (Utc::now() - Duration::minutes(150)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        items(
            &api.get(&format!("/api/v1/alarms?from={since}"))
                .await
                .json()
        )
        .len(),
        3,
        "raised in the last 150 minutes (two meter alarms and the self-test)"
    );
    let a = f.alarms[0];
    assert_eq!(
        api.get(&format!("/api/v1/alarms/{a}")).await.json()["state"],
        "open"
    );
    let r = request(
        api.addr,
        "POST",
        &format!("/api/v1/alarms/{a}/acknowledge"),
        Some(&api.operator),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "acknowledged");
    assert_eq!(r.json()["acknowledgedBy"], "operator-key");
    let again = api
        .post(&format!("/api/v1/alarms/{a}/acknowledge"), None)
        .await;
    assert_eq!(again.status, 409);
    let open = api.get("/api/v1/alarms?state=open").await.json();
    assert_eq!(
        items(&open).len(),
        4,
        "the acknowledged alarm left the open list"
    );
    let regions = api.get("/api/v1/regions").await.json();
    let south = items(&regions).iter().find(|x| x["id"] == "south").cloned();
    assert_eq!(south.map(|s| s["openAlarms"].clone()), Some(json!(3)));
    let r = api.post(&format!("/api/v1/alarms/{a}/clear"), None).await;
    assert_eq!(r.json()["state"], "cleared");
    assert_eq!(
        api.post(&format!("/api/v1/alarms/{a}/clear"), None)
            .await
            .status,
        409
    );
    assert_eq!(
        api.post("/api/v1/alarms/999999/clear", None).await.status,
        404
    );

    // Inspections: record a visit after the alarm, list it.
    let visit = json!({
        "visitedAt": (Utc::now() - Duration::minutes(5)).to_rfc3339(),
        "inspector": "field crew 7", "outcome": "tampered", "notes": "magnet removed",
        "alarmId": a
    });
    let r = api
        .post(&format!("/api/v1/meters/{m1}/inspections"), Some(visit))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let listed = api
        .get(&format!("/api/v1/meters/{m1}/inspections"))
        .await
        .json();
    assert_eq!(items(&listed).len(), 1);
    assert_eq!(items(&listed)[0]["outcome"], "tampered");
    assert_eq!(items(&listed)[0]["alarmId"], a);

    // Self-test results.
    let r = api
        .get(&format!("/api/v1/meters/{m1}/self-tests"))
        .await
        .json();
    assert_eq!(items(&r).len(), 1);
    assert_eq!(items(&r)[0]["testsFailed"], json!(["valve"]));
    assert_eq!(items(&r)[0]["passed"], false);

    // Commands (the downlink module writes them; here one is stored directly).
    let meter_id = d["id"].as_i64().expect("id");
    let now = Utc::now();
    api.env
        .store
        .insert_command(&CommandRow {
            id: uuid::Uuid::new_v4(),
            meter_id,
            kind: "valveClose".into(),
            fport: 10,
            payload: vec![1, 2],
            confirmed: true,
            requested_by: "operator-key".into(),
            state: "sent".into(),
            attempts: 1,
            error: None,
            created_at: now,
            updated_at: now,
            expires_at: now + Duration::hours(1),
            sent_at: Some(now),
            completed_at: None,
            deadline_at: None,
            result: None,
            schedule_id: None,
        })
        .await
        .expect("command");
    let r = api
        .get(&format!("/api/v1/meters/{m1}/commands"))
        .await
        .json();
    // The valve command, and the clock resynchronisation the fixture's readings asked for
    // (they were heard long after the meter's clock says they were taken).
    let commands = items(&r);
    let kinds: std::collections::BTreeSet<&str> =
        commands.iter().filter_map(|c| c["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        std::collections::BTreeSet::from(["forceResync", "valveClose"])
    );
    let valve = commands
        .iter()
        .find(|c| c["kind"] == "valveClose")
        .expect("listed");
    assert_eq!(valve["state"], "sent");
    assert_eq!(valve["payload"], "0102");

    // Quarantine: listed with its reason; replay refused until the meter is registered, then
    // applied once.
    let q = api
        .get("/api/v1/quarantine?reason=unregistered_device")
        .await
        .json();
    assert_eq!(items(&q).len(), 1);
    assert_eq!(items(&q)[0]["devEui"], dev_eui(9));
    let replay = format!("/api/v1/quarantine/{}/replay", f.quarantined);
    let r = api.post(&replay, None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        problem(&r)["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unregistered_device")
    );
    assert_eq!(
        api.post("/api/v1/meters", Some(meter_body(9))).await.status,
        201
    );
    let readings9 = format!("/api/v1/meters/{}/readings", dev_eui(9));
    assert!(items(&api.get(&readings9).await.json()).is_empty());
    let r = api.post(&replay, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], true);
    assert_eq!(r.json()["readings"], 1);
    assert_eq!(
        items(&api.get(&readings9).await.json()).len(),
        1,
        "read right after the replay"
    );
    let r = api.post(&replay, None).await;
    assert_eq!(
        r.json()["applied"],
        false,
        "a second replay applies nothing"
    );
    let q = api.get("/api/v1/quarantine").await.json();
    assert!(items(&q)[0]["replayedAt"].is_string());

    // Keys: create, use, list without secrets, revoke.
    let r = api
        .post(
            "/api/v1/keys",
            Some(json!({"name": "portal", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = r.json()["secret"].as_str().expect("secret").to_owned();
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(
        request(api.addr, "GET", "/api/v1/regions", Some(&secret), None, &[])
            .await
            .status,
        200
    );
    let list = api.get("/api/v1/keys").await;
    assert!(!list.text().contains(&secret));
    assert_eq!(items(&list.json()).len(), 4);
    let r = request(
        api.addr,
        "DELETE",
        &format!("/api/v1/keys/{id}"),
        Some(&api.admin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        request(api.addr, "GET", "/api/v1/regions", Some(&secret), None, &[])
            .await
            .status,
        401
    );

    // The document.
    let doc = request(api.addr, "GET", "/api/v1/openapi.json", None, None, &[]).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");

    // The cache served some of this, and says so at /metrics.
    let metrics = request(api.addr, "GET", "/metrics", None, None, &[])
        .await
        .text();
    assert!(
        metrics.contains("meterhub_api_cache_hits_total"),
        "{metrics}"
    );
    f.api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_end_to_end_on_sqlite() {
    every_route(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_end_to_end_on_postgres() {
    every_route(Dialect::Postgres).await;
}
