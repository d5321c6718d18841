//! Downlinks end to end: clock answers, the command queue and what ChirpStack reports back,
//! over a real broker into a real database.

use std::time::Duration;

use chrono::Utc;
use firmware_protocol::{
    ClockSync, ClockSyncDown, ClockSyncUp, Command, Downlink, GpsTime, Uplink, decode_downlink,
};
use meterhub::downlink::clock_sync::answer_id;
use meterhub::downlink::{CommandKind, CommandRequest};
use meterhub::storage::Store;
use serde_json::json;
use sqlx::ConnectOptions;
use test_support::{Dialect, TestDb};

use crate::support::{
    APP, CommandListener, Env, Publisher, Server, event, reading_frame, topic, up_event, wait_for,
};

const QUIET: Duration = Duration::from_millis(1_500);
const WAIT: Duration = Duration::from_secs(10);

fn app_time_req(device_time: u32, token: u8, ans_required: bool) -> Vec<u8> {
    let m = Uplink::ClockSync(ClockSync::single(ClockSyncUp::AppTimeReq {
        device_time,
        token_req: token,
        ans_required,
    }));
    let mut buf = [0u8; 16];
    let n = m.encode(&mut buf).expect("encodes");
    buf[..n].to_vec()
}

fn gps_now() -> u32 {
    GpsTime::from_unix(Utc::now().timestamp()).expect("GPS").0
}

/// The clock answers a downlink carries.
fn answers(data: &[u8]) -> Vec<ClockSyncDown> {
    match decode_downlink(202, data).expect("decodes") {
        Downlink::ClockSync(c) => c.iter().copied().collect(),
        other => panic!("not a clock-sync downlink: {other:?}"),
    }
}

async fn command_state(store: &Store, id: uuid::Uuid) -> String {
    store.command(id).await.expect("command").state
}

async fn wait_state(store: &Store, id: uuid::Uuid, want: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let s = command_state(store, id).await;
        if s == want || start.elapsed() > WAIT {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reading uplink, each with a new deduplication id and frame counter.
async fn uplink(
    publisher: &mut Publisher,
    dev_eui: &str,
    serial: firmware_protocol::Serial,
    f_cnt: &mut u32,
) {
    *f_cnt += 1;
    let data = reading_frame(serial, Utc::now(), 1_000 + *f_cnt);
    let up = up_event(dev_eui, &uuid::Uuid::new_v4().to_string(), *f_cnt, 1, &data);
    publisher.publish(topic(dev_eui, "up"), up).await;
}

async fn clock_requests_get_exactly_one_answer(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(2).await;
    let (dev_eui, _) = &meters[0];
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-1").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-1").await;

    // Reference from the event's `time` (the sample's gateways have no GPS time): a device
    // 25 s behind gets +25 (± the second the event's time rounds to).
    let device_time = gps_now() - 25;
    let dedup = uuid::Uuid::new_v4().to_string();
    let up = up_event(
        dev_eui,
        &dedup,
        7,
        202,
        &app_time_req(device_time, 5, false),
    );
    publisher.publish(topic(dev_eui, "up"), up.clone()).await;
    let (t, down) = chirpstack.next(WAIT).await.expect("an answer");
    assert_eq!(
        t,
        format!("application/{APP}/device/{dev_eui}/command/down")
    );
    assert_eq!(down.dev_eui, *dev_eui, "lowercase DevEUI, as in the topic");
    assert_eq!(down.f_port, 202);
    assert!(!down.confirmed);
    assert_eq!(down.id, Some(answer_id(&dedup)));
    assert!(down.expires_at.is_some(), "a short expiresAt");
    match answers(&down.data.0)[..] {
        [
            ClockSyncDown::AppTimeAns {
                time_correction,
                token_ans,
            },
        ] => {
            assert!((24..=26).contains(&time_correction), "{time_correction}");
            assert_eq!(token_ans, 5);
        }
        ref other => panic!("{other:?}"),
    }
    // The same uplink again (a redelivery): no second answer.
    publisher.publish(topic(dev_eui, "up"), up).await;
    assert!(
        chirpstack.next(QUIET).await.is_none(),
        "a replay is not answered twice"
    );

    // A gateway's GPS time wins over the event's time.
    let mut v: serde_json::Value = serde_json::from_slice(&up_event(
        dev_eui,
        &uuid::Uuid::new_v4().to_string(),
        8,
        202,
        &app_time_req(1_400_000_000, 9, false),
    ))
    .expect("json");
    v["rxInfo"][1]["timeSinceGpsEpoch"] = json!("1400000100.250s");
    publisher
        .publish(topic(dev_eui, "up"), serde_json::to_vec(&v).expect("json"))
        .await;
    let (_, down) = chirpstack.next(WAIT).await.expect("an answer");
    assert_eq!(
        answers(&down.data.0),
        vec![ClockSyncDown::AppTimeAns {
            time_correction: 100,
            token_ans: 9
        }]
    );

    // Nothing to correct and no answer required: nothing sent.
    let mut v: serde_json::Value = serde_json::from_slice(&up_event(
        dev_eui,
        &uuid::Uuid::new_v4().to_string(),
        9,
        202,
        &app_time_req(1_400_000_100, 2, false),
    ))
    .expect("json");
    v["rxInfo"][0]["timeSinceGpsEpoch"] = json!("1400000100s");
    publisher
        .publish(topic(dev_eui, "up"), serde_json::to_vec(&v).expect("json"))
        .await;
    assert!(chirpstack.next(QUIET).await.is_none(), "no answer due");
    publisher.flush().await;

    // The answers are in the audit trail, under the ids they were sent with.
    let meter = env
        .store
        .meter_by_dev_eui(dev_eui)
        .await
        .expect("lookup")
        .expect("registered");
    let store = env.store.clone();
    let recorded = wait_for(WAIT, 2, || {
        let store = store.clone();
        async move {
            store
                .commands_for_meter(meter.id, 10)
                .await
                .expect("list")
                .iter()
                .filter(|c| c.kind == "appTimeAns")
                .count() as i64
        }
    })
    .await;
    assert_eq!(recorded, 2);
    let first = env
        .store
        .command(answer_id(&dedup))
        .await
        .expect("recorded");
    assert_eq!((first.fport, first.state.as_str()), (202, "queued"));
    server.stop().await;
}

/// A clock request is answered while the writer cannot commit: the bridge reads it off the
/// connection even with several batches of readings waiting unacknowledged before it. The
/// device has ~100 ms to get its answer; a commit can take that long, a stalled one longer.
#[tokio::test]
async fn clock_requests_are_answered_while_batches_wait_to_commit() {
    let Some(env) = Env::new(Dialect::Sqlite).await else {
        return;
    };
    let TestDb::Sqlite(db) = &env.db else {
        unreachable!("a SQLite environment");
    };
    const BATCH: usize = 10;
    let meters = env.register(3 * BATCH as u32 + 1).await;
    let mut settings = env.settings(&format!("dl-{}", uuid::Uuid::new_v4()));
    settings.ingest.batch_size = BATCH;
    settings.ingest.max_wait_ms = 20;
    let server = Server::start(settings).await;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-held").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-held").await;
    // The server is subscribed once a first uplink is stored.
    let (first, serial) = &meters[0];
    uplink(&mut publisher, first, *serial, &mut 0).await;
    publisher.flush().await;
    assert_eq!(wait_for(WAIT, 1, || readings(&env.store)).await, 1);

    // Another connection takes SQLite's write lock: from now on no batch commits, and no
    // reading is acknowledged to the broker.
    let mut lock = db.connect_options().connect().await.expect("a connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("take the write lock");
    // Three batches of readings: more than a receive maximum of two batches would let the
    // broker send before some are acknowledged.
    for (dev_eui, serial) in &meters[1..] {
        uplink(&mut publisher, dev_eui, *serial, &mut 0).await;
    }
    let dev_eui = &meters[0].0;
    let dedup = uuid::Uuid::new_v4().to_string();
    let request = up_event(
        dev_eui,
        &dedup,
        2,
        202,
        &app_time_req(gps_now() - 10, 3, false),
    );
    publisher.publish(topic(dev_eui, "up"), request).await;
    publisher.flush().await;
    let answer = chirpstack.next(WAIT).await;
    let stored_meanwhile = readings(&env.store).await;
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("release the write lock");

    let (_, down) = answer.expect("an answer while no batch could commit");
    assert_eq!(down.id, Some(answer_id(&dedup)));
    assert_eq!(stored_meanwhile, 1, "the writer was held up throughout");
    // And nothing was lost to the wait.
    let all = 3 * BATCH as i64 + 1;
    assert_eq!(wait_for(WAIT, all, || readings(&env.store)).await, all);
    server.stop().await;
}

/// Readings stored.
async fn readings(store: &Store) -> i64 {
    store.count_readings().await.expect("count")
}

async fn commands_wait_for_an_uplink_and_follow_chirpstacks_reports(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(1).await;
    let (dev_eui, serial) = meters[0].clone();
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let downlinks = server.app.as_ref().expect("running").downlinks();
    let store = env.store.clone();
    let meter_id = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("lookup")
        .expect("registered")
        .id;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-2").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-2").await;
    let mut f_cnt = 0;
    let request = |kind| CommandRequest {
        meter_id,
        kind,
        requested_by: "operator@utility".into(),
        expires_in: None,
    };

    // Queued in meterhub, not sent before the meter is heard.
    let close = downlinks
        .enqueue(request(CommandKind::ValveClose))
        .await
        .expect("enqueue");
    assert_eq!(close.state, "pending");
    assert!(
        chirpstack.next(QUIET).await.is_none(),
        "held until an uplink"
    );
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(close.id));
    assert!(down.confirmed, "a valve command is confirmed");
    assert_eq!(down.f_port, 10);
    assert_eq!(
        decode_downlink(10, &down.data.0).expect("decodes"),
        Downlink::Command(Command::ValveClose)
    );
    assert_eq!(down.expires_at.map(|t| t.0), Some(close.expires_at));
    assert_eq!(command_state(&store, close.id).await, "queued");
    let report =
        |kind: &str, body: serde_json::Value| (topic(&dev_eui, kind), event(&dev_eui, body));
    let (t, b) = report(
        "txack",
        json!({"downlinkId": 1, "queueItemId": close.id, "fCntDown": 3, "gatewayId": "0016c001ff1e5a7b", "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    assert_eq!(wait_state(&store, close.id, "sent").await, "sent");
    let (t, b) = report(
        "ack",
        json!({"deduplicationId": uuid::Uuid::new_v4(), "queueItemId": close.id, "acknowledged": true, "fCntDown": 3, "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    assert_eq!(
        wait_state(&store, close.id, "acknowledged").await,
        "acknowledged"
    );

    // Missed by the device: nacked.
    let open = downlinks
        .enqueue(request(CommandKind::ValveOpen))
        .await
        .expect("enqueue");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(open.id));
    for (kind, body) in [
        (
            "txack",
            json!({"queueItemId": open.id, "fCntDown": 4, "time": Utc::now()}),
        ),
        (
            "ack",
            json!({"queueItemId": open.id, "acknowledged": false, "fCntDown": 4, "time": Utc::now()}),
        ),
    ] {
        let (t, b) = report(kind, body);
        publisher.publish(t, b).await;
    }
    assert_eq!(wait_state(&store, open.id, "nacked").await, "nacked");

    // Dropped by ChirpStack after its expiry: expired.
    let read = downlinks
        .enqueue(request(CommandKind::ReadNow))
        .await
        .expect("enqueue");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(read.id));
    assert!(!down.confirmed, "a read changes nothing: unconfirmed");
    let (t, b) = report(
        "log",
        json!({"level": "ERROR", "code": "EXPIRED", "description": "expired", "context": {"queue_item_id": read.id.to_string()}, "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    assert_eq!(wait_state(&store, read.id, "expired").await, "expired");

    // A read that reaches the meter is completed by the reading it asks for.
    let read = downlinks
        .enqueue(request(CommandKind::ReadNow))
        .await
        .expect("enqueue");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(read.id));
    let (t, b) = report(
        "txack",
        json!({"queueItemId": read.id, "fCntDown": 6, "time": Utc::now()}),
    );
    publisher.publish(t, b).await;
    assert_eq!(wait_state(&store, read.id, "sent").await, "sent");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    assert_eq!(wait_state(&store, read.id, "completed").await, "completed");
    let done = store.command(read.id).await.expect("command");
    assert!(done.result.expect("result").contains("readingTime"));

    // With a valve command waiting, the clock answer goes out first, the command after it.
    let valve = downlinks
        .enqueue(request(CommandKind::ValveOpen))
        .await
        .expect("enqueue");
    let req = app_time_req(gps_now() - 100, 1, false);
    publisher
        .publish(
            topic(&dev_eui, "up"),
            up_event(&dev_eui, &uuid::Uuid::new_v4().to_string(), 99, 202, &req),
        )
        .await;
    let (_, first) = chirpstack.next(WAIT).await.expect("first downlink");
    let (_, second) = chirpstack.next(WAIT).await.expect("second downlink");
    assert_eq!(first.f_port, 202, "the clock answer first");
    assert_eq!(second.id, Some(valve.id));
    publisher.flush().await;
    server.stop().await;
}

/// Publishes a simulated meter's uplink.
async fn send(publisher: &mut Publisher, dev_eui: &str, f_port: u8, (f_cnt, m): (u32, Uplink)) {
    let up = up_event(
        dev_eui,
        &uuid::Uuid::new_v4().to_string(),
        f_cnt,
        f_port,
        &encode(&m),
    );
    publisher.publish(topic(dev_eui, "up"), up).await;
}

fn encode(m: &Uplink) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = m.encode(&mut buf).expect("encodes");
    buf[..n].to_vec()
}

/// A simulated meter whose clock runs two minutes ahead: its readings show the drift, the
/// server asks it to resynchronise, it sends AppTimeReq, the answer sets its clock right.
async fn a_drifting_meter_is_resynchronised(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let spec = meterhub_sim::fleet::FleetSpec {
        meters: 1,
        application_id: APP.into(),
        ..Default::default()
    };
    let start = Utc::now().timestamp();
    let mut meter = meterhub_sim::fleet::build(&spec, start - 86_400)
        .pop()
        .expect("one meter");
    meter.clock_offset = 120.0;
    meter.drift_ppm = 0.0;
    let dev_eui = meter.dev_eui_hex();
    env.store
        .register_meter(
            &meterhub::storage::meters::NewMeter {
                dev_eui: dev_eui.clone(),
                serial: meter.serial.to_string(),
                body_number: 1,
                user_id: "user-1".into(),
                application_id: APP.into(),
                region_id: "north".into(),
                usage_type: "residential".into(),
                mode: "credit".into(),
                production_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
                reporting_interval_minutes: 1440,
            },
            Utc::now(),
        )
        .await
        .expect("register");
    let meter_id = env
        .store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("lookup")
        .expect("registered")
        .id;
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-3").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-3").await;
    let store = env.store.clone();
    let now = || Utc::now().timestamp();

    send(&mut publisher, &dev_eui, 1, meter.reading(now())).await;
    let resync = wait_for(WAIT, 1, || {
        let store = store.clone();
        async move {
            store
                .commands_for_meter(meter_id, 10)
                .await
                .expect("list")
                .iter()
                .filter(|c| c.kind == "forceResync")
                .count() as i64
        }
    })
    .await;
    assert_eq!(resync, 1, "the drift asks for a resynchronisation");
    assert!(
        chirpstack.next(QUIET).await.is_none(),
        "held until the next uplink"
    );

    // Next uplink: the request goes out; the meter answers with AppTimeReq.
    send(&mut publisher, &dev_eui, 1, meter.reading(now())).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("the resync request");
    assert_eq!(down.f_port, 202);
    // ChirpStack transmits it in the receive window and says so.
    publisher
        .publish(
            topic(&dev_eui, "txack"),
            event(
                &dev_eui,
                json!({"queueItemId": down.id, "fCntDown": 1, "time": Utc::now()}),
            ),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let replies = meter.receive(down.f_port, &down.data.0, now());
    assert_eq!(replies, vec![meterhub_sim::meter::Reply::AppTimeReq]);
    send(&mut publisher, &dev_eui, 202, meter.app_time_req(now())).await;
    let (_, answer) = chirpstack.next(WAIT).await.expect("the clock answer");
    assert_eq!(answer.f_port, 202);
    meter.receive(answer.f_port, &answer.data.0, now());
    let off =
        i64::from(meter.meter_time(now()).0) - i64::from(GpsTime::from_unix(now()).expect("gps").0);
    assert!(
        off.abs() <= 1,
        "the meter's clock is {off} s off after the answer"
    );

    // The resynchronisation is complete, and the next reading shows no drift.
    send(&mut publisher, &dev_eui, 1, meter.reading(now())).await;
    publisher.flush().await;
    let commands = store.commands_for_meter(meter_id, 10).await.expect("list");
    let resync = commands
        .iter()
        .find(|c| c.kind == "forceResync")
        .expect("resync");
    assert_eq!(
        wait_state(&store, resync.id, "completed").await,
        "completed",
        "the AppTimeReq that followed completes it"
    );
    let store2 = store.clone();
    let dev = dev_eui.clone();
    let small = wait_for(WAIT, 1, || {
        let store = store2.clone();
        let dev = dev.clone();
        async move {
            let m = store.meter_by_dev_eui(&dev).await.expect("q").expect("m");
            i64::from(
                m.last_seen_at.is_some()
                    && matches!(drift_ms(&store, m.id).await, Some(d) if d.abs() <= 1_500),
            )
        }
    })
    .await;
    assert_eq!(
        small,
        1,
        "the recorded drift is back under the bound: {:?}",
        drift_ms(&store, meter_id).await
    );
    server.stop().await;
}

/// The drift recorded for a meter.
async fn drift_ms(store: &Store, meter_id: i64) -> Option<i64> {
    let sql = "SELECT clock_drift_ms FROM meters WHERE id = $1";
    match store {
        Store::Sqlite { reader, .. } => sqlx::query_scalar(sql)
            .bind(meter_id)
            .fetch_one(reader)
            .await
            .expect("drift"),
        Store::Postgres(pool) => sqlx::query_scalar(sql)
            .bind(meter_id)
            .fetch_one(pool)
            .await
            .expect("drift"),
    }
}

#[tokio::test]
async fn a_drifting_meter_is_resynchronised_sqlite() {
    a_drifting_meter_is_resynchronised(Dialect::Sqlite).await;
}

#[tokio::test]
async fn a_drifting_meter_is_resynchronised_postgres() {
    a_drifting_meter_is_resynchronised(Dialect::Postgres).await;
}

/// A self-test asked for on demand: its result completes it, a failed test raises an alarm,
/// and one never answered fails at its deadline.
async fn self_tests_complete_raise_alarms_or_time_out(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(1).await;
    let (dev_eui, serial) = meters[0].clone();
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let downlinks = server.app.as_ref().expect("running").downlinks();
    let store = env.store.clone();
    let meter_id = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("lookup")
        .expect("registered")
        .id;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-4").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-4").await;
    let mut f_cnt = 0;
    let request = CommandRequest {
        meter_id,
        kind: CommandKind::SelfTest { tests: 0b11 },
        requested_by: "operator".into(),
        expires_in: None,
    };
    let result = |failed: firmware_protocol::Tests| {
        encode(&Uplink::SelfTest(firmware_protocol::SelfTestResult {
            tests_run: firmware_protocol::Tests::BATTERY | firmware_protocol::Tests::VALVE,
            tests_failed: failed,
            meter_time: GpsTime::from_unix(Utc::now().timestamp()).expect("gps"),
            battery_loaded_millivolts: 3_300,
            battery_rest_millivolts: 3_500,
            valve_travel_ms: 2_000,
            metrology_deviation_centi_percent: 10,
            internal_temperature_centi_celsius: 2_000,
        }))
    };
    let txack = |id| {
        (
            topic(&dev_eui, "txack"),
            event(
                &dev_eui,
                json!({"queueItemId": id, "fCntDown": 1, "time": Utc::now()}),
            ),
        )
    };
    for failed in [
        firmware_protocol::Tests::empty(),
        firmware_protocol::Tests::VALVE,
    ] {
        let test = downlinks.enqueue(request.clone()).await.expect("enqueue");
        uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
        let (_, down) = chirpstack.next(WAIT).await.expect("released");
        assert_eq!(down.id, Some(test.id));
        let (t, b) = txack(test.id);
        publisher.publish(t, b).await;
        assert_eq!(wait_state(&store, test.id, "sent").await, "sent");
        f_cnt += 1;
        publisher
            .publish(
                topic(&dev_eui, "up"),
                up_event(
                    &dev_eui,
                    &uuid::Uuid::new_v4().to_string(),
                    f_cnt,
                    3,
                    &result(failed),
                ),
            )
            .await;
        assert_eq!(wait_state(&store, test.id, "completed").await, "completed");
    }
    let alarms = store.alarms(None, i64::MAX, 10).await.expect("alarms");
    let failed: Vec<_> = alarms
        .iter()
        .filter(|a| a.kind == "selfTestFailed")
        .collect();
    assert_eq!(failed.len(), 1, "only the failed test raises an alarm");
    assert_eq!(failed[0].detail.as_deref(), Some("failed: valve"));

    // Sent but never answered: failed once its deadline passes.
    let test = downlinks.enqueue(request.clone()).await.expect("enqueue");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    chirpstack.next(WAIT).await.expect("released");
    let (t, b) = txack(test.id);
    publisher.publish(t, b).await;
    assert_eq!(wait_state(&store, test.id, "sent").await, "sent");
    let deadline = store
        .command(test.id)
        .await
        .expect("c")
        .deadline_at
        .expect("deadline");
    assert!(deadline > Utc::now() + chrono::Duration::minutes(50));
    crate::monitoring::exec(
        &store,
        &format!(
            "UPDATE commands SET deadline_at = sent_at WHERE id = {}",
            match dialect {
                Dialect::Sqlite => format!("x'{}'", test.id.simple()),
                Dialect::Postgres => format!("'{}'", test.id),
            }
        ),
    )
    .await;
    assert_eq!(wait_state(&store, test.id, "failed").await, "failed");
    assert_eq!(
        store.command(test.id).await.expect("c").error.as_deref(),
        Some("no answer from the meter by the deadline")
    );
    publisher.flush().await;
    server.stop().await;
}

#[tokio::test]
async fn self_tests_complete_raise_alarms_or_time_out_sqlite() {
    self_tests_complete_raise_alarms_or_time_out(Dialect::Sqlite).await;
}

#[tokio::test]
async fn self_tests_complete_raise_alarms_or_time_out_postgres() {
    self_tests_complete_raise_alarms_or_time_out(Dialect::Postgres).await;
}

#[tokio::test]
async fn clock_requests_get_exactly_one_answer_sqlite() {
    clock_requests_get_exactly_one_answer(Dialect::Sqlite).await;
}

#[tokio::test]
async fn clock_requests_get_exactly_one_answer_postgres() {
    clock_requests_get_exactly_one_answer(Dialect::Postgres).await;
}

#[tokio::test]
async fn commands_wait_for_an_uplink_and_follow_chirpstacks_reports_sqlite() {
    commands_wait_for_an_uplink_and_follow_chirpstacks_reports(Dialect::Sqlite).await;
}

#[tokio::test]
async fn commands_wait_for_an_uplink_and_follow_chirpstacks_reports_postgres() {
    commands_wait_for_an_uplink_and_follow_chirpstacks_reports(Dialect::Postgres).await;
}

/// Fleet- and region-wide requests reach exactly the meters in scope; a valve command cannot
/// go to many meters at once.
async fn requests_for_many_meters_cover_their_scope(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(4).await;
    env.store
        .ensure_region("south", "South", Utc::now())
        .await
        .expect("region");
    crate::monitoring::exec(
        &env.store,
        &format!(
            "UPDATE meters SET region_id = 'south' WHERE dev_eui = '{}'",
            meters[3].0
        ),
    )
    .await;
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let downlinks = server.app.as_ref().expect("running").downlinks();
    let fleet = downlinks
        .enqueue_many(
            None,
            CommandKind::ClockPeriodicity { period: 9 },
            "operator",
            None,
        )
        .await
        .expect("fleet");
    assert_eq!(fleet.len(), 4);
    let north = downlinks
        .enqueue_many(
            Some("north"),
            CommandKind::ForceResync { transmissions: 1 },
            "operator",
            None,
        )
        .await
        .expect("region");
    assert_eq!(north.len(), 3);
    assert!(matches!(
        downlinks
            .enqueue_many(Some("north"), CommandKind::ValveClose, "operator", None)
            .await,
        Err(meterhub::downlink::EnqueueError::NotForRegion("valveClose"))
    ));
    assert!(matches!(
        downlinks
            .enqueue(CommandRequest {
                meter_id: 999_999,
                kind: CommandKind::ReadNow,
                requested_by: "operator".into(),
                expires_in: None,
            })
            .await,
        Err(meterhub::downlink::EnqueueError::UnknownMeter(999_999))
    ));
    server.stop().await;
}

#[tokio::test]
async fn requests_for_many_meters_cover_their_scope_sqlite() {
    requests_for_many_meters_cover_their_scope(Dialect::Sqlite).await;
}

#[tokio::test]
async fn requests_for_many_meters_cover_their_scope_postgres() {
    requests_for_many_meters_cover_their_scope(Dialect::Postgres).await;
}

/// A registry exported from elsewhere names another application than the one ChirpStack put
/// the meter in: the meter's first command still goes to the application its uplink came from
/// (ChirpStack drops a command on another application's topic without a word), and the
/// registry learns the right one.
async fn commands_go_to_the_application_the_uplink_came_from(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    const ASSIGNED: &str = "0b6c4e1a-9d2f-4a8b-8e3c-5f7a1d2b9c40";
    let (dev_eui, serial) = env.register(1).await[0].clone();
    let server = Server::start(env.settings(&format!("dl-{}", uuid::Uuid::new_v4()))).await;
    let downlinks = server.app.as_ref().expect("running").downlinks();
    let store = env.store.clone();
    let meter = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("lookup")
        .expect("registered");
    assert_eq!(meter.application_id, APP, "the registry's application");
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-app").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-app").await;
    let close = downlinks
        .enqueue(CommandRequest {
            meter_id: meter.id,
            kind: CommandKind::ValveClose,
            requested_by: "operator@utility".into(),
            expires_in: None,
        })
        .await
        .expect("enqueue");

    // The meter's first uplink, from the application ChirpStack assigned.
    let data = reading_frame(serial, Utc::now(), 1_001);
    let mut up: serde_json::Value = serde_json::from_slice(&up_event(
        &dev_eui,
        &uuid::Uuid::new_v4().to_string(),
        1,
        1,
        &data,
    ))
    .expect("json");
    up["deviceInfo"]["applicationId"] = json!(ASSIGNED);
    publisher
        .publish(
            format!("application/{ASSIGNED}/device/{dev_eui}/event/up"),
            serde_json::to_vec(&up).expect("json"),
        )
        .await;
    let (topic, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(close.id));
    assert_eq!(
        topic,
        format!("application/{ASSIGNED}/device/{dev_eui}/command/down")
    );
    let learned = wait_for(WAIT, 1, || {
        let store = store.clone();
        let dev_eui = dev_eui.clone();
        async move {
            let m = store.meter_by_dev_eui(&dev_eui).await.expect("lookup");
            i64::from(m.is_some_and(|m| m.application_id == ASSIGNED))
        }
    })
    .await;
    assert_eq!(
        learned, 1,
        "the registry took the application from the event"
    );
    publisher.flush().await;
    server.stop().await;
}

#[tokio::test]
async fn commands_go_to_the_application_the_uplink_came_from_sqlite() {
    commands_go_to_the_application_the_uplink_came_from(Dialect::Sqlite).await;
}

#[tokio::test]
async fn commands_go_to_the_application_the_uplink_came_from_postgres() {
    commands_go_to_the_application_the_uplink_came_from(Dialect::Postgres).await;
}

/// ChirpStack goes silent about commands it dropped: a rejoin flushes its queue (a valve
/// command is re-sent, a clock answer fails as obsolete), and a command with no `txack` after
/// the meter's next uplinks is lost (re-sent, then failed after its attempts). A dead command
/// does not hold the meter's next one back.
async fn commands_chirpstack_went_silent_about_are_resent_or_failed(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let (dev_eui, serial) = env.register(1).await[0].clone();
    let mut settings = env.settings(&format!("dl-{}", uuid::Uuid::new_v4()));
    settings.downlink.lost_after_uplinks = 2;
    settings.downlink.max_attempts = 2;
    let server = Server::start(settings).await;
    let app = server.app.as_ref().expect("running");
    let downlinks = app.downlinks();
    let metrics = app.metrics();
    let store = env.store.clone();
    let meter_id = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("lookup")
        .expect("registered")
        .id;
    let mut chirpstack = CommandListener::connect(&env.broker, "cs-down-lost").await;
    let mut publisher = Publisher::connect(&env.broker, "cs-up-lost").await;
    let mut f_cnt = 0;
    let request = |kind| CommandRequest {
        meter_id,
        kind,
        requested_by: "operator@utility".into(),
        expires_in: None,
    };

    // A clock answer and a valve command handed to ChirpStack, then the meter rejoins.
    let dedup = uuid::Uuid::new_v4().to_string();
    publisher
        .publish(
            topic(&dev_eui, "up"),
            up_event(
                &dev_eui,
                &dedup,
                1,
                202,
                &app_time_req(gps_now() - 20, 3, false),
            ),
        )
        .await;
    let (_, answer) = chirpstack.next(WAIT).await.expect("a clock answer");
    assert_eq!(answer.id, Some(answer_id(&dedup)));
    let recorded = wait_for(WAIT, 1, || {
        let store = store.clone();
        let dedup = dedup.clone();
        async move { i64::from(store.command(answer_id(&dedup)).await.is_ok()) }
    })
    .await;
    assert_eq!(recorded, 1, "the answer is in the audit trail");
    let close = downlinks
        .enqueue(request(CommandKind::ValveClose))
        .await
        .expect("enqueue");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, down) = chirpstack.next(WAIT).await.expect("released");
    assert_eq!(down.id, Some(close.id));
    assert_eq!(wait_state(&store, close.id, "queued").await, "queued");
    let read = downlinks
        .enqueue(request(CommandKind::ReadNow))
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_millis(20)).await;
    publisher
        .publish(
            topic(&dev_eui, "join"),
            event(
                &dev_eui,
                json!({"deduplicationId": uuid::Uuid::new_v4(), "time": Utc::now(), "devAddr": "01020304"}),
            ),
        )
        .await;
    assert_eq!(wait_state(&store, close.id, "pending").await, "pending");
    let requeued = store.command(close.id).await.expect("command");
    assert!(
        requeued
            .error
            .as_deref()
            .is_some_and(|e| e.contains("rejoined")),
        "{:?}",
        requeued.error
    );
    let obsolete = wait_state(&store, answer_id(&dedup), "failed").await;
    assert_eq!(obsolete, "failed", "a clock answer of the old session");
    let failed = store.command(answer_id(&dedup)).await.expect("command");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("obsolete"))
    );

    // Re-sent under the same id after the next uplink.
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, again) = chirpstack.next(WAIT).await.expect("re-sent");
    assert_eq!(again.id, Some(close.id));
    assert_eq!(wait_state(&store, close.id, "queued").await, "queued");

    // No txack after two uplinks: lost, and after two attempts failed; the read behind it
    // goes out with the uplink that decided it.
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    assert!(chirpstack.next(QUIET).await.is_none(), "still waiting");
    uplink(&mut publisher, &dev_eui, serial, &mut f_cnt).await;
    let (_, next) = chirpstack.next(WAIT).await.expect("the next command");
    assert_eq!(next.id, Some(read.id), "not held behind a dead command");
    assert_eq!(wait_state(&store, close.id, "failed").await, "failed");
    let lost = store.command(close.id).await.expect("command");
    assert!(
        lost.error
            .as_deref()
            .is_some_and(|e| e.contains("no txack")),
        "{:?}",
        lost.error
    );
    assert_eq!(lost.attempts, 2);
    // Counted once the dispatcher's pass ends, just after the next command went out.
    let counted = wait_for(WAIT, 3, || {
        let m = metrics.clone();
        async move { m.commands_lost.get() as i64 }
    })
    .await;
    assert_eq!(counted, 3, "rejoin, answer, lost");
    assert_eq!(metrics.clock_answers_missed.get(), 1);
    publisher.flush().await;
    server.stop().await;
}

#[tokio::test]
async fn commands_chirpstack_went_silent_about_are_resent_or_failed_sqlite() {
    commands_chirpstack_went_silent_about_are_resent_or_failed(Dialect::Sqlite).await;
}

#[tokio::test]
async fn commands_chirpstack_went_silent_about_are_resent_or_failed_postgres() {
    commands_chirpstack_went_silent_about_are_resent_or_failed(Dialect::Postgres).await;
}
