//! Every message by direction, chosen by fPort.

use crate::{
    Alarm, ClockSyncDownlink, ClockSyncUplink, Command, DeviceInfo, Error, Reading, SelfTestResult,
};

/// fPort of daily readings.
pub const PORT_READING: u8 = 1;
/// fPort of alarms and events.
pub const PORT_ALARM: u8 = 2;
/// fPort of self-test results.
pub const PORT_SELF_TEST: u8 = 3;
/// fPort of device info.
pub const PORT_DEVICE_INFO: u8 = 4;
/// fPort of commands.
pub const PORT_COMMAND: u8 = 10;
/// fPort of the TS003 clock-synchronisation package.
pub const PORT_CLOCK_SYNC: u8 = 202;

/// A message from a meter.
///
/// ```
/// use firmware_protocol::{decode_uplink, Uplink};
/// let frame = [0x01, 0x00, 0x04, 0x00, 0x00, 0x1F];
/// let Ok(Uplink::ClockSync(cmds)) = decode_uplink(202, &frame) else { panic!() };
/// assert_eq!(cmds.len(), 1);
/// let mut buf = [0u8; 51];
/// let n = Uplink::ClockSync(cmds).encode(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &frame);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "message", rename_all = "camelCase"))]
pub enum Uplink {
    /// fPort 1.
    Reading(Reading),
    /// fPort 2.
    Alarm(Alarm),
    /// fPort 3.
    SelfTest(SelfTestResult),
    /// fPort 4.
    DeviceInfo(DeviceInfo),
    /// fPort 202.
    ClockSync(ClockSyncUplink),
}

/// A message to a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "message", rename_all = "camelCase"))]
pub enum Downlink {
    /// fPort 10.
    Command(Command),
    /// fPort 202.
    ClockSync(ClockSyncDownlink),
}

/// Decodes an uplink frame by its fPort. fPort 0 (MAC commands only) carries no message of
/// this protocol and is reported as [`Error::UnknownPort`].
pub fn decode_uplink(fport: u8, frame: &[u8]) -> Result<Uplink, Error> {
    if frame.is_empty() {
        return Err(Error::Empty);
    }
    Ok(match fport {
        PORT_READING => Uplink::Reading(Reading::decode(frame)?),
        PORT_ALARM => Uplink::Alarm(Alarm::decode(frame)?),
        PORT_SELF_TEST => Uplink::SelfTest(SelfTestResult::decode(frame)?),
        PORT_DEVICE_INFO => Uplink::DeviceInfo(DeviceInfo::decode(frame)?),
        PORT_CLOCK_SYNC => Uplink::ClockSync(ClockSyncUplink::decode(frame)?),
        other => return Err(Error::UnknownPort(other)),
    })
}

/// Decodes a downlink frame by its fPort.
pub fn decode_downlink(fport: u8, frame: &[u8]) -> Result<Downlink, Error> {
    if frame.is_empty() {
        return Err(Error::Empty);
    }
    Ok(match fport {
        PORT_COMMAND => Downlink::Command(Command::decode(frame)?),
        PORT_CLOCK_SYNC => Downlink::ClockSync(ClockSyncDownlink::decode(frame)?),
        other => return Err(Error::UnknownPort(other)),
    })
}

impl Uplink {
    /// The fPort this message travels on.
    pub fn fport(&self) -> u8 {
        match self {
            Uplink::Reading(_) => PORT_READING,
            Uplink::Alarm(_) => PORT_ALARM,
            Uplink::SelfTest(_) => PORT_SELF_TEST,
            Uplink::DeviceInfo(_) => PORT_DEVICE_INFO,
            Uplink::ClockSync(_) => PORT_CLOCK_SYNC,
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Uplink::Reading(m) => m.encoded_len(),
            Uplink::Alarm(m) => m.encoded_len(),
            Uplink::SelfTest(m) => m.encoded_len(),
            Uplink::DeviceInfo(m) => m.encoded_len(),
            Uplink::ClockSync(m) => m.encoded_len(),
        }
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        match self {
            Uplink::Reading(m) => m.encode(out),
            Uplink::Alarm(m) => m.encode(out),
            Uplink::SelfTest(m) => m.encode(out),
            Uplink::DeviceInfo(m) => m.encode(out),
            Uplink::ClockSync(m) => m.encode(out),
        }
    }
}

impl Downlink {
    /// The fPort this message travels on.
    pub fn fport(&self) -> u8 {
        match self {
            Downlink::Command(_) => PORT_COMMAND,
            Downlink::ClockSync(_) => PORT_CLOCK_SYNC,
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Downlink::Command(m) => m.encoded_len(),
            Downlink::ClockSync(m) => m.encoded_len(),
        }
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        match self {
            Downlink::Command(m) => m.encode(out),
            Downlink::ClockSync(m) => m.encode(out),
        }
    }
}
