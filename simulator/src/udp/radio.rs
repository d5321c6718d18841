//! Radio metadata of a received frame, plausible for EU868: the three default channels, a
//! spreading factor per meter (most meters close enough for SF7, cellar meters at SF12) and
//! signal figures that worsen with it, with a little noise per frame.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::packet_forwarder::RxPk;
use crate::rng::Pcg32;

/// The EU868 default channels, MHz: all three in sub-band g1 (868.0–868.6 MHz, 1 % duty
/// cycle), so a device's duty cycle is one budget whichever it picks.
const CHANNELS: [f64; 3] = [868.1, 868.3, 868.5];

/// A channel for the next frame, drawn from `noise` (a device hops at random).
pub fn pick_channel(noise: &mut Pcg32) -> u8 {
    noise.range(0, CHANNELS.len() as i64 - 1) as u8
}

/// Mixed into the seed for the meters' radio conditions.
const RADIO_STREAM: u64 = 0x7ad1_0000;

/// Spreading factors and their shares of the fleet, cumulative.
const SF_SHARES: [(u8, f64); 6] = [
    (7, 0.45),
    (8, 0.65),
    (9, 0.80),
    (10, 0.90),
    (11, 0.95),
    (12, 1.0),
];

/// A meter's spreading factor: fixed for the meter (its place does not move).
pub fn spreading_factor(seed: u64, index: u32) -> u8 {
    let draw = Pcg32::new(seed ^ RADIO_STREAM, u64::from(index)).unit();
    SF_SHARES
        .iter()
        .find(|(_, share)| draw < *share)
        .map_or(12, |(sf, _)| *sf)
}

/// The `rxpk` of `frame` from meter `index` on `channel` (see [`pick_channel`]), received when
/// the concentrator counter read `tmst` at `time`; `noise` draws the per-frame variation.
pub fn rxpk(
    seed: u64,
    index: u32,
    frame: &[u8],
    channel: u8,
    tmst: u32,
    time: DateTime<Utc>,
    noise: &mut Pcg32,
) -> RxPk {
    let sf = spreading_factor(seed, index);
    let channel = usize::from(channel);
    // Each step of spreading factor buys about 2.5 dB of link budget: the weaker meters sit
    // at the higher factors.
    let steps = f64::from(sf - 7);
    let rssi = -75.0 - 8.0 * steps + noise.range(-8, 8) as f64;
    let lsnr = 9.0 - 3.0 * steps + noise.range(-20, 20) as f64 / 10.0;
    RxPk {
        time: Some(time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        tmst,
        chan: channel as u8,
        rfch: 1,
        freq: CHANNELS.get(channel).copied().unwrap_or(CHANNELS[0]),
        stat: 1,
        modu: "LORA".into(),
        datr: format!("SF{sf}BW125"),
        codr: "4/5".into(),
        lsnr: (lsnr * 10.0).round() / 10.0,
        rssi: rssi as i32,
        size: frame.len() as u16,
        data: STANDARD.encode(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_eu868_and_plausible() {
        let mut noise = Pcg32::new(1, 1);
        let mut sfs = [0u32; 13];
        for i in 0..1_000 {
            let channel = pick_channel(&mut noise);
            let p = rxpk(
                1,
                i,
                &[0x40; 20],
                channel,
                42,
                DateTime::UNIX_EPOCH,
                &mut noise,
            );
            assert_eq!(p.chan, channel);
            assert!(CHANNELS.contains(&p.freq));
            assert!((-140..-40).contains(&p.rssi), "{}", p.rssi);
            assert!((-20.0..15.0).contains(&p.lsnr));
            assert_eq!(p.size, 20);
            let sf: usize = p.datr[2..p.datr.len() - 5].parse().expect("SF");
            sfs[sf] += 1;
        }
        assert!(sfs[7] > 350 && sfs[12] > 10, "{sfs:?}");
        assert_eq!(spreading_factor(1, 5), spreading_factor(1, 5));
    }
}
