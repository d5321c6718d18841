//! ChirpStack's device list kept in step with the registry over ChirpStack's gRPC API (cargo
//! feature `chirpstack-sync`, `[chirpstack]` API settings).
//!
//! Declarative: a round reads both sides' states — the registry's meters with their keys,
//! ChirpStack's devices of the application — and [`diff`] says what differs; applying it
//! creates the devices of meters in service (with their OTAA keys) and deletes those of
//! meters out of service. Whatever changed the registry (an install, a retirement, a
//! replacement, a file import from another process), the next round sees it. Rounds run after
//! every install and retirement through the API, every `sync_interval_secs` on the instance
//! holding the scheduler's lease, and on demand (`meterhub meters sync`). A failure is logged,
//! counted (`meterhub_chirpstack_sync_failures_total`) and retried by the next round.
//!
//! The client is `meterhub-chirpstack`'s, shared with the simulator's `provision`.

pub mod diff;
pub mod sync;

pub use meterhub_chirpstack::{
    ChirpStackApi, Device, NewDevice, api, device_keys, meter_profile, tonic,
};
