//! TS003 clock synchronisation: the answer to an AppTimeReq.
//!
//! The correction is the reference GPS time of the uplink minus the device's time in it. The
//! reference is a gateway's `timeSinceGpsEpoch` when one reports it (GPS-disciplined, the
//! reception instant), else the event's `time` (ChirpStack's clock at reception), converted to
//! GPS seconds with the leap-second table. A gateway's raw `gwTime` is never used: it is the
//! gateway's own, possibly unsynchronised, clock.

use chrono::{DateTime, Utc};
use firmware_protocol::chirpstack::UplinkEvent;
use firmware_protocol::{ClockSync, ClockSyncDown, ClockSyncUp, GpsTime};
use uuid::Uuid;

/// Namespace of the ids derived for clock answers (UUIDv5 of the uplink's deduplicationId):
/// a replayed uplink yields the same id, which ChirpStack refuses while the first is queued.
pub const ANSWER_NAMESPACE: Uuid = Uuid::from_u128(0x6d65_7465_7268_7562_2d63_6c6f_636b_2d31);

/// The reference time of an uplink, GPS seconds (fractional), and where it came from.
pub fn reference_gps_seconds(up: &UplinkEvent, now: DateTime<Utc>) -> (f64, Reference) {
    if let Some(d) = up.rx_info.iter().find_map(|r| r.time_since_gps_epoch) {
        return (d.0.as_secs_f64(), Reference::Gateway);
    }
    let (at, source) = match up.time {
        Some(t) => (t.0, Reference::EventTime),
        None => (now, Reference::Received),
    };
    let unix = at.timestamp();
    let whole = GpsTime::from_unix(unix).map_or(0.0, |g| f64::from(g.0));
    (
        whole + f64::from(at.timestamp_subsec_micros()) / 1e6,
        source,
    )
}

/// Where the reference time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// A gateway's `timeSinceGpsEpoch`.
    Gateway,
    /// The event's `time`.
    EventTime,
    /// Neither: when meterhub received the event.
    Received,
}

/// The answer to one AppTimeReq, or `None` when none is due (zero correction and no answer
/// asked for). The correction saturates to the i32 the frame carries.
pub fn answer(
    device_time: u32,
    token: u8,
    ans_required: bool,
    reference: f64,
) -> Option<ClockSyncDown> {
    let correction = (reference - f64::from(device_time)).round();
    let correction = if correction >= f64::from(i32::MAX) {
        i32::MAX
    } else if correction <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        correction as i32
    };
    if correction == 0 && !ans_required {
        return None;
    }
    Some(ClockSyncDown::AppTimeAns {
        time_correction: correction,
        token_ans: token & 0x0f,
    })
}

/// The answer frame to every AppTimeReq in a clock-sync uplink (normally one), or `None`.
pub fn answer_frame(
    commands: &ClockSync<ClockSyncUp>,
    reference: f64,
) -> Option<ClockSync<ClockSyncDown>> {
    let mut out: Option<ClockSync<ClockSyncDown>> = None;
    for c in commands.iter() {
        if let ClockSyncUp::AppTimeReq {
            device_time,
            token_req,
            ans_required,
        } = *c
            && let Some(a) = answer(device_time, token_req, ans_required, reference)
        {
            match &mut out {
                // A frame holds at most one answer per request; more than the frame's room
                // cannot occur (an uplink carries at most as many requests).
                Some(frame) => {
                    let _ = frame.push(a);
                }
                None => out = Some(ClockSync::single(a)),
            }
        }
    }
    out
}

/// The id of the answer to the uplink with this deduplicationId.
pub fn answer_id(deduplication_id: &str) -> Uuid {
    Uuid::new_v5(&ANSWER_NAMESPACE, deduplication_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocol::chirpstack::{Duration, Timestamp, UplinkRxInfo};

    #[test]
    fn correction_is_reference_minus_device_time() {
        assert_eq!(
            answer(1_000, 3, false, 1_010.4),
            Some(ClockSyncDown::AppTimeAns {
                time_correction: 10,
                token_ans: 3
            })
        );
        assert_eq!(
            answer(1_000, 15, false, 990.0),
            Some(ClockSyncDown::AppTimeAns {
                time_correction: -10,
                token_ans: 15
            })
        );
    }

    #[test]
    fn no_answer_only_when_nothing_to_correct_and_none_required() {
        assert_eq!(answer(1_000, 1, false, 1_000.2), None);
        assert_eq!(
            answer(1_000, 1, true, 1_000.2),
            Some(ClockSyncDown::AppTimeAns {
                time_correction: 0,
                token_ans: 1
            })
        );
    }

    #[test]
    fn corrections_saturate() {
        assert_eq!(
            answer(0, 0, false, 1e12),
            Some(ClockSyncDown::AppTimeAns {
                time_correction: i32::MAX,
                token_ans: 0
            })
        );
        assert_eq!(
            answer(u32::MAX, 0, false, -1e12),
            Some(ClockSyncDown::AppTimeAns {
                time_correction: i32::MIN,
                token_ans: 0
            })
        );
    }

    #[test]
    fn the_gateway_gps_time_wins_over_the_event_time() {
        let mut up = UplinkEvent {
            time: Some(Timestamp(
                DateTime::parse_from_rfc3339("2026-07-23T00:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc),
            )),
            ..Default::default()
        };
        // 2026-07-23T00:00:00Z is GPS 1 468 800 018 (18 leap seconds): PROTOCOL.md's example.
        let (t, source) = reference_gps_seconds(&up, Utc::now());
        assert_eq!((t, source), (1_468_800_018.0, Reference::EventTime));
        up.rx_info = vec![
            UplinkRxInfo::default(),
            UplinkRxInfo {
                time_since_gps_epoch: Some(Duration(std::time::Duration::from_millis(
                    1_468_800_020_500,
                ))),
                ..Default::default()
            },
        ];
        let (t, source) = reference_gps_seconds(&up, Utc::now());
        assert_eq!((t, source), (1_468_800_020.5, Reference::Gateway));
    }

    #[test]
    fn answer_ids_follow_the_deduplication_id() {
        let a = answer_id("3d7b4ad2-2b5e-4d36-9a8a-5f0c1f0a7d11");
        assert_eq!(a, answer_id("3d7b4ad2-2b5e-4d36-9a8a-5f0c1f0a7d11"));
        assert_ne!(a, answer_id("3d7b4ad2-2b5e-4d36-9a8a-5f0c1f0a7d12"));
        assert_eq!(a.get_version_num(), 5);
    }
}
