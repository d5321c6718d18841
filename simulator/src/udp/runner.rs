//! Runs a fleet through simulated gateways: one loop sends what falls due (in simulated time),
//! paces joins, keeps each gateway's PULL_DATA keep-alive and status going, and hands every
//! received datagram to the devices. The only other tasks are the gateways' socket readers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use firmware_protocol::Uplink;
use firmware_protocol::clock::Clock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::air::{Air, Flight};
use super::devices::{Devices, Due, Taken};
use super::faults::{Landed, Ledger};
use super::gateway::{Gateway, GatewayCounters};
use super::keys::FleetKeys;
use super::packet_forwarder::{Downstream, parse_downstream};
use super::radio;
pub use super::report::UdpReport;
use crate::fleet::FleetSpec;
use crate::meter::is_tamper;
use crate::rng::Pcg32;

/// The longest the loop sleeps at once: it wakes at least this often anyway (keep-alives).
const MAX_WAIT: Duration = Duration::from_secs(3_600);

/// What to run.
#[derive(Debug, Clone)]
pub struct UdpSpec {
    /// The fleet.
    pub fleet: FleetSpec,
    /// Where every gateway sends its datagrams (a Gateway Bridge, or the MQTT Forwarder of a
    /// single gateway), unless `servers` says otherwise.
    pub server: SocketAddr,
    /// Where each gateway sends, in the order of `gateways` (an MQTT Forwarder serves one
    /// gateway EUI); `server` for all when empty.
    pub servers: Vec<SocketAddr>,
    /// The gateways' EUIs; meter `i` is heard by gateway `i mod n`.
    pub gateways: Vec<[u8; 8]>,
    /// The meters' root keys.
    pub keys: FleetKeys,
    /// JoinRequests per wall second, fleet-wide.
    pub join_rate: f64,
    /// Wall time to wait for a JoinAccept before trying again (doubling at each attempt).
    pub join_timeout: Duration,
    /// DevNonce of every meter's first JoinRequest.
    pub dev_nonce_start: u16,
    /// PULL_DATA keep-alive interval.
    pub keepalive: Duration,
    /// Status report interval.
    pub stat_interval: Duration,
    /// Simulated seconds to run; forever when `None`.
    pub duration: Option<i64>,
    /// Which radio constraints the run plays.
    pub radio: Realism,
}

/// The radio constraints of a run, each on unless turned off: a load tester's city behaves
/// like one only with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Realism {
    /// Each meter keeps EU868's 1 % duty cycle per sub-band, holding a frame back until it
    /// may send it (and giving it up after a reporting interval).
    pub duty_cycle: bool,
    /// Frames a gateway hears on the same channel and spreading factor at overlapping times
    /// are lost (see [`super::air`]).
    pub collisions: bool,
    /// A gateway sends a downlink only if it arrives before the time its `txpk` names (the
    /// meter's RX1 or RX2 window); later it answers TX_ACK `TOO_LATE` and the meter never
    /// hears it.
    pub rx_windows: bool,
}

impl Default for Realism {
    fn default() -> Self {
        Realism {
            duty_cycle: true,
            collisions: true,
            rx_windows: true,
        }
    }
}

/// A gateway refuses a downlink due sooner than this after it arrives, µs: the packet
/// forwarder needs the time to load the radio (its `TX_START_DELAY` of 1.5 ms, plus a margin).
const TX_LEAD_US: i32 = 3_000;

/// A copy of an uplink on the air, to forward once it lands.
#[derive(Debug, Clone)]
struct Uplinked {
    /// The frame's id: its copies share it.
    id: u64,
    index: u32,
    frame: Vec<u8>,
    session: u32,
    f_cnt: u32,
    reading: bool,
    tamper: bool,
    /// Whether the server must store what it carries once forwarded: a registered meter's,
    /// its payload intact (a reading's serial valid too).
    stores: bool,
    /// Heard by a second gateway (not the meter's own).
    second: bool,
    /// The gateway's PUSH_DATA of this copy reaches the server twice.
    duplicate: bool,
}

impl UdpSpec {
    /// A spec with the packet forwarder's usual intervals: keep-alive 10 s, status 30 s.
    pub fn new(fleet: FleetSpec, server: SocketAddr) -> UdpSpec {
        let keys = FleetKeys::for_seed(fleet.seed);
        UdpSpec {
            fleet,
            server,
            servers: Vec::new(),
            gateways: vec![[0x00, 0x16, 0xc0, 0x01, 0xff, 0x00, 0x00, 0x01]],
            keys,
            join_rate: 50.0,
            join_timeout: Duration::from_secs(10),
            dev_nonce_start: 0,
            keepalive: Duration::from_secs(10),
            stat_interval: Duration::from_secs(30),
            duration: None,
            radio: Realism::default(),
        }
    }
}

/// Runs `spec` on `clock` until its duration has passed in simulated time or `stop` fires.
/// `progress` is called about every second with the report so far, and once at the end.
pub async fn run(
    spec: UdpSpec,
    clock: Clock,
    stop: CancellationToken,
    mut progress: impl FnMut(&UdpReport),
) -> Result<UdpReport> {
    anyhow::ensure!(!spec.gateways.is_empty(), "at least one gateway is needed");
    anyhow::ensure!(spec.join_rate > 0.0, "the join rate must be positive");
    super::faults::check(&spec.fleet.faults, spec.gateways.len()).map_err(anyhow::Error::msg)?;
    let start = clock.now_unix();
    let end = spec.duration.map(|d| start + d);
    let mut devices = Devices::new(
        &spec.fleet,
        spec.keys.clone(),
        start,
        spec.dev_nonce_start,
        spec.join_timeout,
    );
    devices.set_duty_cycle(spec.radio.duty_cycle);
    let mut airwaves = Airwaves {
        air: Air::new(spec.radio.collisions),
        noise: Pcg32::new(spec.fleet.seed ^ 0x0a1e, 0),
        seed: spec.fleet.seed,
        ledger: Ledger::new(
            spec.fleet.faults.f_cnt_reset > 0.0 || spec.fleet.faults.retransmission > 0.0,
        ),
        next_id: 0,
    };
    // Bounded: a runner that falls behind makes the readers wait, and the kernel drops
    // datagrams, as a real gateway's would.
    let (received_tx, mut received) = mpsc::channel::<(usize, Vec<u8>)>(4_096);
    let mut gateways = Vec::new();
    let mut readers = Vec::new();
    for (n, eui) in spec.gateways.iter().enumerate() {
        let server = spec.servers.get(n).copied().unwrap_or(spec.server);
        let (gateway, reader) =
            Gateway::connect(n, *eui, server, spec.fleet.seed, received_tx.clone()).await?;
        gateways.push(gateway);
        readers.push(reader);
    }
    drop(received_tx);
    let mut report = UdpReport::for_fleet(devices.len());
    // Below one join an hour the pace no longer matters; the cap keeps the arithmetic sane.
    let join_interval = Duration::try_from_secs_f64(1.0 / spec.join_rate)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    let mut next_join = Instant::now();
    let mut next_keepalive = Instant::now();
    let mut next_stat = Instant::now() + spec.stat_interval;
    let mut last_progress = Instant::now();
    loop {
        if stop.is_cancelled() {
            break;
        }
        while let Ok((gateway, datagram)) = received.try_recv() {
            take_datagram(
                &mut devices,
                &mut gateways,
                &mut report,
                &clock,
                gateway,
                &datagram,
                spec.radio.rx_windows,
            )
            .await;
        }
        let now = Instant::now();
        if now >= next_keepalive {
            for g in &mut gateways {
                g.expire(now);
                if let Err(e) = g.pull().await {
                    report.send_errors += 1;
                    tracing::debug!(error = %e, "PULL_DATA");
                }
            }
            next_keepalive = now + spec.keepalive;
        }
        if now >= next_stat {
            let time = sim_time(&clock);
            for g in &mut gateways {
                if let Err(e) = g.push_stat(time).await {
                    report.send_errors += 1;
                    tracing::debug!(error = %e, "status PUSH_DATA");
                }
            }
            next_stat = now + spec.stat_interval;
        }
        report.join_retries += devices.join_timeouts(now) as u64;
        while next_join <= now && devices.joiners_waiting() > 0 {
            if let Some(index) = devices.next_joiner() {
                let g = index as usize % gateways.len();
                let tmst = gateways[g].tmst();
                let sim_us = clock.now_unix_micros();
                if let Some(frame) = devices.join_request(index, g, tmst, now, sim_us) {
                    report.join_requests += 1;
                    let channel = radio::pick_channel(&mut airwaves.noise);
                    let rxpk = radio::rxpk(
                        spec.fleet.seed,
                        index,
                        &frame,
                        channel,
                        tmst,
                        sim_time(&clock),
                        &mut airwaves.noise,
                    );
                    if let Err(e) = gateways[g].push_frames(vec![rxpk]).await {
                        report.send_errors += 1;
                        tracing::debug!(error = %e, "JoinRequest PUSH_DATA");
                    }
                }
            }
            // Catch up at most one interval: a backlog is not sent in a burst.
            next_join =
                (next_join + join_interval).max(now.checked_sub(join_interval).unwrap_or(now));
        }
        let sim_now = clock.now_unix();
        let due = devices.next_due();
        // Every frame that starts before this has taken the air: no frame still to come can
        // start before the next one due, nor before now.
        let horizon = due.map_or(i64::MAX, |at| at.saturating_mul(1_000_000));
        let horizon = horizon.min(clock.now_unix_micros());
        airwaves
            .land(horizon, &mut gateways, &mut report, &clock)
            .await;
        let finished = end.is_some_and(|e| due.is_none_or(|at| at > e) && sim_now >= e);
        if finished {
            break;
        }
        if due.is_some_and(|at| at <= sim_now && end.is_none_or(|e| at <= e)) {
            if let Some(d) = devices.emit()? {
                airwaves.take_due(&devices, gateways.len(), &mut report, d);
            }
        } else {
            // Sleep until the next thing: a frame due, a join slot, a timer, a keep-alive.
            let mut wake = next_keepalive.min(next_stat);
            if devices.joiners_waiting() > 0 {
                wake = wake.min(next_join);
            }
            if let Some(t) = devices.next_join_timer() {
                wake = wake.min(t);
            }
            if let Some(at) = due {
                let wait = clock
                    .wall_duration(Duration::from_secs(at.saturating_sub(sim_now).max(0) as u64));
                wake = wake.min(Instant::now() + wait.min(MAX_WAIT));
            }
            if let Some(e) = end {
                let wait = clock
                    .wall_duration(Duration::from_secs(e.saturating_sub(sim_now).max(0) as u64));
                wake = wake.min(Instant::now() + wait.min(MAX_WAIT));
            }
            if let Some(landing) = airwaves.air.next_end() {
                let ahead = landing.saturating_sub(clock.now_unix_micros()).max(0) as u64;
                let wait = clock.wall_duration(Duration::from_micros(ahead));
                wake = wake.min(Instant::now() + wait.min(MAX_WAIT));
            }
            let wait = wake
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), MAX_WAIT);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some((gateway, datagram)) = received.recv() => {
                    take_datagram(&mut devices, &mut gateways, &mut report, &clock, gateway, &datagram, spec.radio.rx_windows).await;
                }
                _ = stop.cancelled() => break,
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            fill(&mut report, &devices, &gateways);
            progress(&report);
            last_progress = Instant::now();
        }
    }
    // Frames still on the air reach their gateways: nothing else will start now.
    airwaves
        .land(i64::MAX, &mut gateways, &mut report, &clock)
        .await;
    // The last acknowledgements are on their way: take what comes within a moment.
    let grace = Instant::now() + Duration::from_millis(300);
    while gateways.iter().any(|g| g.waiting() > 0) {
        let Ok(Some((gateway, datagram))) =
            tokio::time::timeout_at(grace.into(), received.recv()).await
        else {
            break;
        };
        take_datagram(
            &mut devices,
            &mut gateways,
            &mut report,
            &clock,
            gateway,
            &datagram,
            spec.radio.rx_windows,
        )
        .await;
    }
    // What is still waiting now will not be acknowledged by this run.
    for g in &mut gateways {
        g.expire(Instant::now() + super::gateway::ACK_TIMEOUT);
    }
    for r in readers {
        r.abort();
    }
    fill(&mut report, &devices, &gateways);
    progress(&report);
    Ok(report)
}

fn sim_time(clock: &Clock) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(clock.now_unix_micros()).unwrap_or_default()
}

fn fill(report: &mut UdpReport, devices: &Devices, gateways: &[Gateway]) {
    report.joined = devices.joined() as u64;
    let mut sum = GatewayCounters::default();
    for g in gateways {
        let c = g.counters;
        sum.push_sent += c.push_sent;
        sum.push_acked += c.push_acked;
        sum.pull_sent += c.pull_sent;
        sum.pull_acked += c.pull_acked;
        sum.unmatched_acks += c.unmatched_acks;
        sum.unacknowledged += c.unacknowledged;
        sum.frames_up += c.frames_up;
        sum.frames_down += c.frames_down;
        sum.tx_acks += c.tx_acks;
    }
    report.gateways = sum;
}

/// The radio between the meters and the gateways.
struct Airwaves {
    air: Air<Uplinked>,
    /// Draws the channel of each frame and the signal figures each gateway reports.
    noise: Pcg32,
    seed: u64,
    /// Frames heard more than once, and each meter's last counter forwarded.
    ledger: Ledger,
    /// The next frame's id.
    next_id: u64,
}

/// How much weaker a second gateway hears a frame than the meter's own, dB: it is farther
/// away.
const SECOND_PATH_RSSI_DB: i32 = 12;
/// The same for the signal-to-noise ratio, dB.
const SECOND_PATH_SNR_DB: f64 = 5.0;

impl Airwaves {
    /// What fell due: a frame takes the air (once, or again for a retransmission; heard by
    /// the meter's gateway, and by the next one for a second path), the rest is counted.
    fn take_due(&mut self, devices: &Devices, gateways: usize, report: &mut UdpReport, due: Due) {
        match due {
            Due::Frame {
                index,
                frame,
                message,
                f_cnt,
                start_us,
                air_us,
                sf,
                session,
                built,
                heard,
                copies,
                repeat_us,
            } => {
                let reading = matches!(message, Uplink::Reading(_));
                let tamper = matches!(&message, Uplink::Alarm(a) if is_tamper(a.kind));
                report.uplinks += 1;
                report.readings += u64::from(reading);
                report.tamper_alarms += u64::from(tamper);
                let sends = if repeat_us.is_some() { 2 } else { 1 };
                report.radio.airtime_us += (sends * air_us).max(0) as u64;
                report.faults.built(&built);
                if !heard {
                    report.faults.lost += 1;
                    return;
                }
                let gateways = gateways.max(1);
                let own = index as usize % gateways;
                let second = copies.second_path.is_some() && gateways > 1;
                report.faults.second_paths += u64::from(second);
                report.faults.retransmissions += u64::from(repeat_us.is_some());
                let id = self.next_id;
                self.next_id += 1;
                let hearers = if second { 2 } else { 1 };
                self.ledger.sent(id, sends as u8 * hearers);
                let up = Uplinked {
                    id,
                    index,
                    frame,
                    session,
                    f_cnt,
                    reading,
                    tamper,
                    stores: devices.registered(index) && !built.garbled && !built.bad_serial,
                    second: false,
                    duplicate: false,
                };
                for (n, start) in [Some(start_us), repeat_us]
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    // A repetition hops to a channel of its own.
                    let channel = radio::pick_channel(&mut self.noise);
                    for g in 0..hearers {
                        self.air.send(Flight {
                            gateway: (own + usize::from(g)) % gateways,
                            channel,
                            sf,
                            start_us: start,
                            end_us: start + air_us,
                            collided: false,
                            payload: Uplinked {
                                second: g > 0,
                                // The meter's own gateway's first forward is the one sent twice.
                                duplicate: copies.duplicate && n == 0 && g == 0,
                                ..up.clone()
                            },
                        });
                    }
                }
            }
            Due::Silent { began, built, .. } => {
                report.faults.built(&built);
                report.faults.silent += 1;
                report.faults.silences += u64::from(began);
            }
            Due::NotJoined(_) => report.not_joined += 1,
            Due::Deferred(_) => report.radio.deferred += 1,
            Due::Dropped(_) => report.radio.dropped += 1,
            Due::Join(_) | Due::Nothing => {}
        }
    }

    /// Frames that ended by `horizon` reach their gateway, which forwards those that did not
    /// collide.
    async fn land(
        &mut self,
        horizon: i64,
        gateways: &mut [Gateway],
        report: &mut UdpReport,
        clock: &Clock,
    ) {
        if self.air.next_end().is_none_or(|end| end > horizon) {
            return;
        }
        for flight in self.air.land(horizon) {
            let up = flight.payload;
            let forwarded = !flight.collided && flight.gateway < gateways.len();
            match self
                .ledger
                .landed(up.id, up.index, up.session, up.f_cnt, forwarded)
            {
                Landed::New => {
                    if up.reading {
                        report.forwarded_reading(up.index, up.stores);
                    }
                    if up.tamper && up.stores {
                        report.expected_tamper_alarms += 1;
                    }
                }
                Landed::Behind => report.faults.f_cnt_behind += 1,
                Landed::Nothing => {}
            }
            if flight.collided {
                report.radio.collided += 1;
                continue;
            }
            let Some(gateway) = gateways.get_mut(flight.gateway) else {
                continue;
            };
            let tmst = gateway.tmst();
            let mut rxpk = radio::rxpk(
                self.seed,
                up.index,
                &up.frame,
                flight.channel,
                tmst,
                sim_time(clock),
                &mut self.noise,
            );
            if up.second {
                rxpk.rssi -= SECOND_PATH_RSSI_DB;
                rxpk.lsnr = ((rxpk.lsnr - SECOND_PATH_SNR_DB) * 10.0).round() / 10.0;
            }
            let sent = if up.duplicate {
                report.faults.duplicates += 1;
                gateway.push_frames_twice(vec![rxpk]).await
            } else {
                gateway.push_frames(vec![rxpk]).await
            };
            if let Err(e) = sent {
                report.send_errors += 1;
                tracing::debug!(error = %e, "uplink PUSH_DATA");
            }
        }
    }
}

/// One datagram from the bridge: acknowledgements are matched, a PULL_RESP's frame goes to
/// the device it is for and is answered with a TX_ACK. Nothing received can stop the run.
async fn take_datagram(
    devices: &mut Devices,
    gateways: &mut [Gateway],
    report: &mut UdpReport,
    clock: &Clock,
    gateway: usize,
    datagram: &[u8],
    rx_windows: bool,
) {
    let Some(g) = gateways.get_mut(gateway) else {
        return;
    };
    match parse_downstream(datagram) {
        Ok(Downstream::PushAck { token }) => {
            if !g.push_acked(token) {
                tracing::debug!(token, "PUSH_ACK for no PUSH_DATA");
            }
        }
        Ok(Downstream::PullAck { token }) => {
            if !g.pull_acked(token) {
                tracing::debug!(token, "PULL_ACK for no PULL_DATA");
            }
        }
        Ok(Downstream::PullResp { token, txpk }) => {
            g.counters.frames_down += 1;
            let Ok(frame) = STANDARD.decode(txpk.data.as_bytes()) else {
                report.malformed += 1;
                tracing::warn!(token, "PULL_RESP data is not base64");
                return;
            };
            // A downlink that comes after the moment it is for (the meter's receive window)
            // is refused, as a packet forwarder refuses it: the meter never hears it.
            let late = rx_windows
                && !txpk.imme
                && txpk
                    .tmst
                    .is_some_and(|at| (at.wrapping_sub(g.tmst()) as i32) < TX_LEAD_US);
            if late {
                report.radio.too_late += 1;
                if let Err(e) = g.tx_ack(token, "TOO_LATE").await {
                    report.send_errors += 1;
                    tracing::debug!(error = %e, "TX_ACK");
                }
                tracing::debug!(token, "downlink too late for its receive window");
                return;
            }
            // The radio sends what it is given; whether a device takes it is another matter.
            if let Err(e) = g.tx_ack(token, "NONE").await {
                report.send_errors += 1;
                tracing::debug!(error = %e, "TX_ACK");
            }
            match devices.take_downlink(&frame, gateway, txpk.tmst, clock.now_unix()) {
                Ok(Taken::Joined(index)) => {
                    report.join_accepts += 1;
                    tracing::debug!(meter = index, "joined");
                }
                Ok(Taken::Data(index, downlink)) => {
                    report.downlinks += 1;
                    tracing::debug!(meter = index, f_cnt = downlink.f_cnt, port = ?downlink.f_port, "downlink");
                }
                Err(e) => {
                    report.rejected_frames += 1;
                    tracing::warn!(error = %e, "downlink frame taken by no device");
                }
            }
        }
        Err(e) => {
            report.malformed += 1;
            tracing::warn!(error = %e, gateway, "malformed datagram");
        }
    }
}
