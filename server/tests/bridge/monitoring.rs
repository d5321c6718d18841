//! Monitoring end to end: silence, rules, schedules and alarm delivery.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use meterhub::config::Settings;
use meterhub::storage::Store;
use meterhub::storage::schedules::{ScheduleSpec, Scope};
use serde_json::Value;
use test_support::Dialect;
use warp::Filter;

use crate::support::{Env, Publisher, Server, reading_frame, topic, up_event, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// A webhook receiver that refuses (503) until told to accept.
struct Receiver {
    addr: SocketAddr,
    accept: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let accept = Arc::new(AtomicBool::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (accept.clone(), bodies.clone());
        let route = warp::post()
            .and(warp::body::json())
            .map(move |body: Value| {
                if a.load(Ordering::SeqCst) {
                    b.lock().expect("lock").push(body);
                    warp::http::StatusCode::NO_CONTENT
                } else {
                    warp::http::StatusCode::SERVICE_UNAVAILABLE
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Receiver {
            addr,
            accept,
            bodies,
        }
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|b| b["kind"].as_str().map(str::to_owned))
            .collect()
    }
}

fn settings(env: &Env, webhook: Option<SocketAddr>) -> Settings {
    let mut s = env.settings(&format!("mon-{}", uuid::Uuid::new_v4()));
    s.monitor.webhook_url = webhook.map(|a| format!("http://{a}/alarms"));
    s
}

/// Runs SQL on the test database (to move a meter's overdue time into the past instead of
/// waiting for it).
pub async fn exec(store: &Store, sql: &str) {
    match store {
        Store::Sqlite { writer, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(writer)
                .await
                .expect("sql");
        }
        Store::Postgres(pool) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .expect("sql");
        }
    }
}

async fn alarm_states(store: &Store, kind: &str) -> Vec<(String, i32)> {
    store
        .alarms(None, i64::MAX, 100)
        .await
        .expect("alarms")
        .into_iter()
        .filter(|a| a.kind == kind)
        .map(|a| (a.state, a.occurrences))
        .collect()
}

async fn silence_and_over_consumption_raise_alarms_that_reach_the_webhook(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(2).await;
    let (dev_eui, serial) = meters[0].clone();
    let receiver = Receiver::start().await;
    let server = Server::start(settings(&env, Some(receiver.addr))).await;
    let mut publisher = Publisher::connect(&env.broker, "cs-mon-1").await;
    let store = env.store.clone();

    // Six daily readings: 100 l a day, then 1 000 l in a day.
    let start = Utc::now() - chrono::Duration::days(7);
    let mut litres = 10_000;
    for day in 0..7 {
        litres += if day == 6 { 1_000 } else { 100 };
        let at = start + chrono::Duration::days(day);
        let data = reading_frame(serial, at, litres);
        publisher
            .publish(
                topic(&dev_eui, "up"),
                up_event(
                    &dev_eui,
                    &uuid::Uuid::new_v4().to_string(),
                    day as u32,
                    1,
                    &data,
                ),
            )
            .await;
        // One at a time: the rule reads the state the previous reading left.
        publisher.flush().await;
        let s = store.clone();
        wait_for(WAIT, day + 1, || {
            let s = s.clone();
            async move { s.count_readings().await.expect("count") }
        })
        .await;
    }
    assert_eq!(
        alarm_states(&store, "overConsumption").await,
        vec![("open".to_owned(), 1)]
    );

    // The meter falls silent: its overdue time passes.
    exec(
        &store,
        &format!("UPDATE meters SET overdue_at = last_seen_at WHERE dev_eui = '{dev_eui}'"),
    )
    .await;
    let s = store.clone();
    let raised = wait_for(WAIT, 1, || {
        let s = s.clone();
        async move { alarm_states(&s, "noConnection").await.len() as i64 }
    })
    .await;
    assert_eq!(raised, 1, "one silence alarm");
    let meter = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("q")
        .expect("m");
    assert_eq!(meter.status, "silent");
    // The other meter was never heard and has no overdue time: no alarm for it.
    assert_eq!(alarm_states(&store, "noConnection").await.len(), 1);

    // Delivery fails while the receiver refuses; a restart in between loses nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.kinds().is_empty());
    server.stop().await;
    receiver.accept.store(true, Ordering::SeqCst);
    let server = Server::start(settings(&env, Some(receiver.addr))).await;
    let delivered = wait_for(WAIT, 2, || {
        let n = receiver.kinds().len() as i64;
        async move { n }
    })
    .await;
    assert_eq!(delivered, 2, "{:?}", receiver.kinds());
    assert_eq!(
        receiver.kinds(),
        BTreeSet::from(["noConnection".to_owned(), "overConsumption".to_owned()])
    );
    let body = receiver.bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["devEui"], dev_eui);
    assert_eq!(body["serial"], serial.to_string());

    // Heard again: the silence alarm clears and the meter is active.
    let data = reading_frame(serial, Utc::now(), litres + 100);
    publisher
        .publish(
            topic(&dev_eui, "up"),
            up_event(&dev_eui, &uuid::Uuid::new_v4().to_string(), 50, 1, &data),
        )
        .await;
    publisher.flush().await;
    let s = store.clone();
    let cleared = wait_for(WAIT, 1, || {
        let s = s.clone();
        async move {
            alarm_states(&s, "noConnection")
                .await
                .iter()
                .filter(|(state, _)| state == "cleared")
                .count() as i64
        }
    })
    .await;
    assert_eq!(cleared, 1);
    let meter = store
        .meter_by_dev_eui(&dev_eui)
        .await
        .expect("q")
        .expect("m");
    assert_eq!(meter.status, "active");
    server.stop().await;
}

#[tokio::test]
async fn silence_and_over_consumption_raise_alarms_that_reach_the_webhook_sqlite() {
    silence_and_over_consumption_raise_alarms_that_reach_the_webhook(Dialect::Sqlite).await;
}

#[tokio::test]
async fn silence_and_over_consumption_raise_alarms_that_reach_the_webhook_postgres() {
    silence_and_over_consumption_raise_alarms_that_reach_the_webhook(Dialect::Postgres).await;
}

/// Two instances on one PostgreSQL database: a region's schedule creates one self-test
/// command per meter of the region, once.
#[tokio::test]
async fn a_schedule_runs_once_across_two_instances() {
    let Some(env) = Env::new(Dialect::Postgres).await else {
        return;
    };
    let meters = env.register(6).await;
    // Meters 4–6 move to another region.
    env.store
        .ensure_region("south", "South", Utc::now())
        .await
        .expect("region");
    for (dev_eui, _) in &meters[3..] {
        exec(
            &env.store,
            &format!("UPDATE meters SET region_id = 'south' WHERE dev_eui = '{dev_eui}'"),
        )
        .await;
    }
    let schedule = env
        .store
        .create_schedule(
            &ScheduleSpec {
                scope: Scope::Region {
                    region_id: "north".into(),
                },
                tests: 0b11,
                interval_minutes: 60,
                next_run_at: Utc::now(),
                enabled: true,
            },
            "operator",
            Utc::now(),
        )
        .await
        .expect("schedule");
    let a = Server::start(settings(&env, None)).await;
    let b = Server::start(settings(&env, None)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut per_meter = std::collections::BTreeMap::new();
    for (dev_eui, _) in &meters {
        let m = env
            .store
            .meter_by_dev_eui(dev_eui)
            .await
            .expect("q")
            .expect("m");
        let n = env
            .store
            .commands_for_meter(m.id, 100)
            .await
            .expect("list")
            .iter()
            .filter(|c| c.kind == "selfTest" && c.schedule_id == Some(schedule.id))
            .count();
        per_meter.insert(dev_eui.clone(), n);
    }
    let expected: std::collections::BTreeMap<_, _> = meters
        .iter()
        .enumerate()
        .map(|(i, (d, _))| (d.clone(), usize::from(i < 3)))
        .collect();
    assert_eq!(per_meter, expected);
    let after = env.store.schedule(schedule.id).await.expect("schedule");
    assert!(after.next_run_at > Utc::now() + chrono::Duration::minutes(55));
    a.stop().await;
    b.stop().await;
}

/// ChirpStack's frame-counter logs mean it discards the meter's uplinks: a distinct alarm,
/// and the silence that follows is not reported as a lost connection.
async fn frame_counter_logs_are_not_mistaken_for_silence(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let meters = env.register(1).await;
    let (dev_eui, serial) = meters[0].clone();
    let server = Server::start(settings(&env, None)).await;
    let mut publisher = Publisher::connect(&env.broker, "cs-mon-3").await;
    let store = env.store.clone();
    let data = reading_frame(serial, Utc::now(), 5_000);
    publisher
        .publish(
            topic(&dev_eui, "up"),
            up_event(&dev_eui, &uuid::Uuid::new_v4().to_string(), 10, 1, &data),
        )
        .await;
    let log = serde_json::json!({
        "time": Utc::now(),
        "level": "WARNING",
        "code": "UPLINK_F_CNT_RESET",
        "description": "Frame-counter reset or rollover detected",
        "context": {"deduplication_id": uuid::Uuid::new_v4().to_string()},
    });
    publisher
        .publish(topic(&dev_eui, "log"), crate::support::event(&dev_eui, log))
        .await;
    publisher.flush().await;
    let s = store.clone();
    let raised = wait_for(WAIT, 1, || {
        let s = s.clone();
        async move { alarm_states(&s, "frameCounterReset").await.len() as i64 }
    })
    .await;
    assert_eq!(raised, 1);
    exec(
        &store,
        &format!("UPDATE meters SET overdue_at = last_seen_at WHERE dev_eui = '{dev_eui}'"),
    )
    .await;
    let s = store.clone();
    let dev = dev_eui.clone();
    let silent = wait_for(WAIT, 1, || {
        let s = s.clone();
        let dev = dev.clone();
        async move {
            let m = s.meter_by_dev_eui(&dev).await.expect("q").expect("m");
            i64::from(m.status == "silent")
        }
    })
    .await;
    assert_eq!(silent, 1, "marked silent");
    assert!(
        alarm_states(&store, "noConnection").await.is_empty(),
        "no lost-connection alarm while ChirpStack discards the meter's uplinks"
    );
    server.stop().await;
}

#[tokio::test]
async fn frame_counter_logs_are_not_mistaken_for_silence_sqlite() {
    frame_counter_logs_are_not_mistaken_for_silence(Dialect::Sqlite).await;
}

#[tokio::test]
async fn frame_counter_logs_are_not_mistaken_for_silence_postgres() {
    frame_counter_logs_are_not_mistaken_for_silence(Dialect::Postgres).await;
}
