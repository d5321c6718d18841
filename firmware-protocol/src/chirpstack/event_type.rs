//! Telling integration events apart: [`EventType`], the last segment of the event topic, and
//! [`Event`], any event parsed according to it.

use core::fmt;
use core::str::FromStr;
use std::vec::Vec;

use serde::Serialize;

use super::device::DeviceInfo;
use super::event::{
    AckEvent, JoinEvent, LocationEvent, LogEvent, StatusEvent, TxAckEvent, UplinkEvent,
};
use super::proto3::from_json_object;
use super::time::Timestamp;

/// The kind of an integration event: the last segment of its MQTT topic.
///
/// ```
/// use firmware_protocol::chirpstack::EventType;
///
/// let topic = "application/3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23/device/a1b2c3d4e5f60001/event/up";
/// assert_eq!(EventType::from_topic(topic), Ok(EventType::Up));
/// assert_eq!(EventType::TxAck.to_string(), "txack");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `up`: [`UplinkEvent`].
    Up,
    /// `join`: [`JoinEvent`].
    Join,
    /// `ack`: [`AckEvent`].
    Ack,
    /// `txack`: [`TxAckEvent`].
    TxAck,
    /// `status`: [`StatusEvent`].
    Status,
    /// `log`: [`LogEvent`].
    Log,
    /// `location`: [`LocationEvent`].
    Location,
}

impl EventType {
    /// Every event type, in the order of the proto file.
    pub const ALL: [EventType; 7] = [
        Self::Up,
        Self::Join,
        Self::Ack,
        Self::TxAck,
        Self::Status,
        Self::Log,
        Self::Location,
    ];

    /// The topic segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Join => "join",
            Self::Ack => "ack",
            Self::TxAck => "txack",
            Self::Status => "status",
            Self::Log => "log",
            Self::Location => "location",
        }
    }

    /// The event type named by the last segment of an event topic (whatever the template
    /// before it).
    pub fn from_topic(topic: &str) -> Result<Self, UnknownEventType> {
        topic.rsplit('/').next().unwrap_or(topic).parse()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic segment that is not an event type of this version (for example `integration`,
/// removed in ChirpStack 4.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownEventType;

impl fmt::Display for UnknownEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown ChirpStack event type")
    }
}

impl core::error::Error for UnknownEventType {}

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(segment: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == segment)
            .ok_or(UnknownEventType)
    }
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
#[derive(Clone, Debug, PartialEq)]
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

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Up(event) => event.serialize(serializer),
            Self::Join(event) => event.serialize(serializer),
            Self::Ack(event) => event.serialize(serializer),
            Self::TxAck(event) => event.serialize(serializer),
            Self::Status(event) => event.serialize(serializer),
            Self::Log(event) => event.serialize(serializer),
            Self::Location(event) => event.serialize(serializer),
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
