//! A fleet in motion, without I/O: meters, when each next transmits, and ChirpStack's queue
//! of downlinks for each. Pure and clock-free, so a seed always yields the same events in the
//! same order; the runner supplies time and the network.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use firmware_protocol::chirpstack::DownlinkCommand;

use firmware_protocol::Uplink;
use firmware_protocol::chirpstack::LogCode;

use crate::emulator::Network;
use crate::faults::{self, Faults, Hearing, hit};
use crate::fleet::{FleetSpec, build, is_unregistered};
use crate::meter::{Meter, Reply, is_tamper};
use crate::queue::{DeviceQueue, QueueItem, Refusal};
use crate::rng::Pcg32;
use crate::timeline::{Job, RESYNC_SPACING, Timeline};

/// Seconds between a meter's boot-time AppTimeReq and its first reading.
const BOOT_LEAD: i64 = 60;

/// One MQTT message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// The event's JSON.
    pub payload: Vec<u8>,
}

/// What became of an uplink between the meter and the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// ChirpStack accepted it and published its `up` event (perhaps late, perhaps twice).
    Delivered,
    /// No gateway heard it.
    Lost,
    /// The meter was in a silent spell: nothing of it was heard.
    Silent,
    /// ChirpStack refused its frame counter and published a `log` instead of an `up`.
    Discarded,
}

/// The faults that touched one uplink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touched {
    /// Its payload no longer decodes.
    pub garbled: bool,
    /// Its serial has a wrong check digit.
    pub bad_serial: bool,
    /// The meter's clock jumped just before this reading.
    pub clock_jump: bool,
    /// The meter restarted its frame counter with this uplink.
    pub f_cnt_reset: bool,
    /// A silent spell began with this uplink.
    pub silence_started: bool,
    /// Its `up` event was published twice with the same `deduplicationId`.
    pub duplicate: bool,
    /// It also came by a second path, under a new `deduplicationId`.
    pub second_path: bool,
    /// Its events were held back behind later uplinks'.
    pub reordered: bool,
    /// The meter sent it again; ChirpStack logged the retransmission.
    pub retransmission: bool,
}

/// What one uplink produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// The meter.
    pub meter: u32,
    /// Its `up` event as ChirpStack builds it for this frame (also when a fault kept it from
    /// being published: see `messages`).
    pub up: Message,
    /// Other events the uplink caused (`ack` of a confirmed downlink).
    pub also: Vec<Message>,
    /// Whether the meter is in the registry.
    pub registered: bool,
    /// Whether the uplink is a periodic reading (not a reply).
    pub periodic: bool,
    /// What to publish now, in order: this uplink's events as faults left them, then those of
    /// earlier uplinks that reordering held back until now. Without faults, `up` then `also`.
    pub messages: Vec<Message>,
    /// What became of the uplink.
    pub fate: Fate,
    /// The faults that touched it.
    pub touched: Touched,
    /// Whether the frame is a reading (periodic or asked for).
    pub reading: bool,
    /// Whether the frame is a tamper alarm (magnetic tamper, movement, cable cut).
    pub tamper: bool,
}

impl Emitted {
    /// Whether the server must store a reading from this uplink: a reading of a registered
    /// meter, delivered, its payload intact and its serial valid. Duplicates, second paths
    /// and reordering do not change that it is stored exactly once.
    pub fn stores_reading(&self) -> bool {
        self.reading
            && self.registered
            && self.fate == Fate::Delivered
            && !self.touched.garbled
            && !self.touched.bad_serial
    }

    /// Whether the server must store the alarm this uplink raises: a tamper alarm of a
    /// registered meter, delivered, its payload intact (an alarm carries no serial).
    pub fn stores_tamper_alarm(&self) -> bool {
        self.tamper && self.registered && self.fate == Fate::Delivered && !self.touched.garbled
    }
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
    /// When each meter is next due, in true time (Unix seconds).
    due: Timeline<Job>,
    queues: HashMap<u32, DeviceQueue>,
    /// Meters that received a confirmed downlink and will set the ACK bit next time.
    owe_ack: HashMap<u32, bool>,
    faults: Faults,
    /// ChirpStack's view of each device's uplink counter: the last one it accepted.
    last_f_cnt: Vec<Option<u32>>,
    /// Events held back by reordering: (uplinks still to pass them, the events).
    held: Vec<(i64, Vec<Message>)>,
    run_faults: Pcg32,
    /// Per periodic reading, the chance of a tamper alarm before the next.
    tamper: f64,
}

impl Simulation {
    /// The fleet of `spec` starting at true time `start` (Unix seconds). Each meter boots:
    /// its first uplink is an AppTimeReq, a minute before its first reading.
    pub fn new(spec: &FleetSpec, start: i64) -> Simulation {
        let meters = build(spec, start);
        let registered = meters.iter().map(|m| !is_unregistered(spec, m)).collect();
        // One entry per meter: its boot, which then schedules its first reading (a million
        // meters cost one heap entry each, and no job).
        let due = Timeline::boot(&meters, start, BOOT_LEAD);
        Simulation {
            registered,
            network: Network {
                tenant_id: "52f14cd4-c6f1-4fbd-8f87-4025e1d49242".into(),
                application_id: spec.application_id.clone(),
                device_profile_id: "b7e4c2a1-0f3d-4c8b-a6e9-5d2f1b7c9e04".into(),
            },
            due,
            queues: HashMap::new(),
            owe_ack: HashMap::new(),
            faults: spec.faults.clone(),
            last_f_cnt: vec![None; meters.len()],
            held: Vec::new(),
            run_faults: faults::run_stream(spec.seed),
            tamper: spec.tamper,
            meters,
        }
    }

    /// When the next uplink is due (Unix seconds).
    pub fn next_due(&self) -> Option<i64> {
        self.due.next_due()
    }

    /// The next uplink, at its due time. A periodic reading reschedules its meter one
    /// interval later; a disconnected meter stays silent. Faults (see [`crate::faults`])
    /// decide what of it is published: publish `messages`.
    pub fn emit(&mut self) -> Result<Option<Emitted>> {
        loop {
            let Some((at, index, job)) = self.due.pop() else {
                return Ok(None);
            };
            let Some(meter) = self.meters.get(index as usize) else {
                continue;
            };
            if meter.disconnected {
                continue;
            }
            let reply = match job {
                None if !meter.booted => {
                    let first = meter.last_reading + meter.interval;
                    self.meters[index as usize].booted = true;
                    self.due.schedule(first, index, None);
                    Some(Reply::AppTimeReq)
                }
                None => None,
                Some(job) => {
                    let Some(r) = self.due.fire(job, meter, at) else {
                        continue;
                    };
                    Some(r)
                }
            };
            let emitted = self.transmit(at, index, reply)?;
            return Ok(Some(emitted));
        }
    }

    /// One frame of meter `index` at true time `at`, through the meter's faults and
    /// ChirpStack's frame-counter check.
    fn transmit(&mut self, at: i64, index: u32, reply: Option<Reply>) -> Result<Emitted> {
        let i = index as usize;
        let faults = &self.faults;
        let meter = &mut self.meters[i];
        let mut built = faults::before_frame(meter, faults, reply.is_none());
        let (f_cnt, message) = match reply {
            Some(r) => meter.reply(r, at),
            None => meter.reading(at),
        };
        let reading = matches!(message, Uplink::Reading(_));
        let tamper = matches!(&message, Uplink::Alarm(a) if is_tamper(a.kind));
        let mut buf = [0u8; 64];
        let n = message.encode(&mut buf).context("encoding an uplink")?;
        let mut frame = buf[..n].to_vec();
        let f_port = message.fport();
        faults::corrupt(meter, faults, f_port, &mut frame, &mut built);
        let mut touched = Touched {
            garbled: built.garbled,
            bad_serial: built.bad_serial,
            clock_jump: built.clock_jump,
            f_cnt_reset: built.f_cnt_reset,
            ..Touched::default()
        };
        let heard = match faults::hearing(meter, faults, at) {
            Hearing::Silent { began } => {
                touched.silence_started = began;
                Fate::Silent
            }
            Hearing::Lost => Fate::Lost,
            Hearing::Heard => Fate::Delivered,
        };
        let when = DateTime::from_timestamp(at, 0).unwrap_or_default();
        let up = self.network.up_event(meter, f_cnt, f_port, &frame, when);
        let ack_bit = self.owe_ack.remove(&index).unwrap_or(false);
        let up_topic = self.network.topic(meter, "up");
        let up_message = Message {
            topic: up_topic.clone(),
            payload: serde_json::to_vec(&up).context("serialising an event")?,
        };
        let mut fate = heard;
        let mut also = Vec::new();
        let mut messages = Vec::new();
        if heard == Fate::Delivered {
            // ChirpStack's frame-counter check: a counter that did not move on is refused
            // with a log, unless the device profile disables the check.
            let refused = match self.last_f_cnt[i] {
                Some(last) if f_cnt <= last && !faults.skip_f_cnt_check => Some(if f_cnt == last {
                    LogCode::UplinkFCntRetransmission
                } else {
                    LogCode::UplinkFCntReset
                }),
                _ => None,
            };
            if let Some(code) = refused {
                fate = Fate::Discarded;
                let log = self
                    .network
                    .f_cnt_event(meter, code, &up.deduplication_id, f_cnt, when);
                messages.push(Message {
                    topic: self.network.topic(meter, "log"),
                    payload: serde_json::to_vec(&log).context("serialising a log")?,
                });
            } else {
                self.last_f_cnt[i] = Some(f_cnt);
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
                messages.push(up_message.clone());
                messages.extend(also.iter().cloned());
                let copies = faults::copies(meter, faults);
                if copies.duplicate {
                    touched.duplicate = true;
                    messages.push(up_message.clone());
                }
                if let Some(id) = copies.second_path {
                    touched.second_path = true;
                    let other = self.network.second_path(&up, id.to_string());
                    messages.push(Message {
                        topic: up_topic,
                        payload: serde_json::to_vec(&other).context("serialising an event")?,
                    });
                }
                if let Some(id) = copies.retransmission {
                    touched.retransmission = true;
                    let log = self.network.f_cnt_event(
                        meter,
                        LogCode::UplinkFCntRetransmission,
                        &id.to_string(),
                        f_cnt,
                        when,
                    );
                    messages.push(Message {
                        topic: self.network.topic(meter, "log"),
                        payload: serde_json::to_vec(&log).context("serialising a log")?,
                    });
                }
            }
        }
        if matches!(reply, Some(Reply::AppTimeReq)) && meter.resync_remaining > 0 {
            self.due
                .schedule(at + RESYNC_SPACING, index, Some(Job::Resync));
        }
        let periodic = reply.is_none();
        if periodic {
            let next = at + self.meters[i].interval;
            self.due.schedule(next, index, None);
            self.due.tamper(&mut self.meters[i], at, self.tamper);
        }
        // Reordering: this uplink's events wait behind the next one to three uplinks'.
        for entry in &mut self.held {
            entry.0 -= 1;
        }
        let mut released = Vec::new();
        self.held.retain_mut(|(left, m)| {
            if *left <= 0 {
                released.append(m);
                false
            } else {
                true
            }
        });
        if !messages.is_empty() && hit(&mut self.run_faults, self.faults.reorder) {
            touched.reordered = true;
            let wait = self.run_faults.range(1, 3);
            self.held.push((wait, std::mem::take(&mut messages)));
        }
        messages.append(&mut released);
        Ok(Emitted {
            meter: index,
            up: up_message,
            also,
            registered: self.registered.get(i).copied().unwrap_or(false),
            periodic,
            messages,
            fate,
            touched,
            reading,
            tamper,
        })
    }

    /// Events still held back by reordering, released now (at the end of a run).
    pub fn release_held(&mut self) -> Vec<Message> {
        self.held
            .drain(..)
            .flat_map(|(_, messages)| messages)
            .collect()
    }

    /// Meters that would be heard at true time `at`: neither disconnected nor in a silent
    /// spell.
    pub fn active_meters(&self, at: i64) -> usize {
        self.meters
            .iter()
            .filter(|m| !m.disconnected && m.silent_until <= at)
            .count()
    }

    /// Meters in the fleet.
    pub fn len(&self) -> usize {
        self.meters.len()
    }

    /// Whether the fleet has no meters.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
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
            self.due
                .deliver(meter, item.f_port, &item.data, now.timestamp());
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
    fn tampered_meters_raise_each_tamper_alarm_and_flag_their_next_reading() {
        let spec = FleetSpec {
            meters: 50,
            reporting_interval_minutes: 60,
            tamper: 0.2,
            ..FleetSpec::default()
        };
        let mut sim = Simulation::new(&spec, 1_784_678_400);
        let mut kinds = std::collections::HashSet::new();
        // Meters whose last uplink was a tamper alarm: their next reading carries the flag.
        let mut flag_owed = std::collections::HashSet::new();
        let mut flagged = 0;
        for _ in 0..3_000 {
            let e = sim.emit().expect("emits").expect("an uplink");
            let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &e.up.payload) else {
                panic!("an up event");
            };
            let port = u8::try_from(up.f_port).expect("a port");
            match firmware_protocol::decode_uplink(port, up.data.as_slice()).expect("decodes") {
                Uplink::Alarm(a) => {
                    assert!(e.tamper && e.stores_tamper_alarm());
                    assert!(a.raised);
                    assert!(crate::meter::is_tamper(a.kind), "{a:?}");
                    kinds.insert(a.kind);
                    flag_owed.insert(e.meter);
                }
                Uplink::Reading(r) => {
                    assert!(!e.tamper);
                    let tampered = r.flags.contains(firmware_protocol::StatusFlags::TAMPER);
                    assert_eq!(tampered, flag_owed.remove(&e.meter), "meter {}", e.meter);
                    flagged += usize::from(tampered);
                }
                _ => assert!(!e.tamper),
            }
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert!(flagged > 10, "{flagged}");
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_twice() {
        let a = first_events(42, 1_000);
        assert_eq!(a, first_events(42, 1_000));
        assert_ne!(a, first_events(43, 1_000));
    }

    #[test]
    fn every_event_decodes_in_time_order_and_each_meter_boots_with_an_app_time_req() {
        let mut last = 0;
        let mut booted = std::collections::HashSet::new();
        for e in first_events(7, 600) {
            let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &e.up.payload) else {
                panic!("an up event");
            };
            assert_eq!(
                e.messages,
                std::slice::from_ref(&e.up),
                "no faults, nothing else"
            );
            let time = up.time.expect("time").0.timestamp();
            assert!(time >= last, "in time order");
            last = time;
            let port = u8::try_from(up.f_port).expect("a port");
            let message =
                firmware_protocol::decode_uplink(port, up.data.as_slice()).expect("decodes");
            if booted.insert(e.meter) {
                assert!(
                    matches!(message, firmware_protocol::Uplink::ClockSync(_)),
                    "first uplink of meter {} is {message:?}",
                    e.meter
                );
            } else {
                assert!(matches!(message, firmware_protocol::Uplink::Reading(_)));
                assert!(e.reading && e.stores_reading());
            }
            assert_eq!(up.rx_info.len(), 2);
        }
        assert!(booted.len() > 100, "{}", booted.len());
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
