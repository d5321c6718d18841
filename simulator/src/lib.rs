//! meterhub's simulator: a fleet of LoRaWAN gas and electricity meter firmwares, each a small
//! state machine with its own seeded random stream, publishing what ChirpStack's MQTT
//! integration would publish for their frames.

pub mod emulator;
pub mod faults;
pub mod fleet;
pub mod meter;
pub mod profile;
pub mod queue;
pub mod rng;
pub mod runner;
pub mod simulation;
pub mod summary;
