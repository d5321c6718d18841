//! The ingest pipeline: MQTT message → parsed ChirpStack event → decoded, validated plan →
//! one transaction per batch → acknowledgement.

pub mod classify;
pub mod reason;
pub mod registry;
pub mod validate;
pub mod writer;

pub use reason::Reason;
pub use writer::{IngestSettings, run};
