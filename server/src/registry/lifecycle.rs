//! Deciding changes to a registered meter: a partial change merged over its registration and
//! validated exactly as an install is, and what changed, field by field, for the audit trail.

pub mod replace;

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::record::{FieldError, MeterRecord, validate};
use crate::cache::{Changes, Touched};
use crate::storage::Store;
use crate::storage::lifecycle::{
    Actor, AuditAction, FinalReport, MeterChange, NewAudit, RetireOutcome, ServiceState,
};
use crate::storage::meters::{Meter, NewMeter};

/// A change asked for: each field `None` stays as it is (JSON merge-patch semantics, the
/// fields a meter always has cannot be removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    /// The customer id.
    pub user_id: Option<String>,
    /// The region id.
    pub region: Option<String>,
    /// The usage type.
    pub usage_type: Option<String>,
    /// The billing mode.
    pub mode: Option<String>,
    /// The ChirpStack application id.
    pub application_id: Option<String>,
    /// The production date, `YYYY-MM-DD`.
    pub production_date: Option<String>,
    /// The number on the body.
    pub body_number: Option<i64>,
    /// Minutes between readings.
    pub reporting_interval_minutes: Option<i64>,
    /// The supply point's address; `Some(None)` removes it.
    pub address: Option<Option<String>>,
}

impl Patch {
    /// Whether it names no field at all.
    pub fn is_empty(&self) -> bool {
        *self == Patch::default()
    }
}

/// A change decided: the meter's new registration and what it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The registration as it becomes.
    pub new: NewMeter,
    /// The supply point's new address, when it changes.
    pub address: Option<Option<String>>,
    /// The fields that change, as they were (a JSON object).
    pub before: Value,
    /// The fields that change, as they become (a JSON object).
    pub after: Value,
}

/// The longest address accepted, characters.
pub const MAX_ADDRESS: usize = 500;

/// Merges `patch` over `meter`'s registration (and its supply point's `address`) and
/// validates the result as an install is validated (`today` bounds the production date).
/// `Ok(None)` when nothing would change; the problems by field otherwise.
pub fn plan(
    meter: &Meter,
    address: Option<&str>,
    patch: &Patch,
    today: NaiveDate,
) -> Result<Option<Planned>, Vec<FieldError>> {
    let old = meter.registration();
    let record = MeterRecord {
        serial: Some(old.serial.clone()),
        dev_eui: Some(old.dev_eui.clone()),
        application_id: Some(
            patch
                .application_id
                .clone()
                .unwrap_or_else(|| old.application_id.clone()),
        ),
        body_number: Some(json!(patch.body_number.unwrap_or(old.body_number))),
        user_id: Some(patch.user_id.clone().unwrap_or_else(|| old.user_id.clone())),
        region: Some(
            patch
                .region
                .clone()
                .unwrap_or_else(|| old.region_id.clone()),
        ),
        usage_type: Some(
            patch
                .usage_type
                .clone()
                .unwrap_or_else(|| old.usage_type.clone()),
        ),
        mode: Some(patch.mode.clone().unwrap_or_else(|| old.mode.clone())),
        production_date: Some(
            patch
                .production_date
                .clone()
                .unwrap_or_else(|| old.production_date.to_string()),
        ),
        reporting_interval_minutes: Some(json!(
            patch
                .reporting_interval_minutes
                .unwrap_or(i64::from(old.reporting_interval_minutes))
        )),
        // A change never touches the keys: they are given at install.
        join_eui: None,
        app_key: None,
    };
    let mut errors = Vec::new();
    let new = validate(&record, today).map_err(|e| errors.extend(e)).ok();
    let new_address = match &patch.address {
        Some(Some(a)) if a.trim().is_empty() => {
            errors.push(FieldError {
                field: "address",
                message: "is blank: send null to remove it".into(),
            });
            None
        }
        Some(Some(a)) if a.chars().count() > MAX_ADDRESS => {
            errors.push(FieldError {
                field: "address",
                message: format!("is longer than {MAX_ADDRESS} characters"),
            });
            None
        }
        Some(a) => Some(a.as_ref().map(|a| a.trim().to_owned())),
        None => None,
    };
    let Some(new) = new.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let (mut before, mut after) = diff(&old, &new);
    let old_address = address;
    let address = new_address.filter(|a| a.as_deref() != old_address);
    if let Some(a) = &address {
        before.insert("address".into(), json!(old_address));
        after.insert("address".into(), json!(a));
    }
    if before.is_empty() {
        return Ok(None);
    }
    Ok(Some(Planned {
        new,
        address,
        before: Value::Object(before),
        after: Value::Object(after),
    }))
}

/// Why a change or a retirement was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Fields that do not validate, each named.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// The meter's state forbids it; the field at fault, when one is.
    #[error("{0}")]
    Conflict(String, Option<&'static str>),
    /// The store failed (a conflict there: the meter changed meanwhile).
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Changes a meter's details as `patch` asks, audited with `who`, announcing the write on
/// `changes` (both regions' answers when the region changes). Whether anything changed.
pub async fn change(
    store: &Store,
    changes: &Changes,
    meter: &Meter,
    patch: &Patch,
    who: Actor,
) -> Result<bool, Refused> {
    if meter.service_state == ServiceState::Destroyed {
        return Err(Refused::Conflict(
            format!(
                "meter {} was destroyed: its details no longer change",
                meter.dev_eui
            ),
            None,
        ));
    }
    let installation = store.open_installation(meter.id).await?;
    if patch.address.is_some() && installation.is_none() {
        return Err(Refused::Conflict(
            format!(
                "meter {} is not installed at a supply point: it has no address",
                meter.dev_eui
            ),
            Some("address"),
        ));
    }
    let address = installation.as_ref().and_then(|i| i.address.as_deref());
    let Some(planned) =
        plan(meter, address, patch, who.at.date_naive()).map_err(Refused::Invalid)?
    else {
        return Ok(false);
    };
    // A region change moves the meter out of one region's answers into another's.
    let mut touched = Touched::meter(meter.id, &meter.region_id);
    touched.regions.insert(planned.new.region_id.clone());
    let pending = changes.begin(&touched);
    store
        .change_meter(
            &MeterChange {
                meter_id: meter.id,
                expected: meter.registration(),
                new: planned.new,
                address: planned.address,
            },
            &NewAudit {
                meter_id: meter.id,
                action: AuditAction::Change,
                before: planned.before,
                after: planned.after,
            },
            &who,
        )
        .await?;
    pending.committed(&touched).await;
    Ok(true)
}

/// Takes a meter in service out of service for `outcome`, announcing the write on
/// `changes`: its final report.
pub async fn retire(
    store: &Store,
    changes: &Changes,
    meter: &Meter,
    outcome: RetireOutcome,
    who: Actor,
) -> Result<FinalReport, Refused> {
    if meter.service_state != ServiceState::InService {
        return Err(Refused::Conflict(
            format!(
                "meter {} is {}: only a meter in service is retired",
                meter.dev_eui,
                meter.service_state.as_str()
            ),
            None,
        ));
    }
    let touched = Touched::meter(meter.id, &meter.region_id);
    let pending = changes.begin(&touched);
    let report = store.retire_meter(meter, outcome, &who).await?;
    pending.committed(&touched).await;
    Ok(report)
}

/// A registration as the audit trail shows it (the API's field names).
pub fn registration_json(m: &NewMeter) -> Map<String, Value> {
    let mut out = Map::new();
    for (field, value) in fields(m) {
        out.insert(field.into(), value);
    }
    out
}

fn fields(m: &NewMeter) -> [(&'static str, Value); 10] {
    [
        ("devEui", json!(m.dev_eui)),
        ("serial", json!(m.serial)),
        ("bodyNumber", json!(m.body_number)),
        ("userId", json!(m.user_id)),
        ("applicationId", json!(m.application_id)),
        ("region", json!(m.region_id)),
        ("usageType", json!(m.usage_type)),
        ("mode", json!(m.mode)),
        ("productionDate", json!(m.production_date.to_string())),
        (
            "reportingIntervalMinutes",
            json!(m.reporting_interval_minutes),
        ),
    ]
}

/// The fields that differ between two registrations: (as they were, as they become).
pub fn diff(old: &NewMeter, new: &NewMeter) -> (Map<String, Value>, Map<String, Value>) {
    let mut before = Map::new();
    let mut after = Map::new();
    for ((field, a), (_, b)) in fields(old).into_iter().zip(fields(new)) {
        if a != b {
            before.insert(field.into(), a);
            after.insert(field.into(), b);
        }
    }
    (before, after)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn meter() -> Meter {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let new = NewMeter {
            dev_eui: "70b3d5e75e000001".into(),
            serial: "12261000012348".into(),
            body_number: 4_000_123,
            user_id: "customer-1".into(),
            application_id: "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f".into(),
            region_id: "north".into(),
            usage_type: "residential".into(),
            mode: "credit".into(),
            production_date: NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
            reporting_interval_minutes: 1440,
        };
        Meter {
            status: "active".into(),
            ..Meter::registered(7, &new, at)
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).expect("date")
    }

    #[test]
    fn only_the_fields_named_change_and_the_audit_shows_them() {
        let patch = Patch {
            user_id: Some("customer-2".into()),
            region: Some("south".into()),
            mode: Some("Prepaid".into()),
            ..Patch::default()
        };
        let p = plan(&meter(), None, &patch, today())
            .expect("valid")
            .expect("a change");
        assert_eq!(p.new.user_id, "customer-2");
        assert_eq!(p.new.region_id, "south");
        assert_eq!(p.new.mode, "prepaid", "normalised as an install is");
        assert_eq!(p.new.body_number, 4_000_123);
        assert_eq!(
            p.before,
            json!({"userId": "customer-1", "region": "north", "mode": "credit"})
        );
        assert_eq!(
            p.after,
            json!({"userId": "customer-2", "region": "south", "mode": "prepaid"})
        );
        assert_eq!(p.address, None);
    }

    #[test]
    fn the_same_values_change_nothing() {
        let patch = Patch {
            user_id: Some("customer-1".into()),
            usage_type: Some("RESIDENTIAL".into()),
            address: Some(Some("1 Main St".into())),
            ..Patch::default()
        };
        assert_eq!(plan(&meter(), Some("1 Main St"), &patch, today()), Ok(None));
        assert_eq!(plan(&meter(), None, &Patch::default(), today()), Ok(None));
    }

    #[test]
    fn an_address_is_set_and_removed() {
        let set = Patch {
            address: Some(Some(" 1 Main St ".into())),
            ..Patch::default()
        };
        let p = plan(&meter(), None, &set, today())
            .expect("valid")
            .expect("a change");
        assert_eq!(p.address, Some(Some("1 Main St".into())));
        assert_eq!(p.before, json!({"address": null}));
        assert_eq!(p.after, json!({"address": "1 Main St"}));
        let clear = Patch {
            address: Some(None),
            ..Patch::default()
        };
        let p = plan(&meter(), Some("1 Main St"), &clear, today())
            .expect("valid")
            .expect("a change");
        assert_eq!(p.address, Some(None));
        assert_eq!(p.before, json!({"address": "1 Main St"}));
    }

    #[test]
    fn a_change_is_validated_as_an_install_and_every_bad_field_named() {
        let patch = Patch {
            usage_type: Some("farm".into()),
            reporting_interval_minutes: Some(5),
            user_id: Some("  ".into()),
            address: Some(Some(" ".into())),
            ..Patch::default()
        };
        let errors = plan(&meter(), None, &patch, today()).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["userId", "usageType", "reportingIntervalMinutes", "address"]
        );
    }
}
