//! What a run did, counted as it goes: for the live progress line, the summary at the end,
//! and its JSON form (`meterhub-sim run --summary-json`), which tests read to know exactly
//! which readings a server must hold.

use std::time::Duration;

use serde_json::{Value, json};

use crate::simulation::{Emitted, Fate};

/// Uplinks that faults touched, by fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Not heard by any gateway.
    pub lost: u64,
    /// Sent during a silent spell.
    pub silent: u64,
    /// Silent spells begun.
    pub silences: u64,
    /// Refused by ChirpStack's frame-counter check (a `log` instead of an `up`).
    pub discarded: u64,
    /// Payloads garbled.
    pub garbled: u64,
    /// Frames with a wrong serial check digit.
    pub bad_serial: u64,
    /// Clock jumps.
    pub clock_jumps: u64,
    /// Frame-counter restarts.
    pub f_cnt_resets: u64,
    /// `up` events published twice with the same `deduplicationId`.
    pub duplicates: u64,
    /// `up` events published again under a new `deduplicationId`.
    pub second_paths: u64,
    /// Uplinks whose events were held back behind later ones.
    pub reordered: u64,
    /// Retransmissions ChirpStack logged.
    pub retransmissions: u64,
}

impl FaultCounts {
    /// Counts the faults of one uplink.
    pub fn add(&mut self, e: &Emitted) {
        let t = &e.touched;
        let add = |n: &mut u64, yes: bool| *n += u64::from(yes);
        add(&mut self.lost, e.fate == Fate::Lost);
        add(&mut self.silent, e.fate == Fate::Silent);
        add(&mut self.silences, t.silence_started);
        add(&mut self.discarded, e.fate == Fate::Discarded);
        add(&mut self.garbled, t.garbled);
        add(&mut self.bad_serial, t.bad_serial);
        add(&mut self.clock_jumps, t.clock_jump);
        add(&mut self.f_cnt_resets, t.f_cnt_reset);
        add(&mut self.duplicates, t.duplicate);
        add(&mut self.second_paths, t.second_path);
        add(&mut self.reordered, t.reordered);
        add(&mut self.retransmissions, t.retransmission);
    }

    /// Faults injected in all (a silent spell counts once, where it begins; the uplinks sent
    /// during it are in `silent`).
    pub fn total(&self) -> u64 {
        self.lost
            + self.silences
            + self.discarded
            + self.garbled
            + self.bad_serial
            + self.clock_jumps
            + self.f_cnt_resets
            + self.duplicates
            + self.second_paths
            + self.reordered
            + self.retransmissions
    }

    fn to_json(self) -> Value {
        json!({
            "lost": self.lost,
            "silent": self.silent,
            "silences": self.silences,
            "discarded": self.discarded,
            "garbled": self.garbled,
            "badSerial": self.bad_serial,
            "clockJumps": self.clock_jumps,
            "fCntResets": self.f_cnt_resets,
            "duplicates": self.duplicates,
            "secondPaths": self.second_paths,
            "reordered": self.reordered,
            "retransmissions": self.retransmissions,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Uplinks the meters sent (frames), heard or not.
    pub uplinks: u64,
    /// Readings among them.
    pub readings: u64,
    /// Readings the server must store, exactly: readings of registered meters that ChirpStack
    /// published with an intact payload and a valid serial (see `Emitted::stores_reading`).
    pub registered_readings: u64,
    /// The same, per meter, indexed by the meter's position in the fleet (its DevEUI is
    /// `70b3d57e` followed by the index as 8 hex digits).
    pub expected_by_meter: Vec<u32>,
    /// MQTT messages published (events of every type, duplicates included).
    pub published: u64,
    /// Of those, acknowledged by the broker (QoS 1 PUBACK).
    pub acknowledged: u64,
    /// Tamper alarms the meters raised (sent, heard or not).
    pub tamper_alarms: u64,
    /// Of those, the ones the server must store (see `Emitted::stores_tamper_alarm`).
    pub expected_tamper_alarms: u64,
    /// Downlinks received and queued.
    pub downlinks: u64,
    /// Downlinks refused (unknown device, duplicate id, fPort 0, unreadable).
    pub refused: u64,
    /// MQTT connection errors.
    pub mqtt_errors: u64,
    /// Meters neither disconnected nor silent, at the last count.
    pub active_meters: u64,
    /// Faults injected.
    pub faults: FaultCounts,
}

impl Report {
    /// An empty report for a fleet of `meters`.
    pub fn for_fleet(meters: usize) -> Report {
        Report {
            expected_by_meter: vec![0; meters],
            ..Report::default()
        }
    }

    /// Counts one uplink (its messages are counted as they are published).
    pub fn add(&mut self, e: &Emitted) {
        self.uplinks += 1;
        self.readings += u64::from(e.reading);
        self.tamper_alarms += u64::from(e.tamper);
        self.expected_tamper_alarms += u64::from(e.stores_tamper_alarm());
        if e.stores_reading() {
            self.registered_readings += 1;
            if let Some(n) = self.expected_by_meter.get_mut(e.meter as usize) {
                *n += 1;
            }
        }
        self.faults.add(e);
    }

    /// Errors of any kind: broken connections and refused commands.
    pub fn errors(&self) -> u64 {
        self.mqtt_errors + self.refused
    }

    /// One progress line: where the run is and what it has met; `rate` is uplinks a second
    /// since the last line.
    pub fn progress_line(&self, rate: f64, elapsed: Duration) -> String {
        format!(
            "[{:>6.1} s] meters active {}, uplinks {} ({rate:.0}/s), published {}, downlinks {}, \
             errors {}, faults {}",
            elapsed.as_secs_f64(),
            self.active_meters,
            self.uplinks,
            self.published,
            self.downlinks,
            self.errors(),
            self.faults.total()
        )
    }

    /// The summary printed at the end of a run that took `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> String {
        let f = &self.faults;
        format!(
            "{} uplinks in {:.1} s ({:.0}/s), {} readings; {} readings for the server to store; \
             {} tamper alarms ({} for the server to store); \
             {} MQTT messages published, {} acknowledged by the broker\n\
             downlinks {} queued, {} refused; MQTT errors {}\n\
             faults: lost {}, silent {} (in {} spells), discarded by fCnt check {}, garbled {}, \
             bad serial {}, clock jumps {}, fCnt resets {}, duplicates {}, second paths {}, \
             reordered {}, retransmissions {}\n",
            self.uplinks,
            elapsed.as_secs_f64(),
            self.uplinks as f64 / elapsed.as_secs_f64().max(1e-3),
            self.readings,
            self.registered_readings,
            self.tamper_alarms,
            self.expected_tamper_alarms,
            self.published,
            self.acknowledged,
            self.downlinks,
            self.refused,
            self.mqtt_errors,
            f.lost,
            f.silent,
            f.silences,
            f.discarded,
            f.garbled,
            f.bad_serial,
            f.clock_jumps,
            f.f_cnt_resets,
            f.duplicates,
            f.second_paths,
            f.reordered,
            f.retransmissions,
        )
    }

    /// The report as JSON: totals, faults by kind, and the readings each meter must have
    /// stored (`expectedReadingsByMeter[i]` for meter `i`).
    pub fn to_json(&self) -> Value {
        json!({
            "uplinks": self.uplinks,
            "readings": self.readings,
            "expectedReadings": self.registered_readings,
            "tamperAlarms": self.tamper_alarms,
            "expectedTamperAlarms": self.expected_tamper_alarms,
            "published": self.published,
            "acknowledged": self.acknowledged,
            "downlinks": self.downlinks,
            "refused": self.refused,
            "mqttErrors": self.mqtt_errors,
            "activeMeters": self.active_meters,
            "faults": self.faults.to_json(),
            "expectedReadingsByMeter": self.expected_by_meter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Faults;
    use crate::fleet::FleetSpec;
    use crate::simulation::Simulation;

    #[test]
    fn the_json_summary_names_what_each_meter_must_have_stored() {
        let spec = FleetSpec {
            meters: 50,
            reporting_interval_minutes: 60,
            unregistered_share: 0.1,
            faults: Faults {
                loss: 0.1,
                garble: 0.1,
                duplicate: 0.1,
                ..Faults::default()
            },
            ..FleetSpec::default()
        };
        let mut sim = Simulation::new(&spec, 1_784_678_400);
        let mut report = Report::for_fleet(sim.len());
        let mut stored = vec![0u32; sim.len()];
        for _ in 0..2_000 {
            let e = sim.emit().expect("emits").expect("an uplink");
            if e.stores_reading() {
                stored[e.meter as usize] += 1;
            }
            report.add(&e);
        }
        assert_eq!(report.uplinks, 2_000);
        assert_eq!(report.expected_by_meter, stored);
        assert_eq!(
            u64::from(stored.iter().sum::<u32>()),
            report.registered_readings
        );
        assert!(report.registered_readings < report.readings);
        assert!(report.faults.lost > 0 && report.faults.garbled > 0);
        let json = report.to_json();
        assert_eq!(json["expectedReadings"], report.registered_readings);
        assert_eq!(json["faults"]["lost"], report.faults.lost);
        let by_meter = json["expectedReadingsByMeter"].as_array().expect("array");
        assert_eq!(by_meter.len(), 50);
        assert_eq!(by_meter[7], stored[7]);
        assert!(report.summary(Duration::from_secs(1)).contains(&format!(
            "{} readings for the server to store",
            report.registered_readings
        )));
    }
}
