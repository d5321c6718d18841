//! [`EventType`]: the kind of an integration event, named by the last segment of its topic.

use core::fmt;
use core::str::FromStr;

#[cfg(doc)]
use super::event::{
    AckEvent, JoinEvent, LocationEvent, LogEvent, StatusEvent, TxAckEvent, UplinkEvent,
};

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
        topic
            .rsplit_once('/')
            .map_or(topic, |(_, segment)| segment)
            .parse()
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
