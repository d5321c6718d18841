//! The server under load, driven as a user would: `meterhub serve` as a child process with
//! command-line settings, and its `/metrics` over HTTP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The MQTT client id the server is started with. A fixed one, because it names a persistent
/// session: each run resumes the last run's (empty) session instead of leaving one behind per
/// run for the broker to keep filling.
pub const CLIENT_ID: &str = "meterhub-loadtest-server";

/// Log lines kept to explain a failure.
const KEPT_LINES: usize = 40;

/// A `meterhub serve` started by the load test.
pub struct ServerProcess {
    child: Child,
    /// Where its HTTP endpoints listen.
    pub http: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts `binary serve` on the database and broker given, its HTTP endpoints on a free
    /// loopback port, and waits until it listens. With `echo` its log goes to our stderr.
    pub async fn start(
        binary: &Path,
        database_url: &str,
        mqtt_url: &str,
        echo: bool,
    ) -> Result<ServerProcess> {
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--database-url")
            .arg(database_url)
            .arg("--mqtt-url")
            .arg(mqtt_url)
            .arg("--http-bind")
            .arg("127.0.0.1:0")
            .env("METERHUB_MQTT__CLIENT_ID", CLIENT_ID)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let kept = log.clone();
        // Reads the log for as long as the server runs, so that it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[meterhub] {line}");
                }
                if let Some(addr) = line.strip_prefix("listening on http://")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                if let Ok(mut k) = kept.lock() {
                    if k.len() == KEPT_LINES {
                        k.pop_front();
                    }
                    k.push_back(line);
                }
            }
        });
        let mut server = ServerProcess {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
            Ok(Ok(addr)) => {
                server.http = addr
                    .parse()
                    .with_context(|| format!("the server's address {addr:?}"))?;
                Ok(server)
            }
            _ => {
                let _ = server.child.start_kill();
                let _ = server.child.wait().await;
                bail!("the server did not start:\n{}", server.log_tail())
            }
        }
    }

    /// Starts `binary` as [`ServerProcess::start`] does when one is given, and says so.
    pub async fn start_if(
        binary: Option<&Path>,
        database_url: &str,
        mqtt_url: &str,
        echo: bool,
    ) -> Result<Option<ServerProcess>> {
        let Some(bin) = binary else {
            return Ok(None);
        };
        let s = ServerProcess::start(bin, database_url, mqtt_url, echo).await?;
        eprintln!(
            "started {} serve (pid {}), HTTP on {}",
            bin.display(),
            s.pid().unwrap_or_default(),
            s.http
        );
        Ok(Some(s))
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|k| k.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Stops it with SIGTERM (it finishes the batch in flight). Kills it if it has not stopped
    /// 30 s later, and then says so: true.
    pub async fn stop(mut self) -> Result<bool> {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .context("sending SIGTERM to the server")?;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the server exited with {status}:\n{}", self.log_tail());
                }
                Ok(false)
            }
            Err(_) => {
                let _ = self.child.kill().await;
                eprintln!(
                    "the server did not stop within 30 s of SIGTERM; killed it. Its last words:\n{}",
                    self.log_tail()
                );
                Ok(true)
            }
        }
    }
}

/// Stops a server started for a run, if one was; whether it had to be killed. When the run
/// itself failed, a failure to stop is only printed: the run's own error says more.
pub async fn stop_if(server: Option<ServerProcess>, run_failed: bool) -> Result<bool> {
    match server {
        Some(server) => match server.stop().await {
            Ok(killed) => Ok(killed),
            Err(e) if run_failed => {
                eprintln!("{e:#}");
                Ok(false)
            }
            Err(e) => Err(e),
        },
        None => Ok(false),
    }
}

/// `GET /metrics` from a server's HTTP endpoints: the Prometheus text.
pub async fn fetch_metrics(addr: SocketAddr) -> Result<String> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .context("the server's /metrics did not answer within 5 s")??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "/metrics answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_owned())
}

/// The value of an unlabelled series in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A histogram in Prometheus text: cumulative counts by bucket upper bound (seconds, the
/// last one `+Inf`), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSeries {
    /// `(upper bound, observations at or below it)`, in the order exported.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl HistogramSeries {
    /// The histogram `name` in `text`; `None` when it is not exported.
    pub fn parse(text: &str, name: &str) -> Option<HistogramSeries> {
        let bucket_prefix = format!("{name}_bucket{{le=\"");
        let buckets = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&bucket_prefix)?;
                let (bound, value) = rest.split_once("\"}")?;
                let bound = match bound {
                    "+Inf" => f64::INFINITY,
                    b => b.parse().ok()?,
                };
                Some((bound, value.trim().parse().ok()?))
            })
            .collect();
        Some(HistogramSeries {
            buckets,
            sum: metric(text, &format!("{name}_sum"))?,
            count: metric(text, &format!("{name}_count"))?,
        })
    }

    /// The observations made after `before` was scraped.
    pub fn since(&self, before: &HistogramSeries) -> HistogramSeries {
        let earlier = |bound: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c)
        };
        HistogramSeries {
            buckets: self
                .buckets
                .iter()
                .map(|(b, c)| (*b, c - earlier(*b)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// Mean observation, seconds.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Share of the observations at or below `bound`, which must be one of the bucket bounds
    /// (elsewhere a histogram cannot say).
    pub fn share_within(&self, bound: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let (_, c) = self
            .buckets
            .iter()
            .find(|(b, _)| (*b - bound).abs() < 1e-12)?;
        Some(c / self.count)
    }

    /// The smallest bucket bound that at least a share `q` of the observations are at or
    /// below: the quantile is no larger than it.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, c)| *c >= q * self.count)
            .map(|(b, _)| *b)
    }
}

/// What the server's own counters say about a phase: the differences of two scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounters {
    /// Batches committed.
    pub batches: f64,
    /// Mean messages per batch.
    pub mean_batch: f64,
    /// Mean seconds per batch commit (planning, SQL and COMMIT).
    pub mean_commit_seconds: f64,
    /// Share of the phase the writer spent committing (1 = the writer never waited for work).
    pub commit_busy: f64,
}

impl ServerCounters {
    /// From scrapes `before` and `after` a phase that lasted `seconds`.
    pub fn between(before: &str, after: &str, seconds: f64) -> Option<ServerCounters> {
        let d = |name: &str| Some(metric(after, name)? - metric(before, name).unwrap_or(0.0));
        let batches = d("meterhub_batch_size_count")?;
        let messages = d("meterhub_batch_size_sum")?;
        let commit = d("meterhub_commit_seconds_sum")?;
        (batches > 0.0).then(|| ServerCounters {
            batches,
            mean_batch: messages / batches,
            mean_commit_seconds: commit / batches,
            commit_busy: if seconds > 0.0 { commit / seconds } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP meterhub_batch_size Messages per committed batch.\n\
        # TYPE meterhub_batch_size histogram\n\
        meterhub_batch_size_bucket{le=\"1\"} 1\n\
        meterhub_batch_size_sum 1\n\
        meterhub_batch_size_count 1\n\
        meterhub_commit_seconds_sum 0.5\n\
        meterhub_commit_seconds_count 1\n";
    const AFTER: &str = "meterhub_batch_size_sum 1001\n\
        meterhub_batch_size_count 5\n\
        meterhub_commit_seconds_sum 2.5\n\
        meterhub_commit_seconds_count 5\n";

    #[test]
    fn series_are_read_by_exact_name() {
        assert_eq!(metric(BEFORE, "meterhub_batch_size_sum"), Some(1.0));
        assert_eq!(
            metric(BEFORE, "meterhub_batch_size"),
            None,
            "only the histogram's parts exist"
        );
        assert_eq!(metric(AFTER, "meterhub_commit_seconds_count"), Some(5.0));
    }

    const CLOCK_BEFORE: &str = "# TYPE meterhub_clock_answer_seconds histogram\n\
        meterhub_clock_answer_seconds_bucket{le=\"0.001\"} 1\n\
        meterhub_clock_answer_seconds_bucket{le=\"0.02\"} 2\n\
        meterhub_clock_answer_seconds_bucket{le=\"+Inf\"} 2\n\
        meterhub_clock_answer_seconds_sum 0.01\n\
        meterhub_clock_answer_seconds_count 2\n";
    const CLOCK_AFTER: &str = "meterhub_clock_answer_seconds_bucket{le=\"0.001\"} 81\n\
        meterhub_clock_answer_seconds_bucket{le=\"0.02\"} 101\n\
        meterhub_clock_answer_seconds_bucket{le=\"+Inf\"} 102\n\
        meterhub_clock_answer_seconds_sum 0.41\n\
        meterhub_clock_answer_seconds_count 102\n";

    #[test]
    fn a_histogram_of_a_phase_is_the_difference_of_two_scrapes() {
        let name = "meterhub_clock_answer_seconds";
        let before = HistogramSeries::parse(CLOCK_BEFORE, name).expect("exported");
        assert_eq!(before.buckets.len(), 3);
        assert_eq!(before.buckets[2], (f64::INFINITY, 2.0));
        let h = HistogramSeries::parse(CLOCK_AFTER, name)
            .expect("exported")
            .since(&before);
        assert_eq!(h.count, 100.0);
        assert_eq!(
            h.buckets,
            vec![(0.001, 80.0), (0.02, 99.0), (f64::INFINITY, 100.0)]
        );
        assert!((h.mean().expect("observations") - 0.004).abs() < 1e-9);
        assert_eq!(h.share_within(0.02), Some(0.99));
        assert_eq!(h.share_within(0.05), None, "not a bucket bound");
        assert_eq!(h.quantile_bound(0.5), Some(0.001));
        assert_eq!(h.quantile_bound(0.99), Some(0.02));
        assert_eq!(h.quantile_bound(0.999), Some(f64::INFINITY));
        assert_eq!(HistogramSeries::parse(CLOCK_AFTER, "meterhub_other"), None);
        assert_eq!(HistogramSeries::default().mean(), None);
    }

    #[test]
    fn counters_of_a_phase_are_the_differences_of_two_scrapes() {
        let c = ServerCounters::between(BEFORE, AFTER, 4.0).expect("batches");
        assert_eq!(c.batches, 4.0);
        assert_eq!(c.mean_batch, 250.0);
        assert_eq!(c.mean_commit_seconds, 0.5);
        assert_eq!(c.commit_busy, 0.5);
        assert_eq!(
            ServerCounters::between(AFTER, AFTER, 4.0),
            None,
            "no batch in the phase"
        );
    }
}
