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
        use chrono::{DateTime, Utc};

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Deletes identities recorded before `before`; returns how many.
        pub async fn prune(conn: &mut Conn, before: DateTime<Utc>, limit: i64) -> Result<u64> {
            Ok(sqlx::query(
                "DELETE FROM event_identities WHERE (event_id, event_type) IN \
                 (SELECT event_id, event_type FROM event_identities \
                  WHERE received_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *conn)
            .await?
            .rows_affected())
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    use std::collections::HashSet;

    use sqlx::QueryBuilder;

    identity_queries!(sqlx::Sqlite);

    /// Records identities; returns those not seen before (the events to apply).
    pub async fn record(
        conn: &mut Conn,
        ids: &[EventIdentity],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventIdentity>> {
        let mut new = HashSet::new();
        // Three binds a row: far below either database's limit at 5 000 rows.
        for chunk in ids.chunks(5_000) {
            let mut q = QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO event_identities (event_id, event_type, received_at) ",
            );
            q.push_values(chunk, |mut b, id| {
                b.push_bind(id.event_id.clone())
                    .push_bind(id.event_type.clone())
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (event_id, event_type) DO NOTHING RETURNING event_id, event_type");
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
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    use std::collections::HashSet;

    identity_queries!(sqlx::Postgres);

    /// Records identities; returns those not seen before (the events to apply).
    ///
    /// The columns travel as arrays, so the statement text is the same for every batch: it is
    /// prepared once per connection, and planned without thousands of parameters.
    pub async fn record(
        conn: &mut Conn,
        ids: &[EventIdentity],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventIdentity>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let (event_ids, event_types): (Vec<&str>, Vec<&str>) = ids
            .iter()
            .map(|id| (id.event_id.as_str(), id.event_type.as_str()))
            .unzip();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO event_identities (event_id, event_type, received_at) \
             SELECT event_id, event_type, $3 FROM unnest($1::text[], $2::text[]) \
             AS v (event_id, event_type) \
             ON CONFLICT (event_id, event_type) DO NOTHING RETURNING event_id, event_type",
        )
        .bind(event_ids)
        .bind(event_types)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(event_id, event_type)| EventIdentity {
                event_id,
                event_type,
            })
            .collect())
    }
}
