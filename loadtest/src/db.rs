//! The database the server writes, seen from outside: the load's meters are registered with
//! plain INSERTs, and commit progress is read on a connection of our own, so "committed"
//! means visible to another connection.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use crate::event::{self, APPLICATION_ID, DEV_EUI_PREFIX};

/// The region the load's meters are registered in.
const REGION: &str = "loadtest";

/// Meters per INSERT: 13 binds a row stays under both databases' limits.
const METERS_PER_STATEMENT: usize = 1_000;

/// A connection pool to either database.
#[derive(Debug, Clone)]
pub enum Db {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds and `$kind` to its
/// `sqlx::Database` type: the queries are written once for both.
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $kind:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => {
                type $kind = sqlx::Postgres;
                $body
            }
            Db::Sqlite($pool) => {
                type $kind = sqlx::Sqlite;
                $body
            }
        }
    };
}

impl Db {
    /// Connects; the schema must exist (the server migrates it when it starts).
    pub async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("sqlite:") {
            // Two connections: one polls while the other is free for the rest. Under the
            // server's WAL journal a reader never blocks its writer.
            let options =
                SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .context("opening the SQLite database")?;
            Ok(Db::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Db::Postgres(pool))
        }
    }

    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Registers meters 1 to `count` (DevEUI and serial from [`event`]) unless they already
    /// are, then checks that every one is there with the serial the load sends.
    pub async fn register_meters(&self, count: u32, now: DateTime<Utc>) -> Result<()> {
        let production = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
        let meters: Vec<(String, String, i64)> = (1..=count)
            .map(|n| {
                Ok((
                    event::dev_eui(n),
                    event::serial(n)?.to_string(),
                    i64::from(n),
                ))
            })
            .collect::<Result<_>>()?;
        on_pool!(self, |pool, D| {
            sqlx::query(
                "INSERT INTO regions (id, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(REGION)
            .bind("Load test")
            .bind(now)
            .execute(pool)
            .await
            .context("creating the load's region (is the database migrated?)")?;
            for chunk in meters.chunks(METERS_PER_STATEMENT) {
                let mut q = QueryBuilder::<D>::new(
                    "INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, \
                     region_id, usage_type, mode, production_date, status, \
                     reporting_interval_minutes, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (dev_eui, serial, n)| {
                    b.push_bind(dev_eui.clone())
                        .push_bind(serial.clone())
                        .push_bind(*n)
                        .push_bind(format!("loadtest-{n}"))
                        .push_bind(APPLICATION_ID)
                        .push_bind(REGION)
                        .push_bind("residential")
                        .push_bind("credit")
                        .push_bind(production)
                        .push_bind("installed")
                        .push_bind(1_440_i32)
                        .push_bind(now)
                        .push_bind(now);
                });
                // Meters registered by an earlier run stay as they are.
                q.push(" ON CONFLICT DO NOTHING");
                q.build()
                    .execute(pool)
                    .await
                    .context("registering meters")?;
            }
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT dev_eui, serial FROM meters WHERE dev_eui >= $1 AND dev_eui <= $2",
            )
            .bind(event::dev_eui(1))
            .bind(event::dev_eui(count))
            .fetch_all(pool)
            .await?;
            let registered: std::collections::HashMap<String, String> = rows.into_iter().collect();
            for (dev_eui, serial, _) in &meters {
                if registered.get(dev_eui) != Some(serial) {
                    bail!(
                        "meter {dev_eui} is not registered with serial {serial}; another \
                         registration holds its DevEUI ({DEV_EUI_PREFIX}…) or serial"
                    );
                }
            }
            Ok(())
        })
    }

    /// The meters' first reading time for this run: a second after the latest reading stored
    /// (so no reading of this run collides with an earlier run's: a collision would be stored
    /// as nothing), and no earlier than `now` (a meter dating its readings in the past would
    /// look like a drifting clock, and the server would ask it to resynchronise).
    pub async fn first_reading_time(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let latest: Option<DateTime<Utc>> = match self {
            Db::Postgres(pool) => sqlx::query_scalar("SELECT max(reading_time) FROM readings")
                .fetch_one(pool)
                .await
                .context("reading the latest reading time")?,
            Db::Sqlite(pool) => {
                // SQLite keeps times as RFC 3339 text.
                let text: Option<String> =
                    sqlx::query_scalar("SELECT max(reading_time) FROM readings")
                        .fetch_one(pool)
                        .await
                        .context("reading the latest reading time")?;
                text.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
                    .transpose()
                    .context("a reading time that is not RFC 3339")?
            }
        };
        let floor = now;
        let first = match latest {
            Some(t) if t >= floor => t + chrono::Duration::seconds(1),
            _ => floor,
        };
        // Whole seconds, as a meter's clock has them.
        DateTime::from_timestamp(first.timestamp(), 0).context("time out of range")
    }

    /// Identities of this run's `up` events from `from` to `to` (ids made by
    /// [`event::dedup_id`]), in id order, at most `limit`. The identity is written in the same
    /// transaction as the event's reading, and its key serves this range read, which costs in
    /// proportion to what it returns; the readings table has no index that would serve one.
    pub async fn committed_ids(&self, from: &str, to: &str, limit: i64) -> Result<Vec<String>> {
        on_pool!(self, |pool, _D| {
            Ok(sqlx::query_scalar(
                "SELECT event_id FROM event_identities WHERE event_type = 'up' \
                 AND event_id >= $1 AND event_id <= $2 ORDER BY event_id LIMIT $3",
            )
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Readings stored with a reading time from `from` to `to`, and how many distinct frame
    /// counters they carry: the check, after the run, that every committed identity came with
    /// its reading.
    pub async fn readings_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(i64, i64)> {
        on_pool!(self, |pool, _D| {
            Ok(sqlx::query_as(
                "SELECT count(*), count(DISTINCT f_cnt) FROM readings \
                 WHERE reading_time >= $1 AND reading_time <= $2",
            )
            .bind(from)
            .bind(to)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |pool, _D| pool.close().await)
    }
}
