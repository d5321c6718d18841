//! The skip rule for tests that need a real service.
//!
//! A test that needs PostgreSQL or Mosquitto asks for it here. When the variable naming the
//! service is unset (or empty) the test prints one line to stderr and returns early, so
//! `cargo test` passes on a machine without the services. With `METERHUB_REQUIRE_SERVICES=1`
//! (as in CI) a missing variable fails the test instead, so nothing is skipped silently.
//!
//! ```no_run
//! # async fn example() {
//! let Some(db) = test_support::PostgresDb::create().await else {
//!     return; // skipped: the line on stderr says why
//! };
//! # drop(db);
//! # }
//! ```

use std::path::PathBuf;

/// A PostgreSQL URL to a server where the user may `CREATE DATABASE`; tests create their own
/// databases on it and never touch the one named in the URL.
pub const DATABASE_URL_VAR: &str = "METERHUB_TEST_DATABASE_URL";

/// The path of a `mosquitto` binary; tests start private brokers with it.
pub const MOSQUITTO_VAR: &str = "METERHUB_TEST_MOSQUITTO";

/// Set to `1` to turn a missing service into a test failure instead of a skip.
pub const REQUIRE_SERVICES_VAR: &str = "METERHUB_REQUIRE_SERVICES";

/// Whether `METERHUB_REQUIRE_SERVICES` asks for missing services to fail the tests.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES_VAR)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The PostgreSQL URL from `METERHUB_TEST_DATABASE_URL`, or `None` after printing why the
/// calling test is skipped. Panics instead when services are required.
pub fn database_url() -> Option<String> {
    require(DATABASE_URL_VAR, "PostgreSQL")
}

/// The Mosquitto binary from `METERHUB_TEST_MOSQUITTO`, or `None` after printing why the calling
/// test is skipped. Panics instead when services are required.
pub fn mosquitto_binary() -> Option<PathBuf> {
    require(MOSQUITTO_VAR, "Mosquitto").map(PathBuf::from)
}

/// Reads `var` under the skip rule: its value when set and not empty; otherwise prints
/// `skipped: <test>: <var> is not set (needs <service>)` and returns `None`, or panics with that
/// reason when `METERHUB_REQUIRE_SERVICES=1`.
pub fn require(var: &str, service: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    match decide(value, services_required()) {
        Decision::Run(value) => Some(value),
        Decision::Skip => {
            eprintln!(
                "skipped: {}: {var} is not set (needs {service})",
                current_test().unwrap_or_else(|| service.to_owned())
            );
            None
        }
        Decision::Fail => panic!(
            "{}: {var} is not set, and {REQUIRE_SERVICES_VAR}=1 forbids skipping: \
             this test needs {service}",
            current_test().unwrap_or_else(|| service.to_owned())
        ),
    }
}

/// The name of the running test, as the test harness names its thread.
///
/// `None` when the harness runs tests on the main thread (one test thread) or the caller is
/// not a test thread at all.
pub fn current_test() -> Option<String> {
    let thread = std::thread::current();
    thread
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
}

/// What the skip rule makes of a variable's value.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Run(String),
    Skip,
    Fail,
}

/// The skip rule itself, apart from the process environment so that it can be tested.
fn decide(value: Option<String>, required: bool) -> Decision {
    match value {
        Some(value) if !value.trim().is_empty() => Decision::Run(value),
        _ if required => Decision::Fail,
        _ => Decision::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_variable_runs_the_test() {
        let url = "postgres://postgres@127.0.0.1/postgres".to_owned();
        assert_eq!(decide(Some(url.clone()), false), Decision::Run(url.clone()));
        assert_eq!(decide(Some(url.clone()), true), Decision::Run(url));
    }

    #[test]
    fn a_missing_variable_skips_when_services_are_optional() {
        assert_eq!(decide(None, false), Decision::Skip);
    }

    #[test]
    fn an_empty_variable_counts_as_missing() {
        assert_eq!(decide(Some("  ".to_owned()), false), Decision::Skip);
        assert_eq!(decide(Some(String::new()), true), Decision::Fail);
    }

    #[test]
    fn a_missing_variable_fails_when_services_are_required() {
        assert_eq!(decide(None, true), Decision::Fail);
    }
}
