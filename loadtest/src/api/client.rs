//! A keep-alive HTTP/1.1 client made to cost the load generator as little as possible: one
//! TCP connection per worker, requests written whole from prepared bytes, answers read into
//! one reused buffer and only their status line, length and cache header parsed. It speaks
//! exactly what the server answers (bodies with a `Content-Length`); anything else is an
//! error, counted as such.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What the server's `x-cache` header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Served from the response cache.
    Hit,
    /// Computed, then cached.
    Miss,
    /// Computed, cache bypassed (`Cache-Control: no-cache`).
    Bypass,
}

/// An answer, its body still in the connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `x-cache` header, if any.
    pub cache: Option<CacheState>,
    /// Body bytes.
    pub body_len: usize,
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the last answer's body sits in `buf`.
    body: std::ops::Range<usize>,
    /// Bytes of `buf` that belong to the last answer (dropped before the next is read).
    used: usize,
}

impl Connection {
    /// Connects, Nagle off (requests go out whole, in one write).
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            body: 0..0,
            used: 0,
        })
    }

    /// Sends one complete request and reads its answer.
    pub async fn send(&mut self, request: &[u8]) -> Result<Answer> {
        self.buf.drain(..self.used);
        self.used = 0;
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find_head_end(&self.buf) {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("an answer head longer than {MAX_HEAD} bytes");
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[..head_end])?;
        let total = head_end + head.body_len;
        while self.buf.len() < total {
            self.fill().await?;
        }
        self.body = head_end..total;
        self.used = total;
        Ok(head)
    }

    /// The last answer's body.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    async fn fill(&mut self) -> Result<()> {
        let len = self.buf.len();
        if self.buf.capacity() - len < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Index just past the blank line that ends an answer head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Status, cache state and body length from an answer head.
fn parse_head(head: &[u8]) -> Result<Answer> {
    let text = std::str::from_utf8(head).context("an answer head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
    let mut body_len = None;
    let mut cache = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = Some(
                value
                    .parse()
                    .context("a Content-Length that is no number")?,
            );
        } else if name.eq_ignore_ascii_case("x-cache") {
            cache = match value {
                "hit" => Some(CacheState::Hit),
                "miss" => Some(CacheState::Miss),
                "bypass" => Some(CacheState::Bypass),
                _ => None,
            };
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer (the client expects a Content-Length)");
        }
    }
    Ok(Answer {
        status,
        cache,
        // 204 and 304 carry no body and need no length.
        body_len: body_len.unwrap_or(0),
    })
}

/// A complete request: method, path, the key, extra headers and an optional JSON body.
pub fn request(
    method: &str,
    path: &str,
    key: &str,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n");
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if method != "GET" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !body.is_empty() {
        out.push_str("Content-Type: application/json\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_head_gives_status_length_and_cache_state() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-cache: hit\r\n\
                     content-length: 42\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\n";
        assert_eq!(find_head_end(head), Some(head.len()));
        let a = parse_head(head).expect("a head");
        assert_eq!(
            a,
            Answer {
                status: 200,
                cache: Some(CacheState::Hit),
                body_len: 42
            }
        );
        let a = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").expect("a head");
        assert_eq!((a.status, a.cache, a.body_len), (204, None, 0));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn a_request_carries_the_key_and_a_body_length_unless_a_get() {
        let get = request(
            "GET",
            "/api/v1/regions",
            "k",
            &[("Cache-Control", "no-cache")],
            None,
        );
        let text = String::from_utf8(get).expect("text");
        assert!(text.starts_with("GET /api/v1/regions HTTP/1.1\r\n"));
        assert!(text.contains("Authorization: Bearer k\r\nCache-Control: no-cache\r\n\r\n"));
        assert!(!text.contains("Content-Length"));
        let post = request("POST", "/api/v1/meters", "k", &[], Some(b"{}"));
        let text = String::from_utf8(post).expect("text");
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let empty = String::from_utf8(request("POST", "/x", "k", &[], None)).expect("text");
        assert!(empty.contains("Content-Length: 0\r\n"));
    }
}
