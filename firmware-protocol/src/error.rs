//! The one error type of the codec.

use core::fmt;

use crate::serial::SerialError;

/// Why a frame could not be decoded or a message could not be encoded.
///
/// Every variant names what is wrong precisely enough to quarantine a frame with a useful
/// reason; the `Display` texts are part of the protocol (PROTOCOL.md, "Errors") and the
/// ChirpStack codec reports the same texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The frame has no bytes where a message was expected.
    Empty,
    /// The fPort carries no message of this protocol (in this direction).
    UnknownPort(u8),
    /// The version byte names a format this decoder does not know.
    UnsupportedVersion(u8),
    /// The frame ends before its layout does.
    TooShort {
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes the frame has.
        found: usize,
    },
    /// The frame goes on after its layout ends.
    TrailingBytes {
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes the frame has.
        found: usize,
    },
    /// An enumeration field holds a code this version does not define.
    UnknownCode {
        /// The field's JSON name.
        field: &'static str,
        /// The code found.
        code: u8,
    },
    /// A bit this version reserves is set.
    ReservedBits {
        /// The field's JSON name.
        field: &'static str,
    },
    /// A value lies outside the range its field allows.
    OutOfRange {
        /// The field's JSON name.
        field: &'static str,
    },
    /// A self-test result reports a failure for a test that did not run.
    FailedTestNotRun,
    /// A clock-synchronisation frame holds more commands than [`crate::MAX_CLOCK_SYNC_COMMANDS`].
    TooManyCommands,
    /// The meter serial number is malformed.
    InvalidSerial(SerialError),
    /// The caller's output buffer cannot hold the encoded message.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => f.write_str("empty payload"),
            Error::UnknownPort(port) => write!(f, "unknown fPort {port}"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Error::TooShort { expected, found } => {
                write!(
                    f,
                    "frame too short: expected {expected} bytes, found {found}"
                )
            }
            Error::TrailingBytes { expected, found } => {
                write!(
                    f,
                    "trailing bytes: expected {expected} bytes, found {found}"
                )
            }
            Error::UnknownCode { field, code } => write!(f, "unknown {field} code {code}"),
            Error::ReservedBits { field } => write!(f, "reserved bits set in {field}"),
            Error::OutOfRange { field } => write!(f, "{field} out of range"),
            Error::FailedTestNotRun => f.write_str("testsFailed names a test not in testsRun"),
            Error::TooManyCommands => write!(
                f,
                "more than {} clock sync commands in one frame",
                crate::MAX_CLOCK_SYNC_COMMANDS
            ),
            Error::InvalidSerial(e) => write!(f, "invalid serial: {e}"),
            Error::BufferTooSmall { needed, available } => write!(
                f,
                "output buffer too small: need {needed} bytes, have {available}"
            ),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::InvalidSerial(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SerialError> for Error {
    fn from(e: SerialError) -> Self {
        Error::InvalidSerial(e)
    }
}
