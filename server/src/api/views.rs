//! What the API returns: camelCase JSON views of the stored rows, with wire codes turned into
//! the names PROTOCOL.md uses.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::storage::alarms::Alarm;
use crate::storage::commands::CommandRow;
use crate::storage::inspections::Inspection;
use crate::storage::listings::RegionSummary;
use crate::storage::meters::Meter;
use crate::storage::quarantine::Quarantined;
use crate::storage::readings::StoredReading;
use crate::storage::self_tests::StoredSelfTest;

/// A page of a list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `rows` (at most `limit`), each shown through `view`. A full page may have a
    /// successor: its cursor is the encoded `key` of its last row; a shorter page is the
    /// last.
    pub fn of<R>(
        rows: Vec<R>,
        limit: i64,
        key: impl Fn(&R) -> Option<String>,
        view: impl FnMut(R) -> T,
    ) -> Page<T> {
        let next_cursor = if rows.len() as i64 == limit {
            rows.last()
                .and_then(key)
                .map(|k| crate::api::input::encode_cursor(&k))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// A region and its home-page counts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Meters registered.
    pub meters: i64,
    /// Meters not heard within their tolerance.
    pub silent_meters: i64,
    /// Open alarms.
    pub open_alarms: i64,
}

impl From<RegionSummary> for RegionView {
    fn from(r: RegionSummary) -> Self {
        RegionView {
            id: r.id,
            name: r.name,
            meters: r.meters,
            silent_meters: r.silent,
            open_alarms: r.open_alarms,
        }
    }
}

/// A meter with its latest known state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterView {
    /// meterhub's id.
    pub id: i64,
    /// LoRaWAN DevEUI.
    pub dev_eui: String,
    /// Serial number.
    pub serial: String,
    /// Number on the body.
    pub body_number: i64,
    /// Customer id.
    pub user_id: String,
    /// ChirpStack application.
    pub application_id: String,
    /// Region id.
    pub region: String,
    /// Usage type.
    pub usage_type: String,
    /// Billing mode.
    pub mode: String,
    /// Production date.
    pub production_date: NaiveDate,
    /// Registry status.
    pub status: String,
    /// Minutes between readings.
    pub reporting_interval_minutes: i32,
    /// Last uplink.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it counts as silent if nothing arrives.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Whether that time has passed.
    pub silent: bool,
    /// Battery voltage, mV.
    pub battery_millivolts: Option<i32>,
    /// Battery charge, %.
    pub battery_percent: Option<i16>,
    /// Best RSSI of the last uplink, dBm.
    pub rssi: Option<i32>,
    /// Best SNR of the last uplink, dB.
    pub snr: Option<f64>,
    /// The meter clock's offset from the network's reference time at its latest reading, ms
    /// (positive: ahead); `null` until measured.
    pub clock_drift_ms: Option<i64>,
    /// Firmware version.
    pub firmware_version: Option<String>,
    /// When its device info arrived.
    pub info_received_at: Option<DateTime<Utc>>,
    /// Registered at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl MeterView {
    /// The view at application time `now`.
    pub fn new(m: Meter, now: DateTime<Utc>) -> MeterView {
        MeterView {
            silent: m.overdue_at.is_some_and(|t| t < now),
            id: m.id,
            dev_eui: m.dev_eui,
            serial: m.serial,
            body_number: m.body_number,
            user_id: m.user_id,
            application_id: m.application_id,
            region: m.region_id,
            usage_type: m.usage_type,
            mode: m.mode,
            production_date: m.production_date,
            status: m.status,
            reporting_interval_minutes: m.reporting_interval_minutes,
            last_seen_at: m.last_seen_at,
            overdue_at: m.overdue_at,
            battery_millivolts: m.battery_millivolts,
            battery_percent: m.battery_percent,
            rssi: m.rssi,
            snr: m.snr,
            clock_drift_ms: m.clock_drift_ms,
            firmware_version: m.firmware_version,
            info_received_at: m.info_received_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The first overdue time after `now` among these meters: when their `silent` flags change.
pub fn next_overdue<'a>(
    meters: impl IntoIterator<Item = &'a Meter>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    meters
        .into_iter()
        .filter_map(|m| m.overdue_at)
        .filter(|t| *t >= now)
        .min()
}

fn valve_name(code: i16) -> &'static str {
    match code {
        0 => "notFitted",
        1 => "open",
        2 => "closed",
        3 => "fault",
        _ => "unknown",
    }
}

fn door_name(code: i16) -> &'static str {
    match code {
        0 => "notFitted",
        1 => "closed",
        2 => "open",
        _ => "unknown",
    }
}

fn flag_names(bits: i32) -> Vec<&'static str> {
    u16::try_from(bits)
        .ok()
        .and_then(firmware_protocol::StatusFlags::from_bits)
        .map(|f| f.names().collect())
        .unwrap_or_default()
}

fn test_names(bits: i16) -> Vec<&'static str> {
    u8::try_from(bits)
        .ok()
        .and_then(firmware_protocol::Tests::from_bits)
        .map(|t| t.names().collect())
        .unwrap_or_default()
}

/// A reading.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadingView {
    /// The meter's clock when taken.
    pub reading_time: DateTime<Utc>,
    /// When meterhub received it.
    pub received_at: DateTime<Utc>,
    /// Cumulative gas volume, litres.
    pub gas_volume_litres: Option<i64>,
    /// Cumulative active energy, Wh.
    pub energy_wh: Option<i64>,
    /// Voltage, 0.1 V.
    pub voltage_decivolts: Option<i32>,
    /// Current, mA.
    pub current_milliamps: Option<i64>,
    /// Gas temperature, 0.01 °C.
    pub gas_temperature_centi_celsius: Option<i32>,
    /// Gas pressure, Pa.
    pub gas_pressure_pa: Option<i64>,
    /// `notFitted`, `open`, `closed` or `fault`.
    pub valve: &'static str,
    /// `notFitted`, `closed` or `open`.
    pub door: &'static str,
    /// Battery voltage, mV.
    pub battery_millivolts: i32,
    /// Battery charge, %.
    pub battery_percent: i16,
    /// Status flags by name.
    pub flags: Vec<&'static str>,
    /// LoRaWAN frame counter.
    pub f_cnt: Option<i64>,
}

impl From<StoredReading> for ReadingView {
    fn from(r: StoredReading) -> Self {
        ReadingView {
            reading_time: r.reading_time,
            received_at: r.received_at,
            gas_volume_litres: r.gas_volume_litres,
            energy_wh: r.energy_wh,
            voltage_decivolts: r.voltage_decivolts,
            current_milliamps: r.current_milliamps,
            gas_temperature_centi_celsius: r.gas_temperature_centi_celsius,
            gas_pressure_pa: r.gas_pressure_pa,
            valve: valve_name(r.valve),
            door: door_name(r.door),
            battery_millivolts: r.battery_millivolts,
            battery_percent: r.battery_percent,
            flags: flag_names(r.flags),
            f_cnt: r.f_cnt,
        }
    }
}

/// A meter's latest reading.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestReadingView {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// The reading.
    pub reading: ReadingView,
}

/// An alarm.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    /// Id.
    pub id: i64,
    /// meterhub's meter id.
    pub meter_id: i64,
    /// Kind.
    pub kind: String,
    /// `meter` or `server`.
    pub source: String,
    /// When raised.
    pub raised_at: DateTime<Utc>,
    /// Value, meaning by kind.
    pub value: Option<i64>,
    /// `open`, `acknowledged` or `cleared`.
    pub state: String,
    /// When received.
    pub received_at: DateTime<Utc>,
    /// When acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// By whom (the API key's name).
    pub acknowledged_by: Option<String>,
    /// When cleared.
    pub cleared_at: Option<DateTime<Utc>>,
}

impl From<Alarm> for AlarmView {
    fn from(a: Alarm) -> Self {
        AlarmView {
            id: a.id,
            meter_id: a.meter_id,
            kind: a.kind,
            source: a.source,
            raised_at: a.raised_at,
            value: a.value,
            state: a.state,
            received_at: a.received_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            cleared_at: a.cleared_at,
        }
    }
}

/// A downlink command and where it is in its life.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandView {
    /// Id (ChirpStack's queue item id).
    pub id: Uuid,
    /// What it does.
    pub kind: String,
    /// LoRaWAN fPort.
    pub fport: i16,
    /// Payload, hex.
    pub payload: String,
    /// Whether the meter must acknowledge it.
    pub confirmed: bool,
    /// Who asked for it.
    pub requested_by: String,
    /// State.
    pub state: String,
    /// Hand-overs to ChirpStack.
    pub attempts: i32,
    /// Why it failed.
    pub error: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Dropped unless sent by then.
    pub expires_at: DateTime<Utc>,
}

impl From<CommandRow> for CommandView {
    fn from(c: CommandRow) -> Self {
        CommandView {
            id: c.id,
            kind: c.kind,
            fport: c.fport,
            payload: hex::encode(&c.payload),
            confirmed: c.confirmed,
            requested_by: c.requested_by,
            state: c.state,
            attempts: c.attempts,
            error: c.error,
            created_at: c.created_at,
            updated_at: c.updated_at,
            expires_at: c.expires_at,
        }
    }
}

/// A self-test result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfTestView {
    /// When it finished, by the meter's clock.
    pub meter_time: DateTime<Utc>,
    /// When received.
    pub received_at: DateTime<Utc>,
    /// Tests run, by name.
    pub tests_run: Vec<&'static str>,
    /// Tests failed, by name.
    pub tests_failed: Vec<&'static str>,
    /// Whether every test run passed.
    pub passed: bool,
    /// Battery under load, mV.
    pub battery_loaded_millivolts: i32,
    /// Battery at rest, mV.
    pub battery_rest_millivolts: i32,
    /// Valve travel, ms.
    pub valve_travel_ms: i32,
    /// Metrology deviation, 0.01 %.
    pub metrology_deviation_centi_percent: i32,
    /// Electronics temperature, 0.01 °C.
    pub internal_temperature_centi_celsius: i32,
}

impl From<StoredSelfTest> for SelfTestView {
    fn from(t: StoredSelfTest) -> Self {
        SelfTestView {
            meter_time: t.meter_time,
            received_at: t.received_at,
            tests_run: test_names(t.tests_run),
            tests_failed: test_names(t.tests_failed),
            passed: t.tests_failed == 0,
            battery_loaded_millivolts: t.battery_loaded_millivolts,
            battery_rest_millivolts: t.battery_rest_millivolts,
            valve_travel_ms: t.valve_travel_ms,
            metrology_deviation_centi_percent: t.metrology_deviation_centi_percent,
            internal_temperature_centi_celsius: t.internal_temperature_centi_celsius,
        }
    }
}

/// A field visit.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionView {
    /// Id.
    pub id: i64,
    /// meterhub's meter id.
    pub meter_id: i64,
    /// The alarm that led to it.
    pub alarm_id: Option<i64>,
    /// When.
    pub visited_at: DateTime<Utc>,
    /// Who.
    pub inspector: String,
    /// Outcome.
    pub outcome: String,
    /// Notes.
    pub notes: String,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
}

impl From<Inspection> for InspectionView {
    fn from(i: Inspection) -> Self {
        InspectionView {
            id: i.id,
            meter_id: i.meter_id,
            alarm_id: i.alarm_id,
            visited_at: i.visited_at,
            inspector: i.inspector,
            outcome: i.outcome,
            notes: i.notes,
            created_at: i.created_at,
        }
    }
}

/// A quarantined message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedView {
    /// Id.
    pub id: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// MQTT topic.
    pub topic: String,
    /// The message as text, when it is UTF-8 (ChirpStack's JSON events are).
    pub payload: Option<String>,
    /// The message as base64, when it is not text.
    pub payload_base64: Option<String>,
    /// Why it was quarantined.
    pub reason: String,
    /// What exactly.
    pub detail: String,
    /// The device, when known.
    pub dev_eui: Option<String>,
    /// When it was replayed.
    pub replayed_at: Option<DateTime<Utc>>,
}

impl From<Quarantined> for QuarantinedView {
    fn from(q: Quarantined) -> Self {
        use base64::Engine;
        let (payload, payload_base64) = match String::from_utf8(q.payload) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        };
        QuarantinedView {
            id: q.id,
            received_at: q.received_at,
            topic: q.topic,
            payload,
            payload_base64,
            reason: q.reason,
            detail: q.detail,
            dev_eui: q.dev_eui,
            replayed_at: q.replayed_at,
        }
    }
}

/// An API key as listed (never its secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<crate::storage::api_keys::ApiKeyRow> for KeyView {
    fn from(k: crate::storage::api_keys::ApiKeyRow) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            secret: None,
        }
    }
}
