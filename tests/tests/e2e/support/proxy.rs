use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};
use test_support::{PostgresDb, TcpProxy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const IN_TIME: Duration = Duration::from_secs(5);

/// An upstream that echoes every byte back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Whether a round trip through `stream` works.
async fn echoes(stream: &mut TcpStream) -> bool {
    let round_trip = async {
        stream.write_all(b"ping").await?;
        let mut reply = [0; 4];
        stream.read_exact(&mut reply).await?;
        std::io::Result::Ok(reply == *b"ping")
    };
    matches!(
        tokio::time::timeout(IN_TIME, round_trip).await,
        Ok(Ok(true))
    )
}

/// Whether a fresh connection through the proxy echoes.
async fn new_connection_echoes(proxy: &TcpProxy) -> bool {
    match TcpStream::connect(proxy.addr()).await {
        Ok(mut stream) => echoes(&mut stream).await,
        Err(_) => false,
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IN_TIME;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn proxy_cut_breaks_connections_and_restore_heals() {
    let proxy = TcpProxy::start(echo_server().await);
    let mut before = TcpStream::connect(proxy.addr()).await.expect("connect");
    assert!(echoes(&mut before).await, "forwards before the cut");
    wait_until("the connection is counted", || {
        proxy.open_connections() == 1
    })
    .await;

    proxy.cut();
    assert!(proxy.is_cut());
    assert_eq!(proxy.open_connections(), 0, "closed when cut returns");
    assert!(!echoes(&mut before).await, "an open connection breaks");
    assert!(
        !new_connection_echoes(&proxy).await,
        "new connections fail while cut"
    );
    wait_until("nothing is forwarded", || proxy.open_connections() == 0).await;

    proxy.restore();
    assert!(
        new_connection_echoes(&proxy).await,
        "forwards again after restore"
    );
}

/// On a multi-threaded runtime `cut` waits inside `block_in_place`, which panics where it is
/// not allowed: the cut must work there as on the default current-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cut_works_on_a_multi_threaded_runtime() {
    let proxy = TcpProxy::start(echo_server().await);
    let mut before = TcpStream::connect(proxy.addr()).await.expect("connect");
    assert!(echoes(&mut before).await, "forwards before the cut");
    wait_until("the connection is counted", || {
        proxy.open_connections() == 1
    })
    .await;

    proxy.cut();
    assert_eq!(proxy.open_connections(), 0, "closed when cut returns");
    assert!(!echoes(&mut before).await, "an open connection breaks");

    proxy.restore();
    assert!(
        new_connection_echoes(&proxy).await,
        "forwards again after restore"
    );
}

#[tokio::test]
async fn proxy_stops_when_dropped() {
    let upstream = echo_server().await;
    let proxy = TcpProxy::start(upstream);
    assert_eq!(proxy.upstream(), upstream);
    let addr = proxy.addr();
    let mut open = TcpStream::connect(addr).await.expect("connect");
    assert!(echoes(&mut open).await);
    drop(proxy);
    assert!(!echoes(&mut open).await, "open connections close");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

/// The use the proxy is for: a database that goes away in the middle of a run and comes back.
#[tokio::test]
async fn proxy_takes_postgres_away_and_gives_it_back() {
    let Some(db) = PostgresDb::create().await else {
        return;
    };
    let options = db.connect_options();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(upstream);
    let through_proxy = options.clone().host("127.0.0.1").port(proxy.addr().port());

    let mut conn = PgConnection::connect_with(&through_proxy)
        .await
        .expect("connect through the proxy");
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("a query through the proxy");

    proxy.cut();
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect_err("the session is gone");
    PgConnection::connect_with(&through_proxy)
        .await
        .expect_err("no new sessions while cut");

    proxy.restore();
    let mut again = PgConnection::connect_with(&through_proxy)
        .await
        .expect("reconnect");
    sqlx::query("SELECT 1")
        .execute(&mut again)
        .await
        .expect("a query after restore");
}
