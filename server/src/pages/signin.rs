//! Signing in with an API key, and out.

use maud::html;
use serde::Deserialize;
use warp::http::{HeaderMap, HeaderValue, StatusCode};

use super::session::{self, Session};
use super::{Req, html, layout, parse_form, redirect};
use crate::api::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// GET /signin: the form, or home when already signed in.
pub fn form(state: &ApiState, req: &Req<'_>) -> warp::reply::Response {
    let cookies = req.headers.get("cookie").and_then(|v| v.to_str().ok());
    if Session::from_cookies(cookies).is_some_and(|s| state.keys.verify(s.key()).is_some()) {
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
                p.note { "A key from " code { "meterhub keys create" } "; it stays in this browser's session cookie." }
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
pub fn submit(state: &ApiState, req: &Req<'_>) -> warp::reply::Response {
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
    let key = form.key.trim();
    if state.keys.verify(key).is_none() {
        return html(
            StatusCode::UNAUTHORIZED,
            page(Some("This key is not a live API key.")),
        );
    }
    let s = Session::new(key);
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&s.set_cookie(behind_https(req.headers))) {
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
