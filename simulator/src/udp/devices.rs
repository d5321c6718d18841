//! The fleet as LoRaWAN end devices, without I/O: each meter's firmware ([`Meter`]) plus a
//! compact link state (DevNonce, session keys, counters), one schedule in simulated time for
//! what the firmware sends, and wall-time join timers. The runner moves datagrams.
//!
//! Downlinks find their device by DevAddr; a JoinAccept carries none, so it is tried against
//! the devices waiting for one (the concentrator timestamp picks the likely one first) and the
//! MIC decides, as it does on the air.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use firmware_protocol::Uplink;

use super::airtime::{next_allowed_us, time_on_air_us};
use super::keys::FleetKeys;
use super::lorawan::{self, Downlink, FrameError, Session};
use super::radio::spreading_factor;
use crate::faults::{self, Built, Copies, Faults, Hearing};
use crate::fleet::{FleetSpec, build, is_unregistered};
use crate::meter::{Meter, Reply};
use crate::rng::Pcg32;
use crate::timeline::{Job, RESYNC_SPACING, Timeline};

/// Seconds between a meter's boot (its join) and its first reading, at the earliest.
const BOOT_LEAD: i64 = 60;

/// JOIN_ACCEPT_DELAY1 and 2 of LoRaWAN 1.0: where a JoinAccept's `tmst` points after the
/// JoinRequest's, µs.
const JOIN_ACCEPT_DELAYS: [u32; 2] = [5_000_000, 6_000_000];

/// Longest wait between two join attempts of one meter.
const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(600);

/// How long after a frame ends the meter sends it again, at the earliest, µs: after its
/// second receive window (RECEIVE_DELAY2, 2 s) has passed, as LoRaWAN's repetitions of an
/// unconfirmed frame (NbTrans) wait for it, plus a second.
const REPEAT_AFTER_US: i64 = 3_000_000;

/// One meter's LoRaWAN state: about 50 bytes.
#[derive(Debug, Clone, Default)]
struct Link {
    /// DevNonce of the next JoinRequest (1.0.4: it only goes up).
    dev_nonce: u16,
    /// Join attempts since the last success.
    attempts: u16,
    /// The open session, once joined.
    session: Option<Session>,
    /// A confirmed downlink was received: the next uplink sets ACK.
    owe_ack: bool,
    /// Sessions opened so far: a new one counts its frames from 0 again.
    sessions: u32,
}

/// A JoinRequest waiting for its JoinAccept.
#[derive(Debug, Clone, Copy)]
struct JoinWait {
    dev_nonce: u16,
    gateway: usize,
    tmst: u32,
}

/// What fell due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// The meter booted and wants to join.
    Join(u32),
    /// An uplink frame of the meter, ready for the air.
    Frame {
        /// The meter.
        index: u32,
        /// The PHYPayload.
        frame: Vec<u8>,
        /// The application message it carries.
        message: Uplink,
        /// Its uplink counter.
        f_cnt: u32,
        /// When its transmission starts, simulated µs since the Unix epoch: within the second
        /// it fell due, as a device's clock is not aligned with anyone's seconds.
        start_us: i64,
        /// Its time on air, µs.
        air_us: i64,
        /// Its spreading factor.
        sf: u8,
        /// Its session (the meter's how-manieth): a new session counts frames from 0.
        session: u32,
        /// What the faults did to it as it was built.
        built: Built,
        /// Whether any gateway hears it; a lost frame still took the air.
        heard: bool,
        /// Its further copies (a heard frame's only).
        copies: Copies,
        /// When the meter sends it again, the same bytes (a retransmission), simulated µs.
        repeat_us: Option<i64>,
    },
    /// The meter built a frame during a silent spell and sent nothing: it keeps measuring
    /// and counting its frames.
    Silent {
        /// The meter.
        index: u32,
        /// The spell begins with this frame.
        began: bool,
        /// What the faults did to the frame as it was built.
        built: Built,
    },
    /// The meter had something to send but has no session yet.
    NotJoined(u32),
    /// The meter had something to send but its duty cycle forbids it yet: it sends it as
    /// soon as it may.
    Deferred(u32),
    /// The meter gave up a frame its duty cycle would have held back for a reporting
    /// interval or more.
    Dropped(u32),
    /// Nothing to send (a timer that had become moot).
    Nothing,
}

/// A downlink the devices took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A JoinAccept opened the session of this meter.
    Joined(u32),
    /// A data downlink for this meter, checked and decrypted.
    Data(u32, Downlink),
}

/// The fleet's devices and their schedule.
pub struct Devices {
    meters: Vec<Meter>,
    /// Whether each meter is in the registry.
    registered: Vec<bool>,
    links: Vec<Link>,
    keys: FleetKeys,
    /// When each meter's firmware is next due, in simulated seconds.
    due: Timeline<Job>,
    by_dev_addr: HashMap<[u8; 4], u32>,
    awaiting_join: HashMap<u32, JoinWait>,
    /// Meters that want to send a JoinRequest, in order; the runner paces them.
    join_queue: VecDeque<u32>,
    /// (when, meter, DevNonce): retry the join unless that request was answered.
    join_timers: BinaryHeap<Reverse<(Instant, u32, u16)>>,
    join_timeout: Duration,
    /// The run's seed: each meter's spreading factor follows from it.
    seed: u64,
    /// Whether the meters keep EU868's 1 % duty cycle.
    duty_cycle: bool,
    /// When each meter may next transmit under its duty cycle, simulated µs.
    free_at: Vec<i64>,
    /// Where in its second each frame starts.
    jitter: Pcg32,
    /// Per periodic reading, the chance of a tamper alarm before the next.
    tamper: f64,
    /// Faults on demand, drawn from each meter's fault stream as on the integration
    /// transport.
    faults: Faults,
}

impl Devices {
    /// The fleet of `spec` at simulated time `start`; DevNonces start at `dev_nonce_start`.
    pub fn new(
        spec: &FleetSpec,
        keys: FleetKeys,
        start: i64,
        dev_nonce_start: u16,
        join_timeout: Duration,
    ) -> Devices {
        let meters = build(spec, start);
        let links = vec![
            Link {
                dev_nonce: dev_nonce_start,
                ..Link::default()
            };
            meters.len()
        ];
        // One entry per meter: its boot (the join), which then schedules its first reading.
        let due = Timeline::boot(&meters, start, BOOT_LEAD);
        Devices {
            registered: meters.iter().map(|m| !is_unregistered(spec, m)).collect(),
            seed: spec.seed,
            duty_cycle: true,
            free_at: vec![i64::MIN; meters.len()],
            jitter: Pcg32::new(spec.seed ^ 0x0a17_7133, 0),
            tamper: spec.tamper,
            faults: spec.faults.clone(),
            links,
            keys,
            due,
            by_dev_addr: HashMap::new(),
            awaiting_join: HashMap::new(),
            join_queue: VecDeque::new(),
            join_timers: BinaryHeap::new(),
            join_timeout,
            meters,
        }
    }

    /// Whether the meters keep the 1 % duty cycle (they do unless told otherwise).
    pub fn set_duty_cycle(&mut self, on: bool) {
        self.duty_cycle = on;
    }

    /// When the firmware next wants to send, simulated seconds.
    pub fn next_due(&self) -> Option<i64> {
        self.due.next_due()
    }

    /// Meters in the fleet.
    pub fn len(&self) -> usize {
        self.meters.len()
    }

    /// Whether the fleet is empty.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// A meter, for inspection.
    pub fn meter(&self, index: u32) -> Option<&Meter> {
        self.meters.get(index as usize)
    }

    /// Whether meter `index` is in the registry (the server quarantines the others' data).
    pub fn registered(&self, index: u32) -> bool {
        self.registered
            .get(index as usize)
            .copied()
            .unwrap_or(false)
    }

    /// A meter's session, for inspection.
    pub fn session(&self, index: u32) -> Option<&Session> {
        self.links.get(index as usize)?.session.as_ref()
    }

    /// Meters with a session.
    pub fn joined(&self) -> usize {
        self.links.iter().filter(|l| l.session.is_some()).count()
    }

    /// The next thing due, at its due time.
    pub fn emit(&mut self) -> Result<Option<Due>> {
        let Some((at, index, job)) = self.due.pop() else {
            return Ok(None);
        };
        let i = index as usize;
        let Some(meter) = self.meters.get(i) else {
            return Ok(Some(Due::Nothing));
        };
        if meter.disconnected {
            return Ok(Some(Due::Nothing));
        }
        let reply = match job {
            None if !meter.booted => {
                let first = meter.last_reading + meter.interval;
                self.meters[i].booted = true;
                self.due.schedule(first, index, None);
                self.join_queue.push_back(index);
                return Ok(Some(Due::Join(index)));
            }
            None => None,
            Some(job) => {
                let Some(r) = self.due.fire(job, meter, at) else {
                    return Ok(Some(Due::Nothing));
                };
                Some(r)
            }
        };
        let periodic = reply.is_none();
        if periodic {
            let next = at + self.meters[i].interval;
            self.due.schedule(next, index, None);
        }
        let due = self.send(at, index, reply)?;
        // After the frame's faults, as on the integration transport: the same seed draws the
        // same from the meter's fault stream on both.
        if periodic {
            self.due.tamper(&mut self.meters[i], at, self.tamper);
        }
        Ok(Some(due))
    }

    /// Meter `index` sends what fell due at `at` (`None`: its periodic reading), if it has a
    /// session and its duty cycle allows, through its faults.
    fn send(&mut self, at: i64, index: u32, reply: Option<Reply>) -> Result<Due> {
        let i = index as usize;
        let Some(session) = self.links[i].session.clone() else {
            return Ok(Due::NotJoined(index));
        };
        let start_us = at.saturating_mul(1_000_000) + self.jitter.range(0, 999_999);
        if self.duty_cycle && start_us < self.free_at[i] {
            // The firmware holds the frame until its sub-band is free again, but not past
            // its next reading: by then it would be stale.
            let resume = self.free_at[i].div_euclid(1_000_000) + 1;
            if resume - at >= self.meters[i].interval {
                return Ok(Due::Dropped(index));
            }
            let job = Job::Reply(reply.unwrap_or(Reply::Reading));
            self.due.schedule(resume, index, Some(job));
            return Ok(Due::Deferred(index));
        }
        let meter = &mut self.meters[i];
        let mut built = faults::before_frame(meter, &self.faults, reply.is_none());
        let (f_cnt, message) = match reply {
            Some(r) => meter.reply(r, at),
            None => meter.reading(at),
        };
        if matches!(reply, Some(Reply::AppTimeReq)) && meter.resync_remaining > 0 {
            self.due
                .schedule(at + RESYNC_SPACING, index, Some(Job::Resync));
        }
        let mut buf = [0u8; 64];
        let n = message.encode(&mut buf).context("encoding an uplink")?;
        // Garbled and broken serials are the firmware's: the payload is spoilt before it is
        // encrypted, and the frame around it is valid.
        let mut payload = buf[..n].to_vec();
        faults::corrupt(
            meter,
            &self.faults,
            message.fport(),
            &mut payload,
            &mut built,
        );
        let heard = match faults::hearing(meter, &self.faults, at) {
            Hearing::Silent { began } => {
                return Ok(Due::Silent {
                    index,
                    began,
                    built,
                });
            }
            Hearing::Lost => false,
            Hearing::Heard => true,
        };
        let copies = if heard {
            faults::copies(meter, &self.faults)
        } else {
            Copies::default()
        };
        let ack = std::mem::take(&mut self.links[i].owe_ack);
        let frame = lorawan::data_up(&session, f_cnt, message.fport(), &payload, ack)
            .map_err(|e| anyhow::anyhow!("building an uplink frame: {e}"))?;
        let sf = spreading_factor(self.seed, index);
        let air_us = self.took_air(index, start_us, sf, frame.len());
        let repeat_us = copies.retransmission.map(|_| {
            let after_rx2 = start_us + air_us + REPEAT_AFTER_US;
            let at = if self.duty_cycle {
                after_rx2.max(self.free_at[i])
            } else {
                after_rx2
            };
            self.took_air(index, at, sf, frame.len());
            at
        });
        Ok(Due::Frame {
            index,
            frame,
            message,
            f_cnt,
            start_us,
            air_us,
            sf,
            session: self.links[i].sessions,
            built,
            heard,
            copies,
            repeat_us,
        })
    }

    /// Meter `index` sends `len` bytes at `sf` from `start_us`: its time on air, which its
    /// duty cycle then counts.
    fn took_air(&mut self, index: u32, start_us: i64, sf: u8, len: usize) -> i64 {
        let air_us = time_on_air_us(sf, len);
        if let Some(free) = self.free_at.get_mut(index as usize) {
            *free = next_allowed_us(start_us, air_us);
        }
        air_us
    }

    /// The next meter waiting to send a JoinRequest.
    pub fn next_joiner(&mut self) -> Option<u32> {
        self.join_queue.pop_front()
    }

    /// Meters waiting to send a JoinRequest.
    pub fn joiners_waiting(&self) -> usize {
        self.join_queue.len()
    }

    /// The JoinRequest of meter `index`, sent through `gateway` at concentrator time `tmst`,
    /// wall time `now` and simulated time `sim_us`; its join is retried with backoff unless a
    /// JoinAccept comes. Its time on air counts against the meter's duty cycle.
    pub fn join_request(
        &mut self,
        index: u32,
        gateway: usize,
        tmst: u32,
        now: Instant,
        sim_us: i64,
    ) -> Option<[u8; 23]> {
        let sf = spreading_factor(self.seed, index);
        self.took_air(index, sim_us, sf, 23);
        let meter = self.meters.get(index as usize)?;
        let link = self.links.get_mut(index as usize)?;
        let dev_nonce = link.dev_nonce;
        link.dev_nonce = link.dev_nonce.wrapping_add(1);
        // Backoff doubles with each unanswered attempt, so a network that is down is not
        // flooded by a fleet retrying in step.
        let backoff = self
            .join_timeout
            .saturating_mul(1 << link.attempts.min(8))
            .min(MAX_JOIN_BACKOFF);
        link.attempts = link.attempts.saturating_add(1);
        self.awaiting_join.insert(
            index,
            JoinWait {
                dev_nonce,
                gateway,
                tmst,
            },
        );
        self.join_timers
            .push(Reverse((now + backoff, index, dev_nonce)));
        Some(lorawan::join_request(
            self.keys.app_key(index),
            self.keys.join_eui,
            meter.dev_eui,
            dev_nonce,
        ))
    }

    /// When the next join timer fires.
    pub fn next_join_timer(&self) -> Option<Instant> {
        self.join_timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Fires the join timers due by `now`: meters still without their JoinAccept queue to
    /// join again. Returns how many.
    pub fn join_timeouts(&mut self, now: Instant) -> usize {
        let mut retried = 0;
        while let Some(&Reverse((at, index, dev_nonce))) = self.join_timers.peek() {
            if at > now {
                break;
            }
            self.join_timers.pop();
            let still_waiting = self
                .awaiting_join
                .get(&index)
                .is_some_and(|w| w.dev_nonce == dev_nonce);
            if still_waiting {
                self.awaiting_join.remove(&index);
                self.join_queue.push_back(index);
                retried += 1;
            }
        }
        retried
    }

    /// A frame a gateway was asked to send (`tmst` from its `txpk`), taken by the device it
    /// is for, at simulated time `now`.
    pub fn take_downlink(
        &mut self,
        frame: &[u8],
        gateway: usize,
        tmst: Option<u32>,
        now: i64,
    ) -> Result<Taken, FrameError> {
        match frame.first().map(|m| m >> 5) {
            Some(0b001) => self.take_join_accept(frame, gateway, tmst, now),
            Some(0b011 | 0b101) => self.take_data(frame, now),
            Some(0b000 | 0b010 | 0b100) => Err(FrameError::Direction),
            _ => Err(FrameError::Invalid),
        }
    }

    fn take_join_accept(
        &mut self,
        frame: &[u8],
        gateway: usize,
        tmst: Option<u32>,
        now: i64,
    ) -> Result<Taken, FrameError> {
        let points_here = |w: &JoinWait| {
            tmst.is_some_and(|t| {
                w.gateway == gateway
                    && JOIN_ACCEPT_DELAYS
                        .iter()
                        .any(|d| w.tmst.wrapping_add(*d) == t)
            })
        };
        // The likely device first, then every device waiting: the MIC decides.
        let mut candidates: Vec<u32> = self
            .awaiting_join
            .iter()
            .filter(|(_, w)| points_here(w))
            .map(|(i, _)| *i)
            .collect();
        candidates.extend(
            self.awaiting_join
                .iter()
                .filter(|(_, w)| !points_here(w))
                .map(|(i, _)| *i),
        );
        let mut error = FrameError::Mic;
        for index in candidates {
            let Some(wait) = self.awaiting_join.get(&index).copied() else {
                continue;
            };
            match lorawan::accept_join(frame, self.keys.app_key(index), wait.dev_nonce) {
                Ok(session) => {
                    self.awaiting_join.remove(&index);
                    self.open_session(index, session, now);
                    return Ok(Taken::Joined(index));
                }
                Err(FrameError::Mic) => continue,
                Err(e) => error = e,
            }
        }
        Err(error)
    }

    fn open_session(&mut self, index: u32, session: Session, now: i64) {
        let i = index as usize;
        let link = &mut self.links[i];
        if let Some(old) = link.session.take() {
            self.by_dev_addr.remove(&old.dev_addr);
        }
        self.by_dev_addr.insert(session.dev_addr, index);
        link.session = Some(session);
        link.sessions = link.sessions.wrapping_add(1);
        link.attempts = 0;
        link.owe_ack = false;
        // A new session counts its frames from zero.
        self.meters[i].f_cnt = 0;
        // The firmware asks for the time as soon as it is on the network.
        self.due
            .schedule(now, index, Some(Job::Reply(Reply::AppTimeReq)));
    }

    fn take_data(&mut self, frame: &[u8], now: i64) -> Result<Taken, FrameError> {
        let dev_addr = lorawan::downlink_dev_addr(frame).ok_or(FrameError::Invalid)?;
        let index = *self.by_dev_addr.get(&dev_addr).ok_or(FrameError::DevAddr)?;
        let i = index as usize;
        let session = self.links[i].session.as_mut().ok_or(FrameError::DevAddr)?;
        let downlink = lorawan::open_downlink(frame, session)?;
        if downlink.confirmed {
            self.links[i].owe_ack = true;
        }
        if let Some(port) = downlink.f_port.filter(|p| *p > 0) {
            self.due
                .deliver(&mut self.meters[i], port, &downlink.payload, now);
        }
        Ok(Taken::Data(index, downlink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fleet of one meter at SF12 (its AppTimeReq takes about 1.2 s on air: two minutes of
    /// silence after), reporting every `minutes`, `duty_cycle` as given, joined ten seconds
    /// before its first reading is due. Returns when that reading is due.
    fn joined_meter(minutes: u16, duty_cycle: bool) -> (Devices, i64) {
        joined_meter_tampered(minutes, duty_cycle, 0.0)
    }

    /// The same, raising a tamper alarm after a reading with probability `tamper`.
    fn joined_meter_tampered(minutes: u16, duty_cycle: bool, tamper: f64) -> (Devices, i64) {
        let seed = (0..)
            .find(|s| spreading_factor(*s, 0) == 12)
            .expect("some seed puts meter 0 at SF12");
        let spec = FleetSpec {
            meters: 1,
            seed,
            reporting_interval_minutes: minutes,
            tamper,
            ..FleetSpec::default()
        };
        let start = 1_784_678_400;
        let mut devices = Devices::new(
            &spec,
            FleetKeys::for_seed(seed),
            start,
            0,
            Duration::from_secs(10),
        );
        devices.set_duty_cycle(duty_cycle);
        let session = Session {
            dev_addr: [1, 2, 3, 4],
            nwk_s_key: [1; 16],
            app_s_key: [2; 16],
            f_cnt_down: 0,
        };
        // Boot (the join), then the session the JoinAccept would open, which makes the
        // firmware ask for the time at once.
        assert_eq!(devices.emit().expect("emits"), Some(Due::Join(0)));
        let first = devices.next_due().expect("the first reading");
        devices.open_session(0, session, first - 10);
        (devices, first)
    }

    /// What the next six things due did, and when; the time on air of the first frame.
    fn sent(devices: &mut Devices) -> (Vec<(i64, &'static str)>, i64) {
        let mut first_air = 0;
        let mut out = Vec::new();
        while let Some(at) = devices.next_due() {
            let what = match devices.emit().expect("emits") {
                Some(Due::Frame {
                    start_us, air_us, ..
                }) => {
                    assert_eq!(
                        start_us.div_euclid(1_000_000),
                        at,
                        "starts within its second"
                    );
                    if first_air == 0 {
                        first_air = air_us;
                    }
                    "frame"
                }
                Some(Due::Deferred(_)) => "deferred",
                Some(Due::Dropped(_)) => "dropped",
                other => panic!("{other:?}"),
            };
            out.push((at, what));
            if out.len() == 6 {
                break;
            }
        }
        (out, first_air)
    }

    #[test]
    fn a_frame_waits_for_the_duty_cycle_and_one_that_would_wait_an_interval_is_dropped() {
        // Every 15 minutes: the reading ten seconds after the AppTimeReq waits its turn.
        let (mut devices, first) = joined_meter(15, true);
        let (log, air) = sent(&mut devices);
        assert_eq!(log[0], (first - 10, "frame"), "the AppTimeReq: {log:?}");
        assert_eq!(log[1], (first, "deferred"), "{log:?}");
        let (resumed, what) = log[2];
        assert_eq!(what, "frame");
        let off = resumed - (first - 10);
        assert!(
            (air * 99 / 1_000_000..=air * 100 / 1_000_000 + 2).contains(&off),
            "sent {off} s after the AppTimeReq, which took {air} µs on air: {log:?}"
        );
        assert_eq!(
            log[3],
            (first + 900, "frame"),
            "the next reading keeps its time"
        );
        assert!(!log.iter().any(|(_, w)| *w == "dropped"), "{log:?}");

        // A frame every minute cannot keep a 1 % duty cycle at SF12: some are given up.
        let (mut devices, _) = joined_meter(1, true);
        let (log, _) = sent(&mut devices);
        assert!(log.iter().any(|(_, w)| *w == "dropped"), "{log:?}");

        // Without the duty cycle, everything goes when due.
        let (mut devices, _) = joined_meter(1, false);
        let (log, _) = sent(&mut devices);
        assert!(log.iter().all(|(_, w)| *w == "frame"), "{log:?}");
    }

    #[test]
    fn a_meter_that_detects_tampering_sends_its_alarm_over_the_air() {
        let (mut devices, _) = joined_meter_tampered(60, false, 1.0);
        let mut alarms = Vec::new();
        let mut flagged = 0;
        for _ in 0..20 {
            let Some(Due::Frame { message, .. }) = devices.emit().expect("emits") else {
                continue;
            };
            match message {
                Uplink::Alarm(a) => alarms.push(a.kind),
                Uplink::Reading(r) => {
                    flagged += usize::from(r.flags.contains(firmware_protocol::StatusFlags::TAMPER))
                }
                _ => {}
            }
        }
        assert!(alarms.len() >= 5, "{alarms:?}");
        assert!(
            alarms.iter().all(|k| crate::meter::is_tamper(*k)),
            "{alarms:?}"
        );
        assert!(flagged >= 4, "{flagged}");
    }
}
