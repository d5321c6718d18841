//! The gateway transport against a fake network server on 127.0.0.1 that does LoRaWAN with
//! ChirpStack's own crate (`lrwn`), not the simulator's: it acknowledges the gateway's
//! datagrams, checks each JoinRequest's MIC with the meter's AppKey and answers a JoinAccept,
//! checks every uplink's MIC and counter, decrypts and decodes it, and sends downlinks that
//! the meters must act on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use firmware_protocol::clock::Clock;
use firmware_protocol::{
    AlarmKind, ClockSyncDown, ClockSyncDownlink, ClockSyncUp, Uplink, decode_uplink,
};
use lrwn::{
    AES128Key, DLSettings, DevAddr, FHDR, FRMPayload, FType, JoinAcceptPayload, JoinType,
    MACPayload, MACVersion, MHDR, Major, NetID, Payload, PhyPayload,
};
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::udp::{FleetKeys, UdpReport, UdpSpec, run};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const GATEWAY_EUI: [u8; 8] = [0x00, 0x16, 0xc0, 0x01, 0xff, 0x1e, 0x5a, 0x7b];

/// A device as the fake network server knows it after its join.
struct Device {
    index: u32,
    nwk_s_key: AES128Key,
    app_s_key: AES128Key,
    f_cnt_up: Vec<u32>,
    f_cnt_down: u32,
    messages: Vec<(i64, Uplink, bool)>,
}

/// One uplink as the network server saw it.
struct Seen {
    dev_addr: [u8; 4],
    /// The gateway's counter when it received the frame: RX1 opens a second later.
    tmst: u32,
    f_cnt: u32,
    ack: bool,
    message: Uplink,
}

struct FakeNetworkServer {
    socket: UdpSocket,
    keys: FleetKeys,
    clock: Clock,
    /// Where PULL_DATA came from: where downlinks go.
    gateway: Option<SocketAddr>,
    /// By DevAddr, most significant byte first.
    devices: HashMap<[u8; 4], Device>,
    dev_nonces: HashMap<u32, Vec<u16>>,
    /// Tokens of the PULL_RESPs sent and not yet acknowledged with a TX_ACK.
    tx_waiting: Vec<u16>,
    tx_acked: Vec<u16>,
    /// TX_ACKs that reported an error, with it.
    tx_refused: Vec<(u16, String)>,
    next_token: u16,
    pull_data: usize,
    push_acks: u64,
    stats: usize,
    /// Each meter's serial, by index: its readings must carry it.
    serials: Vec<firmware_protocol::Serial>,
    /// Ignore the first JoinRequest of these meters, to see them retry.
    ignore_first_join: Vec<u32>,
}

impl FakeNetworkServer {
    async fn bind(fleet: &FleetSpec, keys: FleetKeys, clock: Clock) -> FakeNetworkServer {
        FakeNetworkServer {
            serials: meterhub_sim::fleet::build(fleet, 0)
                .iter()
                .map(|m| m.serial)
                .collect(),
            socket: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            keys,
            clock,
            gateway: None,
            devices: HashMap::new(),
            dev_nonces: HashMap::new(),
            tx_waiting: Vec::new(),
            tx_acked: Vec::new(),
            tx_refused: Vec::new(),
            next_token: 100,
            pull_data: 0,
            push_acks: 0,
            stats: 0,
            ignore_first_join: Vec::new(),
        }
    }

    fn address(&self) -> SocketAddr {
        self.socket.local_addr().expect("address")
    }

    /// Takes datagrams until one carries an uplink (returned), answering everything else.
    async fn next_uplink(&mut self) -> Seen {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).await.expect("recv");
            let d = &buf[..n];
            assert!(n >= 12, "a gateway datagram has a 12-byte header: {d:?}");
            assert_eq!(d[0], 2, "protocol version 2");
            assert_eq!(&d[4..12], &GATEWAY_EUI, "the gateway's EUI");
            let token = [d[1], d[2]];
            match d[3] {
                0x00 => {
                    self.socket
                        .send_to(&[2, token[0], token[1], 0x01], from)
                        .await
                        .expect("PUSH_ACK");
                    self.push_acks += 1;
                    let json: serde_json::Value = serde_json::from_slice(&d[12..]).expect("json");
                    let Some(rxpks) = json.get("rxpk").and_then(|r| r.as_array()) else {
                        assert!(
                            json["stat"]["rxnb"].as_u64().is_some(),
                            "a status report: {json}"
                        );
                        self.stats += 1;
                        continue;
                    };
                    for rxpk in rxpks.clone() {
                        if let Some(seen) = self.take_rxpk(&rxpk).await {
                            return seen;
                        }
                    }
                }
                0x02 => {
                    self.pull_data += 1;
                    self.gateway = Some(from);
                    self.socket
                        .send_to(&[2, token[0], token[1], 0x04], from)
                        .await
                        .expect("PULL_ACK");
                }
                0x05 => {
                    let token = u16::from_be_bytes(token);
                    let json: serde_json::Value = serde_json::from_slice(&d[12..]).expect("json");
                    let at = self.tx_waiting.iter().position(|t| *t == token);
                    assert!(at.is_some(), "TX_ACK token {token} answers a PULL_RESP");
                    self.tx_waiting.retain(|t| *t != token);
                    match json["txpk_ack"]["error"].as_str() {
                        Some("NONE") => self.tx_acked.push(token),
                        Some(error) => self.tx_refused.push((token, error.to_owned())),
                        None => panic!("a TX_ACK without an error field: {json}"),
                    }
                }
                other => panic!("identifier {other} from a gateway"),
            }
        }
    }

    async fn take_rxpk(&mut self, rxpk: &serde_json::Value) -> Option<Seen> {
        assert_eq!(rxpk["modu"], "LORA");
        assert_eq!(rxpk["codr"], "4/5");
        assert_eq!(rxpk["stat"], 1);
        let freq = rxpk["freq"].as_f64().expect("freq");
        assert!([868.1, 868.3, 868.5].contains(&freq), "EU868: {freq}");
        let datr = rxpk["datr"].as_str().expect("datr");
        assert!(datr.starts_with("SF") && datr.ends_with("BW125"), "{datr}");
        assert!(rxpk["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let tmst = u32::try_from(rxpk["tmst"].as_u64().expect("tmst")).expect("u32");
        let bytes = STANDARD
            .decode(rxpk["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(rxpk["size"].as_u64(), Some(bytes.len() as u64));
        let mut phy = PhyPayload::from_slice(&bytes).expect("a LoRaWAN frame");
        match phy.mhdr.f_type {
            FType::JoinRequest => {
                self.join(&phy, tmst).await;
                None
            }
            FType::UnconfirmedDataUp => {
                let Payload::MACPayload(pl) = &phy.payload else {
                    panic!("a MACPayload")
                };
                let dev_addr = pl.fhdr.devaddr.to_be_bytes();
                let ack = pl.fhdr.f_ctrl.ack;
                let f_port = pl.f_port.expect("an application port");
                let device = self.devices.get_mut(&dev_addr).expect("a joined device");
                // 16 bits on the air; these runs stay far below 65 536 frames.
                let f_cnt = pl.fhdr.f_cnt;
                assert!(
                    phy.validate_uplink_data_mic(
                        MACVersion::LoRaWAN1_0,
                        0,
                        0,
                        0,
                        &device.nwk_s_key,
                        &device.nwk_s_key
                    )
                    .expect("mic"),
                    "uplink MIC with the NwkSKey"
                );
                phy.decrypt_frm_payload(&device.app_s_key)
                    .expect("decrypts");
                let Payload::MACPayload(pl) = &phy.payload else {
                    panic!("a MACPayload")
                };
                let Some(FRMPayload::Raw(data)) = &pl.frm_payload else {
                    panic!("an application payload")
                };
                let message = decode_uplink(f_port, data).expect("a meterhub message");
                if let Uplink::Reading(r) = &message {
                    assert_eq!(
                        r.serial, self.serials[device.index as usize],
                        "its own reading"
                    );
                }
                if let Some(last) = device.f_cnt_up.last() {
                    assert_eq!(f_cnt, last + 1, "FCnt counts up by one");
                } else {
                    assert_eq!(f_cnt, 0, "a new session starts at FCnt 0");
                }
                device.f_cnt_up.push(f_cnt);
                device.messages.push((self.clock.now_unix(), message, ack));
                Some(Seen {
                    dev_addr,
                    tmst,
                    f_cnt,
                    ack,
                    message,
                })
            }
            other => panic!("a gateway forwarded {other:?}"),
        }
    }

    async fn join(&mut self, phy: &PhyPayload, tmst: u32) {
        let Payload::JoinRequest(jr) = &phy.payload else {
            panic!("a JoinRequest")
        };
        let eui = jr.dev_eui.to_be_bytes();
        assert_eq!(&eui[..4], &[0x70, 0xb3, 0xd5, 0x7e], "the fleet's DevEUIs");
        let index = u32::from_be_bytes([eui[4], eui[5], eui[6], eui[7]]);
        let app_key = AES128Key::from_bytes(self.keys.app_key(index));
        assert!(
            phy.validate_join_request_mic(&app_key).expect("mic"),
            "JoinRequest MIC with the meter's AppKey"
        );
        assert!(
            !phy.validate_join_request_mic(&AES128Key::from_bytes(self.keys.app_key(index + 1)))
                .expect("mic"),
            "not with another meter's"
        );
        let nonces = self.dev_nonces.entry(index).or_default();
        if let Some(last) = nonces.last() {
            assert_eq!(jr.dev_nonce, last.wrapping_add(1), "DevNonce counts up");
        }
        nonces.push(jr.dev_nonce);
        if nonces.len() == 1 && self.ignore_first_join.contains(&index) {
            return;
        }
        let join_nonce = 0x00_10_00 + index;
        let net_id = NetID::from_be_bytes([0, 0, 0]);
        let dev_addr = DevAddr::from_be_bytes([0x26, 0x01, 0x00, index as u8]);
        let join_eui = jr.join_eui;
        let mut accept = PhyPayload {
            mhdr: MHDR {
                f_type: FType::JoinAccept,
                major: Major::LoRaWANR1,
            },
            payload: Payload::JoinAccept(JoinAcceptPayload {
                join_nonce,
                home_netid: net_id,
                devaddr: dev_addr,
                dl_settings: DLSettings {
                    opt_neg: false,
                    rx2_dr: 0,
                    rx1_dr_offset: 0,
                },
                rx_delay: 1,
                cflist: None,
            }),
            mic: None,
        };
        accept
            .set_join_accept_mic(JoinType::Join, &join_eui, jr.dev_nonce, &app_key)
            .expect("mic");
        accept
            .encrypt_join_accept_payload(&app_key)
            .expect("encrypt");
        let nwk_s_key = lrwn::keys::get_f_nwk_s_int_key(
            false,
            &app_key,
            &net_id,
            &join_eui,
            join_nonce,
            jr.dev_nonce,
        )
        .expect("key");
        let app_s_key = lrwn::keys::get_app_s_key(
            false,
            &app_key,
            &net_id,
            &join_eui,
            join_nonce,
            jr.dev_nonce,
        )
        .expect("key");
        self.devices.insert(
            dev_addr.to_be_bytes(),
            Device {
                index,
                nwk_s_key,
                app_s_key,
                f_cnt_up: Vec::new(),
                f_cnt_down: 0,
                messages: Vec::new(),
            },
        );
        let frame = accept.to_vec().expect("bytes");
        self.pull_resp(&frame, tmst.wrapping_add(5_000_000)).await;
    }

    /// Sends a frame to the gateway as ChirpStack would (the sample's txpk), remembering the
    /// token that its TX_ACK must carry.
    async fn pull_resp(&mut self, frame: &[u8], tmst: u32) -> u16 {
        let token = self.next_token;
        self.next_token += 1;
        let body = serde_json::json!({ "txpk": {
            "imme": false, "rfch": 0, "powe": 16, "ant": 0, "brd": 0, "tmst": tmst,
            "freq": 868.1, "modu": "LORA", "datr": "SF7BW125", "codr": "4/5", "ipol": true,
            "size": frame.len(), "data": STANDARD.encode(frame),
        }});
        self.send_pull_resp(token, body.to_string().as_bytes())
            .await;
        self.tx_waiting.push(token);
        token
    }

    async fn send_pull_resp(&self, token: u16, body: &[u8]) {
        let mut d = vec![2, (token >> 8) as u8, token as u8, 0x03];
        d.extend_from_slice(body);
        self.send_raw(&d).await;
    }

    async fn send_raw(&self, datagram: &[u8]) {
        let to = self.gateway.expect("a PULL_DATA came first");
        self.socket.send_to(datagram, to).await.expect("send");
    }

    /// A data downlink for the device at `dev_addr`.
    fn downlink(&mut self, dev_addr: [u8; 4], confirmed: bool, f_port: u8, data: &[u8]) -> Vec<u8> {
        let device = self.devices.get_mut(&dev_addr).expect("device");
        let mut phy = PhyPayload {
            mhdr: MHDR {
                f_type: if confirmed {
                    FType::ConfirmedDataDown
                } else {
                    FType::UnconfirmedDataDown
                },
                major: Major::LoRaWANR1,
            },
            payload: Payload::MACPayload(MACPayload {
                fhdr: FHDR {
                    devaddr: DevAddr::from_be_bytes(dev_addr),
                    f_cnt: device.f_cnt_down,
                    ..Default::default()
                },
                f_port: Some(f_port),
                frm_payload: Some(FRMPayload::Raw(data.to_vec())),
            }),
            mic: None,
        };
        device.f_cnt_down += 1;
        phy.encrypt_frm_payload(&device.app_s_key).expect("encrypt");
        phy.set_downlink_data_mic(MACVersion::LoRaWAN1_0, 0, &device.nwk_s_key)
            .expect("mic");
        phy.to_vec().expect("bytes")
    }
}

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
