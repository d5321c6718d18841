//! fPort 10: commands from the server to a meter.

use crate::device_info::check_reporting_interval;
use crate::wire::{Reader, Writer, check_version, expect_len};
use crate::{Error, FORMAT_VERSION, Tests};

/// Bytes of a command before its argument.
const COMMAND_HEADER_LEN: usize = 2;

/// A command to a meter. Each one makes the meter answer with an uplink (see PROTOCOL.md), by
/// which the server knows it was carried out.
///
/// ```
/// use firmware_protocol::{Command, Tests};
/// let cmd = Command::RunSelfTest { tests: Tests::BATTERY | Tests::VALVE };
/// let mut buf = [0u8; 4];
/// let n = cmd.encode(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &[0x01, 0x03, 0x03]);
/// assert_eq!(Command::decode(&buf[..n]), Ok(cmd));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "command", rename_all = "camelCase"))]
pub enum Command {
    /// Open the valve; the meter answers with alarm `valveOpened`.
    ValveOpen,
    /// Close the valve; the meter answers with alarm `valveClosed`.
    ValveClose,
    /// Run these self-tests (at least one); the meter answers with a self-test result.
    RunSelfTest {
        /// Which tests.
        tests: Tests,
    },
    /// Send a reading now.
    ReadNow,
    /// Send the device info.
    SendInfo,
    /// Report every `minutes` minutes (15–10080); the meter answers with its device info.
    SetReportingInterval {
        /// The new interval, minutes.
        minutes: u16,
    },
    /// Cut the supply, send a final reading and stop reporting until commissioned again.
    Disconnect,
}

impl Command {
    fn opcode(&self) -> u8 {
        match self {
            Command::ValveOpen => 1,
            Command::ValveClose => 2,
            Command::RunSelfTest { .. } => 3,
            Command::ReadNow => 4,
            Command::SendInfo => 5,
            Command::SetReportingInterval { .. } => 6,
            Command::Disconnect => 7,
        }
    }

    /// Encoded size in bytes (2–4).
    pub fn encoded_len(&self) -> usize {
        COMMAND_HEADER_LEN + argument_len(self.opcode())
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        match *self {
            Command::RunSelfTest { tests } => check_tests(tests)?,
            Command::SetReportingInterval { minutes } => {
                check_reporting_interval(minutes, "minutes")?
            }
            _ => {}
        }
        let mut w = Writer::new(out, self.encoded_len())?;
        w.u8(FORMAT_VERSION);
        w.u8(self.opcode());
        match *self {
            Command::RunSelfTest { tests } => w.u8(tests.bits()),
            Command::SetReportingInterval { minutes } => w.u16(minutes),
            _ => {}
        }
        Ok(w.finish())
    }

    /// Decodes a whole fPort 10 frame.
    pub fn decode(frame: &[u8]) -> Result<Command, Error> {
        check_version(frame)?;
        if frame.len() < COMMAND_HEADER_LEN {
            return Err(Error::TooShort {
                expected: COMMAND_HEADER_LEN,
                found: frame.len(),
            });
        }
        let opcode = frame[1];
        if !(1..=7).contains(&opcode) {
            return Err(Error::UnknownCode {
                field: "command",
                code: opcode,
            });
        }
        expect_len(frame, COMMAND_HEADER_LEN + argument_len(opcode))?;
        let mut r = Reader::new(&frame[COMMAND_HEADER_LEN..]);
        Ok(match opcode {
            1 => Command::ValveOpen,
            2 => Command::ValveClose,
            3 => {
                let tests = Tests::from_wire(r.u8()?)?;
                check_tests(tests)?;
                Command::RunSelfTest { tests }
            }
            4 => Command::ReadNow,
            5 => Command::SendInfo,
            6 => {
                let minutes = r.u16()?;
                check_reporting_interval(minutes, "minutes")?;
                Command::SetReportingInterval { minutes }
            }
            _ => Command::Disconnect,
        })
    }
}

fn argument_len(opcode: u8) -> usize {
    match opcode {
        3 => 1,
        6 => 2,
        _ => 0,
    }
}

fn check_tests(tests: Tests) -> Result<(), Error> {
    if tests.is_empty() {
        Err(Error::OutOfRange { field: "tests" })
    } else {
        Ok(())
    }
}
