//! Monitoring state: what the alarm rules remember per meter, the silence sweep, the alarm
//! outbox and the scheduler's lease.

use chrono::{DateTime, Utc};

use crate::monitor::rules::MeterState;

/// A reading's effect on the remembered state of its meter.
#[derive(Debug, Clone, PartialEq)]
pub struct StateUpdate {
    /// The meter.
    pub meter_id: i64,
    /// The state after the reading.
    pub state: MeterState,
    /// Clock drift measured (ms) and when.
    pub drift: Option<(i64, DateTime<Utc>)>,
}

/// An alarm waiting to be delivered, with its meter's identity.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxItem {
    /// Outbox entry.
    pub id: i64,
    /// The alarm's JSON as written when raised.
    pub payload: String,
    /// Deliveries tried so far.
    pub attempts: i32,
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// Its serial.
    pub serial: String,
    /// Its region.
    pub region_id: String,
}

/// A meter the silence sweep found overdue.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Overdue {
    /// The meter.
    pub id: i64,
    /// When it was due.
    pub overdue_at: DateTime<Utc>,
    /// Last heard.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Its region.
    pub region_id: String,
}

#[derive(sqlx::FromRow)]
struct StateRow {
    id: i64,
    valve: Option<i16>,
    register_value: Option<i64>,
    register_at: Option<DateTime<Utc>>,
    daily_consumption_avg: Option<f64>,
    consumption_samples: i32,
}

impl StateRow {
    fn into_state(self) -> (i64, MeterState) {
        (
            self.id,
            MeterState {
                valve: self.valve,
                register: self.register_value,
                register_at: self.register_at,
                daily_average: self.daily_consumption_avg,
                samples: self.consumption_samples,
            },
        )
    }
}

macro_rules! monitor_queries {
    ($db:ty, $dialect:ident) => {
        use chrono::{DateTime, Utc};

        use super::*;
        use crate::storage::Result;
        use crate::storage::alarms::NewAlarm;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Marks up to `limit` reporting meters in service whose overdue time has passed as
        /// silent and
        /// raises `noConnection` for each, unless ChirpStack is known to discard the meter's
        /// uplinks (an open frame-counter alarm says why it is not heard). Returns the
        /// meters marked.
        pub async fn mark_silent(
            conn: &mut Conn,
            now: DateTime<Utc>,
            limit: i64,
        ) -> Result<Vec<Overdue>> {
            let overdue: Vec<Overdue> = sqlx::query_as(
                "SELECT id, overdue_at, last_seen_at, region_id FROM meters \
                 WHERE status IN ('installed', 'active') AND overdue_at < $1 \
                 AND service_state = 'in_service' ORDER BY overdue_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            let mut alarms = Vec::new();
            for m in &overdue {
                let marked = sqlx::query(
                    "UPDATE meters SET status = 'silent', updated_at = $2 \
                     WHERE id = $1 AND status IN ('installed', 'active') AND overdue_at < $2 \
                     AND service_state = 'in_service'",
                )
                .bind(m.id)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if marked == 0 {
                    continue;
                }
                let discarded: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM alarms WHERE meter_id = $1 AND state <> 'cleared' \
                     AND kind IN ('frameCounterReset', 'frameCounterRetransmission')",
                )
                .bind(m.id)
                .fetch_optional(&mut *conn)
                .await?;
                if discarded.is_some() {
                    continue;
                }
                alarms.push(NewAlarm {
                    meter_id: m.id,
                    kind: "noConnection".into(),
                    source: "server".into(),
                    raised_at: m.overdue_at,
                    value: None,
                    received_at: now,
                    detail: Some(match m.last_seen_at {
                        Some(t) => format!("nothing heard since {}", t.to_rfc3339()),
                        None => "never heard".to_owned(),
                    }),
                });
            }
            crate::storage::alarms::$dialect::insert(conn, &alarms).await?;
            Ok(overdue)
        }

        /// Undelivered alarms due for an attempt, oldest first.
        pub async fn due_outbox(
            conn: &mut Conn,
            now: DateTime<Utc>,
            limit: i64,
        ) -> Result<Vec<OutboxItem>> {
            Ok(sqlx::query_as(
                "SELECT o.id, o.payload, o.attempts, m.dev_eui, m.serial, m.region_id \
                 FROM alarm_outbox o JOIN alarms a ON a.id = o.alarm_id \
                 JOIN meters m ON m.id = a.meter_id \
                 WHERE o.delivered_at IS NULL AND o.next_attempt_at <= $1 \
                 ORDER BY o.next_attempt_at, o.id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Records a delivery attempt: delivered, or to be retried at `retry_at`.
        pub async fn delivery(
            conn: &mut Conn,
            id: i64,
            outcome: std::result::Result<(), (&str, DateTime<Utc>)>,
            now: DateTime<Utc>,
        ) -> Result<()> {
            let q = match outcome {
                Ok(()) => sqlx::query(
                    "UPDATE alarm_outbox SET delivered_at = $2, attempts = attempts + 1, \
                     last_error = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(now),
                Err((error, retry_at)) => sqlx::query(
                    "UPDATE alarm_outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(error.to_owned())
                .bind(retry_at),
            };
            q.execute(&mut *conn).await?;
            Ok(())
        }

        /// Gives a lease up (at shutdown), if `holder` has it.
        pub async fn release_lease(conn: &mut Conn, name: &str, holder: &str) -> Result<()> {
            sqlx::query(
                "UPDATE leases SET holder = NULL, expires_at = NULL WHERE name = $1 AND holder = $2",
            )
            .bind(name)
            .bind(holder)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Takes or renews the lease `name` for `holder` until `until` if it is free, expired
        /// or already the holder's; returns whether the holder has it.
        pub async fn take_lease(
            conn: &mut Conn,
            name: &str,
            holder: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<bool> {
            Ok(sqlx::query(
                "UPDATE leases SET holder = $2, expires_at = $4 WHERE name = $1 \
                 AND (holder IS NULL OR holder = $2 OR expires_at IS NULL OR expires_at < $3)",
            )
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(until)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    monitor_queries!(sqlx::Sqlite, sqlite);

    /// The remembered state of these meters. (SQLite has one writer: nothing to lock.)
    pub async fn states(conn: &mut Conn, meter_ids: &[i64]) -> Result<Vec<(i64, MeterState)>> {
        let mut out = Vec::with_capacity(meter_ids.len());
        for chunk in meter_ids.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id, valve, register_value, register_at, daily_consumption_avg, \
                 consumption_samples FROM meters WHERE id IN (",
            );
            let mut list = q.separated(", ");
            // Padded with NULLs, which match nothing: see `padding`.
            for id in crate::storage::padding::rows(chunk, 1_000) {
                list.push_bind(id.copied());
            }
            q.push(")");
            let rows: Vec<StateRow> = q.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(rows.into_iter().map(StateRow::into_state));
        }
        Ok(out)
    }

    /// Clears the open alarms of `kind` of these meters (they were heard again).
    pub async fn clear_kind(
        conn: &mut Conn,
        meter_ids: &[i64],
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut cleared = 0;
        for chunk in meter_ids.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE alarms SET state = 'cleared', cleared_at = ",
            );
            q.push_bind(now)
                .push(" WHERE kind = ")
                .push_bind(kind.to_owned())
                .push(" AND state <> 'cleared' AND meter_id IN (");
            let mut list = q.separated(", ");
            // Padded with NULLs, which match nothing: see `padding`.
            for id in crate::storage::padding::rows(chunk, 1_000) {
                list.push_bind(id.copied());
            }
            q.push(")");
            cleared += q.build().execute(&mut *conn).await?.rows_affected();
        }
        Ok(cleared)
    }

    /// Writes the remembered state of a batch's meters in one statement per thousand.
    pub async fn update_states(conn: &mut Conn, updates: &[StateUpdate]) -> Result<()> {
        // SQLite takes each value's type from its bind: the VALUES need no casts.
        const ROWS: usize = 1_000;
        for chunk in updates.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "WITH v (id, valve, reg, reg_at, avg, samples, drift, drift_at) AS (",
            );
            // Padded with rows of NULLs, which match no meter.
            let rows = crate::storage::padding::rows(chunk, ROWS);
            q.push_values(rows, |mut b, u| {
                let drift = u.and_then(|u| u.drift);
                b.push_bind(u.map(|u| u.meter_id))
                    .push_bind(u.and_then(|u| u.state.valve))
                    .push_bind(u.and_then(|u| u.state.register))
                    .push_bind(u.and_then(|u| u.state.register_at))
                    .push_bind(u.and_then(|u| u.state.daily_average))
                    .push_bind(u.map(|u| u.state.samples))
                    .push_bind(drift.map(|d| d.0))
                    .push_bind(drift.map(|d| d.1));
            });
            q.push(
                ") UPDATE meters SET valve = v.valve, register_value = v.reg, \
                 register_at = v.reg_at, daily_consumption_avg = v.avg, \
                 consumption_samples = v.samples, \
                 clock_drift_ms = COALESCE(v.drift, meters.clock_drift_ms), \
                 drift_measured_at = COALESCE(v.drift_at, meters.drift_measured_at) \
                 FROM v WHERE meters.id = v.id",
            );
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    monitor_queries!(sqlx::Postgres, postgres);

    /// The remembered state of these meters, their rows locked in id order until the
    /// transaction ends.
    ///
    /// The ingest transaction calls it first, with every meter its batch names: two instances
    /// on a shared subscription then take their common meters' locks in the same order, where
    /// the final `UPDATE meters … FROM unnest(…)` took them in whatever order its join produced
    /// and could deadlock. One statement through the primary key, the ids as one array.
    pub async fn states(conn: &mut Conn, meter_ids: &[i64]) -> Result<Vec<(i64, MeterState)>> {
        if meter_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<StateRow> = sqlx::query_as(
            "SELECT id, valve, register_value, register_at, daily_consumption_avg, \
             consumption_samples FROM meters WHERE id = ANY($1::bigint[]) \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(meter_ids)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(StateRow::into_state).collect())
    }

    /// Clears the open alarms of `kind` of these meters (they were heard again): one
    /// statement through the open alarms' index, the ids as one array.
    pub async fn clear_kind(
        conn: &mut Conn,
        meter_ids: &[i64],
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        if meter_ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "UPDATE alarms SET state = 'cleared', cleared_at = $1 \
             WHERE meter_id = ANY($2::bigint[]) AND kind = $3 AND state <> 'cleared'",
        )
        .bind(now)
        .bind(meter_ids)
        .bind(kind)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }
}
