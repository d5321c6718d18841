//! Billing data: a meter's and a region's consumption per day, ISO week or month, and a
//! billing run's export (JSON pages, or CSV streamed as the meters are read, a chunk at a time).

use chrono::{Days, Months, NaiveDate};
use chrono_tz::Tz;
use tracing::Instrument;
use warp::hyper::body::Bytes;

use super::{cache_key, find_meter};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{ConsumptionQuery, ExportQuery, PageQuery};
use crate::api::views::Page;
use crate::api::{Answer, Fresh, Request, cached};
use crate::billing::export::{COLUMNS, ExportRecord, csv_line};
use crate::billing::{self, ConsumptionRecord, Period, PeriodKind, RevisionRecord, Run};
use crate::cache::Tag;

/// Earliest and latest dates a range may name: far beyond any reading, and safe for the
/// calendar arithmetic.
const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 1, 1).expect("valid");

fn checked_date(d: NaiveDate, field: &str) -> Result<NaiveDate, Problem> {
    if (FIRST_DATE..=LAST_DATE).contains(&d) {
        Ok(d)
    } else {
        Err(Problem::bad_field(
            field,
            format!("{d} is not between {FIRST_DATE} and {LAST_DATE}"),
        ))
    }
}

/// How far back a range without `from` reaches.
fn default_from(kind: PeriodKind, to: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Day => to - Days::new(31),
        PeriodKind::Week => to - Days::new(7 * 12),
        PeriodKind::Month => to - Months::new(12),
    }
}

/// The periods a consumption query names: its kind and local dates [from, to), defaults
/// filled in (pinned into `q`, and so into the cache key) and checked.
pub(super) fn periods_asked(
    req: &Request<'_>,
    q: &mut ConsumptionQuery,
) -> Result<(PeriodKind, NaiveDate, NaiveDate), Problem> {
    let s = req.state;
    let kind = *q.period.get_or_insert(PeriodKind::Month);
    // A range without an end reaches to today (the current period, still incomplete, is
    // listed); the end is pinned into the cache key.
    let to = match q.to {
        Some(d) => checked_date(d, "to")?,
        None => {
            let today = s.now().with_timezone(&s.billing.time_zone).date_naive();
            today.succ_opt().unwrap_or(today)
        }
    };
    let from = match q.from {
        Some(d) => checked_date(d, "from")?,
        None => default_from(kind, to),
    };
    if from >= to {
        return Err(Problem::bad_field("from", "must be before `to`"));
    }
    q.to = Some(to);
    q.from = Some(from);
    Ok((kind, from, to))
}

/// One page of periods: at most `limit` of `kind` in `tz`, from the one after the cursor's
/// (or the one holding `from`) to those starting before `to`.
pub(super) fn page_of_periods(
    kind: PeriodKind,
    tz: Tz,
    (from, to): (NaiveDate, NaiveDate),
    after: Option<NaiveDate>,
    limit: i64,
) -> Vec<Period> {
    let start = after.map_or(from, |d| kind.next(d).max(from));
    let mut periods = Vec::new();
    let mut day = kind.start_of(start);
    while day < to && (periods.len() as i64) < limit {
        periods.push(Period::containing(kind, tz, day));
        day = kind.next(day);
    }
    periods
}

/// GET /meters/{meter}/consumption
pub async fn meter(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: ConsumptionQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::date_cursor(q.cursor.as_deref())?
        .map(|d| checked_date(d, "cursor"))
        .transpose()?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    let (kind, from, to) = periods_asked(req, &mut q)?;
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        let tz = s.billing.zone(&m.region_id);
        let periods = page_of_periods(kind, tz, (from, to), after, limit);
        let rows = billing::meter_rows(&s.store, m.id, &periods, s.billing.gap).await?;
        let page = Page::of(
            rows,
            limit,
            |row| Some(row.period.first_day.to_string()),
            |row| ConsumptionRecord::from(&row),
        );
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// GET /meters/{meter}/consumption/revisions
pub async fn revisions(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        let tz = s.billing.zone(&m.region_id);
        let rows = s.store.revisions_of_meter(m.id, after, limit).await?;
        let records = rows
            .iter()
            .map(|r| RevisionRecord::new(r, tz).map(|v| (r.id, v)))
            .collect::<Result<Vec<_>, _>>()?;
        let page = Page::of(records, limit, |(id, _)| Some(id.to_string()), |(_, v)| v);
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// GET /regions/{region}/consumption
pub async fn region(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: ConsumptionQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::date_cursor(q.cursor.as_deref())?
        .map(|d| checked_date(d, "cursor"))
        .transpose()?;
    let region = req.param(0).to_owned();
    let s = req.state;
    let (kind, from, to) = periods_asked(req, &mut q)?;
    cached(req, cache_key(req, &q), || async {
        if !s.store.region_exists(&region).await? {
            return Err(Problem::not_found(format!("no region {region:?}")));
        }
        let tz = s.billing.zone(&region);
        let periods = page_of_periods(kind, tz, (from, to), after, limit);
        let firsts: Vec<NaiveDate> = periods.iter().map(|p| p.first_day).collect();
        let totals = billing::region_totals(&s.store, &s.billing, &region, periods).await?;
        let page = Page::of(
            totals.into_iter().zip(firsts).collect(),
            limit,
            |(_, first)| Some(first.to_string()),
            |(totals, _)| totals,
        );
        Fresh::new(&page, vec![Tag::Region(region.clone())], None)
    })
    .await
}

/// The month an export names, `YYYY-MM`, as its first day.
fn month_of(text: &str) -> Result<NaiveDate, Problem> {
    let bad = || Problem::bad_field("month", format!("{text:?} is not a month, YYYY-MM"));
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    // Only the form the documentation shows: no signs, no missing zeros.
    if first.format("%Y-%m").to_string() != text {
        return Err(bad());
    }
    checked_date(first, "month")?;
    if first >= LAST_DATE {
        return Err(Problem::bad_field(
            "month",
            format!("{text} is not before {}", LAST_DATE.format("%Y-%m")),
        ));
    }
    Ok(first)
}

/// GET /consumption
pub async fn export(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: ExportQuery = input::query(req.query)?;
    let first = month_of(&q.month)?;
    let kind = *q.period.get_or_insert(PeriodKind::Month);
    let (from, to) = (first, first + Months::new(1));
    let s = req.state;
    if req.wants_csv() {
        if q.limit.is_some() || q.cursor.is_some() {
            let field = if q.limit.is_some() { "limit" } else { "cursor" };
            return Err(Problem::bad_field(
                field,
                "a CSV export is the whole run, in one answer: no pages",
            ));
        }
        if let Some(r) = &q.region
            && !s.store.region_exists(r).await?
        {
            return Err(Problem::not_found(format!("no region {r:?}")));
        }
        return Ok(csv_export(req, kind, from, to, q.region));
    }
    let limit = input::limit(q.limit)?;
    let after = input::id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let tag = q.region.clone().map_or(Tag::All, Tag::Region);
    cached(req, cache_key(req, &q), || async {
        if let Some(r) = &q.region
            && !s.store.region_exists(r).await?
        {
            return Err(Problem::not_found(format!("no region {r:?}")));
        }
        let run = Run {
            kind,
            from,
            to,
            region: q.region.as_deref(),
            after_id: after,
            limit,
        };
        let mut items = Vec::new();
        let mut last = None;
        let meters = billing::run(&s.store, &s.billing, &run, |meter, rows| {
            items.extend(
                rows.iter()
                    .map(|row| ExportRecord::new(&meter, ConsumptionRecord::from(row))),
            );
            last = Some(meter.id);
            std::future::ready(true)
        })
        .await?;
        let next_cursor = (meters as i64 == limit)
            .then_some(last)
            .flatten()
            .map(|id| input::encode_cursor(&id.to_string()));
        let page = Page { items, next_cursor };
        Fresh::new(&page, vec![tag], None)
    })
    .await
}

/// Bytes of CSV gathered before they are sent: large enough for few, cheap sends, small
/// enough that memory stays flat however many meters the run holds.
const CSV_CHUNK: usize = 64 * 1024;
/// Chunks in flight between the query and a slow client.
const CSV_CHUNKS_IN_FLIGHT: usize = 4;

/// The whole run as CSV, streamed: a task reads the meters from the database a chunk at a time and
/// sends each chunk of lines as it fills; a client that goes away stops the query.
fn csv_export(
    req: &Request<'_>,
    kind: PeriodKind,
    from: NaiveDate,
    to: NaiveDate,
    region: Option<String>,
) -> Answer {
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CSV_CHUNKS_IN_FLIGHT);
    let store = req.state.store.clone();
    let calendar = req.state.billing.clone();
    let span =
        tracing::info_span!("consumption_export", month = %from.format("%Y-%m"), region = ?region);
    tokio::spawn(
        async move {
            let mut chunk = String::with_capacity(CSV_CHUNK);
            chunk.push_str(&COLUMNS.join(","));
            chunk.push('\n');
            let run = Run {
                kind,
                from,
                to,
                region: region.as_deref(),
                after_id: 0,
                limit: i64::MAX,
            };
            let result = billing::run(&store, &calendar, &run, |meter, rows| {
                for row in &rows {
                    chunk.push_str(&csv_line(&ExportRecord::new(
                        &meter,
                        ConsumptionRecord::from(row),
                    )));
                    chunk.push('\n');
                }
                let full = (chunk.len() >= CSV_CHUNK)
                    .then(|| std::mem::replace(&mut chunk, String::with_capacity(CSV_CHUNK)));
                let tx = tx.clone();
                async move {
                    match full {
                        Some(c) => tx.send(Ok(Bytes::from(c))).await.is_ok(),
                        None => !tx.is_closed(),
                    }
                }
            })
            .await;
            match result {
                Ok(meters) => {
                    tracing::debug!(meters, "export streamed");
                    let _ = tx.send(Ok(Bytes::from(chunk))).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "export cut short: the database failed");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            }
        }
        .instrument(span),
    );
    let chunks =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Answer::stream("text/csv; charset=utf-8", chunks)
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::*;

    #[test]
    fn default_ranges_reach_a_month_twelve_weeks_or_a_year_back() {
        let to = NaiveDate::from_ymd_opt(2028, 2, 29).expect("date");
        assert_eq!(default_from(PeriodKind::Day, to).day(), 29);
        assert_eq!(default_from(PeriodKind::Week, to), to - Days::new(84));
        assert_eq!(
            default_from(PeriodKind::Month, to).to_string(),
            "2027-02-28"
        );
    }
}
