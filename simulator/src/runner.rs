//! Runs a fleet: one scheduler keeps every meter's next reading in time order, sleeps until
//! the earliest is due (in simulated time), and publishes what falls due over MQTT as
//! ChirpStack would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::DateTime;
use firmware_protocol::clock::Clock;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio_util::sync::CancellationToken;

use crate::emulator::Network;
use crate::fleet::{FleetSpec, build};

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

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Uplinks published (and acknowledged by the broker when the run ended normally).
    pub uplinks: u64,
    /// Of which readings of registered meters.
    pub registered_readings: u64,
}

/// One uplink ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// MQTT topic.
    pub topic: String,
    /// The event's JSON.
    pub payload: Vec<u8>,
    /// Whether the meter is in the registry.
    pub registered: bool,
}

/// A fleet in motion: meters and the time each one next reports. Pure: no I/O, no clock, so a
/// seed always yields the same events in the same order.
pub struct Simulation {
    meters: Vec<crate::meter::Meter>,
    registered: Vec<bool>,
    network: Network,
    due: BinaryHeap<Reverse<(i64, u32)>>,
}

impl Simulation {
    /// The fleet of `spec` starting at true time `start` (Unix seconds).
    pub fn new(spec: &FleetSpec, start: i64) -> Simulation {
        let meters = build(spec, start);
        let registered = meters
            .iter()
            .map(|m| !crate::fleet::is_unregistered(spec, m))
            .collect();
        let due = meters
            .iter()
            .map(|m| Reverse((m.last_reading + m.interval, m.index)))
            .collect();
        Simulation {
            meters,
            registered,
            network: Network {
                tenant_id: "52f14cd4-c6f1-4fbd-8f87-4025e1d49242".into(),
                application_id: spec.application_id.clone(),
                device_profile_id: "b7e4c2a1-0f3d-4c8b-a6e9-5d2f1b7c9e04".into(),
            },
            due,
        }
    }

    /// When the next uplink is due (Unix seconds).
    pub fn next_due(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// The next uplink, at its due time; the meter is rescheduled one interval later.
    pub fn emit(&mut self) -> Result<Option<Emitted>> {
        let Some(Reverse((at, index))) = self.due.pop() else {
            return Ok(None);
        };
        let Some(meter) = self.meters.get_mut(index as usize) else {
            return Ok(None);
        };
        let (f_cnt, message) = meter.reading(at);
        let mut buf = [0u8; 64];
        let n = message.encode(&mut buf).context("encoding a reading")?;
        let when = DateTime::from_timestamp(at, 0).unwrap_or_default();
        let event = self
            .network
            .up_event(meter, f_cnt, message.fport(), &buf[..n], when);
        let payload = serde_json::to_vec(&event).context("serialising an event")?;
        self.due.push(Reverse((at + meter.interval, index)));
        Ok(Some(Emitted {
            topic: self.network.topic(meter, "up"),
            payload,
            registered: self
                .registered
                .get(index as usize)
                .copied()
                .unwrap_or(false),
        }))
    }
}

/// Runs `spec` on `clock` until its duration has passed in simulated time or `stop` fires.
/// `progress` is called about every second with the report so far.
pub async fn run(
    spec: RunSpec,
    clock: Clock,
    stop: CancellationToken,
    mut progress: impl FnMut(&Report),
) -> Result<Report> {
    let start = clock.now_unix();
    let end = spec.duration.map(|d| start + d);
    let mut sim = Simulation::new(&spec.fleet, start);

    let mut options = MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(1024 * 1024));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "simulator's MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });

    let mut report = Report::default();
    let mut last_progress = Instant::now();
    while let Some(at) = sim.next_due() {
        if end.is_some_and(|e| at > e) || stop.is_cancelled() {
            break;
        }
        let now = clock.now_unix();
        if at > now {
            let wait = clock.wall_duration(Duration::from_secs((at - now) as u64));
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let Some(up) = sim.emit()? else { break };
        client
            .publish(up.topic, QoS::AtLeastOnce, false, up.payload)
            .await
            .context("publishing")?;
        report.uplinks += 1;
        if up.registered {
            report.registered_readings += 1;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&report);
            last_progress = Instant::now();
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), poller).await;
    progress(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_events(seed: u64, count: usize) -> Vec<Emitted> {
        let spec = FleetSpec {
            meters: 300,
            seed,
            ..FleetSpec::default()
        };
        let mut sim = Simulation::new(&spec, 1_784_678_400);
        (0..count)
            .map(|_| sim.emit().expect("emits").expect("an event"))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_twice() {
        let a = first_events(42, 1_000);
        assert_eq!(a, first_events(42, 1_000));
        assert_ne!(a, first_events(43, 1_000));
    }

    #[test]
    fn every_event_carries_a_decodable_reading_in_time_order() {
        use firmware_protocol::chirpstack::{Event, EventType};
        let mut last = 0;
        for e in first_events(7, 600) {
            let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &e.payload) else {
                panic!("an up event");
            };
            let time = up.time.expect("time").0.timestamp();
            assert!(time >= last, "in time order");
            last = time;
            let message = firmware_protocol::decode_uplink(1, up.data.as_slice()).expect("decodes");
            assert!(matches!(message, firmware_protocol::Uplink::Reading(_)));
            assert_eq!(up.rx_info.len(), 2);
        }
    }
}
