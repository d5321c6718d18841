//! A database outage in the middle of a stream. On PostgreSQL the server reaches the database
//! through a TCP proxy that the test cuts, as a network failure or a failover would: the
//! commit in flight fails (or succeeds without the server hearing of it), and the server must
//! hold its batch unacknowledged, report itself not ready, and retry. On SQLite another
//! connection holds the write lock, as an import or a backup would: the server must wait.
//! Either way nothing may be lost, and a batch committed twice must not double anything.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meterhub::api::auth::Role;
use sqlx::ConnectOptions as _;
use test_support::{Dialect, PostgresDb, SqliteDb, TcpProxy, TestDb};

use crate::bridge::{Env, Publisher};
use crate::harness::{
    ANSWER_LIMIT, Deadline, Server, Stream, assert_stored_exactly_once, client_id, readings,
    wait_for_readings, within_limit,
};

/// 200 meters × 100 days: 20 000 distinct readings.
const METERS: u32 = 200;
const DAYS: u32 = 100;

/// How long the database stays away.
const OUTAGE: Duration = Duration::from_secs(3);

async fn a_database_outage_loses_nothing_and_doubles_nothing(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let deadline = Deadline::start();
    let stream = Stream::new(env.register(METERS).await, DAYS);
    let total = stream.len();
    // PostgreSQL is reached through a proxy the test can cut. Declared before the server so
    // that it outlives it: dropping the proxy would take the database away for good.
    let proxy = match &env.db {
        TestDb::Postgres(db) => Some(TcpProxy::start(upstream(db).await)),
        TestDb::Sqlite(_) => None,
    };
    let database_url = match &proxy {
        Some(proxy) => through(env.db.url(), proxy.addr()),
        None => env.db.url().to_owned(),
    };
    let server = Server::start(&database_url, &env.broker, &client_id("outage")).await;
    let publisher = Publisher::connect(&env.broker, &client_id("chirpstack")).await;
    let published = stream.publish(publisher, env.store.clone());

    // Well into the stream, with most of it still to come.
    wait_for_readings(&env.store, total * 3 / 10, &deadline).await;
    let outage = match (&proxy, &env.db) {
        (Some(proxy), _) => cut_postgres(&env, &server, proxy, &deadline).await,
        (None, TestDb::Sqlite(db)) => lock_sqlite(&env, db).await,
        (None, TestDb::Postgres(_)) => unreachable!("PostgreSQL is reached through the proxy"),
    };

    wait_for_readings(&env.store, total, &deadline).await;
    published.await.expect("the publisher finished");
    assert_stored_exactly_once(&env.store, &stream).await;
    eprintln!(
        "{dialect:?}: {total} readings stored exactly once across a {OUTAGE:?} outage ({outage}); \
         server: {}; test took {:.1?}",
        server.counters().await,
        deadline.elapsed(),
    );
}

/// Cuts the proxy for [`OUTAGE`], checking that ingest stops and `/ready` says 503 meanwhile,
/// then restores it and waits for `/ready` to say 200 again. Returns what happened.
async fn cut_postgres(env: &Env, server: &Server, proxy: &TcpProxy, deadline: &Deadline) -> String {
    let before = server.get("/ready").await.expect("/ready answers");
    assert_eq!(before.0, 200, "ready before the outage: {}", before.1);

    proxy.cut();
    let cut = Instant::now();
    let at_cut = readings(&env.store).await;
    let mut unavailable = 0;
    let mut answers = 0;
    let mut frozen_at = None;
    while cut.elapsed() < OUTAGE {
        if frozen_at.is_none() && cut.elapsed() > Duration::from_millis(500) {
            frozen_at = Some(readings(&env.store).await);
        }
        if let Ok((status, _)) = server.get("/ready").await {
            answers += 1;
            if status == 503 {
                unavailable += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_restore = readings(&env.store).await;
    proxy.restore();
    assert!(
        unavailable > 0,
        "/ready never said 503 in {answers} requests during a {OUTAGE:?} database outage"
    );
    // Half a second covers a commit that was on its way when the cut came.
    assert_eq!(
        frozen_at,
        Some(at_restore),
        "nothing is stored while the database is cut off"
    );

    let restored = Instant::now();
    loop {
        let answer = server.get("/ready").await;
        if matches!(answer, Ok((200, _))) {
            break;
        }
        deadline.check(|| format!("/ready to say 200 after the outage (last: {answer:?})"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    format!(
        "cut at {at_cut} readings, {unavailable} of {answers} /ready answers 503 during it, \
         ready again {:.1?} after the restore",
        restored.elapsed()
    )
}

/// Holds SQLite's write lock from another connection for [`OUTAGE`], checking that nothing is
/// stored meanwhile. Returns what happened.
async fn lock_sqlite(env: &Env, db: &SqliteDb) -> String {
    let mut lock = db
        .connect_options()
        .connect()
        .await
        .expect("a connection of the test's own");
    // EXCLUSIVE waits (up to the busy timeout) for the server's transaction in flight to end;
    // from then on the server cannot write until this one ends.
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("take the write lock");
    let locked = Instant::now();
    let at_lock = readings(&env.store).await;
    tokio::time::sleep(OUTAGE).await;
    // Readers are not blocked under WAL, so the test can see that the writer was.
    let at_release = readings(&env.store).await;
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("release the write lock");
    let held = locked.elapsed();
    assert_eq!(
        at_lock, at_release,
        "nothing is stored while another connection holds the write lock"
    );
    format!("write lock held for {held:.1?} from {at_lock} readings")
}

/// The database host goes away (connections refused, as when PostgreSQL is stopped) while
/// nothing is being ingested: an API read answers 503 as problem JSON with `Retry-After`
/// without holding the client for the pool's ten seconds of reconnecting, and `/ready` says
/// 503 at once, although the writer has nothing to try.
async fn an_api_read_during_an_outage_is_a_503_with_retry_after(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let TestDb::Postgres(db) = &env.db else {
        // SQLite has no outage to speak of: readers never wait for the writer under WAL.
        return;
    };
    env.register(1).await;
    let key = meterhub::api::auth::generate("outage", Role::Viewer, chrono::Utc::now());
    env.store.insert_api_key(&key.row).await.expect("a key");
    let auth = format!("Bearer {}", key.secret);
    // Every read goes to the database: a cached answer is fine during an outage, but would
    // not test one.
    let headers = [
        ("Authorization", auth.as_str()),
        ("Cache-Control", "no-cache"),
    ];
    let proxy = TcpProxy::start(upstream(db).await);
    let server = Server::start(
        &through(env.db.url(), proxy.addr()),
        &env.broker,
        &client_id("outage-api"),
    )
    .await;
    let deadline = Deadline::start();
    loop {
        let answer = server.get("/ready").await;
        if matches!(answer, Ok((200, _))) {
            break;
        }
        deadline.check(|| format!("/ready to say 200 before the outage (last: {answer:?})"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = server
        .get_with("/api/v1/meters", &headers)
        .await
        .expect("an answer before the outage");
    assert_eq!(before.status, 200, "{}", before.body);

    // The proxy's listener closes with it: from now on the server's connections are refused.
    drop(proxy);
    let asked = Instant::now();
    let answer = server
        .get_with("/api/v1/meters", &headers)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}: an API read during an outage must fail fast ({ANSWER_LIMIT:?} is well over \
             the read timeout of {:?})",
                meterhub::storage::READ_TIMEOUT
            )
        });
    let took = asked.elapsed();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let retry_after = answer
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "a 503 says when to retry: {}",
        answer.head
    );
    let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("problem JSON");
    assert_eq!(problem["status"], 503);

    let ready = server.get("/ready").await.expect("/ready answers");
    assert_eq!(ready.0, 503, "/ready during the outage: {}", ready.1);
    let ready: serde_json::Value = serde_json::from_str(&ready.1).expect("JSON");
    assert_eq!(ready["database"], false);
    eprintln!(
        "{dialect:?}: during the outage an API read answered {} in {took:.1?} \
         (Retry-After: {retry_after:?}); /ready said 503",
        answer.status
    );
}

/// Where the test database really is, for the proxy to forward to.
pub async fn upstream(db: &PostgresDb) -> SocketAddr {
    let options = db.connect_options();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("PostgreSQL at {host}:{port} is not a TCP address"))
}

/// `url` with its host and port replaced by `proxy`, user, database and parameters kept.
pub fn through(url: &str, proxy: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{proxy}{path}")
}

#[test]
fn a_url_through_the_proxy_keeps_user_database_and_parameters() {
    let proxy = SocketAddr::from(([127, 0, 0, 1], 40_000));
    assert_eq!(
        through(
            "postgres://u:p@db.example:5432/meterhub?sslmode=disable",
            proxy
        ),
        "postgres://u:p@127.0.0.1:40000/meterhub?sslmode=disable"
    );
    assert_eq!(
        through("postgres://localhost/x", proxy),
        "postgres://127.0.0.1:40000/x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_read_during_an_outage_is_a_503_with_retry_after_on_postgres() {
    within_limit(an_api_read_during_an_outage_is_a_503_with_retry_after(
        Dialect::Postgres,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_doubles_nothing_on_sqlite() {
    within_limit(a_database_outage_loses_nothing_and_doubles_nothing(
        Dialect::Sqlite,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_doubles_nothing_on_postgres() {
    within_limit(a_database_outage_loses_nothing_and_doubles_nothing(
        Dialect::Postgres,
    ))
    .await;
}
