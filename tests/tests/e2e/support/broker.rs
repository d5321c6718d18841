use std::collections::HashSet;
use std::time::Duration;

use test_support::Broker;
use tokio::net::TcpStream;

use super::mqtt::{PUBACK, PUBLISH, RawMqtt, parse_publish_qos1};

#[tokio::test]
async fn private_mosquitto_accepts_connections() {
    let Some(broker) = Broker::mosquitto().await else {
        return;
    };
    assert_eq!(broker.host(), "127.0.0.1");
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));

    TcpStream::connect(broker.addr())
        .await
        .expect("a plain TCP connect");
    let (session, code, _) = RawMqtt::connect(broker.addr(), "selftest-connect", true).await;
    assert_eq!(code, 0, "connection accepted without credentials");
    session.disconnect().await;
}

#[tokio::test]
async fn private_brokers_are_separate() {
    let Some(a) = Broker::mosquitto().await else {
        return;
    };
    let Some(b) = Broker::mosquitto().await else {
        return;
    };
    assert_ne!(a.port(), b.port());
    let port = a.port();
    drop(a);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a dropped broker stops listening"
    );
    RawMqtt::connect(b.addr(), "selftest-separate", true).await;
}

/// Mosquitto's defaults would keep 20 messages in flight and 1 000 queued for a subscriber that
/// is away, then drop the rest; the project's configuration must keep them all.
#[tokio::test]
async fn private_mosquitto_keeps_every_queued_qos1_message() {
    const MESSAGES: u16 = 2_500;
    let Some(broker) = Broker::mosquitto().await else {
        return;
    };
    let topic = "application/selftest/device/0102030405060708/event/up";

    // A persistent session that subscribes and goes away, as a bridge does in an outage.
    let (mut subscriber, _, _) = RawMqtt::connect(broker.addr(), "selftest-bridge", false).await;
    subscriber
        .subscribe_qos1("application/+/device/+/event/up")
        .await;
    subscriber.disconnect().await;

    let (mut publisher, _, _) = RawMqtt::connect(broker.addr(), "selftest-publisher", true).await;
    for id in 1..=MESSAGES {
        publisher.publish_qos1(topic, id, &id.to_be_bytes()).await;
    }
    for _ in 1..=MESSAGES {
        let ack = publisher.read().await;
        assert_eq!(ack.kind(), PUBACK);
    }

    // Back again: the session holds everything published meanwhile, with no acknowledgement
    // sent until all have arrived (the bridge acknowledges only after its batch commits).
    let (mut subscriber, _, session_present) =
        RawMqtt::connect(broker.addr(), "selftest-bridge", false).await;
    assert!(session_present, "the broker kept the session");
    let mut received = HashSet::new();
    let mut ids = Vec::new();
    while received.len() < usize::from(MESSAGES) {
        let Some(packet) = subscriber.try_read(Duration::from_secs(10)).await else {
            panic!(
                "received {} of {MESSAGES} messages, then nothing: the broker dropped or held \
                 back the rest",
                received.len()
            );
        };
        if packet.kind() != PUBLISH {
            continue;
        }
        let (id, payload) = parse_publish_qos1(&packet);
        received.insert(payload.to_vec());
        ids.push(id);
    }
    for id in ids {
        subscriber.puback(id).await;
    }
    assert_eq!(received.len(), usize::from(MESSAGES));
    subscriber.disconnect().await;
}

/// `max_packet_size` in the project's configuration: packets well over the 256 KiB the tests
/// need get through, and packets over the 1 MiB cap are refused by closing the connection.
#[tokio::test]
async fn private_mosquitto_accepts_large_packets_up_to_the_cap() {
    const CAP: usize = 1024 * 1024;
    let Some(broker) = Broker::mosquitto().await else {
        return;
    };
    let (mut subscriber, _, _) = RawMqtt::connect(broker.addr(), "selftest-large-sub", true).await;
    subscriber.subscribe_qos1("large").await;

    let payload = vec![0x5a; 300 * 1024];
    let (mut publisher, _, _) = RawMqtt::connect(broker.addr(), "selftest-large-pub", true).await;
    publisher.publish_qos1("large", 7, &payload).await;
    assert_eq!(publisher.read().await.kind(), PUBACK);

    let packet = tokio::time::timeout(Duration::from_secs(20), subscriber.read())
        .await
        .expect("the large message arrives");
    let (id, received) = parse_publish_qos1(&packet);
    assert_eq!(received.len(), payload.len());
    subscriber.puback(id).await;

    // The payload alone is the cap, so the packet is over it.
    let oversized = vec![0xa5; CAP];
    let (mut publisher, _, _) = RawMqtt::connect(broker.addr(), "selftest-oversized", true).await;
    // Mosquitto may close the connection before the whole packet is written.
    let _ = publisher.try_publish_qos1("large", 8, &oversized).await;
    assert!(
        publisher.is_closed_by_broker(Duration::from_secs(20)).await,
        "a packet over max_packet_size is refused\n{}",
        broker.log()
    );
    assert!(
        subscriber
            .try_read(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing of the refused packet is delivered"
    );
}

#[tokio::test]
async fn start_always_gives_a_broker_that_accepts_v311_clients() {
    let broker = Broker::start().await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.v311_port()));
    let (session, code, _) = RawMqtt::connect(addr, "selftest-any-broker", true).await;
    assert_eq!(code, 0, "connection accepted ({})", broker.log());
    session.disconnect().await;
}
