//! Alarms, overall and per meter, filtered by state, kind, region and meter; acknowledging and
//! clearing them (for roles that may), each after a confirmation page.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use super::home::urlencode;
use super::reads::{Fresh, cached};
use super::{Ctx, html, layout, local_path, parse_form, redirect};
use crate::api::error::Problem;
use crate::api::routes::{ALARM_STATES, Op, role_of};
use crate::cache::Tag;
use crate::storage::alarms::Alarm;
use crate::storage::listings::AlarmFilter;

/// Alarms on one page.
const PAGE: i64 = 50;

/// What can be done to an alarm from the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Someone has seen it.
    Acknowledge,
    /// It is over.
    Clear,
}

impl Action {
    /// The action a path segment names.
    pub(crate) fn parse(segment: &str) -> Result<Action, Problem> {
        match segment {
            "acknowledge" => Ok(Action::Acknowledge),
            "clear" => Ok(Action::Clear),
            other => Err(Problem::not_found(format!(
                "an alarm can be acknowledged or cleared, not {other:?}"
            ))),
        }
    }

    fn segment(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Clear => "clear",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Acknowledge => "Acknowledge",
            Action::Clear => "Clear",
        }
    }

    /// The API operation it is: the same role gates both.
    fn op(self) -> Op {
        match self {
            Action::Acknowledge => Op::AcknowledgeAlarm,
            Action::Clear => Op::ClearAlarm,
        }
    }

    /// Whether an alarm in `state` can take it.
    pub(crate) fn applies_to(self, state: &str) -> bool {
        match self {
            Action::Acknowledge => state == "open",
            Action::Clear => state != "cleared",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    region: String,
    /// A DevEUI or serial.
    #[serde(default)]
    meter: String,
    /// Raised at or after, `YYYY-MM-DDTHH:MM` UTC.
    #[serde(default)]
    from: String,
    /// Raised before, `YYYY-MM-DDTHH:MM` UTC.
    #[serde(default)]
    to: String,
    /// The last alarm id of the previous page (newest first).
    before: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmQuery {
    back: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActForm {
    #[allow(dead_code)]
    csrf: String,
    back: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// A time as a `datetime-local` field sends it (minutes, or seconds), read as UTC; empty is
/// none; anything else a 400 naming `field`.
pub(crate) fn local_time(text: &str, field: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
        .map(|n| Some(n.and_utc()))
        .map_err(|_| {
            Problem::bad_field(
                field.to_owned(),
                format!("{t:?} is not a time (YYYY-MM-DDTHH:MM, UTC)"),
            )
        })
}

/// A time range, either end open.
pub(crate) type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The time range of an alarm list, or a 400 when it ends before it starts.
pub(crate) fn range(from: &str, to: &str) -> Result<Range, Problem> {
    let from = local_time(from, "from")?;
    let to = local_time(to, "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(Problem::bad_field("from", "must be before `to`"));
    }
    Ok((from, to))
}

/// GET /alarms
pub async fn list(ctx: &Ctx<'_>, query: &str) -> Result<warp::reply::Response, Problem> {
    let q: ListQuery = parse_form(query.as_bytes())?;
    let state = non_empty(&q.state);
    if let Some(s) = &state
        && !ALARM_STATES.contains(&s.as_str())
    {
        return Err(Problem::bad_field(
            "state",
            format!("must be one of {}", ALARM_STATES.join(", ")),
        ));
    }
    let meter = match non_empty(&q.meter) {
        Some(m) => Some(super::meter::find(ctx, &m).await?),
        None => None,
    };
    let (from, to) = range(&q.from, &q.to)?;
    let filter = AlarmFilter {
        state,
        kind: non_empty(&q.kind),
        region: non_empty(&q.region),
        meter_id: meter.as_ref().map(|m| m.id),
        from,
        to,
    };
    let Listed {
        alarms: mut rows,
        devices,
    } = listed(ctx, &filter, q.before.unwrap_or(i64::MAX)).await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let here = format!("/alarms?{query}");
    let filters = format!(
        "state={}&kind={}&region={}&meter={}&from={}&to={}",
        urlencode(&q.state),
        urlencode(&q.kind),
        urlencode(&q.region),
        urlencode(&q.meter),
        urlencode(&q.from),
        urlencode(&q.to)
    );
    let body = html! {
        form.filters #alarm-filters method="get" action="/alarms" {
            div.field {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" selected[q.state.is_empty()] { "any" }
                    @for s in ALARM_STATES {
                        option value=(s) selected[q.state == s] { (s) }
                    }
                }
            }
            div.field { label for="kind" { "Kind" } input #kind type="text" name="kind" value=(q.kind); }
            div.field { label for="region" { "Region" } input #region type="text" name="region" value=(q.region); }
            div.field { label for="meter" { "Meter (DevEUI or serial)" } input #meter type="text" name="meter" value=(q.meter); }
            div.field { label for="from" { "Raised from (UTC)" } input #from type="datetime-local" name="from" value=(q.from); }
            div.field { label for="to" { "Raised before (UTC)" } input #to type="datetime-local" name="to" value=(q.to); }
            button type="submit" #filter { "Filter" }
        }
        (table(ctx, &rows, &devices, &here))
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href={ "/alarms?" (filters) } { "Newest" } }
            @if more {
                @if let Some(last) = rows.last() {
                    a rel="next" href={ "/alarms?" (filters) "&before=" (last.id) } { "Older" }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(
            Some(ctx),
            &match &meter {
                Some(m) => format!("Alarms of meter {}", m.dev_eui),
                None => "Alarms".to_owned(),
            },
            body,
        ),
    ))
}

/// A page of alarms (one more than shown) and the DevEUIs of their meters.
#[derive(Serialize, Deserialize)]
struct Listed {
    alarms: Vec<Alarm>,
    devices: BTreeMap<i64, String>,
}

/// The alarms matching `filter` before id `before`, newest first, with their meters' DevEUIs
/// (one query for the page, not one per alarm), cached under the tags `GET /api/v1/alarms`
/// uses: the meter, the region, or anything.
async fn listed(ctx: &Ctx<'_>, filter: &AlarmFilter, before: i64) -> Result<Listed, Problem> {
    let part = |v: &Option<String>| v.as_deref().map(urlencode).unwrap_or_default();
    let key = format!(
        "alarms|{}|{}|{}|{}|{:?}|{:?}|{before}",
        part(&filter.state),
        part(&filter.kind),
        part(&filter.region),
        filter.meter_id.map(|m| m.to_string()).unwrap_or_default(),
        filter.from.map(|t| t.timestamp()),
        filter.to.map(|t| t.timestamp()),
    );
    cached(ctx, key, || async {
        let store = &ctx.state.store;
        let alarms = store.alarms_filtered(filter, before, PAGE + 1).await?;
        let mut ids: Vec<i64> = alarms.iter().map(|a| a.meter_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let devices = store.dev_euis(&ids).await?.into_iter().collect();
        let tags = match (filter.meter_id, &filter.region) {
            (Some(m), _) => vec![Tag::Meter(m)],
            (None, Some(r)) => vec![Tag::Region(r.clone())],
            (None, None) => vec![Tag::All],
        };
        Ok(Fresh::new(Listed { alarms, devices }, tags))
    })
    .await
}

/// A table of alarms with the actions the caller may take; `devices` names their meters;
/// `back` is where they return to.
pub(crate) fn table(
    ctx: &Ctx<'_>,
    rows: &[Alarm],
    devices: &BTreeMap<i64, String>,
    back: &str,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.no-alarms { "No alarm matches." }
        } @else {
            div.table-wrap {
                table.alarms {
                    thead { tr {
                        th scope="col" { "Id" } th scope="col" { "Meter" } th scope="col" { "Kind" }
                        th scope="col" { "State" } th scope="col" { "Raised" }
                        th scope="col" class="num" { "Times" } th scope="col" { "Detail" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for a in rows {
                            tr data-alarm=(a.id) {
                                td.num { (a.id) }
                                td {
                                    @if let Some(d) = devices.get(&a.meter_id) {
                                        a href={ "/meters/" (d) } { (d) }
                                    } @else { (a.meter_id) }
                                }
                                td { (a.kind) }
                                td {
                                    (layout::state(&a.state))
                                    @if let Some(by) = &a.acknowledged_by { " by " (by) }
                                }
                                td { (layout::time(a.raised_at)) }
                                td.num { (a.occurrences) }
                                td { (a.detail.as_deref().unwrap_or("")) }
                                td.actions {
                                    @for action in [Action::Acknowledge, Action::Clear] {
                                        @if action.applies_to(&a.state) && layout::may(ctx, role_of(action.op())) {
                                            a.button href={ "/alarms/" (a.id) "/" (action.segment()) "?back=" (urlencode(back)) } {
                                                (action.verb()) "…"
                                            }
                                        }
                                    }
                                    @if super::inspections::may_record(ctx) {
                                        @if let Some(d) = devices.get(&a.meter_id) {
                                            a.button.secondary href={ "/meters/" (d) "/inspections?alarm=" (a.id) } { "Record visit…" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn parse_id(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::bad_field("alarm", format!("{text:?} is not an alarm id")))
}

fn allowed(ctx: &Ctx<'_>, action: Action) -> Result<(), Problem> {
    layout::require(
        ctx,
        action.op(),
        &format!("to {} an alarm", action.segment()),
    )
}

/// GET /alarms/{alarm}/{action}: what will happen, and the button that does it.
pub async fn confirm(
    ctx: &Ctx<'_>,
    id: &str,
    action: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let id = parse_id(id)?;
    let action = Action::parse(action)?;
    allowed(ctx, action)?;
    let q: ConfirmQuery = parse_form(query.as_bytes())?;
    let back = local_path(q.back.as_deref().unwrap_or("/alarms")).to_owned();
    let a = ctx
        .state
        .store
        .alarm(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no alarm {id}")))?;
    let meter = ctx.state.store.meter_by_id(a.meter_id).await?;
    let title = format!("{} alarm {id}?", action.verb());
    let body = html! {
        dl.facts {
            dt { "Meter" } dd { (meter.as_ref().map_or_else(|| a.meter_id.to_string(), |m| m.dev_eui.clone())) }
            dt { "Kind" } dd { (a.kind) }
            dt { "State" } dd { (layout::state(&a.state)) }
            dt { "Raised" } dd { (layout::time(a.raised_at)) }
        }
        @if !action.applies_to(&a.state) {
            p.error role="alert" { "This alarm is " (a.state) "; there is nothing to " (action.segment()) "." }
        }
        form.actions method="post" action={ "/alarms/" (id) "/" (action.segment()) } {
            input type="hidden" name="csrf" value=(ctx.csrf);
            input type="hidden" name="back" value=(back);
            button type="submit" #confirm { (action.verb()) " alarm " (id) }
            a href=(back) { "Cancel" }
        }
    };
    Ok(html(StatusCode::OK, layout::page(Some(ctx), &title, body)))
}

/// POST /alarms/{alarm}/{action} (its CSRF token already checked).
pub async fn act(
    ctx: &Ctx<'_>,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    let id = parse_id(id)?;
    let action = Action::parse(action)?;
    allowed(ctx, action)?;
    let form: ActForm = parse_form(body)?;
    match action {
        Action::Acknowledge => {
            crate::api::acknowledge_alarm(ctx.state, id, &ctx.caller.name).await?;
        }
        Action::Clear => {
            crate::api::clear_alarm(ctx.state, id).await?;
        }
    }
    Ok(redirect(local_path(
        form.back.as_deref().unwrap_or("/alarms"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_apply_to_the_states_they_change() {
        assert!(Action::Acknowledge.applies_to("open"));
        assert!(!Action::Acknowledge.applies_to("acknowledged"));
        assert!(Action::Clear.applies_to("acknowledged"));
        assert!(!Action::Clear.applies_to("cleared"));
        assert_eq!(Action::parse("clear").ok(), Some(Action::Clear));
        assert!(Action::parse("delete").is_err());
    }

    #[test]
    fn a_time_range_is_read_as_utc_and_must_run_forwards() {
        let (f, t) = range("2026-03-01T00:00", "2026-03-02T12:30:15").expect("valid");
        assert_eq!(
            f.map(|f| f.to_rfc3339()).as_deref(),
            Some("2026-03-01T00:00:00+00:00")
        );
        assert_eq!(
            t.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-03-02T12:30:15+00:00")
        );
        assert_eq!(range("", " ").expect("valid"), (None, None));
        let p = range("2026-03-02T00:00", "2026-03-01T00:00").expect_err("backwards");
        assert_eq!(p.field.as_deref(), Some("from"));
        let p = range("", "tomorrow").expect_err("bad");
        assert_eq!(p.field.as_deref(), Some("to"));
    }

    #[test]
    fn the_pages_gate_actions_by_the_apis_roles() {
        for a in [Action::Acknowledge, Action::Clear] {
            assert_eq!(
                role_of(a.op()),
                Some(crate::api::auth::Role::Operator),
                "{a:?}"
            );
        }
    }
}
