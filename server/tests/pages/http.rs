//! Pages over plain HTTP, for what needs no browser: one request at a time over a fresh
//! connection, with a session cookie got by signing in.

use std::net::SocketAddr;

use meterhub::pages::session::COOKIE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request with a session cookie (if any) and a form body, over a fresh connection: the
/// status and the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> (u16, String) {
    let cookie = cookie.map(|c| ("Cookie", c));
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend(cookie);
    exchange(addr, method, path, &headers, form).await
}

/// One request with these headers and body, over a fresh connection: the status and the whole
/// response.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (status, text)
}

/// A header's value in a response.
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .split("\r\n\r\n")
        .next()?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Signs in with `key`: the session cookie as a `Cookie` pair, and the whole `Set-Cookie`.
pub async fn sign_in(addr: SocketAddr, key: &str) -> (String, String) {
    let (status, response) = request(addr, "POST", "/signin", None, &format!("key={key}")).await;
    assert_eq!(status, 303, "{response}");
    let set = header(&response, "set-cookie")
        .expect("a session cookie")
        .to_owned();
    let pair = set.split(';').next().expect("name=value").to_owned();
    assert!(pair.starts_with(&format!("{COOKIE}=")), "{set}");
    (pair, set)
}

/// One POST of a form with a session cookie: the status and the whole response.
pub async fn post(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> (u16, String) {
    request(addr, "POST", path, Some(cookie), form).await
}
