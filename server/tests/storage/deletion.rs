//! Migration 0011 over a database holding revisions (SQLite rebuilds `billing_revisions` to
//! take the new reason): the revisions stay, and a deletion's revision is numbered after them.

use meterhub::storage::Store;
use meterhub::storage::billing_periods::{StoredFigures, StoredRevision};
use meterhub::storage::lifecycle::{Actor, AuditAction, NewAudit};
use test_support::{Dialect, PostgresDb, SqliteDb};

use crate::{at, meter, migrations_before, now};

/// A meter with a closed day (2026-07-20) and a revision of it for a late reading.
macro_rules! populate {
    ($pool:expr) => {{
        let pool = $pool;
        sqlx::query("INSERT INTO regions (id, name, created_at) VALUES ('north', 'North', $1)")
            .bind(at("2026-07-01T00:00:00Z"))
            .execute(pool)
            .await
            .expect("region");
        let m = meter(1);
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
        .bind(chrono::NaiveDate::from_ymd_opt(2026, 3, 15).expect("date"))
        .bind(at("2026-07-01T00:00:00Z"))
        .execute(pool)
        .await
        .expect("meter");
        let id: i64 = sqlx::query_scalar("SELECT id FROM meters WHERE dev_eui = $1")
            .bind(&m.dev_eui)
            .fetch_one(pool)
            .await
            .expect("id");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 7, 20).expect("date");
        sqlx::query(
            "INSERT INTO billing_periods (meter_id, kind, first_day, period_start, period_end, \
             quality, readings, gas_quality, gas_litres, closed_at) \
             VALUES ($1, 'day', $2, $3, $4, 'incomplete', 1, 'incomplete', NULL, $5)",
        )
        .bind(id)
        .bind(day)
        .bind(at("2026-07-20T00:00:00Z"))
        .bind(at("2026-07-21T00:00:00Z"))
        .bind(at("2026-07-24T00:00:00Z"))
        .execute(pool)
        .await
        .expect("closed day");
        sqlx::query(
            "INSERT INTO billing_revisions (meter_id, kind, first_day, revision, revised_at, \
             reason, reading_time, old_quality, quality, readings, gas_quality, gas_litres) \
             VALUES ($1, 'day', $2, 1, $3, 'lateReading', $4, 'incomplete', 'measured', 2, \
             'measured', 500)",
        )
        .bind(id)
        .bind(day)
        .bind(at("2026-07-25T00:00:00Z"))
        .bind(at("2026-07-21T00:00:00Z"))
        .execute(pool)
        .await
        .expect("revision");
        id
    }};
}

async fn migrated_from_before(store: &Store, meter_id: i64) {
    store
        .migrate(now())
        .await
        .expect("migrate to the newest schema");
    let before = store
        .revisions_of_meter(meter_id, 0, 10)
        .await
        .expect("revisions");
    assert_eq!(before.len(), 1);
    assert_eq!(
        (before[0].revision, before[0].reason.as_str()),
        (1, "lateReading")
    );
    assert_eq!(before[0].figures.gas_litres, Some(500));
    let revision = StoredRevision {
        id: 0,
        meter_id,
        kind: "day".into(),
        first_day: before[0].first_day,
        revision: 0,
        revised_at: now(),
        reason: "readingsDeleted".into(),
        reading_time: at("2026-07-20T00:00:00Z"),
        old_quality: "measured".into(),
        old_gas_litres: Some(500),
        old_energy_wh: None,
        figures: StoredFigures {
            quality: "invalid".into(),
            readings: 0,
            gas_quality: Some("invalid".into()),
            gas_litres: None,
            gas_register_start: None,
            gas_register_end: None,
            energy_quality: None,
            energy_wh: None,
            energy_register_start: None,
            energy_register_end: None,
        },
    };
    let who = Actor {
        name: "test".into(),
        at: now(),
        reason: "sensor fault".into(),
    };
    let audit = NewAudit {
        meter_id,
        action: AuditAction::DeleteReadings,
        before: serde_json::json!({"readings": 0}),
        after: serde_json::json!({"readings": 0}),
    };
    let range = (at("2026-07-20T00:00:00Z"), at("2026-07-21T00:00:00Z"));
    let ((deleted, stored), ()) = store
        .delete_readings(meter_id, range, &[revision], (&audit, &who), |_| ())
        .await
        .expect("delete");
    assert_eq!(deleted, 0);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].revision, 2, "numbered after the period's latest");
    let after = store
        .revisions_of_meter(meter_id, 0, 10)
        .await
        .expect("revisions");
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[0], "the old revision is kept as it was");
    assert_eq!(after[1].reason, "readingsDeleted");
    let history = store
        .meter_history(meter_id, i64::MAX, 10)
        .await
        .expect("history");
    assert_eq!(history[0].action, AuditAction::DeleteReadings);
    assert!(
        history[0].after.contains("day 2026-07-20 revision 2"),
        "{}",
        history[0].after
    );
}

#[tokio::test]
async fn migration_0011_keeps_the_revisions_of_a_populated_sqlite_database() {
    let dir = migrations_before(Dialect::Sqlite, "0011");
    let db = SqliteDb::create_with_migrations(dir.path()).await;
    let id = populate!(db.pool());
    let store = Store::connect(db.url(), 2).await.expect("connect");
    migrated_from_before(&store, id).await;
}

#[tokio::test]
async fn migration_0011_keeps_the_revisions_of_a_populated_postgres_database() {
    let dir = migrations_before(Dialect::Postgres, "0011");
    let Some(db) = PostgresDb::create_with_migrations(dir.path()).await else {
        return;
    };
    let id = populate!(db.pool());
    let store = Store::connect(db.url(), 2).await.expect("connect");
    migrated_from_before(&store, id).await;
}
