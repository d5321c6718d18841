//! Alarms raised by meters and by meterhub's own rules.

use chrono::{DateTime, Utc};

/// An alarm to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarm {
    /// The meter.
    pub meter_id: i64,
    /// Kind: the protocol's alarm kinds, or meterhub's own (`silent`, `selfTestFailed`…).
    pub kind: String,
    /// `meter` or `server`.
    pub source: String,
    /// When it was raised (the meter's clock for meter alarms).
    pub raised_at: DateTime<Utc>,
    /// The alarm's value, meaning by kind.
    pub value: Option<i64>,
    /// When meterhub received it.
    pub received_at: DateTime<Utc>,
    /// What raised it, in words (server rules).
    pub detail: Option<String>,
}

/// A stored alarm.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct Alarm {
    /// Id.
    pub id: i64,
    /// The meter.
    pub meter_id: i64,
    /// Kind.
    pub kind: String,
    /// `meter` or `server`.
    pub source: String,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// Value.
    pub value: Option<i64>,
    /// `open`, `acknowledged` or `cleared`.
    pub state: String,
    /// When meterhub received it.
    pub received_at: DateTime<Utc>,
    /// When someone acknowledged it.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it was cleared.
    pub cleared_at: Option<DateTime<Utc>>,
    /// How many times it was raised while open.
    pub occurrences: i32,
    /// The latest time it was raised.
    pub last_raised_at: Option<DateTime<Utc>>,
    /// What raised it, in words.
    pub detail: Option<String>,
}

/// The JSON an alarm leaves the system as (webhook), written when it is first raised.
pub fn outbox_payload(id: i64, a: &NewAlarm) -> String {
    serde_json::json!({
        "alarmId": id,
        "meterId": a.meter_id,
        "kind": a.kind,
        "source": a.source,
        "raisedAt": a.raised_at,
        "value": a.value,
        "detail": a.detail,
        "receivedAt": a.received_at,
    })
    .to_string()
}

macro_rules! alarm_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::QueryBuilder;

        use super::*;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        /// Raises alarms: a meter's open alarm of the same kind counts a repeat, otherwise a
        /// new open alarm is stored and queued for delivery (outbox). A replayed alarm (same
        /// meter, kind and time) changes nothing. Returns how many alarms were new.
        pub async fn insert(conn: &mut Conn, rows: &[NewAlarm]) -> Result<u64> {
            let mut inserted = 0;
            for a in rows {
                let repeated = sqlx::query(
                    "UPDATE alarms SET occurrences = occurrences + 1, \
                     last_raised_at = CASE WHEN last_raised_at IS NULL OR last_raised_at < $3 \
                     THEN $3 ELSE last_raised_at END \
                     WHERE meter_id = $1 AND kind = $2 AND state <> 'cleared' AND raised_at <> $3",
                )
                .bind(a.meter_id)
                .bind(&a.kind)
                .bind(a.raised_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if repeated > 0 {
                    continue;
                }
                // No conflict target: the replay key and the one-open-alarm key both hold.
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO alarms (meter_id, kind, source, raised_at, value, state, \
                     received_at, occurrences, last_raised_at, detail) \
                     VALUES ($1, $2, $3, $4, $5, 'open', $6, 1, $4, $7) \
                     ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(a.meter_id)
                .bind(&a.kind)
                .bind(&a.source)
                .bind(a.raised_at)
                .bind(a.value)
                .bind(a.received_at)
                .bind(&a.detail)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(id) = id else { continue };
                sqlx::query(
                    "INSERT INTO alarm_outbox (alarm_id, payload, created_at, attempts, \
                     next_attempt_at) VALUES ($1, $2, $3, 0, $3)",
                )
                .bind(id)
                .bind(outbox_payload(id, a))
                .bind(a.received_at)
                .execute(&mut *conn)
                .await?;
                inserted += 1;
            }
            Ok(inserted)
        }

        /// Alarms in a state (all when `None`), newest first, before the cursor `before_id`.
        pub async fn list(
            conn: &mut Conn,
            state: Option<&str>,
            before_id: i64,
            limit: i64,
        ) -> Result<Vec<Alarm>> {
            // The filter is added only when given, so that the (state, id) index serves it.
            let mut q = QueryBuilder::<$db>::new(
                "SELECT id, meter_id, kind, source, raised_at, value, state, received_at, \
                 acknowledged_at, acknowledged_by, cleared_at, occurrences, last_raised_at, \
                 detail FROM alarms WHERE id < ",
            );
            q.push_bind(before_id);
            if let Some(s) = state {
                q.push(" AND state = ").push_bind(s.to_owned());
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// Marks an open alarm acknowledged.
        pub async fn acknowledge(
            conn: &mut Conn,
            id: i64,
            by: &str,
            now: DateTime<Utc>,
        ) -> Result<()> {
            let done = sqlx::query(
                "UPDATE alarms SET state = 'acknowledged', acknowledged_at = $2, \
                 acknowledged_by = $3 WHERE id = $1 AND state = 'open'",
            )
            .bind(id)
            .bind(now)
            .bind(by)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(Error::NotFound);
            }
            Ok(())
        }

        /// Clears a meter's alarms of a kind raised at or before `at` that are not cleared yet;
        /// returns how many. An alarm raised after the clear (events arrive in any order) stays.
        pub async fn clear(
            conn: &mut Conn,
            meter_id: i64,
            kind: &str,
            now: DateTime<Utc>,
        ) -> Result<u64> {
            Ok(sqlx::query(
                "UPDATE alarms SET state = 'cleared', cleared_at = $3 \
                 WHERE meter_id = $1 AND kind = $2 AND state <> 'cleared' AND raised_at <= $3",
            )
            .bind(meter_id)
            .bind(kind)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected())
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    alarm_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    alarm_queries!(sqlx::Postgres);
}
