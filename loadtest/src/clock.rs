//! The clock scenario: how long `meterhub serve` takes to answer a TS003 AppTimeReq while it
//! ingests. ChirpStack looks at a device's queue about 100 ms after it publishes the uplink;
//! an answer that is not queued by then waits for the device's next uplink, hours later.
//!
//! A paced stream of `up` events goes to the server, one in `every` of them an AppTimeReq
//! (fPort 202) and the rest daily readings, while a subscriber on `command/down` takes the
//! server's answers. An answer is matched to its request by its id, which the server derives
//! from the request's `deduplicationId` ([`meterhub::downlink::clock_sync::answer_id`]), and
//! checked (device, port, echoed token); its latency runs from the request's publish to the
//! answer's arrival at the subscriber, so it includes both trips through the broker, as
//! ChirpStack would see it. The committed rate is read from the database as in the ingest
//! scenario, to show the ingest load the answers were given under.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::Utc;
use firmware_protocol::chirpstack::DownlinkCommand;
use firmware_protocol::{ClockSyncDown, ClockSyncDownlink, PORT_CLOCK_SYNC};
use meterhub::downlink::clock_sync::answer_id;
use rumqttc::v5::Event;
use rumqttc::v5::mqttbytes::v5::Packet;
use tokio::sync::{mpsc, oneshot};

use crate::cpu::{Snapshot, Usage};
use crate::db::Db;
use crate::event::{self, EventTemplate};
use crate::ingest::{self, IngestArgs, Labels, SERVER_LABEL};
use crate::mqtt::{self, Load, MeterClocks};
use crate::pacing::Schedule;
use crate::progress::{Arrivals, PublishTimes, rate};
use crate::reader::CommitReader;
use crate::report::{Percentiles, ms, thousands};
use crate::server::{self, HistogramSeries, ServerProcess};

/// The goal: an answer within this long of its request, at the 99th percentile.
pub const GOAL_P99_MS: f64 = 20.0;

/// The server's histogram of its own part: from an AppTimeReq's arrival to its answer's
/// hand-over to its MQTT client.
const SERVER_HISTOGRAM: &str = "meterhub_clock_answer_seconds";

/// Where ChirpStack takes commands, for every application and device.
const COMMAND_FILTER: &str = "application/+/device/+/command/down";

/// A run's settings.
#[derive(Debug, Clone)]
pub struct ClockArgs {
    /// Broker, database, rate, duration, fleet, server and the rest, as for ingest.
    pub run: IngestArgs,
    /// One event in this many is an AppTimeReq.
    pub every: u32,
    /// Longest wait for the last answers after publishing ends.
    pub answer_wait: Duration,
}

/// Refuses settings that would reach beyond this machine or run without bound.
pub fn check(args: &ClockArgs) -> Result<()> {
    ingest::check(&args.run)?;
    if !(1..=10_000).contains(&args.every) {
        bail!("--every must be 1 to 10 000");
    }
    if args.answer_wait > Duration::from_secs(600) {
        bail!("--answer-wait must be at most 10 min");
    }
    Ok(())
}

/// What became of one message on `command/down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The first answer to one of the run's requests.
    Answer,
    /// An answer to a request already answered (a redelivery).
    Repeat,
    /// Carries a request's answer id but not its answer: another device or port, no
    /// AppTimeAns, or the wrong token.
    Wrong,
    /// Not an answer to one of the run's requests (another command, another run's answer).
    Other,
}

/// The run's requests by the ids of their answers, and the answers heard so far.
pub struct AnswerBook {
    /// Answer id → the request's sequence number.
    expected: HashMap<u128, u64>,
    meters: u32,
    /// Which requests were answered, and how long each answer took.
    pub arrivals: Arrivals,
    /// Answers heard again.
    pub repeats: u64,
    /// Answers with a request's id that do not answer it.
    pub wrong: u64,
    /// Other messages on `command/down`.
    pub others: u64,
}

impl AnswerBook {
    /// For the requests among events `0..total` of `run`, one in `every`, over `meters` meters.
    pub fn new(run: u32, total: u64, every: u64, meters: u32) -> AnswerBook {
        let expected = (0..total)
            .filter(|seq| event::is_clock_request(*seq, every))
            .map(|seq| (answer_id(&event::dedup_id(run, seq)).as_u128(), seq))
            .collect();
        AnswerBook {
            expected,
            meters,
            arrivals: Arrivals::new(total),
            repeats: 0,
            wrong: 0,
            others: 0,
        }
    }

    /// Requests in the run.
    pub fn requests(&self) -> u64 {
        self.expected.len() as u64
    }

    /// Requests answered.
    pub fn answered(&self) -> u64 {
        self.arrivals.seen.count()
    }

    /// Records a message heard on `command/down` at `at`; requests are timed from their
    /// publish instants in `times`.
    pub fn hear(&mut self, command: &DownlinkCommand, at: Instant, times: &PublishTimes) -> Heard {
        let Some(&seq) = command.id.and_then(|id| self.expected.get(&id.as_u128())) else {
            self.others += 1;
            return Heard::Other;
        };
        if !answers(command, seq, self.meters) {
            self.wrong += 1;
            return Heard::Wrong;
        }
        if self.arrivals.arrive(seq, at, times) {
            Heard::Answer
        } else {
            self.repeats += 1;
            Heard::Repeat
        }
    }
}

/// Whether `command` answers request `seq`: to its meter, on the clock port, an AppTimeAns
/// echoing its token.
fn answers(command: &DownlinkCommand, seq: u64, meters: u32) -> bool {
    let (meter, _) = event::meter_and_round(seq, meters);
    command.dev_eui == event::dev_eui(meter)
        && command.f_port == PORT_CLOCK_SYNC
        && ClockSyncDownlink::decode(command.data.as_slice()).is_ok_and(|frame| {
            frame.iter().any(|c| {
                matches!(c, ClockSyncDown::AppTimeAns { token_ans, .. }
                    if *token_ans == event::clock_token(seq))
            })
        })
}

/// A subscriber on `command/down`: every message, with the instant it arrived, goes to a
/// channel, so that parsing and matching never delay the next arrival's timestamp.
struct Listener {
    messages: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(url: &str, run: u32) -> Result<Listener> {
        let (client, mut eventloop) = mqtt::subscribe(
            url,
            &format!("meterhub-loadtest-{run:08x}-answers"),
            COMMAND_FILTER.to_owned(),
            100,
        )
        .await?;
        let (tx, messages) = mpsc::unbounded_channel();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = eventloop.poll() => e,
                    _ = &mut stopped => break,
                };
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((Instant::now(), p.payload.to_vec())).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("command/down subscriber: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            mqtt::close(&client, &mut eventloop).await;
        });
        Ok(Listener {
            messages,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The server's own view of its answers in the phase, from two scrapes of `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerView {
    /// From arrival to hand-over to its MQTT client, per answer.
    pub answer: HistogramSeries,
    /// Uplinks the dispatcher had no room for (their requests went unanswered).
    pub dispatcher_dropped: f64,
}

impl ServerView {
    fn between(before: &str, after: &str) -> Option<ServerView> {
        let answer = HistogramSeries::parse(after, SERVER_HISTOGRAM)?
            .since(&HistogramSeries::parse(before, SERVER_HISTOGRAM).unwrap_or_default());
        let dropped = |t: &str| server::metric(t, "meterhub_dispatcher_dropped_total");
        Some(ServerView {
            answer,
            dispatcher_dropped: dropped(after).unwrap_or(0.0) - dropped(before).unwrap_or(0.0),
        })
    }

    fn text(&self) -> String {
        let h = &self.answer;
        let within = |s: f64| {
            h.share_within(s)
                .map_or("?".to_owned(), |v| format!("{:.2} %", v * 100.0))
        };
        format!(
            "{} answers, mean {} ms, {} within 1 ms, {} within 5 ms, {} within 20 ms, \
             p99 at most {} ms; {} uplinks dropped by the dispatcher",
            thousands(h.count.max(0.0) as u64),
            h.mean().map_or("?".to_owned(), |m| ms(m * 1_000.0)),
            within(0.001),
            within(0.005),
            within(0.02),
            h.quantile_bound(0.99)
                .map_or("?".to_owned(), |b| ms(b * 1_000.0)),
            thousands(self.dispatcher_dropped.max(0.0) as u64),
        )
    }
}

/// A clock run's figures.
#[derive(Debug, Clone, Default)]
pub struct ClockReport {
    /// When it started, RFC 3339.
    pub started_at: String,
    /// `postgres` or `sqlite`.
    pub database: String,
    /// Offered events a second, requests and readings together.
    pub offered: u32,
    /// One event in this many was a request.
    pub every: u32,
    /// Publishing time.
    pub duration: Duration,
    /// Meters in the fleet.
    pub meters: u32,
    /// Publisher connections.
    pub publishers: u32,
    /// Events published.
    pub published: u64,
    /// Of those, acknowledged by the broker.
    pub acknowledged: u64,
    /// Publish rate achieved, events a second.
    pub publish_rate: f64,
    /// Furthest the publishers fell behind the schedule.
    pub max_lag: Duration,
    /// Requests published.
    pub requests: u64,
    /// Of those, answered.
    pub answered: u64,
    /// Answers heard again.
    pub repeats: u64,
    /// Answers with a request's id that did not answer it.
    pub wrong: u64,
    /// Other messages on `command/down`.
    pub others: u64,
    /// Publish-to-answer latency.
    pub latency: Percentiles,
    /// Events committed.
    pub committed: u64,
    /// Committed a second, from the first publish to the last commit.
    pub commit_rate: f64,
    /// Commits stopped for 15 s before everything was committed.
    pub stalled: bool,
    /// The server's own view, when its /metrics could be read.
    pub server: Option<ServerView>,
    /// CPU during the phase.
    pub cpu: Usage,
    /// The server did not stop on SIGTERM and was killed.
    pub server_killed: bool,
}

impl ClockReport {
    /// Share of the requests answered.
    pub fn answered_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.answered as f64 / self.requests as f64
        }
    }

    /// Whether every request was answered, correctly, with a p99 under the goal.
    pub fn goal_met(&self) -> bool {
        self.requests > 0
            && self.answered == self.requests
            && self.wrong == 0
            && self.latency.p99 < GOAL_P99_MS
    }

    /// `ok` when every request was answered and every event committed; else what went wrong.
    pub fn outcome(&self) -> String {
        let mut parts = Vec::new();
        if self.answered < self.requests {
            parts.push("unanswered");
        }
        if self.wrong > 0 {
            parts.push("wrong-answers");
        }
        if self.committed < self.published {
            parts.push(if self.stalled {
                "stalled"
            } else {
                "incomplete"
            });
        }
        if self.server_killed {
            parts.push("killed");
        }
        if parts.is_empty() {
            "ok".to_owned()
        } else {
            parts.join("+")
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "clock answers on {}: {} events/s offered for {} s, one in {} an AppTimeReq \
             ({} events over {} meters, {} publisher connections, QoS 1)\n",
            self.database,
            thousands(u64::from(self.offered)),
            self.duration.as_secs(),
            self.every,
            thousands(self.published),
            thousands(u64::from(self.meters)),
            self.publishers,
        );
        out += &format!(
            "  answers: {} of {} requests answered ({:.2} %); publish-to-answer {}\n",
            thousands(self.answered),
            thousands(self.requests),
            self.answered_share() * 100.0,
            self.latency.text_with_tail(),
        );
        out += &format!(
            "  goal p99 < {GOAL_P99_MS} ms with every request answered: {}\n",
            if self.goal_met() { "met" } else { "NOT MET" }
        );
        if let Some(s) = &self.server {
            out += &format!("  server's view (arrival to hand-over): {}\n", s.text());
        }
        out += &format!(
            "  ingest: {} of {} events committed = {}/s{}\n",
            thousands(self.committed),
            thousands(self.published),
            thousands(self.commit_rate.round() as u64),
            if self.stalled {
                "; commits stopped for 15 s before the rest came"
            } else {
                ""
            },
        );
        out += &format!(
            "  publishing: {}/s achieved, at most {} ms behind schedule, {} acknowledged by the broker\n",
            thousands(self.publish_rate.round() as u64),
            self.max_lag.as_millis(),
            thousands(self.acknowledged),
        );
        out += &format!("    cpu: {}\n", self.cpu.summary());
        if self.repeats + self.wrong + self.others > 0 {
            out += &format!(
                "  also heard on command/down: {} repeated answers, {} wrong answers, {} other messages\n",
                thousands(self.repeats),
                thousands(self.wrong),
                thousands(self.others),
            );
        }
        if self.server_killed {
            out += "  THE SERVER DID NOT STOP within 30 s of SIGTERM and was killed\n";
        }
        out
    }

    /// The CSV columns.
    pub const CSV_HEADER: &'static str = "started_at,database,offered_per_s,every,duration_s,\
        meters,published,requests,answered,answered_share,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,\
        committed,committed_per_s,server_answers,server_mean_ms,server_within_20ms,\
        server_cpu_cores,machine_busy_cores,goal_met,outcome";

    /// This run as a CSV row (no newline).
    pub fn csv_row(&self) -> String {
        let server_cpu: f64 = self
            .cpu
            .by_program
            .iter()
            .filter(|(n, _)| n == SERVER_LABEL)
            .map(|(_, c)| c)
            .sum();
        let s = self.server.as_ref();
        [
            self.started_at.clone(),
            self.database.clone(),
            self.offered.to_string(),
            self.every.to_string(),
            self.duration.as_secs().to_string(),
            self.meters.to_string(),
            self.published.to_string(),
            self.requests.to_string(),
            self.answered.to_string(),
            format!("{:.4}", self.answered_share()),
            format!("{:.2}", self.latency.p50),
            format!("{:.2}", self.latency.p90),
            format!("{:.2}", self.latency.p99),
            format!("{:.2}", self.latency.p999),
            format!("{:.2}", self.latency.max),
            self.committed.to_string(),
            format!("{:.0}", self.commit_rate),
            s.map(|s| format!("{:.0}", s.answer.count))
                .unwrap_or_default(),
            s.and_then(|s| s.answer.mean())
                .map(|m| format!("{:.3}", m * 1_000.0))
                .unwrap_or_default(),
            s.and_then(|s| s.answer.share_within(0.02))
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
            format!("{server_cpu:.2}"),
            self.cpu
                .machine_busy
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
            self.goal_met().to_string(),
            self.outcome(),
        ]
        .join(",")
    }
}

/// Runs the scenario; prints the summary and appends the CSV row.
pub async fn run(args: ClockArgs) -> Result<ClockReport> {
    check(&args)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started_at = Utc::now();
    // Distinct per run (by the second), as in the ingest scenario; the top bit is the probes'.
    let run = (started_at.timestamp() as u32) & 0x7fff_ffff;
    let r = &args.run;
    let server = ServerProcess::start_if(
        r.server_bin.as_deref(),
        &r.database_url,
        &r.mqtt_url,
        r.server_log,
    )
    .await?;
    let labels = Labels::of_run(r, server.as_ref());
    let result = scenario(&args, run, started_at, server.as_ref(), &labels).await;
    let server_killed = server::stop_if(server, result.is_err()).await?;
    let mut report = result?;
    report.server_killed = server_killed;
    println!("{}", report.summary());
    crate::report::append_csv(&r.csv, ClockReport::CSV_HEADER, &report.csv_row())?;
    eprintln!("appended to {}", r.csv.display());
    Ok(report)
}

async fn scenario(
    args: &ClockArgs,
    run: u32,
    started_at: chrono::DateTime<Utc>,
    server: Option<&ServerProcess>,
    labels: &Labels,
) -> Result<ClockReport> {
    let r = &args.run;
    let db = Db::connect(&r.database_url).await?;
    eprintln!("registering {} meters", thousands(u64::from(r.meters)));
    db.register_meters(r.meters, started_at).await?;
    // The readings are dated from now on (the ingest scenario starts an hour back): with
    // about one reading per meter a second, the meters' clocks as their readings show them
    // keep within a second or two of the events' time, so no reading finds a clock that has
    // drifted and queues a resynchronisation command, which a fleet that asks for its time
    // regularly would not either.
    let now = Utc::now();
    let first_reading = db
        .first_reading_time(now)
        .await?
        .max(chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now));
    let template = Arc::new(EventTemplate::new()?);
    ingest::probe(r, &db, run, &template, first_reading.timestamp()).await?;

    let mut listener = Listener::start(&r.mqtt_url, run).await?;
    let load = Load {
        run,
        prefix: String::new(),
        meters: r.meters,
        clocks: Arc::new(MeterClocks::new(r.meters, first_reading.timestamp() + 1)),
        template: template.clone(),
        clock_every: u64::from(args.every),
    };
    let result = async {
        probe_answers(r, &mut listener, &load).await?;
        phase(args, &db, &load, &mut listener, server, labels).await
    }
    .await;
    listener.stop().await;
    db.close().await;
    let mut report = result?;
    report.started_at = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report.database = db.kind().to_owned();
    Ok(report)
}

/// Sends single AppTimeReqs until one is answered: proves the server's dispatcher and its
/// downlink connection are up before any figure is taken (the downlink client connects on
/// its own, perhaps after the bridge).
async fn probe_answers(args: &IngestArgs, listener: &mut Listener, load: &Load) -> Result<()> {
    let probe = Load {
        run: load.run | 0x8000_0000,
        clock_every: 1,
        ..load.clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Far above the reading probes' sequence numbers, so the identities never collide.
    for seq in 1_000_000..1_000_030_u64 {
        let (topic, payload) = probe.event(seq, Utc::now())?;
        let id = answer_id(&event::dedup_id(probe.run, seq)).as_u128();
        mqtt::publish_one(
            &args.mqtt_url,
            &format!("meterhub-loadtest-{:08x}-probe", load.run),
            topic,
            payload,
        )
        .await?;
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(Some((_, payload))) =
            tokio::time::timeout_at(until.into(), listener.messages.recv()).await
        {
            if DownlinkCommand::from_json(&payload)
                .is_ok_and(|c| c.id.map(|i| i.as_u128()) == Some(id))
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    bail!(
        "no clock request was answered on {COMMAND_FILTER}: are downlinks enabled \
         ([downlink] enabled) in the server on {}?",
        args.mqtt_url
    )
}

async fn phase(
    args: &ClockArgs,
    db: &Db,
    load: &Load,
    listener: &mut Listener,
    server: Option<&ServerProcess>,
    labels: &Labels,
) -> Result<ClockReport> {
    let r = &args.run;
    let total = ingest::total_events(r);
    let schedule = Schedule::new(r.rate, total);
    let book = AnswerBook::new(load.run, total, load.clock_every, load.meters);
    let requests = book.requests();
    eprintln!(
        "{} events at {}/s to meterhub, {} of them AppTimeReqs",
        thousands(total),
        thousands(u64::from(r.rate)),
        thousands(requests)
    );
    let times = Arc::new(PublishTimes::new(Instant::now(), total));
    let reader = CommitReader::start(db.clone(), load.run, total, times.clone(), r.poll_interval);

    // Matches answers as they come, on a task of its own, until told to stop.
    let answered = Arc::new(AtomicU64::new(0));
    let (stop_matching, mut stopped) = oneshot::channel::<()>();
    let mut messages = std::mem::replace(&mut listener.messages, mpsc::unbounded_channel().1);
    let matcher = {
        let times = times.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut book = book;
            let hear = |at: Instant, payload: &[u8], book: &mut AnswerBook| {
                match DownlinkCommand::from_json(payload) {
                    Ok(c) => {
                        book.hear(&c, at, &times);
                    }
                    Err(_) => book.others += 1,
                }
                answered.store(book.answered(), Ordering::Relaxed);
            };
            loop {
                tokio::select! {
                    m = messages.recv() => match m {
                        Some((at, payload)) => hear(at, &payload, &mut book),
                        None => break,
                    },
                    _ = &mut stopped => break,
                }
            }
            // What arrived before the stop is still in the channel.
            while let Ok((at, payload)) = messages.try_recv() {
                hear(at, &payload, &mut book);
            }
            book
        })
    };

    let http = server.map(|s| s.http).or(r.server_http);
    let before = match http {
        Some(addr) => server::fetch_metrics(addr).await.ok(),
        None => None,
    };
    let cpu_before = Snapshot::take();
    let start = Instant::now();
    let committed = reader.counter();
    let answered_now = answered.clone();
    let tick = ingest::ticker(times.clone(), move || {
        format!(
            "{} answered, {} committed",
            thousands(answered_now.load(Ordering::Relaxed)),
            thousands(committed.load(Ordering::Relaxed))
        )
    });
    let published = mqtt::publish(
        &r.mqtt_url,
        load,
        schedule,
        r.publishers,
        times.clone(),
        r.drain_timeout,
    )
    .await?;
    // Answers normally come well before the commits; when the server falls behind, both wait
    // for the backlog, so after the commits have drained the answers get a second wait.
    let wait_for_answers = || async {
        let answers_by = Instant::now() + args.answer_wait;
        while answered.load(Ordering::Relaxed) < requests && Instant::now() < answers_by {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for_answers().await;
    let stalled = ingest::drain(&reader, published.published, r.drain_timeout).await;
    wait_for_answers().await;
    tick.abort();
    let cpu = Usage::between(&cpu_before, &Snapshot::take(), &|pid, p| {
        labels.label(pid, p)
    });
    let view = match (http, before) {
        (Some(addr), Some(before)) => server::fetch_metrics(addr)
            .await
            .ok()
            .and_then(|after| ServerView::between(&before, &after)),
        _ => None,
    };
    let commits = reader.finish().await?;
    let _ = stop_matching.send(());
    let book = matcher.await?;
    let first = times.get(0).unwrap_or(start);
    Ok(ClockReport {
        offered: r.rate,
        every: args.every,
        duration: r.duration,
        meters: r.meters,
        publishers: r.publishers,
        published: published.published,
        acknowledged: published.acknowledged,
        publish_rate: rate(published.published, start, Some(start + published.span)),
        max_lag: published.max_lag,
        requests,
        answered: book.answered(),
        repeats: book.repeats,
        wrong: book.wrong,
        others: book.others,
        latency: Percentiles::of(&book.arrivals.latency),
        committed: commits.seen.count(),
        commit_rate: rate(commits.seen.count(), first, commits.last),
        stalled,
        server: view,
        cpu,
        ..ClockReport::default()
    })
}

#[cfg(test)]
mod tests {
    use firmware_protocol::chirpstack::Bytes;

    use super::*;

    /// The answer the server would publish to request `seq` of `run`.
    fn answer_to(run: u32, seq: u64, meters: u32) -> DownlinkCommand {
        let (meter, _) = event::meter_and_round(seq, meters);
        let mut data = [0u8; 16];
        let n = ClockSyncDownlink::single(ClockSyncDown::AppTimeAns {
            time_correction: 5,
            token_ans: event::clock_token(seq),
        })
        .encode(&mut data)
        .expect("encodes");
        DownlinkCommand {
            id: Some(answer_id(&event::dedup_id(run, seq))),
            dev_eui: event::dev_eui(meter),
            confirmed: false,
            f_port: PORT_CLOCK_SYNC,
            data: Bytes(data[..n].to_vec()),
            object: None,
            expires_at: None,
        }
    }

    #[test]
    fn answers_are_matched_to_their_requests_by_id_and_timed_from_the_publish() {
        let epoch = Instant::now();
        let times = PublishTimes::new(epoch, 100);
        // One in ten of 100 events over 7 meters: requests 0, 10, …, 90.
        let mut book = AnswerBook::new(0x0123_4567, 100, 10, 7);
        assert_eq!(book.requests(), 10);
        times.mark(30, epoch + Duration::from_millis(5));
        times.mark(40, epoch + Duration::from_millis(6));

        let at = epoch + Duration::from_millis(17);
        assert_eq!(
            book.hear(&answer_to(0x0123_4567, 30, 7), at, &times),
            Heard::Answer
        );
        assert_eq!(
            book.hear(&answer_to(0x0123_4567, 30, 7), at, &times),
            Heard::Repeat,
            "a redelivery counts once"
        );
        assert_eq!(book.answered(), 1);
        assert_eq!(
            book.arrivals.latency.max(),
            book.arrivals.latency.highest_equivalent(12_000),
            "17 ms − 5 ms"
        );

        // Another run's answer, an event that was not a request, a command without an id.
        assert_eq!(
            book.hear(&answer_to(0x0123_4568, 40, 7), at, &times),
            Heard::Other
        );
        assert_eq!(
            book.hear(&answer_to(0x0123_4567, 41, 7), at, &times),
            Heard::Other
        );
        let mut no_id = answer_to(0x0123_4567, 40, 7);
        no_id.id = None;
        assert_eq!(book.hear(&no_id, at, &times), Heard::Other);
        assert_eq!((book.others, book.repeats), (3, 1));
    }

    #[test]
    fn an_answer_with_the_right_id_must_still_answer_the_request() {
        let epoch = Instant::now();
        let times = PublishTimes::new(epoch, 20);
        times.mark(10, epoch);
        let mut book = AnswerBook::new(9, 20, 10, 7);
        let right = answer_to(9, 10, 7);

        let mut other_device = right.clone();
        other_device.dev_eui = event::dev_eui(1);
        let mut other_port = right.clone();
        other_port.f_port = firmware_protocol::PORT_READING;
        let mut other_token = answer_to(9, 10, 7);
        let mut data = [0u8; 16];
        let n = ClockSyncDownlink::single(ClockSyncDown::AppTimeAns {
            time_correction: 5,
            token_ans: (event::clock_token(10) + 1) & 0x0f,
        })
        .encode(&mut data)
        .expect("encodes");
        other_token.data = Bytes(data[..n].to_vec());
        let mut garbage = right.clone();
        garbage.data = Bytes(vec![0xff]);

        for wrong in [other_device, other_port, other_token, garbage] {
            assert_eq!(book.hear(&wrong, epoch, &times), Heard::Wrong);
        }
        assert_eq!(book.wrong, 4);
        assert_eq!(book.answered(), 0);
        assert_eq!(book.hear(&right, epoch, &times), Heard::Answer);
    }

    fn report() -> ClockReport {
        ClockReport {
            started_at: "2026-11-26T18:00:00Z".into(),
            database: "sqlite".into(),
            offered: 15_000,
            every: 10,
            duration: Duration::from_secs(30),
            meters: 15_000,
            publishers: 2,
            published: 450_000,
            requests: 45_000,
            answered: 45_000,
            latency: Percentiles {
                p50: 1.0,
                p90: 3.0,
                p99: 12.0,
                p999: 40.0,
                max: 90.0,
            },
            committed: 450_000,
            ..ClockReport::default()
        }
    }

    #[test]
    fn the_goal_needs_every_request_answered_and_a_p99_under_20_ms() {
        let r = report();
        assert!(r.goal_met());
        assert_eq!(r.outcome(), "ok");
        assert!(r.summary().contains("answered: met"), "{}", r.summary());

        let slow = ClockReport {
            latency: Percentiles {
                p99: 20.0,
                ..r.latency
            },
            ..report()
        };
        assert!(!slow.goal_met(), "20 ms is not under 20 ms");

        let unanswered = ClockReport {
            answered: 44_999,
            committed: 400_000,
            stalled: true,
            ..report()
        };
        assert!(!unanswered.goal_met());
        assert_eq!(unanswered.outcome(), "unanswered+stalled");
        assert!(unanswered.summary().contains("NOT MET"));
    }

    #[test]
    fn a_csv_row_has_a_value_for_every_column() {
        let row = report().csv_row();
        assert_eq!(
            row.split(',').count(),
            ClockReport::CSV_HEADER.split(',').count()
        );
        assert!(
            row.starts_with("2026-11-26T18:00:00Z,sqlite,15000,10,30,15000,450000,45000,45000,1.0000,1.00,3.00,12.00,40.00,90.00,"),
            "{row}"
        );
        assert!(row.ends_with(",true,ok"), "{row}");
    }
}
