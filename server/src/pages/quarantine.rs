//! Quarantine: the messages ingest refused and why, newest first, a page at a time by id; a
//! message replayed (for roles that may) after a confirmation, through the API's own replay
//! ([`crate::api::replay_quarantined`]), with what it did.

use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::home::urlencode;
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::api::routes::{Op, role_of};
use crate::storage::quarantine::Quarantined;
use crate::uplink::Reason;

/// Messages on one page.
const PAGE: i64 = 50;
/// Characters of a payload shown in the list.
const EXCERPT_CHARS: usize = 160;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    reason: String,
    /// The last id of the previous page (newest first).
    before: Option<i64>,
}

/// The first `max` characters of a payload as text (bytes that are no UTF-8 shown as �), and
/// whether it was cut. The page escapes it as it prints it.
pub(crate) fn excerpt(payload: &[u8], max: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(payload);
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    (head, chars.next().is_some())
}

fn may_replay(ctx: &Ctx<'_>) -> bool {
    layout::may(ctx, role_of(Op::ReplayQuarantined))
}

fn allowed(ctx: &Ctx<'_>) -> Result<(), Problem> {
    layout::require(ctx, Op::ReplayQuarantined, "to replay a message")
}

fn parse_id(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::bad_field("id", format!("{text:?} is not a message id")))
}

/// GET /quarantine
pub async fn list(ctx: &Ctx<'_>, query: &str) -> Result<warp::reply::Response, Problem> {
    let q: ListQuery = parse_form(query.as_bytes())?;
    let reason = q.reason.trim();
    let reason = if reason.is_empty() {
        None
    } else {
        Some(Reason::from_name(reason).ok_or_else(|| {
            Problem::bad_field(
                "reason",
                format!(
                    "{reason:?} is not one of {}",
                    Reason::ALL.map(|r| r.as_str()).join(", ")
                ),
            )
        })?)
    };
    if q.before.is_some_and(|b| b < 1) {
        return Err(Problem::bad_field(
            "before",
            "must be a message id, 1 or more",
        ));
    }
    let mut rows = ctx
        .state
        .store
        .quarantined(
            reason.map(|r| r.as_str()),
            q.before.unwrap_or(i64::MAX),
            PAGE + 1,
        )
        .await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let filter = format!("reason={}", urlencode(reason.map_or("", |r| r.as_str())));
    let body = html! {
        form.filters method="get" action="/quarantine" {
            label for="reason" { "Reason" }
            select #reason name="reason" {
                option value="" selected[reason.is_none()] { "any" }
                @for r in Reason::ALL {
                    option value=(r.as_str()) selected[reason == Some(r)] { (r.as_str()) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p #no-quarantined { "No quarantined message matches." }
        } @else {
            (table(ctx, &rows))
        }
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href={ "/quarantine?" (filter) } { "Newest" } }
            @if more {
                @if let Some(last) = rows.last() {
                    a rel="next" href={ "/quarantine?" (filter) "&before=" (last.id) } { "Older" }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), "Quarantined messages", body),
    ))
}

fn table(ctx: &Ctx<'_>, rows: &[Quarantined]) -> Markup {
    let replay = may_replay(ctx);
    html! {
        div.table-wrap {
            table #quarantine {
                caption.skip { "Messages ingest refused, newest first" }
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Received" }
                    th scope="col" { "Reason" } th scope="col" { "Device" }
                    th scope="col" { "Topic" } th scope="col" { "Payload (start)" }
                    th scope="col" { "Replayed" }
                    @if replay { th scope="col" { "Actions" } }
                } }
                tbody {
                    @for r in rows {
                        @let (text, cut) = excerpt(&r.payload, EXCERPT_CHARS);
                        tr data-quarantined=(r.id) {
                            td.num { (r.id) }
                            td { (layout::time(r.received_at)) }
                            td.wrap { strong { (r.reason) } br; (r.detail) }
                            td { (r.dev_eui.as_deref().unwrap_or("—")) }
                            td.wrap { code { (r.topic) } }
                            td.wrap { code.payload { (text) @if cut { "…" } } }
                            td { (layout::maybe_time(r.replayed_at)) }
                            @if replay {
                                td.actions {
                                    a.button href={ "/quarantine/" (r.id) "/replay" } { "Replay…" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// GET /quarantine/{id}/replay: the message, and the button that replays it.
pub async fn confirm(ctx: &Ctx<'_>, id: &str) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let id = parse_id(id)?;
    let r = ctx
        .state
        .store
        .quarantined_by_id(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no quarantined message {id}")))?;
    let (text, cut) = excerpt(&r.payload, 4_000);
    let body = html! {
        (facts(&r))
        h2 { "Payload" }
        pre.payload { code { (text) @if cut { "…" } } }
        p { "Replaying runs the message through ingest again, as it arrived. Do it once its cause is fixed (the meter registered, say); a message that would still be refused stays here." }
        form.actions method="post" action={ "/quarantine/" (id) "/replay" } {
            input type="hidden" name="csrf" value=(ctx.csrf);
            button type="submit" #confirm { "Replay message " (id) }
            a href="/quarantine" { "Cancel" }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), &format!("Replay message {id}?"), body),
    ))
}

fn facts(r: &Quarantined) -> Markup {
    html! {
        dl.facts #message {
            dt { "Received" } dd { (layout::time(r.received_at)) }
            dt { "Reason" } dd { (r.reason) }
            dt { "Detail" } dd { (r.detail) }
            dt { "Device" } dd { (r.dev_eui.as_deref().unwrap_or("—")) }
            dt { "Topic" } dd { code { (r.topic) } }
            dt { "Replayed" } dd { (layout::maybe_time(r.replayed_at)) }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayForm {
    #[allow(dead_code)]
    csrf: String,
}

/// POST /quarantine/{id}/replay (its CSRF token already checked): what the replay did, or
/// why the message stays.
pub async fn replay(
    ctx: &Ctx<'_>,
    id: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let id = parse_id(id)?;
    let _: ReplayForm = parse_form(body)?;
    let (status, result) = match crate::api::replay_quarantined(ctx.state, id).await {
        Ok(v) => (
            StatusCode::OK,
            html! {
                p #replay-result role="status" {
                    @if v.applied {
                        "Replayed: " (v.readings) " reading(s) stored, " (v.alarms) " alarm(s) raised."
                    } @else {
                        "Replayed before: its event had already been applied, nothing changed."
                    }
                }
            },
        ),
        // Still refused: the answer the API gives, shown as this message's result.
        Err(p) if p.status_code() == StatusCode::CONFLICT => (
            StatusCode::CONFLICT,
            html! { p.error #replay-result role="alert" { "Not replayed: " (p.detail) } },
        ),
        Err(p) => return Err(p),
    };
    let row = ctx.state.store.quarantined_by_id(id).await?;
    let body = html! {
        (result)
        @if let Some(r) = &row { (facts(r)) }
        p { a href="/quarantine" { "Back to the quarantine" } }
    };
    Ok(html(
        status,
        layout::page(Some(ctx), &format!("Replay of message {id}"), body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_cut_at_characters_and_says_so() {
        assert_eq!(excerpt(b"{\"a\":1}", 10), ("{\"a\":1}".to_owned(), false));
        assert_eq!(excerpt("äöü".as_bytes(), 2), ("äö".to_owned(), true));
        assert_eq!(excerpt(&[0xff, b'a'], 5), ("\u{fffd}a".to_owned(), false));
    }

    #[test]
    fn replaying_needs_the_apis_role() {
        assert_eq!(
            role_of(Op::ReplayQuarantined),
            Some(crate::api::auth::Role::Operator)
        );
    }
}
