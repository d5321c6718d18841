//! Billing data: a meter's consumption per day, ISO week or month.

use chrono::{Days, Months, NaiveDate};

use super::{cache_key, find_meter};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::ConsumptionQuery;
use crate::api::views::Page;
use crate::api::{Answer, Fresh, Request, cached};
use crate::billing::{self, ConsumptionRecord, Period, PeriodKind};
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

/// GET /meters/{meter}/consumption
pub async fn meter(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: ConsumptionQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::date_cursor(q.cursor.as_deref())?
        .map(|d| checked_date(d, "cursor"))
        .transpose()?;
    let r = MeterRef::parse(req.param(0), "meter")?;
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
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        let tz = s.billing.zone(&m.region_id);
        let start = after.map_or(from, |d| kind.next(d).max(from));
        let mut periods = Vec::new();
        let mut day = kind.start_of(start);
        while day < to && periods.len() < limit as usize {
            periods.push(Period::containing(kind, tz, day));
            day = kind.next(day);
        }
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
