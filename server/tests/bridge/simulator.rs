use std::time::{Duration, SystemTime};

use chrono::DateTime;
use firmware_protocol::clock::Clock;
use meterhub::registry::import::{Event, import_reader};
use meterhub::time::now_utc;
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::runner::{RunSpec, run};
use test_support::Dialect;
use tokio_util::sync::CancellationToken;

use crate::support::{Env, Server, wait_while_moving};

const DAYS: i64 = 30;

/// 1 000 simulated meters for 30 simulated days, with every fault on, published into
/// `meterhub serve` over a private broker into the store: the database ends up holding, meter by
/// meter, exactly the readings the simulator reports the server must store — each delivered
/// reading once however often it was published, none that was lost, discarded by
/// ChirpStack's frame-counter check, garbled, of a bad serial or of an unregistered meter.
async fn the_database_holds_exactly_the_readings_a_faulty_fleet_delivered(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let spec = FleetSpec {
        meters: 1_000,
        seed: 2_026,
        unregistered_share: 0.02,
        faults: Faults {
            loss: 0.02,
            duplicate: 0.03,
            second_path: 0.03,
            reorder: 0.02,
            garble: 0.01,
            bad_serial_share: 0.02,
            silence: 0.005,
            silence_max_seconds: 3 * 86_400,
            clock_jump: 0.02,
            clock_jump_max_seconds: 3_600,
            f_cnt_reset: 0.002,
            retransmission: 0.01,
            skip_f_cnt_check: false,
        },
        ..FleetSpec::default()
    };
    // The server reads the same clock, so its storage window agrees with the meters' time.
    // Two simulated days a second; the clock is held once the fleet is done (below).
    let (clock, start, server) = serve_fleet(&env, &spec, 172_800, "meterhub-e2e-server").await;

    let report = run(
        RunSpec {
            fleet: spec,
            host: env.broker.host().to_owned(),
            port: env.broker.port(),
            client_id: "meterhub-sim-e2e".into(),
            duration: Some(DAYS * 86_400),
        },
        clock.clone(),
        CancellationToken::new(),
        |_| {},
    )
    .await
    .expect("the fleet runs");
    // The server quarantines readings more than 400 simulated days older than its clock: on a
    // loaded machine its backlog could otherwise age out while the test waits for it.
    clock.hold();

    // Every fault happened, and readings were both stored and held back by them.
    let f = report.faults;
    for (name, n) in [
        ("lost", f.lost),
        ("silences", f.silences),
        ("discarded", f.discarded),
        ("garbled", f.garbled),
        ("bad serial", f.bad_serial),
        ("clock jumps", f.clock_jumps),
        ("fCnt resets", f.f_cnt_resets),
        ("duplicates", f.duplicates),
        ("second paths", f.second_paths),
        ("reordered", f.reordered),
        ("retransmissions", f.retransmissions),
    ] {
        assert!(n > 0, "no {name} in {f:?}");
    }
    assert!(report.readings > 29_000, "{report:?}");
    assert!(
        report.registered_readings < report.readings - 1_000,
        "faults kept readings from the server: {} of {}",
        report.registered_readings,
        report.readings
    );
    assert!(
        report.published > report.uplinks,
        "duplicates were published"
    );
    assert_eq!(
        report.acknowledged, report.published,
        "the broker took every message"
    );

    let expected = i64::try_from(report.registered_readings).expect("fits");
    let store = env.store.clone();
    let stored = wait_while_moving(Duration::from_secs(120), expected, || {
        let store = store.clone();
        async move { read(|| store.count_readings()).await }
    })
    .await;
    // Give a wrongly stored extra reading the chance to show up before comparing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored_after = read(|| env.store.count_readings()).await;
    assert_eq!((stored, stored_after), (expected, expected));

    // The run began when the runner started (simulated days after `start` at this speed):
    // every reading lies between then and now, give or take the meters' clocks.
    let from = DateTime::from_timestamp(start - 2 * 86_400, 0).expect("time");
    let to = now_utc(&clock) + chrono::Duration::days(2);
    for (index, want) in report.expected_by_meter.iter().enumerate() {
        let dev_eui = format!("70b3d57e{index:08x}");
        let got = match read(|| env.store.meter_by_dev_eui(&dev_eui)).await {
            Some(meter) => read(|| env.store.readings_for_meter(meter.id, from, to, 1_000))
                .await
                .len(),
            None => 0,
        };
        assert_eq!(got, *want as usize, "meter {dev_eui}");
    }
    server.stop().await;
}

/// Simulated meters that detect tampering (a magnet, movement, a cut cable) raise their alarms
/// through the simulator into `meterhub serve`: every tamper alarm the simulator reports as
/// delivered is stored as an open meter alarm of its kind, repeats of an open alarm counted in
/// its occurrences.
async fn tamper_alarms_raised_by_simulated_meters_are_stored(dialect: Dialect) {
    let Some(env) = Env::new(dialect).await else {
        return;
    };
    let spec = FleetSpec {
        meters: 40,
        seed: 12,
        reporting_interval_minutes: 60,
        tamper: 0.05,
        ..FleetSpec::default()
    };
    let (clock, _, server) = serve_fleet(&env, &spec, 86_400, "meterhub-tamper-server").await;

    let report = run(
        RunSpec {
            fleet: spec,
            host: env.broker.host().to_owned(),
            port: env.broker.port(),
            client_id: "meterhub-sim-tamper".into(),
            duration: Some(3 * 86_400),
        },
        clock.clone(),
        CancellationToken::new(),
        |_| {},
    )
    .await
    .expect("the fleet runs");
    clock.hold();
    assert!(report.tamper_alarms > 10, "{report:?}");
    assert_eq!(report.expected_tamper_alarms, report.tamper_alarms);

    let kinds = ["magneticTamper", "movement", "cableCut"];
    let store = env.store.clone();
    let occurrences = move || {
        let store = store.clone();
        async move {
            let mut total = 0;
            for kind in kinds {
                let filter = meterhub::storage::listings::AlarmFilter {
                    kind: Some(kind.to_owned()),
                    ..Default::default()
                };
                let alarms = read(|| store.alarms_filtered(&filter, i64::MAX, 1_000)).await;
                total += alarms.iter().map(|a| i64::from(a.occurrences)).sum::<i64>();
            }
            total
        }
    };
    let want = i64::try_from(report.expected_tamper_alarms).expect("fits");
    let stored = wait_while_moving(Duration::from_secs(60), want, occurrences.clone()).await;
    assert_eq!(stored, want, "tamper alarm occurrences stored");
    for kind in kinds {
        let filter = meterhub::storage::listings::AlarmFilter {
            kind: Some(kind.to_owned()),
            ..Default::default()
        };
        let alarms = read(|| env.store.alarms_filtered(&filter, i64::MAX, 1_000)).await;
        assert!(!alarms.is_empty(), "no {kind} alarm stored");
        for a in alarms {
            assert_eq!((a.source.as_str(), a.state.as_str()), ("meter", "open"));
        }
    }
    server.stop().await;
}

/// Imports the registry of `spec` and starts `meterhub serve` as `client_id` on a paced clock
/// running at `speed`, which the simulator must then run on too (the server's storage window
/// then agrees with the meters' time, and holding the clock holds it for both). Returns the
/// clock, the simulated time at which it started, and the server.
async fn serve_fleet(
    env: &Env,
    spec: &FleetSpec,
    speed: u32,
    client_id: &str,
) -> (Clock, i64, Server) {
    let clock = Clock::paced(speed, SystemTime::now()).expect("speed");
    let start = clock.now_unix();
    let registry = fleet::registry_csv(spec, &fleet::build(spec, start));
    let mut errors = Vec::new();
    let imported = import_reader(
        &env.store,
        std::io::Cursor::new(registry.into_bytes()),
        now_utc(&clock),
        |e| {
            if let Event::Refused(e) = e {
                errors.push(e.to_string());
            }
        },
    )
    .await
    .expect("import");
    assert_eq!(imported.refused, 0, "{errors:?}");
    let settings = env.settings(client_id);
    (
        clock.clone(),
        start,
        Server::start_on(settings, clock).await,
    )
}

/// A read of the store, retried while the database refuses it transiently, as the server
/// retries its own: on PostgreSQL a reader of `readings` can be picked as a deadlock victim
/// while the server adds a month's partition, which the accelerated clock makes it do every
/// few wall seconds.
async fn read<T, F, Fut>(mut query: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = meterhub::storage::Result<T>>,
{
    let mut attempts = 0;
    loop {
        match query().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reading the store: {e:#}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_fleet_leaves_exactly_its_delivered_readings_in_sqlite() {
    the_database_holds_exactly_the_readings_a_faulty_fleet_delivered(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_fleet_leaves_exactly_its_delivered_readings_in_postgres() {
    the_database_holds_exactly_the_readings_a_faulty_fleet_delivered(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_alarms_from_simulated_meters_are_stored_in_sqlite() {
    tamper_alarms_raised_by_simulated_meters_are_stored(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_alarms_from_simulated_meters_are_stored_in_postgres() {
    tamper_alarms_raised_by_simulated_meters_are_stored(Dialect::Postgres).await;
}
