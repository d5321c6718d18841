//! `meterhub-sim run --transport udp`: the command line's settings turned into a
//! [`UdpSpec`], and the run with its progress lines.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use firmware_protocol::clock::Clock;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::udp::keys::{keys_csv, parse_hex};
use meterhub_sim::udp::{self, Realism, UdpSpec};
use tokio_util::sync::CancellationToken;

use crate::cli::UdpArgs;
use crate::progress;

/// Runs the fleet of `spec` through simulated gateways as `args` says.
pub async fn run(
    spec: FleetSpec,
    args: &UdpArgs,
    clock: Clock,
    duration: Option<i64>,
    summary_json: Option<&Path>,
) -> Result<String> {
    let servers = args
        .gateway
        .iter()
        .map(|g| resolve(g))
        .collect::<Result<Vec<_>>>()?;
    let count = args.gateways.max(1);
    if servers.len() != 1 && servers.len() != usize::from(count) {
        bail!(
            "--gateway is given {} times for {count} gateways: give it once (one Gateway Bridge \
             for all) or once per gateway (one MQTT Forwarder each)",
            servers.len()
        );
    }
    udp::faults::check(&spec.faults, usize::from(count)).map_err(anyhow::Error::msg)?;
    let first: [u8; 8] = parse_hex(&args.gateway_eui).context("--gateway-eui")?;
    let first = u64::from_be_bytes(first);
    let gateways = (0..u64::from(count))
        .map(|i| first.wrapping_add(i).to_be_bytes())
        .collect();
    let keys = args.keys.keys(spec.seed)?;
    if let Some(path) = &args.keys_csv {
        let meters = fleet::build(&spec, 0);
        std::fs::write(path, keys_csv(&keys, &meters))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // Minutes since the epoch: a later run starts above an earlier one's nonces unless a
    // meter joined more than once a minute in between.
    let dev_nonce_start = args.dev_nonce_start.unwrap_or_else(|| {
        let minutes = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        minutes as u16
    });
    let udp_spec = UdpSpec {
        gateways,
        keys,
        join_rate: args.join_rate,
        join_timeout: Duration::from_secs(args.join_timeout.max(1)),
        dev_nonce_start,
        duration,
        servers: servers.clone(),
        radio: Realism {
            duty_cycle: !args.no_duty_cycle,
            collisions: !args.no_collisions,
            rx_windows: !args.no_rx_windows,
        },
        ..UdpSpec::new(spec, servers[0])
    };
    let stop = progress::stop_on_ctrl_c();
    let started = std::time::Instant::now();
    let report = udp::run(udp_spec, clock, stop, progress::printer(started)).await?;
    if let Some(path) = summary_json {
        let json = serde_json::to_vec_pretty(&report.to_json())?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.summary(started.elapsed()))
}

fn resolve(gateway: &str) -> Result<SocketAddr> {
    gateway
        .to_socket_addrs()
        .with_context(|| format!("--gateway {gateway}"))?
        .next()
        .with_context(|| format!("--gateway {gateway} resolves to no address"))
}

/// How far the simulator's clock may be from the wall clock against a real ChirpStack, which
/// ignores a gateway time more than 30 s from its own.
const CLOCK_TOLERANCE_SECONDS: i64 = 30;

/// Refuses a clock a real ChirpStack cannot follow (accelerated, or set away from the wall
/// clock) unless `allow`: ChirpStack runs on real time, and the frames' times and its own
/// would disagree.
pub fn check_clock(clock: &Clock, allow: bool) -> Result<()> {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let off = (clock.now_unix() - wall).abs();
    check_speed(clock.speed(), allow)?;
    if off > CLOCK_TOLERANCE_SECONDS && !allow {
        bail!(
            "--transport udp runs against a real ChirpStack, which keeps real time: the clock \
             here is {off} s from the wall clock; leave out its start, or give \
             --allow-accelerated-clock for a network server of your own"
        );
    }
    Ok(())
}

/// Refuses a clock faster than real time unless `allow` (see [`check_clock`]).
pub fn check_speed(speed: u32, allow: bool) -> Result<()> {
    if speed != 1 && !allow {
        bail!(
            "--transport udp runs against a real ChirpStack, which keeps real time: leave out \
             --clock-speed (here {speed}), or give --allow-accelerated-clock for a network \
             server of your own"
        );
    }
    Ok(())
}

/// Sends the fleet of `spec` through one gateway to a counting server on 127.0.0.1 for
/// `seconds`, simulated time running so fast that every meter is always due: the rate is the
/// transport's, not the fleet's.
pub async fn bench(spec: FleetSpec, seconds: u64) -> Result<String> {
    let meters = spec.meters;
    let keys = meterhub_sim::udp::FleetKeys::for_seed(spec.seed);
    let server = meterhub_sim::udp::bench::CountingServer::start(keys.clone()).await?;
    let speed = 1_000_000_000;
    let clock =
        Clock::accelerated(speed, std::time::SystemTime::now()).context("a positive speed")?;
    let udp_spec = UdpSpec {
        keys,
        join_rate: 1_000_000.0,
        // Simulated time runs far ahead of the frames due, so a join (at the simulated now)
        // would hold back every frame due before it: the duty cycle has no meaning here.
        radio: Realism {
            duty_cycle: false,
            ..Realism::default()
        },
        ..UdpSpec::new(spec, server.address)
    };
    // Simulated time runs ahead of what any machine can send: the run ends by the wall clock.
    let stop = CancellationToken::new();
    let timer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        timer.cancel();
    });
    let started = std::time::Instant::now();
    let report = udp::run(udp_spec, clock, stop, |_| {}).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let received = server.uplinks.load(std::sync::atomic::Ordering::Relaxed);
    Ok(format!(
        "{meters} meters, {} joined; {} uplinks sent in {elapsed:.2} s = {:.0} uplinks/s \
         ({received} counted by the server, {} PUSH_DATA acknowledged)",
        report.joined,
        report.uplinks,
        report.uplinks as f64 / elapsed,
        report.gateways.push_acked
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_time_clock_is_taken_unless_allowed() {
        assert!(check_clock(&Clock::System, false).is_ok());
        let now = std::time::SystemTime::now();
        let fast = Clock::accelerated(86_400, now).expect("speed");
        let refused = check_clock(&fast, false).expect_err("accelerated");
        assert!(refused.to_string().contains("--allow-accelerated-clock"));
        assert!(check_clock(&fast, true).is_ok());
        let behind = Clock::manual(now - Duration::from_secs(3_600));
        assert!(check_clock(&behind, false).is_err());
        assert!(check_clock(&Clock::manual(now), false).is_ok());
    }
}
