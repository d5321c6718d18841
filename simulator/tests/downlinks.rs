//! The simulator over a real broker: a `command/down` published as meterhub would reaches the
//! meter in the RX window of its next uplink, and comes back as ChirpStack's `txack`, the
//! meter's answer, and the `ack` of a confirmed command.

use std::time::Duration;

use firmware_protocol::chirpstack::{Bytes, DownlinkCommand, Event, EventType};
use firmware_protocol::clock::Clock;
use meterhub_broker::EmbeddedBroker;
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::runner::{RunSpec, run};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_command_rides_the_next_uplink_and_is_acknowledged() {
    let broker = EmbeddedBroker::start().expect("broker");
    let spec = FleetSpec {
        meters: 3,
        electricity_share: 0.0,
        // A reading every 15 simulated minutes: at 900x, one a second per meter.
        reporting_interval_minutes: 15,
        ..FleetSpec::default()
    };
    let app = spec.application_id.clone();
    let clock = Clock::accelerated(900, std::time::SystemTime::now()).expect("speed");
    let stop = CancellationToken::new();
    let sim = tokio::spawn(run(
        RunSpec {
            fleet: spec,
            host: "127.0.0.1".into(),
            port: broker.v5_addr().port(),
            client_id: "sim".into(),
            duration: Some(3_600),
        },
        clock,
        stop.clone(),
        |_| {},
    ));

    // Plays meterhub: watches the events, and on the first uplink of meter 0 sends a
    // confirmed valve close.
    let mut options = MqttOptions::new("server", "127.0.0.1", broker.v5_addr().port());
    options.set_max_packet_size(Some(1024 * 1024));
    let (client, mut events) = AsyncClient::new(options, 100);
    client
        .subscribe(
            format!("application/{app}/device/+/event/+"),
            QoS::AtLeastOnce,
        )
        .await
        .expect("subscribe");
    let dev_eui = "70b3d57e00000000";
    let id = Uuid::new_v4();
    let mut sent = false;
    let (mut txack, mut alarm, mut ack) = (false, false, false);
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while !(txack && alarm && ack) {
            let Ok(MqttEvent::Incoming(Packet::Publish(p))) = events.poll().await else {
                continue;
            };
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            if !topic.contains(dev_eui) {
                continue;
            }
            let kind = topic.rsplit('/').next().unwrap_or_default().to_owned();
            let Ok(kind) = kind.parse::<EventType>() else {
                continue;
            };
            match Event::from_json(kind, &p.payload).expect("ChirpStack JSON") {
                // The meter boots with an AppTimeReq (fPort 202); its readings follow.
                Event::Up(up) if !sent && up.f_port == 1 => {
                    let command = DownlinkCommand {
                        id: Some(id),
                        dev_eui: dev_eui.into(),
                        confirmed: true,
                        f_port: 10,
                        data: Bytes(vec![0x01, 0x02]),
                        ..DownlinkCommand::default()
                    };
                    client
                        .publish(
                            format!("application/{app}/device/{dev_eui}/command/down"),
                            QoS::AtLeastOnce,
                            false,
                            serde_json::to_vec(&command).expect("json"),
                        )
                        .await
                        .expect("publish");
                    sent = true;
                }
                Event::TxAck(t) => {
                    assert_eq!(t.queue_item_id, Some(id));
                    txack = true;
                }
                Event::Up(up) if up.f_port == 2 => alarm = true,
                Event::Ack(a) => {
                    assert_eq!(a.queue_item_id, Some(id));
                    assert!(a.acknowledged);
                    ack = true;
                }
                _ => {}
            }
        }
    })
    .await;
    stop.cancel();
    let report = sim.await.expect("task").expect("run");
    outcome.expect("txack, the valve alarm and the ack within 30 s");
    assert_eq!(report.downlinks, 1);
    assert_eq!(report.refused, 0);
}
