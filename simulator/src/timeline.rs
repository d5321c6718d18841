//! When each meter next has something to do, in simulated seconds: the schedule shared by
//! [`crate::simulation::Simulation`] and [`crate::udp::devices::Devices`].
//!
//! A fleet may hold a million meters, so an entry is kept small: a time, a sequence number
//! and the meter's index. The common case, a periodic reading, needs nothing more; the rarer
//! work (a reply, a clock-sync timer) keeps its job in a side map under the entry's sequence
//! number, so only entries that need one pay for it.
//!
//! Both transports run the same firmware, so what a meter's jobs mean is here too: [`Job`],
//! what one asks of the meter when it falls due, and what a downlink schedules.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::faults::hit;
use crate::meter::{Meter, Reply, TAMPER_KINDS};

/// Seconds a meter takes to answer a command (listen, act, transmit).
pub(crate) const REPLY_DELAY: i64 = 5;

/// Seconds between the AppTimeReqs a ForceDeviceResyncReq asks for (TS003 leaves the spacing
/// to the device; a minute keeps them in separate RX windows of the server's answers).
pub(crate) const RESYNC_SPACING: i64 = 60;

/// Work waiting in a meter's schedule besides periodic readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    /// An uplink the firmware owes.
    Reply(Reply),
    /// The periodic AppTimeReq of the clock-sync period numbered `generation`.
    ClockSync { generation: u32 },
    /// One more AppTimeReq of a ForceDeviceResyncReq series, unless answered meanwhile.
    Resync,
}

/// Entries due at given times, each for one meter and perhaps carrying a job `J`. Entries
/// come out by time, and those due at the same time in the order they were scheduled.
#[derive(Debug, Clone)]
pub struct Timeline<J> {
    /// (due time, sequence, meter): the sequence keeps equal times in scheduling order.
    due: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// The jobs of the entries that have one, by sequence.
    jobs: HashMap<u64, J>,
    next_seq: u64,
}

impl<J> Default for Timeline<J> {
    fn default() -> Self {
        Timeline {
            due: BinaryHeap::new(),
            jobs: HashMap::new(),
            next_seq: 0,
        }
    }
}

impl<J> Timeline<J> {
    /// An empty timeline.
    pub fn new() -> Self {
        Timeline::default()
    }

    /// The boot of each of `meters`: `lead` seconds before its first reading, but not before
    /// `start`. One entry per meter and no job: the boot then schedules the first reading, so
    /// a million meters cost a million small heap entries and nothing else.
    pub fn boot(meters: &[Meter], start: i64, lead: i64) -> Self {
        let mut timeline = Timeline::new();
        for m in meters {
            let first = m.last_reading + m.interval;
            timeline.schedule((first - lead).max(start), m.index, None);
        }
        timeline
    }

    /// Meter `index` is due at `at`, with `job` if it is not a plain periodic reading.
    pub fn schedule(&mut self, at: i64, index: u32, job: Option<J>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(j) = job {
            self.jobs.insert(seq, j);
        }
        self.due.push(Reverse((at, seq, index)));
    }

    /// When the earliest entry is due.
    pub fn next_due(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the earliest entry: its due time, its meter and its job. Whether it is due yet
    /// is the caller's to decide (see [`Timeline::next_due`]).
    pub fn pop(&mut self) -> Option<(i64, u32, Option<J>)> {
        let Reverse((at, seq, index)) = self.due.pop()?;
        Some((at, index, self.jobs.remove(&seq)))
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether no entry is waiting.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

impl Timeline<Job> {
    /// What `job` of `meter`, due at `at`, asks the meter to send: `None` when it has become
    /// moot (a clock-sync period since replaced, a resync series already answered). A
    /// clock-sync timer sets itself again one period later.
    pub(crate) fn fire(&mut self, job: Job, meter: &Meter, at: i64) -> Option<Reply> {
        match job {
            Job::Reply(r) => Some(r),
            Job::ClockSync { generation } => {
                if generation != meter.clock_sync_generation {
                    return None;
                }
                if let Some(period) = meter.clock_sync_period {
                    self.schedule(at + period, meter.index, Some(job));
                }
                Some(Reply::AppTimeReq)
            }
            Job::Resync if meter.resync_remaining == 0 => None,
            Job::Resync => Some(Reply::AppTimeReq),
        }
    }

    /// After `meter`'s periodic reading at `at`: with probability `tamper` it detects
    /// tampering at some moment before its next reading and raises the alarm then. Draws from
    /// the meter's fault stream, and nothing when `tamper` is 0.
    pub(crate) fn tamper(&mut self, meter: &mut Meter, at: i64, tamper: f64) {
        if !hit(&mut meter.faults, tamper) {
            return;
        }
        let kind = TAMPER_KINDS[meter.faults.range(0, TAMPER_KINDS.len() as i64 - 1) as usize];
        let when = at + meter.faults.range(1, (meter.interval - 1).max(1));
        self.schedule(when, meter.index, Some(Job::Reply(Reply::Alarm(kind))));
    }

    /// `meter` takes a downlink's application payload at `now`: the replies it owes fall due
    /// a moment later, and a new clock-sync period restarts its AppTimeReq timer.
    pub(crate) fn deliver(&mut self, meter: &mut Meter, f_port: u8, data: &[u8], now: i64) {
        let index = meter.index;
        let generation = meter.clock_sync_generation;
        let replies = meter.receive(f_port, data, now);
        let timer = (meter.clock_sync_generation != generation)
            .then_some(meter.clock_sync_period)
            .flatten()
            .map(|period| (period, meter.clock_sync_generation));
        for r in replies {
            self.schedule(now + REPLY_DELAY, index, Some(Job::Reply(r)));
        }
        if let Some((period, generation)) = timer {
            self.schedule(now + period, index, Some(Job::ClockSync { generation }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{FleetSpec, build};

    #[test]
    fn entries_come_out_by_time_then_scheduling_order_with_their_jobs() {
        let mut t = Timeline::new();
        t.schedule(20, 1, Some('a'));
        t.schedule(10, 2, None);
        t.schedule(20, 3, None);
        t.schedule(10, 4, Some('b'));
        t.schedule(20, 5, Some('c'));
        assert_eq!(t.len(), 5);
        assert_eq!(t.next_due(), Some(10));
        let mut out = Vec::new();
        while let Some(e) = t.pop() {
            out.push(e);
        }
        assert_eq!(
            out,
            [
                (10, 2, None),
                (10, 4, Some('b')),
                (20, 1, Some('a')),
                (20, 3, None),
                (20, 5, Some('c')),
            ]
        );
        assert!(t.is_empty());
        assert_eq!(t.next_due(), None);
        assert_eq!(t.pop(), None);
    }

    #[test]
    fn a_popped_job_is_gone_and_a_plain_entry_keeps_no_job() {
        let mut t = Timeline::new();
        t.schedule(5, 7, Some(1u8));
        t.schedule(6, 7, None);
        assert_eq!(t.jobs.len(), 1);
        assert_eq!(t.pop(), Some((5, 7, Some(1))));
        assert!(t.jobs.is_empty());
        assert_eq!(t.pop(), Some((6, 7, None)));
    }

    #[test]
    fn boot_schedules_each_meter_once_without_jobs_not_before_start() {
        let spec = FleetSpec {
            meters: 50,
            ..FleetSpec::default()
        };
        let start = 1_784_678_400;
        let meters = build(&spec, start);
        let lead = 60;
        let mut t: Timeline<()> = Timeline::boot(&meters, start, lead);
        assert_eq!(t.len(), meters.len());
        assert!(t.jobs.is_empty());
        let mut seen = vec![false; meters.len()];
        let mut previous = i64::MIN;
        while let Some((at, index, job)) = t.pop() {
            let m = &meters[index as usize];
            assert_eq!(at, (m.last_reading + m.interval - lead).max(start));
            assert!(at >= previous);
            assert!(job.is_none());
            assert!(!seen[index as usize]);
            seen[index as usize] = true;
            previous = at;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
