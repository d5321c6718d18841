//! Alarm rules over a meter's readings: pure functions of the meter's remembered state and a
//! new reading, so that they are tested without a database and applied inside the batch
//! transaction that stores the reading.

use chrono::{DateTime, Utc};

use crate::billing::consumption::Step;

/// Thresholds of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Below this battery percentage: `lowBattery`.
    pub low_battery_percent: u8,
    /// Above this multiple of the trailing daily average: `overConsumption`.
    pub over_consumption_factor: f64,
    /// Readings needed before the average is trusted.
    pub min_samples: u32,
    /// Beyond this clock drift (ms) the meter is asked to resynchronise.
    pub max_drift_ms: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            low_battery_percent: 10,
            over_consumption_factor: 3.0,
            min_samples: 3,
            max_drift_ms: 30_000,
        }
    }
}

/// Weight of a new day's consumption in the trailing average (an exponentially weighted
/// mean: about the last ten readings count).
const AVERAGE_WEIGHT: f64 = 0.2;

/// Shortest span between two readings from which a daily rate is computed: a read-on-request
/// minutes after the daily reading says nothing about the day.
const MIN_SPAN_HOURS: f64 = 6.0;

/// What is remembered of a meter between readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterState {
    /// Valve wire code of the latest reading.
    pub valve: Option<i16>,
    /// The consumption register at `register_at`.
    pub register: Option<i64>,
    /// When the register was read (meter clock).
    pub register_at: Option<DateTime<Utc>>,
    /// Trailing average daily consumption (register units per day).
    pub daily_average: Option<f64>,
    /// Daily rates folded into the average.
    pub samples: i32,
}

/// A reading as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// The meter's time of the reading.
    pub at: DateTime<Utc>,
    /// The consumption register (gas litres or energy Wh).
    pub register: Option<i64>,
    /// Valve wire code.
    pub valve: i16,
    /// Battery percentage.
    pub battery_percent: i16,
    /// Meter clock minus the network's reference time, milliseconds.
    pub drift_ms: Option<i64>,
}

/// The alarms the rules raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAlarm {
    /// The battery fell below the threshold.
    LowBattery,
    /// The valve changed position.
    ValveChanged,
    /// A day far above the meter's own trailing average.
    OverConsumption,
    /// The register went backwards: neither a wrap past 2³² nor a reset near zero. Billing
    /// marks the periods around it `invalid`.
    RegisterBackwards,
}

impl RuleAlarm {
    /// The alarm's kind as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAlarm::LowBattery => "lowBattery",
            RuleAlarm::ValveChanged => "valveChanged",
            RuleAlarm::OverConsumption => "overConsumption",
            RuleAlarm::RegisterBackwards => "registerBackwards",
        }
    }
}

/// A server alarm a rule raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    /// Alarm kind.
    pub kind: RuleAlarm,
    /// Its value (meaning by kind).
    pub value: Option<i64>,
    /// In words.
    pub detail: String,
}

/// The stored readings either side of a reading older than the meter's latest, by the
/// meter's clock: (time, register).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Neighbours {
    /// The reading just before it.
    pub before: Option<(DateTime<Utc>, i64)>,
    /// The reading just after it.
    pub after: Option<(DateTime<Utc>, i64)>,
}

/// The alarm a reading older than the remembered one raises: `registerBackwards` when its
/// register contradicts the readings either side of it in time (the step into it, or out of
/// it, goes back). It is compared with its neighbours in time, never with the latest
/// reading: a late reading lower than the later ones but between its neighbours fits the
/// series and raises nothing.
pub fn late_reading(reading: &Observed, n: &Neighbours) -> Option<Raised> {
    let register = reading.register?;
    if let Some((then, before)) = n.before
        && Step::between(before, register) == Step::Backwards
    {
        return Some(Raised {
            kind: RuleAlarm::RegisterBackwards,
            value: Some(register - before),
            detail: format!(
                "register went back from {before} to {register} (read at {})",
                then.to_rfc3339()
            ),
        });
    }
    if let Some((then, after)) = n.after
        && Step::between(register, after) == Step::Backwards
    {
        return Some(Raised {
            kind: RuleAlarm::RegisterBackwards,
            value: Some(after - register),
            detail: format!(
                "register {register}, read late, is above the {after} read after it (at {})",
                then.to_rfc3339()
            ),
        });
    }
    None
}

/// What a reading does to a meter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The state to remember.
    pub state: MeterState,
    /// Alarms raised.
    pub alarms: Vec<Raised>,
}

/// Whether a meter whose clock is `drift_ms` off should be asked to resynchronise.
pub fn needs_resync(drift_ms: i64, rules: &Rules) -> bool {
    drift_ms.abs() > rules.max_drift_ms
}

/// Applies the rules to one reading. Readings older than the remembered one (a late
/// redelivery, a reordered uplink) update nothing but the battery rule.
pub fn evaluate(state: MeterState, reading: &Observed, rules: &Rules) -> Verdict {
    let mut verdict = Verdict {
        state,
        ..Verdict::default()
    };
    if reading.battery_percent < i16::from(rules.low_battery_percent) {
        verdict.alarms.push(Raised {
            kind: RuleAlarm::LowBattery,
            value: Some(i64::from(reading.battery_percent)),
            detail: format!(
                "battery at {} % (threshold {} %)",
                reading.battery_percent, rules.low_battery_percent
            ),
        });
    }
    let newer = state.register_at.is_none_or(|t| reading.at > t);
    if !newer {
        return verdict;
    }
    if let Some(previous) = state.valve
        && previous != reading.valve
    {
        verdict.alarms.push(Raised {
            kind: RuleAlarm::ValveChanged,
            value: Some(i64::from(reading.valve)),
            detail: format!(
                "valve {} → {}",
                valve_name(previous),
                valve_name(reading.valve)
            ),
        });
    }
    verdict.state.valve = Some(reading.valve);
    let Some(register) = reading.register else {
        return verdict;
    };
    if let (Some(before), Some(then)) = (state.register, state.register_at) {
        let hours = (reading.at - then).num_seconds() as f64 / 3600.0;
        let used = register - before;
        if used < 0 {
            // Backwards, neither a wrap nor a reset: the readings contradict each other, once
            // per reading that goes back (its time is the alarm's, so a redelivery is one).
            if Step::between(before, register) == Step::Backwards {
                verdict.alarms.push(Raised {
                    kind: RuleAlarm::RegisterBackwards,
                    value: Some(used),
                    detail: format!(
                        "register went back from {before} to {register} (read at {})",
                        then.to_rfc3339()
                    ),
                });
            }
            // A replaced meter, a register that wrapped or went back: the history says
            // nothing about the new register; start again.
            verdict.state.daily_average = None;
            verdict.state.samples = 0;
        } else if hours >= MIN_SPAN_HOURS {
            let rate = used as f64 * 24.0 / hours;
            if let Some(average) = state.daily_average
                && state.samples >= rules.min_samples as i32
                && average > 0.0
                && rate > average * rules.over_consumption_factor
            {
                verdict.alarms.push(Raised {
                    kind: RuleAlarm::OverConsumption,
                    value: Some(rate.round() as i64),
                    detail: format!(
                        "{rate:.0} per day against a trailing average of {average:.0} (×{:.1})",
                        rate / average
                    ),
                });
            }
            verdict.state.daily_average = Some(match state.daily_average {
                Some(a) => a + AVERAGE_WEIGHT * (rate - a),
                None => rate,
            });
            verdict.state.samples = state.samples.saturating_add(1);
        } else {
            // Too close to the last one: keep the older register as the base of the next rate.
            return verdict;
        }
    }
    verdict.state.register = Some(register);
    verdict.state.register_at = Some(reading.at);
    verdict
}

fn valve_name(code: i16) -> &'static str {
    match code {
        0 => "notFitted",
        1 => "open",
        2 => "closed",
        3 => "fault",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
            + Duration::days(n)
    }

    fn reading(n: i64, register: i64) -> Observed {
        Observed {
            at: day(n),
            register: Some(register),
            valve: 1,
            battery_percent: 80,
            drift_ms: Some(0),
        }
    }

    /// Feeds daily readings of `used` per day and returns the state and every alarm kind.
    fn feed(used: &[i64]) -> (MeterState, Vec<&'static str>) {
        let mut state = MeterState::default();
        let mut register = 1_000;
        let mut kinds = Vec::new();
        let v = evaluate(state, &reading(0, register), &Rules::default());
        state = v.state;
        for (i, u) in used.iter().enumerate() {
            register += u;
            let v = evaluate(state, &reading(i as i64 + 1, register), &Rules::default());
            kinds.extend(v.alarms.iter().map(|a| a.kind.as_str()));
            state = v.state;
        }
        (state, kinds)
    }

    #[test]
    fn steady_consumption_raises_nothing_and_learns_the_average() {
        let (state, kinds) = feed(&[100, 100, 100, 100, 100]);
        assert!(kinds.is_empty(), "{kinds:?}");
        assert_eq!(state.samples, 5);
        assert!((state.daily_average.expect("average") - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_day_far_above_the_meters_own_average_raises_over_consumption() {
        let (_, kinds) = feed(&[100, 100, 100, 100, 350]);
        assert_eq!(kinds, vec!["overConsumption"]);
        // Below the factor: nothing.
        let (_, kinds) = feed(&[100, 100, 100, 100, 290]);
        assert!(kinds.is_empty());
    }

    #[test]
    fn no_verdict_before_enough_history() {
        let (_, kinds) = feed(&[100, 1_000]);
        assert!(kinds.is_empty(), "{kinds:?}");
    }

    #[test]
    fn a_register_that_goes_back_restarts_the_history() {
        let (state, kinds) = feed(&[100, 100, 100, 100, -5_000, 100]);
        assert!(kinds.is_empty(), "{kinds:?}");
        assert_eq!(state.samples, 1);
    }

    #[test]
    fn a_register_going_backwards_raises_one_alarm_a_wrap_or_reset_none() {
        let mut state = evaluate(
            MeterState::default(),
            &reading(0, 5_000_000),
            &Rules::default(),
        )
        .state;
        let mut kinds = Vec::new();
        for (day, register) in [
            (1, 5_000_100),
            (2, 4_000_000),
            (3, 4_000_100),
            (4, 4_000_200),
        ] {
            let v = evaluate(state, &reading(day, register), &Rules::default());
            kinds.extend(v.alarms.iter().map(|a| (a.kind, a.value)));
            state = v.state;
        }
        assert_eq!(
            kinds,
            vec![(RuleAlarm::RegisterBackwards, Some(4_000_000 - 5_000_100))]
        );
        // Past 2³² and round again: consumption. Restarted near zero: a new series.
        for (from, to) in [((1i64 << 32) - 50, 30), (7_000_000, 12)] {
            let state = evaluate(MeterState::default(), &reading(0, from), &Rules::default()).state;
            let v = evaluate(state, &reading(1, to), &Rules::default());
            assert!(v.alarms.is_empty(), "{from} → {to}: {:?}", v.alarms);
        }
    }

    #[test]
    fn a_late_reading_is_judged_by_its_neighbours_in_time() {
        let n = Neighbours {
            before: Some((day(1), 1_100)),
            after: Some((day(3), 1_300)),
        };
        // Lower than the latest reading, but between its neighbours: it fits.
        assert_eq!(late_reading(&reading(2, 1_200), &n), None);
        let back = late_reading(&reading(2, 1_050), &n).expect("an alarm");
        assert_eq!(
            (back.kind, back.value),
            (RuleAlarm::RegisterBackwards, Some(-50))
        );
        let above = late_reading(&reading(2, 1_400), &n).expect("an alarm");
        assert_eq!(
            (above.kind, above.value),
            (RuleAlarm::RegisterBackwards, Some(-100))
        );
        // Nothing either side, or no register: nothing to contradict.
        assert_eq!(late_reading(&reading(2, 5), &Neighbours::default()), None);
        let mut no_register = reading(2, 0);
        no_register.register = None;
        assert_eq!(late_reading(&no_register, &n), None);
    }

    #[test]
    fn an_older_reading_changes_nothing() {
        let (state, _) = feed(&[100, 100, 100]);
        let v = evaluate(state, &reading(1, 5), &Rules::default());
        assert_eq!(v.state, state);
        assert!(v.alarms.is_empty());
    }

    #[test]
    fn valve_changes_low_battery_and_drift_bound() {
        let state = evaluate(MeterState::default(), &reading(0, 0), &Rules::default()).state;
        let mut r = reading(1, 10);
        r.valve = 2;
        r.battery_percent = 5;
        r.drift_ms = Some(-45_000);
        let v = evaluate(state, &r, &Rules::default());
        let kinds: Vec<_> = v.alarms.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, vec!["lowBattery", "valveChanged"]);
        assert_eq!(v.alarms[1].detail, "valve open → closed");
        assert!(needs_resync(-45_000, &Rules::default()));
        assert!(!needs_resync(29_000, &Rules::default()));
    }
}
