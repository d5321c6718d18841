//! Billing periods: calendar days, ISO weeks (Monday to Monday) and calendar months, each from
//! local midnight to local midnight in the utility's time zone. A day therefore lasts 23 or 25
//! hours across a DST change, and a month ends at local midnight, not at UTC midnight.

use chrono::{
    DateTime, Datelike, Days, FixedOffset, LocalResult, Months, NaiveDate, NaiveTime, TimeDelta,
    TimeZone, Utc,
};
use chrono_tz::Tz;

/// The length of a billing period.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    /// A calendar day.
    Day,
    /// An ISO week, Monday to Monday.
    Week,
    /// A calendar month.
    Month,
}

impl PeriodKind {
    /// Every kind, shortest first.
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month];

    /// The name used in URLs, flags and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<PeriodKind> {
        PeriodKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The first date of the period of this kind that holds `date`.
    pub fn start_of(self, date: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Day => date,
            PeriodKind::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            PeriodKind::Month => date - Days::new(u64::from(date.day0())),
        }
    }

    /// The first date of the period after the one starting on `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Day => start + Days::new(1),
            PeriodKind::Week => start + Days::new(7),
            PeriodKind::Month => start + Months::new(1),
        }
    }
}

/// The instant `date` begins in `tz`: its local midnight, or, where a DST change skips
/// midnight, the first local time that exists that day.
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    // A gap lasts at most a day (Pacific/Apia skipped 2011-12-30 entirely); step through it.
    for minutes in (0..=24 * 60).step_by(15) {
        match tz.from_local_datetime(&(midnight + TimeDelta::minutes(minutes))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.to_utc(),
            LocalResult::None => continue,
        }
    }
    // Not reached for any zone in the database; UTC midnight keeps the order of days.
    midnight.and_utc()
}

/// One period: its kind, first date and the instants it spans, [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Day, week or month.
    pub kind: PeriodKind,
    /// Its first local date.
    pub first_day: NaiveDate,
    /// Its start, UTC (inclusive).
    pub start: DateTime<Utc>,
    /// Its end, UTC (exclusive).
    pub end: DateTime<Utc>,
    /// The time zone it is calendar time in.
    pub tz: Tz,
}

impl Period {
    /// The period of `kind` that holds local date `date` in `tz`.
    pub fn containing(kind: PeriodKind, tz: Tz, date: NaiveDate) -> Period {
        let first_day = kind.start_of(date);
        Period {
            kind,
            first_day,
            start: day_start(tz, first_day),
            end: day_start(tz, kind.next(first_day)),
            tz,
        }
    }

    /// The periods of `kind` whose first day is in [the start of `from`'s period, `to`), in
    /// order.
    pub fn range(kind: PeriodKind, tz: Tz, from: NaiveDate, to: NaiveDate) -> Vec<Period> {
        let mut out = Vec::new();
        let mut day = kind.start_of(from);
        while day < to {
            out.push(Period::containing(kind, tz, day));
            day = kind.next(day);
        }
        out
    }

    /// The start in local time, with its UTC offset.
    pub fn local_start(&self) -> DateTime<FixedOffset> {
        self.start.with_timezone(&self.tz).fixed_offset()
    }

    /// The end in local time, with its UTC offset.
    pub fn local_end(&self) -> DateTime<FixedOffset> {
        self.end.with_timezone(&self.tz).fixed_offset()
    }

    /// How long it lasts.
    pub fn length(&self) -> TimeDelta {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    const MADRID: Tz = chrono_tz::Europe::Madrid;

    #[test]
    fn madrid_dst_days_last_23_and_25_hours() {
        let spring = Period::containing(PeriodKind::Day, MADRID, date("2026-03-29"));
        assert_eq!(spring.length(), TimeDelta::hours(23));
        assert_eq!(spring.start.to_rfc3339(), "2026-03-28T23:00:00+00:00");
        assert_eq!(spring.local_end().to_rfc3339(), "2026-03-30T00:00:00+02:00");
        let autumn = Period::containing(PeriodKind::Day, MADRID, date("2026-10-25"));
        assert_eq!(autumn.length(), TimeDelta::hours(25));
        assert_eq!(
            autumn.local_start().to_rfc3339(),
            "2026-10-25T00:00:00+02:00"
        );
        assert_eq!(autumn.end.to_rfc3339(), "2026-10-25T23:00:00+00:00");
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-01-01 is a Thursday: its ISO week (2026-W01) starts on 2025-12-29.
        let week = Period::containing(PeriodKind::Week, MADRID, date("2026-01-01"));
        assert_eq!(week.first_day, date("2025-12-29"));
        assert_eq!(week.length(), TimeDelta::days(7));
        let feb = Period::containing(PeriodKind::Month, MADRID, date("2028-02-29"));
        assert_eq!(feb.first_day, date("2028-02-01"));
        assert_eq!(feb.length(), TimeDelta::days(29));
        let march = Period::containing(PeriodKind::Month, MADRID, date("2026-03-15"));
        assert_eq!(march.length(), TimeDelta::days(31) - TimeDelta::hours(1));
        let december = Period::containing(PeriodKind::Month, MADRID, date("2026-12-31"));
        assert_eq!(
            december.local_end().to_rfc3339(),
            "2027-01-01T00:00:00+01:00"
        );
    }

    #[test]
    fn a_range_starts_at_the_period_holding_from_and_stops_before_to() {
        let days = Period::range(
            PeriodKind::Day,
            MADRID,
            date("2028-02-28"),
            date("2028-03-02"),
        );
        let firsts: Vec<String> = days.iter().map(|p| p.first_day.to_string()).collect();
        assert_eq!(firsts, ["2028-02-28", "2028-02-29", "2028-03-01"]);
        let months = Period::range(
            PeriodKind::Month,
            MADRID,
            date("2026-11-15"),
            date("2027-01-02"),
        );
        assert_eq!(months.len(), 3);
        assert!(months.windows(2).all(|w| w[0].end == w[1].start));
        assert!(
            Period::range(
                PeriodKind::Week,
                MADRID,
                date("2026-05-04"),
                date("2026-05-04")
            )
            .is_empty()
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_when_the_clock_jumps() {
        // America/Santiago moved from 00:00 to 01:00 on 2026-09-06.
        let tz = chrono_tz::America::Santiago;
        let day = Period::containing(PeriodKind::Day, tz, date("2026-09-06"));
        assert_eq!(day.local_start().to_rfc3339(), "2026-09-06T01:00:00-03:00");
        assert_eq!(day.length(), TimeDelta::hours(23));
        // Samoa skipped 2011-12-30: a day of no length.
        let apia = Period::containing(
            PeriodKind::Day,
            chrono_tz::Pacific::Apia,
            date("2011-12-30"),
        );
        assert_eq!(apia.length(), TimeDelta::zero());
    }

    #[test]
    fn kinds_parse_back_from_their_names() {
        for kind in PeriodKind::ALL {
            assert_eq!(PeriodKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PeriodKind::parse("year"), None);
    }
}
