//! Faults on demand through the gateway transport, each as a real network shows it, seen from
//! a fake network server on 127.0.0.1 that checks every frame's MIC and decrypts it with the
//! meters' keys (see `support`). Each run plays a few meters at 900 times real time (a
//! reading a wall second per meter) for a few seconds, with one fault at a fixed rate.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use firmware_protocol::clock::Clock;
use firmware_protocol::{Error, PORT_READING, Serial, Uplink, decode_uplink};
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::udp::{FleetKeys, Realism, UdpReport, UdpSpec, run};
use tokio_util::sync::CancellationToken;

// Each test binary uses its own part of the fake network server.
#[allow(dead_code)]
mod support;

use support::{FakeNetworkServer, Frame, gateway_eui};

/// Seconds between readings, simulated: 15 minutes.
const INTERVAL: i64 = 900;

fn fleet(meters: u32, faults: Faults) -> FleetSpec {
    FleetSpec {
        meters,
        seed: 11,
        reporting_interval_minutes: (INTERVAL / 60) as u16,
        faults,
        ..FleetSpec::default()
    }
}

/// Runs `fleet` through `gateways` gateways for `seconds` wall seconds, without collisions or
/// duty cycle (so that only the fault decides what arrives), the fake network server taking
/// everything; returns it and the run's report.
async fn play(fleet: FleetSpec, gateways: u8, seconds: u64) -> (FakeNetworkServer, UdpReport) {
    let clock = Clock::accelerated(900, SystemTime::now()).expect("speed");
    let keys = FleetKeys::for_seed(fleet.seed);
    let mut ns = FakeNetworkServer::bind(&fleet, keys.clone(), clock.clone()).await;
    ns.strict = false;
    ns.gateways = (0..gateways).map(gateway_eui).collect();
    let spec = UdpSpec {
        gateways: ns.gateways.clone(),
        keys,
        join_timeout: Duration::from_secs(2),
        keepalive: Duration::from_millis(200),
        stat_interval: Duration::from_millis(500),
        radio: Realism {
            duty_cycle: false,
            collisions: false,
            rx_windows: true,
        },
        ..UdpSpec::new(fleet, ns.address())
    };
    let stop = CancellationToken::new();
    let mut sim = tokio::spawn(run(spec, clock, stop.clone(), |_| {}));
    let timer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        timer.cancel();
    });
    // The fake answers until the run has ended, and takes what the gateways still forward.
    let report = loop {
        tokio::select! {
            ended = &mut sim => break ended.expect("no panic").expect("the run ends cleanly"),
            _ = ns.next_uplink() => {}
        }
    };
    while tokio::time::timeout(Duration::from_millis(300), ns.next_uplink())
        .await
        .is_ok()
    {}
    assert!(report.join_accepts >= 1, "meters joined: {report:?}");
    (ns, report)
}

/// The frames of each meter, in the order they came.
fn by_meter(frames: &[Frame]) -> HashMap<u32, Vec<&Frame>> {
    let mut out: HashMap<u32, Vec<&Frame>> = HashMap::new();
    for f in frames {
        out.entry(f.meter).or_default().push(f);
    }
    out
}

/// How many times each PHYPayload came, and from which gateways.
fn copies(frames: &[Frame]) -> HashMap<&[u8], Vec<&Frame>> {
    let mut out: HashMap<&[u8], Vec<&Frame>> = HashMap::new();
    for f in frames {
        out.entry(f.phy.as_slice()).or_default().push(f);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_frame_takes_the_air_and_reaches_no_gateway() {
    let faults = Faults {
        loss: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 3).await;
    assert!(report.uplinks >= 3, "{report:?}");
    assert_eq!(report.faults.lost, report.uplinks, "{report:?}");
    assert!(ns.frames.is_empty(), "{} frames came", ns.frames.len());
    assert!(report.radio.airtime_us > 0, "sent all the same: {report:?}");
    assert_eq!(report.registered_readings, 0);
    assert_eq!(
        report.gateways.frames_up, report.join_requests,
        "only JoinRequests were forwarded: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_payload_travels_in_a_valid_frame_and_does_not_decode() {
    let faults = Faults {
        garble: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 3).await;
    assert!(ns.frames.len() >= 3, "{report:?}");
    // The fake checked each MIC and decrypted each payload with the session keys.
    for f in &ns.frames {
        assert!(
            decode_uplink(f.f_port, &f.payload).is_err(),
            "{:02x?} on port {} decoded",
            f.payload,
            f.f_port
        );
    }
    assert_eq!(report.faults.garbled, report.uplinks);
    assert_eq!(ns.frames.len() as u64, report.uplinks);
    assert!(report.readings > 0);
    assert_eq!(
        report.registered_readings, 0,
        "nothing for the server to store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_serial_meter_sends_readings_whose_check_digit_is_wrong() {
    let faults = Faults {
        bad_serial_share: 1.0,
        ..Faults::default()
    };
    let spec = fleet(3, faults);
    let serials: Vec<Serial> = meterhub_sim::fleet::build(&spec, 0)
        .iter()
        .map(|m| m.serial)
        .collect();
    let (ns, report) = play(spec, 1, 3).await;
    let readings: Vec<&Frame> = ns
        .frames
        .iter()
        .filter(|f| f.f_port == PORT_READING)
        .collect();
    assert!(readings.len() >= 2, "{report:?}");
    for f in &readings {
        assert!(
            matches!(
                decode_uplink(f.f_port, &f.payload),
                Err(Error::InvalidSerial(_))
            ),
            "{:02x?}",
            f.payload
        );
        // The meter's own serial, but for its check digit.
        let carried = u64::from_le_bytes(f.payload[1..9].try_into().expect("8 bytes"));
        let own = serials[f.meter as usize].as_u64();
        assert_eq!(carried / 10, own / 10);
        assert_ne!(carried, own);
    }
    // Frames without a serial are untouched.
    let others: Vec<&Frame> = ns
        .frames
        .iter()
        .filter(|f| f.f_port != PORT_READING)
        .collect();
    assert!(!others.is_empty());
    assert!(
        others
            .iter()
            .all(|f| decode_uplink(f.f_port, &f.payload).is_ok())
    );
    assert_eq!(report.faults.bad_serial, report.readings);
    assert_eq!(report.registered_readings, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_meter_sends_nothing_for_a_while_and_counts_its_frames_meanwhile() {
    let faults = Faults {
        silence: 0.5,
        silence_max_seconds: 3 * INTERVAL,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(4, faults), 1, 6).await;
    assert!(report.faults.silences >= 1, "{report:?}");
    assert!(report.faults.silent >= report.faults.silences, "{report:?}");
    // A frame kept quiet is not sent: every frame sent arrived.
    assert_eq!(ns.frames.len() as u64, report.uplinks, "{report:?}");
    // A gap: the counter moved on by the frames built in silence, and the time by a
    // reporting interval at least (less a few seconds of the clock's pace).
    let gaps: Vec<(u32, i64)> = by_meter(&ns.frames)
        .values()
        .flat_map(|frames| {
            frames
                .windows(2)
                .filter(|w| w[1].f_cnt > w[0].f_cnt + 1)
                .map(|w| (w[1].f_cnt - w[0].f_cnt - 1, w[1].at - w[0].at))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!gaps.is_empty(), "{report:?}");
    let quiet: u32 = gaps.iter().map(|(frames, _)| frames).sum();
    assert!(
        u64::from(quiet) <= report.faults.silent,
        "{gaps:?} {report:?}"
    );
    for (frames, seconds) in gaps {
        assert!(
            seconds >= INTERVAL - 5,
            "{frames} frames kept quiet in {seconds} s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_whose_clock_jumps_reports_readings_an_interval_plus_the_jump_apart() {
    let faults = Faults {
        clock_jump: 1.0,
        clock_jump_max_seconds: 300,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 4).await;
    let mut steps = Vec::new();
    for frames in by_meter(&ns.frames).values() {
        let times: Vec<i64> = frames
            .iter()
            .filter_map(|f| match decode_uplink(f.f_port, &f.payload) {
                Ok(Uplink::Reading(r)) => Some(r.meter_time.to_unix()),
                _ => None,
            })
            .collect();
        steps.extend(times.windows(2).map(|w| w[1] - w[0] - INTERVAL));
    }
    assert!(steps.len() >= 3, "{steps:?}");
    // A drifting clock is off by a fraction of a second in an interval; these jumped by
    // one to 300 s.
    let jumped = steps
        .iter()
        .filter(|s| (2..=302).contains(&s.abs()))
        .count();
    assert!(jumped + 1 >= steps.len(), "{steps:?}");
    assert!(report.faults.clock_jumps >= report.readings, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_that_restarts_its_frame_counter_sends_from_zero_again() {
    let faults = Faults {
        f_cnt_reset: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 3).await;
    let meters = by_meter(&ns.frames);
    assert!(meters.values().any(|f| f.len() >= 2), "{report:?}");
    assert!(ns.frames.iter().all(|f| f.f_cnt == 0));
    assert_eq!(report.faults.f_cnt_resets, report.uplinks);
    // Each meter's first frame of its session is new to the network server; every later one
    // is behind the counter it last took, and ChirpStack's validation drops it.
    assert_eq!(report.join_retries, 0, "one session each: {report:?}");
    assert_eq!(
        report.faults.f_cnt_behind,
        (ns.frames.len() - meters.len()) as u64,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_path_is_the_same_phy_payload_from_a_second_gateway() {
    let faults = Faults {
        second_path: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(4, faults), 2, 3).await;
    let copies = copies(&ns.frames);
    assert!(copies.len() >= 4, "{report:?}");
    for (phy, heard) in &copies {
        let mut gateways: Vec<[u8; 8]> = heard.iter().map(|f| f.gateway).collect();
        gateways.sort_unstable();
        assert_eq!(gateways, [gateway_eui(0), gateway_eui(1)], "{phy:02x?}");
    }
    assert_eq!(report.faults.second_paths, report.uplinks);
    // One uplink however many gateways heard it.
    let readings = copies
        .values()
        .filter(|heard| heard[0].f_port == PORT_READING)
        .count();
    assert_eq!(report.registered_readings, readings as u64, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_path_needs_a_second_gateway() {
    let faults = Faults {
        second_path: 0.5,
        ..Faults::default()
    };
    let spec = UdpSpec::new(fleet(1, faults), "127.0.0.1:9".parse().expect("address"));
    let refused = run(spec, Clock::System, CancellationToken::new(), |_| {})
        .await
        .expect_err("one gateway");
    assert!(refused.to_string().contains("--second-path"), "{refused}");
    let faults = Faults {
        reorder: 0.5,
        ..Faults::default()
    };
    let spec = UdpSpec::new(fleet(1, faults), "127.0.0.1:9".parse().expect("address"));
    let refused = run(spec, Clock::System, CancellationToken::new(), |_| {})
        .await
        .expect_err("no radio meaning");
    assert!(refused.to_string().starts_with("--reorder "), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_the_same_push_data_twice() {
    let faults = Faults {
        duplicate: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 3).await;
    let mut datagrams: HashMap<(u16, &[u8]), usize> = HashMap::new();
    for f in &ns.frames {
        *datagrams.entry((f.token, f.phy.as_slice())).or_default() += 1;
    }
    assert!(datagrams.len() >= 3, "{report:?}");
    assert!(datagrams.values().all(|n| *n == 2), "{datagrams:?}");
    assert_eq!(report.faults.duplicates, datagrams.len() as u64);
    assert_eq!(
        report.gateways.unmatched_acks, 0,
        "the second PUSH_ACK is expected: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_is_the_same_frame_on_the_air_again() {
    let faults = Faults {
        retransmission: 1.0,
        ..Faults::default()
    };
    let (ns, report) = play(fleet(3, faults), 1, 3).await;
    let copies = copies(&ns.frames);
    assert!(copies.len() >= 3, "{report:?}");
    for heard in copies.values() {
        assert_eq!(heard.len(), 2, "sent twice");
        assert_ne!(heard[0].token, heard[1].token, "in two PUSH_DATA");
    }
    assert_eq!(report.faults.retransmissions, report.uplinks);
    let readings = copies
        .values()
        .filter(|heard| heard[0].f_port == PORT_READING)
        .count();
    assert_eq!(report.registered_readings, readings as u64, "counted once");
}
