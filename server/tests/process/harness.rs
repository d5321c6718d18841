//! What the process tests share: the `meterhub serve` binary as a child process, a stream of
//! distinct readings published in the background, a time limit, and the exactly-once check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use firmware_protocol::Serial;
use meterhub::storage::Store;
use test_support::{Broker, Process};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use crate::bridge::{Publisher, reading_frame, topic, up_event};

/// The longest a test here may take from start to finish. Each needs well under a minute in a
/// debug build; the margin is for a machine busy with other tests, and the limit turns a hang
/// into a failure that says what was awaited.
pub const TEST_LIMIT: Duration = Duration::from_secs(180);

/// How long a (re)started server may take to print its HTTP address: it connects to the
/// database and migrates first.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the tests look at the database or the server while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Runs a test body, failing it if it is still running [`TEST_LIMIT`] and half a minute after
/// it started: the waits inside check the limit themselves, this catches anything else that
/// hangs (a query, a stuck child process).
pub async fn within_limit(test: impl std::future::Future<Output = ()>) {
    let limit = TEST_LIMIT + Duration::from_secs(30);
    if tokio::time::timeout(limit, test).await.is_err() {
        panic!("the test did not finish within {limit:?}");
    }
}

/// The time a test started and how long it may run.
pub struct Deadline {
    started: Instant,
}

impl Deadline {
    pub fn start() -> Deadline {
        Deadline {
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Fails the test, naming what it was waiting for, once [`TEST_LIMIT`] has passed.
    pub fn check(&self, waiting_for: impl FnOnce() -> String) {
        if self.started.elapsed() > TEST_LIMIT {
            panic!(
                "gave up after {TEST_LIMIT:?}: still waiting for {}",
                waiting_for()
            );
        }
    }
}

/// `meterhub serve` as a child process, with the address its HTTP server listens on.
pub struct Server {
    process: Process,
    http: SocketAddr,
}

impl Server {
    /// Starts the binary on `database_url` and `broker` with MQTT client id `client_id` (the
    /// name of its persistent session), and waits until it serves HTTP.
    pub async fn start(database_url: &str, broker: &Broker, client_id: &str) -> Server {
        Server::start_with(database_url, &broker.url(), client_id, &[]).await
    }

    /// Like [`Server::start`], with the broker given by URL (a proxy's, say) and settings
    /// given as `METERHUB_…` environment variables.
    pub async fn start_with(
        database_url: &str,
        mqtt_url: &str,
        client_id: &str,
        settings: &[(&str, &str)],
    ) -> Server {
        let mut builder = Process::builder(env!("CARGO_BIN_EXE_meterhub"))
            .args(["serve", "--database-url", database_url])
            .args(["--mqtt-url", mqtt_url])
            // Port 0: tests run in parallel; the server prints the port it got.
            .args(["--http-bind", "127.0.0.1:0"])
            .env("METERHUB_MQTT__CLIENT_ID", client_id)
            // The captured log stays readable whatever the developer's RUST_LOG says.
            .env("RUST_LOG", "info");
        for (name, value) in settings {
            builder = builder.env(name, value);
        }
        let process = builder.start().expect("meterhub starts");
        let mut server = Server {
            process,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.wait_until_listening().await;
        server
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would: no batch is finished,
    /// nothing is acknowledged, no DISCONNECT is sent.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill().expect("SIGKILL")
    }

    /// Starts the server again with the same arguments and client id, and waits until it
    /// serves HTTP (on a new port).
    pub async fn restart(&mut self) {
        self.process.restart().expect("meterhub restarts");
        self.wait_until_listening().await;
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; fails the test if the server
    /// does not exit in time.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        match self.process.terminate(timeout).await {
            Ok(status) => status,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Waits until the server logs a line containing `needle`; returns the line.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        match self.process.wait_for_output(needle, timeout).await {
            Ok(line) => line,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Everything the server wrote to stderr, over all runs.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    async fn wait_until_listening(&mut self) {
        const MARK: &str = "listening on http://";
        let line = match self.process.wait_for_output(MARK, STARTUP_TIMEOUT).await {
            Ok(line) => line,
            Err(e) => panic!("{e:#}"),
        };
        let addr = line
            .split_once(MARK)
            .and_then(|(_, rest)| rest.trim().parse().ok());
        self.http = addr.unwrap_or_else(|| panic!("no address in {line:?}"));
    }

    /// A GET by hand (the tests need only the status and a small body): the status code and
    /// the body, or the error when the server does not answer within a few seconds.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_with(path, &[])
            .await
            .map(|reply| (reply.status, reply.body))
    }

    /// A GET with extra request headers; the whole answer, or the error when the server does
    /// not answer within [`ANSWER_LIMIT`].
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.http).await?;
            let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.http);
            for (name, value) in headers {
                let _ = write!(request, "{name}: {value}\r\n");
            }
            request.push_str("Connection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
        };
        let response = tokio::time::timeout(ANSWER_LIMIT, exchange)
            .await
            .map_err(|_| format!("GET {path}: no answer within {ANSWER_LIMIT:?}"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("GET {path}: not an HTTP response: {response:?}"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .map(|(head, body)| (head.to_owned(), body.to_owned()))
            .unwrap_or((response, String::new()));
        Ok(Reply { status, head, body })
    }

    /// A counter or gauge from `/metrics` of the current run.
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = self.get("/metrics").await.ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// A one-line summary of the current run's counters, for the test's output.
    pub async fn counters(&self) -> String {
        let mut out = String::new();
        for (label, name) in [
            ("received", "meterhub_mqtt_messages_received_total"),
            ("acknowledged", "meterhub_mqtt_messages_acknowledged_total"),
            ("duplicates", "meterhub_events_duplicate_total"),
            ("db retries", "meterhub_db_commit_retries_total"),
        ] {
            let value = self
                .metric(name)
                .await
                .map_or_else(|| "?".to_owned(), |v| v.to_string());
            let _ = write!(out, "{label} {value}; ");
        }
        out.trim_end_matches("; ").to_owned()
    }
}

/// How long [`Server::get_with`] waits for an answer.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// An HTTP answer read by hand.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The status line and the headers.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A fresh client id: the broker keys persistent sessions by it, and tests share nothing.
pub fn client_id(test: &str) -> String {
    format!("meterhub-{test}-{}", uuid::Uuid::new_v4())
}

/// One reading a day per meter, for `days` days back from a fixed second: every (meter, time)
/// distinct, so the number of rows stored says how many arrived.
#[derive(Clone)]
pub struct Stream {
    meters: Vec<(String, Serial)>,
    days: u32,
    base: DateTime<Utc>,
}

impl Stream {
    pub fn new(meters: Vec<(String, Serial)>, days: u32) -> Stream {
        // Whole seconds: the frame carries seconds, so this is what comes back from the store.
        let base = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
        Stream { meters, days, base }
    }

    pub fn len(&self) -> usize {
        self.meters.len() * self.days as usize
    }

    /// The time and volume of a meter's reading `day` days back.
    fn reading(&self, day: u32, meter: usize) -> (DateTime<Utc>, u32) {
        let at = self.base
            - chrono::Duration::days(i64::from(day))
            - chrono::Duration::seconds(meter as i64);
        (at, day * 100_000 + meter as u32)
    }

    /// Every reading the stream holds: (DevEUI, Unix time) → litres.
    pub fn expected(&self) -> BTreeMap<(String, i64), i64> {
        let mut out = BTreeMap::new();
        for day in 0..self.days {
            for (i, (dev_eui, _)) in self.meters.iter().enumerate() {
                let (at, litres) = self.reading(day, i);
                out.insert((dev_eui.clone(), at.timestamp()), i64::from(litres));
            }
        }
        out
    }

    /// That reading as ChirpStack publishes it, with a deduplication id of its own.
    fn event(&self, day: u32, meter: usize) -> (String, Vec<u8>) {
        let (dev_eui, serial) = &self.meters[meter];
        let (at, litres) = self.reading(day, meter);
        let data = reading_frame(*serial, at, litres);
        let dedup = uuid::Uuid::new_v4().to_string();
        (
            topic(dev_eui, "up"),
            up_event(dev_eui, &dedup, day, 1, &data),
        )
    }

    /// Publishes the whole stream at QoS 1 in the background and waits for the broker to
    /// acknowledge all of it; the task returns how long that took.
    ///
    /// The first event goes alone, again every second until `store` holds it: the server
    /// subscribes only after it has connected, and whatever the broker receives before that
    /// subscription exists goes to nobody. Repeating the event is safe, as its deduplication id
    /// makes the repeats duplicates.
    pub fn publish(&self, mut publisher: Publisher, store: Store) -> JoinHandle<Duration> {
        let stream = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (first_topic, first) = stream.event(0, 0);
            let mut attempts = 0;
            while readings(&store).await == 0 {
                assert!(
                    attempts < 60,
                    "the server stored nothing in a minute of publishing the first event"
                );
                attempts += 1;
                publisher.publish(first_topic.clone(), first.clone()).await;
                publisher.flush().await;
                let wait = Instant::now();
                while readings(&store).await == 0 && wait.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(POLL).await;
                }
            }
            // Day by day, every meter in turn, as a network of meters reporting daily sends.
            for day in 0..stream.days {
                for meter in 0..stream.meters.len() {
                    if (day, meter) != (0, 0) {
                        let (topic, event) = stream.event(day, meter);
                        publisher.publish(topic, event).await;
                    }
                }
            }
            publisher.flush().await;
            started.elapsed()
        })
    }
}

/// Waits until the store holds at least `want` readings; returns the count.
pub async fn wait_for_readings(store: &Store, want: usize, deadline: &Deadline) -> usize {
    loop {
        let count = readings(store).await;
        if count >= want {
            return count;
        }
        deadline.check(|| format!("{want} readings (the store holds {count})"));
        tokio::time::sleep(POLL).await;
    }
}

/// The number of readings stored.
pub async fn readings(store: &Store) -> usize {
    let count = patiently("count readings", || store.count_readings()).await;
    usize::try_from(count).expect("a count is not negative")
}

/// A read by the test's own store, tried again while the database is only slow to answer: on
/// a loaded machine a read can outlast the store's read timeout, and the check must not fail
/// on what the server under test rides out the same way.
async fn patiently<T, F, Fut>(what: &str, mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = meterhub::storage::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Ok(value) => return value,
            Err(e) if e.is_transient() && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// Checks that the store holds exactly the stream's readings: as many rows as readings, each
/// (meter, time) of the stream once with its volume, nothing else, nothing quarantined.
pub async fn assert_stored_exactly_once(store: &Store, stream: &Stream) {
    let expected = stream.expected();
    assert_eq!(
        expected.len(),
        stream.len(),
        "the stream's readings are distinct"
    );
    let count = readings(store).await;

    let from = stream.base - chrono::Duration::days(i64::from(stream.days) + 1);
    let to = stream.base + chrono::Duration::days(1);
    let mut stored = BTreeMap::new();
    let mut repeated = 0usize;
    for (dev_eui, _) in &stream.meters {
        let meter = patiently("read meter", || store.meter_by_dev_eui(dev_eui))
            .await
            .expect("meter registered");
        let rows = patiently("read readings", || {
            store.readings_for_meter(meter.id, from, to, i64::from(stream.days) * 2 + 10)
        })
        .await;
        for r in rows {
            let key = (dev_eui.clone(), r.reading_time.timestamp());
            if stored
                .insert(key, r.gas_volume_litres.unwrap_or(-1))
                .is_some()
            {
                repeated += 1;
            }
        }
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    let unexpected: Vec<_> = stored
        .iter()
        .filter(|(k, v)| expected.get(*k) != Some(*v))
        .collect();
    let quarantined = store
        .quarantined(None, i64::MAX, 5)
        .await
        .expect("read quarantine");
    assert!(
        count == expected.len()
            && repeated == 0
            && missing.is_empty()
            && unexpected.is_empty()
            && quarantined.is_empty(),
        "expected each of the {} readings exactly once; the store holds {count} rows, \
         {repeated} repeated, {} missing (first: {:?}), {} unexpected or altered (first: {:?}), \
         quarantined: {:?}",
        expected.len(),
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(5).collect::<Vec<_>>(),
        quarantined
            .iter()
            .map(|q| (&q.reason, &q.detail))
            .collect::<Vec<_>>(),
    );
}
