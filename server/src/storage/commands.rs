//! Downlink commands: meterhub's queue and the audit trail.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a command is in its life: `pending → queued → sent → acknowledged | nacked |
/// completed | failed | expired`.
pub const COMMAND_STATES: [&str; 8] = [
    "pending",
    "queued",
    "sent",
    "acknowledged",
    "nacked",
    "completed",
    "failed",
    "expired",
];

/// A stored command.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct CommandRow {
    /// Our id; ChirpStack's queue item id.
    pub id: Uuid,
    /// The meter.
    pub meter_id: i64,
    /// What it does, e.g. `valveClose`, `appTimeAns`.
    pub kind: String,
    /// LoRaWAN fPort.
    pub fport: i16,
    /// The application payload.
    pub payload: Vec<u8>,
    /// Whether the meter must acknowledge it.
    pub confirmed: bool,
    /// Who asked for it.
    pub requested_by: String,
    /// State, one of [`COMMAND_STATES`].
    pub state: String,
    /// Times it was handed to ChirpStack.
    pub attempts: i32,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Dropped unless sent by then.
    pub expires_at: DateTime<Utc>,
    /// When ChirpStack reported it transmitted (`txack`).
    pub sent_at: Option<DateTime<Utc>>,
    /// When the answering uplink arrived.
    pub completed_at: Option<DateTime<Utc>>,
    /// Fails unless answered by then (commands that wait for an answer).
    pub deadline_at: Option<DateTime<Utc>>,
    /// What completed it (JSON).
    pub result: Option<String>,
    /// The schedule that created it.
    pub schedule_id: Option<i64>,
}

/// A command with where to send it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Routed {
    /// The command.
    #[sqlx(flatten)]
    pub command: CommandRow,
    /// Its meter's DevEUI.
    pub dev_eui: String,
    /// Its meter's ChirpStack application.
    pub application_id: String,
    /// Uplinks of the meter heard since the command's last change while ChirpStack held it.
    pub uplinks_waited: i32,
}

/// What applying a report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The command's meter.
    pub meter_id: i64,
    /// A clock answer transmitted after a later uplink of its meter (it missed the windows
    /// of the uplink that asked).
    pub late_clock_answer: bool,
    /// A clock answer that will never be transmitted.
    pub missed_clock_answer: bool,
}

/// What ChirpStack reported about a queue item.
#[derive(Debug, Clone, PartialEq)]
pub enum Reported {
    /// `txack`: transmitted.
    Sent,
    /// `ack`: the device acknowledged (true) or missed (false) a confirmed item.
    Ack(bool),
    /// `log`: dropped, with the state it ends in (`expired` or `failed`) and why.
    Dropped {
        /// `expired` or `failed`.
        state: &'static str,
        /// ChirpStack's words.
        error: String,
    },
}

macro_rules! command_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::*;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        const COLUMNS: &str = "id, meter_id, kind, fport, payload, confirmed, requested_by, \
             state, attempts, error, created_at, updated_at, expires_at, sent_at, completed_at, \
             deadline_at, result, schedule_id";

        /// Stores a new command (its state as given, normally `pending`).
        pub async fn insert(conn: &mut Conn, c: &CommandRow) -> Result<()> {
            if !record(conn, c).await? {
                return Err(Error::Conflict(format!("command {} exists", c.id)));
            }
            Ok(())
        }

        /// Stores a command unless one with its id exists; returns whether it was new.
        pub async fn record(conn: &mut Conn, c: &CommandRow) -> Result<bool> {
            let done = sqlx::query(
                "INSERT INTO commands (id, meter_id, kind, fport, payload, confirmed, \
                 requested_by, state, attempts, error, created_at, updated_at, expires_at, \
                 sent_at, completed_at, deadline_at, result, schedule_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18) ON CONFLICT (id) DO NOTHING",
            )
            .bind(c.id)
            .bind(c.meter_id)
            .bind(&c.kind)
            .bind(c.fport)
            .bind(&c.payload)
            .bind(c.confirmed)
            .bind(&c.requested_by)
            .bind(&c.state)
            .bind(c.attempts)
            .bind(&c.error)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(c.expires_at)
            .bind(c.sent_at)
            .bind(c.completed_at)
            .bind(c.deadline_at)
            .bind(&c.result)
            .bind(c.schedule_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(done == 1)
        }

        /// A meter's unfinished commands (pending, queued, sent), oldest first, with where
        /// to send them.
        pub async fn open_for_device(conn: &mut Conn, dev_eui: &str) -> Result<Vec<Routed>> {
            let sql = format!(
                "SELECT {}, m.dev_eui, m.application_id, c.uplinks_waited FROM commands c \
                 JOIN meters m ON m.id = c.meter_id \
                 WHERE m.dev_eui = $1 AND c.state IN ('pending', 'queued', 'sent') \
                 ORDER BY c.created_at, c.id",
                prefixed("c.")
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(dev_eui)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Counts one more uplink of the meter against each of these commands.
        pub async fn count_uplink(conn: &mut Conn, ids: &[Uuid]) -> Result<()> {
            for id in ids {
                sqlx::query("UPDATE commands SET uplinks_waited = uplinks_waited + 1 WHERE id = $1")
                    .bind(*id)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Puts a command ChirpStack no longer holds back to `pending` (from `from`), with
        /// why; it goes out again under the same id. Whether it moved.
        pub async fn requeue(
            conn: &mut Conn,
            id: Uuid,
            from: &str,
            why: &str,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            Ok(sqlx::query(
                "UPDATE commands SET state = 'pending', error = $3, updated_at = $4, \
                 uplinks_waited = 0, sent_at = NULL, deadline_at = NULL \
                 WHERE id = $1 AND state = $2",
            )
            .bind(id)
            .bind(from)
            .bind(why)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }

        /// DevEUIs of meters with commands waiting to be released or awaited from ChirpStack.
        pub async fn pending_devices(conn: &mut Conn) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT m.dev_eui FROM commands c JOIN meters m ON m.id = c.meter_id \
                 WHERE c.state IN ('pending', 'queued', 'sent') \
                 AND (c.state <> 'sent' OR c.confirmed)",
            )
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Applies what ChirpStack reported about a queue item; returns the command's meter
        /// when it changed anything (a redelivered report changes nothing). `deadline` is set
        /// for commands that wait for an answer when they are sent.
        pub async fn report(
            conn: &mut Conn,
            id: Uuid,
            reported: &Reported,
            deadline: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> Result<Option<ReportOutcome>> {
            // A clock answer's fate is counted: what it was before the report says whether
            // it went out late, or never.
            let before: Option<(String, i32)> =
                sqlx::query_as("SELECT kind, uplinks_waited FROM commands WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let clock_answer = matches!(&before, Some((kind, _)) if kind == "appTimeAns");
            let q = match reported {
                Reported::Sent => sqlx::query(
                    "UPDATE commands SET state = 'sent', sent_at = $2, updated_at = $2, \
                     uplinks_waited = 0, \
                     deadline_at = CASE WHEN kind IN ('selfTest', 'readNow', 'sendInfo', \
                     'setReportingInterval', 'forceResync', 'clockPeriodicity', \
                     'packageVersion') THEN $3 ELSE NULL END \
                     WHERE id = $1 AND state IN ('pending', 'queued') RETURNING meter_id",
                )
                .bind(id)
                .bind(now)
                .bind(deadline),
                // A command the meter answered may be completed before its ack is read.
                Reported::Ack(true) => sqlx::query(
                    "UPDATE commands SET state = CASE WHEN state = 'completed' THEN state \
                     ELSE 'acknowledged' END, sent_at = COALESCE(sent_at, $2), updated_at = $2 \
                     WHERE id = $1 AND state IN ('queued', 'sent', 'completed') RETURNING meter_id",
                )
                .bind(id)
                .bind(now),
                Reported::Ack(false) => sqlx::query(
                    "UPDATE commands SET state = 'nacked', updated_at = $2, \
                     error = 'the meter did not acknowledge it' \
                     WHERE id = $1 AND state IN ('queued', 'sent') RETURNING meter_id",
                )
                .bind(id)
                .bind(now),
                Reported::Dropped { state, error } => sqlx::query(
                    "UPDATE commands SET state = $3, error = $4, updated_at = $2 \
                     WHERE id = $1 AND state IN ('pending', 'queued', 'sent') RETURNING meter_id",
                )
                .bind(id)
                .bind(now)
                .bind(*state)
                .bind(error.clone()),
            };
            let row = q.fetch_optional(&mut *conn).await?;
            let Some(meter_id) = row.map(|r| sqlx::Row::try_get::<i64, _>(&r, 0)).transpose()?
            else {
                return Ok(None);
            };
            Ok(Some(ReportOutcome {
                meter_id,
                late_clock_answer: clock_answer
                    && *reported == Reported::Sent
                    && before.is_some_and(|(_, waited)| waited > 0),
                missed_clock_answer: clock_answer && matches!(reported, Reported::Dropped { .. }),
            }))
        }

        /// Completes the oldest command of one of `kinds` for the meter sent before `now` (the
        /// answering uplink's time); returns its id.
        pub async fn complete(
            conn: &mut Conn,
            meter_id: i64,
            kinds: &[&str],
            result: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<Uuid>> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT id FROM commands WHERE meter_id = ",
            );
            q.push_bind(meter_id)
                .push(" AND state IN ('pending', 'queued', 'sent') AND sent_at < ")
                // Only an uplink after the transmission answers it: the uplink whose receive
                // window carried the command was sent before it.
                .push_bind(now)
                .push(" AND kind IN (");
            let mut list = q.separated(", ");
            for k in kinds {
                list.push_bind((*k).to_owned());
            }
            q.push(") ORDER BY created_at, id LIMIT 1");
            let id: Option<Uuid> = q.build_query_scalar().fetch_optional(&mut *conn).await?;
            let Some(id) = id else { return Ok(None) };
            sqlx::query(
                "UPDATE commands SET state = 'completed', completed_at = $2, updated_at = $2, \
                 result = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .bind(result)
            .execute(&mut *conn)
            .await?;
            Ok(Some(id))
        }

        /// Hands a pending command over (pending → queued, one more attempt); false when
        /// another instance took it first.
        pub async fn claim(conn: &mut Conn, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
            Ok(sqlx::query(
                "UPDATE commands SET state = 'queued', attempts = attempts + 1, updated_at = $2 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }

        /// Puts a claimed command back (its publish failed): it goes with the next uplink.
        pub async fn unclaim(conn: &mut Conn, id: Uuid, now: DateTime<Utc>) -> Result<()> {
            sqlx::query(
                "UPDATE commands SET state = 'pending', updated_at = $2 \
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Reporting meters in service of a region, or of the fleet when `None`: (id,
        /// DevEUI).
        pub async fn region_routes(
            conn: &mut Conn,
            region_id: Option<&str>,
        ) -> Result<Vec<(i64, String)>> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT id, dev_eui FROM meters WHERE status NOT IN ('disconnected', 'removed') \
                 AND service_state = 'in_service'",
            );
            if let Some(r) = region_id {
                q.push(" AND region_id = ").push_bind(r.to_owned());
            }
            q.push(" ORDER BY id");
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// Commands past their expiry that were never sent → `expired`; commands waiting
        /// for an answer past their deadline → `failed`. Returns the meters of the commands
        /// (expired, failed), one entry per command.
        pub async fn sweep(conn: &mut Conn, now: DateTime<Utc>) -> Result<(Vec<i64>, Vec<i64>)> {
            let expired = sqlx::query_scalar(
                "UPDATE commands SET state = 'expired', updated_at = $1, \
                 error = COALESCE(error, 'not sent before it expired') \
                 WHERE state IN ('pending', 'queued') AND expires_at < $1 RETURNING meter_id",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            let failed = sqlx::query_scalar(
                "UPDATE commands SET state = 'failed', updated_at = $1, \
                 error = 'no answer from the meter by the deadline' \
                 WHERE state = 'sent' AND deadline_at < $1 RETURNING meter_id",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            Ok((expired, failed))
        }

        /// Meters among `meter_ids` with a sent command waiting for an answer: only their
        /// uplinks can complete one, so the others need no query.
        pub async fn meters_awaiting_answers(conn: &mut Conn, meter_ids: &[i64]) -> Result<Vec<i64>> {
            let mut out = Vec::new();
            for chunk in meter_ids.chunks(1_000) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT DISTINCT meter_id FROM commands WHERE state IN ('pending', 'queued', 'sent') \
                     AND deadline_at IS NOT NULL AND meter_id IN (",
                );
                let mut list = q.separated(", ");
                // Padded with NULLs, which match nothing: see `padding`.
                for id in crate::storage::padding::rows(chunk, 1_000) {
                    list.push_bind(id.copied());
                }
                q.push(")");
                let found: Vec<i64> = q.build_query_scalar().fetch_all(&mut *conn).await?;
                out.extend(found);
            }
            Ok(out)
        }

        /// Meters among `meter_ids` with an unfinished command of `kind`.
        pub async fn meters_with_open(
            conn: &mut Conn,
            meter_ids: &[i64],
            kind: &str,
        ) -> Result<Vec<i64>> {
            if meter_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT DISTINCT meter_id FROM commands WHERE state IN ('pending', 'queued', 'sent') AND kind = ",
            );
            q.push_bind(kind.to_owned()).push(" AND meter_id IN (");
            let mut list = q.separated(", ");
            for id in meter_ids {
                list.push_bind(*id);
            }
            q.push(")");
            Ok(q.build_query_scalar().fetch_all(&mut *conn).await?)
        }

        /// The DevEUI, status and service state of a meter.
        pub async fn meter_route(
            conn: &mut Conn,
            meter_id: i64,
        ) -> Result<(String, String, String)> {
            sqlx::query_as("SELECT dev_eui, status, service_state FROM meters WHERE id = $1")
                .bind(meter_id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::NotFound)
        }

        /// The command with this id.
        pub async fn get(conn: &mut Conn, id: Uuid) -> Result<CommandRow> {
            let sql = format!("SELECT {COLUMNS} FROM commands WHERE id = $1");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::NotFound)
        }

        /// Moves a command to `to` if it is in one of `from`; returns whether it moved. A
        /// redelivered event finds the command already moved and changes nothing.
        pub async fn transition(
            conn: &mut Conn,
            id: Uuid,
            from: &[&str],
            to: &str,
            error: Option<&str>,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            if from.is_empty() {
                return Ok(false);
            }
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "UPDATE commands SET uplinks_waited = 0, state = ",
            );
            q.push_bind(to.to_owned())
                .push(", error = COALESCE(")
                .push_bind(error.map(str::to_owned))
                .push(", error), updated_at = ")
                .push_bind(now)
                // Each hand-over to ChirpStack counts as an attempt.
                .push(", attempts = attempts + ")
                .push_bind(i32::from(to == "queued"))
                .push(" WHERE id = ")
                .push_bind(id)
                .push(" AND state IN (");
            let mut states = q.separated(", ");
            for s in from {
                states.push_bind((*s).to_owned());
            }
            q.push(")");
            Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
        }

        /// A meter's commands, newest first.
        pub async fn for_meter(
            conn: &mut Conn,
            meter_id: i64,
            limit: i64,
        ) -> Result<Vec<CommandRow>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM commands WHERE meter_id = $1 \
                 ORDER BY created_at DESC LIMIT $2"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(meter_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?)
        }
    };
}

/// The column list with each name prefixed (`c.id, c.meter_id, …`).
fn prefixed(prefix: &str) -> String {
    [
        "id",
        "meter_id",
        "kind",
        "fport",
        "payload",
        "confirmed",
        "requested_by",
        "state",
        "attempts",
        "error",
        "created_at",
        "updated_at",
        "expires_at",
        "sent_at",
        "completed_at",
        "deadline_at",
        "result",
        "schedule_id",
    ]
    .iter()
    .map(|c| format!("{prefix}{c}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    use std::collections::HashSet;

    command_queries!(sqlx::Sqlite);

    /// Stores commands unless one with their id exists; returns the ids that were new. One
    /// statement each (SQLite runs in process: a statement costs no round trip).
    pub async fn record_all(conn: &mut Conn, rows: &[&CommandRow]) -> Result<HashSet<Uuid>> {
        let mut new = HashSet::new();
        for c in rows {
            if record(conn, c).await? {
                new.insert(c.id);
            }
        }
        Ok(new)
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    use std::collections::HashSet;

    command_queries!(sqlx::Postgres);

    /// Stores commands unless one with their id exists; returns the ids that were new. One
    /// statement for all of them: the columns travel as arrays.
    pub async fn record_all(conn: &mut Conn, rows: &[&CommandRow]) -> Result<HashSet<Uuid>> {
        if rows.is_empty() {
            return Ok(HashSet::new());
        }
        fn column<'a, T>(rows: &[&'a CommandRow], f: impl Fn(&'a CommandRow) -> T) -> Vec<T> {
            rows.iter().map(|c| f(c)).collect()
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO commands (id, meter_id, kind, fport, payload, confirmed, \
             requested_by, state, attempts, error, created_at, updated_at, expires_at, \
             sent_at, completed_at, deadline_at, result, schedule_id) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::smallint[], \
             $5::bytea[], $6::boolean[], $7::text[], $8::text[], $9::integer[], $10::text[], \
             $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], \
             $15::timestamptz[], $16::timestamptz[], $17::text[], $18::bigint[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(column(rows, |c| c.id))
        .bind(column(rows, |c| c.meter_id))
        .bind(column(rows, |c| c.kind.as_str()))
        .bind(column(rows, |c| c.fport))
        .bind(column(rows, |c| c.payload.as_slice()))
        .bind(column(rows, |c| c.confirmed))
        .bind(column(rows, |c| c.requested_by.as_str()))
        .bind(column(rows, |c| c.state.as_str()))
        .bind(column(rows, |c| c.attempts))
        .bind(column(rows, |c| c.error.as_deref()))
        .bind(column(rows, |c| c.created_at))
        .bind(column(rows, |c| c.updated_at))
        .bind(column(rows, |c| c.expires_at))
        .bind(column(rows, |c| c.sent_at))
        .bind(column(rows, |c| c.completed_at))
        .bind(column(rows, |c| c.deadline_at))
        .bind(column(rows, |c| c.result.as_deref()))
        .bind(column(rows, |c| c.schedule_id))
        .fetch_all(&mut *conn)
        .await?;
        Ok(ids.into_iter().collect())
    }
}
