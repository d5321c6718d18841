//! Crashes: the server is killed with SIGKILL three times while a stream flows in. Whatever it
//! had received but not committed was never acknowledged, so the broker keeps it in the
//! persistent session named by the client id and delivers it again to the restarted server;
//! whatever it had committed but not yet acknowledged comes again too, and the event identities
//! in the database turn it into a duplicate that changes nothing.

use std::time::Instant;

use test_support::Dialect;

use crate::bridge::{Env, Publisher};
use crate::harness::{
    Deadline, Server, Stream, assert_stored_exactly_once, client_id, wait_for_readings,
    within_limit,
};

/// 500 meters × 100 days: 50 000 distinct readings.
const METERS: u32 = 500;
const DAYS: u32 = 100;

async fn readings_survive_three_sigkills_exactly_once(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let deadline = Deadline::start();
    let stream = Stream::new(env.register(METERS).await, DAYS);
    let total = stream.len();

    // The same client id for every run: it names the session the broker keeps.
    let mut server = Server::start(env.db.url(), &env.broker, &client_id("crashes")).await;
    let publisher = Publisher::connect(&env.broker, &client_id("chirpstack")).await;
    let ingest_started = Instant::now();
    let published = stream.publish(publisher, env.store.clone());

    // Kills at a fifth, two fifths and three fifths of the stream, so that each run has
    // batches in every state: committed and acknowledged, committed only, received only.
    let mut killed_at = Vec::new();
    for fifth in 1..=3 {
        let stored = wait_for_readings(&env.store, total * fifth / 5, &deadline).await;
        let status = server.kill();
        assert!(!status.success(), "SIGKILL ends the server: {status}");
        killed_at.push(stored);
        server.restart().await;
    }

    wait_for_readings(&env.store, total, &deadline).await;
    let ingest = ingest_started.elapsed();
    let publishing = published.await.expect("the publisher finished");
    assert_stored_exactly_once(&env.store, &stream).await;
    eprintln!(
        "{dialect:?}: {total} readings stored exactly once in {ingest:.1?} (published in \
         {publishing:.1?}) across three SIGKILLs at {killed_at:?} readings; last run: {}; \
         test took {:.1?}",
        server.counters().await,
        deadline.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_three_sigkills_exactly_once_on_sqlite() {
    within_limit(readings_survive_three_sigkills_exactly_once(
        Dialect::Sqlite,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_three_sigkills_exactly_once_on_postgres() {
    within_limit(readings_survive_three_sigkills_exactly_once(
        Dialect::Postgres,
    ))
    .await;
}
