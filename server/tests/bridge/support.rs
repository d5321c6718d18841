//! What the bridge tests share: a server on a private broker and database, a ChirpStack-like
//! publisher, and polling helpers.

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use firmware_protocol::clock::Clock;
use firmware_protocol::{DoorState, GpsTime, Reading, Serial, StatusFlags, Uplink, ValveState};
use meterhub::app::Application;
use meterhub::config::{Secret, Settings};
use meterhub::storage::Store;
use meterhub::storage::meters::NewMeter;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use test_support::{Broker, Dialect, TestDb};
use tokio_util::sync::CancellationToken;

/// The ChirpStack application every test meter belongs to.
pub const APP: &str = "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23";

/// A database, a broker and a store for one test.
pub struct Env {
    pub db: TestDb,
    pub broker: Broker,
    pub store: Store,
}

impl Env {
    pub async fn new(dialect: Dialect) -> Option<Env> {
        test_support::init_tracing();
        let db = TestDb::create(dialect).await?;
        let broker = Broker::start().await;
        let store = Store::connect(db.url(), 4).await.expect("connect");
        store.migrate(Utc::now()).await.expect("migrate");
        Some(Env { db, broker, store })
    }

    /// Settings for a server on this database and broker.
    pub fn settings(&self, client_id: &str) -> Settings {
        let mut s = Settings::default();
        s.database.url = Secret(self.db.url().to_owned());
        s.mqtt.url = self.broker.url();
        s.mqtt.client_id = client_id.to_owned();
        s.http.bind = "127.0.0.1:0".parse().expect("address");
        s
    }

    /// Registers `count` meters; returns their DevEUIs and serials.
    pub async fn register(&self, count: u32) -> Vec<(String, Serial)> {
        let mut out = Vec::new();
        let meters: Vec<NewMeter> = (1..=count)
            .map(|n| {
                let serial = Serial::new(12, 26, 1, n).expect("valid");
                let dev_eui = format!("a1b2c3d4e5{n:06x}");
                out.push((dev_eui.clone(), serial));
                NewMeter {
                    dev_eui,
                    serial: serial.to_string(),
                    body_number: i64::from(n),
                    user_id: format!("user-{n}"),
                    application_id: APP.to_owned(),
                    region_id: "north".to_owned(),
                    usage_type: "residential".to_owned(),
                    mode: "credit".to_owned(),
                    production_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
                    reporting_interval_minutes: 1440,
                }
            })
            .collect();
        self.store
            .register_meters(&meters, Utc::now())
            .await
            .expect("register");
        out
    }
}

/// A running server and the token that stops it.
pub struct Server {
    pub app: Option<Application>,
    pub stop: CancellationToken,
}

impl Server {
    pub async fn start(settings: Settings) -> Server {
        let clock = settings.clock().expect("the settings' clock");
        Server::start_on(settings, clock).await
    }

    /// [`Server::start`] on a clock of the test's, shared with a simulated fleet.
    pub async fn start_on(settings: Settings, clock: Clock) -> Server {
        let stop = CancellationToken::new();
        let app = Application::build_on(settings, clock, stop.clone())
            .await
            .expect("server starts");
        // Events published before the subscription exists are not delivered to anyone (as
        // with ChirpStack and a server that is not yet subscribed); tests start after it.
        let metrics = app.metrics();
        let subscribed = wait_for(Duration::from_secs(20), 1, || {
            let m = metrics.clone();
            async move { m.mqtt_subscribed.load(std::sync::atomic::Ordering::Relaxed) as i64 }
        })
        .await;
        assert_eq!(subscribed, 1, "the server subscribed within 20 s");
        Server {
            app: Some(app),
            stop,
        }
    }

    /// Stops gracefully and waits.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(app) = self.app.take() {
            app.run_until_stopped().await.expect("a clean stop");
        }
    }
}

/// A reading frame for a meter at a UTC time.
pub fn reading_frame(serial: Serial, at: DateTime<Utc>, litres: u32) -> Vec<u8> {
    let m = Uplink::Reading(Reading {
        serial,
        meter_time: GpsTime::from_unix(at.timestamp()).expect("GPS range"),
        valve: ValveState::Open,
        door: DoorState::NotFitted,
        battery_millivolts: 3_600,
        battery_percent: 90,
        flags: StatusFlags::empty(),
        gas_volume_litres: Some(litres),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: Some(1_250),
        gas_pressure_pa: Some(102_300),
    });
    let mut buf = [0u8; 64];
    let n = m.encode(&mut buf).expect("encodes");
    buf[..n].to_vec()
}

/// An `up` event as ChirpStack publishes it (the sample, two gateways), for this device,
/// deduplication id, fPort and payload.
pub fn up_event(dev_eui: &str, dedup: &str, f_cnt: u32, f_port: u8, data: &[u8]) -> Vec<u8> {
    let sample = include_str!("../../../firmware-protocol/tests/samples/chirpstack/event-up.json");
    let mut v: Value = serde_json::from_str(sample).expect("sample");
    v["deduplicationId"] = json!(dedup);
    v["time"] = json!(Utc::now().to_rfc3339());
    v["deviceInfo"]["devEui"] = json!(dev_eui);
    v["deviceInfo"]["applicationId"] = json!(APP);
    v["fCnt"] = json!(f_cnt);
    v["fPort"] = json!(f_port);
    v["data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
    if let Some(o) = v.as_object_mut() {
        o.remove("object");
    }
    serde_json::to_vec(&v).expect("json")
}

/// The topic of an event.
pub fn topic(dev_eui: &str, event: &str) -> String {
    format!("application/{APP}/device/{dev_eui}/event/{event}")
}

/// Publishes like ChirpStack with `qos = 1`, over MQTT v5, and waits for every PUBACK.
pub struct Publisher {
    client: AsyncClient,
    acked: tokio::sync::mpsc::UnboundedReceiver<()>,
    sent: usize,
}

impl Publisher {
    pub async fn connect(broker: &Broker, client_id: &str) -> Publisher {
        Publisher::connect_to(broker.host(), broker.port(), client_id).await
    }

    pub async fn connect_to(host: &str, port: u16, client_id: &str) -> Publisher {
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(Some(1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(o, 1_000);
        let (tx, acked) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher {
            client,
            acked,
            sent: 0,
        }
    }

    pub async fn publish(&mut self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
        self.sent += 1;
    }

    /// Publishes at QoS 0, as ChirpStack does with its default `qos = 0`.
    pub async fn publish_qos0(&mut self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .expect("publish");
    }

    /// Waits until the broker acknowledged everything published.
    pub async fn flush(&mut self) {
        while self.sent > 0 {
            tokio::time::timeout(Duration::from_secs(60), self.acked.recv())
                .await
                .expect("the broker acknowledges within a minute")
                .expect("publisher running");
            self.sent -= 1;
        }
    }
}

/// Polls `probe` until it returns `want` or `limit` passes; returns the last value.
pub async fn wait_for<F, Fut>(limit: Duration, want: i64, mut probe: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let start = Instant::now();
    loop {
        let v = probe().await;
        if v == want || start.elapsed() > limit {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Probes until it returns `want`, or until it has not changed for `idle`: a slow machine
/// gets as long as it keeps making progress. Returns the last value.
pub async fn wait_while_moving<F, Fut>(idle: Duration, want: i64, mut probe: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut last = probe().await;
    let mut moved = Instant::now();
    loop {
        if last == want || moved.elapsed() > idle {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = probe().await;
        if v != last {
            last = v;
            moved = Instant::now();
        }
    }
}

/// Receives what the server publishes on `command/down`, as ChirpStack would.
pub struct CommandListener {
    _client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<(
        String,
        firmware_protocol::chirpstack::DownlinkCommand,
    )>,
}

impl CommandListener {
    /// Subscribes (and waits for the subscription) before returning.
    pub async fn connect(broker: &Broker, client_id: &str) -> CommandListener {
        let mut o = MqttOptions::new(client_id, broker.host(), broker.port());
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (sub_tx, sub_rx) = tokio::sync::oneshot::channel();
        client
            .subscribe("application/+/device/+/command/+", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        tokio::spawn(async move {
            let mut sub_tx = Some(sub_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::SubAck(_))) => {
                        if let Some(s) = sub_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let command =
                            serde_json::from_slice(&p.payload).expect("a DownlinkCommand");
                        if tx.send((topic, command)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), sub_rx)
            .await
            .expect("subscribed within 10 s")
            .expect("listener running");
        CommandListener {
            _client: client,
            rx,
        }
    }

    /// The next command, within `limit`.
    pub async fn next(
        &mut self,
        limit: Duration,
    ) -> Option<(String, firmware_protocol::chirpstack::DownlinkCommand)> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A ChirpStack event of another type for a device, with a body.
pub fn event(dev_eui: &str, body: Value) -> Vec<u8> {
    let mut v = body;
    v["deviceInfo"] = json!({"devEui": dev_eui, "applicationId": APP, "tenantId": "t"});
    serde_json::to_vec(&v).expect("json")
}
