//! PostgreSQL: monthly partitions of `readings`, created ahead of time.
//!
//! Readings are range-partitioned by month so that range scans and retention stay cheap. The
//! DEFAULT partition is only a safety net (the bridge quarantines readings outside the storage
//! window); PostgreSQL refuses to create a partition whose range has rows in DEFAULT, so any
//! such rows are moved out first, in the same transaction, under a lock that keeps new rows
//! from slipping in between.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, PgPool};

use super::Result;
use super::readings::{MAX_READING_AGE, MAX_READING_LEAD};

/// What one run of the partition job did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionReport {
    /// Names of the partitions created.
    pub created: Vec<String>,
    /// Rows moved out of the DEFAULT partition into new ones.
    pub moved: u64,
}

/// The first day of the month `months` after the month of `date`.
fn month_start(date: NaiveDate, months: i32) -> NaiveDate {
    let index = date.year() * 12 + date.month0() as i32 + months;
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        .unwrap_or(NaiveDate::MIN)
}

/// The months whose partitions must exist at `now`: every month the storage window touches,
/// plus the next one so that the turn of the month never lands in DEFAULT.
pub fn months_needed(now: DateTime<Utc>) -> Vec<NaiveDate> {
    let first = month_start((now - MAX_READING_AGE).date_naive(), 0);
    let last = month_start((now + MAX_READING_LEAD).date_naive(), 1);
    let mut months = Vec::new();
    let mut m = first;
    while m <= last {
        months.push(m);
        m = month_start(m, 1);
    }
    months
}

/// The partition table's name for a month.
pub fn partition_name(month: NaiveDate) -> String {
    format!("readings_y{:04}m{:02}", month.year(), month.month())
}

/// Creates the missing monthly partitions for `now`, moving rows out of DEFAULT first.
pub async fn ensure(pool: &PgPool, now: DateTime<Utc>) -> Result<PartitionReport> {
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'readings'::regclass",
    )
    .fetch_all(pool)
    .await?;
    let mut report = PartitionReport::default();
    for month in months_needed(now) {
        let name = partition_name(month);
        if existing.contains(&name) {
            continue;
        }
        if let Some(moved) = create(pool, month, &name).await? {
            report.moved += moved;
            report.created.push(name);
        }
    }
    Ok(report)
}

/// Creates one month's partition; `None` when another instance created it first.
async fn create(pool: &PgPool, month: NaiveDate, name: &str) -> Result<Option<u64>> {
    let from = month.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let to = month_start(month, 1)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let mut tx = pool.begin().await?;
    // One instance at a time creates partitions (two starting together would both try).
    sqlx::query("SELECT pg_advisory_xact_lock(7364211)")
        .execute(&mut *tx)
        .await?;
    // The parent first, then DEFAULT: the order `CREATE TABLE … PARTITION OF` itself takes
    // them in, so an insert routed to both cannot deadlock with this job. The parent is locked
    // at the strength that statement needs (ACCESS EXCLUSIVE) from the start: a weaker lock
    // upgraded later would deadlock with a reader holding the parent and waiting for DEFAULT.
    // Readers and inserts wait (this runs once a month) until the partition exists; none can
    // land in DEFAULT in between.
    sqlx::query("LOCK TABLE ONLY readings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("LOCK TABLE readings_default IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(None);
    }
    sqlx::query("CREATE TEMP TABLE readings_moving (LIKE readings) ON COMMIT DROP")
        .execute(&mut *tx)
        .await?;
    let moved = sqlx::query(
        "WITH moved AS (DELETE FROM readings_default WHERE reading_time >= $1 \
         AND reading_time < $2 RETURNING *) INSERT INTO readings_moving SELECT * FROM moved",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // DDL takes no bind parameters; the name and bounds are built from integers only.
    let ddl = format!(
        "CREATE TABLE {name} PARTITION OF readings FOR VALUES FROM ('{}') TO ('{}')",
        from.format("%Y-%m-%d %H:%M:%S+00"),
        to.format("%Y-%m-%d %H:%M:%S+00"),
    );
    sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO readings SELECT * FROM readings_moving")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_cover_the_storage_window_and_the_next_month() {
        let now = DateTime::parse_from_rfc3339("2026-07-23T00:00:00Z")
            .expect("valid")
            .to_utc();
        let months = months_needed(now);
        assert_eq!(
            months.first().map(|m| m.to_string()).as_deref(),
            Some("2025-06-01")
        );
        assert_eq!(
            months.last().map(|m| m.to_string()).as_deref(),
            Some("2026-08-01")
        );
        assert_eq!(months.len(), 15);
        assert_eq!(partition_name(months[0]), "readings_y2025m06");
    }

    #[test]
    fn month_arithmetic_crosses_years() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 31).expect("valid");
        assert_eq!(month_start(d, 1).to_string(), "2027-01-01");
        assert_eq!(month_start(d, -12).to_string(), "2025-12-01");
    }
}
