//! Monitoring: alarm rules on readings, silence detection, self-test schedules, command
//! expiry and alarm delivery.
//!
//! The rules run inside the ingest transaction (see [`evaluate_batch`]); everything
//! time-driven runs in [`scheduler`] on the one instance that holds the scheduler lease.

pub mod rules;
pub mod scheduler;
pub mod webhook;

use std::collections::HashMap;

use uuid::Uuid;

use crate::downlink::CommandKind;
use crate::storage::alarms::NewAlarm;
use crate::storage::commands::CommandRow;
use crate::storage::ingest::Observation;
use crate::storage::monitor::StateUpdate;
use rules::{MeterState, evaluate};

/// Runs the rules over a batch's readings, meter by meter in the meters' time order.
/// Returns the state to remember per meter, the resynchronisation requests to queue and the
/// DevEUI of each; raised alarms are appended to `raised`.
pub fn evaluate_batch(
    mut states: HashMap<i64, MeterState>,
    observations: &[&Observation],
    raised: &mut Vec<NewAlarm>,
) -> (Vec<StateUpdate>, Vec<CommandRow>, Vec<String>) {
    let mut order: Vec<&Observation> = observations.to_vec();
    order.sort_by_key(|o| (o.meter_id, o.observed.at));
    let mut updates: HashMap<i64, StateUpdate> = HashMap::new();
    let mut resyncs: Vec<CommandRow> = Vec::new();
    let mut devices = Vec::new();
    for o in order {
        let state = states.get(&o.meter_id).copied().unwrap_or_default();
        let verdict = evaluate(state, &o.observed, &o.rules);
        states.insert(o.meter_id, verdict.state);
        for a in verdict.alarms {
            raised.push(NewAlarm {
                meter_id: o.meter_id,
                kind: a.kind.to_owned(),
                source: "server".into(),
                raised_at: o.observed.at,
                value: a.value,
                received_at: o.at,
                detail: Some(a.detail),
            });
        }
        let update = updates.entry(o.meter_id).or_insert(StateUpdate {
            meter_id: o.meter_id,
            state: verdict.state,
            drift: None,
        });
        update.state = verdict.state;
        if let Some(d) = o.observed.drift_ms {
            update.drift = Some((d, o.at));
        }
        if verdict.resync && !resyncs.iter().any(|c| c.meter_id == o.meter_id) {
            let kind = CommandKind::ForceResync { transmissions: 1 };
            if let Ok(frame) = kind.frame() {
                resyncs.push(CommandRow {
                    id: Uuid::new_v4(),
                    meter_id: o.meter_id,
                    kind: kind.name().into(),
                    fport: i16::from(frame.fport),
                    payload: frame.payload,
                    confirmed: false,
                    requested_by: "rule:clockDrift".into(),
                    state: "pending".into(),
                    attempts: 0,
                    error: None,
                    created_at: o.at,
                    updated_at: o.at,
                    expires_at: o.resync_expires_at,
                    sent_at: None,
                    completed_at: None,
                    deadline_at: None,
                    result: None,
                    schedule_id: None,
                });
                devices.push(o.dev_eui.clone());
            }
        }
    }
    let mut updates: Vec<StateUpdate> = updates.into_values().collect();
    updates.sort_by_key(|u| u.meter_id);
    (updates, resyncs, devices)
}
