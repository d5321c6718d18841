use meterhub::demo::{DemoOptions, Ending, run};
use tokio_util::sync::CancellationToken;

/// The demo end to end: 1 000 simulated meters for 30 simulated days through the embedded
/// broker into SQLite; the server stores exactly the readings the fleet reports sending for
/// registered meters (1 % of the fleet is unregistered on purpose and quarantined). At ten
/// simulated days per wall second the fleet outruns a debug server on a loaded machine: the
/// demo's paced clock waits for it, so nothing grows too old to store, however slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stores_exactly_what_the_fleet_sent() {
    test_support::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let database = dir.path().join("demo.db");
    // A database left by an earlier run is replaced, not added to.
    std::fs::write(&database, b"not this run's").expect("old database");
    let options = DemoOptions {
        meters: 1_000,
        days: 30,
        speed: 864_000,
        database,
        http_bind: "127.0.0.1:0".parse().expect("address"),
        exit_when_done: true,
    };
    let mut said = Vec::new();
    let summary = run(options, CancellationToken::new(), |line| said.push(line))
        .await
        .expect("demo runs");
    // Each meter boots with an AppTimeReq, then sends 30 daily readings; it also answers the
    // server's clock commands (at this speed a 100 ms receive window is a simulated day, so
    // clocks set by an answer drift and are resynchronised), so there may be more.
    assert!(summary.published >= 31_000, "{summary:?}");
    assert!(
        summary.expected > 29_000 && summary.expected < 30_000,
        "{summary:?}"
    );
    assert_eq!(summary.ending, Ending::AllStored, "{summary:?}\n{said:#?}");
    assert_eq!(
        summary.stored,
        i64::try_from(summary.expected).expect("fits")
    );
    assert!(
        said.iter().any(|l| l.contains("left by an earlier run")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|l| l.contains("sign in with the admin API key") && l.contains(&summary.admin_key)),
        "{said:#?}"
    );
}
