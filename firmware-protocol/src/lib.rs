//! The application payloads of meterhub's LoRaWAN gas and electricity meters.
//!
//! One message per LoRaWAN frame, chosen by fPort: daily [`Reading`] (1), [`Alarm`] (2),
//! [`SelfTestResult`] (3), [`DeviceInfo`] (4), [`Command`] (10, downlink), and the LoRaWAN
//! Application Layer Clock Synchronization package v1.0.0 (TS003, fPort 202:
//! [`ClockSyncUp`], [`ClockSyncDown`]). `PROTOCOL.md` beside this crate gives every byte; the
//! golden vectors in `vectors/` pin it down, and the ChirpStack codec in `codec/` decodes the
//! same bytes to the same JSON.
//!
//! Pure code: no I/O, no allocation, `no_std`. Decoding borrows the frame and never panics;
//! encoding writes into a buffer the caller provides. Features:
//! - `serde`: the JSON form of every message (PROTOCOL.md, "JSON form");
//! - `std`: [`clock::Clock`], the time source the server and the simulator share;
//! - `chirpstack` (implies `std`): the types of ChirpStack v4's MQTT integration.
//!
//! ```
//! use firmware_protocol::{decode_uplink, Uplink, MAX_FRAME_LEN};
//! let frame = [0x01, 0x05, 0x01, 0x07, 0, 0, 0, 0x1C, 0x0C, 0, 0];
//! let message = decode_uplink(2, &frame).unwrap();
//! assert!(matches!(message, Uplink::Alarm(a) if a.value == 3100));
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! assert_eq!(message.encode(&mut buf), Ok(frame.len()));
//! ```
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "serde")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod alarm;
mod bits;
#[cfg(feature = "std")]
pub mod clock;
mod clock_sync;
mod command;
mod device_info;
mod error;
#[cfg(feature = "serde")]
mod json;
mod message;
mod reading;
mod self_test;
mod serial;
mod time;
mod wire;

#[cfg(feature = "chirpstack")]
pub mod chirpstack;

pub use alarm::{ALARM_LEN, Alarm, AlarmKind};
pub use clock_sync::{
    CLOCK_SYNC_PACKAGE_ID, CLOCK_SYNC_PACKAGE_VERSION, ClockSync, ClockSyncDown, ClockSyncDownlink,
    ClockSyncUp, ClockSyncUplink,
};
pub use command::Command;
pub use device_info::{
    Capabilities, DEVICE_INFO_LEN, DeviceInfo, FirmwareVersion, FirmwareVersionParseError,
    MAX_REPORTING_INTERVAL_MINUTES, MIN_REPORTING_INTERVAL_MINUTES, UsageType,
};
pub use error::Error;
pub use message::{
    Downlink, PORT_ALARM, PORT_CLOCK_SYNC, PORT_COMMAND, PORT_DEVICE_INFO, PORT_READING,
    PORT_SELF_TEST, Uplink, decode_downlink, decode_uplink,
};
pub use reading::{DoorState, READING_FIXED_LEN, Reading, StatusFlags, ValveState};
pub use self_test::{SELF_TEST_LEN, SelfTestResult, Tests};
pub use serial::{Medium, SERIAL_DIGITS, Serial, SerialError};
pub use time::{
    Date, DateParseError, GPS_EPOCH_UNIX, GpsTime, TimeParseError, leap_seconds_at_gps,
    leap_seconds_at_unix,
};

/// The format version in byte 0 of every meterhub message (not of TS003 frames).
pub const FORMAT_VERSION: u8 = 1;

/// The largest application payload any uplink may use: EU868 at DR0–DR2.
pub const MAX_FRAME_LEN: usize = 51;

/// The most TS003 commands one fPort 202 frame may hold.
pub const MAX_CLOCK_SYNC_COMMANDS: usize = 8;
