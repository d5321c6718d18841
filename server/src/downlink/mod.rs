//! Downlinks: meterhub's own command queue in front of ChirpStack's.
//!
//! ChirpStack sends one queued item per uplink, first in first out, and its queue cannot be
//! reordered or flushed over MQTT. So every command waits in the `commands` table (the queue
//! and the audit trail) and at most one is released to ChirpStack per meter, right after that
//! meter's uplink and after the answer to any clock request in it ([`dispatch`]). What
//! ChirpStack reports back (`txack`, `ack`, `log`) and the uplinks that answer a command move
//! it through its states inside the ingest transaction.
//!
//! The REST API caches a meter's commands, so every state change made here is announced
//! ([`Changes::committed`]) for its meter right after its commit, like every other write.

pub mod clock_sync;
pub mod dispatch;
pub mod fate;
pub mod kind;
pub mod publisher;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use firmware_protocol::chirpstack::{Bytes, DownlinkCommand, Timestamp};
use firmware_protocol::clock::Clock;
use uuid::Uuid;

pub use kind::{CommandKind, InvalidCommand};
pub use publisher::Publisher;

use crate::cache::{Changes, Pending, Touched};
use crate::config::DownlinkSettings;
use crate::storage::commands::{CommandRow, Reported, Routed};
use crate::storage::lifecycle::ServiceState;
use crate::storage::{Error as StorageError, Store};
use crate::time::now_utc;

/// A command an operator (or a rule) asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    /// The meter.
    pub meter_id: i64,
    /// What to do.
    pub kind: CommandKind,
    /// Who asks (an API key's name, `schedule:7`, `rule:clockDrift`).
    pub requested_by: String,
    /// How long it may wait to be sent; the configured default when `None`.
    pub expires_in: Option<chrono::Duration>,
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The command's arguments are out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    /// No such meter.
    #[error("no meter with id {0}")]
    UnknownMeter(i64),
    /// The meter cannot take commands (disconnected or removed).
    #[error("meter {meter_id} is {status} and takes no commands")]
    Unavailable {
        /// The meter.
        meter_id: i64,
        /// Its status.
        status: String,
    },
    /// The meter is out of service (in stock or destroyed) and takes no commands.
    #[error("meter {meter_id} is {} and takes no commands", state.as_str())]
    OutOfService {
        /// The meter.
        meter_id: i64,
        /// Its state.
        state: ServiceState,
    },
    /// Only some commands can go to a whole region or the fleet.
    #[error("{0} cannot be sent to a whole region or the fleet")]
    NotForRegion(&'static str),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The handle the REST API, the scheduler and the dispatcher share. Cheap to clone.
#[derive(Clone)]
pub struct Downlinks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    settings: DownlinkSettings,
    /// DevEUIs with commands waiting in the table or in ChirpStack's hands: an uplink (or a
    /// join) of any other meter needs no database query. Filled from the table at start and
    /// on every refresh, on enqueue, and when a clock answer goes out.
    pending: Mutex<HashSet<String>>,
    publisher: Option<Publisher>,
    /// Where command state changes are announced (the API caches commands by meter).
    changes: Changes,
}

impl Downlinks {
    /// A handle over `store`; `publisher` is `None` on an instance that only queues
    /// (commands are then released by an instance that dispatches). Every change to a
    /// command is announced on `changes`.
    pub fn new(
        store: Store,
        clock: Clock,
        settings: DownlinkSettings,
        publisher: Option<Publisher>,
        changes: Changes,
    ) -> Downlinks {
        Downlinks {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
                pending: Mutex::new(HashSet::new()),
                publisher,
                changes,
            }),
        }
    }

    /// Where command state changes are announced.
    pub fn changes(&self) -> &Changes {
        &self.inner.changes
    }

    /// Begins a write to a meter's commands: its responses are held until the returned
    /// write is announced (after the commit).
    fn changing(&self, meter_id: i64) -> Pending<'_> {
        self.inner.changes.begin(&Touched::of_meters([meter_id]))
    }

    /// The settings in force.
    pub fn settings(&self) -> &DownlinkSettings {
        &self.inner.settings
    }

    /// The shared clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn now(&self) -> DateTime<Utc> {
        now_utc(&self.inner.clock)
    }

    /// Simulated time spanning `wall` seconds of real time (network-side timeouts are wall
    /// time; an accelerated clock stretches them).
    pub fn simulated(&self, wall_secs: u64) -> chrono::Duration {
        let secs = wall_secs.saturating_mul(u64::from(self.inner.clock.speed()));
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2_000))
    }

    /// Queues a command for one meter; it goes out after the meter's next uplink.
    pub async fn enqueue(&self, request: CommandRequest) -> Result<CommandRow, EnqueueError> {
        let frame = request.kind.frame()?;
        let (dev_eui, status, service) = match self.inner.store.meter_route(request.meter_id).await
        {
            Ok(r) => r,
            Err(StorageError::NotFound) => {
                return Err(EnqueueError::UnknownMeter(request.meter_id));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(state) = ServiceState::parse(&service).filter(|s| *s != ServiceState::InService)
        {
            return Err(EnqueueError::OutOfService {
                meter_id: request.meter_id,
                state,
            });
        }
        if status == "disconnected" || status == "removed" {
            return Err(EnqueueError::Unavailable {
                meter_id: request.meter_id,
                status,
            });
        }
        let row = self.row(request.meter_id, &request, &frame);
        let touched = Touched::of_meters([request.meter_id]);
        let pending = self.inner.changes.begin(&touched);
        self.inner.store.insert_command(&row).await?;
        pending.committed(&touched).await;
        self.mark_pending(dev_eui);
        Ok(row)
    }

    /// Queues a command for every reporting meter of a region (the whole fleet when
    /// `region_id` is `None`): self-tests and the clock-synchronisation requests only, as
    /// commands that move valves or change reporting are decided meter by meter. Returns the
    /// commands.
    pub async fn enqueue_many(
        &self,
        region_id: Option<&str>,
        kind: CommandKind,
        requested_by: &str,
        expires_in: Option<chrono::Duration>,
    ) -> Result<Vec<CommandRow>, EnqueueError> {
        if !matches!(
            kind,
            CommandKind::SelfTest { .. }
                | CommandKind::ForceResync { .. }
                | CommandKind::ClockPeriodicity { .. }
                | CommandKind::PackageVersion
        ) {
            return Err(EnqueueError::NotForRegion(kind.name()));
        }
        let frame = kind.frame()?;
        let meters = self.inner.store.region_routes(region_id).await?;
        let rows: Vec<CommandRow> = meters
            .iter()
            .map(|(id, _)| {
                let request = CommandRequest {
                    meter_id: *id,
                    kind,
                    requested_by: requested_by.to_owned(),
                    expires_in,
                };
                self.row(*id, &request, &frame)
            })
            .collect();
        // Each meter's own list changes: a region's tag would not reach them.
        let touched = Touched::of_meters(meters.iter().map(|(id, _)| *id));
        let pending = self.inner.changes.begin(&touched);
        self.inner.store.insert_commands(&rows).await?;
        pending.committed(&touched).await;
        for (_, dev_eui) in meters {
            self.mark_pending(dev_eui);
        }
        Ok(rows)
    }

    fn row(&self, meter_id: i64, request: &CommandRequest, frame: &kind::Frame) -> CommandRow {
        let now = self.now();
        let expires_in = request.expires_in.unwrap_or_else(|| {
            chrono::Duration::hours(
                i64::try_from(self.inner.settings.command_expiry_hours).unwrap_or(72),
            )
        });
        CommandRow {
            id: Uuid::new_v4(),
            meter_id,
            kind: request.kind.name().into(),
            fport: i16::from(frame.fport),
            payload: frame.payload.clone(),
            confirmed: request.kind.confirmed(),
            requested_by: request.requested_by.clone(),
            state: "pending".into(),
            attempts: 0,
            error: None,
            created_at: now,
            updated_at: now,
            expires_at: now + expires_in,
            sent_at: None,
            completed_at: None,
            deadline_at: None,
            result: None,
            schedule_id: None,
        }
    }

    /// Notes that a meter has commands waiting (created elsewhere: a rule, a schedule).
    pub fn mark_pending(&self, dev_eui: String) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert(dev_eui);
        }
    }

    /// Whether a meter may have commands waiting.
    pub fn has_pending(&self, dev_eui: &str) -> bool {
        self.inner
            .pending
            .lock()
            .map(|p| p.contains(dev_eui))
            .unwrap_or(true)
    }

    /// Reloads the set of meters with waiting commands (commands queued by another
    /// instance, or before a restart).
    pub async fn refresh_pending(&self) -> Result<(), StorageError> {
        let devices = self.inner.store.pending_devices().await?;
        if let Ok(mut p) = self.inner.pending.lock() {
            p.extend(devices);
        }
        Ok(())
    }

    fn patience(&self) -> fate::Patience {
        let s = &self.inner.settings;
        fate::Patience {
            lost_after_uplinks: i32::try_from(s.lost_after_uplinks).unwrap_or(i32::MAX),
            max_attempts: i32::try_from(s.max_attempts).unwrap_or(i32::MAX),
        }
    }

    /// Writes a decision about a command ChirpStack went silent about; whether it changed it.
    async fn settle(
        &self,
        r: &Routed,
        decision: fate::Fate,
        now: DateTime<Utc>,
        settled: &mut Settled,
    ) -> Result<bool, StorageError> {
        let c = &r.command;
        let write = self.changing(c.meter_id);
        let moved = match &decision {
            fate::Fate::Keep => return Ok(false),
            fate::Fate::Requeue(why) => {
                self.inner
                    .store
                    .requeue_command(c.id, &c.state, why, now)
                    .await?
            }
            fate::Fate::Fail(why) => {
                self.inner
                    .store
                    .transition_command(c.id, &[c.state.as_str()], "failed", Some(why), now)
                    .await?
            }
        };
        write.announce().await;
        if moved {
            tracing::info!(dev_eui = %r.dev_eui, command = %c.id, kind = %c.kind, decision = ?decision, "a command ChirpStack went silent about");
            settled.lost += 1;
            if c.kind == fate::CLOCK_ANSWER {
                settled.clock_answers_missed += 1;
            }
        }
        Ok(moved)
    }

    /// After `dev_eui` joined (again) at `joined_at`: ChirpStack flushed its device queue
    /// without a word, so the commands handed over before are re-sent or failed
    /// ([`fate::after_rejoin`]).
    pub async fn rejoined(
        &self,
        dev_eui: &str,
        joined_at: DateTime<Utc>,
    ) -> Result<Settled, StorageError> {
        let mut settled = Settled::default();
        if !self.has_pending(dev_eui) {
            return Ok(settled);
        }
        let now = self.now();
        let open = self.inner.store.open_commands_for_device(dev_eui).await?;
        for r in &open {
            let decision = fate::after_rejoin(&held(r), joined_at, self.patience());
            self.settle(r, decision, now, &mut settled).await?;
        }
        Ok(settled)
    }

    /// Right after an uplink of `dev_eui` heard at `heard_at`: counts it against the commands
    /// ChirpStack holds for the meter and re-sends or fails those it went silent about
    /// ([`fate::after_uplink`]); then hands the oldest waiting command to ChirpStack, unless
    /// one is still in ChirpStack's hands (queued, or confirmed and not yet acknowledged). The
    /// command goes to `application_id`, the application the uplink came from, when known
    /// (the registry's may be wrong, and ChirpStack drops a command for another application
    /// without a word); else to the registry's.
    pub async fn release(
        &self,
        dev_eui: &str,
        application_id: Option<&str>,
        heard_at: DateTime<Utc>,
    ) -> Result<Settled, StorageError> {
        let mut settled = Settled::default();
        let Some(publisher) = &self.inner.publisher else {
            return Ok(settled);
        };
        let now = self.now();
        let mut open = self.inner.store.open_commands_for_device(dev_eui).await?;
        // Only commands handed over (or transmitted) before this uplink wait for it.
        let counted: Vec<Uuid> = open
            .iter()
            .filter(|r| fate::counts_uplinks(&held(r)) && r.command.updated_at < heard_at)
            .map(|r| r.command.id)
            .collect();
        if !counted.is_empty() {
            self.inner.store.count_command_uplink(&counted).await?;
        }
        let mut held_back = false;
        for r in &mut open {
            if !counted.contains(&r.command.id) {
                held_back |= fate::counts_uplinks(&held(r));
                continue;
            }
            r.uplinks_waited += 1;
            let decision = fate::after_uplink(&held(r), self.patience());
            if decision == fate::Fate::Keep {
                held_back = true;
            } else if self.settle(r, decision.clone(), now, &mut settled).await? {
                if let fate::Fate::Requeue(_) = decision {
                    r.command.state = "pending".into();
                } else {
                    r.command.state = "failed".into();
                }
            }
        }
        if open
            .iter()
            .any(|r| fate::in_flight(&r.command.kind, &r.command.state, r.command.confirmed))
        {
            return Ok(settled);
        }
        let mut released = None;
        let mut waiting = 0;
        for r in open.iter().filter(|r| r.command.state == "pending") {
            if released.is_some() {
                waiting += 1;
                continue;
            }
            let c = &r.command;
            if c.expires_at <= now {
                let dropped = Reported::Dropped {
                    state: "expired",
                    error: "not sent before it expired".into(),
                };
                let write = self.changing(c.meter_id);
                self.inner
                    .store
                    .report_command(c.id, &dropped, now, now)
                    .await?;
                write.announce().await;
                continue;
            }
            // Held from before the claim until the command is on its way: a claim is
            // announced after the publish, so a round trip to the database does not delay the
            // command past the meter's receive window.
            let write = self.changing(c.meter_id);
            if !self.inner.store.claim_command(c.id, now).await? {
                // Another instance took it (dropping `write` frees the meter's responses).
                continue;
            }
            let command = DownlinkCommand {
                id: Some(c.id),
                dev_eui: r.dev_eui.to_ascii_lowercase(),
                confirmed: c.confirmed,
                f_port: u8::try_from(c.fport).unwrap_or(firmware_protocol::PORT_COMMAND),
                data: Bytes(c.payload.clone()),
                object: None,
                expires_at: Some(Timestamp(c.expires_at)),
            };
            let application_id = application_id.unwrap_or(&r.application_id);
            if let Err(e) = publisher.send(application_id, &command).await {
                // Not published: back to pending, so it goes with the next uplink under the
                // same id (never a new one while the old may be queued).
                tracing::warn!(error = %e, command = %c.id, "publishing a command failed");
                self.inner.store.unclaim_command(c.id, now).await?;
                write.announce().await;
                return Ok(settled);
            }
            write.announce().await;
            released = Some(c.id);
        }
        // A released command is watched from the next uplink on.
        if waiting == 0
            && released.is_none()
            && !held_back
            && let Ok(mut p) = self.inner.pending.lock()
        {
            p.remove(dev_eui);
        }
        settled.released = released;
        Ok(settled)
    }
}

/// What [`Downlinks::release`] and [`Downlinks::rejoined`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The command handed to ChirpStack.
    pub released: Option<Uuid>,
    /// Commands ChirpStack went silent about, re-sent or failed.
    pub lost: u64,
    /// Of those, clock answers (failed: never re-sent).
    pub clock_answers_missed: u64,
}

fn held(r: &Routed) -> fate::Held<'_> {
    fate::Held {
        kind: &r.command.kind,
        state: &r.command.state,
        confirmed: r.command.confirmed,
        attempts: r.command.attempts,
        uplinks_waited: r.uplinks_waited,
        changed_at: r.command.updated_at,
    }
}
