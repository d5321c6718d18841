//! `meterhub-sim`: a fleet of simulated meter firmwares.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use firmware_protocol::Serial;
use firmware_protocol::clock::Clock;
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::runner::{self, RunSpec};
use tokio_util::sync::CancellationToken;

/// A fleet of simulated LoRaWAN gas and electricity meters for meterhub.
#[derive(Debug, Parser)]
#[command(name = "meterhub-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a fleet against an MQTT broker, publishing what ChirpStack would for each uplink.
    Run(RunArgs),
    /// Measure how fast the fleet generates uplinks (events built and serialised, no network),
    /// and the memory it takes.
    Bench {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        faults: FaultArgs,
        /// Uplinks to generate.
        #[arg(long, default_value_t = 2_000_000)]
        uplinks: u64,
    },
    /// Write the fleet's registry (CSV for `meterhub meters import`) and exit.
    Registry {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Print valid meter serial numbers (consecutive sequence numbers, check digit computed).
    Serials {
        /// How many serials.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Manufacturer code, 0–99.
        #[arg(long, default_value_t = 12)]
        manufacturer: u8,
        /// Production year, last two digits.
        #[arg(long, default_value_t = 26)]
        year: u8,
        /// Medium digit: 1 gas, 2 electricity, 3 both.
        #[arg(long, default_value_t = 1)]
        medium: u8,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        first: u32,
    },
}

/// The fleet's make-up.
#[derive(Debug, Clone, clap::Args)]
struct FleetArgs {
    /// Number of meters.
    #[arg(long, default_value_t = 1_000)]
    meters: u32,
    /// Seed of every random choice: the same seed gives the same run, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Minutes between readings.
    #[arg(long, default_value_t = 1_440)]
    reporting_interval: u16,
    /// Share of electricity meters (the rest are gas).
    #[arg(long, default_value_t = 0.5)]
    electricity_share: f64,
    /// Share of meters left out of the registry (their data is quarantined by the server).
    #[arg(long, default_value_t = 0.0)]
    unregistered_share: f64,
}

/// Faults on demand: rates per uplink (0–1) unless named a share of the fleet.
#[derive(Debug, Clone, clap::Args)]
struct FaultArgs {
    /// Uplinks no gateway hears.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// `up` events published twice with the same deduplicationId.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Uplinks that also arrive by a second path, under a new deduplicationId.
    #[arg(long, default_value_t = 0.0)]
    second_path: f64,
    /// Uplinks whose events are published after those of the next one to three uplinks.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Uplinks whose payload is garbled (no longer decodes).
    #[arg(long, default_value_t = 0.0)]
    garbled: f64,
    /// Share of meters whose frames carry a serial with a wrong check digit.
    #[arg(long, default_value_t = 0.0)]
    bad_serial_share: f64,
    /// Uplinks that start a silent spell of the meter.
    #[arg(long, default_value_t = 0.0)]
    silence: f64,
    /// Longest silent spell, simulated hours.
    #[arg(long, default_value_t = 72.0)]
    silence_max_hours: f64,
    /// Readings before which the meter's clock jumps.
    #[arg(long, default_value_t = 0.0)]
    clock_jumps: f64,
    /// Largest clock jump, seconds (kept below half the reporting interval).
    #[arg(long, default_value_t = 3_600)]
    clock_jump_max: i64,
    /// Uplinks with which the meter restarts its frame counter at 0.
    #[arg(long, default_value_t = 0.0)]
    f_cnt_resets: f64,
    /// Delivered uplinks the meter sends again with the same frame counter.
    #[arg(long, default_value_t = 0.0)]
    retransmissions: f64,
    /// Play a device profile with frame-counter validation disabled: ChirpStack accepts a
    /// counter that went back instead of logging UPLINK_F_CNT_RESET and dropping the uplink.
    #[arg(long)]
    skip_f_cnt_check: bool,
}

impl FaultArgs {
    fn faults(&self) -> Result<Faults> {
        let faults = Faults {
            loss: self.loss,
            duplicate: self.duplicates,
            second_path: self.second_path,
            reorder: self.reorder,
            garble: self.garbled,
            bad_serial_share: self.bad_serial_share,
            silence: self.silence,
            silence_max_seconds: (self.silence_max_hours * 3_600.0) as i64,
            clock_jump: self.clock_jumps,
            clock_jump_max_seconds: self.clock_jump_max,
            f_cnt_reset: self.f_cnt_resets,
            retransmission: self.retransmissions,
            skip_f_cnt_check: self.skip_f_cnt_check,
        };
        faults.check().map_err(anyhow::Error::msg)?;
        Ok(faults)
    }
}

impl FleetArgs {
    fn spec(&self) -> FleetSpec {
        FleetSpec {
            meters: self.meters,
            seed: self.seed,
            reporting_interval_minutes: self.reporting_interval,
            electricity_share: self.electricity_share,
            unregistered_share: self.unregistered_share,
            ..FleetSpec::default()
        }
    }
}

/// `meterhub-sim run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    faults: FaultArgs,
    /// MQTT broker (v5), as ChirpStack's integration would publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// Simulated days to run (forever when absent).
    #[arg(long)]
    days: Option<f64>,
    /// Simulated seconds per wall second; 86400 runs a day per second.
    #[arg(long, default_value_t = 1)]
    clock_speed: u32,
    /// RFC 3339 instant at which simulated and wall time coincide (needed above speed 1);
    /// give the server the same two values.
    #[arg(long)]
    clock_epoch: Option<String>,
    /// Also write the registry CSV here before starting.
    #[arg(long)]
    registry: Option<std::path::PathBuf>,
    /// At the end, write the summary as JSON here: totals, faults by kind, and the readings
    /// a server must have stored for each meter.
    #[arg(long)]
    summary_json: Option<std::path::PathBuf>,
}

async fn run(args: RunArgs) -> Result<String> {
    let spec = FleetSpec {
        faults: args.faults.faults()?,
        ..args.fleet.spec()
    };
    let clock = match (&args.clock_epoch, args.clock_speed) {
        (_, 0) => bail!("--clock-speed must be at least 1"),
        (None, 1) => Clock::System,
        (None, _) => bail!("--clock-epoch is required when --clock-speed is above 1"),
        (Some(epoch), speed) => {
            let epoch = chrono::DateTime::parse_from_rfc3339(epoch)
                .map_err(|e| anyhow::anyhow!("--clock-epoch {epoch:?}: {e}"))?;
            Clock::accelerated(speed, epoch.to_utc().into())
                .ok_or_else(|| anyhow::anyhow!("--clock-speed must be at least 1"))?
        }
    };
    if let Some(path) = &args.registry {
        let start = clock.now_unix();
        let meters = fleet::build(&spec, start);
        std::fs::write(path, fleet::registry_csv(&spec, &meters))?;
    }
    let (host, port) = parse_mqtt_url(&args.mqtt_url)?;
    let run = RunSpec {
        fleet: spec,
        host,
        port,
        client_id: format!("meterhub-sim-{}", std::process::id()),
        duration: args.days.map(|d| (d * 86_400.0) as i64),
    };
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        ctrl_c.cancel();
    });
    let started = std::time::Instant::now();
    let mut last = (std::time::Instant::now(), 0u64);
    let report = runner::run(run, clock, stop, |r| {
        let rate = (r.uplinks - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (std::time::Instant::now(), r.uplinks);
        eprintln!("{}", r.progress_line(rate, started.elapsed()));
    })
    .await?;
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&report.to_json())?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(report.summary(started.elapsed()))
}

fn bench(spec: &FleetSpec, uplinks: u64) -> Result<String> {
    let started = std::time::Instant::now();
    let mut sim = meterhub_sim::simulation::Simulation::new(spec, 1_784_678_400);
    let built = started.elapsed();
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    for _ in 0..uplinks {
        let Some(e) = sim.emit()? else { break };
        bytes += e.up.payload.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_kib().map_or("unknown".to_owned(), |k| format!("{} MiB", k / 1024));
    Ok(format!(
        "{} meters built in {:.2} s; {uplinks} uplinks in {elapsed:.2} s = {:.0} uplinks/s \
         ({:.0} bytes of JSON each); peak memory {peak}\n",
        spec.meters,
        built.as_secs_f64(),
        uplinks as f64 / elapsed,
        bytes as f64 / uplinks.max(1) as f64,
    ))
}

/// Peak resident memory of this process, KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `mqtt://host:port` → host and port.
fn parse_mqtt_url(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| anyhow::anyhow!("--mqtt-url must start with mqtt://"))?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .unwrap_or((rest, "1883"));
    Ok((host.to_owned(), port.parse()?))
}

fn serials(count: u32, manufacturer: u8, year: u8, medium: u8, first: u32) -> Result<String> {
    let mut out = String::new();
    for i in 0..count {
        let Some(sequence) = first.checked_add(i) else {
            bail!("sequence numbers overflow");
        };
        let Some(serial) = Serial::new(manufacturer, year, medium, sequence) else {
            bail!(
                "a serial needs manufacturer and year ≤ 99, medium ≤ 9 and sequence ≤ 99999999 \
                 (got {manufacturer}, {year}, {medium}, {sequence})"
            );
        };
        out.push_str(&serial.to_string());
        out.push('\n');
    }
    Ok(out)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(args))),
        Command::Bench {
            fleet: f,
            faults,
            uplinks,
        } => faults
            .faults()
            .and_then(|faults| bench(&FleetSpec { faults, ..f.spec() }, uplinks)),
        Command::Registry { fleet: f } => {
            let spec = f.spec();
            let meters = fleet::build(&spec, 0);
            Ok(fleet::registry_csv(&spec, &meters))
        }
        Command::Serials {
            count,
            manufacturer,
            year,
            medium,
            first,
        } => serials(count, manufacturer, year, medium, first),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
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
    fn printed_serials_are_valid_and_consecutive() {
        let out = serials(3, 12, 26, 1, 1233).expect("valid parts");
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(
            lines,
            ["12261000012330", "12261000012348", "12261000012355"]
        );
        for l in lines {
            assert!(Serial::parse(l).is_ok());
        }
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        assert!(serials(1, 100, 26, 1, 1).is_err());
        assert!(serials(2, 12, 26, 1, 99_999_999).is_err());
    }
}
