//! A fake network server on 127.0.0.1 for the gateway transport's tests. It does LoRaWAN with
//! ChirpStack's own crate (`lrwn`), not the simulator's: it acknowledges the gateways'
//! datagrams, checks each JoinRequest's MIC with the meter's AppKey and answers a JoinAccept,
//! checks every uplink's MIC, decrypts it and records it as received, and sends downlinks.
//! Strict (the default), it also insists on what a fault-free run shows: every payload
//! decodes, a reading carries its meter's serial, the frame counter counts up by one.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use firmware_protocol::clock::Clock;
use firmware_protocol::{Uplink, decode_uplink};
use lrwn::{
    AES128Key, DLSettings, DevAddr, FHDR, FRMPayload, FType, JoinAcceptPayload, JoinType,
    MACPayload, MACVersion, MHDR, Major, NetID, Payload, PhyPayload,
};
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::udp::FleetKeys;
use tokio::net::UdpSocket;

/// The gateway EUI the tests give the simulator's first gateway; the next counts up from it.
pub const GATEWAY_EUI: [u8; 8] = [0x00, 0x16, 0xc0, 0x01, 0xff, 0x1e, 0x5a, 0x7b];

/// The EUI of gateway `n`.
pub fn gateway_eui(n: u8) -> [u8; 8] {
    let mut eui = GATEWAY_EUI;
    eui[7] += n;
    eui
}

/// A device as the fake network server knows it after its join.
pub struct Device {
    pub index: u32,
    nwk_s_key: AES128Key,
    app_s_key: AES128Key,
    pub f_cnt_up: Vec<u32>,
    f_cnt_down: u32,
    pub messages: Vec<(i64, Uplink, bool)>,
}

/// A data frame as a gateway forwarded it, whatever it carried.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The EUI of the gateway that forwarded it.
    pub gateway: [u8; 8],
    /// The PUSH_DATA's token.
    pub token: u16,
    /// The PHYPayload, as on the air.
    pub phy: Vec<u8>,
    /// The meter's index.
    pub meter: u32,
    /// Its frame counter (16 bits on the air).
    pub f_cnt: u32,
    /// Its port.
    pub f_port: u8,
    /// The decrypted application payload.
    pub payload: Vec<u8>,
    /// The simulated time at which it arrived, Unix seconds.
    pub at: i64,
    /// The signal strength the gateway reported, dBm.
    pub rssi: i64,
}

/// One uplink as the network server saw it.
pub struct Seen {
    pub dev_addr: [u8; 4],
    /// The gateway's counter when it received the frame: RX1 opens a second later.
    pub tmst: u32,
    pub f_cnt: u32,
    pub ack: bool,
    pub message: Uplink,
}

pub struct FakeNetworkServer {
    socket: UdpSocket,
    keys: FleetKeys,
    clock: Clock,
    /// Where PULL_DATA came from: where downlinks go.
    gateway: Option<SocketAddr>,
    /// By DevAddr, most significant byte first.
    pub devices: HashMap<[u8; 4], Device>,
    pub dev_nonces: HashMap<u32, Vec<u16>>,
    /// Tokens of the PULL_RESPs sent and not yet acknowledged with a TX_ACK.
    pub tx_waiting: Vec<u16>,
    pub tx_acked: Vec<u16>,
    /// TX_ACKs that reported an error, with it.
    pub tx_refused: Vec<(u16, String)>,
    next_token: u16,
    pub pull_data: usize,
    pub push_acks: u64,
    pub stats: usize,
    /// Each meter's serial, by index: its readings must carry it.
    serials: Vec<firmware_protocol::Serial>,
    /// Ignore the first JoinRequest of these meters, to see them retry.
    pub ignore_first_join: Vec<u32>,
    /// The gateways allowed to send (their EUIs).
    pub gateways: Vec<[u8; 8]>,
    /// Insist on a fault-free run (see the module's header).
    pub strict: bool,
    /// Every data frame forwarded, in the order the datagrams came.
    pub frames: Vec<Frame>,
}

impl FakeNetworkServer {
    pub async fn bind(fleet: &FleetSpec, keys: FleetKeys, clock: Clock) -> FakeNetworkServer {
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
            gateways: vec![GATEWAY_EUI],
            strict: true,
            frames: Vec::new(),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.socket.local_addr().expect("address")
    }

    /// Takes datagrams until one carries an uplink (returned), answering everything else.
    pub async fn next_uplink(&mut self) -> Seen {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).await.expect("recv");
            let d = &buf[..n];
            assert!(n >= 12, "a gateway datagram has a 12-byte header: {d:?}");
            assert_eq!(d[0], 2, "protocol version 2");
            let mut eui = [0u8; 8];
            eui.copy_from_slice(&d[4..12]);
            assert!(
                self.gateways.contains(&eui),
                "a known gateway's EUI: {eui:02x?}"
            );
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
                        let from = (eui, u16::from_be_bytes(token));
                        if let Some(seen) = self.take_rxpk(&rxpk, from).await {
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

    async fn take_rxpk(
        &mut self,
        rxpk: &serde_json::Value,
        (gateway, token): ([u8; 8], u16),
    ) -> Option<Seen> {
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
                self.frames.push(Frame {
                    gateway,
                    token,
                    phy: bytes.clone(),
                    meter: device.index,
                    f_cnt,
                    f_port,
                    payload: data.clone(),
                    at: self.clock.now_unix(),
                    rssi: rxpk["rssi"].as_i64().expect("rssi"),
                });
                let decoded = decode_uplink(f_port, data);
                if !self.strict {
                    device.f_cnt_up.push(f_cnt);
                    let message = decoded.ok()?;
                    device.messages.push((self.clock.now_unix(), message, ack));
                    return Some(Seen {
                        dev_addr,
                        tmst,
                        f_cnt,
                        ack,
                        message,
                    });
                }
                let message = decoded.expect("a meterhub message");
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
    pub async fn pull_resp(&mut self, frame: &[u8], tmst: u32) -> u16 {
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

    pub async fn send_pull_resp(&self, token: u16, body: &[u8]) {
        let mut d = vec![2, (token >> 8) as u8, token as u8, 0x03];
        d.extend_from_slice(body);
        self.send_raw(&d).await;
    }

    pub async fn send_raw(&self, datagram: &[u8]) {
        let to = self.gateway.expect("a PULL_DATA came first");
        self.socket.send_to(datagram, to).await.expect("send");
    }

    /// A data downlink for the device at `dev_addr`.
    pub fn downlink(
        &mut self,
        dev_addr: [u8; 4],
        confirmed: bool,
        f_port: u8,
        data: &[u8],
    ) -> Vec<u8> {
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
