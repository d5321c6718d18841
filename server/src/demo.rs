//! `meterhub demo`: the whole system on one machine with nothing installed — the embedded MQTT
//! broker, a SQLite database, the server, and a simulated fleet publishing as ChirpStack
//! would, on an accelerated clock.
//!
//! The fleet and the server share one paced clock. A server slower than the fleet (a loaded
//! or small machine, a debug build, a high `--speed`) would otherwise judge each reading by a
//! simulated "now" that ran on while the reading waited in the broker: at a day per second, a
//! few minutes behind is a year of simulated time, and readings older than the storage window
//! are quarantined. So the clock is held whenever the server is more than a few batches
//! behind, and after the fleet is done: the run takes as long as the machine needs, and what
//! is stored does not depend on its speed.
//!
//! Then the server keeps serving (the operator's pages at `/`, the API, `/metrics`) with the
//! clock held where the fleet stopped, until the demo is stopped, so that a first run leaves
//! something to look at; an admin API key created at the start signs in. With
//! [`DemoOptions::exit_when_done`] it stops as soon as the readings are stored instead (scripts
//! and tests that want the run to end).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use firmware_protocol::clock::Clock;
use meterhub_broker::EmbeddedBroker;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::runner::{self, RunSpec};
use tokio_util::sync::CancellationToken;

use crate::api::auth::{Role, generate};
use crate::app::Application;
use crate::config::{Secret, Settings};
use crate::metrics::Metrics;
use crate::registry::import::import_reader;
use crate::storage::Store;
use crate::time::now_utc;

/// Batches of the server's size the fleet may run ahead before the clock is held: enough to
/// keep the server's batches full, little enough to be a moment of simulated time.
const BATCHES_AHEAD: u64 = 4;
/// How often the pace is checked.
const PACE_CHECK: Duration = Duration::from_millis(20);
/// How long the server may move nothing at all (no reading stored, no message acknowledged)
/// before the demo stops waiting for it.
const STALL: Duration = Duration::from_secs(60);
/// How often waiting is reported.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Meters in the fleet.
    pub meters: u32,
    /// Simulated days to run.
    pub days: u32,
    /// Simulated seconds per wall second (at most: the clock is held while the server lags).
    pub speed: u32,
    /// The SQLite file, replaced if it exists.
    pub database: PathBuf,
    /// Where the HTTP endpoints listen.
    pub http_bind: std::net::SocketAddr,
    /// Stop once the fleet is done and the server has stored what it sent, instead of serving
    /// until `stop`.
    pub exit_when_done: bool,
}

/// How the demo's wait for the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every reading the fleet sent for registered meters is stored.
    AllStored,
    /// The server acknowledged every message the fleet published and stored a different
    /// number of readings than the fleet sent: a real disagreement.
    Disagree,
    /// Stopped (interrupted, or the server moved nothing for a minute) while the server had
    /// not acknowledged everything: the count is not final.
    StillCommitting,
}

/// What the demo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Uplinks the fleet published.
    pub published: u64,
    /// Readings of registered meters among them.
    pub expected: u64,
    /// Readings the server stored.
    pub stored: i64,
    /// Whether `stored` is final and agrees.
    pub ending: Ending,
    /// The admin API key the demo created (its secret), to sign in to the pages with.
    pub admin_key: String,
}

/// Runs the demo: the fleet to its end, the wait for the server, then (unless
/// `exit_when_done`) serving until `stop`; or until `stop` at any point. Progress, the address
/// to open and the key to sign in with go through `say`.
pub async fn run(
    options: DemoOptions,
    stop: CancellationToken,
    mut say: impl FnMut(String),
) -> Result<DemoSummary> {
    if start_fresh(&options.database)? {
        say(format!(
            "removed {} left by an earlier run: the demo starts with an empty database",
            options.database.display()
        ));
    }
    let broker = EmbeddedBroker::start().context("starting the embedded MQTT broker")?;
    let clock = Clock::paced(options.speed.max(1), SystemTime::now()).context("clock speed")?;

    let mut settings = Settings::default();
    settings.database.url = Secret(format!("sqlite://{}", options.database.display()));
    settings.mqtt.url = broker.v5_url();
    settings.mqtt.client_id = "meterhub-demo".into();
    settings.http.bind = options.http_bind;
    let batch = u64::try_from(settings.ingest.batch_size).unwrap_or(u64::MAX);

    let spec = FleetSpec {
        meters: options.meters,
        unregistered_share: 0.01,
        ..FleetSpec::default()
    };
    let store = Store::connect(settings.database.url.expose(), 4).await?;
    store.migrate(now_utc(&clock)).await?;
    let meters = fleet::build(&spec, clock.now_unix());
    let registry = fleet::registry_csv(&spec, &meters).into_bytes();
    let imported = import_reader(
        &store,
        std::io::Cursor::new(registry),
        now_utc(&clock),
        |_| {},
    )
    .await?;
    say(format!(
        "registered {} meters ({} new); 1 % of the fleet is left unregistered on purpose",
        imported.registered(),
        imported.inserted
    ));
    // Created before the server starts, so that its key ring holds it from the first request.
    let admin = generate("demo", Role::Admin, now_utc(&clock));
    store
        .insert_api_key(&admin.row)
        .await
        .context("creating the demo's admin API key")?;

    let server_stop = CancellationToken::new();
    let app = Application::build_on(settings, clock.clone(), server_stop.clone()).await?;
    let metrics = app.metrics();
    let url = format!("http://{}/", app.http_addr());
    say(format!(
        "server on {url} (also /api/v1, /metrics); broker on {}; {} simulated days at up to \
         {}x (the clock waits while the server catches up)",
        broker.v5_url(),
        options.days,
        options.speed
    ));
    say(sign_in_line(&url, &admin.secret));
    let run = RunSpec {
        fleet: spec,
        host: broker.v5_addr().ip().to_string(),
        port: broker.v5_addr().port(),
        client_id: "meterhub-demo-fleet".into(),
        duration: Some(i64::from(options.days) * 86_400),
    };
    let published = Arc::new(AtomicU64::new(0));
    let pacer_stop = CancellationToken::new();
    let pacer = tokio::spawn(pace(
        clock.clone(),
        published.clone(),
        metrics.clone(),
        batch.saturating_mul(BATCHES_AHEAD),
        pacer_stop.clone(),
    ));
    let mut last = Instant::now();
    let fleet_clock = clock.clone();
    let simulated_start = clock.now_unix();
    let report = runner::run_counted(run, clock.clone(), stop.clone(), &published, |r| {
        if last.elapsed() >= REPORT_EVERY {
            last = Instant::now();
            say(format!(
                "fleet: {} uplinks published, simulated day {}; server: {} messages \
                 acknowledged",
                r.uplinks,
                1 + (fleet_clock.now_unix() - simulated_start) / 86_400,
                metrics.acknowledged.get()
            ));
        }
    })
    .await;
    // The fleet is done: from here on simulated time would only age what the server has not
    // committed yet.
    pacer_stop.cancel();
    let _ = pacer.await;
    clock.hold();
    let report = report?;
    say(format!(
        "fleet done: {} uplinks; waiting while the server commits them",
        report.uplinks
    ));
    let expected = i64::try_from(report.registered_readings).unwrap_or(i64::MAX);
    let (stored, ending) = wait_for_server(
        &store,
        &metrics,
        report.published,
        expected,
        &stop,
        &mut say,
    )
    .await?;
    match ending {
        // Interrupted, or asked to end: stop. A stalled server is still worth looking at.
        Ending::StillCommitting if options.exit_when_done || stop.is_cancelled() => say(format!(
            "{stored} of {expected} readings stored so far; the server is still committing \
             ({} of {} messages acknowledged); stopping it",
            metrics.acknowledged.get(),
            report.published
        )),
        _ if options.exit_when_done => {
            say(format!("{stored} readings stored; stopping the server"))
        }
        _ => {
            let so_far = if ending == Ending::StillCommitting {
                format!("{stored} of {expected} readings stored so far (the count is not final)")
            } else {
                format!("{stored} readings stored")
            };
            say(format!(
                "{so_far}; the server keeps serving until Ctrl-C or SIGTERM, its clock held \
                 where the fleet stopped"
            ));
            say(sign_in_line(&url, &admin.secret));
            stop.cancelled().await;
            say("stopping the server".to_owned());
        }
    }
    server_stop.cancel();
    app.run_until_stopped().await?;
    store.close().await;
    Ok(DemoSummary {
        published: report.uplinks,
        expected: report.registered_readings,
        stored,
        ending,
        admin_key: admin.secret,
    })
}

/// The line that says where to look and how to get in.
fn sign_in_line(url: &str, key: &str) -> String {
    format!("open {url} in a browser and sign in with the admin API key {key}")
}

/// Removes the database (and SQLite's side files) a previous run left, so that the counts
/// are this run's; whether there was one.
fn start_fresh(database: &Path) -> Result<bool> {
    let mut removed = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        let path = PathBuf::from(path);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("removing {} left by an earlier run", path.display())
                });
            }
        }
    }
    Ok(removed)
}

/// Holds `clock` while the fleet has published more than `ahead` messages the server has not
/// acknowledged, and lets it run otherwise, until `stop`.
async fn pace(
    clock: Clock,
    published: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    ahead: u64,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PACE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let behind = published
            .load(Ordering::Relaxed)
            .saturating_sub(metrics.acknowledged.get());
        if should_hold(behind, ahead) {
            clock.hold();
        } else {
            clock.resume();
        }
    }
}

/// Whether the clock waits: the server is more than `ahead` messages behind the fleet.
fn should_hold(behind: u64, ahead: u64) -> bool {
    behind > ahead
}

/// What the server has done so far, as the wait sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    stored: i64,
    acknowledged: u64,
}

/// What the wait does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Wait,
    End(Ending),
}

/// Decides the wait: done when every expected reading is stored, or when every published
/// message is acknowledged (the count is then final); otherwise wait while something moves.
fn judge(now: Progress, expected: i64, published: u64, idle_for: Duration, stopped: bool) -> Next {
    if now.stored >= expected {
        Next::End(if now.stored == expected {
            Ending::AllStored
        } else {
            Ending::Disagree
        })
    } else if now.acknowledged >= published {
        Next::End(Ending::Disagree)
    } else if stopped || idle_for >= STALL {
        Next::End(Ending::StillCommitting)
    } else {
        Next::Wait
    }
}

/// Waits while the server still commits what the fleet published, saying how far it is.
async fn wait_for_server(
    store: &Store,
    metrics: &Metrics,
    published: u64,
    expected: i64,
    stop: &CancellationToken,
    say: &mut impl FnMut(String),
) -> Result<(i64, Ending)> {
    let mut last = Progress {
        stored: -1,
        acknowledged: 0,
    };
    let mut moved_at = Instant::now();
    let mut reported_at = Instant::now();
    loop {
        let now = Progress {
            // Acknowledged first: a message acknowledged is committed, so the count read
            // after it includes its reading.
            acknowledged: metrics.acknowledged.get(),
            stored: store.count_readings().await?,
        };
        if now != last {
            last = now;
            moved_at = Instant::now();
        }
        match judge(
            now,
            expected,
            published,
            moved_at.elapsed(),
            stop.is_cancelled(),
        ) {
            Next::End(ending) => return Ok((now.stored, ending)),
            Next::Wait => {}
        }
        if reported_at.elapsed() >= REPORT_EVERY {
            reported_at = Instant::now();
            say(format!(
                "server: {} of {expected} readings stored, {} of {published} messages \
                 acknowledged; still committing",
                now.stored, now.acknowledged
            ));
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stored: i64, acknowledged: u64) -> Progress {
        Progress {
            stored,
            acknowledged,
        }
    }

    #[test]
    fn the_clock_waits_only_when_the_server_is_more_than_the_allowance_behind() {
        assert!(!should_hold(0, 2_000));
        assert!(!should_hold(2_000, 2_000));
        assert!(should_hold(2_001, 2_000));
    }

    #[test]
    fn a_server_still_moving_is_waited_for_however_long_it_takes() {
        let second = Duration::from_secs(1);
        assert_eq!(judge(at(10, 20), 100, 120, second, false), Next::Wait);
        // Long since the start, but it moved a moment ago: still waiting.
        assert_eq!(judge(at(99, 119), 100, 120, second, false), Next::Wait);
    }

    #[test]
    fn the_wait_ends_agreeing_disagreeing_or_still_committing() {
        let idle = Duration::ZERO;
        assert_eq!(
            judge(at(100, 110), 100, 120, idle, false),
            Next::End(Ending::AllStored)
        );
        // Everything acknowledged, fewer readings: final, a real disagreement.
        assert_eq!(
            judge(at(90, 120), 100, 120, idle, false),
            Next::End(Ending::Disagree)
        );
        assert_eq!(
            judge(at(101, 120), 100, 120, idle, false),
            Next::End(Ending::Disagree)
        );
        // Interrupted, or nothing moved for the stall bound: not final, not a disagreement.
        assert_eq!(
            judge(at(50, 60), 100, 120, idle, true),
            Next::End(Ending::StillCommitting)
        );
        assert_eq!(
            judge(at(50, 60), 100, 120, STALL, false),
            Next::End(Ending::StillCommitting)
        );
    }
}
