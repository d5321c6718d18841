//! One-shot administrative commands: `migrate` and `meters import`.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::registry::{ImportReport, import_file};
use crate::storage::{Dialect, Store};
use crate::time::now_utc;

async fn open(settings: &Settings) -> Result<Store> {
    Store::connect(
        settings.database.url.expose(),
        settings.database.max_connections,
    )
    .await
    .context("connecting to the database")
}

/// Applies the migrations (and, on PostgreSQL, creates the readings partitions).
pub async fn migrate(settings: &Settings) -> Result<String> {
    let store = open(settings).await?;
    let clock = settings.clock()?;
    let report = store
        .migrate(now_utc(&clock))
        .await
        .context("migrating the database")?;
    store.close().await;
    Ok(match (store.dialect(), report) {
        (Dialect::Postgres, Some(r)) => format!(
            "PostgreSQL database is up to date; {} readings partitions created, {} rows moved out of DEFAULT",
            r.created.len(),
            r.moved
        ),
        _ => "SQLite database is up to date".to_owned(),
    })
}

/// Imports meters from a CSV or JSON file, migrating the database first so that a fresh
/// machine needs one command.
pub async fn import_meters(settings: &Settings, file: &Path) -> Result<ImportReport> {
    let store = open(settings).await?;
    let clock = settings.clock()?;
    store
        .migrate(now_utc(&clock))
        .await
        .context("migrating the database")?;
    let report = import_file(&store, file, now_utc(&clock)).await;
    store.close().await;
    report
}

/// The clock's time read at one wall instant, as one JSON line.
pub fn clock_report(clock: &firmware_protocol::clock::Clock) -> String {
    let wall = DateTime::<Utc>::from(std::time::SystemTime::now());
    let wall_micros = wall.timestamp_micros();
    let simulated_micros = clock.at_wall_unix_micros(wall_micros);
    let simulated = DateTime::from_timestamp_micros(simulated_micros).unwrap_or_default();
    serde_json::json!({
        "wallUnixMicros": wall_micros,
        "simulatedUnixMicros": simulated_micros,
        "simulated": simulated.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "speed": clock.speed(),
    })
    .to_string()
}
