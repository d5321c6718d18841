//! fPort 2: alarms and events.

use crate::wire::{Reader, Writer, check_version, expect_len};
use crate::{Error, FORMAT_VERSION, GpsTime};

/// Length of an alarm frame.
pub const ALARM_LEN: usize = 11;

/// What an alarm reports. The meaning of [`Alarm::value`] depends on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum AlarmKind {
    /// A magnet was held against the meter; value: detections since the last reading.
    MagneticTamper = 1,
    /// The meter was moved or tilted; value: detections since the last reading.
    Movement = 2,
    /// A sensor or supply cable was cut; value 0.
    CableCut = 3,
    /// The housing door or terminal cover was opened; value: seconds open (0 when raised).
    DoorOpen = 4,
    /// The battery fell below its warning level; value: battery voltage, mV.
    LowBattery = 5,
    /// Consumption exceeded the limit; value: last hour's consumption, litres or Wh.
    OverConsumption = 6,
    /// The valve opened; value 0.
    ValveOpened = 7,
    /// The valve closed; value 0.
    ValveClosed = 8,
    /// Continuous flow suggests a leak; value: litres per hour.
    Leak = 9,
    /// Gas or energy flowed backwards; value: reverse volume, litres.
    ReverseFlow = 10,
    /// The meter restarted without a valid time; value 0.
    ClockLost = 11,
}

impl AlarmKind {
    fn from_wire(code: u8) -> Result<Self, Error> {
        use AlarmKind::*;
        Ok(match code {
            1 => MagneticTamper,
            2 => Movement,
            3 => CableCut,
            4 => DoorOpen,
            5 => LowBattery,
            6 => OverConsumption,
            7 => ValveOpened,
            8 => ValveClosed,
            9 => Leak,
            10 => ReverseFlow,
            11 => ClockLost,
            code => {
                return Err(Error::UnknownCode {
                    field: "kind",
                    code,
                });
            }
        })
    }
}

/// An alarm raised or cleared by the meter.
///
/// ```
/// use firmware_protocol::{Alarm, AlarmKind, GpsTime};
/// let alarm = Alarm { kind: AlarmKind::LowBattery, raised: true, meter_time: GpsTime(7), value: 3100 };
/// let mut buf = [0u8; 11];
/// alarm.encode(&mut buf).unwrap();
/// assert_eq!(buf, [0x01, 0x05, 0x01, 0x07, 0, 0, 0, 0x1C, 0x0C, 0, 0]);
/// assert_eq!(Alarm::decode(&buf), Ok(alarm));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct Alarm {
    /// What happened.
    pub kind: AlarmKind,
    /// `true` when the condition started, `false` when it ended.
    pub raised: bool,
    /// When, by the meter's clock.
    pub meter_time: GpsTime,
    /// A number whose meaning depends on `kind`.
    pub value: u32,
}

impl Alarm {
    /// Encoded size in bytes.
    pub const fn encoded_len(&self) -> usize {
        ALARM_LEN
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out, ALARM_LEN)?;
        w.u8(FORMAT_VERSION);
        w.u8(self.kind as u8);
        w.u8(u8::from(self.raised));
        w.u32(self.meter_time.0);
        w.u32(self.value);
        Ok(w.finish())
    }

    /// Decodes a whole fPort 2 frame.
    pub fn decode(frame: &[u8]) -> Result<Alarm, Error> {
        check_version(frame)?;
        expect_len(frame, ALARM_LEN)?;
        let mut r = Reader::new(frame);
        r.u8()?;
        let kind = AlarmKind::from_wire(r.u8()?)?;
        let raised = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Error::ReservedBits { field: "raised" }),
        };
        Ok(Alarm {
            kind,
            raised,
            meter_time: GpsTime(r.u32()?),
            value: r.u32()?,
        })
    }
}
