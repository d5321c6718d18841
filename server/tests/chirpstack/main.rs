//! End-to-end tests against a real ChirpStack v4: simulated meters over Semtech UDP, an MQTT
//! Forwarder per gateway, ChirpStack, and meterhub, each on its own ports ([`stack`]). And the
//! registry kept in step with ChirpStack's device list against an in-process fake of its gRPC
//! API ([`sync`], [`fake`]), which needs no service and always runs.
//!
//! They run when `METERHUB_TEST_CHIRPSTACK` names a folder holding the `chirpstack` and
//! `chirpstack-mqtt-forwarder` binaries and their `config-template/` (see docs/chirpstack.md),
//! with PostgreSQL and Mosquitto configured as for the other service-backed tests and Redis on
//! 127.0.0.1:6379; otherwise they are skipped with a message, or fail under
//! `METERHUB_REQUIRE_SERVICES=1`. Meters run in real time, as ChirpStack needs: every wait is
//! for a condition, with a generous bound.

mod fake;
mod stack;
mod sync;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use firmware_protocol::{ClockSyncDown, Downlink, decode_downlink, decode_uplink};
use meterhub::downlink::{CommandKind, CommandRequest};
use meterhub::storage::Store;
use meterhub::storage::commands::CommandRow;
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::udp::radio::spreading_factor;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;
use test_support::Broker;

use crate::stack::{Options, Stack, wait_until};

/// Minutes between readings: the shortest, so that a test sees several in real time.
const INTERVAL_MINUTES: u16 = 1;

/// The longest any one condition is waited for: a few reporting intervals, with room for a
/// loaded machine.
const PATIENCE: Duration = Duration::from_secs(240);

/// A fleet of `meters` reporting every minute, with the first seed from `seed` on that puts
/// every meter at SF9 or faster: after a frame at SF10–12 a meter keeps quiet for minutes (the
/// 1 % duty cycle), too long for a test in real time.
fn fleet(meters: u32, seed: u64) -> FleetSpec {
    (seed..)
        .find(|s| (0..meters).all(|i| spreading_factor(*s, i) <= 9))
        .map(|seed| FleetSpec {
            meters,
            seed,
            reporting_interval_minutes: INTERVAL_MINUTES,
            ..FleetSpec::default()
        })
        .expect("some seed puts every meter at SF9 or faster")
}

/// The DevEUIs of the fleet's meters, by index.
fn dev_euis(fleet: &FleetSpec) -> Vec<String> {
    fleet::build(fleet, 0)
        .iter()
        .map(|m| m.dev_eui_hex())
        .collect()
}

/// A fleet of twelve meters joins through ChirpStack and reports; meterhub stores exactly the
/// readings the simulator's report says its gateway forwarded; every clock answer is applied
/// (to each meter whose request reached the network: meters ask once, on joining, and a
/// request can collide on the air); a valve command queued before the meter was ever heard of
/// is acknowledged, though the registry names another application than the one ChirpStack
/// assigned; and ChirpStack's codec gives, for every uplink, the `object` meterhub's decoder
/// gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_joins_reports_and_takes_commands_through_chirpstack() {
    let fleet = fleet(12, 2_026);
    let Some(stack) = Stack::start(&fleet, Options::default()).await else {
        return;
    };
    assert_ne!(
        fleet.application_id, stack.application_id,
        "the registry's application id must differ from ChirpStack's for this test"
    );
    let tap = EventTap::start(&stack.broker, "application/+/device/+/event/up").await;
    let euis = dev_euis(&fleet);
    let store = stack.store.clone();
    let valve_meter = meter_id(&store, &euis[0]).await;
    let valve = stack
        .server()
        .downlinks()
        .enqueue(CommandRequest {
            meter_id: valve_meter,
            kind: CommandKind::ValveClose,
            requested_by: "e2e".into(),
            expires_in: None,
        })
        .await
        .expect("the valve command is queued");

    // Meters whose clock starts 4 s or more off: an unanswered one shows it in every reading.
    let off: Vec<usize> = fleet::build(&fleet, 0)
        .iter()
        .filter(|m| m.clock_offset.abs() >= 4.0)
        .map(|m| m.index as usize)
        .collect();
    assert!(off.len() >= 2, "the fleet has meters with a wrong clock");

    let sim = stack.simulate(&fleet, None, 0);
    // Run until the command is acknowledged and each meter with a wrong clock has reported
    // after its clock answer went out.
    let done = wait_until(PATIENCE, "the valve command and every clock answer", || {
        let store = store.clone();
        let euis = euis.clone();
        let off = off.clone();
        async move {
            let valve_done = command(&store, valve_meter, valve.id)
                .await
                .is_some_and(|c| finished(&c.state));
            // A meter whose AppTimeReq collided on the air was never answered, and only asks
            // again much later: it is not waited for.
            let mut clocks = true;
            let mut corrected = 0;
            for i in &off {
                if clock_corrected(&store, &euis[*i]).await.is_some() {
                    corrected += 1;
                } else {
                    clocks &= !clock_answered(&store, &euis[*i]).await;
                }
            }
            valve_done && clocks && corrected > 0
        }
    })
    .await;
    let report = sim.stop().await;
    if let Err(e) = done {
        let c = command(&store, valve_meter, valve.id).await;
        panic!("{e}: valve command {c:?}; simulator {report:?}");
    }

    // Every meter joined; the command went to ChirpStack's application, not the registry's.
    assert_eq!(report.joined, u64::from(fleet.meters), "{report:?}");
    let valve = command(&store, valve_meter, valve.id)
        .await
        .expect("stored");
    assert!(finished(&valve.state), "{valve:?}");
    let meter = store
        .meter_by_dev_eui(&euis[0])
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(meter.application_id, stack.application_id);

    // Each wrong clock that asked was measured by meterhub, answered, and right in the next
    // readings.
    for i in &off {
        let Some((correction, drift_ms)) = clock_corrected(&store, &euis[*i]).await else {
            assert!(!clock_answered(&store, &euis[*i]).await, "meter {i}");
            continue;
        };
        assert!(
            correction.abs() >= 3,
            "meter {i}: a correction of {correction} s for a clock 4 s or more off"
        );
        assert!(drift_ms.abs() <= 2_000, "meter {i}: drift {drift_ms} ms");
    }

    // Readings: exactly what the gateways forwarded of registered meters, meter by meter.
    let expected = i64::try_from(report.registered_readings).expect("fits");
    assert!(expected >= i64::from(fleet.meters), "{report:?}");
    let counted = wait_until(PATIENCE, "every forwarded reading to be stored", || {
        let store = store.clone();
        async move { store.count_readings().await.is_ok_and(|n| n >= expected) }
    })
    .await;
    counted.expect("stored");
    // Give a wrongly stored extra reading the chance to show up before comparing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.count_readings().await.expect("count"), expected);
    let from = chrono::Utc::now() - chrono::Duration::days(1);
    let to = chrono::Utc::now() + chrono::Duration::days(1);
    for (index, want) in report.expected_by_meter.iter().enumerate() {
        let id = meter_id(&store, &euis[index]).await;
        let got = store
            .readings_for_meter(id, from, to, 1_000)
            .await
            .expect("readings")
            .len();
        assert_eq!(got, *want as usize, "meter {index}");
    }

    // ChirpStack's codec agrees with meterhub's decoder on every uplink it decoded.
    let events = tap.events();
    let mut payloads = BTreeSet::new();
    for event in &events {
        let (f_port, data) = uplink_data(event);
        let object = event.get("object").cloned().unwrap_or(Value::Null);
        let ours = match decode_uplink(f_port, &data) {
            Ok(uplink) => serde_json::to_value(uplink).expect("json"),
            Err(e) => panic!("meterhub cannot decode fPort {f_port} {data:02x?}: {e}"),
        };
        assert!(
            same_json(&object, &ours),
            "fPort {f_port} {}: ChirpStack's object {object} but meterhub decodes {ours}",
            hex::encode(&data)
        );
        payloads.insert((f_port, data));
    }
    assert!(
        events.len() as u64 >= report.uplinks - report.radio.collided,
        "{} up events for {report:?}",
        events.len()
    );
    eprintln!(
        "{} uplinks compared ({} distinct payloads); {}",
        events.len(),
        payloads.len(),
        report
            .summary(Duration::ZERO)
            .lines()
            .next()
            .unwrap_or_default()
    );
    drop(tap);
    stack.shutdown().await;
}

/// A confirmed command handed to ChirpStack just before its meter joins again (ChirpStack
/// flushes the device queue on a join and says nothing) is re-sent after the join and
/// acknowledged, not left `queued` or `sent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_handed_over_just_before_a_rejoin_is_sent_again() {
    let fleet = fleet(1, 31);
    let Some(stack) = Stack::start(&fleet, Options::default()).await else {
        return;
    };
    let store = stack.store.clone();
    let id = meter_id(&store, &dev_euis(&fleet)[0]).await;
    let valve = stack
        .server()
        .downlinks()
        .enqueue(CommandRequest {
            meter_id: id,
            kind: CommandKind::ValveOpen,
            requested_by: "e2e".into(),
            expires_in: None,
        })
        .await
        .expect("the valve command is queued");

    // The meter joins and asks for the time: meterhub hands the command over after that
    // uplink. The meter dies at once, before its next uplink could fetch it.
    let first = stack.simulate(&fleet, None, 0);
    let handed = wait_until(PATIENCE, "the command to be handed to ChirpStack", || {
        let store = store.clone();
        async move {
            command(&store, id, valve.id)
                .await
                .is_some_and(|c| c.state == "queued" || c.state == "sent")
        }
    })
    .await;
    let report = first.stop().await;
    handed.unwrap_or_else(|e| panic!("{e}: {report:?}"));
    let before = command(&store, id, valve.id).await.expect("stored");
    assert_eq!(before.attempts, 1, "{before:?}");
    assert!(
        !finished(&before.state),
        "acknowledged too early: {before:?}"
    );

    // It comes back and joins again, with DevNonces above the first run's.
    let second = stack.simulate(&fleet, None, 1_000);
    let acked = wait_until(PATIENCE, "the command to be acknowledged", || {
        let store = store.clone();
        async move {
            command(&store, id, valve.id)
                .await
                .is_some_and(|c| finished(&c.state) || c.state == "failed")
        }
    })
    .await;
    let report = second.stop().await;
    let after = command(&store, id, valve.id).await.expect("stored");
    acked.unwrap_or_else(|e| panic!("{e}: {after:?}; {report:?}"));
    assert!(finished(&after.state), "{after:?}");
    assert_eq!(
        after.attempts, 2,
        "handed over again after the join: {after:?}"
    );
    stack.shutdown().await;
}

/// With ChirpStack told not to wait for the application (`get_downlink_data_delay = 0`), the
/// clock answer misses the RX1 of the uplink that asked and goes out with a later one:
/// meterhub counts it in `meterhub_clock_answers_late_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_answer_that_misses_its_receive_window_is_counted_late() {
    let fleet = fleet(2, 5);
    let options = Options {
        downlink_data_delay_ms: 0,
        // The answer waits in ChirpStack's queue for the meter's next uplink, up to a
        // reporting interval away: it must not expire there first.
        answer_expiry_secs: 600,
        ..Options::default()
    };
    let Some(stack) = Stack::start(&fleet, options).await else {
        return;
    };
    let metrics = stack.server().metrics();
    let sim = stack.simulate(&fleet, None, 0);
    let late = wait_until(PATIENCE, "a late clock answer", || {
        let metrics = metrics.clone();
        async move { metrics.clock_answers_late.get() >= 1 }
    })
    .await;
    let report = sim.stop().await;
    late.unwrap_or_else(|e| panic!("{e}: {report:?}"));
    assert!(metrics.clock_answers.get() >= 1);
    stack.shutdown().await;
}

/// A meter whose firmware garbles every payload (`--garbled 1` on the udp transport): the frames
/// are valid LoRaWAN, so ChirpStack passes them on, and meterhub quarantines each as
/// `undecodable` and stores no reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_payload_passes_chirpstack_and_is_quarantined_by_meterhub() {
    let fleet = FleetSpec {
        faults: Faults {
            garble: 1.0,
            ..Faults::default()
        },
        ..fleet(1, 47)
    };
    let Some(stack) = Stack::start(&fleet, Options::default()).await else {
        return;
    };
    let store = stack.store.clone();
    let dev_eui = dev_euis(&fleet)[0].clone();
    let sim = stack.simulate(&fleet, None, 0);
    // Its AppTimeReq on joining, then its first reading within the minute.
    let quarantined = wait_until(PATIENCE, "two garbled uplinks quarantined", || {
        let (store, dev_eui) = (store.clone(), dev_eui.clone());
        async move {
            store
                .quarantined(Some("undecodable"), i64::MAX, 10)
                .await
                .is_ok_and(|rows| {
                    rows.iter()
                        .filter(|q| q.dev_eui.as_deref() == Some(dev_eui.as_str()))
                        .count()
                        >= 2
                })
        }
    })
    .await;
    let report = sim.stop().await;
    quarantined.unwrap_or_else(|e| panic!("{e}: {report:?}"));
    assert_eq!(report.faults.garbled, report.uplinks, "{report:?}");
    assert!(report.readings >= 1, "{report:?}");
    assert_eq!(report.registered_readings, 0, "{report:?}");
    assert_eq!(store.count_readings().await.expect("count"), 0);
    stack.shutdown().await;
}

/// Whether a command reached its end with the meter's acknowledgement.
fn finished(state: &str) -> bool {
    state == "acknowledged" || state == "completed"
}

/// meterhub's id of the meter `dev_eui`.
async fn meter_id(store: &Store, dev_eui: &str) -> i64 {
    store
        .meter_by_dev_eui(dev_eui)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("meter {dev_eui} is registered"))
        .id
}

/// The command `id` of meter `meter_id`, as stored now.
async fn command(store: &Store, meter_id: i64, id: uuid::Uuid) -> Option<CommandRow> {
    store
        .commands_for_meter(meter_id, 100)
        .await
        .ok()?
        .into_iter()
        .find(|c| c.id == id)
}

/// For the meter `dev_eui`: once a clock answer was transmitted to it and a reading measured
/// after that, the answer's correction (seconds) and the clock drift meterhub measured then.
async fn clock_corrected(store: &Store, dev_eui: &str) -> Option<(i32, i64)> {
    let meter = store.meter_by_dev_eui(dev_eui).await.ok()??;
    let commands = store.commands_for_meter(meter.id, 100).await.ok()?;
    let (sent_at, correction) = commands
        .iter()
        .filter(|c| c.kind == "appTimeAns")
        .filter_map(|c| Some((c.sent_at?, correction(c)?)))
        .min_by_key(|(at, _)| *at)?;
    let measured = meter.drift_measured_at?;
    (measured > sent_at).then_some((correction, meter.clock_drift_ms?))
}

/// Whether meterhub has answered a clock request of the meter `dev_eui`.
async fn clock_answered(store: &Store, dev_eui: &str) -> bool {
    let id = meter_id(store, dev_eui).await;
    store
        .commands_for_meter(id, 100)
        .await
        .is_ok_and(|c| c.iter().any(|c| c.kind == "appTimeAns"))
}

/// The time correction an AppTimeAns command carries, seconds.
fn correction(command: &CommandRow) -> Option<i32> {
    let port = u8::try_from(command.fport).ok()?;
    let Ok(Downlink::ClockSync(commands)) = decode_downlink(port, &command.payload) else {
        return None;
    };
    commands.iter().find_map(|c| match c {
        ClockSyncDown::AppTimeAns {
            time_correction, ..
        } => Some(*time_correction),
        _ => None,
    })
}

/// An `up` event's fPort and frame.
fn uplink_data(event: &Value) -> (u8, Vec<u8>) {
    let f_port = event["fPort"]
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or_else(|| panic!("an up event without fPort: {event}"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(event["data"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("an up event's data is not base64 ({e}): {event}"));
    (f_port, data)
}

/// JSON equality with numbers compared by value: ChirpStack prints every number of the
/// codec's `object` as a float (`87.0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Every message published on a topic filter, as JSON, from the moment it subscribed.
struct EventTap {
    events: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventTap {
    async fn start(broker: &Broker, filter: &str) -> EventTap {
        let mut options = MqttOptions::new("meterhub-e2e-tap", broker.host(), broker.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let mut subscribed = Some(subscribed);
        let sink = events.clone();
        let task = tokio::spawn(async move {
            // The client lives as long as its event loop.
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let value = serde_json::from_slice(&p.payload)
                            .unwrap_or_else(|e| Value::String(format!("not JSON: {e}")));
                        sink.lock().expect("not poisoned").push(value);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("subscribed within 30 s")
            .expect("the tap runs");
        EventTap { events, task }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("not poisoned").clone()
    }
}

impl Drop for EventTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
