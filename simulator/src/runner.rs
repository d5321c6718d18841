//! Runs a fleet over MQTT: one scheduler publishes what falls due (in simulated time) as
//! ChirpStack would, and plays ChirpStack's downlink queue for the commands it receives.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use firmware_protocol::chirpstack::DownlinkCommand;
use firmware_protocol::clock::Clock;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fleet::FleetSpec;
use crate::simulation::{Fate, Message, Simulation};

/// How long ChirpStack waits after publishing an `up` before it takes the next queue item
/// (`get_downlink_data_delay`): commands enqueued later wait for the next uplink.
pub const RX_WINDOW: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The fleet.
    pub fleet: FleetSpec,
    /// Broker host.
    pub host: String,
    /// Broker port (MQTT v5).
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// Simulated seconds to run; forever when `None`.
    pub duration: Option<i64>,
}

pub use crate::summary::{FaultCounts, Report};

/// Runs `spec` on `clock` until its duration has passed in simulated time or `stop` fires.
/// `progress` is called about every second with the report so far, and once at the end.
pub async fn run(
    spec: RunSpec,
    clock: Clock,
    stop: CancellationToken,
    progress: impl FnMut(&Report),
) -> Result<Report> {
    run_counted(spec, clock, stop, &AtomicU64::default(), progress).await
}

/// [`run`], counting every message handed to the MQTT client in `published` as it goes (the
/// report has the count only once a second): the demo paces its clock by it.
pub async fn run_counted(
    spec: RunSpec,
    clock: Clock,
    stop: CancellationToken,
    live: &AtomicU64,
    mut progress: impl FnMut(&Report),
) -> Result<Report> {
    let start = clock.now_unix();
    let end = spec.duration.map(|d| start + d);
    let mut sim = Simulation::new(&spec.fleet, start);

    let mut options = MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(1024 * 1024));
    // Many QoS 1 publishes in flight: with rumqttc's default of 100, the round trips to the
    // broker, not the fleet, would set the pace.
    options.set_outgoing_inflight_upper_limit(5_000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acked_by_poller = acked.clone();
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors_by_poller = errors.clone();
    let command_filter = format!(
        "application/{}/device/+/command/down",
        spec.fleet.application_id
    );
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<Vec<u8>>();
    let subscriber = client.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = subscriber.try_subscribe(command_filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if commands_tx.send(p.payload.to_vec()).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_by_poller.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    errors_by_poller.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "simulator's MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });

    let mut report = Report::for_fleet(sim.len());
    let mut published = 0u64;
    let mut last_progress = Instant::now();
    // Open RX windows: (wall deadline, meter).
    let mut windows: VecDeque<(Instant, u32)> = VecDeque::new();
    loop {
        // Commands first: one that arrived before a window closes must make that window.
        while let Ok(payload) = commands.try_recv() {
            take_command(&mut sim, &mut report, &payload);
        }
        while let Some(&(deadline, index)) = windows.front() {
            if deadline > Instant::now() {
                break;
            }
            windows.pop_front();
            let now = chrono::DateTime::from_timestamp(clock.now_unix(), 0).unwrap_or_default();
            for m in sim.rx_window(index, now)? {
                publish(&client, m, &mut published, live).await?;
            }
        }
        let Some(at) = sim.next_due() else {
            if windows.is_empty() {
                break;
            }
            tokio::time::sleep(RX_WINDOW).await;
            continue;
        };
        if (end.is_some_and(|e| at > e) && windows.is_empty()) || stop.is_cancelled() {
            break;
        }
        let now = clock.now_unix();
        if at > now || end.is_some_and(|e| at > e) {
            let mut wait =
                clock.wall_duration(Duration::from_secs(at.saturating_sub(now).max(0) as u64));
            if let Some(&(deadline, _)) = windows.front() {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                Some(payload) = commands.recv() => take_command(&mut sim, &mut report, &payload),
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let Some(up) = sim.emit()? else { break };
        report.add(&up);
        // ChirpStack opens an RX window only for an uplink it accepted.
        if up.fate == Fate::Delivered {
            windows.push_back((Instant::now() + RX_WINDOW, up.meter));
        }
        for m in up.messages {
            publish(&client, m, &mut published, live).await?;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            report.published = published;
            report.mqtt_errors = errors.load(std::sync::atomic::Ordering::Relaxed);
            report.active_meters = sim.active_meters(clock.now_unix()) as u64;
            progress(&report);
            last_progress = Instant::now();
        }
    }
    // Events that reordering still holds are published last.
    for m in sim.release_held() {
        publish(&client, m, &mut published, live).await?;
    }
    // Published means acknowledged by the broker: wait for the last acknowledgements.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < published && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    report.published = published;
    report.acknowledged = acked.load(std::sync::atomic::Ordering::Relaxed);
    report.mqtt_errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    report.active_meters = sim.active_meters(clock.now_unix()) as u64;
    progress(&report);
    Ok(report)
}

/// Queues a received `command/down`, counting what ChirpStack would refuse (it says so only
/// in its own log).
fn take_command(sim: &mut Simulation, report: &mut Report, payload: &[u8]) {
    let queued = DownlinkCommand::from_json(payload)
        .map_err(|e| e.to_string())
        .and_then(|c| sim.enqueue(&c).map_err(|e| format!("{e:?}")));
    match queued {
        Ok(()) => report.downlinks += 1,
        Err(e) => {
            report.refused += 1;
            tracing::debug!(error = %e, "command refused");
        }
    }
}

async fn publish(
    client: &AsyncClient,
    m: Message,
    published: &mut u64,
    live: &AtomicU64,
) -> Result<()> {
    *published += 1;
    live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    client
        .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
        .await
        .context("publishing")
}
