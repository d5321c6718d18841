//! `meterhub decode` and `meterhub encode`: the wire format from the command line, for
//! integrators checking what a meter sent or what a command will look like.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use firmware_protocol::{Downlink, MAX_FRAME_LEN, Uplink, decode_downlink, decode_uplink};

/// Which way a frame travels; the same fPort (202) means different commands each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Meter to server.
    Uplink,
    /// Server to meter.
    Downlink,
}

/// Arguments of `meterhub decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The LoRaWAN fPort the frame arrived on.
    #[arg(long)]
    fport: u8,
    /// The frame as hex (spaces allowed), e.g. `01 00 04 00 00 1f`.
    hex: Vec<String>,
    /// Direction of the frame.
    #[arg(long, value_enum, default_value_t = Direction::Uplink)]
    direction: Direction,
}

/// Arguments of `meterhub encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// The message's JSON form, e.g. `{"message":"command","command":"readNow"}`.
    json: String,
    /// Direction of the message.
    #[arg(long, value_enum, default_value_t = Direction::Downlink)]
    direction: Direction,
}

/// Decodes a hex frame and returns its pretty JSON form.
pub fn decode(args: &DecodeArgs) -> Result<String> {
    let text: String = args.hex.concat().split_whitespace().collect();
    let bytes = hex::decode(&text).context("the frame is not valid hex")?;
    let json = match args.direction {
        Direction::Uplink => serde_json::to_string_pretty(&decode_uplink(args.fport, &bytes)?),
        Direction::Downlink => serde_json::to_string_pretty(&decode_downlink(args.fport, &bytes)?),
    };
    Ok(json?)
}

/// Encodes a JSON message and returns `fPort <n>: <hex>`.
pub fn encode(args: &EncodeArgs) -> Result<String> {
    let mut buf = [0u8; 256];
    let (fport, n) = match args.direction {
        Direction::Uplink => {
            let m: Uplink = serde_json::from_str(&args.json).context("not an uplink message")?;
            (m.fport(), m.encode(&mut buf)?)
        }
        Direction::Downlink => {
            let m: Downlink = serde_json::from_str(&args.json).context("not a downlink message")?;
            (m.fport(), m.encode(&mut buf)?)
        }
    };
    if n > MAX_FRAME_LEN {
        bail!("the frame is {n} bytes, more than the {MAX_FRAME_LEN} a meter may send or receive");
    }
    Ok(format!("fPort {fport}: {}", hex::encode(&buf[..n])))
}
