//! `meterhub-loadtest`: load scenarios against a meterhub on this machine.

mod api;
mod clock;
mod cpu;
mod db;
mod event;
mod ingest;
mod mqtt;
mod pacing;
mod progress;
mod reader;
mod report;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::ApiArgs;
use crate::clock::ClockArgs;
use crate::ingest::IngestArgs;

/// Load scenarios for meterhub: ingest throughput, latency percentiles and REST response times.
#[derive(Debug, Parser)]
#[command(name = "meterhub-loadtest", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish ChirpStack `up` events at a set rate (QoS 1), first through the broker alone to a
    /// plain subscriber, then to meterhub; report the committed rate, publish-to-commit
    /// latency and the broker's pass-through rate. Talks only to 127.0.0.1.
    Ingest {
        #[command(flatten)]
        common: Common,
        /// CSV file to append the run's figures to (header written when the file is new).
        #[arg(long, default_value = "loadtest-results.csv")]
        csv: PathBuf,
        /// Meters in the simulated fleet; events go round them.
        #[arg(long, default_value_t = 10_000)]
        meters: u32,
        /// How often commit progress is read; commit latencies are exact to within it.
        #[arg(long, default_value = "10ms", value_parser = parse_duration)]
        poll_interval: Duration,
    },
    /// Publish ChirpStack `up` events at a set rate (QoS 1) to meterhub, one in `--every` a
    /// TS003 AppTimeReq and the rest readings; report how long the clock answers on
    /// `command/down` take from each request's publish (matched by id), and the committed
    /// rate they were given under. Talks only to 127.0.0.1.
    Clock {
        #[command(flatten)]
        common: Common,
        /// One event in this many is an AppTimeReq.
        #[arg(long, default_value_t = 10)]
        every: u32,
        /// CSV file to append the run's figures to (header written when the file is new).
        #[arg(long, default_value = "loadtest-clock.csv")]
        csv: PathBuf,
        /// Meters in the simulated fleet; events go round them. By default as many as the
        /// rate, so that each meter reports about once a second and its readings keep time
        /// with the events (no clock-drift resynchronisations).
        #[arg(long)]
        meters: Option<u32>,
        /// How often commit progress is read (the committed rate is the figure wanted here,
        /// not each commit's latency, so reading it seldom spares the database).
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        poll_interval: Duration,
        /// Longest wait for the last answers after publishing ends.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        answer_wait: Duration,
    },
    /// REST response times against fleet size: prepare a fleet with a month and more of
    /// daily readings per meter (or reuse it), then measure select (around and through the
    /// cache), insert and update requests over keep-alive connections. Talks only to
    /// 127.0.0.1.
    Api(Box<ApiArgs>),
    /// Draw mean and p99 response time against fleet size from the `api` CSV, as SVG.
    Chart {
        /// The CSV the `api` scenario appends to.
        #[arg(long, default_value = "loadtest-api.csv")]
        csv: PathBuf,
        /// The SVG to write.
        #[arg(long, default_value = "loadtest-api.svg")]
        svg: PathBuf,
        /// Only rows at this concurrency (else the last row of each phase and fleet size).
        #[arg(long)]
        concurrency: Option<u32>,
    },
}

/// The settings every scenario shares.
#[derive(Debug, clap::Args)]
struct Common {
    /// MQTT broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// Database the server commits to: meters are registered in it and commit progress
    /// is read from it (postgres://127.0.0.1/… or sqlite://PATH).
    #[arg(long)]
    database_url: String,
    /// Uplinks per second offered.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// How long each phase publishes, e.g. `20s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// MQTT connections the events are published over.
    #[arg(long, default_value_t = 2)]
    publishers: u32,
    /// Longest wait for the last events after publishing ends.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Start this `meterhub` binary (`serve` on the given broker and database, HTTP on a
    /// free loopback port) for the run and stop it afterwards, instead of using a
    /// running server.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// HTTP address of an already running server, to read its /metrics.
    #[arg(long)]
    server_http: Option<SocketAddr>,
    /// Show the started server's log.
    #[arg(long)]
    server_log: bool,
    /// Process id of the broker, to tell its CPU use from other processes'.
    #[arg(long)]
    broker_pid: Option<u32>,
}

impl Common {
    fn into_args(self, csv: PathBuf, meters: u32, poll_interval: Duration) -> IngestArgs {
        IngestArgs {
            mqtt_url: self.mqtt_url,
            database_url: self.database_url,
            rate: self.rate,
            duration: self.duration,
            csv,
            meters,
            publishers: self.publishers,
            poll_interval,
            drain_timeout: self.drain_timeout,
            server_bin: self.server_bin,
            server_http: self.server_http,
            server_log: self.server_log,
            broker_pid: self.broker_pid,
        }
    }
}

/// Parses `250ms`, `30s`, `5m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("unknown unit {unit:?}: use ms, s or m")),
    }
}

fn main() -> ExitCode {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
    };
    let outcome = match Cli::parse().command {
        Command::Ingest {
            common,
            csv,
            meters,
            poll_interval,
        } => {
            let args = common.into_args(csv, meters, poll_interval);
            runtime()
                .and_then(|rt| rt.block_on(ingest::run(args)))
                .map(|report| report.outcome())
        }
        Command::Clock {
            common,
            every,
            csv,
            meters,
            poll_interval,
            answer_wait,
        } => {
            let meters = meters.unwrap_or(common.rate.max(1));
            let args = ClockArgs {
                run: common.into_args(csv, meters, poll_interval),
                every,
                answer_wait,
            };
            runtime()
                .and_then(|rt| rt.block_on(clock::run(args)))
                .map(|report| report.outcome())
        }
        Command::Api(command) => runtime()
            .and_then(|rt| rt.block_on(api::run(*command)))
            .map(|rows| {
                if rows.iter().all(|r| r.errors == 0) {
                    "ok".to_owned()
                } else {
                    "errors".to_owned()
                }
            }),
        Command::Chart {
            csv,
            svg,
            concurrency,
        } => api::chart::draw(&csv, &svg, concurrency).map(|()| "ok".to_owned()),
    };
    match outcome {
        Ok(outcome) if outcome == "ok" => ExitCode::SUCCESS,
        // The figures are printed and saved; the exit status says they are not the whole story.
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
