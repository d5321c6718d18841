//! Typed settings: defaults, then a TOML file, then `METERHUB_…` environment variables, then
//! command-line flags. Settings are passed by value; there is no global configuration.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Prefix of environment variables; `__` separates section and key:
/// `METERHUB_DATABASE__URL`, `METERHUB_MQTT__PASSWORD`.
pub const ENV_PREFIX: &str = "METERHUB_";

/// Every setting of `meterhub serve`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The MQTT broker ChirpStack publishes to.
    pub mqtt: MqttSettings,
    /// How ChirpStack's MQTT integration is configured.
    pub chirpstack: ChirpStackSettings,
    /// Where meterhub stores its data.
    pub database: DatabaseSettings,
    /// The REST API and health endpoints.
    pub http: HttpSettings,
    /// Facts about the utility.
    pub utility: UtilitySettings,
    /// The time source (accelerated for demos and load tests).
    pub clock: ClockSettings,
    /// How the bridge batches its writes.
    pub ingest: IngestSettings,
    /// Commands to meters and clock synchronisation.
    pub downlink: DownlinkSettings,
    /// Alarm rules, silence detection and alarm delivery.
    pub monitor: MonitorSettings,
    /// The REST API.
    pub api: ApiSettings,
    /// The operator's web pages.
    pub pages: PagesSettings,
    /// How consumption is computed for billing.
    pub billing: BillingSettings,
    /// The process as a whole: how long a stop may take.
    pub server: ServerSettings,
    /// How long old data is kept.
    pub retention: RetentionSettings,
}

/// How long old data is kept; `None` keeps it forever (the default). The scheduler removes
/// what is older, and `meterhub retention` does it (or, `--dry-run`, reports it) at once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Readings older than this many days go. PostgreSQL drops whole monthly partitions (a
    /// month goes once all of it is older); SQLite deletes row by row. At least
    /// [`crate::retention::MIN_READINGS_DAYS`] plus `billing.gap_days` and
    /// `billing.grace_days`: a month's billing period closes from them.
    pub readings_days: Option<u32>,
    /// Quarantined messages received more than this many days ago go.
    pub quarantine_days: Option<u32>,
    /// Audit rows (a meter's history) written more than this many days ago go.
    pub audit_days: Option<u32>,
}

/// The process as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Longest a stop (SIGTERM, Ctrl-C) may take, seconds: the batch in flight is committed
    /// and acknowledged within it if the database and the broker allow; tasks still running
    /// after it are named in the log and abandoned, and the process exits with an error.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            shutdown_grace_secs: 15,
        }
    }
}

/// How consumption is computed for billing (the time zone is `[utility] time_zone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingSettings {
    /// A boundary register is interpolated between readings at most this many days apart;
    /// farther apart, the period is incomplete.
    pub gap_days: u32,
    /// A period's figures are frozen (published, then only revised) this many days after it
    /// ends in its time zone; until then they follow late readings silently.
    pub grace_days: u32,
    /// Regions whose billing calendar is in another IANA time zone than the utility's.
    pub region_time_zones: std::collections::BTreeMap<String, String>,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            gap_days: 7,
            grace_days: 3,
            region_time_zones: Default::default(),
        }
    }
}

/// The REST API's cache and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Longest a cached response is kept, seconds. Correctness does not depend on it: every
    /// write invalidates the responses it changes.
    pub cache_ttl_secs: u64,
    /// Most responses cached; the least recently used go first.
    pub cache_capacity: usize,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            cache_ttl_secs: 86_400,
            cache_capacity: 100_000,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// The operator's web pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagesSettings {
    /// How long a sign-in lasts, hours (by the wall clock); then the browser is asked to sign
    /// in again. Revoking the key ends its sessions sooner, within seconds.
    pub session_hours: u32,
}

impl Default for PagesSettings {
    fn default() -> Self {
        PagesSettings { session_hours: 12 }
    }
}

/// Commands to meters and clock synchronisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownlinkSettings {
    /// Answer AppTimeReq and release queued commands; off for a read-only instance.
    pub enabled: bool,
    /// How long ChirpStack may hold a clock answer before dropping it, seconds (wall time on
    /// the network's side: the answer is only useful in the next receive windows).
    pub answer_expiry_secs: u64,
    /// A command not sent within this many hours of its request expires.
    pub command_expiry_hours: u64,
    /// A read, info or self-test request fails when its answer has not arrived this many
    /// minutes after it was sent.
    pub answer_timeout_minutes: u64,
    /// A meter whose clock is off by more than this many seconds is asked to resynchronise.
    pub max_drift_secs: u64,
    /// A command handed to ChirpStack with no `txack` (or, confirmed, no `ack` after its
    /// `txack`) after this many uplinks of its meter is taken as lost: ChirpStack drops some
    /// commands without a word. At least 2.
    pub lost_after_uplinks: u32,
    /// Hand-overs to ChirpStack before a lost command fails instead of being re-sent.
    pub max_attempts: u32,
}

impl Default for DownlinkSettings {
    fn default() -> Self {
        DownlinkSettings {
            enabled: true,
            answer_expiry_secs: 60,
            command_expiry_hours: 72,
            answer_timeout_minutes: 60,
            max_drift_secs: 30,
            lost_after_uplinks: 3,
            max_attempts: 3,
        }
    }
}

/// Alarm rules, silence detection and alarm delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// A meter is silent after its reporting interval times this without an uplink.
    pub silence_tolerance: u32,
    /// A reading with the battery below this percentage raises `lowBattery`.
    pub low_battery_percent: u8,
    /// Consumption per day above this multiple of the meter's own trailing average raises
    /// `overConsumption`.
    pub over_consumption_factor: f64,
    /// Readings a meter needs before its average is trusted by the over-consumption rule.
    pub over_consumption_min_samples: u32,
    /// Each new alarm is POSTed here as JSON, retried until accepted; none when unset.
    pub webhook_url: Option<String>,
    /// Timeout of one webhook request, seconds.
    pub webhook_timeout_secs: u64,
    /// How often (wall seconds) the scheduler looks for due work.
    pub tick_secs: u64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            silence_tolerance: 2,
            low_battery_percent: 10,
            over_consumption_factor: 3.0,
            over_consumption_min_samples: 3,
            webhook_url: None,
            webhook_timeout_secs: 10,
            tick_secs: 1,
        }
    }
}

/// Batching of the MQTT-to-database bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Most messages committed in one transaction.
    pub batch_size: usize,
    /// Longest a message waits for its batch to fill, milliseconds.
    pub max_wait_ms: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            batch_size: 500,
            max_wait_ms: 50,
        }
    }
}

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password; never logged.
    pub password: Option<Secret>,
    /// Client id. It names the broker's persistent session, so it must be stable across
    /// restarts and distinct per instance.
    pub client_id: String,
    /// When set, subscribe as `$share/GROUP/…` so several instances split the stream.
    pub shared_group: Option<String>,
    /// Keep-alive interval, seconds.
    pub keep_alive_secs: u16,
    /// PEM file of the CA certificates to trust for `mqtts://` (the system's when unset).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            username: None,
            password: None,
            client_id: default_client_id(),
            shared_group: None,
            keep_alive_secs: 30,
            ca_file: None,
        }
    }
}

/// A stable id per host: persistent sessions survive restarts, and two hosts never collide.
fn default_client_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    format!("meterhub-{host}")
}

/// ChirpStack's MQTT integration settings (`[integration.mqtt]` in `chirpstack.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChirpStackSettings {
    /// ChirpStack's `event_topic` template.
    pub event_topic: String,
    /// ChirpStack's `command_topic` template.
    pub command_topic: String,
    /// Only take events of these application ids (all when empty).
    pub application_ids: Vec<String>,
    /// ChirpStack's gRPC API (`http://chirpstack:8080`). Set with `api_token`, `application_id`
    /// and `device_profile_id`, it turns on keeping ChirpStack's device list in step with the
    /// registry (feature `chirpstack-sync`); unset, meterhub never calls the API.
    pub api_url: Option<String>,
    /// An API token made in ChirpStack's UI or by `chirpstack create-api-key`; best given as
    /// `METERHUB_CHIRPSTACK__API_TOKEN` rather than in a file.
    pub api_token: Option<Secret>,
    /// The ChirpStack application (UUID) whose devices are the registry's meters of that
    /// application.
    pub application_id: Option<String>,
    /// The device profile (UUID) the devices are created with.
    pub device_profile_id: Option<String>,
    /// Seconds between two rounds of keeping ChirpStack in step (on the instance holding the
    /// scheduler's lease); a round also follows every install and retirement.
    pub sync_interval_secs: u64,
}

/// The `[chirpstack]` API settings, all given: what keeping ChirpStack in step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChirpStackApiSettings {
    /// The gRPC API's URL.
    pub url: String,
    /// The API token.
    pub token: Secret,
    /// The application id, lowercase hyphenated UUID.
    pub application_id: String,
    /// The device profile id, lowercase hyphenated UUID.
    pub device_profile_id: String,
}

impl ChirpStackSettings {
    /// The API settings when keeping ChirpStack in step is configured, `None` when none of them
    /// is set; an error naming what is missing or wrong when only some are, or when one is
    /// malformed.
    pub fn api(&self) -> Result<Option<ChirpStackApiSettings>> {
        let given = [
            ("chirpstack.api_url", self.api_url.is_some()),
            ("chirpstack.api_token", self.api_token.is_some()),
            ("chirpstack.application_id", self.application_id.is_some()),
            (
                "chirpstack.device_profile_id",
                self.device_profile_id.is_some(),
            ),
        ];
        if given.iter().all(|(_, set)| !set) {
            return Ok(None);
        }
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, set)| !set)
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            bail!(
                "keeping ChirpStack in step needs chirpstack.api_url, api_token, application_id \
                 and device_profile_id together; missing: {} (the token may come from \
                 METERHUB_CHIRPSTACK__API_TOKEN)",
                missing.join(", ")
            );
        }
        let url = self.api_url.clone().unwrap_or_default();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "chirpstack.api_url must start with http:// or https:// (ChirpStack's gRPC API, \
                 e.g. http://chirpstack:8080), got {url:?}"
            );
        }
        let token = self
            .api_token
            .clone()
            .unwrap_or_else(|| Secret(String::new()));
        let printable = |c: char| c.is_ascii_graphic();
        if token.expose().is_empty() || !token.expose().chars().all(printable) {
            bail!("chirpstack.api_token must be a non-empty token of printable ASCII");
        }
        let uuid = |name: &str, value: &Option<String>| -> Result<String> {
            let text = value.as_deref().unwrap_or_default();
            uuid::Uuid::parse_str(text.trim())
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| anyhow::anyhow!("{name} {text:?} is not a UUID"))
        };
        Ok(Some(ChirpStackApiSettings {
            url,
            token,
            application_id: uuid("chirpstack.application_id", &self.application_id)?,
            device_profile_id: uuid("chirpstack.device_profile_id", &self.device_profile_id)?,
        }))
    }
}

impl Default for ChirpStackSettings {
    fn default() -> Self {
        ChirpStackSettings {
            event_topic: "application/{{application_id}}/device/{{dev_eui}}/event/{{event}}"
                .to_owned(),
            command_topic: "application/{{application_id}}/device/{{dev_eui}}/command/{{command}}"
                .to_owned(),
            application_ids: Vec::new(),
            api_url: None,
            api_token: None,
            application_id: None,
            device_profile_id: None,
            sync_interval_secs: 300,
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (created if missing) or `postgres://…`. May hold a password: it is
    /// redacted whenever settings are printed.
    pub url: Secret,
    /// Connections in the pool (PostgreSQL; SQLite writes through one connection).
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: Secret("sqlite://./meterhub.db".to_owned()),
            max_connections: 8,
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the REST API listens on; port 0 picks a free port.
    pub bind: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Facts about the utility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UtilitySettings {
    /// IANA time zone in which billing days start, e.g. `Europe/Madrid`.
    pub time_zone: String,
}

impl Default for UtilitySettings {
    fn default() -> Self {
        UtilitySettings {
            time_zone: "UTC".to_owned(),
        }
    }
}

/// Time source settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockSettings {
    /// Simulated seconds per wall second; 1 is real time.
    pub speed: u32,
    /// RFC 3339 simulated instant at which the run starts (the anchor when absent).
    pub start: Option<String>,
    /// RFC 3339 wall instant at which the simulated clock reads `start` (when the settings are
    /// loaded, when absent). A server and a simulator given the same speed, start and anchor
    /// agree on simulated time.
    pub anchor: Option<String>,
}

impl Default for ClockSettings {
    fn default() -> Self {
        ClockSettings {
            speed: 1,
            start: None,
            anchor: None,
        }
    }
}

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--mqtt-url`.
    pub mqtt_url: Option<String>,
    /// `--http-bind`.
    pub http_bind: Option<SocketAddr>,
    /// `--clock-speed`.
    pub clock_speed: Option<u32>,
    /// `--clock-start`.
    pub clock_start: Option<String>,
    /// `--clock-anchor`.
    pub clock_anchor: Option<String>,
}

impl Settings {
    /// Loads settings: defaults, then `file` (if given), then the environment, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: Overrides,
    ) -> Result<Settings> {
        let mut tree = toml::Table::try_from(Settings::default())
            .context("serialising the default settings")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let from_file: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            merge(&mut tree, from_file);
        }
        for (key, value) in env {
            // Only `METERHUB_SECTION__KEY` names are settings; other `METERHUB_…` variables
            // (the test suite's, `METERHUB_CONFIG`) are not.
            if let Some(name) = key.strip_prefix(ENV_PREFIX).filter(|n| n.contains("__")) {
                apply_env(&mut tree, name, &value).with_context(|| format!("in ${key}"))?;
            }
        }
        let mut settings: Settings = toml::Value::Table(tree)
            .try_into()
            .context("invalid settings")?;
        if let Some(v) = overrides.database_url {
            settings.database.url = Secret(v);
        }
        if let Some(v) = overrides.mqtt_url {
            settings.mqtt.url = v;
        }
        if let Some(v) = overrides.http_bind {
            settings.http.bind = v;
        }
        if let Some(v) = overrides.clock_speed {
            settings.clock.speed = v;
        }
        if let Some(v) = overrides.clock_start {
            settings.clock.start = Some(v);
        }
        if let Some(v) = overrides.clock_anchor {
            settings.clock.anchor = Some(v);
        }
        // Every clock made from these settings runs from the same anchor.
        if (settings.clock.speed > 1 || settings.clock.start.is_some())
            && settings.clock.anchor.is_none()
        {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            settings.clock.anchor = Some(now);
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<()> {
        let url = &self.mqtt.url;
        if !(url.starts_with("mqtt://") || url.starts_with("mqtts://")) {
            bail!("mqtt.url must start with mqtt:// or mqtts://, got {url:?}");
        }
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            bail!("database.url must start with sqlite: or postgres://");
        }
        if self.mqtt.client_id.is_empty() {
            bail!("mqtt.client_id must not be empty");
        }
        for (name, template) in [
            ("chirpstack.event_topic", &self.chirpstack.event_topic),
            ("chirpstack.command_topic", &self.chirpstack.command_topic),
        ] {
            if !template.contains("{{dev_eui}}") {
                bail!("{name} must contain {{{{dev_eui}}}}: meterhub routes by device");
            }
        }
        self.utility
            .time_zone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                anyhow::anyhow!(
                    "utility.time_zone {:?} is not an IANA time zone",
                    self.utility.time_zone
                )
            })?;
        for (region, zone) in &self.billing.region_time_zones {
            zone.parse::<chrono_tz::Tz>().map_err(|_| {
                anyhow::anyhow!(
                    "billing.region_time_zones.{region} {zone:?} is not an IANA time zone"
                )
            })?;
        }
        if !(1..=366).contains(&self.billing.gap_days) {
            bail!("billing.gap_days must be between 1 and 366");
        }
        if self.billing.grace_days > 366 {
            bail!("billing.grace_days must be between 0 and 366");
        }
        crate::retention::check(
            &self.retention,
            self.billing.gap_days,
            self.billing.grace_days,
        )?;
        self.clock_instants()?;
        // The MQTT receive maximum, a 16-bit number, is a multiple of the batch (capped).
        if !(1..=32_767).contains(&self.ingest.batch_size) {
            bail!("ingest.batch_size must be between 1 and 32767");
        }
        if self.ingest.max_wait_ms > 60_000 {
            bail!("ingest.max_wait_ms must be at most 60000");
        }
        if self.downlink.lost_after_uplinks < 2 {
            bail!(
                "downlink.lost_after_uplinks must be at least 2: a command usually goes out \
                 with the uplink after the one that released it"
            );
        }
        if self.downlink.max_attempts == 0 {
            bail!("downlink.max_attempts must be at least 1");
        }
        if self.clock.speed == 0 {
            bail!("clock.speed must be at least 1");
        }
        if !(1..=10_000_000).contains(&self.api.cache_capacity) {
            bail!("api.cache_capacity must be between 1 and 10000000");
        }
        if !(1..=16 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            bail!("api.max_body_bytes must be between 1 and 16777216");
        }
        if !(1..=24 * 90).contains(&self.pages.session_hours) {
            bail!("pages.session_hours must be between 1 and 2160 (90 days)");
        }
        if self.monitor.silence_tolerance == 0 {
            bail!("monitor.silence_tolerance must be at least 1");
        }
        if self.monitor.over_consumption_factor.is_nan()
            || self.monitor.over_consumption_factor <= 1.0
        {
            bail!("monitor.over_consumption_factor must be above 1");
        }
        if self.monitor.tick_secs == 0 {
            bail!("monitor.tick_secs must be at least 1");
        }
        if let Some(url) = &self.monitor.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("monitor.webhook_url must start with http:// or https://");
        }
        if self.chirpstack.api()?.is_some() && !cfg!(feature = "chirpstack-sync") {
            bail!(
                "chirpstack.api_url is set, but this meterhub was built without the \
                 chirpstack-sync feature (cargo build --features chirpstack-sync)"
            );
        }
        if self.chirpstack.sync_interval_secs == 0 {
            bail!("chirpstack.sync_interval_secs must be at least 1");
        }
        Ok(())
    }

    /// The clock these settings describe: wall time, or accelerated (or shifted, given a
    /// start). Refused when it reads a time no meter clock can show.
    pub fn clock(&self) -> Result<firmware_protocol::clock::Clock> {
        use firmware_protocol::clock::Clock;
        let (start, anchor) = self.clock_instants()?;
        if self.clock.speed <= 1 && start.is_none() {
            return Ok(Clock::System);
        }
        let anchor = anchor.unwrap_or_else(chrono::Utc::now);
        let start = start.unwrap_or(anchor);
        let clock = Clock::accelerated_from(self.clock.speed, start.into(), anchor.into())
            .context("clock.speed must be at least 1")?;
        clock
            .check_range(chrono::Utc::now().timestamp_micros(), None)
            .context("the clock settings (clock.start, clock.anchor, clock.speed)")?;
        Ok(clock)
    }

    /// The clock's start and anchor, parsed.
    fn clock_instants(&self) -> Result<(Option<DateTime>, Option<DateTime>)> {
        let parse = |name: &str, text: &Option<String>| -> Result<Option<DateTime>> {
            text.as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|t| t.to_utc())
                        .with_context(|| {
                            format!(
                                "clock.{name} (--clock-{name}) {t:?} is not an RFC 3339 time \
                                 such as 2026-01-01T00:00:00Z"
                            )
                        })
                })
                .transpose()
        };
        Ok((
            parse("start", &self.clock.start)?,
            parse("anchor", &self.clock.anchor)?,
        ))
    }
}

type DateTime = chrono::DateTime<chrono::Utc>;

/// Overlays `from` onto `into`, table by table.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Integer settings unset by default: no default value says they are integers.
const OPTIONAL_INTEGERS: [&str; 3] = [
    "retention.readings_days",
    "retention.quarantine_days",
    "retention.audit_days",
];

/// Sets `SECTION__KEY` from an environment variable, typed like the default it replaces (an
/// environment variable is always text, so `5` must become an integer only where one is meant).
fn apply_env(tree: &mut toml::Table, name: &str, value: &str) -> Result<()> {
    let mut path: Vec<String> = name.split("__").map(str::to_ascii_lowercase).collect();
    let Some(key) = path.pop() else {
        bail!("empty setting name");
    };
    let optional_integer =
        OPTIONAL_INTEGERS.contains(&format!("{}.{key}", path.join(".")).as_str());
    let mut table = tree;
    for section in &path {
        table = match table.get_mut(section) {
            Some(toml::Value::Table(t)) => t,
            _ => bail!("unknown settings section {section:?}"),
        };
    }
    let typed = match table.get(&key) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .parse()
                .with_context(|| format!("expected an integer, got {value:?}"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            value
                .parse()
                .with_context(|| format!("expected true or false, got {value:?}"))?,
        ),
        Some(toml::Value::Array(_)) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        Some(toml::Value::Table(_)) => bail!("{key:?} is a section, not a setting"),
        None if optional_integer => toml::Value::Integer(
            value
                .parse()
                .with_context(|| format!("expected an integer, got {value:?}"))?,
        ),
        _ => toml::Value::String(value.to_owned()),
    };
    table.insert(key, typed);
    Ok(())
}

/// The commented defaults that `meterhub configfile` prints.
pub fn commented_defaults() -> String {
    let d = Settings::default();
    format!(
        r#"# meterhub settings. Every key is optional; shown are the defaults.
# Each can also be set from the environment as METERHUB_SECTION__KEY (e.g.
# METERHUB_DATABASE__URL), and the most common ones by command-line flags, which win.

[mqtt]
# The broker ChirpStack's MQTT integration publishes to: mqtt://host:port or mqtts://host:port.
url = "{mqtt_url}"
# username = "meterhub"
# password = "secret"
# Names the broker's persistent session: stable across restarts, distinct per instance.
client_id = "{client_id}"
# Several instances split the event stream with an MQTT shared subscription ($share/GROUP/...).
# shared_group = "meterhub"
keep_alive_secs = {keep_alive}
# CA certificates (PEM) to trust for mqtts://; the system's when unset.
# ca_file = "/etc/meterhub/broker-ca.pem"

[chirpstack]
# Must match [integration.mqtt] event_topic and command_topic in chirpstack.toml.
event_topic = "{event_topic}"
command_topic = "{command_topic}"
# Only take events of these ChirpStack application ids; all when empty.
application_ids = []
# Keep ChirpStack's device list in step with the registry (built with the chirpstack-sync
# feature): meters in service of application_id, with their OTAA keys, are created in ChirpStack
# with device_profile_id; devices of retired meters are deleted. All four or none; the token is
# best given as METERHUB_CHIRPSTACK__API_TOKEN.
# api_url = "http://127.0.0.1:8080"
# api_token = "..."
# application_id = "00000000-0000-0000-0000-000000000000"
# device_profile_id = "00000000-0000-0000-0000-000000000000"
# Seconds between rounds (a round also follows every install and retirement).
sync_interval_secs = {sync_interval}

[database]
# sqlite://PATH (created when missing) or postgres://user:password@host/db
url = "{db_url}"
max_connections = {max_conn}

[http]
# The REST API; put a reverse proxy in front of it for HTTPS.
bind = "{bind}"

[utility]
# IANA time zone in which billing days start.
time_zone = "{tz}"

[ingest]
# Most messages committed in one transaction, and the longest a message waits for its batch.
# Messages are acknowledged to the broker only after their transaction commits.
batch_size = {batch_size}
max_wait_ms = {max_wait_ms}

[clock]
# Simulated seconds per wall second: 86400 runs a day per second. The simulated clock reads
# `start` at the wall instant `anchor` (default: when meterhub starts; `start` defaults to the
# anchor). A server and a simulator given the same speed, start and anchor agree on simulated
# time; simulated time must stay between 1980-01-06 and 2116-02-12 (a meter's GPS clock).
speed = {speed}
# start = "2026-01-01T00:00:00Z"
# anchor = "2026-12-07T10:00:00Z"

[downlink]
# Answer clock requests (TS003 AppTimeReq) and release queued commands, one per uplink.
enabled = {dl_enabled}
# ChirpStack drops a clock answer it could not send within this many seconds.
answer_expiry_secs = {answer_expiry}
# A command not sent within this many hours of its request expires.
command_expiry_hours = {command_expiry}
# A read, info or self-test request fails without its answer this many minutes after sending.
answer_timeout_minutes = {answer_timeout}
# Meters whose clock is off by more than this many seconds are asked to resynchronise.
max_drift_secs = {max_drift}
# A command ChirpStack neither transmitted (txack) nor, if confirmed, had acknowledged (ack)
# after this many uplinks of its meter is lost: re-sent, or failed after max_attempts.
lost_after_uplinks = {lost_after}
max_attempts = {max_attempts}

[monitor]
# Silent after reporting interval x tolerance without an uplink.
silence_tolerance = {silence}
low_battery_percent = {low_battery}
# Daily consumption above factor x the meter's own trailing average raises overConsumption,
# once the meter has at least min_samples readings.
over_consumption_factor = {factor:?}
over_consumption_min_samples = {min_samples}
# Each new alarm is POSTed here as JSON, retried until a 2xx answer.
# webhook_url = "https://example.org/meterhub/alarms"
webhook_timeout_secs = {webhook_timeout}
# How often, in wall seconds, due work (silence, schedules, expiry, delivery) is looked for.
tick_secs = {tick}

[api]
# Cached responses: how long each is kept (seconds) and how many. Every write invalidates the
# responses it changes, so the lifetime bounds memory, not staleness.
cache_ttl_secs = {cache_ttl}
cache_capacity = {cache_capacity}
# Largest request body accepted, bytes.
max_body_bytes = {max_body}

[pages]
# How long a sign-in to the web pages lasts, hours. Sessions are signed with a secret the first
# instance stores in the database, so every instance accepts them; revoking the key ends them.
session_hours = {session_hours}

[billing]
# A register at a period boundary is interpolated between readings at most this many days
# apart; farther apart, the period is incomplete (no figure is invented).
gap_days = {gap_days}
# A period's figures are closed (frozen and published) this many days after it ends; a later
# reading that changes a closed figure adds a revision instead of changing it.
grace_days = {grace_days}
# Regions billed in another time zone than [utility] time_zone.
# [billing.region_time_zones]
# canarias = "Atlantic/Canary"

[server]
# Longest a stop (SIGTERM, Ctrl-C) may take, seconds. The batch in flight is committed and
# acknowledged if the database and the broker allow; whatever still runs after this is named in
# the log and abandoned (the broker delivers again what was not acknowledged), and the exit
# status is 1. Keep it below the service manager's own limit (systemd: TimeoutStopSec,
# Kubernetes: terminationGracePeriodSeconds).
shutdown_grace_secs = {grace}

[retention]
# How long old data is kept, in days; kept forever when unset. The scheduler removes what is
# older about once an hour; `meterhub retention --dry-run` reports what would go. Readings: on
# PostgreSQL whole months go (a monthly partition once all of it is older), on SQLite single
# rows; closed billing figures stay. At least 32 + billing.gap_days + billing.grace_days.
# readings_days = 730
# Quarantined messages, by the time they were received.
# quarantine_days = 90
# Audit rows (GET /api/v1/meters/{{meter}}/history), by the time they were written.
# audit_days = 3650
"#,
        gap_days = d.billing.gap_days,
        grace_days = d.billing.grace_days,
        grace = d.server.shutdown_grace_secs,
        dl_enabled = d.downlink.enabled,
        answer_expiry = d.downlink.answer_expiry_secs,
        command_expiry = d.downlink.command_expiry_hours,
        answer_timeout = d.downlink.answer_timeout_minutes,
        max_drift = d.downlink.max_drift_secs,
        lost_after = d.downlink.lost_after_uplinks,
        max_attempts = d.downlink.max_attempts,
        silence = d.monitor.silence_tolerance,
        low_battery = d.monitor.low_battery_percent,
        factor = d.monitor.over_consumption_factor,
        min_samples = d.monitor.over_consumption_min_samples,
        webhook_timeout = d.monitor.webhook_timeout_secs,
        tick = d.monitor.tick_secs,
        cache_ttl = d.api.cache_ttl_secs,
        cache_capacity = d.api.cache_capacity,
        max_body = d.api.max_body_bytes,
        session_hours = d.pages.session_hours,
        mqtt_url = d.mqtt.url,
        client_id = d.mqtt.client_id,
        keep_alive = d.mqtt.keep_alive_secs,
        event_topic = d.chirpstack.event_topic,
        command_topic = d.chirpstack.command_topic,
        sync_interval = d.chirpstack.sync_interval_secs,
        db_url = d.database.url.expose(),
        max_conn = d.database.max_connections,
        bind = d.http.bind,
        tz = d.utility.time_zone,
        speed = d.clock.speed,
        batch_size = d.ingest.batch_size,
        max_wait_ms = d.ingest.max_wait_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn chirpstack_api_settings_come_together_from_file_and_environment() {
        let load = |pairs: &[(&str, &str)]| {
            Settings::load(None, env(pairs), Overrides::default()).map_err(|e| format!("{e:#}"))
        };
        let none = load(&[]).expect("defaults");
        assert_eq!(none.chirpstack.api().expect("valid"), None);
        let all = [
            ("METERHUB_CHIRPSTACK__API_URL", "http://chirpstack:8080"),
            ("METERHUB_CHIRPSTACK__API_TOKEN", "tok.en-1"),
            (
                "METERHUB_CHIRPSTACK__APPLICATION_ID",
                "6C3E5B1A-93D2-4F0E-8A7B-2D4C6E8F0A1B",
            ),
            (
                "METERHUB_CHIRPSTACK__DEVICE_PROFILE_ID",
                "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
            ),
        ];
        if cfg!(feature = "chirpstack-sync") {
            let s = load(&all).expect("valid");
            let api = s.chirpstack.api().expect("valid").expect("set");
            assert_eq!(api.url, "http://chirpstack:8080");
            assert_eq!(api.token.expose(), "tok.en-1");
            assert_eq!(api.application_id, "6c3e5b1a-93d2-4f0e-8a7b-2d4c6e8f0a1b");
            assert!(
                !format!("{s:?}").contains("tok.en-1"),
                "the token is redacted"
            );
        } else {
            let e = load(&all).expect_err("not built in");
            assert!(e.contains("chirpstack-sync feature"), "{e}");
        }
        let e = load(&all[..2]).expect_err("incomplete");
        assert!(
            e.contains("missing: chirpstack.application_id, chirpstack.device_profile_id"),
            "{e}"
        );
        let mut bad = all;
        bad[0].1 = "chirpstack:8080";
        let e = load(&bad).expect_err("no scheme");
        assert!(
            e.contains("chirpstack.api_url must start with http://"),
            "{e}"
        );
        let mut bad = all;
        bad[2].1 = "app-1";
        let e = load(&bad).expect_err("not a UUID");
        assert!(
            e.contains("chirpstack.application_id \"app-1\" is not a UUID"),
            "{e}"
        );
    }

    #[test]
    fn printed_defaults_parse_back_to_the_defaults() {
        let parsed: Settings = toml::from_str(&commented_defaults()).expect("valid TOML");
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meterhub.toml");
        std::fs::write(
            &path,
            "[mqtt]\nurl = \"mqtt://file:1883\"\nkeep_alive_secs = 10\n[clock]\nspeed = 60\nstart = \"2026-01-01T00:00:00Z\"\n",
        )
        .expect("write");
        let s = Settings::load(
            Some(&path),
            env(&[
                ("METERHUB_MQTT__KEEP_ALIVE_SECS", "20"),
                ("METERHUB_MQTT__URL", "mqtts://env:8883"),
                ("METERHUB_MQTT__PASSWORD", "123456"),
                ("METERHUB_CHIRPSTACK__APPLICATION_IDS", "a, b"),
                ("OTHER_VARIABLE", "ignored"),
                ("METERHUB_TEST_DATABASE_URL", "not a setting"),
                ("METERHUB_CONFIG", "not a setting either"),
            ]),
            Overrides {
                mqtt_url: Some("mqtt://flag:1883".into()),
                ..Overrides::default()
            },
        )
        .expect("valid");
        assert_eq!(s.mqtt.url, "mqtt://flag:1883");
        assert_eq!(s.mqtt.keep_alive_secs, 20);
        assert_eq!(s.mqtt.password, Some(Secret("123456".into())));
        assert_eq!(s.chirpstack.application_ids, ["a", "b"]);
        assert_eq!(s.clock.speed, 60);
        assert_eq!(s.clock.start.as_deref(), Some("2026-01-01T00:00:00Z"));
        // Anchored when loaded, so that every clock made from these settings agrees.
        assert!(s.clock.anchor.is_some());
        assert_eq!(s.clock().expect("clock").speed(), 60);
    }

    #[test]
    fn a_simulated_clock_starts_where_told_on_any_day_and_refuses_to_leave_the_range() {
        let load = |start: &str, anchor: Option<String>| {
            Settings::load(
                None,
                vec![],
                Overrides {
                    clock_speed: Some(86_400),
                    clock_start: Some(start.into()),
                    clock_anchor: anchor,
                    ..Overrides::default()
                },
            )
        };
        // Anchored now: the clock reads the start (give or take the days a slow machine's
        // seconds are worth at this speed).
        let clock = load("2026-01-01T00:00:00Z", None)
            .expect("valid")
            .clock()
            .expect("in range");
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time");
        let days = (clock.now_unix() - start.timestamp()) / 86_400;
        assert!((0..3_650).contains(&days), "{days} days after the start");

        // Anchored a year ago, at a day per second the clock would read some 80 000 years on.
        let year_ago = chrono::Utc::now() - chrono::Duration::days(365);
        let err = load("2026-01-01T00:00:00Z", Some(year_ago.to_rfc3339()))
            .expect("the settings parse")
            .clock()
            .expect_err("out of range");
        let text = format!("{err:#}");
        assert!(text.contains("--clock-anchor"), "{text}");

        // A start before the GPS epoch.
        let err = load("1970-01-01T00:00:00Z", None)
            .expect("the settings parse")
            .clock()
            .expect_err("before 1980");
        assert!(format!("{err:#}").contains("--clock-start"), "{err:#}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut s = Settings::default();
        s.mqtt.password = Some(Secret("hunter2".into()));
        s.database.url = Secret("postgres://u:pw@h/db".into());
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2") && !text.contains("pw@"), "{text}");
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let err = Settings::load(
            None,
            env(&[("METERHUB_MQTT__KEEP_ALIVE_SECS", "soon")]),
            Overrides::default(),
        )
        .expect_err("not an integer");
        assert!(
            format!("{err:#}").contains("METERHUB_MQTT__KEEP_ALIVE_SECS"),
            "{err:#}"
        );

        let err = Settings::load(
            None,
            env(&[("METERHUB_NOPE__X", "1")]),
            Overrides::default(),
        )
        .expect_err("unknown section");
        assert!(format!("{err:#}").contains("nope"), "{err:#}");

        let err = Settings::load(
            None,
            env(&[("METERHUB_UTILITY__TIME_ZONE", "Mars/Olympus")]),
            Overrides::default(),
        )
        .expect_err("bad zone");
        assert!(format!("{err:#}").contains("time_zone"), "{err:#}");

        let err = Settings::load(
            None,
            vec![],
            Overrides {
                clock_speed: Some(100),
                clock_start: Some("soon".into()),
                ..Overrides::default()
            },
        )
        .expect_err("a start that is no time");
        assert!(format!("{err:#}").contains("--clock-start"), "{err:#}");
    }

    #[test]
    fn unknown_keys_in_a_file_are_errors_not_silently_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meterhub.toml");
        std::fs::write(&path, "[mqtt]\nurll = \"mqtt://typo\"\n").expect("write");
        let err = Settings::load(Some(&path), vec![], Overrides::default()).expect_err("typo");
        assert!(format!("{err:#}").contains("urll"), "{err:#}");
    }
}
