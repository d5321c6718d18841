//! From an MQTT message to a [`Plan`]: parse the ChirpStack event, name its identity, decode
//! and validate its payload, and say what it does to the store — or why it is quarantined.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use firmware_protocol::chirpstack::{Event, EventType, LogCode, StatusEvent, UplinkEvent};
use firmware_protocol::{ClockSyncUp, Error as DecodeError, Uplink, decode_uplink};
use sha2::{Digest, Sha256};

use super::Reason;
use super::validate::check_reading;
use crate::downlink::clock_sync::reference_gps_seconds;
use crate::downlink::dispatch::clock_answer_at;
use crate::downlink::kind::{Answer, completed_by};
use crate::monitor::rules::{Observed, Rules};
use crate::mqtt::Template;
use crate::storage::alarms::NewAlarm;
use crate::storage::commands::{CommandRow, Reported};
use crate::storage::device_status::{DeviceStatus, Power};
use crate::storage::identities::EventIdentity;
use crate::storage::ingest::{Effect, Observation, Origin, Plan};
use crate::storage::meters::{InfoUpdate, LinkUpdate, Meter};
use crate::storage::quarantine::NewQuarantined;
use crate::storage::readings::{StoredReading, within_storage_window};
use crate::storage::self_tests::StoredSelfTest;

/// What the rules and the command tracking need besides the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Alarm rule thresholds.
    pub rules: Rules,
    /// A meter counts as silent after this many reporting intervals without an uplink.
    pub silence_tolerance: i32,
    /// A sent command that waits for an answer fails this long after it was sent.
    pub answer_deadline: Duration,
    /// How long a resynchronisation request may wait to be sent.
    pub resync_expiry: Duration,
    /// How long ChirpStack may hold a clock answer.
    pub answer_expiry: Duration,
    /// How long after its end a billing period closes (`[billing] grace_days`): a reading
    /// older than this may change a closed figure.
    pub billing_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: Rules::default(),
            silence_tolerance: 2,
            answer_deadline: Duration::hours(1),
            resync_expiry: Duration::days(3),
            answer_expiry: Duration::minutes(1),
            billing_grace: Duration::days(3),
        }
    }
}

/// A message parsed as far as its topic and JSON allow.
#[derive(Debug)]
pub enum Parsed {
    /// A ChirpStack event.
    Event {
        /// The event.
        event: Box<Event>,
        /// Its device, lowercase.
        dev_eui: String,
    },
    /// Not usable: why.
    Bad {
        /// The reason.
        reason: Reason,
        /// What exactly.
        detail: String,
        /// The device, if the topic named one.
        dev_eui: Option<String>,
    },
}

impl Parsed {
    /// The device a plan needs looked up in the registry, if any.
    pub fn registry_key(&self) -> Option<&str> {
        match self {
            Parsed::Event { event, dev_eui }
                if matches!(**event, Event::Up(_) | Event::Join(_) | Event::Status(_)) =>
            {
                Some(dev_eui)
            }
            Parsed::Event { event, dev_eui } if matches!(&**event, Event::Log(l) if link_alarm(&l.code).is_some()) => {
                Some(dev_eui)
            }
            _ => None,
        }
    }
}

/// Parses a message's topic and payload.
pub fn parse(template: &Template, topic: &str, payload: &[u8]) -> Parsed {
    let Some(parts) = template.parse_topic(topic) else {
        return Parsed::Bad {
            reason: Reason::UnknownEvent,
            detail: format!("topic {topic:?} does not fit the event topic template"),
            dev_eui: None,
        };
    };
    let topic_dev_eui = parts.dev_eui.to_ascii_lowercase();
    let bad = |reason, detail: String| Parsed::Bad {
        reason,
        detail,
        dev_eui: Some(topic_dev_eui.clone()),
    };
    let event_type = match parts.kind.parse::<EventType>() {
        Ok(t) => t,
        Err(_) => {
            return bad(
                Reason::UnknownEvent,
                format!("unknown event type {:?}", parts.kind),
            );
        }
    };
    let event = match Event::from_json(event_type, payload) {
        Ok(e) => e,
        Err(e) => {
            // ChirpStack's protobuf encoding is binary; JSON is text that starts with `{`.
            let text = std::str::from_utf8(payload).is_ok();
            return if text {
                bad(Reason::MalformedJson, e.to_string())
            } else {
                bad(
                    Reason::Protobuf,
                    "binary payload: ChirpStack's MQTT integration must use json = true".into(),
                )
            };
        }
    };
    // The body names the device too; when it disagrees with the topic, trust neither.
    if let Some(info) = event.device_info()
        && !info.dev_eui.is_empty()
        && !info.dev_eui.eq_ignore_ascii_case(&topic_dev_eui)
    {
        return bad(
            Reason::UnknownEvent,
            format!(
                "devEui {} in the body, {topic_dev_eui} in the topic",
                info.dev_eui
            ),
        );
    }
    Parsed::Event {
        event: Box::new(event),
        dev_eui: topic_dev_eui,
    }
}

/// The identity under which an event is applied once: ChirpStack's own ids where it has them,
/// else a digest of the message.
pub fn identity(event: &Event, payload: &[u8]) -> EventIdentity {
    let digest = || hex_digest(payload);
    let (event_id, event_type) = match event {
        Event::Up(e) => (non_empty(&e.deduplication_id).unwrap_or_else(digest), "up"),
        Event::Join(e) => (
            non_empty(&e.deduplication_id).unwrap_or_else(digest),
            "join",
        ),
        Event::Status(e) => (
            non_empty(&e.deduplication_id).unwrap_or_else(digest),
            "status",
        ),
        Event::Location(e) => (
            non_empty(&e.deduplication_id).unwrap_or_else(digest),
            "location",
        ),
        Event::Ack(e) => (
            e.queue_item_id.map_or_else(digest, |u| u.to_string()),
            "ack",
        ),
        Event::TxAck(e) => (
            e.queue_item_id.map_or_else(digest, |u| u.to_string()),
            "txack",
        ),
        Event::Log(e) => {
            let code = serde_json::to_value(&e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let context = e
                .context
                .get("deduplication_id")
                .or_else(|| e.context.get("queue_item_id"))
                .cloned()
                .unwrap_or_default();
            (format!("{code}:{context}:{}", digest()), "log")
        }
    };
    EventIdentity {
        event_id,
        event_type: event_type.to_owned(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn hex_digest(payload: &[u8]) -> String {
    let d = Sha256::digest(payload);
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Everything a plan needs besides the message.
pub struct Context<'a> {
    /// Registered meters by DevEUI (only those the batch names).
    pub meters: &'a HashMap<String, Meter>,
    /// The server's clock, now.
    pub now: DateTime<Utc>,
    /// Rules and command timing.
    pub policy: &'a Policy,
}

/// The plan for one message.
pub fn plan(parsed: Parsed, topic: &str, payload: &[u8], ctx: &Context<'_>) -> Plan {
    let quarantine = |reason: Reason, detail: String, dev_eui: Option<String>| {
        Effect::Quarantine(NewQuarantined {
            received_at: ctx.now,
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            reason: reason.as_str().to_owned(),
            detail,
            dev_eui,
        })
    };
    let (event, dev_eui) = match parsed {
        Parsed::Bad {
            reason,
            detail,
            dev_eui,
        } => {
            return Plan {
                identity: None,
                effects: vec![quarantine(reason, detail, dev_eui)],
                origin: None,
            };
        }
        Parsed::Event { event, dev_eui } => (event, dev_eui),
    };
    let id = identity(&event, payload);
    let device = dev_eui.clone();
    let effects = match *event {
        Event::Up(up) => match ctx.meters.get(&dev_eui) {
            None => vec![quarantine(
                Reason::UnregisteredDevice,
                format!("devEui {dev_eui} is not registered"),
                Some(dev_eui),
            )],
            Some(meter) => uplink_effects(&up, meter, ctx, |r, d| {
                quarantine(r, d, Some(dev_eui.clone()))
            }),
        },
        Event::Join(join) => match ctx.meters.get(&dev_eui) {
            None => vec![quarantine(
                Reason::UnregisteredDevice,
                format!("devEui {dev_eui} joined but is not registered"),
                Some(dev_eui),
            )],
            Some(meter) => {
                let seen = join.time.map_or(ctx.now, |t| t.0.min(ctx.now));
                vec![Effect::Link(link(
                    meter,
                    seen,
                    None,
                    None,
                    None,
                    join.device_info
                        .as_ref()
                        .map(|d| d.application_id.clone())
                        .filter(|a| !a.is_empty()),
                    ctx.policy.silence_tolerance,
                ))]
            }
        },
        // What ChirpStack reports about our queue items moves the commands along.
        Event::TxAck(e) => report(e.queue_item_id, Reported::Sent, e.time, ctx),
        Event::Ack(e) => report(e.queue_item_id, Reported::Ack(e.acknowledged), e.time, ctx),
        Event::Log(e) => log_effects(&e, &dev_eui, ctx),
        // A meter's status report is kept as its latest; one of a device not (yet) registered
        // has nothing to attach to and is dropped: ChirpStack asks again, daily or more often.
        Event::Status(e) => match ctx.meters.get(&dev_eui) {
            None => Vec::new(),
            Some(meter) => match device_status(&e, meter.id, ctx.now) {
                Ok(status) => vec![Effect::DeviceStatus(status)],
                Err(detail) => vec![quarantine(Reason::OutOfRange, detail, Some(dev_eui))],
            },
        },
        // Location carries no meter data: its identity is recorded so that a redelivery is
        // counted as a duplicate, nothing more.
        Event::Location(_) => Vec::new(),
    };
    // A quarantined event keeps no identity: once its cause is fixed (the meter registered),
    // a replay must be applied; the quarantine's own digest keeps it from being kept twice.
    let quarantined = effects.iter().any(|e| matches!(e, Effect::Quarantine(_)));
    // A reading may turn out to conflict with a stored one: its message is kept for that.
    let origin = effects
        .iter()
        .any(|e| matches!(e, Effect::Reading(_)))
        .then(|| Origin {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            dev_eui: Some(device),
        });
    Plan {
        identity: (!quarantined).then_some(id),
        effects,
        origin,
    }
}

fn report(
    id: Option<uuid::Uuid>,
    reported: Reported,
    time: Option<firmware_protocol::chirpstack::Timestamp>,
    ctx: &Context<'_>,
) -> Vec<Effect> {
    // Items without an id were not ours (enqueued by someone else through ChirpStack).
    let Some(id) = id else { return Vec::new() };
    let at = time.map_or(ctx.now, |t| t.0.min(ctx.now));
    vec![Effect::CommandReport {
        id,
        reported,
        deadline: at + ctx.policy.answer_deadline,
        at,
    }]
}

/// The alarm a `log` event means for its meter: ChirpStack discards the meter's uplinks.
fn link_alarm(code: &LogCode) -> Option<&'static str> {
    match code {
        LogCode::UplinkFCntReset => Some("frameCounterReset"),
        LogCode::UplinkFCntRetransmission => Some("frameCounterRetransmission"),
        _ => None,
    }
}

fn log_effects(
    e: &firmware_protocol::chirpstack::LogEvent,
    dev_eui: &str,
    ctx: &Context<'_>,
) -> Vec<Effect> {
    let at = e.time.map_or(ctx.now, |t| t.0.min(ctx.now));
    let queue_item = || {
        e.context
            .get("queue_item_id")
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
    };
    let dropped = |state: &'static str| {
        let error = if e.description.is_empty() {
            format!("{:?}", e.code)
        } else {
            e.description.clone()
        };
        report(
            queue_item(),
            Reported::Dropped { state, error },
            e.time,
            ctx,
        )
    };
    match e.code {
        LogCode::Expired => dropped("expired"),
        LogCode::DownlinkPayloadSize | LogCode::FCntDown => dropped("failed"),
        LogCode::UplinkFCntReset | LogCode::UplinkFCntRetransmission => {
            let Some(meter) = ctx.meters.get(dev_eui) else {
                return Vec::new();
            };
            let kind = link_alarm(&e.code).unwrap_or("frameCounterReset");
            vec![Effect::AlarmRaised(NewAlarm {
                meter_id: meter.id,
                kind: kind.to_owned(),
                source: "server".into(),
                raised_at: at,
                value: None,
                received_at: ctx.now,
                detail: Some(format!(
                    "ChirpStack discards this meter's uplinks: {}",
                    if e.description.is_empty() {
                        "frame counter"
                    } else {
                        &e.description
                    }
                )),
            })]
        }
        _ => Vec::new(),
    }
}

fn link(
    meter: &Meter,
    seen: DateTime<Utc>,
    battery: Option<(i32, i16)>,
    rssi: Option<i32>,
    snr: Option<f64>,
    application_id: Option<String>,
    tolerance: i32,
) -> LinkUpdate {
    let silence = Duration::minutes(i64::from(
        meter.reporting_interval_minutes.saturating_mul(tolerance),
    ));
    LinkUpdate {
        meter_id: meter.id,
        last_seen_at: seen,
        overdue_at: seen + silence,
        battery_millivolts: battery.map(|b| b.0),
        battery_percent: battery.map(|b| b.1),
        rssi,
        snr,
        application_id,
    }
}

/// A `status` event as the meter's status at the time of its uplink (never after `now`), or
/// why it cannot be one. External power and an unmeasurable battery take precedence over the
/// level, which ChirpStack then sends as 0.
pub fn device_status(
    e: &StatusEvent,
    meter_id: i64,
    now: DateTime<Utc>,
) -> Result<DeviceStatus, String> {
    let power = if e.external_power_source {
        Power::External
    } else if e.battery_level_unavailable {
        Power::Unknown
    } else if e.battery_level.is_finite() && (0.0..=100.0).contains(&e.battery_level) {
        Power::Battery(e.battery_level)
    } else {
        return Err(format!(
            "batteryLevel {} is not a percentage between 0 and 100",
            e.battery_level
        ));
    };
    Ok(DeviceStatus {
        meter_id,
        power,
        margin_db: e.margin,
        received_at: e.time.map_or(now, |t| t.0.min(now)),
    })
}

fn gps_to_utc(t: firmware_protocol::GpsTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.to_unix(), 0).unwrap_or_default()
}

fn uplink_effects(
    up: &UplinkEvent,
    meter: &Meter,
    ctx: &Context<'_>,
    quarantine: impl Fn(Reason, String) -> Effect,
) -> Vec<Effect> {
    // A gateway clock far ahead must not pin the meter's last-seen time in the future.
    let seen = up.time.map_or(ctx.now, |t| t.0.min(ctx.now));
    let rssi = up.rx_info.iter().map(|r| r.rssi).filter(|r| *r != 0).max();
    let snr = up.rx_info.iter().map(|r| f64::from(r.snr)).reduce(f64::max);
    let application_id = up
        .device_info
        .as_ref()
        .map(|d| d.application_id.clone())
        .filter(|a| !a.is_empty());
    let heard = |battery| {
        Effect::Link(link(
            meter,
            seen,
            battery,
            rssi,
            snr,
            application_id.clone(),
            ctx.policy.silence_tolerance,
        ))
    };
    // fPort 0 (MAC commands only) is link activity, not data.
    if up.f_port == 0 {
        return vec![heard(None)];
    }
    let complete = |answer: Answer, result: serde_json::Value| Effect::Complete {
        meter_id: meter.id,
        kinds: completed_by(answer),
        result: result.to_string(),
        // ChirpStack's clock, as the `txack` that set the command's sent time.
        at: seen,
    };
    let Ok(port) = u8::try_from(up.f_port) else {
        return vec![
            quarantine(Reason::UnknownFport, format!("fPort {}", up.f_port)),
            heard(None),
        ];
    };
    let message = match decode_uplink(port, up.data.as_slice()) {
        Ok(m) => m,
        Err(e) => {
            let reason = match e {
                DecodeError::UnknownPort(_) => Reason::UnknownFport,
                DecodeError::InvalidSerial(_) => Reason::BadSerial,
                DecodeError::OutOfRange { .. } => Reason::OutOfRange,
                _ => Reason::Undecodable,
            };
            return vec![quarantine(reason, e.to_string()), heard(None)];
        }
    };
    let wrong_serial = |serial: firmware_protocol::Serial| {
        let s = serial.to_string();
        (s != meter.serial).then(|| {
            quarantine(
                Reason::BadSerial,
                format!(
                    "serial {s} is not the one registered for devEui {} ({})",
                    meter.dev_eui, meter.serial
                ),
            )
        })
    };
    match message {
        Uplink::Reading(r) => {
            if let Some(q) = wrong_serial(r.serial) {
                return vec![q, heard(None)];
            }
            let reading_time = gps_to_utc(r.meter_time);
            if !within_storage_window(reading_time, ctx.now) {
                return vec![
                    quarantine(
                        Reason::OutOfRange,
                        format!(
                            "meter clock {reading_time} is outside the storage window around {}",
                            ctx.now
                        ),
                    ),
                    heard(None),
                ];
            }
            if let Err(detail) = check_reading(&r) {
                return vec![quarantine(Reason::OutOfRange, detail), heard(None)];
            }
            let battery = (
                i32::from(r.battery_millivolts),
                i16::from(r.battery_percent),
            );
            let (reference, _) = reference_gps_seconds(up, ctx.now);
            let drift_ms = ((f64::from(r.meter_time.0) - reference) * 1000.0).round() as i64;
            let observe = Effect::Observe(Observation {
                meter_id: meter.id,
                dev_eui: meter.dev_eui.clone(),
                observed: Observed {
                    at: reading_time,
                    register: r
                        .gas_volume_litres
                        .map(i64::from)
                        .or(r.energy_wh.map(i64::from)),
                    valve: r.valve as i16,
                    battery_percent: i16::from(r.battery_percent),
                    drift_ms: Some(drift_ms),
                },
                rules: ctx.policy.rules,
                resync_expires_at: ctx.now + ctx.policy.resync_expiry,
                at: ctx.now,
            });
            let late = crate::billing::closing::may_touch_closed(
                reading_time,
                meter.last_seen_at,
                ctx.now,
                ctx.policy.billing_grace,
            )
            .then_some(Effect::LateReading {
                meter_id: meter.id,
                reading_time,
            });
            let effects = vec![
                observe,
                complete(
                    Answer::Reading,
                    serde_json::json!({ "readingTime": reading_time }),
                ),
                Effect::Reading(StoredReading {
                    meter_id: meter.id,
                    reading_time,
                    received_at: ctx.now,
                    gas_volume_litres: r.gas_volume_litres.map(i64::from),
                    energy_wh: r.energy_wh.map(i64::from),
                    voltage_decivolts: r.voltage_decivolts.map(i32::from),
                    current_milliamps: r.current_milliamps.map(i64::from),
                    gas_temperature_centi_celsius: r.gas_temperature_centi_celsius.map(i32::from),
                    gas_pressure_pa: r.gas_pressure_pa.map(i64::from),
                    valve: r.valve as i16,
                    door: r.door as i16,
                    battery_millivolts: battery.0,
                    battery_percent: battery.1,
                    flags: i32::from(r.flags.bits()),
                    f_cnt: Some(i64::from(up.f_cnt)),
                }),
                heard(Some(battery)),
            ];
            effects.into_iter().chain(late).collect()
        }
        Uplink::Alarm(a) => {
            let kind = serde_json::to_value(a.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let at = gps_to_utc(a.meter_time);
            let effect = if a.raised {
                Effect::AlarmRaised(NewAlarm {
                    meter_id: meter.id,
                    kind,
                    source: "meter".into(),
                    raised_at: at,
                    value: Some(i64::from(a.value)),
                    received_at: ctx.now,
                    detail: None,
                })
            } else {
                Effect::AlarmCleared {
                    meter_id: meter.id,
                    kind,
                    at,
                }
            };
            vec![effect, heard(None)]
        }
        Uplink::SelfTest(t) => {
            let meter_time = gps_to_utc(t.meter_time);
            let failed = t.tests_failed.bits();
            let mut effects = vec![complete(
                Answer::SelfTest,
                serde_json::json!({
                    "meterTime": meter_time,
                    "testsRun": t.tests_run.bits(),
                    "testsFailed": failed,
                }),
            )];
            if failed != 0 {
                effects.push(Effect::AlarmRaised(NewAlarm {
                    meter_id: meter.id,
                    kind: "selfTestFailed".into(),
                    source: "server".into(),
                    raised_at: meter_time,
                    value: Some(i64::from(failed)),
                    received_at: ctx.now,
                    detail: Some(format!(
                        "failed: {}",
                        t.tests_failed.names().collect::<Vec<_>>().join(", ")
                    )),
                }));
            }
            effects.push(Effect::SelfTest(StoredSelfTest {
                meter_id: meter.id,
                meter_time: gps_to_utc(t.meter_time),
                received_at: ctx.now,
                tests_run: i16::from(t.tests_run.bits()),
                tests_failed: i16::from(t.tests_failed.bits()),
                battery_loaded_millivolts: i32::from(t.battery_loaded_millivolts),
                battery_rest_millivolts: i32::from(t.battery_rest_millivolts),
                valve_travel_ms: i32::from(t.valve_travel_ms),
                metrology_deviation_centi_percent: i32::from(t.metrology_deviation_centi_percent),
                internal_temperature_centi_celsius: i32::from(t.internal_temperature_centi_celsius),
            }));
            effects.push(heard(None));
            effects
        }
        Uplink::DeviceInfo(i) => {
            if let Some(q) = wrong_serial(i.serial) {
                return vec![q, heard(None)];
            }
            vec![
                complete(
                    Answer::Info,
                    serde_json::json!({
                        "firmwareVersion": i.firmware_version.to_string(),
                        "reportingIntervalMinutes": i.reporting_interval_minutes,
                    }),
                ),
                Effect::Info(InfoUpdate {
                    meter_id: meter.id,
                    firmware_version: i.firmware_version.to_string(),
                    reporting_interval_minutes: i32::from(i.reporting_interval_minutes),
                    received_at: ctx.now,
                }),
                heard(None),
            ]
        }
        Uplink::ClockSync(requests) => {
            let mut effects = Vec::new();
            for c in requests.iter() {
                match *c {
                    ClockSyncUp::AppTimeReq { device_time, .. } => {
                        effects.push(complete(
                            Answer::AppTimeReq,
                            serde_json::json!({ "deviceTime": device_time }),
                        ));
                    }
                    ClockSyncUp::DeviceAppTimePeriodicityAns {
                        not_supported,
                        device_time,
                    } => effects.push(complete(
                        Answer::Periodicity,
                        serde_json::json!({ "notSupported": not_supported, "deviceTime": device_time }),
                    )),
                    ClockSyncUp::PackageVersionAns {
                        package_identifier,
                        package_version,
                    } => effects.push(complete(
                        Answer::PackageVersion,
                        serde_json::json!({
                            "packageIdentifier": package_identifier,
                            "packageVersion": package_version,
                        }),
                    )),
                }
            }
            // The answer the dispatcher published, into the audit trail under the same id.
            if let Some(answer) = clock_answer_at(
                &meter.dev_eui,
                up,
                ctx.now,
                ctx.now + ctx.policy.answer_expiry,
            ) && let Some(id) = answer.id
            {
                effects.push(Effect::RecordCommand(CommandRow {
                    id,
                    meter_id: meter.id,
                    kind: "appTimeAns".into(),
                    fport: i16::from(answer.f_port),
                    payload: answer.data.0,
                    confirmed: false,
                    requested_by: "clockSync".into(),
                    state: "queued".into(),
                    attempts: 1,
                    error: None,
                    created_at: ctx.now,
                    updated_at: ctx.now,
                    expires_at: ctx.now + ctx.policy.answer_expiry,
                    sent_at: None,
                    completed_at: None,
                    deadline_at: None,
                    result: None,
                    schedule_id: None,
                }));
            }
            effects.push(heard(None));
            effects
        }
    }
}

#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_785_000_000, 0).expect("a time")
    }

    fn status(json: serde_json::Value) -> StatusEvent {
        serde_json::from_value(json).expect("a status event")
    }

    #[test]
    fn a_battery_level_is_kept_with_margin_and_time() {
        let at = now() - Duration::minutes(5);
        let e = status(serde_json::json!({
            "deduplicationId": "7f1c3a5e-2b4d-4c6e-8f0a-9b1d3f5a7c9e",
            "time": at.to_rfc3339(),
            "margin": 12, "externalPowerSource": false,
            "batteryLevelUnavailable": false, "batteryLevel": 88.18897
        }));
        let s = device_status(&e, 7, now()).expect("valid");
        assert_eq!(s.meter_id, 7);
        assert_eq!(s.power, Power::Battery(88.18897));
        assert_eq!(s.margin_db, 12);
        assert_eq!(s.received_at, at);
    }

    #[test]
    fn external_power_and_an_unknown_battery_are_not_levels() {
        let external = status(serde_json::json!({
            "margin": -3, "externalPowerSource": true,
            "batteryLevelUnavailable": false, "batteryLevel": 0
        }));
        assert_eq!(
            device_status(&external, 1, now()).map(|s| s.power),
            Ok(Power::External)
        );
        let unknown = status(serde_json::json!({
            "margin": 5, "externalPowerSource": false,
            "batteryLevelUnavailable": true, "batteryLevel": 0
        }));
        assert_eq!(
            device_status(&unknown, 1, now()).map(|s| s.power),
            Ok(Power::Unknown)
        );
    }

    #[test]
    fn a_time_ahead_of_ours_is_ours_and_a_missing_one_is_now() {
        let ahead = status(serde_json::json!({
            "time": (now() + Duration::hours(1)).to_rfc3339(),
            "margin": 1, "batteryLevel": 50
        }));
        assert_eq!(
            device_status(&ahead, 1, now()).map(|s| s.received_at),
            Ok(now())
        );
        let without = status(serde_json::json!({"margin": 1, "batteryLevel": 50}));
        assert_eq!(
            device_status(&without, 1, now()).map(|s| s.received_at),
            Ok(now())
        );
    }

    #[test]
    fn a_level_that_is_no_percentage_is_refused_by_name() {
        let e = status(serde_json::json!({"margin": 1, "batteryLevel": 180.5}));
        let why = device_status(&e, 1, now()).expect_err("refused");
        assert!(why.contains("batteryLevel"), "{why}");
    }
}
