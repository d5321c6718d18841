use std::net::SocketAddr;

use test_support::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Env, Server};

/// A bare HTTP/1.1 GET: status code and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let Some(env) = Env::new(Dialect::Sqlite).await else {
        return;
    };
    let server = Server::start(env.settings(&format!("h-{}", uuid::Uuid::new_v4()))).await;
    let addr = server.app.as_ref().expect("running").http_addr();
    assert_eq!(get(addr, "/health").await.0, 200);
    // Ready once connected to the broker and the database answers.
    let mut ready = 0;
    for _ in 0..100 {
        ready = get(addr, "/ready").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 200);
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "meterhub_mqtt_messages_received_total 0",
        "meterhub_mqtt_connected 1",
        "meterhub_mqtt_subscribed 1",
        "meterhub_events_quarantined_total{reason=\"unregistered_device\"} 0",
        "meterhub_commit_seconds_bucket{le=\"+Inf\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert_eq!(get(addr, "/nope").await.0, 404);
    server.stop().await;
}
