//! Open-loop pacing: event `k` is due `k / rate` seconds after the start, whatever happened to
//! the events before it. A publisher that falls behind catches up in a burst instead of
//! quietly offering less than asked; how far behind it fell is reported.

use std::time::Duration;

/// The schedule of `total` events at `rate` a second.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
    total: u64,
}

impl Schedule {
    /// `total` events at `rate` per second (at least one a second).
    pub fn new(rate: u32, total: u64) -> Schedule {
        Schedule {
            rate: f64::from(rate.max(1)),
            total,
        }
    }

    /// Events in the run.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When event `seq` is due, counted from the start.
    pub fn due_at(&self, seq: u64) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }

    /// How many events are due `elapsed` after the start: those scheduled at or before it.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        // The small allowance absorbs float rounding at exact schedule points.
        let due = (elapsed.as_secs_f64() * self.rate + 1e-9).floor() as u64 + 1;
        due.min(self.total)
    }
}

/// One publisher's share of a schedule: every `publishers`-th event from `index`. Several
/// connections share the load so that one client's round trips do not cap the offered rate.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    schedule: Schedule,
    next: u64,
    step: u64,
}

impl Share {
    /// Share `index` of `publishers`.
    pub fn new(schedule: Schedule, index: u32, publishers: u32) -> Share {
        Share {
            schedule,
            next: u64::from(index),
            step: u64::from(publishers.max(1)),
        }
    }

    /// The whole schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The next event of this share that is due at `elapsed`, if any, advancing past it.
    pub fn take_due(&mut self, elapsed: Duration) -> Option<u64> {
        (self.next < self.schedule.due_by(elapsed)).then(|| {
            let seq = self.next;
            self.next += self.step;
            seq
        })
    }

    /// When this share's next event is due; `None` once the share is done.
    pub fn next_due_at(&self) -> Option<Duration> {
        (self.next < self.schedule.total()).then(|| self.schedule.due_at(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_due_at_once_and_the_rest_at_the_rate() {
        let s = Schedule::new(1_000, 10_000);
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(Duration::from_millis(1_500)), 1_501);
        assert_eq!(s.due_at(1_500), Duration::from_millis(1_500));
    }

    #[test]
    fn no_more_than_the_total_is_ever_due() {
        let s = Schedule::new(30_000, 600_000);
        assert_eq!(s.due_by(Duration::from_secs(3_600)), 600_000);
    }

    #[test]
    fn shares_split_the_schedule_without_gaps_or_overlaps() {
        let s = Schedule::new(10_000, 1_000);
        let mut shares: Vec<Share> = (0..3).map(|i| Share::new(s, i, 3)).collect();
        let mut taken = Vec::new();
        for share in &mut shares {
            while let Some(seq) = share.take_due(Duration::from_secs(1)) {
                taken.push(seq);
            }
            assert_eq!(share.next_due_at(), None, "the share is done");
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..1_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_share_takes_only_what_is_due_and_says_when_its_next_event_is() {
        let s = Schedule::new(1_000, 100);
        let mut share = Share::new(s, 1, 2);
        // Due at 0.5 ms: event 0 only, which belongs to the other share.
        assert_eq!(share.take_due(Duration::from_micros(500)), None);
        assert_eq!(share.next_due_at(), Some(Duration::from_millis(1)));
        assert_eq!(share.take_due(Duration::from_millis(3)), Some(1));
        assert_eq!(share.take_due(Duration::from_millis(3)), Some(3));
        assert_eq!(share.take_due(Duration::from_millis(3)), None);
        assert_eq!(share.next_due_at(), Some(Duration::from_millis(5)));
    }
}
