//! Billing data: consumption per day, ISO week and month in the utility's time zone, from the
//! cumulative registers of the readings. `period` holds the calendar, `consumption` the pure
//! computation from readings to figures; this module reads what they need from the store.

pub mod closing;
pub mod consumption;
pub mod export;
pub mod period;
pub mod record;
pub mod supply_point;
pub mod totals;

#[cfg(test)]
mod properties;

use std::collections::{BTreeMap, BTreeSet};
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
use crate::storage::billing_periods::PublishedPeriod;
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
/// figures of the closed ones, read with their revisions in one query, and figures computed
/// from the readings for the others, reading only the readings their boundaries need.
pub async fn meter_rows(
    store: &Store,
    meter_id: i64,
    periods: &[Period],
    gap: TimeDelta,
) -> storage::Result<Vec<Row>> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    let days = (first.first_day, last.first_day + Days::new(1));
    let published = store
        .published_between(
            first.kind.as_str(),
            days,
            (meter_id.saturating_sub(1), meter_id),
        )
        .await?;
    let closed: BTreeSet<NaiveDate> = published.iter().map(|p| p.closed.first_day).collect();
    let mut rows = Vec::with_capacity(periods.len());
    let mut k = 0;
    while k < periods.len() {
        if closed.contains(&periods[k].first_day) {
            rows.push(Row::empty(periods[k]));
            k += 1;
            continue;
        }
        // A run of open periods: their readings, in one query.
        let run = periods[k..]
            .iter()
            .take_while(|p| !closed.contains(&p.first_day))
            .count();
        rows.extend(live_rows(store, meter_id, &periods[k..k + run], gap).await?);
        k += run;
    }
    closing::publish(&mut rows, &published)?;
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

/// Up to this many meters of a chunk with periods not closed have their readings read one
/// meter at a time (only the open periods' span); more are read in one query for the chunk.
const OPEN_ONE_BY_ONE: usize = 16;

/// A scan's meters with their rows for `periods_of(meter)`, chunk by chunk (keyset on the
/// meter id), to `each` in meter id order; with `published`, the closed periods of `kind`
/// with first days in `days` carry their published figures and their readings are not read
/// (a chunk whose periods are all closed reads no reading). Stops when `each` answers
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
        let meters = store.billed_meters(scan.region, after, take).await?;
        let Some(last) = meters.last().map(|m| m.id) else {
            break;
        };
        let mut closed: BTreeMap<i64, Vec<PublishedPeriod>> = BTreeMap::new();
        if published {
            for p in store
                .published_between(kind.as_str(), days, (after, last))
                .await?
            {
                closed.entry(p.closed.meter_id).or_default().push(p);
            }
        }
        let none = Vec::new();
        let is_closed = |id: i64, p: &Period| {
            closed
                .get(&id)
                .unwrap_or(&none)
                .iter()
                .any(|c| c.closed.first_day == p.first_day)
        };
        let periods: Vec<Vec<Period>> = meters.iter().map(&periods_of).collect();
        let open: Vec<(i64, Vec<Period>)> = meters
            .iter()
            .zip(&periods)
            .map(|(m, ps)| {
                let open = ps.iter().filter(|p| !is_closed(m.id, p)).copied();
                (m.id, open.collect::<Vec<Period>>())
            })
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        let mut readings: BTreeMap<i64, Vec<Registers>> = BTreeMap::new();
        if open.len() > OPEN_ONE_BY_ONE {
            let chunk = Scan {
                after_id: after,
                limit: take,
                ..scan
            };
            store
                .scan_registers(&chunk, |m| {
                    let r = m.registers.into_iter().map(Registers::from).collect();
                    readings.insert(m.meter.id, r);
                    std::future::ready(true)
                })
                .await?;
        } else {
            for (id, ps) in &open {
                let (Some(first), Some(last)) = (ps.first(), ps.last()) else {
                    continue;
                };
                let (from, to) = consumption::needed(first.start, last.end, gap);
                let r = store.registers(*id, from, to).await?;
                readings.insert(*id, r.into_iter().map(Registers::from).collect());
            }
        }
        let taken = meters.len() as i64;
        for (m, ps) in meters.into_iter().zip(periods) {
            let r = readings.remove(&m.id).unwrap_or_default();
            let mut rows = MeterSeries::new(&r).rows(&ps, gap);
            if let Some(closed) = closed.get(&m.id) {
                closing::publish(&mut rows, closed)?;
            }
            passed += 1;
            if !each(m, rows).await {
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
/// published figures where periods are closed. A period closed for every meter of the region
/// is summed by the database from `billing_periods`; the others (open, or being closed) are
/// computed meter by meter, from the readings where not closed.
pub async fn region_totals(
    store: &Store,
    calendar: &Calendar,
    region: &str,
    periods: Vec<Period>,
) -> storage::Result<Vec<RegionTotals>> {
    let (Some(first), Some(last)) = (periods.first().copied(), periods.last().copied()) else {
        return Ok(Vec::new());
    };
    let kind = first.kind;
    let days = (first.first_day, last.first_day + Days::new(1));
    let sums = store.region_sums(kind.as_str(), days, region).await?;
    let meters = store.region_meter_count(region).await?;
    let mut closed_meters: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for s in &sums {
        *closed_meters.entry(s.first_day).or_default() += s.meters;
    }
    let index: BTreeMap<NaiveDate, usize> = periods
        .iter()
        .enumerate()
        .map(|(k, p)| (p.first_day, k))
        .collect();
    let all_closed = |day: &NaiveDate| closed_meters.get(day).is_some_and(|n| *n >= meters);
    let mut totals = Totals::new(periods.clone());
    for s in &sums {
        if let (true, Some(k), Some(q)) = (
            all_closed(&s.first_day),
            index.get(&s.first_day),
            Quality::parse(&s.quality),
        ) {
            totals.add_sum(*k, &s.usage_type, q, s.meters, s.gas_litres, s.energy_wh);
        }
    }
    let rest: Vec<Period> = periods
        .iter()
        .filter(|p| !all_closed(&p.first_day))
        .copied()
        .collect();
    let (Some(rest_first), Some(rest_last)) = (rest.first().copied(), rest.last().copied()) else {
        return Ok(totals.finish());
    };
    let at: Vec<usize> = rest
        .iter()
        .filter_map(|p| index.get(&p.first_day).copied())
        .collect();
    let (from, to) = consumption::needed(rest_first.start, rest_last.end, calendar.gap);
    let scan = Scan {
        region: Some(region),
        after_id: 0,
        limit: i64::MAX,
        from,
        to,
    };
    scan_rows(
        store,
        calendar.gap,
        scan,
        kind,
        (rest_first.first_day, rest_last.first_day + Days::new(1)),
        true,
        |_| rest.clone(),
        |meter, rows| {
            totals.add_at(&meter.usage_type, &at, &rows);
            std::future::ready(true)
        },
    )
    .await?;
    Ok(totals.finish())
}
