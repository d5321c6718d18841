//! A real ChirpStack around meterhub for one test, on free ports: a private Mosquitto, a fresh
//! PostgreSQL database for ChirpStack, its own Redis key prefix, `chirpstack` from the
//! templates in `config-template/`, one `chirpstack-mqtt-forwarder` per simulated gateway, the
//! fleet provisioned over the gRPC API, and `meterhub serve` in-process on a fresh SQLite
//! database with the fleet's registry imported. Simulated meters then run over Semtech UDP in
//! real time ([`Stack::simulate`]).
//!
//! Every process is killed and every folder, database and Redis key removed when the stack is
//! dropped, also when the test fails (the processes' output is printed then).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use firmware_protocol::clock::Clock;
use meterhub::app::Application;
use meterhub::config::{Secret, Settings};
use meterhub::registry::import::{Event, import_reader};
use meterhub::storage::Store;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::udp::keys::hex;
use meterhub_sim::udp::{FleetKeys, UdpReport, UdpSpec};
use test_support::{Broker, PostgresDb, Process, SqliteDb, services};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use meterhub::chirpstack::{ChirpStackApi, NewDevice};

/// Names the folder holding `chirpstack`, `chirpstack-mqtt-forwarder` and `config-template/`
/// (`../shared/chirpstack/real` on CI's machine).
pub const CHIRPSTACK_VAR: &str = "METERHUB_TEST_CHIRPSTACK";

/// The machine's Redis; each stack keeps its keys under a prefix of its own.
const REDIS: (Ipv4Addr, u16) = (Ipv4Addr::LOCALHOST, 6379);

/// How long `chirpstack` may take to migrate an empty database and listen.
const CHIRPSTACK_START: Duration = Duration::from_secs(120);

/// How long a forwarder or meterhub may take to connect to the broker.
const CONNECT: Duration = Duration::from_secs(60);

/// ChirpStack's `[network] get_downlink_data_delay` as docs/chirpstack.md advises: room for
/// meterhub's clock answer to reach ChirpStack's queue before RX1 is scheduled.
pub const DOWNLINK_DATA_DELAY_MS: u32 = 400;

/// The shortest reporting interval meterhub's registry accepts, minutes.
const REGISTRY_MIN_INTERVAL: u16 = 15;

/// The first simulated gateway's EUI; the others count up from it.
const FIRST_GATEWAY: u64 = 0x0016_c001_ff00_0001;

/// What the stack holds: how many gateways, and ChirpStack's downlink delay.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Simulated gateways, each behind its own MQTT Forwarder.
    pub gateways: usize,
    /// ChirpStack's `get_downlink_data_delay`, milliseconds.
    pub downlink_data_delay_ms: u32,
    /// meterhub's `[downlink] answer_expiry_secs`: how long a clock answer may wait in
    /// ChirpStack's queue.
    pub answer_expiry_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gateways: 1,
            downlink_data_delay_ms: DOWNLINK_DATA_DELAY_MS,
            answer_expiry_secs: Settings::default().downlink.answer_expiry_secs,
        }
    }
}

/// ChirpStack, its forwarders and meterhub, provisioned for one fleet. Fields drop in order:
/// meterhub first, the databases and the configuration last.
pub struct Stack {
    server: Option<Application>,
    stop: CancellationToken,
    /// meterhub's store.
    pub store: Store,
    /// The application ChirpStack assigned to the fleet.
    pub application_id: String,
    /// The simulated gateways' EUIs and their forwarders' UDP addresses.
    gateways: Vec<([u8; 8], SocketAddr)>,
    forwarders: Vec<Process>,
    chirpstack: Process,
    redis: RedisKeys,
    /// The private broker ChirpStack, the forwarders and meterhub share.
    pub broker: Broker,
    _chirpstack_db: PostgresDb,
    _meterhub_db: SqliteDb,
    _config: tempfile::TempDir,
}

impl Stack {
    /// Starts everything for `fleet` and provisions it in ChirpStack (every meter) and in
    /// meterhub (the fleet's registry, whose application id is the fleet's, not ChirpStack's).
    /// `None` when the test is skipped: `METERHUB_TEST_CHIRPSTACK`, the PostgreSQL or the
    /// Mosquitto variable is unset (a failure instead with `METERHUB_REQUIRE_SERVICES=1`).
    pub async fn start(fleet: &FleetSpec, options: Options) -> Option<Stack> {
        test_support::init_tracing();
        let folder = services::require(
            CHIRPSTACK_VAR,
            "a ChirpStack build (see docs/chirpstack.md)",
        )?;
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chirpstack/postgres");
        let chirpstack_db = PostgresDb::create_with_migrations(&migrations).await?;
        let broker = Broker::mosquitto().await?;
        match Stack::try_start(Path::new(&folder), fleet, options, broker, chirpstack_db).await {
            Ok(stack) => Some(stack),
            Err(e) => panic!("cannot start ChirpStack and meterhub: {e:#}"),
        }
    }

    async fn try_start(
        folder: &Path,
        fleet: &FleetSpec,
        options: Options,
        broker: Broker,
        chirpstack_db: PostgresDb,
    ) -> Result<Stack> {
        let chirpstack_bin = binary(folder, "chirpstack")?;
        let forwarder_bin = binary(folder, "chirpstack-mqtt-forwarder")?;
        let templates = folder.join("config-template");
        let redis = RedisKeys::new()?;

        // ChirpStack reads every .toml file of its folder: the forwarders' go elsewhere.
        let config = tempfile::Builder::new()
            .prefix("meterhub-chirpstack-")
            .tempdir()
            .context("a folder for ChirpStack's configuration")?;
        let chirpstack_dir = config.path().join("chirpstack");
        std::fs::create_dir(&chirpstack_dir)?;
        let api_port = test_support::free_port()?;
        let mqtt_port = broker.port().to_string();
        // ChirpStack's PostgreSQL client tries TLS unless told not to.
        let dsn = format!("{}?sslmode=disable", chirpstack_db.url());
        let mut settings = fill(
            &templates.join("chirpstack.toml"),
            &[
                ("@PG_DSN@", &dsn),
                ("@REDIS_URL@", &format!("redis://{}:{}/", REDIS.0, REDIS.1)),
                ("@API_PORT@", &api_port.to_string()),
                ("@MQTT_PORT@", &mqtt_port),
            ],
        )?;
        settings = add_setting(
            &settings,
            "[redis]",
            &format!("key_prefix = \"{}\"", redis.prefix),
        )?;
        settings = add_setting(
            &settings,
            "[network]",
            &format!(
                "get_downlink_data_delay = \"{}ms\"",
                options.downlink_data_delay_ms
            ),
        )?;
        std::fs::write(chirpstack_dir.join("chirpstack.toml"), settings)?;
        let region = fill(
            &templates.join("region_eu868.toml"),
            &[("@MQTT_PORT@", &mqtt_port)],
        )?;
        std::fs::write(chirpstack_dir.join("region_eu868.toml"), region)?;

        let mut chirpstack = Process::builder(&chirpstack_bin)
            .arg("--config")
            .arg(&chirpstack_dir)
            .start()?;
        chirpstack
            .wait_for_port(api_port, CHIRPSTACK_START)
            .await
            .context("ChirpStack's API")?;
        for topic in [
            "Subscribing to gateway event topic",
            "Subscribing to command topic",
        ] {
            chirpstack
                .wait_for_output(topic, CONNECT)
                .await
                .context("ChirpStack's MQTT connections")?;
        }
        let token = api_key(&chirpstack_bin, &chirpstack_dir).await?;
        let api = ChirpStackApi::connect(&format!("http://127.0.0.1:{api_port}"), &token).await?;

        // One forwarder per gateway, each on a UDP port of its own.
        let mut gateways = Vec::new();
        let mut forwarders = Vec::new();
        for n in 0..options.gateways.max(1) {
            let eui = (FIRST_GATEWAY + n as u64).to_be_bytes();
            let port = free_udp_port()?;
            let dir = config.path().join(format!("forwarder-{n}"));
            std::fs::create_dir(&dir)?;
            let text = fill(
                &templates.join("forwarder.toml"),
                &[
                    ("@GATEWAY_ID@", &hex(&eui)),
                    ("@UDP_PORT@", &port.to_string()),
                    ("@MQTT_PORT@", &mqtt_port),
                ],
            )?;
            // The template's client id would be shared by every forwarder on the broker.
            let text = text.replace("client_id=\"fwd1\"", &format!("client_id=\"fwd{n}\""));
            let file = dir.join("forwarder.toml");
            std::fs::write(&file, text)?;
            let mut forwarder = Process::builder(&forwarder_bin)
                .arg("-c")
                .arg(&file)
                .start()?;
            forwarder
                .wait_for_output("Subscribing to command topic", CONNECT)
                .await
                .with_context(|| format!("forwarder {n}"))?;
            forwarders.push(forwarder);
            gateways.push((eui, SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }

        let application_id = provision(&api, fleet, &gateways).await?;

        let meterhub_db = SqliteDb::create().await;
        let store = Store::connect(meterhub_db.url(), 4).await?;
        store.migrate(Utc::now()).await?;
        import_registry(&store, fleet).await?;
        let mut settings = Settings::default();
        settings.database.url = Secret(meterhub_db.url().to_owned());
        settings.mqtt.url = broker.url();
        settings.mqtt.client_id = "meterhub-e2e".to_owned();
        settings.http.bind = "127.0.0.1:0".parse()?;
        settings.downlink.answer_expiry_secs = options.answer_expiry_secs;
        let stop = CancellationToken::new();
        let server = Application::build(settings, stop.clone()).await?;
        let metrics = server.metrics();
        wait_until(CONNECT, "meterhub to subscribe", || {
            let metrics = metrics.clone();
            async move {
                metrics
                    .mqtt_subscribed
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 1
            }
        })
        .await?;

        Ok(Stack {
            server: Some(server),
            stop,
            store,
            application_id,
            gateways,
            forwarders,
            chirpstack,
            redis,
            broker,
            _chirpstack_db: chirpstack_db,
            _meterhub_db: meterhub_db,
            _config: config,
        })
    }

    /// The running meterhub.
    pub fn server(&self) -> &Application {
        self.server
            .as_ref()
            .expect("meterhub runs until the stack stops")
    }

    /// Starts the meters of `fleet` (as provisioned) behind the stack's gateways, in real
    /// time, for `duration` seconds (until stopped when `None`). `dev_nonce_start` must lie
    /// above every DevNonce an earlier run used: ChirpStack refuses a nonce it has seen.
    pub fn simulate(
        &self,
        fleet: &FleetSpec,
        duration: Option<i64>,
        dev_nonce_start: u16,
    ) -> Simulation {
        let spec = UdpSpec {
            servers: self.gateways.iter().map(|(_, addr)| *addr).collect(),
            gateways: self.gateways.iter().map(|(eui, _)| *eui).collect(),
            keys: FleetKeys::for_seed(fleet.seed),
            dev_nonce_start,
            duration,
            // Joins a fifth of a second apart: the meters then ask for the time (their first
            // uplink) apart as well, instead of colliding all at once on the air.
            join_rate: 5.0,
            ..UdpSpec::new(fleet.clone(), self.gateways[0].1)
        };
        let stop = CancellationToken::new();
        let run = meterhub_sim::udp::run(spec, Clock::System, stop.clone(), |_| {});
        Simulation {
            stop,
            handle: Some(tokio::spawn(run)),
        }
    }

    /// Stops meterhub gracefully (it finishes what it took in), then everything else.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server
                .run_until_stopped()
                .await
                .expect("meterhub stops cleanly");
        }
        for f in &mut self.forwarders {
            let _ = f.kill();
        }
        let _ = self.chirpstack.kill();
        self.redis.remove();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // meterhub's tasks end with the test's runtime; cancelled, they stop taking work now.
        self.stop.cancel();
        self.redis.remove();
    }
}

/// Simulated meters running over UDP; stopped when dropped.
pub struct Simulation {
    stop: CancellationToken,
    handle: Option<JoinHandle<Result<UdpReport>>>,
}

impl Simulation {
    /// Waits until the run's duration is over; its report.
    pub async fn finish(mut self) -> UdpReport {
        let handle = self.handle.take().expect("one finish");
        match handle.await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => panic!("the simulated fleet failed: {e:#}"),
            Err(e) => panic!("the simulated fleet panicked: {e}"),
        }
    }

    /// Stops the meters now (mid-air, as a power cut would); their report.
    pub async fn stop(self) -> UdpReport {
        self.stop.cancel();
        self.finish().await
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Creates the gateways, the meters' device profile, an application and every meter of
/// `fleet` (registered in meterhub or not, as on a real network); returns the application id.
async fn provision(
    api: &ChirpStackApi,
    fleet: &FleetSpec,
    gateways: &[([u8; 8], SocketAddr)],
) -> Result<String> {
    let tenant = api.first_tenant().await?;
    for (eui, _) in gateways {
        api.create_gateway(&tenant, &hex(eui)).await?;
    }
    let interval = u32::from(fleet.reporting_interval_minutes) * 60;
    let profile = api.create_device_profile(&tenant, interval).await?;
    let application = api.create_application(&tenant, "meterhub-e2e").await?;
    let keys = FleetKeys::for_seed(fleet.seed);
    for meter in fleet::build(fleet, 0) {
        let device = NewDevice {
            dev_eui: meter.dev_eui_hex(),
            join_eui: hex(&keys.join_eui),
            app_key: hex(&keys.app_key(meter.index)),
            name: format!("meter-{}", meter.index),
        };
        api.create_device(&application, &profile, &device).await?;
    }
    Ok(application)
}

/// Imports the fleet's registry into meterhub, as `meterhub meters import` would.
async fn import_registry(store: &Store, fleet: &FleetSpec) -> Result<()> {
    let now = Utc::now();
    // The registry takes 15 minutes or more: meters reporting faster (for a test in real
    // time) are registered at 15, which only delays when meterhub would call them silent.
    let registered = FleetSpec {
        reporting_interval_minutes: fleet.reporting_interval_minutes.max(REGISTRY_MIN_INTERVAL),
        ..fleet.clone()
    };
    let csv = fleet::registry_csv(&registered, &fleet::build(&registered, now.timestamp()));
    let mut refused = Vec::new();
    let report = import_reader(store, std::io::Cursor::new(csv.into_bytes()), now, |e| {
        if let Event::Refused(e) = e {
            refused.push(e.to_string());
        }
    })
    .await?;
    if report.refused > 0 {
        bail!("the registry was refused in part: {refused:?}");
    }
    Ok(())
}

/// `name` in `folder`, which must exist.
fn binary(folder: &Path, name: &str) -> Result<PathBuf> {
    let path = folder.join(name);
    if !path.is_file() {
        bail!(
            "{CHIRPSTACK_VAR}={} holds no {name}: it must name the folder of \
             ../shared/chirpstack/real/README.md",
            folder.display()
        );
    }
    Ok(path)
}

/// The template at `path` with every placeholder replaced; fails if one is left.
fn fill(path: &Path, values: &[(&str, &str)]) -> Result<String> {
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (placeholder, value) in values {
        text = text.replace(placeholder, value);
    }
    if let Some(line) = text.lines().find(|l| has_placeholder(l)) {
        bail!("{}: a placeholder is left: {line}", path.display());
    }
    Ok(text)
}

/// Whether `line` holds a template placeholder such as `@API_PORT@`.
fn has_placeholder(line: &str) -> bool {
    line.split('@')
        .skip(1)
        .step_by(2)
        .zip(line.split('@').skip(2))
        .any(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
}

/// `text` with `setting` added as the first line of the TOML table `table`.
fn add_setting(text: &str, table: &str, setting: &str) -> Result<String> {
    let header = format!("\n{table}\n");
    if !text.contains(&header) {
        bail!("the template has no {table} table");
    }
    Ok(text.replacen(&header, &format!("{header}  {setting}\n"), 1))
}

/// A global API key from `chirpstack create-api-key`, which prints `token: …`.
async fn api_key(chirpstack: &Path, config: &Path) -> Result<String> {
    let mut process = Process::builder(chirpstack)
        .arg("--config")
        .arg(config)
        .args(["create-api-key", "--name", "meterhub-e2e"])
        .start()?;
    let status = process.wait(CHIRPSTACK_START).await?;
    if !status.success() {
        bail!("create-api-key failed ({status}):\n{}", process.output());
    }
    process
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("token: ").map(str::trim).map(str::to_owned))
        .with_context(|| format!("create-api-key printed no token:\n{}", process.output()))
}

/// A loopback UDP port that was free a moment ago.
fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Polls `check` every 100 ms until it holds; fails naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This stack's keys in the machine's Redis: a prefix no other run uses, removed at the end.
struct RedisKeys {
    prefix: String,
    removed: bool,
}

impl RedisKeys {
    /// A fresh prefix, after checking that Redis answers.
    fn new() -> Result<RedisKeys> {
        let pong = redis(&["PING"]).with_context(|| {
            format!(
                "Redis does not answer on {}:{} (ChirpStack needs it; .ci/run starts it)",
                REDIS.0, REDIS.1
            )
        })?;
        if pong != "+PONG" {
            bail!("Redis answered {pong:?} to PING");
        }
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = format!(
            "meterhub-e2e-{started}-{}:",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Ok(RedisKeys {
            prefix,
            removed: false,
        })
    }

    /// Deletes every key under the prefix, once; best effort (the keys expire anyway).
    fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        let script = "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                      redis.call('DEL', k) end return 0";
        let pattern = format!("{}*", self.prefix);
        if let Err(e) = redis(&["EVAL", script, "0", &pattern]) {
            eprintln!("note: could not remove Redis keys {pattern}: {e:#}");
        }
    }
}

/// Sends one command to the machine's Redis; the first line of the answer.
fn redis(args: &[&str]) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(REDIS), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}
