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
    /// The database could not be opened; the message says where and what to check.
    #[error("{0}")]
    Connect(String),
    /// The URL names no database meterhub supports.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Applying the migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or failed the statement.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value is not one the schema allows (a table written by something else).
    #[error("unexpected stored value: {0}")]
    Corrupt(String),
    /// The database did not answer in time (a half-open connection, an overloaded server).
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// Whether retrying later may succeed: the database is unreachable, busy or restarting,
    /// as opposed to refusing this particular write.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::BeginFailed
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
            // Lock or statement timeout, and a read-only server (a failover in progress).
            || code == "55P03"
            || code == "57014"
            || code == "25006"
    } else {
        // SQLite result codes (at most four digits), with their extended variants, which keep
        // the primary code in the low byte: BUSY (5), LOCKED (6), I/O error (10) and a full
        // disk (13) pass; a constraint (19) or a type mismatch does not.
        code.parse::<u32>()
            .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13))
    }
}

/// Storage results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
