//! Replacing a supply point's meter in one transaction, and the supply point reads that
//! replacement and billing across installations need.

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::lifecycle::{Actor, AuditAction, Installation, LastRegisters, NewAudit};
use super::meters::NewMeter;
use super::{Result, Store};

/// The meter a replacement puts in.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A registered meter in stock (`removed`), put back in service.
    Stock {
        /// Its id.
        meter_id: i64,
        /// Its DevEUI.
        dev_eui: String,
        /// Its region before it takes the supply point's.
        region_before: String,
    },
    /// A meter registered by the replacement.
    Register(Box<NewMeter>),
}

impl Incoming {
    /// The incoming meter's DevEUI.
    pub fn dev_eui(&self) -> &str {
        match self {
            Incoming::Stock { dev_eui, .. } => dev_eui,
            Incoming::Register(m) => &m.dev_eui,
        }
    }
}

/// A replacement decided (`registry::lifecycle::replace::plan`), ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// The supply point.
    pub supply_point_id: i64,
    /// The old meter's open installation there.
    pub installation_id: i64,
    /// The old meter.
    pub old_meter_id: i64,
    /// Its DevEUI.
    pub old_dev_eui: String,
    /// When the meters were swapped: the old installation's end, the new one's start.
    pub at: DateTime<Utc>,
    /// The old meter's register when taken out.
    pub closing_register: i64,
    /// The new meter's register when put in, when known.
    pub opening_register: Option<i64>,
    /// The supply point's region, which the new meter takes.
    pub region_id: String,
    /// The supply point's customer, which the new meter takes.
    pub user_id: String,
    /// The supply point's usage type, which the new meter takes.
    pub usage_type: String,
    /// The meter put in.
    pub incoming: Incoming,
    /// The audit rows' (before, after): the old meter's, then the new meter's.
    pub audit: [(serde_json::Value, serde_json::Value); 2],
}

/// A replacement written: the installation closed and the one opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    /// The old meter's, closed.
    pub closed: Installation,
    /// The new meter's, open.
    pub opened: Installation,
    /// The old meter's DevEUI.
    pub old_dev_eui: String,
    /// The new meter's DevEUI.
    pub new_dev_eui: String,
}

/// The columns of [`Installation`] over `installations i JOIN supply_points s`.
const COLUMNS: &str = "i.id, i.supply_point_id, i.meter_id, i.installed_at, i.removed_at, \
     i.opening_register, i.closing_register, s.region_id, s.user_id, s.usage_type, s.address";

macro_rules! replace_queries {
    ($db:ty, $dialect:ident) => {
        use chrono::{DateTime, Utc};
        use sqlx::AssertSqlSafe;

        use super::*;
        use crate::storage::Error;

        type Conn = <$db as sqlx::Database>::Connection;

        async fn installation(conn: &mut Conn, id: i64) -> Result<Installation> {
            let sql = format!(
                "SELECT {COLUMNS} FROM installations i \
                 JOIN supply_points s ON s.id = i.supply_point_id WHERE i.id = $1"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(&mut *conn)
                .await?)
        }

        /// A supply point's installations, oldest first (none for an unknown supply point).
        pub async fn installations(
            conn: &mut Conn,
            supply_point_id: i64,
        ) -> Result<Vec<Installation>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM installations i \
                 JOIN supply_points s ON s.id = i.supply_point_id \
                 WHERE i.supply_point_id = $1 ORDER BY i.installed_at, i.id"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(supply_point_id)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Whether the supply point exists.
        pub async fn supply_point_exists(conn: &mut Conn, id: i64) -> Result<bool> {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM supply_points WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(found.is_some())
        }

        /// A meter's latest reading at or before `until`.
        pub async fn last_registers_until(
            conn: &mut Conn,
            meter_id: i64,
            until: DateTime<Utc>,
        ) -> Result<Option<LastRegisters>> {
            Ok(sqlx::query_as(
                "SELECT reading_time, gas_volume_litres, energy_wh FROM readings \
                 WHERE meter_id = $1 AND reading_time <= $2 \
                 ORDER BY reading_time DESC LIMIT 1",
            )
            .bind(meter_id)
            .bind(until)
            .fetch_optional(&mut *conn)
            .await?)
        }

        /// Writes a replacement: the old installation closed, the old meter removed (its
        /// unfinished commands failed), the new meter put in service with the supply point's
        /// customer, region and usage type (registered first when new), its installation
        /// opened, both meters audited. Anything changed since the plan was read is a
        /// conflict and nothing is written.
        pub async fn replace(conn: &mut Conn, r: &Replacement, who: &Actor) -> Result<Replaced> {
            let now = who.at;
            let changed = |what: &str| {
                Error::Conflict(format!("{what} changed meanwhile: read it and try again"))
            };
            let closed = sqlx::query(
                "UPDATE installations SET removed_at = $3, closing_register = $4 \
                 WHERE id = $1 AND meter_id = $2 AND removed_at IS NULL AND installed_at <= $3",
            )
            .bind(r.installation_id)
            .bind(r.old_meter_id)
            .bind(r.at)
            .bind(r.closing_register)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if closed == 0 {
                return Err(changed("the supply point's installation"));
            }
            let removed = sqlx::query(
                "UPDATE meters SET service_state = 'removed', overdue_at = NULL, updated_at = $2 \
                 WHERE id = $1 AND service_state = 'in_service'",
            )
            .bind(r.old_meter_id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if removed == 0 {
                return Err(changed("the old meter"));
            }
            sqlx::query(
                "UPDATE commands SET state = 'failed', error = $2, updated_at = $3 \
                 WHERE meter_id = $1 AND state IN ('pending', 'queued', 'sent')",
            )
            .bind(r.old_meter_id)
            .bind(format!(
                "the meter was replaced by {}: {}",
                r.incoming.dev_eui(),
                who.reason
            ))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            let new_meter_id: i64 = match &r.incoming {
                Incoming::Stock { meter_id, .. } => {
                    let back = sqlx::query(
                        "UPDATE meters SET service_state = 'in_service', region_id = $2, \
                         user_id = $3, usage_type = $4, overdue_at = NULL, updated_at = $5 \
                         WHERE id = $1 AND service_state = 'removed' AND NOT EXISTS \
                         (SELECT 1 FROM installations i WHERE i.meter_id = $1 \
                         AND i.removed_at IS NULL)",
                    )
                    .bind(meter_id)
                    .bind(&r.region_id)
                    .bind(&r.user_id)
                    .bind(&r.usage_type)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if back == 0 {
                        return Err(changed("the new meter"));
                    }
                    *meter_id
                }
                Incoming::Register(m) => {
                    let taken: Option<String> = sqlx::query_scalar(
                        "SELECT dev_eui FROM meters WHERE dev_eui = $1 OR serial = $2",
                    )
                    .bind(&m.dev_eui)
                    .bind(&m.serial)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(d) = taken {
                        return Err(Error::Conflict(format!(
                            "meter {d} was registered meanwhile with this DevEUI or serial"
                        )));
                    }
                    sqlx::query_scalar(
                        "INSERT INTO meters (dev_eui, serial, body_number, user_id, \
                         application_id, region_id, usage_type, mode, production_date, status, \
                         reporting_interval_minutes, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'installed', $10, $11, $11) \
                         RETURNING id",
                    )
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
                    .fetch_one(&mut *conn)
                    .await?
                }
            };
            let opened: i64 = sqlx::query_scalar(
                "INSERT INTO installations (supply_point_id, meter_id, installed_at, \
                 opening_register) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(r.supply_point_id)
            .bind(new_meter_id)
            .bind(r.at)
            .bind(r.opening_register)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query("UPDATE supply_points SET updated_at = $2 WHERE id = $1")
                .bind(r.supply_point_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            for (meter_id, (before, after)) in [r.old_meter_id, new_meter_id].iter().zip(&r.audit)
            {
                crate::storage::lifecycle::$dialect::audit(
                    conn,
                    &NewAudit {
                        meter_id: *meter_id,
                        action: AuditAction::Replace,
                        before: before.clone(),
                        after: after.clone(),
                    },
                    who,
                )
                .await?;
            }
            Ok(Replaced {
                closed: installation(conn, r.installation_id).await?,
                opened: installation(conn, opened).await?,
                old_dev_eui: r.old_dev_eui.clone(),
                new_dev_eui: r.incoming.dev_eui().to_owned(),
            })
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    replace_queries!(sqlx::Sqlite, sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    replace_queries!(sqlx::Postgres, postgres);
}

impl Store {
    /// Writes a replacement in one transaction (see `replace::*::replace`).
    pub async fn replace_meter(&self, r: &Replacement, who: &Actor) -> Result<Replaced> {
        in_transaction!(self, |c, q| q::replace(c, r, who).await, self)
    }

    /// A meter's latest registers at or before `until`.
    pub async fn last_registers_until(
        &self,
        meter_id: i64,
        until: DateTime<Utc>,
    ) -> Result<Option<LastRegisters>> {
        on_reader!(
            self,
            |c, q| q::last_registers_until(c, meter_id, until).await,
            self
        )
    }

    /// A supply point's installations, oldest first; `None` for an unknown supply point.
    pub async fn supply_point_installations(
        &self,
        supply_point_id: i64,
    ) -> Result<Option<Vec<Installation>>> {
        on_reader!(
            self,
            |c, q| {
                if q::supply_point_exists(c, supply_point_id).await? {
                    Ok(Some(q::installations(c, supply_point_id).await?))
                } else {
                    Ok(None)
                }
            },
            self
        )
    }
}
