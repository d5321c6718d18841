//! Closed billing periods, their revisions and the late readings that may revise them: tables
//! and transactions only. What to close, when, and whether a figure changed is decided in
//! `billing::closing`.

use chrono::{DateTime, NaiveDate, Utc};

use sqlx::Connection;

use super::{Result, Store};

/// A period's figures as stored: the published ones of a closed period, or a revision's.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredFigures {
    /// `measured`, `estimated`, `incomplete` or `invalid`.
    pub quality: String,
    /// Readings dated within the period.
    pub readings: i32,
    /// The gas figure's quality; `None` when the meter had no gas register.
    pub gas_quality: Option<String>,
    /// Gas consumed, litres.
    pub gas_litres: Option<i64>,
    /// The gas register at the start.
    pub gas_register_start: Option<i64>,
    /// The gas register at the end.
    pub gas_register_end: Option<i64>,
    /// The energy figure's quality; `None` when the meter had no energy register.
    pub energy_quality: Option<String>,
    /// Electricity consumed, Wh.
    pub energy_wh: Option<i64>,
    /// The energy register at the start.
    pub energy_register_start: Option<i64>,
    /// The energy register at the end.
    pub energy_register_end: Option<i64>,
}

/// One meter's closed period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClosedPeriod {
    /// The meter.
    pub meter_id: i64,
    /// `day`, `week` or `month`.
    pub kind: String,
    /// Its first local date.
    pub first_day: NaiveDate,
    /// Its start, UTC.
    pub period_start: DateTime<Utc>,
    /// Its end (exclusive), UTC.
    pub period_end: DateTime<Utc>,
    /// The published figures.
    #[sqlx(flatten)]
    pub figures: StoredFigures,
    /// When they were frozen.
    pub closed_at: DateTime<Utc>,
}

/// A revision of a closed period's figure.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRevision {
    /// Its id (the order revisions were made in).
    pub id: i64,
    /// The meter.
    pub meter_id: i64,
    /// `day`, `week` or `month`.
    pub kind: String,
    /// The period's first local date.
    pub first_day: NaiveDate,
    /// 1 for the first revision of the period, and so on.
    pub revision: i32,
    /// When it was made.
    pub revised_at: DateTime<Utc>,
    /// Why: `lateReading`.
    pub reason: String,
    /// The earliest late reading that led to it.
    pub reading_time: DateTime<Utc>,
    /// The figure's quality before it.
    pub old_quality: String,
    /// Gas litres before it.
    pub old_gas_litres: Option<i64>,
    /// Wh before it.
    pub old_energy_wh: Option<i64>,
    /// The figures after it.
    #[sqlx(flatten)]
    pub figures: StoredFigures,
}

/// A reading stored late enough that it may fall in a closed period, with its meter's region
/// (whose time zone places the periods).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LateReading {
    /// The meter.
    pub meter_id: i64,
    /// The reading's time.
    pub reading_time: DateTime<Utc>,
    /// The meter's region.
    pub region_id: String,
}

/// A closed period with what is served of its revisions: how many, and the latest's figures.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PublishedPeriod {
    /// The closed period and its published figures.
    #[sqlx(flatten)]
    pub closed: ClosedPeriod,
    /// Its revisions.
    pub revisions: i64,
    /// When the latest revision was made.
    pub revised_at: Option<DateTime<Utc>>,
    /// The latest revision's quality.
    pub revised_quality: Option<String>,
    /// The latest revision's gas litres.
    pub revised_gas_litres: Option<i64>,
    /// The latest revision's Wh.
    pub revised_energy_wh: Option<i64>,
}

/// The published figures of a region's closed periods, summed per period, usage type and
/// quality.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClosedSum {
    /// The period's first local date.
    pub first_day: NaiveDate,
    /// The meters' usage type.
    pub usage_type: String,
    /// The published quality.
    pub quality: String,
    /// How many meters.
    pub meters: i64,
    /// Their gas litres (billable qualities only; 0 otherwise).
    pub gas_litres: i64,
    /// Their Wh (billable qualities only; 0 otherwise).
    pub energy_wh: i64,
}

/// Rows per INSERT statement (19 binds each: within either database's limit).
const INSERT_ROWS: usize = 1_000;

macro_rules! closed_columns {
    () => {
        "meter_id, kind, first_day, period_start, period_end, quality, readings, gas_quality, \
         gas_litres, gas_register_start, gas_register_end, energy_quality, energy_wh, \
         energy_register_start, energy_register_end, closed_at"
    };
}

macro_rules! revision_columns {
    () => {
        "id, meter_id, kind, first_day, revision, revised_at, reason, reading_time, old_quality, \
         old_gas_litres, old_energy_wh, quality, readings, gas_quality, gas_litres, \
         gas_register_start, gas_register_end, energy_quality, energy_wh, \
         energy_register_start, energy_register_end"
    };
}

/// A closed period's columns with its revisions' count and latest figures (revision numbers
/// run from 1 without gaps: the latest's number is the count), from `b` and `l`.
macro_rules! published_columns {
    () => {
        "SELECT b.meter_id, b.kind, b.first_day, b.period_start, b.period_end, b.quality, \
         b.readings, b.gas_quality, b.gas_litres, b.gas_register_start, b.gas_register_end, \
         b.energy_quality, b.energy_wh, b.energy_register_start, b.energy_register_end, \
         b.closed_at, CAST(COALESCE(l.revision, 0) AS BIGINT) AS revisions, \
         l.revised_at AS revised_at, l.quality AS revised_quality, \
         l.gas_litres AS revised_gas_litres, l.energy_wh AS revised_energy_wh"
    };
}

macro_rules! published_where {
    () => {
        "WHERE b.kind = $1 AND b.first_day >= $2 AND b.first_day < $3 \
         AND b.meter_id > $4 AND b.meter_id <= $5 ORDER BY b.meter_id, b.first_day"
    };
}

/// A region's sums per period, usage type and published quality, from `m` and `b`.
macro_rules! sums_columns {
    () => {
        "SELECT b.first_day, m.usage_type, b.quality, count(*) AS meters, \
         CAST(COALESCE(sum(CASE WHEN b.quality IN ('measured', 'estimated') \
          THEN b.gas_litres END), 0) AS BIGINT) AS gas_litres, \
         CAST(COALESCE(sum(CASE WHEN b.quality IN ('measured', 'estimated') \
          THEN b.energy_wh END), 0) AS BIGINT) AS energy_wh"
    };
}

macro_rules! sums_group {
    () => {
        "GROUP BY b.first_day, m.usage_type, b.quality \
         ORDER BY b.first_day, m.usage_type, b.quality"
    };
}

macro_rules! billing_period_queries {
    ($db:ty) => {
        use chrono::{DateTime, NaiveDate, Utc};

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        fn push_figures(
            b: &mut sqlx::query_builder::Separated<'_, $db, &'static str>,
            f: &StoredFigures,
        ) {
            b.push_bind(f.quality.clone())
                .push_bind(f.readings)
                .push_bind(f.gas_quality.clone())
                .push_bind(f.gas_litres)
                .push_bind(f.gas_register_start)
                .push_bind(f.gas_register_end)
                .push_bind(f.energy_quality.clone())
                .push_bind(f.energy_wh)
                .push_bind(f.energy_register_start)
                .push_bind(f.energy_register_end);
        }

        /// The latest first day closed of `kind`.
        pub async fn latest_closed(conn: &mut Conn, kind: &str) -> Result<Option<NaiveDate>> {
            Ok(sqlx::query_scalar(
                "SELECT first_day FROM billing_periods WHERE kind = $1 \
                 ORDER BY first_day DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(&mut *conn)
            .await?)
        }

        /// The highest meter id closed for the period of `kind` starting on `first_day`.
        pub async fn last_closed_meter(
            conn: &mut Conn,
            kind: &str,
            first_day: NaiveDate,
        ) -> Result<Option<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT meter_id FROM billing_periods WHERE kind = $1 AND first_day = $2 \
                 ORDER BY meter_id DESC LIMIT 1",
            )
            .bind(kind)
            .bind(first_day)
            .fetch_optional(&mut *conn)
            .await?)
        }

        /// Stores closed periods; a period already closed keeps its row. Returns how many
        /// were new.
        pub async fn close(conn: &mut Conn, rows: &[ClosedPeriod]) -> Result<u64> {
            let mut new = 0;
            for part in rows.chunks(INSERT_ROWS) {
                let mut b = sqlx::QueryBuilder::<$db>::new(concat!(
                    "INSERT INTO billing_periods (",
                    closed_columns!(),
                    ") "
                ));
                b.push_values(part, |mut b, r| {
                    b.push_bind(r.meter_id)
                        .push_bind(r.kind.clone())
                        .push_bind(r.first_day)
                        .push_bind(r.period_start)
                        .push_bind(r.period_end);
                    push_figures(&mut b, &r.figures);
                    b.push_bind(r.closed_at);
                });
                b.push(" ON CONFLICT (meter_id, kind, first_day) DO NOTHING");
                new += b.build().execute(&mut *conn).await?.rows_affected();
            }
            Ok(new)
        }

        /// The closed periods of `kind` with first days in [from, to) of the meters with ids
        /// in (after, last], by meter and date, each with its count of revisions and its
        /// latest revision's figures: one query, through the primary keys.
        pub async fn published_between(
            conn: &mut Conn,
            kind: &str,
            (from, to): (NaiveDate, NaiveDate),
            (after, last): (i64, i64),
        ) -> Result<Vec<PublishedPeriod>> {
            Ok(sqlx::query_as(PUBLISHED_BETWEEN)
                .bind(kind)
                .bind(from)
                .bind(to)
                .bind(after)
                .bind(last)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// The published figures of the closed periods of `kind` with first days in
        /// [from, to) of the meters now in `region`, summed per period, usage type and
        /// quality (consumption of the billable qualities only).
        pub async fn region_sums(
            conn: &mut Conn,
            kind: &str,
            (from, to): (NaiveDate, NaiveDate),
            region: &str,
        ) -> Result<Vec<ClosedSum>> {
            Ok(sqlx::query_as(REGION_SUMS)
                .bind(kind)
                .bind(from)
                .bind(to)
                .bind(region)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// How many meters are now in `region`.
        pub async fn region_meter_count(conn: &mut Conn, region: &str) -> Result<i64> {
            Ok(
                sqlx::query_scalar("SELECT count(*) FROM meters WHERE region_id = $1")
                    .bind(region)
                    .fetch_one(&mut *conn)
                    .await?,
            )
        }

        /// The earliest first day closed of `kind`.
        pub async fn earliest_closed(conn: &mut Conn, kind: &str) -> Result<Option<NaiveDate>> {
            Ok(sqlx::query_scalar(
                "SELECT first_day FROM billing_periods WHERE kind = $1 \
                 ORDER BY first_day LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(&mut *conn)
            .await?)
        }

        /// The meters with ids in (after, last] closed for the period of `kind` starting on
        /// `first_day`, in id order.
        pub async fn closed_meters(
            conn: &mut Conn,
            kind: &str,
            first_day: NaiveDate,
            (after, last): (i64, i64),
        ) -> Result<Vec<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT meter_id FROM billing_periods WHERE kind = $1 AND first_day = $2 \
                 AND meter_id > $3 AND meter_id <= $4 ORDER BY meter_id",
            )
            .bind(kind)
            .bind(first_day)
            .bind(after)
            .bind(last)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// A meter's revisions with ids above `after`, oldest first.
        pub async fn revisions_of_meter(
            conn: &mut Conn,
            meter_id: i64,
            after: i64,
            limit: i64,
        ) -> Result<Vec<StoredRevision>> {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                revision_columns!(),
                " FROM billing_revisions WHERE meter_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(meter_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// The oldest-noted late readings, by meter and time, at most `limit`.
        pub async fn late_readings(conn: &mut Conn, limit: i64) -> Result<Vec<LateReading>> {
            Ok(sqlx::query_as(
                "SELECT l.meter_id, l.reading_time, m.region_id FROM \
                 (SELECT meter_id, reading_time FROM billing_late_readings \
                  ORDER BY meter_id, reading_time LIMIT $1) l \
                 JOIN meters m ON m.id = l.meter_id ORDER BY l.meter_id, l.reading_time",
            )
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// A meter's closed periods of `kind` with first days in [from, to), by date.
        pub async fn closed_of_meter(
            conn: &mut Conn,
            meter_id: i64,
            kind: &str,
            (from, to): (NaiveDate, NaiveDate),
        ) -> Result<Vec<ClosedPeriod>> {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                closed_columns!(),
                " FROM billing_periods WHERE meter_id = $1 AND kind = $2 AND first_day >= $3 \
                 AND first_day < $4 ORDER BY first_day"
            ))
            .bind(meter_id)
            .bind(kind)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// A meter's revisions of the periods of `kind` with first days in [from, to).
        pub async fn revisions_of_periods(
            conn: &mut Conn,
            meter_id: i64,
            kind: &str,
            (from, to): (NaiveDate, NaiveDate),
        ) -> Result<Vec<StoredRevision>> {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                revision_columns!(),
                " FROM billing_revisions WHERE meter_id = $1 AND kind = $2 AND first_day >= $3 \
                 AND first_day < $4 ORDER BY first_day, revision"
            ))
            .bind(meter_id)
            .bind(kind)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// A meter's closed periods (every kind) that overlap [from, to), by kind and date.
        pub async fn closed_overlapping(
            conn: &mut Conn,
            meter_id: i64,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
        ) -> Result<Vec<ClosedPeriod>> {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                closed_columns!(),
                " FROM billing_periods WHERE meter_id = $1 AND period_start < $3 \
                 AND period_end > $2 ORDER BY kind, first_day"
            ))
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Adds a revision numbered after the period's latest (its `revision` is ignored):
        /// the revision as stored.
        pub async fn add_revision(conn: &mut Conn, r: &StoredRevision) -> Result<StoredRevision> {
            let (id, revision): (i64, i32) = sqlx::query_as(
                "INSERT INTO billing_revisions (meter_id, kind, first_day, revision, \
                 revised_at, reason, reading_time, old_quality, old_gas_litres, \
                 old_energy_wh, quality, readings, gas_quality, gas_litres, \
                 gas_register_start, gas_register_end, energy_quality, energy_wh, \
                 energy_register_start, energy_register_end) \
                 SELECT $1, $2, $3, COALESCE(MAX(revision), 0) + 1, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19 FROM billing_revisions \
                 WHERE meter_id = $1 AND kind = $2 AND first_day = $3 RETURNING id, revision",
            )
            .bind(r.meter_id)
            .bind(&r.kind)
            .bind(r.first_day)
            .bind(r.revised_at)
            .bind(&r.reason)
            .bind(r.reading_time)
            .bind(&r.old_quality)
            .bind(r.old_gas_litres)
            .bind(r.old_energy_wh)
            .bind(&r.figures.quality)
            .bind(r.figures.readings)
            .bind(&r.figures.gas_quality)
            .bind(r.figures.gas_litres)
            .bind(r.figures.gas_register_start)
            .bind(r.figures.gas_register_end)
            .bind(&r.figures.energy_quality)
            .bind(r.figures.energy_wh)
            .bind(r.figures.energy_register_start)
            .bind(r.figures.energy_register_end)
            .fetch_one(&mut *conn)
            .await?;
            Ok(StoredRevision {
                id,
                revision,
                ..r.clone()
            })
        }

        /// Adds revisions (a revision number already taken is kept as it is) and forgets the
        /// late readings they were looked for from. Returns the revisions added.
        pub async fn revise(
            conn: &mut Conn,
            revisions: &[StoredRevision],
            done: &[LateReading],
        ) -> Result<Vec<StoredRevision>> {
            let mut added = Vec::new();
            for r in revisions {
                let mut b = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO billing_revisions (meter_id, kind, first_day, revision, \
                     revised_at, reason, reading_time, old_quality, old_gas_litres, \
                     old_energy_wh, quality, readings, gas_quality, gas_litres, \
                     gas_register_start, gas_register_end, energy_quality, energy_wh, \
                     energy_register_start, energy_register_end) ",
                );
                b.push_values(std::iter::once(r), |mut b, r| {
                    b.push_bind(r.meter_id)
                        .push_bind(r.kind.clone())
                        .push_bind(r.first_day)
                        .push_bind(r.revision)
                        .push_bind(r.revised_at)
                        .push_bind(r.reason.clone())
                        .push_bind(r.reading_time)
                        .push_bind(r.old_quality.clone())
                        .push_bind(r.old_gas_litres)
                        .push_bind(r.old_energy_wh);
                    push_figures(&mut b, &r.figures);
                });
                b.push(
                    " ON CONFLICT (meter_id, kind, first_day, revision) DO NOTHING RETURNING id",
                );
                let id: Option<i64> = b.build_query_scalar().fetch_optional(&mut *conn).await?;
                if let Some(id) = id {
                    added.push(StoredRevision { id, ..r.clone() });
                }
            }
            for l in done {
                sqlx::query(
                    "DELETE FROM billing_late_readings WHERE meter_id = $1 AND reading_time = $2",
                )
                .bind(l.meter_id)
                .bind(l.reading_time)
                .execute(&mut *conn)
                .await?;
            }
            Ok(added)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    /// A chunk's closed periods, each joined to its latest revision through the revisions'
    /// unique key.
    const PUBLISHED_BETWEEN: &str = concat!(
        published_columns!(),
        " FROM billing_periods b LEFT JOIN billing_revisions l ON l.meter_id = b.meter_id \
         AND l.kind = b.kind AND l.first_day = b.first_day AND l.revision = \
         (SELECT max(x.revision) FROM billing_revisions x WHERE x.meter_id = b.meter_id \
          AND x.kind = b.kind AND x.first_day = b.first_day) ",
        published_where!()
    );
    /// A region's meters joined to their closed rows through the primary key.
    const REGION_SUMS: &str = concat!(
        sums_columns!(),
        " FROM meters m JOIN billing_periods b ON b.meter_id = m.id \
         WHERE m.region_id = $4 AND b.kind = $1 AND b.first_day >= $2 AND b.first_day < $3 ",
        sums_group!()
    );
    billing_period_queries!(sqlx::Sqlite);

    /// Notes readings that may fall in closed periods (inside the ingest transaction).
    pub async fn note_late(
        conn: &mut Conn,
        late: &[(i64, DateTime<Utc>)],
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        for part in late.chunks(INSERT_ROWS) {
            let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO billing_late_readings (meter_id, reading_time, received_at) ",
            );
            b.push_values(part, |mut b, (meter_id, at)| {
                b.push_bind(*meter_id).push_bind(*at).push_bind(received_at);
            });
            b.push(" ON CONFLICT (meter_id, reading_time) DO NOTHING");
            b.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    /// A chunk's closed periods, each with its latest revision found by a lateral subquery
    /// (one probe of the revisions' unique key per period: the planner would otherwise hash
    /// the whole revisions table).
    const PUBLISHED_BETWEEN: &str = concat!(
        published_columns!(),
        " FROM billing_periods b LEFT JOIN LATERAL (SELECT revision, revised_at, quality, \
         gas_litres, energy_wh FROM billing_revisions r WHERE r.meter_id = b.meter_id \
         AND r.kind = b.kind AND r.first_day = b.first_day ORDER BY r.revision DESC LIMIT 1) l \
         ON true ",
        published_where!()
    );
    /// A region's meters, each with its closed rows of the range read through the primary
    /// key (kept a separate subquery by `OFFSET 0`, so that a long range of days is not
    /// read by scanning the table).
    const REGION_SUMS: &str = concat!(
        sums_columns!(),
        " FROM meters m CROSS JOIN LATERAL (SELECT first_day, quality, gas_litres, energy_wh \
         FROM billing_periods p WHERE p.meter_id = m.id AND p.kind = $1 \
         AND p.first_day >= $2 AND p.first_day < $3 OFFSET 0) b WHERE m.region_id = $4 ",
        sums_group!()
    );
    billing_period_queries!(sqlx::Postgres);

    /// Notes readings that may fall in closed periods (inside the ingest transaction): one
    /// statement, the columns as arrays, so its text (and prepared statement) is the same for
    /// every batch.
    pub async fn note_late(
        conn: &mut Conn,
        late: &[(i64, DateTime<Utc>)],
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        if late.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO billing_late_readings (meter_id, reading_time, received_at) \
             SELECT meter_id, reading_time, $3 FROM unnest($1::bigint[], $2::timestamptz[]) \
             AS v (meter_id, reading_time) ON CONFLICT (meter_id, reading_time) DO NOTHING",
        )
        .bind(late.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(late.iter().map(|l| l.1).collect::<Vec<_>>())
        .bind(received_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl Store {
    /// The latest first day of a closed period of `kind`.
    pub async fn latest_closed(&self, kind: &str) -> Result<Option<NaiveDate>> {
        on_reader!(self, |c, q| q::latest_closed(c, kind).await, self)
    }

    /// The highest meter id closed for the period of `kind` starting on `first_day`.
    pub async fn last_closed_meter(&self, kind: &str, first_day: NaiveDate) -> Result<Option<i64>> {
        on_reader!(
            self,
            |c, q| q::last_closed_meter(c, kind, first_day).await,
            self
        )
    }

    /// Stores closed periods, idempotently; `hold` sees how many were new before the commit
    /// (see `in_held_transaction!`).
    pub async fn close_periods<H>(
        &self,
        rows: &[ClosedPeriod],
        hold: impl FnOnce(&u64) -> H,
    ) -> Result<(u64, H)> {
        in_held_transaction!(self, |c, q| q::close(c, rows).await, self, hold)
    }

    /// The closed periods of `kind` with first days in `days` [from, to) of the meters with
    /// ids in `meters` (after, last], by meter and date, with their revisions' count and the
    /// latest revision's figures, in one query.
    pub async fn published_between(
        &self,
        kind: &str,
        days: (NaiveDate, NaiveDate),
        meters: (i64, i64),
    ) -> Result<Vec<PublishedPeriod>> {
        on_reader!(
            self,
            |c, q| q::published_between(c, kind, days, meters).await,
            self
        )
    }

    /// The published figures of `region`'s closed periods of `kind` with first days in
    /// `days` [from, to), summed in the database per period, usage type and quality.
    pub async fn region_sums(
        &self,
        kind: &str,
        days: (NaiveDate, NaiveDate),
        region: &str,
    ) -> Result<Vec<ClosedSum>> {
        on_reader!(
            self,
            |c, q| q::region_sums(c, kind, days, region).await,
            self
        )
    }

    /// How many meters are now in `region`.
    pub async fn region_meter_count(&self, region: &str) -> Result<i64> {
        on_reader!(self, |c, q| q::region_meter_count(c, region).await, self)
    }

    /// The earliest first day of a closed period of `kind`.
    pub async fn earliest_closed(&self, kind: &str) -> Result<Option<NaiveDate>> {
        on_reader!(self, |c, q| q::earliest_closed(c, kind).await, self)
    }

    /// The meters with ids in `meters` (after, last] closed for the period of `kind` starting
    /// on `first_day`, in id order.
    pub async fn closed_meters(
        &self,
        kind: &str,
        first_day: NaiveDate,
        meters: (i64, i64),
    ) -> Result<Vec<i64>> {
        on_reader!(
            self,
            |c, q| q::closed_meters(c, kind, first_day, meters).await,
            self
        )
    }

    /// A meter's closed periods of `kind` with first days in `days` [from, to).
    pub async fn closed_of_meter(
        &self,
        meter_id: i64,
        kind: &str,
        days: (NaiveDate, NaiveDate),
    ) -> Result<Vec<ClosedPeriod>> {
        on_reader!(
            self,
            |c, q| q::closed_of_meter(c, meter_id, kind, days).await,
            self
        )
    }

    /// A meter's revisions of those periods, by date and revision.
    pub async fn revisions_of_periods(
        &self,
        meter_id: i64,
        kind: &str,
        days: (NaiveDate, NaiveDate),
    ) -> Result<Vec<StoredRevision>> {
        on_reader!(
            self,
            |c, q| q::revisions_of_periods(c, meter_id, kind, days).await,
            self
        )
    }

    /// A meter's closed periods (every kind) that overlap [from, to), by kind and date.
    pub async fn closed_overlapping(
        &self,
        meter_id: i64,
        range: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<ClosedPeriod>> {
        on_reader!(
            self,
            |c, q| q::closed_overlapping(c, meter_id, range).await,
            self
        )
    }

    /// A meter's revisions with ids above `after`, oldest first, at most `limit`.
    pub async fn revisions_of_meter(
        &self,
        meter_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredRevision>> {
        on_reader!(
            self,
            |c, q| q::revisions_of_meter(c, meter_id, after, limit).await,
            self
        )
    }

    /// The oldest-noted late readings, at most `limit`.
    pub async fn late_readings(&self, limit: i64) -> Result<Vec<LateReading>> {
        on_reader!(self, |c, q| q::late_readings(c, limit).await, self)
    }

    /// Adds `revisions` and forgets the late readings `done`, in one transaction; `hold`
    /// sees the revisions added before the commit.
    pub async fn revise<H>(
        &self,
        revisions: &[StoredRevision],
        done: &[LateReading],
        hold: impl FnOnce(&Vec<StoredRevision>) -> H,
    ) -> Result<(Vec<StoredRevision>, H)> {
        in_held_transaction!(self, |c, q| q::revise(c, revisions, done).await, self, hold)
    }
}
