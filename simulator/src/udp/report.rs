//! What a run through gateways did, counted as it goes: for the progress line, the summary
//! at the end and its JSON form (`--summary-json`), which names the readings a server must
//! hold for each meter.

use std::time::Duration;

use serde_json::{Value, json};

use super::gateway::GatewayCounters;
use crate::faults::Built;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UdpReport {
    /// Meters in the fleet.
    pub meters: u64,
    /// Meters with a session at the end.
    pub joined: u64,
    /// JoinRequests sent.
    pub join_requests: u64,
    /// JoinAccepts taken (sessions opened).
    pub join_accepts: u64,
    /// Joins retried after no JoinAccept came.
    pub join_retries: u64,
    /// Data uplinks sent.
    pub uplinks: u64,
    /// Of which readings.
    pub readings: u64,
    /// Readings of registered meters that left the gateways for the network server: what a
    /// server must store, unless the network between them lost some (see the PUSH_DATA
    /// acknowledgements).
    pub registered_readings: u64,
    /// The same, per meter, indexed by the meter's position in the fleet (its DevEUI is
    /// `70b3d57e` followed by the index as 8 hex digits).
    pub expected_by_meter: Vec<u32>,
    /// Tamper alarms the meters sent.
    pub tamper_alarms: u64,
    /// Of those, the ones of registered meters that a gateway forwarded: a server must store
    /// them, unless the network between them lost some.
    pub expected_tamper_alarms: u64,
    /// Uplinks the firmware owed before its meter had joined (not sent).
    pub not_joined: u64,
    /// Data downlinks taken by a device (MIC, DevAddr and counter checked).
    pub downlinks: u64,
    /// Downlink frames no device took (wrong MIC, unknown DevAddr, replayed counter, garbage).
    pub rejected_frames: u64,
    /// Datagrams that were not protocol (too short, wrong version, bad JSON, bad base64).
    pub malformed: u64,
    /// Errors sending datagrams.
    pub send_errors: u64,
    /// The gateways' counters, summed.
    pub gateways: GatewayCounters,
    /// What the radio constraints did.
    pub radio: RadioCounts,
    /// What the faults on demand did.
    pub faults: FaultCounts,
}

/// What the faults on demand did (see [`super::faults`]), named as on the integration
/// transport where they mean the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames sent that no gateway heard.
    pub lost: u64,
    /// Frames built during a silent spell, not sent.
    pub silent: u64,
    /// Silent spells begun.
    pub silences: u64,
    /// Frames whose payload was garbled before encryption.
    pub garbled: u64,
    /// Frames whose serial has a wrong check digit.
    pub bad_serial: u64,
    /// Clock jumps.
    pub clock_jumps: u64,
    /// Frame-counter restarts.
    pub f_cnt_resets: u64,
    /// Frames forwarded with a counter at or below the last one forwarded in their session,
    /// which ChirpStack's frame-counter validation drops (not in the expected readings).
    pub f_cnt_behind: u64,
    /// PUSH_DATA datagrams sent twice.
    pub duplicates: u64,
    /// Frames a second gateway heard too.
    pub second_paths: u64,
    /// Frames the meter sent again.
    pub retransmissions: u64,
}

impl FaultCounts {
    /// Counts what the faults did to a frame as the meter built it.
    pub fn built(&mut self, built: &Built) {
        self.garbled += u64::from(built.garbled);
        self.bad_serial += u64::from(built.bad_serial);
        self.clock_jumps += u64::from(built.clock_jump);
        self.f_cnt_resets += u64::from(built.f_cnt_reset);
    }

    /// Faults injected in all (a silent spell counts once; `f_cnt_behind` is an effect of the
    /// resets, not a fault of its own).
    pub fn total(&self) -> u64 {
        self.lost
            + self.silences
            + self.garbled
            + self.bad_serial
            + self.clock_jumps
            + self.f_cnt_resets
            + self.duplicates
            + self.second_paths
            + self.retransmissions
    }

    fn to_json(self) -> Value {
        json!({
            "lost": self.lost,
            "silent": self.silent,
            "silences": self.silences,
            "garbled": self.garbled,
            "badSerial": self.bad_serial,
            "clockJumps": self.clock_jumps,
            "fCntResets": self.f_cnt_resets,
            "fCntBehind": self.f_cnt_behind,
            "duplicates": self.duplicates,
            "secondPaths": self.second_paths,
            "retransmissions": self.retransmissions,
        })
    }
}

/// What the radio constraints did (see [`super::runner::Realism`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RadioCounts {
    /// Time on air of every data uplink sent, µs.
    pub airtime_us: u64,
    /// Frames a meter held back for its duty cycle (each time it had to wait).
    pub deferred: u64,
    /// Frames a meter gave up because its duty cycle would have held them back a reporting
    /// interval or more.
    pub dropped: u64,
    /// Uplinks lost in a collision at their gateway.
    pub collided: u64,
    /// Downlinks that reached the gateway after the moment they were for (TX_ACK
    /// `TOO_LATE`): the meter missed them.
    pub too_late: u64,
}

impl UdpReport {
    /// An empty report for a fleet of `meters`.
    pub fn for_fleet(meters: usize) -> UdpReport {
        UdpReport {
            meters: meters as u64,
            expected_by_meter: vec![0; meters],
            ..UdpReport::default()
        }
    }

    /// Counts a reading of meter `index` that a gateway forwarded as a new uplink; `stores`
    /// says whether the server must store it: the meter is in the registry (otherwise the
    /// server quarantines it), and its payload decodes with a valid serial.
    pub fn forwarded_reading(&mut self, index: u32, stores: bool) {
        if stores {
            self.registered_readings += 1;
            if let Some(n) = self.expected_by_meter.get_mut(index as usize) {
                *n += 1;
            }
        }
    }

    /// One line of progress.
    pub fn progress_line(&self, rate: f64, elapsed: Duration) -> String {
        format!(
            "{:>6.0} s  joined {}/{}  uplinks {} ({rate:.0}/s)  downlinks {}  push acked {}/{}  \
             rejected {}  malformed {}  faults {}",
            elapsed.as_secs_f64(),
            self.joined,
            self.meters,
            self.uplinks,
            self.downlinks,
            self.gateways.push_acked,
            self.gateways.push_sent,
            self.rejected_frames,
            self.malformed,
            self.faults.total()
        )
    }

    /// The closing summary.
    pub fn summary(&self, elapsed: Duration) -> String {
        let g = &self.gateways;
        let f = &self.faults;
        format!(
            "{} meters, {} joined ({} JoinRequests, {} accepted, {} retries); {} uplinks \
             ({} readings, {} for the server to store; {} tamper alarms) in {:.1} s, {} owed \
             before joining; {} downlinks taken, {} frames \
             rejected, {} malformed datagrams; PUSH_DATA {} sent / {} acked, PULL_DATA {} / {}, \
             {} unacknowledged, {} unmatched acks, {} TX_ACKs, {} send errors\n\
             radio: {:.1} s on air, {} frames held back by the duty cycle, {} given up, {} lost \
             in collisions, {} downlinks too late for their receive window\n\
             faults: lost {}, silent {} (in {} spells), garbled {}, bad serial {}, clock jumps \
             {}, fCnt resets {} ({} frames behind the last counter), duplicates {}, second \
             paths {}, retransmissions {}\n",
            self.meters,
            self.joined,
            self.join_requests,
            self.join_accepts,
            self.join_retries,
            self.uplinks,
            self.readings,
            self.registered_readings,
            self.tamper_alarms,
            elapsed.as_secs_f64(),
            self.not_joined,
            self.downlinks,
            self.rejected_frames,
            self.malformed,
            g.push_sent,
            g.push_acked,
            g.pull_sent,
            g.pull_acked,
            g.unacknowledged,
            g.unmatched_acks,
            g.tx_acks,
            self.send_errors,
            self.radio.airtime_us as f64 / 1e6,
            self.radio.deferred,
            self.radio.dropped,
            self.radio.collided,
            self.radio.too_late,
            f.lost,
            f.silent,
            f.silences,
            f.garbled,
            f.bad_serial,
            f.clock_jumps,
            f.f_cnt_resets,
            f.f_cnt_behind,
            f.duplicates,
            f.second_paths,
            f.retransmissions,
        )
    }

    /// The report as JSON (`meterhub-sim run --transport udp --summary-json`): totals, the
    /// gateways' counters, and the readings each meter must have stored
    /// (`expectedReadingsByMeter[i]` for meter `i`), as in the integration transport's.
    pub fn to_json(&self) -> Value {
        let g = &self.gateways;
        json!({
            "transport": "udp",
            "meters": self.meters,
            "joined": self.joined,
            "joinRequests": self.join_requests,
            "joinAccepts": self.join_accepts,
            "joinRetries": self.join_retries,
            "uplinks": self.uplinks,
            "readings": self.readings,
            "expectedReadings": self.registered_readings,
            "tamperAlarms": self.tamper_alarms,
            "expectedTamperAlarms": self.expected_tamper_alarms,
            "notJoined": self.not_joined,
            "downlinks": self.downlinks,
            "rejectedFrames": self.rejected_frames,
            "malformed": self.malformed,
            "sendErrors": self.send_errors,
            "gateways": {
                "pushSent": g.push_sent,
                "pushAcked": g.push_acked,
                "pullSent": g.pull_sent,
                "pullAcked": g.pull_acked,
                "unmatchedAcks": g.unmatched_acks,
                "unacknowledged": g.unacknowledged,
                "framesUp": g.frames_up,
                "framesDown": g.frames_down,
                "txAcks": g.tx_acks,
            },
            "radio": {
                "airtimeMs": self.radio.airtime_us / 1_000,
                "dutyCycleDeferred": self.radio.deferred,
                "dutyCycleDropped": self.radio.dropped,
                "collisions": self.radio.collided,
                "downlinksTooLate": self.radio.too_late,
            },
            "faults": self.faults.to_json(),
            "expectedReadingsByMeter": self.expected_by_meter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_summary_counts_registered_readings_per_meter() {
        let mut report = UdpReport::for_fleet(3);
        report.forwarded_reading(0, true);
        report.forwarded_reading(2, true);
        report.forwarded_reading(2, true);
        report.forwarded_reading(1, false);
        report.gateways.push_acked = 7;
        report.faults.garbled = 2;
        report.faults.f_cnt_behind = 1;
        let json = report.to_json();
        assert_eq!(json["faults"]["garbled"], 2);
        assert_eq!(json["faults"]["fCntBehind"], 1);
        assert!(
            report
                .summary(Duration::from_secs(1))
                .contains("garbled 2, bad serial 0")
        );
        assert_eq!(json["expectedReadings"], 3);
        assert_eq!(json["expectedReadingsByMeter"], json!([1, 0, 2]));
        assert_eq!(json["gateways"]["pushAcked"], 7);
        assert_eq!(json["meters"], 3);
    }
}
