//! Time-driven work, done by one instance at a time: the holder of the `scheduler` lease
//! (taken with a conditional UPDATE, so it works on either store) marks overdue meters silent,
//! runs due self-test schedules, expires and times out commands, closes billing periods past
//! their grace and revises closed figures that late readings changed, delivers alarms, and
//! about once an hour removes data older than `[retention]` keeps (`crate::retention`). A
//! run of a schedule occurrence is keyed by (schedule, due time), a closed period by (meter,
//! kind, first day) and a revision by its number, so even two holders (a lease lost mid-run)
//! create each once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_protocol::clock::Clock;
use tokio_util::sync::CancellationToken;

use super::webhook::{Webhook, retry_at};
use crate::billing::{Calendar, PeriodKind, closing};
use crate::cache::Touched;
use crate::config::{MonitorSettings, RetentionSettings};
use crate::downlink::{CommandKind, Downlinks};
use crate::metrics::Metrics;
use crate::storage::Store;
use crate::time::now_utc;

/// The lease's name in the `leases` table.
pub const LEASE: &str = "scheduler";

/// How long a lease lasts without renewal, in ticks: a holder that stops is replaced after
/// this many ticks.
const LEASE_TICKS: u32 = 10;

/// Meters marked silent per pass (a backlog clears over several ticks).
const SILENCE_BATCH: i64 = 5_000;

/// Meters whose period is closed per pass and period kind: a fleet's day closes over a few
/// ticks, each a bounded read and one transaction.
const CLOSE_BATCH: i64 = 2_000;

/// Late readings looked at per pass.
const LATE_BATCH: i64 = 500;

/// Everything the scheduler needs.
pub struct Scheduler {
    /// The store.
    pub store: Store,
    /// The shared clock.
    pub clock: Clock,
    /// To note meters given new commands.
    pub downlinks: Downlinks,
    /// Settings.
    pub settings: MonitorSettings,
    /// Alarm delivery, when configured.
    pub webhook: Option<Webhook>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// This instance's name in the lease.
    pub holder: String,
    /// Where its writes are announced (the API's cache, other instances).
    pub changes: crate::cache::Changes,
    /// The billing calendar: which periods are past their grace.
    pub billing: Calendar,
    /// How long old data is kept.
    pub retention: RetentionSettings,
    /// When retention last ran here: simulated time, and the wall clock's instant.
    pub retention_ran: std::sync::Mutex<Option<(chrono::DateTime<chrono::Utc>, Instant)>>,
}

/// Retention runs at most once per simulated hour, and at most once per wall minute (an
/// accelerated clock would otherwise run it every tick).
const RETENTION_EVERY: chrono::Duration = chrono::Duration::hours(1);
const RETENTION_WALL_EVERY: Duration = Duration::from_secs(60);

impl Scheduler {
    /// Runs until `shutdown`, one pass per tick.
    pub async fn run(self, shutdown: CancellationToken) {
        let tick = Duration::from_secs(self.settings.tick_secs.max(1));
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %format!("{e:#}"), "scheduler pass failed; retrying next tick");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Another instance takes over at once instead of waiting for the lease to lapse.
        if let Err(e) = self.store.release_lease(LEASE, &self.holder).await {
            tracing::debug!(error = %e, "releasing the scheduler lease");
        }
    }

    /// One pass: everything due now, if this instance holds the lease. Returns whether it
    /// did.
    pub async fn pass(&self) -> anyhow::Result<bool> {
        // Commands queued elsewhere (another instance, the REST API of one) become visible.
        self.downlinks.refresh_pending().await?;
        let now = now_utc(&self.clock);
        let lease = self
            .downlinks
            .simulated(self.settings.tick_secs.max(1) * u64::from(LEASE_TICKS));
        if !self
            .store
            .take_lease(LEASE, &self.holder, now, now + lease)
            .await?
        {
            return Ok(false);
        }
        let (silent, write) = self
            .store
            .mark_silent(now, SILENCE_BATCH, |silent| {
                let mut touched = Touched::default();
                for m in silent {
                    touched.add(m.id, &m.region_id);
                }
                self.changes.begin_unless_empty(&touched)
            })
            .await?;
        if let Some(write) = write {
            tracing::info!(meters = silent.len(), "meters marked silent");
            write.announce().await;
        }
        self.run_schedules(now).await?;
        let ((expired, failed), write) = self
            .store
            .sweep_commands(now, |(expired, failed)| {
                let meters = expired.iter().chain(failed).copied();
                self.changes.begin_unless_empty(&Touched::of_meters(meters))
            })
            .await?;
        if let Some(write) = write {
            tracing::debug!(
                expired = expired.len(),
                failed = failed.len(),
                "commands swept"
            );
            write.announce().await;
        }
        self.close_periods(now).await?;
        self.revise_closed(now).await?;
        self.deliver(now).await?;
        self.retain(now).await?;
        Ok(true)
    }

    /// Removes data older than the retention settings keep, when due.
    async fn retain(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        if self.retention == RetentionSettings::default() {
            return Ok(());
        }
        let due = match *self
            .retention_ran
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((at, wall)) => {
                now - at >= RETENTION_EVERY && wall.elapsed() >= RETENTION_WALL_EVERY
            }
            None => true,
        };
        if !due {
            return Ok(());
        }
        // Noted before the run: a failing run is retried at the next interval, not every tick.
        *self
            .retention_ran
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, Instant::now()));
        let report = crate::retention::run(
            &self.store,
            Some(&self.changes),
            &self.retention,
            now,
            false,
        )
        .await?;
        for t in report
            .tables
            .iter()
            .filter(|t| t.rows > 0 || t.partitions.as_ref().is_some_and(|p| !p.is_empty()))
        {
            tracing::info!(
                table = t.table,
                cutoff = %t.cutoff,
                rows = t.rows,
                partitions = ?t.partitions,
                "old data removed"
            );
        }
        Ok(())
    }

    /// Freezes the next chunk of each kind's periods past their grace. The rows are keyed by
    /// (meter, kind, first day) and inserted with ON CONFLICT DO NOTHING: a second holder
    /// closing the same chunk adds nothing, and the progress is the table itself.
    async fn close_periods(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        for kind in PeriodKind::ALL {
            let Some(c) =
                closing::next_closing(&self.store, &self.billing, kind, now, CLOSE_BATCH).await?
            else {
                continue;
            };
            let mut touched = Touched::default();
            for m in &c.meters {
                touched.add(m.id, &m.region_id);
            }
            let (new, write) = self
                .store
                .close_periods(&c.rows, |new| {
                    (*new > 0)
                        .then(|| self.changes.begin_unless_empty(&touched))
                        .flatten()
                })
                .await?;
            if let Some(write) = write {
                write.announce().await;
            }
            tracing::debug!(
                period = kind.as_str(),
                first_day = %c.first_day,
                meters = c.meters.len(),
                new,
                "billing periods closed"
            );
        }
        Ok(())
    }

    /// Recomputes the closed periods around readings that arrived late, adding a revision
    /// to each whose figure changed.
    async fn revise_closed(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        let Some(r) = closing::next_revisions(&self.store, &self.billing, now, LATE_BATCH).await?
        else {
            return Ok(());
        };
        let mut touched = Touched::default();
        for (id, region) in &r.meters {
            touched.add(*id, region);
        }
        let (added, write) = self
            .store
            .revise(&r.revisions, &r.done, |added| {
                (!added.is_empty())
                    .then(|| self.changes.begin_unless_empty(&touched))
                    .flatten()
            })
            .await?;
        if let Some(write) = write {
            write.announce().await;
        }
        if !added.is_empty() {
            tracing::info!(
                revisions = added.len(),
                late_readings = r.done.len(),
                "closed billing figures revised"
            );
        }
        Ok(())
    }

    async fn run_schedules(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        for schedule in self.store.due_schedules(now, 100).await? {
            let kind = CommandKind::SelfTest {
                tests: u8::try_from(schedule.tests).unwrap_or(u8::MAX),
            };
            let frame = match kind.frame() {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(schedule = schedule.id, error = %e, "schedule skipped");
                    continue;
                }
            };
            let expiry = chrono::Duration::minutes(i64::from(schedule.interval_minutes));
            let (run, write) = self
                .store
                .run_schedule(&schedule, &frame, now + expiry, now, |run| {
                    let meters = run.iter().flat_map(|r| &r.meters).map(|(id, _)| *id);
                    self.changes.begin_unless_empty(&Touched::of_meters(meters))
                })
                .await?;
            if let Some(write) = write {
                write.announce().await;
            }
            if let Some(run) = run {
                tracing::info!(
                    schedule = run.schedule_id,
                    due = %run.due_at,
                    meters = run.meters.len(),
                    "self-test schedule ran"
                );
                for (_, d) in run.meters {
                    self.downlinks.mark_pending(d);
                }
            }
        }
        Ok(())
    }

    async fn deliver(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        let Some(webhook) = &self.webhook else {
            return Ok(());
        };
        for item in self.store.due_outbox(now, 100).await? {
            match webhook.deliver(&item).await {
                Ok(()) => {
                    self.metrics.alarms_delivered.inc();
                    self.store.outbox_delivery(item.id, Ok(()), now).await?;
                }
                Err(error) => {
                    self.metrics.alarm_delivery_failures.inc();
                    tracing::warn!(outbox = item.id, %error, "alarm delivery failed; will retry");
                    let again = retry_at(now, item.attempts, u64::from(self.clock.speed()));
                    self.store
                        .outbox_delivery(item.id, Err((&error, again)), now)
                        .await?;
                    // The receiver is likely down: the rest waits for the next tick.
                    break;
                }
            }
        }
        Ok(())
    }
}
