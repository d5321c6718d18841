//! Retention: old readings, quarantined messages and audit rows removed once older than
//! `[retention]` allows. Run by the scheduler (under its lease, about once an hour) and by
//! `meterhub retention [--dry-run]`; a dry run reports exactly what a run would remove.
//!
//! PostgreSQL drops whole monthly partitions of `readings` (a month goes once all of it lies
//! before the cutoff), which costs nothing per row. SQLite, and both stores for quarantine
//! and audit rows, delete in chunks of [`CHUNK`] rows, one short transaction each, so that
//! ingest waits at most one chunk for SQLite's write lock.
//!
//! Closed billing periods keep their stored figures (`billing_periods`, `billing_revisions`):
//! nothing recomputes them from readings except a late reading, and the late readings noted
//! before the cutoff go with the readings.

use anyhow::{Result, bail};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

use crate::cache::Changes;
use crate::config::RetentionSettings;
use crate::storage::retention::Table;
use crate::storage::{Dialect, Store};

/// Rows deleted per statement (and transaction).
pub const CHUNK: i64 = 5_000;

/// Readings are kept at least this many days plus `billing.gap_days` and
/// `billing.grace_days`: a month's period (31 days at most) closes from its readings, and a
/// boundary register is interpolated from readings up to `gap_days` before it.
pub const MIN_READINGS_DAYS: u32 = 32;

/// Refuses settings that would remove readings a billing period still needs.
pub fn check(s: &RetentionSettings, gap_days: u32, grace_days: u32) -> Result<()> {
    let least = MIN_READINGS_DAYS + gap_days + grace_days;
    if let Some(days) = s.readings_days
        && days < least
    {
        bail!(
            "retention.readings_days must be at least {least} \
             ({MIN_READINGS_DAYS} + billing.gap_days + billing.grace_days), got {days}"
        );
    }
    for (name, days) in [
        ("quarantine_days", s.quarantine_days),
        ("audit_days", s.audit_days),
    ] {
        if days == Some(0) {
            bail!("retention.{name} must be at least 1 (unset keeps everything)");
        }
    }
    Ok(())
}

/// The instants before which each kind of row goes; `None` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cutoffs {
    /// Readings, by reading time.
    pub readings: Option<DateTime<Utc>>,
    /// Quarantined messages, by time received.
    pub quarantine: Option<DateTime<Utc>>,
    /// Audit rows, by time written.
    pub audit: Option<DateTime<Utc>>,
}

/// The cutoffs at `now`.
pub fn cutoffs(s: &RetentionSettings, now: DateTime<Utc>) -> Cutoffs {
    let before = |days: Option<u32>| days.map(|d| now - chrono::Duration::days(i64::from(d)));
    Cutoffs {
        readings: before(s.readings_days),
        quarantine: before(s.quarantine_days),
        audit: before(s.audit_days),
    }
}

/// The first instant of `t`'s month (UTC, as partitions are): on PostgreSQL, readings before
/// it go, the rest of the cutoff's month stays until the month is wholly before the cutoff.
pub fn month_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or(t)
}

/// The month a partition named by [`crate::storage::partitions::partition_name`] holds;
/// `None` for any other name (DEFAULT, a table of someone else's).
pub fn partition_month(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix("readings_y")?;
    let (year, month) = rest.split_once('m')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let d = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
    // Only the exact spelling the partition job makes: the name goes into DDL.
    (crate::storage::partitions::partition_name(d) == name).then_some(d)
}

/// The partitions among `names` lying wholly before `cutoff`, oldest first.
pub fn partitions_before(names: &[String], cutoff: DateTime<Utc>) -> Vec<String> {
    let floor = month_floor(cutoff).date_naive();
    let mut old: Vec<(NaiveDate, &String)> = names
        .iter()
        .filter_map(|n| partition_month(n).map(|m| (m, n)))
        .filter(|(m, _)| *m < floor)
        .collect();
    old.sort();
    old.into_iter().map(|(_, n)| n.clone()).collect()
}

/// What went (or, in a dry run, would go) from one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReport {
    /// `readings`, `quarantine` or `meter_audit`.
    pub table: &'static str,
    /// Rows before this instant go (on PostgreSQL's readings: the first kept month's start).
    pub cutoff: DateTime<Utc>,
    /// Rows removed.
    pub rows: u64,
    /// PostgreSQL's readings: the monthly partitions dropped, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<String>>,
}

/// What one run removed, per table with a retention set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Whether nothing was removed (only counted).
    pub dry_run: bool,
    /// One entry per table whose retention is set.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Rows removed in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Removes (or, `dry_run`, counts) what is older than `settings` keep at `now`. Whatever
/// went is announced to `changes` as "everything changed": the job is rare and its extent
/// wide.
pub async fn run(
    store: &Store,
    changes: Option<&Changes>,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
    dry_run: bool,
) -> crate::storage::Result<Report> {
    let cut = cutoffs(settings, now);
    let mut report = Report {
        dry_run,
        tables: Vec::new(),
    };
    if let Some(cutoff) = cut.readings {
        report.tables.push(match store.dialect() {
            Dialect::Postgres => {
                let names = store.readings_partitions().await?;
                let old = partitions_before(&names, cutoff);
                let mut rows = 0;
                for name in &old {
                    let end = partition_month(name)
                        .and_then(|m| m.checked_add_months(chrono::Months::new(1)))
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| d.and_utc())
                        .unwrap_or(cutoff);
                    rows += if dry_run {
                        store.partition_rows(name).await?
                    } else {
                        store.drop_partition(name, end).await?
                    };
                }
                TableReport {
                    table: Table::Readings.name(),
                    cutoff: month_floor(cutoff),
                    rows,
                    partitions: Some(old),
                }
            }
            Dialect::Sqlite => TableReport {
                table: Table::Readings.name(),
                cutoff,
                rows: if dry_run {
                    store.count_before(Table::Readings, cutoff).await?
                } else {
                    store.delete_readings_before(cutoff, CHUNK).await?
                },
                partitions: None,
            },
        });
    }
    for (table, cutoff) in [
        (Table::Quarantine, cut.quarantine),
        (Table::Audit, cut.audit),
    ] {
        let Some(cutoff) = cutoff else { continue };
        report.tables.push(TableReport {
            table: table.name(),
            cutoff,
            rows: if dry_run {
                store.count_before(table, cutoff).await?
            } else {
                store.delete_before(table, cutoff, CHUNK).await?
            },
            partitions: None,
        });
    }
    let removed = report
        .tables
        .iter()
        .any(|t| t.rows > 0 || t.partitions.as_ref().is_some_and(|p| !p.is_empty()));
    if !dry_run
        && removed
        && let Some(changes) = changes
    {
        changes.everything_changed().await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("valid").to_utc()
    }

    #[test]
    fn cutoffs_are_days_before_now_and_none_when_unset() {
        let s = RetentionSettings {
            readings_days: Some(400),
            quarantine_days: None,
            audit_days: Some(1),
        };
        let c = cutoffs(&s, at("2026-07-23T12:00:00Z"));
        assert_eq!(c.readings, Some(at("2025-06-18T12:00:00Z")));
        assert_eq!(c.quarantine, None);
        assert_eq!(c.audit, Some(at("2026-07-22T12:00:00Z")));
        assert_eq!(
            cutoffs(&RetentionSettings::default(), at("2026-07-23T12:00:00Z")),
            Cutoffs::default()
        );
    }

    #[test]
    fn only_months_wholly_before_the_cutoff_go() {
        let names: Vec<String> = [
            "readings_y2026m03",
            "readings_default",
            "readings_y2026m01",
            "readings_y2026m02",
            "readings_y2026m4",
            "readings_y2025m12",
            "other",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            partitions_before(&names, at("2026-03-15T00:00:00Z")),
            [
                "readings_y2025m12",
                "readings_y2026m01",
                "readings_y2026m02"
            ]
        );
        // A cutoff on a month's first instant: that month stays, the one before goes.
        assert_eq!(
            partitions_before(&names, at("2026-02-01T00:00:00Z")),
            ["readings_y2025m12", "readings_y2026m01"]
        );
        assert!(partitions_before(&names, at("2025-12-31T23:59:59Z")).is_empty());
        assert_eq!(
            month_floor(at("2026-03-15T10:00:00Z")),
            at("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn partition_names_are_read_back_exactly() {
        assert_eq!(
            partition_month("readings_y2026m12"),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        for bad in [
            "readings_y2026m13",
            "readings_y2026m1",
            "readings_y+026m01",
            "readings_y2026m01; DROP TABLE meters",
            "readings_default",
        ] {
            assert_eq!(partition_month(bad), None, "{bad}");
        }
    }

    #[test]
    fn readings_are_kept_long_enough_for_billing() {
        let s = |days| RetentionSettings {
            readings_days: Some(days),
            ..RetentionSettings::default()
        };
        assert!(check(&s(42), 7, 3).is_ok());
        let e = check(&s(41), 7, 3).expect_err("too short");
        assert!(e.to_string().contains("at least 42"), "{e}");
        assert!(check(&RetentionSettings::default(), 7, 3).is_ok());
        let zero = RetentionSettings {
            audit_days: Some(0),
            ..RetentionSettings::default()
        };
        assert!(check(&zero, 7, 3).is_err());
    }
}
