//! Applying a batch of events in one transaction, exactly once each.
//!
//! Each message becomes a [`Plan`]: the identity of its event (if it has one) and the effects
//! it has. The transaction first records every identity; only plans whose identity is new (or
//! that have none) have their effects applied, so a redelivered or duplicated event changes
//! nothing, across restarts and across instances sharing a subscription.

use chrono::{DateTime, Utc};

use super::alarms::NewAlarm;
use super::commands::{CommandRow, Reported};
use super::identities::EventIdentity;
use super::meters::{InfoUpdate, LinkUpdate};
use super::quarantine::NewQuarantined;
use super::readings::StoredReading;
use super::self_tests::StoredSelfTest;
use crate::monitor::rules::{Observed, Rules};

/// One thing an event does to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Store a reading.
    Reading(StoredReading),
    /// Store an alarm raised by a meter.
    AlarmRaised(NewAlarm),
    /// A meter reports an alarm condition ended.
    AlarmCleared {
        /// The meter.
        meter_id: i64,
        /// The alarm kind.
        kind: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Store a self-test result.
    SelfTest(StoredSelfTest),
    /// Record a device-info message.
    Info(InfoUpdate),
    /// The meter was heard.
    Link(LinkUpdate),
    /// Keep the message in quarantine.
    Quarantine(NewQuarantined),
    /// Record a command (a clock answer already sent); nothing if its id exists.
    RecordCommand(CommandRow),
    /// ChirpStack reported on a queue item.
    CommandReport {
        /// The queue item: our command id.
        id: uuid::Uuid,
        /// What happened.
        reported: Reported,
        /// When a sent command that waits for an answer fails without one.
        deadline: DateTime<Utc>,
        /// When.
        at: DateTime<Utc>,
    },
    /// An uplink answered the meter's oldest sent command of one of these kinds.
    Complete {
        /// The meter.
        meter_id: i64,
        /// The kinds this uplink answers.
        kinds: &'static [&'static str],
        /// What it answered (JSON).
        result: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A reading for the alarm rules and the clock-drift check.
    Observe(Observation),
    /// A meter's status report (ChirpStack's `status` event): kept if it is its latest.
    DeviceStatus(super::device_status::DeviceStatus),
    /// A reading dated so long ago that it may fall in a closed billing period: noted for the
    /// scheduler, which recomputes the closed figures around it.
    LateReading {
        /// The meter.
        meter_id: i64,
        /// The reading's time.
        reading_time: DateTime<Utc>,
    },
}

/// A reading as the rules see it, with what acting on it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The meter.
    pub meter_id: i64,
    /// Its DevEUI (to release a resynchronisation request).
    pub dev_eui: String,
    /// The reading.
    pub observed: Observed,
    /// The thresholds.
    pub rules: Rules,
    /// When a resynchronisation request made now expires.
    pub resync_expires_at: DateTime<Utc>,
    /// When it was received.
    pub at: DateTime<Utc>,
}

/// What one message does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The event's identity; `None` for messages that have none (malformed ones).
    pub identity: Option<EventIdentity>,
    /// Its effects, applied only the first time its identity is seen.
    pub effects: Vec<Effect>,
    /// The message, when part of it may have to be quarantined once the stored data is
    /// seen (a reading that conflicts with a stored one).
    pub origin: Option<Origin>,
}

/// A message as received, for its quarantine row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    /// MQTT topic.
    pub topic: String,
    /// The payload exactly as received.
    pub payload: Vec<u8>,
    /// The device.
    pub dev_eui: Option<String>,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// For each plan: whether its effects were applied (false: a duplicate).
    pub applied: Vec<bool>,
    /// Readings stored.
    pub readings: u64,
    /// Alarms stored.
    pub alarms: u64,
    /// DevEUIs of meters given a new pending command by this batch.
    pub pending_devices: Vec<String>,
    /// Meters whose commands this batch created or moved (a report names only its command,
    /// so its meter is known here, not from the event).
    pub command_meters: Vec<i64>,
    /// Plans (by index) whose reading was not stored because a reading of the same meter
    /// and time with other values is: their messages were quarantined.
    pub conflicts: Vec<usize>,
    /// Clock answers ChirpStack transmitted only after a later uplink of their meter.
    pub clock_answers_late: u64,
    /// Clock answers ChirpStack dropped (expired, failed).
    pub clock_answers_missed: u64,
}

impl Effect {
    /// The meter this effect writes to, when it names one (a command report names only its
    /// command, a quarantined message no meter).
    pub fn meter_id(&self) -> Option<i64> {
        match self {
            Effect::Reading(r) => Some(r.meter_id),
            Effect::AlarmRaised(a) => Some(a.meter_id),
            Effect::AlarmCleared { meter_id, .. }
            | Effect::Complete { meter_id, .. }
            | Effect::LateReading { meter_id, .. } => Some(*meter_id),
            Effect::SelfTest(t) => Some(t.meter_id),
            Effect::Info(i) => Some(i.meter_id),
            Effect::Link(l) => Some(l.meter_id),
            Effect::RecordCommand(c) => Some(c.meter_id),
            Effect::Observe(o) => Some(o.meter_id),
            Effect::DeviceStatus(s) => Some(s.meter_id),
            Effect::Quarantine(_) | Effect::CommandReport { .. } => None,
        }
    }
}

/// Every meter the plans name, ascending and once each: the order in which the ingest
/// transaction locks them.
pub(crate) fn meters_named(plans: &[Plan]) -> Vec<i64> {
    let mut ids: Vec<i64> = plans
        .iter()
        .flat_map(|p| p.effects.iter().filter_map(Effect::meter_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Chooses which plans to apply: identities not seen before, first occurrence in the batch.
pub(crate) fn select(plans: &[Plan], new: &std::collections::HashSet<EventIdentity>) -> Vec<bool> {
    let mut taken = std::collections::HashSet::new();
    plans
        .iter()
        .map(|p| match &p.identity {
            None => true,
            Some(id) => new.contains(id) && taken.insert(id.clone()),
        })
        .collect()
}

/// Merges the link updates of one meter into one (the latest wins, battery from the latest
/// reading that had it), so each meter's row is written once per batch.
pub(crate) fn merge_links<'a>(links: impl Iterator<Item = &'a LinkUpdate>) -> Vec<LinkUpdate> {
    let mut by_meter: std::collections::BTreeMap<i64, LinkUpdate> = Default::default();
    for l in links {
        by_meter
            .entry(l.meter_id)
            .and_modify(|m| {
                if l.last_seen_at >= m.last_seen_at {
                    let keep_battery = (m.battery_millivolts, m.battery_percent);
                    *m = LinkUpdate {
                        battery_millivolts: l.battery_millivolts.or(keep_battery.0),
                        battery_percent: l.battery_percent.or(keep_battery.1),
                        ..l.clone()
                    };
                }
            })
            .or_insert_with(|| l.clone());
    }
    by_meter.into_values().collect()
}

/// The quarantine row of a message whose reading conflicts with a stored one.
fn conflict(
    origin: &Origin,
    r: &StoredReading,
    fields: &[&str],
    now: DateTime<Utc>,
) -> NewQuarantined {
    NewQuarantined {
        received_at: now,
        topic: origin.topic.clone(),
        payload: origin.payload.clone(),
        reason: crate::uplink::Reason::ConflictingReading
            .as_str()
            .to_owned(),
        detail: format!(
            "meter {} already has a reading at {} with other {}; this one was not stored",
            r.meter_id,
            r.reading_time
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            fields.join(", ")
        ),
        dev_eui: origin.dev_eui.clone(),
    }
}

/// Generates `apply` for one database.
macro_rules! apply_for {
    ($db:ty, $dialect:ident) => {
        /// Records identities and applies the effects of new events, inside the caller's
        /// transaction.
        pub(crate) async fn apply(
            conn: &mut <$db as sqlx::Database>::Connection,
            plans: &[Plan],
            now: DateTime<Utc>,
        ) -> crate::storage::Result<Outcome> {
            use crate::storage::{
                alarms, billing_periods, commands, device_status, identities, meters, monitor,
                quarantine, readings, self_tests,
            };

            // First, every meter the batch names, locked in id order (on PostgreSQL; SQLite
            // has one writer) with the rules' state read in the same statement: two instances
            // on a shared subscription wait for each other's common meters instead of taking
            // them in opposite orders and deadlocking.
            let states: std::collections::HashMap<i64, crate::monitor::rules::MeterState> =
                monitor::$dialect::states(conn, &meters_named(plans))
                    .await?
                    .into_iter()
                    .collect();
            let ids: Vec<EventIdentity> = {
                let mut seen = std::collections::HashSet::new();
                let mut ids: Vec<EventIdentity> = plans
                    .iter()
                    .filter_map(|p| p.identity.clone())
                    .filter(|id| seen.insert(id.clone()))
                    .collect();
                // Their unique index's entries are taken in one order too (an event redelivered
                // to the other instance while this one still holds it).
                ids.sort_unstable_by(|a, b| {
                    (&a.event_id, &a.event_type).cmp(&(&b.event_id, &b.event_type))
                });
                ids
            };
            let new = identities::$dialect::record(conn, &ids, now).await?;
            let applied = select(plans, &new);

            let mut rows = Vec::new();
            let mut row_plans = Vec::new();
            let mut raised = Vec::new();
            let mut cleared = Vec::new();
            let mut tests = Vec::new();
            let mut infos = Vec::new();
            let mut links = Vec::new();
            let mut kept = Vec::new();
            let mut records = Vec::new();
            let mut reports = Vec::new();
            let mut completions = Vec::new();
            let mut observations = Vec::new();
            let mut statuses = Vec::new();
            let mut late = Vec::new();
            for (i, (plan, _)) in plans
                .iter()
                .zip(&applied)
                .enumerate()
                .filter(|(_, (_, a))| **a)
            {
                for effect in &plan.effects {
                    match effect {
                        Effect::Reading(r) => {
                            rows.push(r.clone());
                            row_plans.push(i);
                        }
                        Effect::AlarmRaised(a) => raised.push(a.clone()),
                        Effect::AlarmCleared { meter_id, kind, at } => {
                            cleared.push((*meter_id, kind.clone(), *at))
                        }
                        Effect::SelfTest(t) => tests.push(t.clone()),
                        Effect::Info(i) => infos.push(i.clone()),
                        Effect::Link(l) => links.push(l.clone()),
                        Effect::Quarantine(q) => kept.push(q.clone()),
                        Effect::RecordCommand(c) => records.push(c),
                        Effect::CommandReport {
                            id,
                            reported,
                            deadline,
                            at,
                        } => reports.push((*id, reported, *deadline, *at)),
                        Effect::Complete {
                            meter_id,
                            kinds,
                            result,
                            at,
                        } => completions.push((*meter_id, *kinds, result, *at)),
                        Effect::Observe(o) => observations.push(o),
                        Effect::DeviceStatus(s) => statuses.push(s),
                        Effect::LateReading {
                            meter_id,
                            reading_time,
                        } => late.push((*meter_id, *reading_time)),
                    }
                }
            }
            let readings = readings::$dialect::insert(conn, &rows).await?;
            billing_periods::$dialect::note_late(conn, &late, now).await?;
            // A reading not inserted has a stored one at its time: a replay by another path
            // (the same values) changes nothing, other values are kept in quarantine.
            let mut conflicts = Vec::new();
            if readings < rows.len() as u64 {
                let stored = readings::$dialect::stored(conn, &rows).await?;
                for (r, &i) in rows.iter().zip(&row_plans) {
                    let Some(s) = stored.get(&(r.meter_id, r.reading_time)) else {
                        continue;
                    };
                    let fields = readings::differences(s, r);
                    if fields.is_empty() || conflicts.contains(&i) {
                        continue;
                    }
                    conflicts.push(i);
                    if let Some(origin) = &plans[i].origin {
                        kept.push(conflict(origin, r, &fields, now));
                    }
                }
            }
            let pending_devices = {
                // A reading older than its meter's latest is judged against the stored readings
                // either side of it in time (stored above, with the rest of the batch).
                let older: Vec<(i64, DateTime<Utc>)> = observations
                    .iter()
                    .filter(|o| {
                        o.observed.register.is_some()
                            && states
                                .get(&o.meter_id)
                                .and_then(|s| s.register_at)
                                .is_some_and(|t| o.observed.at < t)
                    })
                    .map(|o| (o.meter_id, o.observed.at))
                    .collect();
                let neighbours = readings::$dialect::neighbours_of(conn, &older)
                    .await?
                    .into_iter()
                    .map(|(k, (before, after))| {
                        (k, crate::monitor::rules::Neighbours { before, after })
                    })
                    .collect();
                crate::monitor::evaluate_batch(states, &observations, &neighbours, &mut raised)
            };
            let mut command_meters = Vec::new();
            let state_updates;
            let pending_devices = {
                let (updates, resyncs, devices) = pending_devices;
                // Written with the link state at the end, in one statement where it can be.
                state_updates = updates;
                let ids: Vec<i64> = resyncs.iter().map(|c| c.meter_id).collect();
                let open = commands::$dialect::meters_with_open(conn, &ids, "forceResync").await?;
                // A meter out of service (in stock, destroyed) that still transmits is sent
                // nothing.
                let retired =
                    crate::storage::lifecycle::$dialect::not_in_service(conn, &ids).await?;
                let wanted: Vec<(&commands::CommandRow, String)> = resyncs
                    .iter()
                    .zip(devices)
                    .filter(|(c, _)| !open.contains(&c.meter_id) && !retired.contains(&c.meter_id))
                    .collect();
                let rows: Vec<&commands::CommandRow> = wanted.iter().map(|(c, _)| *c).collect();
                let new = commands::$dialect::record_all(conn, &rows).await?;
                let mut released = Vec::new();
                for (command, device) in wanted {
                    if new.contains(&command.id) {
                        command_meters.push(command.meter_id);
                        released.push(device);
                    }
                }
                released
            };
            // Commands first (a clock answer is recorded before its txack is applied), then
            // what ChirpStack reported, then what uplinks answered.
            let new = commands::$dialect::record_all(conn, &records).await?;
            command_meters.extend(
                records
                    .iter()
                    .filter(|c| new.contains(&c.id))
                    .map(|c| c.meter_id),
            );
            let mut clock_answers_late = 0;
            let mut clock_answers_missed = 0;
            for (id, reported, deadline, at) in reports {
                if let Some(done) =
                    commands::$dialect::report(conn, id, reported, deadline, at).await?
                {
                    command_meters.push(done.meter_id);
                    clock_answers_late += u64::from(done.late_clock_answer);
                    clock_answers_missed += u64::from(done.missed_clock_answer);
                }
            }
            if !completions.is_empty() {
                let mut ids: Vec<i64> = completions.iter().map(|c| c.0).collect();
                ids.sort_unstable();
                ids.dedup();
                let waiting: std::collections::HashSet<i64> =
                    commands::$dialect::meters_awaiting_answers(conn, &ids)
                        .await?
                        .into_iter()
                        .collect();
                for (meter_id, kinds, result, at) in completions {
                    if waiting.contains(&meter_id)
                        && commands::$dialect::complete(conn, meter_id, kinds, result, at)
                            .await?
                            .is_some()
                    {
                        command_meters.push(meter_id);
                    }
                }
            }
            let heard: Vec<i64> = {
                let mut ids: Vec<i64> = links.iter().map(|l| l.meter_id).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            };
            monitor::$dialect::clear_kind(conn, &heard, "noConnection", now).await?;
            let alarms_new = alarms::$dialect::insert(conn, &raised).await?;
            for (meter_id, kind, at) in &cleared {
                alarms::$dialect::clear(conn, *meter_id, kind, *at).await?;
            }
            self_tests::$dialect::insert(conn, &tests).await?;
            meters::$dialect::update_info(conn, &infos).await?;
            meters::$dialect::update_meters(conn, &merge_links(links.iter()), &state_updates)
                .await?;
            device_status::$dialect::upsert(
                conn,
                &device_status::latest_per_meter(statuses.into_iter()),
            )
            .await?;
            quarantine::$dialect::insert(conn, &kept).await?;
            Ok(Outcome {
                applied,
                readings,
                alarms: alarms_new,
                pending_devices,
                command_meters,
                conflicts,
                clock_answers_late,
                clock_answers_missed,
            })
        }
    };
}

/// On SQLite.
pub(crate) mod sqlite {
    use super::*;
    apply_for!(sqlx::Sqlite, sqlite);
}

/// On PostgreSQL.
pub(crate) mod postgres {
    use super::*;
    apply_for!(sqlx::Postgres, postgres);
}
