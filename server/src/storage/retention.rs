//! Retention's queries: rows before a cutoff counted, and deleted a chunk at a time; on
//! PostgreSQL, old monthly partitions of `readings` listed, counted and dropped. What goes
//! is decided in `crate::retention`.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Connection};

use super::{Result, Store};

/// A table retention removes rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `readings`, by reading time.
    Readings,
    /// `quarantine`, by time received.
    Quarantine,
    /// `meter_audit`, by time written.
    Audit,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::Quarantine => "quarantine",
            Table::Audit => "meter_audit",
        }
    }

    /// Counts the rows before `$1`.
    fn count(self) -> &'static str {
        match self {
            Table::Readings => "SELECT count(*) FROM readings WHERE reading_time < $1",
            Table::Quarantine => "SELECT count(*) FROM quarantine WHERE received_at < $1",
            Table::Audit => "SELECT count(*) FROM meter_audit WHERE at < $1",
        }
    }

    /// Deletes at most `$2` of the rows before `$1`. Ids grow with time, so the oldest rows
    /// are met first along the primary key.
    fn delete_chunk(self) -> Option<&'static str> {
        match self {
            Table::Readings => None,
            Table::Quarantine => Some(
                "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine \
                 WHERE received_at < $1 ORDER BY id LIMIT $2)",
            ),
            Table::Audit => Some(
                "DELETE FROM meter_audit WHERE id IN (SELECT id FROM meter_audit \
                 WHERE at < $1 ORDER BY id LIMIT $2)",
            ),
        }
    }
}

/// The advisory lock the partition job takes: one of them at a time creates or drops.
const PARTITION_LOCK: i64 = 7364211;

impl Store {
    /// Rows of `table` before `cutoff`.
    pub async fn count_before(&self, table: Table, cutoff: DateTime<Utc>) -> Result<u64> {
        let n: i64 = match self {
            Store::Sqlite { reader, .. } => {
                let mut c = super::read_connection(reader).await?;
                sqlx::query_scalar(table.count())
                    .bind(cutoff)
                    .fetch_one(&mut *c)
                    .await?
            }
            Store::Postgres(pool) => {
                let mut c = super::read_connection(pool).await?;
                sqlx::query_scalar(table.count())
                    .bind(cutoff)
                    .fetch_one(&mut *c)
                    .await?
            }
        };
        Ok(n.unsigned_abs())
    }

    /// Deletes the quarantine or audit rows before `cutoff`, `chunk` rows per transaction;
    /// how many. Readings are [`Store::delete_readings_before`] or [`Store::drop_partition`].
    pub async fn delete_before(
        &self,
        table: Table,
        cutoff: DateTime<Utc>,
        chunk: i64,
    ) -> Result<u64> {
        let Some(sql) = table.delete_chunk() else {
            return Ok(0);
        };
        let chunk = chunk.max(1);
        let mut total = 0;
        loop {
            let n = match self {
                Store::Sqlite { writer, .. } => {
                    let mut c = writer.acquire().await?;
                    sqlx::query(sql)
                        .bind(cutoff)
                        .bind(chunk)
                        .execute(&mut *c)
                        .await?
                        .rows_affected()
                }
                Store::Postgres(pool) => sqlx::query(sql)
                    .bind(cutoff)
                    .bind(chunk)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            };
            total += n;
            if n < chunk.unsigned_abs() {
                return Ok(total);
            }
            // Batches waiting for SQLite's writer go between two chunks.
            tokio::task::yield_now().await;
        }
    }

    /// SQLite: deletes the readings before `cutoff` (and the late readings noted among them),
    /// meter by meter along the primary key, at most `chunk` rows per transaction; how many.
    /// On PostgreSQL nothing: its readings go by partition.
    pub async fn delete_readings_before(&self, cutoff: DateTime<Utc>, chunk: i64) -> Result<u64> {
        let Store::Sqlite { writer, reader } = self else {
            return Ok(0);
        };
        let chunk = chunk.max(1);
        let mut total = 0;
        let mut after = i64::MIN;
        loop {
            let meters: Vec<i64> = {
                let mut c = super::read_connection(reader).await?;
                sqlx::query_scalar("SELECT id FROM meters WHERE id > $1 ORDER BY id LIMIT 1000")
                    .bind(after)
                    .fetch_all(&mut *c)
                    .await?
            };
            let Some(&last) = meters.last() else {
                return Ok(total);
            };
            after = last;
            for meter in meters {
                loop {
                    let mut c = writer.acquire().await?;
                    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
                    let n = sqlx::query(
                        "DELETE FROM readings WHERE meter_id = $1 AND reading_time IN \
                         (SELECT reading_time FROM readings WHERE meter_id = $1 \
                          AND reading_time < $2 ORDER BY reading_time LIMIT $3)",
                    )
                    .bind(meter)
                    .bind(cutoff)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    // A late reading whose reading is gone must not revise a closed figure.
                    sqlx::query(
                        "DELETE FROM billing_late_readings \
                         WHERE meter_id = $1 AND reading_time < $2",
                    )
                    .bind(meter)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    total += n;
                    if n < chunk.unsigned_abs() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// PostgreSQL: the monthly partitions of `readings`, attached or left detached by an
    /// interrupted [`Store::drop_partition`]. Nothing on SQLite.
    pub async fn readings_partitions(&self) -> Result<Vec<String>> {
        let Store::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' \
             AND relnamespace = current_schema()::regnamespace \
             AND relname ~ '^readings_y[0-9]{4}m[0-9]{2}$' ORDER BY relname",
        )
        .fetch_all(pool)
        .await?)
    }

    /// PostgreSQL: the rows of partition `name` (a name [`crate::retention::partition_month`]
    /// accepts).
    pub async fn partition_rows(&self, name: &str) -> Result<u64> {
        let Store::Postgres(pool) = self else {
            return Ok(0);
        };
        let name = checked(name)?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(pool)
            .await?;
        Ok(n.unsigned_abs())
    }

    /// PostgreSQL: drops partition `name`, whose month ends at `end`, with the late readings
    /// noted before `end`; the rows it held. Detached first in a short transaction (readers
    /// and ingest wait only for that), then counted and dropped: nothing can be added to a
    /// detached table, so the count is exactly what went.
    pub async fn drop_partition(&self, name: &str, end: DateTime<Utc>) -> Result<u64> {
        let Store::Postgres(pool) = self else {
            return Ok(0);
        };
        let name = checked(name)?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        // The parent first, at the strength DETACH needs, as the partition job does.
        sqlx::query("LOCK TABLE ONLY readings IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let attached: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'readings'::regclass AND c.relname = $1)",
        )
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        if attached {
            sqlx::query(AssertSqlSafe(format!(
                "ALTER TABLE readings DETACH PARTITION {name}"
            )))
            .execute(&mut *tx)
            .await?;
        }
        // A late reading whose reading is gone must not revise a closed figure.
        sqlx::query("DELETE FROM billing_late_readings WHERE reading_time < $1")
            .bind(end)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut tx = pool.begin().await?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {name}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n.unsigned_abs())
    }
}

/// `name` when it is a partition's name: it goes into SQL text, which takes no parameters.
fn checked(name: &str) -> Result<String> {
    match crate::retention::partition_month(name) {
        Some(_) => Ok(name.to_owned()),
        None => Err(super::Error::Corrupt(format!(
            "not a readings partition: {name}"
        ))),
    }
}
