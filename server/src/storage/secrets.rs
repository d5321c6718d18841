//! Secrets of the installation, shared by every instance through the database (the key that
//! signs the pages' session cookies). Created once, by whichever instance asks first.

use chrono::{DateTime, Utc};

use super::{Result, Store};

macro_rules! secret_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Stores `candidate` under `name` unless a secret is there already, then reads the
        /// one stored: two instances starting at once both get the first one written.
        pub async fn get_or_create(
            conn: &mut Conn,
            name: &str,
            candidate: &[u8],
            now: DateTime<Utc>,
        ) -> Result<Vec<u8>> {
            sqlx::query(
                "INSERT INTO installation_secrets (name, secret, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(
                sqlx::query_scalar("SELECT secret FROM installation_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?,
            )
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    secret_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    secret_queries!(sqlx::Postgres);
}

impl Store {
    /// The installation's secret called `name`: the one stored, or `candidate` (at least 32
    /// random bytes) stored now if there is none yet.
    pub async fn installation_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        on_writer!(
            self,
            |c, q| q::get_or_create(c, name, candidate, now).await,
            self
        )
    }
}
