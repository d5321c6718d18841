//! The JSON bodies of the Semtech UDP packet-forwarder protocol (version 2), as a gateway
//! exchanges them with chirpstack-mqtt-forwarder or chirpstack-gateway-bridge.
//!
//! Only the JSON after the binary header (`0x02`, token, type, gateway EUI) is modelled:
//!
//! | packet | body |
//! |---|---|
//! | PUSH_DATA (gateway → forwarder) | [`PushData`]: `{"rxpk":[...],"stat":{...}}` |
//! | PULL_RESP (forwarder → gateway) | [`PullResp`]: `{"txpk":{...}}` |
//! | TX_ACK (gateway → forwarder) | [`TxAck`]: `{"txpk_ack":{...}}` |
//!
//! Field names are Semtech's four-letter ones. Optional fields are left out when `None`;
//! on input every field may be missing and unknown fields are ignored.

use core::fmt;
use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::bytes::Bytes;
use super::gateway::TxAckStatus;
use super::proto3::proto_enum;

pub use super::time::{CompactTime, ExpandedTime};

/// A PUSH_DATA body: received packets and/or gateway statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushData {
    /// Received packets; left out when empty (a statistics-only report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rxpk: Vec<Rxpk>,
    /// Gateway statistics, sent every stats interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

proto_enum! {
    /// Modulation identifier (`modu`).
    pub enum Modulation {
        /// LoRa.
        #[default]
        Lora = "LORA",
        /// FSK.
        Fsk = "FSK",
        /// LR-FHSS.
        LrFhss = "LR-FHSS",
    }
}

proto_enum! {
    /// LoRa coding rate (`codr`).
    pub enum CodeRate {
        /// 4/5.
        #[default]
        Cr4_5 = "4/5",
        /// 4/6.
        Cr4_6 = "4/6",
        /// 4/7.
        Cr4_7 = "4/7",
        /// 4/8.
        Cr4_8 = "4/8",
        /// LR-FHSS 3/8.
        Cr3_8 = "3/8",
        /// LR-FHSS 2/6.
        Cr2_6 = "2/6",
        /// LR-FHSS 1/4.
        Cr1_4 = "1/4",
        /// LR-FHSS 1/6.
        Cr1_6 = "1/6",
        /// LR-FHSS 5/6.
        Cr5_6 = "5/6",
        /// LoRa 2.4 GHz 4/5 with long interleaving.
        CrLi4_5 = "4/5LI",
        /// LoRa 2.4 GHz 4/6 with long interleaving.
        CrLi4_6 = "4/6LI",
        /// LoRa 2.4 GHz 4/8 with long interleaving.
        CrLi4_8 = "4/8LI",
        /// Coding off.
        Off = "OFF",
    }
}

/// Data rate identifier (`datr`): text for LoRa (`"SF7BW125"`) and LR-FHSS (`"M0CW137"`), a
/// number of bit/s for FSK.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataRate {
    /// LoRa `SF{spreading_factor}BW{bandwidth_khz}`.
    Lora {
        /// Spreading factor, 5–12.
        spreading_factor: u32,
        /// Bandwidth in kHz (125, 250, 500).
        bandwidth_khz: u32,
    },
    /// LR-FHSS `M0CW{operating channel width in kHz}`.
    LrFhss {
        /// Operating channel width in kHz.
        ocw_khz: u32,
    },
    /// FSK bit rate in bit/s.
    Fsk(u32),
    /// Text of another form, kept as written.
    Other(String),
}

impl Default for DataRate {
    /// Empty text: a `datr` that was not given, rather than a made-up rate.
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl DataRate {
    /// Reads the text form; anything not `SF..BW..` or `M0CW..` is kept as `Other`.
    pub fn from_text(text: &str) -> Self {
        let lora = text
            .strip_prefix("SF")
            .and_then(|rest| rest.split_once("BW"))
            .and_then(|(sf, bw)| Some((sf.parse().ok()?, bw.parse().ok()?)));
        if let Some((spreading_factor, bandwidth_khz)) = lora {
            return Self::Lora {
                spreading_factor,
                bandwidth_khz,
            };
        }
        match text.strip_prefix("M0CW").and_then(|ocw| ocw.parse().ok()) {
            Some(ocw_khz) => Self::LrFhss { ocw_khz },
            None => Self::Other(text.to_string()),
        }
    }
}

impl fmt::Display for DataRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lora {
                spreading_factor,
                bandwidth_khz,
            } => write!(f, "SF{spreading_factor}BW{bandwidth_khz}"),
            Self::LrFhss { ocw_khz } => write!(f, "M0CW{ocw_khz}"),
            Self::Fsk(bit_rate) => write!(f, "{bit_rate}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for DataRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fsk(bit_rate) => serializer.serialize_u32(*bit_rate),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for DataRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = DataRate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a data rate like \"SF7BW125\" or an FSK bit rate")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<DataRate, E> {
                Ok(DataRate::from_text(text))
            }

            fn visit_u64<E: de::Error>(self, bit_rate: u64) -> Result<DataRate, E> {
                u32::try_from(bit_rate)
                    .map(DataRate::Fsk)
                    .map_err(|_| E::custom("FSK bit rate out of range"))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// One received packet (`rxpk`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rxpk {
    /// UTC reception time, when the gateway's clock is set (GPS or NTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<CompactTime>,
    /// GPS time of reception in milliseconds since the GPS epoch, when the gateway has GPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Concentrator counter at the end of reception, µs, wrapping at 2^32. The forwarder
    /// passes it to ChirpStack as the 4-byte big-endian uplink context.
    pub tmst: u32,
    /// Fine timestamp, ns since the last PPS, when the gateway has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ftime: Option<u32>,
    /// Concentrator IF channel.
    pub chan: u32,
    /// Concentrator RF chain.
    pub rfch: u32,
    /// Concentrator board.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brd: Option<u32>,
    /// Centre frequency in MHz (`868.1`).
    pub freq: f64,
    /// CRC status: 1 OK, -1 bad, 0 no CRC.
    pub stat: i32,
    /// Modulation.
    pub modu: Modulation,
    /// Data rate.
    pub datr: DataRate,
    /// Coding rate (required for LoRa by the forwarder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codr: Option<CodeRate>,
    /// LoRa SNR in dB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f32>,
    /// RSSI in dBm.
    pub rssi: i32,
    /// LR-FHSS hopping grid width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hpw: Option<u32>,
    /// Payload size in bytes.
    pub size: u32,
    /// The PHYPayload.
    pub data: Bytes,
    /// Per-antenna signal details of multi-antenna gateways.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rsig: Vec<Rsig>,
    /// Extra strings (not in Semtech's specification); the forwarder passes them on as
    /// rxInfo `metadata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
}

/// Signal details of one antenna (`rxpk.rsig[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rsig {
    /// Antenna.
    pub ant: u32,
    /// Concentrator IF channel.
    pub chan: u32,
    /// Channel RSSI in dBm.
    pub rssic: i32,
    /// LoRa SNR in dB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f32>,
}

/// Gateway statistics (`stat`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stat {
    /// Gateway system time (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<ExpandedTime>,
    /// GPS latitude in degrees, north positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lati: Option<f64>,
    /// GPS longitude in degrees, east positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    /// GPS altitude in metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alti: Option<i32>,
    /// Packets received.
    pub rxnb: u32,
    /// Packets received with a valid CRC.
    pub rxok: u32,
    /// Packets forwarded.
    pub rxfw: u32,
    /// Percentage of upstream datagrams acknowledged.
    pub ackr: f64,
    /// Downlink datagrams received.
    pub dwnb: u32,
    /// Packets transmitted.
    pub txnb: u32,
    /// Extra strings (not in Semtech's specification); passed on as stats `metadata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
}

/// A PULL_RESP body: one packet to transmit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullResp {
    /// The packet.
    pub txpk: Txpk,
}

/// A packet to transmit (`txpk`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Txpk {
    /// Send immediately, ignoring `tmst` and `tmms` (class C).
    pub imme: bool,
    /// Concentrator RF chain.
    pub rfch: u32,
    /// Transmit power in dBm.
    pub powe: i32,
    /// Antenna.
    pub ant: u32,
    /// Concentrator board.
    pub brd: u32,
    /// Send when the concentrator counter reaches this value, µs (class A: the uplink's
    /// `tmst` plus the RX delay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    /// Send at this GPS time, ms since the GPS epoch (class B).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Centre frequency in MHz.
    pub freq: f64,
    /// Modulation.
    pub modu: Modulation,
    /// Data rate.
    pub datr: DataRate,
    /// Coding rate (LoRa).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codr: Option<CodeRate>,
    /// FSK frequency deviation in Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdev: Option<u32>,
    /// Send without a PHY CRC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ncrc: Option<bool>,
    /// Invert I/Q polarisation (LoRa downlinks: `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipol: Option<bool>,
    /// Preamble length in symbols.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prea: Option<u32>,
    /// Payload size in bytes.
    pub size: u32,
    /// The PHYPayload.
    pub data: Bytes,
}

/// A TX_ACK body. A TX_ACK without JSON means success.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TxAck {
    /// The outcome.
    pub txpk_ack: TxpkAck,
}

proto_enum! {
    /// Why a gateway could not transmit (`txpk_ack.error`).
    pub enum TxAckError {
        /// Transmitted (or scheduled).
        #[default]
        NoError = "NONE",
        /// Too late to schedule.
        TooLate = "TOO_LATE",
        /// Too far in the future to schedule.
        TooEarly = "TOO_EARLY",
        /// Another packet is scheduled at that time.
        CollisionPacket = "COLLISION_PACKET",
        /// A beacon is scheduled at that time.
        CollisionBeacon = "COLLISION_BEACON",
        /// The frequency is not supported.
        TxFreq = "TX_FREQ",
        /// The power is not supported.
        TxPower = "TX_POWER",
        /// GPS time was needed but GPS is unlocked.
        GpsUnlocked = "GPS_UNLOCKED",
    }
}

/// Outcome of a PULL_RESP (`txpk_ack`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TxpkAck {
    /// The error, `NONE` on success; absent is success too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TxAckError>,
    /// A warning (for example `TX_POWER` when the power was lowered) with success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn: Option<String>,
    /// The value the warning is about (for `TX_POWER`, the power used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

impl TxpkAck {
    /// The [`TxAckStatus`] a forwarder reports to ChirpStack for this outcome: no error,
    /// `NONE` or `""` is `OK`, a known error its namesake, anything else `INTERNAL_ERROR`.
    pub fn status(&self) -> TxAckStatus {
        match &self.error {
            None | Some(TxAckError::NoError) => TxAckStatus::Ok,
            Some(TxAckError::Other(text)) if text.is_empty() => TxAckStatus::Ok,
            Some(TxAckError::TooLate) => TxAckStatus::TooLate,
            Some(TxAckError::TooEarly) => TxAckStatus::TooEarly,
            Some(TxAckError::CollisionPacket) => TxAckStatus::CollisionPacket,
            Some(TxAckError::CollisionBeacon) => TxAckStatus::CollisionBeacon,
            Some(TxAckError::TxFreq) => TxAckStatus::TxFreq,
            Some(TxAckError::TxPower) => TxAckStatus::TxPower,
            Some(TxAckError::GpsUnlocked) => TxAckStatus::GpsUnlocked,
            Some(TxAckError::Other(_)) => TxAckStatus::InternalError,
        }
    }
}
