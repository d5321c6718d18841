//! meterhub's server: the ChirpStack MQTT bridge, storage, downlinks and the REST API for
//! LoRaWAN smart meters. `main.rs` only parses the command line; everything it runs lives here
//! so that tests drive the same code.

pub mod admin;
pub mod api;
pub mod app;
pub mod billing;
pub mod cache;
#[cfg(feature = "chirpstack-sync")]
pub mod chirpstack;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod downlink;
pub mod frame;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod mqtt;
pub mod pages;
pub mod registry;
pub mod report;
pub mod retention;
pub mod storage;
pub mod time;
pub mod uplink;
