use std::time::Duration;

use chrono::Utc;
use firmware_protocol::Serial;
use meterhub::storage::Store;
use test_support::Dialect;

use crate::support::{Env, Publisher, Server, reading_frame, topic, up_event, wait_for};

const EACH: usize = 1_000;

/// Quarantined messages of a reason.
async fn quarantined(store: &Store, reason: &str) -> usize {
    store
        .quarantined(Some(reason), i64::MAX, 100_000)
        .await
        .expect("list")
        .len()
}

async fn malformed_events_are_quarantined_by_reason_while_good_ones_flow(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(20).await;
    let server = Server::start(env.settings(&format!("q-{}", uuid::Uuid::new_v4()))).await;
    let mut publisher =
        Publisher::connect(&env.broker, &format!("cs-{}", uuid::Uuid::new_v4())).await;
    let now = Utc::now();
    let (dev, serial) = meters[0].clone();
    let other_serial = meters[1].1;
    let unregistered = "ffffffffffff0001";
    let mut good = 0;
    for i in 0..EACH {
        let at = now - chrono::Duration::minutes(i as i64);
        let dedup = || uuid::Uuid::new_v4().to_string();
        let bad: [(String, Vec<u8>); 8] = [
            (topic(&dev, "up"), format!("{{not json {i}").into_bytes()),
            // Protobuf is binary: bytes that are not UTF-8.
            (
                topic(&dev, "up"),
                vec![0x0a, 0x24, 0xff, 0xfe, (i % 256) as u8, (i / 256) as u8],
            ),
            (topic(&dev, "bogus"), format!("{{\"n\": {i}}}").into_bytes()),
            (
                topic(&dev, "up"),
                up_event(&dev, &dedup(), i as u32, 1, &[0x01, 0x05, (i % 256) as u8]),
            ),
            (
                topic(&dev, "up"),
                up_event(&dev, &dedup(), i as u32, 99, &[1, 2, 3]),
            ),
            (
                topic(unregistered, "up"),
                up_event(
                    unregistered,
                    &dedup(),
                    i as u32,
                    1,
                    &reading_frame(serial, at, 1),
                ),
            ),
            (
                topic(&dev, "up"),
                up_event(
                    &dev,
                    &dedup(),
                    i as u32,
                    1,
                    &reading_frame(other_serial, at, 1),
                ),
            ),
            (
                topic(&dev, "up"),
                up_event(
                    &dev,
                    &dedup(),
                    i as u32,
                    1,
                    // Two years old: outside the storage window.
                    &reading_frame(serial, at - chrono::Duration::days(730), 1),
                ),
            ),
        ];
        for (t, p) in bad {
            publisher.publish(t, p).await;
        }
        // Good traffic interleaved: one reading of another meter per round.
        let (gdev, gserial) = &meters[2 + i % 18];
        let gat = now - chrono::Duration::hours(i as i64);
        publisher
            .publish(
                topic(gdev, "up"),
                up_event(
                    gdev,
                    &dedup(),
                    i as u32,
                    1,
                    &reading_frame(*gserial, gat, i as u32),
                ),
            )
            .await;
        good += 1;
    }
    publisher.flush().await;
    let metrics = server.app.as_ref().expect("running").metrics();
    let total = (EACH * 9) as i64;
    let acked = wait_for(Duration::from_secs(120), total, || {
        let m = metrics.clone();
        async move { m.acknowledged.get() as i64 }
    })
    .await;
    assert_eq!(acked, total);
    assert_eq!(env.store.count_readings().await.expect("count"), good);
    for reason in [
        "malformed_json",
        "protobuf",
        "unknown_event",
        "undecodable",
        "unknown_fport",
        "unregistered_device",
        "bad_serial",
        "out_of_range",
    ] {
        assert_eq!(quarantined(&env.store, reason).await, EACH, "{reason}");
        let text = metrics.render();
        assert!(
            text.contains(&format!(
                "meterhub_events_quarantined_total{{reason=\"{reason}\"}} {EACH}"
            )),
            "{reason} counted"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_quarantined_on_sqlite() {
    malformed_events_are_quarantined_by_reason_while_good_ones_flow(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_quarantined_on_postgres() {
    malformed_events_are_quarantined_by_reason_while_good_ones_flow(Dialect::Postgres).await;
}

/// A database that refuses one particular reading: a trigger raises on 666 litres.
async fn install_refusal(store: &Store) {
    match store {
        Store::Sqlite { writer, .. } => {
            sqlx::query(
                "CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.gas_volume_litres = 666 \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END",
            )
            .execute(writer)
            .await
            .expect("trigger");
        }
        Store::Postgres(pool) => {
            sqlx::query(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.gas_volume_litres = 666 THEN RAISE EXCEPTION 'refused by the test trigger'; \
                 END IF; RETURN NEW; END $$",
            )
            .execute(pool)
            .await
            .expect("function");
            sqlx::query(
                "CREATE TRIGGER refuse BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse()",
            )
            .execute(pool)
            .await
            .expect("trigger");
        }
    }
}

async fn a_refused_row_is_quarantined_and_its_batch_commits(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(10).await;
    install_refusal(&env.store).await;
    let mut settings = env.settings(&format!("r-{}", uuid::Uuid::new_v4()));
    // One batch holds everything, so the refusal happens inside a batch of good rows.
    settings.ingest.max_wait_ms = 500;
    let server = Server::start(settings).await;
    let mut publisher =
        Publisher::connect(&env.broker, &format!("cs-{}", uuid::Uuid::new_v4())).await;
    let now = Utc::now();
    for i in 0..200u32 {
        let (dev, serial): &(String, Serial) = &meters[(i % 10) as usize];
        let litres = if i == 77 { 666 } else { i };
        let at = now - chrono::Duration::minutes(i64::from(i));
        let dedup = uuid::Uuid::new_v4().to_string();
        publisher
            .publish(
                topic(dev, "up"),
                up_event(dev, &dedup, i, 1, &reading_frame(*serial, at, litres)),
            )
            .await;
    }
    publisher.flush().await;
    let store = env.store.clone();
    let stored = wait_for(Duration::from_secs(60), 199, || {
        let s = store.clone();
        async move { s.count_readings().await.expect("count") }
    })
    .await;
    assert_eq!(stored, 199);
    let refused = wait_for(Duration::from_secs(30), 1, || {
        let s = store.clone();
        async move { quarantined(&s, "refused").await as i64 }
    })
    .await;
    assert_eq!(refused, 1);
    let q = env
        .store
        .quarantined(Some("refused"), i64::MAX, 10)
        .await
        .expect("list");
    assert!(
        q[0].detail.contains("refused by the test trigger"),
        "{}",
        q[0].detail
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_does_not_stop_its_batch_on_sqlite() {
    a_refused_row_is_quarantined_and_its_batch_commits(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_does_not_stop_its_batch_on_postgres() {
    a_refused_row_is_quarantined_and_its_batch_commits(Dialect::Postgres).await;
}

/// A meter that sends another reading for a time it already reported (a firmware fault, a
/// replaced meter reusing a serial): the stored reading stays, the new one is quarantined
/// with both sides named, and a plain repeat of the stored values is no conflict.
async fn a_conflicting_reading_is_quarantined_not_dropped(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(2).await;
    let server = Server::start(env.settings(&format!("c-{}", uuid::Uuid::new_v4()))).await;
    let mut publisher =
        Publisher::connect(&env.broker, &format!("cs-{}", uuid::Uuid::new_v4())).await;
    let (dev, serial) = meters[0].clone();
    let at = Utc::now() - chrono::Duration::hours(1);
    let dedup = || uuid::Uuid::new_v4().to_string();
    // Stored first; then in one batch: other litres at the same time, the same reading
    // again under a new deduplication id, and an unrelated reading.
    let first = up_event(&dev, &dedup(), 1, 1, &reading_frame(serial, at, 1_000));
    publisher.publish(topic(&dev, "up"), first).await;
    publisher.flush().await;
    let store = env.store.clone();
    let count = || {
        let s = store.clone();
        async move { s.count_readings().await.expect("count") }
    };
    assert_eq!(wait_for(Duration::from_secs(30), 1, count).await, 1);
    for (f_cnt, litres) in [(2, 1_234), (3, 1_000)] {
        let e = up_event(&dev, &dedup(), f_cnt, 1, &reading_frame(serial, at, litres));
        publisher.publish(topic(&dev, "up"), e).await;
    }
    let (other, other_serial) = meters[1].clone();
    let e = up_event(&other, &dedup(), 1, 1, &reading_frame(other_serial, at, 5));
    publisher.publish(topic(&other, "up"), e).await;
    publisher.flush().await;
    assert_eq!(wait_for(Duration::from_secs(30), 2, count).await, 2);
    let conflicts = wait_for(Duration::from_secs(30), 1, || {
        let s = store.clone();
        async move { quarantined(&s, "conflicting_reading").await as i64 }
    })
    .await;
    assert_eq!(conflicts, 1);
    let q = store
        .quarantined(Some("conflicting_reading"), i64::MAX, 10)
        .await
        .expect("list");
    assert!(
        q[0].detail.contains("gasVolumeLitres") && q[0].detail.contains("not stored"),
        "{}",
        q[0].detail
    );
    assert_eq!(q[0].dev_eui.as_deref(), Some(dev.as_str()));
    let meter = store
        .meter_by_dev_eui(&dev)
        .await
        .expect("lookup")
        .expect("registered");
    let kept = store
        .readings_for_meter(
            meter.id,
            at - chrono::Duration::minutes(1),
            at + chrono::Duration::minutes(1),
            10,
        )
        .await
        .expect("readings");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].gas_volume_litres,
        Some(1_000),
        "the stored reading stays"
    );
    let metrics = server.app.as_ref().expect("running").metrics();
    assert_eq!(
        metrics.quarantined[meterhub::uplink::Reason::ConflictingReading.index()].get(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_reading_is_quarantined_on_sqlite() {
    a_conflicting_reading_is_quarantined_not_dropped(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_reading_is_quarantined_on_postgres() {
    a_conflicting_reading_is_quarantined_not_dropped(Dialect::Postgres).await;
}
