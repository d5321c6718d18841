//! Region: its meters, searched by serial, DevEUI or user id, a page at a time by id.

use maud::html;
use serde::Deserialize;
use warp::http::StatusCode;

use super::home::urlencode;
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::storage::listings::MeterFilter;
use crate::storage::meters::Meter;

/// Meters on one page.
const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    /// A serial, DevEUI or user id.
    #[serde(default)]
    q: String,
    /// The last meter id of the previous page.
    after: Option<i64>,
}

/// What a search names: a DevEUI or serial matches one meter; anything else is a user id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Search {
    /// Every meter.
    All,
    /// 16 hex digits (lowercased).
    DevEui(String),
    /// 14 digits.
    Serial(String),
    /// A customer's meters.
    UserId(String),
}

impl Search {
    /// Reads the search box.
    pub(crate) fn parse(text: &str) -> Search {
        let t = text.trim();
        if t.is_empty() {
            Search::All
        } else if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Search::DevEui(t.to_ascii_lowercase())
        } else if t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()) {
            Search::Serial(t.to_owned())
        } else {
            Search::UserId(t.to_owned())
        }
    }
}

/// GET /regions/{region}
pub async fn page(
    ctx: &Ctx<'_>,
    region: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let q: Query = parse_form(query.as_bytes())?;
    if q.after.is_some_and(|a| a < 0) {
        return Err(Problem::bad_field("after", "must be a meter id, 0 or more"));
    }
    let store = &ctx.state.store;
    let Some(summary) = store
        .region_summaries(ctx.state.now())
        .await?
        .into_iter()
        .find(|r| r.id == region)
    else {
        return Err(Problem::not_found(format!("there is no region {region:?}")));
    };
    let search = Search::parse(&q.q);
    let (meters, more) = match &search {
        Search::DevEui(d) => (
            store.meter_by_dev_eui(d).await?.into_iter().collect(),
            false,
        ),
        Search::Serial(s) => (store.meter_by_serial(s).await?.into_iter().collect(), false),
        Search::All | Search::UserId(_) => {
            let filter = MeterFilter {
                region: Some(region.to_owned()),
                status: None,
                user_id: match &search {
                    Search::UserId(u) => Some(u.clone()),
                    _ => None,
                },
            };
            let mut rows = store
                .meters_filtered(&filter, q.after.unwrap_or(0), PAGE + 1)
                .await?;
            let more = rows.len() > PAGE as usize;
            rows.truncate(PAGE as usize);
            (rows, more)
        }
    };
    let meters: Vec<Meter> = meters
        .into_iter()
        .filter(|m| m.region_id == region)
        .collect();
    let now = ctx.state.now();
    let base = format!("/regions/{}", urlencode(region));
    let body = html! {
        dl.facts {
            dt { "Meters" } dd { (summary.meters) }
            dt { "Silent meters" } dd { (summary.silent) }
            dt { "Open alarms" } dd {
                a href={ "/alarms?state=open&region=" (urlencode(region)) } { (summary.open_alarms) }
            }
        }
        form.filters method="get" action=(base) role="search" {
            label for="q" { "Serial, DevEUI or user id" }
            input #q type="search" name="q" value=(q.q);
            button type="submit" { "Search" }
            @if search != Search::All { a href=(base) { "Show all" } }
        }
        @if meters.is_empty() {
            p #no-meters { "No meter matches." }
        } @else {
            div.table-wrap {
                table #meters {
                    caption.skip { "Meters of " (summary.name) }
                    thead { tr {
                        th scope="col" { "DevEUI" } th scope="col" { "Serial" }
                        th scope="col" { "User" } th scope="col" { "Status" }
                        th scope="col" { "Last seen" } th scope="col" { "Battery" }
                        th scope="col" class="num" { "RSSI (dBm)" }
                    } }
                    tbody {
                        @for m in &meters {
                            tr {
                                td { a href={ "/meters/" (m.dev_eui) } { (m.dev_eui) } }
                                td { (m.serial) }
                                td { (m.user_id) }
                                td {
                                    (m.status)
                                    @if m.overdue_at.is_some_and(|t| t < now) { " · silent" }
                                }
                                td { (layout::maybe_time(m.last_seen_at)) }
                                td { (layout::battery(m.battery_percent, m.battery_millivolts)) }
                                td.num { (m.rssi.map_or_else(|| "—".to_owned(), |r| r.to_string())) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.after.is_some() {
                a href={ (base) "?q=" (urlencode(&q.q)) } { "First page" }
            }
            @if more {
                @if let Some(last) = meters.last() {
                    a rel="next" href={ (base) "?q=" (urlencode(&q.q)) "&after=" (last.id) } { "Next page" }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), &format!("Region {}", summary.name), body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_read_by_its_shape() {
        assert_eq!(Search::parse("  "), Search::All);
        assert_eq!(
            Search::parse("A1B2C3D4E5000001"),
            Search::DevEui("a1b2c3d4e5000001".into())
        );
        assert_eq!(
            Search::parse("12260100000001"),
            Search::Serial("12260100000001".into())
        );
        assert_eq!(Search::parse(" user-7 "), Search::UserId("user-7".into()));
    }
}
