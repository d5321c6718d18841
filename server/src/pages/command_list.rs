//! A meter's commands with their states: the newest on its page, and every one of them a page
//! at a time, newest first.

use maud::{Markup, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::home::urlencode;
use super::reads::{Fresh, cached};
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::api::input::{encode_cursor, pair_cursor, time_key};
use crate::cache::Tag;
use crate::storage::commands::CommandRow;

/// Commands on one page of the list.
const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    /// Where the previous page ended, as the API's cursors are written.
    cursor: Option<String>,
}

/// The cursor after `c`: its creation time and id, the list's order.
fn cursor_after(c: &CommandRow) -> String {
    encode_cursor(&format!("{}|{}", time_key(c.created_at), c.id))
}

/// The commands of meter `meter_id` after `cursor` (newest first; one more than `limit`, to
/// know whether another page follows), cached under the meter: only its writes change them.
pub(crate) async fn listed(
    ctx: &Ctx<'_>,
    meter_id: i64,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<CommandRow>, Problem> {
    let before = pair_cursor::<uuid::Uuid>(cursor)?;
    let key = format!("commands|{meter_id}|{}|{limit}", cursor.unwrap_or(""));
    cached(ctx, key, || async {
        let rows = ctx
            .state
            .store
            .commands_page(meter_id, before, limit + 1)
            .await?;
        Ok(Fresh::new(rows, vec![Tag::Meter(meter_id)]))
    })
    .await
}

/// The commands as a table, each opening its progress page.
pub(crate) fn table(commands: &[CommandRow]) -> Markup {
    html! {
        @if commands.is_empty() {
            p.note { "No command was sent to this meter." }
        } @else {
            div.table-wrap {
                table #commands {
                    thead { tr {
                        th scope="col" { "Kind" } th scope="col" { "State" }
                        th scope="col" { "Requested" } th scope="col" { "By" }
                        th scope="col" { "Updated" } th scope="col" class="num" { "Attempts" }
                        th scope="col" { "Result or error" }
                    } }
                    tbody {
                        @for c in commands {
                            tr {
                                td { a href={ "/commands/" (c.id) } { (c.kind) } }
                                td { (layout::state(&c.state)) }
                                td { (layout::time(c.created_at)) }
                                td { (c.requested_by) }
                                td { (layout::time(c.updated_at)) }
                                td.num { (c.attempts) }
                                td { (c.error.as_deref().or(c.result.as_deref()).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// GET /meters/{meter}/commands: every command of the meter, a page at a time.
pub async fn page(
    ctx: &Ctx<'_>,
    meter: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let q: Query = parse_form(query.as_bytes())?;
    let m = super::meter::find(ctx, meter).await?;
    let mut commands = listed(ctx, m.id, q.cursor.as_deref(), PAGE).await?;
    let more = commands.len() > PAGE as usize;
    commands.truncate(PAGE as usize);
    let base = format!("/meters/{}/commands", urlencode(&m.dev_eui));
    let body = html! {
        p { a href={ "/meters/" (urlencode(&m.dev_eui)) } { "Back to meter " (m.dev_eui) } }
        (table(&commands))
        nav.pager aria-label="Pages" {
            @if q.cursor.is_some() { a href=(base) { "Newest" } }
            @if more {
                @if let Some(last) = commands.last() {
                    a rel="next" href={ (base) "?cursor=" (cursor_after(last)) } { "Older commands" }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), &format!("Commands of meter {}", m.dev_eui), body),
    ))
}
