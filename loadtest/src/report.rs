//! A run's figures: the human summary and the CSV row.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::cpu::Usage;
use crate::server::ServerCounters;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// The percentiles with the 99.9th, for latencies whose tail is the point.
    pub fn text_with_tail(&self) -> String {
        format!(
            "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }

    fn text(&self) -> String {
        format!(
            "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Milliseconds with the precision that matters at their size.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Thousands separated by spaces, as in the project's documents.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// One phase: events sent through the broker to a receiver (the pass-through subscriber, or
/// the server and its database).
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Events published.
    pub published: u64,
    /// Of those, acknowledged by the broker.
    pub acknowledged: u64,
    /// Publish rate achieved, events a second.
    pub publish_rate: f64,
    /// Furthest the publishers fell behind the schedule.
    pub max_lag: Duration,
    /// Events that arrived (delivered or committed).
    pub arrived: u64,
    /// Arrivals a second, from the first publish to the last arrival.
    pub rate: f64,
    /// From the first publish to the last arrival.
    pub span: Duration,
    /// Publish-to-arrival latency.
    pub latency: Percentiles,
    /// CPU during the phase.
    pub cpu: Usage,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// When it started, RFC 3339.
    pub started_at: String,
    /// `postgres` or `sqlite`.
    pub database: String,
    /// Offered rate, events a second.
    pub offered: u32,
    /// Publishing time.
    pub duration: Duration,
    /// Meters in the fleet.
    pub meters: u32,
    /// Publisher connections.
    pub publishers: u32,
    /// Commit poll interval (the resolution of the commit latencies).
    pub poll_interval: Duration,
    /// The broker alone.
    pub broker: Phase,
    /// The server.
    pub server: Phase,
    /// The server's own counters for its phase, when its /metrics could be read.
    pub counters: Option<ServerCounters>,
    /// Readings found in the run's window, and distinct frame counters among them.
    pub readings: (i64, i64),
    /// Commits stopped for 15 s before everything was committed.
    pub stalled: bool,
    /// The server did not stop on SIGTERM and was killed.
    pub server_killed: bool,
}

impl RunReport {
    /// The server's committed rate as a fraction of the broker's pass-through rate.
    pub fn ratio(&self) -> f64 {
        if self.broker.rate > 0.0 {
            self.server.rate / self.broker.rate
        } else {
            0.0
        }
    }

    /// `ok` when everything published was committed; else what went wrong.
    pub fn outcome(&self) -> String {
        let mut out = if self.server.arrived >= self.server.published {
            "ok".to_owned()
        } else if self.stalled {
            "stalled".to_owned()
        } else {
            "incomplete".to_owned()
        };
        if self.server_killed {
            out.push_str("+killed");
        }
        out
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let b = &self.broker;
        let s = &self.server;
        let mut out = format!(
            "ingest on {}: {} uplinks/s offered for {} s ({} events over {} meters, {} publisher connections, QoS 1)\n",
            self.database,
            thousands(u64::from(self.offered)),
            self.duration.as_secs(),
            thousands(s.published),
            thousands(u64::from(self.meters)),
            self.publishers,
        );
        out += &format!(
            "  broker pass-through: {} of {} delivered to a QoS 1 subscriber in {:.1} s = {}/s; \
             publish-to-delivery {}\n    cpu: {}\n",
            thousands(b.arrived),
            thousands(b.published),
            b.span.as_secs_f64(),
            thousands(b.rate.round() as u64),
            b.latency.text(),
            b.cpu.summary(),
        );
        out += &format!(
            "  meterhub: {} of {} committed in {:.1} s = {}/s, {:.1} % of the broker's pass-through; \
             publish-to-commit {} (to within {} ms)\n    cpu: {}\n",
            thousands(s.arrived),
            thousands(s.published),
            s.span.as_secs_f64(),
            thousands(s.rate.round() as u64),
            self.ratio() * 100.0,
            s.latency.text(),
            self.poll_interval.as_millis(),
            s.cpu.summary(),
        );
        for (name, p) in [("broker phase", b), ("server phase", s)] {
            out += &format!(
                "  {name} publishing: {}/s achieved, at most {} ms behind schedule, {} acknowledged by the broker\n",
                thousands(p.publish_rate.round() as u64),
                p.max_lag.as_millis(),
                thousands(p.acknowledged),
            );
        }
        if let Some(c) = &self.counters {
            out += &format!(
                "  server counters: {} batches of {:.0} messages on average, {:.1} ms per batch commit, \
                 writer committing {:.0} % of the phase\n",
                thousands(c.batches as u64),
                c.mean_batch,
                c.mean_commit_seconds * 1_000.0,
                c.commit_busy * 100.0,
            );
        }
        out += &format!(
            "  check: {} readings stored in the run's window, {} distinct frame counters\n",
            thousands(self.readings.0.max(0) as u64),
            thousands(self.readings.1.max(0) as u64),
        );
        if s.arrived < s.published {
            let why = if self.stalled {
                "commits stopped for 15 s before the rest came"
            } else {
                "the wait for the backlog ended first"
            };
            out += &format!(
                "  NOT ALL COMMITTED: {} events were not seen committed ({why}); the broker still \
                 holds them for the server's session\n",
                thousands(s.published - s.arrived)
            );
        }
        if self.server_killed {
            out += "  THE SERVER DID NOT STOP within 30 s of SIGTERM and was killed\n";
        }
        out
    }

    /// The CSV columns.
    pub const CSV_HEADER: &'static str = "started_at,database,offered_per_s,duration_s,published,\
        committed,committed_per_s,p50_ms,p90_ms,p99_ms,max_ms,broker_per_s,ratio,broker_p50_ms,\
        broker_p99_ms,meters,publishers,poll_ms,server_cpu_cores,machine_busy_cores,outcome";

    /// This run as a CSV row (no newline).
    pub fn csv_row(&self) -> String {
        let s = &self.server;
        let b = &self.broker;
        let meterhub_cpu: f64 = s
            .cpu
            .by_program
            .iter()
            .filter(|(n, _)| n == crate::ingest::SERVER_LABEL)
            .map(|(_, c)| c)
            .sum();
        [
            self.started_at.clone(),
            self.database.clone(),
            self.offered.to_string(),
            self.duration.as_secs().to_string(),
            s.published.to_string(),
            s.arrived.to_string(),
            format!("{:.0}", s.rate),
            format!("{:.2}", s.latency.p50),
            format!("{:.2}", s.latency.p90),
            format!("{:.2}", s.latency.p99),
            format!("{:.2}", s.latency.max),
            format!("{:.0}", b.rate),
            format!("{:.3}", self.ratio()),
            format!("{:.2}", b.latency.p50),
            format!("{:.2}", b.latency.p99),
            self.meters.to_string(),
            self.publishers.to_string(),
            self.poll_interval.as_millis().to_string(),
            format!("{meterhub_cpu:.2}"),
            s.cpu
                .machine_busy
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
            self.outcome(),
        ]
        .join(",")
    }

    /// Appends the row to `path`, writing the header first if the file is new or empty.
    pub fn append_csv(&self, path: &Path) -> Result<()> {
        append_csv(path, Self::CSV_HEADER, &self.csv_row())
    }
}

/// Appends `row` to the CSV file `path`, writing `header` first if the file is new or empty.
pub fn append_csv(path: &Path, header: &str, row: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if f.metadata()?.len() == 0 {
        writeln!(f, "{header}")?;
    }
    writeln!(f, "{row}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        RunReport {
            started_at: "2026-11-26T10:00:00Z".into(),
            database: "postgres".into(),
            offered: 10_000,
            duration: Duration::from_secs(20),
            meters: 10_000,
            publishers: 2,
            poll_interval: Duration::from_millis(10),
            broker: Phase {
                published: 200_000,
                arrived: 200_000,
                rate: 10_000.0,
                ..Phase::default()
            },
            server: Phase {
                published: 200_000,
                arrived: 150_000,
                rate: 7_500.0,
                ..Phase::default()
            },
            counters: None,
            readings: (150_000, 150_000),
            stalled: false,
            server_killed: false,
        }
    }

    #[test]
    fn the_ratio_is_the_servers_rate_over_the_brokers() {
        assert_eq!(report().ratio(), 0.75);
        let mut r = report();
        r.broker.rate = 0.0;
        assert_eq!(r.ratio(), 0.0, "no broker figure, no ratio");
    }

    #[test]
    fn a_csv_row_has_a_value_for_every_column() {
        let r = report();
        let row = r.csv_row();
        assert_eq!(
            row.split(',').count(),
            RunReport::CSV_HEADER.split(',').count()
        );
        assert!(row.starts_with("2026-11-26T10:00:00Z,postgres,10000,20,200000,150000,7500,"));
    }

    #[test]
    fn the_summary_says_when_not_everything_was_committed() {
        let text = report().summary();
        assert!(
            text.contains("75.0 % of the broker's pass-through"),
            "{text}"
        );
        assert!(text.contains("NOT ALL COMMITTED: 50 000 events"), "{text}");
        assert_eq!(report().outcome(), "incomplete");
    }

    #[test]
    fn the_outcome_names_a_stall_and_a_server_that_had_to_be_killed() {
        let mut r = report();
        r.stalled = true;
        r.server_killed = true;
        assert_eq!(r.outcome(), "stalled+killed");
        assert!(r.csv_row().ends_with(",stalled+killed"));
        assert!(r.summary().contains("THE SERVER DID NOT STOP"));
        r.server.arrived = r.server.published;
        r.stalled = false;
        r.server_killed = false;
        assert_eq!(r.outcome(), "ok");
    }

    #[test]
    fn large_counts_are_grouped_in_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1 000");
        assert_eq!(thousands(25_000_000), "25 000 000");
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() {
        let h = Histogram::<u64>::new(3).expect("histogram");
        assert_eq!(Percentiles::of(&h), Percentiles::default());
    }
}
