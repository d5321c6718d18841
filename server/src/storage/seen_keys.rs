//! A set of keys kept on disk, each with the line it was first seen on: how a job that reads
//! millions of records (an import of a utility's registry) finds a key given twice without its
//! memory growing with the file.
//!
//! It is a private SQLite database in a temporary directory, whatever store meterhub runs on:
//! the set belongs to one job, not to the data, and disappears with it. SQLite's page cache is
//! bounded ([`CACHE_KIB`]); the rest stays in the file (in the operating system's page cache
//! while there is room, released under pressure).

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use super::Result;

/// SQLite's page cache for the set, KiB.
pub const CACHE_KIB: i64 = 8 * 1024;

/// A key: its kind (the caller's numbering, e.g. 0 for a DevEUI, 1 for a serial) and its
/// value as 64 bits.
pub type Key = (u8, u64);

/// The on-disk set; the file is removed when it is dropped.
pub struct SeenKeys {
    conn: SqliteConnection,
    // Held for its `Drop`, which removes the directory and the database in it.
    _dir: tempfile::TempDir,
}

impl SeenKeys {
    /// An empty set in a new temporary directory.
    pub async fn open() -> Result<SeenKeys> {
        let dir = tempfile::Builder::new()
            .prefix("meterhub-seen-")
            .tempdir()
            .map_err(sqlx::Error::Io)?;
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("seen.db"))
            .create_if_missing(true)
            // The set lives as long as the job: a crash loses nothing worth a journal.
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off)
            .pragma("cache_size", format!("-{CACHE_KIB}"));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::query(
            "CREATE TABLE seen (kind INTEGER NOT NULL, key INTEGER NOT NULL, \
             line INTEGER NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID",
        )
        .execute(&mut conn)
        .await?;
        Ok(SeenKeys { conn, _dir: dir })
    }

    /// Records `keys` (each with its line) and returns, for each key recorded by an earlier
    /// call, the line it was first seen on. Keys repeated within `keys` are the caller's to
    /// find: the first of them is the one recorded.
    pub async fn record(&mut self, keys: &[(Key, usize)]) -> Result<HashMap<Key, usize>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // One JSON array as one parameter: two statements per call, whatever its length
        // (SQLite caps a statement's parameters).
        let mut json = String::with_capacity(keys.len() * 32);
        json.push('[');
        for (i, ((kind, key), line)) in keys.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            // SQLite's integers are signed: the key's 64 bits go in as they are.
            let _ = write!(json, "[{kind},{},{line}]", *key as i64);
        }
        json.push(']');
        let mut tx = self.conn.begin().await?;
        let earlier: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT s.kind, s.key, s.line FROM json_each(?1) AS j \
             JOIN seen AS s ON s.kind = j.value ->> 0 AND s.key = j.value ->> 1",
        )
        .bind(&json)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO seen (kind, key, line) \
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)",
        )
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(earlier
            .into_iter()
            .map(|(kind, key, line)| {
                (
                    (u8::try_from(kind).unwrap_or(u8::MAX), key as u64),
                    usize::try_from(line).unwrap_or(0),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_seen_on_an_earlier_call_is_found_with_its_first_line() {
        let mut seen = SeenKeys::open().await.expect("open");
        let none = seen
            .record(&[((0, 1), 2), ((1, 1), 2), ((0, u64::MAX), 3)])
            .await
            .expect("first");
        assert!(none.is_empty(), "{none:?}");
        let found = seen
            .record(&[((0, u64::MAX), 7), ((1, 2), 8), ((1, 1), 9)])
            .await
            .expect("second");
        assert_eq!(found, HashMap::from([((0, u64::MAX), 3), ((1, 1), 2)]));
        // A key repeated later keeps its first line.
        let again = seen.record(&[((1, 1), 12)]).await.expect("third");
        assert_eq!(again, HashMap::from([((1, 1), 2)]));
    }

    #[tokio::test]
    async fn the_file_goes_with_the_set() {
        let seen = SeenKeys::open().await.expect("open");
        let dir = seen._dir.path().to_owned();
        assert!(dir.join("seen.db").exists());
        drop(seen);
        assert!(!dir.exists());
    }
}
