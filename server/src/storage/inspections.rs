//! Field visits to meters.

use chrono::{DateTime, Utc};

/// Outcomes a visit may record.
pub const INSPECTION_OUTCOMES: [&str; 5] = ["ok", "repaired", "replaced", "tampered", "no_access"];

/// A visit to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInspection {
    /// The meter.
    pub meter_id: i64,
    /// The alarm that led to the visit, if any.
    pub alarm_id: Option<i64>,
    /// When the visit took place.
    pub visited_at: DateTime<Utc>,
    /// Who visited.
    pub inspector: String,
    /// One of [`INSPECTION_OUTCOMES`].
    pub outcome: String,
    /// Free text.
    pub notes: String,
}

/// A recorded visit.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Inspection {
    /// Id.
    pub id: i64,
    /// The meter.
    pub meter_id: i64,
    /// The alarm that led to the visit.
    pub alarm_id: Option<i64>,
    /// When.
    pub visited_at: DateTime<Utc>,
    /// Who.
    pub inspector: String,
    /// Outcome.
    pub outcome: String,
    /// Notes.
    pub notes: String,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
}

macro_rules! inspection_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Records a visit; returns its id.
        pub async fn insert(conn: &mut Conn, i: &NewInspection, now: DateTime<Utc>) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "INSERT INTO inspections (meter_id, alarm_id, visited_at, inspector, outcome, \
                 notes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(i.meter_id)
            .bind(i.alarm_id)
            .bind(i.visited_at)
            .bind(&i.inspector)
            .bind(&i.outcome)
            .bind(&i.notes)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?)
        }

        /// A meter's visits, newest first.
        pub async fn for_meter(
            conn: &mut Conn,
            meter_id: i64,
            limit: i64,
        ) -> Result<Vec<Inspection>> {
            Ok(sqlx::query_as(
                "SELECT id, meter_id, alarm_id, visited_at, inspector, outcome, notes, created_at \
                 FROM inspections WHERE meter_id = $1 ORDER BY visited_at DESC LIMIT $2",
            )
            .bind(meter_id)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    inspection_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    inspection_queries!(sqlx::Postgres);
}
