//! The frame every page shares (navigation, who is signed in, sign out), the error page, and
//! how times and values are written.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Ctx;
use crate::api::auth::Role;
use crate::api::error::Problem;
use crate::api::routes::{Op, role_of};

const CSS: &str = include_str!("style.css");

/// A whole page: `title` is the heading and the window's title; `ctx` shows who is signed in.
pub fn page(ctx: Option<&Ctx<'_>>, title: &str, body: Markup) -> Markup {
    frame(ctx, title, None, body)
}

/// A page that reloads itself every `seconds` (a command on its way: no script needed).
pub fn refreshing(ctx: Option<&Ctx<'_>>, title: &str, seconds: u32, body: Markup) -> Markup {
    frame(ctx, title, Some(seconds), body)
}

fn frame(ctx: Option<&Ctx<'_>>, title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(r) = refresh {
                    meta http-equiv="refresh" content=(r);
                }
                title { (title) " · meterhub" }
                style { (PreEscaped(CSS)) }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        a href="/" { "meterhub" }
                        @if let Some(c) = ctx {
                            a href="/" { "Regions" }
                            a href="/alarms?state=open" { "Alarms" }
                            a href="/quarantine" { "Quarantine" }
                            @if may(c, role_of(Op::InstallMeter)) {
                                a href="/install" { "Install a meter" }
                            }
                            span.who {
                                "Signed in as " (c.caller.name) " (" (c.caller.role.as_str()) ")"
                            }
                            form method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The page of a problem: its status, what went wrong and, when known, which field.
pub fn error(ctx: Option<&Ctx<'_>>, p: &Problem) -> Markup {
    page(
        ctx,
        p.title,
        html! {
            div.error role="alert" {
                p { (p.detail) }
                @if let Some(f) = &p.field {
                    p { "Field: " code { (f) } }
                }
            }
            p { a href="/" { "Back to the regions" } }
        },
    )
}

/// A time as the pages write it.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional time, or a dash.
pub fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_owned(), time)
}

/// A battery as known: percent and volts, or a dash.
pub fn battery(percent: Option<i16>, millivolts: Option<i32>) -> String {
    match (percent, millivolts) {
        (Some(p), Some(mv)) => format!("{p} % ({:.2} V)", f64::from(mv) / 1000.0),
        (Some(p), None) => format!("{p} %"),
        (None, Some(mv)) => format!("{:.2} V", f64::from(mv) / 1000.0),
        (None, None) => "—".to_owned(),
    }
}

/// An alarm's or command's state, in words and a shape (never colour alone).
pub fn state(s: &str) -> Markup {
    html! { span class={ "state state-" (s) } { (s) } }
}

/// Whether the caller may do what needs `needed` (`None`: anyone signed in).
pub fn may(ctx: &Ctx<'_>, needed: Option<Role>) -> bool {
    needed.is_none_or(|r| ctx.caller.role >= r)
}

/// Nothing when the caller's role may do `op`, else a 403 saying what `doing` ("to send a
/// command") needs and what the caller has.
pub fn require(ctx: &Ctx<'_>, op: Op, doing: &str) -> Result<(), Problem> {
    let needed = role_of(op);
    if may(ctx, needed) {
        return Ok(());
    }
    Err(Problem::new(
        warp::http::StatusCode::FORBIDDEN,
        format!(
            "{doing} needs the {} role; this key has {}",
            needed.map_or("any", |r| r.as_str()),
            ctx.caller.role.as_str()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_page_prints_is_escaped() {
        let p = Problem::bad_field("q<", "<script>alert(1)</script>");
        let out = error(None, &p).into_string();
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(out.contains("q&lt;"));
    }

    #[test]
    fn batteries_show_what_is_known() {
        assert_eq!(battery(Some(80), Some(3_612)), "80 % (3.61 V)");
        assert_eq!(battery(None, None), "—");
        assert_eq!(battery(None, Some(3_000)), "3.00 V");
    }
}
