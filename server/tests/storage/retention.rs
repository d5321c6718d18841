//! Retention on both stores: a dry run reports exactly what the real run then removes, whole
//! months of readings go on PostgreSQL and single rows on SQLite, and a closed billing period
//! keeps its figures once its readings are gone.

use chrono::NaiveDate;
use meterhub::config::RetentionSettings;
use meterhub::retention;
use meterhub::storage::billing_periods::{ClosedPeriod, StoredFigures};
use meterhub::storage::lifecycle::{Actor, AuditAction, NewAudit};
use meterhub::storage::quarantine::NewQuarantined;
use meterhub::storage::readings::StoredReading;
use meterhub::storage::{Dialect, Store};

use crate::{at, meter, now, stores};

fn reading(meter_id: i64, time: &str) -> StoredReading {
    StoredReading {
        meter_id,
        reading_time: at(time),
        received_at: at(time),
        gas_volume_litres: Some(1_000),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: None,
        gas_pressure_pa: None,
        valve: 1,
        door: 0,
        battery_millivolts: 3600,
        battery_percent: 80,
        flags: 0,
        f_cnt: None,
    }
}

/// Two meters with readings from 2025-10 to 2026-07, a closed 2025-11 month, quarantined
/// messages and audit rows old and new. Returns the meters' ids.
async fn populate(store: &Store) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in [1, 2] {
        store
            .register_meter(&meter(n), now())
            .await
            .expect("register");
        ids.push(
            store
                .meter_by_dev_eui(&meter(n).dev_eui)
                .await
                .expect("query")
                .expect("meter")
                .id,
        );
    }
    let mut rows = Vec::new();
    for &id in &ids {
        for time in [
            "2025-10-15T00:00:00Z",
            "2025-11-15T00:00:00Z",
            "2025-12-15T00:00:00Z",
            // Before the cutoff, but in the cutoff's month: SQLite removes it, PostgreSQL
            // keeps its month until all of it is older.
            "2026-01-02T00:00:00Z",
            "2026-02-15T00:00:00Z",
            "2026-07-15T00:00:00Z",
        ] {
            rows.push(reading(id, time));
        }
    }
    store.insert_readings(&rows).await.expect("readings");
    let figures = StoredFigures {
        quality: "measured".into(),
        readings: 1,
        gas_quality: Some("measured".into()),
        gas_litres: Some(42),
        gas_register_start: Some(1_000),
        gas_register_end: Some(1_042),
        energy_quality: None,
        energy_wh: None,
        energy_register_start: None,
        energy_register_end: None,
    };
    store
        .close_periods(
            &[ClosedPeriod {
                meter_id: ids[0],
                kind: "month".into(),
                first_day: NaiveDate::from_ymd_opt(2025, 11, 1).expect("date"),
                period_start: at("2025-11-01T00:00:00Z"),
                period_end: at("2025-12-01T00:00:00Z"),
                figures,
                closed_at: at("2025-12-04T00:00:00Z"),
            }],
            |_| (),
        )
        .await
        .expect("close");
    let old = ["2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"];
    let new = ["2026-07-01T00:00:00Z"];
    let quarantined: Vec<NewQuarantined> = old
        .iter()
        .chain(&new)
        .enumerate()
        .map(|(i, t)| NewQuarantined {
            received_at: at(t),
            topic: format!("application/x/device/y/event/up/{i}"),
            payload: vec![u8::try_from(i).unwrap_or(0)],
            reason: "malformed_json".into(),
            detail: "test".into(),
            dev_eui: None,
        })
        .collect();
    store.quarantine(&quarantined).await.expect("quarantine");
    for t in old.iter().chain(&new) {
        store
            .audit(
                &NewAudit {
                    meter_id: ids[1],
                    action: AuditAction::Change,
                    before: serde_json::json!({"mode": "credit"}),
                    after: serde_json::json!({"mode": "prepaid"}),
                },
                &Actor {
                    name: "cli".into(),
                    at: at(t),
                    reason: "test".into(),
                },
            )
            .await
            .expect("audit");
    }
    ids
}

#[tokio::test]
async fn a_dry_run_reports_what_the_run_removes_and_closed_figures_stay() {
    // now() is 2026-07-23T12:00Z: readings before 2026-01-04T12:00Z go, quarantine and
    // audit rows before 2026-06-23T12:00Z.
    let settings = RetentionSettings {
        readings_days: Some(200),
        quarantine_days: Some(30),
        audit_days: Some(30),
    };
    for f in stores().await {
        let store = &f.store;
        let ids = populate(store).await;
        let before = store
            .closed_of_meter(
                ids[0],
                "month",
                (
                    NaiveDate::from_ymd_opt(2025, 1, 1).expect("date"),
                    NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
                ),
            )
            .await
            .expect("closed");
        assert_eq!(before.len(), 1);

        let dry = retention::run(store, None, &settings, now(), true)
            .await
            .expect("dry run");
        let done = retention::run(store, None, &settings, now(), false)
            .await
            .expect("run");
        assert!(dry.dry_run && !done.dry_run);
        assert_eq!(dry.tables, done.tables, "{:?}", store.dialect());

        let tables: Vec<(&str, u64)> = done.tables.iter().map(|t| (t.table, t.rows)).collect();
        match store.dialect() {
            Dialect::Postgres => {
                assert_eq!(
                    tables,
                    [("readings", 6), ("quarantine", 2), ("meter_audit", 2)]
                );
                assert_eq!(done.tables[0].cutoff, at("2026-01-01T00:00:00Z"));
                // The migration made partitions from 2025-06 on (400 days before now).
                assert_eq!(
                    done.tables[0].partitions.as_deref(),
                    Some(
                        [
                            "readings_y2025m06",
                            "readings_y2025m07",
                            "readings_y2025m08",
                            "readings_y2025m09",
                            "readings_y2025m10",
                            "readings_y2025m11",
                            "readings_y2025m12",
                        ]
                        .map(String::from)
                        .as_slice()
                    )
                );
                assert_eq!(store.count_readings().await.expect("count"), 6);
            }
            Dialect::Sqlite => {
                assert_eq!(
                    tables,
                    [("readings", 8), ("quarantine", 2), ("meter_audit", 2)]
                );
                assert_eq!(done.tables[0].cutoff, at("2026-01-04T12:00:00Z"));
                assert_eq!(done.tables[0].partitions, None);
                assert_eq!(store.count_readings().await.expect("count"), 4);
            }
        }
        assert_eq!(done.tables[1].cutoff, at("2026-06-23T12:00:00Z"));
        let kept = store.quarantined(None, i64::MAX, 10).await.expect("list");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].received_at, at("2026-07-01T00:00:00Z"));
        let history = store
            .meter_history(ids[1], i64::MAX, 10)
            .await
            .expect("history");
        assert_eq!(history.len(), 1);

        // The closed month's figures stay, though its readings are gone.
        let after = store
            .closed_of_meter(
                ids[0],
                "month",
                (
                    NaiveDate::from_ymd_opt(2025, 1, 1).expect("date"),
                    NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
                ),
            )
            .await
            .expect("closed");
        assert_eq!(after, before);

        // Nothing left to remove: a second run (dry or not) finds nothing.
        let again = retention::run(store, None, &settings, now(), true)
            .await
            .expect("dry run");
        assert!(again.tables.iter().all(|t| t.rows == 0), "{again:?}");
        assert_eq!(
            again.tables[0]
                .partitions
                .as_ref()
                .map(Vec::len)
                .unwrap_or(0),
            0
        );
    }
}

#[tokio::test]
async fn nothing_is_removed_without_settings() {
    for f in stores().await {
        populate(&f.store).await;
        let report = retention::run(&f.store, None, &RetentionSettings::default(), now(), false)
            .await
            .expect("run");
        assert!(report.tables.is_empty());
        assert_eq!(f.store.count_readings().await.expect("count"), 12);
    }
}
