//! The bridge end to end: ChirpStack-shaped events over a real broker into a real database.

mod ingest;
mod support;
