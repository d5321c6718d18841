//! Keeping ChirpStack's device list in step with the registry, against [`FakeChirpStack`]:
//! on both stores, the dry run's differences, a round applying them (each request checked by
//! the fake), a second round finding nothing to do, a refused change retried, a wrong token;
//! and `meterhub meters sync --dry-run` from the command line.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use meterhub::cache::{Changes, ResponseCache};
use meterhub::chirpstack::sync::{Options, round};
use meterhub::config::{ChirpStackApiSettings, Secret};
use meterhub::registry::lifecycle;
use meterhub::storage::Store;
use meterhub::storage::device_keys::OtaaKeys;
use meterhub::storage::lifecycle::{Actor, RetireOutcome};
use meterhub::storage::meters::NewMeter;
use test_support::{Dialect, TestDb};

use crate::fake::{APPLICATION, FakeChirpStack, PROFILE, TOKEN};

const OTHER_APPLICATION: &str = "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-07-23T12:00:00Z")
        .expect("time")
        .to_utc()
}

fn dev_eui(n: u32) -> String {
    format!("70b3d5e75e{n:06x}")
}

fn meter(n: u32, application_id: &str) -> NewMeter {
    NewMeter {
        dev_eui: dev_eui(n),
        serial: firmware_protocol::Serial::new(12, 26, 1, n)
            .expect("serial")
            .to_string(),
        body_number: i64::from(n),
        user_id: format!("user-{n}"),
        application_id: application_id.to_owned(),
        region_id: "north".to_owned(),
        usage_type: "residential".to_owned(),
        mode: "credit".to_owned(),
        production_date: NaiveDate::from_ymd_opt(2026, 3, 15).expect("date"),
        reporting_interval_minutes: 1440,
    }
}

fn keys(n: u32) -> OtaaKeys {
    OtaaKeys {
        join_eui: "70b3d57ed0000000".to_owned(),
        app_key: format!("{n:032x}"),
    }
}

fn settings(url: &str, token: &str) -> ChirpStackApiSettings {
    ChirpStackApiSettings {
        url: url.to_owned(),
        token: Secret(token.to_owned()),
        application_id: APPLICATION.to_owned(),
        device_profile_id: PROFILE.to_owned(),
    }
}

/// Fresh migrated stores: SQLite, and PostgreSQL when configured.
async fn stores() -> Vec<(TestDb, Store)> {
    let mut out = Vec::new();
    for dialect in Dialect::ALL {
        let Some(db) = TestDb::create(dialect).await else {
            continue;
        };
        let store = Store::connect(db.url(), 4).await.expect("connect");
        store.migrate(now()).await.expect("migrate");
        out.push((db, store));
    }
    out
}

/// The registry of the tests: meters 1–3 in service of the application with keys, 4 in
/// service without keys, 5 retired, 6 of another application, 7 retired and never in
/// ChirpStack. ChirpStack holds 3 (with another key), 5, 6 and a device of its own.
async fn populate(store: &Store, fake: &FakeChirpStack) {
    for n in 1..=7 {
        let app = if n == 6 {
            OTHER_APPLICATION
        } else {
            APPLICATION
        };
        store
            .register_meter(&meter(n, app), now())
            .await
            .expect("register");
        if n != 4 {
            assert!(
                store
                    .set_device_keys(&dev_eui(n), &keys(n), now())
                    .await
                    .expect("keys")
            );
        }
    }
    let changes = Changes::new(ResponseCache::new(1, Duration::ZERO), store.clone());
    for n in [5, 7] {
        let m = store
            .meter_by_dev_eui(&dev_eui(n))
            .await
            .expect("read")
            .expect("meter");
        let who = Actor {
            name: "test".into(),
            at: now(),
            reason: "renovation".into(),
        };
        lifecycle::retire(store, &changes, &m, RetireOutcome::Renovation, who)
            .await
            .expect("retired");
    }
    fake.add(&dev_eui(3), "meter 3", Some(&keys(99).app_key));
    fake.add(&dev_eui(5), "meter 5", Some(&keys(5).app_key));
    fake.add(&dev_eui(6), "meter 6", Some(&keys(6).app_key));
    fake.add("a0b1c2d3e4f50607", "someone else's sensor", None);
}

#[tokio::test]
async fn a_round_brings_chirpstack_in_step_and_the_next_finds_nothing_to_do() {
    for (_db, store) in stores().await {
        let fake = FakeChirpStack::start().await;
        populate(&store, &fake).await;
        let api = settings(&fake.url(), TOKEN);

        let dry = Options {
            apply: false,
            compare_keys: true,
        };
        let r = round(&store, &api, dry).await.expect("dry run");
        let lines: Vec<String> = r.differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                format!(
                    "missing in ChirpStack: {} (serial {})",
                    dev_eui(1),
                    meter(1, "").serial
                ),
                format!(
                    "missing in ChirpStack: {} (serial {})",
                    dev_eui(2),
                    meter(2, "").serial
                ),
                format!(
                    "key mismatch: {} (serial {}): ChirpStack's AppKey is not the registry's",
                    dev_eui(3),
                    meter(3, "").serial
                ),
                format!(
                    "missing in ChirpStack, no keys to create it: {} (serial {}); install it \
                     again with joinEui and appKey",
                    dev_eui(4),
                    meter(4, "").serial
                ),
                format!(
                    "extra in ChirpStack: {} (its meter is out of service)",
                    dev_eui(5)
                ),
                format!(
                    "extra in ChirpStack: {} (its meter is registered to application \
                     {OTHER_APPLICATION})",
                    dev_eui(6)
                ),
                "in ChirpStack, unknown to meterhub (left alone): a0b1c2d3e4f50607 (name \
                 \"someone else's sensor\")"
                    .to_owned(),
            ],
            "{:?}",
            store.dialect()
        );
        // A dry run only reads.
        assert_eq!(
            fake.take_calls(),
            ["List", &format!("GetKeys {}", dev_eui(3))]
        );

        let apply = Options {
            apply: true,
            compare_keys: true,
        };
        let r = round(&store, &api, apply).await.expect("round");
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!((r.created, r.deleted, r.keys_set), (2, 2, 1));
        assert_eq!(
            fake.dev_euis(),
            [
                dev_eui(1),
                dev_eui(2),
                dev_eui(3),
                "a0b1c2d3e4f50607".to_owned()
            ]
        );
        {
            let state = fake.lock();
            for n in 1..=3 {
                let d = &state.devices[&dev_eui(n)];
                assert_eq!(d.app_key.as_deref(), Some(keys(n).app_key.as_str()), "{n}");
            }
            let created = &state.devices[&dev_eui(1)];
            assert_eq!(created.join_eui, "70b3d57ed0000000");
            assert_eq!(created.name, meter(1, "").serial);
        }
        fake.take_calls();

        // In step: the next round, periodic (no key comparison), changes nothing.
        let periodic = Options {
            apply: true,
            compare_keys: false,
        };
        let r = round(&store, &api, periodic).await.expect("round");
        assert_eq!((r.created, r.deleted, r.keys_set), (0, 0, 0));
        assert!(
            r.differences.iter().all(|d| !d.is_applied()),
            "{:?}",
            r.differences
        );
        assert_eq!(
            r.unresolved(true),
            2,
            "meter 4 without keys, the foreign device"
        );
        assert_eq!(fake.take_calls(), ["List"]);

        // A meter retired later leaves ChirpStack at the next round.
        let m = store
            .meter_by_dev_eui(&dev_eui(2))
            .await
            .expect("read")
            .expect("meter");
        let changes = Changes::new(ResponseCache::new(1, Duration::ZERO), store.clone());
        let who = Actor {
            name: "test".into(),
            at: now(),
            reason: "destroyed".into(),
        };
        lifecycle::retire(&store, &changes, &m, RetireOutcome::Destruction, who)
            .await
            .expect("retired");
        let r = round(&store, &api, periodic).await.expect("round");
        assert_eq!(r.deleted, 1);
        assert!(!fake.dev_euis().contains(&dev_eui(2)));
        store.close().await;
    }
}

#[tokio::test]
async fn a_refused_change_is_reported_and_retried_by_the_next_round() {
    let (_db, store) = stores().await.into_iter().next().expect("SQLite");
    let fake = FakeChirpStack::start().await;
    for n in 1..=2 {
        store
            .register_meter(&meter(n, APPLICATION), now())
            .await
            .expect("register");
        store
            .set_device_keys(&dev_eui(n), &keys(n), now())
            .await
            .expect("keys");
    }
    fake.lock().refuse.insert(dev_eui(1));
    let api = settings(&fake.url(), TOKEN);
    let options = Options {
        apply: true,
        compare_keys: false,
    };
    let r = round(&store, &api, options).await.expect("round");
    assert_eq!(r.created, 1);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert_eq!(r.failures[0].0, dev_eui(1));
    assert!(
        r.failures[0].1.contains("refused by the test"),
        "{:?}",
        r.failures
    );
    assert_eq!(r.unresolved(true), 1);
    fake.lock().refuse.clear();
    let r = round(&store, &api, options).await.expect("round");
    assert_eq!((r.created, r.failures.len()), (1, 0));
    assert_eq!(fake.dev_euis(), [dev_eui(1), dev_eui(2)]);
}

#[tokio::test]
async fn a_wrong_token_fails_the_round_with_chirpstacks_answer() {
    let (_db, store) = stores().await.into_iter().next().expect("SQLite");
    let fake = FakeChirpStack::start().await;
    let api = settings(&fake.url(), "not-the-token");
    let options = Options {
        apply: true,
        compare_keys: false,
    };
    let e = round(&store, &api, options).await.expect_err("refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("listing the devices of application"),
        "{text}"
    );
    assert!(text.contains("bad API token"), "{text}");
    assert!(
        !text.contains("not-the-token"),
        "the token is never printed: {text}"
    );
}

#[tokio::test]
async fn meters_sync_dry_run_lists_the_differences_and_changes_nothing() {
    let fake = FakeChirpStack::start().await;
    let db = test_support::SqliteDb::create().await;
    let store = Store::connect(db.url(), 2).await.expect("connect");
    store.migrate(now()).await.expect("migrate");
    populate(&store, &fake).await;
    store.close().await;
    let held = fake.dev_euis();
    let (db_url, api_url) = (db.url().to_owned(), fake.url());
    let run = move |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meterhub"))
            .args(args)
            .env("METERHUB_DATABASE__URL", &db_url)
            .env("METERHUB_CHIRPSTACK__API_URL", &api_url)
            .env("METERHUB_CHIRPSTACK__API_TOKEN", TOKEN)
            .env("METERHUB_CHIRPSTACK__APPLICATION_ID", APPLICATION)
            .env("METERHUB_CHIRPSTACK__DEVICE_PROFILE_ID", PROFILE)
            .output()
            .expect("run meterhub")
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["meters", "sync", "--dry-run"])
    })
    .await
    .expect("ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        format!("missing in ChirpStack: {}", dev_eui(1)),
        format!("key mismatch: {}", dev_eui(3)),
        format!(
            "missing in ChirpStack, no keys to create it: {}",
            dev_eui(4)
        ),
        format!(
            "extra in ChirpStack: {} (its meter is out of service)",
            dev_eui(5)
        ),
        "in ChirpStack, unknown to meterhub (left alone): a0b1c2d3e4f50607".to_owned(),
        "7 differences; nothing changed (dry run)".to_owned(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in\n{stdout}");
    }
    assert!(
        !stdout.contains(&keys(3).app_key),
        "no key printed:\n{stdout}"
    );
    assert_eq!(fake.dev_euis(), held, "a dry run changes nothing");

    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["meters", "sync"])
    })
    .await
    .expect("ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("7 differences: 2 devices created, 2 deleted, 1 given keys, 0 failed, 2 left as they are"),
        "{stdout}"
    );
    assert_eq!(
        fake.dev_euis(),
        [
            dev_eui(1),
            dev_eui(2),
            dev_eui(3),
            "a0b1c2d3e4f50607".to_owned()
        ]
    );

    // A retirement from the command line reaches ChirpStack at once.
    let meter = dev_eui(1);
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "meters",
            "retire",
            &meter,
            "--outcome",
            "destruction",
            "--reason",
            "burnt",
        ])
    })
    .await
    .expect("ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ChirpStack: 0 devices created, 1 deleted"),
        "{stderr}"
    );
    assert_eq!(
        fake.dev_euis(),
        [dev_eui(2), dev_eui(3), "a0b1c2d3e4f50607".to_owned()]
    );
}
