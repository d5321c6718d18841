//! `meterhub serve` as a value: built from settings, bound to its own listener (port 0 is
//! fine), run until a shutdown token fires. Production and tests run this same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use firmware_protocol::clock::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::downlink::dispatch::{self, TAP_CAPACITY};
use crate::downlink::{Downlinks, Publisher};
use crate::metrics::Metrics;
use crate::monitor::rules::Rules;
use crate::monitor::scheduler::Scheduler;
use crate::monitor::webhook::Webhook;
use crate::mqtt::{self, Template};
use crate::storage::Store;
use crate::storage::identities::IDENTITY_RETENTION;
use crate::time::now_utc;
use crate::uplink::classify::Policy;
use crate::uplink::{self, IngestSettings};

/// A running server.
pub struct Application {
    http_addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: Vec<(Task, JoinHandle<()>)>,
    store: Store,
    downlinks: Downlinks,
    /// How long a stop may take once asked for ([`crate::config::ServerSettings`]).
    grace: Duration,
}

/// The server's long-running tasks, named in the log when a stop waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    /// The writer, then the MQTT connection it acknowledges through.
    Ingest,
    /// The HTTP server.
    Http,
    /// Silence, schedules, command expiry and webhook delivery.
    Scheduler,
    /// Hourly partitions and identity pruning.
    Maintenance,
    /// Other instances' and processes' writes, for the cache.
    CacheListener,
    /// API key reloads.
    KeyRefresh,
    /// Clock answers and command releases.
    DownlinkDispatcher,
    /// The downlink MQTT connection.
    DownlinkPublisher,
    /// ChirpStack's device list kept in step with the registry.
    ChirpStackSync,
}

impl Task {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Ingest => "ingest (writer and MQTT connection)",
            Task::Http => "HTTP server",
            Task::Scheduler => "scheduler",
            Task::Maintenance => "maintenance",
            Task::CacheListener => "cache listener",
            Task::KeyRefresh => "API key refresh",
            Task::DownlinkDispatcher => "downlink dispatcher",
            Task::DownlinkPublisher => "downlink publisher",
            Task::ChirpStackSync => "ChirpStack sync",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Application {
    /// Connects to the database (migrating it), binds the HTTP listener, connects to the
    /// broker and starts ingesting. Stops when `shutdown` is cancelled.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> Result<Application> {
        let clock = settings.clock()?;
        Application::build_on(settings, clock, shutdown).await
    }

    /// [`Application::build`] on a clock of the caller's (the demo's paced clock) instead of
    /// the one `settings` describe.
    pub async fn build_on(
        settings: Settings,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Result<Application> {
        // One TLS provider for the whole process (ring): with none chosen, rustls refuses to
        // pick between those its dependencies enable.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = Store::connect(
            settings.database.url.expose(),
            settings.database.max_connections,
        )
        .await
        .context("connecting to the database")?;
        store
            .migrate(now_utc(&clock))
            .await
            .context("migrating the database")?;
        let listener = tokio::net::TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", settings.http.bind))?;
        let http_addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());

        let template = Template::parse(&settings.chirpstack.event_topic)?;
        let group = settings.mqtt.shared_group.as_deref();
        let filters = if settings.chirpstack.application_ids.is_empty() {
            vec![template.filter(None, group)]
        } else {
            settings
                .chirpstack
                .application_ids
                .iter()
                .map(|a| template.filter(Some(a), group))
                .collect()
        };
        let ingest = IngestSettings {
            batch_size: settings.ingest.batch_size.max(1),
            max_wait: Duration::from_millis(settings.ingest.max_wait_ms),
        };
        // The MQTT task drains for a moment after the writer stops, so it has its own token.
        let mqtt_stop = CancellationToken::new();
        let mut tasks = Vec::new();
        // Before everything that writes: the command queue announces its changes too.
        let cache = crate::cache::ResponseCache::new(
            settings.api.cache_capacity,
            Duration::from_secs(settings.api.cache_ttl_secs),
        );
        let changes = crate::cache::Changes::new(cache, store.clone());
        let (downlinks, tap) = if settings.downlink.enabled {
            let (publisher, publisher_task) = Publisher::connect(
                &settings.mqtt,
                &settings.chirpstack.command_topic,
                metrics.clone(),
                shutdown.clone(),
            )?;
            tasks.push((Task::DownlinkPublisher, publisher_task));
            let downlinks = Downlinks::new(
                store.clone(),
                clock.clone(),
                settings.downlink.clone(),
                Some(publisher.clone()),
                changes.clone(),
            );
            downlinks
                .refresh_pending()
                .await
                .context("reading the command queue")?;
            let (tap_tx, tap_rx) = tokio::sync::mpsc::channel(TAP_CAPACITY);
            tasks.push((
                Task::DownlinkDispatcher,
                tokio::spawn(dispatch::run(
                    downlinks.clone(),
                    publisher,
                    template.clone(),
                    metrics.clone(),
                    tap_rx,
                    shutdown.clone(),
                )),
            ));
            (downlinks, Some(tap_tx))
        } else {
            let downlinks = Downlinks::new(
                store.clone(),
                clock.clone(),
                settings.downlink.clone(),
                None,
                changes.clone(),
            );
            (downlinks, None)
        };
        let link = mqtt::connect(
            &settings.mqtt,
            filters,
            ingest.batch_size,
            metrics.clone(),
            tap,
            mqtt_stop.clone(),
        )?;
        let policy = policy(&settings, &downlinks);
        let keys = crate::api::auth::KeyRing::default();
        keys.reload(&store).await.context("loading the API keys")?;
        let sessions = crate::pages::session::Sessions::new(
            &store
                .installation_secret(
                    crate::pages::session::SECRET_NAME,
                    &crate::pages::session::new_secret(),
                    chrono::Utc::now(),
                )
                .await
                .context("reading the pages' session secret")?,
            chrono::TimeDelta::hours(i64::from(settings.pages.session_hours)),
        );
        let registry_changed = Arc::new(tokio::sync::Notify::new());
        let api = crate::api::Api::new(crate::api::ApiState {
            store: store.clone(),
            clock: clock.clone(),
            changes: changes.clone(),
            keys: keys.clone(),
            template: template.clone(),
            max_body_bytes: settings.api.max_body_bytes,
            policy: policy.clone(),
            downlinks: downlinks.clone(),
            billing: crate::billing::Calendar::new(&settings.utility, &settings.billing)?,
            registry_changed: registry_changed.clone(),
        });
        let writer = uplink::writer::Writer {
            session: link.session.clone(),
            store: store.clone(),
            client: link.client.clone(),
            template,
            settings: ingest,
            clock: clock.clone(),
            metrics: metrics.clone(),
            policy,
            downlinks: Some(downlinks.clone()),
            changes: changes.clone(),
        };
        tasks.push((
            Task::CacheListener,
            tokio::spawn(crate::cache::listen(changes.clone(), shutdown.clone())),
        ));
        tasks.push((
            Task::KeyRefresh,
            tokio::spawn(crate::api::auth::refresh(
                keys,
                store.clone(),
                shutdown.clone(),
            )),
        ));
        let writer_stop = shutdown.clone();
        let mqtt_task = link.task;
        tasks.push((
            Task::Ingest,
            tokio::spawn(async move {
                uplink::run(writer, link.inbound, writer_stop).await;
                mqtt_stop.cancel();
                let _ = mqtt_task.await;
            }),
        ));
        tasks.push((
            Task::Http,
            tokio::spawn(crate::http::serve(
                listener,
                metrics.clone(),
                api,
                sessions,
                shutdown.clone(),
            )),
        ));
        let webhook = match &settings.monitor.webhook_url {
            Some(url) => Some(Webhook::new(
                url,
                Duration::from_secs(settings.monitor.webhook_timeout_secs.max(1)),
            )?),
            None => None,
        };
        let holder = format!("{}-{}", settings.mqtt.client_id, uuid::Uuid::new_v4());
        #[cfg(feature = "chirpstack-sync")]
        if let Some(api) = settings.chirpstack.api()? {
            let sync = crate::chirpstack::sync::SyncTask {
                store: store.clone(),
                settings: api,
                interval: Duration::from_secs(settings.chirpstack.sync_interval_secs.max(1)),
                metrics: metrics.clone(),
                clock: clock.clone(),
                holder: holder.clone(),
                registry_changed: registry_changed.clone(),
            };
            tasks.push((
                Task::ChirpStackSync,
                tokio::spawn(sync.run(shutdown.clone())),
            ));
        }
        let scheduler = Scheduler {
            store: store.clone(),
            clock: clock.clone(),
            downlinks: downlinks.clone(),
            settings: settings.monitor.clone(),
            webhook,
            metrics: metrics.clone(),
            holder,
            changes: changes.clone(),
            billing: crate::billing::Calendar::new(&settings.utility, &settings.billing)?,
            retention: settings.retention.clone(),
            retention_ran: std::sync::Mutex::new(None),
        };
        tasks.push((
            Task::Scheduler,
            tokio::spawn(scheduler.run(shutdown.clone())),
        ));
        tasks.push((
            Task::Maintenance,
            tokio::spawn(maintenance(store.clone(), clock, shutdown.clone())),
        ));
        tracing::info!(%http_addr, "meterhub is running");
        Ok(Application {
            http_addr,
            metrics,
            shutdown,
            tasks,
            store,
            downlinks,
            grace: Duration::from_secs(settings.server.shutdown_grace_secs),
        })
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The command queue (what the REST API's command routes call).
    pub fn downlinks(&self) -> Downlinks {
        self.downlinks.clone()
    }

    /// The store.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Waits until shutdown: the batch in flight is committed and acknowledged first. A task
    /// that ends before shutdown was asked for (a panic in the writer, the HTTP server
    /// failing) stops the others gracefully and is returned as the error, so the process
    /// exits and its supervisor restarts it instead of leaving it half-working (receiving
    /// with nothing committing).
    ///
    /// Once shutdown is asked for, the tasks have `[server] shutdown_grace_secs` to end,
    /// whatever the broker and the database do; those still running then are named and
    /// abandoned (what they had not acknowledged, the broker delivers again), and the stop is
    /// returned as an error.
    pub async fn run_until_stopped(self) -> Result<()> {
        let outcome = supervise(self.tasks, &self.shutdown, self.grace).await;
        // Closing sends each connection a goodbye, which a vanished database never answers.
        if tokio::time::timeout(STORE_CLOSE_LIMIT, self.store.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the database connections did not close within {STORE_CLOSE_LIMIT:?}; leaving them"
            );
        }
        tracing::info!("meterhub stopped");
        outcome
    }
}

/// How long the stop waits for the database connections to close.
const STORE_CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// How often a stop that waits says what for.
const WAITING_REPORT: Duration = Duration::from_secs(2);

/// Awaits every task; the first to end before `shutdown` is cancelled cancels it and is
/// reported. Once `shutdown` is cancelled the others have `grace` to end: meanwhile the log
/// names those still running every [`WAITING_REPORT`], and after it they are aborted and named
/// in the error.
async fn supervise(
    tasks: Vec<(Task, JoinHandle<()>)>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<()> {
    use futures_util::StreamExt as _;
    let aborts: Vec<(Task, tokio::task::AbortHandle)> = tasks
        .iter()
        .map(|(task, handle)| (*task, handle.abort_handle()))
        .collect();
    let mut still: std::collections::BTreeSet<Task> = tasks.iter().map(|(t, _)| *t).collect();
    let mut running: futures_util::stream::FuturesUnordered<_> = tasks
        .into_iter()
        .map(|(task, handle)| async move { (task, handle.await) })
        .collect();
    let mut failure = None;
    // Until shutdown: a task that ends is a failure that stops the others.
    while !shutdown.is_cancelled() {
        let (task, ended) = tokio::select! {
            ended = running.next() => match ended {
                Some(ended) => ended,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        still.remove(&task);
        if shutdown.is_cancelled() {
            // It ended because shutdown came meanwhile (both were ready at once).
            break;
        }
        let why = match ended {
            Ok(()) => format!("the {task} ended"),
            Err(e) if e.is_panic() => format!("the {task} panicked"),
            Err(e) => format!("the {task} was stopped: {e}"),
        };
        tracing::error!("{why} before shutdown; stopping the server");
        failure = Some(why);
        shutdown.cancel();
    }
    // Stopping: each task has until the deadline.
    let deadline = tokio::time::Instant::now() + grace;
    let mut report =
        tokio::time::interval_at(tokio::time::Instant::now() + WAITING_REPORT, WAITING_REPORT);
    while !still.is_empty() {
        tokio::select! {
            ended = running.next() => match ended {
                Some((task, _)) => {
                    still.remove(&task);
                }
                None => break,
            },
            _ = report.tick() => {
                tracing::info!(
                    waiting_for = %names(&still),
                    left = ?deadline.saturating_duration_since(tokio::time::Instant::now()),
                    "shutting down: waiting for tasks to finish"
                );
            }
            _ = tokio::time::sleep_until(deadline) => {
                let abandoned = names(&still);
                tracing::warn!(
                    still_running = %abandoned,
                    "shutdown grace of {grace:?} is over; stopping anyway: what was not \
                     acknowledged is delivered again"
                );
                for (task, abort) in &aborts {
                    if still.contains(task) {
                        abort.abort();
                    }
                }
                let why = format!("the stop took longer than {grace:?}: {abandoned} still running");
                return Err(anyhow::anyhow!(match failure {
                    Some(first) => format!("{first} before shutdown; then {why}"),
                    None => why,
                }));
            }
        }
    }
    match failure {
        Some(why) => Err(anyhow::anyhow!("{why} before shutdown")),
        None => Ok(()),
    }
}

/// The tasks as a list for the log.
fn names(tasks: &std::collections::BTreeSet<Task>) -> String {
    tasks
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rules and command timing the bridge applies, from the settings.
fn policy(settings: &Settings, downlinks: &Downlinks) -> Policy {
    let d = &settings.downlink;
    let m = &settings.monitor;
    Policy {
        rules: Rules {
            low_battery_percent: m.low_battery_percent,
            over_consumption_factor: m.over_consumption_factor,
            min_samples: m.over_consumption_min_samples,
            max_drift_ms: i64::try_from(d.max_drift_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        },
        silence_tolerance: i32::try_from(m.silence_tolerance).unwrap_or(i32::MAX),
        answer_deadline: chrono::Duration::minutes(
            i64::try_from(d.answer_timeout_minutes).unwrap_or(60),
        ),
        resync_expiry: chrono::Duration::hours(i64::try_from(d.command_expiry_hours).unwrap_or(72)),
        answer_expiry: downlinks.simulated(d.answer_expiry_secs),
        billing_grace: chrono::Duration::days(i64::from(settings.billing.grace_days)),
    }
}

/// Hourly upkeep: partitions ahead of time, old identities forgotten.
/// Identities forgotten per statement by the hourly upkeep.
const IDENTITY_PRUNE_CHUNK: i64 = 10_000;

async fn maintenance(store: Store, clock: Clock, shutdown: CancellationToken) {
    loop {
        let now = now_utc(&clock);
        match store.ensure_partitions(now).await {
            Ok(r) if !r.created.is_empty() => {
                tracing::info!(created = ?r.created, moved = r.moved, "readings partitions created")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "partition job failed; retrying next hour")
            }
        }
        // The retention is wall time (how long a broker may redeliver), so on an accelerated
        // clock it spans that many more simulated seconds.
        let retention = IDENTITY_RETENTION * i32::try_from(clock.speed()).unwrap_or(i32::MAX);
        match store
            .prune_identities(now - retention, IDENTITY_PRUNE_CHUNK)
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "old event identities pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "identity pruning failed"),
        }
        // An hour of simulated time, however fast the clock runs, but at least a second.
        let wait = clock
            .wall_duration(Duration::from_secs(3600))
            .max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(15);

    fn until(task: Task, shutdown: &CancellationToken) -> (Task, JoinHandle<()>) {
        let shutdown = shutdown.clone();
        (
            task,
            tokio::spawn(async move { shutdown.cancelled().await }),
        )
    }

    #[tokio::test]
    async fn a_task_that_panics_stops_the_others_and_is_reported() {
        let shutdown = CancellationToken::new();
        let others = [
            until(Task::Http, &shutdown),
            until(Task::Scheduler, &shutdown),
        ];
        let failing = tokio::spawn(async {
            tokio::task::yield_now().await;
            panic!("writer");
        });
        let tasks = others
            .into_iter()
            .chain([(Task::Ingest, failing)])
            .collect();
        let outcome =
            tokio::time::timeout(Duration::from_secs(10), supervise(tasks, &shutdown, GRACE))
                .await
                .expect("the other tasks are stopped");
        let error = outcome.expect_err("a failure");
        assert!(error.to_string().contains("ingest"), "{error}");
        assert!(error.to_string().contains("panicked"), "{error}");
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_abandoned_after_the_grace_and_named() {
        let shutdown = CancellationToken::new();
        let stuck = tokio::spawn(std::future::pending::<()>());
        let stuck_abort = stuck.abort_handle();
        let tasks = vec![
            until(Task::Http, &shutdown),
            (Task::DownlinkPublisher, stuck),
        ];
        shutdown.cancel();
        // A short grace: the stuck task never ends, however long it is given.
        let error = supervise(tasks, &shutdown, Duration::from_millis(50))
            .await
            .expect_err("an unclean stop");
        let message = error.to_string();
        assert!(message.contains("downlink publisher"), "{message}");
        assert!(!message.contains("HTTP"), "{message}");
        for _ in 0..1_000 {
            if stuck_abort.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(stuck_abort.is_finished(), "the stuck task is aborted");
    }

    #[tokio::test]
    async fn tasks_that_end_after_shutdown_are_a_clean_stop() {
        let shutdown = CancellationToken::new();
        let tasks = vec![until(Task::Http, &shutdown), until(Task::Ingest, &shutdown)];
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                shutdown.cancel();
            })
        };
        supervise(tasks, &shutdown, GRACE)
            .await
            .expect("a clean stop");
        stopper.await.expect("stopper");
    }
}
