//! Meters' OTAA root keys (JoinEUI and AppKey), given at install and read only to create the
//! meters' devices in ChirpStack. They live in a table of their own, apart from `meters`, so
//! that no reading of a meter serves them; nothing here is ever part of an API answer.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{Result, Store};

/// A meter's OTAA root keys, lowercase hex. `Debug` never prints the AppKey.
#[derive(Clone, PartialEq, Eq)]
pub struct OtaaKeys {
    /// JoinEUI (AppEUI), 16 hex digits.
    pub join_eui: String,
    /// The LoRaWAN 1.0.x AppKey, 32 hex digits.
    pub app_key: String,
}

impl fmt::Debug for OtaaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtaaKeys")
            .field("join_eui", &self.join_eui)
            .field("app_key", &"***")
            .finish()
    }
}

/// A registered meter as the ChirpStack sync sees it: which application it belongs to,
/// whether it is in service, and its keys when it has some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedMeter {
    /// DevEUI, 16 lowercase hex digits.
    pub dev_eui: String,
    /// Its serial (the device's name in ChirpStack).
    pub serial: String,
    /// Its ChirpStack application id.
    pub application_id: String,
    /// In service (not removed to stock, not destroyed).
    pub in_service: bool,
    /// Its root keys, when given at install.
    pub keys: Option<OtaaKeys>,
}

/// One row of [`SyncedMeter`] as stored.
#[derive(sqlx::FromRow)]
struct Row {
    dev_eui: String,
    serial: String,
    application_id: String,
    in_service: bool,
    join_eui: Option<String>,
    app_key: Option<String>,
}

impl From<Row> for SyncedMeter {
    fn from(r: Row) -> Self {
        SyncedMeter {
            dev_eui: r.dev_eui,
            serial: r.serial,
            application_id: r.application_id,
            in_service: r.in_service,
            keys: match (r.join_eui, r.app_key) {
                (Some(join_eui), Some(app_key)) => Some(OtaaKeys { join_eui, app_key }),
                _ => None,
            },
        }
    }
}

macro_rules! device_key_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Stores (or replaces) the keys of the meter `dev_eui`; false when no such meter.
        pub async fn set(
            conn: &mut Conn,
            dev_eui: &str,
            keys: &OtaaKeys,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            Ok(sqlx::query(
                "INSERT INTO device_keys (meter_id, join_eui, app_key, updated_at) \
                 SELECT id, $2, $3, $4 FROM meters WHERE dev_eui = $1 \
                 ON CONFLICT (meter_id) DO UPDATE SET join_eui = excluded.join_eui, \
                 app_key = excluded.app_key, updated_at = excluded.updated_at",
            )
            .bind(dev_eui)
            .bind(&keys.join_eui)
            .bind(&keys.app_key)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }

        /// Every registered meter with its keys, in DevEUI order.
        pub async fn synced_meters(conn: &mut Conn) -> Result<Vec<SyncedMeter>> {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT m.dev_eui, m.serial, m.application_id, \
                 (m.service_state = 'in_service') AS in_service, k.join_eui, k.app_key \
                 FROM meters m LEFT JOIN device_keys k ON k.meter_id = m.id ORDER BY m.dev_eui",
            )
            .fetch_all(&mut *conn)
            .await?;
            Ok(rows.into_iter().map(SyncedMeter::from).collect())
        }

        /// Whether `holder` holds the lease `name` at `now`.
        pub async fn holds_lease(
            conn: &mut Conn,
            name: &str,
            holder: &str,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM leases WHERE name = $1 AND holder = $2 AND expires_at >= $3",
            )
            .bind(name)
            .bind(holder)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            Ok(held > 0)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    device_key_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    device_key_queries!(sqlx::Postgres);
}

impl Store {
    /// Stores (or replaces) the OTAA keys of the registered meter `dev_eui`; false when no
    /// meter has that DevEUI.
    pub async fn set_device_keys(
        &self,
        dev_eui: &str,
        keys: &OtaaKeys,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_writer!(self, |c, q| q::set(c, dev_eui, keys, now).await, self)
    }

    /// Every registered meter, in DevEUI order, with its application, whether it is in
    /// service and its keys: what the ChirpStack sync compares with ChirpStack's devices.
    pub async fn synced_meters(&self) -> Result<Vec<SyncedMeter>> {
        on_reader!(self, |c, q| q::synced_meters(c).await, self)
    }

    /// Whether `holder` holds the lease `name` at `now` (taken and renewed by the scheduler;
    /// the ChirpStack sync's periodic rounds run where it is held).
    pub async fn holds_lease(&self, name: &str, holder: &str, now: DateTime<Utc>) -> Result<bool> {
        on_reader!(
            self,
            |c, q| q::holds_lease(c, name, holder, now).await,
            self
        )
    }
}
