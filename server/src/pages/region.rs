//! Region: its meters, searched by serial, DevEUI, user id or body number and filtered by
//! status, silence, low battery and alarms, a page at a time by id.

use maud::html;
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use super::home::urlencode;
use super::reads::{Fresh, cached};
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::api::routes::{ALARM_STATES, METER_STATUSES};
use crate::cache::Tag;
use crate::storage::listings::MeterFilter;
use crate::storage::meters::Meter;

/// Meters on one page.
const PAGE: i64 = 50;

/// The region page's query: the search, the filters and the page.
#[derive(Deserialize, Serialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Query {
    /// What to search for.
    #[serde(default)]
    pub q: String,
    /// How to read it: `auto` (by its shape), `serial`, `devEui`, `userId`, `bodyNumber`.
    #[serde(default)]
    pub by: String,
    /// Only meters in this status.
    #[serde(default)]
    pub status: String,
    /// Only silent meters (`1`).
    #[serde(default)]
    pub silent: String,
    /// Only meters with a low battery (`1`).
    #[serde(default)]
    pub battery: String,
    /// Only meters with an alarm in this state.
    #[serde(default)]
    pub alarm: String,
    /// The last meter id of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
}

/// What a search names.
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
    /// The number on a meter's body.
    BodyNumber(i64),
}

/// The ways a search can be read, with their labels.
pub(crate) const SEARCH_BY: [(&str, &str); 5] = [
    ("", "by its shape"),
    ("serial", "serial"),
    ("devEui", "DevEUI"),
    ("userId", "user id"),
    ("bodyNumber", "body number"),
];

impl Search {
    /// Reads the search box by its shape: a DevEUI or serial matches one meter; anything else
    /// is a user id.
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

    /// Reads the search box as `by` says, or a 400 naming the field.
    pub(crate) fn parse_by(text: &str, by: &str) -> Result<Search, Problem> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(Search::All);
        }
        match by {
            "" | "auto" => Ok(Search::parse(t)),
            "serial" => Ok(Search::Serial(t.to_owned())),
            "devEui" => Ok(Search::DevEui(t.to_ascii_lowercase())),
            "userId" => Ok(Search::UserId(t.to_owned())),
            "bodyNumber" => t
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Search::BodyNumber)
                .ok_or_else(|| Problem::bad_field("q", format!("{t:?} is not a body number"))),
            other => Err(Problem::bad_field(
                "by",
                format!("{other:?} is not one of auto, serial, devEui, userId, bodyNumber"),
            )),
        }
    }
}

fn flag(value: &str, field: &str) -> Result<bool, Problem> {
    match value {
        "" => Ok(false),
        "1" | "on" => Ok(true),
        other => Err(Problem::bad_field(
            field.to_owned(),
            format!("{other:?} is neither empty nor 1"),
        )),
    }
}

impl Query {
    /// The store's filter for this query in `region`; `now` decides silence, `low` is the
    /// battery percentage below which a battery counts as low.
    pub(crate) fn filter(
        &self,
        region: &str,
        now: chrono::DateTime<chrono::Utc>,
        low: u8,
    ) -> Result<MeterFilter, Problem> {
        let one_of = |v: &str, allowed: &[&str], field: &str| -> Result<Option<String>, Problem> {
            let v = v.trim();
            if v.is_empty() {
                Ok(None)
            } else if allowed.contains(&v) {
                Ok(Some(v.to_owned()))
            } else {
                Err(Problem::bad_field(
                    field.to_owned(),
                    format!("{v:?} is not one of {}", allowed.join(", ")),
                ))
            }
        };
        if self.after.is_some_and(|a| a < 0) {
            return Err(Problem::bad_field("after", "must be a meter id, 0 or more"));
        }
        let mut f = MeterFilter {
            region: Some(region.to_owned()),
            status: one_of(&self.status, &METER_STATUSES, "status")?,
            alarm_state: one_of(&self.alarm, &ALARM_STATES, "alarm")?,
            silent_at: flag(&self.silent, "silent")?.then_some(now),
            battery_below: flag(&self.battery, "battery")?.then_some(i16::from(low)),
            ..MeterFilter::default()
        };
        match Search::parse_by(&self.q, &self.by)? {
            Search::All => {}
            Search::DevEui(d) => f.dev_eui = Some(d),
            Search::Serial(s) => f.serial = Some(s),
            Search::UserId(u) => f.user_id = Some(u),
            Search::BodyNumber(n) => f.body_number = Some(n),
        }
        Ok(f)
    }

    /// Whether anything narrows the list.
    fn narrows(&self) -> bool {
        let empty = Query {
            by: self.by.clone(),
            ..Query::default()
        };
        Query {
            after: None,
            ..self.clone()
        } != empty
    }

    /// This query as a URL query string, on another page.
    fn at(&self, after: Option<i64>) -> String {
        serde_urlencoded::to_string(Query {
            after,
            ..self.clone()
        })
        .unwrap_or_default()
    }
}

/// A page of the region's meters as `filter` picks them (one more than shown, to know whether
/// another page follows), cached under the region as the API's list is: a write to one of its
/// meters changes it, and so does a meter's falling silent when the list holds silent meters
/// only. A list narrowed by customer or status is cached under anything, as the API's: a
/// customer's or a status's meters change with writes beyond the region's.
async fn listed(ctx: &Ctx<'_>, q: &Query, filter: &MeterFilter) -> Result<Vec<Meter>, Problem> {
    let region = filter.region.clone().unwrap_or_default();
    let after = q.after.unwrap_or(0);
    let key = format!(
        "region|{}|{}|{after}",
        urlencode(&region),
        filter_key(filter)
    );
    cached(ctx, key, || async {
        let s = ctx.state;
        let rows = s.store.meters_filtered(filter, after, PAGE + 1).await?;
        let until = match filter.silent_at {
            Some(now) => s.store.next_overdue(Some(&region), now).await?,
            None => None,
        };
        let tags = if filter.user_id.is_none() && filter.status.is_none() {
            vec![Tag::Region(region.clone())]
        } else {
            vec![Tag::All]
        };
        Ok(Fresh::new(rows, tags).until(until))
    })
    .await
}

/// `filter` in a cache key: everything but the instant that decides silence (the list of
/// silent meters is good until the next one falls silent, not for one instant).
fn filter_key(f: &MeterFilter) -> String {
    let MeterFilter {
        region: _,
        status,
        user_id,
        dev_eui,
        serial,
        body_number,
        silent_at,
        battery_below,
        alarm_state,
    } = f;
    format!(
        "{status:?}|{user_id:?}|{dev_eui:?}|{serial:?}|{body_number:?}|{}|{battery_below:?}|\
         {alarm_state:?}",
        silent_at.is_some()
    )
}

/// GET /regions/{region}
pub async fn page(
    ctx: &Ctx<'_>,
    region: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let q: Query = parse_form(query.as_bytes())?;
    let now = ctx.state.now();
    let filter = q.filter(region, now, ctx.state.policy.rules.low_battery_percent)?;
    let Some(summary) = super::home::regions(ctx)
        .await?
        .into_iter()
        .find(|r| r.id == region)
    else {
        return Err(Problem::not_found(format!("there is no region {region:?}")));
    };
    let mut meters = listed(ctx, &q, &filter).await?;
    let more = meters.len() > PAGE as usize;
    meters.truncate(PAGE as usize);
    let base = format!("/regions/{}", urlencode(region));
    let low = ctx.state.policy.rules.low_battery_percent;
    let body = html! {
        dl.facts {
            dt { "Meters" } dd { (summary.meters) }
            dt { "Silent meters" } dd { (summary.silent) }
            dt { "Open alarms" } dd {
                a href={ "/alarms?state=open&region=" (urlencode(region)) } { (summary.open_alarms) }
            }
        }
        form.filters #meter-filters method="get" action=(base) role="search" {
            div.field {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(q.q) aria-describedby="q-hint";
                span.hint #q-hint { "Serial, DevEUI, user id or body number" }
            }
            div.field {
                label for="by" { "Read the search" }
                select #by name="by" {
                    @for (v, l) in SEARCH_BY { option value=(v) selected[q.by == v] { (l) } }
                }
            }
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" selected[q.status.is_empty()] { "any" }
                    @for st in METER_STATUSES { option value=(st) selected[q.status == st] { (st) } }
                }
            }
            div.field {
                label for="alarm" { "Alarm" }
                select #alarm name="alarm" {
                    option value="" selected[q.alarm.is_empty()] { "any or none" }
                    @for st in ALARM_STATES { option value=(st) selected[q.alarm == st] { "has one " (st) } }
                }
            }
            label.check for="silent" {
                input #silent type="checkbox" name="silent" value="1" checked[filter.silent_at.is_some()];
                "Silent only"
            }
            label.check for="battery" {
                input #battery type="checkbox" name="battery" value="1" checked[filter.battery_below.is_some()];
                "Battery below " (low) " %"
            }
            button type="submit" #filter { "Show" }
            @if q.narrows() { a href=(base) { "Show all" } }
        }
        @if meters.is_empty() {
            p #no-meters { "No meter matches." }
        } @else {
            div.table-wrap {
                table #meters {
                    caption.skip { "Meters of " (summary.name) }
                    thead { tr {
                        th scope="col" { "DevEUI" } th scope="col" { "Serial" }
                        th scope="col" { "Body number" }
                        th scope="col" { "User" } th scope="col" { "Status" }
                        th scope="col" { "Last seen" } th scope="col" { "Battery" }
                        th scope="col" class="num" { "RSSI (dBm)" }
                    } }
                    tbody {
                        @for m in &meters {
                            tr {
                                td { a href={ "/meters/" (m.dev_eui) } { (m.dev_eui) } }
                                td { (m.serial) }
                                td.num { (m.body_number) }
                                td { (m.user_id) }
                                td {
                                    (m.status)
                                    @if m.overdue_at.is_some_and(|t| t < now) { " · silent" }
                                }
                                td { (layout::maybe_time(m.last_seen_at)) }
                                td { (layout::battery(m.battery_percent, m.battery_millivolts))
                                    @if m.battery_percent.is_some_and(|p| p < i16::from(low)) { " · low" }
                                }
                                td.num { (m.rssi.map_or_else(|| "—".to_owned(), |r| r.to_string())) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.after.is_some() {
                a href={ (base) "?" (q.at(None)) } { "First page" }
            }
            @if more {
                @if let Some(last) = meters.last() {
                    a rel="next" href={ (base) "?" (q.at(Some(last.id))) } { "Next page" }
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
        assert_eq!(
            Search::parse_by("42", "bodyNumber"),
            Ok(Search::BodyNumber(42))
        );
        assert_eq!(Search::parse_by("42", ""), Ok(Search::UserId("42".into())));
        assert_eq!(
            Search::parse_by("ABC", "devEui"),
            Ok(Search::DevEui("abc".into()))
        );
        assert_eq!(Search::parse_by(" ", "bodyNumber"), Ok(Search::All));
        let p = Search::parse_by("x", "bodyNumber").expect_err("refused");
        assert_eq!(p.field.as_deref(), Some("q"));
        let p = Search::parse_by("x", "colour").expect_err("refused");
        assert_eq!(p.field.as_deref(), Some("by"));
    }

    #[test]
    fn the_filters_become_the_stores() {
        let now = chrono::Utc::now();
        let q: Query = parse_form(b"q=7&by=bodyNumber&status=active&silent=1&battery=1&alarm=open")
            .expect("parsed");
        let f = q.filter("north", now, 15).expect("valid");
        assert_eq!(
            f,
            MeterFilter {
                region: Some("north".into()),
                status: Some("active".into()),
                body_number: Some(7),
                silent_at: Some(now),
                battery_below: Some(15),
                alarm_state: Some("open".into()),
                ..MeterFilter::default()
            }
        );
        assert!(q.narrows());
        let all: Query = parse_form(b"by=&q=").expect("parsed");
        assert_eq!(
            all.filter("north", now, 15).expect("valid"),
            MeterFilter {
                region: Some("north".into()),
                ..MeterFilter::default()
            }
        );
        assert!(!all.narrows());
        for (text, field) in [
            (&b"status=asleep"[..], "status"),
            (b"alarm=loud", "alarm"),
            (b"silent=yes", "silent"),
            (b"battery=2", "battery"),
            (b"after=-1", "after"),
        ] {
            let q: Query = parse_form(text).expect("parsed");
            let p = q.filter("north", now, 15).expect_err("refused");
            assert_eq!(p.field.as_deref(), Some(field), "{p:?}");
        }
        // The pager keeps every filter.
        assert_eq!(
            q.at(Some(9)),
            "q=7&by=bodyNumber&status=active&silent=1&battery=1&alarm=open&after=9"
        );
    }
}
