//! Property tests: figures add up across period lengths.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::consumption::{MeterSeries, Quality, REGISTER_MODULUS, Registers};
use super::period::{Period, PeriodKind};

const GAP: TimeDelta = TimeDelta::days(7);
const ZONES: [Tz; 4] = [
    chrono_tz::Europe::Madrid,
    chrono_tz::UTC,
    chrono_tz::America::Santiago,
    chrono_tz::Australia::Lord_Howe,
];

/// Readings from `from` on, `steps` apart (minutes) with `advances` consumed between them,
/// the register starting at `first` (near 2³² it wraps).
fn readings(from: DateTime<Utc>, first: i64, steps: &[(i64, i64)]) -> Vec<Registers> {
    let mut at = from;
    let mut value = first;
    let mut out = vec![Registers {
        at,
        gas_litres: Some(value),
        energy_wh: Some(value / 3),
    }];
    for &(minutes, advance) in steps {
        at += TimeDelta::minutes(minutes);
        value = (value + advance) % REGISTER_MODULUS;
        out.push(Registers {
            at,
            gas_litres: Some(value),
            energy_wh: Some(value / 3),
        });
    }
    out
}

fn sum_of(rows: &[super::Row]) -> Option<i64> {
    rows.iter().map(|r| r.gas.and_then(|g| g.consumption)).sum()
}

fn start_date() -> impl Strategy<Value = NaiveDate> {
    // Any day of 2026–2028 (2028-02-29 included).
    (0u64..1096)
        .prop_map(|d| NaiveDate::from_ymd_opt(2026, 1, 1).expect("date") + chrono::Days::new(d))
}

fn first_register() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..1_000_000i64,
        (REGISTER_MODULUS - 200_000)..REGISTER_MODULUS
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Readings at irregular times (never more than two days apart): every day of the month
    /// has a figure, and they add up exactly to the month's; each week's days to the week.
    #[test]
    fn days_add_up_to_their_month_and_week(
        date in start_date(),
        zone in 0..ZONES.len(),
        first in first_register(),
        steps in prop::collection::vec((30i64..2_880, 0i64..40_000), 200..400),
    ) {
        let tz = ZONES[zone];
        let month = Period::containing(PeriodKind::Month, tz, date);
        let from = month.start - TimeDelta::days(9);
        let mut rows = readings(from, first, &steps);
        // Cover the month and its week's tail whatever the random steps.
        let mut at = rows.last().map_or(from, |r| r.at);
        let mut value = rows.last().and_then(|r| r.gas_litres).unwrap_or(0);
        while at < month.end + TimeDelta::days(9) {
            at += TimeDelta::hours(20);
            value = (value + 1_000) % REGISTER_MODULUS;
            rows.push(Registers { at, gas_litres: Some(value), energy_wh: Some(value / 3) });
        }
        let series = MeterSeries::new(&rows);
        let last_day = month.end.with_timezone(&tz).date_naive();
        let days = series.rows(&Period::range(PeriodKind::Day, tz, month.first_day, last_day), GAP);
        let whole = series.row(&month, GAP);
        prop_assert!(days.iter().all(|d| d.quality <= Quality::Estimated));
        prop_assert_eq!(sum_of(&days), whole.gas.and_then(|g| g.consumption));
        prop_assert!(whole.gas.and_then(|g| g.consumption).is_some_and(|c| c >= 0));
        let week = Period::containing(PeriodKind::Week, tz, date);
        let week_days = series.rows(&Period::range(PeriodKind::Day, tz, week.first_day, PeriodKind::Week.next(week.first_day)), GAP);
        prop_assert_eq!(week_days.len(), 7);
        prop_assert_eq!(sum_of(&week_days), series.row(&week, GAP).gas.and_then(|g| g.consumption));
        let readings_in_days: u32 = days.iter().map(|d| d.readings).sum();
        prop_assert_eq!(readings_in_days, whole.readings);
    }

    /// A reading at every local midnight: every day is measured, the month too, and its
    /// figure is the register difference across the month.
    #[test]
    fn readings_at_every_midnight_are_measured(
        date in start_date(),
        zone in 0..ZONES.len(),
        first in first_register(),
        advances in prop::collection::vec(0i64..100_000, 40),
    ) {
        let tz = ZONES[zone];
        let month = Period::containing(PeriodKind::Month, tz, date);
        let last_day = month.end.with_timezone(&tz).date_naive();
        let periods = Period::range(PeriodKind::Day, tz, month.first_day, last_day);
        let mut value = first;
        let mut rows = Vec::new();
        for (p, advance) in periods.iter().zip(&advances) {
            rows.push(Registers { at: p.start, gas_litres: Some(value), energy_wh: None });
            value = (value + advance) % REGISTER_MODULUS;
        }
        rows.push(Registers { at: month.end, gas_litres: Some(value), energy_wh: None });
        let series = MeterSeries::new(&rows);
        let days = series.rows(&periods, GAP);
        prop_assert!(days.iter().all(|d| d.quality == Quality::Measured && d.energy.is_none()));
        let whole = series.row(&month, GAP);
        prop_assert_eq!(whole.quality, Quality::Measured);
        let expected: i64 = advances.iter().take(periods.len()).sum();
        prop_assert_eq!(whole.gas.and_then(|g| g.consumption), Some(expected));
        prop_assert_eq!(sum_of(&days), Some(expected));
    }
}
