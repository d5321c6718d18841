//! The command line: subcommands and the flags that override settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::frame::{DecodeArgs, EncodeArgs};

/// meterhub: ChirpStack MQTT bridge, storage, downlinks and REST API for LoRaWAN smart meters.
#[derive(Debug, Parser)]
#[command(name = "meterhub", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Settings that override the file and the environment.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// Where settings come from, and the flags that override them.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// TOML settings file (see `meterhub configfile`).
    #[arg(long, global = true, env = "METERHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://…
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// MQTT broker URL: mqtt://host:port or mqtts://host:port.
    #[arg(long, global = true)]
    pub mqtt_url: Option<String>,
    /// Address of the REST API.
    #[arg(long, global = true)]
    pub http_bind: Option<SocketAddr>,
    /// Simulated seconds per wall second (demos and load tests).
    #[arg(long, global = true)]
    pub clock_speed: Option<u32>,
    /// RFC 3339 simulated instant at which the run starts (default: the anchor).
    #[arg(long, global = true)]
    pub clock_start: Option<String>,
    /// RFC 3339 wall instant at which the simulated clock reads --clock-start (default: now).
    /// Give a server and a simulator the same speed, start and anchor to make them agree.
    #[arg(long, global = true)]
    pub clock_anchor: Option<String>,
}

impl SettingsArgs {
    /// The flags as overrides of the loaded settings.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            database_url: self.database_url.clone(),
            mqtt_url: self.mqtt_url.clone(),
            http_bind: self.http_bind,
            clock_speed: self.clock_speed,
            clock_start: self.clock_start.clone(),
            clock_anchor: self.clock_anchor.clone(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the ChirpStack MQTT bridge and the HTTP endpoints, until SIGINT or SIGTERM.
    Serve,
    /// Run everything on this machine with nothing installed: an embedded MQTT broker, a SQLite
    /// database, the server, and a simulated fleet publishing as ChirpStack would. Prints the
    /// address of the pages and an admin API key to sign in with; once the fleet is done the
    /// server keeps serving until Ctrl-C or SIGTERM (or stops, with --exit).
    #[cfg(feature = "demo")]
    Demo {
        /// Meters in the simulated fleet.
        #[arg(long, default_value_t = 1_000)]
        meters: u32,
        /// Simulated days to run.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Simulated seconds per wall second (86400: a day per second) at most: the clock
        /// waits while the server catches up.
        #[arg(long, default_value_t = 86_400)]
        speed: u32,
        /// The SQLite database file, replaced at the start of each run.
        #[arg(long, default_value = "meterhub-demo.db")]
        database: PathBuf,
        /// Stop once the fleet is done and its readings are stored, instead of serving until
        /// Ctrl-C or SIGTERM.
        #[arg(long)]
        exit: bool,
    },
    /// Print the settings file with every default, commented.
    Configfile,
    /// Create or update the database schema (and PostgreSQL's readings partitions).
    Migrate,
    /// Remove the readings, quarantined messages and audit rows older than `[retention]`
    /// keeps, as the running server does about once an hour. Prints, per table, the cutoff
    /// and the rows (and PostgreSQL's monthly partitions) removed, as JSON.
    Retention {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the time by the configured clock as JSON, with the wall time it was read at:
    /// a server and a simulator given the same --clock-speed, --clock-start and --clock-anchor
    /// agree.
    Clock,
    /// Run the embedded MQTT broker (v5 and 3.1.1) until interrupted, for machines without one.
    #[cfg(feature = "embedded-broker")]
    Broker {
        /// Port of the MQTT v5 listener (loopback).
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// Port of the MQTT 3.1.1 listener (loopback).
        #[arg(long, default_value_t = 1884)]
        v311_port: u16,
    },
    /// Manage the meter registry.
    #[command(subcommand)]
    Meters(MetersCommand),
    /// Manage REST API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Reports from the stored data.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Decode a meter frame (hex) to its JSON form, as the server and the ChirpStack codec do.
    Decode(DecodeArgs),
    /// Encode a message's JSON form (as printed by `decode`) to a hex frame and its fPort.
    Encode(EncodeArgs),
}

/// `meterhub meters …`.
#[derive(Debug, Subcommand)]
pub enum MetersCommand {
    /// Register meters from a CSV (header row) or JSON (array of objects) file with the fields
    /// serial, devEui, applicationId, bodyNumber, userId, region, usageType, mode,
    /// productionDate and optionally reportingIntervalMinutes, joinEui and appKey (the OTAA
    /// root keys, together). Every row is validated; good
    /// rows are registered (again and again without harm), bad rows reported by line and field.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Change a meter's details as `PATCH /api/v1/meters/{meter}` does: only the fields given
    /// change, validated as an install is, recorded in its history as done by `cli`. Prints
    /// the meter as JSON.
    Update(UpdateArgs),
    /// Take a meter in service out of service as `POST /api/v1/meters/{meter}/retire` does:
    /// renovation (back to stock) or destruction (final). Prints its final report as JSON.
    Retire {
        /// The meter: its DevEUI or serial.
        meter: String,
        /// `renovation` or `destruction`.
        #[arg(long)]
        outcome: String,
        /// Why, recorded in its history and its final report.
        #[arg(long)]
        reason: String,
    },
    /// Delete a meter's readings in [--from, --to) as `DELETE /api/v1/meters/{meter}/readings`
    /// does, recorded in its history as done by `cli`; refused inside a closed billing period
    /// unless `--force`d (each such period then gets a revision). Prints what went (with
    /// `--dry-run`: what would go) as JSON.
    DeleteReadings {
        /// The meter and the range.
        #[command(flatten)]
        range: DeleteArgs,
        /// Delete inside closed billing periods too, adding a revision of each.
        #[arg(long)]
        force: bool,
    },
    /// Delete a meter's alarms raised in [--from, --to) as `DELETE
    /// /api/v1/meters/{meter}/alarms` does, recorded in its history as done by `cli`. Prints
    /// what went (with `--dry-run`: what would go) as JSON.
    DeleteAlarms {
        /// The meter and the range.
        #[command(flatten)]
        range: DeleteArgs,
    },
    /// Erase a customer's personal data as `POST /api/v1/customers/{customer}/erase` does:
    /// their id replaced everywhere by one anonymous token, their consumption kept under it,
    /// recorded in their meters' history as done by `cli`. Prints what changed (with
    /// `--dry-run`: what names them) as JSON.
    EraseCustomer {
        /// The customer id (a meter's user id).
        user_id: String,
        /// Why, recorded in their meters' history (required unless `--dry-run`).
        #[arg(long, default_value = "")]
        reason: String,
        /// Only print what names them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring ChirpStack's device list in step with the registry (`[chirpstack]` API settings;
    /// built with the `chirpstack-sync` feature): create the devices of meters in service of
    /// the application, with their keys; delete those of meters out of service; set keys that
    /// differ. Devices unknown to meterhub are left alone. Prints each difference.
    Sync {
        /// Only list the differences (missing in ChirpStack, extra in ChirpStack, key
        /// mismatches), changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Replace a meter at its supply point as `POST /api/v1/supply-points/{id}/replace`
    /// does: the old meter's installation closes at its final register and it goes to stock;
    /// the new meter (one in stock by --meter, or a new one by --serial, --dev-eui,
    /// --body-number and --production-date) opens there. Prints the replacement as JSON.
    Replace(ReplaceArgs),
}

/// `meterhub meters delete-readings` and `delete-alarms`: the meter and the range.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The meter: its DevEUI or serial.
    pub meter: String,
    /// Start of the range (inclusive), RFC 3339, e.g. `2026-05-01T00:00:00Z`.
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive), RFC 3339.
    #[arg(long)]
    pub to: String,
    /// Why, recorded in the meter's history (required unless `--dry-run`).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Only print what would go.
    #[arg(long)]
    pub dry_run: bool,
}

/// `meterhub meters replace`: the meter taken out, the meter put in, the registers.
#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// The meter taken out: its DevEUI or serial.
    pub old_meter: String,
    /// The meter put in, registered and in stock: its DevEUI or serial.
    #[arg(long, conflicts_with_all = ["serial", "dev_eui"], required_unless_present = "serial")]
    pub meter: Option<String>,
    /// A new meter's serial (14 digits).
    #[arg(long, requires_all = ["dev_eui", "body_number", "production_date"])]
    pub serial: Option<String>,
    /// A new meter's DevEUI (16 hex digits).
    #[arg(long)]
    pub dev_eui: Option<String>,
    /// A new meter's body number.
    #[arg(long)]
    pub body_number: Option<i64>,
    /// A new meter's production date, `YYYY-MM-DD`.
    #[arg(long)]
    pub production_date: Option<String>,
    /// A new meter's ChirpStack application (default: the old meter's).
    #[arg(long)]
    pub application_id: Option<String>,
    /// A new meter's minutes between readings (default: the old meter's).
    #[arg(long)]
    pub reporting_interval_minutes: Option<i64>,
    /// The old meter's register when taken out (default: its last reading at or before
    /// --at).
    #[arg(long)]
    pub final_register: Option<i64>,
    /// The new meter's register when put in.
    #[arg(long)]
    pub opening_register: Option<i64>,
    /// When the meters were swapped, RFC 3339 (default: now).
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why, recorded in both meters' histories.
    #[arg(long)]
    pub reason: String,
}

/// `meterhub meters update`: the meter and the fields to change.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The meter: its DevEUI or serial.
    pub meter: String,
    /// The customer id.
    #[arg(long)]
    pub user_id: Option<String>,
    /// The region id (created when new).
    #[arg(long)]
    pub region: Option<String>,
    /// `residential`, `commercial`, `industrial` or `public`.
    #[arg(long)]
    pub usage_type: Option<String>,
    /// `credit` or `prepaid`.
    #[arg(long)]
    pub mode: Option<String>,
    /// The ChirpStack application id.
    #[arg(long)]
    pub application_id: Option<String>,
    /// The production date, `YYYY-MM-DD`.
    #[arg(long)]
    pub production_date: Option<String>,
    /// The number on the meter's body.
    #[arg(long)]
    pub body_number: Option<i64>,
    /// Minutes between readings, 15–10080.
    #[arg(long)]
    pub reporting_interval_minutes: Option<i64>,
    /// The supply point's address.
    #[arg(long, conflicts_with = "no_address")]
    pub address: Option<String>,
    /// Remove the supply point's address.
    #[arg(long)]
    pub no_address: bool,
    /// Why, recorded in the meter's history.
    #[arg(long)]
    pub reason: String,
}

impl UpdateArgs {
    /// The change the flags ask for.
    pub fn patch(&self) -> crate::registry::lifecycle::Patch {
        crate::registry::lifecycle::Patch {
            user_id: self.user_id.clone(),
            region: self.region.clone(),
            usage_type: self.usage_type.clone(),
            mode: self.mode.clone(),
            application_id: self.application_id.clone(),
            production_date: self.production_date.clone(),
            body_number: self.body_number,
            reporting_interval_minutes: self.reporting_interval_minutes,
            address: if self.no_address {
                Some(None)
            } else {
                self.address.clone().map(Some)
            },
        }
    }
}

/// `meterhub report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Consumption per day, ISO week or month of every meter (or a region's, or one), as
    /// the API computes it: CSV or JSON, to stdout or a file; progress on stderr.
    Consumption(crate::report::ConsumptionArgs),
}

/// `meterhub keys …`. A running server picks up a change within five seconds.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once; only its SHA-256 is stored).
    Create {
        /// What the key is for, e.g. `billing`.
        #[arg(long)]
        name: String,
        /// `viewer` (read), `operator` (also commands, alarms, inspections) or `admin` (also
        /// install meters and manage keys).
        #[arg(long)]
        role: String,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}
