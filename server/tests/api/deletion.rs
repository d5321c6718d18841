//! Deleting part of a meter's data through HTTP and the command line: a dry run that says
//! what the deletion then removes, a closed billing period refused and then forced (with a
//! revision), the cache dropped, every deletion in the meter's history, alarms with the visit
//! that named one, roles and bad input.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use meterhub::storage::billing_periods::{ClosedPeriod, StoredFigures};
use meterhub::storage::readings::StoredReading;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn delete(api: &TestApi, key: &str, path: &str) -> Reply {
    request(api.addr, "DELETE", path, Some(key), None, &[]).await
}

fn reading(meter_id: i64, at: DateTime<Utc>, litres: i64) -> StoredReading {
    StoredReading {
        meter_id,
        reading_time: at,
        received_at: at,
        gas_volume_litres: Some(litres),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: None,
        gas_pressure_pa: None,
        valve: 1,
        door: 0,
        battery_millivolts: 3_600,
        battery_percent: 90,
        flags: 0,
        f_cnt: None,
    }
}

fn count_items(r: &Reply) -> usize {
    r.json()["items"].as_array().map_or(0, Vec::len)
}

async fn deletion(dialect: Dialect) {
    let Some(f) = fixture(dialect).await else {
        return;
    };
    let api = &f.api;
    let one = dev_eui(1);
    let store = &api.env.store;
    let meter = store
        .meter_by_dev_eui(&one)
        .await
        .expect("lookup")
        .expect("meter 1");

    // Three old readings, the middle one's day closed and published (long before anything
    // the scheduler closes by itself).
    let day = days_ago(39);
    let old: Vec<StoredReading> = [day - Duration::hours(12), day, day + Duration::hours(12)]
        .iter()
        .enumerate()
        .map(|(i, t)| reading(meter.id, *t, 100 + 10 * i as i64))
        .collect();
    store.insert_readings(&old).await.expect("insert");
    let closed = ClosedPeriod {
        meter_id: meter.id,
        kind: "day".into(),
        first_day: day.date_naive(),
        period_start: day,
        period_end: day + Duration::days(1),
        figures: StoredFigures {
            quality: "measured".into(),
            readings: 2,
            gas_quality: Some("measured".into()),
            gas_litres: Some(10),
            gas_register_start: Some(110),
            gas_register_end: Some(120),
            energy_quality: None,
            energy_wh: None,
            energy_register_start: None,
            energy_register_end: None,
        },
        closed_at: day + Duration::days(5),
    };
    store
        .close_periods(std::slice::from_ref(&closed), |_| ())
        .await
        .expect("close");
    let (from, to) = (rfc(day - Duration::days(1)), rfc(day + Duration::days(1)));
    let readings_path = format!("/api/v1/meters/{one}/readings?from={from}&to={to}");
    assert_eq!(count_items(&api.get_until_cached(&readings_path).await), 3);
    let base = format!("/api/v1/meters/{one}/readings?from={from}&to={to}");

    // The dry run says what would go and that the closed day needs force; nothing goes.
    let r = delete(api, &api.admin, &format!("{base}&dryRun=true")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dry = r.json();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["deleted"], false);
    assert_eq!(dry["count"], 3);
    assert_eq!(dry["data"], "readings");
    assert_eq!(dry["forceRequired"], true);
    assert_eq!(dry["first"], json!(rfc(day - Duration::hours(12))));
    let periods = dry["closedPeriods"].as_array().expect("periods");
    assert_eq!(periods.len(), 1, "{dry}");
    assert_eq!(periods[0]["period"], "day");
    assert_eq!(periods[0]["firstDay"], json!(day.date_naive().to_string()));
    assert_eq!(count_items(&api.get(&readings_path).await), 3);

    // Refused without force, naming the period; force needs a reason.
    let r = delete(api, &api.admin, &format!("{base}&reason=sensor%20fault")).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let p = problem(&r);
    assert_eq!(p["field"], "force");
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("day {}", day.date_naive()))),
        "{p}"
    );
    let r = delete(api, &api.admin, &format!("{base}&force=true")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(problem(&r)["field"], "reason");
    // Only an admin deletes.
    for key in [&api.operator, &api.viewer] {
        let r = delete(api, key, &format!("{base}&reason=x&force=true")).await;
        assert_eq!(r.status, 403, "{}", r.text());
    }
    assert_eq!(count_items(&api.get(&readings_path).await), 3);

    // Forced: what the dry run said goes, the day gets a revision, the cache drops them.
    let r = delete(
        api,
        &api.admin,
        &format!("{base}&force=true&reason=sensor%20fault"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = r.json();
    assert_eq!(done["deleted"], true);
    assert_eq!(done["count"], dry["count"]);
    assert_eq!(done["closedPeriods"], dry["closedPeriods"]);
    let revisions = done["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 1, "{done}");
    assert_eq!(revisions[0]["reason"], "readingsDeleted");
    assert_eq!(revisions[0]["revision"], 1);
    assert_eq!(revisions[0]["oldGasLitres"], 10);
    assert_eq!(revisions[0]["readings"], 0);
    assert_eq!(count_items(&api.get(&readings_path).await), 0);
    let listed = api
        .get_uncached(&format!("/api/v1/meters/{one}/consumption/revisions"))
        .await
        .json();
    assert!(
        listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|r| r["reason"] == "readingsDeleted"),
        "{listed}"
    );
    // The published figure stays.
    let days = (closed.first_day, closed.first_day + chrono::Days::new(1));
    let kept = store
        .closed_of_meter(meter.id, "day", days)
        .await
        .expect("closed");
    assert_eq!(kept, vec![closed.clone()]);

    // A recent reading, in no closed period: deleted without force.
    let recent = format!(
        "/api/v1/meters/{one}/readings?from={}&to={}",
        rfc(days_ago(1) - Duration::hours(1)),
        rfc(days_ago(1) + Duration::hours(1))
    );
    let dry = delete(api, &api.admin, &format!("{recent}&dryRun=true")).await;
    assert_eq!(dry.status, 200, "{}", dry.text());
    assert_eq!(dry.json()["forceRequired"], false);
    let r = delete(api, &api.admin, &format!("{recent}&reason=duplicate")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], dry.json()["count"]);
    assert_eq!(r.json()["count"], 1);

    // Alarms: a visit names one; the dry run's count is what goes; the visit stays.
    let visit = api
        .post(
            &format!("/api/v1/meters/{one}/inspections"),
            Some(json!({"visitedAt": rfc(Utc::now() - Duration::minutes(5)),
                        "inspector": "crew", "outcome": "repaired", "alarmId": f.alarms[0]})),
        )
        .await;
    assert_eq!(visit.status, 201, "{}", visit.text());
    let alarms = format!(
        "/api/v1/meters/{one}/alarms?from={}&to={}",
        rfc(Utc::now() - Duration::hours(5)),
        rfc(Utc::now() + Duration::hours(1))
    );
    let r = delete(api, &api.admin, &format!("{alarms}&force=true&reason=x")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(problem(&r)["field"], "force");
    let dry = delete(api, &api.admin, &format!("{alarms}&dryRun=true")).await;
    assert_eq!(dry.status, 200, "{}", dry.text());
    let would = dry.json()["count"].as_i64().expect("count");
    assert!(would >= 3, "{}", dry.text());
    let r = delete(api, &api.admin, &format!("{alarms}&reason=test%20alarms")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], would);
    for id in &f.alarms {
        let r = api.get(&format!("/api/v1/alarms/{id}")).await;
        assert_eq!(r.status, 404, "{}", r.text());
    }
    let visits = api
        .get_uncached(&format!("/api/v1/meters/{one}/inspections"))
        .await
        .json();
    assert_eq!(visits["items"][0]["alarmId"], Value::Null, "{visits}");

    // The history holds every deletion, who, what and why.
    let h = api
        .get_uncached(&format!("/api/v1/meters/{one}/history"))
        .await
        .json();
    let items = h["items"].as_array().expect("items");
    let actions: Vec<&str> = items.iter().filter_map(|a| a["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "delete_alarms",
            "delete_readings",
            "delete_readings",
            "install"
        ]
    );
    assert_eq!(items[0]["before"]["alarms"], would);
    assert_eq!(items[0]["reason"], "test alarms");
    let forced = &items[2];
    assert_eq!(forced["actor"], "admin-key");
    assert_eq!(forced["reason"], "sensor fault");
    assert_eq!(forced["before"]["readings"], 3);
    assert_eq!(forced["after"]["forced"], true);
    assert_eq!(
        forced["after"]["closedPeriods"],
        json!([format!("day {}", day.date_naive())])
    );
    assert_eq!(
        forced["after"]["revisions"],
        json!([format!("day {} revision 1", day.date_naive())])
    );

    // The command line: the same refusal (the closed day is still there), then forced.
    let args = |extra: &[&str]| {
        let mut v = vec![
            "meters".to_owned(),
            "delete-readings".to_owned(),
            one.clone(),
            "--from".to_owned(),
            from.clone(),
            "--to".to_owned(),
            to.clone(),
        ];
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        api.cli(&refs)
    };
    let out = run(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (printed["count"].clone(), printed["forceRequired"].clone()),
        (json!(0), json!(true))
    );
    let out = run(&["--reason", "again"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    let out = run(&["--force"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    let out = run(&["--force", "--reason", "correction"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["revisions"][0]["revision"], 2);
    let out = api.cli(&[
        "meters",
        "delete-alarms",
        &one,
        "--from",
        &to,
        "--to",
        &from,
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
    let out = api.cli(&[
        "meters",
        "delete-readings",
        &one,
        "--from",
        "yesterday",
        "--to",
        &to,
        "--dry-run",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
    let h = api
        .get_uncached(&format!("/api/v1/meters/{one}/history?limit=1"))
        .await
        .json();
    assert_eq!(h["items"][0]["actor"], "cli");
    assert_eq!(h["items"][0]["action"], "delete_readings");
    assert_eq!(h["items"][0]["reason"], "correction");

    // A customer's erasure: meter 1's customer, named in a visit's notes too.
    let visit = api
        .post(
            &format!("/api/v1/meters/{one}/inspections"),
            Some(json!({"visitedAt": rfc(Utc::now() - Duration::minutes(1)),
                        "inspector": "crew", "outcome": "ok",
                        "notes": "user-1 let us in"})),
        )
        .await;
    assert_eq!(visit.status, 201, "{}", visit.text());
    let erase = |key: String, body: Value| async move {
        let bytes = serde_json::to_vec(&body).expect("json");
        request(
            api.addr,
            "POST",
            "/api/v1/customers/user-1/erase",
            Some(&key),
            Some(&bytes),
            &[],
        )
        .await
    };
    let r = erase(api.operator.clone(), json!({"reason": "x"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = erase(api.admin.clone(), json!({"reason": " "})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(problem(&r)["field"], "reason");
    let dry = erase(api.admin.clone(), json!({"reason": "", "dryRun": true})).await;
    assert_eq!(dry.status, 200, "{}", dry.text());
    let dry = dry.json();
    assert_eq!(dry["meters"], json!([one]));
    assert_eq!(dry["registeredMeters"], 1);
    assert_eq!(dry["supplyPoints"], 1);
    assert_eq!(dry["inspections"], 1);
    assert!(dry["auditRows"].as_i64().is_some_and(|n| n >= 1), "{dry}");
    assert_eq!(dry["token"], Value::Null);
    let r = erase(api.admin.clone(), json!({"reason": "erasure request"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = r.json();
    assert_eq!(done["erased"], true);
    for field in [
        "meters",
        "registeredMeters",
        "supplyPoints",
        "inspections",
        "auditRows",
    ] {
        assert_eq!(done[field], dry[field], "{field}");
    }
    let token = done["token"].as_str().expect("token").to_owned();
    let m = api.get(&format!("/api/v1/meters/{one}")).await.json();
    assert_eq!(m["userId"], json!(token));
    assert_eq!(m["installation"]["userId"], json!(token));
    // The readings stay; nothing names the customer any more.
    let kept = api
        .get(&format!(
            "/api/v1/meters/{one}/readings?from={}",
            rfc(days_ago(10))
        ))
        .await;
    assert_eq!(count_items(&kept), 2, "{}", kept.text());
    let listed = api.get("/api/v1/meters?userId=user-1").await;
    assert_eq!(count_items(&listed), 0, "{}", listed.text());
    let h = api
        .get_uncached(&format!("/api/v1/meters/{one}/history?limit=1000"))
        .await;
    assert!(!h.text().contains("\"user-1\""), "{}", h.text());
    assert_eq!(h.json()["items"][0]["action"], "erase_customer");
    assert_eq!(h.json()["items"][0]["after"]["userId"], json!(token));
    let visits = api
        .get_uncached(&format!("/api/v1/meters/{one}/inspections"))
        .await
        .json();
    assert_eq!(
        visits["items"][0]["notes"],
        json!(format!("{token} let us in"))
    );
    let r = erase(api.admin.clone(), json!({"reason": "again"})).await;
    assert_eq!(r.status, 404, "{}", r.text());

    // The same from the command line, for meter 2's customer.
    let out = api.cli(&["meters", "erase-customer", "user-2", "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["meters"], json!([dev_eui(2)]));
    let out = api.cli(&["meters", "erase-customer", "user-2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    let out = api.cli(&[
        "meters",
        "erase-customer",
        "user-2",
        "--reason",
        "erasure request",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let token = printed["token"].as_str().expect("token");
    let m = api
        .get_uncached(&format!("/api/v1/meters/{}", dev_eui(2)))
        .await
        .json();
    assert_eq!(m["userId"], json!(token));
    let h = api
        .get_uncached(&format!("/api/v1/meters/{}/history?limit=1", dev_eui(2)))
        .await
        .json();
    assert_eq!(h["items"][0]["actor"], "cli");
    assert_eq!(h["items"][0]["action"], "erase_customer");
    f.api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_alarms_are_deleted_closed_periods_only_by_force_on_sqlite() {
    deletion(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_alarms_are_deleted_closed_periods_only_by_force_on_postgres() {
    deletion(Dialect::Postgres).await;
}
