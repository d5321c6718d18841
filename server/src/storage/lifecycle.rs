//! A meter's life after installation: its service state, the supply points meters serve and
//! the installation periods that say which meter served which supply point when, the audit
//! trail of every change made to a meter, and the final report a retired meter leaves.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a meter is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Installed at a supply point: it reports, is watched for silence and takes commands.
    InService,
    /// Out of service, in stock (e.g. for renovation): a later install puts it back.
    Removed,
    /// Destroyed: never installed again.
    Destroyed,
}

impl ServiceState {
    /// Every state.
    pub const ALL: [ServiceState; 3] = [
        ServiceState::InService,
        ServiceState::Removed,
        ServiceState::Destroyed,
    ];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::InService => "in_service",
            ServiceState::Removed => "removed",
            ServiceState::Destroyed => "destroyed",
        }
    }

    /// The state with this name.
    pub fn parse(s: &str) -> Option<ServiceState> {
        ServiceState::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl TryFrom<String> for ServiceState {
    type Error = String;

    fn try_from(s: String) -> Result<ServiceState, String> {
        ServiceState::parse(&s).ok_or_else(|| format!("{s:?} is not a service state"))
    }
}

/// What a retirement sends the meter to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetireOutcome {
    /// Renovation: the meter goes back to stock ([`ServiceState::Removed`]).
    Renovation,
    /// Destruction: final ([`ServiceState::Destroyed`]).
    Destruction,
}

impl RetireOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RetireOutcome::Renovation => "renovation",
            RetireOutcome::Destruction => "destruction",
        }
    }

    /// The state the meter ends in.
    pub fn state(self) -> ServiceState {
        match self {
            RetireOutcome::Renovation => ServiceState::Removed,
            RetireOutcome::Destruction => ServiceState::Destroyed,
        }
    }
}

/// What an audited change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Installed for the first time.
    Install,
    /// Installed again after a renovation.
    Reinstall,
    /// Its details changed.
    Change,
    /// Taken out of service (renovation or destruction).
    Retire,
    /// Readings of a time range deleted.
    DeleteReadings,
    /// Alarms of a time range deleted.
    DeleteAlarms,
    /// Its customer's personal data erased.
    EraseCustomer,
    /// Replaced at its supply point by another meter, or put in another's place.
    Replace,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 8] = [
        AuditAction::Install,
        AuditAction::Reinstall,
        AuditAction::Change,
        AuditAction::Retire,
        AuditAction::DeleteReadings,
        AuditAction::DeleteAlarms,
        AuditAction::EraseCustomer,
        AuditAction::Replace,
    ];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Install => "install",
            AuditAction::Reinstall => "reinstall",
            AuditAction::Change => "change",
            AuditAction::Retire => "retire",
            AuditAction::DeleteReadings => "delete_readings",
            AuditAction::DeleteAlarms => "delete_alarms",
            AuditAction::EraseCustomer => "erase_customer",
            AuditAction::Replace => "replace",
        }
    }
}

impl TryFrom<String> for AuditAction {
    type Error = String;

    fn try_from(s: String) -> Result<AuditAction, String> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an audit action"))
    }
}

/// Who did it, when and why: the part of an audit row every operation shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// The API key's name, or `cli`.
    pub name: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, in the caller's words.
    pub reason: String,
}

/// An audit row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// The meter.
    pub meter_id: i64,
    /// What was done.
    pub action: AuditAction,
    /// The changed fields before (a JSON object).
    pub before: serde_json::Value,
    /// The changed fields after (a JSON object).
    pub after: serde_json::Value,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    /// Id: the history's order.
    pub id: i64,
    /// The meter.
    pub meter_id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What was done.
    #[sqlx(try_from = "String")]
    pub action: AuditAction,
    /// The changed fields before, JSON.
    pub before: String,
    /// The changed fields after, JSON.
    pub after: String,
    /// Why.
    pub reason: String,
}

/// A string schema of these names (an `enum`, which every JSON Schema tool reads).
fn names_schema(names: &[&str], description: &str) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": names, "description": description})
}

impl JsonSchema for ServiceState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ServiceState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ServiceState::ALL.iter().map(|s| s.as_str()).collect();
        names_schema(
            &names,
            "in_service: installed at a supply point; removed: in stock (a later install puts \
             it back); destroyed: final.",
        )
    }
}

impl JsonSchema for RetireOutcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetireOutcome".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        names_schema(
            &[
                RetireOutcome::Renovation.as_str(),
                RetireOutcome::Destruction.as_str(),
            ],
            "renovation: back to stock; destruction: final.",
        )
    }
}

impl JsonSchema for AuditAction {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AuditAction".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        names_schema(&names, "What was done to the meter.")
    }
}

/// An installation period, with its supply point.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    /// Id.
    pub id: i64,
    /// The supply point.
    pub supply_point_id: i64,
    /// The meter.
    pub meter_id: i64,
    /// Since when.
    pub installed_at: DateTime<Utc>,
    /// Until when; `null` while it is open.
    pub removed_at: Option<DateTime<Utc>>,
    /// The register when it opened (gas litres or energy Wh), when known.
    pub opening_register: Option<i64>,
    /// The register when it closed, when known.
    pub closing_register: Option<i64>,
    /// The supply point's region.
    pub region_id: String,
    /// The supply point's customer.
    pub user_id: String,
    /// The supply point's usage type.
    pub usage_type: String,
    /// The supply point's address.
    pub address: Option<String>,
}

/// A change to a registered meter: its registration as it was read, and as it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterChange {
    /// The meter.
    pub meter_id: i64,
    /// Its details as read before the change: the write is refused if they differ by then.
    pub expected: super::meters::NewMeter,
    /// Its new details.
    pub new: super::meters::NewMeter,
    /// The supply point's new address (`Some(None)` clears it); `None` leaves it.
    pub address: Option<Option<String>>,
}

/// A meter's last registers, as its latest reading gave them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRegisters {
    /// The reading's time.
    pub reading_time: DateTime<Utc>,
    /// Gas volume, litres.
    pub gas_volume_litres: Option<i64>,
    /// Active energy, Wh.
    pub energy_wh: Option<i64>,
}

/// An alarm still open when the meter was retired.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportAlarm {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// When raised.
    pub raised_at: DateTime<Utc>,
    /// `open` or `acknowledged`.
    pub state: String,
    /// Times raised while open.
    pub occurrences: i32,
}

/// The meter's last field visit.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportInspection {
    /// Id.
    pub id: i64,
    /// When.
    pub visited_at: DateTime<Utc>,
    /// Who.
    pub inspector: String,
    /// Outcome.
    pub outcome: String,
    /// Notes.
    pub notes: String,
}

/// A command the meter still had when it was retired (failed by the retirement).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportCommand {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// Its state before it was failed.
    pub state: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
}

/// What a meter left behind when it was taken out of service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalReport {
    /// meterhub's meter id.
    pub meter_id: i64,
    /// Its DevEUI.
    pub dev_eui: String,
    /// Its serial.
    pub serial: String,
    /// Renovation or destruction.
    pub outcome: RetireOutcome,
    /// Why, in the caller's words.
    pub reason: String,
    /// When.
    pub retired_at: DateTime<Utc>,
    /// Who (the API key's name, or `cli`).
    pub retired_by: String,
    /// The installation it closed, if the meter was installed at a supply point.
    pub installation: Option<Installation>,
    /// The last registers read.
    pub last_registers: Option<LastRegisters>,
    /// Alarms still open or acknowledged (left as they were).
    pub open_alarms: Vec<ReportAlarm>,
    /// The last field visit.
    pub last_inspection: Option<ReportInspection>,
    /// Commands not finished, failed with the retirement's reason.
    pub outstanding_commands: Vec<ReportCommand>,
}

/// The columns of [`Installation`] over `installations i JOIN supply_points s`.
const INSTALLATION_COLUMNS: &str = "i.id, i.supply_point_id, i.meter_id, i.installed_at, \
     i.removed_at, i.opening_register, i.closing_register, s.region_id, s.user_id, \
     s.usage_type, s.address";

macro_rules! lifecycle_queries {
    ($db:ty, $dialect:ident) => {
        use chrono::{DateTime, Utc};
        use sqlx::AssertSqlSafe;

        use super::*;
        use crate::storage::meters::Meter;
        use crate::storage::{Error, Result};

        type Conn = <$db as sqlx::Database>::Connection;

        /// Puts in service at a supply point of their own the meters among `dev_euis` that
        /// are in service without an open installation (new, or back from stock): a new
        /// supply point from each meter's registration and an installation open from `now`.
        /// Keeps the open supply points of the others in step with their meters' region,
        /// customer and usage type. A few statements per thousand meters.
        pub async fn open_installations(
            conn: &mut Conn,
            dev_euis: &[&str],
            now: DateTime<Utc>,
        ) -> Result<()> {
            for chunk in dev_euis.chunks(1_000) {
                let list = |q: &mut sqlx::QueryBuilder<$db>| {
                    q.push(" m.dev_eui IN (");
                    let mut l = q.separated(", ");
                    for d in chunk {
                        l.push_bind(d.to_string());
                    }
                    q.push(")");
                };
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO supply_points (region_id, user_id, usage_type, first_meter_id, \
                     created_at, updated_at) SELECT m.region_id, m.user_id, m.usage_type, m.id, ",
                );
                q.push_bind(now).push(", ").push_bind(now);
                q.push(
                    " FROM meters m WHERE m.service_state = 'in_service' AND NOT EXISTS \
                     (SELECT 1 FROM installations i WHERE i.meter_id = m.id \
                     AND i.removed_at IS NULL) AND",
                );
                list(&mut q);
                q.build().execute(&mut *conn).await?;
                // The supply points just created are those without any installation.
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO installations (supply_point_id, meter_id, installed_at) \
                     SELECT s.id, s.first_meter_id, ",
                );
                q.push_bind(now);
                q.push(
                    " FROM supply_points s JOIN meters m ON m.id = s.first_meter_id \
                     WHERE NOT EXISTS (SELECT 1 FROM installations i \
                     WHERE i.supply_point_id = s.id) AND",
                );
                list(&mut q);
                q.build().execute(&mut *conn).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE supply_points SET region_id = m.region_id, user_id = m.user_id, \
                     usage_type = m.usage_type, updated_at = ",
                );
                q.push_bind(now);
                q.push(
                    " FROM installations i JOIN meters m ON m.id = i.meter_id \
                     WHERE i.supply_point_id = supply_points.id AND i.removed_at IS NULL \
                     AND (supply_points.region_id <> m.region_id \
                     OR supply_points.user_id <> m.user_id \
                     OR supply_points.usage_type <> m.usage_type) AND",
                );
                list(&mut q);
                q.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// The meters among `meter_ids` that are not in service.
        pub async fn not_in_service(conn: &mut Conn, meter_ids: &[i64]) -> Result<Vec<i64>> {
            if meter_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT id FROM meters WHERE service_state <> 'in_service' AND id IN (",
            );
            let mut list = q.separated(", ");
            for id in meter_ids {
                list.push_bind(*id);
            }
            q.push(")");
            Ok(q.build_query_scalar().fetch_all(&mut *conn).await?)
        }

        /// Writes an audit row.
        pub async fn audit(conn: &mut Conn, a: &NewAudit, who: &Actor) -> Result<()> {
            sqlx::query(
                "INSERT INTO meter_audit (meter_id, at, actor, action, before, after, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(a.meter_id)
            .bind(who.at)
            .bind(&who.name)
            .bind(a.action.as_str())
            .bind(a.before.to_string())
            .bind(a.after.to_string())
            .bind(&who.reason)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// A meter's audit rows before `before_id`, newest first.
        pub async fn history(
            conn: &mut Conn,
            meter_id: i64,
            before_id: i64,
            limit: i64,
        ) -> Result<Vec<AuditRow>> {
            Ok(sqlx::query_as(
                "SELECT id, meter_id, at, actor, action, before, after, reason FROM meter_audit \
                 WHERE meter_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(meter_id)
            .bind(before_id)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?)
        }

        /// The meter's open installation, with its supply point.
        pub async fn open_installation(
            conn: &mut Conn,
            meter_id: i64,
        ) -> Result<Option<Installation>> {
            let sql = format!(
                "SELECT {INSTALLATION_COLUMNS} FROM installations i \
                 JOIN supply_points s ON s.id = i.supply_point_id \
                 WHERE i.meter_id = $1 AND i.removed_at IS NULL"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(meter_id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        /// A meter's installations, oldest first.
        pub async fn installations(conn: &mut Conn, meter_id: i64) -> Result<Vec<Installation>> {
            let sql = format!(
                "SELECT {INSTALLATION_COLUMNS} FROM installations i \
                 JOIN supply_points s ON s.id = i.supply_point_id \
                 WHERE i.meter_id = $1 ORDER BY i.installed_at, i.id"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(meter_id)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Changes a meter's registration (and its open supply point's region, customer,
        /// usage type and address), unless its details are no longer those expected or it
        /// was destroyed meanwhile: then a conflict.
        pub async fn change(conn: &mut Conn, c: &MeterChange, now: DateTime<Utc>) -> Result<()> {
            crate::storage::meters::$dialect::ensure_region(
                conn,
                &c.new.region_id,
                &c.new.region_id,
                now,
            )
            .await?;
            let (n, e) = (&c.new, &c.expected);
            let changed = sqlx::query(
                "UPDATE meters SET body_number = $2, user_id = $3, application_id = $4, \
                 region_id = $5, usage_type = $6, mode = $7, production_date = $8, \
                 reporting_interval_minutes = $9, updated_at = $10 \
                 WHERE id = $1 AND body_number = $11 AND user_id = $12 \
                 AND application_id = $13 AND region_id = $14 AND usage_type = $15 \
                 AND mode = $16 AND production_date = $17 \
                 AND reporting_interval_minutes = $18 AND service_state <> 'destroyed'",
            )
            .bind(c.meter_id)
            .bind(n.body_number)
            .bind(&n.user_id)
            .bind(&n.application_id)
            .bind(&n.region_id)
            .bind(&n.usage_type)
            .bind(&n.mode)
            .bind(n.production_date)
            .bind(n.reporting_interval_minutes)
            .bind(now)
            .bind(e.body_number)
            .bind(&e.user_id)
            .bind(&e.application_id)
            .bind(&e.region_id)
            .bind(&e.usage_type)
            .bind(&e.mode)
            .bind(e.production_date)
            .bind(e.reporting_interval_minutes)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(Error::Conflict(
                    "the meter changed meanwhile (or was destroyed): read it and try again"
                        .into(),
                ));
            }
            sqlx::query(
                "UPDATE supply_points SET region_id = $2, user_id = $3, usage_type = $4, \
                 address = CASE WHEN $5 THEN $6 ELSE address END, updated_at = $7 \
                 WHERE id = (SELECT supply_point_id FROM installations \
                 WHERE meter_id = $1 AND removed_at IS NULL)",
            )
            .bind(c.meter_id)
            .bind(&n.region_id)
            .bind(&n.user_id)
            .bind(&n.usage_type)
            .bind(c.address.is_some())
            .bind(c.address.clone().flatten())
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Takes an in-service meter out of service: fails its unfinished commands with
        /// `why`, closes its installation at its last register, sets its state (it is no
        /// longer watched for silence) and stores and returns its final report. A meter not
        /// in service is a conflict.
        pub async fn retire(
            conn: &mut Conn,
            meter: &Meter,
            outcome: RetireOutcome,
            who: &Actor,
        ) -> Result<FinalReport> {
            let now = who.at;
            let moved = sqlx::query(
                "UPDATE meters SET service_state = $2, overdue_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND service_state = 'in_service'",
            )
            .bind(meter.id)
            .bind(outcome.state().as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if moved == 0 {
                return Err(Error::Conflict(format!(
                    "meter {} is not in service",
                    meter.dev_eui
                )));
            }
            let last_registers: Option<LastRegisters> = sqlx::query_as(
                "SELECT reading_time, gas_volume_litres, energy_wh FROM readings \
                 WHERE meter_id = $1 ORDER BY reading_time DESC LIMIT 1",
            )
            .bind(meter.id)
            .fetch_optional(&mut *conn)
            .await?;
            let open_alarms: Vec<ReportAlarm> = sqlx::query_as(
                "SELECT id, kind, raised_at, state, occurrences FROM alarms \
                 WHERE meter_id = $1 AND state <> 'cleared' ORDER BY id",
            )
            .bind(meter.id)
            .fetch_all(&mut *conn)
            .await?;
            let last_inspection: Option<ReportInspection> = sqlx::query_as(
                "SELECT id, visited_at, inspector, outcome, notes FROM inspections \
                 WHERE meter_id = $1 ORDER BY visited_at DESC, id DESC LIMIT 1",
            )
            .bind(meter.id)
            .fetch_optional(&mut *conn)
            .await?;
            let outstanding_commands: Vec<ReportCommand> = sqlx::query_as(
                "SELECT id, kind, state, created_at FROM commands \
                 WHERE meter_id = $1 AND state IN ('pending', 'queued', 'sent') \
                 ORDER BY created_at, id",
            )
            .bind(meter.id)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE commands SET state = 'failed', error = $2, updated_at = $3 \
                 WHERE meter_id = $1 AND state IN ('pending', 'queued', 'sent')",
            )
            .bind(meter.id)
            .bind(format!(
                "the meter was retired ({}): {}",
                outcome.as_str(),
                who.reason
            ))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            let closing = last_registers
                .as_ref()
                .and_then(|r| r.gas_volume_litres.or(r.energy_wh));
            // An installation opened (by the clock of the day) after `now` closes when it
            // opened: a period never ends before it starts.
            sqlx::query(
                "UPDATE installations SET removed_at = CASE WHEN installed_at > $2 \
                 THEN installed_at ELSE $2 END, closing_register = $3 \
                 WHERE meter_id = $1 AND removed_at IS NULL",
            )
            .bind(meter.id)
            .bind(now)
            .bind(closing)
            .execute(&mut *conn)
            .await?;
            let installation = {
                let sql = format!(
                    "SELECT {INSTALLATION_COLUMNS} FROM installations i \
                     JOIN supply_points s ON s.id = i.supply_point_id \
                     WHERE i.meter_id = $1 ORDER BY i.installed_at DESC, i.id DESC LIMIT 1"
                );
                sqlx::query_as::<_, Installation>(AssertSqlSafe(sql))
                    .bind(meter.id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .filter(|i| i.removed_at.is_some())
            };
            let report = FinalReport {
                meter_id: meter.id,
                dev_eui: meter.dev_eui.clone(),
                serial: meter.serial.clone(),
                outcome,
                reason: who.reason.clone(),
                retired_at: now,
                retired_by: who.name.clone(),
                installation,
                last_registers,
                open_alarms,
                last_inspection,
                outstanding_commands,
            };
            let json = serde_json::to_string(&report)
                .map_err(|e| Error::Conflict(format!("the final report: {e}")))?;
            sqlx::query(
                "INSERT INTO final_reports (meter_id, outcome, created_at, report) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(meter.id)
            .bind(outcome.as_str())
            .bind(now)
            .bind(json)
            .execute(&mut *conn)
            .await?;
            audit(
                conn,
                &NewAudit {
                    meter_id: meter.id,
                    action: AuditAction::Retire,
                    before: serde_json::json!({"serviceState": meter.service_state.as_str()}),
                    after: serde_json::json!({
                        "serviceState": outcome.state().as_str(),
                        "outcome": outcome.as_str(),
                        "outstandingCommandsFailed": report.outstanding_commands.len(),
                    }),
                },
                who,
            )
            .await?;
            Ok(report)
        }

        /// A meter's latest final report.
        pub async fn final_report(conn: &mut Conn, meter_id: i64) -> Result<Option<FinalReport>> {
            let text: Option<String> = sqlx::query_scalar(
                "SELECT report FROM final_reports WHERE meter_id = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(meter_id)
            .fetch_optional(&mut *conn)
            .await?;
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    Error::Conflict(format!("the stored final report cannot be read: {e}"))
                })
            })
            .transpose()
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    lifecycle_queries!(sqlx::Sqlite, sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    lifecycle_queries!(sqlx::Postgres, postgres);
}
