//! Every query the API issues uses an index: on PostgreSQL with 10 000 meters × 30 days of
//! readings, `auto_explain` reports the plan of each statement the server runs while the API is
//! called, and none may scan `readings`, `alarms` or the billing tables sequentially; nor may
//! the scheduler's billing steps (closing periods, revising them).

#[path = "../bridge/support.rs"]
#[allow(dead_code)]
mod bridge;
#[path = "../api/contract.rs"]
#[allow(dead_code)]
mod contract;
#[path = "../api/support.rs"]
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use meterhub::api::auth::{Role, generate};
use serde_json::Value;
use test_support::Dialect;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use support::*;

/// Collects the messages of PostgreSQL notices (auto_explain's plans).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut Option<String>);

impl Visit for Message<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            *self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        let mut m = None;
        event.record(&mut Message(&mut m));
        if let (Some(m), Ok(mut all)) = (m, self.0.lock()) {
            all.push(m);
        }
    }
}

/// Sequential scans of `readings` (any partition), `alarms` or a billing table in a plan.
fn seq_scans(plan: &Value, out: &mut Vec<String>) {
    if plan["Node Type"] == "Seq Scan" {
        let rel = plan["Relation Name"].as_str().unwrap_or("");
        if rel.starts_with("readings") || rel == "alarms" || rel.starts_with("billing_") {
            out.push(rel.to_owned());
        }
    }
    if let Some(children) = plan["Plans"].as_array() {
        for c in children {
            seq_scans(c, out);
        }
    }
}

const SETUP: &[&str] = &[
    "INSERT INTO regions (id, name, created_at) SELECT r, r, now() FROM unnest(ARRAY['north','south','east','west']) r",
    "INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, region_id, usage_type, mode, \
     production_date, status, reporting_interval_minutes, last_seen_at, battery_millivolts, battery_percent, rssi, snr, \
     overdue_at, created_at, updated_at) \
     SELECT lpad(to_hex(n), 16, '0'), lpad(n::text, 14, '0'), n, 'user-' || n, '3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23', \
     CASE WHEN n = 10001 THEN 'north' ELSE (ARRAY['north','south','east','west'])[1 + n % 4] END, 'residential', \
     'credit', DATE '2026-01-01', 'active', 1440, \
     now() - interval '1 hour' - (CASE WHEN n % 100 = 0 THEN interval '3 days' ELSE interval '0' END), 3600, 90, -80, 7.5, \
     now() + interval '47 hours' - (CASE WHEN n % 100 = 0 THEN interval '3 days' ELSE interval '0' END), now(), now() \
     FROM generate_series(1, 10001) n",
    "INSERT INTO readings (meter_id, reading_time, received_at, gas_volume_litres, valve, door, battery_millivolts, \
     battery_percent, flags, f_cnt) \
     SELECT m.id, date_trunc('day', now()) - d * interval '1 day', now(), 1000 * (30 - d), 1, 0, 3600, 90, 0, 30 - d \
     FROM meters m CROSS JOIN generate_series(0, 29) d",
    "INSERT INTO alarms (meter_id, kind, source, raised_at, value, state, received_at) \
     SELECT m.id, (ARRAY['magneticTamper','movement','leak','lowBattery'])[1 + (m.id + k) % 4], 'meter', \
     now() - (k * 7 + m.id % 7) * interval '1 day' - m.id * interval '1 second', 1, \
     CASE WHEN m.id % 50 = 0 AND k = 0 THEN 'open' ELSE 'cleared' END, now() \
     FROM meters m CROSS JOIN generate_series(0, 3) k",
    "INSERT INTO self_tests (meter_id, meter_time, received_at, tests_run, tests_failed, battery_loaded_millivolts, \
     battery_rest_millivolts, valve_travel_ms, metrology_deviation_centi_percent, internal_temperature_centi_celsius) \
     SELECT id, now() - interval '2 days', now(), 3, 0, 3300, 3500, 900, 5, 2000 FROM meters",
    "INSERT INTO inspections (meter_id, visited_at, inspector, outcome, notes, created_at) \
     SELECT id, now() - interval '1 day', 'crew', 'ok', '', now() FROM meters WHERE id % 10 = 0",
    "INSERT INTO quarantine (received_at, topic, payload, digest, reason, detail, dev_eui) \
     SELECT now(), 't', '\\x7b7d'::bytea, sha256(n::text::bytea), \
     (ARRAY['unregistered_device','malformed_json'])[1 + n % 2], 'd', NULL FROM generate_series(1, 2000) n",
    // Closed days (up to five days ago) and last month for every meter but the newest (which
    // the scheduler closes with its earlier days), a revision of each meter's month, and late
    // readings waiting for the scheduler.
    "INSERT INTO billing_periods (meter_id, kind, first_day, period_start, period_end, quality, readings, \
     gas_quality, gas_litres, gas_register_start, gas_register_end, closed_at) \
     SELECT m.id, 'day', d::date, d, d + interval '1 day', 'measured', 1, 'measured', 1000, 0, 1000, now() \
     FROM meters m CROSS JOIN generate_series(date_trunc('day', now()) - interval '29 days', \
     date_trunc('day', now()) - interval '5 days', interval '1 day') d WHERE m.id <= 10000",
    "INSERT INTO billing_periods (meter_id, kind, first_day, period_start, period_end, quality, readings, \
     gas_quality, gas_litres, gas_register_start, gas_register_end, closed_at) \
     SELECT id, 'month', (date_trunc('month', now()) - interval '1 month')::date, \
     date_trunc('month', now()) - interval '1 month', date_trunc('month', now()), 'incomplete', 20, \
     'incomplete', NULL, 0, NULL, now() FROM meters WHERE id <= 10000",
    "INSERT INTO billing_revisions (meter_id, kind, first_day, revision, revised_at, reason, reading_time, \
     old_quality, quality, readings, gas_quality, gas_litres, gas_register_start, gas_register_end) \
     SELECT id, 'month', (date_trunc('month', now()) - interval '1 month')::date, 1, now(), 'lateReading', \
     date_trunc('month', now()), 'incomplete', 'measured', 21, 'measured', 30000, 0, 30000 FROM meters \
     WHERE id <= 10000",
    "INSERT INTO billing_late_readings (meter_id, reading_time, received_at) \
     SELECT id, date_trunc('day', now()) - interval '10 days', now() FROM meters WHERE id % 5 = 0",
    // Each meter installed at a supply point of its own (numbered as the meter) for 400 days.
    "INSERT INTO supply_points (id, region_id, user_id, usage_type, first_meter_id, created_at, \
     updated_at) SELECT id, region_id, user_id, usage_type, id, now() - interval '400 days', now() \
     FROM meters",
    "INSERT INTO installations (supply_point_id, meter_id, installed_at) \
     SELECT id, id, now() - interval '400 days' FROM meters",
    "ANALYZE",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_query_scans_readings_or_alarms_sequentially() {
    let notices = Notices::default();
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(notices.clone()),
    );
    let Some(env) = Env::new(Dialect::Postgres).await else {
        return;
    };
    let meterhub::storage::Store::Postgres(pool) = &env.store else {
        panic!("a PostgreSQL store");
    };
    for sql in SETUP {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .expect("name");
    // Every connection the server opens from now on reports its plans as notices.
    for setting in [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_level = 'notice'",
        "auto_explain.log_format = 'json'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{db}\" SET {setting}"
        )))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{setting}: {e}"));
    }
    let key = generate("plans", Role::Admin, Utc::now());
    env.store.insert_api_key(&key.row).await.expect("key");
    let server = Server::start(env.settings(&format!("plans-{}", uuid::Uuid::new_v4()))).await;
    let addr = server.app.as_ref().expect("running").http_addr();

    let meter = format!("{:016x}", 5_001);
    let month = (Utc::now() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let this_month = Utc::now().format("%Y-%m");
    let last_month = (Utc::now().date_naive() - chrono::Months::new(1)).format("%Y-%m");
    let week =
        (Utc::now() - chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let paths = [
        "/api/v1/regions".to_owned(),
        "/api/v1/regions/south/readings/latest".to_owned(),
        "/api/v1/connectivity?region=north".to_owned(),
        "/api/v1/connectivity".to_owned(),
        "/api/v1/meters?region=east&limit=1000".to_owned(),
        "/api/v1/meters?userId=user-77".to_owned(),
        "/api/v1/meters?status=silent".to_owned(),
        format!("/api/v1/meters/{meter}"),
        format!("/api/v1/meters/{:014}", 5_001),
        format!("/api/v1/meters/{meter}/readings?from={month}"),
        format!("/api/v1/meters/{meter}/commands"),
        format!("/api/v1/meters/{meter}/consumption?period=day"),
        format!("/api/v1/meters/{meter}/consumption?period=month"),
        format!("/api/v1/meters/{meter}/consumption/revisions"),
        "/api/v1/supply-points/5001/consumption?period=day".to_owned(),
        "/api/v1/supply-points/5001/consumption?period=month".to_owned(),
        format!("/api/v1/consumption?month={last_month}"),
        "/api/v1/regions/south/consumption?period=day".to_owned(),
        "/api/v1/regions/south/consumption?period=month".to_owned(),
        // A closed month of a region whose every meter is closed: summed by the database.
        format!(
            "/api/v1/regions/south/consumption?period=month&from={last_month}-01&to={this_month}-01"
        ),
        // Not every meter of `north` is closed: the newest is computed from its readings.
        format!(
            "/api/v1/regions/north/consumption?period=month&from={last_month}-01&to={this_month}-01"
        ),
        format!(
            "/api/v1/meters/{meter}/consumption?period=month&from={last_month}-01&to={this_month}-01"
        ),
        format!("/api/v1/consumption?month={this_month}"),
        format!("/api/v1/consumption?month={this_month}&region=east&period=week"),
        format!("/api/v1/meters/{meter}/self-tests"),
        format!("/api/v1/meters/{meter}/inspections"),
        format!("/api/v1/meters/{meter}/history"),
        "/api/v1/alarms".to_owned(),
        "/api/v1/alarms?state=open".to_owned(),
        "/api/v1/alarms?kind=leak".to_owned(),
        "/api/v1/alarms?region=west".to_owned(),
        format!("/api/v1/alarms?meter={meter}"),
        format!("/api/v1/alarms?from={week}"),
        "/api/v1/alarms/1".to_owned(),
        "/api/v1/quarantine?reason=malformed_json".to_owned(),
        "/api/v1/quarantine".to_owned(),
    ];
    // The billing run's CSV, streamed from one cursor over the whole fleet or a region.
    let csv_paths = [
        format!("/api/v1/consumption?month={this_month}"),
        format!("/api/v1/consumption?month={this_month}&region=west&period=day"),
        format!("/api/v1/consumption?month={last_month}&period=day"),
        // A closed month: from `billing_periods` alone.
        format!("/api/v1/consumption?month={last_month}"),
    ];
    let mut failures = Vec::new();
    let mut plans = 0;
    let requests = paths
        .iter()
        .map(|p| (p, false))
        .chain(csv_paths.iter().map(|p| (p, true)));
    for (path, csv) in requests {
        notices.0.lock().expect("lock").clear();
        let r = if csv {
            let headers = [("Accept", "text/csv"), ("Cache-Control", "no-cache")];
            request(addr, "GET", path, Some(&key.secret), None, &headers).await
        } else {
            get_at(addr, &key.secret, path, true).await
        };
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        plans += check_plans(&notices, pool, path, &mut failures).await;
    }
    // The scheduler's billing steps, on a store whose connections report their plans: the
    // closing of each kind's next chunk, and the revision of closed periods late readings
    // touched.
    let store = meterhub::storage::Store::connect(env.db.url(), 2)
        .await
        .expect("a second store");
    let calendar = meterhub::billing::Calendar::default();
    notices.0.lock().expect("lock").clear();
    for kind in meterhub::billing::PeriodKind::ALL {
        meterhub::billing::closing::next_closing(&store, &calendar, kind, Utc::now(), 2_000)
            .await
            .expect("closing");
    }
    let revising = meterhub::billing::closing::next_revisions(&store, &calendar, Utc::now(), 500)
        .await
        .expect("revising");
    if let Some(r) = revising {
        store
            .revise(&r.revisions, &r.done, |_| ())
            .await
            .expect("revise");
    }
    let scheduler_plans = check_plans(&notices, pool, "scheduler", &mut failures).await;
    assert!(
        scheduler_plans >= 4,
        "only {scheduler_plans} plans of the scheduler's steps"
    );
    assert!(
        plans >= paths.len() + csv_paths.len(),
        "only {plans} plans reported: is auto_explain installed?"
    );
    assert!(
        failures.is_empty(),
        "sequential scans:\n{}",
        failures.join("\n")
    );
    server.stop().await;
}

/// Checks the plans reported since the notices were last cleared; returns how many.
async fn check_plans(
    notices: &Notices,
    pool: &sqlx::PgPool,
    path: &str,
    failures: &mut Vec<String>,
) -> usize {
    let seen: Vec<String> = std::mem::take(&mut *notices.0.lock().expect("lock"));
    let mut plans = 0;
    for n in seen {
        let Some(start) = n.find('{') else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&n[start..]) else {
            continue;
        };
        plans += 1;
        let mut scans = Vec::new();
        seq_scans(&v["Plan"], &mut scans);
        // An empty partition (a month without readings) is scanned in no time, and the
        // planner rightly prefers that to its index; what matters is a table with rows.
        let mut costly = Vec::new();
        for rel in scans {
            let pages: i32 = sqlx::query_scalar("SELECT relpages FROM pg_class WHERE relname = $1")
                .bind(&rel)
                .fetch_one(pool)
                .await
                .expect("relpages");
            if pages > 0 {
                costly.push(rel);
            }
        }
        let scans = costly;
        if !scans.is_empty() {
            failures.push(format!("{path}: {scans:?} in {}", v["Query Text"]));
        }
    }
    plans
}
