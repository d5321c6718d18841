//! Opening the database at start-up, and when that fails, one message that says what failed,
//! where (host, port, database, user — never the password) and what to check.
//!
//! A pool hides why it could not connect: after its acquire timeout sqlx 0.9 reports only
//! "pool timed out while waiting for an open connection", and a refusal by the server prints
//! its message once per layer of the error chain, with the server's own source line. So one
//! connection is opened first, bounded by [`CONNECT_TIMEOUT`], and its failure explained.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteConnectOptions;

use super::Error;

/// How long the first connection may take before start-up gives up on the database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the settings name the database, for the advice in messages.
const SETTING: &str = "[database] url (METERHUB_DATABASE__URL)";

/// Opens one connection to check that PostgreSQL is there and accepts these options, or
/// explains why not.
pub async fn probe_postgres(options: &PgConnectOptions) -> Result<(), Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(Error::Connect(explain_postgres(options, &e))),
        Err(_) => Err(Error::Connect(format!(
            "{} did not answer within {} s: check the host and port in {SETTING}, that \
             PostgreSQL listens there, and any firewall in between",
            where_postgres(options),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A failed SQLite open, explained.
pub fn explain_sqlite(options: &SqliteConnectOptions, e: &sqlx::Error) -> Error {
    Error::Connect(format!(
        "cannot open the SQLite database {}: {}: check that its directory exists and is \
         writable, or change {SETTING}",
        options.get_filename().display(),
        message(e)
    ))
}

/// A URL that does not parse, explained without repeating it (it may hold a password).
pub fn explain_url(e: &sqlx::Error) -> Error {
    Error::Connect(format!(
        "{SETTING} is not a valid database URL: {}",
        message(e)
    ))
}

fn where_postgres(o: &PgConnectOptions) -> String {
    let at = match o.get_socket() {
        Some(socket) => format!("socket {}", socket.display()),
        None => format!("{}:{}", o.get_host(), o.get_port()),
    };
    format!(
        "PostgreSQL at {at} (database {:?}, user {:?})",
        o.get_database().unwrap_or(o.get_username()),
        o.get_username()
    )
}

fn explain_postgres(o: &PgConnectOptions, e: &sqlx::Error) -> String {
    let at = where_postgres(o);
    let code = match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (e, code.as_deref()) {
        (sqlx::Error::Io(io), _) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "cannot connect to {at}: connection refused: check that PostgreSQL is running \
                 and listens on that host and port, or fix {SETTING}"
            )
        }
        (sqlx::Error::Io(io), _) => format!(
            "cannot connect to {at}: {io}: check the host and port in {SETTING} and that the \
             network reaches it"
        ),
        (sqlx::Error::Tls(tls), _) => {
            format!("cannot connect to {at}: TLS failed: {tls}: check sslmode in {SETTING}")
        }
        // invalid_catalog_name
        (_, Some("3D000")) => format!(
            "cannot connect to {at}: {}: create it (createdb {:?}) or name an existing one \
             in {SETTING}",
            message(e),
            o.get_database().unwrap_or(o.get_username())
        ),
        // invalid_password, invalid_authorization_specification
        (_, Some("28P01" | "28000")) => format!(
            "{at} refused the login: {}: check the user and password in {SETTING} and the \
             server's pg_hba.conf",
            message(e)
        ),
        _ => format!("cannot connect to {at}: {}", message(e)),
    }
}

/// The error's own message: the server's text without sqlx's " at line N" (the server's
/// source line), nothing of the error's sources.
fn message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn options(url: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(url).expect("a URL")
    }

    #[tokio::test]
    async fn a_refused_connection_names_host_port_and_database_but_not_the_password() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let o = options(&format!("postgres://meter:s3cret@127.0.0.1:{port}/billing"));
        let started = std::time::Instant::now();
        let Err(Error::Connect(m)) = probe_postgres(&o).await else {
            panic!("connected to a closed port");
        };
        assert!(
            started.elapsed() < CONNECT_TIMEOUT,
            "a refusal is reported at once"
        );
        for part in [
            &format!("127.0.0.1:{port}"),
            "\"billing\"",
            "\"meter\"",
            "connection refused",
            "METERHUB_DATABASE__URL",
        ] {
            assert!(m.contains(part), "{part:?} missing: {m}");
        }
        assert!(!m.contains("s3cret"), "{m}");
    }

    #[test]
    fn a_server_refusal_is_said_once_without_its_source_line() {
        let o = options("postgres://meter:s3cret@db.example:5433/billing");
        let e = sqlx::Error::Protocol("frobnicated".into());
        let m = explain_postgres(&o, &e);
        assert!(m.contains("db.example:5433"), "{m}");
        assert!(!m.contains("s3cret"), "{m}");
        let m = Error::Connect(m).to_string();
        assert_eq!(m.matches("frobnicated").count(), 1, "{m}");
    }

    #[test]
    fn a_bad_url_is_not_echoed() {
        let e = PgConnectOptions::from_str("postgres://u:s3cret@host:notaport/db")
            .expect_err("bad port");
        let m = explain_url(&e).to_string();
        assert!(m.contains("[database] url"), "{m}");
        assert!(!m.contains("s3cret"), "{m}");
    }
}
