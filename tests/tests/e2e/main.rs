//! meterhub's end-to-end tests, one test binary: real broker, databases and processes.
//!
//! Tests that need PostgreSQL or Mosquitto follow the skip rule of `test_support::services`:
//! they run when `METERHUB_TEST_DATABASE_URL` / `METERHUB_TEST_MOSQUITTO` are set and are skipped
//! (with a line on stderr) otherwise, unless `METERHUB_REQUIRE_SERVICES=1`.
//!
//! `support` holds the self-tests of the test-support helpers.

mod support;
