use meterhub::storage::Store;
use meterhub::storage::readings::StoredReading;
use test_support::{Dialect, TestDb};

use crate::{at, meter, now};

#[tokio::test]
async fn partitions_are_created_ahead_and_rows_in_default_are_moved_first() {
    let Some(db) = TestDb::create(Dialect::Postgres).await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("connect");
    let report = store
        .migrate(now())
        .await
        .expect("migrate")
        .expect("postgres reports");
    assert_eq!(report.created.len(), 15, "{report:?}");
    assert_eq!(
        report.created.last().map(String::as_str),
        Some("readings_y2026m08")
    );

    store
        .register_meter(&meter(1), now())
        .await
        .expect("register");
    let id = store
        .meter_by_dev_eui(&meter(1).dev_eui)
        .await
        .expect("q")
        .expect("m")
        .id;
    // A reading for a month without a partition lands in DEFAULT.
    let stray = StoredReading {
        meter_id: id,
        reading_time: at("2027-03-05T00:00:00Z"),
        received_at: now(),
        gas_volume_litres: Some(1),
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
    };
    store
        .insert_readings(std::slice::from_ref(&stray))
        .await
        .expect("insert");
    let Store::Postgres(pool) = &store else {
        unreachable!("postgres store")
    };
    let table: String = sqlx::query_scalar("SELECT tableoid::regclass::text FROM readings")
        .fetch_one(pool)
        .await
        .expect("query");
    assert_eq!(table, "readings_default");

    let report = store
        .ensure_partitions(at("2027-03-01T00:00:00Z"))
        .await
        .expect("partition job");
    assert_eq!(report.moved, 1);
    assert!(
        report.created.contains(&"readings_y2027m03".to_owned()),
        "{report:?}"
    );
    let table: String = sqlx::query_scalar("SELECT tableoid::regclass::text FROM readings")
        .fetch_one(pool)
        .await
        .expect("query");
    assert_eq!(table, "readings_y2027m03");
    let rows = store
        .readings_for_meter(
            id,
            at("2027-03-01T00:00:00Z"),
            at("2027-04-01T00:00:00Z"),
            10,
        )
        .await
        .expect("read");
    assert_eq!(rows, vec![stray]);
    // A second run finds nothing to do.
    let again = store
        .ensure_partitions(at("2027-03-01T00:00:00Z"))
        .await
        .expect("job");
    assert_eq!(again, Default::default());
}

#[tokio::test]
async fn sqlite_needs_no_partitions() {
    let db = TestDb::create(Dialect::Sqlite)
        .await
        .expect("sqlite never skips");
    let store = Store::connect(db.url(), 2).await.expect("connect");
    assert_eq!(store.migrate(now()).await.expect("migrate"), None);
    assert_eq!(
        store.ensure_partitions(now()).await.expect("no-op"),
        Default::default()
    );
}

/// Creating partitions while others read the whole table never deadlocks: a reader holding
/// the parent and waiting for DEFAULT would deadlock with a job that upgrades its lock on the
/// parent after locking DEFAULT.
#[tokio::test]
async fn creating_partitions_while_readers_scan_never_deadlocks() {
    let Some(db) = TestDb::create(Dialect::Postgres).await else {
        return;
    };
    let store = Store::connect(db.url(), 6).await.expect("connect");
    store.migrate(now()).await.expect("migrate");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, stop) = (store.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.count_readings().await.expect("a read never fails");
                reads += 1;
            }
            reads
        }));
    }
    // Each step forward in time creates the next month's partition.
    for month in 1..=24 {
        let later = now() + chrono::Duration::days(31 * month);
        store
            .ensure_partitions(later)
            .await
            .expect("partitions created without a deadlock");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
}
