//! The REST API scenario: response times of select, insert and update requests against the
//! size of the fleet, with and without the response cache.
//!
//! The database gets a fleet of meters with a daily reading each for a month and more
//! ([`fleet`]), an admin key is created through the server's library, and then phases run one
//! after the other, each with `C` keep-alive connections for a fixed time:
//! - `select_uncached`: a month of one random meter's readings, `Cache-Control: no-cache`
//!   (the database answers every request);
//! - `select_cached`: the same query over a hot set of meters, after a pass that fills the
//!   cache with each of them (every measured answer should be a hit);
//! - `pages_uncached` and `pages_cached` (not run unless asked): the operator's pages (home,
//!   a region, a search, a meter, the alarms; [`pages`]), each measured on its own as
//!   `page_<name>_uncached` / `page_<name>_cached`, around and from the response cache, with
//!   1 000 open alarms in the fleet;
//! - `insert`: `POST /meters`, a new meter each time, validated as `meters import` does;
//! - `update`: `POST /alarms/{id}/acknowledge`, each request a different open alarm.
//!
//! The phases that write come last, since every write invalidates cached answers.

pub mod chart;
mod client;
mod fleet;
mod load;
pub mod pages;
mod row;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use meterhub::api::auth::{Role, generate};
use meterhub::storage::Store;

use crate::cpu::{Snapshot, Usage};
use crate::ingest::{Labels, database_name};
use crate::report::{append_csv, thousands};
use crate::server::{self, ServerProcess};
use fleet::Fleet;
use load::{MakeRequest, Outcome, Rng};
pub use row::Row;

/// The phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PhaseKind {
    /// A month of one meter's readings, around the cache.
    SelectUncached,
    /// The same query, answered from the warm cache.
    SelectCached,
    /// Each operator page, every read going to the database.
    PagesUncached,
    /// Each operator page, its reads from the warm cache.
    PagesCached,
    /// Install a new meter.
    Insert,
    /// Acknowledge an open alarm.
    Update,
}

impl PhaseKind {
    /// The name in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::SelectUncached => "select_uncached",
            PhaseKind::SelectCached => "select_cached",
            PhaseKind::PagesUncached => "pages_uncached",
            PhaseKind::PagesCached => "pages_cached",
            PhaseKind::Insert => "insert",
            PhaseKind::Update => "update",
        }
    }
}

/// The scenario's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Database the server serves (postgres://127.0.0.1/… or sqlite://PATH); the fleet is
    /// prepared in it.
    #[arg(long)]
    pub database_url: String,
    /// MQTT broker for a started server (it needs one to start; the API does not use it).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Meters in the fleet.
    #[arg(long, default_value_t = 1_000)]
    pub meters: u32,
    /// Daily readings per meter (the query asks for the last 30 days).
    #[arg(long, default_value_t = 35)]
    pub days: u32,
    /// Regions the fleet is spread over.
    #[arg(long, default_value_t = 10)]
    pub regions: u32,
    /// Keep-alive connections; a comma-separated list runs each phase once per value.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    pub concurrency: Vec<u32>,
    /// Measured time per phase, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before the uncached phase (the server's pool and the database's
    /// caches warm up).
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Phases to run, comma-separated; they run in the order below whatever the order given
    /// (the writes last: they invalidate cached answers). The pages' phases run only when
    /// named.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "select_uncached,select_cached,insert,update"
    )]
    pub phases: Vec<PhaseKind>,
    /// Meters whose month the cached phase asks for (at most the fleet; each cached answer
    /// holds a month of readings).
    #[arg(long, default_value_t = 10_000)]
    pub hot_meters: u32,
    /// CSV file to append each phase's row to (header written when the file is new).
    #[arg(long, default_value = "loadtest-api.csv")]
    pub csv: PathBuf,
    /// Start this `meterhub` binary (`serve`, HTTP on a free loopback port) for the run.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// HTTP address of an already running server on the same database.
    #[arg(long)]
    pub server_http: Option<SocketAddr>,
    /// Show the started server's log.
    #[arg(long)]
    pub server_log: bool,
    /// Prepare the database (and say how long it took), then stop.
    #[arg(long)]
    pub prepare_only: bool,
}

/// Refuses settings that would reach beyond this machine or run without bound.
pub fn check(args: &ApiArgs) -> Result<()> {
    crate::ingest::check_local(&args.mqtt_url, &args.database_url, args.server_http)?;
    if !args.prepare_only && args.server_bin.is_none() == args.server_http.is_none() {
        bail!("give either --server-bin (to start a server) or --server-http (a running one)");
    }
    if !(1..=1_000_000).contains(&args.meters) {
        bail!("--meters must be 1 to 1 000 000");
    }
    if !(31..=366).contains(&args.days) {
        bail!("--days must be 31 to 366 (the query asks for the last 30 days)");
    }
    if !(1..=100).contains(&args.regions) {
        bail!("--regions must be 1 to 100");
    }
    if args.concurrency.is_empty() || args.concurrency.iter().any(|c| !(1..=1024).contains(c)) {
        bail!("--concurrency must be 1 to 1024 connections");
    }
    if args.duration < Duration::from_secs(1) || args.duration > Duration::from_secs(600) {
        bail!("--duration must be 1 s to 10 min");
    }
    if args.warmup > Duration::from_secs(60) {
        bail!("--warmup must be at most 1 min");
    }
    if !(1..=1_000_000).contains(&args.hot_meters) {
        bail!("--hot-meters must be 1 to 1 000 000");
    }
    Ok(())
}

/// The database, ready to be measured.
pub struct Setup {
    /// The store (the server's library on our own connections).
    pub store: Store,
    /// The fleet.
    pub fleet: Fleet,
    /// The admin key's secret.
    pub key: String,
}

/// Migrates the database, prepares the fleet and creates an admin key.
pub async fn setup(args: &ApiArgs) -> Result<Setup> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = Utc::now();
    let store = Store::connect(&args.database_url, 2)
        .await
        .context("connecting to the database")?;
    store.migrate(now).await.context("migrating the database")?;
    let fleet = fleet::prepare(&store, args.meters, args.days, args.regions, now).await?;
    eprintln!(
        "fleet of {} meters in {} regions, readings up to {}: {} meters and {} readings added in {:.1} s",
        thousands(u64::from(fleet.meters)),
        fleet.regions,
        fleet.end.format("%Y-%m-%d"),
        thousands(fleet.added_meters),
        thousands(fleet.added_readings),
        fleet.took.as_secs_f64()
    );
    let key = generate("loadtest-api", Role::Admin, now);
    store
        .insert_api_key(&key.row)
        .await
        .context("creating the API key")?;
    Ok(Setup {
        store,
        fleet,
        key: key.secret,
    })
}

/// Runs the scenario: prepares, starts the server if asked, measures, appends to the CSV.
pub async fn run(args: ApiArgs) -> Result<Vec<Row>> {
    check(&args)?;
    let setup = setup(&args).await?;
    if args.prepare_only {
        setup.store.close().await;
        return Ok(Vec::new());
    }
    let server = ServerProcess::start_if(
        args.server_bin.as_deref(),
        &args.database_url,
        &args.mqtt_url,
        args.server_log,
    )
    .await?;
    let addr = match (&server, args.server_http) {
        (Some(s), _) => s.http,
        (None, Some(a)) => a,
        (None, None) => bail!("no server to measure"),
    };
    let pid = server.as_ref().and_then(ServerProcess::pid);
    let result = measure(&args, &setup, addr, pid).await;
    let killed = server::stop_if(server, result.is_err()).await?;
    setup.store.close().await;
    let rows = result?;
    if killed {
        bail!("the server did not stop within 30 s of SIGTERM and was killed");
    }
    Ok(rows)
}

/// Runs the phases against the server at `addr` (process `pid`, for its CPU figures); prints
/// and appends each row as it comes.
pub async fn measure(
    args: &ApiArgs,
    setup: &Setup,
    addr: SocketAddr,
    pid: Option<u32>,
) -> Result<Vec<Row>> {
    wait_for_key(addr, &setup.key).await?;
    let labels = Labels {
        server: pid,
        broker: None,
        own: std::process::id(),
        database: database_name(&args.database_url),
    };
    let store_kind = match setup.store {
        Store::Postgres(_) => "postgres",
        Store::Sqlite { .. } => "sqlite",
    };
    let mut phases = args.phases.clone();
    phases.sort();
    phases.dedup();
    let mut rows = Vec::new();
    let mut cookie = None;
    for kind in phases {
        if matches!(kind, PhaseKind::PagesUncached | PhaseKind::PagesCached) && cookie.is_none() {
            let ids =
                fleet::open_alarms(&setup.store, setup.fleet.meters, 1_000, Utc::now()).await?;
            eprintln!(
                "pages: {} open alarms in the fleet",
                thousands(ids.len() as u64)
            );
            cookie = Some(pages::sign_in(addr, &setup.key).await?);
        }
        for &concurrency in &args.concurrency {
            let runs = match (kind, &cookie) {
                (PhaseKind::PagesUncached | PhaseKind::PagesCached, Some(cookie)) => {
                    let mut runs = Vec::new();
                    for page in pages::Page::ALL {
                        runs.push(
                            page_phase(args, setup, addr, kind, page, cookie, concurrency, &labels)
                                .await?,
                        );
                    }
                    runs
                }
                _ => {
                    let started_at = Utc::now();
                    let (outcome, cpu) =
                        phase(args, setup, addr, kind, concurrency, &labels).await?;
                    vec![(kind.name().to_owned(), started_at, outcome, cpu)]
                }
            };
            for (name, started_at, outcome, cpu) in runs {
                let row = Row::new(
                    started_at,
                    store_kind,
                    setup.fleet.meters,
                    &name,
                    concurrency,
                    &outcome,
                    &cpu,
                );
                println!("{}", row.summary(&outcome));
                append_csv(&args.csv, Row::CSV_HEADER, &row.csv_row())?;
                rows.push(row);
            }
        }
    }
    eprintln!("appended to {}", args.csv.display());
    Ok(rows)
}

/// One GET until the key is accepted: a running server loads new keys every few seconds.
async fn wait_for_key(addr: SocketAddr, key: &str) -> Result<()> {
    let request = client::request("GET", "/api/v1/regions", key, &[], None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = client::Connection::open(addr).await?;
        let answer = conn.send(&request).await?;
        if answer.status == 200 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "GET /api/v1/regions answers {}: {}",
                answer.status,
                String::from_utf8_lossy(conn.body())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The month query for meter `dev_eui`: the 30 days before the fleet's last reading.
fn month_path(dev_eui: &str, from: &str, to: &str) -> String {
    format!("/api/v1/meters/{dev_eui}/readings?from={from}&to={to}")
}

/// Runs one phase; its outcome and the CPU use while it was measured.
async fn phase(
    args: &ApiArgs,
    setup: &Setup,
    addr: SocketAddr,
    kind: PhaseKind,
    concurrency: u32,
    labels: &Labels,
) -> Result<(Outcome, Usage)> {
    let key = setup.key.clone();
    let meters = u64::from(setup.fleet.meters);
    let to = setup.fleet.end;
    let from = to - chrono::Duration::days(30);
    let text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (from, to) = (text(from), text(to));
    let make: Arc<MakeRequest> = match kind {
        PhaseKind::SelectUncached => {
            let select = Arc::new(move |_: u64, rng: &mut Rng, out: &mut Vec<u8>| {
                let meter = fleet::dev_eui(rng.below(meters) as u32 + 1);
                let path = month_path(&meter, &from, &to);
                out.extend(client::request(
                    "GET",
                    &path,
                    &key,
                    &[("Cache-Control", "no-cache")],
                    None,
                ));
                true
            });
            if !args.warmup.is_zero() {
                eprintln!(
                    "{}: {} s of unmeasured load first",
                    kind.name(),
                    args.warmup.as_secs_f64()
                );
                let w = load::run(addr, concurrency, args.warmup, select.clone()).await?;
                check_warmup(kind, &w)?;
            }
            select
        }
        PhaseKind::SelectCached => {
            // Prepared once: the cached phase is where the load generator's own cost shows.
            let hot = u64::from(args.hot_meters).min(meters);
            let requests: Arc<Vec<Vec<u8>>> = Arc::new(
                (1..=hot)
                    .map(|n| {
                        let path = month_path(&fleet::dev_eui(n as u32), &from, &to);
                        client::request("GET", &path, &key, &[], None)
                    })
                    .collect(),
            );
            let all = requests.clone();
            let fill = Arc::new(move |seq: u64, _: &mut Rng, out: &mut Vec<u8>| {
                match all.get(seq as usize) {
                    Some(r) => {
                        out.extend_from_slice(r);
                        true
                    }
                    None => false,
                }
            });
            eprintln!(
                "{}: filling the cache with {} meters' month",
                kind.name(),
                thousands(hot)
            );
            let w = load::run(addr, concurrency, Duration::from_secs(600), fill).await?;
            check_warmup(kind, &w)?;
            Arc::new(move |_: u64, rng: &mut Rng, out: &mut Vec<u8>| {
                out.extend_from_slice(&requests[rng.below(hot) as usize]);
                true
            })
        }
        PhaseKind::PagesUncached | PhaseKind::PagesCached => {
            bail!("the pages' phases run page by page (`page_phase`)")
        }
        PhaseKind::Insert => {
            let first = fleet::next_install_number(&setup.store).await?;
            let regions = setup.fleet.regions;
            Arc::new(move |seq: u64, _: &mut Rng, out: &mut Vec<u8>| {
                let n = first.saturating_add(seq as u32);
                let Ok(serial) = fleet::install_serial(n) else {
                    return false;
                };
                let body = serde_json::json!({
                    "serial": serial.to_string(),
                    "devEui": fleet::install_dev_eui(n),
                    "applicationId": crate::event::APPLICATION_ID,
                    "bodyNumber": n,
                    "userId": format!("new-customer-{n}"),
                    "region": fleet::region(n, regions),
                    "usageType": "residential",
                    "mode": "prepaid",
                    "productionDate": "2026-06-01",
                    "reportingIntervalMinutes": 1440,
                });
                let body = body.to_string();
                out.extend(client::request(
                    "POST",
                    "/api/v1/meters",
                    &key,
                    &[],
                    Some(body.as_bytes()),
                ));
                true
            })
        }
        PhaseKind::Update => {
            // Enough open alarms for a fast database; the phase stops early (and says so)
            // if they run out.
            let count = (args.duration.as_secs() as u32).saturating_mul(8_000) + 1_000;
            let ids = Arc::new(
                fleet::open_alarms(&setup.store, setup.fleet.meters, count, Utc::now()).await?,
            );
            eprintln!(
                "{}: {} open alarms to acknowledge",
                kind.name(),
                thousands(ids.len() as u64)
            );
            Arc::new(move |seq: u64, _: &mut Rng, out: &mut Vec<u8>| {
                let Some(id) = ids.get(seq as usize) else {
                    return false;
                };
                let path = format!("/api/v1/alarms/{id}/acknowledge");
                out.extend(client::request("POST", &path, &key, &[], None));
                true
            })
        }
    };
    let before = Snapshot::take();
    let outcome = load::run(addr, concurrency, args.duration, make).await?;
    let after = Snapshot::take();
    let cpu = Usage::between(&before, &after, &|pid, p| labels.label(pid, p));
    Ok((outcome, cpu))
}

/// One page's run of a pages phase: its row's phase name, start, outcome and CPU use.
#[allow(clippy::too_many_arguments)]
async fn page_phase(
    args: &ApiArgs,
    setup: &Setup,
    addr: SocketAddr,
    kind: PhaseKind,
    page: pages::Page,
    cookie: &str,
    concurrency: u32,
    labels: &Labels,
) -> Result<(String, DateTime<Utc>, Outcome, Usage)> {
    let (meters, regions) = (setup.fleet.meters, setup.fleet.regions);
    let around = kind == PhaseKind::PagesUncached;
    let name = format!(
        "page_{}_{}",
        page.name(),
        if around { "uncached" } else { "cached" }
    );
    let make = if around {
        let make = pages::uncached(page, cookie, meters, regions);
        if !args.warmup.is_zero() {
            let w = load::run(addr, concurrency, args.warmup, make.clone()).await?;
            check_warmup(kind, &w)?;
        }
        make
    } else {
        let (fill, measured) = pages::cached(page, cookie, args.hot_meters, meters, regions);
        let w = load::run(addr, concurrency, pages::FILL_LIMIT, fill).await?;
        check_warmup(kind, &w)?;
        measured
    };
    let started_at = Utc::now();
    let before = Snapshot::take();
    let outcome = load::run(addr, concurrency, args.duration, make).await?;
    let after = Snapshot::take();
    let cpu = Usage::between(&before, &after, &|pid, p| labels.label(pid, p));
    Ok((name, started_at, outcome, cpu))
}

/// A warm-up that failed says so before the measurement is taken on a broken setup.
fn check_warmup(kind: PhaseKind, w: &Outcome) -> Result<()> {
    if w.errors + w.transport_errors > 0 {
        bail!(
            "{}: {} of {} warm-up requests failed; the first: {}",
            kind.name(),
            w.errors + w.transport_errors,
            w.requests,
            w.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterhub::app::Application;
    use meterhub::config::{Secret, Settings};
    use tokio_util::sync::CancellationToken;

    /// Counts rows on the SQLite store.
    async fn count(store: &Store, sql: &'static str, bind: &str) -> i64 {
        let Store::Sqlite { writer, .. } = store else {
            panic!("a SQLite store");
        };
        sqlx::query_scalar(sql)
            .bind(bind.to_owned())
            .fetch_one(writer)
            .await
            .expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_fleet_is_prepared_once_and_every_phase_is_measured_on_sqlite() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("api.db").display());
        let csv = dir.path().join("api.csv");
        let mut args = ApiArgs {
            database_url: url.clone(),
            // Nothing listens there: the server retries in the background, and the API does
            // not need the broker.
            mqtt_url: "mqtt://127.0.0.1:9".into(),
            meters: 50,
            days: 31,
            regions: 3,
            concurrency: vec![2],
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
            phases: vec![
                PhaseKind::Update,
                PhaseKind::PagesCached,
                PhaseKind::Insert,
                PhaseKind::SelectCached,
                PhaseKind::PagesUncached,
                PhaseKind::SelectUncached,
            ],
            hot_meters: 20,
            csv: csv.clone(),
            server_bin: None,
            server_http: Some(SocketAddr::from(([127, 0, 0, 1], 9))),
            server_log: false,
            prepare_only: false,
        };
        check(&args).expect("valid settings");
        let setup = setup(&args).await.expect("setup");
        assert_eq!(setup.fleet.added_meters, 50);
        assert_eq!(setup.fleet.added_readings, 50 * 31);
        let again = fleet::prepare(&setup.store, 50, 31, 3, Utc::now())
            .await
            .expect("prepared");
        assert_eq!((again.added_meters, again.added_readings), (0, 0));
        assert_eq!(again.end, setup.fleet.end, "the fleet's days stay");

        let mut settings = Settings::default();
        settings.database.url = Secret(url);
        settings.mqtt.url = args.mqtt_url.clone();
        settings.mqtt.client_id = format!("loadtest-api-{}", std::process::id());
        settings.http.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let shutdown = CancellationToken::new();
        let app = Application::build(settings, shutdown.clone())
            .await
            .expect("a server");
        let addr = app.http_addr();
        args.server_http = Some(addr);
        let running = tokio::spawn(app.run_until_stopped());

        // The month query finds the prepared month: the server reads what was written.
        let to = setup.fleet.end;
        let text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let path = month_path(
            &fleet::dev_eui(7),
            &text(to - chrono::Duration::days(30)),
            &text(to),
        );
        let mut conn = client::Connection::open(addr).await.expect("connect");
        let answer = conn
            .send(&client::request("GET", &path, &setup.key, &[], None))
            .await
            .expect("an answer");
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(conn.body())
        );
        let page: serde_json::Value = serde_json::from_slice(conn.body()).expect("JSON");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(30), "{page}");

        let rows = measure(&args, &setup, addr, None).await.expect("measured");
        let phases: Vec<&str> = rows.iter().map(|r| r.phase.as_str()).collect();
        let pages = |how: &str| {
            pages::Page::ALL
                .iter()
                .map(|p| format!("page_{}_{how}", p.name()))
                .collect::<Vec<_>>()
        };
        let mut want = vec!["select_uncached".to_owned(), "select_cached".to_owned()];
        want.extend(pages("uncached"));
        want.extend(pages("cached"));
        want.extend(["insert".to_owned(), "update".to_owned()]);
        assert_eq!(phases, want, "in order, whatever the order asked");
        for r in &rows {
            assert!(r.requests > 0, "{r:?}");
            assert_eq!(r.errors, 0, "{r:?}");
            assert!(r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms, "{r:?}");
            if r.phase.ends_with("uncached") {
                assert_eq!(r.cache_hits, 0, "around the cache: {r:?}");
            } else if r.phase.ends_with("cached") {
                assert_eq!(r.cache_hits, r.requests, "all from the cache: {r:?}");
            }
        }
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| !r.phase.starts_with("page_"))
            .collect();
        let installed = count(
            &setup.store,
            "SELECT count(*) FROM meters WHERE dev_eui LIKE $1",
            &format!("{}%", fleet::INSTALL_PREFIX),
        )
        .await;
        assert_eq!(installed as u64, rows[2].requests);
        let acknowledged = count(
            &setup.store,
            "SELECT count(*) FROM alarms WHERE kind LIKE $1 AND state = 'acknowledged'",
            &format!("{}%", fleet::ALARM_KIND),
        )
        .await;
        assert_eq!(acknowledged as u64, rows[3].requests);
        assert!(
            !rows[3].exhausted,
            "enough alarms for the phase: {:?}",
            rows[3]
        );

        let written = std::fs::read_to_string(&csv).expect("the CSV");
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 10);
        assert_eq!(lines[0], Row::CSV_HEADER);
        assert!(lines[2].contains(",50,select_cached,2,"), "{}", lines[2]);
        let series = chart::series(&written, None).expect("series");
        assert_eq!(series["sqlite"].len(), 4 + 10);

        shutdown.cancel();
        running.await.expect("stopped").expect("a clean stop");
        setup.store.close().await;
    }
}
