//! `meterhub-loadtest`: load scenarios against a meterhub on this machine.

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
        /// CSV file to append the run's figures to (header written when the file is new).
        #[arg(long, default_value = "loadtest-results.csv")]
        csv: PathBuf,
        /// Meters in the simulated fleet; events go round them.
        #[arg(long, default_value_t = 10_000)]
        meters: u32,
        /// MQTT connections the events are published over.
        #[arg(long, default_value_t = 2)]
        publishers: u32,
        /// How often commit progress is read; commit latencies are exact to within it.
        #[arg(long, default_value = "10ms", value_parser = parse_duration)]
        poll_interval: Duration,
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
    },
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
    let result = match Cli::parse().command {
        Command::Ingest {
            mqtt_url,
            database_url,
            rate,
            duration,
            csv,
            meters,
            publishers,
            poll_interval,
            drain_timeout,
            server_bin,
            server_http,
            server_log,
            broker_pid,
        } => {
            let args = IngestArgs {
                mqtt_url,
                database_url,
                rate,
                duration,
                csv,
                meters,
                publishers,
                poll_interval,
                drain_timeout,
                server_bin,
                server_http,
                server_log,
                broker_pid,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(ingest::run(args)))
        }
    };
    match result {
        Ok(report) if report.outcome() == "ok" => ExitCode::SUCCESS,
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
