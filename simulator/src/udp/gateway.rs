//! One simulated gateway: its UDP socket towards the gateway bridge, its concentrator counter,
//! the tokens of datagrams still waiting for their acknowledgement, and what it counted.
//!
//! The socket is shared with a receive task that only reads datagrams and hands them to the
//! runner, so a slow runner never makes the gateway miss its own sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::packet_forwarder::{self, PushData, RxPk, Stat};
use crate::rng::Pcg32;

/// How long a datagram waits for its PUSH_ACK or PULL_ACK before it counts as unacknowledged.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a gateway counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// PUSH_DATA datagrams sent (frames and status).
    pub push_sent: u64,
    /// PUSH_ACKs whose token matched a PUSH_DATA waiting for one.
    pub push_acked: u64,
    /// PULL_DATA datagrams sent.
    pub pull_sent: u64,
    /// PULL_ACKs whose token matched.
    pub pull_acked: u64,
    /// Acknowledgements that matched no datagram waiting for one.
    pub unmatched_acks: u64,
    /// Datagrams not acknowledged in time.
    pub unacknowledged: u64,
    /// Frames forwarded (`rxpk`).
    pub frames_up: u64,
    /// PULL_RESPs received.
    pub frames_down: u64,
    /// TX_ACKs sent.
    pub tx_acks: u64,
}

/// A gateway speaking the Semtech UDP protocol to one server.
pub struct Gateway {
    /// Its EUI, most significant byte first.
    pub eui: [u8; 8],
    socket: Arc<UdpSocket>,
    started: Instant,
    tokens: Pcg32,
    push_waiting: HashMap<u16, Instant>,
    pull_waiting: HashMap<u16, Instant>,
    /// PUSH_DATA sent twice whose second PUSH_ACK may still come.
    echoed: HashMap<u16, Instant>,
    /// What it counted.
    pub counters: GatewayCounters,
}

impl Gateway {
    /// Binds a socket towards `server` and starts the task that feeds its received datagrams,
    /// tagged with `number`, into `received`.
    pub async fn connect(
        number: usize,
        eui: [u8; 8],
        server: SocketAddr,
        seed: u64,
        received: mpsc::Sender<(usize, Vec<u8>)>,
    ) -> Result<(Gateway, tokio::task::JoinHandle<()>)> {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let socket = UdpSocket::bind(local)
            .await
            .context("binding a gateway socket")?;
        socket
            .connect(server)
            .await
            .with_context(|| format!("connecting to the gateway bridge at {server}"))?;
        let socket = Arc::new(socket);
        let reader = socket.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                match reader.recv(&mut buf).await {
                    Ok(n) => {
                        if received.send((number, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    // A refused port (ICMP) surfaces here on a connected socket: the bridge
                    // may not be up yet, and the keep-alives will find it when it is.
                    Err(e) => {
                        tracing::debug!(error = %e, "gateway socket receive error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok((
            Gateway {
                eui,
                socket,
                started: Instant::now(),
                tokens: Pcg32::new(seed ^ 0x0704_3e45, number as u64),
                push_waiting: HashMap::new(),
                pull_waiting: HashMap::new(),
                echoed: HashMap::new(),
                counters: GatewayCounters::default(),
            },
            task,
        ))
    }

    /// The concentrator's microsecond counter now (wraps at 2^32, as the hardware's does).
    pub fn tmst(&self) -> u32 {
        self.started.elapsed().as_micros() as u32
    }

    fn token(&mut self) -> u16 {
        self.tokens.next_u32() as u16
    }

    /// Forwards received frames in one PUSH_DATA.
    pub async fn push_frames(&mut self, rxpk: Vec<RxPk>) -> Result<()> {
        let frames = rxpk.len() as u64;
        self.push(PushData { rxpk, stat: None }).await?;
        self.counters.frames_up += frames;
        Ok(())
    }

    /// Forwards received frames in one PUSH_DATA that reaches the server twice, token and
    /// all, as over a backhaul that duplicates a UDP datagram: one PUSH_DATA sent, whose
    /// second PUSH_ACK is expected too.
    pub async fn push_frames_twice(&mut self, rxpk: Vec<RxPk>) -> Result<()> {
        let frames = rxpk.len() as u64;
        let token = self.token();
        let datagram =
            packet_forwarder::push_data(token, self.eui, &PushData { rxpk, stat: None })?;
        self.push_waiting.insert(token, Instant::now());
        self.echoed.insert(token, Instant::now());
        self.counters.push_sent += 1;
        for _ in 0..2 {
            self.socket
                .send(&datagram)
                .await
                .context("sending PUSH_DATA")?;
        }
        self.counters.frames_up += frames;
        Ok(())
    }

    /// Sends the status report.
    pub async fn push_stat(&mut self, time: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let c = self.counters;
        let ackr = if c.push_sent == 0 {
            100.0
        } else {
            (100.0 * c.push_acked as f64 / c.push_sent as f64 * 10.0).round() / 10.0
        };
        let stat = Stat {
            time: time.format("%Y-%m-%d %H:%M:%S GMT").to_string(),
            lati: 52.3731,
            long: 4.8922,
            alti: 4,
            rxnb: c.frames_up,
            rxok: c.frames_up,
            rxfw: c.frames_up,
            ackr,
            dwnb: c.frames_down,
            txnb: c.tx_acks,
        };
        self.push(PushData {
            rxpk: Vec::new(),
            stat: Some(stat),
        })
        .await
    }

    async fn push(&mut self, body: PushData) -> Result<()> {
        let token = self.token();
        let datagram = packet_forwarder::push_data(token, self.eui, &body)?;
        self.push_waiting.insert(token, Instant::now());
        self.counters.push_sent += 1;
        self.socket
            .send(&datagram)
            .await
            .context("sending PUSH_DATA")?;
        Ok(())
    }

    /// Sends a PULL_DATA keep-alive.
    pub async fn pull(&mut self) -> Result<()> {
        let token = self.token();
        self.pull_waiting.insert(token, Instant::now());
        self.counters.pull_sent += 1;
        self.socket
            .send(&packet_forwarder::pull_data(token, self.eui))
            .await
            .context("sending PULL_DATA")?;
        Ok(())
    }

    /// Acknowledges the PULL_RESP with `token`.
    pub async fn tx_ack(&mut self, token: u16, error: &str) -> Result<()> {
        self.counters.tx_acks += 1;
        self.socket
            .send(&packet_forwarder::tx_ack(token, self.eui, error))
            .await
            .context("sending TX_ACK")?;
        Ok(())
    }

    /// A PUSH_ACK arrived: whether its token matched a PUSH_DATA waiting for one.
    pub fn push_acked(&mut self, token: u16) -> bool {
        let matched = self.push_waiting.remove(&token).is_some();
        if matched {
            self.counters.push_acked += 1;
        } else if self.echoed.remove(&token).is_some() {
            // The acknowledgement of a duplicated datagram's second copy.
            return true;
        } else {
            self.counters.unmatched_acks += 1;
        }
        matched
    }

    /// A PULL_ACK arrived: whether its token matched.
    pub fn pull_acked(&mut self, token: u16) -> bool {
        let matched = self.pull_waiting.remove(&token).is_some();
        if matched {
            self.counters.pull_acked += 1;
        } else {
            self.counters.unmatched_acks += 1;
        }
        matched
    }

    /// Datagrams still waiting for their acknowledgement.
    pub fn waiting(&self) -> usize {
        self.push_waiting.len() + self.pull_waiting.len()
    }

    /// Gives up on acknowledgements older than [`ACK_TIMEOUT`], counting them.
    pub fn expire(&mut self, now: Instant) {
        let before = self.waiting();
        self.push_waiting
            .retain(|_, sent| now.duration_since(*sent) < ACK_TIMEOUT);
        self.pull_waiting
            .retain(|_, sent| now.duration_since(*sent) < ACK_TIMEOUT);
        // A duplicate's second acknowledgement that did not come is no datagram lost.
        self.echoed
            .retain(|_, sent| now.duration_since(*sent) < ACK_TIMEOUT);
        self.counters.unacknowledged += (before - self.waiting()) as u64;
    }
}
