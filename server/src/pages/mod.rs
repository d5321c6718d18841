//! The operator's web pages at `/`, beside `/api/v1`: HTML rendered on the server from
//! templates checked at compile time (maud), everything in the binary (style inline, no
//! script), charts drawn as SVG on the server.
//!
//! The pages present; they read and write through the API's state (the same store, cache
//! announcements and key ring), and their writes go through the same functions as the API's
//! and are gated by the same roles ([`crate::api::routes::role_of`]). Sign-in with an API key
//! starts a session kept in a signed `HttpOnly`, `SameSite=Strict` cookie that names the key
//! but does not hold it ([`session`]); every form that changes something carries the session's
//! CSRF token and is refused without it.

mod alarms;
mod change;
pub mod chart;
mod command_list;
mod commands;
mod delete;
mod form;
mod home;
mod inspections;
mod install;
mod layout;
mod meter;
mod quarantine;
mod reads;
mod region;
pub mod session;
mod signin;

use std::sync::Arc;

use maud::Markup;
use serde::de::DeserializeOwned;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::api::error::Problem;
use session::Sessions;

/// The largest form body accepted, bytes (the sign-in form with a key is under 200).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The pages: cheap to clone.
#[derive(Clone)]
pub struct Pages {
    state: Arc<ApiState>,
    sessions: Sessions,
}

/// A signed-in request's context: the state, who is calling, and the token its forms carry.
pub(crate) struct Ctx<'a> {
    /// The API's state.
    pub state: &'a ApiState,
    /// The key's holder and role.
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
    /// How this request's reads went through the response cache.
    pub reads: reads::Use,
}

/// A request as a page handler sees it.
pub(crate) struct Req<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Pages {
    /// The pages over the API's state, their sessions signed and checked by `sessions`.
    pub fn new(state: Arc<ApiState>, sessions: Sessions) -> Pages {
        Pages { state, sessions }
    }

    /// The filter serving every page; put it after the API's and the health routes, since it
    /// answers every other path (a 404 page for those it does not know).
    pub fn filter(
        &self,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<>
    {
        let state = self.state.clone();
        let sessions = self.sessions.clone();
        warp::path::full()
            .and(warp::method())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(
                move |path: warp::path::FullPath,
                      method: warp::http::Method,
                      query: String,
                      headers: HeaderMap,
                      body| {
                    let state = state.clone();
                    let sessions = sessions.clone();
                    async move {
                        let body = match crate::api::read_body(body, MAX_FORM_BYTES).await {
                            Ok(b) => b,
                            Err(p) => return error_page(None, &p),
                        };
                        let req = Req {
                            method: method.as_str(),
                            path: path.as_str(),
                            query: &query,
                            headers: &headers,
                            body: &body,
                        };
                        if req.method == "HEAD" {
                            let get = Req {
                                method: "GET",
                                ..req
                            };
                            let mut r = dispatch(&state, &sessions, &get).await;
                            *r.body_mut() = Default::default();
                            return r;
                        }
                        dispatch(&state, &sessions, &req).await
                    }
                },
            )
    }
}

async fn dispatch(state: &ApiState, sessions: &Sessions, req: &Req<'_>) -> warp::reply::Response {
    let raw: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // The sign-in form is the one page without a session.
    match (req.method, raw.as_slice()) {
        ("GET", ["signin"]) => return signin::form(state, sessions, req),
        ("POST", ["signin"]) => return signin::submit(state, sessions, req),
        _ => {}
    }
    // A path that is no page is a 404 for anyone, signed in or not.
    if !is_page(&raw) {
        return error_page(
            None,
            &Problem::not_found(format!("there is no page {}", req.path)),
        );
    }
    let Some((session, caller)) = signin::signed_in(state, sessions, req) else {
        // A session that is over (expired, its key revoked, its cookie changed) is dropped.
        let mut r = redirect("/signin");
        if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
            r.headers_mut().insert("set-cookie", v);
        }
        return r;
    };
    let no_cache = req
        .headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache"));
    let ctx = Ctx {
        state,
        caller,
        csrf: session.csrf(),
        reads: reads::Use::new(no_cache),
    };
    if req.method == "POST" {
        let token: Option<String> = form_urlencoded::parse(req.body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !token.is_some_and(|t| session.accepts(&t)) {
            return error_page(
                Some(&ctx),
                &Problem::new(
                    StatusCode::FORBIDDEN,
                    "this form was not sent from a page of this session (its CSRF token is \
                     missing or wrong); reload the page and try again",
                )
                .with_field("csrf"),
            );
        }
    }
    let result = route(&ctx, req, &raw).await;
    let mut r = match result {
        Ok(r) => r,
        Err(p) => error_page(Some(&ctx), &p),
    };
    if let Some(how) = ctx.reads.header() {
        r.headers_mut()
            .insert("x-cache", HeaderValue::from_static(how));
    }
    r
}

async fn route(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    raw: &[&str],
) -> Result<warp::reply::Response, Problem> {
    let seg =
        |i: usize, field: &str| crate::api::text::segment(raw.get(i).copied().unwrap_or(""), field);
    match (req.method, raw) {
        ("GET", []) => home::page(ctx).await,
        ("POST", ["signout"]) => Ok(signin::signout(req)),
        ("GET", ["regions", _]) => region::page(ctx, &seg(1, "region")?, req.query).await,
        ("GET", ["meters", _]) => meter::page(ctx, &seg(1, "meter")?, req.query).await,
        ("GET", ["alarms"]) => alarms::list(ctx, req.query).await,
        ("GET", ["alarms", _, _]) => {
            alarms::confirm(ctx, &seg(1, "alarm")?, &seg(2, "action")?, req.query).await
        }
        ("POST", ["alarms", _, _]) => {
            alarms::act(ctx, &seg(1, "alarm")?, &seg(2, "action")?, req.body).await
        }
        ("GET", ["meters", _, "commands", _]) => {
            commands::confirm(ctx, &seg(1, "meter")?, &seg(3, "kind")?).await
        }
        ("GET", ["meters", _, "commands"]) => {
            command_list::page(ctx, &seg(1, "meter")?, req.query).await
        }
        ("POST", ["meters", _, "commands"]) => {
            commands::send(ctx, &seg(1, "meter")?, req.body).await
        }
        ("GET", ["meters", _, "inspections"]) => {
            inspections::page(ctx, &seg(1, "meter")?, req.query).await
        }
        ("POST", ["meters", _, "inspections"]) => {
            inspections::record(ctx, &seg(1, "meter")?, req.body).await
        }
        ("GET", ["meters", _, "change"]) => change::form(ctx, &seg(1, "meter")?).await,
        ("POST", ["meters", _, "change"]) => change::submit(ctx, &seg(1, "meter")?, req.body).await,
        ("GET", ["meters", _, "delete"]) => delete::page(ctx, &seg(1, "meter")?, req.query).await,
        ("POST", ["meters", _, "delete"]) => delete::submit(ctx, &seg(1, "meter")?, req.body).await,
        ("GET", ["install"]) => install::form(ctx).await,
        ("POST", ["install"]) => install::submit(ctx, req.body).await,
        ("GET", ["quarantine"]) => quarantine::list(ctx, req.query).await,
        ("GET", ["quarantine", _, "replay"]) => quarantine::confirm(ctx, &seg(1, "id")?).await,
        ("POST", ["quarantine", _, "replay"]) => {
            quarantine::replay(ctx, &seg(1, "id")?, req.body).await
        }
        ("GET", ["commands", _]) => commands::page(ctx, &seg(1, "command")?).await,
        _ if is_page(raw) => Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} does not take {}", req.path, req.method),
        )),
        _ => Err(Problem::not_found(format!("there is no page {}", req.path))),
    }
}

/// Whether a path is one of the pages (with some method): anything else is a 404.
fn is_page(raw: &[&str]) -> bool {
    matches!(
        raw,
        [] | ["signout"]
            | ["regions", _]
            | ["meters", _]
            | ["meters", _, "commands"]
            | ["meters", _, "commands", _]
            | ["meters", _, "inspections"]
            | ["meters", _, "change"]
            | ["meters", _, "delete"]
            | ["commands", _]
            | ["install"]
            | ["quarantine"]
            | ["quarantine", _, "replay"]
            | ["alarms"]
            | ["alarms", _, _]
    )
}

/// A query string or form as `T`, or a 400 naming the field.
pub(crate) fn parse_form<T: DeserializeOwned>(text: &[u8]) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(text));
    // The API's own reading of the error: an unknown or missing field is named too.
    serde_path_to_error::deserialize(de).map_err(crate::api::error::query_error)
}

/// An HTML page with the headers every page carries.
pub(crate) fn html(status: StatusCode, markup: Markup) -> warp::reply::Response {
    let mut r = warp::reply::html(markup.into_string()).into_response();
    *r.status_mut() = status;
    let h = r.headers_mut();
    // Pages show one key's view of live data: never stored by a cache on the way.
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

/// A 303 to a path of this site.
pub(crate) fn redirect(to: &str) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(Default::default());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert("location", v);
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// `to` when it is a path of this site (so a form cannot send the browser elsewhere), else `/`.
pub(crate) fn local_path(to: &str) -> &str {
    let local = to.starts_with('/')
        && !to.starts_with("//")
        && !to.contains('\\')
        && !to.chars().any(char::is_control);
    if local { to } else { "/" }
}

fn error_page(ctx: Option<&Ctx<'_>>, p: &Problem) -> warp::reply::Response {
    html(p.status_code(), layout::error(ctx, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/alarms?state=open"), "/alarms?state=open");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "alarms",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[allow(dead_code)]
        days: Option<u32>,
    }

    #[test]
    fn a_bad_query_value_is_blamed_on_its_field() {
        let p = parse_form::<Q>(b"days=many").expect_err("refused");
        assert_eq!(p.status_code(), StatusCode::BAD_REQUEST);
        assert!(format!("{p:?}").contains("days"), "{p:?}");
        assert!(parse_form::<Q>(b"days=7").is_ok());
        assert!(parse_form::<Q>(b"").is_ok());
    }
}
