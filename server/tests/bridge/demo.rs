use meterhub::demo::{DemoOptions, run};
use tokio_util::sync::CancellationToken;

/// The demo end to end: 1 000 simulated meters for 30 simulated days through the embedded
/// broker into SQLite; the server stores exactly the readings the fleet reports sending for
/// registered meters (1 % of the fleet is unregistered on purpose and quarantined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stores_exactly_what_the_fleet_sent() {
    test_support::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DemoOptions {
        meters: 1_000,
        days: 30,
        speed: 864_000,
        database: dir.path().join("demo.db"),
        http_bind: "127.0.0.1:0".parse().expect("address"),
    };
    let summary = run(options, CancellationToken::new(), |_| {})
        .await
        .expect("demo runs");
    // Each meter boots with an AppTimeReq, then sends 30 daily readings.
    assert_eq!(summary.published, 31_000);
    assert!(
        summary.expected > 29_000 && summary.expected < 30_000,
        "{summary:?}"
    );
    assert_eq!(
        summary.stored,
        i64::try_from(summary.expected).expect("fits")
    );
}
