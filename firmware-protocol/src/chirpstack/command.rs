//! The downlink command published to ChirpStack on
//! `application/{applicationId}/device/{devEui}/command/down`.

use core::fmt;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::bytes::Bytes;
use super::proto3::from_json_object;
use super::time::Timestamp;

/// Enqueues a downlink for a device (`integration.DownlinkCommand`).
///
/// ChirpStack reports nothing back over MQTT, not even errors: correlate through `id`, which
/// becomes the `queueItemId` of the later `txack` and `ack` events. A command repeated with
/// the same `id` is refused while the first is queued, so QoS 1 redelivery is harmless.
///
/// Written like ChirpStack's own serializer: `id`, `devEui`, `confirmed`, `fPort` and `data`
/// always (an absent `id` as `""`), `object` and `expiresAt` only when set. Read with
/// ChirpStack's leniency: snake_case names too, every field optional, unknown fields ignored.
///
/// ```
/// use firmware_protocol::chirpstack::DownlinkCommand;
///
/// let command = DownlinkCommand::new("a1b2c3d4e5f60001", 10, vec![0x02, 0x01, 0x00, 0x3c]);
/// assert_eq!(
///     String::from_utf8(command.to_json()?).unwrap(),
///     r#"{"id":"","devEui":"a1b2c3d4e5f60001","confirmed":false,"fPort":10,"data":"AgEAPA=="}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkCommand {
    /// Queue item id; `None` (written `""`) lets ChirpStack pick a random one. Set it to
    /// correlate the `txack` and `ack` events.
    #[serde(with = "uuid_or_empty")]
    pub id: Option<Uuid>,
    /// DevEUI, 16 lowercase hex digits; must equal the topic's `dev_eui` character for
    /// character, or ChirpStack drops the command.
    #[serde(alias = "dev_eui")]
    pub dev_eui: String,
    /// Send as ConfirmedDataDown; the outcome arrives as an `ack` event.
    pub confirmed: bool,
    /// FPort, 1–255. ChirpStack refuses 0 and would wrap larger numbers modulo 256, which a
    /// `u8` rules out.
    #[serde(alias = "f_port")]
    pub f_port: u8,
    /// Plaintext FRMPayload; ChirpStack encrypts it.
    pub data: Bytes,
    /// Input for the device profile's codec; if set, the codec's output replaces `data`
    /// (with no codec configured the payload becomes empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Map<String, Value>>,
    /// Drop the item (with a log event `EXPIRED`) if it is not sent by then.
    #[serde(skip_serializing_if = "Option::is_none", alias = "expires_at")]
    pub expires_at: Option<Timestamp>,
}

impl DownlinkCommand {
    /// An unconfirmed downlink of `data` on `f_port`, without id or expiry.
    pub fn new(dev_eui: impl Into<String>, f_port: u8, data: impl Into<Bytes>) -> Self {
        Self {
            dev_eui: dev_eui.into(),
            f_port,
            data: data.into(),
            ..Self::default()
        }
    }

    /// Parses a command body.
    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        from_json_object(payload)
    }

    /// The compact JSON body to publish.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// `Option<Uuid>` as ChirpStack's `id` string: `""` for none, lowercase hyphenated otherwise.
mod uuid_or_empty {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        id: &Option<Uuid>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(&id.hyphenated()),
            None => serializer.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Uuid>, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Option<Uuid>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID or an empty string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Option<Uuid>, E> {
                if text.is_empty() {
                    return Ok(None);
                }
                Uuid::parse_str(text)
                    .map(Some)
                    .map_err(|error| E::custom(format_args!("invalid id {text:?}: {error}")))
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}
