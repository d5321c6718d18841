//! A private MQTT broker per test.
//!
//! With `METERHUB_TEST_MOSQUITTO` naming a `mosquitto` binary, [`Broker::start`] runs one on a
//! free loopback port with the project's `tests/mosquitto.conf` (queue limits lifted, persistence
//! off). Without it, on a machine with nothing installed, it starts the in-process broker
//! (`meterhub-broker`) instead, unless `METERHUB_REQUIRE_SERVICES=1` demands the real one.
//! [`Broker::mosquitto`] is for tests of Mosquitto itself: they skip under the rule in
//! [`crate::services`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::process::Process;
use crate::services;

/// How long a fresh Mosquitto may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How many free ports to try: another process may take the one picked before the broker binds.
const PORT_ATTEMPTS: usize = 5;

/// A running MQTT broker that only this test uses; stopped when dropped.
#[derive(Debug)]
pub struct Broker {
    kind: BrokerKind,
}

/// The broker implementations, behind the same [`Broker`] methods.
#[derive(Debug)]
enum BrokerKind {
    Mosquitto(Mosquitto),
    /// The in-process broker: v5 and 3.1.1 on separate ports. It cannot be stopped, so it
    /// lives until the test process ends.
    Embedded(meterhub_broker::EmbeddedBroker),
}

impl Broker {
    /// A private broker: Mosquitto when `METERHUB_TEST_MOSQUITTO` is set, otherwise the
    /// in-process broker (or a panic when `METERHUB_REQUIRE_SERVICES=1` forbids that).
    ///
    /// Panics with the broker's log when it cannot be started: the test cannot go on.
    pub async fn start() -> Broker {
        let configured = std::env::var(services::MOSQUITTO_VAR)
            .ok()
            .filter(|v| !v.is_empty());
        if configured.is_none() && !services::services_required() {
            let test = services::current_test().unwrap_or_default();
            eprintln!(
                "note: {test}: {} is not set; using the in-process broker",
                services::MOSQUITTO_VAR
            );
            return match meterhub_broker::EmbeddedBroker::start() {
                Ok(b) => Broker {
                    kind: BrokerKind::Embedded(b),
                },
                Err(e) => panic!("cannot start the in-process broker: {e:#}"),
            };
        }
        match Broker::mosquitto().await {
            Some(b) => b,
            None => unreachable!("the variable is set, or the rule panicked"),
        }
    }

    /// A private Mosquitto, or `None` when the test is skipped because none is configured:
    /// for tests of Mosquitto's own behaviour.
    pub async fn mosquitto() -> Option<Broker> {
        let binary = services::mosquitto_binary()?;
        match Mosquitto::start(&binary).await {
            Ok(mosquitto) => Some(Broker {
                kind: BrokerKind::Mosquitto(mosquitto),
            }),
            Err(e) => panic!("cannot start a private Mosquitto: {e:#}"),
        }
    }

    /// Whether this is the in-process broker rather than Mosquitto.
    pub fn is_embedded(&self) -> bool {
        matches!(self.kind, BrokerKind::Embedded(_))
    }

    /// The host to connect to: always the loopback address.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port the broker listens on (for MQTT v5; Mosquitto serves every version here).
    pub fn port(&self) -> u16 {
        match &self.kind {
            BrokerKind::Mosquitto(m) => m.port,
            BrokerKind::Embedded(b) => b.v5_addr().port(),
        }
    }

    /// The TCP port for MQTT 3.1.1 clients: the same as [`Broker::port`] for Mosquitto, a
    /// second listener for the in-process broker.
    pub fn v311_port(&self) -> u16 {
        match &self.kind {
            BrokerKind::Mosquitto(m) => m.port,
            BrokerKind::Embedded(b) => b.v4_addr().port(),
        }
    }

    /// The broker's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()))
    }

    /// The broker's URL, `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host(), self.port())
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        match &self.kind {
            BrokerKind::Mosquitto(m) => m.process.stderr(),
            BrokerKind::Embedded(_) => "(the in-process broker logs through tracing)".to_owned(),
        }
    }
}

/// A `mosquitto` child process and the folder holding its configuration.
#[derive(Debug)]
struct Mosquitto {
    port: u16,
    // Killed (and its log printed if the test failed) when dropped, before the folder goes.
    process: Process,
    _dir: TempDir,
}

impl Mosquitto {
    async fn start(binary: &Path) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_on(binary, crate::free_port).await
    }

    /// Starts Mosquitto on the first port from `next_port` that it can bind, trying up to
    /// [`PORT_ATTEMPTS`] of them.
    async fn start_on(
        binary: &Path,
        mut next_port: impl FnMut() -> std::io::Result<u16>,
    ) -> anyhow::Result<Mosquitto> {
        let project_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("mosquitto.conf");
        let settings = std::fs::read_to_string(&project_config)
            .with_context(|| format!("cannot read {}", project_config.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("meterhub-mosquitto-")
            .tempdir()
            .context("cannot create a folder for Mosquitto")?;
        let config = dir.path().join("mosquitto.conf");

        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = next_port().context("cannot find a free port")?;
            // Mosquitto 2.0 can include only folders, not files, so the project's settings are
            // copied and this run's listener appended.
            let run_config = format!(
                "{settings}\n# This run's listener.\nlistener {port} 127.0.0.1\nlog_dest stderr\n"
            );
            std::fs::write(&config, run_config)
                .with_context(|| format!("cannot write {}", config.display()))?;

            let mut process = Process::builder(binary)
                .arg("-c")
                .arg(&config)
                .start()
                .with_context(|| format!("cannot run {}", binary.display()))?;
            match wait_until_listening(&mut process, port).await {
                Ok(()) => {
                    return Ok(Mosquitto {
                        port,
                        process,
                        _dir: dir,
                    });
                }
                // Another process took the port between `free_port` and Mosquitto's bind.
                Err(e) if process.stderr().contains("Address already in use") => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        match last_error {
            Some(e) => Err(e.context(format!("no free port in {PORT_ATTEMPTS} attempts"))),
            None => bail!("no attempt to start Mosquitto was made"),
        }
    }
}

/// Waits until this Mosquitto, not some other process, listens on `port`.
///
/// A connect alone proves nothing: when another process took the port first, Mosquitto exits
/// with "Address already in use" and the connect reaches the other listener. So this waits for
/// Mosquitto's own log: with `log_dest stderr`, Mosquitto 2 prints
///
/// ```text
/// 1700000000: Opening ipv4 listen socket on port 1883.
/// 1700000000: mosquitto version 2.0.11 running
/// ```
///
/// The first line comes before the bind (a failed bind follows it with "Error: Address already
/// in use" and an exit); the second only once every listener is bound. Then the port must
/// accept, with Mosquitto still running.
async fn wait_until_listening(process: &mut Process, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    process
        .wait_for_output(
            &format!("Opening ipv4 listen socket on port {port}."),
            left(),
        )
        .await?;
    let running = process.wait_for_output(" running", left()).await?;
    if !running.contains("mosquitto version") {
        bail!(
            "unexpected line while waiting for Mosquitto to run: {running}\n{}",
            process.output()
        );
    }
    process.wait_for_port(port, left()).await
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn mosquitto_moves_to_another_port_when_its_port_is_taken() {
        let Some(binary) = services::mosquitto_binary() else {
            return;
        };
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let taken_port = taken.local_addr().expect("address").port();
        let mut ports = [Ok(taken_port)].into_iter();
        let mut mosquitto =
            Mosquitto::start_on(&binary, || ports.next().unwrap_or_else(crate::free_port))
                .await
                .expect("Mosquitto starts on the next port");
        assert_ne!(mosquitto.port, taken_port);
        assert!(mosquitto.process.is_running());
        assert!(
            mosquitto
                .process
                .stderr()
                .contains(&format!("listen socket on port {}.", mosquitto.port)),
            "{}",
            mosquitto.process.stderr()
        );
    }

    #[tokio::test]
    async fn mosquitto_is_not_started_on_someone_elses_port() {
        let Some(binary) = services::mosquitto_binary() else {
            return;
        };
        // Every port offered is taken: the listener there must not pass for Mosquitto's.
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let taken_port = taken.local_addr().expect("address").port();
        let error = Mosquitto::start_on(&binary, || Ok(taken_port))
            .await
            .expect_err("no port of its own");
        let message = format!("{error:#}");
        assert!(message.contains("Address already in use"), "{message}");
        assert!(message.contains("attempts"), "{message}");
    }
}
