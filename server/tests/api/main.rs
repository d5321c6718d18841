//! The REST API end to end: real HTTP into a server on a real broker and database (SQLite and,
//! when configured, PostgreSQL).

#[path = "../bridge/support.rs"]
#[allow(dead_code)]
mod bridge;

/// A fake of ChirpStack's gRPC device API, for the sync through a running server.
#[cfg(feature = "chirpstack-sync")]
#[path = "../chirpstack/fake.rs"]
#[allow(dead_code)]
mod fake;

mod auth;
mod bad_input;
mod billing;
mod cache;
mod command_cache;
mod commands;
mod contract;
mod deletion;
mod device_status;
mod fuzz;
mod lifecycle;
mod openapi;
mod otaa_keys;
mod replace;
mod retention;
mod routes;
mod strict_input;
mod support;
