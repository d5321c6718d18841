//! A graceful stop: SIGTERM in the middle of a stream. The server finishes the batch it holds,
//! commits and acknowledges it, and exits with success within seconds, as a service manager
//! or an orchestrator expects before it resorts to SIGKILL. What it had not taken yet stays
//! with the broker for the next run.

use std::time::{Duration, Instant};

use test_support::Dialect;

use crate::bridge::{Env, Publisher};
use crate::harness::{
    Deadline, Server, Stream, assert_stored_exactly_once, client_id, readings, wait_for_readings,
    within_limit,
};

/// 200 meters × 100 days: 20 000 distinct readings.
const METERS: u32 = 200;
const DAYS: u32 = 100;

/// How long the server may take to stop: the batch in flight, then a short drain of the
/// MQTT connection.
const STOP_LIMIT: Duration = Duration::from_secs(10);

async fn sigterm_finishes_the_batch_in_flight_and_exits_cleanly(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let deadline = Deadline::start();
    let stream = Stream::new(env.register(METERS).await, DAYS);
    let total = stream.len();

    let mut server = Server::start(env.db.url(), &env.broker, &client_id("shutdown")).await;
    let publisher = Publisher::connect(&env.broker, &client_id("chirpstack")).await;
    let published = stream.publish(publisher, env.store.clone());
    let before = wait_for_readings(&env.store, total * 3 / 10, &deadline).await;

    let asked = Instant::now();
    let status = server.terminate(STOP_LIMIT).await;
    let stopping = asked.elapsed();
    assert!(
        status.success(),
        "SIGTERM ends the server cleanly: {status}"
    );
    let stopped = readings(&env.store).await;
    assert!(
        stopped < total,
        "the stream was over before the SIGTERM ({stopped} of {total}): nothing was in flight"
    );
    assert!(
        server.stderr().contains("meterhub stopped"),
        "the server went through its shutdown"
    );

    server.restart().await;
    wait_for_readings(&env.store, total, &deadline).await;
    published.await.expect("the publisher finished");
    assert_stored_exactly_once(&env.store, &stream).await;

    // Mosquitto's session gives the next run exactly what was not acknowledged, and it sends
    // that first; so a duplicate in the second run is a message the first run committed
    // without its acknowledgement reaching the broker before the exit. (The in-process broker
    // resumes a session from its oldest unacknowledged message and may resend later ones that
    // were acknowledged, so it cannot tell.)
    let duplicates = server.metric("meterhub_events_duplicate_total").await;
    if !env.broker.is_embedded() {
        assert_eq!(
            duplicates,
            Some(0),
            "messages committed before the SIGTERM came again after the restart: their \
             acknowledgements did not reach the broker before the exit"
        );
    }
    eprintln!(
        "{dialect:?}: SIGTERM at {before} readings, exit {status} after {stopping:.1?} with \
         {stopped} stored; after the restart all {total} stored exactly once; second run: {}; \
         test took {:.1?}",
        server.counters().await,
        deadline.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_in_flight_and_exits_cleanly_on_sqlite() {
    within_limit(sigterm_finishes_the_batch_in_flight_and_exits_cleanly(
        Dialect::Sqlite,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_in_flight_and_exits_cleanly_on_postgres() {
    within_limit(sigterm_finishes_the_batch_in_flight_and_exits_cleanly(
        Dialect::Postgres,
    ))
    .await;
}
