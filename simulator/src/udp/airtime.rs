//! How long a frame occupies the air, and how long its sender must then keep quiet: the LoRa
//! time on air of Semtech's formula (AN1200.13, "LoRa Modem Designer's Guide") and the EU868
//! duty-cycle limit of ETSI EN 300 220 as LoRaWAN's regional parameters apply it.

/// Bandwidth of every channel the simulator uses, Hz.
const BANDWIDTH_HZ: i64 = 125_000;

/// Preamble symbols of a LoRaWAN frame in EU868.
const PREAMBLE_SYMBOLS: i64 = 8;

/// Coding rate 4/5, as the formula counts it (CR = 1).
const CODING_RATE: i64 = 1;

/// Share of time a device may transmit in sub-band g1 (868.0–868.6 MHz), which holds the three
/// default channels: 1 %.
pub const DUTY_CYCLE: f64 = 0.01;

/// Time on air of a LoRa frame of `payload` bytes (the whole PHYPayload) at spreading factor
/// `sf` on a 125 kHz channel, coding rate 4/5, 8-symbol preamble, explicit header, CRC on (as
/// every LoRaWAN uplink), low-data-rate optimisation at SF11 and SF12; microseconds.
pub fn time_on_air_us(sf: u8, payload: usize) -> i64 {
    let sf = i64::from(sf.clamp(6, 12));
    let low_data_rate = i64::from(sf >= 11);
    // Symbol time 2^SF / BW, kept in nanoseconds so every figure below is exact.
    let symbol_ns = (1_000_000_000_i64 << sf) / BANDWIDTH_HZ;
    let bits = 8 * payload as i64 - 4 * sf + 28 + 16;
    let per_block = 4 * (sf - 2 * low_data_rate);
    let blocks = if bits > 0 {
        (bits + per_block - 1) / per_block
    } else {
        0
    };
    let payload_symbols = 8 + blocks * (CODING_RATE + 4);
    // The preamble lasts n + 4.25 symbols.
    let preamble_quarter_symbols = 4 * PREAMBLE_SYMBOLS + 17;
    let ns = symbol_ns * payload_symbols + symbol_ns * preamble_quarter_symbols / 4;
    ns / 1_000
}

/// When a device that started sending at `start_us` for `air_us` may send again in the same
/// sub-band: it must stay off for air time × (1 / duty cycle − 1) after the frame ends.
pub fn next_allowed_us(start_us: i64, air_us: i64) -> i64 {
    start_us + (air_us as f64 / DUTY_CYCLE).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures published for an 11-byte application payload (a 24-byte PHYPayload), the
    /// largest US915 allows at DR0 under its 400 ms dwell-time limit: 370.688 ms at SF10,
    /// where 25 bytes would take 411.648 ms. And EU868's largest DR0 frame, a 51-byte
    /// application payload, takes 2 793.472 ms at SF12.
    #[test]
    fn time_on_air_matches_the_published_figures() {
        let figures_24_bytes = [
            (7, 61_696),
            (8, 113_152),
            (9, 205_824),
            (10, 370_688),
            (11, 823_296),
            (12, 1_482_752),
        ];
        for (sf, us) in figures_24_bytes {
            assert_eq!(time_on_air_us(sf, 24), us, "SF{sf}");
        }
        assert_eq!(time_on_air_us(10, 25), 411_648);
        assert_eq!(time_on_air_us(12, 64), 2_793_472);
        // A JoinRequest (23 bytes) at SF7; a gas reading (38 bytes) at SF7 and SF12, as
        // docs/simulator.md gives them.
        assert_eq!(time_on_air_us(7, 23), 61_696);
        assert_eq!(time_on_air_us(7, 38), 82_176);
        assert_eq!(time_on_air_us(12, 38), 1_974_272);
    }

    #[test]
    fn a_longer_frame_or_a_higher_factor_takes_longer() {
        for sf in 7..12 {
            assert!(time_on_air_us(sf + 1, 30) > time_on_air_us(sf, 30));
        }
        assert!(time_on_air_us(7, 60) > time_on_air_us(7, 20));
    }

    #[test]
    fn one_percent_keeps_a_device_off_for_99_times_its_air_time() {
        let air = time_on_air_us(12, 24);
        let next = next_allowed_us(1_000_000, air);
        assert_eq!(next - (1_000_000 + air), 99 * air);
    }
}
