//! Home: a card per region.

use maud::html;
use warp::http::StatusCode;

use super::reads::{Fresh, cached};
use super::{Ctx, html, layout};
use crate::api::error::Problem;
use crate::cache::Tag;
use crate::storage::listings::RegionSummary;

/// Every region's counts, as `GET /api/v1/regions` reads them: changed by any write, and by
/// time when a meter falls silent.
pub(crate) async fn regions(ctx: &Ctx<'_>) -> Result<Vec<RegionSummary>, Problem> {
    cached(ctx, "regions".to_owned(), || async {
        let s = ctx.state;
        let now = s.now();
        let rows = s.store.region_summaries(now).await?;
        let until = s.store.next_overdue(None, now).await?;
        Ok(Fresh::new(rows, vec![Tag::All]).until(until))
    })
    .await
}

/// GET /
pub async fn page(ctx: &Ctx<'_>) -> Result<warp::reply::Response, Problem> {
    let regions = regions(ctx).await?;
    let body = html! {
        @if regions.is_empty() {
            p { "No region has a meter yet. Install meters with " code { "meterhub meters import" }
                " or " code { "POST /api/v1/meters" } "." }
        } @else {
            ul.cards {
                @for r in &regions {
                    li.card {
                        h2 { a href={ "/regions/" (urlencode(&r.id)) } { (r.name) } }
                        dl.facts {
                            dt { "Meters" } dd.meters { (r.meters) }
                            dt { "Silent meters" } dd.silent { (r.silent) }
                            dt { "Open alarms" } dd.open-alarms { (r.open_alarms) }
                        }
                        @if !r.open_by_kind.is_empty() {
                            h3.note { "Open alarms by kind" }
                            ul.by-kind {
                                @for (kind, n) in &r.open_by_kind {
                                    li {
                                        a href={ "/alarms?state=open&region=" (urlencode(&r.id)) "&kind=" (urlencode(kind)) } {
                                            (kind)
                                        }
                                        ": " (n)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), "Regions", body),
    ))
}

/// Percent-encodes a path segment or query value.
pub(crate) fn urlencode(s: &str) -> String {
    // `+` means a space only in a query; `%20` means one everywhere.
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
