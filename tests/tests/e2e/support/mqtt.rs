//! Just enough MQTT 3.1.1, written by hand, to check a broker's settings without an MQTT client
//! library: connect, subscribe, publish and acknowledge at QoS 1.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Packet types (the high nibble of the first byte).
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;

/// How long any single read may take before the test gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One MQTT packet: its first byte and the bytes after the length.
pub struct Packet {
    pub header: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
}

/// A raw MQTT 3.1.1 session over TCP.
pub struct RawMqtt {
    stream: TcpStream,
}

impl RawMqtt {
    /// Connects and returns the session and CONNACK's return code and session-present flag.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        clean_session: bool,
    ) -> (RawMqtt, u8, bool) {
        let stream = TcpStream::connect(addr)
            .await
            .expect("TCP connect to the broker");
        let mut session = RawMqtt { stream };
        let mut body = Vec::new();
        put_str(&mut body, "MQTT");
        body.push(4); // protocol level: 3.1.1
        body.push(if clean_session { 0x02 } else { 0x00 });
        body.extend_from_slice(&60u16.to_be_bytes()); // keep-alive, seconds
        put_str(&mut body, client_id);
        session.send(0x10, &body).await;

        let connack = session.read().await;
        assert_eq!(
            connack.kind(),
            CONNACK,
            "the broker answers CONNECT with CONNACK"
        );
        assert_eq!(connack.body.len(), 2, "CONNACK has two bytes");
        let session_present = connack.body[0] & 1 == 1;
        (session, connack.body[1], session_present)
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn subscribe_qos1(&mut self, filter: &str) {
        let mut body = 1u16.to_be_bytes().to_vec(); // packet id
        put_str(&mut body, filter);
        body.push(1); // requested QoS
        self.send(0x82, &body).await;
        let suback = self.read().await;
        assert_eq!(suback.kind(), SUBACK);
        assert_eq!(suback.body, [0, 1, 1], "granted QoS 1");
    }

    /// Sends a QoS 1 PUBLISH without waiting for its PUBACK.
    pub async fn publish_qos1(&mut self, topic: &str, packet_id: u16, payload: &[u8]) {
        let mut body = Vec::with_capacity(payload.len() + topic.len() + 4);
        put_str(&mut body, topic);
        body.extend_from_slice(&packet_id.to_be_bytes());
        body.extend_from_slice(payload);
        self.send(0x32, &body).await;
    }

    /// Sends a QoS 1 PUBLISH that the broker may refuse by closing the connection while it is
    /// being written: the write's error is returned instead of failing the test.
    pub async fn try_publish_qos1(
        &mut self,
        topic: &str,
        packet_id: u16,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut body = Vec::with_capacity(payload.len() + topic.len() + 4);
        put_str(&mut body, topic);
        body.extend_from_slice(&packet_id.to_be_bytes());
        body.extend_from_slice(payload);
        self.stream.write_all(&packet(0x32, &body)).await
    }

    /// Whether the broker closes the connection within `timeout`, rather than sending a packet
    /// or keeping it open.
    pub async fn is_closed_by_broker(&mut self, timeout: Duration) -> bool {
        let mut byte = [0; 1];
        // End of stream (0 bytes) or a reset both mean closed.
        matches!(
            tokio::time::timeout(timeout, self.stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Acknowledges a QoS 1 PUBLISH.
    pub async fn puback(&mut self, packet_id: u16) {
        self.send(0x40, &packet_id.to_be_bytes()).await;
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) {
        self.send(0xe0, &[]).await;
        let _ = self.stream.shutdown().await;
    }

    /// Reads the next packet, or `None` if none comes within `timeout`.
    pub async fn try_read(&mut self, timeout: Duration) -> Option<Packet> {
        tokio::time::timeout(timeout, self.read_untimed())
            .await
            .ok()
    }

    /// Reads the next packet.
    pub async fn read(&mut self) -> Packet {
        tokio::time::timeout(READ_TIMEOUT, self.read_untimed())
            .await
            .expect("a packet from the broker in time")
    }

    async fn read_untimed(&mut self) -> Packet {
        let header = self.stream.read_u8().await.expect("read a packet header");
        // Remaining length: 7 bits a byte, least significant first, high bit = more.
        let mut len = 0usize;
        for shift in (0..28).step_by(7) {
            let byte = self.stream.read_u8().await.expect("read a packet length");
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.stream
            .read_exact(&mut body)
            .await
            .expect("read a packet body");
        Packet { header, body }
    }

    async fn send(&mut self, header: u8, body: &[u8]) {
        self.stream
            .write_all(&packet(header, body))
            .await
            .expect("write a packet");
    }
}

/// A packet's bytes: its first byte, the remaining length, the body.
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![header];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// A QoS 1 PUBLISH's packet id and payload.
pub fn parse_publish_qos1(packet: &Packet) -> (u16, &[u8]) {
    assert_eq!(packet.kind(), PUBLISH);
    assert_eq!((packet.header >> 1) & 3, 1, "delivered at QoS 1");
    let topic_len = usize::from(u16::from_be_bytes([packet.body[0], packet.body[1]]));
    let id_at = 2 + topic_len;
    let id = u16::from_be_bytes([packet.body[id_at], packet.body[id_at + 1]]);
    (id, &packet.body[id_at + 2..])
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("an MQTT string fits in 64 KiB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}
