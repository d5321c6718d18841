//! The REST API's reads: filtered lists, paged by keyset (a page starts strictly after the
//! last row of the previous one, so pages stay stable while rows are added), and the counts of
//! a home page. Every filter is added only when given, so that an index serves each query
//! (see migrations/*/0003_api.sql).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::alarms::Alarm;
use super::commands::CommandRow;
use super::inspections::Inspection;
use super::meters::Meter;
use super::quarantine::Quarantined;
use super::readings::StoredReading;
use super::self_tests::StoredSelfTest;
use super::{Result, Store};

/// A region with the counts a home page shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegionSummary {
    /// Region id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Meters registered in it.
    pub meters: i64,
    /// Meters whose overdue time has passed.
    pub silent: i64,
    /// Open alarms of its meters.
    pub open_alarms: i64,
    /// Open alarms of its meters by kind, in kind order.
    pub open_by_kind: Vec<(String, i64)>,
}

/// Which meters a list holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterFilter {
    /// Of this region.
    pub region: Option<String>,
    /// In this status.
    pub status: Option<String>,
    /// Of this customer.
    pub user_id: Option<String>,
    /// With this DevEUI (lowercase).
    pub dev_eui: Option<String>,
    /// With this serial.
    pub serial: Option<String>,
    /// With this number on the body.
    pub body_number: Option<i64>,
    /// Silent at this time: overdue before it.
    pub silent_at: Option<DateTime<Utc>>,
    /// With a last battery charge below this percentage.
    pub battery_below: Option<i16>,
    /// With an alarm in this state (`open`, say).
    pub alarm_state: Option<String>,
}

/// Which alarms a list holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmFilter {
    /// In this state.
    pub state: Option<String>,
    /// Of this kind.
    pub kind: Option<String>,
    /// Of meters of this region.
    pub region: Option<String>,
    /// Of this meter.
    pub meter_id: Option<i64>,
    /// Raised at or after.
    pub from: Option<DateTime<Utc>>,
    /// Raised before.
    pub to: Option<DateTime<Utc>>,
}

/// A meter's latest reading.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LatestReading {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// The reading.
    #[sqlx(flatten)]
    pub reading: StoredReading,
}

const METER_COLUMNS: &str = "id, dev_eui, serial, body_number, user_id, application_id, \
     region_id, usage_type, mode, production_date, status, reporting_interval_minutes, \
     last_seen_at, battery_millivolts, battery_percent, rssi, snr, overdue_at, \
     firmware_version, info_received_at, created_at, updated_at, clock_drift_ms, \
     drift_measured_at, service_state";
const ALARM_COLUMNS: &str = "a.id, a.meter_id, a.kind, a.source, a.raised_at, a.value, a.state, \
     a.received_at, a.acknowledged_at, a.acknowledged_by, a.cleared_at, a.occurrences, \
     a.last_raised_at, a.detail";
const READING_COLUMNS: &str = "r.meter_id, r.reading_time, r.received_at, r.gas_volume_litres, \
     r.energy_wh, r.voltage_decivolts, r.current_milliamps, r.gas_temperature_centi_celsius, \
     r.gas_pressure_pa, r.valve, r.door, r.battery_millivolts, r.battery_percent, r.flags, r.f_cnt";
const COMMAND_COLUMNS: &str = "id, meter_id, kind, fport, payload, confirmed, requested_by, \
     state, attempts, error, created_at, updated_at, expires_at, sent_at, completed_at, \
     deadline_at, result, schedule_id";

macro_rules! listing_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::{AssertSqlSafe, QueryBuilder};
        use uuid::Uuid;

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Every region with its counts at `now`.
        pub async fn region_summaries(
            conn: &mut Conn,
            now: DateTime<Utc>,
        ) -> Result<Vec<RegionSummary>> {
            let regions: Vec<(String, String)> =
                sqlx::query_as("SELECT id, name FROM regions ORDER BY id")
                    .fetch_all(&mut *conn)
                    .await?;
            let meters: Vec<(String, i64)> =
                sqlx::query_as("SELECT region_id, COUNT(*) FROM meters GROUP BY region_id")
                    .fetch_all(&mut *conn)
                    .await?;
            let silent: Vec<(String, i64)> = sqlx::query_as(
                "SELECT region_id, COUNT(*) FROM meters WHERE overdue_at < $1 \
                 AND service_state = 'in_service' GROUP BY region_id",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            // The (state, id) index finds the open alarms; few are open at any time.
            let alarms: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT m.region_id, a.kind, COUNT(*) FROM alarms a \
                 JOIN meters m ON m.id = a.meter_id \
                 WHERE a.state = 'open' GROUP BY m.region_id, a.kind ORDER BY m.region_id, a.kind",
            )
            .fetch_all(&mut *conn)
            .await?;
            let count = |rows: &[(String, i64)], id: &str| {
                rows.iter().find(|(r, _)| r == id).map_or(0, |(_, n)| *n)
            };
            Ok(regions
                .into_iter()
                .map(|(id, name)| {
                    let open_by_kind: Vec<(String, i64)> = alarms
                        .iter()
                        .filter(|(r, _, _)| *r == id)
                        .map(|(_, kind, n)| (kind.clone(), *n))
                        .collect();
                    RegionSummary {
                        meters: count(&meters, &id),
                        silent: count(&silent, &id),
                        open_alarms: open_by_kind.iter().map(|(_, n)| n).sum(),
                        open_by_kind,
                        id,
                        name,
                    }
                })
                .collect())
        }

        /// The earliest overdue time after `now` (of a region's meters, or of all): until
        /// then, which meters are silent can change only by a write.
        pub async fn next_overdue(
            conn: &mut Conn,
            region: Option<&str>,
            now: DateTime<Utc>,
        ) -> Result<Option<DateTime<Utc>>> {
            let mut q = QueryBuilder::<$db>::new("SELECT MIN(overdue_at) FROM meters WHERE ");
            if let Some(r) = region {
                q.push("region_id = ").push_bind(r.to_owned()).push(" AND ");
            }
            q.push("overdue_at >= ").push_bind(now);
            Ok(q.build_query_scalar().fetch_one(&mut *conn).await?)
        }

        /// Whether a region exists.
        pub async fn region_exists(conn: &mut Conn, id: &str) -> Result<bool> {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM regions WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
            Ok(n > 0)
        }

        /// The meter with this id.
        pub async fn meter_by_id(conn: &mut Conn, id: i64) -> Result<Option<Meter>> {
            let sql = format!("SELECT {METER_COLUMNS} FROM meters WHERE id = $1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        /// The DevEUIs of the meters with these ids, in one query.
        pub async fn dev_euis(conn: &mut Conn, ids: &[i64]) -> Result<Vec<(i64, String)>> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = QueryBuilder::<$db>::new("SELECT id, dev_eui FROM meters WHERE id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// Meters matching `f`, in id order, after `after_id`.
        pub async fn meters(
            conn: &mut Conn,
            f: &MeterFilter,
            after_id: i64,
            limit: i64,
        ) -> Result<Vec<Meter>> {
            let mut q = QueryBuilder::<$db>::new(format!(
                "SELECT {METER_COLUMNS} FROM meters WHERE id > "
            ));
            q.push_bind(after_id);
            if let Some(r) = &f.region {
                q.push(" AND region_id = ").push_bind(r.clone());
            }
            if let Some(s) = &f.status {
                q.push(" AND status = ").push_bind(s.clone());
            }
            if let Some(u) = &f.user_id {
                q.push(" AND user_id = ").push_bind(u.clone());
            }
            if let Some(d) = &f.dev_eui {
                q.push(" AND dev_eui = ").push_bind(d.clone());
            }
            if let Some(n) = &f.serial {
                q.push(" AND serial = ").push_bind(n.clone());
            }
            if let Some(b) = f.body_number {
                q.push(" AND body_number = ").push_bind(b);
            }
            if let Some(t) = f.silent_at {
                q.push(" AND overdue_at < ").push_bind(t);
            }
            if let Some(p) = f.battery_below {
                q.push(" AND battery_percent < ").push_bind(p);
            }
            if let Some(s) = &f.alarm_state {
                q.push(" AND EXISTS (SELECT 1 FROM alarms a WHERE a.meter_id = meters.id AND a.state = ")
                    .push_bind(s.clone())
                    .push(")");
            }
            q.push(" ORDER BY id LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// Meters silent at `now` (of a region), longest silent first, after the cursor
        /// (overdue time, id).
        pub async fn silent_meters(
            conn: &mut Conn,
            region: Option<&str>,
            now: DateTime<Utc>,
            after: Option<(DateTime<Utc>, i64)>,
            limit: i64,
        ) -> Result<Vec<Meter>> {
            let mut q = QueryBuilder::<$db>::new(format!(
                "SELECT {METER_COLUMNS} FROM meters WHERE service_state = 'in_service' \
                 AND overdue_at < "
            ));
            q.push_bind(now);
            if let Some(r) = region {
                q.push(" AND region_id = ").push_bind(r.to_owned());
            }
            if let Some((t, id)) = after {
                q.push(" AND (overdue_at > ")
                    .push_bind(t)
                    .push(" OR (overdue_at = ")
                    .push_bind(t)
                    .push(" AND id > ")
                    .push_bind(id)
                    .push("))");
            }
            q.push(" ORDER BY overdue_at, id LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// The latest reading of each meter of a region that has one, in meter id order,
        /// after `after_id`.
        pub async fn latest_readings(
            conn: &mut Conn,
            region: &str,
            after_id: i64,
            limit: i64,
        ) -> Result<Vec<LatestReading>> {
            // Per meter, the primary key (meter_id, reading_time) finds the newest row.
            let sql = format!(
                "SELECT m.dev_eui, {READING_COLUMNS} FROM meters m JOIN readings r \
                 ON r.meter_id = m.id AND r.reading_time = \
                 (SELECT MAX(x.reading_time) FROM readings x WHERE x.meter_id = m.id) \
                 WHERE m.region_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(region)
                .bind(after_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Alarms matching `f`, newest first, before `before_id`.
        pub async fn alarms(
            conn: &mut Conn,
            f: &AlarmFilter,
            before_id: i64,
            limit: i64,
        ) -> Result<Vec<Alarm>> {
            let mut q =
                QueryBuilder::<$db>::new(format!("SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.id < "));
            q.push_bind(before_id);
            if let Some(s) = &f.state {
                q.push(" AND a.state = ").push_bind(s.clone());
            }
            if let Some(k) = &f.kind {
                q.push(" AND a.kind = ").push_bind(k.clone());
            }
            if let Some(m) = f.meter_id {
                q.push(" AND a.meter_id = ").push_bind(m);
            }
            if let Some(r) = &f.region {
                q.push(" AND a.meter_id IN (SELECT id FROM meters WHERE region_id = ")
                    .push_bind(r.clone())
                    .push(")");
            }
            if let Some(t) = f.from {
                q.push(" AND a.raised_at >= ").push_bind(t);
            }
            if let Some(t) = f.to {
                q.push(" AND a.raised_at < ").push_bind(t);
            }
            q.push(" ORDER BY a.id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// The alarm with this id.
        pub async fn alarm(conn: &mut Conn, id: i64) -> Result<Option<Alarm>> {
            let sql = format!("SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.id = $1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        /// Clears one alarm that is not cleared yet; whether it was.
        pub async fn clear_alarm(conn: &mut Conn, id: i64, now: DateTime<Utc>) -> Result<bool> {
            Ok(sqlx::query(
                "UPDATE alarms SET state = 'cleared', cleared_at = $2 \
                 WHERE id = $1 AND state <> 'cleared'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }

        /// A meter's commands, newest first, after the cursor (created at, id).
        pub async fn commands(
            conn: &mut Conn,
            meter_id: i64,
            before: Option<(DateTime<Utc>, Uuid)>,
            limit: i64,
        ) -> Result<Vec<CommandRow>> {
            let mut q = QueryBuilder::<$db>::new(format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE meter_id = "
            ));
            q.push_bind(meter_id);
            if let Some((t, id)) = before {
                q.push(" AND (created_at < ")
                    .push_bind(t)
                    .push(" OR (created_at = ")
                    .push_bind(t)
                    .push(" AND id < ")
                    .push_bind(id)
                    .push("))");
            }
            q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// A meter's self-test results in [from, to), newest first, before `before`.
        pub async fn self_tests(
            conn: &mut Conn,
            meter_id: i64,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            limit: i64,
        ) -> Result<Vec<StoredSelfTest>> {
            Ok(sqlx::query_as(
                "SELECT meter_id, meter_time, received_at, tests_run, tests_failed, \
                 battery_loaded_millivolts, battery_rest_millivolts, valve_travel_ms, \
                 metrology_deviation_centi_percent, internal_temperature_centi_celsius \
                 FROM self_tests WHERE meter_id = $1 AND meter_time >= $2 AND meter_time < $3 \
                 ORDER BY meter_time DESC LIMIT $4",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// A meter's visits, newest first, after the cursor (visited at, id).
        pub async fn inspections(
            conn: &mut Conn,
            meter_id: i64,
            before: Option<(DateTime<Utc>, i64)>,
            limit: i64,
        ) -> Result<Vec<Inspection>> {
            let mut q = QueryBuilder::<$db>::new(
                "SELECT id, meter_id, alarm_id, visited_at, inspector, outcome, notes, created_at \
                 FROM inspections WHERE meter_id = ",
            );
            q.push_bind(meter_id);
            if let Some((t, id)) = before {
                q.push(" AND (visited_at < ")
                    .push_bind(t)
                    .push(" OR (visited_at = ")
                    .push_bind(t)
                    .push(" AND id < ")
                    .push_bind(id)
                    .push("))");
            }
            q.push(" ORDER BY visited_at DESC, id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// The quarantined message with this id.
        pub async fn quarantined(conn: &mut Conn, id: i64) -> Result<Option<Quarantined>> {
            Ok(sqlx::query_as(
                "SELECT id, received_at, topic, payload, reason, detail, dev_eui, replayed_at \
                 FROM quarantine WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?)
        }

        /// Marks a quarantined message replayed (the first replay's time is kept).
        pub async fn mark_replayed(conn: &mut Conn, id: i64, now: DateTime<Utc>) -> Result<()> {
            sqlx::query(
                "UPDATE quarantine SET replayed_at = COALESCE(replayed_at, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    listing_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    listing_queries!(sqlx::Postgres);
}

impl Store {
    /// Every region with its meters, silent meters (at `now`) and open alarms.
    pub async fn region_summaries(&self, now: DateTime<Utc>) -> Result<Vec<RegionSummary>> {
        on_reader!(self, |c, q| q::region_summaries(c, now).await, self)
    }

    /// The earliest overdue time at or after `now`, of a region's meters or of all.
    pub async fn next_overdue(
        &self,
        region: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        on_reader!(self, |c, q| q::next_overdue(c, region, now).await, self)
    }

    /// Whether a region exists.
    pub async fn region_exists(&self, id: &str) -> Result<bool> {
        on_reader!(self, |c, q| q::region_exists(c, id).await, self)
    }

    /// The meter with this id.
    pub async fn meter_by_id(&self, id: i64) -> Result<Option<Meter>> {
        on_reader!(self, |c, q| q::meter_by_id(c, id).await, self)
    }

    /// The DevEUIs of the meters with these ids (a page's worth: each id is a bound value).
    pub async fn dev_euis(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        on_reader!(self, |c, q| q::dev_euis(c, ids).await, self)
    }

    /// Meters matching a filter, in id order, after `after_id`.
    pub async fn meters_filtered(
        &self,
        filter: &MeterFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Meter>> {
        on_reader!(
            self,
            |c, q| q::meters(c, filter, after_id, limit).await,
            self
        )
    }

    /// Meters silent at `now`, longest silent first.
    pub async fn silent_meters(
        &self,
        region: Option<&str>,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, i64)>,
        limit: i64,
    ) -> Result<Vec<Meter>> {
        on_reader!(
            self,
            |c, q| q::silent_meters(c, region, now, after, limit).await,
            self
        )
    }

    /// The latest reading of each meter of a region.
    pub async fn latest_readings(
        &self,
        region: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LatestReading>> {
        on_reader!(
            self,
            |c, q| q::latest_readings(c, region, after_id, limit).await,
            self
        )
    }

    /// Alarms matching a filter, newest first.
    pub async fn alarms_filtered(
        &self,
        filter: &AlarmFilter,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Alarm>> {
        on_reader!(
            self,
            |c, q| q::alarms(c, filter, before_id, limit).await,
            self
        )
    }

    /// The alarm with this id (read from the writer, so that it sees a change just made).
    pub async fn alarm(&self, id: i64) -> Result<Option<Alarm>> {
        on_writer!(self, |c, q| q::alarm(c, id).await, self)
    }

    /// Clears one alarm; whether it was not cleared before.
    pub async fn clear_alarm(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        on_writer!(self, |c, q| q::clear_alarm(c, id, now).await, self)
    }

    /// A meter's commands, newest first.
    pub async fn commands_page(
        &self,
        meter_id: i64,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<CommandRow>> {
        on_reader!(
            self,
            |c, q| q::commands(c, meter_id, before, limit).await,
            self
        )
    }

    /// A meter's self-test results in [from, to), newest first.
    pub async fn self_tests_page(
        &self,
        meter_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredSelfTest>> {
        on_reader!(
            self,
            |c, q| q::self_tests(c, meter_id, from, to, limit).await,
            self
        )
    }

    /// A meter's visits, newest first.
    pub async fn inspections_page(
        &self,
        meter_id: i64,
        before: Option<(DateTime<Utc>, i64)>,
        limit: i64,
    ) -> Result<Vec<Inspection>> {
        on_reader!(
            self,
            |c, q| q::inspections(c, meter_id, before, limit).await,
            self
        )
    }

    /// The quarantined message with this id.
    pub async fn quarantined_by_id(&self, id: i64) -> Result<Option<Quarantined>> {
        on_reader!(self, |c, q| q::quarantined(c, id).await, self)
    }

    /// Marks a quarantined message replayed.
    pub async fn mark_replayed(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        on_writer!(self, |c, q| q::mark_replayed(c, id, now).await, self)
    }
}
