//! One meter's firmware as state: its clock, registers, battery and valve, and the frames it
//! sends. A meter is a small struct driven by the scheduler, not a task.

use firmware_protocol::{DoorState, GpsTime, Reading, Serial, StatusFlags, Uplink, ValveState};

use crate::profile::{Medium, consumption};
use crate::rng::Pcg32;

/// Battery cost of one transmission, µV (a 19 Ah cell lasts about 15 years at one a day).
const MICROVOLTS_PER_UPLINK: u32 = 12;

/// A simulated meter.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Position in the fleet.
    pub index: u32,
    /// LoRaWAN DevEUI.
    pub dev_eui: [u8; 8],
    /// Serial number.
    pub serial: Serial,
    /// What it measures.
    pub medium: Medium,
    /// Household size relative to a typical one.
    pub scale: f64,
    /// Clock drift, parts per million (positive: runs fast).
    pub drift_ppm: f64,
    /// Meter clock minus true time, seconds.
    pub clock_offset: f64,
    /// Cumulative register (litres or Wh), with the fraction not yet counted.
    pub register: f64,
    /// Battery voltage, µV.
    pub battery_microvolts: u32,
    /// Valve position.
    pub valve: ValveState,
    /// Uplink frame counter.
    pub f_cnt: u32,
    /// True time of the last reading, Unix seconds.
    pub last_reading: i64,
    /// Seconds between readings.
    pub interval: i64,
    /// The meter's own random stream.
    pub rng: Pcg32,
}

impl Meter {
    /// The DevEUI as 16 lowercase hex digits.
    pub fn dev_eui_hex(&self) -> String {
        self.dev_eui.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The meter's own clock at true time `now`, as GPS time.
    pub fn meter_time(&self, now: i64) -> GpsTime {
        let t = now as f64 + self.clock_offset;
        GpsTime::from_unix(t.round() as i64).unwrap_or(GpsTime(0))
    }

    /// Advances the clock's drift to true time `now` since `since`.
    pub fn drift(&mut self, since: i64, now: i64) {
        self.clock_offset += (now - since) as f64 * self.drift_ppm / 1e6;
    }

    /// Battery voltage, mV.
    pub fn battery_millivolts(&self) -> u16 {
        (self.battery_microvolts / 1_000).min(u32::from(u16::MAX)) as u16
    }

    /// Battery charge, percent: linear between 3.0 V (empty) and 3.6 V (full).
    pub fn battery_percent(&self) -> u8 {
        let mv = f64::from(self.battery_millivolts());
        (((mv - 3_000.0) / 6.0).clamp(0.0, 100.0)) as u8
    }

    fn transmit(&mut self) -> u32 {
        self.battery_microvolts = self
            .battery_microvolts
            .saturating_sub(MICROVOLTS_PER_UPLINK);
        let f = self.f_cnt;
        self.f_cnt = self.f_cnt.wrapping_add(1);
        f
    }

    /// The periodic reading at true time `now`: registers advanced along the profile.
    pub fn reading(&mut self, now: i64) -> (u32, Uplink) {
        let since = self.last_reading;
        let noise = 0.9 + 0.2 * self.rng.unit();
        self.register += consumption(self.medium, self.scale, since, now) * noise;
        self.drift(since, now);
        self.last_reading = now;
        let register = (self.register as u64 % (1 << 32)) as u32;
        let (gas, energy, voltage, current, temperature, pressure) = match self.medium {
            Medium::Gas => (
                Some(register),
                None,
                None,
                None,
                Some(self.rng.range(500, 1_800) as i16),
                Some(self.rng.range(102_000, 103_500) as u32),
            ),
            Medium::Electricity => (
                None,
                Some(register),
                Some(self.rng.range(2_250, 2_350) as u16),
                Some(self.rng.range(200, 12_000) as u32),
                None,
                None,
            ),
        };
        let f_cnt = self.transmit();
        let flags = if self.battery_percent() < 10 {
            StatusFlags::LOW_BATTERY
        } else {
            StatusFlags::empty()
        };
        let reading = Reading {
            serial: self.serial,
            meter_time: self.meter_time(now),
            valve: self.valve,
            door: DoorState::NotFitted,
            battery_millivolts: self.battery_millivolts(),
            battery_percent: self.battery_percent(),
            flags,
            gas_volume_litres: gas,
            energy_wh: energy,
            voltage_decivolts: voltage,
            current_milliamps: current,
            gas_temperature_centi_celsius: temperature,
            gas_pressure_pa: pressure,
        };
        (f_cnt, Uplink::Reading(reading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> Meter {
        Meter {
            index: 0,
            dev_eui: [1, 2, 3, 4, 5, 6, 7, 8],
            serial: Serial::new(12, 26, 1, 1).expect("valid"),
            medium: Medium::Gas,
            scale: 1.0,
            drift_ppm: 20.0,
            clock_offset: 0.0,
            register: 1_000.0,
            battery_microvolts: 3_600_000,
            valve: ValveState::Open,
            f_cnt: 0,
            last_reading: 1_784_678_400,
            interval: 86_400,
            rng: Pcg32::for_meter(1, 0),
        }
    }

    #[test]
    fn readings_count_up_and_the_clock_drifts() {
        let mut m = meter();
        let (f0, first) = m.reading(1_784_678_400 + 86_400);
        let (f1, second) = m.reading(1_784_678_400 + 2 * 86_400);
        assert_eq!((f0, f1), (0, 1));
        let (Uplink::Reading(a), Uplink::Reading(b)) = (first, second) else {
            panic!("readings")
        };
        let used = b.gas_volume_litres.expect("gas") - a.gas_volume_litres.expect("gas");
        assert!((2_500..4_500).contains(&used), "{used} litres a day");
        // 20 ppm fast: 1.7 s a day.
        assert!((m.clock_offset - 3.456).abs() < 0.01, "{}", m.clock_offset);
        assert_eq!(a.battery_percent, 99);
    }
}
