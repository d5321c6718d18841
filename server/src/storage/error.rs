//! The storage layer's errors.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The write contradicts a row already stored (a unique key held by another row).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The URL names no database meterhub supports.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Applying the migrations failed.
    #[error("migrating the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or failed the statement.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl Error {
    /// Whether retrying later may succeed: the database is unreachable, busy or restarting,
    /// as opposed to refusing this particular write.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| transient_code(&c)),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Whether a database error code means "try again later".
fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        // PostgreSQL SQLSTATE: connection exceptions (08…), insufficient resources (53…),
        // operator intervention such as a shutdown (57P…), serialization failure and deadlock.
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "40001"
            || code == "40P01"
    } else {
        // SQLite result codes (at most four digits): BUSY (5) and LOCKED (6), with their
        // extended variants, which keep the primary code in the low byte.
        code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
    }
}

/// Storage results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
