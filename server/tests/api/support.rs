//! What the API tests share: a server with keys of every role on a private broker and
//! database, a small HTTP/1.1 client, and a fixture of meters, alarms and messages.

use std::net::SocketAddr;

use chrono::{DateTime, Duration, Utc};
use meterhub::api::auth::{Role, generate};
use serde_json::{Value, json};
use test_support::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::bridge::{APP, Env, Publisher, Server, reading_frame, topic, up_event, wait_for};

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request over a fresh connection (`Connection: close`); its answer must be as the
/// OpenAPI document says.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let reply = send_raw(addr, &head, body.unwrap_or_default()).await;
    // Every answer of the API tests is held to the OpenAPI document.
    if let Err(e) = crate::contract::check(
        method,
        path,
        reply.status,
        reply.header("content-type"),
        &reply.body,
    ) {
        panic!("{method} {path}: the answer is not as documented: {e}");
    }
    reply
}

/// Sends a request head written in full (`Connection: close`) and its body.
pub async fn send_raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
}

/// A running server with a key of every role.
pub struct TestApi {
    pub env: Env,
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub viewer: String,
    pub operator: String,
    pub admin: String,
}

impl TestApi {
    /// A server on `dialect`, or `None` when that database is not configured.
    pub async fn start(dialect: Dialect) -> Option<TestApi> {
        TestApi::start_with(dialect, |_| {}).await
    }

    /// A server on `dialect` with settings changed by `tweak`.
    pub async fn start_with(
        dialect: Dialect,
        tweak: impl FnOnce(&mut meterhub::config::Settings),
    ) -> Option<TestApi> {
        TestApi::start_seeded(dialect, tweak, |_| Box::pin(async {})).await
    }

    /// A server on `dialect` with settings changed by `tweak`, started once `seed` has
    /// written to its store (data the scheduler must find there from its first pass).
    pub async fn start_seeded(
        dialect: Dialect,
        tweak: impl FnOnce(&mut meterhub::config::Settings),
        seed: impl for<'a> FnOnce(
            &'a Env,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
    ) -> Option<TestApi> {
        let env = Env::new(dialect).await?;
        seed(&env).await;
        let mut keys = Vec::new();
        for role in Role::ALL {
            let k = generate(&format!("{}-key", role.as_str()), role, Utc::now());
            env.store.insert_api_key(&k.row).await.expect("key");
            keys.push(k.secret);
        }
        let client_id = format!("api-{}", uuid::Uuid::new_v4());
        let mut settings = env.settings(&client_id);
        tweak(&mut settings);
        let server = Server::start(settings).await;
        let addr = server.app.as_ref().expect("running").http_addr();
        Some(TestApi {
            env,
            server: Some(server),
            addr,
            viewer: keys[0].clone(),
            operator: keys[1].clone(),
            admin: keys[2].clone(),
        })
    }

    /// The key of a role.
    pub fn key(&self, role: Role) -> &str {
        match role {
            Role::Viewer => &self.viewer,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, Some(&self.admin), None, &[]).await
    }

    /// Reads `path` until the cache serves it (`X-Cache: hit`) and returns that answer.
    ///
    /// The scheduler may close a new meter's billing periods between two reads, a write that
    /// drops the meter's cached answers, so one read after another is not sure to hit; a path
    /// that is never served from the cache within a few seconds fails the test.
    pub async fn get_until_cached(&self, path: &str) -> Reply {
        for _ in 0..100 {
            let reply = self.get(path).await;
            if reply.header("x-cache") == Some("hit") {
                return reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{path} is never served from the cache");
    }

    /// Runs `meterhub` with these arguments on the test's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_meterhub"))
            .arg("--database-url")
            .arg(self.env.db.url())
            .args(args)
            .output()
            .expect("run meterhub")
    }

    /// GET bypassing the cache.
    pub async fn get_uncached(&self, path: &str) -> Reply {
        get_at(self.addr, &self.admin, path, true).await
    }

    /// A second server on the same database and broker.
    pub async fn second_instance(&self) -> Server {
        Server::start(self.env.settings(&format!("api2-{}", uuid::Uuid::new_v4()))).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// GET on any instance, through the cache or around it.
pub async fn get_at(addr: SocketAddr, key: &str, path: &str, uncached: bool) -> Reply {
    let extra: &[(&str, &str)] = if uncached {
        &[("Cache-Control", "no-cache")]
    } else {
        &[]
    };
    request(addr, "GET", path, Some(key), None, extra).await
}

impl TestApi {
    pub async fn post(&self, path: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        request(
            self.addr,
            "POST",
            path,
            Some(&self.admin),
            bytes.as_deref(),
            &[],
        )
        .await
    }
}

/// A meter install body; `n` varies DevEUI, serial, user and region (even: north, odd: south).
pub fn meter_body(n: u32) -> Value {
    let serial = firmware_protocol::Serial::new(12, 26, 1, n).expect("valid");
    json!({
        "serial": serial.to_string(),
        "devEui": dev_eui(n),
        "applicationId": APP,
        "bodyNumber": 1000 + n,
        "userId": format!("user-{n}"),
        "region": if n.is_multiple_of(2) { "north" } else { "south" },
        "usageType": "residential",
        "mode": "credit",
        "productionDate": "2026-01-15",
    })
}

pub fn dev_eui(n: u32) -> String {
    format!("a1b2c3d4e5{n:06x}")
}

pub fn serial(n: u32) -> firmware_protocol::Serial {
    firmware_protocol::Serial::new(12, 26, 1, n).expect("valid")
}

/// An `up` event of meter `n` heard at `heard` carrying a reading dated `at`.
pub fn reading_event(
    n: u32,
    dedup: &str,
    at: DateTime<Utc>,
    heard: DateTime<Utc>,
    litres: u32,
) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&up_event(
        &dev_eui(n),
        dedup,
        1,
        1,
        &reading_frame(serial(n), at, litres),
    ))
    .expect("json");
    v["time"] = json!(heard.to_rfc3339());
    serde_json::to_vec(&v).expect("json")
}

/// Publishes readings and waits until the store holds `total` readings.
pub async fn ingest(api: &TestApi, events: Vec<(u32, Vec<u8>)>, total: i64) {
    let mut p = Publisher::connect(&api.env.broker, &format!("pub-{}", uuid::Uuid::new_v4())).await;
    for (n, e) in events {
        p.publish(topic(&dev_eui(n), "up"), e).await;
    }
    p.flush().await;
    let store = api.env.store.clone();
    let got = wait_for(std::time::Duration::from_secs(30), total, || {
        let s = store.clone();
        async move { s.count_readings().await.unwrap_or(-1) }
    })
    .await;
    assert_eq!(got, total, "readings stored");
}

/// Midnight UTC `days` ago.
pub fn days_ago(days: i64) -> DateTime<Utc> {
    let now = Utc::now();
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    midnight - Duration::days(days)
}

/// The problem JSON of a 4xx, checked for shape.
pub fn problem(r: &Reply) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{} {}",
        r.status,
        r.text()
    );
    let p = r.json();
    assert_eq!(p["status"], json!(r.status), "{p}");
    assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
    p
}

/// An `up` event of meter `n` with an alarm frame.
pub fn alarm_event(
    n: u32,
    dedup: &str,
    kind: firmware_protocol::AlarmKind,
    at: DateTime<Utc>,
) -> Vec<u8> {
    let m = firmware_protocol::Uplink::Alarm(firmware_protocol::Alarm {
        kind,
        raised: true,
        meter_time: firmware_protocol::GpsTime::from_unix(at.timestamp()).expect("GPS range"),
        value: 3,
    });
    let mut buf = [0u8; 64];
    let len = m.encode(&mut buf).expect("encodes");
    up_event(&dev_eui(n), dedup, 2, 2, &buf[..len])
}

/// An `up` event of meter `n` with a self-test result (the valve test failed).
pub fn self_test_event(n: u32, dedup: &str, at: DateTime<Utc>) -> Vec<u8> {
    use firmware_protocol::Tests;
    let m = firmware_protocol::Uplink::SelfTest(firmware_protocol::SelfTestResult {
        tests_run: Tests::BATTERY.union(Tests::VALVE),
        tests_failed: Tests::VALVE,
        meter_time: firmware_protocol::GpsTime::from_unix(at.timestamp()).expect("GPS range"),
        battery_loaded_millivolts: 3_300,
        battery_rest_millivolts: 3_550,
        valve_travel_ms: 0,
        metrology_deviation_centi_percent: 12,
        internal_temperature_centi_celsius: 2_100,
    });
    let mut buf = [0u8; 64];
    let len = m.encode(&mut buf).expect("encodes");
    up_event(&dev_eui(n), dedup, 3, 3, &buf[..len])
}

/// What the shared fixture holds.
pub struct Fixture {
    pub api: TestApi,
    /// Open alarms of meter 1 (tamper, movement, leak).
    pub alarms: Vec<i64>,
    /// The quarantined reading of meter 9, not registered yet.
    pub quarantined: i64,
}

/// Meters 1–4 installed over HTTP (1, 3 south; 2, 4 north); meter 1 has three daily readings,
/// three open alarms and a self-test; meter 2 was last heard three days ago (silent); meter 9
/// sent a reading before it was registered (quarantined).
pub async fn fixture(dialect: Dialect) -> Option<Fixture> {
    let api = TestApi::start(dialect).await?;
    for n in 1..=4 {
        let r = api.post("/api/v1/meters", Some(meter_body(n))).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let now = Utc::now();
    let mut events = Vec::new();
    // Meter 1's register moves forward: 1 000, 2 000 and 3 000 litres, three days ago to
    // yesterday (going back would raise `registerBackwards`).
    for d in 1..=3 {
        events.push((
            1,
            reading_event(
                1,
                &uuid::Uuid::new_v4().to_string(),
                days_ago(d),
                now,
                1000 * (4 - d) as u32,
            ),
        ));
    }
    events.push((
        2,
        reading_event(
            2,
            &uuid::Uuid::new_v4().to_string(),
            days_ago(3),
            now - Duration::days(3),
            500,
        ),
    ));
    events.push((
        9,
        reading_event(9, &uuid::Uuid::new_v4().to_string(), days_ago(1), now, 10),
    ));
    use firmware_protocol::AlarmKind;
    for (i, kind) in [
        AlarmKind::MagneticTamper,
        AlarmKind::Movement,
        AlarmKind::Leak,
    ]
    .into_iter()
    .enumerate()
    {
        events.push((
            1,
            alarm_event(
                1,
                &uuid::Uuid::new_v4().to_string(),
                kind,
                now - Duration::hours(3 - i as i64),
            ),
        ));
    }
    events.push((
        1,
        self_test_event(
            1,
            &uuid::Uuid::new_v4().to_string(),
            now - Duration::hours(1),
        ),
    ));
    ingest(&api, events, 4).await;
    // Alarms, the self-test and the quarantined message share the batches of the readings;
    // wait for the last of them too.
    let store = api.env.store.clone();
    let q = wait_for(std::time::Duration::from_secs(30), 1, || {
        let s = store.clone();
        async move {
            s.quarantined(None, i64::MAX, 10)
                .await
                .map_or(0, |v| v.len() as i64)
        }
    })
    .await;
    assert_eq!(q, 1, "one message quarantined");
    // The three meter alarms, and two of meterhub's own: the failed valve test
    // (`selfTestFailed`, meter 1) and meter 2's silence (`noConnection`, raised by the
    // scheduler once its overdue time has passed).
    let alarms = wait_for(std::time::Duration::from_secs(30), 5, || {
        let s = store.clone();
        async move {
            s.alarms(None, i64::MAX, 10)
                .await
                .map_or(0, |v| v.len() as i64)
        }
    })
    .await;
    let stored = store.alarms(None, i64::MAX, 10).await.expect("alarms");
    assert_eq!(
        alarms,
        5,
        "alarms stored: {:?}",
        stored.iter().map(|a| &a.kind).collect::<Vec<_>>()
    );
    // The meter's own alarms, oldest first.
    let mut ids: Vec<i64> = stored
        .into_iter()
        .filter(|a| a.source == "meter")
        .map(|a| a.id)
        .collect();
    ids.sort_unstable();
    let quarantined = store.quarantined(None, i64::MAX, 10).await.expect("q")[0].id;
    Some(Fixture {
        api,
        alarms: ids,
        quarantined,
    })
}
