//! Self-test schedules and their runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Id.
    pub id: i64,
    /// `fleet`, `region` or `meter`.
    pub scope: String,
    /// The region, for region scope.
    pub region_id: Option<String>,
    /// The meter, for meter scope.
    pub meter_id: Option<i64>,
    /// The wire's test bits.
    pub tests: i16,
    /// Minutes between runs.
    pub interval_minutes: i32,
    /// The next run.
    pub next_run_at: DateTime<Utc>,
    /// Whether it runs.
    pub enabled: bool,
    /// Who made it.
    pub created_by: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a schedule covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "scope",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Scope {
    /// Every meter.
    Fleet,
    /// The meters of a region.
    Region {
        /// The region.
        region_id: String,
    },
    /// One meter.
    Meter {
        /// The meter.
        meter_id: i64,
    },
}

/// A schedule to create or the new values of one.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// What it covers.
    pub scope: Scope,
    /// The wire's test bits (1–255).
    pub tests: u8,
    /// Minutes between runs.
    pub interval_minutes: i32,
    /// The first (next) run.
    pub next_run_at: DateTime<Utc>,
    /// Whether it runs.
    pub enabled: bool,
}

/// The commands one due run created.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// The schedule.
    pub schedule_id: i64,
    /// The occurrence run.
    pub due_at: DateTime<Utc>,
    /// The meters that got a self-test command: (id, DevEUI).
    pub meters: Vec<(i64, String)>,
}

/// The next occurrence after `now` of a schedule due at `due`, every `minutes`: missed
/// occurrences are skipped, not run in a burst.
pub fn next_after(due: DateTime<Utc>, minutes: i32, now: DateTime<Utc>) -> DateTime<Utc> {
    let step = chrono::Duration::minutes(i64::from(minutes.max(1)));
    let behind = (now - due).num_seconds().max(0) / step.num_seconds();
    let mut next = due + step * i32::try_from(behind).unwrap_or(i32::MAX);
    while next <= now {
        next += step;
    }
    next
}

const COLUMNS: &str = "id, scope, region_id, meter_id, tests, interval_minutes, next_run_at, \
     enabled, created_by, created_at, updated_at";

macro_rules! schedule_queries {
    ($db:ty, $dialect:ident) => {
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::*;
        use crate::storage::commands::CommandRow;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        fn scope_columns(scope: &Scope) -> (&'static str, Option<String>, Option<i64>) {
            match scope {
                Scope::Fleet => ("fleet", None, None),
                Scope::Region { region_id } => ("region", Some(region_id.clone()), None),
                Scope::Meter { meter_id } => ("meter", None, Some(*meter_id)),
            }
        }

        /// Creates a schedule; returns it.
        pub async fn create(
            conn: &mut Conn,
            spec: &ScheduleSpec,
            by: &str,
            now: DateTime<Utc>,
        ) -> Result<Schedule> {
            let (scope, region, meter) = scope_columns(&spec.scope);
            let sql = format!(
                "INSERT INTO self_test_schedules (scope, region_id, meter_id, tests, \
                 interval_minutes, next_run_at, enabled, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(scope)
                .bind(region)
                .bind(meter)
                .bind(i16::from(spec.tests))
                .bind(spec.interval_minutes)
                .bind(spec.next_run_at)
                .bind(spec.enabled)
                .bind(by)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?)
        }

        /// Changes a schedule.
        pub async fn update(
            conn: &mut Conn,
            id: i64,
            spec: &ScheduleSpec,
            now: DateTime<Utc>,
        ) -> Result<Schedule> {
            let (scope, region, meter) = scope_columns(&spec.scope);
            let sql = format!(
                "UPDATE self_test_schedules SET scope = $2, region_id = $3, meter_id = $4, \
                 tests = $5, interval_minutes = $6, next_run_at = $7, enabled = $8, \
                 updated_at = $9 WHERE id = $1 RETURNING {COLUMNS}"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(scope)
                .bind(region)
                .bind(meter)
                .bind(i16::from(spec.tests))
                .bind(spec.interval_minutes)
                .bind(spec.next_run_at)
                .bind(spec.enabled)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::NotFound)
        }

        /// Deletes a schedule (its runs go with it; its commands stay, as the audit trail).
        pub async fn delete(conn: &mut Conn, id: i64) -> Result<()> {
            let done = sqlx::query("DELETE FROM self_test_schedules WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(Error::NotFound);
            }
            Ok(())
        }

        /// Schedules in id order after `after_id`.
        pub async fn list(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<Schedule>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM self_test_schedules WHERE id > $1 ORDER BY id LIMIT $2"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// One schedule.
        pub async fn get(conn: &mut Conn, id: i64) -> Result<Schedule> {
            let sql = format!("SELECT {COLUMNS} FROM self_test_schedules WHERE id = $1");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::NotFound)
        }

        /// Enabled schedules due at `now`.
        pub async fn due(conn: &mut Conn, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM self_test_schedules WHERE enabled AND next_run_at <= $1 \
                 ORDER BY next_run_at LIMIT $2"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Runs one due occurrence of a schedule: records the run (a second run of the same
        /// occurrence finds it recorded and does nothing), creates a pending self-test command
        /// for each meter in scope that is in service and reports (not disconnected or
        /// removed), and moves the
        /// schedule to its next occurrence. `None` when the occurrence had already run.
        pub async fn run(
            conn: &mut Conn,
            schedule: &Schedule,
            frame: &crate::downlink::kind::Frame,
            expires_at: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> Result<Option<Run>> {
            let due_at = schedule.next_run_at;
            let recorded = sqlx::query(
                "INSERT INTO schedule_runs (schedule_id, due_at, started_at, commands) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
            )
            .bind(schedule.id)
            .bind(due_at)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            let next = next_after(due_at, schedule.interval_minutes, now);
            sqlx::query(
                "UPDATE self_test_schedules SET next_run_at = $3 WHERE id = $1 AND next_run_at = $2",
            )
            .bind(schedule.id)
            .bind(due_at)
            .bind(next)
            .execute(&mut *conn)
            .await?;
            if recorded == 0 {
                return Ok(None);
            }
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT id, dev_eui FROM meters WHERE status NOT IN ('disconnected', 'removed') \
                 AND service_state = 'in_service'",
            );
            match (schedule.scope.as_str(), &schedule.region_id, schedule.meter_id) {
                ("region", Some(r), _) => {
                    q.push(" AND region_id = ").push_bind(r.clone());
                }
                ("meter", _, Some(m)) => {
                    q.push(" AND id = ").push_bind(m);
                }
                _ => {}
            }
            let meters: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
            for (meter_id, _) in &meters {
                let row = CommandRow {
                    id: Uuid::new_v4(),
                    meter_id: *meter_id,
                    kind: "selfTest".into(),
                    fport: i16::from(frame.fport),
                    payload: frame.payload.clone(),
                    confirmed: false,
                    requested_by: format!("schedule:{}", schedule.id),
                    state: "pending".into(),
                    attempts: 0,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    expires_at,
                    sent_at: None,
                    completed_at: None,
                    deadline_at: None,
                    result: None,
                    schedule_id: Some(schedule.id),
                };
                crate::storage::commands::$dialect::record(conn, &row).await?;
            }
            sqlx::query("UPDATE schedule_runs SET commands = $3 WHERE schedule_id = $1 AND due_at = $2")
                .bind(schedule.id)
                .bind(due_at)
                .bind(i32::try_from(meters.len()).unwrap_or(i32::MAX))
                .execute(&mut *conn)
                .await?;
            Ok(Some(Run {
                schedule_id: schedule.id,
                due_at,
                meters,
            }))
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    schedule_queries!(sqlx::Sqlite, sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    schedule_queries!(sqlx::Postgres, postgres);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn missed_occurrences_are_skipped() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let hour = chrono::Duration::hours(1);
        assert_eq!(next_after(t0, 60, t0), t0 + hour);
        assert_eq!(
            next_after(t0, 60, t0 + hour * 5 + chrono::Duration::minutes(1)),
            t0 + hour * 6
        );
        assert_eq!(next_after(t0, 60, t0 - hour), t0);
    }
}
