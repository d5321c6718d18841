//! Clients of both protocol versions round-trip QoS 1 messages through the embedded broker.

use std::time::Duration;

use meterhub_broker::EmbeddedBroker;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::timeout;

const COUNT: usize = 500;

#[tokio::test]
async fn a_v311_client_round_trips_qos1_messages() {
    let broker = EmbeddedBroker::start().expect("broker");
    let mut options = MqttOptions::new("v4-test", "127.0.0.1", broker.v4_addr().port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 100);
    client
        .subscribe("meters/+/up", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let publisher = client.clone();
    let mut received = Vec::new();
    let mut published = false;
    timeout(Duration::from_secs(20), async {
        while received.len() < COUNT {
            match events.poll().await.expect("connection") {
                Event::Incoming(Packet::SubAck(_)) if !published => {
                    published = true;
                    let publisher = publisher.clone();
                    tokio::spawn(async move {
                        for i in 0..COUNT {
                            publisher
                                .publish(
                                    format!("meters/{i}/up"),
                                    QoS::AtLeastOnce,
                                    false,
                                    i.to_string(),
                                )
                                .await
                                .expect("publish");
                        }
                    });
                }
                Event::Incoming(Packet::Publish(p)) => {
                    assert_eq!(p.qos, QoS::AtLeastOnce);
                    received.push(String::from_utf8(p.payload.to_vec()).expect("utf-8"));
                }
                _ => {}
            }
        }
    })
    .await
    .expect("all messages within the time limit");
    let mut numbers: Vec<usize> = received
        .iter()
        .map(|s| s.parse().expect("number"))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_v5_client_round_trips_qos1_messages() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let broker = EmbeddedBroker::start().expect("broker");
    let mut options = Options5::new("v5-test", "127.0.0.1", broker.v5_addr().port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = Client5::new(options, 100);
    client
        .subscribe("application/+/device/+/event/up", QoS5::AtLeastOnce)
        .await
        .expect("subscribe");
    let mut received = 0;
    let mut published = false;
    timeout(Duration::from_secs(20), async {
        while received < COUNT {
            match events.poll().await.expect("connection") {
                Event5::Incoming(Packet5::SubAck(_)) if !published => {
                    published = true;
                    let publisher = client.clone();
                    tokio::spawn(async move {
                        for i in 0..COUNT {
                            publisher
                                .publish(
                                    format!("application/a/device/{i:016x}/event/up"),
                                    QoS5::AtLeastOnce,
                                    false,
                                    vec![0u8; 2048],
                                )
                                .await
                                .expect("publish");
                        }
                    });
                }
                Event5::Incoming(Packet5::Publish(p)) => {
                    assert_eq!(p.qos, QoS5::AtLeastOnce);
                    assert_eq!(p.payload.len(), 2048);
                    received += 1;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("all messages within the time limit");
}
