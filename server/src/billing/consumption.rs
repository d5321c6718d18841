//! Consumption over periods from cumulative registers: the register at a period's end minus
//! the register at its start, each measured at the boundary or interpolated across it; wraps
//! at 2³² counted as consumption, resets near zero as a new series, other backward steps
//! invalid. Pure: readings in, figures out.

use chrono::{DateTime, TimeDelta, Utc};

use super::period::Period;

/// 32-bit registers wrap here (PROTOCOL.md: `gasVolumeLitres`, `energyWh`).
pub const REGISTER_MODULUS: i64 = 1 << 32;
/// Largest advance between two readings still taken for a wrap past 2³² rather than a
/// backward step: 2²⁸ litres or Wh, far more than any meter consumes between two readings.
pub const MAX_WRAP_ADVANCE: i64 = 1 << 28;
/// A register that drops to below this value, and nearer to zero than to where it was, has
/// been reset (a new series starts), not run backwards.
pub const RESET_BELOW: i64 = 100_000;

/// How far a figure can be trusted, from best to worst.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// Both boundary registers were read at the boundary.
    Measured,
    /// A boundary register was interpolated, or the period spans a register reset.
    Estimated,
    /// A boundary has no reading on one side within the gap: no figure.
    Incomplete,
    /// The register went backwards within the period: no figure, not billed.
    Invalid,
}

impl Quality {
    /// Every quality, best first.
    pub const ALL: [Quality; 4] = [
        Quality::Measured,
        Quality::Estimated,
        Quality::Incomplete,
        Quality::Invalid,
    ];

    /// The name used in answers and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Measured => "measured",
            Quality::Estimated => "estimated",
            Quality::Incomplete => "incomplete",
            Quality::Invalid => "invalid",
        }
    }

    /// The quality named `name`.
    pub fn parse(name: &str) -> Option<Quality> {
        Quality::ALL.into_iter().find(|q| q.as_str() == name)
    }
}

/// How a register moved from one reading to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward by this much (or not at all).
    Forward(i64),
    /// Past its maximum and round again: this much consumed.
    Rollover(i64),
    /// Restarted near zero: a new series; what was consumed across the reset is unknown.
    Reset,
    /// Backwards otherwise: the readings contradict each other.
    Backwards,
}

impl Step {
    /// The step from register value `prev` to `next`.
    pub fn between(prev: i64, next: i64) -> Step {
        if next >= prev {
            return Step::Forward(next - prev);
        }
        let wrapped = next + REGISTER_MODULUS - prev;
        if (0..=MAX_WRAP_ADVANCE).contains(&wrapped) && prev < REGISTER_MODULUS {
            Step::Rollover(wrapped)
        } else if next < RESET_BELOW && next < prev - next {
            Step::Reset
        } else {
            Step::Backwards
        }
    }

    /// What the step adds to the running total (nothing across a reset or a backward step).
    fn advance(self) -> i64 {
        match self {
            Step::Forward(d) | Step::Rollover(d) => d,
            Step::Reset | Step::Backwards => 0,
        }
    }
}

/// One register's value at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The register as read.
    pub value: i64,
}

/// A register at a period boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// The register's value there (as read, or interpolated and wrapped like the meter's).
    pub register: i64,
    /// Consumption since the series' first sample: differences of totals are consumption.
    total: i64,
    /// Measured or estimated.
    pub quality: Quality,
}

/// One register's readings in time order, with the steps between them.
#[derive(Debug, Clone)]
pub struct Series {
    samples: Vec<Sample>,
    /// `steps[k]` leads from sample k − 1 to sample k; `steps[0]` is unused.
    steps: Vec<Step>,
    /// Running consumption at each sample.
    totals: Vec<i64>,
}

impl Series {
    /// The series of `samples`, which must be in strictly increasing time order.
    pub fn new(samples: Vec<Sample>) -> Series {
        let mut steps = Vec::with_capacity(samples.len());
        let mut totals = Vec::with_capacity(samples.len());
        let mut total = 0;
        for (k, s) in samples.iter().enumerate() {
            let step = match k {
                0 => Step::Forward(0),
                _ => Step::between(samples[k - 1].value, s.value),
            };
            total += step.advance();
            steps.push(step);
            totals.push(total);
        }
        Series {
            samples,
            steps,
            totals,
        }
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The backward steps, as (earlier sample, later sample).
    pub fn backward_steps(&self) -> impl Iterator<Item = (Sample, Sample)> + '_ {
        (1..self.samples.len())
            .filter(|&k| self.steps[k] == Step::Backwards)
            .map(|k| (self.samples[k - 1], self.samples[k]))
    }

    /// The register at instant `at`: the sample there, else the interpolation between the
    /// samples either side when they are at most `gap` apart; `None` otherwise. Across a
    /// backward step there is no value either.
    pub fn at(&self, at: DateTime<Utc>, gap: TimeDelta) -> Option<Boundary> {
        let next = self.samples.partition_point(|s| s.at < at);
        if let Some(s) = self.samples.get(next).filter(|s| s.at == at) {
            return Some(Boundary {
                register: s.value,
                total: self.totals[next],
                quality: Quality::Measured,
            });
        }
        let prev = next.checked_sub(1)?;
        let (p, n) = (self.samples[prev], *self.samples.get(next)?);
        if n.at - p.at > gap || self.steps[next] == Step::Backwards {
            return None;
        }
        let step = self.steps[next];
        let part = interpolate(step.advance(), at - p.at, n.at - p.at);
        let register = match step {
            Step::Rollover(_) => (p.value + part).rem_euclid(REGISTER_MODULUS),
            _ => p.value + part,
        };
        Some(Boundary {
            register,
            total: self.totals[prev] + part,
            quality: Quality::Estimated,
        })
    }

    /// The figure for [start, end).
    pub fn figure(&self, start: DateTime<Utc>, end: DateTime<Utc>, gap: TimeDelta) -> Figure {
        // The steps whose interval (at[k−1], at[k]) overlaps the period. A backward step
        // ending right at the start counts too: the start register is then the reading that
        // contradicts the one before it.
        let first = self.samples.partition_point(|s| s.at < start).max(1);
        let mut reset = false;
        for k in first..self.samples.len() {
            if self.samples[k - 1].at >= end {
                break;
            }
            match self.steps[k] {
                Step::Backwards => return Figure::without(Quality::Invalid, None, None),
                Step::Reset if self.samples[k].at > start => reset = true,
                Step::Reset | Step::Forward(_) | Step::Rollover(_) => {}
            }
        }
        let (from, to) = (self.at(start, gap), self.at(end, gap));
        match (from, to) {
            (Some(a), Some(b)) => {
                let worst = a.quality.max(b.quality);
                Figure {
                    consumption: Some(b.total - a.total),
                    start_register: Some(a.register),
                    end_register: Some(b.register),
                    quality: if reset {
                        worst.max(Quality::Estimated)
                    } else {
                        worst
                    },
                }
            }
            _ => Figure::without(
                Quality::Incomplete,
                from.map(|b| b.register),
                to.map(|b| b.register),
            ),
        }
    }
}

/// `advance` × `part` / `whole`, rounded half up, without overflow.
fn interpolate(advance: i64, part: TimeDelta, whole: TimeDelta) -> i64 {
    let (part, whole) = (micros(part), micros(whole));
    if whole <= 0 {
        return 0;
    }
    let scaled = (i128::from(advance) * part * 2 + whole) / (2 * whole);
    i64::try_from(scaled).unwrap_or(advance)
}

fn micros(d: TimeDelta) -> i128 {
    i128::from(d.num_microseconds().unwrap_or(i64::MAX))
}

/// One register's consumption over one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    /// Register difference, in the register's unit; `None` when incomplete or invalid.
    pub consumption: Option<i64>,
    /// The register at the start, when known.
    pub start_register: Option<i64>,
    /// The register at the end, when known.
    pub end_register: Option<i64>,
    /// How far it can be trusted.
    pub quality: Quality,
}

impl Figure {
    fn without(quality: Quality, start_register: Option<i64>, end_register: Option<i64>) -> Self {
        Figure {
            consumption: None,
            start_register,
            end_register,
            quality,
        }
    }
}

/// A reading's registers (either may be absent: a gas meter has no energy register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registers {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Cumulative gas volume, litres.
    pub gas_litres: Option<i64>,
    /// Cumulative active energy, Wh.
    pub energy_wh: Option<i64>,
}

/// One meter's readings, split into its two registers.
#[derive(Debug, Clone)]
pub struct MeterSeries {
    times: Vec<DateTime<Utc>>,
    gas: Series,
    energy: Series,
}

impl MeterSeries {
    /// The series of `readings`, in strictly increasing time order.
    pub fn new(readings: &[Registers]) -> MeterSeries {
        let pick = |f: fn(&Registers) -> Option<i64>| {
            Series::new(
                readings
                    .iter()
                    .filter_map(|r| f(r).map(|value| Sample { at: r.at, value }))
                    .collect(),
            )
        };
        MeterSeries {
            times: readings.iter().map(|r| r.at).collect(),
            gas: pick(|r| r.gas_litres),
            energy: pick(|r| r.energy_wh),
        }
    }

    /// The gas register's series.
    pub fn gas(&self) -> &Series {
        &self.gas
    }

    /// The energy register's series.
    pub fn energy(&self) -> &Series {
        &self.energy
    }

    /// The row of one period.
    pub fn row(&self, period: &Period, gap: TimeDelta) -> Row {
        let figure = |s: &Series| (!s.is_empty()).then(|| s.figure(period.start, period.end, gap));
        let (gas, energy) = (figure(&self.gas), figure(&self.energy));
        let quality = [gas, energy]
            .iter()
            .flatten()
            .map(|f| f.quality)
            .max()
            .unwrap_or(Quality::Incomplete);
        let readings = self.times.partition_point(|t| *t < period.end)
            - self.times.partition_point(|t| *t < period.start);
        Row {
            period: *period,
            gas,
            energy,
            quality,
            readings: u32::try_from(readings).unwrap_or(u32::MAX),
            published: None,
        }
    }

    /// The rows of `periods`, in their order.
    pub fn rows(&self, periods: &[Period], gap: TimeDelta) -> Vec<Row> {
        periods.iter().map(|p| self.row(p, gap)).collect()
    }
}

/// A meter's consumption over one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The period.
    pub period: Period,
    /// Gas, litres; `None` when the meter has no gas register in the readings.
    pub gas: Option<Figure>,
    /// Electricity, Wh; `None` when the meter has no energy register in the readings.
    pub energy: Option<Figure>,
    /// The worst quality of its figures (`incomplete` with neither).
    pub quality: Quality,
    /// Readings dated within the period.
    pub readings: u32,
    /// When the period is closed: when, and its revisions since (the figures above are then
    /// the published ones).
    pub published: Option<Publication>,
}

impl Row {
    /// A row of `period` without figures: no reading, `incomplete` (what a closed period's row
    /// is before its published figures are put in).
    pub fn empty(period: Period) -> Row {
        Row {
            period,
            gas: None,
            energy: None,
            quality: Quality::Incomplete,
            readings: 0,
            published: None,
        }
    }
}

/// A closed period's publication: the figures of its [`Row`] were frozen at `closed_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// When the figures were frozen.
    pub closed_at: DateTime<Utc>,
    /// How many times late readings changed them since.
    pub revisions: u32,
    /// The latest revision's figures, when there is one.
    pub revised: Option<Revised>,
}

/// A revision's figures: what the period's consumption is now known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revised {
    /// When the revision was made.
    pub at: DateTime<Utc>,
    /// Its quality.
    pub quality: Quality,
    /// Gas consumed, litres.
    pub gas_litres: Option<i64>,
    /// Electricity consumed, Wh.
    pub energy_wh: Option<i64>,
}

/// The time range of readings that [`MeterSeries::rows`] needs for periods spanning
/// [start, end) with interpolation over at most `gap`: [start − gap, end + gap].
pub fn needed(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    gap: TimeDelta,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (start - gap, end + gap)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use chrono_tz::Tz;

    use super::*;
    use crate::billing::period::PeriodKind;

    const MADRID: Tz = chrono_tz::Europe::Madrid;
    const WEEK: TimeDelta = TimeDelta::days(7);

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn day(s: &str) -> Period {
        let d: NaiveDate = s.parse().expect("date");
        Period::containing(PeriodKind::Day, MADRID, d)
    }

    fn gas(at: &str, litres: i64) -> Registers {
        Registers {
            at: t(at),
            gas_litres: Some(litres),
            energy_wh: None,
        }
    }

    #[test]
    fn steps_tell_wraps_resets_and_backward_steps_apart() {
        assert_eq!(Step::between(10, 25), Step::Forward(15));
        assert_eq!(
            Step::between(REGISTER_MODULUS - 100, 50),
            Step::Rollover(150)
        );
        assert_eq!(Step::between(5_000_000, 12), Step::Reset);
        assert_eq!(Step::between(5_000_000, 4_999_000), Step::Backwards);
        assert_eq!(Step::between(1_000, 900), Step::Backwards);
    }

    #[test]
    fn the_madrid_spring_day_is_the_difference_over_its_23_hours() {
        // Hourly readings, one litre an hour, local midnight to local midnight.
        let start = t("2026-03-28T23:00:00Z");
        let readings: Vec<Registers> = (0..48)
            .map(|h| Registers {
                at: start + TimeDelta::hours(h),
                gas_litres: Some(1_000 + h),
                energy_wh: Some(h * 10),
            })
            .collect();
        let row = MeterSeries::new(&readings).row(&day("2026-03-29"), WEEK);
        assert_eq!(row.quality, Quality::Measured);
        assert_eq!(row.readings, 23);
        let g = row.gas.expect("gas");
        assert_eq!(g.consumption, Some(23));
        assert_eq!(
            (g.start_register, g.end_register),
            (Some(1_000), Some(1_023))
        );
        assert_eq!(row.energy.and_then(|e| e.consumption), Some(230));
        let autumn = day("2026-10-25");
        let readings: Vec<Registers> = (0..30)
            .map(|h| gas_at(autumn.start + TimeDelta::hours(h), h))
            .collect();
        let row = MeterSeries::new(&readings).row(&autumn, WEEK);
        assert_eq!((row.quality, row.readings), (Quality::Measured, 25));
        assert_eq!(row.gas.and_then(|g| g.consumption), Some(25));
    }

    fn gas_at(at: DateTime<Utc>, litres: i64) -> Registers {
        Registers {
            at,
            gas_litres: Some(litres),
            energy_wh: None,
        }
    }

    #[test]
    fn a_missing_boundary_is_interpolated_and_estimated() {
        // Readings at local noon; the day's boundaries fall between them.
        let s = MeterSeries::new(&[
            gas("2026-05-01T10:00:00Z", 1_000),
            gas("2026-05-02T10:00:00Z", 2_200),
            gas("2026-05-04T10:00:00Z", 4_600),
        ]);
        let row = s.row(&day("2026-05-02"), WEEK);
        let g = row.gas.expect("gas");
        assert_eq!(row.quality, Quality::Estimated);
        // Midnight 2026-05-02 (22:00Z on the 1st) is 12/24 of 1 200 after the first reading;
        // midnight 2026-05-03 is 12/48 of 2 400 after the second.
        assert_eq!(g.start_register, Some(1_600));
        assert_eq!(g.end_register, Some(2_800));
        assert_eq!(g.consumption, Some(1_200));
        assert_eq!(row.readings, 1);
    }

    #[test]
    fn the_estimated_day_of_the_api_guide() {
        // docs/api.md, "Billing": readings at local noon, May 2nd's missing.
        let s = MeterSeries::new(&[
            gas("2026-05-01T10:00:00Z", 1_000),
            gas("2026-05-03T10:00:00Z", 3_400),
        ]);
        let row = s.row(&day("2026-05-02"), WEEK);
        let g = row.gas.expect("gas");
        assert_eq!((row.quality, row.readings), (Quality::Estimated, 0));
        assert_eq!(
            (g.start_register, g.end_register),
            (Some(1_600), Some(2_800))
        );
        assert_eq!(g.consumption, Some(1_200));
    }

    #[test]
    fn a_silent_fortnight_is_incomplete_without_a_figure() {
        let s = MeterSeries::new(&[
            gas("2026-05-01T10:00:00Z", 1_000),
            gas("2026-05-16T10:00:00Z", 9_000),
        ]);
        let row = s.row(&day("2026-05-08"), WEEK);
        assert_eq!(row.quality, Quality::Incomplete);
        let g = row.gas.expect("gas");
        assert_eq!((g.consumption, g.start_register), (None, None));
        // Not installed yet: nothing before.
        let row = s.row(&day("2026-04-20"), WEEK);
        assert_eq!(row.quality, Quality::Incomplete);
        // No reading at all: incomplete, and no register reported.
        let row = MeterSeries::new(&[]).row(&day("2026-04-20"), WEEK);
        assert_eq!(
            (row.quality, row.gas, row.energy),
            (Quality::Incomplete, None, None)
        );
    }

    #[test]
    fn a_wrap_at_2_pow_32_is_consumption() {
        let top = REGISTER_MODULUS - 500;
        let s = MeterSeries::new(&[
            gas("2026-05-01T22:00:00Z", top),
            gas("2026-05-02T10:00:00Z", top + 300),
            gas("2026-05-02T22:00:00Z", 700),
        ]);
        let row = s.row(&day("2026-05-02"), WEEK);
        assert_eq!(row.quality, Quality::Measured);
        let g = row.gas.expect("gas");
        assert_eq!(g.consumption, Some(1_200));
        assert_eq!((g.start_register, g.end_register), (Some(top), Some(700)));
        // Interpolated across the wrap, the register wraps too.
        let s = MeterSeries::new(&[
            gas("2026-05-02T20:00:00Z", REGISTER_MODULUS - 100),
            gas("2026-05-03T00:00:00Z", 300),
        ]);
        let b = s
            .gas()
            .at(t("2026-05-02T22:00:00Z"), WEEK)
            .expect("boundary");
        assert_eq!((b.register, b.quality), (100, Quality::Estimated));
    }

    #[test]
    fn a_backward_step_is_invalid_only_where_it_falls() {
        let s = MeterSeries::new(&[
            gas("2026-05-01T22:00:00Z", 5_000_000),
            gas("2026-05-02T10:00:00Z", 5_001_000),
            gas("2026-05-02T22:00:00Z", 5_000_500),
            gas("2026-05-03T22:00:00Z", 5_002_500),
            gas("2026-05-04T22:00:00Z", 5_003_500),
        ]);
        assert_eq!(s.row(&day("2026-05-01"), WEEK).quality, Quality::Incomplete);
        let invalid = s.row(&day("2026-05-02"), WEEK);
        assert_eq!(invalid.quality, Quality::Invalid);
        assert_eq!(invalid.gas.and_then(|g| g.consumption), None);
        // The next day starts on the reading in doubt: invalid too.
        assert_eq!(s.row(&day("2026-05-03"), WEEK).quality, Quality::Invalid);
        let after = s.row(&day("2026-05-04"), WEEK);
        assert_eq!(after.quality, Quality::Measured);
        assert_eq!(after.gas.and_then(|g| g.consumption), Some(1_000));
        assert_eq!(s.gas().backward_steps().count(), 1);
    }

    #[test]
    fn a_reset_near_zero_starts_a_new_series_and_estimates() {
        let s = MeterSeries::new(&[
            gas("2026-05-01T22:00:00Z", 5_000_000),
            gas("2026-05-02T10:00:00Z", 5_001_000),
            gas("2026-05-02T14:00:00Z", 40),
            gas("2026-05-02T22:00:00Z", 240),
            gas("2026-05-03T22:00:00Z", 1_240),
        ]);
        let row = s.row(&day("2026-05-02"), WEEK);
        assert_eq!(row.quality, Quality::Estimated);
        // 1 000 before the reset and 200 after it; the unknown in between is not invented.
        assert_eq!(row.gas.and_then(|g| g.consumption), Some(1_200));
        assert_eq!(s.row(&day("2026-05-03"), WEEK).quality, Quality::Measured);
        assert_eq!(s.gas().backward_steps().count(), 0);
    }

    #[test]
    fn the_needed_range_widens_by_the_gap() {
        let (a, b) = needed(t("2026-05-01T00:00:00Z"), t("2026-06-01T00:00:00Z"), WEEK);
        assert_eq!(
            (a, b),
            (t("2026-04-24T00:00:00Z"), t("2026-06-08T00:00:00Z"))
        );
    }
}
