//! The gateway transport against a fake network server on 127.0.0.1 that does LoRaWAN with
//! ChirpStack's own crate (`lrwn`), not the simulator's (see `support`): it acknowledges the
//! gateway's datagrams, checks each JoinRequest's MIC with the meter's AppKey and answers a
//! JoinAccept, checks every uplink's MIC and counter, decrypts and decodes it, and sends
//! downlinks that the meters must act on.

use std::time::{Duration, Instant, SystemTime};

use firmware_protocol::clock::Clock;
use firmware_protocol::{AlarmKind, ClockSyncDown, ClockSyncDownlink, ClockSyncUp, Uplink};
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::udp::{FleetKeys, UdpReport, UdpSpec, run};
use tokio_util::sync::CancellationToken;

// Each test binary uses its own part of the fake network server.
#[allow(dead_code)]
mod support;

use support::{FakeNetworkServer, GATEWAY_EUI};

fn app_time_ans(correction: i32, token: u8) -> Vec<u8> {
    let ans = ClockSyncDownlink::single(ClockSyncDown::AppTimeAns {
        time_correction: correction,
        token_ans: token,
    });
    let mut buf = [0u8; 16];
    let n = ans.encode(&mut buf).expect("encodes");
    buf[..n].to_vec()
}

fn app_time_req(message: &Uplink) -> Option<(u32, u8)> {
    let Uplink::ClockSync(commands) = message else {
        return None;
    };
    commands.iter().find_map(|c| match *c {
        ClockSyncUp::AppTimeReq {
            device_time,
            token_req,
            ..
        } => Some((device_time, token_req)),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_join_send_encrypted_readings_and_act_on_downlinks() {
    let fleet = FleetSpec {
        meters: 2,
        electricity_share: 0.0,
        // A reading every 15 simulated minutes: at 900x, one a second per meter.
        reporting_interval_minutes: 15,
        seed: 7,
        ..FleetSpec::default()
    };
    let clock = Clock::accelerated(900, SystemTime::now()).expect("speed");
    let keys = FleetKeys::for_seed(fleet.seed);
    let mut ns = FakeNetworkServer::bind(&fleet, keys.clone(), clock.clone()).await;
    ns.ignore_first_join = vec![1];
    let spec = UdpSpec {
        gateways: vec![GATEWAY_EUI],
        keys,
        join_timeout: Duration::from_secs(1),
        dev_nonce_start: 65_534,
        keepalive: Duration::from_millis(200),
        stat_interval: Duration::from_millis(500),
        ..UdpSpec::new(fleet, ns.address())
    };
    let stop = CancellationToken::new();
    let sim = tokio::spawn(run(spec, clock.clone(), stop.clone(), |_| {}));

    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        // Meter 0: its first uplink after joining is an AppTimeReq. Answer it with an hour's
        // correction: its later readings must carry a clock an hour ahead.
        let (dev_addr, token, tmst) = loop {
            let seen = ns.next_uplink().await;
            if ns.devices[&seen.dev_addr].index != 0 {
                continue;
            }
            let Some((_, token)) = app_time_req(&seen.message) else {
                panic!("meter 0 first asks for the time, sent {:?}", seen.message);
            };
            assert_eq!(seen.f_cnt, 0);
            break (seen.dev_addr, token, seen.tmst);
        };
        let ans = ns.downlink(dev_addr, false, 202, &app_time_ans(3_600, token));
        // Too late for the window it names (RX1, a second after the frame, is long past
        // when it names the frame's own time): refused, never heard by the meter.
        let missed = ns.pull_resp(&ans, tmst).await;
        let sent = ns.pull_resp(&ans, tmst.wrapping_add(1_000_000)).await;
        // The gateway's datagrams come in order: an uplink after the TX_ACK was sent after
        // the meter took the downlink.
        let reading = loop {
            let seen = ns.next_uplink().await;
            if ns.tx_acked.contains(&sent)
                && seen.dev_addr == dev_addr
                && matches!(seen.message, Uplink::Reading(_))
            {
                break seen;
            }
        };
        assert_eq!(ns.tx_refused, [(missed, "TOO_LATE".to_owned())]);
        let Uplink::Reading(r) = &reading.message else {
            unreachable!()
        };
        let ahead = r.meter_time.to_unix() - clock.now_unix();
        assert!(
            (3_300..3_900).contains(&ahead),
            "the clock took the correction: {ahead} s ahead"
        );
        assert!(!reading.ack, "nothing to acknowledge yet");

        // A confirmed valve close: the meter closes, reports it, and acknowledges.
        let close = ns.downlink(dev_addr, true, 10, &[0x01, 0x02]);
        let sent = ns
            .pull_resp(&close, reading.tmst.wrapping_add(1_000_000))
            .await;
        let mut acknowledged = false;
        let alarm = loop {
            let seen = ns.next_uplink().await;
            if seen.dev_addr != dev_addr || !ns.tx_acked.contains(&sent) {
                continue;
            }
            if !acknowledged {
                assert!(
                    seen.ack,
                    "the first uplink after a confirmed downlink sets ACK"
                );
                acknowledged = true;
            } else {
                assert!(!seen.ack, "and only the first");
            }
            if !matches!(seen.message, Uplink::Reading(_)) {
                break seen;
            }
        };
        let Uplink::Alarm(a) = &alarm.message else {
            panic!("a valve alarm, got {:?}", alarm.message)
        };
        assert_eq!(a.kind, AlarmKind::ValveClosed);

        // What no meter can take, and what is not protocol at all: counted, and the run
        // goes on.
        let mut wrong_mic = ns.downlink(dev_addr, false, 10, &[0x01, 0x04]);
        let last = wrong_mic.len() - 1;
        wrong_mic[last] ^= 0xff;
        ns.pull_resp(&wrong_mic, alarm.tmst.wrapping_add(2_000_000))
            .await;
        ns.send_raw(&[0xff]).await;
        ns.send_raw(&[2, 0, 1, 0x03, b'{']).await;
        ns.send_pull_resp(9, br#"{"txpk":{"data":"***not base64***"}}"#)
            .await;
        ns.send_raw(&[2, 0xfe, 0xed, 0x01]).await; // a PUSH_ACK for no PUSH_DATA
        let after = Instant::now();
        while after.elapsed() < Duration::from_millis(2_000) {
            ns.next_uplink().await;
        }
        // Meter 1 joined on its second try.
        let nonces = &ns.dev_nonces[&1];
        assert!(nonces.len() >= 2, "meter 1 joined again: {nonces:?}");
        assert_eq!(&nonces[..2], &[65_534, 65_535]);
        assert!(
            ns.devices.values().any(|d| d.index == 1
                && d.messages
                    .iter()
                    .any(|(_, m, _)| matches!(m, Uplink::Reading(_)))),
            "meter 1 reads once joined"
        );
        // Every TX_ACK came, each with its PULL_RESP's token.
        assert!(ns.tx_waiting.is_empty(), "unanswered: {:?}", ns.tx_waiting);
        assert!(ns.tx_acked.len() >= 5, "{:?}", ns.tx_acked);
        assert!(ns.pull_data >= 2, "keep-alives");
    })
    .await;
    stop.cancel();
    let report: UdpReport = sim.await.expect("no panic").expect("the run ends cleanly");
    outcome.expect("the fake network server saw it all within 30 s");
    assert_eq!(report.join_accepts, 2, "{report:?}");
    assert!(report.join_retries >= 1, "{report:?}");
    assert_eq!(report.downlinks, 2, "{report:?}");
    assert_eq!(report.rejected_frames, 1, "the wrong MIC: {report:?}");
    assert_eq!(
        report.malformed, 3,
        "short, bad JSON, bad base64: {report:?}"
    );
    assert_eq!(report.gateways.unmatched_acks, 1, "{report:?}");
    assert_eq!(report.radio.too_late, 1, "{report:?}");
    assert!(report.radio.airtime_us > 0, "{report:?}");
    assert!(report.uplinks >= 6, "{report:?}");
    assert_eq!(
        report.gateways.push_acked, ns.push_acks,
        "every PUSH_ACK matched its PUSH_DATA's token: {report:?}"
    );
    assert!(ns.stats >= 2, "status reports");
    let meter0 = ns.devices.values().find(|d| d.index == 0).expect("meter 0");
    assert!(
        meter0
            .messages
            .iter()
            .filter(|(_, m, _)| matches!(m, Uplink::Reading(_)))
            .count()
            >= 2
    );
}
