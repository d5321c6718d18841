//! One notion of time for every process of a meterhub deployment (feature `std`).
//!
//! The server and the simulator read time only through a [`Clock`]: wall time in production,
//! a manual clock in tests, and an accelerated clock for demos and load tests. The accelerated
//! clock is a pure function of wall time, so two processes given the same speed, start and
//! anchor agree on simulated time without talking to each other.

use core::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
///
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Wall time sped up: simulated = start + (wall − anchor) × speed. At wall time `anchor`
    /// the simulated clock reads `start`; afterwards it runs `speed` times faster.
    Accelerated {
        /// How many simulated seconds pass per wall second (≥ 1).
        speed: u32,
        /// The simulated instant, in Unix microseconds, at which the run starts.
        start_unix_micros: i64,
        /// The wall instant, in Unix microseconds, at which the simulated clock reads `start`.
        anchor_unix_micros: i64,
    },
    /// Time that moves only when a test moves it.
    Manual(Arc<AtomicI64>),
    /// Accelerated time that can be held still ([`Clock::hold`], [`Clock::resume`]): held, it
    /// reads the simulated instant at which it was held; resumed, it runs on from there. The
    /// demo holds it while its server catches up, so that a slow machine does not see the
    /// fleet's readings grow old in simulated time. Clones share it.
    Paced(Arc<Pace>),
}

/// The state of a [`Clock::Paced`].
#[derive(Debug)]
pub struct Pace {
    speed: u32,
    start_unix_micros: i64,
    state: Mutex<PaceState>,
}

#[derive(Debug, Clone, Copy)]
struct PaceState {
    /// The wall instant at which the clock read (or would have read) its start: moved later by
    /// every hold, by the hold's length.
    anchor_unix_micros: i64,
    /// The wall instant of the current hold.
    held_at: Option<i64>,
}

impl Pace {
    fn state(&self) -> PaceState {
        // The state is two integers written together under the lock: a panic elsewhere cannot
        // leave it half written.
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut PaceState)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Clock {
    /// An accelerated clock that reads `anchor` at wall time `anchor`; `None` when `speed` is 0.
    pub fn accelerated(speed: u32, anchor: SystemTime) -> Option<Clock> {
        Clock::accelerated_from(speed, anchor, anchor)
    }

    /// An accelerated clock that reads `start` at wall time `anchor`; `None` when `speed` is 0.
    pub fn accelerated_from(speed: u32, start: SystemTime, anchor: SystemTime) -> Option<Clock> {
        (speed > 0).then(|| Clock::Accelerated {
            speed,
            start_unix_micros: unix_micros(start),
            anchor_unix_micros: unix_micros(anchor),
        })
    }

    /// A paced clock (accelerated, able to be held) that reads `start` now and runs `speed`
    /// times faster than the wall clock; `None` when `speed` is 0.
    pub fn paced(speed: u32, start: SystemTime) -> Option<Clock> {
        (speed > 0).then(|| {
            Clock::Paced(Arc::new(Pace {
                speed,
                start_unix_micros: unix_micros(start),
                state: Mutex::new(PaceState {
                    anchor_unix_micros: unix_micros(SystemTime::now()),
                    held_at: None,
                }),
            }))
        })
    }

    /// Holds a paced clock still until [`Clock::resume`]; other clocks ignore it.
    pub fn hold(&self) {
        if let Clock::Paced(pace) = self {
            let wall = unix_micros(SystemTime::now());
            pace.update(|s| {
                s.held_at.get_or_insert(wall);
            });
        }
    }

    /// Lets a held paced clock run on from where it was held; other clocks ignore it.
    pub fn resume(&self) {
        if let Clock::Paced(pace) = self {
            let wall = unix_micros(SystemTime::now());
            pace.update(|s| {
                if let Some(held_at) = s.held_at.take() {
                    s.anchor_unix_micros += wall.saturating_sub(held_at).max(0);
                }
            });
        }
    }

    /// Whether this is a paced clock held still.
    pub fn is_held(&self) -> bool {
        matches!(self, Clock::Paced(pace) if pace.state().held_at.is_some())
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
    /// clock ignores the wall clock; a held paced clock reads no later than where it was held.
    pub fn at_wall_unix_micros(&self, wall: i64) -> i64 {
        match self {
            Clock::System => wall,
            Clock::Accelerated {
                speed,
                start_unix_micros,
                anchor_unix_micros,
            } => accelerate(wall, *speed, *start_unix_micros, *anchor_unix_micros),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
            Clock::Paced(pace) => {
                let s = pace.state();
                let wall = s.held_at.map_or(wall, |held_at| wall.min(held_at));
                accelerate(
                    wall,
                    pace.speed,
                    pace.start_unix_micros,
                    s.anchor_unix_micros,
                )
            }
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
            Clock::Paced(pace) => simulated / pace.speed,
            Clock::Manual(_) => Duration::ZERO,
        }
    }

    /// Simulated seconds per wall second.
    pub fn speed(&self) -> u32 {
        match self {
            Clock::Accelerated { speed, .. } => *speed,
            Clock::Paced(pace) => pace.speed,
            _ => 1,
        }
    }
}

/// The accelerated mapping, in integer microseconds so that every process computes the same
/// value from the same wall time.
fn accelerate(wall: i64, speed: u32, start: i64, anchor: i64) -> i64 {
    let sim = i128::from(start) + (i128::from(wall) - i128::from(anchor)) * i128::from(speed);
    i64::try_from(sim).unwrap_or(if sim < 0 { i64::MIN } else { i64::MAX })
}

/// The Unix seconds a meter's clock can show: from the GPS epoch (1980-01-06) to the last of
/// the 2^32 GPS seconds (2116-02-12). Simulated time outside it cannot be sent to a meter.
pub fn supported_unix_seconds() -> core::ops::RangeInclusive<i64> {
    crate::GpsTime(0).to_unix()..=crate::GpsTime(u32::MAX).to_unix()
}

/// Simulated time that would leave [`supported_unix_seconds`], and what to change.
///
/// The messages name the command-line flags (`--clock-start`, `--clock-anchor`,
/// `--clock-speed`, `--days`); a settings file has the same names under `[clock]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfRange {
    /// The simulated clock reads `now` (Unix seconds) already, outside the range.
    Now {
        /// The simulated time now, Unix seconds.
        now: i64,
        /// Wall seconds since the anchor (negative: the anchor is in the future).
        since_anchor: i64,
        /// Simulated seconds per wall second.
        speed: u32,
    },
    /// The run would end at `end` (Unix seconds), after the range.
    End {
        /// The simulated time now, Unix seconds.
        now: i64,
        /// The simulated time at which the run ends, Unix seconds.
        end: i64,
    },
}

impl Clock {
    /// Checks that this clock reads a supported time when the wall clock reads `wall` (Unix
    /// microseconds) and, for a run of `run` simulated time, still does at its end. The wall
    /// and system clocks always pass the first check.
    pub fn check_range(&self, wall: i64, run: Option<Duration>) -> Result<(), OutOfRange> {
        let range = supported_unix_seconds();
        let now = self.at_wall_unix_micros(wall).div_euclid(1_000_000);
        if !range.contains(&now) {
            let (speed, since_anchor) = match self {
                Clock::Accelerated {
                    speed,
                    anchor_unix_micros,
                    ..
                } => (*speed, (wall - anchor_unix_micros).div_euclid(1_000_000)),
                Clock::Paced(pace) => (
                    pace.speed,
                    (wall - pace.state().anchor_unix_micros).div_euclid(1_000_000),
                ),
                _ => (1, 0),
            };
            return Err(OutOfRange::Now {
                now,
                since_anchor,
                speed,
            });
        }
        let run = run.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let end = now.saturating_add(run);
        if end > *range.end() {
            return Err(OutOfRange::End { now, end });
        }
        Ok(())
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = supported_unix_seconds();
        let (first, last) = (Utc(*range.start()), Utc(*range.end()));
        match *self {
            OutOfRange::Now {
                now,
                since_anchor,
                speed,
            } => {
                write!(
                    f,
                    "the simulated clock would read {}, outside the {first} .. {last} a meter's \
                     GPS clock can show",
                    Utc(now)
                )?;
                if speed > 1 && since_anchor.unsigned_abs() > 60 {
                    let direction = if since_anchor > 0 { "ago" } else { "from now" };
                    write!(
                        f,
                        ": the anchor is {} s {direction}, {} s of simulated time at speed \
                         {speed}; leave out --clock-anchor (it defaults to now) or give a \
                         recent one, or lower --clock-speed",
                        since_anchor.unsigned_abs(),
                        since_anchor.unsigned_abs().saturating_mul(u64::from(speed))
                    )
                } else {
                    write!(f, ": give a --clock-start within that range")
                }
            }
            OutOfRange::End { now, end } => write!(
                f,
                "the run would end at {}, after {last}, the last second a meter's GPS clock can \
                 show (it starts at {}): give an earlier --clock-start or fewer --days",
                Utc(end),
                Utc(now)
            ),
        }
    }
}

impl std::error::Error for OutOfRange {}

/// Unix seconds shown as UTC text, for any year (a simulated clock may be far off).
struct Utc(i64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = crate::time::civil_from_days(self.0.div_euclid(86_400));
        let s = self.0.rem_euclid(86_400);
        let (hh, mm, ss) = (s / 3600, s / 60 % 60, s % 60);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
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
    fn accelerated_time_reads_the_start_at_the_anchor_and_runs_faster_after() {
        let anchor = 1_790_000_000_000_000;
        let start = 1_767_225_600_000_000; // 2026-01-01
        assert_eq!(accelerate(anchor, 86_400, anchor, anchor), anchor);
        assert_eq!(accelerate(anchor, 86_400, start, anchor), start);
        assert_eq!(
            accelerate(anchor + 1_000_000, 86_400, start, anchor),
            start + 86_400_000_000
        );
        assert_eq!(accelerate(anchor - 10, 2, start, anchor), start - 20);
    }

    #[test]
    fn the_supported_range_is_the_gps_epoch_to_2116() {
        let range = supported_unix_seconds();
        assert_eq!(Utc(*range.start()).to_string(), "1980-01-06T00:00:00Z");
        assert_eq!(Utc(*range.end()).to_string(), "2116-02-12T06:27:57Z");
        assert_eq!(Utc(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn a_start_long_before_the_anchor_is_refused_only_when_it_leaves_the_range() {
        let day = 86_400_000_000i64;
        let start = 1_767_225_600_000_000; // 2026-01-01
        // Anchored a year before the wall time: 365 × 86 400 days later, far past 2116.
        let clock = Clock::Accelerated {
            speed: 86_400,
            start_unix_micros: start,
            anchor_unix_micros: start,
        };
        let err = clock
            .check_range(start + 340 * day, None)
            .expect_err("far future");
        let text = err.to_string();
        assert!(text.contains("--clock-anchor"), "{text}");
        assert!(
            matches!(err, OutOfRange::Now { speed: 86_400, .. }),
            "{err:?}"
        );
        // The same start anchored at the wall time reads 2026 and may run 30 days.
        let clock = Clock::Accelerated {
            speed: 86_400,
            start_unix_micros: start,
            anchor_unix_micros: start + 340 * day,
        };
        let wall = start + 340 * day;
        assert_eq!(
            clock.check_range(wall, Some(Duration::from_secs(30 * 86_400))),
            Ok(())
        );
        // But not 100 years.
        let err = clock
            .check_range(wall, Some(Duration::from_secs(100 * 365 * 86_400)))
            .expect_err("ends after 2116");
        assert!(matches!(err, OutOfRange::End { .. }), "{err:?}");
        assert!(err.to_string().contains("--days"), "{err}");
        // A start before the GPS epoch.
        let clock = Clock::accelerated_from(60, UNIX_EPOCH, SystemTime::now()).expect("speed");
        let err = clock
            .check_range(unix_micros(SystemTime::now()), None)
            .expect_err("1970");
        assert!(err.to_string().contains("--clock-start"), "{err}");
        assert!(
            Clock::System
                .check_range(unix_micros(SystemTime::now()), None)
                .is_ok()
        );
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
    fn a_held_paced_clock_stands_still_and_runs_on_from_there() {
        let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        let clock = Clock::paced(1_000, start).expect("speed > 0");
        let shared = clock.clone();
        let Clock::Paced(pace) = &clock else {
            panic!("paced")
        };
        let anchor = pace.state().anchor_unix_micros;
        // Running: the accelerated mapping from its anchor.
        assert_eq!(
            clock.at_wall_unix_micros(anchor + 2_000),
            1_767_225_600_000_000 + 2_000_000
        );
        assert!(!clock.is_held());
        shared.hold();
        assert!(clock.is_held());
        let held_at = pace.state().held_at.expect("held");
        let reading = clock.at_wall_unix_micros(held_at);
        // Held: later wall times read the same instant, however late.
        assert_eq!(clock.at_wall_unix_micros(held_at + 60_000_000), reading);
        // Holding again does not move the hold.
        clock.hold();
        assert_eq!(pace.state().held_at, Some(held_at));
        shared.resume();
        assert!(!clock.is_held());
        // Resumed: the anchor moved by the hold's length, so the clock runs on from the held
        // instant, never back.
        let now = clock.now_unix_micros();
        assert!(now >= reading, "{now} < {reading}");
        let moved = pace.state().anchor_unix_micros - anchor;
        assert!(moved >= 0);
        assert_eq!(
            clock.at_wall_unix_micros(held_at + moved),
            reading,
            "the held instant is where the clock resumes"
        );
        assert_eq!(clock.speed(), 1_000);
        assert_eq!(
            clock.wall_duration(Duration::from_secs(3)),
            Duration::from_millis(3)
        );
        assert!(Clock::paced(0, start).is_none());
    }

    #[test]
    fn times_before_1970_survive() {
        let t = UNIX_EPOCH - Duration::from_micros(1_500_000);
        assert_eq!(from_unix_micros(unix_micros(t)), t);
        assert_eq!(Clock::manual(t).now_unix(), -2);
    }
}
