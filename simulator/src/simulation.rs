//! A fleet in motion, without I/O: meters, when each next transmits, and ChirpStack's queue
//! of downlinks for each. Pure and clock-free, so a seed always yields the same events in the
//! same order; the runner supplies time and the network.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use firmware_protocol::chirpstack::DownlinkCommand;

use crate::emulator::Network;
use crate::fleet::{FleetSpec, build, is_unregistered};
use crate::meter::{Meter, Reply};
use crate::queue::{DeviceQueue, QueueItem, Refusal};

/// Seconds a meter takes to answer a command (listen, act, transmit).
const REPLY_DELAY: i64 = 5;

/// One MQTT message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// The event's JSON.
    pub payload: Vec<u8>,
}

/// What one uplink produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// The meter.
    pub meter: u32,
    /// Its `up` event.
    pub up: Message,
    /// Other events the uplink caused (`ack` of a confirmed downlink).
    pub also: Vec<Message>,
    /// Whether the meter is in the registry.
    pub registered: bool,
    /// Whether the uplink is a periodic reading (not a reply).
    pub periodic: bool,
}

/// Why a command was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No simulated device has this DevEUI.
    UnknownDevice(String),
    /// ChirpStack's queue refused it.
    Queue(Refusal),
}

/// The fleet and its schedule.
pub struct Simulation {
    meters: Vec<Meter>,
    registered: Vec<bool>,
    network: Network,
    /// (due time, sequence, meter): the sequence keeps equal times in insertion order.
    due: BinaryHeap<Reverse<(i64, u64, u32)>>,
    replies: HashMap<u64, Reply>,
    next_seq: u64,
    queues: HashMap<u32, DeviceQueue>,
    /// Meters that received a confirmed downlink and will set the ACK bit next time.
    owe_ack: HashMap<u32, bool>,
}

impl Simulation {
    /// The fleet of `spec` starting at true time `start` (Unix seconds).
    pub fn new(spec: &FleetSpec, start: i64) -> Simulation {
        let meters = build(spec, start);
        let registered = meters.iter().map(|m| !is_unregistered(spec, m)).collect();
        let mut sim = Simulation {
            registered,
            network: Network {
                tenant_id: "52f14cd4-c6f1-4fbd-8f87-4025e1d49242".into(),
                application_id: spec.application_id.clone(),
                device_profile_id: "b7e4c2a1-0f3d-4c8b-a6e9-5d2f1b7c9e04".into(),
            },
            due: BinaryHeap::new(),
            replies: HashMap::new(),
            next_seq: 0,
            queues: HashMap::new(),
            owe_ack: HashMap::new(),
            meters: Vec::new(),
        };
        for m in &meters {
            sim.schedule(m.last_reading + m.interval, m.index, None);
        }
        sim.meters = meters;
        sim
    }

    fn schedule(&mut self, at: i64, index: u32, reply: Option<Reply>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(r) = reply {
            self.replies.insert(seq, r);
        }
        self.due.push(Reverse((at, seq, index)));
    }

    /// When the next uplink is due (Unix seconds).
    pub fn next_due(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next uplink, at its due time. A periodic reading reschedules its meter one
    /// interval later; a disconnected meter stays silent.
    pub fn emit(&mut self) -> Result<Option<Emitted>> {
        loop {
            let Some(Reverse((at, seq, index))) = self.due.pop() else {
                return Ok(None);
            };
            let reply = self.replies.remove(&seq);
            let Some(meter) = self.meters.get_mut(index as usize) else {
                continue;
            };
            if meter.disconnected {
                continue;
            }
            let (f_cnt, message) = match reply {
                Some(r) => meter.reply(r, at),
                None => meter.reading(at),
            };
            let mut buf = [0u8; 64];
            let n = message.encode(&mut buf).context("encoding an uplink")?;
            let when = DateTime::from_timestamp(at, 0).unwrap_or_default();
            let up = self
                .network
                .up_event(meter, f_cnt, message.fport(), &buf[..n], when);
            let mut also = Vec::new();
            let ack_bit = self.owe_ack.remove(&index).unwrap_or(false);
            if let Some(settled) = self
                .queues
                .get_mut(&index)
                .and_then(|q| q.on_uplink(ack_bit))
            {
                let ack = self.network.ack_event(
                    meter,
                    &up.deduplication_id,
                    settled.id,
                    settled.acknowledged,
                    settled.f_cnt_down,
                    when,
                );
                also.push(Message {
                    topic: self.network.topic(meter, "ack"),
                    payload: serde_json::to_vec(&ack).context("serialising an ack")?,
                });
            }
            let up = Message {
                topic: self.network.topic(meter, "up"),
                payload: serde_json::to_vec(&up).context("serialising an event")?,
            };
            let periodic = reply.is_none();
            if periodic {
                let next = at + meter.interval;
                self.schedule(next, index, None);
            }
            return Ok(Some(Emitted {
                meter: index,
                up,
                also,
                registered: self
                    .registered
                    .get(index as usize)
                    .copied()
                    .unwrap_or(false),
                periodic,
            }));
        }
    }

    /// Queues a `command/down` as ChirpStack would.
    pub fn enqueue(&mut self, command: &DownlinkCommand) -> Result<(), Refused> {
        let index = self
            .meter_index(&command.dev_eui)
            .ok_or_else(|| Refused::UnknownDevice(command.dev_eui.clone()))?;
        let item = QueueItem {
            id: command
                .id
                .unwrap_or_else(|| self.meters[index as usize].rng.uuid()),
            f_port: command.f_port,
            data: command.data.as_slice().to_vec(),
            confirmed: command.confirmed,
            expires_at: command.expires_at.as_ref().map(|t| t.0),
        };
        self.queues
            .entry(index)
            .or_default()
            .enqueue(item)
            .map_err(Refused::Queue)
    }

    /// The RX window of meter `index`'s uplink, at true time `now`: expired items are logged,
    /// the first live item is sent (`txack`) and the meter acts on it, scheduling its replies.
    pub fn rx_window(&mut self, index: u32, now: DateTime<Utc>) -> Result<Vec<Message>> {
        let Some(queue) = self.queues.get_mut(&index) else {
            return Ok(Vec::new());
        };
        let window = queue.rx_window(now);
        let Some(meter) = self.meters.get_mut(index as usize) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for id in window.expired {
            let log = self.network.expired_event(meter, id, now);
            out.push(Message {
                topic: self.network.topic(meter, "log"),
                payload: serde_json::to_vec(&log).context("serialising a log")?,
            });
        }
        if let Some((item, f_cnt_down)) = window.sent {
            let txack = self.network.txack_event(meter, item.id, f_cnt_down, now);
            out.push(Message {
                topic: self.network.topic(meter, "txack"),
                payload: serde_json::to_vec(&txack).context("serialising a txack")?,
            });
            if item.confirmed {
                self.owe_ack.insert(index, true);
            }
            let replies = meter.receive(item.f_port, &item.data, now.timestamp());
            for r in replies {
                self.schedule(now.timestamp() + REPLY_DELAY, index, Some(r));
            }
        }
        Ok(out)
    }

    /// The meter with this DevEUI (the fleet's DevEUIs are `70b3d57e` and the index).
    fn meter_index(&self, dev_eui: &str) -> Option<u32> {
        let rest = dev_eui.strip_prefix("70b3d57e")?;
        let index = u32::from_str_radix(rest, 16).ok()?;
        ((index as usize) < self.meters.len()).then_some(index)
    }

    /// A meter, for inspection.
    pub fn meter(&self, index: u32) -> Option<&Meter> {
        self.meters.get(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use firmware_protocol::chirpstack::{Event, EventType};

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
        let mut last = 0;
        for e in first_events(7, 600) {
            let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &e.up.payload) else {
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

#[cfg(test)]
mod downlink_tests {
    use super::*;
    use firmware_protocol::chirpstack::{Bytes, Event, EventType, Timestamp};
    use uuid::Uuid;

    fn command(
        sim: &Simulation,
        index: u32,
        id: u128,
        data: &[u8],
        confirmed: bool,
    ) -> DownlinkCommand {
        DownlinkCommand {
            id: Some(Uuid::from_u128(id)),
            dev_eui: sim.meter(index).expect("meter").dev_eui_hex(),
            confirmed,
            f_port: 10,
            data: Bytes(data.to_vec()),
            ..DownlinkCommand::default()
        }
    }

    fn kinds(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| m.topic.rsplit('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_confirmed_valve_close_is_sent_acknowledged_and_answered() {
        let spec = FleetSpec {
            meters: 1,
            electricity_share: 0.0,
            ..FleetSpec::default()
        };
        let mut sim = Simulation::new(&spec, 1_784_678_400);
        sim.enqueue(&command(&sim, 0, 1, &[0x01, 0x02], true))
            .expect("queued");
        assert!(matches!(
            sim.enqueue(&command(&sim, 0, 1, &[0x01, 0x02], true)),
            Err(Refused::Queue(Refusal::DuplicateId))
        ));
        let first = sim.emit().expect("emits").expect("uplink");
        assert!(first.also.is_empty());
        let now = DateTime::from_timestamp(sim.next_due().expect("due") - 86_400, 0).expect("time");
        let window = sim.rx_window(0, now).expect("window");
        assert_eq!(kinds(&window), ["txack"]);
        // The valve moved: the meter's alarm comes a few seconds later, with the ACK bit.
        let alarm = sim.emit().expect("emits").expect("uplink");
        assert!(!alarm.periodic);
        assert_eq!(kinds(&alarm.also), ["ack"]);
        let Ok(Event::Ack(ack)) = Event::from_json(EventType::Ack, &alarm.also[0].payload) else {
            panic!("ack")
        };
        assert!(ack.acknowledged);
        assert_eq!(ack.queue_item_id, Some(Uuid::from_u128(1)));
        let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &alarm.up.payload) else {
            panic!("up")
        };
        assert_eq!(up.f_port, 2);
        assert_eq!(ack.deduplication_id, up.deduplication_id);
        assert_eq!(
            sim.meter(0).expect("meter").valve,
            firmware_protocol::ValveState::Closed
        );
    }

    #[test]
    fn an_expired_command_is_logged_not_sent() {
        let spec = FleetSpec {
            meters: 1,
            ..FleetSpec::default()
        };
        let mut sim = Simulation::new(&spec, 1_784_678_400);
        let mut c = command(&sim, 0, 2, &[0x01, 0x04], false);
        c.expires_at = Some(Timestamp(
            DateTime::from_timestamp(1_784_678_400, 0).expect("time"),
        ));
        sim.enqueue(&c).expect("queued");
        sim.emit().expect("emits").expect("uplink");
        let later = DateTime::from_timestamp(1_784_678_400 + 3_600, 0).expect("time");
        let window = sim.rx_window(0, later).expect("window");
        assert_eq!(kinds(&window), ["log"]);
        assert!(String::from_utf8_lossy(&window[0].payload).contains("EXPIRED"));
    }

    #[test]
    fn commands_for_unknown_devices_are_refused() {
        let mut sim = Simulation::new(
            &FleetSpec {
                meters: 1,
                ..FleetSpec::default()
            },
            0,
        );
        let mut c = command(&sim, 0, 3, &[0x01, 0x04], false);
        c.dev_eui = "ffffffffffffffff".into();
        assert!(matches!(sim.enqueue(&c), Err(Refused::UnknownDevice(_))));
    }
}
