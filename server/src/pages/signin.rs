//! Signing in with an API key, and out.

use maud::html;
use serde::Deserialize;
use warp::http::{HeaderMap, HeaderValue, StatusCode};

use super::session::{self, Session, Sessions};
use super::{Req, html, layout, parse_form, redirect};
use crate::api::ApiState;
use crate::api::auth::Caller;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// The request's session and who holds it: a cookie signed by this installation, not expired
/// by the wall clock (a demo's simulated clock would end a session in seconds), whose key is
/// still live.
pub fn signed_in(
    state: &ApiState,
    sessions: &Sessions,
    req: &Req<'_>,
) -> Option<(Session, Caller)> {
    let cookies = req.headers.get("cookie").and_then(|v| v.to_str().ok());
    let s = sessions.from_cookies(cookies, chrono::Utc::now())?;
    let caller = state.keys.by_id(s.key_id())?;
    Some((s, caller))
}

/// GET /signin: the form, or home when already signed in.
pub fn form(state: &ApiState, sessions: &Sessions, req: &Req<'_>) -> warp::reply::Response {
    if signed_in(state, sessions, req).is_some() {
        return redirect("/");
    }
    html(StatusCode::OK, page(None))
}

fn page(error: Option<&str>) -> maud::Markup {
    layout::page(
        None,
        "Sign in",
        html! {
            form method="post" action="/signin" {
                @if let Some(e) = error {
                    p.error role="alert" #key-error { (e) }
                }
                label for="key" { "API key" }
                input #key type="password" name="key" required autocomplete="current-password"
                    autofocus aria-describedby=[error.map(|_| "key-error")];
                p.note { "A key from " code { "meterhub keys create" } "; this browser keeps a signed session naming the key, not the key itself." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// Whether a form was posted from a page of this site, as far as the browser says: another
/// site's page cannot sign a browser in with a key of its own choosing.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// POST /signin: a live key starts a session; anything else shows the form again.
pub fn submit(state: &ApiState, sessions: &Sessions, req: &Req<'_>) -> warp::reply::Response {
    if !same_origin(req.headers) {
        return html(
            StatusCode::FORBIDDEN,
            page(Some("This form was sent from another site.")),
        );
    }
    let form: SignIn = match parse_form(req.body) {
        Ok(f) => f,
        Err(_) => {
            return html(StatusCode::BAD_REQUEST, page(Some("Enter an API key.")));
        }
    };
    let Some(caller) = state.keys.verify(form.key.trim()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            page(Some("This key is not a live API key.")),
        );
    };
    let s = sessions.start(caller.key_id, chrono::Utc::now());
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&sessions.set_cookie(&s, behind_https(req.headers))) {
        r.headers_mut().insert("set-cookie", v);
    }
    r
}

/// POST /signout (its CSRF token already checked).
pub fn signout(_req: &Req<'_>) -> warp::reply::Response {
    let mut r = redirect("/signin");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert("set-cookie", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn sign_in_from_another_site_is_refused() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("origin", "http://x")])));
    }
}
