use std::time::Duration;

use chrono::Utc;
use test_support::{Dialect, Process, free_port, services};

use crate::support::{Env, Publisher, Server, reading_frame, topic, up_event, wait_for};

/// `mqtts://` works end to end: the server trusts the broker's certificate from `ca_file`
/// and connects through rustls with the one crypto provider the binary carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_connects_over_tls() {
    let Some(mosquitto) = services::mosquitto_binary() else {
        return;
    };
    let Some(env) = Env::new(Dialect::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert_path = dir.path().join("broker.pem");
    let key_path = dir.path().join("broker.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let (tls_port, plain_port) = (free_port().expect("port"), free_port().expect("port"));
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "per_listener_settings false\nallow_anonymous true\nuser root\npersistence false\n\
             listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
             listener {plain_port} 127.0.0.1\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .expect("write config");
    let mut broker = Process::builder(&mosquitto)
        .arg("-c")
        .arg(&config)
        .start()
        .expect("mosquitto starts");
    broker
        .wait_for_port(tls_port, Duration::from_secs(15))
        .await
        .expect("TLS listener");
    broker
        .wait_for_port(plain_port, Duration::from_secs(15))
        .await
        .expect("plain listener");

    let meters = env.register(1).await;
    let mut settings = env.settings(&format!("tls-{}", uuid::Uuid::new_v4()));
    settings.mqtt.url = format!("mqtts://127.0.0.1:{tls_port}");
    settings.mqtt.ca_file = Some(cert_path.clone());
    let server = Server::start(settings).await;
    let metrics = server.app.as_ref().expect("running").metrics();
    let connected = wait_for(Duration::from_secs(20), 1, || {
        let m = metrics.clone();
        async move { m.mqtt_connected.load(std::sync::atomic::Ordering::Relaxed) as i64 }
    })
    .await;
    assert_eq!(connected, 1, "connected over TLS: {}", broker.output());

    let mut publisher = Publisher::connect_to("127.0.0.1", plain_port, "tls-publisher").await;
    let (dev, serial) = &meters[0];
    let frame = reading_frame(*serial, Utc::now(), 42);
    publisher
        .publish(
            topic(dev, "up"),
            up_event(dev, &uuid::Uuid::new_v4().to_string(), 1, 1, &frame),
        )
        .await;
    publisher.flush().await;
    let store = env.store.clone();
    let count = wait_for(Duration::from_secs(20), 1, || {
        let s = store.clone();
        async move { s.count_readings().await.expect("count") }
    })
    .await;
    assert_eq!(count, 1);
    server.stop().await;
}
