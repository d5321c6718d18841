//! Bad input on every route: a 4xx problem JSON naming the field, never a 500.

use meterhub::api::routes::{Op, ROUTES};
use test_support::Dialect;

use crate::support::*;

/// (method, path, body, status, field) cases for a route; every route has at least one.
fn cases(op: Op, alarm: i64) -> Vec<(&'static str, String, Option<String>, u16, &'static str)> {
    let m = dev_eui(1);
    let get = |p: String, field| ("GET", p, None, 400, field);
    let post = |p: String, b: &str, field| ("POST", p, Some(b.to_owned()), 400, field);
    let visit = format!("/api/v1/meters/{m}/inspections");
    match op {
        Op::ListRegions => vec![get("/api/v1/regions?colour=red".into(), "colour")],
        Op::LatestReadings => vec![
            get(
                "/api/v1/regions/south/readings/latest?limit=abc".into(),
                "limit",
            ),
            get(
                "/api/v1/regions/south/readings/latest?cursor=%25%25".into(),
                "cursor",
            ),
        ],
        Op::SilentMeters => vec![
            get("/api/v1/connectivity?limit=5000".into(), "limit"),
            get("/api/v1/connectivity?cursor=bm9wZQ".into(), "cursor"),
        ],
        Op::ListMeters => vec![
            get("/api/v1/meters?limit=0".into(), "limit"),
            get("/api/v1/meters?status=broken".into(), "status"),
            get("/api/v1/meters?region=north&regoin=south".into(), "regoin"),
        ],
        Op::InstallMeter => vec![
            post("/api/v1/meters".into(), "{\"serial\": ", "body"),
            post("/api/v1/meters".into(), "[1, 2]", "body"),
            {
                let mut b = meter_body(20);
                b["serial"] = serde_json::json!("12261000012343");
                (
                    "POST",
                    "/api/v1/meters".into(),
                    Some(b.to_string()),
                    400,
                    "serial",
                )
            },
            {
                let mut b = meter_body(20);
                b["reportingIntervalMinutes"] = serde_json::json!(5);
                (
                    "POST",
                    "/api/v1/meters".into(),
                    Some(b.to_string()),
                    400,
                    "reportingIntervalMinutes",
                )
            },
            {
                let mut b = meter_body(20);
                b["colour"] = serde_json::json!("red");
                (
                    "POST",
                    "/api/v1/meters".into(),
                    Some(b.to_string()),
                    400,
                    "colour",
                )
            },
            (
                "POST",
                "/api/v1/meters".into(),
                Some(format!("{{\"userId\": \"{}\"}}", "x".repeat(70_000))),
                413,
                "body",
            ),
        ],
        Op::GetMeter => vec![get("/api/v1/meters/42".into(), "meter")],
        Op::ChangeMeter => {
            let p = format!("/api/v1/meters/{m}");
            let patch = |b: &str, field| ("PATCH", p.clone(), Some(b.to_owned()), 400, field);
            vec![
                patch(r#"{"reason": "x", "serial": "12261000012348"}"#, "serial"),
                patch(r#"{"reason": "x", "userId": null}"#, "userId"),
                patch(r#"{"reason": "x", "usageType": "farm"}"#, "usageType"),
                patch(
                    r#"{"reason": "x", "reportingIntervalMinutes": 5}"#,
                    "reportingIntervalMinutes",
                ),
                patch(
                    r#"{"reason": "x", "applicationId": "nope"}"#,
                    "applicationId",
                ),
                patch(
                    r#"{"reason": "x", "productionDate": "2026-02-30"}"#,
                    "productionDate",
                ),
                patch(r#"{"reason": "x", "bodyNumber": "many"}"#, "bodyNumber"),
                patch(r#"{"mode": "credit"}"#, "reason"),
                patch(r#"{"reason": "   ", "mode": "credit"}"#, "reason"),
                (
                    "PATCH",
                    "/api/v1/meters/42".into(),
                    Some(r#"{"reason": "x"}"#.to_owned()),
                    400,
                    "meter",
                ),
            ]
        }
        Op::MeterHistory => vec![
            get(format!("/api/v1/meters/{m}/history?cursor=eA"), "cursor"),
            get(format!("/api/v1/meters/{m}/history?limit=0"), "limit"),
            get("/api/v1/meters/xyz/history".into(), "meter"),
        ],
        Op::RetireMeter => {
            let p = format!("/api/v1/meters/{m}/retire");
            vec![
                post(
                    p.clone(),
                    r#"{"outcome": "recycling", "reason": "x"}"#,
                    "outcome",
                ),
                post(p.clone(), r#"{"outcome": "renovation"}"#, "reason"),
                post(
                    p.clone(),
                    r#"{"outcome": "renovation", "reason": ""}"#,
                    "reason",
                ),
                post(
                    p,
                    r#"{"outcome": "renovation", "reason": "x", "force": true}"#,
                    "force",
                ),
            ]
        }
        Op::DeleteReadings => {
            let del = |q: &str, field| {
                (
                    "DELETE",
                    format!("/api/v1/meters/{m}/readings?{q}"),
                    None,
                    400,
                    field,
                )
            };
            vec![
                del("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z&reason=x", "from"),
                del("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", "reason"),
                del("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&force=true&dryRun=true", "reason"),
                del("from=yesterday&to=2026-02-01T00:00:00Z&reason=x", "from"),
                del("from=2026-01-01T00:00:00Z&reason=x", "to"),
                del("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&dryRun=maybe", "dryRun"),
                (
                    "DELETE",
                    "/api/v1/meters/xyz/readings?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&reason=x".into(),
                    None,
                    400,
                    "meter",
                ),
            ]
        }
        Op::EraseCustomer => {
            let p = "/api/v1/customers/user-1/erase".to_owned();
            vec![
                post(p.clone(), r#"{"dryRun": false}"#, "reason"),
                post(p.clone(), r#"{"reason": "", "dryRun": false}"#, "reason"),
                post(p.clone(), r#"{"reason": "x", "force": true}"#, "force"),
                post(p.clone(), r#"{"reason": "x", "dryRun": "yes"}"#, "dryRun"),
                post(
                    "/api/v1/customers/%20/erase".into(),
                    r#"{"reason": "x"}"#,
                    "customer",
                ),
            ]
        }
        Op::DeleteAlarms => {
            let del = |q: &str, field| {
                (
                    "DELETE",
                    format!("/api/v1/meters/{m}/alarms?{q}"),
                    None,
                    400,
                    field,
                )
            };
            vec![
                del(
                    "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z&reason=x",
                    "from",
                ),
                del(
                    "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&reason=%20",
                    "reason",
                ),
                del(
                    "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&reason=x&force=true",
                    "force",
                ),
            ]
        }
        Op::ReplaceMeter => {
            let p = "/api/v1/supply-points/2/replace".to_owned();
            vec![
                post(
                    "/api/v1/supply-points/abc/replace".into(),
                    r#"{"meter": "0000000000000001", "reason": "x"}"#,
                    "supplyPoint",
                ),
                post(p.clone(), r#"{"reason": "x"}"#, "meter"),
                post(p.clone(), r#"{"meter": "xyz", "reason": "x"}"#, "meter"),
                post(
                    p.clone(),
                    &format!(r#"{{"meter": "{m}", "finalRegister": 4294967296, "reason": "x"}}"#),
                    "finalRegister",
                ),
                post(
                    p.clone(),
                    r#"{"install": {"serial": "12261000000001", "devEui": "a1b2c3d4e5000077", "bodyNumber": 1, "productionDate": "2026-01-01"}, "reason": "x"}"#,
                    "install.serial",
                ),
                post(p.clone(), &format!(r#"{{"meter": "{m}"}}"#), "reason"),
                post(
                    p,
                    &format!(r#"{{"meter": "{m}", "reason": "x", "colour": 1}}"#),
                    "colour",
                ),
            ]
        }
        Op::SupplyPointConsumption => vec![
            get("/api/v1/supply-points/0/consumption".into(), "supplyPoint"),
            get(
                "/api/v1/supply-points/1/consumption?period=year".into(),
                "period",
            ),
            get(
                "/api/v1/supply-points/1/consumption?from=2026-05-01&to=2026-04-01".into(),
                "from",
            ),
            get(
                "/api/v1/supply-points/1/consumption?limit=0".into(),
                "limit",
            ),
        ],
        Op::MeterFinalReport => vec![
            get(
                format!("/api/v1/meters/{m}/final-report?format=pdf"),
                "format",
            ),
            get("/api/v1/meters/xyz/final-report".into(), "meter"),
        ],
        Op::MeterReadings => vec![
            get(
                format!("/api/v1/meters/{m}/readings?from=yesterday"),
                "from",
            ),
            get(
                format!(
                    "/api/v1/meters/{m}/readings?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"
                ),
                "from",
            ),
            get("/api/v1/meters/xyz/readings".into(), "meter"),
        ],
        Op::MeterConsumption => vec![
            get(
                format!("/api/v1/meters/{m}/consumption?period=year"),
                "period",
            ),
            get(
                format!("/api/v1/meters/{m}/consumption?from=2026-13-01"),
                "from",
            ),
            get(
                format!("/api/v1/meters/{m}/consumption?from=2026-05-01&to=2026-04-01"),
                "from",
            ),
            get(
                format!("/api/v1/meters/{m}/consumption?to=0001-01-01"),
                "to",
            ),
            get(
                format!("/api/v1/meters/{m}/consumption?cursor=eA"),
                "cursor",
            ),
            get("/api/v1/meters/xyz/consumption".into(), "meter"),
        ],
        Op::ConsumptionRevisions => vec![
            get(
                format!("/api/v1/meters/{m}/consumption/revisions?cursor=eA"),
                "cursor",
            ),
            get(
                format!("/api/v1/meters/{m}/consumption/revisions?limit=0"),
                "limit",
            ),
            get("/api/v1/meters/xyz/consumption/revisions".into(), "meter"),
        ],
        Op::RegionConsumption => vec![
            get(
                "/api/v1/regions/south/consumption?period=fortnight".into(),
                "period",
            ),
            get(
                "/api/v1/regions/south/consumption?from=2026-05-01&to=2026-05-01".into(),
                "from",
            ),
            get(
                "/api/v1/regions/south/consumption?cursor=eA".into(),
                "cursor",
            ),
        ],
        Op::ExportConsumption => vec![
            get("/api/v1/consumption".into(), "month"),
            get("/api/v1/consumption?month=2026-5".into(), "month"),
            get("/api/v1/consumption?month=2026-13".into(), "month"),
            get(
                "/api/v1/consumption?month=2026-05&period=year".into(),
                "period",
            ),
            get("/api/v1/consumption?month=2026-05&limit=0".into(), "limit"),
            get(
                "/api/v1/consumption?month=2026-05&cursor=eA".into(),
                "cursor",
            ),
        ],
        Op::MeterCommands => vec![get(
            format!("/api/v1/meters/{m}/commands?cursor=eA"),
            "cursor",
        )],
        Op::SendCommand => {
            let c = format!("/api/v1/meters/{m}/commands");
            vec![
                post(c.clone(), r#"{"kind": "teleport"}"#, "kind"),
                post(c.clone(), r#"{"kind": "selfTest"}"#, "tests"),
                post(
                    c.clone(),
                    r#"{"kind": "selfTest", "tests": ["battery", "x"]}"#,
                    "tests[1]",
                ),
                post(
                    c.clone(),
                    r#"{"kind": "setReportingInterval", "minutes": 5}"#,
                    "minutes",
                ),
                post(
                    c.clone(),
                    r#"{"kind": "readNow", "tests": ["battery"]}"#,
                    "tests",
                ),
                post(c.clone(), r#"{"kind": "readNow", "colour": 1}"#, "colour"),
                post(
                    c.clone(),
                    r#"{"kind": "clockPeriodicity", "period": 16}"#,
                    "period",
                ),
                post(
                    c,
                    r#"{"kind": "readNow", "expiresInMinutes": 0}"#,
                    "expiresInMinutes",
                ),
                post(
                    "/api/v1/meters/xyz/commands".into(),
                    r#"{"kind": "readNow"}"#,
                    "meter",
                ),
            ]
        }
        Op::SendRegionCommand => vec![post(
            "/api/v1/regions/south/commands".into(),
            r#"{"kind": "valveClose"}"#,
            "kind",
        )],
        Op::GetCommand => vec![get("/api/v1/commands/not-a-uuid".into(), "command")],
        Op::ListSchedules => vec![get("/api/v1/self-test-schedules?limit=0".into(), "limit")],
        Op::CreateSchedule => {
            let c = "/api/v1/self-test-schedules".to_owned();
            vec![
                post(
                    c.clone(),
                    r#"{"scope": "galaxy", "tests": ["battery"], "intervalMinutes": 60}"#,
                    "scope",
                ),
                post(
                    c.clone(),
                    r#"{"scope": "region", "tests": ["battery"], "intervalMinutes": 60}"#,
                    "region",
                ),
                post(
                    c.clone(),
                    r#"{"scope": "region", "region": "mars", "tests": ["battery"], "intervalMinutes": 60}"#,
                    "region",
                ),
                post(
                    c.clone(),
                    r#"{"scope": "meter", "meter": "42", "tests": ["battery"], "intervalMinutes": 60}"#,
                    "meter",
                ),
                post(
                    c.clone(),
                    r#"{"scope": "fleet", "tests": ["battery"], "intervalMinutes": 5}"#,
                    "intervalMinutes",
                ),
                post(
                    c,
                    r#"{"scope": "fleet", "tests": ["nope"], "intervalMinutes": 60}"#,
                    "tests[0]",
                ),
            ]
        }
        Op::GetSchedule => vec![get("/api/v1/self-test-schedules/abc".into(), "schedule")],
        Op::UpdateSchedule => vec![(
            "PUT",
            "/api/v1/self-test-schedules/1".into(),
            Some(r#"{"scope": "fleet", "tests": [], "intervalMinutes": 60}"#.to_owned()),
            400,
            "tests",
        )],
        Op::DeleteSchedule => vec![(
            "DELETE",
            "/api/v1/self-test-schedules/-3".into(),
            None,
            400,
            "schedule",
        )],
        Op::MeterSelfTests => vec![get(format!("/api/v1/meters/{m}/self-tests?to=soon"), "to")],
        Op::MeterInspections => vec![get(
            format!("/api/v1/meters/{m}/inspections?limit=-1"),
            "limit",
        )],
        Op::RecordInspection => vec![
            post(
                visit.clone(),
                r#"{"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew"}"#,
                "outcome",
            ),
            post(
                visit.clone(),
                r#"{"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "fine"}"#,
                "outcome",
            ),
            post(
                visit.clone(),
                r#"{"visitedAt": "monday", "inspector": "crew", "outcome": "ok"}"#,
                "visitedAt",
            ),
            post(
                visit.clone(),
                r#"{"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "ok", "alarmId": 999999}"#,
                "alarmId",
            ),
            post(
                visit,
                r#"{"visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "ok", "alarmId": "seven"}"#,
                "alarmId",
            ),
        ],
        Op::ListAlarms => vec![
            get("/api/v1/alarms?state=closed".into(), "state"),
            get("/api/v1/alarms?meter=42".into(), "meter"),
            get("/api/v1/alarms?from=x".into(), "from"),
        ],
        Op::GetAlarm => vec![get("/api/v1/alarms/abc".into(), "alarm")],
        Op::AcknowledgeAlarm => vec![(
            "POST",
            "/api/v1/alarms/-1/acknowledge".into(),
            None,
            400,
            "alarm",
        )],
        Op::ClearAlarm => vec![(
            "POST",
            format!("/api/v1/alarms/{alarm}/clear?force=yes"),
            None,
            400,
            "force",
        )],
        Op::ListQuarantine => vec![get("/api/v1/quarantine?reason=nope".into(), "reason")],
        Op::ReplayQuarantined => vec![(
            "POST",
            "/api/v1/quarantine/x/replay".into(),
            None,
            400,
            "id",
        )],
        Op::ListKeys => vec![get("/api/v1/keys?all=1".into(), "all")],
        Op::CreateKey => vec![
            post(
                "/api/v1/keys".into(),
                r#"{"name": "x", "role": "god"}"#,
                "role",
            ),
            post("/api/v1/keys".into(), r#"{"role": "admin"}"#, "name"),
            post(
                "/api/v1/keys".into(),
                r#"{"name": " ", "role": "admin"}"#,
                "name",
            ),
        ],
        Op::RevokeKey => vec![("DELETE", "/api/v1/keys/not-a-uuid".into(), None, 400, "key")],
        Op::OpenApi => vec![get("/api/v1/openapi.json?format=yaml".into(), "format")],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_a_4xx_problem_naming_the_field() {
    let Some(f) = fixture(Dialect::Sqlite).await else {
        return;
    };
    let api = &f.api;
    for route in ROUTES {
        for (method, path, body, status, field) in cases(route.op, f.alarms[0]) {
            let r = request(
                api.addr,
                method,
                &path,
                Some(&api.admin),
                body.as_deref().map(str::as_bytes),
                &[],
            )
            .await;
            assert_eq!(r.status, status, "{method} {path}: {}", r.text());
            let p = problem(&r);
            assert_eq!(p["field"], field, "{method} {path}: {p}");
        }
    }
    f.api.stop().await;
}
