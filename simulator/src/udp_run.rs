//! `meterhub-sim run --transport udp`: the command line's settings turned into a
//! [`UdpSpec`], and the run with its progress lines.

use std::net::ToSocketAddrs;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use firmware_protocol::clock::Clock;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::udp::keys::{keys_csv, parse_hex};
use meterhub_sim::udp::{self, UdpSpec};
use tokio_util::sync::CancellationToken;

use crate::cli::UdpArgs;
use crate::progress;

/// Runs the fleet of `spec` through simulated gateways as `args` says.
pub async fn run(
    spec: FleetSpec,
    args: &UdpArgs,
    clock: Clock,
    duration: Option<i64>,
) -> Result<String> {
    if spec.faults.any() {
        bail!("the udp transport plays no faults: leave the fault flags out");
    }
    let server = args
        .gateway
        .to_socket_addrs()
        .with_context(|| format!("--gateway {}", args.gateway))?
        .next()
        .with_context(|| format!("--gateway {} resolves to no address", args.gateway))?;
    let first: [u8; 8] = parse_hex(&args.gateway_eui).context("--gateway-eui")?;
    let first = u64::from_be_bytes(first);
    let gateways = (0..u64::from(args.gateways.max(1)))
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
        ..UdpSpec::new(spec, server)
    };
    let stop = progress::stop_on_ctrl_c();
    let started = std::time::Instant::now();
    let report = udp::run(udp_spec, clock, stop, progress::printer(started)).await?;
    Ok(report.summary(started.elapsed()))
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
