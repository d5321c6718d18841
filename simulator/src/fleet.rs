//! A fleet: how many meters of which kind, where, how often they report, and the registry
//! file `meterhub meters import` reads.

use std::fmt::Write as _;

use firmware_protocol::{Serial, ValveState};

use crate::faults::{self, Faults};
use crate::meter::Meter;
use crate::profile::Medium;
use crate::rng::Pcg32;

/// The ChirpStack application of a fleet when none is given.
pub const DEFAULT_APPLICATION_ID: &str = "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23";

/// What a fleet is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// Number of meters.
    pub meters: u32,
    /// Share of electricity meters (the rest are gas), 0–1.
    pub electricity_share: f64,
    /// Regions the meters are spread over.
    pub regions: Vec<String>,
    /// Minutes between readings.
    pub reporting_interval_minutes: u16,
    /// Seed of every random choice.
    pub seed: u64,
    /// ChirpStack application the meters belong to.
    pub application_id: String,
    /// Share of meters left out of the registry file (the server quarantines their data).
    pub unregistered_share: f64,
    /// Faults on demand (none by default).
    pub faults: Faults,
    /// Per periodic reading, the chance that the meter detects tampering before its next one
    /// (a magnet held against it, movement, or a cut cable) and raises the alarm at once;
    /// 0–1, none by default. Drawn from each meter's fault stream.
    pub tamper: f64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            meters: 1_000,
            electricity_share: 0.5,
            regions: vec!["north".into(), "south".into(), "east".into(), "west".into()],
            reporting_interval_minutes: 1_440,
            seed: 1,
            application_id: DEFAULT_APPLICATION_ID.into(),
            unregistered_share: 0.0,
            faults: Faults::default(),
            tamper: 0.0,
        }
    }
}

/// The meters of a fleet, at true time `start` (Unix seconds).
pub fn build(spec: &FleetSpec, start: i64) -> Vec<Meter> {
    let interval = i64::from(spec.reporting_interval_minutes.max(1)) * 60;
    (0..spec.meters)
        .map(|index| {
            let mut rng = Pcg32::for_meter(spec.seed, index);
            let medium = if rng.chance(spec.electricity_share) {
                Medium::Electricity
            } else {
                Medium::Gas
            };
            let digit = match medium {
                Medium::Gas => 1,
                Medium::Electricity => 2,
            };
            // Manufacturer 12, production year 26; the sequence is the index, so serials are
            // unique within the fleet and valid by construction.
            let serial = Serial::new(12, 26, digit, index % 100_000_000)
                .expect("every part is within its digits");
            let mut dev_eui = [0x70, 0xb3, 0xd5, 0x7e, 0, 0, 0, 0];
            dev_eui[4..].copy_from_slice(&index.to_be_bytes());
            Meter {
                index,
                dev_eui,
                serial,
                medium,
                scale: 0.5 + rng.unit() * 1.5,
                drift_ppm: rng.range(-40, 40) as f64,
                clock_offset: rng.range(-5, 5) as f64,
                register: rng.range(0, 50_000_000) as f64,
                battery_microvolts: rng.range(3_400_000, 3_650_000) as u32,
                valve: match medium {
                    Medium::Gas => ValveState::Open,
                    Medium::Electricity => ValveState::NotFitted,
                },
                f_cnt: 0,
                // Spread first readings over one interval so the load is even.
                last_reading: start - rng.range(0, interval - 1),
                interval,
                rng,
                time_token: 0,
                disconnected: false,
                faults: faults::meter_stream(spec.seed, index),
                silent_until: i64::MIN,
                bad_serial: Pcg32::new(spec.seed ^ 0xba5e, u64::from(index))
                    .chance(spec.faults.bad_serial_share),
                clock_sync_period: None,
                clock_sync_generation: 0,
                resync_remaining: 0,
                booted: false,
                tampered: false,
            }
        })
        .collect()
}

/// Whether a meter is left out of the registry.
pub fn is_unregistered(spec: &FleetSpec, meter: &Meter) -> bool {
    Pcg32::new(spec.seed ^ 0x5eed, u64::from(meter.index)).chance(spec.unregistered_share)
}

/// The CSV registry of a fleet, in the format of `meterhub meters import`.
pub fn registry_csv(spec: &FleetSpec, meters: &[Meter]) -> String {
    let mut out = String::from(
        "serial,devEui,applicationId,bodyNumber,userId,region,usageType,mode,productionDate,reportingIntervalMinutes\n",
    );
    for m in meters.iter().filter(|m| !is_unregistered(spec, m)) {
        let region = spec
            .regions
            .get(m.index as usize % spec.regions.len().max(1))
            .map_or("default", String::as_str);
        let _ = writeln!(
            out,
            "{},{},{},{},user-{},{},residential,credit,2026-01-15,{}",
            m.serial,
            m.dev_eui_hex(),
            spec.application_id,
            1_000_000 + m.index,
            m.index,
            region,
            spec.reporting_interval_minutes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_builds_the_same_fleet() {
        let spec = FleetSpec::default();
        let a = build(&spec, 1_784_678_400);
        let b = build(&spec, 1_784_678_400);
        assert_eq!(registry_csv(&spec, &a), registry_csv(&spec, &b));
        assert_eq!(
            a.iter().map(|m| m.drift_ppm).collect::<Vec<_>>(),
            b.iter().map(|m| m.drift_ppm).collect::<Vec<_>>()
        );
        let other = build(&FleetSpec { seed: 2, ..spec }, 1_784_678_400);
        assert_ne!(
            a.iter().map(|m| m.drift_ppm).collect::<Vec<_>>(),
            other.iter().map(|m| m.drift_ppm).collect::<Vec<_>>()
        );
    }

    #[test]
    fn serials_and_dev_euis_are_valid_and_unique() {
        let meters = build(&FleetSpec::default(), 0);
        let mut serials: Vec<_> = meters.iter().map(|m| m.serial).collect();
        let mut euis: Vec<_> = meters.iter().map(|m| m.dev_eui).collect();
        serials.sort();
        serials.dedup();
        euis.sort();
        euis.dedup();
        assert_eq!((serials.len(), euis.len()), (1_000, 1_000));
        let share = meters
            .iter()
            .filter(|m| m.medium == Medium::Electricity)
            .count();
        assert!((400..600).contains(&share), "{share}");
    }

    #[test]
    fn the_unregistered_share_is_left_out_of_the_registry() {
        let spec = FleetSpec {
            unregistered_share: 0.1,
            ..FleetSpec::default()
        };
        let meters = build(&spec, 0);
        let rows = registry_csv(&spec, &meters).lines().count() - 1;
        assert!((850..950).contains(&rows), "{rows}");
    }
}
