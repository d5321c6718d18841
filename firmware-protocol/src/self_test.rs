//! fPort 3: self-test results, and the set of tests a meter can run.

use crate::bits::bit_set;
use crate::wire::{Reader, Writer, check_version, expect_len};
use crate::{Error, FORMAT_VERSION, GpsTime};

/// Length of a self-test result frame.
pub const SELF_TEST_LEN: usize = 17;

bit_set! {
    /// A set of self-tests (u8 on the wire; bits 6–7 reserved). Used by results and by the
    /// run-self-test command.
    Tests(u8), field = "tests" {
        /// Battery under load.
        BATTERY = 0, "battery";
        /// Valve travel.
        VALVE = 1, "valve";
        /// Metrology check against the reference.
        METROLOGY = 2, "metrology";
        /// Memory check.
        MEMORY = 3, "memory";
        /// Real-time clock check.
        CLOCK = 4, "clock";
        /// Radio transmit check.
        RADIO = 5, "radio";
    }
}

/// The outcome of a self-test run.
///
/// ```
/// use firmware_protocol::{GpsTime, SelfTestResult, Tests};
/// let result = SelfTestResult {
///     tests_run: Tests::BATTERY | Tests::VALVE,
///     tests_failed: Tests::VALVE,
///     meter_time: GpsTime(1_468_800_018),
///     battery_loaded_millivolts: 3410,
///     battery_rest_millivolts: 3590,
///     valve_travel_ms: 2300,
///     metrology_deviation_centi_percent: 0,
///     internal_temperature_centi_celsius: 2150,
/// };
/// let mut buf = [0u8; 17];
/// result.encode(&mut buf).unwrap();
/// assert_eq!(SelfTestResult::decode(&buf), Ok(result));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct SelfTestResult {
    /// The tests that ran.
    pub tests_run: Tests,
    /// The tests that failed; always a subset of `tests_run`.
    pub tests_failed: Tests,
    /// When the run finished, by the meter's clock.
    pub meter_time: GpsTime,
    /// Battery voltage under load, mV.
    pub battery_loaded_millivolts: u16,
    /// Battery voltage at rest, mV.
    pub battery_rest_millivolts: u16,
    /// Valve travel time, ms (0 when the valve was not tested).
    pub valve_travel_ms: u16,
    /// Metrology deviation, 0.01 %.
    pub metrology_deviation_centi_percent: i16,
    /// Electronics temperature, 0.01 °C.
    pub internal_temperature_centi_celsius: i16,
}

impl SelfTestResult {
    /// Encoded size in bytes.
    pub const fn encoded_len(&self) -> usize {
        SELF_TEST_LEN
    }

    /// Encodes into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        if !self.tests_run.contains(self.tests_failed) {
            return Err(Error::FailedTestNotRun);
        }
        let mut w = Writer::new(out, SELF_TEST_LEN)?;
        w.u8(FORMAT_VERSION);
        w.u8(self.tests_run.bits());
        w.u8(self.tests_failed.bits());
        w.u32(self.meter_time.0);
        w.u16(self.battery_loaded_millivolts);
        w.u16(self.battery_rest_millivolts);
        w.u16(self.valve_travel_ms);
        w.i16(self.metrology_deviation_centi_percent);
        w.i16(self.internal_temperature_centi_celsius);
        Ok(w.finish())
    }

    /// Decodes a whole fPort 3 frame.
    pub fn decode(frame: &[u8]) -> Result<SelfTestResult, Error> {
        check_version(frame)?;
        expect_len(frame, SELF_TEST_LEN)?;
        let mut r = Reader::new(frame);
        r.u8()?;
        let tests_run =
            Tests::from_bits(r.u8()?).ok_or(Error::ReservedBits { field: "testsRun" })?;
        let tests_failed = Tests::from_bits(r.u8()?).ok_or(Error::ReservedBits {
            field: "testsFailed",
        })?;
        if !tests_run.contains(tests_failed) {
            return Err(Error::FailedTestNotRun);
        }
        Ok(SelfTestResult {
            tests_run,
            tests_failed,
            meter_time: GpsTime(r.u32()?),
            battery_loaded_millivolts: r.u16()?,
            battery_rest_millivolts: r.u16()?,
            valve_travel_ms: r.u16()?,
            metrology_deviation_centi_percent: r.i16()?,
            internal_temperature_centi_celsius: r.i16()?,
        })
    }
}
