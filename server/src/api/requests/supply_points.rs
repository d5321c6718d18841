//! The bodies of a supply point's operations: replacing its meter.

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::NOT_BLANK;
use crate::api::routes::Example;
use crate::registry::lifecycle::replace::MAX_REGISTER;

/// A meter never registered before, put in by a replacement: its identity and device
/// details. Its customer, region and usage type are the supply point's, its billing mode the
/// old meter's.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "ReplacementInstall")]
pub struct ReplacementInstall {
    /// 14 digits, the last a check digit (a wrong one is refused, 400).
    #[schemars(pattern(r"^[0-9]{14}$"))]
    pub serial: String,
    /// LoRaWAN DevEUI, 16 hex digits (any case).
    #[schemars(pattern(r"^[0-9A-Fa-f]{16}$"))]
    pub dev_eui: String,
    /// ChirpStack application id (default: the old meter's).
    #[schemars(extend("format" = "uuid"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    /// The number on the meter's body.
    pub body_number: u32,
    /// Production date, `YYYY-MM-DD`.
    #[schemars(extend("format" = "date"))]
    pub production_date: String,
    /// Minutes between readings, 15–10080 (default: the old meter's).
    #[schemars(range(
        min = firmware_protocol::MIN_REPORTING_INTERVAL_MINUTES,
        max = firmware_protocol::MAX_REPORTING_INTERVAL_MINUTES
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval_minutes: Option<u16>,
}

/// `meter` (a meter in stock) or `install` (a new one), not both.
fn meter_or_install(schema: &mut Schema) {
    schema.insert(
        "oneOf".into(),
        json!([
            {"properties": {"install": false}, "required": ["meter"]},
            {"properties": {"meter": false}, "required": ["install"]}
        ]),
    );
}

/// A replacement of the meter at a supply point: the meter put in (a registered meter in
/// stock by `meter`, or a new one by `install`), the old meter's final register and the new
/// meter's opening register, when it happened and why.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Replacement", transform = meter_or_install)]
pub struct ReplaceBody {
    /// A registered meter in stock (`removed`, e.g. back from renovation), by DevEUI (16 hex
    /// digits) or serial (14 digits). A meter in service elsewhere or destroyed: 409.
    #[schemars(pattern(r"^([0-9A-Fa-f]{16}|[0-9]{14})$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    /// A meter registered by the replacement (its DevEUI or serial already registered: 409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<ReplacementInstall>,
    /// The old meter's register when it was taken out (gas litres or energy Wh, 0 to 2³² −
    /// 1); default: its last reading at or before `at` (409 when it has none). Below that
    /// reading's register or the installation's opening register: 400.
    #[schemars(range(min = 0, max = MAX_REGISTER))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_register: Option<i64>,
    /// The new meter's register when it was put in, 0 to 2³² − 1; when absent, the supply
    /// point's consumption takes the new meter's part from its readings.
    #[schemars(range(min = 0, max = MAX_REGISTER))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening_register: Option<i64>,
    /// When the meters were swapped (default: now): not in the future, not before the old
    /// meter was installed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Why, recorded in both meters' histories: 1–2000 characters.
    #[schemars(pattern(NOT_BLANK), length(min = 1, max = 2000))]
    pub reason: String,
}

impl Example for ReplaceBody {
    fn example() -> Self {
        ReplaceBody {
            install: Some(ReplacementInstall {
                serial: "12261000020012".into(),
                dev_eui: "70b3d5e75e000002".into(),
                application_id: None,
                body_number: 4_000_201,
                production_date: "2026-02-10".into(),
                reporting_interval_minutes: None,
            }),
            final_register: Some(3_000),
            opening_register: Some(0),
            reason: "display faulty; replaced on site".into(),
            ..ReplaceBody::default()
        }
    }
}
