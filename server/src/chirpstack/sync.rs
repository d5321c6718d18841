//! A round of the sync (read both sides, diff, apply) and the task that runs rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use firmware_protocol::clock::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::diff::{Difference, comparable, diff, key_mismatches};
use crate::config::ChirpStackApiSettings;
use crate::metrics::Metrics;
use crate::storage::Store;
use meterhub_chirpstack::{ChirpStackApi, NewDevice};

/// How long after the start the first periodic round comes.
const FIRST_ROUND: Duration = Duration::from_secs(5);

/// What a round does besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Change ChirpStack (false: only report, `--dry-run`).
    pub apply: bool,
    /// Also read each device's keys and compare them with the registry's: one call per
    /// device, so only on demand, not in the periodic rounds.
    pub compare_keys: bool,
}

/// What a round found and did.
#[derive(Debug, Default)]
pub struct Round {
    /// Every difference found, in DevEUI order.
    pub differences: Vec<Difference>,
    /// Devices created.
    pub created: usize,
    /// Devices deleted.
    pub deleted: usize,
    /// Devices whose keys were set.
    pub keys_set: usize,
    /// The changes ChirpStack refused: the device and why.
    pub failures: Vec<(String, String)>,
}

impl Round {
    /// Differences the round leaves behind: those only reported, and those it failed to apply
    /// (all of them on a dry run).
    pub fn unresolved(&self, applied: bool) -> usize {
        if applied {
            self.differences.iter().filter(|d| !d.is_applied()).count() + self.failures.len()
        } else {
            self.differences.len()
        }
    }
}

/// Runs one round against the ChirpStack `settings` name.
pub async fn round(
    store: &Store,
    settings: &ChirpStackApiSettings,
    options: Options,
) -> Result<Round> {
    let api = ChirpStackApi::connect(&settings.url, settings.token.expose()).await?;
    // ChirpStack first: a meter installed meanwhile shows as missing now and is created by
    // the next round, never deleted as unknown.
    let devices = api.list_devices(&settings.application_id).await?;
    let meters = store
        .synced_meters()
        .await
        .context("reading the registry's meters and keys")?;
    let app = settings.application_id.as_str();
    let mut differences = diff(app, &meters, &devices);
    if options.compare_keys {
        let mut theirs = HashMap::new();
        for m in comparable(app, &meters, &devices) {
            theirs.insert(m.dev_eui.clone(), api.device_app_key(&m.dev_eui).await?);
        }
        differences.extend(key_mismatches(app, &meters, &theirs));
        differences.sort_by(|a, b| a.dev_eui().cmp(b.dev_eui()));
    }
    let mut round = Round {
        differences,
        ..Round::default()
    };
    if options.apply {
        for d in round.differences.clone() {
            if let Err(e) = apply(&api, settings, &d, &mut round).await {
                round
                    .failures
                    .push((d.dev_eui().to_owned(), format!("{e:#}")));
            }
        }
    }
    Ok(round)
}

/// Applies one difference to ChirpStack.
async fn apply(
    api: &ChirpStackApi,
    settings: &ChirpStackApiSettings,
    d: &Difference,
    round: &mut Round,
) -> Result<()> {
    match d {
        Difference::Missing {
            dev_eui,
            serial,
            keys,
        } => {
            let device = NewDevice {
                dev_eui: dev_eui.clone(),
                join_eui: keys.join_eui.clone(),
                app_key: keys.app_key.clone(),
                name: serial.clone(),
            };
            match api
                .create_device(
                    &settings.application_id,
                    &settings.device_profile_id,
                    &device,
                )
                .await
            {
                Ok(()) => round.created += 1,
                // Created meanwhile (another round, another instance): its keys are made sure of.
                Err(e) if meterhub_chirpstack::already_exists(&e) => {
                    api.put_device_keys(&device).await?;
                    round.keys_set += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Difference::KeyMismatch {
            dev_eui,
            serial,
            keys,
        } => {
            api.put_device_keys(&NewDevice {
                dev_eui: dev_eui.clone(),
                join_eui: keys.join_eui.clone(),
                app_key: keys.app_key.clone(),
                name: serial.clone(),
            })
            .await?;
            round.keys_set += 1;
        }
        Difference::Extra { dev_eui, .. } => {
            api.delete_device(dev_eui).await?;
            round.deleted += 1;
        }
        Difference::MissingWithoutKeys { .. } | Difference::Unknown { .. } => {}
    }
    Ok(())
}

/// The task keeping ChirpStack in step while `meterhub serve` runs.
pub struct SyncTask {
    /// The store.
    pub store: Store,
    /// Where and what to sync.
    pub settings: ChirpStackApiSettings,
    /// Seconds between periodic rounds.
    pub interval: Duration,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The shared clock (the lease's times).
    pub clock: Clock,
    /// This instance's name in the scheduler's lease.
    pub holder: String,
    /// Told after an install or a retirement through this instance's API.
    pub registry_changed: Arc<Notify>,
}

impl SyncTask {
    /// Runs until `shutdown`: a periodic round when this instance holds the scheduler's lease,
    /// and a round after each change this instance's API made (whoever holds the lease: the
    /// change should reach ChirpStack now, and rounds are idempotent).
    pub async fn run(self, shutdown: CancellationToken) {
        // The first round a few seconds after the start: by then the scheduler's first pass
        // has taken the lease (a round at once would find it untaken and wait a whole interval).
        let mut next = tokio::time::Instant::now() + FIRST_ROUND.min(self.interval);
        loop {
            let periodic = tokio::select! {
                _ = tokio::time::sleep_until(next) => true,
                _ = self.registry_changed.notified() => false,
                _ = shutdown.cancelled() => break,
            };
            if periodic {
                next = tokio::time::Instant::now() + self.interval;
                let now = crate::time::now_utc(&self.clock);
                match self
                    .store
                    .holds_lease(crate::monitor::scheduler::LEASE, &self.holder, now)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "ChirpStack sync: reading the scheduler's lease");
                        continue;
                    }
                }
            }
            self.round().await;
        }
    }

    /// One applied round, logged and counted; never fails (the next round retries).
    pub async fn round(&self) {
        let m = &self.metrics;
        m.chirpstack_sync_rounds.inc();
        let options = Options {
            apply: true,
            compare_keys: false,
        };
        match round(&self.store, &self.settings, options).await {
            Ok(r) => {
                m.chirpstack_devices_created.add(r.created as u64);
                m.chirpstack_devices_deleted.add(r.deleted as u64);
                m.chirpstack_sync_failures.add(r.failures.len() as u64);
                m.chirpstack_sync_unresolved.store(
                    r.unresolved(true) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                for (dev_eui, error) in &r.failures {
                    tracing::warn!(%dev_eui, %error, "ChirpStack sync: a change was refused; retried next round");
                }
                for d in r.differences.iter().filter(|d| !d.is_applied()) {
                    tracing::debug!(difference = %d, "ChirpStack sync: left as it is");
                }
                if r.created + r.deleted + r.keys_set > 0 {
                    tracing::info!(
                        created = r.created,
                        deleted = r.deleted,
                        keys_set = r.keys_set,
                        "ChirpStack's device list brought in step"
                    );
                }
            }
            Err(e) => {
                m.chirpstack_sync_failures.inc();
                tracing::warn!(error = %format!("{e:#}"), "ChirpStack sync round failed; retried next round");
            }
        }
    }
}
