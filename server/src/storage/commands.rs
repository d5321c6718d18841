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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
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
}

macro_rules! command_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::*;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        const COLUMNS: &str = "id, meter_id, kind, fport, payload, confirmed, requested_by, \
             state, attempts, error, created_at, updated_at, expires_at";

        /// Stores a new command (its state as given, normally `pending`).
        pub async fn insert(conn: &mut Conn, c: &CommandRow) -> Result<()> {
            let done = sqlx::query(
                "INSERT INTO commands (id, meter_id, kind, fport, payload, confirmed, \
                 requested_by, state, attempts, error, created_at, updated_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (id) DO NOTHING",
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
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(Error::Conflict(format!("command {} exists", c.id)));
            }
            Ok(())
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
            let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE commands SET state = ");
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

/// Queries on SQLite.
pub(crate) mod sqlite {
    command_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    command_queries!(sqlx::Postgres);
}
