//! The bridge end to end: ChirpStack-shaped events over a real broker into a real database.

mod demo;
mod downlinks;
mod http;
mod ingest;
mod monitoring;
mod quarantine;
mod simulator;
mod support;
mod tls;
