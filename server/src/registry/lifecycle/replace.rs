//! Replacing the meter at a supply point: the old meter's installation closes at its final
//! register, the new meter's opens at its opening register at the same instant, and the old
//! meter goes to stock. The decision ([`plan`]) is pure; [`replace`] writes it.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::Refused;
use crate::cache::{Changes, Touched};
use crate::registry::record::{FieldError, MeterRecord, validate};
use crate::storage::Store;
use crate::storage::lifecycle::{Actor, Installation, LastRegisters, ServiceState};
use crate::storage::meters::{Meter, NewMeter};
use crate::storage::replace::{Incoming, Replaced, Replacement};

/// Registers are 32-bit on the wire (PROTOCOL.md): litres or Wh below 2³².
pub const MAX_REGISTER: i64 = (1 << 32) - 1;

/// A meter never registered before, as a replacement names it: its identity and device
/// details. Its customer, region and usage type are the supply point's; its billing mode is
/// the old meter's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewDevice {
    /// 14-digit serial with its check digit.
    pub serial: String,
    /// DevEUI, 16 hex digits.
    pub dev_eui: String,
    /// The ChirpStack application; the old meter's when `None`.
    pub application_id: Option<String>,
    /// The number on its body.
    pub body_number: i64,
    /// `YYYY-MM-DD`.
    pub production_date: String,
    /// Minutes between readings; the old meter's when `None`.
    pub reporting_interval_minutes: Option<i64>,
}

/// The meter that takes the old one's place.
#[derive(Debug, Clone, PartialEq)]
pub enum Newcomer {
    /// A registered meter, in stock.
    Registered(Box<Meter>),
    /// A meter registered by the replacement.
    New(NewDevice),
}

/// What a replacement asks for, beyond the two meters.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// When the meters were swapped.
    pub at: DateTime<Utc>,
    /// The old meter's register when it was taken out; its last reading's (at or before
    /// `at`) when `None`.
    pub final_register: Option<i64>,
    /// The new meter's register when it was put in, when known.
    pub opening_register: Option<i64>,
}

/// The fields of a new device inside the request body: `install.serial` and so on.
fn nested(field: &'static str) -> &'static str {
    match field {
        "serial" => "install.serial",
        "devEui" => "install.devEui",
        "applicationId" => "install.applicationId",
        "bodyNumber" => "install.bodyNumber",
        "productionDate" => "install.productionDate",
        "reportingIntervalMinutes" => "install.reportingIntervalMinutes",
        other => other,
    }
}

/// A new device's registration at the old meter's supply point, validated as an install is.
pub fn registration(
    device: &NewDevice,
    old: &Meter,
    installation: &Installation,
    today: NaiveDate,
) -> Result<NewMeter, Vec<FieldError>> {
    let record = MeterRecord {
        serial: Some(device.serial.clone()),
        dev_eui: Some(device.dev_eui.clone()),
        application_id: Some(
            device
                .application_id
                .clone()
                .unwrap_or_else(|| old.application_id.clone()),
        ),
        body_number: Some(json!(device.body_number)),
        user_id: Some(installation.user_id.clone()),
        region: Some(installation.region_id.clone()),
        usage_type: Some(installation.usage_type.clone()),
        mode: Some(old.mode.clone()),
        production_date: Some(device.production_date.clone()),
        reporting_interval_minutes: Some(json!(
            device
                .reporting_interval_minutes
                .unwrap_or(i64::from(old.reporting_interval_minutes))
        )),
        // OTAA keys are given at an install (POST /meters); a replacement registers none.
        join_eui: None,
        app_key: None,
    };
    validate(&record, today).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| FieldError {
                field: nested(e.field),
                message: e.message,
            })
            .collect()
    })
}

fn register_in_range(value: i64, field: &'static str) -> Result<i64, Refused> {
    if (0..=MAX_REGISTER).contains(&value) {
        Ok(value)
    } else {
        Err(Refused::Invalid(vec![FieldError {
            field,
            message: format!("is {value}: a register is 0 to {MAX_REGISTER}"),
        }]))
    }
}

fn conflict(detail: String, field: Option<&'static str>) -> Refused {
    Refused::Conflict(detail, field)
}

/// Decides a replacement at `installation` (the supply point's open one, of meter `old`),
/// given `last`, the old meter's latest reading at or before `ask.at`, and `now`.
pub fn plan(
    old: &Meter,
    installation: &Installation,
    last: Option<&LastRegisters>,
    newcomer: Newcomer,
    ask: &Ask,
    now: DateTime<Utc>,
) -> Result<Replacement, Refused> {
    if old.service_state != ServiceState::InService || installation.removed_at.is_some() {
        return Err(conflict(
            format!(
                "meter {} is not in service at supply point {}",
                old.dev_eui, installation.supply_point_id
            ),
            None,
        ));
    }
    if ask.at > now {
        return Err(Refused::Invalid(vec![FieldError {
            field: "at",
            message: format!("is in the future (now is {})", now.to_rfc3339()),
        }]));
    }
    if ask.at < installation.installed_at {
        return Err(Refused::Invalid(vec![FieldError {
            field: "at",
            message: format!(
                "is before meter {} was installed there ({})",
                old.dev_eui,
                installation.installed_at.to_rfc3339()
            ),
        }]));
    }
    let last_register = last.and_then(|r| r.gas_volume_litres.or(r.energy_wh));
    let closing = match (ask.final_register, last_register) {
        (Some(given), _) => register_in_range(given, "finalRegister")?,
        (None, Some(read)) => read,
        (None, None) => {
            return Err(conflict(
                format!(
                    "meter {} has no reading at or before {}: give its finalRegister",
                    old.dev_eui,
                    ask.at.to_rfc3339()
                ),
                Some("finalRegister"),
            ));
        }
    };
    // A final register below what the meter already read (or opened at) would bill a
    // negative consumption.
    for (floor, what) in [
        (last_register, "its last reading's register"),
        (
            installation.opening_register,
            "the installation's opening register",
        ),
    ] {
        if let Some(floor) = floor.filter(|f| closing < *f) {
            return Err(Refused::Invalid(vec![FieldError {
                field: "finalRegister",
                message: format!("is {closing}, below {what} ({floor})"),
            }]));
        }
    }
    let opening = ask
        .opening_register
        .map(|r| register_in_range(r, "openingRegister"))
        .transpose()?;
    let incoming = match newcomer {
        Newcomer::Registered(m) => {
            if m.id == old.id {
                return Err(conflict(
                    format!("meter {} is the meter being replaced", m.dev_eui),
                    Some("meter"),
                ));
            }
            match m.service_state {
                ServiceState::Removed => {}
                ServiceState::InService => {
                    return Err(conflict(
                        format!(
                            "meter {} is in service at another supply point: retire it first",
                            m.dev_eui
                        ),
                        Some("meter"),
                    ));
                }
                ServiceState::Destroyed => {
                    return Err(conflict(
                        format!("meter {} was destroyed", m.dev_eui),
                        Some("meter"),
                    ));
                }
            }
            Incoming::Stock {
                meter_id: m.id,
                dev_eui: m.dev_eui,
                region_before: m.region_id,
            }
        }
        Newcomer::New(device) => {
            let new = registration(&device, old, installation, now.date_naive())
                .map_err(Refused::Invalid)?;
            Incoming::Register(Box::new(new))
        }
    };
    let new_dev_eui = incoming.dev_eui().to_owned();
    let old_before = json!({
        "serviceState": ServiceState::InService.as_str(),
        "supplyPointId": installation.supply_point_id,
    });
    let old_after = json!({
        "serviceState": ServiceState::Removed.as_str(),
        "supplyPointId": Value::Null,
        "closingRegister": closing,
        "replacedBy": new_dev_eui,
    });
    let new_before = match &incoming {
        Incoming::Stock { .. } => json!({"serviceState": ServiceState::Removed.as_str()}),
        Incoming::Register(_) => json!({}),
    };
    let new_after = json!({
        "serviceState": ServiceState::InService.as_str(),
        "supplyPointId": installation.supply_point_id,
        "openingRegister": opening,
        "replaces": old.dev_eui,
    });
    Ok(Replacement {
        supply_point_id: installation.supply_point_id,
        installation_id: installation.id,
        old_meter_id: old.id,
        old_dev_eui: old.dev_eui.clone(),
        at: ask.at,
        closing_register: closing,
        opening_register: opening,
        region_id: installation.region_id.clone(),
        user_id: installation.user_id.clone(),
        usage_type: installation.usage_type.clone(),
        incoming,
        audit: [(old_before, old_after), (new_before, new_after)],
    })
}

/// The registered meter a new device's DevEUI or serial already names, which a replacement
/// must name as `meter` instead: a 409 naming the field.
pub fn already_registered(device: &NewDevice, found: &Meter) -> Refused {
    let field = if found.dev_eui.eq_ignore_ascii_case(device.dev_eui.trim()) {
        "install.devEui"
    } else {
        "install.serial"
    };
    conflict(
        format!(
            "meter {} ({}) is already registered ({}): name it as `meter` to put it in",
            found.dev_eui,
            found.serial,
            found.service_state.as_str()
        ),
        Some(field),
    )
}

/// Replaces the meter at `installation` as [`plan`] decides, announcing the write on
/// `changes` (both meters and the supply point's region).
pub async fn replace(
    store: &Store,
    changes: &Changes,
    old: &Meter,
    installation: &Installation,
    newcomer: Newcomer,
    ask: &Ask,
    who: Actor,
) -> Result<Replaced, Refused> {
    let last = store.last_registers_until(old.id, ask.at).await?;
    if let Newcomer::New(device) = &newcomer {
        let by_dev_eui = store
            .meter_by_dev_eui(&device.dev_eui.trim().to_lowercase())
            .await?;
        let found = match by_dev_eui {
            Some(m) => Some(m),
            None => store.meter_by_serial(device.serial.trim()).await?,
        };
        if let Some(found) = found {
            return Err(already_registered(device, &found));
        }
    }
    let planned = plan(old, installation, last.as_ref(), newcomer, ask, who.at)?;
    let mut touched = Touched::meter(old.id, &old.region_id);
    touched.regions.insert(planned.region_id.clone());
    if let Incoming::Stock {
        meter_id,
        region_before,
        ..
    } = &planned.incoming
    {
        touched.add(*meter_id, region_before);
    }
    let pending = changes.begin(&touched);
    let replaced = store.replace_meter(&planned, &who).await?;
    // A newly registered meter's id is known only now: its answers (a 404 until now) are
    // stamped as well.
    let touched = touched.and_meters(&[replaced.opened.meter_id]);
    pending.committed(&touched).await;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, hour, 0, 0)
            .single()
            .expect("time")
    }

    fn meter(id: i64, state: ServiceState) -> Meter {
        let new = NewMeter {
            dev_eui: format!("70b3d5e75e{id:06x}"),
            serial: "12261000012348".into(),
            body_number: 4_000_123,
            user_id: "customer-1".into(),
            application_id: "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f".into(),
            region_id: "north".into(),
            usage_type: "residential".into(),
            mode: "prepaid".into(),
            production_date: NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
            reporting_interval_minutes: 60,
        };
        Meter {
            service_state: state,
            ..Meter::registered(id, &new, t(1, 0))
        }
    }

    fn installation() -> Installation {
        Installation {
            id: 11,
            supply_point_id: 5,
            meter_id: 1,
            installed_at: t(1, 0),
            removed_at: None,
            opening_register: Some(1_000),
            closing_register: None,
            region_id: "south".into(),
            user_id: "customer-9".into(),
            usage_type: "commercial".into(),
            address: Some("1 Main St".into()),
        }
    }

    fn last(litres: i64) -> LastRegisters {
        LastRegisters {
            reading_time: t(15, 6),
            gas_volume_litres: Some(litres),
            energy_wh: None,
        }
    }

    fn ask() -> Ask {
        Ask {
            at: t(15, 12),
            final_register: None,
            opening_register: Some(7),
        }
    }

    fn device() -> NewDevice {
        NewDevice {
            serial: "12261000012348".into(),
            dev_eui: "70B3D5E75E0000AA".into(),
            application_id: None,
            body_number: 77,
            production_date: "2026-02-01".into(),
            reporting_interval_minutes: None,
        }
    }

    fn field(r: Refused) -> Option<&'static str> {
        match r {
            Refused::Invalid(e) => e.first().map(|e| e.field),
            Refused::Conflict(_, f) => f,
            Refused::Storage(_) => None,
        }
    }

    #[test]
    fn the_old_meter_closes_at_its_last_reading_and_a_stock_meter_opens() {
        let old = meter(1, ServiceState::InService);
        let stock = meter(2, ServiceState::Removed);
        let p = plan(
            &old,
            &installation(),
            Some(&last(5_400)),
            Newcomer::Registered(Box::new(stock)),
            &ask(),
            t(20, 0),
        )
        .expect("planned");
        assert_eq!(p.closing_register, 5_400);
        assert_eq!(p.opening_register, Some(7));
        assert_eq!(
            (p.at, p.supply_point_id, p.installation_id),
            (t(15, 12), 5, 11)
        );
        assert!(matches!(p.incoming, Incoming::Stock { meter_id: 2, .. }));
        assert_eq!(p.audit[0].1["closingRegister"], 5_400);
        assert_eq!(p.audit[0].1["replacedBy"], "70b3d5e75e000002");
        assert_eq!(p.audit[1].1["replaces"], "70b3d5e75e000001");
        assert_eq!(p.audit[1].0["serviceState"], "removed");
    }

    #[test]
    fn a_given_final_register_wins_over_the_last_reading() {
        let a = Ask {
            final_register: Some(5_500),
            ..ask()
        };
        let p = plan(
            &meter(1, ServiceState::InService),
            &installation(),
            Some(&last(5_400)),
            Newcomer::New(device()),
            &a,
            t(20, 0),
        )
        .expect("planned");
        assert_eq!(p.closing_register, 5_500);
    }

    #[test]
    fn a_new_device_takes_the_supply_points_customer_and_the_old_meters_mode() {
        let p = plan(
            &meter(1, ServiceState::InService),
            &installation(),
            Some(&last(5_400)),
            Newcomer::New(device()),
            &ask(),
            t(20, 0),
        )
        .expect("planned");
        let Incoming::Register(new) = p.incoming else {
            panic!("a registration");
        };
        assert_eq!(
            new.dev_eui, "70b3d5e75e0000aa",
            "normalised as an install is"
        );
        assert_eq!(
            (&*new.region_id, &*new.user_id, &*new.usage_type, &*new.mode),
            ("south", "customer-9", "commercial", "prepaid")
        );
        assert_eq!(new.reporting_interval_minutes, 60);
        assert_eq!(p.audit[1].0, json!({}));
    }

    #[test]
    fn bad_input_is_refused_by_field() {
        let old = meter(1, ServiceState::InService);
        let refuse = |newcomer: Newcomer, a: Ask, last: Option<LastRegisters>| {
            field(
                plan(&old, &installation(), last.as_ref(), newcomer, &a, t(20, 0))
                    .expect_err("refused"),
            )
        };
        let new = || Newcomer::New(device());
        let l = Some(last(5_400));
        assert_eq!(
            refuse(
                new(),
                Ask {
                    at: t(21, 0),
                    ..ask()
                },
                l.clone()
            ),
            Some("at")
        );
        let early = Utc
            .with_ymd_and_hms(2026, 4, 30, 0, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            refuse(new(), Ask { at: early, ..ask() }, l.clone()),
            Some("at")
        );
        for bad in [-1, 1 << 32] {
            let a = Ask {
                final_register: Some(bad),
                ..ask()
            };
            assert_eq!(refuse(new(), a, l.clone()), Some("finalRegister"));
            let a = Ask {
                opening_register: Some(bad),
                ..ask()
            };
            assert_eq!(refuse(new(), a, l.clone()), Some("openingRegister"));
        }
        let below = Ask {
            final_register: Some(5_000),
            ..ask()
        };
        assert_eq!(refuse(new(), below, l.clone()), Some("finalRegister"));
        let below_opening = Ask {
            final_register: Some(900),
            ..ask()
        };
        assert_eq!(refuse(new(), below_opening, None), Some("finalRegister"));
        assert_eq!(refuse(new(), ask(), None), Some("finalRegister"));
        let bad_device = NewDevice {
            serial: "12261000012349".into(),
            production_date: "yesterday".into(),
            ..device()
        };
        let Err(Refused::Invalid(errors)) = plan(
            &old,
            &installation(),
            l.as_ref(),
            Newcomer::New(bad_device),
            &ask(),
            t(20, 0),
        ) else {
            panic!("invalid");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["install.serial", "install.productionDate"]);
    }

    #[test]
    fn only_a_meter_in_stock_takes_the_place_of_one_in_service() {
        let old = meter(1, ServiceState::InService);
        for newcomer in [
            meter(1, ServiceState::Removed),
            meter(2, ServiceState::InService),
            meter(2, ServiceState::Destroyed),
        ] {
            let r = plan(
                &old,
                &installation(),
                Some(&last(5_400)),
                Newcomer::Registered(Box::new(newcomer)),
                &ask(),
                t(20, 0),
            )
            .expect_err("refused");
            assert!(matches!(r, Refused::Conflict(_, Some("meter"))), "{r}");
        }
        let removed = meter(1, ServiceState::Removed);
        let r = plan(
            &removed,
            &installation(),
            Some(&last(5_400)),
            Newcomer::New(device()),
            &ask(),
            t(20, 0),
        )
        .expect_err("refused");
        assert!(matches!(r, Refused::Conflict(_, None)), "{r}");
    }
}
