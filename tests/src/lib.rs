//! Test support for meterhub: the pieces every integration and end-to-end test needs.
//!
//! - [`services`]: the skip rule for tests that need a real PostgreSQL or Mosquitto.
//! - [`db`]: a fresh, migrated SQLite or PostgreSQL database per test.
//! - [`broker`]: a private MQTT broker per test.
//! - [`proxy`]: a loopback TCP proxy that a test can cut and restore.
//! - [`process`]: start, wait for, kill and restart a binary under test.
//!
//! Real services are opt-in through environment variables, so `cargo test` passes on a fresh
//! machine and CI (which sets them all, plus `METERHUB_REQUIRE_SERVICES=1`) runs everything:
//!
//! ```text
//! METERHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! METERHUB_TEST_MOSQUITTO=/usr/sbin/mosquitto \
//! METERHUB_REQUIRE_SERVICES=1 cargo test --workspace
//! ```
//!
//! Everything is quiet unless `TEST_LOG` is set; the output of a broker or a child process is
//! printed when the test that owns it fails.
//!
//! The crate's own `tests/e2e` binary holds the workspace's end-to-end tests and the self-tests
//! of these helpers.

#![warn(missing_docs)]

pub mod broker;
pub mod db;
pub mod process;
pub mod proxy;
pub mod services;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

pub use broker::Broker;
pub use db::{Dialect, PostgresDb, SqliteDb, TestDb};
pub use process::{Process, ProcessBuilder};
pub use proxy::TcpProxy;

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `tests/` is a direct member of the workspace, so its parent is the root.
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Whether `TEST_LOG` asks for logs and captured output to be printed.
pub fn test_log_enabled() -> bool {
    std::env::var_os("TEST_LOG").is_some_and(|v| !v.is_empty())
}

/// A loopback TCP port that was free a moment ago.
///
/// The port is released before this returns, so another process may take it first: callers
/// that hand it to a child process should retry with a new port if the child cannot bind.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Installs a `tracing` subscriber writing through the test harness, only when `TEST_LOG` is
/// set (filter from `RUST_LOG`, default `info`). Safe to call from every test.
pub fn init_tracing() {
    if !test_log_enabled() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `try_init` fails when another test already installed the subscriber: that one serves.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
