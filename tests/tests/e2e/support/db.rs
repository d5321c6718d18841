use std::path::Path;
use std::str::FromStr as _;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection, PgPool, SqlitePool};
use test_support::db::{database_exists, quote_ident};
use test_support::{Dialect, PostgresDb, SqliteDb, TestDb, services};

/// Three migrations valid in both dialects; `marker` makes the folder's contents (and so its
/// PostgreSQL template) unique to one test run.
fn write_migrations(dir: &Path, marker: &str) {
    let files = [
        (
            "1_meters.sql",
            format!(
                "-- {marker}\nCREATE TABLE meters (id BIGINT PRIMARY KEY, serial TEXT NOT NULL);"
            ),
        ),
        (
            "2_readings.sql",
            "CREATE TABLE readings (meter_id BIGINT NOT NULL REFERENCES meters (id), \
             taken_at TEXT NOT NULL);"
                .to_owned(),
        ),
        (
            "3_readings_by_meter.sql",
            "CREATE INDEX readings_by_meter ON readings (meter_id);".to_owned(),
        ),
    ];
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).expect("write a migration");
    }
}

async fn sqlite_table_exists(pool: &SqlitePool, table: &str) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .expect("query sqlite_master")
        > 0
}

async fn postgres_table_exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("query the catalogue")
}

async fn admin_connection() -> PgConnection {
    let url = services::database_url().expect("the database URL is set when a database was made");
    PgConnection::connect(&url)
        .await
        .expect("connect to the admin database")
}

async fn postgres_database_exists(admin: &mut PgConnection, name: &str) -> bool {
    database_exists(admin, name)
        .await
        .expect("query pg_database")
}

#[tokio::test]
async fn sqlite_databases_are_fresh_per_test() {
    let a = SqliteDb::create().await;
    let b = SqliteDb::create().await;
    assert_ne!(a.path(), b.path());

    sqlx::query("CREATE TABLE only_in_a (id INTEGER)")
        .execute(a.pool())
        .await
        .expect("create a table");
    assert!(sqlite_table_exists(a.pool(), "only_in_a").await);
    assert!(!sqlite_table_exists(b.pool(), "only_in_a").await);

    let path = a.path().to_owned();
    assert!(path.exists());
    drop(a);
    assert!(!path.exists(), "the file goes with its guard");
}

#[tokio::test]
async fn sqlite_databases_carry_the_project_migrations() {
    let db = SqliteDb::create().await;
    // The bookkeeping table exists even while the project has no migrations yet.
    assert!(sqlite_table_exists(db.pool(), "_sqlx_migrations").await);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count migrations");
    // The helper's rule: a missing folder means no migrations.
    let dir = Dialect::Sqlite.migrations_dir();
    let expected = if dir.exists() {
        sqlx::migrate::Migrator::new(dir)
            .await
            .expect("read the project's migrations")
            .iter()
            .count()
    } else {
        0
    };
    assert_eq!(applied, i64::try_from(expected).expect("a small count"));
}

#[tokio::test]
async fn sqlite_databases_apply_every_migration_given() {
    let dir = tempfile::tempdir().expect("temporary folder");
    write_migrations(dir.path(), "sqlite");
    let db = SqliteDb::create_with_migrations(dir.path()).await;
    assert!(sqlite_table_exists(db.pool(), "meters").await);
    assert!(sqlite_table_exists(db.pool(), "readings").await);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count migrations");
    assert_eq!(applied, 3);
}

#[tokio::test]
async fn sqlite_url_opens_the_same_database() {
    let db = SqliteDb::create().await;
    sqlx::query("CREATE TABLE marker (id INTEGER)")
        .execute(db.pool())
        .await
        .expect("create a table");
    let options = SqliteConnectOptions::from_str(db.url()).expect("the URL parses");
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("open the URL");
    assert!(sqlite_table_exists(&pool, "marker").await);
}

#[tokio::test]
async fn postgres_databases_are_isolated_per_test() {
    let Some(a) = PostgresDb::create().await else {
        return;
    };
    let Some(b) = PostgresDb::create().await else {
        return;
    };
    assert_ne!(a.name(), b.name());

    sqlx::query("CREATE TABLE only_in_a (id integer)")
        .execute(a.pool())
        .await
        .expect("create a table");
    assert!(postgres_table_exists(a.pool(), "only_in_a").await);
    assert!(!postgres_table_exists(b.pool(), "only_in_a").await);
    assert!(postgres_table_exists(a.pool(), "_sqlx_migrations").await);
}

#[tokio::test]
async fn postgres_url_reaches_the_test_database() {
    let Some(db) = PostgresDb::create().await else {
        return;
    };
    let mut conn = PgConnection::connect(db.url())
        .await
        .expect("connect to the URL");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .expect("current_database()");
    assert_eq!(current, db.name());
}

#[tokio::test]
async fn postgres_databases_are_dropped_with_their_guard() {
    let Some(db) = PostgresDb::create().await else {
        return;
    };
    let name = db.name().to_owned();
    // An open session must not keep the database alive.
    sqlx::query("SELECT 1")
        .execute(db.pool())
        .await
        .expect("use the pool");
    let mut admin = admin_connection().await;
    assert!(postgres_database_exists(&mut admin, &name).await);
    drop(db);
    assert!(!postgres_database_exists(&mut admin, &name).await);
}

#[tokio::test]
async fn postgres_databases_left_by_killed_tests_are_dropped_later() {
    let Some(url) = services::database_url() else {
        return;
    };
    // Named as a test database created in 1970, whose guard never ran.
    let stale = format!(
        "meterhub_test_1_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            quote_ident(&stale)
        )))
        .await
        .expect("create a stale database");

    let Some(_db) = PostgresDb::create().await else {
        return;
    };
    assert!(!postgres_database_exists(&mut admin, &stale).await);
}

#[tokio::test]
async fn postgres_templates_are_built_once_when_tests_race() {
    let Some(url) = services::database_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    // A new template every run, so that the race really happens.
    write_migrations(dir.path(), &uuid::Uuid::new_v4().to_string());
    let template = test_support::db::template_name(dir.path()).expect("hash the migrations");

    let dbs = create_four_at_once(dir.path()).await;
    let mut builds = Vec::new();
    for db in &dbs {
        assert!(postgres_table_exists(db.pool(), "meters").await);
        assert!(postgres_table_exists(db.pool(), "readings").await);
        builds.push(migration_stamps(db.pool()).await);
    }
    // Each clone carries the template's bookkeeping, stamped when the template was migrated; a
    // database migrated on its own (or a second build of the template) would have other stamps.
    assert_eq!(builds[0].len(), 3, "every migration is recorded");
    assert!(
        builds.iter().all(|stamps| *stamps == builds[0]),
        "the racing databases come from one build of the template: {builds:#?}"
    );
    drop(dbs);

    // Templates normally stay for later runs; this one is unique to the run, so it goes.
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    assert!(postgres_database_exists(&mut admin, &template).await);
    let quoted = quote_ident(&template);
    for sql in [
        format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"),
        format!("DROP DATABASE {quoted}"),
    ] {
        admin
            .execute(AssertSqlSafe(sql))
            .await
            .expect("drop the template");
    }
}

/// Each applied migration's version and the time it was applied, in version order.
async fn migration_stamps(pool: &PgPool) -> Vec<(i64, String)> {
    // As text: the stamps only need comparing, to the microsecond PostgreSQL keeps.
    sqlx::query_as("SELECT version, installed_on::text FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .expect("read _sqlx_migrations")
}

/// Four databases created at once from the same new migrations.
async fn create_four_at_once(migrations: &Path) -> Vec<PostgresDb> {
    let (a, b, c, d) = tokio::join!(
        PostgresDb::create_with_migrations(migrations),
        PostgresDb::create_with_migrations(migrations),
        PostgresDb::create_with_migrations(migrations),
        PostgresDb::create_with_migrations(migrations),
    );
    [a, b, c, d]
        .into_iter()
        .map(|db| db.expect("the database URL is set"))
        .collect()
}

#[tokio::test]
async fn test_databases_come_in_both_dialects() {
    for dialect in Dialect::ALL {
        let Some(db) = TestDb::create(dialect).await else {
            continue;
        };
        assert_eq!(db.dialect(), dialect);
        let scheme = match dialect {
            Dialect::Sqlite => "sqlite://",
            Dialect::Postgres => "postgres://",
        };
        assert!(db.url().starts_with(scheme), "{}", db.url());
    }
}
