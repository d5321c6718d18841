use std::collections::BTreeSet;

use meterhub::storage::Store;
use test_support::{Dialect, TestDb};

use crate::{now, stores};

async fn columns(store: &Store) -> BTreeSet<(String, String)> {
    match store {
        Store::Sqlite { reader, .. } => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
        )
        .fetch_all(reader)
        .await
        .expect("sqlite columns")
        .into_iter()
        .collect(),
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN pg_class t ON t.relname = c.table_name AND NOT t.relispartition \
             WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '\\_sqlx%'",
        )
        .fetch_all(pool)
        .await
        .expect("postgres columns")
        .into_iter()
        .collect(),
    }
}

/// A migrated SQLite store and a migrated PostgreSQL store (with their databases), or `None`
/// when PostgreSQL is not configured.
async fn both() -> Option<((TestDb, Store), (TestDb, Store))> {
    let pg = TestDb::create(Dialect::Postgres).await?;
    let sqlite = TestDb::create(Dialect::Sqlite)
        .await
        .expect("sqlite never skips");
    let pg_store = Store::connect(pg.url(), 2).await.expect("connect");
    let sqlite_store = Store::connect(sqlite.url(), 2).await.expect("connect");
    Some(((sqlite, sqlite_store), (pg, pg_store)))
}

#[tokio::test]
async fn both_dialects_define_the_same_tables_and_columns() {
    let Some(((_a, sqlite), (_b, pg))) = both().await else {
        return;
    };
    let (a, b) = (columns(&sqlite).await, columns(&pg).await);
    assert!(a.len() > 50, "too few columns: {a:?}");
    assert_eq!(
        a.symmetric_difference(&b).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns only in one dialect"
    );
}

/// Indexes created explicitly (not those backing keys), by name.
async fn indexes(store: &Store) -> BTreeSet<String> {
    match store {
        Store::Sqlite { reader, .. } => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
        )
        .fetch_all(reader)
        .await
        .expect("sqlite indexes")
        .into_iter()
        .collect(),
        Store::Postgres(pool) => sqlx::query_scalar(
            "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             WHERE t.relnamespace = 'public'::regnamespace AND NOT t.relispartition \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        )
        .fetch_all(pool)
        .await
        .expect("postgres indexes")
        .into_iter()
        .collect(),
    }
}

#[tokio::test]
async fn both_dialects_define_the_same_indexes() {
    let Some(((_a, sqlite), (_b, pg))) = both().await else {
        return;
    };
    let (a, b) = (indexes(&sqlite).await, indexes(&pg).await);
    assert!(a.contains("meters_region"), "{a:?}");
    assert_eq!(a, b);
}

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    for f in stores().await {
        f.store.migrate(now()).await.expect("second migrate");
        assert_eq!(f.store.regions().await.expect("regions"), vec![]);
    }
}

#[tokio::test]
async fn an_unsupported_url_is_refused_clearly() {
    let err = Store::connect("mysql://localhost/x", 1)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}
