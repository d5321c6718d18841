//! `meterhub demo`: the whole system on one machine with nothing installed — the embedded MQTT
//! broker, a SQLite database, the server, and a simulated fleet publishing as ChirpStack
//! would, on an accelerated clock.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use firmware_protocol::clock::Clock;
use meterhub_broker::EmbeddedBroker;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::runner::{self, RunSpec};
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::config::{Secret, Settings};
use crate::registry::import::import_reader;
use crate::storage::Store;
use crate::time::now_utc;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Meters in the fleet.
    pub meters: u32,
    /// Simulated days to run.
    pub days: u32,
    /// Simulated seconds per wall second.
    pub speed: u32,
    /// The SQLite file.
    pub database: PathBuf,
    /// Where the HTTP endpoints listen.
    pub http_bind: std::net::SocketAddr,
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
}

/// Runs the demo to its end (or until `stop`), printing progress through `say`.
pub async fn run(
    options: DemoOptions,
    stop: CancellationToken,
    mut say: impl FnMut(String),
) -> Result<DemoSummary> {
    let broker = EmbeddedBroker::start().context("starting the embedded MQTT broker")?;
    let epoch = std::time::SystemTime::now();
    let clock = Clock::accelerated(options.speed.max(1), epoch).context("clock speed")?;
    let epoch_text = chrono::DateTime::<chrono::Utc>::from(epoch).to_rfc3339();

    let mut settings = Settings::default();
    settings.database.url = Secret(format!("sqlite://{}", options.database.display()));
    settings.mqtt.url = broker.v5_url();
    settings.mqtt.client_id = "meterhub-demo".into();
    settings.http.bind = options.http_bind;
    settings.clock.speed = options.speed.max(1);
    settings.clock.anchor = Some(epoch_text);

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

    let server_stop = CancellationToken::new();
    let app = Application::build(settings, server_stop.clone()).await?;
    say(format!(
        "server on http://{} (try /metrics); broker on {}; {} simulated days at {}x",
        app.http_addr(),
        broker.v5_url(),
        options.days,
        options.speed
    ));
    let run = RunSpec {
        fleet: spec,
        host: broker.v5_addr().ip().to_string(),
        port: broker.v5_addr().port(),
        client_id: "meterhub-demo-fleet".into(),
        duration: Some(i64::from(options.days) * 86_400),
    };
    let mut last = std::time::Instant::now();
    let report = runner::run(run, clock, stop, |r| {
        if last.elapsed() >= Duration::from_secs(2) {
            last = std::time::Instant::now();
            say(format!("fleet: {} uplinks published", r.uplinks));
        }
    })
    .await?;
    say(format!(
        "fleet done: {} uplinks; waiting for the server to commit them",
        report.uplinks
    ));
    // The server commits in batches behind the fleet; give it a moment to catch up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let expected = i64::try_from(report.registered_readings).unwrap_or(i64::MAX);
    let mut stored = store.count_readings().await?;
    while stored < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = store.count_readings().await?;
    }
    say(format!("{stored} readings stored; stopping the server"));
    server_stop.cancel();
    app.run_until_stopped().await?;
    store.close().await;
    Ok(DemoSummary {
        published: report.uplinks,
        expected: report.registered_readings,
        stored,
    })
}
