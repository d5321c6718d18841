//! Monitoring: alarm rules on readings, silence detection, self-test schedules, command
//! expiry and alarm delivery.
//!
//! The rules run inside the ingest transaction (see [`evaluate_batch`]); everything
//! time-driven runs in [`scheduler`] on the one instance that holds the scheduler lease.

pub mod rules;
pub mod scheduler;
pub mod webhook;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::downlink::CommandKind;
use crate::storage::alarms::NewAlarm;
use crate::storage::commands::CommandRow;
use crate::storage::ingest::Observation;
use crate::storage::monitor::StateUpdate;
use rules::{MeterState, Neighbours, evaluate};

/// Runs the rules over a batch's readings, meter by meter in the meters' time order; a
/// reading older than its meter's latest is judged against `neighbours`, the stored
/// readings either side of it in time (by meter and reading time). Returns the state to
/// remember per meter, the resynchronisation requests to queue and the DevEUI of each;
/// raised alarms are appended to `raised`.
pub fn evaluate_batch(
    mut states: HashMap<i64, MeterState>,
    observations: &[&Observation],
    neighbours: &HashMap<(i64, DateTime<Utc>), Neighbours>,
    raised: &mut Vec<NewAlarm>,
) -> (Vec<StateUpdate>, Vec<CommandRow>, Vec<String>) {
    let mut order: Vec<&Observation> = observations.to_vec();
    // Stable: readings with the same meter time keep their arrival order.
    order.sort_by_key(|o| (o.meter_id, o.observed.at));
    let mut updates: HashMap<i64, StateUpdate> = HashMap::new();
    let mut resyncs: Vec<CommandRow> = Vec::new();
    let mut devices = Vec::new();
    for o in order {
        let state = states.get(&o.meter_id).copied().unwrap_or_default();
        let mut verdict = evaluate(state, &o.observed, &o.rules);
        let older = state.register_at.is_some_and(|t| o.observed.at < t);
        if older && let Some(n) = neighbours.get(&(o.meter_id, o.observed.at)) {
            verdict.alarms.extend(rules::late_reading(&o.observed, n));
        }
        states.insert(o.meter_id, verdict.state);
        for a in verdict.alarms {
            raised.push(NewAlarm {
                meter_id: o.meter_id,
                kind: a.kind.as_str().to_owned(),
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
    }
    // The clock is judged by the latest reading to arrive, not the latest by the meter's
    // clock: a reading sent after a correction carries an earlier meter time.
    let mut latest: HashMap<i64, &Observation> = HashMap::new();
    for o in observations {
        if o.observed.drift_ms.is_some() {
            latest.insert(o.meter_id, o);
        }
    }
    let mut latest: Vec<&Observation> = latest.into_values().collect();
    latest.sort_by_key(|o| o.meter_id);
    for o in latest {
        let Some(drift) = o.observed.drift_ms else {
            continue;
        };
        if let Some(update) = updates.get_mut(&o.meter_id) {
            update.drift = Some((drift, o.at));
        }
        if rules::needs_resync(drift, &o.rules) {
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

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::monitor::rules::{Observed, Rules};

    fn observation(meter_id: i64, minute: i64, drift_ms: i64) -> Observation {
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
            .single()
            .expect("date");
        Observation {
            meter_id,
            dev_eui: format!("{meter_id:016x}"),
            observed: Observed {
                at: t0 + Duration::minutes(minute),
                register: Some(100 * minute),
                valve: 1,
                battery_percent: 80,
                drift_ms: Some(drift_ms),
            },
            rules: Rules::default(),
            resync_expires_at: t0 + Duration::days(3),
            at: t0,
        }
    }

    #[test]
    fn the_last_reading_to_arrive_judges_the_clock() {
        // A reading sent after a correction carries an earlier meter time than the one
        // before it; its drift is the meter's drift now.
        let before = observation(1, 10, 120_000);
        let after = observation(1, 8, 200);
        let mut raised = Vec::new();
        let (updates, resyncs, _) = evaluate_batch(
            HashMap::new(),
            &[&before, &after],
            &HashMap::new(),
            &mut raised,
        );
        assert_eq!(updates[0].drift.map(|d| d.0), Some(200));
        assert!(resyncs.is_empty());
        let (_, resyncs, devices) = evaluate_batch(
            HashMap::new(),
            &[&after, &before],
            &HashMap::new(),
            &mut raised,
        );
        assert_eq!(resyncs.len(), 1);
        assert_eq!(resyncs[0].kind, "forceResync");
        assert_eq!(devices, vec![before.dev_eui.clone()]);
    }
}
