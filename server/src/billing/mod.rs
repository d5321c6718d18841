//! Billing data: consumption per day, ISO week and month in the utility's time zone, from the
//! cumulative registers of the readings. `period` holds the calendar, `consumption` the pure
//! computation from readings to figures; this module reads what they need from the store.

pub mod closing;
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
use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

pub use consumption::{Figure, MeterSeries, Quality, Registers, Row};
pub use period::{Period, PeriodKind};
pub use record::{ConsumptionRecord, RevisionRecord};
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
    /// How long after its end a period is closed.
    pub grace: TimeDelta,
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
            grace: TimeDelta::days(i64::from(billing.grace_days)),
        })
    }

    /// The time zone a region is billed in.
    pub fn zone(&self, region: &str) -> Tz {
        self.region_zones
            .get(region)
            .copied()
            .unwrap_or(self.time_zone)
    }

    /// Every zone some meter may be billed in: the utility's and the regions'.
    pub fn zones(&self) -> Vec<Tz> {
        let mut zones: Vec<Tz> = std::iter::once(self.time_zone)
            .chain(self.region_zones.values().copied())
            .collect();
        zones.sort_by_key(|z| z.name());
        zones.dedup();
        zones
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

/// One meter's rows for `periods` (consecutive, in order, of one kind): the published
/// figures of the closed ones, computed figures for the others.
pub async fn meter_rows(
    store: &Store,
    meter_id: i64,
    periods: &[Period],
    gap: TimeDelta,
) -> storage::Result<Vec<Row>> {
    let mut rows = live_rows(store, meter_id, periods, gap).await?;
    if let (Some(first), Some(last)) = (periods.first(), periods.last()) {
        let kind = first.kind.as_str();
        let days = (first.first_day, last.first_day + Days::new(1));
        let closed = store.closed_of_meter(meter_id, kind, days).await?;
        if !closed.is_empty() {
            let revisions = store.revisions_of_periods(meter_id, kind, days).await?;
            closing::publish(&mut rows, &closed, &revisions)?;
        }
    }
    Ok(rows)
}

/// One meter's rows for `periods` computed from its readings now, reading only the readings
/// they need.
pub(crate) async fn live_rows(
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

/// Meters read per query of a run: memory holds one chunk's readings and closed rows, however
/// many meters the run covers.
const CHUNK: i64 = 1_000;

/// A scan's meters with their rows for `periods_of(meter)`, chunk by chunk (keyset on the
/// meter id), to `each` in meter id order; with `published`, the closed periods of `kind`
/// with first days in `days` carry their published figures. Stops when `each` answers
/// `false`; returns the meters passed.
#[allow(clippy::too_many_arguments)]
async fn scan_rows<P, F, Fut>(
    store: &Store,
    gap: TimeDelta,
    scan: Scan<'_>,
    kind: PeriodKind,
    days: (NaiveDate, NaiveDate),
    published: bool,
    periods_of: P,
    mut each: F,
) -> storage::Result<u64>
where
    P: Fn(&BilledMeter) -> Vec<Period>,
    F: FnMut(BilledMeter, Vec<Row>) -> Fut,
    Fut: Future<Output = bool>,
{
    let (mut after, mut left, mut passed) = (scan.after_id, scan.limit, 0);
    while left > 0 {
        let take = left.min(CHUNK);
        let mut chunk = Vec::new();
        store
            .scan_registers(
                &Scan {
                    after_id: after,
                    limit: take,
                    ..scan
                },
                |m| {
                    chunk.push(m);
                    std::future::ready(true)
                },
            )
            .await?;
        let Some(last) = chunk.last().map(|m| m.meter.id) else {
            break;
        };
        let (mut closed, mut revisions) = (BTreeMap::new(), BTreeMap::new());
        if published {
            for c in store
                .closed_between(kind.as_str(), days, (after, last))
                .await?
            {
                closed.entry(c.meter_id).or_insert_with(Vec::new).push(c);
            }
            if !closed.is_empty() {
                for r in store
                    .revisions_between(kind.as_str(), days, (after, last))
                    .await?
                {
                    revisions.entry(r.meter_id).or_insert_with(Vec::new).push(r);
                }
            }
        }
        let taken = chunk.len() as i64;
        for m in chunk {
            let readings: Vec<Registers> = m.registers.into_iter().map(Registers::from).collect();
            let mut rows = MeterSeries::new(&readings).rows(&periods_of(&m.meter), gap);
            if let Some(closed) = closed.get(&m.meter.id) {
                let none = Vec::new();
                let revisions = revisions.get(&m.meter.id).unwrap_or(&none);
                closing::publish(&mut rows, closed, revisions)?;
            }
            passed += 1;
            if !each(m.meter, rows).await {
                return Ok(passed);
            }
        }
        after = last;
        left -= taken;
        if taken < take {
            break;
        }
    }
    Ok(passed)
}

/// The local dates whose periods of `kind` a run over [from, to) lists: [the start of
/// `from`'s period, `to`).
fn run_days(kind: PeriodKind, from: NaiveDate, to: NaiveDate) -> (NaiveDate, NaiveDate) {
    (kind.start_of(from), to)
}

/// A run: each meter's rows, in its region's zone, to `each` in meter id order, read chunk by
/// chunk; closed periods carry their published figures. Stops when `each` answers `false`.
/// Returns the meters passed.
pub async fn run<F, Fut>(
    store: &Store,
    calendar: &Calendar,
    run: &Run<'_>,
    each: F,
) -> storage::Result<u64>
where
    F: FnMut(BilledMeter, Vec<Row>) -> Fut,
    Fut: Future<Output = bool>,
{
    run_rows(store, calendar, run, true, each).await
}

/// [`run`], the figures computed from the readings now when `published` is false (what a
/// period closes with).
pub(crate) async fn run_rows<F, Fut>(
    store: &Store,
    calendar: &Calendar,
    run: &Run<'_>,
    published: bool,
    each: F,
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
    scan_rows(
        store,
        calendar.gap,
        scan,
        run.kind,
        run_days(run.kind, run.from, run.to),
        published,
        |m| Period::range(run.kind, calendar.zone(&m.region_id), run.from, run.to),
        each,
    )
    .await
}

/// A region's totals for `periods` (consecutive, in order, in the region's zone), of the
/// published figures where periods are closed.
pub async fn region_totals(
    store: &Store,
    calendar: &Calendar,
    region: &str,
    periods: Vec<Period>,
) -> storage::Result<Vec<RegionTotals>> {
    let (Some(first), Some(last)) = (periods.first().copied(), periods.last().copied()) else {
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
    let mut totals = Totals::new(periods.clone());
    scan_rows(
        store,
        calendar.gap,
        scan,
        first.kind,
        (first.first_day, last.first_day + Days::new(1)),
        true,
        |_| periods.clone(),
        |meter, rows| {
            totals.add(&meter.usage_type, &rows);
            std::future::ready(true)
        },
    )
    .await?;
    Ok(totals.finish())
}
