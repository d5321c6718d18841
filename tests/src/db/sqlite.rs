//! A fresh SQLite database file per test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tempfile::TempDir;

use super::{Dialect, load_migrator};

/// A new SQLite database file, migrated, in a temporary folder that lives as long as this value.
///
/// Dropping it closes nothing explicitly: the pool's connections go with the test's runtime, and
/// the folder is removed with the file in it.
#[derive(Debug)]
pub struct SqliteDb {
    pool: SqlitePool,
    path: PathBuf,
    url: String,
    // Declared last so the pool is dropped before the folder holding its file.
    _dir: TempDir,
}

impl SqliteDb {
    /// A fresh database migrated with the project's `migrations/sqlite`.
    ///
    /// Panics with the cause when the file cannot be created or a migration fails: the test
    /// cannot go on without its database.
    pub async fn create() -> SqliteDb {
        Self::create_with_migrations(&Dialect::Sqlite.migrations_dir()).await
    }

    /// A fresh database migrated with the migrations in `dir` (a missing folder means none).
    pub async fn create_with_migrations(dir: &Path) -> SqliteDb {
        match Self::try_create(dir).await {
            Ok(db) => db,
            Err(e) => panic!("cannot create a test SQLite database: {e:#}"),
        }
    }

    async fn try_create(migrations: &Path) -> anyhow::Result<SqliteDb> {
        let dir = tempfile::Builder::new()
            .prefix("meterhub-sqlite-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let path = dir.path().join("meterhub.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            // WAL, as the server runs it, so that tests see the same locking behaviour.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        load_migrator(migrations)
            .await?
            .run(&pool)
            .await
            .with_context(|| {
                format!("cannot apply {} to the test database", migrations.display())
            })?;
        let url = sqlite_url(&path);
        Ok(SqliteDb {
            pool,
            path,
            url,
            _dir: dir,
        })
    }

    /// A pool of connections to the database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database URL, `sqlite:///tmp/…/meterhub.db`, for a server under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connection options for the database, to open connections of one's own.
    pub fn connect_options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(Duration::from_secs(10))
    }
}

/// `sqlite://` followed by the path, with the characters that sqlx would read as URL syntax
/// percent-encoded (it percent-decodes the path and stops at `?`).
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_escapes_what_sqlx_would_parse() {
        assert_eq!(
            sqlite_url(Path::new("/tmp/a?b#c%d/meterhub.db")),
            "sqlite:///tmp/a%3Fb%23c%25d/meterhub.db"
        );
    }
}
