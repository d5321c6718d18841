//! The migrated template that every test's PostgreSQL database is cloned from.
//!
//! Named after a hash of the migration files, so a schema change makes a new template and a
//! stale one is never reused. Several test processes may need it at once (each test binary is
//! one process, and nextest runs one process per test), so it is built under a PostgreSQL
//! advisory lock, under a temporary name that becomes the real one only when every migration
//! has run: a template that exists is complete.

use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection};

use super::load_migrator;
use super::postgres::{database_exists, execute_retrying_in_use, quote_ident};

/// Serialises template creation across processes; any fixed key works, as long as every
/// process uses the same one.
const TEMPLATE_LOCK_KEY: i64 = 0x6d65_7465_7268_7562; // "meterhub" in ASCII

/// Changes whenever the way templates are built changes, so that old templates are not reused.
const TEMPLATE_FORMAT: &[u8] = b"meterhub test template v1";

/// Every template's name starts with this, then a hash of its migrations.
const TEMPLATE_PREFIX: &str = "meterhub_template_";

/// How many templates to keep: the newest, plus a few for other schemas tested on the same
/// server at the same time (another branch, another checkout).
const TEMPLATES_KEPT: i64 = 3;

/// The name of the template database for the migrations in `dir`:
/// `meterhub_template_` and 16 hex digits of a SHA-256 over the folder's files (names and
/// contents, in name order). A missing folder hashes as an empty one.
pub fn template_name(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    files.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    files.sort();

    let mut hash = Sha256::new();
    hash.update(TEMPLATE_FORMAT);
    for file in &files {
        let contents = std::fs::read(file)?;
        let name = file.file_name().unwrap_or_default().as_encoded_bytes();
        // Lengths first, so that no two different folders feed the same bytes.
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name);
        hash.update((contents.len() as u64).to_le_bytes());
        hash.update(&contents);
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TEMPLATE_PREFIX}{hex}"))
}

/// Makes sure the template for `migrations` exists and returns its name.
pub(super) async fn ensure_template(
    conn: &mut PgConnection,
    admin: &PgConnectOptions,
    migrations: &Path,
) -> anyhow::Result<String> {
    let name = template_name(migrations)
        .with_context(|| format!("cannot read {}", migrations.display()))?;
    // The common case needs no lock: the template exists once anyone has built it.
    if database_exists(conn, &name).await? {
        return Ok(name);
    }

    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .context("cannot take the template lock")?;
    let built = build_template_locked(conn, admin, migrations, &name).await;
    // Also released when the session ends, should unlocking fail.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *conn)
        .await;
    built?;
    unlocked.context("cannot release the template lock")?;
    Ok(name)
}

/// Builds the template `name` unless another process did while this one waited for the lock.
async fn build_template_locked(
    conn: &mut PgConnection,
    admin: &PgConnectOptions,
    migrations: &Path,
    name: &str,
) -> anyhow::Result<()> {
    if database_exists(conn, name).await? {
        return Ok(());
    }
    // A process that died half-way leaves this behind; the lock says nobody is using it.
    let building = format!("{name}_building");
    let drop = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&building)
    );
    conn.execute(AssertSqlSafe(drop)).await?;
    // template0 never accepts connections, so cloning it cannot fail on "being accessed".
    let create = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(&building)
    );
    conn.execute(AssertSqlSafe(create))
        .await
        .with_context(|| format!("cannot create {building}"))?;

    let migrator = load_migrator(migrations).await?;
    let mut target = PgConnection::connect_with(&admin.clone().database(&building))
        .await
        .with_context(|| format!("cannot connect to {building}"))?;
    migrator
        .run(&mut target)
        .await
        .with_context(|| format!("cannot apply {} to {building}", migrations.display()))?;
    // CREATE DATABASE … TEMPLATE and RENAME both fail while anyone is connected.
    target.close().await?;

    // No connections from now on: clones then never find the template in use.
    let seal = format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        quote_ident(&building)
    );
    conn.execute(AssertSqlSafe(seal)).await?;
    // The final name appears only now, so a template that exists is always complete.
    let rename = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&building),
        quote_ident(name)
    );
    execute_retrying_in_use(conn, rename)
        .await
        .with_context(|| format!("cannot rename {building} to {name}"))?;
    retire_old_templates(conn).await;
    Ok(())
}

/// Drops all but the newest [`TEMPLATES_KEPT`] templates, so that a server used for years of
/// schema changes does not fill up with them. Newest by OID, which PostgreSQL hands out in
/// increasing order. Best effort, like every cleanup here.
async fn retire_old_templates(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database \
         WHERE starts_with(datname, $1) AND NOT datname LIKE '%building' \
         ORDER BY oid DESC OFFSET $2",
    )
    .bind(TEMPLATE_PREFIX)
    .bind(TEMPLATES_KEPT)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    for name in names {
        let unmark = format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE false",
            quote_ident(&name)
        );
        let drop = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        );
        if conn.execute(AssertSqlSafe(unmark)).await.is_ok() {
            let _ = conn.execute(AssertSqlSafe(drop)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_name_follows_the_migration_files() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let empty = template_name(dir.path()).expect("hash");
        assert_eq!(
            empty,
            template_name(&dir.path().join("missing")).expect("hash")
        );
        std::fs::write(dir.path().join("1_init.sql"), "CREATE TABLE a (id int);").expect("write");
        let one = template_name(dir.path()).expect("hash");
        assert_ne!(one, empty);
        std::fs::write(dir.path().join("1_init.sql"), "CREATE TABLE b (id int);").expect("write");
        assert_ne!(template_name(dir.path()).expect("hash"), one);
        assert!(one.len() <= 63, "PostgreSQL names are at most 63 bytes");
    }
}
