//! The gateway transport: the fleet as LoRaWAN 1.0.x OTAA devices behind simulated gateways
//! that speak the Semtech UDP packet-forwarder protocol, for runs against a real ChirpStack.
//! ChirpStack v4 has no UDP listener: a ChirpStack MQTT Forwarder (or Gateway Bridge) per
//! gateway EUI takes the datagrams and speaks MQTT to ChirpStack.
//!
//! [`packet_forwarder`] holds the datagrams, [`lorawan`] the device's frames and crypto,
//! [`keys`] the fleet's AppKeys, [`radio`] the EU868 metadata, [`airtime`] time on air and
//! duty cycle, [`air`] frames in flight and their collisions, [`faults`] the faults on demand as the air
//! shows them, [`gateway`] one gateway's
//! socket and counters, [`devices`] the meters' link state and schedule, [`runner`] the loop
//! that ties them together and [`report`] what it counted; [`bench`] is a counting network
//! server to measure it against.

pub mod air;
pub mod airtime;
pub mod bench;
pub mod devices;
pub mod faults;
pub mod gateway;
pub mod keys;
pub mod lorawan;
pub mod packet_forwarder;
pub mod radio;
pub mod report;
pub mod runner;

pub use keys::FleetKeys;
pub use runner::{Realism, UdpReport, UdpSpec, run};
