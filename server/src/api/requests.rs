//! What requests carry: the query strings and JSON bodies the handlers parse, as types. The
//! OpenAPI document's parameter and body schemas are derived from these same types (with the
//! ranges, patterns and per-kind rules the handlers check), so the document says what the
//! server accepts.

mod supply_points;
pub use supply_points::{ReplaceBody, ReplacementInstall};

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Role;
use super::input::{MAX_PAGE, MeterRef};
use super::routes::{ALARM_STATES, Example, METER_STATUSES};
pub use crate::registry::record::MAX_REASON;
use crate::registry::record::{MODES, USAGE_TYPES};
use crate::storage::inspections::INSPECTION_OUTCOMES;

/// A text that must hold something besides white space.
pub const NOT_BLANK: &str = r"\S";
/// A keyset cursor as the API returns it (base64url without padding).
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]+$";

fn with_enum(values: &[&str], doc: &str) -> Schema {
    json_schema!({"type": "string", "enum": values, "description": doc})
}

fn meter_statuses(_: &mut SchemaGenerator) -> Schema {
    with_enum(&METER_STATUSES, "Only meters in this registry status.")
}

fn alarm_states(_: &mut SchemaGenerator) -> Schema {
    with_enum(&ALARM_STATES, "Only alarms in this state.")
}

fn reasons(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = crate::uplink::Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    with_enum(&names, "Only messages quarantined for this reason.")
}

fn test_names() -> Vec<&'static str> {
    firmware_protocol::Tests::ALL.names().collect()
}

fn tests_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "minItems": 1,
        "items": {"type": "string", "enum": test_names()},
        "description": "The tests by name."
    })
}

fn meter_ref(g: &mut SchemaGenerator) -> Schema {
    MeterRef::json_schema(g)
}

/// A query that takes no parameters (an unexpected one is refused by name).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

impl Example for NoQuery {
    fn example() -> Self {
        NoQuery {}
    }
}

/// A page of a list.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PageQuery {
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for PageQuery {
    fn example() -> Self {
        PageQuery {
            limit: Some(50),
            cursor: None,
        }
    }
}

/// A page of a time range.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RangeQuery {
    /// Start of the time range (inclusive), RFC 3339; it must come before `to`.
    pub from: Option<DateTime<Utc>>,
    /// End of the time range (exclusive), RFC 3339; default now.
    pub to: Option<DateTime<Utc>>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for RangeQuery {
    fn example() -> Self {
        RangeQuery {
            from: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .ok()
                .map(|t| t.to_utc()),
            to: DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                .ok()
                .map(|t| t.to_utc()),
            limit: Some(100),
            cursor: None,
        }
    }
}

/// Silent meters.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SilentQuery {
    /// Only this region.
    pub region: Option<String>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for SilentQuery {
    fn example() -> Self {
        SilentQuery {
            region: Some("north".into()),
            limit: Some(100),
            cursor: None,
        }
    }
}

/// Meters by region, status or customer.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetersQuery {
    /// Only this region.
    pub region: Option<String>,
    /// Only meters in this registry status.
    #[schemars(schema_with = "meter_statuses")]
    pub status: Option<String>,
    /// Only this customer's meters.
    pub user_id: Option<String>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for MetersQuery {
    fn example() -> Self {
        MetersQuery {
            region: Some("north".into()),
            status: Some("active".into()),
            user_id: None,
            limit: Some(100),
            cursor: None,
        }
    }
}

/// Alarms by state, kind, region, meter and time raised.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlarmsQuery {
    /// Only alarms in this state.
    #[schemars(schema_with = "alarm_states")]
    pub state: Option<String>,
    /// Only alarms of this kind.
    pub kind: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only this meter's alarms (DevEUI or serial).
    #[schemars(schema_with = "meter_ref")]
    pub meter: Option<String>,
    /// Raised at or after, RFC 3339; it must come before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Raised before, RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for AlarmsQuery {
    fn example() -> Self {
        AlarmsQuery {
            state: Some("open".into()),
            kind: Some("leak".into()),
            meter: Some("70b3d5e75e000001".into()),
            ..AlarmsQuery::default()
        }
    }
}

/// Quarantined messages.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuarantineQuery {
    /// Only messages quarantined for this reason.
    #[schemars(schema_with = "reasons")]
    pub reason: Option<String>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for QuarantineQuery {
    fn example() -> Self {
        QuarantineQuery {
            reason: Some("unregistered_device".into()),
            limit: Some(20),
            cursor: None,
        }
    }
}

/// A meter's consumption per period.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumptionQuery {
    /// Period length (default `month`).
    pub period: Option<crate::billing::PeriodKind>,
    /// First local date, 1970-01-01 to 9999-01-01; the list starts with the period holding it
    /// (default: 31 days, 12 weeks or 12 months before `to`).
    pub from: Option<chrono::NaiveDate>,
    /// Periods starting before this local date are listed, 1970-01-01 to 9999-01-01 (default:
    /// tomorrow).
    pub to: Option<chrono::NaiveDate>,
    /// Rows per page, 1–1000 (default 100).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for ConsumptionQuery {
    fn example() -> Self {
        ConsumptionQuery {
            period: Some(crate::billing::PeriodKind::Month),
            from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
            to: chrono::NaiveDate::from_ymd_opt(2026, 7, 1),
            limit: None,
            cursor: None,
        }
    }
}

/// A billing run's export: every meter's consumption over one month's periods.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportQuery {
    /// Period length (default `month`): the month's days, the ISO weeks starting in it, or
    /// the month itself.
    pub period: Option<crate::billing::PeriodKind>,
    /// The month, `YYYY-MM`, 1970-01 to 9998-12.
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}$"))]
    pub month: String,
    /// Only this region's meters (default: all).
    pub region: Option<String>,
    /// Meters per page, 1–1000 (default 100); a page holds each meter's rows.
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub limit: Option<u32>,
    #[doc = "The `nextCursor` of the previous page, as returned; any other value is refused (400)."]
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl Example for ExportQuery {
    fn example() -> Self {
        ExportQuery {
            period: Some(crate::billing::PeriodKind::Month),
            month: "2026-05".into(),
            region: Some("north".into()),
            limit: None,
            cursor: None,
        }
    }
}

/// A meter to install, with the fields of `meterhub meters import`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "MeterInstall")]
pub struct MeterInstall {
    /// 14 digits, the last a check digit (a wrong one is refused, 400).
    #[schemars(pattern(r"^[0-9]{14}$"))]
    pub serial: String,
    /// LoRaWAN DevEUI, 16 hex digits (any case).
    #[schemars(pattern(r"^[0-9A-Fa-f]{16}$"))]
    pub dev_eui: String,
    /// ChirpStack application id.
    #[schemars(extend("format" = "uuid"))]
    pub application_id: String,
    /// The number on the meter's body.
    pub body_number: u32,
    /// The utility's customer id.
    #[schemars(pattern(NOT_BLANK))]
    pub user_id: String,
    /// Region id (created when new), at most 64 characters.
    #[schemars(pattern(NOT_BLANK), length(max = 64))]
    pub region: String,
    /// Usage type.
    #[schemars(extend("enum" = USAGE_TYPES))]
    pub usage_type: String,
    /// Billing mode.
    #[schemars(extend("enum" = MODES))]
    pub mode: String,
    /// Production date, `YYYY-MM-DD`.
    #[schemars(extend("format" = "date"))]
    pub production_date: String,
    /// Minutes between readings, 15–10080 (default 1440).
    #[schemars(range(
        min = firmware_protocol::MIN_REPORTING_INTERVAL_MINUTES,
        max = firmware_protocol::MAX_REPORTING_INTERVAL_MINUTES
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval_minutes: Option<u16>,
    /// OTAA JoinEUI, 16 hex digits: with `appKey`, the meter's device is created in ChirpStack
    /// when `[chirpstack]` keeps its device list in step.
    #[schemars(pattern(r"^[0-9A-Fa-f]{16}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_eui: Option<String>,
    /// OTAA AppKey (LoRaWAN 1.0.x root key), 32 hex digits, given with `joinEui`. Stored for
    /// ChirpStack and never part of any answer.
    #[schemars(pattern(r"^[0-9A-Fa-f]{32}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_key: Option<String>,
}

impl Example for MeterInstall {
    fn example() -> Self {
        MeterInstall {
            serial: "12261000012348".into(),
            dev_eui: "70b3d5e75e000001".into(),
            application_id: "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23".into(),
            body_number: 4_000_123,
            user_id: "customer-1042".into(),
            region: "north".into(),
            usage_type: "residential".into(),
            mode: "credit".into(),
            production_date: "2026-01-15".into(),
            reporting_interval_minutes: Some(1440),
            join_eui: None,
            app_key: None,
        }
    }
}

impl From<MeterInstall> for crate::registry::MeterRecord {
    fn from(m: MeterInstall) -> Self {
        crate::registry::MeterRecord {
            serial: Some(m.serial),
            dev_eui: Some(m.dev_eui),
            application_id: Some(m.application_id),
            body_number: Some(json!(m.body_number)),
            user_id: Some(m.user_id),
            region: Some(m.region),
            usage_type: Some(m.usage_type),
            mode: Some(m.mode),
            production_date: Some(m.production_date),
            reporting_interval_minutes: m.reporting_interval_minutes.map(|n| json!(n)),
            join_eui: m.join_eui,
            app_key: m.app_key,
        }
    }
}

/// A field that is `null` in a body is present (`Some(None)`), one left out is absent
/// (`None`): JSON merge-patch tells "remove" from "leave".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A change to a meter's details, as a JSON merge patch: the fields named change, those left
/// out stay; the result is validated as an install is. A meter's identity (serial, DevEUI)
/// cannot change, and the fields a meter always has cannot be removed (`null`, 400); only
/// `address` may be `null` (removed).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "MeterPatch")]
pub struct MeterPatch {
    /// The utility's customer id.
    #[schemars(with = "String", pattern(NOT_BLANK))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<Option<String>>,
    /// Region id (created when new), at most 64 characters; the cached answers of both
    /// regions change.
    #[schemars(with = "String", pattern(NOT_BLANK), length(max = 64))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub region: Option<Option<String>>,
    /// Usage type.
    #[schemars(with = "String", extend("enum" = USAGE_TYPES))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_type: Option<Option<String>>,
    /// Billing mode.
    #[schemars(with = "String", extend("enum" = MODES))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<Option<String>>,
    /// ChirpStack application id.
    #[schemars(with = "String", extend("format" = "uuid"))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub application_id: Option<Option<String>>,
    /// Production date, `YYYY-MM-DD`.
    #[schemars(with = "String", extend("format" = "date"))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub production_date: Option<Option<String>>,
    /// The number on the meter's body.
    #[schemars(with = "u32")]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub body_number: Option<Option<u32>>,
    /// Minutes between readings, 15–10080 (the meter is told by a `setReportingInterval`
    /// command, sent separately).
    #[schemars(with = "u16", range(
        min = firmware_protocol::MIN_REPORTING_INTERVAL_MINUTES,
        max = firmware_protocol::MAX_REPORTING_INTERVAL_MINUTES
    ))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_interval_minutes: Option<Option<u16>>,
    /// The supply point's address, at most 500 characters; `null` removes it.
    #[schemars(with = "Option<String>", length(max = 500))]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<Option<String>>,
    /// Why, recorded in the meter's history: 1–2000 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 2000))]
    pub reason: String,
}

impl Example for MeterPatch {
    fn example() -> Self {
        MeterPatch {
            user_id: Some(Some("customer-2077".into())),
            mode: Some(Some("prepaid".into())),
            reason: "new tenant from 1 March, prepaid contract".into(),
            ..MeterPatch::default()
        }
    }
}

/// What a meter is retired for, and why.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Retirement")]
pub struct RetireBody {
    /// `renovation` (back to stock; a later install puts it in service again) or
    /// `destruction` (final: an install is refused, 409).
    pub outcome: crate::storage::lifecycle::RetireOutcome,
    /// Why, recorded in the meter's history and its final report: 1–2000 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 2000))]
    pub reason: String,
}

impl Example for RetireBody {
    fn example() -> Self {
        RetireBody {
            outcome: crate::storage::lifecycle::RetireOutcome::Renovation,
            reason: "display faulty; sent to the workshop".into(),
        }
    }
}

/// A deletion of a meter's readings in a time range.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteReadingsQuery {
    /// Start of the range (inclusive), RFC 3339; it must come before `to`.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive), RFC 3339.
    pub to: DateTime<Utc>,
    /// Why, recorded in the meter's history: required to delete (not for a dry run),
    /// 1–2000 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 2000))]
    pub reason: Option<String>,
    /// Only answer what would go (default false).
    pub dry_run: Option<bool>,
    /// Delete inside closed billing periods too, adding a revision of each (default false;
    /// needs a reason).
    pub force: Option<bool>,
}

impl Example for DeleteReadingsQuery {
    fn example() -> Self {
        DeleteReadingsQuery {
            from: DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            to: DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            reason: None,
            dry_run: Some(true),
            force: None,
        }
    }
}

/// A deletion of a meter's alarms raised in a time range.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteAlarmsQuery {
    /// Raised at or after, RFC 3339; it must come before `to`.
    pub from: DateTime<Utc>,
    /// Raised before, RFC 3339.
    pub to: DateTime<Utc>,
    /// Why, recorded in the meter's history: required to delete (not for a dry run),
    /// 1–2000 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 2000))]
    pub reason: Option<String>,
    /// Only answer what would go (default false).
    pub dry_run: Option<bool>,
}

impl Example for DeleteAlarmsQuery {
    fn example() -> Self {
        DeleteAlarmsQuery {
            from: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            to: DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            reason: None,
            dry_run: Some(true),
        }
    }
}

/// A customer's erasure.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Erasure")]
pub struct EraseBody {
    /// Why, recorded in the history of each of their meters: at most 2000 characters, not
    /// blank unless for a dry run.
    #[schemars(length(max = 2000))]
    pub reason: String,
    /// Only answer what names the customer (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

impl Example for EraseBody {
    fn example() -> Self {
        EraseBody {
            reason: "erasure request of 3 March under GDPR article 17".into(),
            dry_run: Some(true),
        }
    }
}

/// A reason as a body gives it: not blank, at most [`MAX_REASON`] characters.
pub fn reason(text: &str) -> Result<String, super::error::Problem> {
    let t = text.trim();
    if t.is_empty() {
        Err(super::error::Problem::bad_field(
            "reason",
            "is required and may not be blank",
        ))
    } else if t.chars().count() > MAX_REASON {
        Err(super::error::Problem::bad_field(
            "reason",
            format!("is longer than {MAX_REASON} characters"),
        ))
    } else {
        Ok(t.to_owned())
    }
}

/// The kinds a command request may name, in the API's spelling, with the arguments each
/// requires and those it may take (every kind may take `expiresInMinutes`). An argument that a
/// kind does not take is refused by name.
pub const COMMAND_KINDS: [(&str, &[&str], &[&str]); 10] = [
    ("valveOpen", &[], &[]),
    ("valveClose", &[], &[]),
    ("selfTest", &["tests"], &[]),
    ("readNow", &[], &[]),
    ("sendInfo", &[], &[]),
    ("setReportingInterval", &["minutes"], &[]),
    ("disconnect", &[], &[]),
    ("forceResync", &[], &["transmissions"]),
    ("clockPeriodicity", &["period"], &[]),
    ("packageVersion", &[], &[]),
];

/// The kinds that may go to a whole region at once.
pub const REGION_COMMAND_KINDS: [&str; 4] = [
    "selfTest",
    "forceResync",
    "clockPeriodicity",
    "packageVersion",
];

/// The arguments of a command, by name.
pub const COMMAND_ARGUMENTS: [&str; 4] = ["tests", "minutes", "transmissions", "period"];

/// One `oneOf` branch per kind: the arguments it requires, and `false` for those it does not
/// take.
fn per_kind(schema: &mut Schema, kinds: &[&str]) {
    let branches: Vec<Value> = COMMAND_KINDS
        .iter()
        .filter(|(k, _, _)| kinds.contains(k))
        .map(|(kind, required, optional)| {
            let mut props = serde_json::Map::new();
            props.insert("kind".into(), json!({"const": kind}));
            for a in COMMAND_ARGUMENTS {
                if !required.contains(&a) && !optional.contains(&a) {
                    props.insert(a.into(), json!(false));
                }
            }
            json!({"properties": props, "required": required})
        })
        .collect();
    schema.insert("oneOf".into(), Value::Array(branches));
    if let Some(kind) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("kind"))
        .and_then(Value::as_object_mut)
    {
        kind.insert("enum".into(), json!(kinds));
    }
}

fn all_kinds(schema: &mut Schema) {
    let kinds: Vec<&str> = COMMAND_KINDS.iter().map(|(k, _, _)| *k).collect();
    per_kind(schema, &kinds);
}

/// The body of a command request: the kind and the arguments it takes.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "CommandRequest", transform = all_kinds)]
pub struct CommandBody {
    /// What to do.
    pub kind: String,
    /// selfTest: the tests by name.
    #[schemars(schema_with = "tests_schema")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Vec<String>>,
    /// setReportingInterval: minutes between readings.
    #[schemars(range(
        min = firmware_protocol::MIN_REPORTING_INTERVAL_MINUTES,
        max = firmware_protocol::MAX_REPORTING_INTERVAL_MINUTES
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u16>,
    /// forceResync: AppTimeReq transmissions asked for (default 1).
    #[schemars(range(min = 1, max = 7))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmissions: Option<u8>,
    /// clockPeriodicity: an AppTimeReq every 128·2^period seconds.
    #[schemars(range(min = 0, max = 15))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u8>,
    /// How long the command may wait for the meter, minutes (default: the server's).
    #[schemars(range(min = 1, max = 43_200))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u32>,
}

impl Example for CommandBody {
    fn example() -> Self {
        CommandBody {
            kind: "selfTest".into(),
            tests: Some(vec!["battery".into(), "valve".into()]),
            minutes: None,
            transmissions: None,
            period: None,
            expires_in_minutes: Some(1440),
        }
    }
}

/// A command for every reporting meter of a region: the kinds that may go to many.
#[derive(Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RegionCommandBody(pub CommandBody);

impl JsonSchema for RegionCommandBody {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RegionCommandRequest".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let mut schema = CommandBody::json_schema(g);
        per_kind(&mut schema, &REGION_COMMAND_KINDS);
        schema
    }
}

impl Example for RegionCommandBody {
    fn example() -> Self {
        RegionCommandBody(CommandBody {
            kind: "forceResync".into(),
            tests: None,
            minutes: None,
            transmissions: Some(2),
            period: None,
            expires_in_minutes: None,
        })
    }
}

/// What each scope requires and refuses.
fn per_scope(schema: &mut Schema) {
    schema.insert(
        "oneOf".into(),
        json!([
            {"properties": {"scope": {"const": "fleet"}, "region": false, "meter": false}},
            {"properties": {"scope": {"const": "region"}, "meter": false}, "required": ["region"]},
            {"properties": {"scope": {"const": "meter"}, "region": false}, "required": ["meter"]}
        ]),
    );
}

/// The body that creates or replaces a self-test schedule.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "ScheduleSpec", transform = per_scope)]
pub struct ScheduleBody {
    /// The fleet, a region or a meter.
    #[schemars(extend("enum" = ["fleet", "region", "meter"]))]
    pub scope: String,
    /// scope `region`: an existing region (an unknown one is refused, 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// scope `meter`: the meter, DevEUI or serial (an unknown one is 404).
    #[schemars(schema_with = "meter_ref")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    /// The tests by name.
    #[schemars(schema_with = "tests_schema")]
    pub tests: Vec<String>,
    /// Minutes between runs, 15 to a year.
    #[schemars(range(min = 15, max = 527_040))]
    pub interval_minutes: i32,
    /// The first run (default now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Whether it runs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Example for ScheduleBody {
    fn example() -> Self {
        ScheduleBody {
            scope: "region".into(),
            region: Some("north".into()),
            meter: None,
            tests: vec!["battery".into(), "valve".into()],
            interval_minutes: 43_200,
            next_run_at: None,
            enabled: Some(true),
        }
    }
}

/// A field visit as a request gives it.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "InspectionRecord")]
pub struct InspectionBody {
    /// When, RFC 3339; not in the future.
    pub visited_at: DateTime<Utc>,
    /// Who, 1–200 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 200))]
    pub inspector: String,
    /// What they found.
    #[schemars(extend("enum" = INSPECTION_OUTCOMES))]
    pub outcome: String,
    /// Notes, at most 10 000 characters.
    #[schemars(length(max = 10_000))]
    #[serde(default)]
    pub notes: String,
    /// The alarm of this meter that led to the visit (another is refused, 400).
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_id: Option<i64>,
}

impl Example for InspectionBody {
    fn example() -> Self {
        InspectionBody {
            visited_at: DateTime::parse_from_rfc3339("2026-01-20T10:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            inspector: "field crew 7".into(),
            outcome: "repaired".into(),
            notes: "Magnet removed; seal replaced.".into(),
            alarm_id: None,
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "KeyCreate")]
pub struct KeyBody {
    /// A name for people, 1–100 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 100))]
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let s = String::deserialize(d)?;
        Role::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not one of viewer, operator, admin"))
        })
    }
}

impl JsonSchema for Role {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Role".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        json_schema!({"type": "string", "enum": names, "description": "viewer < operator < admin."})
    }
}

impl Example for KeyBody {
    fn example() -> Self {
        KeyBody {
            name: "billing export".into(),
            role: Role::Viewer,
        }
    }
}

/// A path parameter's schema, by its name in the route table.
pub fn path_param(name: &str, g: &mut SchemaGenerator) -> Schema {
    match name {
        "meter" => MeterRef::json_schema(g),
        "region" => json_schema!({"type": "string", "minLength": 1, "description": "Region id."}),
        "customer" => {
            json_schema!({"type": "string", "minLength": 1, "description": "The customer id (a meter's `userId`)."})
        }
        "command" | "key" => json_schema!({"type": "string", "format": "uuid"}),
        _ => json_schema!({"type": "integer", "format": "int64", "minimum": 1}),
    }
}
