//! The downlink command published to ChirpStack on
//! `application/{applicationId}/device/{devEui}/command/down`.

use core::num::NonZeroU8;
use std::string::String;
use std::vec::Vec;

use serde::ser::Error as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::bytes::Bytes;
use super::proto3::{from_json_object, uuid_or_empty};
use super::time::Timestamp;

/// Enqueues a downlink for a device (`integration.DownlinkCommand`).
///
/// ChirpStack reports nothing back over MQTT, not even errors: correlate through `id`, which
/// becomes the `queueItemId` of the later `txack` and `ack` events. A command repeated with
/// the same `id` is refused while the first is queued, so QoS 1 redelivery is harmless.
///
/// Written like ChirpStack's own serializer: `id`, `devEui`, `confirmed`, `fPort` and `data`
/// always (an absent `id` as `""`), `object` and `expiresAt` only when set. Writing refuses
/// fPort 0, which ChirpStack would drop without a word.
///
/// Reading is meant for tests that inspect what meterhub publishes, and is less lenient than
/// ChirpStack: snake_case names are accepted, every field is optional and unknown fields are
/// ignored, but a quoted number (`"fPort":"10"`) and an fPort above 255 (which ChirpStack
/// wraps modulo 256) are errors.
///
/// ```
/// use core::num::NonZeroU8;
/// use firmware_protocol::chirpstack::DownlinkCommand;
///
/// let f_port = NonZeroU8::new(10).unwrap();
/// let command = DownlinkCommand::new("A1B2C3D4E5F60001", f_port, vec![0x02, 0x01, 0x00, 0x3c]);
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
    /// FPort, 1–255: ChirpStack drops a command with fPort 0, so writing one fails. (It
    /// would wrap larger numbers modulo 256, which a `u8` rules out.)
    #[serde(alias = "f_port", serialize_with = "serialize_f_port")]
    pub f_port: u8,
    /// Plaintext FRMPayload; ChirpStack encrypts it.
    pub data: Bytes,
    /// Input for the device profile's codec; if set, the codec's output replaces `data`
    /// (with no codec configured the payload becomes empty). Written as given: ChirpStack
    /// reads integers and doubles alike here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Map<String, Value>>,
    /// Drop the item (with a log event `EXPIRED`) if it is not sent by then.
    #[serde(skip_serializing_if = "Option::is_none", alias = "expires_at")]
    pub expires_at: Option<Timestamp>,
}

impl DownlinkCommand {
    /// An unconfirmed downlink of `data` on `f_port`, without id or expiry.
    ///
    /// The DevEUI is lowercased, as ChirpStack compares it with the topic's lowercase
    /// `dev_eui` character for character.
    pub fn new(dev_eui: impl AsRef<str>, f_port: NonZeroU8, data: impl Into<Bytes>) -> Self {
        Self {
            dev_eui: dev_eui.as_ref().to_ascii_lowercase(),
            f_port: f_port.get(),
            data: data.into(),
            ..Self::default()
        }
    }

    /// Parses a command body.
    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        from_json_object(payload)
    }

    /// The compact JSON body to publish; an error for fPort 0.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Writes `fPort`, refusing 0: ChirpStack would drop the command and report it only in its
/// own log.
fn serialize_f_port<S: Serializer>(f_port: &u8, serializer: S) -> Result<S::Ok, S::Error> {
    match NonZeroU8::new(*f_port) {
        Some(f_port) => serializer.serialize_u8(f_port.get()),
        None => Err(S::Error::custom(
            "fPort 0 carries no application payload; ChirpStack drops such a command",
        )),
    }
}
