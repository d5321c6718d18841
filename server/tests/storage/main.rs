//! The storage suite: every test runs against SQLite and, when configured, PostgreSQL.

mod deletion;
mod import;
mod lifecycle;
mod partitions;
mod registry;
mod retention;
mod rows;
mod schema;

use chrono::{DateTime, NaiveDate, Utc};
use meterhub::storage::Store;
use meterhub::storage::meters::NewMeter;
use test_support::{Dialect, TestDb};

/// A database and a store connected to it; the database lives as long as this.
pub struct Fixture {
    pub db: TestDb,
    pub store: Store,
}

/// A fresh migrated store per dialect available: SQLite always, PostgreSQL when configured.
pub async fn stores() -> Vec<Fixture> {
    let mut out = Vec::new();
    for dialect in Dialect::ALL {
        let Some(db) = TestDb::create(dialect).await else {
            continue;
        };
        let store = Store::connect(db.url(), 4).await.expect("connect");
        // The test database is migrated from the files; the store's embedded migrations must
        // find nothing left to do, which also checks that the two agree.
        store.migrate(now()).await.expect("migrate");
        out.push(Fixture { db, store });
    }
    out
}

/// The fixed "now" of the suite.
/// The migrations of `dialect` numbered before `version` ("0011"), copied into a folder of
/// their own: a database migrated from it has the schema an upgrade starts from.
pub fn migrations_before(dialect: Dialect, version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    for entry in std::fs::read_dir(dialect.migrations_dir()).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) && name < version {
            std::fs::copy(&path, dir.path().join(name)).expect("copy");
        }
    }
    dir
}

pub fn now() -> DateTime<Utc> {
    at("2026-07-23T12:00:00Z")
}

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid time")
        .to_utc()
}

/// A valid meter; `n` varies DevEUI, serial and user.
pub fn meter(n: u32) -> NewMeter {
    let serial = firmware_protocol::Serial::new(12, 26, 1, n).expect("valid parts");
    NewMeter {
        dev_eui: format!("70b3d5e75e{n:06x}"),
        serial: serial.to_string(),
        body_number: i64::from(n) + 1_000,
        user_id: format!("user-{n}"),
        application_id: "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f".to_owned(),
        region_id: if n.is_multiple_of(2) {
            "north"
        } else {
            "south"
        }
        .to_owned(),
        usage_type: "residential".to_owned(),
        mode: "credit".to_owned(),
        production_date: NaiveDate::from_ymd_opt(2026, 3, 15).expect("valid date"),
        reporting_interval_minutes: 1440,
    }
}
