//! The integration events ChirpStack publishes on
//! `application/{applicationId}/device/{devEui}/event/{eventType}`, and [`Event`], any of
//! them parsed according to the topic's [`EventType`].
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
use super::event_type::EventType;
use super::proto3::{from_json_object, proto_enum, serialize_struct, uuid_or_empty};
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
    /// Every number in it is written as a float (`7.0`), as ChirpStack writes it; any number
    /// is read.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_struct"
    )]
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
    /// The queue item, i.e. the `id` of the [`DownlinkCommand`](super::DownlinkCommand);
    /// `None` is written `""`.
    #[serde(with = "uuid_or_empty")]
    pub queue_item_id: Option<Uuid>,
    /// Whether the device acknowledged it.
    pub acknowledged: bool,
    /// The downlink frame counter it was sent with.
    pub f_cnt_down: u32,
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
    /// The queue item, i.e. the `id` of the [`DownlinkCommand`](super::DownlinkCommand);
    /// `None` is written `""`.
    #[serde(with = "uuid_or_empty")]
    pub queue_item_id: Option<Uuid>,
    /// The downlink frame counter used.
    pub f_cnt_down: u32,
    /// Gateway that accepted it, 16 lowercase hex digits.
    pub gateway_id: String,
    /// How it is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_info: Option<DownlinkTxInfo>,
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

/// Any integration event, as parsed from one MQTT message.
///
/// The JSON carries no type tag: the type comes from the topic, so parsing takes it as an
/// argument, and serialising writes just the inner event.
///
/// ```
/// use firmware_protocol::chirpstack::{Event, EventType};
///
/// let payload = br#"{"deduplicationId":"3e9b7d1f-5a2c-4f8e-b6d0-7c1a9e3f5b24","fPort":1,"data":"AQI="}"#;
/// let Event::Up(up) = Event::from_json(EventType::Up, payload)? else { unreachable!() };
/// assert_eq!(up.data.as_slice(), &[1, 2]);
/// assert!(up.time.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// `up`.
    Up(UplinkEvent),
    /// `join`.
    Join(JoinEvent),
    /// `ack`.
    Ack(AckEvent),
    /// `txack`.
    TxAck(TxAckEvent),
    /// `status`.
    Status(StatusEvent),
    /// `log`.
    Log(LogEvent),
    /// `location`.
    Location(LocationEvent),
}

impl Event {
    /// Parses the JSON payload of an event of the given type.
    ///
    /// Missing fields take their zero values and unknown fields are ignored; malformed JSON,
    /// a payload that is not a JSON object, a wrong JSON type or an unreadable timestamp,
    /// duration or base64 value is an error.
    pub fn from_json(event_type: EventType, payload: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(match event_type {
            EventType::Up => Self::Up(from_json_object(payload)?),
            EventType::Join => Self::Join(from_json_object(payload)?),
            EventType::Ack => Self::Ack(from_json_object(payload)?),
            EventType::TxAck => Self::TxAck(from_json_object(payload)?),
            EventType::Status => Self::Status(from_json_object(payload)?),
            EventType::Log => Self::Log(from_json_object(payload)?),
            EventType::Location => Self::Location(from_json_object(payload)?),
        })
    }

    /// The compact JSON ChirpStack would publish for this event.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The type of this event (its topic segment).
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Up(_) => EventType::Up,
            Self::Join(_) => EventType::Join,
            Self::Ack(_) => EventType::Ack,
            Self::TxAck(_) => EventType::TxAck,
            Self::Status(_) => EventType::Status,
            Self::Log(_) => EventType::Log,
            Self::Location(_) => EventType::Location,
        }
    }

    /// The device the event is about, if the payload named it (ChirpStack always does).
    pub fn device_info(&self) -> Option<&DeviceInfo> {
        match self {
            Self::Up(event) => event.device_info.as_ref(),
            Self::Join(event) => event.device_info.as_ref(),
            Self::Ack(event) => event.device_info.as_ref(),
            Self::TxAck(event) => event.device_info.as_ref(),
            Self::Status(event) => event.device_info.as_ref(),
            Self::Log(event) => event.device_info.as_ref(),
            Self::Location(event) => event.device_info.as_ref(),
        }
    }

    /// The event's time, if the payload had one.
    pub fn time(&self) -> Option<Timestamp> {
        match self {
            Self::Up(event) => event.time,
            Self::Join(event) => event.time,
            Self::Ack(event) => event.time,
            Self::TxAck(event) => event.time,
            Self::Status(event) => event.time,
            Self::Log(event) => event.time,
            Self::Location(event) => event.time,
        }
    }
}

macro_rules! event_from {
    ($($variant:ident($event:ty)),+ $(,)?) => {
        $(
            impl From<$event> for Event {
                fn from(event: $event) -> Self {
                    Self::$variant(event)
                }
            }
        )+
    };
}

event_from!(
    Up(UplinkEvent),
    Join(JoinEvent),
    Ack(AckEvent),
    TxAck(TxAckEvent),
    Status(StatusEvent),
    Log(LogEvent),
    Location(LocationEvent),
);
