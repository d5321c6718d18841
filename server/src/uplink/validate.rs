//! Plausibility of decoded values: a frame can be well formed and still say something no
//! meter could (a garbled payload that happens to decode, a failing sensor).

use firmware_protocol::Reading;

/// Checks a reading's measurements against what real meters can report; the first problem
/// found, naming the field.
pub fn check_reading(r: &Reading) -> Result<(), String> {
    let ranges: [(&str, Option<i64>, i64, i64); 5] = [
        // Lithium primary cells and supercapacitors: 1.0 V (dead) to 5.0 V.
        (
            "batteryMillivolts",
            Some(i64::from(r.battery_millivolts)),
            1_000,
            5_000,
        ),
        // Up to 300 V: single-phase mains with margin; 0 during an outage.
        (
            "voltageDecivolts",
            r.voltage_decivolts.map(i64::from),
            0,
            3_000,
        ),
        // Up to 200 A: the largest direct-connected meters.
        (
            "currentMilliamps",
            r.current_milliamps.map(i64::from),
            0,
            200_000,
        ),
        // −40 °C to +80 °C: the temperature range gas meters are certified for.
        (
            "gasTemperatureCentiCelsius",
            r.gas_temperature_centi_celsius.map(i64::from),
            -4_000,
            8_000,
        ),
        // Up to 10 bar: distribution networks that feed metered premises.
        (
            "gasPressurePa",
            r.gas_pressure_pa.map(i64::from),
            0,
            1_000_000,
        ),
    ];
    for (field, value, min, max) in ranges {
        if let Some(v) = value
            && !(min..=max).contains(&v)
        {
            return Err(format!("{field} {v} is outside {min}..={max}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocol::{DoorState, GpsTime, Serial, StatusFlags, ValveState};

    fn reading() -> Reading {
        Reading {
            serial: Serial::new(12, 26, 1, 1).expect("valid"),
            meter_time: GpsTime(1_468_800_018),
            valve: ValveState::Open,
            door: DoorState::NotFitted,
            battery_millivolts: 3_600,
            battery_percent: 90,
            flags: StatusFlags::empty(),
            gas_volume_litres: Some(1),
            energy_wh: None,
            voltage_decivolts: Some(2_300),
            current_milliamps: Some(5_000),
            gas_temperature_centi_celsius: Some(-512),
            gas_pressure_pa: Some(102_000),
        }
    }

    #[test]
    fn plausible_readings_pass() {
        assert_eq!(check_reading(&reading()), Ok(()));
    }

    #[test]
    fn each_implausible_value_is_named() {
        let cases = [
            (
                Reading {
                    battery_millivolts: 65_535,
                    ..reading()
                },
                "batteryMillivolts",
            ),
            (
                Reading {
                    voltage_decivolts: Some(4_000),
                    ..reading()
                },
                "voltageDecivolts",
            ),
            (
                Reading {
                    current_milliamps: Some(u32::MAX),
                    ..reading()
                },
                "currentMilliamps",
            ),
            (
                Reading {
                    gas_temperature_centi_celsius: Some(-32_768),
                    ..reading()
                },
                "gasTemperatureCentiCelsius",
            ),
            (
                Reading {
                    gas_pressure_pa: Some(u32::MAX),
                    ..reading()
                },
                "gasPressurePa",
            ),
        ];
        for (r, field) in cases {
            let err = check_reading(&r).expect_err(field);
            assert!(err.starts_with(field), "{err}");
        }
    }
}
