//! A meter's readings, commands and self-test results.

use chrono::Duration;

use super::{cache_key, find_meter};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{PageQuery, RangeQuery};
use crate::api::views::{CommandView, Page, ReadingView, SelfTestView};
use crate::api::{Answer, Fresh, Request, cached};
use crate::cache::Tag;

/// GET /meters/{meter}/readings
pub async fn readings(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: RangeQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::time_cursor(q.cursor.as_deref())?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    // A range ending "now" is pinned to a time in the key, or every request would be a
    // different one; the minute keeps the key stable while new readings still show (a write
    // to the meter invalidates the entry anyway).
    let now = input::next_minute(s.now());
    let (from, to) = input::range(q.from, q.to, now, Duration::days(31))?;
    if q.to.is_none() {
        q.to = Some(to);
    }
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        // Keyset: the page starts just after the last reading time of the previous one
        // (times are kept to the microsecond).
        let start = after.map_or(from, |t| (t + Duration::microseconds(1)).max(from));
        let rows = s.store.readings_for_meter(m.id, start, to, limit).await?;
        let page = Page::of(
            rows,
            limit,
            |x| Some(input::time_key(x.reading_time)),
            ReadingView::from,
        );
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// GET /meters/{meter}/commands: cached under the meter's tag, which every change of a
/// command's state bumps (the queue, the dispatcher, the ingest writer, the scheduler).
pub async fn commands(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let before = input::pair_cursor::<uuid::Uuid>(q.cursor.as_deref())?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        let rows = req.state.store.commands_page(m.id, before, limit).await?;
        let page = Page::of(
            rows,
            limit,
            |c| Some(format!("{}|{}", input::time_key(c.created_at), c.id)),
            CommandView::from,
        );
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// GET /meters/{meter}/self-tests
pub async fn self_tests(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: RangeQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let before = input::time_cursor(q.cursor.as_deref())?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    let (from, to) = input::range(
        q.from,
        q.to,
        input::next_minute(s.now()),
        Duration::days(365),
    )?;
    if q.to.is_none() {
        q.to = Some(to);
    }
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        // Newest first: the next page ends just before the last time of this one.
        let end = before.map_or(to, |t| t.min(to));
        let rows = s.store.self_tests_page(m.id, from, end, limit).await?;
        let page = Page::of(
            rows,
            limit,
            |x| Some(input::time_key(x.meter_time)),
            SelfTestView::from,
        );
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}
