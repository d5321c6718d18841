//! A minimal network server on the other end of the gateways, for measuring how fast the udp
//! transport produces frames: it acknowledges every datagram, answers each JoinRequest with a
//! JoinAccept (no MIC check: that is the tests' job) and counts the data uplinks it receives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::lorawan::creator::JoinAcceptCreator;
use ::lorawan::keys::AES128;
use ::lorawan::maccommands::DLSettings;
use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::net::UdpSocket;

use super::keys::FleetKeys;
use super::packet_forwarder::PushData;

/// A running counting server.
pub struct CountingServer {
    /// Where the gateways send to.
    pub address: SocketAddr,
    /// Data uplinks received.
    pub uplinks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingServer {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(keys: FleetKeys) -> Result<CountingServer> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("binding the counting server")?;
        let address = socket.local_addr()?;
        let uplinks = Arc::new(AtomicU64::new(0));
        let counted = uplinks.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            let mut gateway = None;
            let mut token = 0u16;
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let d = &buf[..n];
                if n < 12 {
                    continue;
                }
                match d[3] {
                    0x00 => {
                        let _ = socket.send_to(&[2, d[1], d[2], 0x01], from).await;
                        let Ok(push) = serde_json::from_slice::<PushData>(&d[12..]) else {
                            continue;
                        };
                        for rxpk in push.rxpk {
                            let Ok(frame) = STANDARD.decode(rxpk.data.as_bytes()) else {
                                continue;
                            };
                            match frame.first() {
                                Some(0x00) => {
                                    let Some(accept) = join_accept(&keys, &frame) else {
                                        continue;
                                    };
                                    let Some(to) = gateway else { continue };
                                    token = token.wrapping_add(1);
                                    let mut out = vec![2, (token >> 8) as u8, token as u8, 0x03];
                                    let body = serde_json::json!({"txpk": {
                                        "imme": false,
                                        "tmst": rxpk.tmst.wrapping_add(5_000_000),
                                        "freq": rxpk.freq, "size": accept.len(),
                                        "data": STANDARD.encode(&accept),
                                    }});
                                    out.extend_from_slice(body.to_string().as_bytes());
                                    let _ = socket.send_to(&out, to).await;
                                }
                                Some(m) if m >> 5 == 0b010 => {
                                    counted.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {}
                            }
                        }
                    }
                    0x02 => {
                        gateway = Some(from);
                        let _ = socket.send_to(&[2, d[1], d[2], 0x04], from).await;
                    }
                    _ => {}
                }
            }
        });
        Ok(CountingServer {
            address,
            uplinks,
            task,
        })
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JoinAccept for a JoinRequest of the fleet (DevAddr = meter index + 1).
fn join_accept(keys: &FleetKeys, request: &[u8]) -> Option<Vec<u8>> {
    let eui = request.get(9..17)?;
    let index = u32::from_le_bytes(eui.get(..4)?.try_into().ok()?);
    let mut creator = JoinAcceptCreator::new();
    creator
        .set_app_nonce(&[1, 2, 3])
        .set_net_id(&[0, 0, 0])
        .set_dev_addr(index.wrapping_add(1).to_le_bytes())
        .set_dl_settings(DLSettings::new(0))
        .set_rx_delay(1);
    let built = creator.build(&AES128(keys.app_key(index))).ok()?;
    // Without a CFList a JoinAccept is 17 bytes; the creator's buffer holds room for one.
    Some(built.get(..17)?.to_vec())
}
