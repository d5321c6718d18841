//! meterhub's simulator: a fleet of LoRaWAN gas and electricity meter firmwares, each a small
//! state machine with its own seeded random stream, publishing what ChirpStack's MQTT
//! integration would publish for their frames.
//!
//! [`simulation::Simulation`] is the fleet in motion without I/O (a seed always gives the same
//! events); [`faults`] says what goes wrong on the way, at configured rates; [`runner`] plays
//! it over MQTT in simulated time and plays ChirpStack's downlink queue; [`summary`] counts
//! what a run did, down to the readings a server must have stored for each meter. [`udp`] plays
//! the same firmwares as real LoRaWAN devices behind Semtech UDP gateways instead.

pub mod emulator;
pub mod faults;
pub mod fleet;
pub mod meter;
pub mod profile;
#[cfg(feature = "provision")]
pub mod provision;
pub mod queue;
pub mod rng;
pub mod runner;
pub mod simulation;
pub mod summary;
pub mod timeline;
pub mod udp;
