//! A meter's field visits: the latest ones, and a form that records one through the API's
//! own code ([`crate::api::record_inspection_of`]), its errors shown beside their fields.

use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::{Ctx, html, layout, parse_form, redirect};
use crate::api::error::Problem;
use crate::api::requests::InspectionBody;
use crate::api::routes::{Op, role_of};
use crate::storage::alarms::Alarm;
use crate::storage::inspections::INSPECTION_OUTCOMES;
use crate::storage::listings::AlarmFilter;
use crate::storage::meters::Meter;

/// Visits listed on the page.
const LISTED: i64 = 20;
/// How a `datetime-local` field writes a time (read as UTC).
const LOCAL: &str = "%Y-%m-%dT%H:%M";

/// The form as sent, every field as typed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub(crate) struct InspectionForm {
    csrf: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    pub visited_at: String,
    /// Who visited.
    pub inspector: String,
    /// One of the outcomes.
    pub outcome: String,
    /// Free text.
    pub notes: String,
    /// The alarm that led to it, or empty.
    pub alarm_id: String,
}

impl InspectionForm {
    /// The API's request, or a 400 naming the field whose text is no value of its kind.
    pub(crate) fn body(&self) -> Result<InspectionBody, Problem> {
        let visited_at = super::alarms::local_time(&self.visited_at, "visitedAt")?
            .ok_or_else(|| Problem::bad_field("visitedAt", "is required"))?;
        let a = self.alarm_id.trim();
        let alarm_id = if a.is_empty() {
            None
        } else {
            Some(a.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Problem::bad_field("alarmId", format!("{a:?} is not an alarm id"))
            })?)
        };
        Ok(InspectionBody {
            visited_at,
            inspector: self.inspector.clone(),
            outcome: self.outcome.trim().to_owned(),
            notes: self.notes.clone(),
            alarm_id,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    /// The alarm to preselect.
    alarm: Option<i64>,
}

/// Whether the caller may record visits (the API route's role).
pub(crate) fn may_record(ctx: &Ctx<'_>) -> bool {
    layout::may(ctx, role_of(Op::RecordInspection))
}

/// GET /meters/{meter}/inspections
pub async fn page(
    ctx: &Ctx<'_>,
    meter: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let q: Query = parse_form(query.as_bytes())?;
    let m = super::meter::find(ctx, meter).await?;
    let now = ctx.state.now();
    let form = InspectionForm {
        visited_at: now.format(LOCAL).to_string(),
        inspector: ctx.caller.name.clone(),
        outcome: "ok".into(),
        alarm_id: q.alarm.map(|a| a.to_string()).unwrap_or_default(),
        ..InspectionForm::default()
    };
    render(ctx, &m, &form, None, StatusCode::OK).await
}

/// POST /meters/{meter}/inspections (its CSRF token already checked): recorded, then the
/// list; a refused form is shown again with the error beside its field.
pub async fn record(
    ctx: &Ctx<'_>,
    meter: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    layout::require(ctx, Op::RecordInspection, "to record a visit")?;
    let form: InspectionForm = parse_form(body)?;
    let m = super::meter::find(ctx, meter).await?;
    let result = match form.body() {
        Ok(b) => crate::api::record_inspection_of(ctx.state, &m, b)
            .await
            .map(|_| ()),
        Err(p) => Err(p),
    };
    match result {
        Ok(()) => Ok(redirect(&format!("/meters/{}/inspections", m.dev_eui))),
        Err(p) if p.status_code() == StatusCode::BAD_REQUEST => {
            render(ctx, &m, &form, Some(&p), StatusCode::BAD_REQUEST).await
        }
        Err(p) => Err(p),
    }
}

async fn render(
    ctx: &Ctx<'_>,
    m: &Meter,
    form: &InspectionForm,
    error: Option<&Problem>,
    status: StatusCode,
) -> Result<warp::reply::Response, Problem> {
    let store = &ctx.state.store;
    let visits = store.inspections_page(m.id, None, LISTED).await?;
    let alarms = store
        .alarms_filtered(
            &AlarmFilter {
                meter_id: Some(m.id),
                ..AlarmFilter::default()
            },
            i64::MAX,
            50,
        )
        .await?;
    let body = html! {
        p { a href={ "/meters/" (m.dev_eui) } { "Back to meter " (m.dev_eui) } }
        @if may_record(ctx) {
            h2 #record { "Record a visit" }
            (form_markup(ctx, m, form, &alarms, error))
        }
        h2 #visits { "Visits" }
        @if visits.is_empty() {
            p.note #no-visits { "No visit recorded." }
        } @else {
            div.table-wrap {
                table #inspections {
                    thead { tr {
                        th scope="col" { "Visited" } th scope="col" { "Inspector" }
                        th scope="col" { "Outcome" } th scope="col" { "Alarm" }
                        th scope="col" { "Notes" }
                    } }
                    tbody {
                        @for v in &visits {
                            tr {
                                td { (layout::time(v.visited_at)) }
                                td { (v.inspector) }
                                td { (v.outcome) }
                                td { (v.alarm_id.map_or_else(|| "—".to_owned(), |a| a.to_string())) }
                                td.wrap { (v.notes) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        status,
        layout::page(Some(ctx), &format!("Visits to meter {}", m.dev_eui), body),
    ))
}

fn form_markup(
    ctx: &Ctx<'_>,
    m: &Meter,
    f: &InspectionForm,
    alarms: &[Alarm],
    error: Option<&Problem>,
) -> Markup {
    let on = |field: &str| {
        error
            .filter(|p| p.field.as_deref() == Some(field))
            .map(|p| p.detail.as_str())
    };
    let known = ["visitedAt", "inspector", "outcome", "notes", "alarmId"];
    let general = error.filter(|p| p.field.as_deref().is_none_or(|f| !known.contains(&f)));
    let described = |field: &str| on(field).map(|_| format!("{field}-error"));
    html! {
        @if let Some(p) = general {
            p.error role="alert" #inspection-error { (p.detail) }
        }
        form.stack #inspection method="post" action={ "/meters/" (m.dev_eui) "/inspections" } novalidate {
            input type="hidden" name="csrf" value=(ctx.csrf);
            div.field.invalid[on("visitedAt").is_some()] {
                label for="visitedAt" { "Visited at (UTC)" }
                input #visitedAt type="datetime-local" name="visitedAt" value=(f.visited_at) required
                    aria-invalid=[on("visitedAt").map(|_| "true")] aria-describedby=[described("visitedAt")];
                @if let Some(e) = on("visitedAt") { p.field-error #visitedAt-error { "Error: " (e) } }
            }
            div.field.invalid[on("inspector").is_some()] {
                label for="inspector" { "Inspector" }
                input #inspector type="text" name="inspector" value=(f.inspector) required maxlength="200"
                    aria-invalid=[on("inspector").map(|_| "true")] aria-describedby=[described("inspector")];
                @if let Some(e) = on("inspector") { p.field-error #inspector-error { "Error: " (e) } }
            }
            div.field.invalid[on("outcome").is_some()] {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" aria-invalid=[on("outcome").map(|_| "true")] aria-describedby=[described("outcome")] {
                    @for o in INSPECTION_OUTCOMES { option value=(o) selected[f.outcome == o] { (o) } }
                }
                @if let Some(e) = on("outcome") { p.field-error #outcome-error { "Error: " (e) } }
            }
            div.field.invalid[on("alarmId").is_some()] {
                label for="alarmId" { "Alarm that led to it" }
                select #alarmId name="alarmId" aria-invalid=[on("alarmId").map(|_| "true")] aria-describedby=[described("alarmId")] {
                    option value="" selected[f.alarm_id.is_empty()] { "none" }
                    @for a in alarms {
                        option value=(a.id) selected[f.alarm_id == a.id.to_string()] {
                            (a.id) " · " (a.kind) " · " (a.state) " · " (layout::time(a.raised_at))
                        }
                    }
                }
                @if let Some(e) = on("alarmId") { p.field-error #alarmId-error { "Error: " (e) } }
            }
            div.field.invalid[on("notes").is_some()] {
                label for="notes" { "Notes" }
                textarea #notes name="notes" rows="4" maxlength="10000"
                    aria-invalid=[on("notes").map(|_| "true")] aria-describedby=[described("notes")] { (f.notes) }
                @if let Some(e) = on("notes") { p.field-error #notes-error { "Error: " (e) } }
            }
            div.actions {
                button type="submit" #record-visit { "Record visit" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> InspectionForm {
        parse_form(text.as_bytes()).expect("parsed")
    }

    #[test]
    fn a_visit_form_becomes_the_apis_request() {
        let b =
            form("csrf=t&visitedAt=2026-03-04T05%3A06&inspector=Ann&outcome=ok&notes=n&alarmId=7")
                .body()
                .expect("valid");
        assert_eq!(b.visited_at.to_rfc3339(), "2026-03-04T05:06:00+00:00");
        assert_eq!(b.alarm_id, Some(7));
        assert_eq!(b.inspector, "Ann");
        let b = form("csrf=t&visitedAt=2026-03-04T05%3A06%3A07&outcome=ok&alarmId=")
            .body()
            .expect("valid");
        assert_eq!(b.alarm_id, None);
    }

    #[test]
    fn a_bad_value_is_blamed_on_its_field() {
        for (text, field) in [
            ("visitedAt=yesterday", "visitedAt"),
            ("visitedAt=2026-03-04T05%3A06&alarmId=x", "alarmId"),
            ("visitedAt=2026-03-04T05%3A06&alarmId=-1", "alarmId"),
        ] {
            let p = form(text).body().expect_err("refused");
            assert_eq!(p.field.as_deref(), Some(field), "{text}");
        }
        let p = parse_form::<InspectionForm>(b"colour=red").expect_err("refused");
        assert_eq!(p.field.as_deref(), Some("colour"));
    }
}
