//! An embedded MQTT broker for machines that have none: meterhub's demo, its tests, and the
//! simulator run stand-alone. It speaks MQTT v5 (as ChirpStack does) and 3.1.1 on two loopback
//! ports, chosen before it starts, and runs on its own thread.
//!
//! A production deployment uses a real broker (Mosquitto, EMQX, HiveMQ…); this one keeps no
//! state on disk and is meant for one machine.
//!
//! ```no_run
//! let broker = meterhub_broker::EmbeddedBroker::start().unwrap();
//! println!("MQTT v5 on {}, 3.1.1 on {}", broker.v5_url(), broker.v4_url());
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// The largest MQTT packet accepted: an uplink heard by many gateways, or with a large codec
/// object, runs to tens of KiB; ChirpStack itself allows far more.
pub const MAX_PACKET_SIZE: usize = 1024 * 1024;

/// A running embedded broker.
///
/// The broker's thread has no way to be stopped (rumqttd offers none); it ends with the
/// process, which suits a demo or a test process.
#[derive(Debug)]
pub struct EmbeddedBroker {
    v5: SocketAddr,
    v4: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on two free loopback ports and waits until both accept connections.
    pub fn start() -> Result<EmbeddedBroker> {
        EmbeddedBroker::start_on(free_port()?, free_port()?)
    }

    /// Starts a broker with the v5 listener on `v5_port` and the 3.1.1 listener on `v4_port`
    /// (loopback), and waits until both accept connections.
    pub fn start_on(v5_port: u16, v4_port: u16) -> Result<EmbeddedBroker> {
        let v5 = SocketAddr::from((Ipv4Addr::LOCALHOST, v5_port));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, v4_port));
        let config = config(v5, v4);
        let mut broker = Broker::new(config);
        thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .context("starting the broker thread")?;
        for addr in [v5, v4] {
            wait_until_listening(addr, Duration::from_secs(10))?;
        }
        tracing::info!(%v5, %v4, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { v5, v4 })
    }

    /// Address of the MQTT v5 listener.
    pub fn v5_addr(&self) -> SocketAddr {
        self.v5
    }

    /// Address of the MQTT 3.1.1 listener.
    pub fn v4_addr(&self) -> SocketAddr {
        self.v4
    }

    /// `mqtt://127.0.0.1:PORT` of the v5 listener.
    pub fn v5_url(&self) -> String {
        format!("mqtt://{}", self.v5)
    }

    /// `mqtt://127.0.0.1:PORT` of the 3.1.1 listener.
    pub fn v4_url(&self) -> String {
        format!("mqtt://{}", self.v4)
    }
}

/// The whole configuration, set explicitly: rumqttd's `Default` has zero limits, which
/// refuse every connection and message.
fn config(v5: SocketAddr, v4: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PACKET_SIZE,
        // Enough for a client that holds many unacknowledged QoS 1 messages while it
        // commits a batch (meterhub's bridge acknowledges after committing).
        max_inflight_count: 10_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen: SocketAddr| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            // Messages sent to one subscriber before its acknowledgements must catch up.
            max_outgoing_packet_count: 10_000,
            // The in-memory log per filter: segments of 100 MiB, ten kept, so a slow
            // subscriber can fall far behind without losing messages.
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server("v4", v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("v5", v5))])),
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the embedded broker did not listen on {addr} within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
