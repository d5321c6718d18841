//! The fleet's OTAA root keys: each meter's AppKey follows from the fleet seed (or one key is
//! given for all), so a run and the CSV a network server is provisioned from always agree.

use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::meter::Meter;
use crate::rng::Pcg32;

/// Mixed into the seed so that keys draw from a stream no other choice uses.
const KEY_STREAM: u64 = 0x0a99_4e75;

/// How the fleet's devices join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetKeys {
    /// The fleet seed the AppKeys follow from.
    pub seed: u64,
    /// One AppKey for every meter instead of one each.
    pub app_key: Option<[u8; 16]>,
    /// JoinEUI (AppEUI) of every meter, most significant byte first.
    pub join_eui: [u8; 8],
}

impl FleetKeys {
    /// Keys for the fleet of `seed`, one AppKey per meter, JoinEUI 0.
    pub fn for_seed(seed: u64) -> FleetKeys {
        FleetKeys {
            seed,
            app_key: None,
            join_eui: [0; 8],
        }
    }

    /// The AppKey of meter `index`: computed, not stored, so a million meters cost nothing.
    pub fn app_key(&self, index: u32) -> [u8; 16] {
        if let Some(key) = self.app_key {
            return key;
        }
        let mut rng = Pcg32::new(self.seed ^ KEY_STREAM, u64::from(index));
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(4) {
            chunk.copy_from_slice(&rng.next_u32().to_be_bytes());
        }
        key
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses `N` bytes from hex (most significant first).
pub fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        bail!("{text:?} is not {} hex digits", 2 * N);
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| anyhow::anyhow!("{text:?} is not hex"))?;
    }
    Ok(out)
}

/// The CSV a network server is provisioned from: every meter (registered in meterhub or
/// not: ChirpStack must let them all join), `devEui,joinEui,appKey`.
pub fn keys_csv(keys: &FleetKeys, meters: &[Meter]) -> String {
    let mut out = String::from("devEui,joinEui,appKey\n");
    for m in meters {
        let _ = writeln!(
            out,
            "{},{},{}",
            m.dev_eui_hex(),
            hex(&keys.join_eui),
            hex(&keys.app_key(m.index))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_keys_follow_from_the_seed_and_differ_between_meters() {
        let a = FleetKeys::for_seed(1);
        assert_eq!(a.app_key(7), FleetKeys::for_seed(1).app_key(7));
        assert_ne!(a.app_key(7), a.app_key(8));
        assert_ne!(a.app_key(7), FleetKeys::for_seed(2).app_key(7));
        let given = FleetKeys {
            app_key: Some([9; 16]),
            ..a
        };
        assert_eq!(given.app_key(3), [9; 16]);
    }

    #[test]
    fn the_keys_csv_lists_every_meter_with_its_own_key() {
        let spec = crate::fleet::FleetSpec {
            meters: 3,
            unregistered_share: 1.0,
            ..crate::fleet::FleetSpec::default()
        };
        let keys = FleetKeys::for_seed(spec.seed);
        let csv = keys_csv(&keys, &crate::fleet::build(&spec, 0));
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines[0], "devEui,joinEui,appKey");
        assert_eq!(lines.len(), 4, "unregistered meters join too");
        assert_eq!(
            lines[2],
            format!(
                "70b3d57e00000001,0000000000000000,{}",
                hex(&keys.app_key(1))
            )
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_text() {
        let k: [u8; 8] = parse_hex("0016c001ff1e5a7b").expect("hex");
        assert_eq!(hex(&k), "0016c001ff1e5a7b");
        assert!(parse_hex::<8>("0016c001ff1e5a7").is_err());
        assert!(parse_hex::<2>("zz00").is_err());
        assert!(parse_hex::<2>("é0").is_err());
    }
}
