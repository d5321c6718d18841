//! Installing a meter from a form: the fields of `POST /api/v1/meters`, validated by the same
//! code ([`crate::api::install_meter`]), each error shown beside its field.

use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::form::{self, Errors, Field};
use super::{Ctx, html, layout, parse_form, redirect};
use crate::api::InstallError;
use crate::api::error::Problem;
use crate::api::routes::Op;
use crate::registry::MeterRecord;
use crate::registry::record::{MODES, USAGE_TYPES};

/// The install form as sent: every field as typed, named as the API names it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub(crate) struct InstallForm {
    csrf: String,
    /// 14 digits with check digit.
    pub serial: String,
    /// 16 hex digits.
    pub dev_eui: String,
    /// ChirpStack application (UUID).
    pub application_id: String,
    /// The number on the body.
    pub body_number: String,
    /// The customer.
    pub user_id: String,
    /// Region id.
    pub region: String,
    /// One of the usage types.
    pub usage_type: String,
    /// Credit or prepaid.
    pub mode: String,
    /// `YYYY-MM-DD`.
    pub production_date: String,
    /// Minutes; empty for the default.
    pub reporting_interval_minutes: String,
}

impl InstallForm {
    /// The record the API validates: every field as text, an empty interval meaning the default.
    pub(crate) fn record(&self) -> MeterRecord {
        let text = |s: &str| Some(s.trim().to_owned());
        let number = |s: &str| {
            let t = s.trim();
            (!t.is_empty()).then(|| serde_json::Value::String(t.to_owned()))
        };
        MeterRecord {
            serial: text(&self.serial),
            dev_eui: text(&self.dev_eui),
            application_id: text(&self.application_id),
            body_number: Some(serde_json::Value::String(
                self.body_number.trim().to_owned(),
            )),
            user_id: text(&self.user_id),
            region: text(&self.region),
            usage_type: text(&self.usage_type),
            mode: text(&self.mode),
            production_date: text(&self.production_date),
            reporting_interval_minutes: number(&self.reporting_interval_minutes),
            // The form asks for no keys: they come with the API or an import file.
            join_eui: None,
            app_key: None,
        }
    }
}

/// The errors of a refused install, each on the field the API names.
pub(crate) fn errors_of(e: InstallError) -> (StatusCode, Errors) {
    match e {
        InstallError::Invalid(list) => (StatusCode::BAD_REQUEST, Errors::invalid(list)),
        InstallError::Refused(p) => {
            let status = p.status_code();
            let out = match p.field.filter(|f| FIELDS.iter().any(|(n, _, _)| n == f)) {
                Some(f) => Errors::field(&f, p.detail),
                None => Errors {
                    general: Some(p.detail),
                    ..Errors::default()
                },
            };
            (status, out)
        }
    }
}

/// The form's fields: the API's name, the label, and a hint.
const FIELDS: [(&str, &str, &str); 10] = [
    ("serial", "Serial", "14 digits, the last a check digit"),
    ("devEui", "DevEUI", "16 hexadecimal digits"),
    ("applicationId", "ChirpStack application id", "a UUID"),
    (
        "bodyNumber",
        "Body number",
        "the number on the meter's body",
    ),
    ("userId", "Customer (user id)", ""),
    (
        "region",
        "Region",
        "created when new; at most 64 characters",
    ),
    ("usageType", "Usage type", ""),
    ("mode", "Billing mode", ""),
    ("productionDate", "Production date", "YYYY-MM-DD"),
    (
        "reportingIntervalMinutes",
        "Reporting interval (minutes)",
        "15–10080; empty for 1440 (daily)",
    ),
];

fn value<'a>(f: &'a InstallForm, name: &str) -> &'a str {
    match name {
        "serial" => &f.serial,
        "devEui" => &f.dev_eui,
        "applicationId" => &f.application_id,
        "bodyNumber" => &f.body_number,
        "userId" => &f.user_id,
        "region" => &f.region,
        "usageType" => &f.usage_type,
        "mode" => &f.mode,
        "productionDate" => &f.production_date,
        _ => &f.reporting_interval_minutes,
    }
}

fn allowed(ctx: &Ctx<'_>) -> Result<(), Problem> {
    layout::require(ctx, Op::InstallMeter, "to install a meter")
}

/// GET /install
pub async fn form(ctx: &Ctx<'_>) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let blank = InstallForm {
        usage_type: "residential".into(),
        mode: "credit".into(),
        ..InstallForm::default()
    };
    let regions = ctx.state.store.regions().await?;
    let ids: Vec<String> = regions.into_iter().map(|r| r.id).collect();
    Ok(html(
        StatusCode::OK,
        page(ctx, &blank, &Errors::default(), &ids),
    ))
}

/// POST /install (its CSRF token already checked): the meter's page, or the form again with
/// the errors beside their fields.
pub async fn submit(ctx: &Ctx<'_>, body: &[u8]) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let form: InstallForm = parse_form(body)?;
    match crate::api::install_meter(ctx.state, &form.record()).await {
        Ok((_, m)) => Ok(redirect(&format!("/meters/{}", m.dev_eui))),
        Err(e) => {
            let (status, errors) = errors_of(e);
            let ids: Vec<String> = ctx
                .state
                .store
                .regions()
                .await?
                .into_iter()
                .map(|r| r.id)
                .collect();
            Ok(html(status, page(ctx, &form, &errors, &ids)))
        }
    }
}

fn page(ctx: &Ctx<'_>, f: &InstallForm, errors: &Errors, regions: &[String]) -> Markup {
    let body = html! {
        p.note { "Registers the meter as " code { "meterhub meters import" } " does; a meter already known by its DevEUI is updated." }
        (form::alert(errors, "install-error", "The meter was not installed"))
        form.stack #install method="post" action="/install" novalidate {
            input type="hidden" name="csrf" value=(ctx.csrf);
            @for (name, label, hint) in FIELDS {
                (form::field(&Field {
                    name,
                    label,
                    hint,
                    value: value(f, name),
                    options: match name {
                        "mode" => Some(&MODES[..]),
                        "usageType" => Some(&USAGE_TYPES[..]),
                        _ => None,
                    },
                    date: name == "productionDate",
                    numeric: matches!(name, "serial" | "bodyNumber" | "reportingIntervalMinutes"),
                    required: name != "reportingIntervalMinutes",
                    list: (name == "region").then_some("regions"),
                }, errors.fields.get(name)))
            }
            datalist #regions { @for r in regions { option value=(r) {} } }
            div.actions {
                button type="submit" #install-submit { "Install meter" }
                a href="/" { "Cancel" }
            }
        }
    };
    layout::page(Some(ctx), "Install a meter", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::record::FieldError;

    fn form(text: &str) -> Result<InstallForm, Problem> {
        parse_form(text.as_bytes())
    }

    #[test]
    fn the_form_becomes_the_apis_record() {
        let f = form(
            "csrf=t&serial=12261000012348&devEui=70B3D5E75E000001&applicationId=\
             3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23&bodyNumber=+42+&userId=u-1&region=north&\
             usageType=residential&mode=credit&productionDate=2026-01-15&reportingIntervalMinutes=",
        )
        .expect("parsed");
        let r = f.record();
        assert_eq!(r.body_number, Some(serde_json::json!("42")));
        assert_eq!(r.reporting_interval_minutes, None, "empty is the default");
        let today = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).expect("date");
        let m = crate::registry::record::validate(&r, today).expect("valid");
        assert_eq!(m.dev_eui, "70b3d5e75e000001");
        assert_eq!(m.body_number, 42);
        assert_eq!(m.reporting_interval_minutes, 1440);
    }

    #[test]
    fn every_bad_field_is_named_and_unknown_fields_refused() {
        let f =
            form("csrf=t&serial=123&bodyNumber=many&mode=credit&usageType=home").expect("parsed");
        let today = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).expect("date");
        let errors = crate::registry::record::validate(&f.record(), today).expect_err("bad");
        let (status, e) = errors_of(InstallError::Invalid(errors));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for field in [
            "serial",
            "devEui",
            "applicationId",
            "bodyNumber",
            "userId",
            "region",
            "usageType",
            "productionDate",
        ] {
            assert!(e.fields.contains_key(field), "{field}: {e:?}");
        }
        assert!(!e.fields.contains_key("mode"), "{e:?}");
        assert!(!e.fields.contains_key("reportingIntervalMinutes"), "{e:?}");
        assert_eq!(e.general, None);
        // Every field the validation names is one the form shows.
        for name in e.fields.keys() {
            assert!(FIELDS.iter().any(|(n, _, _)| n == name), "{name}");
        }

        let p = form("csrf=t&colour=red").expect_err("refused");
        assert_eq!(p.field.as_deref(), Some("colour"));
    }

    #[test]
    fn a_refusal_goes_beside_its_field_or_above_the_form() {
        let (status, e) = errors_of(InstallError::Refused(
            Problem::conflict("serial 1 belongs to another meter").with_field("serial"),
        ));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            e.fields.get("serial").map(String::as_str),
            Some("serial 1 belongs to another meter")
        );
        let (status, e) = errors_of(InstallError::Refused(Problem::unavailable(&"down")));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.fields.is_empty() && e.general.is_some());
        let (_, e) = errors_of(InstallError::Invalid(vec![
            FieldError {
                field: "serial",
                message: "a".into(),
            },
            FieldError {
                field: "serial",
                message: "b".into(),
            },
        ]));
        assert_eq!(e.fields.get("serial").map(String::as_str), Some("a; b"));
    }

    #[test]
    fn installing_needs_the_apis_role() {
        assert_eq!(
            crate::api::routes::role_of(Op::InstallMeter),
            Some(crate::api::auth::Role::Admin)
        );
    }
}
