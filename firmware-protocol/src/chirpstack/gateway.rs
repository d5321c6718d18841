//! The JSON messages between a gateway forwarder (chirpstack-mqtt-forwarder,
//! chirpstack-gateway-bridge) and ChirpStack, on `{region}/gateway/{gatewayId}/...`
//! (`gw` proto package).
//!
//! | topic suffix | message | direction |
//! |---|---|---|
//! | `event/up` | [`UplinkFrame`] | forwarder → ChirpStack |
//! | `event/stats` | [`GatewayStats`] | forwarder → ChirpStack |
//! | `event/ack` | [`DownlinkTxAck`] | forwarder → ChirpStack |
//! | `command/down` | [`DownlinkFrame`] | ChirpStack → forwarder |
//! | `state/conn` | [`ConnState`] | forwarder (retained; ChirpStack ignores it) |
//!
//! Zero fields are left out, as proto3 does. ChirpStack takes a payload for JSON only if it
//! contains the text `gatewayId`, so every message sent to it must carry the gateway id.
//!
//! Deprecated `*Legacy` fields and Concentratord-only fields (duty-cycle statistics) are not
//! modelled; on input they are ignored.

use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};

use super::bytes::Bytes;
use super::common::Location;
use super::proto3::{is_default, optional_oneof, proto_enum};
use super::radio::{DownlinkTxInfo, Modulation, UplinkRxInfo, UplinkTxInfo};
use super::time::Timestamp;

/// One received LoRa frame as one gateway heard it (`gw.UplinkFrame`, `event/up`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UplinkFrame {
    /// The LoRaWAN PHYPayload.
    #[serde(skip_serializing_if = "is_default")]
    pub phy_payload: Bytes,
    /// How it was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_info: Option<UplinkTxInfo>,
    /// How it was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_info: Option<UplinkRxInfo>,
}

/// Packet counts for one modulation (`gw.PerModulationCount`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PerModulationCount {
    /// The modulation counted.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_oneof"
    )]
    pub modulation: Option<Modulation>,
    /// Number of packets.
    #[serde(skip_serializing_if = "is_default")]
    pub count: u32,
}

/// Periodic gateway statistics (`gw.GatewayStats`, `event/stats`); ChirpStack uses them for
/// the gateway's "last seen" and its location.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayStats {
    /// Gateway id, 16 lowercase hex digits.
    #[serde(skip_serializing_if = "is_default")]
    pub gateway_id: String,
    /// Gateway time of the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Gateway position, when it has GPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Configuration version the gateway runs.
    #[serde(skip_serializing_if = "is_default")]
    pub config_version: String,
    /// Radio packets received.
    #[serde(skip_serializing_if = "is_default")]
    pub rx_packets_received: u32,
    /// Radio packets received with a valid PHY CRC.
    #[serde(skip_serializing_if = "is_default")]
    pub rx_packets_received_ok: u32,
    /// Downlinks received for transmission.
    #[serde(skip_serializing_if = "is_default")]
    pub tx_packets_received: u32,
    /// Downlinks transmitted.
    #[serde(skip_serializing_if = "is_default")]
    pub tx_packets_emitted: u32,
    /// Extra strings from the forwarder.
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: BTreeMap<String, String>,
    /// Transmitted packets per frequency in Hz (JSON keys are the numbers as text).
    #[serde(skip_serializing_if = "is_default")]
    pub tx_packets_per_frequency: BTreeMap<u32, u32>,
    /// Received packets per frequency in Hz.
    #[serde(skip_serializing_if = "is_default")]
    pub rx_packets_per_frequency: BTreeMap<u32, u32>,
    /// Transmitted packets per modulation.
    #[serde(skip_serializing_if = "is_default")]
    pub tx_packets_per_modulation: Vec<PerModulationCount>,
    /// Received packets per modulation.
    #[serde(skip_serializing_if = "is_default")]
    pub rx_packets_per_modulation: Vec<PerModulationCount>,
    /// Transmission outcomes per [`TxAckStatus`] name.
    #[serde(skip_serializing_if = "is_default")]
    pub tx_packets_per_status: BTreeMap<String, u32>,
}

/// One transmission opportunity of a [`DownlinkFrame`] (`gw.DownlinkFrameItem`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkFrameItem {
    /// The LoRaWAN PHYPayload.
    #[serde(skip_serializing_if = "is_default")]
    pub phy_payload: Bytes,
    /// How and when to send it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_info: Option<DownlinkTxInfo>,
}

/// A downlink for a gateway (`gw.DownlinkFrame`, `command/down`): opportunities in order of
/// preference (RX1, then RX2); the gateway sends at most one and answers with a
/// [`DownlinkTxAck`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkFrame {
    /// Frame id, echoed in the [`DownlinkTxAck`] and in the `txack` event.
    #[serde(skip_serializing_if = "is_default")]
    pub downlink_id: u32,
    /// The opportunities, most preferred first.
    #[serde(skip_serializing_if = "is_default")]
    pub items: Vec<DownlinkFrameItem>,
    /// Gateway id, 16 lowercase hex digits.
    #[serde(skip_serializing_if = "is_default")]
    pub gateway_id: String,
}

proto_enum! {
    /// Outcome of one downlink opportunity (`gw.TxAckStatus`).
    pub enum TxAckStatus {
        /// Not tried because an earlier item was sent; written as an empty item `{}`.
        #[default]
        Ignored = "IGNORED" (0),
        /// Scheduled for transmission.
        Ok = "OK" (1),
        /// Too late to schedule.
        TooLate = "TOO_LATE" (2),
        /// Too far in the future to schedule.
        TooEarly = "TOO_EARLY" (3),
        /// Another packet is scheduled at that time.
        CollisionPacket = "COLLISION_PACKET" (4),
        /// A beacon is scheduled at that time.
        CollisionBeacon = "COLLISION_BEACON" (5),
        /// The frequency is not supported.
        TxFreq = "TX_FREQ" (6),
        /// The power is not supported.
        TxPower = "TX_POWER" (7),
        /// GPS time was needed but GPS is unlocked.
        GpsUnlocked = "GPS_UNLOCKED" (8),
        /// The gateway's queue is full.
        QueueFull = "QUEUE_FULL" (9),
        /// Any other failure.
        InternalError = "INTERNAL_ERROR" (10),
        /// Sending would exceed the duty cycle.
        DutyCycleOverflow = "DUTY_CYCLE_OVERFLOW" (11),
    }
}

/// Outcome of one item of a [`DownlinkFrame`] (`gw.DownlinkTxAckItem`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkTxAckItem {
    /// The outcome.
    #[serde(skip_serializing_if = "is_default")]
    pub status: TxAckStatus,
}

/// A gateway's answer to a [`DownlinkFrame`] (`gw.DownlinkTxAck`, `event/ack`), one item per
/// item of the frame. Without it ChirpStack sends no `txack` and repeats the downlink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkTxAck {
    /// Gateway id, 16 lowercase hex digits.
    #[serde(skip_serializing_if = "is_default")]
    pub gateway_id: String,
    /// The frame's `downlinkId`.
    #[serde(skip_serializing_if = "is_default")]
    pub downlink_id: u32,
    /// Outcome per item of the frame, in the frame's order.
    #[serde(skip_serializing_if = "is_default")]
    pub items: Vec<DownlinkTxAckItem>,
}

proto_enum! {
    /// Whether a forwarder is connected (`gw.ConnState.State`).
    pub enum ConnectionState {
        /// Disconnected; being the zero value, it is left out of the JSON.
        #[default]
        Offline = "OFFLINE" (0),
        /// Connected.
        Online = "ONLINE" (1),
    }
}

/// A forwarder's connection state (`gw.ConnState`, `state/conn`), published retained and as
/// the MQTT last will.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnState {
    /// Gateway id, 16 lowercase hex digits.
    #[serde(skip_serializing_if = "is_default")]
    pub gateway_id: String,
    /// The state.
    #[serde(skip_serializing_if = "is_default")]
    pub state: ConnectionState,
}
