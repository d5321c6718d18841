//! The auth matrix: every route × no key / an unknown key / each weaker role / the right role.

use meterhub::api::auth::Role;
use meterhub::api::routes::{Op, ROUTES};
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

/// A request that succeeds for a caller with the right role.
pub fn example(op: Op, f: &Fixture, spare_key: &str) -> (String, Option<Value>) {
    let m = dev_eui(1);
    let visit = json!({"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "ok"});
    match op {
        Op::ListRegions => ("/api/v1/regions".into(), None),
        Op::LatestReadings => ("/api/v1/regions/south/readings/latest".into(), None),
        Op::SilentMeters => ("/api/v1/connectivity".into(), None),
        Op::ListMeters => ("/api/v1/meters".into(), None),
        Op::InstallMeter => ("/api/v1/meters".into(), Some(meter_body(1))),
        Op::GetMeter => (format!("/api/v1/meters/{m}"), None),
        Op::MeterReadings => (format!("/api/v1/meters/{m}/readings"), None),
        Op::MeterCommands => (format!("/api/v1/meters/{m}/commands"), None),
        Op::MeterSelfTests => (format!("/api/v1/meters/{m}/self-tests"), None),
        Op::MeterInspections => (format!("/api/v1/meters/{m}/inspections"), None),
        Op::RecordInspection => (format!("/api/v1/meters/{m}/inspections"), Some(visit)),
        Op::ListAlarms => ("/api/v1/alarms".into(), None),
        Op::GetAlarm => (format!("/api/v1/alarms/{}", f.alarms[0]), None),
        Op::AcknowledgeAlarm => (format!("/api/v1/alarms/{}/acknowledge", f.alarms[1]), None),
        Op::ClearAlarm => (format!("/api/v1/alarms/{}/clear", f.alarms[2]), None),
        Op::ListQuarantine => ("/api/v1/quarantine".into(), None),
        Op::ReplayQuarantined => (format!("/api/v1/quarantine/{}/replay", f.quarantined), None),
        Op::ListKeys => ("/api/v1/keys".into(), None),
        Op::CreateKey => (
            "/api/v1/keys".into(),
            Some(json!({"name": "x", "role": "viewer"})),
        ),
        Op::RevokeKey => (format!("/api/v1/keys/{spare_key}"), None),
        Op::OpenApi => ("/api/v1/openapi.json".into(), None),
    }
}

async fn matrix(dialect: Dialect) {
    let Some(f) = fixture(dialect).await else {
        return;
    };
    let api = &f.api;
    // The quarantined meter is registered, so that its replay succeeds.
    assert_eq!(
        api.post("/api/v1/meters", Some(meter_body(9))).await.status,
        201
    );
    let spare = meterhub::api::auth::generate("spare", Role::Viewer, chrono::Utc::now());
    api.env.store.insert_api_key(&spare.row).await.expect("key");
    let spare_id = spare.row.id.to_string();
    for route in ROUTES {
        let (path, body) = example(route.op, &f, &spare_id);
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let call = |key: Option<String>| {
            let (path, body) = (path.clone(), body.clone());
            async move {
                request(
                    api.addr,
                    route.method,
                    &path,
                    key.as_deref(),
                    body.as_deref(),
                    &[],
                )
                .await
            }
        };
        let Some(needed) = route.role else {
            assert_eq!(call(None).await.status, 200, "{} is public", route.path);
            continue;
        };
        let r = call(None).await;
        assert_eq!(
            r.status, 401,
            "{} {} without a key",
            route.method, route.path
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        problem(&r);
        let r = call(Some("mh_not-a-key".into())).await;
        assert_eq!(
            r.status, 401,
            "{} {} with an unknown key",
            route.method, route.path
        );
        for weaker in Role::ALL.into_iter().filter(|r| *r < needed) {
            let r = call(Some(api.key(weaker).to_owned())).await;
            assert_eq!(
                r.status, 403,
                "{} {} as {weaker:?}",
                route.method, route.path
            );
            problem(&r);
        }
        let r = call(Some(api.key(needed).to_owned())).await;
        assert!(
            (200..300).contains(&r.status),
            "{} {} as {needed:?}: {} {}",
            route.method,
            route.path,
            r.status,
            r.text()
        );
    }
    f.api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_401_403_or_2xx_by_key_and_role_on_sqlite() {
    matrix(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_401_403_or_2xx_by_key_and_role_on_postgres() {
    matrix(Dialect::Postgres).await;
}
