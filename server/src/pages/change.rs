//! Changing a meter's details from a form: the fields of `PATCH /api/v1/meters/{meter}`,
//! decided by the same code ([`crate::registry::lifecycle::change`]) and gated by that route's
//! role, each error shown beside its field.

use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::form::{self, Errors, Field};
use super::{Ctx, html, layout, parse_form, redirect};
use crate::api::error::Problem;
use crate::api::routes::{Op, role_of};
use crate::registry::lifecycle::{self, Patch, Refused};
use crate::registry::record::{MODES, USAGE_TYPES};
use crate::storage::lifecycle::Actor;
use crate::storage::meters::Meter;

/// The change form as sent: every field as typed, named as the API names it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub(crate) struct ChangeForm {
    csrf: String,
    /// The customer.
    pub user_id: String,
    /// Region id.
    pub region: String,
    /// One of the usage types.
    pub usage_type: String,
    /// Credit or prepaid.
    pub mode: String,
    /// Minutes between readings.
    pub reporting_interval_minutes: String,
    /// The number on the body.
    pub body_number: String,
    /// ChirpStack application (UUID).
    pub application_id: String,
    /// `YYYY-MM-DD`.
    pub production_date: String,
    /// The supply point's address; empty removes it.
    pub address: String,
    /// Why.
    pub reason: String,
}

/// The form's fields: the API's name, the label, and a hint.
const FIELDS: [(&str, &str, &str); 10] = [
    ("userId", "Customer (user id)", ""),
    (
        "region",
        "Region",
        "created when new; at most 64 characters",
    ),
    ("usageType", "Usage type", ""),
    ("mode", "Billing mode", ""),
    (
        "reportingIntervalMinutes",
        "Reporting interval (minutes)",
        "15–10080; the meter is told by a separate command",
    ),
    (
        "bodyNumber",
        "Body number",
        "the number on the meter's body",
    ),
    ("applicationId", "ChirpStack application id", "a UUID"),
    ("productionDate", "Production date", "YYYY-MM-DD"),
    (
        "address",
        "Supply point's address",
        "empty removes it; at most 500 characters",
    ),
    ("reason", "Reason", "recorded in the meter's history"),
];

fn value<'a>(f: &'a ChangeForm, name: &str) -> &'a str {
    match name {
        "userId" => &f.user_id,
        "region" => &f.region,
        "usageType" => &f.usage_type,
        "mode" => &f.mode,
        "reportingIntervalMinutes" => &f.reporting_interval_minutes,
        "bodyNumber" => &f.body_number,
        "applicationId" => &f.application_id,
        "productionDate" => &f.production_date,
        "address" => &f.address,
        _ => &f.reason,
    }
}

impl ChangeForm {
    /// The form filled with the meter's details as they are.
    fn of(m: &Meter, address: Option<&str>) -> ChangeForm {
        ChangeForm {
            csrf: String::new(),
            user_id: m.user_id.clone(),
            region: m.region_id.clone(),
            usage_type: m.usage_type.clone(),
            mode: m.mode.clone(),
            reporting_interval_minutes: m.reporting_interval_minutes.to_string(),
            body_number: m.body_number.to_string(),
            application_id: m.application_id.clone(),
            production_date: m.production_date.to_string(),
            address: address.unwrap_or_default().to_owned(),
            reason: String::new(),
        }
    }

    /// The patch it asks for (every field; those unchanged change nothing), or the numbers
    /// that are not numbers, by field. `installed`: whether the meter has a supply point,
    /// which alone has an address.
    pub(crate) fn patch(&self, installed: bool) -> Result<Patch, Errors> {
        let mut errors = Errors::default();
        let mut number = |text: &str, field: &str| match text.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.fields.insert(
                    field.to_owned(),
                    format!("{:?} is not a whole number", text.trim()),
                );
                None
            }
        };
        let body_number = number(&self.body_number, "bodyNumber");
        let interval = number(&self.reporting_interval_minutes, "reportingIntervalMinutes");
        if !errors.fields.is_empty() {
            return Err(errors);
        }
        let address = self.address.trim();
        Ok(Patch {
            user_id: Some(self.user_id.clone()),
            region: Some(self.region.clone()),
            usage_type: Some(self.usage_type.clone()),
            mode: Some(self.mode.clone()),
            application_id: Some(self.application_id.clone()),
            production_date: Some(self.production_date.trim().to_owned()),
            body_number,
            reporting_interval_minutes: interval,
            address: match (installed, address.is_empty()) {
                (false, true) => None,
                (_, true) => Some(None),
                (_, false) => Some(Some(address.to_owned())),
            },
        })
    }
}

/// The errors of a refused change, each on the field the API names.
fn errors_of(r: Refused) -> (StatusCode, Errors) {
    match r {
        Refused::Invalid(list) => (StatusCode::BAD_REQUEST, Errors::invalid(list)),
        Refused::Conflict(detail, Some(f)) if FIELDS.iter().any(|(n, _, _)| *n == f) => {
            (StatusCode::CONFLICT, Errors::field(f, detail))
        }
        Refused::Conflict(detail, _) => (
            StatusCode::CONFLICT,
            Errors {
                general: Some(detail),
                ..Errors::default()
            },
        ),
        Refused::Storage(e) => {
            let p = Problem::from(e);
            let status = p.status_code();
            (
                status,
                Errors {
                    general: Some(p.detail),
                    ..Errors::default()
                },
            )
        }
    }
}

/// Whether the caller may change meters (the API route's role).
pub(crate) fn may_change(ctx: &Ctx<'_>) -> bool {
    layout::may(ctx, role_of(Op::ChangeMeter))
}

fn allowed(ctx: &Ctx<'_>) -> Result<(), Problem> {
    layout::require(ctx, Op::ChangeMeter, "to change a meter")
}

/// GET /meters/{meter}/change
pub async fn form(ctx: &Ctx<'_>, meter: &str) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let m = super::meter::find(ctx, meter).await?;
    let installation = ctx.state.store.open_installation(m.id).await?;
    let address = installation.as_ref().and_then(|i| i.address.as_deref());
    let f = ChangeForm::of(&m, address);
    Ok(html(
        StatusCode::OK,
        page(ctx, &m, &f, &Errors::default(), installation.is_some()),
    ))
}

/// POST /meters/{meter}/change (its CSRF token already checked): the meter's page, or the
/// form again with the errors beside their fields.
pub async fn submit(
    ctx: &Ctx<'_>,
    meter: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let f: ChangeForm = parse_form(body)?;
    let m = super::meter::find(ctx, meter).await?;
    let installed = ctx.state.store.open_installation(m.id).await?.is_some();
    let refused = |status, errors: Errors| Ok(html(status, page(ctx, &m, &f, &errors, installed)));
    let patch = match f.patch(installed) {
        Ok(p) => p,
        Err(errors) => return refused(StatusCode::BAD_REQUEST, errors),
    };
    let reason = match crate::api::requests::reason(&f.reason) {
        Ok(r) => r,
        Err(p) => return refused(StatusCode::BAD_REQUEST, Errors::field("reason", p.detail)),
    };
    let who = Actor {
        name: ctx.caller.name.clone(),
        at: ctx.state.now(),
        reason,
    };
    let s = ctx.state;
    match lifecycle::change(&s.store, &s.changes, &m, &patch, who).await {
        Ok(_) => Ok(redirect(&format!("/meters/{}", m.dev_eui))),
        Err(r) => {
            let (status, errors) = errors_of(r);
            refused(status, errors)
        }
    }
}

fn page(ctx: &Ctx<'_>, m: &Meter, f: &ChangeForm, errors: &Errors, installed: bool) -> Markup {
    let back = format!("/meters/{}", m.dev_eui);
    let body = html! {
        dl.facts {
            dt { "Meter" } dd { (m.dev_eui) " (serial " (m.serial) ")" }
        }
        p.note { "Validated as an install is; only the fields that differ change, and the change is recorded in the meter's history." }
        (form::alert(errors, "change-error", "The meter was not changed"))
        form.stack #change method="post" action={ "/meters/" (m.dev_eui) "/change" } novalidate {
            input type="hidden" name="csrf" value=(ctx.csrf);
            @for (name, label, hint) in FIELDS {
                @if name != "address" || installed {
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
                        numeric: matches!(name, "bodyNumber" | "reportingIntervalMinutes"),
                        required: name != "address",
                        list: None,
                    }, errors.fields.get(name)))
                }
            }
            div.actions {
                button type="submit" #change-submit { "Change meter" }
                a href=(back) { "Cancel" }
            }
        }
    };
    layout::page(Some(ctx), &format!("Change meter {}", m.dev_eui), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> ChangeForm {
        parse_form(text.as_bytes()).expect("parsed")
    }

    #[test]
    fn the_form_asks_for_every_field_and_an_empty_address_removes_it_only_when_there_is_one() {
        let f = form(
            "csrf=t&userId=u-2&region=north&usageType=residential&mode=credit&\
             reportingIntervalMinutes=+60+&bodyNumber=7&applicationId=a&productionDate=2026-01-15&\
             address=&reason=x",
        );
        let p = f.patch(true).expect("numbers");
        assert_eq!(p.reporting_interval_minutes, Some(60));
        assert_eq!(p.body_number, Some(7));
        assert_eq!(p.address, Some(None));
        assert_eq!(f.patch(false).expect("numbers").address, None);
        let f = form("csrf=t&bodyNumber=seven&reportingIntervalMinutes=60&address=1+Main+St");
        let e = f.patch(true).expect_err("not a number");
        assert_eq!(e.fields.keys().collect::<Vec<_>>(), ["bodyNumber"]);
    }

    #[test]
    fn a_refusal_goes_beside_its_field_or_above_the_form() {
        let (status, e) = errors_of(Refused::Conflict("no address".into(), Some("address")));
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(e.fields.contains_key("address"));
        let (_, e) = errors_of(Refused::Conflict("destroyed".into(), None));
        assert_eq!(e.general.as_deref(), Some("destroyed"));
    }

    #[test]
    fn changing_needs_the_apis_role() {
        assert_eq!(
            role_of(Op::ChangeMeter),
            Some(crate::api::auth::Role::Operator)
        );
    }
}
