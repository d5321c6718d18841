//! ChirpStack v4 MQTT JSON messages: the integration events ChirpStack publishes, the
//! downlink command it accepts, the gateway messages between forwarders and ChirpStack
//! ([`gateway`]) and the Semtech UDP bodies a packet forwarder sends ([`udp`]).
//!
//! The types write exactly what ChirpStack 4.20 writes (`serde_json` over its pbjson
//! serializers) and read what any nearby version may write:
//!
//! - names are lowerCamelCase; field order is the order of the proto definitions;
//! - in integration messages (events, [`DeviceInfo`], [`DownlinkCommand`]) every scalar,
//!   string, bytes, enum, list and map field is always written; message-typed fields (`time`,
//!   `deviceInfo`, `object`, `txInfo`...) are left out when `None`, never `null`;
//! - in the nested `gw`/`common` messages ([`UplinkRxInfo`], [`Location`]...) zero values are
//!   left out, as proto3 does;
//! - on input every field is optional and unknown fields are ignored;
//! - timestamps are [`Timestamp`] (RFC 3339, `+00:00`), durations [`Duration`] (`"1.500s"`),
//!   bytes [`Bytes`] (base64);
//! - enums are written as their proto names and read from names or numbers; a name this
//!   version does not know is kept in an `Other` variant rather than failing the message,
//!   because ChirpStack adds enum values in minor releases;
//! - `object` (the codec output, a `google.protobuf.Struct`) is a JSON object whose numbers
//!   are all floats (`1.0`).
//!
//! The event type is not in the JSON but in the topic
//! (`application/{applicationId}/device/{devEui}/event/{eventType}`), so parsing takes it as
//! an argument:
//!
//! ```
//! use firmware_protocol::chirpstack::{Event, EventType, LogCode};
//!
//! let topic = "application/3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23/device/a1b2c3d4e5f60001/event/log";
//! let payload = br#"{"time":"2026-07-23T12:15:30.347551093+00:00","level":"ERROR","code":"UPLINK_CODEC","description":"x","context":{}}"#;
//!
//! let event = Event::from_json(EventType::from_topic(topic)?, payload)?;
//! let Event::Log(log) = &event else { unreachable!() };
//! assert_eq!(log.code, LogCode::UplinkCodec);
//! // Written back as ChirpStack writes it: every integration field present, in proto order.
//! assert_eq!(
//!     String::from_utf8(event.to_json()?)?,
//!     r#"{"time":"2026-07-23T12:15:30.347551093+00:00","level":"ERROR","code":"UPLINK_CODEC","description":"x","context":{}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod proto3;

mod bytes;
mod command;
mod common;
mod device;
mod event;
mod event_type;
pub mod gateway;
mod radio;
mod time;
pub mod udp;

pub use self::bytes::Bytes;
pub use self::command::DownlinkCommand;
pub use self::common::{DeviceClass, JoinServerContext, KeyEnvelope, Location, LocationSource};
pub use self::device::DeviceInfo;
pub use self::event::{
    AckEvent, Event, JoinEvent, LocationEvent, LogCode, LogEvent, LogLevel, StatusEvent,
    TxAckEvent, UplinkEvent, UplinkRelayRxInfo,
};
pub use self::event_type::{EventType, UnknownEventType};
pub use self::radio::{
    CodeRate, CrcStatus, DelayTimingInfo, DownlinkTxInfo, FskModulationInfo, GpsEpochTimingInfo,
    ImmediatelyTimingInfo, LoraModulationInfo, LrFhssModulationInfo, Modulation, Timing,
    UplinkRxInfo, UplinkTxInfo,
};
pub use self::time::{Duration, ParseDurationError, Timestamp};
