//! The writer: gathers messages into batches bounded by size and time, applies each batch in
//! one transaction, and acknowledges its messages only after the commit.
//!
//! Errors: a transient one (database unreachable, busy, restarting) is retried with backoff,
//! holding every message unacknowledged, so the broker keeps them and, once the channel
//! fills, stops sending; nothing is dropped. A permanent one (a row the database refuses) is
//! isolated by splitting the batch until the one message is found; that message is
//! quarantined with the database's reason and the rest are committed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use firmware_protocol::clock::Clock;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Reason;
use super::classify::{Context, Parsed, Policy, parse, plan};
use super::registry::RegistryCache;
use crate::cache::Touched;
use crate::downlink::Downlinks;
use crate::metrics::Metrics;
use crate::mqtt::{Inbound, Template};
use crate::storage::ingest::{Effect, Outcome, Plan};
use crate::storage::quarantine::NewQuarantined;
use crate::storage::{Error as StorageError, Store};
use crate::time::now_utc;

/// How batches are formed.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Most messages per batch.
    pub batch_size: usize,
    /// Longest a message waits for its batch to fill.
    pub max_wait: Duration,
}

/// Everything the writer needs.
pub struct Writer {
    /// The current MQTT connection's number: acknowledgements go only to messages of it.
    pub session: Arc<std::sync::atomic::AtomicU64>,
    /// The store.
    pub store: Store,
    /// To acknowledge messages.
    pub client: AsyncClient,
    /// The event topic template.
    pub template: Template,
    /// Batch bounds.
    pub settings: IngestSettings,
    /// The shared clock.
    pub clock: Clock,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Rules and command timing.
    pub policy: Policy,
    /// To note meters a batch gave new commands (released at their next uplink).
    pub downlinks: Option<Downlinks>,
    /// Where committed batches are announced (the API's cache, other instances).
    pub changes: crate::cache::Changes,
}

/// Runs until the channel closes or `shutdown` fires; the batch in hand is always finished
/// and acknowledged first.
pub async fn run(
    writer: Writer,
    mut inbound: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
) {
    let mut registry = RegistryCache::default();
    // Acknowledgements not yet handed to rumqttc. Its event loop writes one queued request per
    // turn while it reads incoming messages in bulk, and a broker may send beyond the receive
    // maximum, so its request queue can fill; waiting on it here would stop this loop from
    // taking messages, which would stop the poll task, which drains that queue: a deadlock.
    // They wait here instead, and are offered again after every batch and while idle.
    let mut unsent: VecDeque<(u64, Publish)> = VecDeque::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            m = inbound.recv() => m,
            _ = tokio::time::sleep(Duration::from_millis(10)), if !unsent.is_empty() => {
                writer.flush_acks(&mut unsent);
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + writer.settings.max_wait;
        while batch.len() < writer.settings.batch_size {
            // Take what is already waiting without a timer; wait only when the channel is dry.
            match inbound.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(deadline) => break,
                        m = inbound.recv() => match m {
                            Some(m) => batch.push(m),
                            None => break,
                        },
                    }
                }
            }
        }
        if !writer.commit(&mut registry, &batch, &shutdown).await {
            // Shutting down while the database is away: leave the batch unacknowledged; the
            // broker delivers it again to the next session.
            break;
        }
        for m in &batch {
            unsent.push_back((m.session, m.publish.clone()));
            writer
                .metrics
                .ingest_latency_seconds
                .observe(m.received.elapsed().as_secs_f64());
        }
        writer.flush_acks(&mut unsent);
    }
    // The last acknowledgements: the event loop is still polling until the DISCONNECT.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !unsent.is_empty() && tokio::time::Instant::now() < deadline {
        writer.flush_acks(&mut unsent);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Err(e) = writer.client.disconnect().await {
        tracing::debug!(error = %e, "disconnect");
    }
}

impl Writer {
    /// Hands waiting acknowledgements to rumqttc until its queue is full; those of a replaced
    /// connection are dropped (the broker redelivers them, the database recognises them).
    fn flush_acks(&self, unsent: &mut VecDeque<(u64, Publish)>) {
        let session = self.session.load(Ordering::SeqCst);
        while let Some((s, publish)) = unsent.front() {
            if *s != session {
                self.metrics.stale_acks.inc();
                unsent.pop_front();
                continue;
            }
            match self.client.try_ack(publish) {
                Ok(()) => {
                    self.metrics.acknowledged.inc();
                    unsent.pop_front();
                }
                // Full (or closing): offered again later.
                Err(_) => break,
            }
        }
    }

    /// Plans and commits a batch; false when shutdown interrupted a wait for the database.
    async fn commit(
        &self,
        registry: &mut RegistryCache,
        batch: &[Inbound],
        shutdown: &CancellationToken,
    ) -> bool {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_commit(registry, batch).await {
                Ok(()) => {
                    self.metrics.db_up.store(1, Ordering::Relaxed);
                    self.metrics.batch_size.observe(batch.len() as f64);
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return true;
                }
                Err(e) if !e.is_transient() => {
                    // A refusal outside the split (reading the registry, quarantining a refused
                    // message): keep each message in quarantine rather than stall on it.
                    tracing::error!(error = %e, "the database refuses this batch; quarantining it");
                    match self.refuse_all(batch, &e).await {
                        Ok(()) => return true,
                        Err(e) => tracing::warn!(error = %e, "cannot quarantine the batch either"),
                    }
                    self.metrics.db_retries.inc();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return false,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.metrics.db_up.store(0, Ordering::Relaxed);
                    self.metrics.db_retries.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "database unavailable; holding the batch");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return false,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One attempt: transient errors come back; permanent ones are dealt with here.
    async fn try_commit(
        &self,
        registry: &mut RegistryCache,
        batch: &[Inbound],
    ) -> Result<(), StorageError> {
        let now = now_utc(&self.clock);
        let parsed: Vec<Parsed> = batch
            .iter()
            .map(|m| parse(&self.template, &topic(m), &m.publish.payload))
            .collect();
        let keys = parsed
            .iter()
            .filter_map(Parsed::registry_key)
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let meters = registry.resolve(&self.store, keys).await?;
        let ctx = Context {
            meters: &meters,
            now,
            policy: &self.policy,
        };
        let plans: Vec<Plan> = parsed
            .into_iter()
            .zip(batch)
            .map(|(p, m)| plan(p, &topic(m), &m.publish.payload, &ctx))
            .collect();
        // Held across each commit and bumped after it, before the acknowledgements: a crash
        // in between redelivers the batch, whose replay announces it again.
        let mut touched = Touched::default();
        for m in meters.values() {
            touched.add(m.id, &m.region_id);
        }
        let heard = self.apply(&plans, batch, now, &touched).await?;
        let dev_euis: std::collections::HashMap<i64, &str> = meters
            .values()
            .map(|m| (m.id, m.dev_eui.as_str()))
            .collect();
        for (meter_id, at) in heard {
            if let Some(dev_eui) = dev_euis.get(&meter_id) {
                registry.heard(dev_eui, at);
            }
        }
        Ok(())
    }

    /// Applies plans, splitting around a permanent error until the refused message is found.
    /// Each part that commits is announced as touching `touched` and the meters of the
    /// commands it moved (`txack`, `ack` and `log` events name a command, not a meter).
    /// Returns the meters the committed parts heard and when (their link updates).
    async fn apply(
        &self,
        plans: &[Plan],
        batch: &[Inbound],
        now: chrono::DateTime<chrono::Utc>,
        touched: &Touched,
    ) -> Result<Vec<(i64, chrono::DateTime<chrono::Utc>)>, StorageError> {
        let mut heard = Vec::new();
        // Recursion through an explicit stack: async recursion would need boxing.
        let mut pending = vec![(0, plans.len())];
        while let Some((start, end)) = pending.pop() {
            let held = self
                .store
                .apply_batch(&plans[start..end], now, |outcome| {
                    self.changes
                        .begin(&touched.and_meters(&outcome.command_meters))
                })
                .await;
            match held {
                Ok((outcome, write)) => {
                    write.announce().await;
                    self.count(&plans[start..end], &outcome);
                    for plan in &plans[start..end] {
                        heard.extend(plan.effects.iter().filter_map(|e| match e {
                            Effect::Link(l) => Some((l.meter_id, l.last_seen_at)),
                            _ => None,
                        }));
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) if end - start > 1 => {
                    tracing::debug!(error = %e, "a row was refused; splitting the batch");
                    let mid = start + (end - start) / 2;
                    pending.push((mid, end));
                    pending.push((start, mid));
                }
                Err(e) => self.refuse(&batch[start], &e, now).await?,
            }
        }
        Ok(heard)
    }

    /// Quarantines one message with the database's reason for refusing it.
    async fn refuse(
        &self,
        m: &Inbound,
        error: &StorageError,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StorageError> {
        let topic = topic(m);
        let dev_eui = self
            .template
            .parse_topic(&topic)
            .map(|p| p.dev_eui.to_ascii_lowercase());
        tracing::warn!(
            error = %error,
            dev_eui = dev_eui.as_deref().unwrap_or("unknown"),
            %topic,
            "the database refused a message; quarantined"
        );
        let refused = Plan {
            identity: None,
            effects: vec![Effect::Quarantine(NewQuarantined {
                received_at: now,
                topic: topic.into_owned(),
                payload: m.publish.payload.to_vec(),
                reason: Reason::Refused.as_str().to_owned(),
                detail: database_reason(error),
                dev_eui,
            })],
            origin: None,
        };
        // The quarantine list is a fleet-wide response.
        let (outcome, write) = self
            .store
            .apply_batch(std::slice::from_ref(&refused), now, |_| {
                self.changes.begin(&Touched::default())
            })
            .await?;
        write.announce().await;
        self.count(std::slice::from_ref(&refused), &outcome);
        Ok(())
    }

    async fn refuse_all(
        &self,
        batch: &[Inbound],
        error: &StorageError,
    ) -> Result<(), StorageError> {
        let now = now_utc(&self.clock);
        for m in batch {
            self.refuse(m, error, now).await?;
        }
        Ok(())
    }

    fn count(&self, plans: &[Plan], outcome: &Outcome) {
        let m = &self.metrics;
        for (plan, applied) in plans.iter().zip(&outcome.applied) {
            if !applied {
                m.duplicates.inc();
                continue;
            }
            let mut quarantined = false;
            for e in &plan.effects {
                if let Effect::Quarantine(q) = e {
                    quarantined = true;
                    if let Some(r) = Reason::from_name(&q.reason) {
                        m.quarantine(r);
                        if r == Reason::Protobuf && m.quarantined[r.index()].get() == 1 {
                            tracing::error!(
                                "ChirpStack publishes protobuf, not JSON: every event is being \
                                 quarantined; set json = true in [integration.mqtt] \
                                 (docs/chirpstack.md)"
                            );
                        }
                    }
                }
            }
            if !quarantined {
                m.decoded.inc();
            }
        }
        for _ in &outcome.conflicts {
            m.quarantine(Reason::ConflictingReading);
        }
        m.readings_stored.add(outcome.readings);
        m.alarms_stored.add(outcome.alarms);
        m.clock_answers_late.add(outcome.clock_answers_late);
        m.clock_answers_missed.add(outcome.clock_answers_missed);
        if let Some(d) = &self.downlinks {
            for dev_eui in &outcome.pending_devices {
                d.mark_pending(dev_eui.clone());
            }
        }
    }
}

fn topic(m: &Inbound) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&m.publish.topic)
}

/// The database's own words for a refusal, without connection details.
fn database_reason(e: &StorageError) -> String {
    match e {
        StorageError::Db(sqlx::Error::Database(db)) => db.message().to_owned(),
        other => other.to_string(),
    }
}
