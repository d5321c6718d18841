//! One meter's firmware as state: its clock, registers, battery and valve, and the frames it
//! sends. A meter is a small struct driven by the scheduler, not a task.

use firmware_protocol::{
    Alarm, AlarmKind, Capabilities, ClockSyncDown, ClockSyncUp, ClockSyncUplink, Command, Date,
    DeviceInfo, DoorState, Downlink, FirmwareVersion, GpsTime, Reading, SelfTestResult, Serial,
    StatusFlags, Tests, Uplink, UsageType, ValveState, decode_downlink,
};

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
    /// Token of its last AppTimeReq; an AppTimeAns with another token is ignored.
    pub time_token: u8,
    /// Disconnected: it has stopped reporting.
    pub disconnected: bool,
    /// Its fault stream (see [`crate::faults`]), apart from `rng` so that faults never shift
    /// the draws its readings take.
    pub faults: Pcg32,
    /// Nothing it sends is heard before this true time (a silent spell), Unix seconds.
    pub silent_until: i64,
    /// Its frames carry its serial with a wrong check digit.
    pub bad_serial: bool,
    /// Seconds between the AppTimeReqs the server asked for with DeviceAppTimePeriodicityReq
    /// (TS003: 128·2^period); `None` until asked.
    pub clock_sync_period: Option<i64>,
    /// Bumped at every DeviceAppTimePeriodicityReq, so that the timer of an older period
    /// stops when it next fires.
    pub clock_sync_generation: u32,
    /// AppTimeReqs still owed after a ForceDeviceResyncReq; an AppTimeAns with the right
    /// token ends the series.
    pub resync_remaining: u8,
    /// It has sent its boot-time AppTimeReq.
    pub booted: bool,
    /// It raised a tamper alarm since its last reading, which then carries the tamper flag.
    pub tampered: bool,
}

/// The tamper alarms a meter's firmware raises: a magnet, movement, a cut cable.
pub const TAMPER_KINDS: [AlarmKind; 3] = [
    AlarmKind::MagneticTamper,
    AlarmKind::Movement,
    AlarmKind::CableCut,
];

/// Whether `kind` is one of the tamper alarms.
pub fn is_tamper(kind: AlarmKind) -> bool {
    TAMPER_KINDS.contains(&kind)
}

/// An uplink the firmware owes after a downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A reading now.
    Reading,
    /// Its device info.
    Info,
    /// The result of these self-tests.
    SelfTest(Tests),
    /// An alarm: the valve moved, or the meter detected tampering.
    Alarm(AlarmKind),
    /// A clock-sync request.
    AppTimeReq,
    /// A clock-sync uplink answering a server request.
    ClockSync(ClockSyncUp),
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

    /// Applies a downlink received at true time `now`, as the firmware would; returns the
    /// uplinks it owes. Frames it cannot decode are ignored, as a meter must.
    pub fn receive(&mut self, f_port: u8, data: &[u8], now: i64) -> Vec<Reply> {
        let Ok(message) = decode_downlink(f_port, data) else {
            return Vec::new();
        };
        match message {
            Downlink::ClockSync(commands) => {
                let mut replies = Vec::new();
                for c in commands.iter() {
                    match *c {
                        ClockSyncDown::AppTimeAns {
                            time_correction,
                            token_ans,
                        } => {
                            // The answer is for the request with this token only: an answer to an
                            // older request would apply a stale correction.
                            if token_ans == self.time_token {
                                self.clock_offset += f64::from(time_correction);
                                self.resync_remaining = 0;
                            }
                        }
                        ClockSyncDown::ForceDeviceResyncReq { nb_transmissions } => {
                            // TS003: up to NbTransmissions requests (3 bits), until one is
                            // answered; the scheduler spaces out the rest.
                            self.resync_remaining = nb_transmissions.min(7);
                            if nb_transmissions > 0 {
                                replies.push(Reply::AppTimeReq);
                            }
                        }
                        ClockSyncDown::DeviceAppTimePeriodicityReq { period } => {
                            // Every 128·2^period seconds; period is 4 bits on the wire.
                            self.clock_sync_period = Some(128 << (period & 0x0F));
                            self.clock_sync_generation = self.clock_sync_generation.wrapping_add(1);
                            replies.push(Reply::ClockSync(
                                ClockSyncUp::DeviceAppTimePeriodicityAns {
                                    not_supported: false,
                                    device_time: self.meter_time(now).0,
                                },
                            ))
                        }
                        ClockSyncDown::PackageVersionReq => {
                            replies.push(Reply::ClockSync(ClockSyncUp::PackageVersionAns {
                                package_identifier: firmware_protocol::CLOCK_SYNC_PACKAGE_ID,
                                package_version: firmware_protocol::CLOCK_SYNC_PACKAGE_VERSION,
                            }))
                        }
                    }
                }
                replies
            }
            Downlink::Command(command) => match command {
                Command::ValveOpen => self.move_valve(ValveState::Open, AlarmKind::ValveOpened),
                Command::ValveClose => self.move_valve(ValveState::Closed, AlarmKind::ValveClosed),
                Command::RunSelfTest { tests } => vec![Reply::SelfTest(tests)],
                Command::ReadNow => vec![Reply::Reading],
                Command::SendInfo => vec![Reply::Info],
                Command::SetReportingInterval { minutes } => {
                    self.interval = i64::from(minutes) * 60;
                    vec![Reply::Info]
                }
                Command::Disconnect => {
                    self.valve = match self.medium {
                        Medium::Gas => ValveState::Closed,
                        Medium::Electricity => self.valve,
                    };
                    self.disconnected = true;
                    vec![Reply::Reading]
                }
            },
        }
    }

    fn move_valve(&mut self, to: ValveState, alarm: AlarmKind) -> Vec<Reply> {
        if self.medium != Medium::Gas || self.valve == to {
            return Vec::new();
        }
        self.valve = to;
        vec![Reply::Alarm(alarm)]
    }

    /// The frame for a reply at true time `now`.
    pub fn reply(&mut self, reply: Reply, now: i64) -> (u32, Uplink) {
        match reply {
            Reply::Reading => self.reading(now),
            Reply::Info => {
                let f = self.transmit();
                let (capabilities, usage) = match self.medium {
                    Medium::Gas => (
                        Capabilities::GAS | Capabilities::VALVE | Capabilities::GAS_CONDITIONS,
                        UsageType::Residential,
                    ),
                    Medium::Electricity => (
                        Capabilities::ELECTRICITY | Capabilities::ELECTRICAL,
                        UsageType::Residential,
                    ),
                };
                let info = DeviceInfo {
                    serial: self.serial,
                    body_number: 1_000_000 + self.index,
                    firmware_version: FirmwareVersion {
                        major: 1,
                        minor: 4,
                        patch: 2,
                    },
                    production_date: Date::new(2026, 1, 15)
                        .unwrap_or(Date::new(2000, 1, 1).expect("a real date")),
                    usage_type: usage,
                    capabilities,
                    reporting_interval_minutes: u16::try_from(self.interval / 60)
                        .unwrap_or(u16::MAX)
                        .clamp(15, 10_080),
                };
                (f, Uplink::DeviceInfo(info))
            }
            Reply::SelfTest(tests) => {
                let f = self.transmit();
                let result = SelfTestResult {
                    tests_run: tests,
                    tests_failed: Tests::empty(),
                    meter_time: self.meter_time(now),
                    battery_loaded_millivolts: self.battery_millivolts().saturating_sub(180),
                    battery_rest_millivolts: self.battery_millivolts(),
                    valve_travel_ms: if tests.contains(Tests::VALVE) {
                        2_300
                    } else {
                        0
                    },
                    metrology_deviation_centi_percent: self.rng.range(-30, 30) as i16,
                    internal_temperature_centi_celsius: 2_000,
                };
                (f, Uplink::SelfTest(result))
            }
            Reply::Alarm(kind) => {
                let f = self.transmit();
                // A magnet or a movement is counted in detections (the fault stream keeps
                // the readings' draws as they were); the other alarms carry no value.
                let value = match kind {
                    AlarmKind::MagneticTamper | AlarmKind::Movement => {
                        self.faults.range(1, 5) as u32
                    }
                    _ => 0,
                };
                self.tampered |= is_tamper(kind);
                let alarm = Alarm {
                    kind,
                    raised: true,
                    meter_time: self.meter_time(now),
                    value,
                };
                (f, Uplink::Alarm(alarm))
            }
            Reply::AppTimeReq => self.app_time_req(now),
            Reply::ClockSync(up) => {
                let f = self.transmit();
                (f, Uplink::ClockSync(ClockSyncUplink::single(up)))
            }
        }
    }

    /// A TS003 AppTimeReq with a fresh token, at true time `now`.
    pub fn app_time_req(&mut self, now: i64) -> (u32, Uplink) {
        self.time_token = (self.time_token + 1) & 0x0F;
        self.resync_remaining = self.resync_remaining.saturating_sub(1);
        let f = self.transmit();
        let req = ClockSyncUp::AppTimeReq {
            device_time: self.meter_time(now).0,
            token_req: self.time_token,
            ans_required: false,
        };
        (f, Uplink::ClockSync(ClockSyncUplink::single(req)))
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
        let mut flags = if self.battery_percent() < 10 {
            StatusFlags::LOW_BATTERY
        } else {
            StatusFlags::empty()
        };
        if std::mem::take(&mut self.tampered) {
            flags = flags | StatusFlags::TAMPER;
        }
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
            time_token: 0,
            disconnected: false,
            faults: Pcg32::for_meter(2, 0),
            silent_until: 0,
            bad_serial: false,
            clock_sync_period: None,
            clock_sync_generation: 0,
            resync_remaining: 0,
            booted: true,
            tampered: false,
        }
    }

    fn app_time_ans(correction: i32, token: u8) -> Vec<u8> {
        let ans = firmware_protocol::ClockSyncDownlink::single(ClockSyncDown::AppTimeAns {
            time_correction: correction,
            token_ans: token,
        });
        let mut buf = [0u8; 16];
        let n = ans.encode(&mut buf).expect("encodes");
        buf[..n].to_vec()
    }

    #[test]
    fn a_drifting_clock_converges_after_app_time_ans_with_its_token() {
        let mut m = meter();
        let now = 1_784_678_400;
        m.clock_offset = 7.0;
        let (_, req) = m.app_time_req(now);
        let Uplink::ClockSync(cmds) = req else {
            panic!("clock sync")
        };
        let Some(&ClockSyncUp::AppTimeReq {
            device_time,
            token_req,
            ..
        }) = cmds.iter().next()
        else {
            panic!("AppTimeReq")
        };
        let reference = GpsTime::from_unix(now).expect("range").0;
        let correction = i64::from(reference) - i64::from(device_time);
        assert_eq!(correction, -7);
        // An answer with another token is ignored.
        m.receive(
            202,
            &app_time_ans(correction as i32, (token_req + 1) & 0x0F),
            now,
        );
        assert_eq!(m.clock_offset, 7.0);
        m.receive(202, &app_time_ans(correction as i32, token_req), now);
        assert_eq!(m.clock_offset, 0.0);
        assert_eq!(m.meter_time(now).0, reference);
    }

    #[test]
    fn commands_move_the_valve_and_ask_for_uplinks() {
        let mut m = meter();
        let close = [0x01, 0x02];
        assert_eq!(
            m.receive(10, &close, 0),
            vec![Reply::Alarm(AlarmKind::ValveClosed)]
        );
        assert_eq!(m.valve, ValveState::Closed);
        assert_eq!(m.receive(10, &close, 0), vec![], "already closed");
        assert_eq!(m.receive(10, &[0x01, 0x04], 0), vec![Reply::Reading]);
        assert_eq!(
            m.receive(10, &[0x01, 0x03, 0x03], 0),
            vec![Reply::SelfTest(Tests::BATTERY | Tests::VALVE)]
        );
        assert_eq!(
            m.receive(10, &[0x01, 0x06, 0x3c, 0x00], 0),
            vec![Reply::Info]
        );
        assert_eq!(m.interval, 3_600);
        assert_eq!(m.receive(10, &[0xff], 0), vec![], "garbage is ignored");
        let (_, info) = m.reply(Reply::Info, 0);
        let mut buf = [0u8; 64];
        assert!(info.encode(&mut buf).is_ok());
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
