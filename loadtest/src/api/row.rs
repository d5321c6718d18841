//! One phase's figures: the CSV row and the human summary.

use chrono::{DateTime, SecondsFormat, Utc};

use super::load::Outcome;
use crate::cpu::Usage;
use crate::ingest::SERVER_LABEL;
use crate::report::{ms, thousands};

/// One phase's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// When the phase started, RFC 3339.
    pub started_at: String,
    /// `postgres` or `sqlite`.
    pub store: String,
    /// Meters in the fleet.
    pub meters: u32,
    /// The phase.
    pub phase: String,
    /// Connections.
    pub concurrency: u32,
    /// Measured time, seconds.
    pub seconds: f64,
    /// Answers.
    pub requests: u64,
    /// Answers a second.
    pub rps: f64,
    /// Mean response time, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Answers other than 2xx, and requests that got no answer.
    pub errors: u64,
    /// Answers from the cache.
    pub cache_hits: u64,
    /// The requests ran out before the time.
    pub exhausted: bool,
    /// The server's CPU, cores (when it is known which process it is).
    pub server_cpu: Option<f64>,
    /// The load generator's CPU, cores.
    pub loadtest_cpu: f64,
    /// The database's server processes, cores (PostgreSQL).
    pub database_cpu: f64,
    /// The whole machine, busy cores.
    pub machine_busy: Option<f64>,
}

impl Row {
    pub fn new(
        started_at: DateTime<Utc>,
        store: &str,
        meters: u32,
        phase: &str,
        concurrency: u32,
        o: &Outcome,
        cpu: &Usage,
    ) -> Row {
        let of = |label: &dyn Fn(&str) -> bool| -> f64 {
            cpu.by_program
                .iter()
                .filter(|(n, _)| label(n))
                .map(|(_, c)| c)
                .fold(0.0, |a, c| a + c)
        };
        let h = &o.latency;
        let q = |quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(quantile) as f64 / 1_000.0
            }
        };
        Row {
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            store: store.to_owned(),
            meters,
            phase: phase.to_owned(),
            concurrency,
            seconds: o.elapsed.as_secs_f64(),
            requests: o.requests,
            rps: o.rate(),
            mean_ms: if h.is_empty() {
                0.0
            } else {
                h.mean() / 1_000.0
            },
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1_000.0
            },
            errors: o.errors + o.transport_errors,
            cache_hits: o.hits(),
            exhausted: o.exhausted,
            server_cpu: cpu
                .by_program
                .iter()
                .any(|(n, _)| n == SERVER_LABEL)
                .then(|| of(&|n| n == SERVER_LABEL)),
            loadtest_cpu: of(&|n| n == "loadtest"),
            database_cpu: of(&|n| n.starts_with("postgres backends of")),
            machine_busy: cpu.machine_busy,
        }
    }

    /// The CSV columns.
    pub const CSV_HEADER: &'static str = "started_at,store,meters,phase,concurrency,seconds,\
        requests,rps,mean_ms,p50_ms,p99_ms,p999_ms,max_ms,errors,cache_hits,exhausted,\
        server_cpu_cores,loadtest_cpu_cores,database_cpu_cores,machine_busy_cores";

    /// The row (no newline).
    pub fn csv_row(&self) -> String {
        [
            self.started_at.clone(),
            self.store.clone(),
            self.meters.to_string(),
            self.phase.clone(),
            self.concurrency.to_string(),
            format!("{:.2}", self.seconds),
            self.requests.to_string(),
            format!("{:.0}", self.rps),
            format!("{:.3}", self.mean_ms),
            format!("{:.3}", self.p50_ms),
            format!("{:.3}", self.p99_ms),
            format!("{:.3}", self.p999_ms),
            format!("{:.3}", self.max_ms),
            self.errors.to_string(),
            self.cache_hits.to_string(),
            self.exhausted.to_string(),
            self.server_cpu
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
            format!("{:.2}", self.loadtest_cpu),
            format!("{:.2}", self.database_cpu),
            self.machine_busy
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
        ]
        .join(",")
    }

    /// The human line.
    pub fn summary(&self, o: &Outcome) -> String {
        let mut out = format!(
            "{} {} meters, {} c={}: {} answers in {:.1} s = {}/s; mean {} ms, p50 {} ms, \
             p99 {} ms, p99.9 {} ms, max {} ms; errors {}",
            self.store,
            thousands(u64::from(self.meters)),
            self.phase,
            self.concurrency,
            thousands(self.requests),
            self.seconds,
            thousands(self.rps.round() as u64),
            ms(self.mean_ms),
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.p999_ms),
            ms(self.max_ms),
            thousands(self.errors),
        );
        if o.cache != [0; 3] {
            out += &format!(
                "; cache hit/miss/bypass {}/{}/{}",
                o.cache[0], o.cache[1], o.cache[2]
            );
        }
        if self.exhausted {
            out += "; RAN OUT OF REQUESTS before the time";
        }
        if let Some(e) = &o.first_error {
            out += &format!("\n  first error: {e}");
        }
        let cpu = |c: Option<f64>| c.map_or("?".to_owned(), |c| format!("{:.0} %", c * 100.0));
        out += &format!(
            "\n  cpu: server {}, load generator {}, database {}, machine {} busy",
            cpu(self.server_cpu),
            cpu(Some(self.loadtest_cpu)),
            cpu(Some(self.database_cpu)),
            cpu(self.machine_busy),
        );
        out
    }
}
