//! Which events have arrived (committed, or delivered by the broker), and how long each took.
//!
//! Latency attribution: the publish instant of every event is recorded just before it is handed
//! to the MQTT client. An event first seen by a poll of the database that started at instant
//! `q` was committed at or before `q` (the poll's snapshot is taken when it starts) and after
//! the start of the previous poll, which did not see it. Its publish-to-commit latency is
//! taken as `q − published`: an upper bound, too high by less than one poll interval, so the
//! figures never flatter the server. For the broker's subscriber the arrival instant is exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Publish instants by sequence number, written by the publishers and read by the readers.
#[derive(Debug)]
pub struct PublishTimes {
    epoch: Instant,
    // Nanoseconds after `epoch`, plus one: 0 means not published yet.
    nanos: Vec<AtomicU64>,
    published: AtomicU64,
}

impl PublishTimes {
    /// Room for `total` events, timed from `epoch`.
    pub fn new(epoch: Instant, total: u64) -> PublishTimes {
        PublishTimes {
            epoch,
            nanos: (0..total).map(|_| AtomicU64::new(0)).collect(),
            published: AtomicU64::new(0),
        }
    }

    /// Records that `seq` is being published now.
    pub fn mark(&self, seq: u64, at: Instant) {
        if let Some(slot) = self.nanos.get(seq as usize) {
            let n = at.saturating_duration_since(self.epoch).as_nanos() as u64;
            slot.store(n + 1, Ordering::Release);
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many were marked.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// When `seq` was published, if it was.
    pub fn get(&self, seq: u64) -> Option<Instant> {
        let n = self.nanos.get(seq as usize)?.load(Ordering::Acquire);
        (n > 0).then(|| self.epoch + Duration::from_nanos(n - 1))
    }
}

/// Sequence numbers seen so far, and the lowest one not yet seen (the "low watermark"): every
/// event below it has been seen. A reader asks only for events from the low watermark on, so
/// an event committed out of order (a batch split around a refused row, several publishers)
/// is still found, while in-order progress costs one short range read per poll.
#[derive(Debug, Clone)]
pub struct Seen {
    bits: Vec<u64>,
    total: u64,
    low: u64,
    count: u64,
}

impl Seen {
    /// For sequence numbers `0..total`.
    pub fn new(total: u64) -> Seen {
        Seen {
            bits: vec![0; total.div_ceil(64) as usize],
            total,
            low: 0,
            count: 0,
        }
    }

    /// Records `seq`; true the first time, false for a repeat or a number out of range.
    pub fn mark(&mut self, seq: u64) -> bool {
        if seq >= self.total {
            return false;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        self.count += 1;
        while self.low < self.total && self.contains(self.low) {
            self.low += 1;
        }
        true
    }

    fn contains(&self, seq: u64) -> bool {
        self.bits[(seq / 64) as usize] & (1u64 << (seq % 64)) != 0
    }

    /// The lowest sequence number not seen yet (`total` when all were).
    pub fn low(&self) -> u64 {
        self.low
    }

    /// How many were seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether every one was seen.
    pub fn complete(&self) -> bool {
        self.count == self.total
    }
}

/// Arrivals and their latencies.
pub struct Arrivals {
    /// Which arrived.
    pub seen: Seen,
    /// Publish-to-arrival latency, microseconds.
    pub latency: Histogram<u64>,
    /// When the last new one arrived.
    pub last: Option<Instant>,
    /// Arrivals whose publish instant was unknown (should stay 0).
    pub untimed: u64,
}

impl Arrivals {
    /// For sequence numbers `0..total`.
    pub fn new(total: u64) -> Arrivals {
        Arrivals {
            seen: Seen::new(total),
            // 1 µs to an hour at three significant digits; larger values are clamped.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            last: None,
            untimed: 0,
        }
    }

    /// Records that `seq` was seen at `at` (for commits: the start of the poll that saw it).
    /// Returns whether it was new.
    pub fn arrive(&mut self, seq: u64, at: Instant, times: &PublishTimes) -> bool {
        if !self.seen.mark(seq) {
            return false;
        }
        match times.get(seq) {
            Some(published) => {
                let micros = at.saturating_duration_since(published).as_micros() as u64;
                self.latency.saturating_record(micros.max(1));
            }
            None => self.untimed += 1,
        }
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        true
    }
}

/// Events a second: `count` events between `from` and `to`.
pub fn rate(count: u64, from: Instant, to: Option<Instant>) -> f64 {
    match to {
        Some(to) if to > from => count as f64 / to.duration_since(from).as_secs_f64(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_watermark_waits_for_an_event_seen_out_of_order() {
        let mut s = Seen::new(10);
        assert!(s.mark(0));
        assert!(s.mark(2));
        assert_eq!(s.low(), 1, "1 is still missing");
        assert!(s.mark(1));
        assert_eq!(s.low(), 3);
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn repeats_and_strangers_are_not_counted() {
        let mut s = Seen::new(3);
        assert!(s.mark(1));
        assert!(!s.mark(1), "a redelivery or a second read of the same row");
        assert!(!s.mark(3), "beyond the run");
        assert_eq!(s.count(), 1);
        assert!(s.mark(0) && s.mark(2));
        assert!(s.complete());
        assert_eq!(s.low(), 3);
    }

    #[test]
    fn a_commit_is_attributed_to_the_start_of_the_poll_that_first_saw_it() {
        let epoch = Instant::now();
        let times = PublishTimes::new(epoch, 4);
        times.mark(0, epoch + Duration::from_millis(10));
        times.mark(1, epoch + Duration::from_millis(20));
        let mut a = Arrivals::new(4);
        let poll = epoch + Duration::from_millis(70);
        assert!(a.arrive(0, poll, &times));
        assert!(a.arrive(1, poll, &times));
        // Seen again by a later poll: neither counted nor timed again.
        assert!(!a.arrive(1, poll + Duration::from_millis(10), &times));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.latency.max(), a.latency.highest_equivalent(60_000));
        assert_eq!(
            a.latency.min(),
            a.latency.lowest_equivalent(50_000),
            "70 ms − 20 ms"
        );
        assert_eq!(a.last, Some(poll));
    }

    #[test]
    fn an_event_never_marked_published_is_counted_as_untimed() {
        let epoch = Instant::now();
        let times = PublishTimes::new(epoch, 2);
        let mut a = Arrivals::new(2);
        assert!(a.arrive(1, epoch, &times));
        assert_eq!(a.untimed, 1);
        assert_eq!(a.latency.len(), 0);
    }

    #[test]
    fn rates_count_from_the_first_publish_to_the_last_arrival() {
        let from = Instant::now();
        assert_eq!(rate(500, from, Some(from + Duration::from_secs(2))), 250.0);
        assert_eq!(rate(500, from, None), 0.0);
        assert_eq!(rate(500, from, Some(from)), 0.0);
    }
}
