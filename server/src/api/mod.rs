//! The REST API under `/api/v1`: JSON, keyset pagination, API keys with roles, errors as
//! problem JSON, and an LRU of serialized responses kept coherent by generations
//! ([`crate::cache`]).
//!
//! One warp filter takes every request under `/api/v1` and dispatches it through the route
//! table ([`routes::ROUTES`]): the same table checks roles and generates the OpenAPI document.
//! HTTPS belongs to a reverse proxy in front (docs/api.md).

pub mod auth;
pub mod error;
mod handlers;
pub mod input;
pub mod openapi;
pub mod requests;
pub mod routes;
pub(crate) mod text;
pub mod views;

pub(crate) use handlers::admin::replay_quarantined;
/// Writes the operator's pages make through the same code as the API.
pub(crate) use handlers::alarms::{acknowledge_alarm, clear_alarm, record_inspection_of};
pub(crate) use handlers::commands::send_command;
pub(crate) use handlers::deletion::{refused as deletion_refused, view as deletion_view};
pub(crate) use handlers::registry::{InstallError, install_meter};

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use firmware_protocol::clock::Clock;
use futures_util::StreamExt;
use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Buf, Filter, Reply};

use crate::cache::{Changes, ResponseCache, Tag};
use crate::mqtt::Template;
use crate::storage::Store;
use crate::time::now_utc;
use auth::{Caller, KeyRing};
use error::Problem;
use routes::{Match, Route};

/// Everything a request handler may use.
pub struct ApiState {
    /// The store.
    pub store: Store,
    /// The shared clock: every "now" of the API.
    pub clock: Clock,
    /// Where writes announce themselves (and the cache they invalidate).
    pub changes: Changes,
    /// The keys that may call.
    pub keys: KeyRing,
    /// The event topic template (to replay quarantined messages).
    pub template: Template,
    /// The largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// The rules a replayed message is planned with, as the bridge would.
    pub policy: crate::uplink::classify::Policy,
    /// The command queue.
    pub downlinks: crate::downlink::Downlinks,
    /// The billing calendar (time zones, interpolation gap).
    pub billing: crate::billing::Calendar,
    /// Told after every install and retirement, so that ChirpStack's device list follows
    /// without waiting for the sync's next periodic round (nobody listens when it is off).
    pub registry_changed: std::sync::Arc<tokio::sync::Notify>,
}

impl ApiState {
    /// The application's time now.
    pub fn now(&self) -> DateTime<Utc> {
        now_utc(&self.clock)
    }

    fn cache(&self) -> &ResponseCache {
        self.changes.cache()
    }
}

/// The API: cheap to clone.
#[derive(Clone)]
pub struct Api {
    state: Arc<ApiState>,
}

/// A request as the handlers see it.
pub struct Request<'a> {
    /// The state.
    pub state: &'a ApiState,
    /// The route.
    pub route: &'static Route,
    /// Path parameters, in the route's order (percent-decoded).
    pub params: Vec<String>,
    /// The raw query string.
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// The caller (every route but the OpenAPI document has one).
    pub caller: Option<Caller>,
    /// Whether the client asked to bypass the cache (`Cache-Control: no-cache`).
    pub no_cache: bool,
    /// The `Accept` header ("" without one).
    pub accept: &'a str,
}

impl Request<'_> {
    /// Whether the client asked for CSV (`Accept: text/csv`).
    pub fn wants_csv(&self) -> bool {
        self.accept
            .split(',')
            .any(|m| m.split(';').next().is_some_and(|m| m.trim() == "text/csv"))
    }

    /// Path parameter `i`.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// Who is calling, for the audit columns.
    pub fn caller_name(&self) -> String {
        self.caller
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.name.clone())
    }
}

/// A success answer.
pub struct Answer {
    status: StatusCode,
    body: Option<Arc<[u8]>>,
    location: Option<String>,
    cache: Option<&'static str>,
    /// A body sent as it is produced, with its headers.
    streamed: Option<warp::reply::Response>,
}

impl Answer {
    /// 200 with a body of `content_type` sent chunk by chunk as `chunks` yields them; an
    /// error ends the response early (the client sees a cut connection, not a whole file).
    pub fn stream<S>(content_type: &'static str, chunks: S) -> Answer
    where
        S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let mut r = warp::reply::stream(chunks).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        Answer {
            status: StatusCode::OK,
            body: None,
            location: None,
            cache: None,
            streamed: Some(r),
        }
    }

    /// JSON with this status.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Answer, Problem> {
        let body = serde_json::to_vec(value).map_err(|e| Problem::internal(&e))?;
        Ok(Answer {
            status,
            body: Some(body.into()),
            location: None,
            cache: None,
            streamed: None,
        })
    }

    /// 200 with JSON.
    pub fn ok(value: &impl Serialize) -> Result<Answer, Problem> {
        Answer::json(StatusCode::OK, value)
    }

    /// No body.
    pub fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            body: None,
            location: None,
            cache: None,
            streamed: None,
        }
    }

    /// With a `Location` header.
    pub fn at(mut self, location: String) -> Answer {
        self.location = Some(location);
        self
    }
}

/// A response computed on a cache miss: its body, what it depends on, and the application
/// time after which it may change without a write.
pub struct Fresh {
    /// JSON body.
    pub body: Vec<u8>,
    /// Tags it depends on.
    pub tags: Vec<Tag>,
    /// When it may change without a write.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Fresh {
    /// Serializes `value`.
    pub fn new(
        value: &impl Serialize,
        tags: Vec<Tag>,
        valid_until: Option<DateTime<Utc>>,
    ) -> Result<Fresh, Problem> {
        Ok(Fresh {
            body: serde_json::to_vec(value).map_err(|e| Problem::internal(&e))?,
            tags,
            valid_until,
        })
    }
}

/// Serves `key` from the cache, or computes, stores and serves it. The generation is read
/// before `compute` starts, so a write committed meanwhile leaves the stored entry stale.
pub async fn cached<F, Fut>(req: &Request<'_>, key: String, compute: F) -> Result<Answer, Problem>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Fresh, Problem>>,
{
    let cache = req.state.cache();
    let now = req.state.now();
    if !req.no_cache
        && let Some(body) = cache.get(&key, now)
    {
        return Ok(Answer {
            status: StatusCode::OK,
            body: Some(body),
            location: None,
            cache: Some("hit"),
            streamed: None,
        });
    }
    let generation = cache.generation();
    let fresh = compute().await?;
    let body: Arc<[u8]> = fresh.body.into();
    // A bypassing read leaves the cache as it was: it is how clients (and the coherence
    // tests) compare the cache with the database.
    if !req.no_cache {
        cache.insert(key, body.clone(), fresh.tags, generation, fresh.valid_until);
    }
    Ok(Answer {
        status: StatusCode::OK,
        body: Some(body),
        location: None,
        cache: Some(if req.no_cache { "bypass" } else { "miss" }),
        streamed: None,
    })
}

impl Api {
    /// The API over these parts.
    pub fn new(state: ApiState) -> Api {
        Api {
            state: Arc::new(state),
        }
    }

    /// The state (tests and the key refresher use it).
    pub fn state(&self) -> &ApiState {
        &self.state
    }

    /// The state, shared (the operator's pages read and write through it).
    pub fn shared_state(&self) -> Arc<ApiState> {
        self.state.clone()
    }

    /// The filter serving everything under `/api/v1`.
    pub fn filter(
        &self,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<>
    {
        let state = self.state.clone();
        warp::path("api")
            .and(warp::path("v1"))
            .and(warp::path::tail())
            .and(warp::method())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(
                move |tail: warp::path::Tail,
                      method: warp::http::Method,
                      query: String,
                      headers: warp::http::HeaderMap,
                      body| {
                    let state = state.clone();
                    async move {
                        let limit = state.max_body_bytes;
                        let body = match read_body(body, limit).await {
                            Ok(b) => b,
                            Err(p) => return problem_response(&p),
                        };
                        dispatch(
                            &state,
                            method.as_str(),
                            tail.as_str(),
                            &query,
                            &headers,
                            &body,
                        )
                        .await
                    }
                },
            )
    }
}

/// Collects a body of at most `limit` bytes, refusing more as soon as it arrives.
pub(crate) async fn read_body<S, B>(body: S, limit: usize) -> Result<Vec<u8>, Problem>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|_| Problem::bad_field("body", "the body could not be read"))?;
        if out.len() + chunk.remaining() > limit {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            )
            .with_field("body"));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

async fn dispatch(
    state: &ApiState,
    method: &str,
    tail: &str,
    query: &str,
    headers: &warp::http::HeaderMap,
    body: &[u8],
) -> warp::reply::Response {
    // HEAD is GET without the body: same route, same checks, same status and headers.
    if method == "HEAD" {
        let mut r = Box::pin(dispatch(state, "GET", tail, query, headers, body)).await;
        // The length GET would send, as HTTP asks of HEAD.
        if let Some(n) = warp::hyper::body::Body::size_hint(r.body()).exact() {
            r.headers_mut()
                .insert("content-length", HeaderValue::from(n));
        }
        *r.body_mut() = Default::default();
        return r;
    }
    let segments: Vec<&str> = tail.trim_end_matches('/').split('/').collect();
    let (route, raw_params) = match routes::find(method, &segments) {
        Match::Found(r, p) => (r, p),
        Match::WrongMethod(mut allowed) => {
            if allowed.contains(&"GET") {
                allowed.push("HEAD");
            }
            let mut r = problem_response(&Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("this path takes {}", allowed.join(", ")),
            ));
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert("allow", v);
            }
            return r;
        }
        Match::NotFound => {
            return problem_response(&Problem::not_found(format!(
                "no route /api/v1/{tail}; see /api/v1/openapi.json"
            )));
        }
    };
    let caller = match route.role {
        None => None,
        Some(needed) => {
            let header = headers.get("authorization").and_then(|v| v.to_str().ok());
            let Some(caller) = auth::bearer(header).and_then(|s| state.keys.verify(s)) else {
                let mut r = problem_response(&Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "an API key is required: Authorization: Bearer <key>",
                ));
                r.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                return r;
            };
            if caller.role < needed {
                return problem_response(&Problem::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this needs the {} role; the key has {}",
                        needed.as_str(),
                        caller.role.as_str()
                    ),
                ));
            }
            Some(caller)
        }
    };
    let params = match checked_text(route, raw_params, query, headers, body) {
        Ok(p) => p,
        Err(p) => return problem_response(&p),
    };
    let no_cache = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache"));
    let req = Request {
        state,
        route,
        params,
        query,
        body,
        caller,
        no_cache,
        accept: headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    match handlers::handle(&req).await {
        Ok(a) => answer_response(a),
        Err(p) => problem_response(&p),
    }
}

/// Every text input of the request, checked before a handler parses it: the decoded path
/// parameters, or the problem.
fn checked_text(
    route: &Route,
    raw_params: Vec<String>,
    query: &str,
    headers: &warp::http::HeaderMap,
    body: &[u8],
) -> Result<Vec<String>, Problem> {
    let params = text::path_params(route, raw_params)?;
    text::query(query)?;
    if route.body.is_some() && !body.is_empty() {
        text::body(headers, body)?;
    }
    Ok(params)
}

fn answer_response(a: Answer) -> warp::reply::Response {
    if let Some(r) = a.streamed {
        return r;
    }
    // The body goes out as the cached bytes themselves, not a copy: a cached month of
    // readings is several kilobytes, and copying it was the largest single cost of a hit.
    let body = match &a.body {
        Some(b) => Bytes::from_owner(b.clone()),
        None => Bytes::new(),
    };
    let mut r = warp::http::Response::new(body).into_response();
    *r.status_mut() = a.status;
    let h = r.headers_mut();
    if a.body.is_some() {
        h.insert("content-type", HeaderValue::from_static("application/json"));
    } else {
        h.remove("content-type");
    }
    if let Some(l) = a.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert("location", l);
    }
    if let Some(c) = a.cache {
        h.insert("x-cache", HeaderValue::from_static(c));
    }
    r
}

/// Seconds a client is asked to wait before retrying a 503: about the longest the writer waits
/// between its own attempts while the database is away.
pub const RETRY_AFTER_SECS: u64 = 5;

/// A problem as a response; a 503 says when to retry (`Retry-After`).
pub fn problem_response(p: &Problem) -> warp::reply::Response {
    let body = serde_json::to_vec(p).unwrap_or_default();
    let mut r = body.into_response();
    *r.status_mut() = p.status_code();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/problem+json"),
    );
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(RETRY_AFTER_SECS));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::hyper::body::Body as _;

    #[tokio::test]
    async fn an_answer_is_sent_from_its_bytes_without_a_copy() {
        let cached: Arc<[u8]> = Arc::from(&b"{\"items\":[]}"[..]);
        let r = answer_response(Answer {
            status: StatusCode::OK,
            body: Some(cached.clone()),
            location: None,
            cache: Some("hit"),
            streamed: None,
        });
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["x-cache"], "hit");
        assert_eq!(r.body().size_hint().exact(), Some(cached.len() as u64));
        let mut body = r.into_body();
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("no error");
        let data = frame.into_data().expect("data");
        assert_eq!(&data[..], &cached[..]);
        assert_eq!(
            data.as_ptr(),
            cached.as_ptr(),
            "the cached bytes themselves"
        );

        let empty = answer_response(Answer::empty(StatusCode::NO_CONTENT));
        assert!(empty.headers().get("retry-after").is_none());
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        assert!(empty.headers().get("content-type").is_none());
        assert_eq!(empty.body().size_hint().exact(), Some(0));
    }

    #[test]
    fn only_an_unavailable_database_asks_for_a_retry() {
        let unavailable = problem_response(&Problem::unavailable(&"connection refused"));
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            unavailable.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            unavailable.headers()["retry-after"],
            RETRY_AFTER_SECS.to_string().as_str()
        );
        let internal = problem_response(&Problem::internal(&"a bug"));
        assert!(internal.headers().get("retry-after").is_none());
    }
}
