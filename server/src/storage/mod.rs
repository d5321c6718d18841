//! Storage: one contract, two databases.
//!
//! SQLite (WAL) is the default, zero-setup store; PostgreSQL is the store for scale. Both run
//! the same runtime queries (written once per entity module and instantiated for each
//! database by a macro) and the same test suite; only connection set-up, migrations and
//! PostgreSQL's monthly partitions differ.
//!
//! SQLite allows one writer at a time. All writes go through a pool of exactly one
//! connection, and write transactions start with `BEGIN IMMEDIATE`, so meterhub's own
//! writers queue in the pool instead of failing with SQLITE_BUSY; reads use a separate pool
//! and never block under WAL.

pub mod alarms;
pub mod commands;
pub mod connect;
pub mod device_status;
mod error;
pub mod identities;
pub mod ingest;
pub mod inspections;
pub mod lifecycle;
pub mod meters;
mod migrations;
pub mod monitor;
pub(crate) mod padding;
pub mod partitions;
pub mod quarantine;
pub mod readings;
pub mod registration;
pub mod retention;
pub mod schedules;
pub mod seen_keys;
pub mod self_tests;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, SqlitePool};
use uuid::Uuid;

pub use error::{Error, Result};

use alarms::{Alarm, NewAlarm};
use commands::CommandRow;
use identities::EventIdentity;
use inspections::{Inspection, NewInspection};
use meters::{LinkUpdate, Meter, NewMeter, Region, Registered};
use partitions::PartitionReport;
use quarantine::{NewQuarantined, Quarantined};
use readings::StoredReading;

/// Longest a batch transaction may take before it counts as a transient failure.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a read waits for a connection (and `/ready`'s probe for its answer). The pool
/// itself waits ten seconds, reconnecting meanwhile, which is right for the writer's batches
/// but held every API request that long during an outage: reads give up sooner, the API
/// answers 503 with `Retry-After`, and the writer, whose look-ups also read, retries anyway.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The store: cheap to clone (pools are shared).
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite: one writer connection, several readers.
    Sqlite {
        /// Exactly one connection: SQLite's single writer.
        writer: SqlitePool,
        /// Read-only connections.
        reader: SqlitePool,
    },
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$conn` bound to a write connection of either database, calling the
/// dialect's module `$m::sqlite` or `$m::postgres` through the `$q` path inside the body.
macro_rules! on_writer {
    ($store:expr, |$conn:ident, $q:ident| $body:expr, $module:ident) => {
        match $store {
            Store::Sqlite { writer, .. } => {
                let mut $conn = writer.acquire().await?;
                let $conn = &mut *$conn;
                use $module::sqlite as $q;
                $body
            }
            Store::Postgres(pool) => {
                let mut $conn = pool.acquire().await?;
                let $conn = &mut *$conn;
                use $module::postgres as $q;
                $body
            }
        }
    };
}

/// Like [`on_writer`] but on a read connection.
macro_rules! on_reader {
    ($store:expr, |$conn:ident, $q:ident| $body:expr, $module:ident) => {
        match $store {
            Store::Sqlite { reader, .. } => {
                let mut $conn = $crate::storage::read_connection(reader).await?;
                let $conn = &mut *$conn;
                use $module::sqlite as $q;
                $body
            }
            Store::Postgres(pool) => {
                let mut $conn = $crate::storage::read_connection(pool).await?;
                let $conn = &mut *$conn;
                use $module::postgres as $q;
                $body
            }
        }
    };
}

/// A connection for a read, or [`Error::Timeout`] after [`READ_TIMEOUT`].
pub(crate) async fn read_connection<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::pool::PoolConnection<DB>> {
    match tokio::time::timeout(READ_TIMEOUT, pool.acquire()).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(Error::Timeout(READ_TIMEOUT)),
    }
}

/// Runs `$body` (a `Result`) in one write transaction (SQLite: `BEGIN IMMEDIATE`), committing
/// only when it succeeds; an error rolls back everything the body wrote.
macro_rules! in_transaction {
    ($store:expr, |$conn:ident, $q:ident| $body:expr, $module:ident) => {
        in_held_transaction!($store, |$conn, $q| $body, $module, |_: &_| ()).map(|(out, ())| out)
    };
}

/// `in_transaction!` for a write whose effect is announced to readers: `$hold` sees the
/// transaction's result before its commit and returns a guard (see `cache::Changes::begin`)
/// that is held across the commit and handed back with the result, so the write is never
/// visible to a reader before it is announced as in flight. A failed commit drops the guard.
macro_rules! in_held_transaction {
    ($store:expr, |$conn:ident, $q:ident| $body:expr, $module:ident, $hold:expr) => {
        match $store {
            Store::Sqlite { writer, .. } => {
                let mut c = writer.acquire().await?;
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
                let out = {
                    let $conn = &mut *tx;
                    use $module::sqlite as $q;
                    $body
                }?;
                let guard = ($hold)(&out);
                tx.commit().await?;
                Ok((out, guard))
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let out = {
                    let $conn = &mut *tx;
                    use $module::postgres as $q;
                    $body
                }?;
                let guard = ($hold)(&out);
                tx.commit().await?;
                Ok((out, guard))
            }
        }
    };
}

impl Store {
    /// Connects to `sqlite://PATH` (created when missing) or `postgres://…`. Does not
    /// migrate: call [`Store::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| connect::explain_url(&e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable against process crashes under WAL; only an OS crash can
                // lose the last transactions, which MQTT redelivers (acks follow commits).
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                // Another process (an import while `serve` runs) may hold the write lock.
                .busy_timeout(Duration::from_secs(10));
            // Its one connection is kept for the pool's life: the cache watches its
            // `data_version` to see other processes' commits (crate::cache::listen).
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone())
                .await
                .map_err(|e| connect::explain_sqlite(&options, &e))?;
            let reader = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .connect_with(options.clone().read_only(true))
                .await
                .map_err(|e| connect::explain_sqlite(&options, &e))?;
            Ok(Store::Sqlite { writer, reader })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| connect::explain_url(&e))?;
            connect::probe_postgres(&options).await?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(Error::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite { .. } => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies the migrations in `migrations/<dialect>/`; then, on PostgreSQL, creates the
    /// readings partitions the clock's `now` needs.
    pub async fn migrate(&self, now: DateTime<Utc>) -> Result<Option<PartitionReport>> {
        match self {
            Store::Sqlite { writer, .. } => {
                migrations::sqlite().await?.run(writer).await?;
                Ok(None)
            }
            Store::Postgres(pool) => {
                migrations::postgres().await?.run(pool).await?;
                Ok(Some(partitions::ensure(pool, now).await?))
            }
        }
    }

    /// PostgreSQL: creates the partitions needed at `now` (nothing to do on SQLite).
    pub async fn ensure_partitions(&self, now: DateTime<Utc>) -> Result<PartitionReport> {
        match self {
            Store::Sqlite { .. } => Ok(PartitionReport::default()),
            Store::Postgres(pool) => partitions::ensure(pool, now).await,
        }
    }

    /// Whether the database answers a trivial query within [`READ_TIMEOUT`]: what `/ready`
    /// asks on every call, so that it says 503 from the first failed attempt.
    pub async fn ping(&self) -> Result<()> {
        let attempt = async {
            match self {
                Store::Sqlite { reader, .. } => {
                    let mut c = reader.acquire().await?;
                    sqlx::query("SELECT 1").execute(&mut *c).await?;
                }
                Store::Postgres(pool) => {
                    let mut c = pool.acquire().await?;
                    sqlx::query("SELECT 1").execute(&mut *c).await?;
                }
            }
            Ok(())
        };
        match tokio::time::timeout(READ_TIMEOUT, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout(READ_TIMEOUT)),
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Store::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }

    // ---- registry ----

    /// Creates a region if missing.
    pub async fn ensure_region(&self, id: &str, name: &str, now: DateTime<Utc>) -> Result<()> {
        on_writer!(
            self,
            |c, q| q::ensure_region(c, id, name, now).await,
            meters
        )
    }

    /// A meter's latest status report (ChirpStack's `status` event), if it has sent one.
    pub async fn device_status(
        &self,
        meter_id: i64,
    ) -> Result<Option<device_status::DeviceStatus>> {
        on_reader!(self, |c, q| q::get(c, meter_id).await, device_status)
    }

    /// Every region.
    pub async fn regions(&self) -> Result<Vec<Region>> {
        on_reader!(self, |c, q| q::regions(c).await, meters)
    }

    /// Registers or updates meters in one transaction, stopping at the first failure (nothing
    /// of the call is then stored).
    pub async fn register_meters(
        &self,
        new: &[NewMeter],
        now: DateTime<Utc>,
    ) -> Result<Vec<Registered>> {
        in_transaction!(
            self,
            |c, q| {
                let mut out = Vec::with_capacity(new.len());
                for m in new {
                    out.push(q::register_meter(c, m, now).await?);
                }
                Ok::<_, Error>(out)
            },
            meters
        )
    }

    /// Registers or updates a batch of meters in one transaction of a few statements, each
    /// meter decided against the registry as it was before the batch: one outcome per meter,
    /// in order, a conflicting one refused without undoing the others. Each DevEUI and each
    /// serial may appear at most once in the batch.
    pub async fn register_meter_batch(
        &self,
        batch: &[NewMeter],
        now: DateTime<Utc>,
    ) -> Result<Vec<registration::Outcome>> {
        in_transaction!(
            self,
            |c, q| q::register_batch(c, batch, now).await,
            registration
        )
    }

    /// Registers or updates one meter.
    pub async fn register_meter(&self, new: &NewMeter, now: DateTime<Utc>) -> Result<Registered> {
        in_transaction!(self, |c, q| q::register_meter(c, new, now).await, meters)
    }

    /// Registers or updates one meter; also returns its id, read in the same transaction, so
    /// that the caller can announce the write right after the commit with nothing fallible
    /// in between.
    pub async fn register_meter_with_id(
        &self,
        new: &NewMeter,
        now: DateTime<Utc>,
    ) -> Result<(Registered, i64)> {
        in_transaction!(
            self,
            |c, q| {
                let registered = q::register_meter(c, new, now).await?;
                let id = q::meter_by_dev_eui(c, &new.dev_eui)
                    .await?
                    .map(|m| m.id)
                    .ok_or(Error::NotFound)?;
                Ok::<_, Error>((registered, id))
            },
            meters
        )
    }

    /// Installs one meter as [`Store::register_meter_with_id`] does and, unless nothing
    /// changed, writes `audit` (its meter id filled in) in the same transaction.
    pub async fn install_meter(
        &self,
        new: &NewMeter,
        audit: &lifecycle::NewAudit,
        who: &lifecycle::Actor,
    ) -> Result<(Registered, i64)> {
        in_transaction!(
            self,
            |c, q| {
                let registered = q::register_meter(c, new, who.at).await?;
                let id = q::meter_by_dev_eui(c, &new.dev_eui)
                    .await?
                    .map(|m| m.id)
                    .ok_or(Error::NotFound)?;
                if registered != Registered::Unchanged {
                    let audit = lifecycle::NewAudit {
                        meter_id: id,
                        ..audit.clone()
                    };
                    q::audit_install(c, &audit, who).await?;
                }
                Ok::<_, Error>((registered, id))
            },
            meters
        )
    }

    /// The meter with this DevEUI.
    pub async fn meter_by_dev_eui(&self, dev_eui: &str) -> Result<Option<Meter>> {
        on_reader!(self, |c, q| q::meter_by_dev_eui(c, dev_eui).await, meters)
    }

    /// The meter with this serial.
    pub async fn meter_by_serial(&self, serial: &str) -> Result<Option<Meter>> {
        on_reader!(self, |c, q| q::meter_by_serial(c, serial).await, meters)
    }

    /// Meters (of a region), by id, after `after_id`.
    pub async fn meters(
        &self,
        region: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Meter>> {
        on_reader!(
            self,
            |c, q| q::meters(c, region, after_id, limit).await,
            meters
        )
    }

    /// The registered meters among these DevEUIs.
    pub async fn meters_by_dev_euis(&self, dev_euis: &[String]) -> Result<Vec<Meter>> {
        on_reader!(self, |c, q| q::by_dev_euis(c, dev_euis).await, meters)
    }

    /// Applies a batch of plans in one transaction: identities first, then the effects of
    /// the events not seen before. An error rolls everything back.
    ///
    /// `hold` sees the outcome before the commit; what it returns is held across the commit
    /// (see `in_held_transaction!`).
    pub async fn apply_batch<H>(
        &self,
        plans: &[ingest::Plan],
        now: DateTime<Utc>,
        hold: impl FnOnce(&ingest::Outcome) -> H,
    ) -> Result<(ingest::Outcome, H)> {
        // A half-open connection would otherwise hold the writer (and shutdown) forever.
        let work = async {
            in_held_transaction!(self, |c, q| q::apply(c, plans, now).await, ingest, hold)
        };
        tokio::time::timeout(BATCH_TIMEOUT, work)
            .await
            .unwrap_or(Err(Error::Timeout(BATCH_TIMEOUT)))
    }

    /// Applies a batch's link state.
    pub async fn update_links(&self, updates: &[LinkUpdate]) -> Result<()> {
        in_transaction!(self, |c, q| q::update_meters(c, updates, &[]).await, meters)
    }

    // ---- readings ----

    /// Stores readings idempotently; returns how many were new.
    pub async fn insert_readings(&self, rows: &[StoredReading]) -> Result<u64> {
        in_transaction!(self, |c, q| q::insert(c, rows).await, readings)
    }

    /// A meter's readings in [from, to).
    pub async fn readings_for_meter(
        &self,
        meter_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredReading>> {
        on_reader!(
            self,
            |c, q| q::for_meter(c, meter_id, from, to, limit).await,
            readings
        )
    }

    /// A meter's newest reading, if it has one.
    pub async fn latest_reading(&self, meter_id: i64) -> Result<Option<StoredReading>> {
        on_reader!(
            self,
            |c, q| q::latest_for_meter(c, meter_id).await,
            readings
        )
    }

    /// Number of stored readings.
    pub async fn count_readings(&self) -> Result<i64> {
        on_reader!(self, |c, q| q::count(c).await, readings)
    }

    // ---- identities ----

    /// Records event identities; returns those not seen before.
    pub async fn record_identities(
        &self,
        ids: &[EventIdentity],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventIdentity>> {
        in_transaction!(self, |c, q| q::record(c, ids, now).await, identities)
    }

    /// Forgets identities recorded before `before`, `chunk` rows per statement: an hour of
    /// a busy bridge's identities in one DELETE would hold SQLite's write lock (and stall
    /// ingest) for as long as it runs. Returns how many were forgotten.
    pub async fn prune_identities(&self, before: DateTime<Utc>, chunk: i64) -> Result<u64> {
        let chunk = chunk.max(1);
        let mut total = 0;
        loop {
            let n = on_writer!(self, |c, q| q::prune(c, before, chunk).await, identities)?;
            total += n;
            if n < chunk.unsigned_abs() {
                return Ok(total);
            }
            // Batches waiting for the writer go between two chunks.
            tokio::task::yield_now().await;
        }
    }

    // ---- quarantine ----

    /// Quarantines messages; returns how many were new.
    pub async fn quarantine(&self, rows: &[NewQuarantined]) -> Result<u64> {
        in_transaction!(self, |c, q| q::insert(c, rows).await, quarantine)
    }

    /// Quarantined messages, newest first.
    pub async fn quarantined(
        &self,
        reason: Option<&str>,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Quarantined>> {
        on_reader!(
            self,
            |c, q| q::list(c, reason, before_id, limit).await,
            quarantine
        )
    }

    // ---- alarms ----

    /// Stores alarms idempotently; returns how many were new.
    pub async fn insert_alarms(&self, rows: &[NewAlarm]) -> Result<u64> {
        in_transaction!(self, |c, q| q::insert(c, rows).await, alarms)
    }

    /// Alarms (in a state), newest first.
    pub async fn alarms(
        &self,
        state: Option<&str>,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Alarm>> {
        on_reader!(
            self,
            |c, q| q::list(c, state, before_id, limit).await,
            alarms
        )
    }

    /// Acknowledges an open alarm.
    pub async fn acknowledge_alarm(&self, id: i64, by: &str, now: DateTime<Utc>) -> Result<()> {
        on_writer!(self, |c, q| q::acknowledge(c, id, by, now).await, alarms)
    }

    /// Clears a meter's alarms of a kind.
    pub async fn clear_alarms(&self, meter_id: i64, kind: &str, now: DateTime<Utc>) -> Result<u64> {
        on_writer!(self, |c, q| q::clear(c, meter_id, kind, now).await, alarms)
    }

    // ---- commands ----

    /// Stores a new command.
    pub async fn insert_command(&self, command: &CommandRow) -> Result<()> {
        on_writer!(self, |c, q| q::insert(c, command).await, commands)
    }

    /// The command with this id.
    pub async fn command(&self, id: Uuid) -> Result<CommandRow> {
        on_reader!(self, |c, q| q::get(c, id).await, commands)
    }

    /// Moves a command from one of `from` to `to`; whether it moved.
    pub async fn transition_command(
        &self,
        id: Uuid,
        from: &[&str],
        to: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_writer!(
            self,
            |c, q| q::transition(c, id, from, to, error, now).await,
            commands
        )
    }

    /// A meter's commands, newest first.
    pub async fn commands_for_meter(&self, meter_id: i64, limit: i64) -> Result<Vec<CommandRow>> {
        on_reader!(
            self,
            |c, q| q::for_meter(c, meter_id, limit).await,
            commands
        )
    }

    /// Stores commands in one transaction.
    pub async fn insert_commands(&self, rows: &[CommandRow]) -> Result<()> {
        in_transaction!(
            self,
            |c, q| {
                for r in rows {
                    q::insert(c, r).await?;
                }
                Ok::<(), Error>(())
            },
            commands
        )
    }

    /// The DevEUI, status and service state of a meter.
    pub async fn meter_route(&self, meter_id: i64) -> Result<(String, String, String)> {
        on_reader!(self, |c, q| q::meter_route(c, meter_id).await, commands)
    }

    /// Reporting meters in service of a region, or of the fleet when `None`: (id, DevEUI).
    pub async fn region_routes(&self, region_id: Option<&str>) -> Result<Vec<(i64, String)>> {
        on_reader!(self, |c, q| q::region_routes(c, region_id).await, commands)
    }

    /// A meter's unfinished commands, oldest first.
    pub async fn open_commands_for_device(&self, dev_eui: &str) -> Result<Vec<commands::Routed>> {
        on_reader!(self, |c, q| q::open_for_device(c, dev_eui).await, commands)
    }

    /// DevEUIs with commands waiting to be released.
    pub async fn pending_devices(&self) -> Result<Vec<String>> {
        on_reader!(self, |c, q| q::pending_devices(c).await, commands)
    }

    /// pending → queued; false when another instance took it.
    pub async fn claim_command(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        on_writer!(self, |c, q| q::claim(c, id, now).await, commands)
    }

    /// Counts an uplink of their meter against commands ChirpStack holds.
    pub async fn count_command_uplink(&self, ids: &[Uuid]) -> Result<()> {
        on_writer!(self, |c, q| q::count_uplink(c, ids).await, commands)
    }

    /// queued or sent → pending (ChirpStack no longer holds it), with why; whether it moved.
    pub async fn requeue_command(
        &self,
        id: Uuid,
        from: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_writer!(
            self,
            |c, q| q::requeue(c, id, from, why, now).await,
            commands
        )
    }

    /// queued → pending after a failed publish.
    pub async fn unclaim_command(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        on_writer!(self, |c, q| q::unclaim(c, id, now).await, commands)
    }

    /// Applies a report from ChirpStack (or the dispatcher's own expiry).
    pub async fn report_command(
        &self,
        id: Uuid,
        reported: &commands::Reported,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_writer!(
            self,
            |c, q| Ok(q::report(c, id, reported, deadline, now).await?.is_some()),
            commands
        )
    }

    /// Expires unsent commands and fails unanswered ones; the meters of the commands
    /// (expired, failed).
    /// `hold` sees them before the commit (see `in_held_transaction!`).
    pub async fn sweep_commands<H>(
        &self,
        now: DateTime<Utc>,
        hold: impl FnOnce(&(Vec<i64>, Vec<i64>)) -> H,
    ) -> Result<((Vec<i64>, Vec<i64>), H)> {
        in_held_transaction!(self, |c, q| q::sweep(c, now).await, commands, hold)
    }

    // ---- monitoring ----

    /// Marks overdue meters silent and raises their alarms; returns them. `hold` sees them
    /// before the commit (see `in_held_transaction!`).
    pub async fn mark_silent<H>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        hold: impl FnOnce(&Vec<monitor::Overdue>) -> H,
    ) -> Result<(Vec<monitor::Overdue>, H)> {
        in_held_transaction!(
            self,
            |c, q| q::mark_silent(c, now, limit).await,
            monitor,
            hold
        )
    }

    /// Alarms due for delivery.
    pub async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<monitor::OutboxItem>> {
        on_reader!(self, |c, q| q::due_outbox(c, now, limit).await, monitor)
    }

    /// Records a delivery attempt.
    pub async fn outbox_delivery(
        &self,
        id: i64,
        outcome: std::result::Result<(), (&str, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_writer!(self, |c, q| q::delivery(c, id, outcome, now).await, monitor)
    }

    /// Gives a lease up.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_writer!(
            self,
            |c, q| q::release_lease(c, name, holder).await,
            monitor
        )
    }

    /// Takes or renews a lease; whether `holder` has it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        on_writer!(
            self,
            |c, q| q::take_lease(c, name, holder, now, until).await,
            monitor
        )
    }

    // ---- self-test schedules ----

    /// Creates a schedule.
    pub async fn create_schedule(
        &self,
        spec: &schedules::ScheduleSpec,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<schedules::Schedule> {
        on_writer!(self, |c, q| q::create(c, spec, by, now).await, schedules)
    }

    /// Changes a schedule.
    pub async fn update_schedule(
        &self,
        id: i64,
        spec: &schedules::ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<schedules::Schedule> {
        on_writer!(self, |c, q| q::update(c, id, spec, now).await, schedules)
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, id: i64) -> Result<()> {
        on_writer!(self, |c, q| q::delete(c, id).await, schedules)
    }

    /// Schedules after `after_id`, in id order.
    pub async fn schedules(&self, after_id: i64, limit: i64) -> Result<Vec<schedules::Schedule>> {
        on_reader!(self, |c, q| q::list(c, after_id, limit).await, schedules)
    }

    /// One schedule.
    pub async fn schedule(&self, id: i64) -> Result<schedules::Schedule> {
        on_reader!(self, |c, q| q::get(c, id).await, schedules)
    }

    /// Schedules due now.
    pub async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<schedules::Schedule>> {
        on_reader!(self, |c, q| q::due(c, now, limit).await, schedules)
    }

    /// Runs one due occurrence of a schedule in one transaction. `hold` sees the run before
    /// the commit (see `in_held_transaction!`).
    pub async fn run_schedule<H>(
        &self,
        schedule: &schedules::Schedule,
        frame: &crate::downlink::kind::Frame,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        hold: impl FnOnce(&Option<schedules::Run>) -> H,
    ) -> Result<(Option<schedules::Run>, H)> {
        in_held_transaction!(
            self,
            |c, q| q::run(c, schedule, frame, expires_at, now).await,
            schedules,
            hold
        )
    }

    // ---- inspections ----

    /// Records a visit; returns its id.
    pub async fn insert_inspection(&self, i: &NewInspection, now: DateTime<Utc>) -> Result<i64> {
        on_writer!(self, |c, q| q::insert(c, i, now).await, inspections)
    }

    /// A meter's visits, newest first.
    pub async fn inspections_for_meter(
        &self,
        meter_id: i64,
        limit: i64,
    ) -> Result<Vec<Inspection>> {
        on_reader!(
            self,
            |c, q| q::for_meter(c, meter_id, limit).await,
            inspections
        )
    }
}

impl Store {
    // ---- a meter's life ----

    /// Changes a meter's registration and writes its audit row, in one transaction.
    pub async fn change_meter(
        &self,
        change: &lifecycle::MeterChange,
        audit: &lifecycle::NewAudit,
        who: &lifecycle::Actor,
    ) -> Result<()> {
        in_transaction!(
            self,
            |c, q| {
                q::change(c, change, who.at).await?;
                q::audit(c, audit, who).await
            },
            lifecycle
        )
    }

    /// Writes an audit row.
    pub async fn audit(&self, audit: &lifecycle::NewAudit, who: &lifecycle::Actor) -> Result<()> {
        on_writer!(self, |c, q| q::audit(c, audit, who).await, lifecycle)
    }

    /// A meter's audit rows before `before_id`, newest first.
    pub async fn meter_history(
        &self,
        meter_id: i64,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<lifecycle::AuditRow>> {
        on_reader!(
            self,
            |c, q| q::history(c, meter_id, before_id, limit).await,
            lifecycle
        )
    }

    /// A meter's open installation, with its supply point.
    pub async fn open_installation(
        &self,
        meter_id: i64,
    ) -> Result<Option<lifecycle::Installation>> {
        on_reader!(
            self,
            |c, q| q::open_installation(c, meter_id).await,
            lifecycle
        )
    }

    /// A meter's installations, oldest first.
    pub async fn installations(&self, meter_id: i64) -> Result<Vec<lifecycle::Installation>> {
        on_reader!(self, |c, q| q::installations(c, meter_id).await, lifecycle)
    }

    /// Takes an in-service meter out of service in one transaction (see
    /// `lifecycle::*::retire`); its final report.
    pub async fn retire_meter(
        &self,
        meter: &Meter,
        outcome: lifecycle::RetireOutcome,
        who: &lifecycle::Actor,
    ) -> Result<lifecycle::FinalReport> {
        in_transaction!(
            self,
            |c, q| q::retire(c, meter, outcome, who).await,
            lifecycle
        )
    }

    /// A meter's latest final report.
    pub async fn final_report(&self, meter_id: i64) -> Result<Option<lifecycle::FinalReport>> {
        on_reader!(self, |c, q| q::final_report(c, meter_id).await, lifecycle)
    }
}

// Declared after the macros above, which they use.
pub mod api_keys;
pub mod billing;
pub mod billing_periods;
pub mod deletion;
pub mod device_keys;
pub mod listings;
pub mod replace;
pub mod secrets;
