//! A region's consumption per period: the sum of its meters' billable figures and how many
//! meters were measured, estimated, incomplete or invalid, in all and per usage type. Pure:
//! meters' rows in, totals out.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::consumption::{Quality, Row};
use super::period::{Period, PeriodKind};
use crate::registry::record::USAGE_TYPES;

/// How many meters had each quality of figure.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "QualityCounts")]
pub struct QualityCounts {
    /// Both boundaries read.
    pub measured: u64,
    /// A boundary interpolated (billed all the same).
    pub estimated: u64,
    /// No figure: a boundary without a reading on one side within the gap.
    pub incomplete: u64,
    /// No figure: the register went backwards.
    pub invalid: u64,
}

impl QualityCounts {
    fn add(&mut self, quality: Quality) {
        match quality {
            Quality::Measured => self.measured += 1,
            Quality::Estimated => self.estimated += 1,
            Quality::Incomplete => self.incomplete += 1,
            Quality::Invalid => self.invalid += 1,
        }
    }
}

/// The billable consumption of a set of meters over one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ConsumptionSum")]
pub struct Sum {
    /// Meters by the quality of their figure.
    pub meters: QualityCounts,
    /// Gas consumed by the measured and estimated meters, litres.
    pub gas_litres: i64,
    /// The same, m³.
    pub gas_cubic_metres: f64,
    /// Electricity consumed by the measured and estimated meters, Wh.
    pub energy_wh: i64,
    /// The same, kWh.
    pub energy_kwh: f64,
}

impl Sum {
    /// Counts `row`, and adds its figures when it is billable (measured or estimated).
    fn add(&mut self, row: &Row) {
        self.meters.add(row.quality);
        if row.quality <= Quality::Estimated {
            let figure = |f: Option<super::Figure>| f.and_then(|f| f.consumption).unwrap_or(0);
            self.gas_litres += figure(row.gas);
            self.energy_wh += figure(row.energy);
            // Exact for any sum below 2⁵³.
            self.gas_cubic_metres = self.gas_litres as f64 / 1000.0;
            self.energy_kwh = self.energy_wh as f64 / 1000.0;
        }
    }
}

impl Sum {
    /// Counts `meters` of one quality, and adds their consumption when it is billable.
    fn add_many(&mut self, quality: Quality, meters: i64, gas_litres: i64, energy_wh: i64) {
        let n = u64::try_from(meters).unwrap_or(0);
        match quality {
            Quality::Measured => self.meters.measured += n,
            Quality::Estimated => self.meters.estimated += n,
            Quality::Incomplete => self.meters.incomplete += n,
            Quality::Invalid => self.meters.invalid += n,
        }
        if quality <= Quality::Estimated {
            self.gas_litres += gas_litres;
            self.energy_wh += energy_wh;
            self.gas_cubic_metres = self.gas_litres as f64 / 1000.0;
            self.energy_kwh = self.energy_wh as f64 / 1000.0;
        }
    }
}

/// One usage type's share of a period's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "UsageConsumption")]
pub struct UsageSum {
    /// The usage type.
    #[schemars(extend("enum" = USAGE_TYPES))]
    pub usage_type: String,
    /// Its meters' sum.
    #[serde(flatten)]
    pub sum: Sum,
}

/// A region's consumption over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RegionConsumption")]
pub struct RegionTotals {
    /// Day, week or month.
    pub period: PeriodKind,
    /// Start, local time with its offset.
    pub period_start: DateTime<FixedOffset>,
    /// End (exclusive), local time with its offset.
    pub period_end: DateTime<FixedOffset>,
    /// Start, UTC.
    pub period_start_utc: DateTime<Utc>,
    /// End (exclusive), UTC.
    pub period_end_utc: DateTime<Utc>,
    /// All its meters.
    #[serde(flatten)]
    pub sum: Sum,
    /// The same by usage type, in name order; a type without meters is left out.
    pub usage_types: Vec<UsageSum>,
}

/// Totals being summed, meter by meter, for consecutive periods.
#[derive(Debug, Clone)]
pub struct Totals {
    periods: Vec<Period>,
    all: Vec<Sum>,
    by_usage: BTreeMap<String, Vec<Sum>>,
}

impl Totals {
    /// Empty totals for `periods`.
    pub fn new(periods: Vec<Period>) -> Totals {
        let all = vec![Sum::default(); periods.len()];
        Totals {
            periods,
            all,
            by_usage: BTreeMap::new(),
        }
    }

    /// The periods summed.
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    /// Adds one meter's rows, one per period in the same order.
    pub fn add(&mut self, usage_type: &str, rows: &[Row]) {
        let n = self.periods.len();
        let usage = self
            .by_usage
            .entry(usage_type.to_owned())
            .or_insert_with(|| vec![Sum::default(); n]);
        for ((row, all), usage) in rows.iter().zip(&mut self.all).zip(usage.iter_mut()) {
            all.add(row);
            usage.add(row);
        }
    }

    /// Adds one meter's rows for some of the periods: `rows[j]` is of period `at[j]`.
    pub fn add_at(&mut self, usage_type: &str, at: &[usize], rows: &[Row]) {
        let n = self.periods.len();
        let usage = self
            .by_usage
            .entry(usage_type.to_owned())
            .or_insert_with(|| vec![Sum::default(); n]);
        for (k, row) in at.iter().zip(rows) {
            if let (Some(all), Some(usage)) = (self.all.get_mut(*k), usage.get_mut(*k)) {
                all.add(row);
                usage.add(row);
            }
        }
    }

    /// Adds `meters` of `usage_type` with figures of `quality` summing to `gas_litres` and
    /// `energy_wh` to period `k` (a sum made by the database).
    pub fn add_sum(
        &mut self,
        k: usize,
        usage_type: &str,
        quality: Quality,
        meters: i64,
        gas_litres: i64,
        energy_wh: i64,
    ) {
        let n = self.periods.len();
        let usage = self
            .by_usage
            .entry(usage_type.to_owned())
            .or_insert_with(|| vec![Sum::default(); n]);
        if let (Some(all), Some(usage)) = (self.all.get_mut(k), usage.get_mut(k)) {
            all.add_many(quality, meters, gas_litres, energy_wh);
            usage.add_many(quality, meters, gas_litres, energy_wh);
        }
    }

    /// The totals, one per period.
    pub fn finish(self) -> Vec<RegionTotals> {
        let Totals {
            periods,
            all,
            by_usage,
        } = self;
        periods
            .iter()
            .zip(all)
            .enumerate()
            .map(|(k, (p, sum))| RegionTotals {
                period: p.kind,
                period_start: p.local_start(),
                period_end: p.local_end(),
                period_start_utc: p.start,
                period_end_utc: p.end,
                sum,
                usage_types: by_usage
                    .iter()
                    .map(|(usage_type, sums)| UsageSum {
                        usage_type: usage_type.clone(),
                        sum: sums[k].clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeDelta};

    use super::*;
    use crate::billing::consumption::{MeterSeries, Registers};

    const GAP: TimeDelta = TimeDelta::days(7);

    fn days() -> Vec<Period> {
        let from = NaiveDate::from_ymd_opt(2026, 5, 1).expect("date");
        let to = NaiveDate::from_ymd_opt(2026, 5, 3).expect("date");
        Period::range(PeriodKind::Day, chrono_tz::Europe::Madrid, from, to)
    }

    /// Gas readings at the periods' boundaries: `litres[k]` at the start of day k.
    fn rows(periods: &[Period], litres: &[Option<i64>]) -> Vec<Row> {
        let mut at: Vec<_> = periods.iter().map(|p| p.start).collect();
        at.extend(periods.last().map(|p| p.end));
        let readings: Vec<Registers> = at
            .iter()
            .zip(litres)
            .filter_map(|(at, l)| {
                l.map(|l| Registers {
                    at: *at,
                    gas_litres: Some(l),
                    energy_wh: Some(l * 10),
                })
            })
            .collect();
        MeterSeries::new(&readings).rows(periods, GAP)
    }

    #[test]
    fn sums_billable_meters_and_counts_every_quality_by_usage_type() {
        let periods = days();
        let mut totals = Totals::new(periods.clone());
        // Measured on both days.
        totals.add(
            "residential",
            &rows(&periods, &[Some(0), Some(10), Some(30)]),
        );
        // Estimated on both days: the boundary between them is interpolated.
        totals.add(
            "residential",
            &rows(&periods, &[Some(100), None, Some(140)]),
        );
        // Invalid on day 2: the register went backwards.
        totals.add(
            "commercial",
            &rows(&periods, &[Some(500), Some(700), Some(600)]),
        );
        // Incomplete: no reading after day 1's start.
        totals.add("commercial", &rows(&periods, &[Some(9), None, None]));
        let out = totals.finish();
        assert_eq!(out.len(), 2);
        let first = &out[0];
        assert_eq!(
            first.sum.meters,
            QualityCounts {
                measured: 2,
                estimated: 1,
                incomplete: 1,
                invalid: 0
            }
        );
        assert_eq!(first.sum.gas_litres, 10 + 20 + 200);
        assert_eq!(first.sum.energy_wh, 2_300);
        assert_eq!(first.sum.gas_cubic_metres, 0.23);
        let names: Vec<&str> = first
            .usage_types
            .iter()
            .map(|u| u.usage_type.as_str())
            .collect();
        assert_eq!(names, ["commercial", "residential"]);
        assert_eq!(first.usage_types[1].sum.gas_litres, 30);
        let second = &out[1];
        assert_eq!(second.sum.meters.invalid, 1);
        assert_eq!(second.sum.meters.incomplete, 1);
        assert_eq!(second.sum.gas_litres, 20 + 20);
        assert_eq!(second.usage_types[0].sum.gas_litres, 0);
        assert_eq!(second.period_start_utc, periods[1].start);
    }
}
