//! What the API returns: camelCase JSON views of the stored rows, with wire codes turned into
//! the names PROTOCOL.md uses.

mod supply_points;
pub use supply_points::{MeterPartView, ReplacedView, SupplyPointConsumptionView};

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::storage::alarms::Alarm;
use crate::storage::commands::CommandRow;
use crate::storage::device_status::{DeviceStatus, Power};
use crate::storage::inspections::Inspection;
use crate::storage::lifecycle::{AuditAction, AuditRow, FinalReport, Installation, ServiceState};
use crate::storage::listings::RegionSummary;
use crate::storage::meters::Meter;
use crate::storage::quarantine::Quarantined;
use crate::storage::readings::StoredReading;
use crate::storage::self_tests::StoredSelfTest;

/// A page of a list.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}Page")]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Region")]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Meter")]
pub struct MeterView {
    /// meterhub's id.
    pub id: i64,
    /// LoRaWAN DevEUI.
    #[schemars(pattern("^[0-9a-f]{16}$"))]
    pub dev_eui: String,
    /// Serial number.
    #[schemars(pattern("^[0-9]{14}$"))]
    pub serial: String,
    /// Number on the body.
    pub body_number: i64,
    /// Customer id.
    pub user_id: String,
    /// ChirpStack application.
    #[schemars(extend("format" = "uuid"))]
    pub application_id: String,
    /// Region id.
    pub region: String,
    /// Usage type.
    #[schemars(extend("enum" = crate::registry::record::USAGE_TYPES))]
    pub usage_type: String,
    /// Billing mode.
    #[schemars(extend("enum" = crate::registry::record::MODES))]
    pub mode: String,
    /// Production date.
    pub production_date: NaiveDate,
    /// Registry status.
    #[schemars(extend("enum" = crate::api::routes::METER_STATUSES))]
    pub status: String,
    /// Minutes between readings.
    pub reporting_interval_minutes: i32,
    /// `in_service`, `removed` (in stock: a later install puts it back) or `destroyed`.
    pub service_state: ServiceState,
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
            service_state: m.service_state,
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

/// One meter in full: its state and its latest status report.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "MeterDetails")]
pub struct MeterDetailsView {
    /// The meter.
    #[serde(flatten)]
    pub meter: MeterView,
    /// Its latest answer to the network's status request (ChirpStack's `status` event);
    /// `null` until one arrives.
    pub device_status: Option<DeviceStatusView>,
    /// Where it is installed: its open installation period and supply point; `null` when it
    /// is out of service.
    pub installation: Option<Installation>,
}

/// One change to a meter, as its history shows it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "MeterChange")]
pub struct AuditView {
    /// Id: the history's order.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the API key's name, or `cli`.
    pub actor: String,
    /// What was done.
    pub action: AuditAction,
    /// The fields changed, as they were.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub before: serde_json::Value,
    /// The fields changed, as they became.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub after: serde_json::Value,
    /// Why, in the caller's words.
    pub reason: String,
}

impl From<AuditRow> for AuditView {
    fn from(a: AuditRow) -> Self {
        let object = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({}))
        };
        AuditView {
            id: a.id,
            at: a.at,
            actor: a.actor,
            action: a.action,
            before: object(&a.before),
            after: object(&a.after),
            reason: a.reason,
        }
    }
}

/// A closed billing period a deletion touches.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ClosedPeriod")]
pub struct ClosedPeriodView {
    /// Day, week or month.
    pub period: crate::billing::PeriodKind,
    /// Its first local date.
    pub first_day: NaiveDate,
    /// Its start.
    pub period_start: DateTime<Utc>,
    /// Its end (exclusive).
    pub period_end: DateTime<Utc>,
    /// When its figures were published.
    pub closed_at: DateTime<Utc>,
}

impl ClosedPeriodView {
    /// The view of a stored closed period (`None` for an unknown kind).
    pub fn new(c: &crate::storage::billing_periods::ClosedPeriod) -> Option<ClosedPeriodView> {
        Some(ClosedPeriodView {
            period: crate::billing::PeriodKind::parse(&c.kind)?,
            first_day: c.first_day,
            period_start: c.period_start,
            period_end: c.period_end,
            closed_at: c.closed_at,
        })
    }
}

/// What a deletion of a meter's readings or alarms removed, or (a dry run) would remove.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Deletion")]
pub struct DeletionView {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// `readings` or `alarms`.
    #[schemars(extend("enum" = ["readings", "alarms"]))]
    pub data: String,
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// Whether this only says what would go.
    pub dry_run: bool,
    /// Rows deleted (a dry run: rows that would be).
    pub count: i64,
    /// The earliest's time (reading time, or time raised), before the deletion.
    pub first: Option<DateTime<Utc>>,
    /// The latest's time, before the deletion.
    pub last: Option<DateTime<Utc>>,
    /// The closed billing periods the range overlaps (readings only).
    pub closed_periods: Vec<ClosedPeriodView>,
    /// Whether deleting needs `force=true` and a reason: the range touches closed periods.
    pub force_required: bool,
    /// The revisions of closed periods the deletion added.
    pub revisions: Vec<crate::billing::RevisionRecord>,
    /// Whether rows were deleted (false for a dry run).
    pub deleted: bool,
}

/// What a customer's erasure changed, or (a dry run) would change.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ErasureResult")]
pub struct ErasureView {
    /// Whether this only says what names the customer.
    pub dry_run: bool,
    /// Whether their data was erased (false for a dry run).
    pub erased: bool,
    /// The anonymous id now in their id's place; `null` for a dry run.
    pub token: Option<String>,
    /// The DevEUIs of their meters and of the meters that served their supply points
    /// (their readings stay, under the token).
    pub meters: Vec<String>,
    /// Meters registered to them.
    pub registered_meters: i64,
    /// Their supply points.
    pub supply_points: i64,
    /// Visits to their meters whose notes named them.
    pub inspections: i64,
    /// History rows that named them.
    pub audit_rows: i64,
    /// Final reports that named them.
    pub final_reports: i64,
}

impl ErasureView {
    /// The view of an erasure.
    pub fn new(e: &crate::registry::deletion::Erased, dry_run: bool) -> ErasureView {
        let f = &e.found;
        ErasureView {
            dry_run,
            erased: e.token.is_some(),
            token: e.token.clone(),
            meters: f.meters.iter().map(|(_, d, _)| d.clone()).collect(),
            registered_meters: f.registered_meters,
            supply_points: f.supply_points,
            inspections: f.inspections,
            audit_rows: f.audit_rows,
            final_reports: f.final_reports,
        }
    }
}

/// A meter's answer to the network's status request (LoRaWAN DevStatusAns).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DeviceStatus")]
pub struct DeviceStatusView {
    /// What powers the meter.
    pub battery: BatteryView,
    /// Demodulation margin of the request at the meter, dB: how far above the limit of
    /// reception the meter heard the network.
    pub margin_db: i32,
    /// When the uplink carrying the answer arrived.
    pub received_at: DateTime<Utc>,
}

/// What powers a meter, as its status report says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BatteryView {
    /// A battery, charged this many percent.
    Level {
        /// Charge, 0 to 100 %.
        #[schemars(range(min = 0, max = 100))]
        percent: f32,
    },
    /// External (mains) power.
    ExternalPower,
    /// The meter cannot measure its battery.
    Unknown,
}

impl From<DeviceStatus> for DeviceStatusView {
    fn from(s: DeviceStatus) -> Self {
        DeviceStatusView {
            battery: match s.power {
                Power::Battery(percent) => BatteryView::Level { percent },
                Power::External => BatteryView::ExternalPower,
                Power::Unknown => BatteryView::Unknown,
            },
            margin_db: s.margin_db,
            received_at: s.received_at,
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Reading")]
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
    #[schemars(extend("enum" = ["notFitted", "open", "closed", "fault", "unknown"]))]
    pub valve: &'static str,
    /// `notFitted`, `closed` or `open`.
    #[schemars(extend("enum" = ["notFitted", "closed", "open", "unknown"]))]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "LatestReading")]
pub struct LatestReadingView {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// The reading.
    pub reading: ReadingView,
}

/// An alarm.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Alarm")]
pub struct AlarmView {
    /// Id.
    pub id: i64,
    /// meterhub's meter id.
    pub meter_id: i64,
    /// Kind.
    pub kind: String,
    /// `meter` or `server`.
    #[schemars(extend("enum" = ["meter", "server"]))]
    pub source: String,
    /// When raised.
    pub raised_at: DateTime<Utc>,
    /// Value, meaning by kind.
    pub value: Option<i64>,
    /// `open`, `acknowledged` or `cleared`.
    #[schemars(extend("enum" = crate::api::routes::ALARM_STATES))]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Command")]
pub struct CommandView {
    /// Id (ChirpStack's queue item id).
    pub id: Uuid,
    /// What it does.
    pub kind: String,
    /// LoRaWAN fPort.
    pub fport: i16,
    /// Payload, hex.
    #[schemars(pattern("^([0-9a-f]{2})*$"))]
    pub payload: String,
    /// Whether the meter must acknowledge it.
    pub confirmed: bool,
    /// Who asked for it.
    pub requested_by: String,
    /// State.
    #[schemars(extend("enum" = crate::storage::commands::COMMAND_STATES))]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "SelfTest")]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Inspection")]
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
    #[schemars(extend("enum" = crate::storage::inspections::INSPECTION_OUTCOMES))]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Quarantined")]
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
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Key")]
pub struct KeyView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    #[schemars(extend("enum" = ["viewer", "operator", "admin"]))]
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

/// A whole list, unpaged.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct List<T> {
    /// The rows.
    pub items: Vec<T>,
}

/// The OpenAPI document itself.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Document(pub serde_json::Value);

impl JsonSchema for Document {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OpenApiDocument".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "required": ["openapi", "info", "paths", "components"],
            "properties": {"openapi": {"type": "string"}, "paths": {"type": "object"}}
        })
    }
}

/// What a region-wide command request queued.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionCommands {
    /// The region.
    pub region: String,
    /// The command's kind.
    pub kind: String,
    /// Commands queued, one per reporting meter.
    pub commands: usize,
}

/// What a replay did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Replay")]
pub struct ReplayView {
    /// The quarantined message.
    pub id: i64,
    /// False when the event had been applied before (a second replay).
    pub applied: bool,
    /// Readings stored.
    pub readings: u64,
    /// Alarms raised.
    pub alarms: u64,
    /// When it was (first) replayed.
    pub replayed_at: DateTime<Utc>,
}

/// A command with what completed it (and, for a read, the reading).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandDetail {
    /// The command.
    #[serde(flatten)]
    pub command: CommandView,
    /// meterhub's meter id.
    pub meter_id: i64,
    /// When ChirpStack took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it fails unless completed.
    pub deadline_at: Option<DateTime<Utc>>,
    /// What the meter answered.
    pub result: Option<serde_json::Value>,
    /// The self-test schedule that created it.
    pub schedule_id: Option<i64>,
    /// The reading a completed read-now brought.
    pub reading: Option<ReadingView>,
}

/// A self-test schedule.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Schedule")]
pub struct ScheduleView {
    /// Id.
    pub id: i64,
    /// `fleet`, `region` or `meter`.
    #[schemars(extend("enum" = ["fleet", "region", "meter"]))]
    pub scope: String,
    /// The region of a region schedule.
    pub region: Option<String>,
    /// The meter of a meter schedule.
    pub meter_id: Option<i64>,
    /// The tests by name.
    pub tests: Vec<&'static str>,
    /// Minutes between runs.
    pub interval_minutes: i32,
    /// The next run.
    pub next_run_at: DateTime<Utc>,
    /// Whether it runs.
    pub enabled: bool,
    /// Who created it.
    pub created_by: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<crate::storage::schedules::Schedule> for ScheduleView {
    fn from(s: crate::storage::schedules::Schedule) -> Self {
        let bits = u8::try_from(s.tests).unwrap_or(0);
        ScheduleView {
            id: s.id,
            scope: s.scope,
            region: s.region_id,
            meter_id: s.meter_id,
            tests: test_names(bits.into()),
            interval_minutes: s.interval_minutes,
            next_run_at: s.next_run_at,
            enabled: s.enabled,
            created_by: s.created_by,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The examples of the document: one meter, `70b3d5e75e000001` in region `north`, and what
/// it sent and was sent.
mod examples {
    use super::*;
    use crate::api::routes::Example;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    const DEV_EUI: &str = "70b3d5e75e000001";

    impl<T: Example> Example for Page<T> {
        fn example() -> Self {
            Page {
                items: vec![T::example()],
                next_cursor: Some(crate::api::input::encode_cursor("1")),
            }
        }
    }

    impl<T: Example> Example for List<T> {
        fn example() -> Self {
            List {
                items: vec![T::example()],
            }
        }
    }

    impl Example for Document {
        fn example() -> Self {
            Document(serde_json::json!({
                "openapi": "3.1.0", "info": {"title": "meterhub REST API", "version": "0.1.0"},
                "paths": {}, "components": {}
            }))
        }
    }

    impl Example for RegionView {
        fn example() -> Self {
            RegionView {
                id: "north".into(),
                name: "north".into(),
                meters: 1250,
                silent_meters: 3,
                open_alarms: 7,
            }
        }
    }

    impl Example for MeterView {
        fn example() -> Self {
            MeterView {
                id: 1,
                dev_eui: DEV_EUI.into(),
                serial: "12261000012348".into(),
                body_number: 4_000_123,
                user_id: "customer-1042".into(),
                application_id: "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23".into(),
                region: "north".into(),
                usage_type: "residential".into(),
                mode: "credit".into(),
                production_date: NaiveDate::from_ymd_opt(2026, 1, 15).unwrap_or_default(),
                status: "active".into(),
                reporting_interval_minutes: 1440,
                service_state: ServiceState::InService,
                last_seen_at: Some(at("2026-02-01T06:00:04Z")),
                overdue_at: Some(at("2026-02-03T06:00:04Z")),
                silent: false,
                battery_millivolts: Some(3600),
                battery_percent: Some(92),
                rssi: Some(-97),
                snr: Some(7.5),
                clock_drift_ms: Some(-120),
                firmware_version: Some("1.4.2".into()),
                info_received_at: Some(at("2026-01-16T09:12:00Z")),
                created_at: at("2026-01-15T08:00:00Z"),
                updated_at: at("2026-02-01T06:00:04Z"),
            }
        }
    }

    impl Example for MeterDetailsView {
        fn example() -> Self {
            MeterDetailsView {
                meter: MeterView::example(),
                device_status: Some(DeviceStatusView {
                    battery: BatteryView::Level { percent: 88.5 },
                    margin_db: 12,
                    received_at: at("2026-02-01T06:00:04Z"),
                }),
                installation: Some(Installation {
                    removed_at: None,
                    closing_register: None,
                    ..installation()
                }),
            }
        }
    }

    fn installation() -> Installation {
        Installation {
            id: 1,
            supply_point_id: 1,
            meter_id: 1,
            installed_at: at("2026-01-15T08:00:00Z"),
            removed_at: Some(at("2026-03-02T09:30:00Z")),
            opening_register: Some(0),
            closing_register: Some(1_234_567),
            region_id: "north".into(),
            user_id: "customer-1042".into(),
            usage_type: "residential".into(),
            address: Some("12 Harbour Road".into()),
        }
    }

    impl Example for DeletionView {
        fn example() -> Self {
            DeletionView {
                dev_eui: DEV_EUI.into(),
                data: "readings".into(),
                from: at("2026-01-31T00:00:00Z"),
                to: at("2026-02-01T00:00:00Z"),
                dry_run: true,
                count: 24,
                first: Some(at("2026-01-31T00:00:00Z")),
                last: Some(at("2026-01-31T23:00:00Z")),
                closed_periods: vec![ClosedPeriodView {
                    period: crate::billing::PeriodKind::Month,
                    first_day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
                    period_start: at("2025-12-31T23:00:00Z"),
                    period_end: at("2026-01-31T23:00:00Z"),
                    closed_at: at("2026-02-04T00:00:00Z"),
                }],
                force_required: true,
                revisions: Vec::new(),
                deleted: false,
            }
        }
    }

    impl Example for ErasureView {
        fn example() -> Self {
            ErasureView {
                dry_run: false,
                erased: true,
                token: Some("erased-5f0c2a9e7b3d4c1e8a6f2b9d0e1c3a7f".into()),
                meters: vec![DEV_EUI.into()],
                registered_meters: 1,
                supply_points: 1,
                inspections: 0,
                audit_rows: 2,
                final_reports: 0,
            }
        }
    }

    impl Example for AuditView {
        fn example() -> Self {
            AuditView {
                id: 4,
                at: at("2026-03-01T10:15:00Z"),
                actor: "operations".into(),
                action: AuditAction::Change,
                before: serde_json::json!({"userId": "customer-1042", "mode": "credit"}),
                after: serde_json::json!({"userId": "customer-2077", "mode": "prepaid"}),
                reason: "new tenant from 1 March, prepaid contract".into(),
            }
        }
    }

    impl Example for FinalReport {
        fn example() -> Self {
            use crate::storage::lifecycle::{
                LastRegisters, ReportAlarm, ReportCommand, ReportInspection, RetireOutcome,
            };
            FinalReport {
                meter_id: 1,
                dev_eui: DEV_EUI.into(),
                serial: "12261000012348".into(),
                outcome: RetireOutcome::Renovation,
                reason: "display faulty; sent to the workshop".into(),
                retired_at: at("2026-03-02T09:30:00Z"),
                retired_by: "operations".into(),
                installation: Some(installation()),
                last_registers: Some(LastRegisters {
                    reading_time: at("2026-03-02T06:00:00Z"),
                    gas_volume_litres: Some(1_234_567),
                    energy_wh: None,
                }),
                open_alarms: vec![ReportAlarm {
                    id: 17,
                    kind: "magneticTamper".into(),
                    raised_at: at("2026-02-01T03:12:00Z"),
                    state: "acknowledged".into(),
                    occurrences: 1,
                }],
                last_inspection: Some(ReportInspection {
                    id: 5,
                    visited_at: at("2026-02-01T10:00:00Z"),
                    inspector: "field crew 7".into(),
                    outcome: "repaired".into(),
                    notes: "Magnet removed; seal replaced.".into(),
                }),
                outstanding_commands: vec![ReportCommand {
                    id: Uuid::from_u128(0x6f1c_2a3b_4c5d_4e6f_8a9b_0c1d_2e3f_4a5b),
                    kind: "selfTest".into(),
                    state: "pending".into(),
                    created_at: at("2026-02-01T08:31:00Z"),
                }],
            }
        }
    }

    impl Example for ReadingView {
        fn example() -> Self {
            ReadingView {
                reading_time: at("2026-02-01T06:00:00Z"),
                received_at: at("2026-02-01T06:00:04Z"),
                gas_volume_litres: Some(1_234_567),
                energy_wh: None,
                voltage_decivolts: None,
                current_milliamps: None,
                gas_temperature_centi_celsius: Some(1150),
                gas_pressure_pa: Some(2100),
                valve: "open",
                door: "notFitted",
                battery_millivolts: 3600,
                battery_percent: 92,
                flags: vec![],
                f_cnt: Some(42),
            }
        }
    }

    impl Example for LatestReadingView {
        fn example() -> Self {
            LatestReadingView {
                dev_eui: DEV_EUI.into(),
                reading: ReadingView::example(),
            }
        }
    }

    impl Example for AlarmView {
        fn example() -> Self {
            AlarmView {
                id: 17,
                meter_id: 1,
                kind: "magneticTamper".into(),
                source: "meter".into(),
                raised_at: at("2026-02-01T03:12:00Z"),
                value: Some(3),
                state: "acknowledged".into(),
                received_at: at("2026-02-01T03:12:05Z"),
                acknowledged_at: Some(at("2026-02-01T08:30:00Z")),
                acknowledged_by: Some("operations".into()),
                cleared_at: None,
            }
        }
    }

    impl Example for CommandView {
        fn example() -> Self {
            CommandView {
                id: Uuid::from_u128(0x6f1c_2a3b_4c5d_4e6f_8a9b_0c1d_2e3f_4a5b),
                kind: "selfTest".into(),
                fport: 10,
                payload: "0303".into(),
                confirmed: true,
                requested_by: "operations".into(),
                state: "pending".into(),
                attempts: 0,
                error: None,
                created_at: at("2026-02-01T08:31:00Z"),
                updated_at: at("2026-02-01T08:31:00Z"),
                expires_at: at("2026-02-02T08:31:00Z"),
            }
        }
    }

    impl Example for CommandDetail {
        fn example() -> Self {
            CommandDetail {
                command: CommandView {
                    kind: "readNow".into(),
                    state: "completed".into(),
                    attempts: 1,
                    ..CommandView::example()
                },
                meter_id: 1,
                sent_at: Some(at("2026-02-01T08:35:02Z")),
                completed_at: Some(at("2026-02-01T08:35:09Z")),
                deadline_at: None,
                result: Some(serde_json::json!({"readingTime": "2026-02-01T06:00:00Z"})),
                schedule_id: None,
                reading: Some(ReadingView::example()),
            }
        }
    }

    impl Example for RegionCommands {
        fn example() -> Self {
            RegionCommands {
                region: "north".into(),
                kind: "forceResync".into(),
                commands: 1250,
            }
        }
    }

    impl Example for ScheduleView {
        fn example() -> Self {
            ScheduleView {
                id: 3,
                scope: "region".into(),
                region: Some("north".into()),
                meter_id: None,
                tests: vec!["battery", "valve"],
                interval_minutes: 43_200,
                next_run_at: at("2026-03-01T02:00:00Z"),
                enabled: true,
                created_by: "operations".into(),
                created_at: at("2026-02-01T08:40:00Z"),
                updated_at: at("2026-02-01T08:40:00Z"),
            }
        }
    }

    impl Example for SelfTestView {
        fn example() -> Self {
            SelfTestView {
                meter_time: at("2026-02-01T02:00:30Z"),
                received_at: at("2026-02-01T02:00:34Z"),
                tests_run: vec!["battery", "valve"],
                tests_failed: vec!["valve"],
                passed: false,
                battery_loaded_millivolts: 3300,
                battery_rest_millivolts: 3550,
                valve_travel_ms: 0,
                metrology_deviation_centi_percent: 12,
                internal_temperature_centi_celsius: 2100,
            }
        }
    }

    impl Example for InspectionView {
        fn example() -> Self {
            InspectionView {
                id: 5,
                meter_id: 1,
                alarm_id: Some(17),
                visited_at: at("2026-02-01T10:00:00Z"),
                inspector: "field crew 7".into(),
                outcome: "repaired".into(),
                notes: "Magnet removed; seal replaced.".into(),
                created_at: at("2026-02-01T11:02:00Z"),
            }
        }
    }

    impl Example for QuarantinedView {
        fn example() -> Self {
            QuarantinedView {
                id: 9,
                received_at: at("2026-02-01T06:00:04Z"),
                topic: "application/3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23/device/70b3d5e75e000009/event/up".into(),
                payload: Some("{\"deduplicationId\":\"…\"}".into()),
                payload_base64: None,
                reason: "unregistered_device".into(),
                detail: "70b3d5e75e000009 is not registered".into(),
                dev_eui: Some("70b3d5e75e000009".into()),
                replayed_at: None,
            }
        }
    }

    impl Example for ReplayView {
        fn example() -> Self {
            ReplayView {
                id: 9,
                applied: true,
                readings: 1,
                alarms: 0,
                replayed_at: at("2026-02-01T09:00:00Z"),
            }
        }
    }

    impl Example for crate::billing::ConsumptionRecord {
        fn example() -> Self {
            let local = |t: &str| {
                DateTime::parse_from_rfc3339(t)
                    .unwrap_or_else(|_| at("2026-01-01T00:00:00Z").fixed_offset())
            };
            crate::billing::ConsumptionRecord {
                period: crate::billing::PeriodKind::Month,
                period_start: local("2026-01-01T00:00:00+01:00"),
                period_end: local("2026-02-01T00:00:00+01:00"),
                period_start_utc: at("2025-12-31T23:00:00Z"),
                period_end_utc: at("2026-01-31T23:00:00Z"),
                quality: crate::billing::Quality::Measured,
                readings: 31,
                gas_litres: Some(84_200),
                gas_cubic_metres: Some(84.2),
                gas_register_start: Some(1_150_367),
                gas_register_end: Some(1_234_567),
                energy_wh: None,
                energy_kwh: None,
                energy_register_start: None,
                energy_register_end: None,
                closed_at: Some(at("2026-02-04T00:00:00Z")),
                revisions: 1,
                revised_at: Some(at("2026-02-09T10:00:00Z")),
                revised_quality: Some(crate::billing::Quality::Measured),
                revised_gas_litres: Some(84_650),
                revised_energy_wh: None,
            }
        }
    }

    impl Example for crate::billing::RevisionRecord {
        fn example() -> Self {
            let month = crate::billing::ConsumptionRecord::example();
            crate::billing::RevisionRecord {
                period: month.period,
                period_start: month.period_start,
                period_end: month.period_end,
                revision: 1,
                revised_at: at("2026-02-09T10:00:00Z"),
                reason: crate::billing::closing::RevisionReason::LateReading,
                reading_time: at("2026-01-31T22:30:00Z"),
                old_quality: crate::billing::Quality::Measured,
                old_gas_litres: Some(84_200),
                old_energy_wh: None,
                quality: crate::billing::Quality::Measured,
                readings: 32,
                gas_litres: Some(84_650),
                gas_register_start: Some(1_150_367),
                gas_register_end: Some(1_235_017),
                energy_wh: None,
                energy_register_start: None,
                energy_register_end: None,
            }
        }
    }

    impl Example for crate::billing::RegionTotals {
        fn example() -> Self {
            use crate::billing::totals::{QualityCounts, Sum, UsageSum};
            let month = crate::billing::ConsumptionRecord::example();
            let sum = |measured, estimated, gas_litres: i64| Sum {
                meters: QualityCounts {
                    measured,
                    estimated,
                    incomplete: 1,
                    invalid: 0,
                },
                gas_litres,
                gas_cubic_metres: gas_litres as f64 / 1000.0,
                energy_wh: 0,
                energy_kwh: 0.0,
            };
            crate::billing::RegionTotals {
                period: month.period,
                period_start: month.period_start,
                period_end: month.period_end,
                period_start_utc: month.period_start_utc,
                period_end_utc: month.period_end_utc,
                sum: sum(812, 37, 61_518_400),
                usage_types: vec![UsageSum {
                    usage_type: "residential".into(),
                    sum: sum(812, 37, 61_518_400),
                }],
            }
        }
    }

    impl Example for crate::billing::export::ExportRecord {
        fn example() -> Self {
            crate::billing::export::ExportRecord {
                dev_eui: "70b3d5e75e000009".into(),
                serial: "12260100000013".into(),
                region: "north".into(),
                usage_type: "residential".into(),
                consumption: crate::billing::ConsumptionRecord::example(),
            }
        }
    }

    impl Example for KeyView {
        fn example() -> Self {
            KeyView {
                id: Uuid::from_u128(0x0b7d_6a4e_3b44_4b6e_9f3c_0a1c_2b3d_4e5f),
                name: "billing export".into(),
                role: "viewer".into(),
                prefix: "mh_3kq9".into(),
                created_at: at("2026-02-01T08:00:00Z"),
                revoked_at: None,
                secret: Some("mh_3kq9…".into()),
            }
        }
    }
}
