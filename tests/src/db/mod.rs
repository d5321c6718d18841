//! A fresh, migrated database for every test.
//!
//! - [`SqliteDb`]: a new SQLite file in a temporary folder, migrated with `migrations/sqlite`.
//!   Needs nothing installed, so it never skips.
//! - [`PostgresDb`]: a new database on the server named by `METERHUB_TEST_DATABASE_URL`, cloned
//!   from a template migrated once with `migrations/postgres`; dropped when the test ends.
//! - [`TestDb`]: either of them, for suites that run against both stores.
//!
//! Each test owns its database, so tests run in parallel with no shared state to reset.

mod postgres;
mod sqlite;
mod template;

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;

pub use postgres::{PostgresDb, database_exists, quote_ident};
pub use sqlite::SqliteDb;
pub use template::template_name;

/// The two SQL dialects meterhub stores data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite, the embedded default store.
    Sqlite,
    /// PostgreSQL, the production store.
    Postgres,
}

impl Dialect {
    /// Both dialects, SQLite first.
    pub const ALL: [Dialect; 2] = [Dialect::Sqlite, Dialect::Postgres];

    /// The project's migrations for this dialect: `migrations/sqlite` or `migrations/postgres`
    /// under the workspace root.
    pub fn migrations_dir(self) -> PathBuf {
        let folder = match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        };
        crate::workspace_root().join("migrations").join(folder)
    }
}

/// A fresh database of either dialect, for test suites that run against both stores.
#[derive(Debug)]
pub enum TestDb {
    /// A per-test SQLite file.
    Sqlite(SqliteDb),
    /// A per-test PostgreSQL database.
    Postgres(PostgresDb),
}

impl TestDb {
    /// A fresh, migrated database of `dialect`; `None` when the test is skipped because
    /// PostgreSQL is not configured (see [`crate::services`]).
    pub async fn create(dialect: Dialect) -> Option<TestDb> {
        match dialect {
            Dialect::Sqlite => Some(TestDb::Sqlite(SqliteDb::create().await)),
            Dialect::Postgres => PostgresDb::create().await.map(TestDb::Postgres),
        }
    }

    /// The dialect of this database.
    pub fn dialect(&self) -> Dialect {
        match self {
            TestDb::Sqlite(_) => Dialect::Sqlite,
            TestDb::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The database's URL (`sqlite://…` or `postgres://…`), as meterhub's configuration takes it.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite(db) => db.url(),
            TestDb::Postgres(db) => db.url(),
        }
    }
}

/// Loads the migrations in `dir` at run time. A missing folder counts as no migrations: git does
/// not keep empty folders, and a schema may not exist yet.
async fn load_migrator(dir: &Path) -> anyhow::Result<Migrator> {
    use anyhow::Context as _;

    if !dir.exists() {
        return Ok(Migrator::with_migrations(Vec::new()));
    }
    Migrator::new(dir)
        .await
        .with_context(|| format!("cannot read the migrations in {}", dir.display()))
}
