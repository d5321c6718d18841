//! Counters and histograms, rendered in Prometheus' text format at `/metrics`.
//!
//! A handful of fixed series updated with atomics on the ingest path; no registry, no labels
//! beyond the quarantine reason, which is a closed set.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::uplink::Reason;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    // Sum and count change together; the lock is held for two additions, never across await.
    sum: Mutex<(f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: Mutex::new((0.0, 0)),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut s) = self.sum.lock() {
            s.0 += value;
            s.1 += 1;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let (sum, count) = self.sum.lock().map(|s| *s).unwrap_or_default();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every series meterhub exports.
#[derive(Debug)]
pub struct Metrics {
    /// MQTT messages received.
    pub received: Counter,
    /// Events parsed and, for uplinks, decoded.
    pub decoded: Counter,
    /// Events already applied before (redeliveries, duplicates).
    pub duplicates: Counter,
    /// Messages quarantined, by reason (indexed by [`Reason::index`]).
    pub quarantined: [Counter; Reason::COUNT],
    /// Readings stored.
    pub readings_stored: Counter,
    /// Alarms stored.
    pub alarms_stored: Counter,
    /// Messages acknowledged to the broker after their commit.
    pub acknowledged: Counter,
    /// Events that arrived at QoS 0.
    pub qos0_events: Counter,
    /// Commits retried after a transient database error.
    pub db_retries: Counter,
    /// Reconnections to the broker.
    pub mqtt_reconnects: Counter,
    /// Messages committed but not acknowledged because their connection had been replaced
    /// (the broker redelivers them; the database recognises them).
    pub stale_acks: Counter,
    /// 1 while connected to the broker.
    pub mqtt_connected: AtomicU64,
    /// 1 once the broker has granted the event subscription on the current connection.
    pub mqtt_subscribed: AtomicU64,
    /// 1 while the last database commit succeeded.
    pub db_up: AtomicU64,
    /// Messages per committed batch.
    pub batch_size: Histogram,
    /// Seconds per batch commit.
    pub commit_seconds: Histogram,
    /// Seconds from arrival to acknowledgement.
    pub ingest_latency_seconds: Histogram,
    /// Downlinks published to ChirpStack (clock answers and commands).
    pub downlinks_published: Counter,
    /// Clock answers published.
    pub clock_answers: Counter,
    /// AppTimeReq seen again (replays) and not answered twice.
    pub clock_replays: Counter,
    /// Uplinks the downlink dispatcher had no room for (their clock requests unanswered).
    pub dispatcher_dropped: Counter,
    /// Downlink publishing or dispatching errors.
    pub downlink_errors: Counter,
    /// Clock answers ChirpStack transmitted only after a later uplink of the meter: they
    /// missed the receive windows of the uplink that asked.
    pub clock_answers_late: Counter,
    /// Clock answers never transmitted (expired, flushed by a rejoin, or lost).
    pub clock_answers_missed: Counter,
    /// Commands ChirpStack went silent about (no `txack`/`ack` after the meter's next
    /// uplinks, or flushed by a rejoin), re-sent or failed.
    pub commands_lost: Counter,
    /// Alarms delivered to the webhook.
    pub alarms_delivered: Counter,
    /// Failed webhook deliveries (retried).
    pub alarm_delivery_failures: Counter,
    /// Seconds from an AppTimeReq uplink's arrival to its answer's publish.
    pub clock_answer_seconds: Histogram,
    /// Rounds of keeping ChirpStack's device list in step, done or failed.
    pub chirpstack_sync_rounds: Counter,
    /// Failures of that sync: a round that could not run, or one device's change refused
    /// (each retried next round).
    pub chirpstack_sync_failures: Counter,
    /// Devices the sync created in ChirpStack.
    pub chirpstack_devices_created: Counter,
    /// Devices the sync deleted from ChirpStack.
    pub chirpstack_devices_deleted: Counter,
    /// Differences the last round left (failed, meters without keys, devices unknown to
    /// meterhub).
    pub chirpstack_sync_unresolved: AtomicU64,
}

const SIZE_BOUNDS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0];
const SECONDS_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            received: Counter::default(),
            decoded: Counter::default(),
            duplicates: Counter::default(),
            quarantined: Default::default(),
            readings_stored: Counter::default(),
            alarms_stored: Counter::default(),
            acknowledged: Counter::default(),
            qos0_events: Counter::default(),
            db_retries: Counter::default(),
            mqtt_reconnects: Counter::default(),
            stale_acks: Counter::default(),
            mqtt_connected: AtomicU64::new(0),
            mqtt_subscribed: AtomicU64::new(0),
            db_up: AtomicU64::new(1),
            batch_size: Histogram::new(SIZE_BOUNDS),
            commit_seconds: Histogram::new(SECONDS_BOUNDS),
            ingest_latency_seconds: Histogram::new(SECONDS_BOUNDS),
            downlinks_published: Counter::default(),
            clock_answers: Counter::default(),
            clock_replays: Counter::default(),
            dispatcher_dropped: Counter::default(),
            downlink_errors: Counter::default(),
            clock_answers_late: Counter::default(),
            clock_answers_missed: Counter::default(),
            commands_lost: Counter::default(),
            alarms_delivered: Counter::default(),
            alarm_delivery_failures: Counter::default(),
            clock_answer_seconds: Histogram::new(SECONDS_BOUNDS),
            chirpstack_sync_rounds: Counter::default(),
            chirpstack_sync_failures: Counter::default(),
            chirpstack_devices_created: Counter::default(),
            chirpstack_devices_deleted: Counter::default(),
            chirpstack_sync_unresolved: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one quarantined message.
    pub fn quarantine(&self, reason: Reason) {
        self.quarantined[reason.index()].inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &Counter); 24] = [
            (
                "meterhub_chirpstack_sync_rounds_total",
                "Rounds of keeping ChirpStack's device list in step with the registry.",
                &self.chirpstack_sync_rounds,
            ),
            (
                "meterhub_chirpstack_sync_failures_total",
                "ChirpStack sync failures (a round, or one device's change), retried next round.",
                &self.chirpstack_sync_failures,
            ),
            (
                "meterhub_chirpstack_devices_created_total",
                "Devices created in ChirpStack by the sync.",
                &self.chirpstack_devices_created,
            ),
            (
                "meterhub_chirpstack_devices_deleted_total",
                "Devices deleted from ChirpStack by the sync.",
                &self.chirpstack_devices_deleted,
            ),
            (
                "meterhub_downlinks_published_total",
                "Downlinks published to ChirpStack (clock answers and commands).",
                &self.downlinks_published,
            ),
            (
                "meterhub_clock_answers_total",
                "TS003 AppTimeAns published.",
                &self.clock_answers,
            ),
            (
                "meterhub_clock_replays_total",
                "AppTimeReq uplinks seen again and not answered twice.",
                &self.clock_replays,
            ),
            (
                "meterhub_dispatcher_dropped_total",
                "Uplinks the downlink dispatcher had no room for.",
                &self.dispatcher_dropped,
            ),
            (
                "meterhub_downlink_errors_total",
                "Downlink publishing or dispatching errors.",
                &self.downlink_errors,
            ),
            (
                "meterhub_clock_answers_late_total",
                "Clock answers transmitted only after a later uplink (they missed RX1 and RX2).",
                &self.clock_answers_late,
            ),
            (
                "meterhub_clock_answers_missed_total",
                "Clock answers never transmitted (expired, flushed by a rejoin, or lost).",
                &self.clock_answers_missed,
            ),
            (
                "meterhub_commands_lost_total",
                "Commands ChirpStack went silent about, re-sent or failed.",
                &self.commands_lost,
            ),
            (
                "meterhub_alarms_delivered_total",
                "Alarms delivered to the webhook.",
                &self.alarms_delivered,
            ),
            (
                "meterhub_alarm_delivery_failures_total",
                "Webhook deliveries that failed and will be retried.",
                &self.alarm_delivery_failures,
            ),
            (
                "meterhub_mqtt_messages_received_total",
                "MQTT messages received.",
                &self.received,
            ),
            (
                "meterhub_events_decoded_total",
                "Events parsed and decoded.",
                &self.decoded,
            ),
            (
                "meterhub_events_duplicate_total",
                "Events already applied before.",
                &self.duplicates,
            ),
            (
                "meterhub_readings_stored_total",
                "Readings stored.",
                &self.readings_stored,
            ),
            (
                "meterhub_alarms_stored_total",
                "Alarms stored.",
                &self.alarms_stored,
            ),
            (
                "meterhub_mqtt_messages_acknowledged_total",
                "Messages acknowledged after their commit.",
                &self.acknowledged,
            ),
            (
                "meterhub_mqtt_qos0_events_total",
                "Events received at QoS 0 (ChirpStack qos = 0).",
                &self.qos0_events,
            ),
            (
                "meterhub_db_commit_retries_total",
                "Batch commits retried after a transient database error.",
                &self.db_retries,
            ),
            (
                "meterhub_mqtt_reconnects_total",
                "Reconnections to the MQTT broker.",
                &self.mqtt_reconnects,
            ),
            (
                "meterhub_mqtt_stale_acks_total",
                "Committed messages left unacknowledged because their connection was replaced.",
                &self.stale_acks,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        let name = "meterhub_events_quarantined_total";
        let _ = writeln!(
            out,
            "# HELP {name} Messages quarantined, by reason.\n# TYPE {name} counter"
        );
        for reason in Reason::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.quarantined[reason.index()].get()
            );
        }
        for (name, help, g) in [
            (
                "meterhub_mqtt_connected",
                "1 while connected to the MQTT broker.",
                &self.mqtt_connected,
            ),
            (
                "meterhub_mqtt_subscribed",
                "1 once the broker granted the event subscription on this connection.",
                &self.mqtt_subscribed,
            ),
            (
                "meterhub_db_up",
                "1 while database commits succeed.",
                &self.db_up,
            ),
            (
                "meterhub_chirpstack_sync_unresolved",
                "Differences with ChirpStack the last sync round left (failed, no keys, unknown devices).",
                &self.chirpstack_sync_unresolved,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                g.load(Ordering::Relaxed)
            );
        }
        self.batch_size.render(
            &mut out,
            "meterhub_batch_size",
            "Messages per committed batch.",
        );
        self.commit_seconds.render(
            &mut out,
            "meterhub_commit_seconds",
            "Seconds per batch commit.",
        );
        self.ingest_latency_seconds.render(
            &mut out,
            "meterhub_ingest_latency_seconds",
            "Seconds from a message's arrival to its acknowledgement.",
        );
        self.clock_answer_seconds.render(
            &mut out,
            "meterhub_clock_answer_seconds",
            "Seconds from an AppTimeReq uplink's arrival to its answer's publish.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_render() {
        let m = Metrics::default();
        m.batch_size.observe(7.0);
        m.batch_size.observe(300.0);
        m.received.add(3);
        m.quarantine(Reason::MalformedJson);
        let text = m.render();
        assert!(
            text.contains("meterhub_batch_size_bucket{le=\"10\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meterhub_batch_size_bucket{le=\"500\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("meterhub_batch_size_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("meterhub_batch_size_sum 307"), "{text}");
        assert!(
            text.contains("meterhub_mqtt_messages_received_total 3"),
            "{text}"
        );
        assert!(
            text.contains("meterhub_events_quarantined_total{reason=\"malformed_json\"} 1"),
            "{text}"
        );
    }
}
