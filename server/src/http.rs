//! The HTTP endpoints: health, readiness and Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

use crate::metrics::Metrics;

/// `/health`, `/ready` (503 until subscribed at the broker and the database answers) and `/metrics`
/// (with the API cache's series). Each answers HEAD as GET without the body.
pub fn routes(
    metrics: Arc<Metrics>,
    cache: Option<crate::cache::ResponseCache>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let get = || warp::get().or(warp::head()).unify();
    let health = warp::path!("health")
        .and(get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let ready_metrics = metrics.clone();
    let ready = warp::path!("ready").and(get()).map(move || {
        let mqtt = ready_metrics.mqtt_subscribed.load(Ordering::Relaxed) == 1;
        let db = ready_metrics.db_up.load(Ordering::Relaxed) == 1;
        let status = if mqtt && db {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"mqtt": mqtt, "database": db})),
            status,
        )
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

/// Serves `routes` and the REST API on an already bound listener until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    api: crate::api::Api,
    shutdown: CancellationToken,
) {
    let cache = api.state().changes.cache().clone();
    warp::serve(routes(metrics, Some(cache)).or(api.filter()))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
}
