//! fPort 4: device information.

use core::fmt;
use core::str::FromStr;

use crate::bits::bit_set;
use crate::wire::{Reader, Writer, check_version, expect_len};
use crate::{Date, Error, FORMAT_VERSION, Serial};

/// Length of a device-info frame.
pub const DEVICE_INFO_LEN: usize = 24;

/// Shortest reporting interval a meter accepts, minutes.
pub const MIN_REPORTING_INTERVAL_MINUTES: u16 = 15;
/// Longest reporting interval a meter accepts (one week), minutes.
pub const MAX_REPORTING_INTERVAL_MINUTES: u16 = 10_080;

pub(crate) fn check_reporting_interval(minutes: u16, field: &'static str) -> Result<(), Error> {
    if (MIN_REPORTING_INTERVAL_MINUTES..=MAX_REPORTING_INTERVAL_MINUTES).contains(&minutes) {
        Ok(())
    } else {
        Err(Error::OutOfRange { field })
    }
}

/// Who the supply point serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum UsageType {
    /// A household.
    Residential = 1,
    /// A shop or office.
    Commercial = 2,
    /// A factory.
    Industrial = 3,
    /// A public building.
    Public = 4,
}

impl UsageType {
    fn from_wire(code: u8) -> Result<Self, Error> {
        Ok(match code {
            1 => UsageType::Residential,
            2 => UsageType::Commercial,
            3 => UsageType::Industrial,
            4 => UsageType::Public,
            code => {
                return Err(Error::UnknownCode {
                    field: "usageType",
                    code,
                });
            }
        })
    }
}

bit_set! {
    /// What the meter can measure and do (u8 on the wire; bits 6–7 reserved).
    Capabilities(u8), field = "capabilities" {
        /// Measures gas volume.
        GAS = 0, "gas";
        /// Measures active energy.
        ELECTRICITY = 1, "electricity";
        /// Has a valve or supply relay.
        VALVE = 2, "valve";
        /// Has a door or cover sensor.
        DOOR_SENSOR = 3, "doorSensor";
        /// Measures gas temperature and pressure.
        GAS_CONDITIONS = 4, "gasConditions";
        /// Measures voltage and current.
        ELECTRICAL = 5, "electrical";
    }
}

/// A firmware version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Patch version.
    pub patch: u8,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a text is not a firmware version `M.m.p` with parts 0–255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersionParseError;

impl fmt::Display for FirmwareVersionParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a firmware version major.minor.patch, each 0-255")
    }
}

impl core::error::Error for FirmwareVersionParseError {}

impl FromStr for FirmwareVersion {
    type Err = FirmwareVersionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.').map(|p| {
            // Digits only: u8::from_str would also take "+1".
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FirmwareVersionParseError);
            }
            p.parse::<u8>().map_err(|_| FirmwareVersionParseError)
        });
        let mut next = || parts.next().ok_or(FirmwareVersionParseError)?;
        let version = FirmwareVersion {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        match parts.next() {
            None => Ok(version),
            Some(_) => Err(FirmwareVersionParseError),
        }
    }
}

/// What a meter says about itself: identity, firmware, production, configuration.
///
/// ```
/// use firmware_protocol::{Capabilities, Date, DeviceInfo, FirmwareVersion, Serial, UsageType};
/// let info = DeviceInfo {
///     serial: Serial::parse("12261000012348").unwrap(),
///     body_number: 4_000_123,
///     firmware_version: FirmwareVersion { major: 1, minor: 4, patch: 2 },
///     production_date: Date::new(2026, 3, 15).unwrap(),
///     usage_type: UsageType::Residential,
///     capabilities: Capabilities::GAS | Capabilities::VALVE,
///     reporting_interval_minutes: 1440,
/// };
/// let mut buf = [0u8; 24];
/// info.encode(&mut buf).unwrap();
/// assert_eq!(DeviceInfo::decode(&buf), Ok(info));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct DeviceInfo {
    /// The meter's serial number.
    pub serial: Serial,
    /// The number engraved on the meter body.
    pub body_number: u32,
    /// Firmware version.
    pub firmware_version: FirmwareVersion,
    /// Production date.
    pub production_date: Date,
    /// Who the supply point serves.
    pub usage_type: UsageType,
    /// What the meter can measure and do.
    pub capabilities: Capabilities,
    /// Current reporting interval, minutes (15–10080).
    pub reporting_interval_minutes: u16,
}

impl DeviceInfo {
    /// Encoded size in bytes.
    pub const fn encoded_len(&self) -> usize {
        DEVICE_INFO_LEN
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        check_reporting_interval(self.reporting_interval_minutes, "reportingIntervalMinutes")?;
        let mut w = Writer::new(out, DEVICE_INFO_LEN)?;
        w.u8(FORMAT_VERSION);
        w.u64(self.serial.as_u64());
        w.u32(self.body_number);
        w.u8(self.firmware_version.major);
        w.u8(self.firmware_version.minor);
        w.u8(self.firmware_version.patch);
        w.u16(self.production_date.year());
        w.u8(self.production_date.month());
        w.u8(self.production_date.day());
        w.u8(self.usage_type as u8);
        w.u8(self.capabilities.bits());
        w.u16(self.reporting_interval_minutes);
        Ok(w.finish())
    }

    /// Decodes a whole fPort 4 frame.
    pub fn decode(frame: &[u8]) -> Result<DeviceInfo, Error> {
        check_version(frame)?;
        expect_len(frame, DEVICE_INFO_LEN)?;
        let mut r = Reader::new(frame);
        r.u8()?;
        let serial = Serial::from_u64(r.u64()?)?;
        let body_number = r.u32()?;
        let firmware_version = FirmwareVersion {
            major: r.u8()?,
            minor: r.u8()?,
            patch: r.u8()?,
        };
        let (year, month, day) = (r.u16()?, r.u8()?, r.u8()?);
        let production_date = Date::new(year, month, day).ok_or(Error::OutOfRange {
            field: "productionDate",
        })?;
        let usage_type = UsageType::from_wire(r.u8()?)?;
        let capabilities = Capabilities::from_wire(r.u8()?)?;
        let reporting_interval_minutes = r.u16()?;
        check_reporting_interval(reporting_interval_minutes, "reportingIntervalMinutes")?;
        Ok(DeviceInfo {
            serial,
            body_number,
            firmware_version,
            production_date,
            usage_type,
            capabilities,
            reporting_interval_minutes,
        })
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for FirmwareVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for FirmwareVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::json::deserialize_from_str(deserializer, "a firmware version major.minor.patch")
    }
}
