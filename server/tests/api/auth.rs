//! The auth matrix: every route × no key / an unknown key / each weaker role / the right role.

use meterhub::api::auth::Role;
use meterhub::api::routes::{Op, ROUTES};
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

/// Rows the examples act on besides the fixture's.
pub struct Extra {
    /// A key to revoke.
    pub spare_key: String,
    /// A command to read.
    pub command: uuid::Uuid,
    /// A schedule to read, change and delete.
    pub schedule: i64,
}

/// A request that succeeds for a caller with the right role.
pub fn example(op: Op, f: &Fixture, extra: &Extra) -> (String, Option<Value>) {
    let m = dev_eui(1);
    let schedule = json!({"scope": "region", "region": "south", "tests": ["battery"], "intervalMinutes": 1440});
    let visit = json!({"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "ok"});
    match op {
        Op::ListRegions => ("/api/v1/regions".into(), None),
        Op::LatestReadings => ("/api/v1/regions/south/readings/latest".into(), None),
        Op::SilentMeters => ("/api/v1/connectivity".into(), None),
        Op::ListMeters => ("/api/v1/meters".into(), None),
        Op::InstallMeter => ("/api/v1/meters".into(), Some(meter_body(1))),
        Op::GetMeter => (format!("/api/v1/meters/{m}"), None),
        Op::ChangeMeter => (
            format!("/api/v1/meters/{m}"),
            Some(json!({"mode": "prepaid", "reason": "prepaid contract"})),
        ),
        Op::MeterHistory => (format!("/api/v1/meters/{m}/history"), None),
        // Meter 3: meter 1 stays in service for the routes after these.
        Op::RetireMeter => (
            format!("/api/v1/meters/{}/retire", dev_eui(3)),
            Some(json!({"outcome": "renovation", "reason": "workshop"})),
        ),
        Op::MeterFinalReport => (format!("/api/v1/meters/{}/final-report", dev_eui(3)), None),
        // Meter 2's supply point (the fixture registers meters 1 to 4, each at a supply
        // point of its own, numbered in order), by a meter new to meterhub.
        Op::ReplaceMeter => (
            "/api/v1/supply-points/2/replace".into(),
            Some(json!({
                "install": {
                    "serial": serial(20).to_string(),
                    "devEui": dev_eui(20),
                    "bodyNumber": 20,
                    "productionDate": "2026-02-01"
                },
                "reason": "display faulty"
            })),
        ),
        Op::SupplyPointConsumption => ("/api/v1/supply-points/1/consumption".into(), None),
        Op::MeterReadings => (format!("/api/v1/meters/{m}/readings"), None),
        // Ranges long before the fixture's data: nothing deleted, the write path run.
        Op::DeleteReadings => (
            format!(
                "/api/v1/meters/{m}/readings?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z&reason=test"
            ),
            None,
        ),
        Op::EraseCustomer => (
            "/api/v1/customers/user-4/erase".into(),
            Some(json!({"reason": "erasure request"})),
        ),
        Op::DeleteAlarms => (
            format!(
                "/api/v1/meters/{m}/alarms?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z&reason=test"
            ),
            None,
        ),
        Op::MeterCommands => (format!("/api/v1/meters/{m}/commands"), None),
        Op::MeterConsumption => (format!("/api/v1/meters/{m}/consumption?period=day"), None),
        Op::ConsumptionRevisions => (format!("/api/v1/meters/{m}/consumption/revisions"), None),
        Op::RegionConsumption => ("/api/v1/regions/south/consumption?period=week".into(), None),
        Op::ExportConsumption => ("/api/v1/consumption?month=2026-05".into(), None),
        Op::SendCommand => (
            format!("/api/v1/meters/{m}/commands"),
            Some(json!({"kind": "readNow"})),
        ),
        Op::SendRegionCommand => (
            "/api/v1/regions/south/commands".into(),
            Some(json!({"kind": "selfTest", "tests": ["battery", "valve"]})),
        ),
        Op::GetCommand => (format!("/api/v1/commands/{}", extra.command), None),
        Op::ListSchedules => ("/api/v1/self-test-schedules".into(), None),
        Op::CreateSchedule => ("/api/v1/self-test-schedules".into(), Some(schedule)),
        Op::GetSchedule => (
            format!("/api/v1/self-test-schedules/{}", extra.schedule),
            None,
        ),
        Op::UpdateSchedule => (
            format!("/api/v1/self-test-schedules/{}", extra.schedule),
            Some(schedule),
        ),
        Op::DeleteSchedule => (
            format!("/api/v1/self-test-schedules/{}", extra.schedule),
            None,
        ),
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
        Op::RevokeKey => (format!("/api/v1/keys/{}", extra.spare_key), None),
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
    let meter = api
        .env
        .store
        .meter_by_dev_eui(&dev_eui(1))
        .await
        .expect("lookup")
        .expect("meter 1");
    let command = api
        .server
        .as_ref()
        .and_then(|s| s.app.as_ref())
        .expect("running")
        .downlinks()
        .enqueue(meterhub::downlink::CommandRequest {
            meter_id: meter.id,
            kind: meterhub::downlink::CommandKind::SendInfo,
            requested_by: "test".into(),
            expires_in: None,
        })
        .await
        .expect("command")
        .id;
    let schedule = api
        .env
        .store
        .create_schedule(
            &meterhub::storage::schedules::ScheduleSpec {
                scope: meterhub::storage::schedules::Scope::Fleet,
                tests: 1,
                interval_minutes: 1440,
                next_run_at: chrono::Utc::now() + chrono::Duration::days(1),
                enabled: true,
            },
            "test",
            chrono::Utc::now(),
        )
        .await
        .expect("schedule")
        .id;
    let extra = Extra {
        spare_key: spare.row.id.to_string(),
        command,
        schedule,
    };
    for route in ROUTES {
        let (path, body) = example(route.op, &f, &extra);
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
