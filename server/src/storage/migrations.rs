//! The migrations, embedded in the binary so that `meterhub migrate` needs no files beside it.

use std::borrow::Cow;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// (version, description, SQL) of each SQLite migration, in order.
pub(crate) const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "downlinks",
        include_str!("../../../migrations/sqlite/0002_downlinks.sql"),
    ),
    (
        3,
        "api",
        include_str!("../../../migrations/sqlite/0003_api.sql"),
    ),
    (
        6,
        "commands",
        include_str!("../../../migrations/sqlite/0006_commands.sql"),
    ),
    (
        7,
        "device_status",
        include_str!("../../../migrations/sqlite/0007_device_status.sql"),
    ),
    (
        8,
        "billing_periods",
        include_str!("../../../migrations/sqlite/0008_billing_periods.sql"),
    ),
    (
        9,
        "lifecycle",
        include_str!("../../../migrations/sqlite/0009_lifecycle.sql"),
    ),
    (
        10,
        "installation_secrets",
        include_str!("../../../migrations/sqlite/0010_installation_secrets.sql"),
    ),
    (
        11,
        "data_deletion",
        include_str!("../../../migrations/sqlite/0011_data_deletion.sql"),
    ),
    (
        12,
        "replacement",
        include_str!("../../../migrations/sqlite/0012_replacement.sql"),
    ),
    (
        15,
        "device_keys",
        include_str!("../../../migrations/sqlite/0015_device_keys.sql"),
    ),
];

/// (version, description, SQL) of each PostgreSQL migration, in order.
pub(crate) const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "downlinks",
        include_str!("../../../migrations/postgres/0002_downlinks.sql"),
    ),
    (
        3,
        "api",
        include_str!("../../../migrations/postgres/0003_api.sql"),
    ),
    (
        6,
        "commands",
        include_str!("../../../migrations/postgres/0006_commands.sql"),
    ),
    (
        7,
        "device_status",
        include_str!("../../../migrations/postgres/0007_device_status.sql"),
    ),
    (
        8,
        "billing_periods",
        include_str!("../../../migrations/postgres/0008_billing_periods.sql"),
    ),
    (
        9,
        "lifecycle",
        include_str!("../../../migrations/postgres/0009_lifecycle.sql"),
    ),
    (
        10,
        "installation_secrets",
        include_str!("../../../migrations/postgres/0010_installation_secrets.sql"),
    ),
    (
        11,
        "data_deletion",
        include_str!("../../../migrations/postgres/0011_data_deletion.sql"),
    ),
    (
        12,
        "replacement",
        include_str!("../../../migrations/postgres/0012_replacement.sql"),
    ),
    (
        15,
        "device_keys",
        include_str!("../../../migrations/postgres/0015_device_keys.sql"),
    ),
];

/// Migrations compiled into the binary, handed to sqlx's migrator through its public
/// `MigrationSource` interface.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        AssertSqlSafe(sql).into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The SQLite migrator.
pub(crate) async fn sqlite() -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded(SQLITE)).await
}

/// The PostgreSQL migrator.
pub(crate) async fn postgres() -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded(POSTGRES)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration file added to a folder but not to the list above would never run.
    #[test]
    fn every_migration_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        for (dialect, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let mut files: Vec<String> = std::fs::read_dir(root.join(dialect))
                .expect("migrations folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            assert_eq!(files.len(), list.len(), "{dialect}: {files:?}");
            for (file, (version, description, _)) in files.iter().zip(list) {
                assert_eq!(
                    file,
                    &format!("{version:04}_{description}.sql"),
                    "{dialect}"
                );
            }
        }
    }
}
