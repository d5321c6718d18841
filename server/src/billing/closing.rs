//! Closed periods and their revisions. Once a period is past its grace (`[billing]
//! grace_days` after it ends, in every billing time zone), each meter's figure is frozen in
//! `billing_periods`: that is the published figure, served from then on. A reading that
//! arrives later and changes the figure adds a revision (old figure, new figure, when, why);
//! the published row never changes.
//!
//! Which late readings may change a closed figure is decided at ingest
//! ([`may_touch_closed`], a comparison of times in `uplink::classify`; the reading is noted
//! in the same transaction that stores it). Recomputing the closed periods around a noted
//! reading is done by the scheduler and not at ingest: it reads weeks of the meter's
//! readings, which the batch transaction must not wait for, and it must happen once across
//! instances, which the scheduler's lease gives (revision numbers are unique besides, so two
//! holders cannot both add one).

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Months, NaiveDate, TimeDelta, Utc};

use super::consumption::{Figure, Publication, Quality, Revised, Row};
use super::period::{Period, PeriodKind};
use super::{Calendar, Run};
use crate::storage::billing::BilledMeter;
use crate::storage::billing_periods::{
    ClosedPeriod, LateReading, PublishedPeriod, StoredFigures, StoredRevision,
};
use crate::storage::{self, Error, Store};

/// Why a revision was made.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RevisionReason {
    /// A reading stored after the period closed changed its figure.
    LateReading,
    /// Readings inside it were deleted (forced, with a reason in the meter's history).
    ReadingsDeleted,
}

impl RevisionReason {
    /// The name stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionReason::LateReading => "lateReading",
            RevisionReason::ReadingsDeleted => "readingsDeleted",
        }
    }

    /// The reason named `name`.
    pub fn parse(name: &str) -> Option<RevisionReason> {
        [RevisionReason::LateReading, RevisionReason::ReadingsDeleted]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Whether a reading taken at `reading_time`, of a meter last heard at `last_heard`, may
/// change a period closed by `now`: it falls in one (it is older than the grace), or it is
/// the meter's first after a silence reaching back into one, whose end it may now let be
/// interpolated. A daily reading of a meter that reports on time is neither.
pub fn may_touch_closed(
    reading_time: DateTime<Utc>,
    last_heard: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: TimeDelta,
) -> bool {
    reading_time + grace < now || last_heard.is_none_or(|t| t + grace < now)
}

/// The first date of the period of `kind` before the one starting on `first_day`.
fn previous(kind: PeriodKind, first_day: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Day => first_day - Days::new(1),
        PeriodKind::Week => first_day - Days::new(7),
        PeriodKind::Month => first_day - Months::new(1),
    }
}

/// Whether the period of `kind` starting on `first_day` is past its grace at `now` in every
/// zone of the calendar (zones differ by hours, the grace is days: waiting for the last zone
/// closes a period on one day for every meter).
pub fn is_due(
    calendar: &Calendar,
    kind: PeriodKind,
    first_day: NaiveDate,
    now: DateTime<Utc>,
) -> bool {
    calendar
        .zones()
        .into_iter()
        .all(|tz| Period::containing(kind, tz, first_day).end + calendar.grace <= now)
}

/// The latest period of `kind` past its grace at `now`: where closing starts when nothing
/// was ever closed (earlier periods stay computed from the readings).
pub fn latest_due(calendar: &Calendar, kind: PeriodKind, now: DateTime<Utc>) -> Option<NaiveDate> {
    let today = now.with_timezone(&calendar.time_zone).date_naive();
    let mut day = kind.start_of(today);
    // The grace is at most 366 days: at most 370 days, 55 weeks or 14 months back.
    for _ in 0..400 {
        if is_due(calendar, kind, day, now) {
            return Some(day);
        }
        day = previous(kind, day);
    }
    None
}

/// The figures of a row, as stored.
pub fn figures_of(row: &Row) -> StoredFigures {
    let part = |f: Option<Figure>| {
        (
            f.map(|f| f.quality.as_str().to_owned()),
            f.and_then(|f| f.consumption),
            f.and_then(|f| f.start_register),
            f.and_then(|f| f.end_register),
        )
    };
    let (gas_quality, gas_litres, gas_register_start, gas_register_end) = part(row.gas);
    let (energy_quality, energy_wh, energy_register_start, energy_register_end) = part(row.energy);
    StoredFigures {
        quality: row.quality.as_str().to_owned(),
        readings: i32::try_from(row.readings).unwrap_or(i32::MAX),
        gas_quality,
        gas_litres,
        gas_register_start,
        gas_register_end,
        energy_quality,
        energy_wh,
        energy_register_start,
        energy_register_end,
    }
}

/// Whether two stored figures bill differently: quality, consumption or a boundary
/// register (not the count of readings, which a reading inside a measured period changes
/// without changing the bill).
pub fn same_figures(a: &StoredFigures, b: &StoredFigures) -> bool {
    let key = |f: &StoredFigures| {
        (
            f.quality.clone(),
            (f.gas_litres, f.gas_register_start, f.gas_register_end),
            (f.energy_wh, f.energy_register_start, f.energy_register_end),
        )
    };
    key(a) == key(b)
}

fn quality(text: &str) -> storage::Result<Quality> {
    Quality::parse(text).ok_or_else(|| Error::Corrupt(format!("quality {text:?}")))
}

fn figure(
    quality_text: &Option<String>,
    consumption: Option<i64>,
    start_register: Option<i64>,
    end_register: Option<i64>,
) -> storage::Result<Option<Figure>> {
    quality_text
        .as_deref()
        .map(|q| {
            Ok(Figure {
                consumption,
                start_register,
                end_register,
                quality: quality(q)?,
            })
        })
        .transpose()
}

/// Replaces the figures of the `rows` whose periods are closed with the published ones, and
/// notes their revisions. `published` are one meter's, of the rows' kind.
pub fn publish(rows: &mut [Row], published: &[PublishedPeriod]) -> storage::Result<()> {
    let by_day: BTreeMap<NaiveDate, &PublishedPeriod> =
        published.iter().map(|p| (p.closed.first_day, p)).collect();
    for row in rows {
        let Some(p) = by_day.get(&row.period.first_day) else {
            continue;
        };
        let (c, f) = (&p.closed, &p.closed.figures);
        let latest = match (p.revised_at, &p.revised_quality) {
            (Some(at), Some(q)) => Some(Revised {
                at,
                quality: quality(q)?,
                gas_litres: p.revised_gas_litres,
                energy_wh: p.revised_energy_wh,
            }),
            _ => None,
        };
        row.period.start = c.period_start;
        row.period.end = c.period_end;
        row.quality = quality(&f.quality)?;
        row.readings = u32::try_from(f.readings).unwrap_or(0);
        row.gas = figure(
            &f.gas_quality,
            f.gas_litres,
            f.gas_register_start,
            f.gas_register_end,
        )?;
        row.energy = figure(
            &f.energy_quality,
            f.energy_wh,
            f.energy_register_start,
            f.energy_register_end,
        )?;
        row.published = Some(Publication {
            closed_at: c.closed_at,
            revisions: u32::try_from(p.revisions).unwrap_or(u32::MAX),
            revised: latest,
        });
    }
    Ok(())
}

/// A chunk of meters' figures for one period, to be frozen.
#[derive(Debug, Clone)]
pub struct Closing {
    /// The period's kind.
    pub kind: PeriodKind,
    /// Its first local date.
    pub first_day: NaiveDate,
    /// The rows to store.
    pub rows: Vec<ClosedPeriod>,
    /// Their meters.
    pub meters: Vec<BilledMeter>,
}

/// The next chunk of at most `chunk` meters to close for periods of `kind`: the rest of the
/// period being closed (the latest with a closed row: the store holds the progress, so a
/// restart resumes it), else the next period once it is due, else, when nothing of `kind`
/// was ever closed, the latest period due. A meter of the chunk new since the earlier closed
/// periods gets their rows too (see [`backfill`]). `None` when nothing is to be closed now.
pub async fn next_closing(
    store: &Store,
    calendar: &Calendar,
    kind: PeriodKind,
    now: DateTime<Utc>,
    chunk: i64,
) -> storage::Result<Option<Closing>> {
    let Some(latest) = store.latest_closed(kind.as_str()).await? else {
        let Some(first) = latest_due(calendar, kind, now) else {
            return Ok(None);
        };
        let c = closing_of(store, calendar, kind, first, 0, chunk, now).await?;
        return Ok((!c.rows.is_empty()).then_some(c));
    };
    let after = store
        .last_closed_meter(kind.as_str(), latest)
        .await?
        .unwrap_or(0);
    let mut c = closing_of(store, calendar, kind, latest, after, chunk, now).await?;
    if !c.rows.is_empty() {
        backfill(store, calendar, &mut c, after, now).await?;
        return Ok(Some(c));
    }
    let next = kind.next(latest);
    if !is_due(calendar, kind, next, now) {
        return Ok(None);
    }
    let mut c = closing_of(store, calendar, kind, next, 0, chunk, now).await?;
    if c.rows.is_empty() {
        return Ok(None);
    }
    backfill(store, calendar, &mut c, 0, now).await?;
    Ok(Some(c))
}

/// Earlier periods' rows a closing computes at most for meters new since them (about a day's
/// readings each); the meters after the one that reaches it wait for the next closing.
const BACKFILL_PERIODS: usize = 20_000;

/// Whether a computed row rests on any reading of the meter: one inside the period, or one
/// near enough a boundary to give its register.
fn has_data(row: &Row) -> bool {
    let known = |f: Option<Figure>| {
        f.is_some_and(|f| f.start_register.is_some() || f.end_register.is_some())
    };
    row.readings > 0 || known(row.gas) || known(row.energy)
}

/// Adds to a closing the earlier closed periods of the meters new since them: a meter of
/// the closing without a row for the period before (every meter is closed for each period,
/// so it was registered since) gets rows for each period closed before, from the earliest,
/// that it has readings for. Its rows are stored with its row of the closing's period, in one
/// transaction, so that the closing's progress (the last meter closed) covers them too.
async fn backfill(
    store: &Store,
    calendar: &Calendar,
    c: &mut Closing,
    after: i64,
    now: DateTime<Utc>,
) -> storage::Result<()> {
    let kind = c.kind;
    let Some(earliest) = store.earliest_closed(kind.as_str()).await? else {
        return Ok(());
    };
    let Some(last) = c.meters.last().map(|m| m.id) else {
        return Ok(());
    };
    if earliest >= c.first_day {
        return Ok(());
    }
    let before = previous(kind, c.first_day);
    let known: std::collections::BTreeSet<i64> = store
        .closed_meters(kind.as_str(), before, (after, last))
        .await?
        .into_iter()
        .collect();
    let mut left = BACKFILL_PERIODS;
    let mut cut = None;
    let mut rows = Vec::new();
    for m in c.meters.iter().filter(|m| !known.contains(&m.id)) {
        if left == 0 {
            cut = Some(m.id);
            break;
        }
        let periods = Period::range(kind, calendar.zone(&m.region_id), earliest, c.first_day);
        left = left.saturating_sub(periods.len());
        let computed = super::live_rows(store, m.id, &periods, calendar.gap).await?;
        rows.extend(
            computed
                .iter()
                .filter(|r| has_data(r))
                .map(|row| ClosedPeriod {
                    meter_id: m.id,
                    kind: kind.as_str().to_owned(),
                    first_day: row.period.first_day,
                    period_start: row.period.start,
                    period_end: row.period.end,
                    figures: figures_of(row),
                    closed_at: now,
                }),
        );
    }
    if let Some(cut) = cut {
        c.meters.retain(|m| m.id < cut);
        c.rows.retain(|r| r.meter_id < cut);
    }
    c.rows.extend(rows);
    Ok(())
}

/// The figures of the period of `kind` starting on `first_day` of the meters after `after`,
/// at most `chunk`, computed from their readings now.
async fn closing_of(
    store: &Store,
    calendar: &Calendar,
    kind: PeriodKind,
    first_day: NaiveDate,
    after: i64,
    chunk: i64,
    now: DateTime<Utc>,
) -> storage::Result<Closing> {
    let run = Run {
        kind,
        from: first_day,
        to: first_day + Days::new(1),
        region: None,
        after_id: after,
        limit: chunk,
    };
    let mut closing = Closing {
        kind,
        first_day,
        rows: Vec::new(),
        meters: Vec::new(),
    };
    super::run_rows(store, calendar, &run, false, |meter, rows| {
        for row in &rows {
            closing.rows.push(ClosedPeriod {
                meter_id: meter.id,
                kind: kind.as_str().to_owned(),
                first_day: row.period.first_day,
                period_start: row.period.start,
                period_end: row.period.end,
                figures: figures_of(row),
                closed_at: now,
            });
        }
        closing.meters.push(meter);
        std::future::ready(true)
    })
    .await?;
    Ok(closing)
}

/// Revisions found for a set of late readings.
#[derive(Debug, Clone, Default)]
pub struct Revising {
    /// The revisions to add (their `id` is assigned when stored).
    pub revisions: Vec<StoredRevision>,
    /// The late readings looked at, to forget.
    pub done: Vec<LateReading>,
    /// The meters and regions of the revisions.
    pub meters: Vec<(i64, String)>,
}

/// Looks at the oldest `limit` noted late readings: recomputes each meter's closed periods
/// within the interpolation gap of them and returns a revision for each whose figures differ
/// from the latest known ones (the published, or the latest revision's). `None` when no
/// late reading waits.
pub async fn next_revisions(
    store: &Store,
    calendar: &Calendar,
    now: DateTime<Utc>,
    limit: i64,
) -> storage::Result<Option<Revising>> {
    let late = store.late_readings(limit).await?;
    if late.is_empty() {
        return Ok(None);
    }
    let mut by_meter: BTreeMap<i64, Vec<&LateReading>> = BTreeMap::new();
    for l in &late {
        by_meter.entry(l.meter_id).or_default().push(l);
    }
    let mut out = Revising::default();
    for (meter_id, readings) in by_meter {
        let region = readings[0].region_id.clone();
        let tz = calendar.zone(&region);
        let (Some(first), Some(last)) = (
            readings.iter().map(|l| l.reading_time).min(),
            readings.iter().map(|l| l.reading_time).max(),
        ) else {
            continue;
        };
        // Periods whose boundaries a reading may move lie within the gap of it; a day more
        // either way covers any zone's offset.
        let margin = calendar.gap + TimeDelta::days(1);
        let lo = (first - margin).with_timezone(&tz).date_naive();
        let hi = (last + margin).with_timezone(&tz).date_naive() + Days::new(1);
        let mut revised = false;
        for kind in PeriodKind::ALL {
            let days = (kind.start_of(lo), hi);
            let closed = store.closed_of_meter(meter_id, kind.as_str(), days).await?;
            if closed.is_empty() {
                continue;
            }
            let revisions = store
                .revisions_of_periods(meter_id, kind.as_str(), days)
                .await?;
            let periods: Vec<Period> = closed
                .iter()
                .map(|c| Period {
                    kind,
                    first_day: c.first_day,
                    start: c.period_start,
                    end: c.period_end,
                    tz,
                })
                .collect();
            let rows = super::live_rows(store, meter_id, &periods, calendar.gap).await?;
            for (c, row) in closed.iter().zip(&rows) {
                let before = revisions
                    .iter()
                    .filter(|r| r.first_day == c.first_day)
                    .max_by_key(|r| r.revision);
                let known = before.map_or(&c.figures, |r| &r.figures);
                let now_figures = figures_of(row);
                if same_figures(known, &now_figures) {
                    continue;
                }
                // The earliest late reading near the period is the one to name.
                let (from, to) = (c.period_start - calendar.gap, c.period_end + calendar.gap);
                let reading_time = readings
                    .iter()
                    .map(|l| l.reading_time)
                    .find(|t| (from..=to).contains(t))
                    .unwrap_or(first);
                out.revisions.push(StoredRevision {
                    id: 0,
                    meter_id,
                    kind: kind.as_str().to_owned(),
                    first_day: c.first_day,
                    revision: before.map_or(1, |r| r.revision.saturating_add(1)),
                    revised_at: now,
                    reason: RevisionReason::LateReading.as_str().to_owned(),
                    reading_time,
                    old_quality: known.quality.clone(),
                    old_gas_litres: known.gas_litres,
                    old_energy_wh: known.energy_wh,
                    figures: now_figures,
                });
                revised = true;
            }
        }
        if revised {
            out.meters.push((meter_id, region));
        }
    }
    out.done = late;
    Ok(Some(out))
}

/// The revisions a deletion of `meter`'s readings in `range` (from, to) makes of the closed
/// periods it touches, `closed`: each period's figures computed from the readings that
/// remain, against its latest known figures (the published, or its latest revision's), made
/// at `now`. Each is numbered after the period's latest when stored.
pub async fn deletion_revisions(
    store: &Store,
    calendar: &Calendar,
    meter: &crate::storage::meters::Meter,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    closed: &[ClosedPeriod],
    now: DateTime<Utc>,
) -> storage::Result<Vec<StoredRevision>> {
    let tz = calendar.zone(&meter.region_id);
    let mut out = Vec::with_capacity(closed.len());
    for c in closed {
        let kind = PeriodKind::parse(&c.kind)
            .ok_or_else(|| Error::Corrupt(format!("period kind {:?}", c.kind)))?;
        let period = Period {
            kind,
            first_day: c.first_day,
            start: c.period_start,
            end: c.period_end,
            tz,
        };
        let (lo, hi) = super::consumption::needed(period.start, period.end, calendar.gap);
        let remaining: Vec<super::Registers> = store
            .registers(meter.id, lo, hi)
            .await?
            .into_iter()
            .filter(|r| r.reading_time < from || r.reading_time >= to)
            .map(super::Registers::from)
            .collect();
        let row = super::MeterSeries::new(&remaining).row(&period, calendar.gap);
        let days = (c.first_day, c.first_day + Days::new(1));
        let before = store
            .revisions_of_periods(meter.id, &c.kind, days)
            .await?
            .into_iter()
            .max_by_key(|r| r.revision);
        let known = before.as_ref().map_or(&c.figures, |r| &r.figures);
        out.push(StoredRevision {
            id: 0,
            meter_id: meter.id,
            kind: c.kind.clone(),
            first_day: c.first_day,
            revision: before.as_ref().map_or(1, |r| r.revision.saturating_add(1)),
            revised_at: now,
            reason: RevisionReason::ReadingsDeleted.as_str().to_owned(),
            reading_time: from.max(c.period_start),
            old_quality: known.quality.clone(),
            old_gas_litres: known.gas_litres,
            old_energy_wh: known.energy_wh,
            figures: figures_of(&row),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;
    use crate::billing::consumption::{MeterSeries, Registers};

    fn madrid() -> Calendar {
        Calendar {
            time_zone: chrono_tz::Europe::Madrid,
            ..Calendar::default()
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("time")
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_period_closes_only_after_its_grace_in_every_zone() {
        let mut c = madrid();
        // May 2026 ends at 2026-05-31T22:00Z in Madrid; three days' grace.
        let may = date("2026-05-01");
        assert!(!is_due(&c, PeriodKind::Month, may, utc(2026, 6, 3, 21)));
        assert!(is_due(&c, PeriodKind::Month, may, utc(2026, 6, 3, 22)));
        // A region an hour behind holds it back an hour.
        c.region_zones
            .insert("canarias".into(), chrono_tz::Atlantic::Canary);
        assert!(!is_due(&c, PeriodKind::Month, may, utc(2026, 6, 3, 22)));
        assert!(is_due(&c, PeriodKind::Month, may, utc(2026, 6, 3, 23)));
    }

    #[test]
    fn closing_starts_with_the_latest_period_due() {
        let c = madrid();
        let now = utc(2026, 6, 10, 12);
        assert_eq!(
            latest_due(&c, PeriodKind::Month, now),
            Some(date("2026-05-01"))
        );
        // Days: June 6th ended on the 7th at local midnight, three days before the 10th.
        assert_eq!(
            latest_due(&c, PeriodKind::Day, now),
            Some(date("2026-06-06"))
        );
        // Weeks: Monday June 1st's ended on the 8th; the grace runs to the 11th.
        assert_eq!(
            latest_due(&c, PeriodKind::Week, now),
            Some(date("2026-05-25"))
        );
        let now = utc(2026, 6, 2, 0);
        assert_eq!(
            latest_due(&c, PeriodKind::Month, now),
            Some(date("2026-04-01"))
        );
    }

    #[test]
    fn a_late_reading_is_one_older_than_the_grace_or_after_a_silence() {
        let now = utc(2026, 6, 10, 12);
        let grace = TimeDelta::days(3);
        let recent = now - TimeDelta::hours(5);
        assert!(!may_touch_closed(
            recent,
            Some(now - TimeDelta::days(1)),
            now,
            grace
        ));
        assert!(may_touch_closed(
            now - TimeDelta::days(4),
            Some(now),
            now,
            grace
        ));
        assert!(may_touch_closed(
            recent,
            Some(now - TimeDelta::days(5)),
            now,
            grace
        ));
        assert!(may_touch_closed(recent, None, now, grace));
    }

    #[test]
    fn published_figures_replace_the_computed_ones_and_count_revisions() {
        let tz = chrono_tz::Europe::Madrid;
        let period = Period::containing(PeriodKind::Day, tz, date("2026-05-02"));
        let reading = |at: DateTime<Utc>, litres| Registers {
            at,
            gas_litres: Some(litres),
            energy_wh: None,
        };
        let then =
            MeterSeries::new(&[reading(period.start, 1_000)]).row(&period, TimeDelta::days(7));
        let now = MeterSeries::new(&[reading(period.start, 1_000), reading(period.end, 1_400)])
            .row(&period, TimeDelta::days(7));
        assert_eq!(then.quality, Quality::Incomplete);
        let closed_at = utc(2026, 5, 6, 0);
        let closed = ClosedPeriod {
            meter_id: 1,
            kind: "day".into(),
            first_day: period.first_day,
            period_start: period.start,
            period_end: period.end,
            figures: figures_of(&then),
            closed_at,
        };
        assert!(!same_figures(&closed.figures, &figures_of(&now)));
        let revision = StoredRevision {
            id: 7,
            meter_id: 1,
            kind: "day".into(),
            first_day: period.first_day,
            revision: 1,
            revised_at: utc(2026, 5, 9, 0),
            reason: "lateReading".into(),
            reading_time: period.end,
            old_quality: "incomplete".into(),
            old_gas_litres: None,
            old_energy_wh: None,
            figures: figures_of(&now),
        };
        let published = PublishedPeriod {
            closed,
            revisions: 1,
            revised_at: Some(revision.revised_at),
            revised_quality: Some(revision.figures.quality.clone()),
            revised_gas_litres: revision.figures.gas_litres,
            revised_energy_wh: revision.figures.energy_wh,
        };
        let mut rows = vec![now];
        publish(&mut rows, &[published]).expect("publish");
        let row = rows[0];
        assert_eq!(
            row.quality,
            Quality::Incomplete,
            "the published figure stays"
        );
        assert_eq!(row.gas.and_then(|g| g.consumption), None);
        let p = row.published.expect("closed");
        assert_eq!((p.closed_at, p.revisions), (closed_at, 1));
        let r = p.revised.expect("revised");
        assert_eq!((r.quality, r.gas_litres), (Quality::Measured, Some(400)));
        assert_eq!(r.at.hour(), 0);
    }
}
