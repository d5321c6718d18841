//! The server's reading of the shared [`Clock`](firmware_protocol::clock::Clock).

use chrono::{DateTime, Utc};
use firmware_protocol::clock::Clock;

/// The clock's current time as UTC, truncated to microseconds: the precision PostgreSQL
/// keeps, so a time written and read back compares equal on both stores.
pub fn now_utc(clock: &Clock) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(clock.now_unix_micros()).unwrap_or_default()
}
