//! The MQTT v5 connection: options for a persistent session with manual acknowledgements, and
//! the one task that owns rumqttc's event loop.
//!
//! The task only polls. It hands every incoming publish to the writer's channel, and every
//! uplink to the downlink dispatcher, and never waits on the database. The channel has room
//! for more than the receive maximum of unacknowledged messages, at which a broker stops
//! sending (Mosquitto 2.0.11 overshoots it when acknowledgements lag): the window, not this
//! task, is what holds the broker back while the writer commits, so a clock request inside it
//! is read and answered at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MqttSettings;
use crate::downlink::dispatch::Tapped;
use crate::metrics::Metrics;

/// An MQTT message waiting to be applied and then acknowledged.
#[derive(Debug)]
pub struct Inbound {
    /// The publish as received; acknowledging needs it whole.
    pub publish: Publish,
    /// When it arrived, for latency figures.
    pub received: Instant,
    /// The connection it arrived on (see [`MqttLink::session`]).
    pub session: u64,
}

/// The running connection: the client (to acknowledge and publish) and the incoming stream.
#[derive(Debug)]
pub struct MqttLink {
    /// The client; cheap to clone.
    pub client: AsyncClient,
    /// Incoming publishes, in arrival order.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Ends when the connection is closed for good.
    pub task: tokio::task::JoinHandle<()>,
    /// The number of the current connection, counted up at every ConnAck. A packet id means
    /// something only on the connection it arrived on: after a reconnect the broker may give
    /// the same id to another message, which an old acknowledgement would then acknowledge
    /// before it is stored. Messages from an older connection are not acknowledged; the broker
    /// delivers them again and the database recognises them.
    pub session: Arc<AtomicU64>,
}

/// The largest MQTT packet accepted: ChirpStack's `up` events grow with every gateway that
/// heard the frame and with the codec's object; rumqttc's default of 10 KiB is too small.
pub const MAX_PACKET_SIZE: u32 = 256 * 1024;

/// Parses `mqtt://host:port` or `mqtts://host:port` into host, port and whether TLS is used.
pub fn parse_url(url: &str) -> Result<(String, u16, bool)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        bail!("MQTT URL {url:?} must start with mqtt:// or mqtts://");
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let port_of = |p: &str| -> Result<u16> {
        p.parse()
            .with_context(|| format!("bad port in MQTT URL {url:?}"))
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("unclosed [ in MQTT URL {url:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, port_of(p)?),
            None if after.is_empty() => (host, default_port),
            None => bail!("bad MQTT URL {url:?}"),
        }
    } else {
        match rest.split_once(':') {
            Some((host, p)) => (host, port_of(p)?),
            None => (rest, default_port),
        }
    };
    let host = host.to_owned();
    if host.is_empty() {
        bail!("MQTT URL {url:?} has no host");
    }
    Ok((host, port, tls))
}

/// The rumqttc options for `settings` and a receive maximum of `receive_maximum`.
pub fn options(settings: &MqttSettings, receive_maximum: u16) -> Result<MqttOptions> {
    let (host, port, tls) = parse_url(&settings.url)?;
    let mut o = MqttOptions::new(settings.client_id.clone(), host, port);
    o.set_keep_alive(Duration::from_secs(u64::from(
        settings.keep_alive_secs.max(5),
    )));
    // A persistent session: the broker keeps our subscription and queues QoS 1 events while
    // we are away, for a day (MQTT 5 needs both clean-start off and an expiry above 0).
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(24 * 3600));
    o.set_receive_maximum(Some(receive_maximum));
    o.set_max_packet_size(Some(MAX_PACKET_SIZE));
    // Acknowledgements are sent by the writers after the database commit.
    o.set_manual_acks(true);
    if let (Some(user), password) = (&settings.username, &settings.password) {
        o.set_credentials(
            user.clone(),
            password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        );
    }
    if tls {
        o.set_transport(Transport::tls_with_config(tls_config(settings)?));
    }
    Ok(o)
}

/// TLS with the ring provider, trusting `ca_file` when given, the system's roots otherwise.
fn tls_config(settings: &MqttSettings) -> Result<TlsConfiguration> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading CA certificates from {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing {}", path.display()))?)
                    .context("adding a CA certificate")?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// Connects (lazily: rumqttc connects on the first poll) and starts the polling task, which
/// subscribes to `filters` on every ConnAck.
pub fn connect(
    settings: &MqttSettings,
    filters: Vec<String>,
    batch_size: usize,
    metrics: Arc<Metrics>,
    tap: Option<mpsc::Sender<Tapped>>,
    shutdown: CancellationToken,
) -> Result<MqttLink> {
    let receive_maximum =
        u16::try_from(batch_size.saturating_mul(RECEIVE_WINDOW_BATCHES)).unwrap_or(u16::MAX);
    let options = options(settings, receive_maximum)?;
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    // Room for everything the broker may have in flight to us, and more: the broker stops at
    // the receive maximum until the writer acknowledges, so this channel is what holds the
    // backlog, and the task polling the connection never has to wait for the writer. Were it
    // to wait, messages already on the socket would sit unread, and with them the clock
    // requests the dispatcher must answer within the device's receive window.
    let (tx, inbound) = mpsc::channel(usize::from(receive_maximum).saturating_mul(INBOUND_SLACK));
    let session = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(poll(
        eventloop,
        client.clone(),
        filters,
        tx,
        metrics,
        tap,
        session.clone(),
        shutdown,
    ));
    Ok(MqttLink {
        client,
        inbound,
        task,
        session,
    })
}

/// Room in rumqttc's request queue. The writer's acknowledgements go through it while this
/// task may be waiting for room in the writer's channel; if the queue could fill, each would wait
/// for the other. It cannot: a broker has at most 65 535 unacknowledged QoS 1 messages out to a
/// client (packet ids are 16 bits), so there are never more acknowledgements pending than
/// that, redeliveries included twice over.
const REQUEST_CAPACITY: usize = 2 * 65_536;

/// The receive maximum, in batches: how many unacknowledged messages the broker may have out
/// to us. Acknowledgements go out only after a batch commits, so the window must hold the
/// batch being committed, the one filling meanwhile, and room to spare: when it is full the
/// broker holds every further message, clock requests included, until a commit ends, and a
/// clock answer must reach ChirpStack within the uplink's receive window (~100 ms), which is
/// about the time a full batch can take to commit. Eight batches (4 000 messages, about 5 MB
/// of events, by default) keep requests flowing up to the bridge's maximum rate.
const RECEIVE_WINDOW_BATCHES: usize = 8;

/// The writer's channel holds this many times the receive maximum. More than one: Mosquitto
/// 2.0 was seen sending beyond the receive maximum while acknowledgements lag.
const INBOUND_SLACK: usize = 4;

/// How long the task keeps polling after shutdown so that the last acknowledgements and the
/// DISCONNECT reach the broker.
const DRAIN: Duration = Duration::from_secs(5);

/// How long, once the DISCONNECT is written, the task waits for the broker to close the
/// connection before closing it itself.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[allow(clippy::too_many_arguments)]
async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    tx: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
    tap: Option<mpsc::Sender<Tapped>>,
    session: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut warned_qos0 = false;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN);
                continue;
            }
            _ = sleep_until(drain_deadline) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                session.fetch_add(1, Ordering::SeqCst);
                backoff = Duration::from_millis(100);
                metrics.mqtt_connected.store(1, Ordering::Relaxed);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                // Subscribing again on every ConnAck: a broker that lost the session (expiry,
                // restart without persistence) would otherwise send nothing.
                for filter in &filters {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, %filter, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack.return_codes.iter().all(|c| {
                    matches!(
                        c,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                });
                metrics
                    .mqtt_subscribed
                    .store(u64::from(granted), Ordering::Relaxed);
                for code in &ack.return_codes {
                    if !matches!(
                        code,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    ) {
                        tracing::error!(?code, "the broker refused a subscription");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                metrics.received.inc();
                if publish.qos == QoS::AtMostOnce {
                    metrics.qos0_events.inc();
                    if !std::mem::replace(&mut warned_qos0, true) {
                        tracing::warn!(
                            "ChirpStack publishes events at QoS 0: events sent while meterhub \
                             is away are lost; set qos = 1 in [integration.mqtt] (docs/chirpstack.md)"
                        );
                    }
                }
                if drain_deadline.is_some() || tx.is_closed() {
                    // Shutting down: left unacknowledged, the broker delivers it again later.
                    continue;
                }
                // Uplinks also go to the downlink dispatcher at once, so that a clock answer
                // does not wait for the batch to commit.
                if let Some(tap) = &tap
                    && tap
                        .try_send(Tapped {
                            publish: publish.clone(),
                            received: Instant::now(),
                        })
                        .is_err()
                {
                    metrics.dispatcher_dropped.inc();
                }
                let item = Inbound {
                    publish,
                    received: Instant::now(),
                    session: session.load(Ordering::SeqCst),
                };
                // Waits only if the broker sends far beyond the receive maximum (the channel
                // has room for four times it); the writer never waits on this task in turn
                // (its acknowledgements are offered without blocking), so the two cannot hold
                // each other up.
                tokio::select! {
                    r = tx.send(item) => if r.is_err() {
                        // The writer has finished: keep polling so that its last
                        // acknowledgements and the DISCONNECT are written.
                        drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN);
                    },
                    _ = shutdown.cancelled() => {
                        drain_deadline = Some(tokio::time::Instant::now() + DRAIN);
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Everything queued before the DISCONNECT, the writer's last acknowledgements
                // included, is written, but perhaps not yet read by the broker. Closing now,
                // with publishes still arriving unread, would make the kernel reset the
                // connection, and the broker would lose what it had not read: it would
                // deliver those messages again. The broker closes the connection once it reads
                // the DISCONNECT; the read error that follows ends the loop.
                let close_by = tokio::time::Instant::now() + CLOSE_WAIT;
                drain_deadline = Some(drain_deadline.map_or(close_by, |d| d.min(close_by)));
            }
            Ok(_) => {}
            Err(e) => {
                if drain_deadline.is_some() {
                    break;
                }
                metrics.mqtt_connected.store(0, Ordering::Relaxed);
                metrics.mqtt_subscribed.store(0, Ordering::Relaxed);
                metrics.mqtt_reconnects.inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    metrics.mqtt_connected.store(0, Ordering::Relaxed);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").expect("valid"),
            ("127.0.0.1".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://broker.example.com").expect("valid"),
            ("broker.example.com".into(), 8883, true)
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1884/").expect("valid"),
            ("::1".into(), 1884, false)
        );
        assert!(parse_url("tcp://x:1").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://h:port").is_err());
    }
}
