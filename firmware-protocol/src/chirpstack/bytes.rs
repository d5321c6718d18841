//! `bytes` fields: base64 text in JSON.

use core::fmt;
use core::ops::Deref;
use core::str::FromStr;
use std::vec::Vec;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json::deserialize_from_str;

/// Decoding config: padding optional, as proto3 JSON parsers accept it.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
/// Standard alphabet (`+/`), padding optional.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// URL-safe alphabet (`-_`), padding optional.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// A proto `bytes` value: written as standard base64 with padding (`"AQAS1ocI/QA="`), read
/// from standard or URL-safe base64 with or without padding, as proto3 JSON requires.
///
/// ```
/// use firmware_protocol::chirpstack::Bytes;
///
/// let b: Bytes = serde_json::from_str("\"-_8\"")?; // URL-safe, unpadded
/// assert_eq!(b.as_slice(), &[0xfb, 0xff]);
/// assert_eq!(serde_json::to_string(&b)?, "\"+/8=\"");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, taking them out of the wrapper.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// Decodes base64 text with either alphabet, padded or not.
    pub fn from_base64(text: &str) -> Result<Self, base64::DecodeError> {
        // The two alphabets differ only in `+/` versus `-_`, so a text holding either of the
        // URL-safe characters can only be URL-safe; everything else is tried as standard.
        let engine = if text.contains(['-', '_']) {
            &URL_SAFE_LENIENT
        } else {
            &STANDARD_LENIENT
        };
        engine.decode(text).map(Self)
    }

    /// The standard base64 text with padding, as written in JSON.
    pub fn to_base64(&self) -> std::string::String {
        STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex reads better than a list of decimals when comparing with a frame capture.
        f.write_str("Bytes(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl<const N: usize> From<[u8; N]> for Bytes {
    fn from(bytes: [u8; N]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(bytes: Bytes) -> Self {
        bytes.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl FromStr for Bytes {
    type Err = base64::DecodeError;

    /// Same as [`Bytes::from_base64`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_base64(text)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer, "base64 text")
    }
}
