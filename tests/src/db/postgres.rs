//! A fresh PostgreSQL database per test, cloned from a migrated template.
//!
//! Migrating once and cloning is much cheaper than migrating every test's database; the
//! template module says how the template is built safely by racing processes.
//!
//! The server may be long-lived (a developer's, CI's), so leftovers are cleaned as a side effect:
//! test databases whose process was killed before its guard ran are dropped once they are hours
//! old, and only the newest few templates are kept.

use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection, PgPool};

use super::Dialect;
use super::template::ensure_template;
use crate::services;

/// SQLSTATE 55006 object_in_use: "source database is being accessed by other users", or a
/// database that cannot be renamed while someone is connected.
const OBJECT_IN_USE: &str = "55006";

/// SQLSTATE 3D000 invalid_catalog_name: "template database … does not exist".
const UNDEFINED_DATABASE: &str = "3D000";

/// Every test database's name starts with this, then its creation time in Unix seconds.
const TEST_DB_PREFIX: &str = "meterhub_test_";

/// A test database older than this was left behind by a test process that was killed (its
/// guard never ran): no test runs this long, so it is dropped.
const STALE_AFTER: Duration = Duration::from_secs(6 * 60 * 60);

/// How long to keep retrying while a database is briefly in use (a session that has just
/// closed can take a moment to leave on the server side).
const IN_USE_RETRY_FOR: Duration = Duration::from_secs(15);

/// A new database on the server named by `METERHUB_TEST_DATABASE_URL`, cloned from the migrated
/// template; dropped (with `WITH (FORCE)`, best effort) when this value is dropped.
#[derive(Debug)]
pub struct PostgresDb {
    name: String,
    url: String,
    // Boxed: the options are large, and `TestDb` holds either this or a small `SqliteDb`.
    admin: Box<PgConnectOptions>,
    pool: PgPool,
}

impl PostgresDb {
    /// A fresh database with the project's `migrations/postgres` applied, or `None` when the
    /// test is skipped under the rule in [`crate::services`].
    ///
    /// Panics with the cause when the server refuses: the test cannot go on without it.
    pub async fn create() -> Option<PostgresDb> {
        Self::create_with_migrations(&Dialect::Postgres.migrations_dir()).await
    }

    /// A fresh database with the migrations in `dir` applied (a missing folder means none), or
    /// `None` when the test is skipped.
    pub async fn create_with_migrations(dir: &Path) -> Option<PostgresDb> {
        let admin_url = services::database_url()?;
        match Self::try_create(&admin_url, dir).await {
            Ok(db) => Some(db),
            Err(e) => panic!(
                "cannot create a test database on {}: {e:#}",
                redact(&admin_url)
            ),
        }
    }

    async fn try_create(admin_url: &str, migrations: &Path) -> anyhow::Result<PostgresDb> {
        let admin = PgConnectOptions::from_str(admin_url)
            .with_context(|| format!("{} is not a PostgreSQL URL", services::DATABASE_URL_VAR))?;
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .context("cannot connect")?;
        drop_stale_databases(&mut conn).await;
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}",
            unix_seconds(),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        // Twice: a run testing another schema on the same server may have retired the
        // template between the check and the clone (see `retire_old_templates`).
        let mut attempts = 2;
        loop {
            attempts -= 1;
            let template = ensure_template(&mut conn, &admin, migrations).await?;
            let create = format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(&template)
            );
            match execute_retrying_in_use(&mut conn, create).await {
                Ok(()) => break,
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some(UNDEFINED_DATABASE) && attempts > 0 => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot create {name} from template {template}")));
                }
            }
        }
        // The admin session is not needed any more; closing it politely is best effort.
        let _ = conn.close().await;

        let options = admin.clone().database(&name);
        // Lazy: many tests only hand the URL to a server and never use this pool.
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        let url = database_url(admin_url, &name)?;
        Ok(PostgresDb {
            name,
            url,
            admin: Box::new(admin),
            pool,
        })
    }

    /// The database's name (`meterhub_test_<unix seconds>_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL: the one in `METERHUB_TEST_DATABASE_URL` with this database's name.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool of connections to the database (connects on first use).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connection options for the database, to open connections of one's own (for instance
    /// through a [`crate::TcpProxy`], by changing the port).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        // Dropping needs async I/O, but `drop` may run inside the test's runtime (where blocking
        // on a future is forbidden) or after it is gone. A short-lived thread with its own
        // runtime works in both cases.
        let admin = (*self.admin).clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await?;
                // FORCE ends the sessions still open on it (the pool, a server under test).
                let drop = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                );
                conn.execute(AssertSqlSafe(drop)).await?;
                let _ = conn.close().await;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop test database {}: {e:#}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// Drops the test databases that killed test processes left behind. Best effort: another
/// process may be dropping the same ones.
async fn drop_stale_databases(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
    )
    .bind(TEST_DB_PREFIX)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = unix_seconds();
    for name in names {
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_secs()) {
            let drop = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            );
            let _ = conn.execute(AssertSqlSafe(drop)).await;
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Executes `sql` again while it fails with "object in use", for up to [`IN_USE_RETRY_FOR`].
pub(super) async fn execute_retrying_in_use(
    conn: &mut PgConnection,
    sql: String,
) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + IN_USE_RETRY_FOR;
    let mut pause = Duration::from_millis(20);
    loop {
        match conn.execute(AssertSqlSafe(sql.clone())).await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some(OBJECT_IN_USE) && Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `admin_url` with its database replaced by `name`, keeping every other part (user, password,
/// host, parameters) as it was.
fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url)
        .with_context(|| format!("{} is not a URL", services::DATABASE_URL_VAR))?;
    url.set_path(name);
    Ok(url.into())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.into()
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// Quotes an identifier for PostgreSQL: names built here are plain, but quoting makes any name
/// safe to splice into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether the server `conn` is connected to has a database called `name`.
pub async fn database_exists(conn: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .context("cannot list databases")?;
    Ok(exists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("meterhub_test_1"), "\"meterhub_test_1\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn database_url_keeps_everything_but_the_database() {
        let url = database_url(
            "postgres://user:secret@127.0.0.1:5432/postgres?sslmode=disable",
            "meterhub_test_x",
        )
        .expect("valid URL");
        assert_eq!(
            url,
            "postgres://user:secret@127.0.0.1:5432/meterhub_test_x?sslmode=disable"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://user:secret@localhost/postgres"),
            "postgres://user:***@localhost/postgres"
        );
    }
}
