//! A meter replaced at its supply point mid-month, through HTTP and the command line: the
//! installations closed and opened, both histories, the refusals, and the supply point's
//! consumption continuing across the two meters.

use chrono::{DateTime, Duration, Utc};
use meterhub::storage::meters::NewMeter;
use meterhub::storage::readings::StoredReading;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").to_utc()
}

fn reading(meter_id: i64, at: DateTime<Utc>, litres: i64) -> StoredReading {
    StoredReading {
        meter_id,
        reading_time: at,
        received_at: Utc::now(),
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

/// Daily readings at Madrid's midnight in May (22:00 UTC the day before), `days` of them
/// from `from`, `first` litres and `per_day` more each day.
fn daily(meter_id: i64, from: &str, days: i64, first: i64, per_day: i64) -> Vec<StoredReading> {
    (0..days)
        .map(|d| reading(meter_id, at(from) + Duration::days(d), first + per_day * d))
        .collect()
}

/// Meters 1 and 2 installed on April 1st (each at a supply point of its own), meter 1 read
/// daily through April and May: 10 000 litres on April 21st (Madrid), 100 a day.
async fn seed(env: &crate::support::Env) {
    let meters: Vec<NewMeter> = (1..=2)
        .map(|n| NewMeter {
            dev_eui: dev_eui(n),
            serial: serial(n).to_string(),
            body_number: i64::from(n),
            user_id: format!("user-{n}"),
            application_id: "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23".into(),
            region_id: "north".into(),
            usage_type: "residential".into(),
            mode: "prepaid".into(),
            production_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            reporting_interval_minutes: 1440,
        })
        .collect();
    env.store
        .register_meters(&meters, at("2026-04-01T00:00:00Z"))
        .await
        .expect("register");
    let one = env
        .store
        .meter_by_dev_eui(&dev_eui(1))
        .await
        .expect("lookup")
        .expect("meter 1");
    // Its readings go on after the swap (in the workshop): not the supply point's.
    let rows = daily(one.id, "2026-04-20T22:00:00Z", 45, 10_000, 100);
    env.store.insert_readings(&rows).await.expect("insert");
}

async fn replace_as(api: &TestApi, key: &str, supply_point: &Value, body: Value) -> Reply {
    let bytes = serde_json::to_vec(&body).expect("json");
    request(
        api.addr,
        "POST",
        &format!("/api/v1/supply-points/{supply_point}/replace"),
        Some(key),
        Some(&bytes),
        &[],
    )
    .await
}

async fn consumption(api: &TestApi, supply_point: &Value, query: &str) -> Vec<Value> {
    let r = api
        .get_uncached(&format!(
            "/api/v1/supply-points/{supply_point}/consumption?{query}"
        ))
        .await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()["items"].as_array().expect("items").clone()
}

async fn replaced_mid_month(dialect: Dialect) {
    let Some(api) = TestApi::start_seeded(
        dialect,
        |s| s.utility.time_zone = "Europe/Madrid".to_owned(),
        |env| Box::pin(seed(env)),
    )
    .await
    else {
        return;
    };
    let (one, two, new) = (dev_eui(1), dev_eui(2), dev_eui(20));
    let details = api.get(&format!("/api/v1/meters/{one}")).await.json();
    let sp = details["installation"]["supplyPointId"].clone();
    let month = "period=month&from=2026-05-01&to=2026-06-01";
    // Cached before the replacement: it must not be served after it.
    let before = api
        .get(&format!("/api/v1/supply-points/{sp}/consumption?{month}"))
        .await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.json()["items"][0]["gasLitres"], 3_100);

    // Refused: a viewer; a new meter already registered or in service elsewhere; no meter;
    // bad registers; an unknown supply point.
    let device = json!({"serial": serial(20).to_string(), "devEui": new,
                        "bodyNumber": 20, "productionDate": "2026-02-01"});
    let swap = "2026-05-15T10:00:00Z";
    let r = replace_as(
        &api,
        &api.viewer,
        &sp,
        json!({"install": device, "reason": "x"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    for (body, status, field) in [
        (json!({"meter": two, "reason": "x"}), 409, "meter"),
        (json!({"meter": one, "reason": "x"}), 409, "meter"),
        (
            json!({"install": {"serial": serial(2).to_string(), "devEui": new,
                   "bodyNumber": 20, "productionDate": "2026-02-01"}, "reason": "x"}),
            409,
            "install.serial",
        ),
        (
            json!({"install": device, "at": swap, "finalRegister": 10_000, "reason": "x"}),
            400,
            "finalRegister",
        ),
        (
            json!({"install": device, "at": "2026-03-01T00:00:00Z", "reason": "x"}),
            400,
            "at",
        ),
        (
            json!({"install": device, "meter": two, "reason": "x"}),
            400,
            "meter",
        ),
    ] {
        let r = replace_as(&api, &api.operator, &sp, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(problem(&r)["field"], field, "{body}");
    }
    let r = replace_as(
        &api,
        &api.operator,
        &json!(999),
        json!({"install": device, "reason": "x"}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // The swap, on May 15th at noon in Madrid: meter 1's final register is its last reading
    // (May 15th at midnight: 12 400 l), the new meter's opening register 5 l.
    let r = replace_as(
        &api,
        &api.operator,
        &sp,
        json!({"install": device, "at": swap, "openingRegister": 5,
               "reason": "display faulty; replaced on site"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = r.json();
    assert_eq!(
        (&done["oldMeter"], &done["newMeter"]),
        (&json!(one), &json!(new))
    );
    assert_eq!(done["supplyPointId"], sp);
    assert_eq!(done["closed"]["closingRegister"], 12_400);
    assert_eq!(
        at(done["closed"]["removedAt"].as_str().expect("removedAt")),
        at(swap)
    );
    assert_eq!(done["opened"]["openingRegister"], 5);
    assert_eq!(
        at(done["opened"]["installedAt"].as_str().expect("installedAt")),
        at(swap)
    );
    assert!(done["opened"]["removedAt"].is_null());

    // The meters' states, details and histories.
    let old = api.get(&format!("/api/v1/meters/{one}")).await.json();
    assert_eq!(old["serviceState"], "removed");
    assert!(old["installation"].is_null(), "{old}");
    let put_in = api.get(&format!("/api/v1/meters/{new}")).await.json();
    assert_eq!(put_in["serviceState"], "in_service");
    assert_eq!(put_in["installation"]["supplyPointId"], sp);
    assert_eq!(
        (&put_in["userId"], &put_in["region"], &put_in["mode"]),
        (&json!("user-1"), &json!("north"), &json!("prepaid"))
    );
    for (meter, key, value) in [(&one, "replacedBy", &new), (&new, "replaces", &one)] {
        let h = api
            .get(&format!("/api/v1/meters/{meter}/history"))
            .await
            .json();
        let last = &h["items"][0];
        assert_eq!(last["action"], "replace", "{h}");
        assert_eq!(last["actor"], "operator-key");
        assert_eq!(last["after"][key], value.as_str());
        assert_eq!(last["reason"], "display faulty; replaced on site");
    }

    // The new meter reads from 20 l on May 16th (Madrid), 10 l a day.
    let new_id = api
        .env
        .store
        .meter_by_dev_eui(&new)
        .await
        .expect("lookup")
        .expect("the new meter")
        .id;
    let rows = daily(new_id, "2026-05-15T22:00:00Z", 25, 20, 10);
    api.env.store.insert_readings(&rows).await.expect("insert");

    // May: meter 1 from 11 000 (May 1st) to 12 400 (the swap), the new meter from 5 to 180
    // (June 1st): 1 400 + 175 litres.
    let may = consumption(&api, &sp, month).await;
    let [row] = may.as_slice() else {
        panic!("one month: {may:?}");
    };
    let parts = row["meters"].as_array().expect("meters");
    let part = |i: usize, f: &str| parts[i][f].as_i64().unwrap_or_else(|| panic!("{f}: {row}"));
    assert_eq!(parts.len(), 2, "{row}");
    assert_eq!(
        (&parts[0]["devEui"], &parts[1]["devEui"]),
        (&json!(one), &json!(new))
    );
    assert_eq!(
        (
            part(0, "gasRegisterStart"),
            part(0, "gasRegisterEnd"),
            part(0, "gasLitres")
        ),
        (11_000, 12_400, 1_400)
    );
    assert_eq!(
        (
            part(1, "gasRegisterStart"),
            part(1, "gasRegisterEnd"),
            part(1, "gasLitres")
        ),
        (5, 180, 175)
    );
    assert_eq!(
        row["gasLitres"],
        part(0, "gasLitres") + part(1, "gasLitres")
    );
    assert_eq!(row["gasLitres"], 1_575);
    assert_eq!(row["quality"], "measured");
    assert_eq!(
        (&row["gasRegisterStart"], &row["gasRegisterEnd"]),
        (&json!(11_000), &json!(180))
    );
    // The cached answer from before the swap was dropped.
    let again = api
        .get(&format!("/api/v1/supply-points/{sp}/consumption?{month}"))
        .await;
    assert_eq!(again.json()["items"][0]["gasLitres"], 1_575);
    // The day of the swap: nothing on the old meter since midnight, 15 l on the new one.
    let day = consumption(&api, &sp, "period=day&from=2026-05-15&to=2026-05-16").await;
    assert_eq!(day[0]["gasLitres"], 15, "{day:?}");
    // The meters' own figures are unchanged: meter 1's May holds its workshop readings too.
    let own = api
        .get_uncached(&format!("/api/v1/meters/{one}/consumption?{month}"))
        .await
        .json();
    assert_eq!(own["items"][0]["gasLitres"], 3_100);

    // Meter 1 back from the workshop by the command line, in the new meter's place on May
    // 20th: the new meter's final register is its last reading (May 20th: 60 l).
    let out = api.cli(&[
        "meters",
        "replace",
        &new,
        "--meter",
        &serial(1).to_string(),
        "--opening-register",
        "13_000",
        "--at",
        "2026-05-20T10:00:00Z",
        "--reason",
        "original meter repaired",
    ]);
    assert!(!out.status.success(), "13_000 is not a number");
    let out = api.cli(&[
        "meters",
        "replace",
        &new,
        "--meter",
        &serial(1).to_string(),
        "--opening-register",
        "13000",
        "--at",
        "2026-05-20T10:00:00Z",
        "--reason",
        "original meter repaired",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the replacement as JSON");
    assert_eq!(printed["closed"]["closingRegister"], 60);
    assert_eq!(printed["newMeter"], one.as_str());
    let h = api
        .get_uncached(&format!("/api/v1/meters/{one}/history"))
        .await
        .json();
    assert_eq!(h["items"][0]["actor"], "cli");
    assert_eq!(h["items"][0]["action"], "replace");
    // Three meters' parts now: 1 400 + (60 − 5) + (meter 1 from 13 000 on May 20th to
    // 14 100 on June 1st).
    let may = consumption(&api, &sp, month).await;
    let parts = may[0]["meters"].as_array().expect("meters");
    assert_eq!(parts.len(), 3, "{may:?}");
    assert_eq!(parts[2]["gasLitres"], 1_100);
    assert_eq!(may[0]["gasLitres"], 1_400 + 55 + 1_100);
    let out = api.cli(&["meters", "replace", &one, "--meter", &two, "--reason", "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in service"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_replaced_mid_month_bills_both_parts_on_sqlite() {
    replaced_mid_month(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_replaced_mid_month_bills_both_parts_on_postgres() {
    replaced_mid_month(Dialect::Postgres).await;
}
