//! API keys: who may call the REST API, and with which role. Only a SHA-256 of each secret is
//! stored; the secret is shown once, when the key is created.

use chrono::{DateTime, Utc};
use sqlx::Connection;
use uuid::Uuid;

use super::{Error, Result, Store};

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// Id, shown in lists and used to revoke.
    pub id: Uuid,
    /// What the key is for, chosen by its creator.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// SHA-256 of the secret.
    pub secret_sha256: Vec<u8>,
    /// The secret's first characters, to tell keys apart.
    pub prefix: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Revoked at; a revoked key authorises nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

macro_rules! key_queries {
    ($db:ty, $lock:literal) => {
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        const COLUMNS: &str = "id, name, role, secret_sha256, prefix, created_at, revoked_at";

        /// Stores a new key.
        pub async fn insert(conn: &mut Conn, k: &ApiKeyRow) -> Result<()> {
            sqlx::query(
                "INSERT INTO api_keys (id, name, role, secret_sha256, prefix, created_at, \
                 revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(k.id)
            .bind(&k.name)
            .bind(&k.role)
            .bind(&k.secret_sha256)
            .bind(&k.prefix)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Every key, oldest first (a few hundred at most: one per client system).
        pub async fn all(conn: &mut Conn) -> Result<Vec<ApiKeyRow>> {
            let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id");
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await?)
        }

        /// Revokes a key, unless it is the last admin key in force: then nobody could manage
        /// keys through the API any more. Run in a transaction: the admin keys in force are
        /// read with `$lock` (PostgreSQL locks them; SQLite's writer is already exclusive),
        /// so two admins revoking each other's keys at once cannot both succeed.
        pub async fn revoke(conn: &mut Conn, id: Uuid, now: DateTime<Utc>) -> Result<()> {
            let admins: Vec<Uuid> = sqlx::query_scalar(concat!(
                "SELECT id FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL \
                 ORDER BY id",
                $lock
            ))
            .fetch_all(&mut *conn)
            .await?;
            if admins == [id] {
                return Err(Error::Conflict(
                    "this is the last admin key in force: create another admin key before \
                     revoking it"
                        .to_owned(),
                ));
            }
            let found = sqlx::query(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(Error::NotFound);
            }
            Ok(())
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    key_queries!(sqlx::Sqlite, "");
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    key_queries!(sqlx::Postgres, " FOR UPDATE");
}

impl Store {
    /// Stores a new API key.
    pub async fn insert_api_key(&self, key: &ApiKeyRow) -> Result<()> {
        on_writer!(self, |c, q| q::insert(c, key).await, self)
    }

    /// Every API key, revoked ones included.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        on_reader!(self, |c, q| q::all(c).await, self)
    }

    /// Revokes an API key; [`Error::Conflict`] for the last admin key in force.
    pub async fn revoke_api_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        in_transaction!(self, |c, q| q::revoke(c, id, now).await, self)
    }
}
