//! Messages and enums of ChirpStack's `common` proto package used by events and gateways.
//!
//! The package is not written with emitted defaults: zero fields are left out.

use std::string::String;

use serde::{Deserialize, Serialize};

use super::bytes::Bytes;
use super::proto3::{is_default, proto_enum};

proto_enum! {
    /// The LoRaWAN device class (`common.DeviceClass`).
    pub enum DeviceClass {
        /// Class A: receives only in the two windows after its own uplink.
        #[default]
        ClassA = "CLASS_A" (0),
        /// Class B: also receives in beacon-synchronised ping slots.
        ClassB = "CLASS_B" (1),
        /// Class C: receives whenever it is not transmitting.
        ClassC = "CLASS_C" (2),
    }
}

proto_enum! {
    /// Where a [`Location`] comes from (`common.LocationSource`).
    pub enum LocationSource {
        /// Not known; also what a gateway location configured in ChirpStack carries.
        #[default]
        Unknown = "UNKNOWN" (0),
        /// A GPS receiver.
        Gps = "GPS" (1),
        /// Configured by hand.
        Config = "CONFIG" (2),
        /// Resolved by time difference of arrival.
        GeoResolverTdoa = "GEO_RESOLVER_TDOA" (3),
        /// Resolved from received signal strengths.
        GeoResolverRssi = "GEO_RESOLVER_RSSI" (4),
        /// Resolved from GNSS scan data.
        GeoResolverGnss = "GEO_RESOLVER_GNSS" (5),
        /// Resolved from Wi-Fi access points.
        GeoResolverWifi = "GEO_RESOLVER_WIFI" (6),
    }
}

/// A geographic position (`common.Location`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Location {
    /// Latitude in degrees, north positive.
    #[serde(skip_serializing_if = "is_default")]
    pub latitude: f64,
    /// Longitude in degrees, east positive.
    #[serde(skip_serializing_if = "is_default")]
    pub longitude: f64,
    /// Altitude in metres.
    #[serde(skip_serializing_if = "is_default")]
    pub altitude: f64,
    /// Where the position comes from.
    #[serde(skip_serializing_if = "is_default")]
    pub source: LocationSource,
    /// Accuracy in metres; 0 when unknown.
    #[serde(skip_serializing_if = "is_default")]
    pub accuracy: f32,
}

/// An AES key, possibly wrapped with a key-encryption key (`common.KeyEnvelope`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyEnvelope {
    /// Label of the key-encryption key; empty when `aes_key` is the plain key.
    #[serde(skip_serializing_if = "is_default")]
    pub kek_label: String,
    /// The key, wrapped when `kek_label` is set.
    #[serde(skip_serializing_if = "is_default")]
    pub aes_key: Bytes,
}

/// What an external join server left to the application (`common.JoinServerContext`): when
/// present, ChirpStack does not hold the AppSKey and the event's payload is still encrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JoinServerContext {
    /// Session-key id to ask the join server for the AppSKey with.
    #[serde(skip_serializing_if = "is_default")]
    pub session_key_id: String,
    /// The AppSKey, when the join server handed it out wrapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_s_key: Option<KeyEnvelope>,
}
