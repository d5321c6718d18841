//! The benchmark's database: a fleet of meters spread over regions, each with a reading a day
//! for the last `days` days, written by the database itself (`generate_series` on
//! PostgreSQL, a recursive CTE on SQLite) so that millions of rows take seconds, not the
//! hours the ingest path would. A fleet already there is reused: only what is missing is
//! added.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use firmware_protocol::Serial;
use meterhub::storage::Store;
use sqlx::{AssertSqlSafe, QueryBuilder};

use crate::event::APPLICATION_ID;

/// First half of the fleet's DevEUIs; the meter number (from 1) fills the second half.
pub const FLEET_PREFIX: &str = "5e1ec700";

/// First half of the DevEUIs of meters installed by the insert phase.
pub const INSTALL_PREFIX: &str = "1a57a110";

/// The kinds of the alarms the update phase acknowledges start with this; a meter may have
/// one open alarm of a kind, so there are as many kinds as alarms per meter.
pub const ALARM_KIND: &str = "loadtest-";

/// Meters per INSERT: 13 binds a row stays under both databases' limits.
const METERS_PER_STATEMENT: usize = 1_000;

/// Meters whose readings one statement writes: progress shows, and no transaction grows
/// past a few hundred thousand rows.
const METERS_PER_READINGS_STATEMENT: u32 = 10_000;

/// The DevEUI of fleet meter `n` (from 1).
pub fn dev_eui(n: u32) -> String {
    format!("{FLEET_PREFIX}{n:08x}")
}

/// The DevEUI of installed meter `n`.
pub fn install_dev_eui(n: u32) -> String {
    format!("{INSTALL_PREFIX}{n:08x}")
}

/// The serial of installed meter `n` (manufacturer 14; the fleet has 13).
pub fn install_serial(n: u32) -> Result<Serial> {
    Serial::new(14, 26, 1, n).with_context(|| format!("no serial number for installed meter {n}"))
}

/// The region of fleet meter `n`.
pub fn region(n: u32, regions: u32) -> String {
    format!("apibench-{:02}", n % regions.max(1))
}

/// The fleet as prepared.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Meters, numbered from 1.
    pub meters: u32,
    /// Regions the meters are spread over.
    pub regions: u32,
    /// Midnight after the last daily reading (the readings are the days before it).
    pub end: DateTime<Utc>,
    /// Meters added by this preparation.
    pub added_meters: u64,
    /// Readings added by this preparation.
    pub added_readings: u64,
    /// How long the preparation took.
    pub took: Duration,
}

/// Makes sure meters 1 to `meters` exist with `days` daily readings each (a meter that has
/// any reading is left as it is), then refreshes the planner's statistics if anything was
/// added. The schema must exist (see [`Store::migrate`]).
pub async fn prepare(
    store: &Store,
    meters: u32,
    days: u32,
    regions: u32,
    now: DateTime<Utc>,
) -> Result<Fleet> {
    let started = Instant::now();
    for r in 0..regions.max(1) {
        store
            .ensure_region(&region(r, regions), &format!("Benchmark region {r}"), now)
            .await?;
    }
    let existing = count_meters(store, meters).await?;
    let mut added_meters = 0;
    if existing < u64::from(meters) {
        eprintln!(
            "registering {} meters ({} there already)",
            meters - existing as u32,
            existing
        );
        added_meters = insert_meters(store, meters, regions, now).await?;
    }
    let end = match last_reading(store).await? {
        Some(t) => t + chrono::Duration::days(1),
        None => now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .context("midnight")?
            .and_utc(),
    };
    let start = end - chrono::Duration::days(i64::from(days));
    let mut added_readings = 0;
    let mut from = 1;
    while from <= meters {
        let to = from
            .saturating_add(METERS_PER_READINGS_STATEMENT - 1)
            .min(meters);
        let n = insert_readings(store, from, to, start, days).await?;
        if n > 0 {
            eprintln!(
                "  readings for meters {from}–{to}: {n} rows ({:.0} s so far)",
                started.elapsed().as_secs_f64()
            );
        }
        added_readings += n;
        from = to + 1;
    }
    if added_meters > 0 || added_readings > 0 {
        eprintln!("refreshing the planner's statistics");
        match store {
            Store::Postgres(pool) => {
                sqlx::query("ANALYZE meters").execute(pool).await?;
                sqlx::query("ANALYZE readings").execute(pool).await?;
            }
            Store::Sqlite { writer, .. } => {
                sqlx::query("ANALYZE").execute(writer).await?;
            }
        }
    }
    Ok(Fleet {
        meters,
        regions,
        end,
        added_meters,
        added_readings,
        took: started.elapsed(),
    })
}

async fn count_meters(store: &Store, meters: u32) -> Result<u64> {
    let sql = "SELECT count(*) FROM meters WHERE dev_eui >= $1 AND dev_eui <= $2";
    let n: i64 = match store {
        Store::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(dev_eui(1))
                .bind(dev_eui(meters))
                .fetch_one(pool)
                .await?
        }
        Store::Sqlite { writer, .. } => {
            sqlx::query_scalar(sql)
                .bind(dev_eui(1))
                .bind(dev_eui(meters))
                .fetch_one(writer)
                .await?
        }
    };
    Ok(n.max(0) as u64)
}

/// The last reading time of fleet meter 1: the fleet's readings end at the same day.
async fn last_reading(store: &Store) -> Result<Option<DateTime<Utc>>> {
    let sql = "SELECT max(reading_time) FROM readings \
               WHERE meter_id = (SELECT id FROM meters WHERE dev_eui = $1)";
    Ok(match store {
        Store::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(dev_eui(1))
                .fetch_one(pool)
                .await?
        }
        Store::Sqlite { writer, .. } => {
            // SQLite keeps times as RFC 3339 text.
            let text: Option<String> = sqlx::query_scalar(sql)
                .bind(dev_eui(1))
                .fetch_one(writer)
                .await?;
            text.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
                .transpose()
                .context("a reading time that is not RFC 3339")?
        }
    })
}

async fn insert_meters(
    store: &Store,
    meters: u32,
    regions: u32,
    now: DateTime<Utc>,
) -> Result<u64> {
    let production = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let rows: Vec<(String, String, i64, String)> = (1..=meters)
        .map(|n| {
            let serial = Serial::new(13, 26, 1, n)
                .with_context(|| format!("no serial number for meter {n}"))?;
            Ok((
                dev_eui(n),
                serial.to_string(),
                i64::from(n),
                region(n, regions),
            ))
        })
        .collect::<Result<_>>()?;
    let mut added = 0;
    macro_rules! insert {
        ($pool:expr, $db:ty) => {
            for chunk in rows.chunks(METERS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, \
                     region_id, usage_type, mode, production_date, status, \
                     reporting_interval_minutes, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (dev_eui, serial, n, region)| {
                    b.push_bind(dev_eui.clone())
                        .push_bind(serial.clone())
                        .push_bind(*n)
                        .push_bind(format!("customer-{n}"))
                        .push_bind(APPLICATION_ID)
                        .push_bind(region.clone())
                        .push_bind("residential")
                        .push_bind("credit")
                        .push_bind(production)
                        .push_bind("active")
                        .push_bind(1_440_i32)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT DO NOTHING");
                added += q.build().execute($pool).await?.rows_affected();
            }
        };
    }
    match store {
        Store::Postgres(pool) => insert!(pool, sqlx::Postgres),
        Store::Sqlite { writer, .. } => insert!(writer, sqlx::Sqlite),
    }
    if count_meters(store, meters).await? < u64::from(meters) {
        bail!(
            "not every meter {}… could be registered: another meter holds one of their serials",
            FLEET_PREFIX
        );
    }
    Ok(added)
}

/// Daily readings from `start` for fleet meters `from` to `to` that have none yet. The
/// register grows by a meter-dependent amount a day, from a meter-dependent start.
async fn insert_readings(
    store: &Store,
    from: u32,
    to: u32,
    start: DateTime<Utc>,
    days: u32,
) -> Result<u64> {
    const COLUMNS: &str = "INSERT INTO readings (meter_id, reading_time, received_at, \
        gas_volume_litres, valve, door, battery_millivolts, battery_percent, flags, f_cnt) ";
    const WHERE: &str = "WHERE m.dev_eui >= $3 AND m.dev_eui <= $4 \
        AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = m.id)";
    let days = i64::from(days);
    Ok(match store {
        Store::Postgres(pool) => {
            let sql = format!(
                "{COLUMNS}SELECT m.id, $1 + d * interval '1 day', \
                 $1 + d * interval '1 day' + interval '5 minutes', \
                 m.id % 1000 * 100000 + d * (100 + m.id % 400), 1, 1, 3600, 90, 0, d \
                 FROM meters m CROSS JOIN generate_series(0, $2::bigint - 1) AS d {WHERE}"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(start)
                .bind(days)
                .bind(dev_eui(from))
                .bind(dev_eui(to))
                .execute(pool)
                .await?
                .rows_affected()
        }
        Store::Sqlite { writer, .. } => {
            // The text of a time as the server binds it (RFC 3339, whole seconds, +00:00), so
            // that text order stays time order.
            let sql = format!(
                "{COLUMNS}WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d \
                 WHERE n + 1 < $2) \
                 SELECT m.id, strftime('%Y-%m-%dT%H:%M:%S+00:00', $1 + d.n * 86400, 'unixepoch'), \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', $1 + d.n * 86400 + 300, 'unixepoch'), \
                 m.id % 1000 * 100000 + d.n * (100 + m.id % 400), 1, 1, 3600, 90, 0, d.n \
                 FROM meters m CROSS JOIN d {WHERE}"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(start.timestamp())
                .bind(days)
                .bind(dev_eui(from))
                .bind(dev_eui(to))
                .execute(writer)
                .await?
                .rows_affected()
        }
    })
}

/// Opens `count` alarms of kinds [`ALARM_KIND`]`0`, `1`, … spread over fleet meters 1 to
/// `meters` (the ones a previous run left open are cleared first) and returns their ids in
/// order.
pub async fn open_alarms(
    store: &Store,
    meters: u32,
    count: u32,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let now = DateTime::from_timestamp(now.timestamp(), 0).context("time out of range")?;
    const CLEAR: &str = "UPDATE alarms SET state = 'cleared', cleared_at = $1 WHERE kind LIKE $2 AND state = 'open'";
    const COLUMNS: &str = "INSERT INTO alarms (meter_id, kind, source, raised_at, last_raised_at, state, received_at) ";
    const IDS: &str = "SELECT id FROM alarms WHERE kind LIKE $1 AND state = 'open' ORDER BY id";
    let like = format!("{ALARM_KIND}%");
    match store {
        Store::Postgres(pool) => {
            sqlx::query(CLEAR)
                .bind(now)
                .bind(&like)
                .execute(pool)
                .await?;
            let sql = format!(
                "{COLUMNS}SELECT (SELECT id FROM meters WHERE dev_eui = $1 || \
                 lpad(to_hex(g % $2 + 1), 8, '0')), $3 || (g / $2), 'server', \
                 $4 + g * interval '1 second', $4 + g * interval '1 second', 'open', $4 FROM generate_series(0, $5::bigint - 1) AS g ON CONFLICT DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(FLEET_PREFIX)
                .bind(i64::from(meters))
                .bind(ALARM_KIND)
                .bind(now)
                .bind(i64::from(count))
                .execute(pool)
                .await?;
            Ok(sqlx::query_scalar(IDS).bind(&like).fetch_all(pool).await?)
        }
        Store::Sqlite { writer, .. } => {
            sqlx::query(CLEAR)
                .bind(now)
                .bind(&like)
                .execute(writer)
                .await?;
            let sql = format!(
                "{COLUMNS}WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g \
                 WHERE n + 1 < $5) \
                 SELECT (SELECT id FROM meters WHERE dev_eui = printf('%s%08x', $1, g.n % $2 + 1)), \
                 $3 || (g.n / $2), 'server', \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', $4 + g.n, 'unixepoch'), \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', $4 + g.n, 'unixepoch'), 'open', \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', $4, 'unixepoch') FROM g WHERE true \
                 ON CONFLICT DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(FLEET_PREFIX)
                .bind(i64::from(meters))
                .bind(ALARM_KIND)
                .bind(now.timestamp())
                .bind(i64::from(count))
                .execute(writer)
                .await?;
            Ok(sqlx::query_scalar(IDS)
                .bind(&like)
                .fetch_all(writer)
                .await?)
        }
    }
}

/// The number the next installed meter takes: one past the highest installed so far.
pub async fn next_install_number(store: &Store) -> Result<u32> {
    let sql = "SELECT max(dev_eui) FROM meters WHERE dev_eui >= $1 AND dev_eui <= $2";
    let (low, high) = (install_dev_eui(0), install_dev_eui(u32::MAX));
    let max: Option<String> = match store {
        Store::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(low)
                .bind(high)
                .fetch_one(pool)
                .await?
        }
        Store::Sqlite { writer, .. } => {
            sqlx::query_scalar(sql)
                .bind(low)
                .bind(high)
                .fetch_one(writer)
                .await?
        }
    };
    match max {
        None => Ok(1),
        Some(d) => {
            let n = u32::from_str_radix(&d[INSTALL_PREFIX.len()..], 16)
                .with_context(|| format!("an installed meter's DevEUI {d}"))?;
            Ok(n + 1)
        }
    }
}
