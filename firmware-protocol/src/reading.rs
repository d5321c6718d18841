//! fPort 1: the daily reading.

use crate::bits::bit_set;
use crate::wire::{Reader, Writer, check_version, expect_len};
use crate::{Error, FORMAT_VERSION, GpsTime, Serial};

/// Bytes of a reading before its optional fields.
pub const READING_FIXED_LEN: usize = 21;

bit_set! {
    /// Status bits of a reading (u16 on the wire; bits 9–15 reserved).
    StatusFlags(u16), field = "flags" {
        /// Tamper detected since the last reading.
        TAMPER = 0, "tamper";
        /// A leak is suspected.
        LEAK = 1, "leak";
        /// Reverse flow was measured.
        REVERSE_FLOW = 2, "reverseFlow";
        /// The clock has not been synchronised since start-up or lost its time.
        CLOCK_UNSYNCHRONISED = 3, "clockUnsynchronised";
        /// The battery is below its warning level.
        LOW_BATTERY = 4, "lowBattery";
        /// The valve did not reach its commanded position.
        VALVE_FAULT = 5, "valveFault";
        /// A memory check failed.
        MEMORY_ERROR = 6, "memoryError";
        /// The supply is disconnected (valve locked closed or relay open).
        SUPPLY_DISCONNECTED = 7, "supplyDisconnected";
        /// Consumption is above the meter's configured limit.
        OVER_CONSUMPTION = 8, "overConsumption";
    }
}

/// Position of the meter's valve (gas) or supply relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum ValveState {
    /// The meter has no valve.
    NotFitted = 0,
    /// Open: supply flows.
    Open = 1,
    /// Closed: supply cut.
    Closed = 2,
    /// The valve is stuck or its position unknown.
    Fault = 3,
}

impl ValveState {
    fn from_wire(code: u8) -> Result<Self, Error> {
        Ok(match code {
            0 => ValveState::NotFitted,
            1 => ValveState::Open,
            2 => ValveState::Closed,
            3 => ValveState::Fault,
            code => {
                return Err(Error::UnknownCode {
                    field: "valve",
                    code,
                });
            }
        })
    }
}

/// State of the meter's housing door or terminal cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum DoorState {
    /// The meter has no door sensor.
    NotFitted = 0,
    /// Closed.
    Closed = 1,
    /// Open.
    Open = 2,
}

impl DoorState {
    fn from_wire(code: u8) -> Result<Self, Error> {
        Ok(match code {
            0 => DoorState::NotFitted,
            1 => DoorState::Closed,
            2 => DoorState::Open,
            code => {
                return Err(Error::UnknownCode {
                    field: "door",
                    code,
                });
            }
        })
    }
}

// Presence bits of the optional fields, in wire order.
const HAS_GAS_VOLUME: u8 = 1 << 0;
const HAS_ENERGY: u8 = 1 << 1;
const HAS_VOLTAGE: u8 = 1 << 2;
const HAS_CURRENT: u8 = 1 << 3;
const HAS_GAS_TEMPERATURE: u8 = 1 << 4;
const HAS_GAS_PRESSURE: u8 = 1 << 5;
const PRESENCE_DEFINED: u8 = 0b0011_1111;

/// Size of each optional field, indexed by presence bit.
const OPTIONAL_SIZES: [usize; 6] = [4, 4, 2, 4, 2, 4];

/// A meter's periodic reading: registers, measurements and state at one meter-clock time.
///
/// ```
/// use firmware_protocol::{GpsTime, Reading, Serial, StatusFlags, ValveState, DoorState};
/// let reading = Reading {
///     serial: Serial::parse("12261000012348").unwrap(),
///     meter_time: GpsTime(1_468_800_018),
///     valve: ValveState::Open,
///     door: DoorState::NotFitted,
///     battery_millivolts: 3600,
///     battery_percent: 87,
///     flags: StatusFlags::empty(),
///     gas_volume_litres: Some(1_234_567),
///     energy_wh: None,
///     voltage_decivolts: None,
///     current_milliamps: None,
///     gas_temperature_centi_celsius: Some(-512),
///     gas_pressure_pa: None,
/// };
/// let mut buf = [0u8; 51];
/// let n = reading.encode(&mut buf).unwrap();
/// assert_eq!(Reading::decode(&buf[..n]), Ok(reading));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct Reading {
    /// The meter's serial number.
    pub serial: Serial,
    /// When the meter took the reading, by its own clock.
    pub meter_time: GpsTime,
    /// Valve position.
    pub valve: ValveState,
    /// Door state.
    pub door: DoorState,
    /// Battery voltage, mV.
    pub battery_millivolts: u16,
    /// Battery state of charge, 0–100 %.
    pub battery_percent: u8,
    /// Status bits.
    pub flags: StatusFlags,
    /// Cumulative gas volume, litres (wraps at 2^32).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub gas_volume_litres: Option<u32>,
    /// Cumulative active energy, Wh (wraps at 2^32).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub energy_wh: Option<u32>,
    /// Supply voltage, 0.1 V.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub voltage_decivolts: Option<u16>,
    /// Current, mA.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub current_milliamps: Option<u32>,
    /// Gas temperature, 0.01 °C.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub gas_temperature_centi_celsius: Option<i16>,
    /// Absolute gas pressure, Pa.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub gas_pressure_pa: Option<u32>,
}

impl Reading {
    fn presence(&self) -> u8 {
        let mut p = 0;
        let bits = [
            (self.gas_volume_litres.is_some(), HAS_GAS_VOLUME),
            (self.energy_wh.is_some(), HAS_ENERGY),
            (self.voltage_decivolts.is_some(), HAS_VOLTAGE),
            (self.current_milliamps.is_some(), HAS_CURRENT),
            (
                self.gas_temperature_centi_celsius.is_some(),
                HAS_GAS_TEMPERATURE,
            ),
            (self.gas_pressure_pa.is_some(), HAS_GAS_PRESSURE),
        ];
        for (present, bit) in bits {
            if present {
                p |= bit;
            }
        }
        p
    }

    /// Encoded size in bytes (21–41).
    pub fn encoded_len(&self) -> usize {
        len_for_presence(self.presence())
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        if self.battery_percent > 100 {
            return Err(Error::OutOfRange {
                field: "batteryPercent",
            });
        }
        let mut w = Writer::new(out, self.encoded_len())?;
        w.u8(FORMAT_VERSION);
        w.u64(self.serial.as_u64());
        w.u32(self.meter_time.0);
        w.u8(self.presence());
        w.u8(self.valve as u8);
        w.u8(self.door as u8);
        w.u16(self.battery_millivolts);
        w.u8(self.battery_percent);
        w.u16(self.flags.bits());
        if let Some(v) = self.gas_volume_litres {
            w.u32(v);
        }
        if let Some(v) = self.energy_wh {
            w.u32(v);
        }
        if let Some(v) = self.voltage_decivolts {
            w.u16(v);
        }
        if let Some(v) = self.current_milliamps {
            w.u32(v);
        }
        if let Some(v) = self.gas_temperature_centi_celsius {
            w.i16(v);
        }
        if let Some(v) = self.gas_pressure_pa {
            w.u32(v);
        }
        Ok(w.finish())
    }

    /// Decodes a whole fPort 1 frame.
    pub fn decode(frame: &[u8]) -> Result<Reading, Error> {
        check_version(frame)?;
        if frame.len() < READING_FIXED_LEN {
            return Err(Error::TooShort {
                expected: READING_FIXED_LEN,
                found: frame.len(),
            });
        }
        let presence = frame[13];
        if presence & !PRESENCE_DEFINED != 0 {
            return Err(Error::ReservedBits { field: "presence" });
        }
        expect_len(frame, len_for_presence(presence))?;

        let mut r = Reader::new(frame);
        r.u8()?;
        let serial = Serial::from_u64(r.u64()?)?;
        let meter_time = GpsTime(r.u32()?);
        r.u8()?;
        let valve = ValveState::from_wire(r.u8()?)?;
        let door = DoorState::from_wire(r.u8()?)?;
        let battery_millivolts = r.u16()?;
        let battery_percent = r.u8()?;
        if battery_percent > 100 {
            return Err(Error::OutOfRange {
                field: "batteryPercent",
            });
        }
        let flags = StatusFlags::from_wire(r.u16()?)?;
        let has = |bit: u8| presence & bit != 0;
        let gas_volume_litres = if has(HAS_GAS_VOLUME) {
            Some(r.u32()?)
        } else {
            None
        };
        let energy_wh = if has(HAS_ENERGY) {
            Some(r.u32()?)
        } else {
            None
        };
        let voltage_decivolts = if has(HAS_VOLTAGE) {
            Some(r.u16()?)
        } else {
            None
        };
        let current_milliamps = if has(HAS_CURRENT) {
            Some(r.u32()?)
        } else {
            None
        };
        let gas_temperature_centi_celsius = if has(HAS_GAS_TEMPERATURE) {
            Some(r.i16()?)
        } else {
            None
        };
        let gas_pressure_pa = if has(HAS_GAS_PRESSURE) {
            Some(r.u32()?)
        } else {
            None
        };
        Ok(Reading {
            serial,
            meter_time,
            valve,
            door,
            battery_millivolts,
            battery_percent,
            flags,
            gas_volume_litres,
            energy_wh,
            voltage_decivolts,
            current_milliamps,
            gas_temperature_centi_celsius,
            gas_pressure_pa,
        })
    }
}

fn len_for_presence(presence: u8) -> usize {
    READING_FIXED_LEN
        + OPTIONAL_SIZES
            .iter()
            .enumerate()
            .filter(|(bit, _)| presence & (1 << bit) != 0)
            .map(|(_, size)| size)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Reading {
        Reading {
            serial: Serial::parse("12261000012348").expect("valid"),
            meter_time: GpsTime(0x0102_0304),
            valve: ValveState::NotFitted,
            door: DoorState::Closed,
            battery_millivolts: 0x0E10,
            battery_percent: 100,
            flags: StatusFlags::TAMPER | StatusFlags::OVER_CONSUMPTION,
            gas_volume_litres: None,
            energy_wh: None,
            voltage_decivolts: None,
            current_milliamps: None,
            gas_temperature_centi_celsius: None,
            gas_pressure_pa: None,
        }
    }

    #[test]
    fn minimal_reading_is_twenty_one_bytes_little_endian() {
        let mut buf = [0u8; 64];
        let n = minimal().encode(&mut buf).expect("fits");
        assert_eq!(n, 21);
        assert_eq!(
            &buf[..n],
            &[
                0x01, 0x3C, 0xE2, 0x8C, 0xBC, 0x26, 0x0B, 0x00, 0x00, // version, serial
                0x04, 0x03, 0x02, 0x01, // meter time
                0x00, 0x00, 0x01, // presence, valve, door
                0x10, 0x0E, 100, // battery
                0x01, 0x01, // flags: tamper, overConsumption
            ]
        );
    }

    #[test]
    fn full_reading_is_forty_one_bytes() {
        let r = Reading {
            gas_volume_litres: Some(u32::MAX),
            energy_wh: Some(0x8000_0000),
            voltage_decivolts: Some(2301),
            current_milliamps: Some(1),
            gas_temperature_centi_celsius: Some(i16::MIN),
            gas_pressure_pa: Some(101_325),
            ..minimal()
        };
        let mut buf = [0u8; 41];
        assert_eq!(r.encode(&mut buf), Ok(41));
        assert_eq!(Reading::decode(&buf), Ok(r));
    }

    #[test]
    fn short_buffer_is_reported_not_overrun() {
        let mut buf = [0u8; 20];
        assert_eq!(
            minimal().encode(&mut buf),
            Err(Error::BufferTooSmall {
                needed: 21,
                available: 20
            })
        );
    }

    #[test]
    fn presence_bits_decide_the_length() {
        let mut buf = [0u8; 64];
        let n = minimal().encode(&mut buf).expect("fits");
        buf[13] = HAS_GAS_VOLUME;
        assert_eq!(
            Reading::decode(&buf[..n]),
            Err(Error::TooShort {
                expected: 25,
                found: 21
            })
        );
        buf[13] = 0x40;
        assert_eq!(
            Reading::decode(&buf[..n]),
            Err(Error::ReservedBits { field: "presence" })
        );
    }
}
