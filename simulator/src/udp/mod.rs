//! The gateway transport: the fleet as LoRaWAN 1.0.x OTAA devices behind simulated gateways
//! that speak the Semtech UDP packet-forwarder protocol to a gateway bridge (ChirpStack's UDP
//! port 1700), for runs against a real ChirpStack.
//!
//! [`packet_forwarder`] holds the datagrams, [`lorawan`] the device's frames and crypto,
//! [`keys`] the fleet's AppKeys, [`radio`] the EU868 metadata, [`gateway`] one gateway's
//! socket and counters, [`devices`] the meters' link state and schedule, and [`runner`] the
//! loop that ties them together; [`bench`] is a counting network server to measure it against.

pub mod bench;
pub mod devices;
pub mod gateway;
pub mod keys;
pub mod lorawan;
pub mod packet_forwarder;
pub mod radio;
pub mod runner;

pub use keys::FleetKeys;
pub use runner::{UdpReport, UdpSpec, run};
