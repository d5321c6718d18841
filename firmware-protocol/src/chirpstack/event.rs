//! The integration events ChirpStack publishes on
//! `application/{applicationId}/device/{devEui}/event/{eventType}`.
//!
//! Scalar, string, bytes, enum, list and map fields are always written, zero or not, as
//! ChirpStack writes the `integration` package; message fields (`time`, `deviceInfo`,
//! `object`, `txInfo`...) are left out when absent, never written as `null`. On input every
//! field may be missing and unknown fields are ignored.

use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::bytes::Bytes;
use super::common::{JoinServerContext, Location};
use super::device::DeviceInfo;
use super::proto3::proto_enum;
use super::radio::{DownlinkTxInfo, UplinkRxInfo, UplinkTxInfo};
use super::time::Timestamp;

/// Reception through a TS011 relay (`integration.UplinkRelayRxInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UplinkRelayRxInfo {
    /// The relay's DevEUI, 16 lowercase hex digits.
    pub dev_eui: String,
    /// Frequency in Hz at which the relay heard the device.
    pub frequency: u32,
    /// Data rate at which the relay heard the device.
    pub dr: u32,
    /// SNR in dB at the relay.
    pub snr: i32,
    /// RSSI in dBm at the relay.
    pub rssi: i32,
    /// Wake-on-radio channel.
    pub wor_channel: u32,
}

/// An uplink, deduplicated over all gateways that heard it (`integration.UplinkEvent`,
/// event type `up`). Also sent for frames without FPort (MAC commands only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UplinkEvent {
    /// Id of this uplink (UUID), shared by the `status`, `ack` and `log` events it causes.
    pub deduplication_id: String,
    /// Uplink time: GPS time if a gateway has it, else a plausible gateway clock, else
    /// ChirpStack's reception time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// Device address, 8 lowercase hex digits.
    pub dev_addr: String,
    /// The ADR bit of FCtrl.
    pub adr: bool,
    /// Regional data-rate index (EU868 SF7/125 kHz = 5).
    pub dr: u32,
    /// Full 32-bit uplink frame counter.
    pub f_cnt: u32,
    /// FPort; 0 when the frame has none.
    pub f_port: u32,
    /// Sent as ConfirmedDataUp.
    pub confirmed: bool,
    /// Decrypted FRMPayload (still encrypted when `join_server_context` is set); empty when
    /// there is none.
    pub data: Bytes,
    /// The device-profile codec's output; absent without a codec or when decoding failed.
    /// Every number in it is a float (`7.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Map<String, Value>>,
    /// One entry per receiving gateway, in no particular order.
    pub rx_info: Vec<UplinkRxInfo>,
    /// How the device sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_info: Option<UplinkTxInfo>,
    /// Set when the uplink came through a relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_rx_info: Option<UplinkRelayRxInfo>,
    /// Set when an external join server keeps the AppSKey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_server_context: Option<JoinServerContext>,
    /// Region configuration that received it (`"eu868"`).
    pub region_config_id: String,
}

/// An accepted join-request whose join-accept went to a gateway (`integration.JoinEvent`,
/// event type `join`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JoinEvent {
    /// Id of the join-request (UUID).
    pub deduplication_id: String,
    /// Time of the join-request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// The new device address, 8 lowercase hex digits.
    pub dev_addr: String,
    /// Set when the join-request came through a relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_rx_info: Option<UplinkRelayRxInfo>,
    /// Set when an external join server keeps the AppSKey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_server_context: Option<JoinServerContext>,
    /// Region configuration that received it.
    pub region_config_id: String,
}

/// The device's answer to a confirmed downlink, or its absence (`integration.AckEvent`,
/// event type `ack`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AckEvent {
    /// The uplink that carried (or lacked) the ACK; empty for a class B/C timeout.
    pub deduplication_id: String,
    /// Time of that uplink, or ChirpStack's clock for a timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// The queue item, i.e. the `id` of the [`DownlinkCommand`](super::DownlinkCommand).
    pub queue_item_id: String,
    /// Whether the device acknowledged it.
    pub acknowledged: bool,
    /// The downlink frame counter it was sent with.
    pub f_cnt_down: u32,
}

impl AckEvent {
    /// `queue_item_id` as a UUID, if it is one.
    pub fn queue_item_uuid(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.queue_item_id).ok()
    }
}

/// A gateway accepted a downlink for transmission (`integration.TxAckEvent`, event type
/// `txack`); it does not mean the device received it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TxAckEvent {
    /// Gateway-level frame id (the `downlinkId` of the gateway messages).
    pub downlink_id: u32,
    /// ChirpStack's clock when the gateway answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device (its tags without the application's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// The queue item, i.e. the `id` of the [`DownlinkCommand`](super::DownlinkCommand).
    pub queue_item_id: String,
    /// The downlink frame counter used.
    pub f_cnt_down: u32,
    /// Gateway that accepted it, 16 lowercase hex digits.
    pub gateway_id: String,
    /// How it is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_info: Option<DownlinkTxInfo>,
}

impl TxAckEvent {
    /// `queue_item_id` as a UUID, if it is one.
    pub fn queue_item_uuid(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.queue_item_id).ok()
    }
}

/// The device's answer to a DevStatusReq (`integration.StatusEvent`, event type `status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatusEvent {
    /// The uplink that carried the answer.
    pub deduplication_id: String,
    /// Time of that uplink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// Demodulation margin in dB of the DevStatusReq at the device.
    pub margin: i32,
    /// The device runs on external power (battery byte 0).
    pub external_power_source: bool,
    /// The device cannot measure its battery (battery byte 255).
    pub battery_level_unavailable: bool,
    /// Battery level in percent (byte / 254 × 100); 0 in the two cases above.
    pub battery_level: f32,
}

proto_enum! {
    /// Severity of a [`LogEvent`] (`integration.LogLevel`).
    pub enum LogLevel {
        /// Information.
        #[default]
        Info = "INFO" (0),
        /// Something went wrong but was handled.
        Warning = "WARNING" (1),
        /// Something failed.
        Error = "ERROR" (2),
    }
}

proto_enum! {
    /// What a [`LogEvent`] is about (`integration.LogCode`).
    pub enum LogCode {
        /// Not specified; never emitted.
        #[default]
        Unknown = "UNKNOWN" (0),
        /// A queue item was too big for the data rate and was dropped.
        DownlinkPayloadSize = "DOWNLINK_PAYLOAD_SIZE" (1),
        /// The uplink codec failed; the `up` event went out without `object`.
        UplinkCodec = "UPLINK_CODEC" (2),
        /// The downlink codec failed; never emitted by ChirpStack 4.20.
        DownlinkCodec = "DOWNLINK_CODEC" (3),
        /// A join-request reused a DevNonce.
        Otaa = "OTAA" (4),
        /// The frame counter went back (reset or rollover); no `up` event.
        UplinkFCntReset = "UPLINK_F_CNT_RESET" (5),
        /// A join-request had an invalid MIC.
        UplinkMic = "UPLINK_MIC" (6),
        /// The frame counter repeated the previous one; no `up` event.
        UplinkFCntRetransmission = "UPLINK_F_CNT_RETRANSMISSION" (7),
        /// The gateway refused a downlink; the description names the reason.
        DownlinkGateway = "DOWNLINK_GATEWAY" (8),
        /// A relay reported a new end-device.
        RelayNewEndDevice = "RELAY_NEW_END_DEVICE" (9),
        /// An application-encrypted queue item had a stale frame counter and was dropped.
        FCntDown = "F_CNT_DOWN" (10),
        /// A queue item passed its `expiresAt` and was dropped.
        Expired = "EXPIRED" (11),
    }
}

/// Something ChirpStack wants the application to know about a device
/// (`integration.LogEvent`, event type `log`). Carries no `deduplicationId` of its own; the
/// `context` often has one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogEvent {
    /// When it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// Severity.
    pub level: LogLevel,
    /// What it is about.
    pub code: LogCode,
    /// Free text (for `UPLINK_CODEC`, the codec's error message).
    pub description: String,
    /// Details, e.g. `deduplication_id`, `queue_item_id` (snake_case keys).
    pub context: BTreeMap<String, String>,
}

/// A resolved device position (`integration.LocationEvent`, event type `location`);
/// ChirpStack 4.20 has no producer of it any more.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocationEvent {
    /// The uplink the position was resolved from.
    pub deduplication_id: String,
    /// Time of that uplink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// The position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}
