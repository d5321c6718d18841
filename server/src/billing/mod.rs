//! Billing data: consumption per day, ISO week and month in the utility's time zone, from the
//! cumulative registers of the readings. `period` holds the calendar, `consumption` the pure
//! computation from readings to figures; this module reads what they need from the store.

pub mod consumption;
pub mod export;
pub mod period;
pub mod record;
pub mod totals;

#[cfg(test)]
mod properties;

use std::collections::BTreeMap;
use std::future::Future;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

pub use consumption::{Figure, MeterSeries, Quality, Registers, Row};
pub use period::{Period, PeriodKind};
pub use record::ConsumptionRecord;
pub use totals::{RegionTotals, Totals};

use crate::config::{BillingSettings, UtilitySettings};
use crate::storage::billing::{BilledMeter, RegisterRow, Scan};
use crate::storage::{self, Store};

/// The billing calendar: time zones and the interpolation gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// The utility's time zone.
    pub time_zone: Tz,
    /// Regions billed in another zone.
    pub region_zones: BTreeMap<String, Tz>,
    /// Longest span between two readings across which a boundary is interpolated.
    pub gap: TimeDelta,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(&UtilitySettings::default(), &BillingSettings::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl Calendar {
    /// The calendar of the settings; an unknown zone name is an error.
    pub fn new(utility: &UtilitySettings, billing: &BillingSettings) -> anyhow::Result<Calendar> {
        let zone = |name: &str| {
            name.parse::<Tz>()
                .map_err(|_| anyhow::anyhow!("{name:?} is not an IANA time zone"))
        };
        let mut region_zones = BTreeMap::new();
        for (region, name) in &billing.region_time_zones {
            region_zones.insert(
                region.clone(),
                zone(name).with_context(|| format!("billing.region_time_zones.{region}"))?,
            );
        }
        Ok(Calendar {
            time_zone: zone(&utility.time_zone).context("utility.time_zone")?,
            region_zones,
            gap: TimeDelta::days(i64::from(billing.gap_days)),
        })
    }

    /// The time zone a region is billed in.
    pub fn zone(&self, region: &str) -> Tz {
        self.region_zones
            .get(region)
            .copied()
            .unwrap_or(self.time_zone)
    }
}

impl From<RegisterRow> for Registers {
    fn from(r: RegisterRow) -> Registers {
        Registers {
            at: r.reading_time,
            gas_litres: r.gas_volume_litres,
            energy_wh: r.energy_wh,
        }
    }
}

/// One meter's rows for `periods` (consecutive, in order), reading only the readings they
/// need.
pub async fn meter_rows(
    store: &Store,
    meter_id: i64,
    periods: &[Period],
    gap: TimeDelta,
) -> storage::Result<Vec<Row>> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    let (from, to) = consumption::needed(first.start, last.end, gap);
    let readings: Vec<Registers> = store
        .registers(meter_id, from, to)
        .await?
        .into_iter()
        .map(Registers::from)
        .collect();
    Ok(MeterSeries::new(&readings).rows(periods, gap))
}

/// Which meters a billing run covers, and which periods.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Day, week or month.
    pub kind: PeriodKind,
    /// The periods of `kind` from the one holding this local date …
    pub from: NaiveDate,
    /// … up to those starting before this one.
    pub to: NaiveDate,
    /// Only this region's meters; every meter when `None`.
    pub region: Option<&'a str>,
    /// Meters with an id above this.
    pub after_id: i64,
    /// At most this many meters.
    pub limit: i64,
}

/// The instants whose readings a run over local dates [from, to) needs in any zone: every
/// UTC offset lies within a day of UTC, and a boundary interpolates over at most `gap`.
fn run_span(
    kind: PeriodKind,
    from: NaiveDate,
    to: NaiveDate,
    gap: TimeDelta,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = kind
        .start_of(from)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let last = kind.start_of(to);
    let last = if last < to { kind.next(last) } else { last };
    let last = last.and_time(chrono::NaiveTime::MIN).and_utc();
    consumption::needed(first - TimeDelta::days(1), last + TimeDelta::days(1), gap)
}

/// A run: each meter's rows, in its region's zone, to `each` in meter id order as they are
/// read from one query; stops when `each` answers `false`. Returns the meters passed.
pub async fn run<F, Fut>(
    store: &Store,
    calendar: &Calendar,
    run: &Run<'_>,
    mut each: F,
) -> storage::Result<u64>
where
    F: FnMut(BilledMeter, Vec<Row>) -> Fut,
    Fut: Future<Output = bool>,
{
    let (from, to) = run_span(run.kind, run.from, run.to, calendar.gap);
    let scan = Scan {
        region: run.region,
        after_id: run.after_id,
        limit: run.limit,
        from,
        to,
    };
    store
        .scan_registers(&scan, |m| {
            let zone = calendar.zone(&m.meter.region_id);
            let periods = Period::range(run.kind, zone, run.from, run.to);
            let readings: Vec<Registers> = m.registers.into_iter().map(Registers::from).collect();
            each(
                m.meter,
                MeterSeries::new(&readings).rows(&periods, calendar.gap),
            )
        })
        .await
}

/// A region's totals for `periods` (consecutive, in order, in the region's zone).
pub async fn region_totals(
    store: &Store,
    calendar: &Calendar,
    region: &str,
    periods: Vec<Period>,
) -> storage::Result<Vec<RegionTotals>> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    let (from, to) = consumption::needed(first.start, last.end, calendar.gap);
    let scan = Scan {
        region: Some(region),
        after_id: 0,
        limit: i64::MAX,
        from,
        to,
    };
    let mut totals = Totals::new(periods);
    store
        .scan_registers(&scan, |m| {
            let readings: Vec<Registers> = m.registers.into_iter().map(Registers::from).collect();
            let rows = MeterSeries::new(&readings).rows(totals.periods(), calendar.gap);
            totals.add(&m.meter.usage_type, &rows);
            std::future::ready(true)
        })
        .await?;
    Ok(totals.finish())
}
