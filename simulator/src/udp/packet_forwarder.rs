//! The Semtech UDP packet-forwarder protocol, version 2: the datagrams a gateway sends
//! (PUSH_DATA, PULL_DATA, TX_ACK) and those it receives (PUSH_ACK, PULL_ACK, PULL_RESP).
//!
//! Every datagram starts with the protocol version, a two-byte random token and an
//! identifier; the gateway's upstream datagrams then carry its EUI, and those with a body end
//! in JSON. Parsing never panics: anything else is a [`Malformed`] for the caller to count.

use serde::{Deserialize, Serialize};

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u8 = 2;

const PUSH_DATA: u8 = 0x00;
const PUSH_ACK: u8 = 0x01;
const PULL_DATA: u8 = 0x02;
const PULL_RESP: u8 = 0x03;
const PULL_ACK: u8 = 0x04;
const TX_ACK: u8 = 0x05;

/// One received LoRa frame with its radio metadata (`rxpk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxPk {
    /// UTC time of reception, ISO 8601 with microseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time: Option<String>,
    /// The concentrator's microsecond counter at the end of reception (wraps at 2^32).
    pub tmst: u32,
    /// IF channel.
    pub chan: u8,
    /// RF chain.
    pub rfch: u8,
    /// Centre frequency, MHz.
    pub freq: f64,
    /// CRC status: 1 OK, -1 bad, 0 none.
    pub stat: i8,
    /// Modulation, `LORA`.
    pub modu: String,
    /// Data rate, e.g. `SF7BW125`.
    pub datr: String,
    /// Coding rate, e.g. `4/5`.
    pub codr: String,
    /// Signal-to-noise ratio, dB.
    pub lsnr: f64,
    /// Received signal strength, dBm.
    pub rssi: i32,
    /// PHYPayload size, bytes.
    pub size: u16,
    /// PHYPayload, base64.
    pub data: String,
}

/// The gateway's status report (`stat`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// UTC time, `YYYY-MM-DD hh:mm:ss GMT`.
    pub time: String,
    /// Latitude, degrees.
    pub lati: f64,
    /// Longitude, degrees.
    pub long: f64,
    /// Altitude, metres.
    pub alti: i32,
    /// Frames received.
    pub rxnb: u64,
    /// Frames received with a valid CRC.
    pub rxok: u64,
    /// Frames forwarded.
    pub rxfw: u64,
    /// Share of upstream datagrams acknowledged, percent.
    pub ackr: f64,
    /// Downlinks received.
    pub dwnb: u64,
    /// Frames emitted.
    pub txnb: u64,
}

/// The body of a PUSH_DATA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushData {
    /// Received frames.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub rxpk: Vec<RxPk>,
    /// Status report.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stat: Option<Stat>,
}

/// A frame to transmit (`txpk` of a PULL_RESP); only the fields this gateway uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TxPk {
    /// Send immediately, ignoring `tmst`.
    #[serde(default)]
    pub imme: bool,
    /// Concentrator counter value at which to send.
    #[serde(default)]
    pub tmst: Option<u32>,
    /// Frequency, MHz.
    #[serde(default)]
    pub freq: Option<f64>,
    /// PHYPayload size, bytes.
    #[serde(default)]
    pub size: Option<u16>,
    /// PHYPayload, base64.
    pub data: String,
}

#[derive(Deserialize)]
struct PullRespBody {
    txpk: TxPk,
}

/// A datagram from the network server's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Downstream {
    /// A PUSH_DATA was received.
    PushAck {
        /// The PUSH_DATA's token.
        token: u16,
    },
    /// A PULL_DATA was received: the server knows where to send downlinks.
    PullAck {
        /// The PULL_DATA's token.
        token: u16,
    },
    /// A frame to transmit; answered with a TX_ACK carrying the same token.
    PullResp {
        /// The token to echo.
        token: u16,
        /// What to send.
        txpk: TxPk,
    },
}

/// Why a received datagram was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a header.
    TooShort(usize),
    /// Another protocol version.
    Version(u8),
    /// An identifier a gateway never receives.
    Identifier(u8),
    /// The PULL_RESP's JSON is not a `txpk`.
    Json(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooShort(n) => write!(f, "datagram of {n} bytes is shorter than a header"),
            Malformed::Version(v) => write!(f, "protocol version {v}, expected 2"),
            Malformed::Identifier(i) => write!(f, "identifier {i:#04x} is not for a gateway"),
            Malformed::Json(e) => write!(f, "PULL_RESP body: {e}"),
        }
    }
}

/// Parses a datagram received from the server.
pub fn parse_downstream(datagram: &[u8]) -> Result<Downstream, Malformed> {
    let [version, t0, t1, identifier, body @ ..] = datagram else {
        return Err(Malformed::TooShort(datagram.len()));
    };
    if *version != PROTOCOL_VERSION {
        return Err(Malformed::Version(*version));
    }
    let token = u16::from_be_bytes([*t0, *t1]);
    match *identifier {
        PUSH_ACK => Ok(Downstream::PushAck { token }),
        PULL_ACK => Ok(Downstream::PullAck { token }),
        PULL_RESP => {
            let parsed: PullRespBody =
                serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
            Ok(Downstream::PullResp {
                token,
                txpk: parsed.txpk,
            })
        }
        other => Err(Malformed::Identifier(other)),
    }
}

fn header(token: u16, identifier: u8, gateway_eui: [u8; 8], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + capacity);
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(&token.to_be_bytes());
    out.push(identifier);
    out.extend_from_slice(&gateway_eui);
    out
}

/// A PUSH_DATA datagram.
pub fn push_data(token: u16, gateway_eui: [u8; 8], body: &PushData) -> serde_json::Result<Vec<u8>> {
    let mut out = header(token, PUSH_DATA, gateway_eui, 256);
    serde_json::to_writer(&mut out, body)?;
    Ok(out)
}

/// A PULL_DATA datagram (keep-alive, and the address the server sends downlinks to).
pub fn pull_data(token: u16, gateway_eui: [u8; 8]) -> Vec<u8> {
    header(token, PULL_DATA, gateway_eui, 0)
}

/// A TX_ACK datagram answering the PULL_RESP with `token`; `error` is `NONE` when the frame
/// was sent.
pub fn tx_ack(token: u16, gateway_eui: [u8; 8], error: &str) -> Vec<u8> {
    let mut out = header(token, TX_ACK, gateway_eui, 48);
    let body = serde_json::json!({ "txpk_ack": { "error": error } });
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/chirpstack/samples"
    );

    #[test]
    fn the_pull_resp_sample_parses() {
        let mut datagram = vec![2, 0xab, 0xcd, PULL_RESP];
        let sample = format!("{SAMPLES}/gateway/udp-pull-resp.json");
        let Ok(json) = std::fs::read(&sample) else {
            // The shared samples sit beside the repository on development machines only.
            return;
        };
        datagram.extend_from_slice(&json);
        let Ok(Downstream::PullResp { token, txpk }) = parse_downstream(&datagram) else {
            panic!("a PULL_RESP");
        };
        assert_eq!(token, 0xabcd);
        assert_eq!(txpk.tmst, Some(1_001_000_007));
        assert_eq!(txpk.size, Some(17));
        assert_eq!(txpk.data, "oLwj+gEAEQAKjkHQeyyV+hM=");
    }

    #[test]
    fn push_data_carries_header_and_sample_shaped_json() {
        let body = PushData {
            rxpk: vec![RxPk {
                time: Some("2026-07-23T10:15:30.123456Z".into()),
                tmst: 1_000_000_007,
                chan: 0,
                rfch: 1,
                freq: 868.1,
                stat: 1,
                modu: "LORA".into(),
                datr: "SF7BW125".into(),
                codr: "4/5".into(),
                lsnr: 7.5,
                rssi: -97,
                size: 21,
                data: "QLwj+gGA0gQCXzqcF+K0DWocfpPS".into(),
            }],
            stat: None,
        };
        let eui = [0x00, 0x16, 0xc0, 0x01, 0xff, 0x1e, 0x5a, 0x7b];
        let d = push_data(0x1234, eui, &body).expect("serialises");
        assert_eq!(
            &d[..12],
            &[
                2, 0x12, 0x34, 0, 0x00, 0x16, 0xc0, 0x01, 0xff, 0x1e, 0x5a, 0x7b
            ]
        );
        let json: serde_json::Value = serde_json::from_slice(&d[12..]).expect("json");
        assert_eq!(json["rxpk"][0]["datr"], "SF7BW125");
        assert!(json.get("stat").is_none());
        let sample = format!("{SAMPLES}/gateway/udp-push-data.json");
        if let Ok(text) = std::fs::read(&sample) {
            let parsed: PushData = serde_json::from_slice(&text).expect("the sample parses");
            assert_eq!(parsed.rxpk[0], body.rxpk[0]);
            assert!(parsed.stat.is_some());
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(parse_downstream(&[]), Err(Malformed::TooShort(0)));
        assert_eq!(parse_downstream(&[2, 0, 0]), Err(Malformed::TooShort(3)));
        assert_eq!(parse_downstream(&[1, 0, 0, 1]), Err(Malformed::Version(1)));
        assert_eq!(
            parse_downstream(&[2, 0, 0, 9]),
            Err(Malformed::Identifier(9))
        );
        assert!(matches!(
            parse_downstream(b"\x02\x00\x01\x03{not json"),
            Err(Malformed::Json(_))
        ));
        assert_eq!(
            parse_downstream(&[2, 0, 7, PUSH_ACK]),
            Ok(Downstream::PushAck { token: 7 })
        );
    }

    #[test]
    fn tx_ack_matches_the_sample() {
        let d = tx_ack(0x0102, [1; 8], "NONE");
        assert_eq!(&d[..4], &[2, 1, 2, TX_ACK]);
        let json: serde_json::Value = serde_json::from_slice(&d[12..]).expect("json");
        assert_eq!(json, serde_json::json!({"txpk_ack": {"error": "NONE"}}));
    }
}
