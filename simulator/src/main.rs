//! `meterhub-sim`: a fleet of simulated meter firmwares.

mod cli;
mod progress;
mod udp_run;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use firmware_protocol::Serial;
use firmware_protocol::clock::Clock;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::runner::{self, RunSpec};

use crate::cli::{Cli, Command, RunArgs, Transport};

/// `meterhub-sim provision`: the fleet in ChirpStack; prints what was done and what to run next.
#[cfg(feature = "provision")]
async fn provision(args: cli::ProvisionArgs) -> Result<String> {
    use anyhow::Context as _;
    use meterhub_sim::provision::{Target, provision};
    use meterhub_sim::udp::keys::{hex, parse_hex};
    let spec = args.fleet.spec()?;
    let keys = args.keys.keys(spec.seed)?;
    let first: [u8; 8] = parse_hex(&args.gateway_eui).context("--gateway-eui")?;
    let first = u64::from_be_bytes(first);
    let gateways: Vec<[u8; 8]> = (0..u64::from(args.gateways.max(1)))
        .map(|i| first.wrapping_add(i).to_be_bytes())
        .collect();
    let target = Target {
        tenant_id: args.tenant_id.clone(),
        application: args.application.clone(),
        gateways: gateways.clone(),
    };
    let api = meterhub_chirpstack::ChirpStackApi::connect(&args.api_url, &args.api_token).await?;
    let done = provision(&api, &spec, &keys, &target).await?;
    Ok(format!(
        "tenant {}\n\
         gateways {} ({} created)\n\
         device profile {}\n\
         application {} ({}): {} devices created, {} kept\n\
         meterhub's settings: [chirpstack] application_id = \"{}\", device_profile_id = \"{}\"\n\
         next (with the same fleet and key flags): meterhub-sim run --transport udp --meters {} --seed {} --gateways {} --gateway-eui {} --application-id {} --gateway HOST:1700\n",
        done.tenant_id,
        gateways
            .iter()
            .map(|g| hex(g))
            .collect::<Vec<_>>()
            .join(" "),
        done.gateways_created,
        done.device_profile_id,
        args.application,
        done.application_id,
        done.devices_created,
        done.devices_kept,
        done.application_id,
        done.device_profile_id,
        spec.meters,
        spec.seed,
        gateways.len(),
        args.gateway_eui,
        done.application_id,
    ))
}

async fn run(args: RunArgs) -> Result<String> {
    if !(0.0..=1.0).contains(&args.tamper) {
        bail!("--tamper must be between 0 and 1, got {}", args.tamper);
    }
    let spec = FleetSpec {
        faults: args.faults.faults()?,
        tamper: args.tamper,
        ..args.fleet.spec()?
    };
    if args.transport == Transport::Udp && args.clock_speed > 1 {
        udp_run::check_speed(args.clock_speed, args.udp.allow_accelerated_clock)?;
    }
    let duration = args.days.map(|d| (d * 86_400.0) as i64);
    let clock = clock(&args, duration)?;
    if let Some(path) = &args.registry {
        let start = clock.now_unix();
        let meters = fleet::build(&spec, start);
        std::fs::write(path, fleet::registry_csv(&spec, &meters))?;
    }
    if args.transport == Transport::Udp {
        udp_run::check_clock(&clock, args.udp.allow_accelerated_clock)?;
        return udp_run::run(
            spec,
            &args.udp,
            clock,
            duration,
            args.summary_json.as_deref(),
        )
        .await;
    }
    let (host, port) = parse_mqtt_url(&args.mqtt_url)?;
    let run = RunSpec {
        fleet: spec,
        host,
        port,
        client_id: format!("meterhub-sim-{}", std::process::id()),
        duration,
    };
    let stop = progress::stop_on_ctrl_c();
    let started = std::time::Instant::now();
    let report = runner::run(run, clock, stop, progress::printer(started)).await?;
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&report.to_json())?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(report.summary(started.elapsed()))
}

/// The clock of `run`: wall time, or accelerated from `--clock-start` at `--clock-anchor`;
/// refused when the run would leave the time a meter's clock can show.
fn clock(args: &RunArgs, duration: Option<i64>) -> Result<Clock> {
    let parse = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| std::time::SystemTime::from(t.to_utc()))
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{flag} {t:?}: {e}; give an RFC 3339 time such as 2026-01-01T00:00:00Z"
                        )
                    })
            })
            .transpose()
    };
    let start = parse("--clock-start", &args.clock_start)?;
    let anchor = parse("--clock-anchor", &args.clock_anchor)?;
    let clock = match (args.clock_speed, start) {
        (0, _) => bail!("--clock-speed must be at least 1"),
        (1, None) => Clock::System,
        (speed, start) => {
            let anchor = anchor.unwrap_or_else(std::time::SystemTime::now);
            Clock::accelerated_from(speed, start.unwrap_or(anchor), anchor)
                .ok_or_else(|| anyhow::anyhow!("--clock-speed must be at least 1"))?
        }
    };
    let run = duration.map(|secs| std::time::Duration::from_secs(secs.max(0).unsigned_abs()));
    let wall = chrono::Utc::now().timestamp_micros();
    clock.check_range(wall, run)?;
    Ok(clock)
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
            .and_then(|rt| rt.block_on(run(*args))),
        Command::Bench {
            fleet: f,
            faults,
            transport: Transport::Udp,
            seconds,
            ..
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                let spec = FleetSpec {
                    faults: faults.faults()?,
                    ..f.spec()?
                };
                rt.block_on(udp_run::bench(spec, seconds))
            })
            .map(|line| {
                let peak =
                    peak_rss_kib().map_or("unknown".to_owned(), |k| format!("{} MiB", k / 1024));
                format!("{line}; peak memory {peak}\n")
            }),
        Command::Bench {
            fleet: f,
            faults,
            uplinks,
            ..
        } => f.spec().and_then(|spec| {
            let faults = faults.faults()?;
            bench(&FleetSpec { faults, ..spec }, uplinks)
        }),
        Command::Registry {
            fleet: f,
            keys,
            keys_csv,
        } => f.spec().and_then(|spec| {
            let meters = fleet::build(&spec, 0);
            if let Some(path) = keys_csv {
                let keys = keys.keys(spec.seed)?;
                std::fs::write(&path, meterhub_sim::udp::keys::keys_csv(&keys, &meters))
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            Ok(fleet::registry_csv(&spec, &meters))
        }),
        #[cfg(feature = "provision")]
        Command::Provision(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(provision(*args))),
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
