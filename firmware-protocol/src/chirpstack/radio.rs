//! Radio metadata of ChirpStack's `gw` proto package, shared by integration events (`up`
//! carries [`UplinkRxInfo`] and [`UplinkTxInfo`], `txack` a [`DownlinkTxInfo`]) and by the
//! gateway messages of [`super::gateway`].
//!
//! The package is not written with emitted defaults: zero fields are left out, so every field
//! here reads as its zero value when absent.

use std::collections::BTreeMap;
use std::string::String;

use serde::{Deserialize, Serialize};

use super::bytes::Bytes;
use super::common::Location;
use super::proto3::{OneOf, is_default, optional_oneof, proto_enum};
use super::time::{Duration, Timestamp};

proto_enum! {
    /// Forward error correction code rate (`gw.CodeRate`).
    pub enum CodeRate {
        /// Not set.
        #[default]
        CrUndefined = "CR_UNDEFINED" (0),
        /// LoRa 4/5.
        Cr4_5 = "CR_4_5" (1),
        /// LoRa 4/6.
        Cr4_6 = "CR_4_6" (2),
        /// LoRa 4/7.
        Cr4_7 = "CR_4_7" (3),
        /// LoRa 4/8.
        Cr4_8 = "CR_4_8" (4),
        /// LR-FHSS 3/8.
        Cr3_8 = "CR_3_8" (5),
        /// LR-FHSS 2/6.
        Cr2_6 = "CR_2_6" (6),
        /// LR-FHSS 1/4.
        Cr1_4 = "CR_1_4" (7),
        /// LR-FHSS 1/6.
        Cr1_6 = "CR_1_6" (8),
        /// LR-FHSS 5/6.
        Cr5_6 = "CR_5_6" (9),
        /// LoRa 2.4 GHz 4/5 with long interleaving.
        CrLi4_5 = "CR_LI_4_5" (10),
        /// LoRa 2.4 GHz 4/6 with long interleaving.
        CrLi4_6 = "CR_LI_4_6" (11),
        /// LoRa 2.4 GHz 4/8 with long interleaving.
        CrLi4_8 = "CR_LI_4_8" (12),
    }
}

proto_enum! {
    /// The PHY CRC check of a received frame (`gw.CRCStatus`).
    pub enum CrcStatus {
        /// The frame had no CRC.
        #[default]
        NoCrc = "NO_CRC" (0),
        /// The CRC did not match.
        BadCrc = "BAD_CRC" (1),
        /// The CRC matched.
        CrcOk = "CRC_OK" (2),
    }
}

/// LoRa modulation parameters (`gw.LoraModulationInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LoraModulationInfo {
    /// Bandwidth in Hz (125000 for EU868 SF7–12).
    #[serde(skip_serializing_if = "is_default")]
    pub bandwidth: u32,
    /// Spreading factor, 5–12.
    #[serde(skip_serializing_if = "is_default")]
    pub spreading_factor: u32,
    /// Code rate as text (`"4/5"`); superseded by `code_rate`, still read from old gateways.
    #[serde(skip_serializing_if = "is_default")]
    pub code_rate_legacy: String,
    /// Code rate.
    #[serde(skip_serializing_if = "is_default")]
    pub code_rate: CodeRate,
    /// Inverted I/Q polarisation: set on downlinks so other devices do not hear them.
    #[serde(skip_serializing_if = "is_default")]
    pub polarization_inversion: bool,
    /// Preamble length in symbols (transmit only; 0 = the radio's default).
    #[serde(skip_serializing_if = "is_default")]
    pub preamble: u32,
    /// Send without a PHY CRC (transmit only).
    #[serde(skip_serializing_if = "is_default")]
    pub no_crc: bool,
}

/// FSK modulation parameters (`gw.FskModulationInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FskModulationInfo {
    /// Frequency deviation in Hz.
    #[serde(skip_serializing_if = "is_default")]
    pub frequency_deviation: u32,
    /// Bit rate in bit/s.
    #[serde(skip_serializing_if = "is_default")]
    pub datarate: u32,
}

/// LR-FHSS modulation parameters (`gw.LrFhssModulationInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LrFhssModulationInfo {
    /// Operating channel width in Hz.
    #[serde(skip_serializing_if = "is_default")]
    pub operating_channel_width: u32,
    /// Code rate as text; superseded by `code_rate`.
    #[serde(skip_serializing_if = "is_default")]
    pub code_rate_legacy: String,
    /// Code rate.
    #[serde(skip_serializing_if = "is_default")]
    pub code_rate: CodeRate,
    /// Number of steps of the hopping grid.
    #[serde(skip_serializing_if = "is_default")]
    pub grid_steps: u32,
}

/// The modulation of a frame (`gw.Modulation`, a `oneof`): written as `{"lora":{...}}`,
/// `{"fsk":{...}}` or `{"lrFhss":{...}}`.
///
/// Read tolerantly: in an object naming several modulations the first of LoRa, FSK, LR-FHSS
/// wins, and where a message holds an optional modulation, `{}` or only unknown names read as
/// no modulation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "ModulationRepr")]
pub enum Modulation {
    /// LoRa.
    Lora(LoraModulationInfo),
    /// FSK.
    Fsk(FskModulationInfo),
    /// LR-FHSS.
    LrFhss(LrFhssModulationInfo),
}

impl Modulation {
    /// The LoRa parameters, if this is LoRa.
    pub fn as_lora(&self) -> Option<&LoraModulationInfo> {
        match self {
            Self::Lora(lora) => Some(lora),
            _ => None,
        }
    }
}

/// The JSON shape of [`Modulation`].
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ModulationRepr {
    lora: Option<LoraModulationInfo>,
    fsk: Option<FskModulationInfo>,
    lr_fhss: Option<LrFhssModulationInfo>,
}

impl OneOf for Modulation {
    type Repr = ModulationRepr;

    fn from_repr(repr: ModulationRepr) -> Option<Self> {
        repr.lora
            .map(Self::Lora)
            .or_else(|| repr.fsk.map(Self::Fsk))
            .or_else(|| repr.lr_fhss.map(Self::LrFhss))
    }
}

impl TryFrom<ModulationRepr> for Modulation {
    type Error = &'static str;

    fn try_from(repr: ModulationRepr) -> Result<Self, Self::Error> {
        Self::from_repr(repr).ok_or("no known modulation (lora, fsk, lrFhss)")
    }
}

/// How an uplink was sent (`gw.UplinkTxInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UplinkTxInfo {
    /// Frequency in Hz.
    #[serde(skip_serializing_if = "is_default")]
    pub frequency: u32,
    /// Modulation and its parameters.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_oneof"
    )]
    pub modulation: Option<Modulation>,
}

/// How one gateway received an uplink (`gw.UplinkRxInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UplinkRxInfo {
    /// Gateway id, 16 lowercase hex digits.
    #[serde(skip_serializing_if = "is_default")]
    pub gateway_id: String,
    /// Random id the forwarder gave this reception, for correlating logs.
    #[serde(skip_serializing_if = "is_default")]
    pub uplink_id: u32,
    /// Reception time by the gateway's clock, when it has one (GPS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw_time: Option<Timestamp>,
    /// Reception time by ChirpStack's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_time: Option<Timestamp>,
    /// Reception time as time since the GPS epoch, when the gateway has GPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_since_gps_epoch: Option<Duration>,
    /// Fine timestamp (for TDOA geolocation), when the gateway has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fine_time_since_gps_epoch: Option<Duration>,
    /// RSSI in dBm.
    #[serde(skip_serializing_if = "is_default")]
    pub rssi: i32,
    /// SNR in dB (LoRa only).
    #[serde(skip_serializing_if = "is_default")]
    pub snr: f32,
    /// Concentrator IF channel.
    #[serde(skip_serializing_if = "is_default")]
    pub channel: u32,
    /// Concentrator RF chain.
    #[serde(skip_serializing_if = "is_default")]
    pub rf_chain: u32,
    /// Concentrator board.
    #[serde(skip_serializing_if = "is_default")]
    pub board: u32,
    /// Antenna.
    #[serde(skip_serializing_if = "is_default")]
    pub antenna: u32,
    /// Gateway position: sent by the gateway, or filled in from its record in ChirpStack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Opaque gateway context, to be handed back for a class A downlink (Semtech UDP: the
    /// concentrator `tmst`, 4 bytes big-endian).
    #[serde(skip_serializing_if = "is_default")]
    pub context: Bytes,
    /// Extra strings from the forwarder.
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: BTreeMap<String, String>,
    /// PHY CRC check.
    #[serde(skip_serializing_if = "is_default")]
    pub crc_status: CrcStatus,
}

/// When a gateway must transmit (`gw.Timing`, a `oneof`): written as `{"immediately":{}}`,
/// `{"delay":{"delay":"1s"}}` or `{"gpsEpoch":{"timeSinceGpsEpoch":"..."}}`.
///
/// Read tolerantly like [`Modulation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "TimingRepr")]
pub enum Timing {
    /// As soon as possible (class C).
    Immediately(ImmediatelyTimingInfo),
    /// A delay after the uplink identified by the context (class A).
    Delay(DelayTimingInfo),
    /// At a GPS time (class B).
    GpsEpoch(GpsEpochTimingInfo),
}

/// Parameters of [`Timing::Immediately`] (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmediatelyTimingInfo {}

/// Parameters of [`Timing::Delay`] (`gw.DelayTimingInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DelayTimingInfo {
    /// Delay after the uplink's reception (1 s for RX1 in EU868, 2 s for RX2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
}

/// Parameters of [`Timing::GpsEpoch`] (`gw.GPSEpochTimingInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GpsEpochTimingInfo {
    /// Transmission time as time since the GPS epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_since_gps_epoch: Option<Duration>,
}

/// The JSON shape of [`Timing`].
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct TimingRepr {
    immediately: Option<ImmediatelyTimingInfo>,
    delay: Option<DelayTimingInfo>,
    gps_epoch: Option<GpsEpochTimingInfo>,
}

impl OneOf for Timing {
    type Repr = TimingRepr;

    fn from_repr(repr: TimingRepr) -> Option<Self> {
        repr.immediately
            .map(Self::Immediately)
            .or_else(|| repr.delay.map(Self::Delay))
            .or_else(|| repr.gps_epoch.map(Self::GpsEpoch))
    }
}

impl TryFrom<TimingRepr> for Timing {
    type Error = &'static str;

    fn try_from(repr: TimingRepr) -> Result<Self, Self::Error> {
        Self::from_repr(repr).ok_or("no known timing (immediately, delay, gpsEpoch)")
    }
}

/// How a downlink is to be, or was, sent (`gw.DownlinkTxInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DownlinkTxInfo {
    /// Frequency in Hz.
    #[serde(skip_serializing_if = "is_default")]
    pub frequency: u32,
    /// Transmit power in dBm EIRP.
    #[serde(skip_serializing_if = "is_default")]
    pub power: i32,
    /// Modulation and its parameters.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_oneof"
    )]
    pub modulation: Option<Modulation>,
    /// Concentrator board.
    #[serde(skip_serializing_if = "is_default")]
    pub board: u32,
    /// Antenna.
    #[serde(skip_serializing_if = "is_default")]
    pub antenna: u32,
    /// When to transmit.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_oneof"
    )]
    pub timing: Option<Timing>,
    /// The uplink's gateway context, copied back for class A timing.
    #[serde(skip_serializing_if = "is_default")]
    pub context: Bytes,
}
