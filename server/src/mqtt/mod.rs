//! The MQTT side: connection options, topics, and the task that owns the event loop.

pub mod connection;
pub mod topic;

pub use connection::{Inbound, MqttLink, connect};
pub use topic::{Template, TopicParts};
