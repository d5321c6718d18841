//! Identities of applied events: the database's unique key makes every effect happen once,
//! across restarts and across instances sharing a subscription.

/// One event's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventIdentity {
    /// `deduplicationId` (up, join, status), `queueItemId` (ack, txack) or a digest (log).
    pub event_id: String,
    /// The ChirpStack event type.
    pub event_type: String,
}

/// How long identities are kept: redeliveries come within minutes; a week is generous.
pub const IDENTITY_RETENTION: chrono::Duration = chrono::Duration::days(7);

macro_rules! identity_queries {
    ($db:ty) => {
        use std::collections::HashSet;

        use chrono::{DateTime, Utc};
        use sqlx::QueryBuilder;

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Records identities; returns those not seen before (the events to apply).
        pub async fn record(
            conn: &mut Conn,
            ids: &[EventIdentity],
            now: DateTime<Utc>,
        ) -> Result<HashSet<EventIdentity>> {
            let mut new = HashSet::new();
            // Three binds a row: far below either database's limit at 5 000 rows.
            for chunk in ids.chunks(5_000) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO event_identities (event_id, event_type, received_at) ",
                );
                q.push_values(chunk, |mut b, id| {
                    b.push_bind(id.event_id.clone())
                        .push_bind(id.event_type.clone())
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (event_id, event_type) DO NOTHING RETURNING event_id, event_type",
                );
                let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
                new.extend(
                    rows.into_iter()
                        .map(|(event_id, event_type)| EventIdentity {
                            event_id,
                            event_type,
                        }),
                );
            }
            Ok(new)
        }

        /// Deletes identities recorded before `before`; returns how many.
        pub async fn prune(conn: &mut Conn, before: DateTime<Utc>) -> Result<u64> {
            Ok(
                sqlx::query("DELETE FROM event_identities WHERE received_at < $1")
                    .bind(before)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected(),
            )
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    identity_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    identity_queries!(sqlx::Postgres);
}
