//! The MQTT side: paced QoS 1 publishers that behave like ChirpStack, and a plain QoS 1
//! subscriber (automatic acknowledgements) for the broker's pass-through measurement.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::event::{self, EventTemplate, EventValues};
use crate::pacing::{Schedule, Share};
use crate::progress::{Arrivals, PublishTimes};

/// Largest packet either side accepts: well above a sample-sized event.
const MAX_PACKET_SIZE: u32 = 1024 * 1024;

/// Host and port of an `mqtt://host:port` URL.
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .with_context(|| format!("{url:?}: only plain mqtt:// URLs are supported"))?
        .trim_end_matches('/');
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal: [::1]:1883
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("unclosed [ in {url:?}"))?;
            (host, after.strip_prefix(':').unwrap_or("1883"))
        }
        None => rest.split_once(':').unwrap_or((rest, "1883")),
    };
    let port = port
        .parse()
        .with_context(|| format!("bad port in {url:?}"))?;
    Ok((host.to_owned(), port))
}

fn options(url: &str, client_id: &str) -> Result<MqttOptions> {
    let (host, port) = host_port(url)?;
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_PACKET_SIZE));
    Ok(o)
}

/// What the events of a phase are.
#[derive(Clone)]
pub struct Load {
    /// The run, for the identities.
    pub run: u32,
    /// Topic prefix ("" for the server's topics).
    pub prefix: String,
    /// Meters in the fleet.
    pub meters: u32,
    /// Each meter's clock: the time its readings are dated.
    pub clocks: Arc<MeterClocks>,
    /// The event JSON.
    pub template: Arc<EventTemplate>,
    /// One event in this many is a clock request (AppTimeReq) instead of a reading; 0 for
    /// readings only.
    pub clock_every: u64,
}

impl Load {
    /// Topic and payload of event `seq`.
    pub fn event(&self, seq: u64, now: chrono::DateTime<chrono::Utc>) -> Result<(String, Vec<u8>)> {
        let (meter, round) = event::meter_and_round(seq, self.meters);
        let (f_port, frame) = if event::is_clock_request(seq, self.clock_every) {
            let meter_clock = now.timestamp() - event::CLOCK_BEHIND_SECONDS;
            let frame = event::clock_frame(meter_clock, event::clock_token(seq))?;
            (firmware_protocol::PORT_CLOCK_SYNC, frame)
        } else {
            let reading_unix = self.clocks.next(meter, now.timestamp());
            // A cumulative volume that grows with every reading, as a real meter's does.
            let litres = (round as u32).wrapping_mul(37).wrapping_add(meter);
            let frame = event::reading_frame(event::serial(meter)?, reading_unix, litres)?;
            (firmware_protocol::PORT_READING, frame)
        };
        let time = now.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
        let mut payload = Vec::with_capacity(1_400);
        self.template.render(
            &mut payload,
            &EventValues {
                run: self.run,
                seq,
                meter,
                time: &time,
                f_port,
                frame: &frame,
            },
        );
        Ok((event::topic(&self.prefix, meter), payload))
    }
}

/// The meters' clocks. A reading is dated when it is sent, as a meter with a right clock
/// dates it, so that the server sees no drift to correct; but never at or before the meter's
/// previous reading, because a meter's readings are told apart by their time. A meter that
/// reports more than once a second therefore runs ahead: keep the fleet at least as large as
/// the rate.
#[derive(Debug)]
pub struct MeterClocks {
    /// Per meter (index = meter − 1), the time of its latest reading.
    last: Vec<AtomicI64>,
}

impl MeterClocks {
    /// Clocks for `meters` meters whose readings start at `first_unix` or later.
    pub fn new(meters: u32, first_unix: i64) -> MeterClocks {
        MeterClocks {
            last: (0..meters.max(1))
                .map(|_| AtomicI64::new(first_unix - 1))
                .collect(),
        }
    }

    /// The time of meter `meter`'s next reading, sent at `now_unix`.
    pub fn next(&self, meter: u32, now_unix: i64) -> i64 {
        let Some(last) = (meter as usize)
            .checked_sub(1)
            .and_then(|i| self.last.get(i))
        else {
            return now_unix;
        };
        let mut seen = last.load(Ordering::Relaxed);
        loop {
            let t = now_unix.max(seen + 1);
            match last.compare_exchange_weak(seen, t, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return t,
                Err(current) => seen = current,
            }
        }
    }

    /// The latest reading time handed out to any meter.
    pub fn latest(&self) -> i64 {
        self.last
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// How a publish phase went.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Events handed to the clients.
    pub published: u64,
    /// Of those, acknowledged by the broker (PUBACK).
    pub acknowledged: u64,
    /// When the last event was handed over, after the first.
    pub span: Duration,
    /// The furthest any event was handed over after it was due.
    pub max_lag: Duration,
}

/// Publishes `schedule` over `publishers` connections, recording each event's publish instant,
/// then waits (up to `ack_timeout`) for the broker to acknowledge everything.
pub async fn publish(
    url: &str,
    load: &Load,
    schedule: Schedule,
    publishers: u32,
    times: Arc<PublishTimes>,
    ack_timeout: Duration,
) -> Result<PublishReport> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..publishers {
        let (client, eventloop) = AsyncClient::new(
            options(
                url,
                &format!("meterhub-loadtest-{:08x}-pub{index}", load.run),
            )?,
            10_000,
        );
        let acked = Arc::new(AtomicU64::new(0));
        let poller = tokio::spawn(count_acks(eventloop, acked.clone()));
        let share = Share::new(schedule, index, publishers);
        let load = load.clone();
        let times = times.clone();
        tasks.push(tokio::spawn(async move {
            let r = publish_share(&client, &load, share, &times, start).await;
            (client, poller, acked, r)
        }));
    }
    let mut report = PublishReport::default();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, poller, acked, r) = task.await.context("publisher task")?;
        let (n, last, lag) = r?;
        report.published += n;
        report.span = report.span.max(last.saturating_duration_since(start));
        report.max_lag = report.max_lag.max(lag);
        clients.push((client, poller, acked, n));
    }
    let deadline = Instant::now() + ack_timeout;
    for (client, poller, acked, n) in clients {
        while acked.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        report.acknowledged += acked.load(Ordering::Relaxed).min(n);
        let _ = client.disconnect().await;
        // The event loop sends the DISCONNECT, then stops on the closed connection.
        let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    }
    Ok(report)
}

/// Publishes one share; returns how many, when the last went, and the largest lag.
async fn publish_share(
    client: &AsyncClient,
    load: &Load,
    mut share: Share,
    times: &PublishTimes,
    start: Instant,
) -> Result<(u64, Instant, Duration)> {
    let mut sent = 0;
    let mut last = start;
    let mut max_lag = Duration::ZERO;
    while let Some(due) = share.next_due_at() {
        tokio::time::sleep_until((start + due).into()).await;
        while let Some(seq) = share.take_due(start.elapsed()) {
            let now = Instant::now();
            let due = start + share.schedule().due_at(seq);
            max_lag = max_lag.max(now.saturating_duration_since(due));
            let (topic, payload) = load.event(seq, chrono::Utc::now())?;
            // Marked before the hand-over: the event cannot be seen anywhere before this.
            times.mark(seq, now);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .context("publishing")?;
            sent += 1;
            last = now;
        }
    }
    Ok((sent, last, max_lag))
}

/// Publishes one event at QoS 1 and waits for the broker's acknowledgement.
pub async fn publish_one(
    url: &str,
    client_id: &str,
    topic: String,
    payload: Vec<u8>,
) -> Result<()> {
    let (client, mut eventloop) = AsyncClient::new(options(url, client_id)?, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await?;
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("publishing to {url}: {e}")),
            }
        }
    })
    .await
    .with_context(|| format!("the broker at {url} did not acknowledge within 10 s"))?;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    acked
}

/// Drives a publisher's connection, counting the broker's acknowledgements.
async fn count_acks(mut eventloop: EventLoop, acked: Arc<AtomicU64>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                // Pending publishes are retransmitted after a reconnection; the ack count
                // shows any that were not.
                eprintln!("publisher connection: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connects a client (`capacity` requests queued) and subscribes it at QoS 1 to `filter`;
/// returns once the broker has confirmed the subscription, so that nothing published after
/// the return is missed.
pub async fn subscribe(
    url: &str,
    client_id: &str,
    filter: String,
    capacity: usize,
) -> Result<(AsyncClient, EventLoop)> {
    let (client, mut eventloop) = AsyncClient::new(options(url, client_id)?, capacity);
    client.subscribe(filter.clone(), QoS::AtLeastOnce).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                if !ack.return_codes.iter().all(|c| {
                    matches!(
                        c,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                }) {
                    bail!("the broker refused the subscription to {filter}: {ack:?}");
                }
                return Ok((client, eventloop));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("connecting the subscriber to {filter}: {e}"),
            Err(_) => bail!("the broker did not confirm the subscription to {filter}"),
        }
    }
}

/// Disconnects a subscriber and lets the DISCONNECT (and acknowledgements still queued) go
/// out.
pub async fn close(client: &AsyncClient, eventloop: &mut EventLoop) {
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

/// A subscriber on the pass-through topics, recording arrivals.
pub struct PassThrough {
    task: JoinHandle<Arrivals>,
    stop: oneshot::Sender<()>,
    delivered: Arc<AtomicU64>,
}

impl PassThrough {
    /// Subscribes at QoS 1 to `load`'s topics and waits for the broker to confirm.
    pub async fn subscribe(
        url: &str,
        load: &Load,
        total: u64,
        times: Arc<PublishTimes>,
    ) -> Result<PassThrough> {
        let filter = format!("{}application/+/device/+/event/up", load.prefix);
        let (client, mut eventloop) = subscribe(
            url,
            &format!("meterhub-loadtest-{:08x}-sub", load.run),
            filter,
            100,
        )
        .await?;
        let (stop, mut stopped) = oneshot::channel();
        let run = load.run;
        let delivered = Arc::new(AtomicU64::new(0));
        let count = delivered.clone();
        let task = tokio::spawn(async move {
            let mut arrivals = Arrivals::new(total);
            loop {
                let event = tokio::select! {
                    e = eventloop.poll() => e,
                    _ = &mut stopped => break,
                };
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = Instant::now();
                        if let Some(seq) = event::seq_in_payload(run, &p.payload) {
                            arrivals.arrive(seq, now, &times);
                            count.store(arrivals.seen.count(), Ordering::Relaxed);
                        }
                        if arrivals.seen.complete() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("pass-through subscriber: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            close(&client, &mut eventloop).await;
            arrivals
        });
        Ok(PassThrough {
            task,
            stop,
            delivered,
        })
    }

    /// The live count of events delivered.
    pub fn delivered(&self) -> Arc<AtomicU64> {
        self.delivered.clone()
    }

    /// Waits until every event arrived or `limit` passed; the arrivals.
    pub async fn finish(self, limit: Duration) -> Result<Arrivals> {
        let PassThrough { mut task, stop, .. } = self;
        match tokio::time::timeout(limit, &mut task).await {
            Ok(r) => Ok(r?),
            Err(_) => {
                let _ = stop.send(());
                Ok(task.await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_date_readings_when_sent_and_never_twice_at_one_time() {
        let clocks = MeterClocks::new(2, 1_000);
        // Sent later than the first reading time: dated when sent.
        assert_eq!(clocks.next(1, 2_000), 2_000);
        // Sent again within the same second: a second later, so the time stays unique.
        assert_eq!(clocks.next(1, 2_000), 2_001);
        assert_eq!(clocks.next(1, 2_000), 2_002);
        // Each meter keeps its own time; none reads before the first reading time.
        assert_eq!(clocks.next(2, 500), 1_000);
        assert_eq!(clocks.next(1, 2_010), 2_010);
        assert_eq!(clocks.latest(), 2_010);
    }

    #[test]
    fn broker_urls_give_host_and_port() {
        assert_eq!(
            host_port("mqtt://127.0.0.1:18830").expect("valid"),
            ("127.0.0.1".to_owned(), 18_830)
        );
        assert_eq!(
            host_port("mqtt://localhost").expect("valid"),
            ("localhost".to_owned(), 1_883)
        );
        assert_eq!(
            host_port("mqtt://[::1]:1884/").expect("valid"),
            ("::1".to_owned(), 1_884)
        );
        assert_eq!(
            host_port("mqtt://[::1]").expect("valid"),
            ("::1".to_owned(), 1_883)
        );
        assert!(host_port("mqtts://127.0.0.1:8883").is_err());
        assert!(host_port("mqtt://127.0.0.1:port").is_err());
    }
}
