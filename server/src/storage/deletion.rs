//! Deleting part of a meter's data: its readings or alarms in a time range, each deletion in
//! one transaction with its audit row (and, for readings inside closed billing periods, a
//! revision of each such period). What may be deleted, and the revisions' figures, are
//! decided in `registry::deletion`.

use chrono::{DateTime, Utc};

use super::billing_periods::StoredRevision;
use super::lifecycle::{Actor, NewAudit};
use sqlx::Connection;

use super::{Result, Store};

/// The rows of a meter in a time range, as a deletion would find them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InRange {
    /// How many.
    pub count: i64,
    /// The earliest's time.
    pub first: Option<DateTime<Utc>>,
    /// The latest's time.
    pub last: Option<DateTime<Utc>>,
}

/// Which of a meter's data: its readings (by reading time) or its alarms (by time raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Readings.
    Readings,
    /// Alarms.
    Alarms,
}

impl Data {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Data::Readings => "readings",
            Data::Alarms => "alarms",
        }
    }
}

/// What a customer's erasure finds (or changed): the rows naming them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomerRows {
    /// Their meters and the meters that served their supply points: (id, DevEUI, region).
    pub meters: Vec<(i64, String, String)>,
    /// Meters registered to them.
    pub registered_meters: i64,
    /// Their supply points.
    pub supply_points: i64,
    /// Field visits whose notes name them.
    pub inspections: i64,
    /// Audit rows whose before or after names them.
    pub audit_rows: i64,
    /// Final reports naming them.
    pub final_reports: i64,
}

impl CustomerRows {
    /// Whether nothing names the customer.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
            && self.supply_points == 0
            && self.inspections == 0
            && self.audit_rows == 0
            && self.final_reports == 0
    }
}

/// The ids of customer `$1`'s meters: registered to them, or serving (or having served)
/// one of their supply points.
macro_rules! customer_meters {
    () => {
        "SELECT id FROM meters WHERE user_id = $1 UNION SELECT i.meter_id FROM installations i \
         JOIN supply_points s ON s.id = i.supply_point_id WHERE s.user_id = $1"
    };
}

macro_rules! deletion_queries {
    ($db:ty, $dialect:ident, $find:literal) => {
        use chrono::{DateTime, Utc};

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// The meter's readings (or alarms) in [from, to).
        pub async fn in_range(
            conn: &mut Conn,
            data: Data,
            meter_id: i64,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
        ) -> Result<InRange> {
            // Fixed texts by `data`: the table and its time column.
            let (count, first, last) = match data {
                Data::Readings => (
                    "SELECT count(*) FROM readings \
                     WHERE meter_id = $1 AND reading_time >= $2 AND reading_time < $3",
                    "SELECT reading_time FROM readings WHERE meter_id = $1 \
                     AND reading_time >= $2 AND reading_time < $3 ORDER BY reading_time LIMIT 1",
                    "SELECT reading_time FROM readings WHERE meter_id = $1 \
                     AND reading_time >= $2 AND reading_time < $3 \
                     ORDER BY reading_time DESC LIMIT 1",
                ),
                Data::Alarms => (
                    "SELECT count(*) FROM alarms \
                     WHERE meter_id = $1 AND raised_at >= $2 AND raised_at < $3",
                    "SELECT raised_at FROM alarms WHERE meter_id = $1 \
                     AND raised_at >= $2 AND raised_at < $3 ORDER BY raised_at LIMIT 1",
                    "SELECT raised_at FROM alarms WHERE meter_id = $1 \
                     AND raised_at >= $2 AND raised_at < $3 ORDER BY raised_at DESC LIMIT 1",
                ),
            };
            let count: i64 = sqlx::query_scalar(count)
                .bind(meter_id)
                .bind(from)
                .bind(to)
                .fetch_one(&mut *conn)
                .await?;
            let edge = |sql: &'static str| {
                sqlx::query_scalar::<_, DateTime<Utc>>(sql)
                    .bind(meter_id)
                    .bind(from)
                    .bind(to)
            };
            let first = edge(first).fetch_optional(&mut *conn).await?;
            let last = edge(last).fetch_optional(&mut *conn).await?;
            Ok(InRange { count, first, last })
        }

        /// Deletes the meter's readings in [from, to) (and the late readings noted among
        /// them), adds `revisions` (each numbered after the period's latest), and writes the
        /// audit row. The readings deleted and the revisions as stored.
        pub async fn delete_readings(
            conn: &mut Conn,
            meter_id: i64,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
            revisions: &[StoredRevision],
            audit: &NewAudit,
            who: &Actor,
        ) -> Result<(u64, Vec<StoredRevision>)> {
            let deleted = sqlx::query(
                "DELETE FROM readings \
                 WHERE meter_id = $1 AND reading_time >= $2 AND reading_time < $3",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            sqlx::query(
                "DELETE FROM billing_late_readings \
                 WHERE meter_id = $1 AND reading_time >= $2 AND reading_time < $3",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
            let mut stored = Vec::with_capacity(revisions.len());
            for r in revisions {
                stored.push(crate::storage::billing_periods::$dialect::add_revision(conn, r).await?);
            }
            let mut audit = audit.clone();
            if let Some(after) = audit.after.as_object_mut() {
                after.insert(
                    "revisions".into(),
                    serde_json::json!(
                        stored
                            .iter()
                            .map(|r| format!("{} {} revision {}", r.kind, r.first_day, r.revision))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            crate::storage::lifecycle::$dialect::audit(conn, &audit, who).await?;
            Ok((deleted, stored))
        }

        /// Deletes the meter's alarms raised in [from, to): the visits that named one keep
        /// their record without it, their webhook deliveries go with them; writes the audit
        /// row. The alarms deleted.
        pub async fn delete_alarms(
            conn: &mut Conn,
            meter_id: i64,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
            audit: &NewAudit,
            who: &Actor,
        ) -> Result<u64> {
            sqlx::query(
                "UPDATE inspections SET alarm_id = NULL WHERE alarm_id IN (SELECT id FROM alarms \
                 WHERE meter_id = $1 AND raised_at >= $2 AND raised_at < $3)",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM alarm_outbox WHERE alarm_id IN (SELECT id FROM alarms \
                 WHERE meter_id = $1 AND raised_at >= $2 AND raised_at < $3)",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
            let deleted = sqlx::query(
                "DELETE FROM alarms WHERE meter_id = $1 AND raised_at >= $2 AND raised_at < $3",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            crate::storage::lifecycle::$dialect::audit(conn, audit, who).await?;
            Ok(deleted)
        }

        /// The rows naming customer `user_id` (`json` is the id as a JSON string, as the
        /// audit rows and final reports hold it).
        pub async fn customer_rows(conn: &mut Conn, user_id: &str) -> Result<CustomerRows> {
            let json = serde_json::Value::from(user_id).to_string();
            let meters: Vec<(i64, String, String)> = sqlx::query_as(concat!(
                "SELECT id, dev_eui, region_id FROM meters WHERE id IN (",
                customer_meters!(),
                ") ORDER BY id"
            ))
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
            let count = |sql: &'static str, value: String| {
                sqlx::query_scalar::<_, i64>(sql).bind(value)
            };
            let registered_meters = count("SELECT count(*) FROM meters WHERE user_id = $1", user_id.into())
                .fetch_one(&mut *conn)
                .await?;
            let supply_points = count(
                "SELECT count(*) FROM supply_points WHERE user_id = $1",
                user_id.into(),
            )
            .fetch_one(&mut *conn)
            .await?;
            let inspections = count(
                concat!(
                    "SELECT count(*) FROM inspections WHERE ",
                    $find,
                    "(notes, $1) > 0 AND meter_id IN (",
                    customer_meters!(),
                    ")"
                ),
                user_id.into(),
            )
            .fetch_one(&mut *conn)
            .await?;
            let audit_rows = count(
                concat!(
                    "SELECT count(*) FROM meter_audit WHERE ",
                    $find,
                    "(before, $1) > 0 OR ",
                    $find,
                    "(after, $1) > 0"
                ),
                json.clone(),
            )
            .fetch_one(&mut *conn)
            .await?;
            let final_reports = count(
                concat!("SELECT count(*) FROM final_reports WHERE ", $find, "(report, $1) > 0"),
                json,
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok(CustomerRows {
                meters,
                registered_meters,
                supply_points,
                inspections,
                audit_rows,
                final_reports,
            })
        }

        /// Replaces customer `user_id` by `token` wherever it is stored (meters, supply
        /// points, visit notes, audit rows, final reports) and writes an `erase_customer`
        /// audit row for each of `meters`. What was changed.
        pub async fn erase_customer(
            conn: &mut Conn,
            user_id: &str,
            token: &str,
            meters: &[i64],
            who: &Actor,
        ) -> Result<CustomerRows> {
            let found = customer_rows(conn, user_id).await?;
            let json = serde_json::Value::from(user_id).to_string();
            let json_token = serde_json::Value::from(token).to_string();
            // The notes first, while the meters still name the customer: only their
            // meters' visits are looked at, so an id that is also part of other words
            // changes no one else's notes.
            for sql in [
                concat!(
                    "UPDATE inspections SET notes = replace(notes, $1, $2) WHERE ",
                    $find,
                    "(notes, $1) > 0 AND meter_id IN (",
                    customer_meters!(),
                    ")"
                ),
                "UPDATE meters SET user_id = $2 WHERE user_id = $1",
                "UPDATE supply_points SET user_id = $2 WHERE user_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(user_id)
                    .bind(token)
                    .execute(&mut *conn)
                    .await?;
            }
            for sql in [
                concat!(
                    "UPDATE meter_audit SET before = replace(before, $1, $2), \
                     after = replace(after, $1, $2) WHERE ",
                    $find,
                    "(before, $1) > 0 OR ",
                    $find,
                    "(after, $1) > 0"
                ),
                concat!(
                    "UPDATE final_reports SET report = replace(report, $1, $2) WHERE ",
                    $find,
                    "(report, $1) > 0"
                ),
            ] {
                sqlx::query(sql)
                    .bind(&json)
                    .bind(&json_token)
                    .execute(&mut *conn)
                    .await?;
            }
            for meter_id in meters {
                let audit = NewAudit {
                    meter_id: *meter_id,
                    action: super::super::lifecycle::AuditAction::EraseCustomer,
                    // The id itself is what is erased: the row says only that one was.
                    before: serde_json::json!({"userId": "(erased)"}),
                    after: serde_json::json!({"userId": token}),
                };
                crate::storage::lifecycle::$dialect::audit(conn, &audit, who).await?;
            }
            Ok(found)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    deletion_queries!(sqlx::Sqlite, sqlite, "instr");
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    deletion_queries!(sqlx::Postgres, postgres, "strpos");
}

impl Store {
    /// A meter's readings (or alarms) in [from, to).
    pub async fn in_range(
        &self,
        data: Data,
        meter_id: i64,
        range: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<InRange> {
        on_reader!(
            self,
            |c, q| q::in_range(c, data, meter_id, range).await,
            self
        )
    }

    /// Deletes a meter's readings in [from, to) with `revisions` and the audit row, in one
    /// transaction; `hold` sees the outcome before the commit (see `in_held_transaction!`).
    pub async fn delete_readings<H>(
        &self,
        meter_id: i64,
        range: (DateTime<Utc>, DateTime<Utc>),
        revisions: &[StoredRevision],
        (audit, who): (&NewAudit, &Actor),
        hold: impl FnOnce(&(u64, Vec<StoredRevision>)) -> H,
    ) -> Result<((u64, Vec<StoredRevision>), H)> {
        in_held_transaction!(
            self,
            |c, q| q::delete_readings(c, meter_id, range, revisions, audit, who).await,
            self,
            hold
        )
    }

    /// Deletes a meter's alarms raised in [from, to) with the audit row, in one transaction;
    /// `hold` as for [`Store::delete_readings`].
    pub async fn delete_alarms<H>(
        &self,
        meter_id: i64,
        range: (DateTime<Utc>, DateTime<Utc>),
        (audit, who): (&NewAudit, &Actor),
        hold: impl FnOnce(&u64) -> H,
    ) -> Result<(u64, H)> {
        in_held_transaction!(
            self,
            |c, q| q::delete_alarms(c, meter_id, range, audit, who).await,
            self,
            hold
        )
    }
}

impl Store {
    /// The rows naming customer `user_id`.
    pub async fn customer_rows(&self, user_id: &str) -> Result<CustomerRows> {
        on_reader!(self, |c, q| q::customer_rows(c, user_id).await, self)
    }

    /// Replaces customer `user_id` by `token` everywhere it is stored, with an audit row
    /// for each of `meters`, in one transaction; what was changed. `hold` as for
    /// [`Store::delete_readings`].
    pub async fn erase_customer<H>(
        &self,
        user_id: &str,
        token: &str,
        meters: &[i64],
        who: &Actor,
        hold: impl FnOnce(&CustomerRows) -> H,
    ) -> Result<(CustomerRows, H)> {
        in_held_transaction!(
            self,
            |c, q| q::erase_customer(c, user_id, token, meters, who).await,
            self,
            hold
        )
    }
}
