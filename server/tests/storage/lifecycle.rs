//! A meter's life in the store: migration 0009 over a populated database of the schema before
//! it, and meters out of service left out of the silence sweep, schedules and region commands.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use meterhub::storage::Store;
use meterhub::storage::lifecycle::{Actor, RetireOutcome, ServiceState};
use meterhub::storage::meters::LinkUpdate;
use meterhub::storage::schedules::{ScheduleSpec, Scope};
use test_support::{Dialect, PostgresDb, SqliteDb};

use crate::{at, meter, migrations_before, now, stores};

/// The rows a database of the schema before 0009 holds: two meters, one with two readings
/// older than its registration and an open alarm.
macro_rules! populate {
    ($pool:expr) => {{
        let pool = $pool;
        sqlx::query("INSERT INTO regions (id, name, created_at) VALUES ('north', 'North', $1)")
            .bind(at("2026-07-01T00:00:00Z"))
            .execute(pool)
            .await
            .expect("region");
        for (n, created) in [(1, "2026-07-20T10:00:00Z"), (2, "2026-07-21T10:00:00Z")] {
            let m = meter(n);
            sqlx::query(
                "INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, \
                 region_id, usage_type, mode, production_date, status, \
                 reporting_interval_minutes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'north', 'commercial', 'credit', $6, 'active', \
                 1440, $7, $7)",
            )
            .bind(&m.dev_eui)
            .bind(&m.serial)
            .bind(m.body_number)
            .bind(&m.user_id)
            .bind(&m.application_id)
            .bind(NaiveDate::from_ymd_opt(2026, 3, 15).expect("date"))
            .bind(at(created))
            .execute(pool)
            .await
            .expect("meter");
        }
        let first: i64 = sqlx::query_scalar("SELECT id FROM meters WHERE dev_eui = $1")
            .bind(meter(1).dev_eui)
            .fetch_one(pool)
            .await
            .expect("id");
        for (time, litres) in [
            ("2026-07-19T06:00:00Z", 1_000_i64),
            ("2026-07-20T06:00:00Z", 1_500),
        ] {
            sqlx::query(
                "INSERT INTO readings (meter_id, reading_time, received_at, gas_volume_litres, \
                 valve, door, battery_millivolts, battery_percent, flags) \
                 VALUES ($1, $2, $2, $3, 1, 0, 3600, 90, 0)",
            )
            .bind(first)
            .bind(at(time))
            .bind(litres)
            .execute(pool)
            .await
            .expect("reading");
        }
        sqlx::query(
            "INSERT INTO alarms (meter_id, kind, source, raised_at, state, received_at) \
             VALUES ($1, 'leak', 'meter', $2, 'open', $2)",
        )
        .bind(first)
        .bind(at("2026-07-20T07:00:00Z"))
        .execute(pool)
        .await
        .expect("alarm");
    }};
}

async fn migrated_from_before(store: &Store) {
    store
        .migrate(now())
        .await
        .expect("migrate to the newest schema");
    let one = store
        .meter_by_dev_eui(&meter(1).dev_eui)
        .await
        .expect("read")
        .expect("meter 1");
    let two = store
        .meter_by_dev_eui(&meter(2).dev_eui)
        .await
        .expect("read")
        .expect("meter 2");
    for m in [&one, &two] {
        assert_eq!(m.service_state, ServiceState::InService, "{}", m.dev_eui);
        assert!(
            store
                .meter_history(m.id, i64::MAX, 10)
                .await
                .expect("history")
                .is_empty()
        );
    }
    let i1 = store
        .open_installation(one.id)
        .await
        .expect("read")
        .expect("meter 1 is installed");
    // Open since its first reading, older than its registration, from that reading's register.
    assert_eq!(i1.installed_at, at("2026-07-19T06:00:00Z"));
    assert_eq!(i1.opening_register, Some(1_000));
    assert_eq!((i1.removed_at, i1.closing_register), (None, None));
    assert_eq!(
        (
            i1.region_id.as_str(),
            i1.user_id.as_str(),
            i1.usage_type.as_str()
        ),
        ("north", "user-1", "commercial")
    );
    assert_eq!(i1.address, None);
    let i2 = store
        .open_installation(two.id)
        .await
        .expect("read")
        .expect("meter 2 is installed");
    assert_eq!(i2.installed_at, at("2026-07-21T10:00:00Z"));
    assert_eq!(i2.opening_register, None);
    assert_ne!(i1.supply_point_id, i2.supply_point_id);
    // A meter installed after the migration gets a supply point of its own.
    store
        .register_meter(&meter(3), now())
        .await
        .expect("install");
    let three = store
        .meter_by_dev_eui(&meter(3).dev_eui)
        .await
        .expect("read")
        .expect("meter 3");
    let i3 = store
        .open_installation(three.id)
        .await
        .expect("read")
        .expect("meter 3 is installed");
    assert!(![i1.supply_point_id, i2.supply_point_id].contains(&i3.supply_point_id));
    assert_eq!(i3.installed_at, now());
    // The rows of the old schema are all still there.
    let readings = store
        .readings_for_meter(one.id, at("2026-07-01T00:00:00Z"), now(), 10)
        .await
        .expect("readings");
    assert_eq!(readings.len(), 2);
    assert_eq!(
        store
            .alarms(None, i64::MAX, 10)
            .await
            .expect("alarms")
            .len(),
        1
    );
}

#[tokio::test]
async fn migration_0009_puts_every_meter_of_a_populated_sqlite_database_at_a_supply_point() {
    let dir = migrations_before(Dialect::Sqlite, "0009");
    let db = SqliteDb::create_with_migrations(dir.path()).await;
    populate!(db.pool());
    let store = Store::connect(db.url(), 2).await.expect("connect");
    migrated_from_before(&store).await;
}

#[tokio::test]
async fn migration_0009_puts_every_meter_of_a_populated_postgres_database_at_a_supply_point() {
    let dir = migrations_before(Dialect::Postgres, "0009");
    let Some(db) = PostgresDb::create_with_migrations(dir.path()).await else {
        return;
    };
    populate!(db.pool());
    let store = Store::connect(db.url(), 2).await.expect("connect");
    migrated_from_before(&store).await;
}

fn actor(reason: &str) -> Actor {
    Actor {
        name: "test".into(),
        at: now(),
        reason: reason.into(),
    }
}

async fn link(store: &Store, meter_id: i64, overdue_at: DateTime<Utc>) {
    store
        .update_links(&[LinkUpdate {
            meter_id,
            last_seen_at: overdue_at - Duration::days(2),
            overdue_at,
            battery_millivolts: None,
            battery_percent: None,
            rssi: None,
            snr: None,
            application_id: None,
        }])
        .await
        .expect("link");
}

#[tokio::test]
async fn a_meter_out_of_service_gets_no_silence_alarm_schedule_or_region_command() {
    for f in stores().await {
        let store = &f.store;
        store
            .register_meter(&meter(1), now())
            .await
            .expect("install 1");
        store
            .register_meter(&meter(2), now())
            .await
            .expect("install 2");
        let one = store
            .meter_by_dev_eui(&meter(1).dev_eui)
            .await
            .expect("read")
            .expect("1");
        let two = store
            .meter_by_dev_eui(&meter(2).dev_eui)
            .await
            .expect("read")
            .expect("2");
        // Both overdue an hour ago.
        for m in [&one, &two] {
            link(store, m.id, now() - Duration::hours(1)).await;
        }
        let report = store
            .retire_meter(&two, RetireOutcome::Renovation, &actor("to the workshop"))
            .await
            .expect("retire");
        assert_eq!(report.meter_id, two.id);
        let closed = report.installation.expect("the installation it closed");
        assert_eq!(closed.removed_at, Some(now()));
        assert!(
            store
                .open_installation(two.id)
                .await
                .expect("read")
                .is_none()
        );
        let again = store
            .retire_meter(&two, RetireOutcome::Destruction, &actor("again"))
            .await;
        assert!(
            matches!(again, Err(meterhub::storage::Error::Conflict(_))),
            "{again:?}"
        );

        // Still transmitting on the workshop's shelf, and overdue again.
        link(store, two.id, now() - Duration::minutes(30)).await;
        let (silent, ()) = store.mark_silent(now(), 100, |_| ()).await.expect("sweep");
        let silent: Vec<i64> = silent.iter().map(|m| m.id).collect();
        assert_eq!(silent, [one.id], "only the meter in service is silent");
        let alarms = store
            .alarms(Some("open"), i64::MAX, 10)
            .await
            .expect("alarms");
        assert_eq!(
            alarms
                .iter()
                .map(|a| (a.meter_id, a.kind.as_str()))
                .collect::<Vec<_>>(),
            [(one.id, "noConnection")]
        );

        let routes = store.region_routes(None).await.expect("routes");
        assert_eq!(routes.iter().map(|r| r.0).collect::<Vec<_>>(), [one.id]);

        let schedule = store
            .create_schedule(
                &ScheduleSpec {
                    scope: Scope::Fleet,
                    tests: 1,
                    interval_minutes: 1440,
                    next_run_at: now() - Duration::minutes(1),
                    enabled: true,
                },
                "test",
                now(),
            )
            .await
            .expect("schedule");
        let frame = meterhub::downlink::CommandKind::SelfTest { tests: 1 }
            .frame()
            .expect("frame");
        let (run, ()) = store
            .run_schedule(&schedule, &frame, now() + Duration::days(1), now(), |_| ())
            .await
            .expect("run");
        let run = run.expect("the occurrence ran");
        assert_eq!(run.meters.iter().map(|m| m.0).collect::<Vec<_>>(), [one.id]);

        // Back from stock: in service again, at a new supply point, never heard there.
        store
            .register_meter(&meter(2), now())
            .await
            .expect("install 2 again");
        let two = store
            .meter_by_dev_eui(&meter(2).dev_eui)
            .await
            .expect("read")
            .expect("2");
        assert_eq!(two.service_state, ServiceState::InService);
        assert_eq!(two.status, "installed");
        let periods = store.installations(two.id).await.expect("installations");
        assert_eq!(periods.len(), 2);
        assert!(periods[0].removed_at.is_some() && periods[1].removed_at.is_none());
        assert_ne!(periods[0].supply_point_id, periods[1].supply_point_id);

        // Destroyed: final.
        store
            .retire_meter(&one, RetireOutcome::Destruction, &actor("broken seal"))
            .await
            .expect("destroy");
        let refused = store.register_meter(&meter(1), now()).await;
        assert!(
            matches!(&refused, Err(meterhub::storage::Error::Conflict(why)) if why.contains("destroyed")),
            "{refused:?}"
        );
        let history = store
            .meter_history(one.id, i64::MAX, 10)
            .await
            .expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].actor, "test");
        assert_eq!(history[0].reason, "broken seal");
        assert_eq!(
            store
                .final_report(one.id)
                .await
                .expect("report")
                .map(|r| r.outcome),
            Some(RetireOutcome::Destruction)
        );
    }
}
