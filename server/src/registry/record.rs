//! One meter's registration record and its validation, shared by every way of registering.

use chrono::NaiveDate;
use firmware_protocol::{MAX_REPORTING_INTERVAL_MINUTES, MIN_REPORTING_INTERVAL_MINUTES, Serial};
use serde::Deserialize;

use crate::storage::device_keys::OtaaKeys;
use crate::storage::meters::NewMeter;

/// Usage types a meter may have.
pub const USAGE_TYPES: [&str; 4] = ["residential", "commercial", "industrial", "public"];
/// Billing modes a meter may have.
pub const MODES: [&str; 2] = ["credit", "prepaid"];
/// Reporting interval when a record names none: daily.
pub const DEFAULT_REPORTING_INTERVAL_MINUTES: i64 = 1440;
/// The longest reason a change to the registry may give, characters.
pub const MAX_REASON: usize = 2_000;
/// The earliest production date accepted: no meter of this kind was built before it, so an
/// earlier date is a typo (`0026-01-01`, a two-digit year read as a four-digit one).
pub const EARLIEST_PRODUCTION_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1990, 1, 1) {
    Some(d) => d,
    None => panic!("1990-01-01 is a date"),
};

/// A meter as an import file or an API request gives it: all text, nothing trusted yet.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeterRecord {
    /// 14-digit serial with check digit.
    pub serial: Option<String>,
    /// LoRaWAN DevEUI, 16 hex digits (any case).
    pub dev_eui: Option<String>,
    /// ChirpStack application id (UUID).
    pub application_id: Option<String>,
    /// Number on the meter body.
    pub body_number: Option<serde_json::Value>,
    /// The utility's customer id.
    pub user_id: Option<String>,
    /// Region id.
    pub region: Option<String>,
    /// `residential`, `commercial`, `industrial` or `public`.
    pub usage_type: Option<String>,
    /// `credit` or `prepaid`.
    pub mode: Option<String>,
    /// `YYYY-MM-DD` exactly, from 1990-01-01 to today.
    pub production_date: Option<String>,
    /// Minutes between readings, 15–10080 (default 1440).
    pub reporting_interval_minutes: Option<serde_json::Value>,
    /// OTAA JoinEUI, 16 hex digits; given with `app_key` or not at all.
    pub join_eui: Option<String>,
    /// OTAA AppKey (LoRaWAN 1.0.x), 32 hex digits; stored for ChirpStack, never served back.
    pub app_key: Option<String>,
}

/// A field that failed validation: its name (as in the file) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name, camelCase.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The error of a `reason` longer than [`MAX_REASON`] characters (after trimming), if it is.
pub fn reason_too_long(reason: &str) -> Option<FieldError> {
    (reason.trim().chars().count() > MAX_REASON).then(|| FieldError {
        field: "reason",
        message: format!("is longer than {MAX_REASON} characters"),
    })
}

fn required<'a>(value: &'a Option<String>, field: &'static str) -> Result<&'a str, FieldError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(FieldError {
            field,
            message: "is required".into(),
        }),
    }
}

fn integer(
    value: &Option<serde_json::Value>,
    field: &'static str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, FieldError> {
    let err = |message: String| FieldError { field, message };
    let n = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        Some(other) => return Err(err(format!("must be an integer, got {other}"))),
    };
    match n {
        Some(n) if range.contains(&n) => Ok(Some(n)),
        Some(n) => Err(err(format!(
            "{n} is out of range {}–{}",
            range.start(),
            range.end()
        ))),
        None => Err(err("must be an integer".into())),
    }
}

fn one_of(value: &str, allowed: &[&str], field: &'static str) -> Result<String, FieldError> {
    let v = value.to_ascii_lowercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(FieldError {
            field,
            message: format!("{value:?} is not one of {}", allowed.join(", ")),
        })
    }
}

/// A production date written exactly `YYYY-MM-DD` (four-digit year, two-digit month and day),
/// a real day, from [`EARLIEST_PRODUCTION_DATE`] to `today`.
fn production_date(s: &str, today: NaiveDate) -> Result<NaiveDate, FieldError> {
    let err = |message: String| FieldError {
        field: "productionDate",
        message,
    };
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(err(format!("{s:?} is not a date YYYY-MM-DD")));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| err(format!("{s:?} is not a day of the calendar")))?;
    if date < EARLIEST_PRODUCTION_DATE {
        Err(err(format!("{s} is before {EARLIEST_PRODUCTION_DATE}")))
    } else if date > today {
        Err(err(format!("{s} is in the future (today is {today})")))
    } else {
        Ok(date)
    }
}

/// Validates a record; every field is checked and every problem reported. `today` bounds the
/// production date.
pub fn validate(r: &MeterRecord, today: NaiveDate) -> Result<NewMeter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut check = |res: Result<String, FieldError>| match res {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let serial = check(required(&r.serial, "serial").and_then(|s| {
        Serial::parse(s)
            .map(|s| s.to_string())
            .map_err(|e| FieldError {
                field: "serial",
                message: e.to_string(),
            })
    }));
    let dev_eui = check(required(&r.dev_eui, "devEui").and_then(|s| {
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(FieldError {
                field: "devEui",
                message: format!("{s:?} is not 16 hexadecimal digits"),
            })
        }
    }));
    let application_id = check(required(&r.application_id, "applicationId").and_then(|s| {
        uuid::Uuid::parse_str(s)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| FieldError {
                field: "applicationId",
                message: format!("{s:?} is not a UUID"),
            })
    }));
    let user_id = check(required(&r.user_id, "userId").map(str::to_owned));
    let region_id = check(required(&r.region, "region").and_then(|s| {
        if s.len() <= 64 {
            Ok(s.to_owned())
        } else {
            Err(FieldError {
                field: "region",
                message: "is longer than 64 characters".into(),
            })
        }
    }));
    let usage_type = check(
        required(&r.usage_type, "usageType").and_then(|s| one_of(s, &USAGE_TYPES, "usageType")),
    );
    let mode = check(required(&r.mode, "mode").and_then(|s| one_of(s, &MODES, "mode")));
    let production_date = required(&r.production_date, "productionDate")
        .and_then(|s| production_date(s, today))
        .map_err(|e| errors.push(e))
        .ok();
    let body_number = match integer(&r.body_number, "bodyNumber", 0..=i64::from(u32::MAX)) {
        Ok(Some(n)) => Some(n),
        Ok(None) => {
            errors.push(FieldError {
                field: "bodyNumber",
                message: "is required".into(),
            });
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let interval = match integer(
        &r.reporting_interval_minutes,
        "reportingIntervalMinutes",
        i64::from(MIN_REPORTING_INTERVAL_MINUTES)..=i64::from(MAX_REPORTING_INTERVAL_MINUTES),
    ) {
        Ok(v) => Some(v.unwrap_or(DEFAULT_REPORTING_INTERVAL_MINUTES)),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    match (
        serial,
        dev_eui,
        application_id,
        user_id,
        region_id,
        usage_type,
        mode,
        production_date,
        body_number,
        interval,
    ) {
        (
            Some(serial),
            Some(dev_eui),
            Some(application_id),
            Some(user_id),
            Some(region_id),
            Some(usage_type),
            Some(mode),
            Some(production_date),
            Some(body_number),
            Some(interval),
        ) if errors.is_empty() => Ok(NewMeter {
            dev_eui,
            serial,
            body_number,
            user_id,
            application_id,
            region_id,
            usage_type,
            mode,
            production_date,
            // The range check above keeps it within i32.
            reporting_interval_minutes: interval as i32,
        }),
        _ => Err(errors),
    }
}

/// `value` as `digits` hexadecimal digits, lowercase; `None` when absent or blank.
fn hex_field(
    value: &Option<String>,
    field: &'static str,
    digits: usize,
) -> Result<Option<String>, FieldError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.len() == digits && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(v.to_ascii_lowercase()))
        }
        // The value itself is not repeated: an AppKey is a secret, even a malformed one.
        Some(v) => Err(FieldError {
            field,
            message: format!(
                "must be {digits} hexadecimal digits, got {} characters",
                v.len()
            ),
        }),
    }
}

/// The record's OTAA root keys: both `joinEui` and `appKey`, or neither (`None`). Every
/// problem is reported; an AppKey's value never appears in a message.
pub fn validate_keys(r: &MeterRecord) -> Result<Option<OtaaKeys>, Vec<FieldError>> {
    let join_eui = hex_field(&r.join_eui, "joinEui", 16);
    let app_key = hex_field(&r.app_key, "appKey", 32);
    match (join_eui, app_key) {
        (Ok(Some(join_eui)), Ok(Some(app_key))) => Ok(Some(OtaaKeys { join_eui, app_key })),
        (Ok(None), Ok(None)) => Ok(None),
        (Ok(None), Ok(Some(_))) => Err(vec![FieldError {
            field: "joinEui",
            message: "is required with appKey".into(),
        }]),
        (Ok(Some(_)), Ok(None)) => Err(vec![FieldError {
            field: "appKey",
            message: "is required with joinEui".into(),
        }]),
        (join_eui, app_key) => Err([join_eui.err(), app_key.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// Validates a record and its keys together: the meter and its keys, or every problem of both.
pub fn validate_with_keys(
    r: &MeterRecord,
    today: NaiveDate,
) -> Result<(NewMeter, Option<OtaaKeys>), Vec<FieldError>> {
    match (validate(r, today), validate_keys(r)) {
        (Ok(meter), Ok(keys)) => Ok((meter, keys)),
        (meter, keys) => Err(meter
            .err()
            .into_iter()
            .flatten()
            .chain(keys.err().into_iter().flatten())
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> MeterRecord {
        MeterRecord {
            serial: Some("12261000012348".into()),
            dev_eui: Some("70B3D5E75E000001".into()),
            application_id: Some("0B7D6A4E-3B44-4B6E-9F3C-0A1C2B3D4E5F".into()),
            body_number: Some(serde_json::json!("4000123")),
            user_id: Some("u-1".into()),
            region: Some("north".into()),
            usage_type: Some("Residential".into()),
            mode: Some("credit".into()),
            production_date: Some("2026-03-15".into()),
            reporting_interval_minutes: None,
            join_eui: None,
            app_key: None,
        }
    }

    #[test]
    fn keys_are_both_given_or_neither_and_never_echoed() {
        let with = |join: Option<&str>, key: Option<&str>| MeterRecord {
            join_eui: join.map(str::to_owned),
            app_key: key.map(str::to_owned),
            ..good()
        };
        assert_eq!(validate_keys(&good()), Ok(None));
        let keys = validate_keys(&with(
            Some("70B3D57ED0000000"),
            Some("000102030405060708090A0B0C0D0E0F"),
        ))
        .expect("valid")
        .expect("keys");
        assert_eq!(keys.join_eui, "70b3d57ed0000000");
        assert_eq!(keys.app_key, "000102030405060708090a0b0c0d0e0f");
        assert!(!format!("{keys:?}").contains("0e0f"), "{keys:?}");
        let fields = |r: &MeterRecord| -> Vec<&'static str> {
            validate_keys(r)
                .expect_err("invalid")
                .iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(&with(None, Some("00112233445566778899aabbccddeeff"))),
            ["joinEui"]
        );
        assert_eq!(fields(&with(Some("70b3d57ed0000000"), None)), ["appKey"]);
        let secret = "00112233445566778899aabbccddeeXX";
        let errors = validate_keys(&with(Some("xyz"), Some(secret))).expect_err("invalid");
        assert_eq!(
            errors.iter().map(|e| e.field).collect::<Vec<_>>(),
            ["joinEui", "appKey"]
        );
        assert!(
            errors.iter().all(|e| !e.message.contains(secret)),
            "{errors:?}"
        );
        let both = validate_with_keys(
            &MeterRecord {
                serial: None,
                ..with(Some("70b3d57ed0000000"), None)
            },
            today(),
        )
        .expect_err("invalid");
        assert_eq!(
            both.iter().map(|e| e.field).collect::<Vec<_>>(),
            ["serial", "appKey"]
        );
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).expect("date")
    }

    #[test]
    fn a_good_record_is_normalised() {
        let m = validate(&good(), today()).expect("valid");
        assert_eq!(m.dev_eui, "70b3d5e75e000001");
        assert_eq!(m.application_id, "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f");
        assert_eq!(m.usage_type, "residential");
        assert_eq!(m.body_number, 4_000_123);
        assert_eq!(m.reporting_interval_minutes, 1440);
    }

    #[test]
    fn every_bad_field_is_named() {
        let r = MeterRecord {
            serial: Some("12261000012343".into()),
            dev_eui: Some("xyz".into()),
            application_id: None,
            body_number: Some(serde_json::json!(-1)),
            usage_type: Some("farm".into()),
            production_date: Some("2026-02-30".into()),
            reporting_interval_minutes: Some(serde_json::json!(5)),
            ..good()
        };
        let errors = validate(&r, today()).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "serial",
                "devEui",
                "applicationId",
                "usageType",
                "productionDate",
                "bodyNumber",
                "reportingIntervalMinutes"
            ]
        );
        assert!(errors[0].message.contains("bad check digit"), "{errors:?}");
    }

    #[test]
    fn a_production_date_is_exactly_yyyy_mm_dd_between_1990_and_today() {
        let date = |d: &str| {
            let r = MeterRecord {
                production_date: Some(d.into()),
                ..good()
            };
            validate(&r, today())
                .map(|m| m.production_date.to_string())
                .map_err(|e| e[0].message.clone())
        };
        assert_eq!(date("2026-12-07"), Ok("2026-12-07".into()));
        assert_eq!(date("1990-01-01"), Ok("1990-01-01".into()));
        for shape in [
            "26-01-01",
            "2026-1-5",
            "02026-01-05",
            "2026/01/05",
            "+2026-01-05",
            "2026-01-05T00:00:00",
        ] {
            assert_eq!(
                date(shape),
                Err(format!("{shape:?} is not a date YYYY-MM-DD")),
                "{shape}"
            );
        }
        assert_eq!(
            date("2026-02-29"),
            Err("\"2026-02-29\" is not a day of the calendar".into())
        );
        assert_eq!(
            date("0000-01-01"),
            Err("0000-01-01 is before 1990-01-01".into())
        );
        assert_eq!(
            date("1989-12-31"),
            Err("1989-12-31 is before 1990-01-01".into())
        );
        assert_eq!(
            date("2026-12-08"),
            Err("2026-12-08 is in the future (today is 2026-12-07)".into())
        );
    }
}
