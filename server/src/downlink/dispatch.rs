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
    let (release_tx, release_rx) = mpsc::channel::<String>(TAP_CAPACITY);
    let releaser = tokio::spawn(release_loop(
        downlinks.clone(),
        metrics.clone(),
        release_rx,
        shutdown.clone(),
    ));
    let mut answered = Remembered::default();
    loop {
        let t = tokio::select! {
            t = tapped.recv() => match t { Some(t) => t, None => break },
            _ = shutdown.cancelled() => break,
        };
        let Some(uplink) = read(&template, &t.publish) else {
            continue;
        };
        if let Some(up) = clock_request(&t.publish) {
            answer(
                &downlinks,
                &publisher,
                &metrics,
                &mut answered,
                &uplink,
                &up,
                t.received,
            )
            .await;
        }
        let dev_eui = uplink.dev_eui;
        if downlinks.has_pending(&dev_eui) && release_tx.try_send(dev_eui).is_err() {
            metrics.dispatcher_dropped.inc();
        }
    }
    drop(release_tx);
    let _ = releaser.await;
}

/// Where an `up` event came from, read off its topic.
struct Source {
    /// Lowercase.
    dev_eui: String,
    /// From the topic; `None` when the topic template has no application id, in which case
    /// the event's `deviceInfo` names it.
    application_id: Option<String>,
}

/// The source of an `up` event; `None` for other events.
fn read(template: &Template, publish: &Publish) -> Option<Source> {
    let topic = std::str::from_utf8(&publish.topic).ok()?;
    let parts = template.parse_topic(topic)?;
    if parts.kind != "up" {
        return None;
    }
    Some(Source {
        dev_eui: parts.dev_eui.to_ascii_lowercase(),
        application_id: parts.application_id.map(str::to_owned),
    })
}

/// Just the port of an `up` event: every uplink passes through here, and only clock requests
/// need the whole event, so the rest is skipped rather than built.
#[derive(serde::Deserialize)]
struct Port {
    #[serde(rename = "fPort", default)]
    f_port: u32,
}

/// The event, when it carries a clock-synchronisation frame. Malformed events are the
/// bridge's to quarantine; nothing to answer here.
fn clock_request(publish: &Publish) -> Option<UplinkEvent> {
    let port: Port = serde_json::from_slice(&publish.payload).ok()?;
    if port.f_port != u32::from(PORT_CLOCK_SYNC) {
        return None;
    }
    serde_json::from_slice(&publish.payload).ok()
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
    let Some(application_id) = source
        .application_id
        .as_deref()
        .or_else(|| up.device_info.as_ref().map(|d| d.application_id.as_str()))
    else {
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
            metrics.clock_answers.inc();
            metrics
                .clock_answer_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        Err(e) => {
            metrics.downlink_errors.inc();
            tracing::warn!(error = %e, %dev_eui, "publishing a clock answer failed");
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
    mut rx: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    loop {
        let dev_eui = tokio::select! {
            d = rx.recv() => match d { Some(d) => d, None => break },
            _ = shutdown.cancelled() => break,
        };
        if let Err(e) = downlinks.release(&dev_eui).await {
            metrics.downlink_errors.inc();
            tracing::warn!(error = %e, %dev_eui, "releasing a command failed");
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
