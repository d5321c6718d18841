//! The HTTP endpoints: health, readiness and Prometheus metrics, joined with the REST API and
//! the operator's pages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

use crate::metrics::Metrics;
use crate::storage::Store;

/// `/health`, `/ready` and `/metrics` (with the API cache's series). Each answers HEAD as GET
/// without the body.
///
/// `/ready` is 503 until subscribed at the broker, and whenever the database does not answer
/// its probe (a trivial query, given [`crate::storage::READ_TIMEOUT`]): every call asks the
/// database itself, so it says 503 from the first failed attempt of an outage, whether or
/// not anything was being ingested, and 200 again from the first that succeeds.
pub fn routes(
    metrics: Arc<Metrics>,
    cache: Option<crate::cache::ResponseCache>,
    store: Store,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let get = || warp::get().or(warp::head()).unify();
    let health = warp::path!("health")
        .and(get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let ready_metrics = metrics.clone();
    let ready = warp::path!("ready").and(get()).then(move || {
        let metrics = ready_metrics.clone();
        let store = store.clone();
        async move {
            let mqtt = metrics.mqtt_subscribed.load(Ordering::Relaxed) == 1;
            let db = match store.ping().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: the database does not answer");
                    false
                }
            };
            metrics.db_up.store(u64::from(db), Ordering::Relaxed);
            let status = if mqtt && db {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"mqtt": mqtt, "database": db})),
                status,
            )
        }
    });
    let metrics_route = warp::path!("metrics").and(get()).map(move || {
        let mut text = metrics.render();
        if let Some(c) = &cache {
            text.push_str(&c.render_metrics());
        }
        warp::reply::with_header(
            text,
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
    });
    health.or(ready).or(metrics_route)
}

/// Serves `routes`, the REST API and the operator's pages on an already bound listener until
/// `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    api: crate::api::Api,
    sessions: crate::pages::session::Sessions,
    shutdown: CancellationToken,
) {
    let cache = api.state().changes.cache().clone();
    let store = api.state().store.clone();
    let pages = crate::pages::Pages::new(api.shared_state(), sessions);
    // The pages answer every path the others leave, so they come last.
    warp::serve(
        routes(metrics, Some(cache), store)
            .or(api.filter())
            .or(pages.filter()),
    )
    .incoming(listener)
    .graceful(async move { shutdown.cancelled().await })
    .run()
    .await;
}
