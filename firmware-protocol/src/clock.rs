//! One notion of time for every process of a meterhub deployment (feature `std`).
//!
//! The server and the simulator read time only through a [`Clock`]: wall time in production,
//! a manual clock in tests, and an accelerated clock for demos and load tests. The accelerated
//! clock is a pure function of wall time, so two processes given the same speed and epoch agree
//! on simulated time without talking to each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
///
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Wall time sped up: simulated = epoch + (wall − epoch) × speed. At wall time `epoch` the
    /// two coincide; afterwards simulated time runs `speed` times faster.
    Accelerated {
        /// How many simulated seconds pass per wall second (≥ 1).
        speed: u32,
        /// The instant, in Unix microseconds, at which simulated and wall time coincide.
        epoch_unix_micros: i64,
    },
    /// Time that moves only when a test moves it.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// An accelerated clock; `None` when `speed` is 0.
    pub fn accelerated(speed: u32, epoch: SystemTime) -> Option<Clock> {
        (speed > 0).then(|| Clock::Accelerated {
            speed,
            epoch_unix_micros: unix_micros(epoch),
        })
    }

    /// A manual clock starting at `start`.
    pub fn manual(start: SystemTime) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(unix_micros(start))))
    }

    /// The current time by this clock.
    pub fn now(&self) -> SystemTime {
        from_unix_micros(self.now_unix_micros())
    }

    /// The current time in microseconds since the Unix epoch.
    pub fn now_unix_micros(&self) -> i64 {
        self.at_wall_unix_micros(unix_micros(SystemTime::now()))
    }

    /// This clock's time when the wall clock reads `wall` (Unix microseconds): the mapping
    /// every process applies, exposed so that two processes can be compared exactly. A manual
    /// clock ignores the wall clock.
    pub fn at_wall_unix_micros(&self, wall: i64) -> i64 {
        match self {
            Clock::System => wall,
            Clock::Accelerated {
                speed,
                epoch_unix_micros,
            } => accelerate(wall, *speed, *epoch_unix_micros),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// The current time in whole seconds since the Unix epoch.
    pub fn now_unix(&self) -> i64 {
        self.now_unix_micros().div_euclid(1_000_000)
    }

    /// Moves a manual clock forward; other clocks ignore it.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            t.fetch_add(micros, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock; other clocks ignore it.
    pub fn set(&self, to: SystemTime) {
        if let Clock::Manual(t) = self {
            t.store(unix_micros(to), Ordering::SeqCst);
        }
    }

    /// How long to wait in wall time for `simulated` to pass on this clock. A manual clock
    /// never passes by itself, so waits on it are zero and the caller re-reads the time.
    pub fn wall_duration(&self, simulated: Duration) -> Duration {
        match self {
            Clock::System => simulated,
            Clock::Accelerated { speed, .. } => simulated / *speed,
            Clock::Manual(_) => Duration::ZERO,
        }
    }

    /// Simulated seconds per wall second.
    pub fn speed(&self) -> u32 {
        match self {
            Clock::Accelerated { speed, .. } => *speed,
            _ => 1,
        }
    }
}

/// The accelerated mapping, in integer microseconds so that every process computes the same
/// value from the same wall time.
fn accelerate(wall: i64, speed: u32, epoch: i64) -> i64 {
    let sim = i128::from(epoch) + (i128::from(wall) - i128::from(epoch)) * i128::from(speed);
    i64::try_from(sim).unwrap_or(if sim < 0 { i64::MIN } else { i64::MAX })
}

fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn from_unix_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerated_time_coincides_at_the_epoch_and_runs_faster_after() {
        let epoch = 1_790_000_000_000_000;
        assert_eq!(accelerate(epoch, 86_400, epoch), epoch);
        assert_eq!(
            accelerate(epoch + 1_000_000, 86_400, epoch),
            epoch + 86_400_000_000
        );
        assert_eq!(accelerate(epoch - 10, 2, epoch), epoch - 20);
    }

    #[test]
    fn two_accelerated_clocks_with_the_same_settings_agree() {
        let epoch = SystemTime::now() - Duration::from_secs(5);
        let a = Clock::accelerated(86_400, epoch).expect("speed > 0");
        let b = Clock::accelerated(86_400, epoch).expect("speed > 0");
        let (ta, tb) = (a.now_unix_micros(), b.now_unix_micros());
        // Read a few microseconds apart: at a day per second that is under a second simulated.
        assert!((tb - ta).abs() < 1_000_000, "{ta} vs {tb}");
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_is_shared_by_clones() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let c = Clock::manual(start);
        let clone = c.clone();
        assert_eq!(c.now(), start);
        clone.advance(Duration::from_secs(60));
        assert_eq!(c.now_unix(), 1_060);
        c.set(UNIX_EPOCH);
        assert_eq!(clone.now_unix(), 0);
    }

    #[test]
    fn zero_speed_is_refused_and_waits_scale_with_speed() {
        assert!(Clock::accelerated(0, SystemTime::now()).is_none());
        let c = Clock::accelerated(3_600, SystemTime::now()).expect("speed > 0");
        assert_eq!(
            c.wall_duration(Duration::from_secs(7_200)),
            Duration::from_secs(2)
        );
        assert_eq!(
            Clock::System.wall_duration(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn times_before_1970_survive() {
        let t = UNIX_EPOCH - Duration::from_micros(1_500_000);
        assert_eq!(from_unix_micros(unix_micros(t)), t);
        assert_eq!(Clock::manual(t).now_unix(), -2);
    }
}
