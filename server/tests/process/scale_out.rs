//! Scale-out: two `meterhub serve` processes on one MQTT shared subscription and one
//! PostgreSQL split a stream between them. Each message goes to one of them; both write the
//! same meters' rows at the same time, so their batch transactions must not deadlock, and every
//! reading must be stored exactly once.

use std::time::Instant;

use test_support::Dialect;

use crate::bridge::{Env, Publisher};
use crate::harness::{
    Deadline, Server, Stream, assert_stored_exactly_once, client_id, wait_for_readings,
    within_limit,
};

/// 301 meters × 100 days: 30 100 distinct readings. An odd number of meters, so that the
/// broker's turn-taking gives each instance every meter on alternate days: the two instances'
/// batches then name the same meters.
const METERS: u32 = 301;
const DAYS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_shared_subscription_store_one_stream_exactly_once_on_postgres() {
    within_limit(async {
        let Some(env) = Env::new(Dialect::Postgres).await else {
            return;
        };
        let deadline = Deadline::start();
        let stream = Stream::new(env.register(METERS).await, DAYS);
        let total = stream.len();

        let group = format!("meterhub-{}", uuid::Uuid::new_v4().simple());
        let shared = [("METERHUB_MQTT__SHARED_GROUP", group.as_str())];
        let url = env.broker.url();
        let mut servers = Vec::new();
        for name in ["scale-out-a", "scale-out-b"] {
            servers.push(Server::start_with(env.db.url(), &url, &client_id(name), &shared).await);
        }
        let publisher = Publisher::connect(&env.broker, &client_id("chirpstack")).await;
        let started = Instant::now();
        let published = stream.publish(publisher, env.store.clone());
        wait_for_readings(&env.store, total, &deadline).await;
        let ingest = started.elapsed();
        published.await.expect("the publisher finished");
        assert_stored_exactly_once(&env.store, &stream).await;

        let mut received = Vec::new();
        for server in &servers {
            received.push(
                server
                    .metric("meterhub_mqtt_messages_received_total")
                    .await
                    .unwrap_or(0),
            );
        }
        for server in &servers {
            let log = server.stderr();
            assert!(
                !log.contains("deadlock"),
                "an instance's batch deadlocked with the other's:\n{log}"
            );
        }
        // Both took part: each received a good share of the stream.
        let share = total as u64 / 10;
        assert!(
            received.iter().all(|&r| r >= share),
            "each instance should receive at least {share} of {total} messages: {received:?}"
        );
        eprintln!(
            "{total} readings stored exactly once in {ingest:.1?} by two instances \
             (received {received:?}); a: {}; b: {}",
            servers[0].counters().await,
            servers[1].counters().await,
        );
    })
    .await;
}
