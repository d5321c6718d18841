//! [`plan`] over each of its branches, from the topic and JSON that ChirpStack publishes to the
//! effects on the store: no broker, no database.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::storage::meters::NewMeter;

const DEV_EUI: &str = "a1b2c3d4e5f60001";
/// The serial of the golden vectors below.
const SERIAL: &str = "12261000012348";
const APPLICATION: &str = "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23";
/// Golden vectors (firmware-protocol/vectors/): a gas reading dated 2026-07-23T00:00:00Z.
const READING: &str = "013ce28cbc260b0000121c8c57010100100e57000087d61200";
/// A magnetic tamper raised at 2026-07-23T03:12:45Z, value 3.
const TAMPER_RAISED: &str = "0101013f498c5703000000";
/// A door-open alarm ended at 2026-07-23T03:22:47Z.
const DOOR_CLEARED: &str = "010400994b8c5758020000";
/// A self-test whose valve test failed.
const SELF_TEST_FAILED: &str = "010302d0a88c57800cfc0dffff0000e6fb";
/// Device info of the serial above.
const DEVICE_INFO: &str = "013ce28cbc260b00007b093d00010402ea07030f0115a005";
/// AppTimeReq with a device time of 1 024 s, token 15, answer required.
const APP_TIME_REQ: &str = "01000400001f";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 23, 10, 16, 0)
        .single()
        .expect("a time")
}

fn template() -> Template {
    Template::parse("application/{{application_id}}/device/{{dev_eui}}/event/{{event}}")
        .expect("the default template")
}

fn topic(event: &str) -> String {
    format!("application/{APPLICATION}/device/{DEV_EUI}/event/{event}")
}

fn meter() -> Meter {
    let new = NewMeter {
        dev_eui: DEV_EUI.into(),
        serial: SERIAL.into(),
        body_number: 4_000_123,
        user_id: "u".into(),
        application_id: "registry-application".into(),
        region_id: "north".into(),
        usage_type: "residential".into(),
        mode: "credit".into(),
        production_date: NaiveDate::from_ymd_opt(2026, 3, 15).expect("date"),
        reporting_interval_minutes: 1_440,
    };
    Meter::registered(7, &new, now() - chrono::Duration::days(30))
}

fn device_info() -> Value {
    json!({
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "applicationId": APPLICATION,
        "deviceProfileId": "b7e4c2a1-0f3d-4c8b-a6e9-5d2f1b7c9e04",
        "deviceName": "meter-000001",
        "devEui": DEV_EUI,
    })
}

fn up(f_port: u32, hex: &str) -> Value {
    let data = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>();
    json!({
        "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b",
        "time": "2026-07-23T10:15:30.123456+00:00",
        "deviceInfo": device_info(),
        "devAddr": "01fa23bc",
        "dr": 5,
        "fCnt": 1234,
        "fPort": f_port,
        "confirmed": false,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "rxInfo": [
            {"gatewayId": "0016c001ff1e5a7b", "rssi": -97, "snr": 7.5},
            {"gatewayId": "0016c001ff1e5a8c", "rssi": -113, "snr": -4.25}
        ],
        "txInfo": {"frequency": 868100000}
    })
}

/// The plan for an event of type `event` with this JSON body, the meter registered or not.
fn plan_of(event: &str, body: &Value, registered: bool) -> Plan {
    let payload = serde_json::to_vec(body).expect("json");
    plan_raw(&topic(event), &payload, registered)
}

fn plan_raw(topic: &str, payload: &[u8], registered: bool) -> Plan {
    plan_for(topic, payload, registered.then(meter))
}

/// The plan for a message, with this meter registered (or none).
fn plan_for(topic: &str, payload: &[u8], registered: Option<Meter>) -> Plan {
    let meters: HashMap<String, Meter> = if let Some(m) = registered {
        HashMap::from([(DEV_EUI.to_owned(), m)])
    } else {
        HashMap::new()
    };
    let policy = Policy::default();
    let ctx = Context {
        meters: &meters,
        now: now(),
        policy: &policy,
    };
    plan(parse(&template(), topic, payload), topic, payload, &ctx)
}

/// Each effect's kind, in order: what a plan does at a glance.
fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.effects
        .iter()
        .map(|e| match e {
            Effect::Reading(_) => "reading",
            Effect::AlarmRaised(_) => "alarmRaised",
            Effect::AlarmCleared { .. } => "alarmCleared",
            Effect::SelfTest(_) => "selfTest",
            Effect::Info(_) => "info",
            Effect::Link(_) => "link",
            Effect::Quarantine(_) => "quarantine",
            Effect::RecordCommand(_) => "recordCommand",
            Effect::CommandReport { .. } => "commandReport",
            Effect::Complete { .. } => "complete",
            Effect::Observe(_) => "observe",
            Effect::DeviceStatus(_) => "deviceStatus",
            Effect::LateReading { .. } => "lateReading",
        })
        .collect()
}

/// The reason of the plan's quarantine, if it has one.
fn quarantined(plan: &Plan) -> Option<&str> {
    plan.effects.iter().find_map(|e| match e {
        Effect::Quarantine(q) => Some(q.reason.as_str()),
        _ => None,
    })
}

fn link(plan: &Plan) -> &LinkUpdate {
    plan.effects
        .iter()
        .find_map(|e| match e {
            Effect::Link(l) => Some(l),
            _ => None,
        })
        .expect("a link update")
}

#[test]
fn messages_that_are_not_events_are_quarantined_without_an_identity() {
    let cases: [(String, Vec<u8>, Reason); 5] = [
        (
            format!("application/{APPLICATION}/device/{DEV_EUI}/up"),
            b"{}".to_vec(),
            Reason::UnknownEvent,
        ),
        (topic("bogus"), b"{}".to_vec(), Reason::UnknownEvent),
        (topic("up"), b"{\"fPort\": ".to_vec(), Reason::MalformedJson),
        (topic("up"), vec![0x0a, 0xff, 0x00, 0x12], Reason::Protobuf),
        (
            topic("up"),
            serde_json::to_vec(&json!({
                "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b",
                "deviceInfo": {"devEui": "ffffffffffffffff", "applicationId": APPLICATION},
                "fCnt": 1, "fPort": 1, "data": ""
            }))
            .expect("json"),
            Reason::UnknownEvent,
        ),
    ];
    for (topic, payload, reason) in cases {
        let plan = plan_raw(&topic, &payload, true);
        assert_eq!(kinds(&plan), ["quarantine"], "{topic}");
        assert_eq!(quarantined(&plan), Some(reason.as_str()), "{topic}");
        assert_eq!(plan.identity, None, "{topic}");
        assert_eq!(plan.origin, None, "{topic}");
    }
}

#[test]
fn a_reading_is_stored_observed_completes_read_requests_and_refreshes_the_link() {
    let plan = plan_of("up", &up(1, READING), true);
    // Never heard before: its reading is noted for billing (see below).
    assert_eq!(
        kinds(&plan),
        ["observe", "complete", "reading", "link", "lateReading"]
    );
    let identity = plan.identity.as_ref().expect("an identity");
    assert_eq!(
        (identity.event_id.as_str(), identity.event_type.as_str()),
        ("8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b", "up")
    );
    // Kept in case the reading conflicts with a stored one.
    assert_eq!(
        plan.origin.as_ref().and_then(|o| o.dev_eui.as_deref()),
        Some(DEV_EUI)
    );
    let Some(Effect::Reading(r)) = plan.effects.get(2) else {
        panic!("a reading: {:?}", plan.effects)
    };
    assert_eq!(
        (r.meter_id, r.gas_volume_litres, r.f_cnt),
        (7, Some(1_234_567), Some(1234))
    );
    assert_eq!(
        r.reading_time,
        Utc.with_ymd_and_hms(2026, 7, 23, 0, 0, 0)
            .single()
            .expect("t")
    );
    let l = link(&plan);
    // The best of the gateways, the application ChirpStack named, silence after two intervals.
    assert_eq!(
        (l.rssi, l.snr, l.application_id.as_deref()),
        (Some(-97), Some(7.5), Some(APPLICATION))
    );
    assert_eq!(l.overdue_at - l.last_seen_at, chrono::Duration::days(2));
    assert_eq!(
        (l.battery_millivolts, l.battery_percent),
        (Some(3600), Some(87))
    );
}

#[test]
fn a_reading_that_may_change_a_closed_billing_period_is_noted() {
    let payload = serde_json::to_vec(&up(1, READING)).expect("json");
    // Heard an hour ago, its reading of this morning: nothing closed can change.
    let mut heard = meter();
    heard.last_seen_at = Some(now() - chrono::Duration::hours(1));
    let on_time = plan_for(&topic("up"), &payload, Some(heard.clone()));
    assert_eq!(kinds(&on_time), ["observe", "complete", "reading", "link"]);
    // Never heard (or silent beyond the grace): its first reading may let a closed period's
    // end be interpolated.
    let first = plan_for(&topic("up"), &payload, Some(meter()));
    assert_eq!(kinds(&first).last(), Some(&"lateReading"));
    // A reading dated before the grace, from a meter heard an hour ago: it may fall in one.
    let mut event = up(1, READING);
    event["time"] = json!("2026-07-23T10:15:30Z");
    let late_clock = Context {
        meters: &HashMap::from([(DEV_EUI.to_owned(), heard)]),
        now: now() + chrono::Duration::days(4),
        policy: &Policy::default(),
    };
    let payload = serde_json::to_vec(&event).expect("json");
    let noted = plan(
        parse(&template(), &topic("up"), &payload),
        &topic("up"),
        &payload,
        &late_clock,
    );
    let late = noted.effects.iter().find_map(|e| match e {
        Effect::LateReading {
            meter_id,
            reading_time,
        } => Some((meter_id.to_owned(), reading_time.date_naive().to_string())),
        _ => None,
    });
    assert_eq!(
        late,
        Some((7, "2026-07-23".to_owned())),
        "{:?}",
        kinds(&noted)
    );
}

#[test]
fn a_gateway_clock_ahead_of_ours_does_not_date_the_meter_in_the_future() {
    let mut event = up(1, READING);
    event["time"] = json!("2026-07-24T00:00:00Z");
    let plan = plan_of("up", &event, true);
    assert_eq!(link(&plan).last_seen_at, now());
}

#[test]
fn an_uplink_of_an_unregistered_meter_is_quarantined_without_an_identity() {
    let plan = plan_of("up", &up(1, READING), false);
    assert_eq!(kinds(&plan), ["quarantine"]);
    assert_eq!(
        quarantined(&plan),
        Some(Reason::UnregisteredDevice.as_str())
    );
    // So that a replay after the meter is registered is applied.
    assert_eq!(plan.identity, None);
}

#[test]
fn frames_that_do_not_decode_are_quarantined_and_the_meter_still_counts_as_heard() {
    let wrong_serial = READING.replacen("3ce28cbc260b", "3de28cbc260b", 1);
    let cases = [
        (300, READING.to_owned(), Reason::UnknownFport),
        (9, READING.to_owned(), Reason::UnknownFport),
        (1, "01".to_owned(), Reason::Undecodable),
        (1, wrong_serial, Reason::BadSerial),
    ];
    for (port, hex, reason) in cases {
        let plan = plan_of("up", &up(port, &hex), true);
        assert_eq!(kinds(&plan), ["quarantine", "link"], "fPort {port} {hex}");
        assert_eq!(
            quarantined(&plan),
            Some(reason.as_str()),
            "fPort {port} {hex}"
        );
    }
}

#[test]
fn a_reading_of_another_registered_serial_or_outside_the_window_is_quarantined() {
    let mut other = meter();
    other.serial = "12261000012355".into();
    let payload = serde_json::to_vec(&up(1, READING)).expect("json");
    let meters = HashMap::from([(DEV_EUI.to_owned(), other)]);
    let policy = Policy::default();
    let at = |now| Context {
        meters: &meters,
        now,
        policy: &policy,
    };
    let t = topic("up");
    let plan_at = |now| plan(parse(&template(), &t, &payload), &t, &payload, &at(now));
    let wrong = plan_at(now());
    assert_eq!(kinds(&wrong), ["quarantine", "link"]);
    assert_eq!(quarantined(&wrong), Some(Reason::BadSerial.as_str()));

    let meters = HashMap::from([(DEV_EUI.to_owned(), meter())]);
    let late = now() + chrono::Duration::days(500);
    let ctx = Context {
        meters: &meters,
        now: late,
        policy: &policy,
    };
    let old = plan(parse(&template(), &t, &payload), &t, &payload, &ctx);
    assert_eq!(kinds(&old), ["quarantine", "link"]);
    assert_eq!(quarantined(&old), Some(Reason::OutOfRange.as_str()));
}

#[test]
fn mac_only_uplinks_are_link_activity() {
    let plan = plan_of("up", &up(0, ""), true);
    assert_eq!(kinds(&plan), ["link"]);
    assert_eq!(plan.origin, None);
}

#[test]
fn meter_alarms_are_raised_and_cleared_at_the_meters_time() {
    let raised = plan_of("up", &up(2, TAMPER_RAISED), true);
    assert_eq!(kinds(&raised), ["alarmRaised", "link"]);
    let Some(Effect::AlarmRaised(a)) = raised.effects.first() else {
        panic!("{:?}", raised.effects)
    };
    assert_eq!(
        (a.kind.as_str(), a.source.as_str(), a.value),
        ("magneticTamper", "meter", Some(3))
    );
    assert_eq!(
        a.raised_at,
        Utc.with_ymd_and_hms(2026, 7, 23, 3, 12, 45)
            .single()
            .expect("t")
    );
    let cleared = plan_of("up", &up(2, DOOR_CLEARED), true);
    assert_eq!(kinds(&cleared), ["alarmCleared", "link"]);
    assert!(matches!(
        cleared.effects.first(),
        Some(Effect::AlarmCleared { kind, meter_id: 7, .. }) if kind == "doorOpen"
    ));
}

#[test]
fn a_failed_self_test_completes_the_request_and_raises_an_alarm() {
    let plan = plan_of("up", &up(3, SELF_TEST_FAILED), true);
    assert_eq!(
        kinds(&plan),
        ["complete", "alarmRaised", "selfTest", "link"]
    );
    let Some(Effect::AlarmRaised(a)) = plan.effects.get(1) else {
        panic!("{:?}", plan.effects)
    };
    assert_eq!(a.kind, "selfTestFailed");
    assert!(
        a.detail.as_deref().is_some_and(|d| d.contains("valve")),
        "{a:?}"
    );
}

#[test]
fn device_info_completes_info_requests_and_updates_the_meter() {
    let plan = plan_of("up", &up(4, DEVICE_INFO), true);
    assert_eq!(kinds(&plan), ["complete", "info", "link"]);
    let Some(Effect::Info(i)) = plan.effects.get(1) else {
        panic!("{:?}", plan.effects)
    };
    assert_eq!(
        (i.firmware_version.as_str(), i.reporting_interval_minutes),
        ("1.4.2", 1_440)
    );
}

#[test]
fn a_clock_request_is_recorded_with_the_answer_published_for_it() {
    let plan = plan_of("up", &up(202, APP_TIME_REQ), true);
    assert_eq!(kinds(&plan), ["complete", "recordCommand", "link"]);
    let Some(Effect::RecordCommand(c)) = plan.effects.get(1) else {
        panic!("{:?}", plan.effects)
    };
    assert_eq!(
        (
            c.kind.as_str(),
            c.fport,
            c.meter_id,
            c.requested_by.as_str()
        ),
        ("appTimeAns", 202, 7, "clockSync")
    );
    // The same request planned again gets the same command id: an answer is recorded once.
    let again = plan_of("up", &up(202, APP_TIME_REQ), true);
    assert_eq!(again.effects.get(1), plan.effects.get(1));
}

#[test]
fn a_join_refreshes_the_link_with_the_application_chirpstack_named() {
    let join = json!({
        "deduplicationId": "c9d7e5f3-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        "time": "2026-07-23T10:15:00Z",
        "deviceInfo": device_info(),
        "devAddr": "01fa23bc"
    });
    let plan = plan_of("join", &join, true);
    assert_eq!(kinds(&plan), ["link"]);
    assert_eq!(link(&plan).application_id.as_deref(), Some(APPLICATION));
    let unknown = plan_of("join", &join, false);
    assert_eq!(
        quarantined(&unknown),
        Some(Reason::UnregisteredDevice.as_str())
    );
}

#[test]
fn chirpstacks_reports_on_our_queue_items_move_commands_along() {
    let id = "5e1b7f3a-9c2d-4b8e-a1f0-6d3c2b1a0f9e";
    let txack = json!({
        "downlinkId": 1, "time": "2026-07-23T10:15:31Z", "deviceInfo": device_info(),
        "queueItemId": id, "fCntDown": 7
    });
    let plan = plan_of("txack", &txack, false);
    assert_eq!(kinds(&plan), ["commandReport"]);
    assert!(matches!(
        plan.effects.first(),
        Some(Effect::CommandReport {
            reported: Reported::Sent,
            ..
        })
    ));
    let ack = json!({
        "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b", "deviceInfo": device_info(),
        "queueItemId": id, "acknowledged": false, "fCntDown": 7
    });
    assert!(matches!(
        plan_of("ack", &ack, false).effects.first(),
        Some(Effect::CommandReport {
            reported: Reported::Ack(false),
            ..
        })
    ));
    // Items someone else queued through ChirpStack carry no id of ours.
    let foreign = json!({"downlinkId": 2, "deviceInfo": device_info(), "fCntDown": 8});
    let plan = plan_of("txack", &foreign, false);
    assert!(plan.effects.is_empty());
    assert!(
        plan.identity.is_some(),
        "recorded, so a redelivery is a duplicate"
    );
}

#[test]
fn log_events_drop_commands_or_raise_frame_counter_alarms() {
    let log = |code: &str| {
        json!({
            "time": "2026-07-23T10:15:31Z", "deviceInfo": device_info(), "level": "ERROR",
            "code": code, "description": "",
            "context": {"queue_item_id": "5e1b7f3a-9c2d-4b8e-a1f0-6d3c2b1a0f9e"}
        })
    };
    let dropped = |plan: &Plan| match plan.effects.first() {
        Some(Effect::CommandReport {
            reported: Reported::Dropped { state, .. },
            ..
        }) => Some(*state),
        _ => None,
    };
    assert_eq!(
        dropped(&plan_of("log", &log("EXPIRED"), false)),
        Some("expired")
    );
    assert_eq!(
        dropped(&plan_of("log", &log("DOWNLINK_PAYLOAD_SIZE"), false)),
        Some("failed")
    );
    assert_eq!(
        dropped(&plan_of("log", &log("F_CNT_DOWN"), false)),
        Some("failed")
    );
    let reset = plan_of("log", &log("UPLINK_F_CNT_RESET"), true);
    let Some(Effect::AlarmRaised(a)) = reset.effects.first() else {
        panic!("{:?}", reset.effects)
    };
    assert_eq!(
        (a.kind.as_str(), a.source.as_str()),
        ("frameCounterReset", "server")
    );
    let retransmission = plan_of("log", &log("UPLINK_F_CNT_RETRANSMISSION"), true);
    assert!(matches!(
        retransmission.effects.first(),
        Some(Effect::AlarmRaised(a)) if a.kind == "frameCounterRetransmission"
    ));
    // An unregistered meter's counter has nobody to alarm; other codes mean nothing here.
    assert!(
        plan_of("log", &log("UPLINK_F_CNT_RESET"), false)
            .effects
            .is_empty()
    );
    assert!(
        plan_of("log", &log("UPLINK_CODEC"), true)
            .effects
            .is_empty()
    );
}

#[test]
fn status_reports_are_kept_for_registered_meters_only() {
    let status = json!({
        "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b", "time": "2026-07-23T10:15:00Z",
        "deviceInfo": device_info(), "margin": 7, "externalPowerSource": false,
        "batteryLevelUnavailable": false, "batteryLevel": 75.5
    });
    assert_eq!(kinds(&plan_of("status", &status, true)), ["deviceStatus"]);
    assert!(plan_of("status", &status, false).effects.is_empty());
    let mut bad = status.clone();
    bad["batteryLevel"] = json!(250);
    assert_eq!(
        quarantined(&plan_of("status", &bad, true)),
        Some(Reason::OutOfRange.as_str())
    );
}

#[test]
fn a_location_event_is_only_remembered() {
    let location = json!({
        "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b", "deviceInfo": device_info(),
        "location": {"latitude": 52.37, "longitude": 4.89, "altitude": 4.0}
    });
    let plan = plan_of("location", &location, true);
    assert!(plan.effects.is_empty());
    assert_eq!(
        plan.identity.map(|i| i.event_type),
        Some("location".to_owned())
    );
}
