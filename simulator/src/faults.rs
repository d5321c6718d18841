//! Faults on demand: what goes wrong between a meter and the application, at configured rates.
//!
//! Every draw comes from the meter's own fault stream (seeded from the run seed and the meter's
//! index, apart from the stream its readings use) or, for reordering, from one stream of the
//! run, so a run with faults is reproducible byte for byte and switching faults on changes
//! no reading the fleet takes, only what becomes of it.

use crate::meter::Meter;
use crate::rng::Pcg32;

/// Fault rates. Per-uplink rates are probabilities in 0–1 drawn for every frame a meter
/// sends; shares are drawn once per meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// No gateway hears the frame: nothing is published.
    pub loss: f64,
    /// The `up` event is published twice with the same `deduplicationId` (a QoS 1
    /// redelivery, or ChirpStack publishing again after a reconnect).
    pub duplicate: f64,
    /// The frame also arrives by a second path: the same frame and fCnt in a second `up`
    /// event with its own `deduplicationId` (a gateway whose copy missed ChirpStack's
    /// deduplication window, or a second network server).
    pub second_path: f64,
    /// The uplink's events are held back and published after those of the next one to three
    /// uplinks of the fleet (ChirpStack publishes each event from its own task, unordered).
    pub reorder: f64,
    /// The application payload is corrupted so that it no longer decodes (cut short, or a
    /// byte too many): a firmware fault that the radio's integrity check cannot catch.
    pub garble: f64,
    /// Share of meters whose frames carry their serial with a wrong check digit.
    pub bad_serial_share: f64,
    /// A meter falls silent (nothing of it is heard) for up to `silence_max_seconds`; it keeps
    /// measuring and counting frames meanwhile, and comes back by itself.
    pub silence: f64,
    /// Longest silence, seconds (each lasts a uniform draw between one second and this).
    pub silence_max_seconds: i64,
    /// Per reading: the meter's clock jumps forwards or backwards by up to
    /// `clock_jump_max_seconds`.
    pub clock_jump: f64,
    /// Largest clock jump, seconds. Capped below half the reporting interval, so that a jump
    /// never makes a reading's time repeat an earlier one of the same meter.
    pub clock_jump_max_seconds: i64,
    /// The meter restarts its uplink frame counter at 0 (a reboot that lost it). ChirpStack
    /// then discards its frames with an `UPLINK_F_CNT_RESET` log until the counter passes
    /// the last one it accepted, unless `skip_f_cnt_check` is set.
    pub f_cnt_reset: f64,
    /// The meter sends a delivered frame again with the same fCnt: ChirpStack publishes an
    /// `UPLINK_F_CNT_RETRANSMISSION` log and no `up` event.
    pub retransmission: f64,
    /// The device profile's "disable frame-counter validation": ChirpStack accepts a counter
    /// that went back and carries on from it.
    pub skip_f_cnt_check: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            second_path: 0.0,
            reorder: 0.0,
            garble: 0.0,
            bad_serial_share: 0.0,
            silence: 0.0,
            silence_max_seconds: 3 * 86_400,
            clock_jump: 0.0,
            clock_jump_max_seconds: 3_600,
            f_cnt_reset: 0.0,
            retransmission: 0.0,
            skip_f_cnt_check: false,
        }
    }
}

impl Faults {
    /// Every rate and share, named as the command-line flags name them, for checks and reports.
    pub fn rates(&self) -> [(&'static str, f64); 10] {
        [
            ("loss", self.loss),
            ("duplicates", self.duplicate),
            ("second-path", self.second_path),
            ("reorder", self.reorder),
            ("garbled", self.garble),
            ("bad-serial-share", self.bad_serial_share),
            ("silence", self.silence),
            ("clock-jumps", self.clock_jump),
            ("f-cnt-resets", self.f_cnt_reset),
            ("retransmissions", self.retransmission),
        ]
    }

    /// The first rate outside 0–1 (or not a number), named, so callers can refuse it.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in self.rates() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("--{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.silence_max_seconds < 1 || self.clock_jump_max_seconds < 1 {
            return Err("silence and clock-jump lengths must be at least one second".into());
        }
        Ok(())
    }

    /// Whether any fault can happen at all.
    pub fn any(&self) -> bool {
        self.rates().iter().any(|(_, r)| *r > 0.0)
    }
}

/// The fault stream of meter `index` in a run seeded with `seed`: apart from the meter's own
/// stream, so faults never shift the draws its readings take.
pub fn meter_stream(seed: u64, index: u32) -> Pcg32 {
    Pcg32::new(seed ^ 0xfa17_5eed_0000_0000, u64::from(index))
}

/// The run's own fault stream (reordering spans meters).
pub fn run_stream(seed: u64) -> Pcg32 {
    Pcg32::new(seed ^ 0xfa17_5eed_0000_0000, u64::from(u32::MAX) + 1)
}

/// Whether an event of probability `p` happens; draws nothing when `p` is 0, so a fault that
/// is off leaves the stream as it was.
pub fn hit(rng: &mut Pcg32, p: f64) -> bool {
    p > 0.0 && rng.chance(p)
}

/// What the faults did to one frame as the meter built it. Both transports draw these the
/// same way, in the same order, from the meter's fault stream (see [`before_frame`],
/// [`corrupt`]), so a seed touches the same frames of a meter on either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// The meter's clock jumped just before this reading.
    pub clock_jump: bool,
    /// The meter restarted its frame counter with this frame.
    pub f_cnt_reset: bool,
    /// Its serial has a wrong check digit.
    pub bad_serial: bool,
    /// Its payload no longer decodes.
    pub garbled: bool,
}

/// Before `meter` builds a frame (`periodic`: its scheduled reading, not a reply): its clock
/// may jump, by less than half a reporting interval so that a reading's time never repeats
/// an earlier one's, and it may restart its frame counter at 0.
pub fn before_frame(meter: &mut Meter, faults: &Faults, periodic: bool) -> Built {
    let mut built = Built::default();
    if periodic && hit(&mut meter.faults, faults.clock_jump) {
        let max = faults
            .clock_jump_max_seconds
            .min(meter.interval / 2 - 1)
            .max(1);
        let size = meter.faults.range(1, max);
        let sign = if meter.faults.chance(0.5) { 1 } else { -1 };
        meter.clock_offset += (sign * size) as f64;
        built.clock_jump = true;
    }
    if hit(&mut meter.faults, faults.f_cnt_reset) {
        meter.f_cnt = 0;
        built.f_cnt_reset = true;
    }
    built
}

/// The application payload `payload` on `f_port` that `meter` built: its serial broken if
/// the meter is one of the bad-serial share, then perhaps garbled. Both happen in the
/// firmware, before any encryption.
pub fn corrupt(
    meter: &mut Meter,
    faults: &Faults,
    f_port: u8,
    payload: &mut Vec<u8>,
    built: &mut Built,
) {
    if meter.bad_serial {
        built.bad_serial = break_serial(f_port, payload);
    }
    if hit(&mut meter.faults, faults.garble) {
        garble(&mut meter.faults, payload);
        built.garbled = true;
    }
}

/// Whether a frame sent at true time `at` is heard at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hearing {
    /// A gateway hears it.
    Heard,
    /// It is sent, but no gateway hears it.
    Lost,
    /// The meter is in a silent spell (`began`: one begins with this frame): nothing of it
    /// is heard.
    Silent {
        /// The spell begins with this frame.
        began: bool,
    },
}

/// Whether `meter`'s frame at true time `at` is heard: a silent spell under way or beginning
/// (lasting up to `silence_max_seconds`), a loss, or heard.
pub fn hearing(meter: &mut Meter, faults: &Faults, at: i64) -> Hearing {
    if at < meter.silent_until {
        Hearing::Silent { began: false }
    } else if hit(&mut meter.faults, faults.silence) {
        meter.silent_until = at + meter.faults.range(1, faults.silence_max_seconds);
        Hearing::Silent { began: true }
    } else if hit(&mut meter.faults, faults.loss) {
        Hearing::Lost
    } else {
        Hearing::Heard
    }
}

/// The further copies of a frame that was heard, each with the id the integration transport
/// gives its event (drawn either way, so both transports leave the stream alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    /// The frame reaches the network server twice by the same way.
    pub duplicate: bool,
    /// It also arrives by a second way, under this id.
    pub second_path: Option<uuid::Uuid>,
    /// The meter sends it again with the same frame counter, under this id.
    pub retransmission: Option<uuid::Uuid>,
}

/// The further copies of a heard frame of `meter`.
pub fn copies(meter: &mut Meter, faults: &Faults) -> Copies {
    let duplicate = hit(&mut meter.faults, faults.duplicate);
    let second_path = hit(&mut meter.faults, faults.second_path).then(|| meter.faults.uuid());
    let retransmission = hit(&mut meter.faults, faults.retransmission).then(|| meter.faults.uuid());
    Copies {
        duplicate,
        second_path,
        retransmission,
    }
}

/// Corrupts a frame so that it can no longer be decoded: cut short to between one byte and
/// one byte less than it was, or one byte appended. Every meterhub message has an exact
/// length and rejects trailing bytes, and no TS003 command fits in one byte, so neither
/// survives decoding, whatever the bytes.
pub fn garble(rng: &mut Pcg32, frame: &mut Vec<u8>) {
    if frame.len() > 1 && rng.chance(0.5) {
        let keep = rng.range(1, frame.len() as i64 - 1) as usize;
        frame.truncate(keep);
    } else {
        frame.push(rng.next_u32() as u8);
    }
}

/// Replaces the check digit of the serial a reading or device-info frame carries (bytes 1–8,
/// u64 little-endian, after the format version) with a wrong one. Other frames carry no
/// serial and are left alone; returns whether the frame changed.
pub fn break_serial(f_port: u8, frame: &mut [u8]) -> bool {
    if f_port != firmware_protocol::PORT_READING && f_port != firmware_protocol::PORT_DEVICE_INFO {
        return false;
    }
    let Some(bytes) = frame.get_mut(1..9) else {
        return false;
    };
    let mut raw = [0u8; 8];
    raw.copy_from_slice(bytes);
    let serial = u64::from_le_bytes(raw);
    let wrong = serial - serial % 10 + (serial % 10 + 1) % 10;
    bytes.copy_from_slice(&wrong.to_le_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocol::{
        ClockSyncUp, ClockSyncUplink, DoorState, Error, GpsTime, Reading, Serial, StatusFlags,
        Uplink, ValveState, decode_uplink,
    };

    fn reading() -> Uplink {
        Uplink::Reading(Reading {
            serial: Serial::new(12, 26, 2, 4_321).expect("valid"),
            meter_time: GpsTime(1_468_800_018),
            valve: ValveState::NotFitted,
            door: DoorState::NotFitted,
            battery_millivolts: 3_600,
            battery_percent: 99,
            flags: StatusFlags::empty(),
            gas_volume_litres: None,
            energy_wh: Some(1_234),
            voltage_decivolts: Some(2_300),
            current_milliamps: Some(1_000),
            gas_temperature_centi_celsius: None,
            gas_pressure_pa: None,
        })
    }

    fn encoded(m: &Uplink) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).expect("encodes");
        buf[..n].to_vec()
    }

    #[test]
    fn a_garbled_frame_never_decodes() {
        let app_time = Uplink::ClockSync(ClockSyncUplink::single(ClockSyncUp::AppTimeReq {
            device_time: 1_000,
            token_req: 3,
            ans_required: false,
        }));
        let mut rng = Pcg32::for_meter(5, 5);
        for message in [reading(), app_time] {
            let clean = encoded(&message);
            assert!(decode_uplink(message.fport(), &clean).is_ok());
            for _ in 0..2_000 {
                let mut frame = clean.clone();
                garble(&mut rng, &mut frame);
                assert_ne!(frame, clean);
                assert!(
                    decode_uplink(message.fport(), &frame).is_err(),
                    "{frame:02x?} decoded"
                );
            }
        }
    }

    #[test]
    fn a_broken_serial_fails_its_check_digit_and_nothing_else() {
        let mut frame = encoded(&reading());
        assert!(break_serial(1, &mut frame));
        assert!(matches!(
            decode_uplink(1, &frame),
            Err(Error::InvalidSerial(_))
        ));
        let mut alarm = vec![1, 2, 3];
        assert!(!break_serial(2, &mut alarm));
        assert_eq!(alarm, [1, 2, 3]);
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert!(Faults::default().check().is_ok());
        assert!(!Faults::default().any());
        let bad = Faults {
            loss: 1.5,
            ..Faults::default()
        };
        assert!(bad.check().unwrap_err().contains("--loss"));
        let nan = Faults {
            garble: f64::NAN,
            ..Faults::default()
        };
        assert!(nan.check().is_err());
    }

    #[test]
    fn a_fault_that_is_off_draws_nothing() {
        let mut a = Pcg32::for_meter(1, 1);
        let b = a;
        assert!(!hit(&mut a, 0.0));
        assert_eq!(a, b);
    }
}
