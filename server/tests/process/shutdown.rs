//! A graceful stop: SIGTERM in the middle of a stream. The server finishes the batch it holds,
//! commits and acknowledges it, and exits with success within seconds, as a service manager
//! or an orchestrator expects before it resorts to SIGKILL. What it had not taken yet stays
//! with the broker for the next run. With the broker or the database gone, the stop still
//! ends within `[server] shutdown_grace_secs`, and nothing is lost either.

use std::time::{Duration, Instant};

use test_support::{Dialect, TcpProxy, TestDb};

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

/// The grace the tests below give the server: shorter than the default, for quick tests.
const GRACE_SECS: u64 = 5;

/// How much longer than the grace the exit may take: the process's own start of shutdown and
/// exit on a machine busy with other tests. Without the bound the server did not exit at all.
const EXIT_MARGIN: Duration = Duration::from_secs(20);

/// What is taken away before the SIGTERM.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// The broker: connections refused, as when Mosquitto is killed.
    Broker,
    /// The database (PostgreSQL): connections refused, as when its host goes away.
    Database,
}

async fn sigterm_exits_within_the_grace_when_something_is_gone(dialect: Dialect, gone: Gone) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let upstream_db = match (&env.db, gone) {
        (TestDb::Postgres(db), Gone::Database) => Some(crate::outage::upstream(db).await),
        (_, Gone::Database) => return,
        (_, Gone::Broker) => None,
    };
    let deadline = Deadline::start();
    let stream = Stream::new(env.register(METERS).await, DAYS);
    let total = stream.len();
    // What goes away is reached through a proxy; dropping the proxy closes its listener, so
    // that the server's connections are refused from then on.
    let proxy = TcpProxy::start(upstream_db.unwrap_or_else(|| env.broker.addr()));
    let (database_url, mqtt_url) = match gone {
        Gone::Database => (
            crate::outage::through(env.db.url(), proxy.addr()),
            env.broker.url(),
        ),
        Gone::Broker => (env.db.url().to_owned(), format!("mqtt://{}", proxy.addr())),
    };
    let id = client_id("stop-without");
    let grace = GRACE_SECS.to_string();
    let mut server = Server::start_with(
        &database_url,
        &mqtt_url,
        &id,
        &[("METERHUB_SERVER__SHUTDOWN_GRACE_SECS", grace.as_str())],
    )
    .await;
    let publisher = Publisher::connect(&env.broker, &client_id("chirpstack")).await;
    let published = stream.publish(publisher, env.store.clone());
    wait_for_readings(&env.store, total * 3 / 10, &deadline).await;

    drop(proxy);
    let noticed = match gone {
        Gone::Broker => "MQTT connection lost",
        Gone::Database => "database unavailable; holding the batch",
    };
    server.wait_for_log(noticed, Duration::from_secs(60)).await;
    let asked = Instant::now();
    let limit = Duration::from_secs(GRACE_SECS) + EXIT_MARGIN;
    let status = server.terminate(limit).await;
    let stopping = asked.elapsed();
    let log = server.stderr();
    assert!(
        log.contains("meterhub stopped"),
        "the server went through its shutdown:\n{log}"
    );
    if !status.success() {
        assert!(
            log.contains("still running"),
            "a stop that had to abandon tasks names them:\n{log}"
        );
    }

    // Nothing was lost: the next run gets what the first did not acknowledge.
    let mut next = Server::start(env.db.url(), &env.broker, &id).await;
    wait_for_readings(&env.store, total, &deadline).await;
    published.await.expect("the publisher finished");
    assert_stored_exactly_once(&env.store, &stream).await;
    let _ = next.terminate(limit).await;
    let waited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("waiting for tasks") || l.contains("still running"))
        .collect();
    eprintln!(
        "{dialect:?}, {gone:?} gone: exit {status} {stopping:.1?} after SIGTERM (grace \
         {GRACE_SECS} s); waited: {waited:?}; all {total} stored exactly once after a restart; \
         test took {:.1?}",
        deadline.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_exits_within_the_grace_on_sqlite() {
    within_limit(sigterm_exits_within_the_grace_when_something_is_gone(
        Dialect::Sqlite,
        Gone::Broker,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_exits_within_the_grace_on_postgres() {
    within_limit(sigterm_exits_within_the_grace_when_something_is_gone(
        Dialect::Postgres,
        Gone::Broker,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_database_gone_exits_within_the_grace_on_postgres() {
    within_limit(sigterm_exits_within_the_grace_when_something_is_gone(
        Dialect::Postgres,
        Gone::Database,
    ))
    .await;
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
