//! A meter's life through HTTP and the command line: a change (caches of both regions), its
//! history, a renovation with its final report and a later install, a destruction, and the
//! same through `meterhub meters update` and `retire`.

use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

async fn patch(api: &TestApi, key: &str, meter: &str, body: Value) -> Reply {
    let bytes = serde_json::to_vec(&body).expect("json");
    request(
        api.addr,
        "PATCH",
        &format!("/api/v1/meters/{meter}"),
        Some(key),
        Some(&bytes),
        &[],
    )
    .await
}

fn dev_euis(page: &Reply) -> Vec<String> {
    page.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["devEui"].as_str().expect("devEui").to_owned())
        .collect()
}

fn actions(history: &Reply) -> Vec<String> {
    history.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["action"].as_str().expect("action").to_owned())
        .collect()
}

async fn life(dialect: Dialect) {
    let Some(f) = fixture(dialect).await else {
        return;
    };
    let api = &f.api;
    let one = dev_eui(1);

    // Both regions' lists are cached before the change (once the scheduler has closed the
    // new meters' billing periods, a write to each of them).
    let south = "/api/v1/meters?region=south";
    let north = "/api/v1/meters?region=north";
    for path in [south, north] {
        api.get_until_cached(path).await;
    }
    assert!(dev_euis(&api.get(south).await).contains(&one));
    assert!(!dev_euis(&api.get(north).await).contains(&one));

    // A change by an operator: only the fields named, validated and normalised as an install.
    let r = patch(
        api,
        &api.operator,
        &one,
        json!({"userId": "user-77", "region": "north", "mode": "Prepaid",
               "address": "1 Main St", "reason": "new tenant"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = r.json();
    assert_eq!(
        (&m["userId"], &m["region"], &m["mode"], &m["usageType"]),
        (
            &json!("user-77"),
            &json!("north"),
            &json!("prepaid"),
            &json!("residential")
        )
    );
    // Both regions' cached answers changed.
    assert!(!dev_euis(&api.get(south).await).contains(&one));
    assert!(dev_euis(&api.get(north).await).contains(&one));
    let details = api.get(&format!("/api/v1/meters/{one}")).await.json();
    assert_eq!(details["serviceState"], "in_service");
    let installed = details["installation"].clone();
    assert_eq!(installed["address"], "1 Main St");
    assert_eq!(installed["regionId"], "north");
    assert_eq!(installed["userId"], "user-77");

    // The same values again change nothing and add nothing to the history.
    let r = patch(
        api,
        &api.operator,
        &one,
        json!({"userId": "user-77", "reason": "again"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Bad input is refused by field, the meter unchanged.
    for (body, field) in [
        (json!({"reason": "x", "bodyNumber": -1}), "bodyNumber"),
        (json!({"reason": "x", "region": null}), "region"),
        (
            json!({"reason": "x", "devEui": "a1b2c3d4e5000009"}),
            "devEui",
        ),
        (json!({"reason": "x", "usageType": "farm"}), "usageType"),
        (json!({"reason": " ", "mode": "credit"}), "reason"),
        (json!({"mode": "credit"}), "reason"),
    ] {
        let r = patch(api, &api.operator, &one, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(problem(&r)["field"], field, "{body}");
    }

    let history_of =
        |meter: String| async move { api.get(&format!("/api/v1/meters/{meter}/history")).await };
    let h = history_of(one.clone()).await;
    assert_eq!(actions(&h), ["change", "install"]);
    let change = &h.json()["items"][0];
    assert_eq!(change["actor"], "operator-key");
    assert_eq!(change["reason"], "new tenant");
    assert_eq!(
        change["before"],
        json!({"userId": "user-1", "region": "south", "mode": "credit", "address": null})
    );
    assert_eq!(
        change["after"],
        json!({"userId": "user-77", "region": "north", "mode": "prepaid", "address": "1 Main St"})
    );
    // Keyset pages, newest first.
    let page = api
        .get(&format!("/api/v1/meters/{one}/history?limit=1"))
        .await
        .json();
    assert_eq!(page["items"][0]["action"], "change");
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let next = api
        .get(&format!(
            "/api/v1/meters/{one}/history?limit=1&cursor={cursor}"
        ))
        .await
        .json();
    assert_eq!(next["items"][0]["action"], "install");

    // A command still waiting when the meter is retired.
    let r = api
        .post(
            &format!("/api/v1/meters/{one}/commands"),
            Some(json!({"kind": "readNow"})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let command = r.json()["id"].as_str().expect("id").to_owned();

    // Renovation: the final report, the command failed, the installation closed.
    let retire = |meter: String, body: Value| async move {
        api.post(&format!("/api/v1/meters/{meter}/retire"), Some(body))
            .await
    };
    let r = retire(
        one.clone(),
        json!({"outcome": "renovation", "reason": "display faulty"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["outcome"], "renovation");
    assert_eq!(report["retiredBy"], "admin-key");
    assert_eq!(report["lastRegisters"]["gasVolumeLitres"], 3000);
    let open: Vec<&str> = report["openAlarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    for kind in ["magneticTamper", "movement", "leak"] {
        assert!(open.contains(&kind), "{open:?}");
    }
    // With it, any the rules queued (a clock resynchronisation after the old readings).
    let outstanding = report["outstandingCommands"].as_array().expect("commands");
    let ours = outstanding
        .iter()
        .find(|c| c["id"] == command.as_str())
        .unwrap_or_else(|| panic!("{command} in {outstanding:?}"));
    assert_eq!(ours["state"], "pending");
    assert_eq!(ours["kind"], "readNow");
    let closed = &report["installation"];
    assert_eq!(closed["supplyPointId"], installed["supplyPointId"]);
    assert_eq!(closed["closingRegister"], 3000);
    assert!(closed["removedAt"].is_string(), "{closed}");
    let c = api.get(&format!("/api/v1/commands/{command}")).await.json();
    assert_eq!(c["state"], "failed");
    assert!(
        c["error"]
            .as_str()
            .is_some_and(|e| e.contains("display faulty")),
        "{c}"
    );
    let served = api.get(&format!("/api/v1/meters/{one}/final-report")).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json(), report);
    let details = api.get(&format!("/api/v1/meters/{one}")).await.json();
    assert_eq!(details["serviceState"], "removed");
    assert!(details["installation"].is_null(), "{details}");
    // Its readings stay.
    let readings = api
        .get(&format!("/api/v1/meters/{one}/readings"))
        .await
        .json();
    assert_eq!(readings["items"].as_array().map(Vec::len), Some(3));
    // Out of service: no command, no second retirement.
    let r = api
        .post(
            &format!("/api/v1/meters/{one}/commands"),
            Some(json!({"kind": "readNow"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = retire(
        one.clone(),
        json!({"outcome": "destruction", "reason": "again"}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());

    // Back from the workshop: installed again, at a new supply point.
    let r = api.post("/api/v1/meters", Some(meter_body(1))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["serviceState"], "in_service");
    let details = api.get(&format!("/api/v1/meters/{one}")).await.json();
    assert_ne!(
        details["installation"]["supplyPointId"],
        installed["supplyPointId"]
    );
    assert!(details["installation"]["removedAt"].is_null());
    let h = history_of(one.clone()).await;
    assert_eq!(actions(&h), ["reinstall", "retire", "change", "install"]);
    assert_eq!(h.json()["items"][1]["reason"], "display faulty");

    // Destruction through the command line: final.
    let three = dev_eui(3);
    let out = api.cli(&[
        "meters",
        "retire",
        &three,
        "--outcome",
        "destruction",
        "--reason",
        "crushed in a flood",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    assert_eq!(printed["outcome"], "destruction");
    assert_eq!(printed["retiredBy"], "cli");
    let r = api.post("/api/v1/meters", Some(meter_body(3))).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(problem(&r)["field"], "devEui");
    let r = patch(
        api,
        &api.operator,
        &three,
        json!({"mode": "prepaid", "reason": "x"}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = api.get_uncached(&format!("/api/v1/meters/{three}")).await;
    assert_eq!(r.json()["serviceState"], "destroyed");
    let out = api.cli(&[
        "meters",
        "retire",
        &three,
        "--outcome",
        "renovation",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is destroyed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A change through the command line, by serial, audited as `cli`.
    let four = serial(4).to_string();
    let out = api.cli(&[
        "meters",
        "update",
        &four,
        "--user-id",
        "user-404",
        "--reporting-interval-minutes",
        "60",
        "--reason",
        "typo in the contract",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the meter as JSON");
    assert_eq!(printed["userId"], "user-404");
    assert_eq!(printed["reportingIntervalMinutes"], 60);
    let h = api
        .get_uncached(&format!("/api/v1/meters/{}/history", dev_eui(4)))
        .await
        .json();
    assert_eq!(h["items"][0]["actor"], "cli");
    assert_eq!(
        h["items"][0]["after"],
        json!({"userId": "user-404", "reportingIntervalMinutes": 60})
    );
    let out = api.cli(&[
        "meters",
        "update",
        &four,
        "--usage-type",
        "farm",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--usage-type"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_is_changed_retired_installed_again_and_destroyed_on_sqlite() {
    life(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_is_changed_retired_installed_again_and_destroyed_on_postgres() {
    life(Dialect::Postgres).await;
}
