//! Deleting part of a meter's data from the pages: choose readings or alarms and a range of
//! days, see on a confirmation page what the dry run says will go (how many, the closed
//! billing periods touched, whether force and a reason are needed), then delete. Done by the
//! code behind `DELETE /api/v1/meters/{meter}/readings` and `…/alarms`
//! ([`crate::registry::deletion::delete`]) and gated by those routes' role.

use chrono::NaiveDate;
use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::api::routes::{Op, role_of};
use crate::registry::deletion::{self, Ask, Outcome, period_name};
use crate::storage::deletion::Data;
use crate::storage::lifecycle::Actor;
use crate::storage::meters::Meter;

/// The range chosen: what, and the days (UTC) from the first to the last, both included.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub(crate) struct RangeForm {
    csrf: String,
    /// `readings` or `alarms`.
    pub data: String,
    /// The first day, `YYYY-MM-DD`.
    pub from: String,
    /// The last day, `YYYY-MM-DD`.
    pub to: String,
    /// Why (the final form only).
    pub reason: String,
    /// `on` to delete inside closed billing periods (the final form only).
    pub force: String,
}

impl RangeForm {
    /// The deletion it asks for: [first day 00:00 UTC, the day after the last 00:00 UTC).
    pub(crate) fn ask(&self, dry_run: bool) -> Result<Ask, Problem> {
        let data = match self.data.as_str() {
            "readings" => Data::Readings,
            "alarms" => Data::Alarms,
            other => {
                return Err(Problem::bad_field(
                    "data",
                    format!("{other:?} is neither readings nor alarms"),
                ));
            }
        };
        let day = |text: &str, field: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .ok_or_else(|| {
                    Problem::bad_field(field, format!("{:?} is not a date (YYYY-MM-DD)", text))
                })
        };
        let from = day(&self.from, "from")?;
        let to = day(&self.to, "to")? + chrono::Duration::days(1);
        Ok(Ask {
            data,
            from,
            to,
            dry_run,
            force: self.force == "on",
            reason: self.reason.trim().to_owned(),
        })
    }
}

/// Whether the caller may delete a meter's data (the API routes' role).
pub(crate) fn may_delete(ctx: &Ctx<'_>) -> bool {
    layout::may(ctx, role_of(Op::DeleteReadings)) && layout::may(ctx, role_of(Op::DeleteAlarms))
}

fn allowed(ctx: &Ctx<'_>) -> Result<(), Problem> {
    layout::require(ctx, Op::DeleteReadings, "to delete a meter's data")?;
    layout::require(ctx, Op::DeleteAlarms, "to delete a meter's data")
}

/// GET /meters/{meter}/delete: the choice of data and range; with a query, the
/// confirmation of what will go.
pub async fn page(
    ctx: &Ctx<'_>,
    meter: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let m = super::meter::find(ctx, meter).await?;
    if query.is_empty() {
        let today = ctx.state.now().date_naive();
        let f = RangeForm {
            data: "readings".into(),
            from: today.to_string(),
            to: today.to_string(),
            ..RangeForm::default()
        };
        return Ok(html(StatusCode::OK, choose(ctx, &m, &f, None)));
    }
    let f: RangeForm = parse_form(query.as_bytes())?;
    let ask = match f.ask(true) {
        Ok(a) => a,
        Err(p) => return Ok(html(p.status_code(), choose(ctx, &m, &f, Some(&p)))),
    };
    let outcome = run(ctx, &m, ask).await;
    match outcome {
        Ok(o) => Ok(html(StatusCode::OK, confirm(ctx, &m, &f, &o, None))),
        Err(p) => Ok(html(p.status_code(), choose(ctx, &m, &f, Some(&p)))),
    }
}

/// POST /meters/{meter}/delete (its CSRF token already checked): deleted, and what went; or
/// the confirmation again with the refusal.
pub async fn submit(
    ctx: &Ctx<'_>,
    meter: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let m = super::meter::find(ctx, meter).await?;
    let f: RangeForm = parse_form(body)?;
    let ask = f.ask(false)?;
    match run(ctx, &m, ask.clone()).await {
        Ok(o) => Ok(html(StatusCode::OK, done(ctx, &m, &o))),
        Err(p) => {
            // The confirmation again, from a fresh dry run, with the refusal on its field.
            let dry = run(
                ctx,
                &m,
                Ask {
                    dry_run: true,
                    force: false,
                    reason: String::new(),
                    ..ask
                },
            )
            .await?;
            Ok(html(p.status_code(), confirm(ctx, &m, &f, &dry, Some(&p))))
        }
    }
}

async fn run(ctx: &Ctx<'_>, m: &Meter, ask: Ask) -> Result<Outcome, Problem> {
    let s = ctx.state;
    let who = Actor {
        name: ctx.caller.name.clone(),
        at: s.now(),
        reason: ask.reason.clone(),
    };
    deletion::delete(&s.store, &s.changes, &s.billing, m, ask, who)
        .await
        .map_err(crate::api::deletion_refused)
}

fn what(data: Data) -> &'static str {
    match data {
        Data::Readings => "readings",
        Data::Alarms => "alarms",
    }
}

fn choose(ctx: &Ctx<'_>, m: &Meter, f: &RangeForm, error: Option<&Problem>) -> Markup {
    let back = format!("/meters/{}", m.dev_eui);
    let error_on = |field: &str| error.filter(|p| p.field.as_deref() == Some(field));
    let general = error.filter(|p| !matches!(p.field.as_deref(), Some("data" | "from" | "to")));
    let body = html! {
        dl.facts { dt { "Meter" } dd { (m.dev_eui) " (serial " (m.serial) ")" } }
        p.note { "The next page shows what will go before anything is deleted." }
        @if let Some(p) = general { p.error role="alert" #delete-error { (p.detail) } }
        form.stack #delete-range method="get" action={ "/meters/" (m.dev_eui) "/delete" } novalidate {
            fieldset aria-describedby=[error_on("data").map(|_| "data-error")] {
                legend { "What to delete" }
                @for (value, label) in [("readings", "Readings (by reading time)"), ("alarms", "Alarms (by time raised)")] {
                    label.check {
                        input type="radio" name="data" value=(value) checked[f.data == value];
                        (label)
                    }
                }
                @if let Some(p) = error_on("data") { p.field-error #data-error { "Error: " (p.detail) } }
            }
            @for (name, label) in [("from", "First day (UTC)"), ("to", "Last day (UTC), included")] {
                @let error = error_on(name);
                div.field.invalid[error.is_some()] {
                    label for=(name) { (label) }
                    input id=(name) name=(name) type="date" value=(if name == "from" { &f.from } else { &f.to })
                        required aria-invalid=[error.map(|_| "true")]
                        aria-describedby=[error.map(|_| format!("{name}-error"))];
                    @if let Some(p) = error { p.field-error id={ (name) "-error" } { "Error: " (p.detail) } }
                }
            }
            div.actions {
                button type="submit" #delete-preview { "See what will go" }
                a href=(back) { "Cancel" }
            }
        }
    };
    layout::page(
        Some(ctx),
        &format!("Delete data of meter {}", m.dev_eui),
        body,
    )
}

fn confirm(
    ctx: &Ctx<'_>,
    m: &Meter,
    f: &RangeForm,
    o: &Outcome,
    error: Option<&Problem>,
) -> Markup {
    let back = format!("/meters/{}", m.dev_eui);
    let noun = what(o.ask.data);
    let error_on = |field: &str| error.filter(|p| p.field.as_deref() == Some(field));
    let general = error.filter(|p| !matches!(p.field.as_deref(), Some("reason" | "force")));
    let body = html! {
        dl.facts #delete-dry-run {
            dt { "Meter" } dd { (m.dev_eui) " (serial " (m.serial) ")" }
            dt { "Range" } dd { (layout::time(o.ask.from)) " to " (layout::time(o.ask.to)) " (excluded)" }
            dt { "Will be deleted" } dd #delete-count { (o.found.count) " " (noun) }
            @if o.found.count > 0 {
                dt { "Earliest, latest" } dd { (layout::maybe_time(o.found.first)) ", " (layout::maybe_time(o.found.last)) }
            }
            dt { "Closed billing periods touched" }
            dd #delete-closed {
                @if o.closed.is_empty() { "none" } @else {
                    (o.closed.iter().map(period_name).collect::<Vec<_>>().join(", "))
                }
            }
        }
        @if o.force_required {
            p.error role="note" #delete-force-note {
                "The range touches closed billing periods. Their published figures stay as they are; deleting needs "
                strong { "force" } " and a reason, and adds a revision of each."
            }
        }
        @if let Some(p) = general { p.error role="alert" #delete-error { (p.detail) } }
        @if o.found.count == 0 && !o.force_required {
            p.note { "Nothing to delete in this range." }
        }
        form.stack #delete-confirm method="post" action={ "/meters/" (m.dev_eui) "/delete" } novalidate {
            input type="hidden" name="csrf" value=(ctx.csrf);
            input type="hidden" name="data" value=(f.data);
            input type="hidden" name="from" value=(f.from);
            input type="hidden" name="to" value=(f.to);
            @let reason_error = error_on("reason");
            div.field.invalid[reason_error.is_some()] {
                label for="reason" { "Reason" }
                span.hint #reason-hint { "recorded in the meter's history" }
                input #reason name="reason" type="text" value=(f.reason) required
                    aria-invalid=[reason_error.map(|_| "true")]
                    aria-describedby=(if reason_error.is_some() { "reason-hint reason-error" } else { "reason-hint" });
                @if let Some(p) = reason_error { p.field-error #reason-error { "Error: " (p.detail) } }
            }
            @if o.force_required {
                @let force_error = error_on("force");
                div.field.invalid[force_error.is_some()] {
                    label.check {
                        input #force type="checkbox" name="force" value="on" checked[f.force == "on"]
                            aria-describedby=[force_error.map(|_| "force-error")];
                        "Delete inside the closed billing periods (each gets a revision)"
                    }
                    @if let Some(p) = force_error { p.field-error #force-error { "Error: " (p.detail) } }
                }
            }
            div.actions {
                button type="submit" #delete-submit { "Delete " (o.found.count) " " (noun) }
                a href=(back) { "Cancel" }
            }
        }
    };
    layout::page(
        Some(ctx),
        &format!("Delete {noun} of meter {}?", m.dev_eui),
        body,
    )
}

fn done(ctx: &Ctx<'_>, m: &Meter, o: &Outcome) -> Markup {
    let noun = what(o.ask.data);
    let body = html! {
        p role="status" #delete-done { (o.found.count) " " (noun) " deleted from " (layout::time(o.ask.from)) " to " (layout::time(o.ask.to)) "." }
        @if !o.revisions.is_empty() {
            p #delete-revisions {
                "Revised: "
                (o.revisions.iter().map(|r| format!("{} {} (revision {})", r.kind, r.first_day, r.revision)).collect::<Vec<_>>().join(", "))
            }
        }
        p { a href={ "/meters/" (m.dev_eui) } { "Back to meter " (m.dev_eui) } }
    };
    layout::page(
        Some(ctx),
        &format!("Deleted from meter {}", m.dev_eui),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> RangeForm {
        parse_form(text.as_bytes()).expect("parsed")
    }

    #[test]
    fn a_range_of_days_includes_its_last_day() {
        let a = form("data=readings&from=2026-05-01&to=2026-05-01")
            .ask(true)
            .expect("ask");
        assert_eq!(a.to - a.from, chrono::Duration::days(1));
        assert!(a.dry_run && !a.force);
        let a = form("csrf=t&data=alarms&from=2026-05-01&to=2026-05-03&reason=x&force=on")
            .ask(false)
            .expect("ask");
        assert_eq!(a.data, Data::Alarms);
        assert!(a.force);
        let p = form("data=meters&from=2026-05-01&to=2026-05-01")
            .ask(true)
            .expect_err("data");
        assert_eq!(p.field.as_deref(), Some("data"));
        let p = form("data=alarms&from=May&to=2026-05-01")
            .ask(true)
            .expect_err("from");
        assert_eq!(p.field.as_deref(), Some("from"));
    }

    #[test]
    fn deleting_needs_the_apis_role() {
        assert_eq!(
            role_of(Op::DeleteReadings),
            Some(crate::api::auth::Role::Admin)
        );
        assert_eq!(
            role_of(Op::DeleteAlarms),
            Some(crate::api::auth::Role::Admin)
        );
    }
}
