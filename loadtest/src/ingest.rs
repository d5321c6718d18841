//! The ingest scenario: the same paced stream of ChirpStack `up` events twice, first through
//! the broker alone to a plain QoS 1 subscriber (the pass-through rate: what the broker and
//! this machine deliver), then to `meterhub serve` (the committed rate), so the server's figure
//! can be read as a fraction of what the broker lets through on the same machine, in the same
//! run. The phases run one after the other rather than side by side: two consumers at once
//! would compete for the same cores and each figure would carry the other's cost.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use crate::cpu::{Process, Snapshot, Usage};
use crate::db::Db;
use crate::event::{self, EventTemplate};
use crate::mqtt::{self, Load, MeterClocks, PassThrough};
use crate::pacing::Schedule;
use crate::progress::{PublishTimes, rate};
use crate::reader::CommitReader;
use crate::report::{Percentiles, Phase, RunReport, thousands};
use crate::server::{self, ServerCounters, ServerProcess};

/// Largest run: publish instants and arrival marks are kept per event.
pub const MAX_EVENTS: u64 = 5_000_000;

/// A run's settings.
#[derive(Debug, Clone)]
pub struct IngestArgs {
    /// `mqtt://127.0.0.1:PORT`.
    pub mqtt_url: String,
    /// The server's database.
    pub database_url: String,
    /// Offered uplinks a second.
    pub rate: u32,
    /// Publishing time per phase.
    pub duration: Duration,
    /// CSV file to append the run's row to.
    pub csv: PathBuf,
    /// Meters in the fleet.
    pub meters: u32,
    /// Publisher connections.
    pub publishers: u32,
    /// How often commit progress is read.
    pub poll_interval: Duration,
    /// Longest wait for the last commits (or deliveries) after publishing ends.
    pub drain_timeout: Duration,
    /// Start this `meterhub` binary instead of using a running server.
    pub server_bin: Option<PathBuf>,
    /// A running server's HTTP address, for its /metrics.
    pub server_http: Option<SocketAddr>,
    /// Echo the started server's log.
    pub server_log: bool,
    /// The broker's process id, to tell its CPU use from other brokers'.
    pub broker_pid: Option<u32>,
}

/// Names for the processes of the run in the CPU breakdown; other processes go by their
/// program name, so that load from anything else on the machine shows as such.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// The server under test.
    pub server: Option<u32>,
    /// The broker under test.
    pub broker: Option<u32>,
    /// This process.
    pub own: u32,
    /// PostgreSQL database name: its backends' command lines name it.
    pub database: Option<String>,
}

/// CPU label of the server under test.
pub const SERVER_LABEL: &str = "meterhub under test";

impl Labels {
    /// The processes of a run with these settings and this started server, if any.
    pub fn of_run(args: &IngestArgs, server: Option<&ServerProcess>) -> Labels {
        Labels {
            server: server.and_then(ServerProcess::pid),
            broker: args.broker_pid,
            own: std::process::id(),
            database: database_name(&args.database_url),
        }
    }

    /// The label of process `pid`.
    pub fn label(&self, pid: u32, p: &Process) -> String {
        if Some(pid) == self.server {
            SERVER_LABEL.to_owned()
        } else if Some(pid) == self.broker {
            "mosquitto under test".to_owned()
        } else if pid == self.own {
            "loadtest".to_owned()
        } else if p.name == "postgres"
            && let Some(db) = &self.database
            && p.cmdline.starts_with("postgres: ")
            && p.cmdline.contains(&format!(" {db} "))
        {
            format!("postgres backends of {db}")
        } else if p.name.starts_with("kworker/") {
            // Kernel workers are named after their queue of the moment; one line says enough.
            "kernel workers".to_owned()
        } else {
            p.name.clone()
        }
    }
}

/// Whether `host` names this machine's loopback interface.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a broker, database or server that is not on this machine: every load scenario
/// talks only to 127.0.0.1 (or a local Unix socket).
pub fn check_local(
    mqtt_url: &str,
    database_url: &str,
    server_http: Option<SocketAddr>,
) -> Result<()> {
    let (mqtt_host, _) = mqtt::host_port(mqtt_url)?;
    if !is_loopback(&mqtt_host) {
        bail!("the load test only talks to a broker on 127.0.0.1, not {mqtt_host}");
    }
    let db = database_url;
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(db)?;
        let host = options.get_host();
        // A path is a Unix socket, which is local too.
        if !(host.starts_with('/') || is_loopback(host)) {
            bail!("the load test only talks to a database on 127.0.0.1, not {host}");
        }
    } else if !db.starts_with("sqlite:") {
        bail!("--database-url must be postgres://127.0.0.1/… or sqlite://PATH");
    }
    if let Some(addr) = server_http
        && !addr.ip().is_loopback()
    {
        bail!("--server-http must be a loopback address");
    }
    Ok(())
}

/// Refuses settings that would reach beyond this machine or run without bound.
pub fn check(args: &IngestArgs) -> Result<()> {
    check_local(&args.mqtt_url, &args.database_url, args.server_http)?;
    if !(1..=200_000).contains(&args.rate) {
        bail!("--rate must be 1 to 200 000 uplinks/s");
    }
    if args.duration < Duration::from_secs(1) || args.duration > Duration::from_secs(600) {
        bail!("--duration must be 1 s to 10 min");
    }
    if total_events(args) > MAX_EVENTS {
        bail!(
            "{} events per phase is more than the {} a run may publish",
            thousands(total_events(args)),
            thousands(MAX_EVENTS)
        );
    }
    if !(1..=1_000_000).contains(&args.meters) {
        bail!("--meters must be 1 to 1 000 000");
    }
    if !(1..=16).contains(&args.publishers) {
        bail!("--publishers must be 1 to 16");
    }
    if args.poll_interval < Duration::from_millis(1) || args.poll_interval > Duration::from_secs(1)
    {
        bail!("--poll-interval must be 1 ms to 1 s");
    }
    if args.drain_timeout > Duration::from_secs(600) {
        bail!("--drain-timeout must be at most 10 min");
    }
    Ok(())
}

/// The database name of a PostgreSQL URL.
pub fn database_name(url: &str) -> Option<String> {
    use std::str::FromStr;
    if !url.starts_with("postgres") {
        return None;
    }
    let options = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
    options.get_database().map(str::to_owned)
}

pub fn total_events(args: &IngestArgs) -> u64 {
    u64::from(args.rate) * args.duration.as_secs().max(1)
}

/// Runs the scenario; prints the summary and appends the CSV row.
pub async fn run(args: IngestArgs) -> Result<RunReport> {
    check(&args)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started_at = Utc::now();
    // Distinct per run (by the second), so that a run never mistakes an earlier run's
    // events for its own; the top bit is left for the start-up probes.
    let run = (started_at.timestamp() as u32) & 0x7fff_ffff;

    let server = ServerProcess::start_if(
        args.server_bin.as_deref(),
        &args.database_url,
        &args.mqtt_url,
        args.server_log,
    )
    .await?;
    let labels = Labels::of_run(&args, server.as_ref());
    let result = scenario(&args, run, started_at, server.as_ref(), &labels).await;
    let server_killed = server::stop_if(server, result.is_err()).await?;
    let mut report = result?;
    report.server_killed = server_killed;
    println!("{}", report.summary());
    report.append_csv(&args.csv)?;
    eprintln!("appended to {}", args.csv.display());
    Ok(report)
}

async fn scenario(
    args: &IngestArgs,
    run: u32,
    started_at: chrono::DateTime<Utc>,
    server: Option<&ServerProcess>,
    labels: &Labels,
) -> Result<RunReport> {
    let db = Db::connect(&args.database_url).await?;
    eprintln!("registering {} meters", thousands(u64::from(args.meters)));
    db.register_meters(args.meters, started_at).await?;
    let first_reading = db.first_reading_time(Utc::now()).await?;
    let template = Arc::new(EventTemplate::new()?);
    let total = total_events(args);
    let schedule = Schedule::new(args.rate, total);

    probe(args, &db, run, &template, first_reading.timestamp()).await?;

    // The run's readings start a second after the probes'.
    let first_reading_unix = first_reading.timestamp() + 1;
    let load = |prefix: String, first_reading_unix: i64| Load {
        run,
        prefix,
        meters: args.meters,
        clocks: Arc::new(MeterClocks::new(args.meters, first_reading_unix)),
        template: template.clone(),
        clock_every: 0,
    };

    eprintln!(
        "broker phase: {} events at {}/s through the broker to a QoS 1 subscriber",
        thousands(total),
        thousands(u64::from(args.rate))
    );
    let broker = broker_phase(
        args,
        &load(format!("meterhub-loadtest/{run:08x}/"), first_reading_unix),
        schedule,
        labels,
    )
    .await?;
    // Let the broker and the machine settle before the next phase.
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!(
        "server phase: {} events at {}/s through the broker to meterhub",
        thousands(total),
        thousands(u64::from(args.rate))
    );
    let http = server.map(|s| s.http).or(args.server_http);
    let before = match http {
        Some(addr) => server::fetch_metrics(addr).await.ok(),
        None => None,
    };
    // Readings dated from now on: after the probes', so that the count below is this
    // phase's alone.
    let server_first = first_reading_unix.max(Utc::now().timestamp() + 1);
    let server_load = load(String::new(), server_first);
    let (server_phase, stalled) = server_phase(args, &db, &server_load, schedule, labels).await?;
    let counters = match (http, before) {
        (Some(addr), Some(before)) => server::fetch_metrics(addr).await.ok().and_then(|after| {
            ServerCounters::between(&before, &after, server_phase.span.as_secs_f64())
        }),
        _ => None,
    };

    let last_reading = chrono::DateTime::from_timestamp(server_load.clocks.latest(), 0)
        .context("a reading time out of range")?;
    let readings = db
        .readings_between(
            chrono::DateTime::from_timestamp(server_first, 0).context("time out of range")?,
            last_reading,
        )
        .await?;
    db.close().await;
    Ok(RunReport {
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        database: db.kind().to_owned(),
        offered: args.rate,
        duration: args.duration,
        meters: args.meters,
        publishers: args.publishers,
        poll_interval: args.poll_interval,
        broker,
        server: server_phase,
        counters,
        readings,
        stalled,
        server_killed: false,
    })
}

/// Sends single events until one is committed: proves the server runs, is subscribed and
/// takes the load's meters before any figure is taken. A server subscribes only once
/// connected, so the first probes may go nowhere.
pub async fn probe(
    args: &IngestArgs,
    db: &Db,
    run: u32,
    template: &Arc<EventTemplate>,
    first_reading_unix: i64,
) -> Result<()> {
    let probe_run = run | 0x8000_0000;
    let load = Load {
        run: probe_run,
        prefix: String::new(),
        meters: args.meters,
        clocks: Arc::new(MeterClocks::new(args.meters, first_reading_unix)),
        template: template.clone(),
        clock_every: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Probe k is meter k + 1's first reading: no two probes collide.
    for k in 0..u64::from(args.meters.min(30)) {
        let (topic, payload) = load.event(k, Utc::now())?;
        mqtt::publish_one(
            &args.mqtt_url,
            &format!("meterhub-loadtest-{run:08x}-probe"),
            topic,
            payload,
        )
        .await?;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let seen = db
                .committed_ids(
                    &event::dedup_id(probe_run, 0),
                    &event::dedup_id(probe_run, k),
                    1,
                )
                .await?;
            if !seen.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    bail!(
        "no probe event was committed: is `meterhub serve` running on {} and {}? \
         (an `up` event for a registered meter was published and never appeared)",
        args.mqtt_url,
        if args.database_url.starts_with("sqlite:") {
            "this SQLite file"
        } else {
            "this database"
        }
    )
}

/// Prints progress every two seconds until stopped: the events published, then what
/// `progress` says of the rest.
pub fn ticker(
    times: Arc<PublishTimes>,
    progress: impl Fn() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!(
                "  {:>5.1} s: {} published, {}",
                start.elapsed().as_secs_f64(),
                thousands(times.published()),
                progress(),
            );
        }
    })
}

async fn broker_phase(
    args: &IngestArgs,
    load: &Load,
    schedule: Schedule,
    labels: &Labels,
) -> Result<Phase> {
    let total = schedule.total();
    let times = Arc::new(PublishTimes::new(Instant::now(), total));
    let subscriber = PassThrough::subscribe(&args.mqtt_url, load, total, times.clone()).await?;
    let cpu_before = Snapshot::take();
    let start = Instant::now();
    let delivered = subscriber.delivered();
    let tick = ticker(times.clone(), move || {
        format!("{} delivered", thousands(delivered.load(Ordering::Relaxed)))
    });
    let published = mqtt::publish(
        &args.mqtt_url,
        load,
        schedule,
        args.publishers,
        times.clone(),
        args.drain_timeout,
    )
    .await?;
    let remaining = args
        .drain_timeout
        .saturating_sub(start.elapsed().saturating_sub(args.duration));
    let arrivals = subscriber
        .finish(remaining.max(Duration::from_secs(5)))
        .await?;
    tick.abort();
    let cpu = Usage::between(&cpu_before, &Snapshot::take(), &|pid, p| {
        labels.label(pid, p)
    });
    let first = times.get(0).unwrap_or(start);
    Ok(Phase {
        published: published.published,
        acknowledged: published.acknowledged,
        publish_rate: rate(published.published, start, Some(start + published.span)),
        max_lag: published.max_lag,
        arrived: arrivals.seen.count(),
        rate: rate(arrivals.seen.count(), first, arrivals.last),
        span: arrivals
            .last
            .map_or(Duration::ZERO, |l| l.saturating_duration_since(first)),
        latency: Percentiles::of(&arrivals.latency),
        cpu,
    })
}

/// Waits for the backlog: until `published` events are committed, `timeout` is up, or nothing
/// has been committed for 15 s (the server is stuck; waiting longer would show nothing).
/// Returns whether it stalled.
pub async fn drain(reader: &CommitReader, published: u64, timeout: Duration) -> bool {
    let drain_end = Instant::now() + timeout;
    let mut last_progress = (reader.committed(), Instant::now());
    while reader.committed() < published && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = reader.committed();
        if c > last_progress.0 {
            last_progress = (c, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(15) {
            eprintln!("  nothing committed for 15 s; giving up on the rest");
            return true;
        }
    }
    false
}

async fn server_phase(
    args: &IngestArgs,
    db: &Db,
    load: &Load,
    schedule: Schedule,
    labels: &Labels,
) -> Result<(Phase, bool)> {
    let total = schedule.total();
    let times = Arc::new(PublishTimes::new(Instant::now(), total));
    let reader = CommitReader::start(
        db.clone(),
        load.run,
        total,
        times.clone(),
        args.poll_interval,
    );
    let cpu_before = Snapshot::take();
    let start = Instant::now();
    let committed = reader.counter();
    let tick = ticker(times.clone(), move || {
        format!("{} committed", thousands(committed.load(Ordering::Relaxed)))
    });
    let published = mqtt::publish(
        &args.mqtt_url,
        load,
        schedule,
        args.publishers,
        times.clone(),
        args.drain_timeout,
    )
    .await?;

    let stalled = drain(&reader, published.published, args.drain_timeout).await;
    tick.abort();
    let arrivals = reader.finish().await?;
    let cpu = Usage::between(&cpu_before, &Snapshot::take(), &|pid, p| {
        labels.label(pid, p)
    });
    if arrivals.untimed > 0 {
        eprintln!(
            "  warning: {} committed events had no publish time (an earlier run's?)",
            arrivals.untimed
        );
    }
    let first = times.get(0).unwrap_or(start);
    let phase = Phase {
        published: published.published,
        acknowledged: published.acknowledged,
        publish_rate: rate(published.published, start, Some(start + published.span)),
        max_lag: published.max_lag,
        arrived: arrivals.seen.count(),
        rate: rate(arrivals.seen.count(), first, arrivals.last),
        span: arrivals
            .last
            .map_or(Duration::ZERO, |l| l.saturating_duration_since(first)),
        latency: Percentiles::of(&arrivals.latency),
        cpu,
    };
    Ok((phase, stalled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> IngestArgs {
        IngestArgs {
            mqtt_url: "mqtt://127.0.0.1:18830".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/loadtest".into(),
            rate: 10_000,
            duration: Duration::from_secs(20),
            csv: "out.csv".into(),
            meters: 10_000,
            publishers: 2,
            poll_interval: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(120),
            server_bin: None,
            server_http: None,
            server_log: false,
            broker_pid: None,
        }
    }

    #[test]
    fn the_runs_own_processes_are_told_apart_from_others_of_the_same_program() {
        let labels = Labels {
            server: Some(10),
            broker: Some(11),
            own: 12,
            database: Some("bench".into()),
        };
        let p = |name: &str, cmdline: &str| Process {
            name: name.into(),
            cmdline: cmdline.into(),
            ticks: 0,
            start: 0,
        };
        assert_eq!(
            labels.label(10, &p("meterhub", "meterhub serve")),
            SERVER_LABEL
        );
        assert_eq!(
            labels.label(20, &p("meterhub", "meterhub serve")),
            "meterhub"
        );
        assert_eq!(
            labels.label(11, &p("mosquitto", "mosquitto -c x")),
            "mosquitto under test"
        );
        assert_eq!(labels.label(12, &p("meterhub-loadte", "x")), "loadtest");
        assert_eq!(
            labels.label(
                30,
                &p(
                    "postgres",
                    "postgres: 15/main: postgres bench 127.0.0.1(5) idle"
                )
            ),
            "postgres backends of bench"
        );
        assert_eq!(
            labels.label(
                31,
                &p(
                    "postgres",
                    "postgres: 15/main: postgres bench2 127.0.0.1(5) idle"
                )
            ),
            "postgres"
        );
        assert_eq!(
            labels.label(32, &p("postgres", "postgres: 15/main: walwriter ")),
            "postgres"
        );
    }

    #[test]
    fn the_database_name_comes_from_a_postgres_url() {
        assert_eq!(
            database_name("postgres://postgres@127.0.0.1:5432/bench").as_deref(),
            Some("bench")
        );
        assert_eq!(database_name("sqlite://bench.db"), None);
    }

    #[test]
    fn only_loopback_brokers_and_databases_are_accepted() {
        assert!(check(&args()).is_ok());
        for (mqtt, db) in [
            ("mqtt://10.0.0.5:1883", "sqlite://x.db"),
            ("mqtt://broker.example.com", "sqlite://x.db"),
            (
                "mqtt://127.0.0.1:1883",
                "postgres://postgres@db.example.com/x",
            ),
            ("mqtt://127.0.0.1:1883", "mysql://127.0.0.1/x"),
        ] {
            let a = IngestArgs {
                mqtt_url: mqtt.into(),
                database_url: db.into(),
                ..args()
            };
            assert!(check(&a).is_err(), "{mqtt} {db}");
        }
        let local = IngestArgs {
            mqtt_url: "mqtt://localhost:1883".into(),
            database_url: "sqlite://./meterhub.db".into(),
            ..args()
        };
        assert!(check(&local).is_ok());
    }

    #[test]
    fn runs_are_bounded_in_rate_time_and_count() {
        assert!(check(&IngestArgs { rate: 0, ..args() }).is_err());
        assert!(
            check(&IngestArgs {
                rate: 200_001,
                ..args()
            })
            .is_err()
        );
        assert!(
            check(&IngestArgs {
                duration: Duration::from_secs(601),
                ..args()
            })
            .is_err()
        );
        assert!(
            check(&IngestArgs {
                rate: 100_000,
                duration: Duration::from_secs(60),
                ..args()
            })
            .is_err(),
            "6 million events"
        );
        assert!(
            check(&IngestArgs {
                publishers: 0,
                ..args()
            })
            .is_err()
        );
    }
}
