//! The dispatcher: sees every `up` event as it arrives, before the bridge batches it, so that
//! a clock answer makes the uplink's receive window (ChirpStack looks at the queue about
//! 100 ms after publishing the uplink). Then, on a task of its own, it releases the meter's
//! next waiting command.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use firmware_protocol::chirpstack::{Bytes, DownlinkCommand, Timestamp, UplinkEvent};
use firmware_protocol::{PORT_CLOCK_SYNC, Uplink, decode_uplink};
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::clock_sync::{answer_frame, answer_id, reference_gps_seconds};
use super::{Downlinks, Publisher};
use crate::metrics::Metrics;
use crate::mqtt::Template;
use crate::time::now_utc;

/// An uplink as the MQTT task hands it over.
#[derive(Debug)]
pub struct Tapped {
    /// The message.
    pub publish: Publish,
    /// When it arrived.
    pub received: Instant,
}

/// Room for uplinks waiting for the dispatcher; beyond it they are counted and their clock
/// requests go unanswered (the device asks again), the bridge still stores them.
pub const TAP_CAPACITY: usize = 65_536;

/// How many answered uplinks are remembered to refuse a replay a second answer.
const REMEMBERED: usize = 200_000;

/// Runs until `shutdown`.
pub async fn run(
    downlinks: Downlinks,
    publisher: Publisher,
    template: Template,
    metrics: Arc<Metrics>,
    mut tapped: mpsc::Receiver<Tapped>,
    shutdown: CancellationToken,
) {
    let (release_tx, release_rx) = mpsc::channel::<Heard>(TAP_CAPACITY);
    let releaser = tokio::spawn(release_loop(
        downlinks.clone(),
        metrics.clone(),
        release_rx,
        shutdown.clone(),
    ));
    let mut answered = Remembered::default();
    loop {
        let t = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            t = tapped.recv() => match t { Some(t) => t, None => break },
        };
        let Some(mut uplink) = read(&template, &t.publish) else {
            continue;
        };
        let header: Header = serde_json::from_slice(&t.publish.payload).unwrap_or_default();
        if uplink.application_id.is_none() {
            uplink.application_id = header
                .device_info
                .map(|d| d.application_id)
                .filter(|a| !a.is_empty());
        }
        let now = now_utc(downlinks.clock());
        if uplink.joined {
            // ChirpStack's clock, as the times of the commands' reports; never ahead of ours.
            let at = header.time.map_or(now, |t| t.0.min(now));
            if downlinks.has_pending(&uplink.dev_eui)
                && release_tx
                    .try_send(Heard {
                        dev_eui: uplink.dev_eui,
                        application_id: uplink.application_id,
                        at,
                        joined: true,
                    })
                    .is_err()
            {
                metrics.dispatcher_dropped.inc();
            }
            continue;
        }
        if header.f_port == u32::from(PORT_CLOCK_SYNC)
            && let Ok(up) = serde_json::from_slice::<UplinkEvent>(&t.publish.payload)
        {
            // Every line logged on the way names the meter.
            let span = tracing::info_span!("clock_answer", dev_eui = %uplink.dev_eui);
            answer(
                &downlinks,
                &publisher,
                &metrics,
                &mut answered,
                &uplink,
                &up,
                t.received,
            )
            .instrument(span)
            .await;
        }
        if downlinks.has_pending(&uplink.dev_eui)
            && release_tx
                .try_send(Heard {
                    dev_eui: uplink.dev_eui,
                    application_id: uplink.application_id,
                    at: now,
                    joined: false,
                })
                .is_err()
        {
            metrics.dispatcher_dropped.inc();
        }
    }
    drop(release_tx);
    let _ = releaser.await;
}

/// Where an `up` event came from, read off its topic (and its `deviceInfo`).
struct Source {
    /// Lowercase.
    dev_eui: String,
    /// The ChirpStack application the device is in now: from the topic, or the event's
    /// `deviceInfo` when the topic template has no application id.
    application_id: Option<String>,
    /// A `join` event rather than an `up`.
    joined: bool,
}

/// A meter just heard (or joined), whose commands may need attention.
#[derive(Debug)]
struct Heard {
    dev_eui: String,
    /// The application its uplink came from; the registry's may be stale or wrong, and
    /// ChirpStack silently drops a command addressed to another application.
    application_id: Option<String>,
    /// When it was heard (a join: when it joined).
    at: chrono::DateTime<chrono::Utc>,
    /// A join: ChirpStack flushed what it held for the meter.
    joined: bool,
}

/// The source of an `up` or `join` event; `None` for other events.
fn read(template: &Template, publish: &Publish) -> Option<Source> {
    let topic = std::str::from_utf8(&publish.topic).ok()?;
    let parts = template.parse_topic(topic)?;
    if parts.kind != "up" && parts.kind != "join" {
        return None;
    }
    Some(Source {
        dev_eui: parts.dev_eui.to_ascii_lowercase(),
        application_id: parts.application_id.map(str::to_owned),
        joined: parts.kind == "join",
    })
}

/// Just the port and application of an `up` event: every uplink passes through here, and only
/// clock requests need the whole event, so the rest is skipped rather than built. Malformed
/// events are the bridge's to quarantine: here they read as port 0 of no application.
#[derive(serde::Deserialize, Default)]
struct Header {
    #[serde(rename = "fPort", default)]
    f_port: u32,
    #[serde(rename = "deviceInfo", default)]
    device_info: Option<HeaderDevice>,
    #[serde(default)]
    time: Option<Timestamp>,
}

#[derive(serde::Deserialize)]
struct HeaderDevice {
    #[serde(rename = "applicationId", default)]
    application_id: String,
}

async fn answer(
    downlinks: &Downlinks,
    publisher: &Publisher,
    metrics: &Metrics,
    answered: &mut Remembered,
    source: &Source,
    up: &UplinkEvent,
    received: Instant,
) {
    let dev_eui = source.dev_eui.as_str();
    let Some(application_id) = source.application_id.as_deref() else {
        return;
    };
    let Some(command) = clock_answer(downlinks, dev_eui, up) else {
        return;
    };
    let id = command.id.unwrap_or_default();
    if !answered.insert(id) {
        metrics.clock_replays.inc();
        return;
    }
    match publisher.send(application_id, &command).await {
        Ok(()) => {
            // Watched at the meter's next uplink: an answer not transmitted by then is late
            // or lost.
            downlinks.mark_pending(dev_eui.to_owned());
            metrics.clock_answers.inc();
            metrics
                .clock_answer_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        Err(e) => {
            metrics.downlink_errors.inc();
            tracing::warn!(error = %e, "publishing a clock answer failed");
        }
    }
}

/// The `command/down` answering the AppTimeReq in an uplink, if it has one that needs an
/// answer. Also used by the bridge to record the answer in the audit trail: both derive the
/// same id from the uplink.
pub fn clock_answer(
    downlinks: &Downlinks,
    dev_eui: &str,
    up: &UplinkEvent,
) -> Option<DownlinkCommand> {
    let now = now_utc(downlinks.clock());
    let expires_at = now + downlinks.simulated(downlinks.settings().answer_expiry_secs);
    clock_answer_at(dev_eui, up, now, expires_at)
}

/// [`clock_answer`] at a given time.
pub fn clock_answer_at(
    dev_eui: &str,
    up: &UplinkEvent,
    now: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Option<DownlinkCommand> {
    if up.f_port != u32::from(PORT_CLOCK_SYNC) || up.deduplication_id.is_empty() {
        return None;
    }
    let Ok(Uplink::ClockSync(requests)) = decode_uplink(PORT_CLOCK_SYNC, up.data.as_slice()) else {
        return None;
    };
    let (reference, _) = reference_gps_seconds(up, now);
    let frame = answer_frame(&requests, reference)?;
    let mut data = [0u8; 64];
    let n = frame.encode(&mut data).ok()?;
    Some(DownlinkCommand {
        id: Some(answer_id(&up.deduplication_id)),
        dev_eui: dev_eui.to_ascii_lowercase(),
        confirmed: false,
        f_port: PORT_CLOCK_SYNC,
        data: Bytes(data[..n].to_vec()),
        object: None,
        expires_at: Some(Timestamp(expires_at)),
    })
}

async fn release_loop(
    downlinks: Downlinks,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Heard>,
    shutdown: CancellationToken,
) {
    loop {
        // Shutdown first: during an outage each release takes its read timeout, and a backlog
        // of them would hold the stop.
        let heard = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        let dev_eui = heard.dev_eui.as_str();
        // Every line logged on the way (a command published, lost, failed) names the meter.
        let span = tracing::info_span!("release", dev_eui = %dev_eui, joined = heard.joined);
        let done = if heard.joined {
            downlinks.rejoined(dev_eui, heard.at).instrument(span).await
        } else {
            downlinks
                .release(dev_eui, heard.application_id.as_deref(), heard.at)
                .instrument(span)
                .await
        };
        match done {
            Ok(settled) => {
                metrics.commands_lost.add(settled.lost);
                metrics
                    .clock_answers_missed
                    .add(settled.clock_answers_missed);
            }
            Err(e) => {
                metrics.downlink_errors.inc();
                tracing::warn!(error = %e, "releasing a command failed");
            }
        }
    }
}

/// A bounded set of ids, oldest forgotten first.
#[derive(Default)]
struct Remembered {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Remembered {
    /// Adds `id`; false when it was already there.
    fn insert(&mut self, id: Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
