//! Quarantine: messages that could not be used, kept with their reason.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// A message to quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQuarantined {
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// MQTT topic it arrived on.
    pub topic: String,
    /// The message exactly as received.
    pub payload: Vec<u8>,
    /// Machine-readable reason, e.g. `malformed_json`, `unregistered_device`.
    pub reason: String,
    /// What exactly was wrong, for people.
    pub detail: String,
    /// The device, when known.
    pub dev_eui: Option<String>,
}

impl NewQuarantined {
    /// SHA-256 over topic and payload: the same message redelivered is kept once.
    pub fn digest(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update((self.topic.len() as u64).to_le_bytes());
        h.update(self.topic.as_bytes());
        h.update(&self.payload);
        h.finalize().to_vec()
    }
}

/// A quarantined message.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Quarantined {
    /// Id.
    pub id: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// MQTT topic.
    pub topic: String,
    /// The message as received.
    pub payload: Vec<u8>,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// The device, when known.
    pub dev_eui: Option<String>,
    /// When it was replayed, if it was.
    pub replayed_at: Option<DateTime<Utc>>,
}

macro_rules! quarantine_queries {
    ($db:ty) => {
        use sqlx::QueryBuilder;

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Keeps the messages; one already kept is not kept twice. Returns how many were new.
        pub async fn insert(conn: &mut Conn, rows: &[NewQuarantined]) -> Result<u64> {
            let mut inserted = 0;
            for chunk in rows.chunks(1_000) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO quarantine (received_at, topic, payload, digest, reason, detail, dev_eui) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.received_at)
                        .push_bind(r.topic.clone())
                        .push_bind(r.payload.clone())
                        .push_bind(r.digest())
                        .push_bind(r.reason.clone())
                        .push_bind(r.detail.clone())
                        .push_bind(r.dev_eui.clone());
                });
                q.push(" ON CONFLICT (digest) DO NOTHING");
                inserted += q.build().execute(&mut *conn).await?.rows_affected();
            }
            Ok(inserted)
        }

        /// Quarantined messages, optionally of one reason, newest id first, before `before_id`.
        pub async fn list(
            conn: &mut Conn,
            reason: Option<&str>,
            before_id: i64,
            limit: i64,
        ) -> Result<Vec<Quarantined>> {
            // The filter is added only when given, so that the (reason, id) index serves it.
            let mut q = QueryBuilder::<$db>::new(
                "SELECT id, received_at, topic, payload, reason, detail, dev_eui, replayed_at \
                 FROM quarantine WHERE id < ",
            );
            q.push_bind(before_id);
            if let Some(r) = reason {
                q.push(" AND reason = ").push_bind(r.to_owned());
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(&mut *conn).await?)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    quarantine_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    quarantine_queries!(sqlx::Postgres);
}
