//! The meter registry: regions and meters.

use chrono::{DateTime, NaiveDate, Utc};

/// A region of the utility.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Region {
    /// Short id chosen by the utility, e.g. `north`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A meter to register or update, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMeter {
    /// LoRaWAN DevEUI, 16 lowercase hex digits.
    pub dev_eui: String,
    /// Serial number, 14 digits with a valid check digit.
    pub serial: String,
    /// Number on the meter body.
    pub body_number: i64,
    /// The utility's customer id.
    pub user_id: String,
    /// ChirpStack application id (UUID text).
    pub application_id: String,
    /// Region id.
    pub region_id: String,
    /// `residential`, `commercial`, `industrial` or `public`.
    pub usage_type: String,
    /// `credit` or `prepaid`.
    pub mode: String,
    /// Production date.
    pub production_date: NaiveDate,
    /// Reporting interval, minutes.
    pub reporting_interval_minutes: i32,
}

/// A registered meter.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct Meter {
    /// meterhub's id.
    pub id: i64,
    /// LoRaWAN DevEUI.
    pub dev_eui: String,
    /// Serial number.
    pub serial: String,
    /// Number on the meter body.
    pub body_number: i64,
    /// The utility's customer id.
    pub user_id: String,
    /// ChirpStack application id.
    pub application_id: String,
    /// Region id.
    pub region_id: String,
    /// Usage type.
    pub usage_type: String,
    /// Billing mode.
    pub mode: String,
    /// Production date.
    pub production_date: NaiveDate,
    /// `installed` (never heard), `active`, `silent`, `disconnected` or `removed`.
    pub status: String,
    /// Reporting interval, minutes.
    pub reporting_interval_minutes: i32,
    /// In service, removed (in stock) or destroyed.
    #[sqlx(try_from = "String")]
    pub service_state: super::lifecycle::ServiceState,
    /// Last uplink.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Last battery voltage, mV.
    pub battery_millivolts: Option<i32>,
    /// Last battery charge, %.
    pub battery_percent: Option<i16>,
    /// Best RSSI of the last uplink, dBm.
    pub rssi: Option<i32>,
    /// Best SNR of the last uplink, dB.
    pub snr: Option<f64>,
    /// When the meter counts as silent if nothing arrives before.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Firmware version from its latest device info.
    pub firmware_version: Option<String>,
    /// When its latest device info arrived.
    pub info_received_at: Option<DateTime<Utc>>,
    /// The meter clock minus the network's reference at the latest reading, ms.
    pub clock_drift_ms: Option<i64>,
    /// When that was measured.
    pub drift_measured_at: Option<DateTime<Utc>>,
    /// Registered at.
    pub created_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
impl Meter {
    /// The row of a meter registered as `new` at `at`, with id `id`, never heard from.
    pub(crate) fn registered(id: i64, new: &NewMeter, at: DateTime<Utc>) -> Meter {
        Meter {
            id,
            dev_eui: new.dev_eui.clone(),
            serial: new.serial.clone(),
            body_number: new.body_number,
            user_id: new.user_id.clone(),
            application_id: new.application_id.clone(),
            region_id: new.region_id.clone(),
            usage_type: new.usage_type.clone(),
            mode: new.mode.clone(),
            production_date: new.production_date,
            status: "installed".into(),
            reporting_interval_minutes: new.reporting_interval_minutes,
            service_state: super::lifecycle::ServiceState::InService,
            last_seen_at: None,
            battery_millivolts: None,
            battery_percent: None,
            rssi: None,
            snr: None,
            overdue_at: None,
            firmware_version: None,
            info_received_at: None,
            clock_drift_ms: None,
            drift_measured_at: None,
            created_at: at,
            updated_at: at,
        }
    }
}

impl Meter {
    /// Its registration: the values an install gave it (or a change since).
    pub fn registration(&self) -> NewMeter {
        NewMeter {
            dev_eui: self.dev_eui.clone(),
            serial: self.serial.clone(),
            body_number: self.body_number,
            user_id: self.user_id.clone(),
            application_id: self.application_id.clone(),
            region_id: self.region_id.clone(),
            usage_type: self.usage_type.clone(),
            mode: self.mode.clone(),
            production_date: self.production_date,
            reporting_interval_minutes: self.reporting_interval_minutes,
        }
    }

    /// Whether the registered values equal `new` (so an import changes nothing).
    pub fn matches(&self, new: &NewMeter) -> bool {
        self.dev_eui == new.dev_eui
            && self.serial == new.serial
            && self.body_number == new.body_number
            && self.user_id == new.user_id
            && self.application_id == new.application_id
            && self.region_id == new.region_id
            && self.usage_type == new.usage_type
            && self.mode == new.mode
            && self.production_date == new.production_date
            && self.reporting_interval_minutes == new.reporting_interval_minutes
    }
}

/// What registering one meter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new meter.
    Inserted,
    /// An existing meter (same DevEUI) whose details changed.
    Updated,
    /// An existing meter with exactly these details: nothing to do.
    Unchanged,
}

/// Link state seen in one batch of uplinks, applied once per meter.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkUpdate {
    /// The meter.
    pub meter_id: i64,
    /// Time of its latest uplink in the batch.
    pub last_seen_at: DateTime<Utc>,
    /// When it becomes overdue.
    pub overdue_at: DateTime<Utc>,
    /// Battery voltage, if a reading carried it.
    pub battery_millivolts: Option<i32>,
    /// Battery charge, if a reading carried it.
    pub battery_percent: Option<i16>,
    /// Best RSSI of the uplink.
    pub rssi: Option<i32>,
    /// Best SNR of the uplink.
    pub snr: Option<f64>,
    /// ChirpStack application the uplink came from (a device may be moved between them).
    pub application_id: Option<String>,
}

/// What a device-info message changes on its meter.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoUpdate {
    /// The meter.
    pub meter_id: i64,
    /// Firmware version text.
    pub firmware_version: String,
    /// The interval the meter reports at.
    pub reporting_interval_minutes: i32,
    /// When the message arrived.
    pub received_at: DateTime<Utc>,
}

/// The columns of [`Meter`], for `SELECT`s.
pub(crate) const METER_COLUMNS: &str = "id, dev_eui, serial, body_number, user_id, application_id, \
     region_id, usage_type, mode, production_date, status, reporting_interval_minutes, \
     last_seen_at, battery_millivolts, battery_percent, rssi, snr, overdue_at, \
     firmware_version, info_received_at, created_at, updated_at, clock_drift_ms, \
     drift_measured_at, service_state";

macro_rules! meter_queries {
    ($db:ty, $dialect:ident) => {
        use chrono::{DateTime, Utc};
        use sqlx::AssertSqlSafe;

        use super::*;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        /// Creates the region if missing; an existing region keeps its name.
        pub async fn ensure_region(
            conn: &mut Conn,
            id: &str,
            name: &str,
            now: DateTime<Utc>,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO regions (id, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Every region, by id.
        pub async fn regions(conn: &mut Conn) -> Result<Vec<Region>> {
            Ok(
                sqlx::query_as("SELECT id, name, created_at FROM regions ORDER BY id")
                    .fetch_all(&mut *conn)
                    .await?,
            )
        }

        async fn meter_where(
            conn: &mut Conn,
            column: &'static str,
            value: &str,
        ) -> Result<Option<Meter>> {
            let sql = format!("SELECT {METER_COLUMNS} FROM meters WHERE {column} = $1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(value)
                .fetch_optional(&mut *conn)
                .await?)
        }

        /// The meter with this DevEUI.
        pub async fn meter_by_dev_eui(conn: &mut Conn, dev_eui: &str) -> Result<Option<Meter>> {
            meter_where(conn, "dev_eui", dev_eui).await
        }

        /// The meter with this serial number.
        pub async fn meter_by_serial(conn: &mut Conn, serial: &str) -> Result<Option<Meter>> {
            meter_where(conn, "serial", serial).await
        }

        /// Registers or updates one meter (keyed by DevEUI), creating its region if needed.
        /// A serial number already held by another DevEUI is a conflict.
        pub async fn register_meter(
            conn: &mut Conn,
            m: &NewMeter,
            now: DateTime<Utc>,
        ) -> Result<Registered> {
            let by_serial = meter_by_serial(conn, &m.serial).await?;
            let existing = meter_by_dev_eui(conn, &m.dev_eui).await?;
            let decided =
                crate::storage::registration::decide(m, existing.as_ref(), by_serial.as_ref())
                    .map_err(Error::Conflict)?;
            if decided == Registered::Unchanged {
                return Ok(decided);
            }
            ensure_region(conn, &m.region_id, &m.region_id, now).await?;
            let sql = format!(
                "INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, \
                 region_id, usage_type, mode, production_date, status, \
                 reporting_interval_minutes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'installed', $10, $11, $11) \
                 ON CONFLICT (dev_eui) DO UPDATE SET serial = excluded.serial, \
                 body_number = excluded.body_number, user_id = excluded.user_id, \
                 application_id = excluded.application_id, region_id = excluded.region_id, \
                 usage_type = excluded.usage_type, mode = excluded.mode, \
                 production_date = excluded.production_date, \
                 reporting_interval_minutes = excluded.reporting_interval_minutes, \
                 updated_at = excluded.updated_at, {BACK_IN_SERVICE}",
                BACK_IN_SERVICE = crate::storage::registration::BACK_IN_SERVICE
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(&m.dev_eui)
                .bind(&m.serial)
                .bind(m.body_number)
                .bind(&m.user_id)
                .bind(&m.application_id)
                .bind(&m.region_id)
                .bind(&m.usage_type)
                .bind(&m.mode)
                .bind(m.production_date)
                .bind(m.reporting_interval_minutes)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            crate::storage::lifecycle::$dialect::open_installations(
                conn,
                &[m.dev_eui.as_str()],
                now,
            )
            .await?;
            Ok(decided)
        }

        /// Writes the audit row of an install (see `lifecycle::*::audit`).
        pub async fn audit_install(
            conn: &mut Conn,
            audit: &crate::storage::lifecycle::NewAudit,
            who: &crate::storage::lifecycle::Actor,
        ) -> Result<()> {
            crate::storage::lifecycle::$dialect::audit(conn, audit, who).await
        }

        /// Meters of a region (all when `None`), by id, after the cursor `after_id`.
        pub async fn meters(
            conn: &mut Conn,
            region: Option<&str>,
            after_id: i64,
            limit: i64,
        ) -> Result<Vec<Meter>> {
            // The filter is added only when given, so that the (region_id, id) index serves it.
            let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {METER_COLUMNS} FROM meters WHERE id > "
            ));
            q.push_bind(after_id);
            if let Some(r) = region {
                q.push(" AND region_id = ").push_bind(r.to_owned());
            }
            q.push(" ORDER BY id LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }

        /// The meters with these DevEUIs (those registered).
        pub async fn by_dev_euis(conn: &mut Conn, dev_euis: &[String]) -> Result<Vec<Meter>> {
            let mut out = Vec::new();
            for chunk in dev_euis.chunks(1_000) {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {METER_COLUMNS} FROM meters WHERE dev_eui IN ("
                ));
                let mut list = q.separated(", ");
                for d in chunk {
                    list.push_bind(d.clone());
                }
                q.push(")");
                out.extend(q.build_query_as::<Meter>().fetch_all(&mut *conn).await?);
            }
            Ok(out)
        }

        /// Records what device-info messages said.
        pub async fn update_info(conn: &mut Conn, updates: &[InfoUpdate]) -> Result<()> {
            for u in updates {
                sqlx::query(
                    "UPDATE meters SET firmware_version = $2, reporting_interval_minutes = $3, \
                     info_received_at = $4, updated_at = $4 WHERE id = $1 \
                     AND (info_received_at IS NULL OR info_received_at <= $4)",
                )
                .bind(u.meter_id)
                .bind(&u.firmware_version)
                .bind(u.reporting_interval_minutes)
                .bind(u.received_at)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }
    };
}

/// A batch's link and state updates by meter (each at most once in either list).
type MeterRow<'a> = (
    i64,
    Option<&'a LinkUpdate>,
    Option<&'a crate::storage::monitor::StateUpdate>,
);

/// Pairs the link and state updates of each meter, ordered by meter.
fn merge_rows<'a>(
    links: &'a [LinkUpdate],
    states: &'a [crate::storage::monitor::StateUpdate],
) -> Vec<MeterRow<'a>> {
    let mut by_meter: std::collections::BTreeMap<i64, MeterRow<'a>> = Default::default();
    for l in links {
        by_meter
            .entry(l.meter_id)
            .or_insert((l.meter_id, None, None))
            .1 = Some(l);
    }
    for st in states {
        by_meter
            .entry(st.meter_id)
            .or_insert((st.meter_id, None, None))
            .2 = Some(st);
    }
    by_meter.into_values().collect()
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    meter_queries!(sqlx::Sqlite, sqlite);

    /// Applies the link state of a batch in one statement per thousand meters.
    pub async fn update_links(conn: &mut Conn, updates: &[LinkUpdate]) -> Result<()> {
        // One statement for the whole batch: a round trip per meter is what limited the
        // bridge. (SQLite takes each value's type from its bind: the VALUES need no casts.)
        const ROWS: usize = 1_000;
        for chunk in updates.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "WITH v (id, seen, overdue, mv, pct, rssi, snr, app) AS (",
            );
            // Padded with rows of NULLs, which match no meter.
            let rows = crate::storage::padding::rows(chunk, ROWS);
            q.push_values(rows, |mut b, u| {
                b.push_bind(u.map(|u| u.meter_id))
                    .push_bind(u.map(|u| u.last_seen_at))
                    .push_bind(u.map(|u| u.overdue_at))
                    .push_bind(u.and_then(|u| u.battery_millivolts))
                    .push_bind(u.and_then(|u| u.battery_percent))
                    .push_bind(u.and_then(|u| u.rssi))
                    .push_bind(u.and_then(|u| u.snr))
                    .push_bind(u.and_then(|u| u.application_id.clone()));
            });
            // A redelivered older uplink must not move the meter's state back in time.
            q.push(
                ") UPDATE meters SET last_seen_at = v.seen, overdue_at = v.overdue, \
                 battery_millivolts = COALESCE(v.mv, meters.battery_millivolts), \
                 battery_percent = COALESCE(v.pct, meters.battery_percent), \
                 rssi = COALESCE(v.rssi, meters.rssi), snr = COALESCE(v.snr, meters.snr), \
                 application_id = COALESCE(v.app, meters.application_id), \
                 status = CASE WHEN meters.status IN ('installed', 'silent') THEN 'active' \
                          ELSE meters.status END, \
                 updated_at = v.seen \
                 FROM v WHERE meters.id = v.id \
                 AND (meters.last_seen_at IS NULL OR meters.last_seen_at <= v.seen)",
            );
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Writes a batch's link state and the rules' remembered state of its meters. Two
    /// statements: on SQLite one with a condition per column costs more than writing the
    /// rows twice.
    pub async fn update_meters(
        conn: &mut Conn,
        links: &[LinkUpdate],
        states: &[crate::storage::monitor::StateUpdate],
    ) -> Result<()> {
        crate::storage::monitor::sqlite::update_states(conn, states).await?;
        update_links(conn, links).await
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    meter_queries!(sqlx::Postgres, postgres);

    /// Writes a batch's link state and the rules' remembered state of its meters in one
    /// statement: each statement costs a round trip, so one `UPDATE` instead of two per
    /// batch. Link columns change only when the uplink is not older than the one stored (a
    /// redelivered older uplink must not move the meter back in time); the state columns
    /// whenever the meter has a state row.
    pub async fn update_meters(
        conn: &mut Conn,
        links: &[LinkUpdate],
        states: &[crate::storage::monitor::StateUpdate],
    ) -> Result<()> {
        if links.is_empty() && states.is_empty() {
            return Ok(());
        }
        let rows = super::merge_rows(links, states);
        fn column<'a, T>(
            rows: &[super::MeterRow<'a>],
            f: impl Fn(&super::MeterRow<'a>) -> T,
        ) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        let newer = "(v.seen IS NOT NULL AND (meters.last_seen_at IS NULL \
                     OR meters.last_seen_at <= v.seen))";
        let link = |column: &str, value: &str| {
            format!("{column} = CASE WHEN {newer} THEN {value} ELSE meters.{column} END")
        };
        let state = |column: &str, value: &str| {
            format!("{column} = CASE WHEN v.has_state THEN {value} ELSE meters.{column} END")
        };
        let sql = [
            link("last_seen_at", "v.seen"),
            link("overdue_at", "v.overdue"),
            link(
                "battery_millivolts",
                "COALESCE(v.mv, meters.battery_millivolts)",
            ),
            link("battery_percent", "COALESCE(v.pct, meters.battery_percent)"),
            link("rssi", "COALESCE(v.rssi, meters.rssi)"),
            link("snr", "COALESCE(v.snr, meters.snr)"),
            link("application_id", "COALESCE(v.app, meters.application_id)"),
            link(
                "status",
                "CASE WHEN meters.status IN ('installed', 'silent') THEN 'active' \
                 ELSE meters.status END",
            ),
            link("updated_at", "v.seen"),
            state("valve", "v.valve"),
            state("register_value", "v.reg"),
            state("register_at", "v.reg_at"),
            state("daily_consumption_avg", "v.avg"),
            state("consumption_samples", "v.samples"),
            "clock_drift_ms = COALESCE(v.drift, meters.clock_drift_ms)".to_owned(),
            "drift_measured_at = COALESCE(v.drift_at, meters.drift_measured_at)".to_owned(),
        ]
        .join(", ");
        let sql = format!(
            "UPDATE meters SET {sql} \
             FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::integer[], \
             $5::smallint[], $6::integer[], $7::double precision[], $8::text[], \
             $9::boolean[], $10::smallint[], $11::bigint[], $12::timestamptz[], \
             $13::double precision[], $14::integer[], $15::bigint[], $16::timestamptz[]) \
             AS v (id, seen, overdue, mv, pct, rssi, snr, app, \
             has_state, valve, reg, reg_at, avg, samples, drift, drift_at) \
             WHERE meters.id = v.id"
        );
        let drift = |r: &super::MeterRow<'_>| r.2.and_then(|s| s.drift);
        sqlx::query(AssertSqlSafe(sql))
            .bind(column(&rows, |r| r.0))
            .bind(column(&rows, |r| r.1.map(|l| l.last_seen_at)))
            .bind(column(&rows, |r| r.1.map(|l| l.overdue_at)))
            .bind(column(&rows, |r| r.1.and_then(|l| l.battery_millivolts)))
            .bind(column(&rows, |r| r.1.and_then(|l| l.battery_percent)))
            .bind(column(&rows, |r| r.1.and_then(|l| l.rssi)))
            .bind(column(&rows, |r| r.1.and_then(|l| l.snr)))
            .bind(column(&rows, |r| {
                r.1.and_then(|l| l.application_id.as_deref())
            }))
            .bind(column(&rows, |r| r.2.is_some()))
            .bind(column(&rows, |r| r.2.and_then(|s| s.state.valve)))
            .bind(column(&rows, |r| r.2.and_then(|s| s.state.register)))
            .bind(column(&rows, |r| r.2.and_then(|s| s.state.register_at)))
            .bind(column(&rows, |r| r.2.and_then(|s| s.state.daily_average)))
            .bind(column(&rows, |r| r.2.map(|s| s.state.samples)))
            .bind(column(&rows, |r| drift(r).map(|d| d.0)))
            .bind(column(&rows, |r| drift(r).map(|d| d.1)))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
