use chrono::Duration;
use meterhub::storage::alarms::NewAlarm;
use meterhub::storage::commands::CommandRow;
use meterhub::storage::identities::EventIdentity;
use meterhub::storage::inspections::NewInspection;
use meterhub::storage::quarantine::NewQuarantined;
use meterhub::storage::readings::StoredReading;
use meterhub::storage::{Error, Store};
use uuid::Uuid;

use crate::{at, meter, now, stores};

async fn one_meter(s: &Store) -> i64 {
    s.register_meter(&meter(1), now()).await.expect("insert");
    s.meter_by_dev_eui(&meter(1).dev_eui)
        .await
        .expect("q")
        .expect("m")
        .id
}

fn reading(meter_id: i64, day: i64) -> StoredReading {
    StoredReading {
        meter_id,
        reading_time: at("2026-01-01T00:00:00Z") + Duration::days(day),
        received_at: now(),
        gas_volume_litres: Some(1_000 * day),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: Some(-512),
        gas_pressure_pa: Some(2_100),
        valve: 1,
        door: 0,
        battery_millivolts: 3600,
        battery_percent: 87,
        flags: 0,
        f_cnt: Some(day),
    }
}

#[tokio::test]
async fn readings_are_stored_once_however_often_they_arrive() {
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        let first: Vec<_> = (0..150).map(|d| reading(id, d)).collect();
        assert_eq!(s.insert_readings(&first).await.expect("insert"), 150);
        assert_eq!(s.insert_readings(&first).await.expect("replay"), 0);
        let overlapping: Vec<_> = (100..200).map(|d| reading(id, d)).collect();
        assert_eq!(s.insert_readings(&overlapping).await.expect("overlap"), 50);
        assert_eq!(s.count_readings().await.expect("count"), 200);
        let range = s
            .readings_for_meter(
                id,
                at("2026-01-11T00:00:00Z"),
                at("2026-01-14T00:00:00Z"),
                100,
            )
            .await
            .expect("range");
        assert_eq!(range, (10..13).map(|d| reading(id, d)).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_large_batch_is_split_across_statements() {
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        // More rows than one statement may bind, all on one meter: minutes apart.
        let rows: Vec<_> = (0..5_000)
            .map(|i| StoredReading {
                reading_time: at("2026-07-01T00:00:00Z") + Duration::minutes(i),
                ..reading(id, 0)
            })
            .collect();
        assert_eq!(s.insert_readings(&rows).await.expect("insert"), 5_000);
    }
}

#[tokio::test]
async fn a_reading_for_an_unknown_meter_is_refused_by_the_database() {
    for f in stores().await {
        let err = f
            .store
            .insert_readings(&[reading(999_999, 0)])
            .await
            .expect_err("foreign key");
        assert!(
            matches!(err, Error::Db(_)) && !err.is_transient(),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn identities_report_only_new_events_and_are_pruned_by_age() {
    for f in stores().await {
        let s = &f.store;
        let id = |e: &str, t: &str| EventIdentity {
            event_id: e.into(),
            event_type: t.into(),
        };
        let batch = [
            id("a", "up"),
            id("a", "status"),
            id("b", "up"),
            id("e", "up"),
            id("f", "up"),
        ];
        let new = s
            .record_identities(&batch, at("2026-07-01T00:00:00Z"))
            .await
            .expect("record");
        assert_eq!(new.len(), 5);
        let again = [id("a", "up"), id("c", "up")];
        let new = s.record_identities(&again, now()).await.expect("record");
        assert_eq!(new.into_iter().collect::<Vec<_>>(), [id("c", "up")]);
        // In chunks of two: three statements, every old identity gone, the new one kept.
        assert_eq!(
            s.prune_identities(at("2026-07-10T00:00:00Z"), 2)
                .await
                .expect("prune"),
            5
        );
        let kept = s
            .record_identities(&[id("c", "up")], now())
            .await
            .expect("record");
        assert!(kept.is_empty(), "a recent identity is kept");
        let new = s
            .record_identities(&[id("a", "up")], now())
            .await
            .expect("record");
        assert_eq!(new.len(), 1, "a pruned identity is new again");
        let twice = [id("d", "up"), id("d", "up")];
        let new = s.record_identities(&twice, now()).await.expect("record");
        assert_eq!(new.into_iter().collect::<Vec<_>>(), [id("d", "up")]);
    }
}

#[tokio::test]
async fn quarantine_keeps_a_redelivered_message_once() {
    for f in stores().await {
        let s = &f.store;
        let q = |payload: &[u8], reason: &str| NewQuarantined {
            received_at: now(),
            topic: "application/x/device/y/event/up".into(),
            payload: payload.to_vec(),
            reason: reason.into(),
            detail: "expected value at line 1 column 1".into(),
            dev_eui: None,
        };
        let batch = [
            q(b"{not json", "malformed_json"),
            q(b"\x00\x01", "undecodable"),
        ];
        assert_eq!(s.quarantine(&batch).await.expect("insert"), 2);
        assert_eq!(s.quarantine(&batch[..1]).await.expect("again"), 0);
        let listed = s
            .quarantined(Some("malformed_json"), i64::MAX, 10)
            .await
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].payload, b"{not json");
        assert_eq!(
            s.quarantined(None, i64::MAX, 10).await.expect("list").len(),
            2
        );
    }
}

#[tokio::test]
async fn alarms_are_stored_once_then_acknowledged_and_cleared() {
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        let alarm = NewAlarm {
            meter_id: id,
            kind: "magneticTamper".into(),
            source: "meter".into(),
            raised_at: at("2026-07-23T03:00:00Z"),
            value: Some(3),
            received_at: now(),
            detail: None,
        };
        assert_eq!(
            s.insert_alarms(&[alarm.clone(), alarm.clone()])
                .await
                .expect("insert"),
            1
        );
        // Raised again later while open: one alarm, two occurrences.
        let again = NewAlarm {
            raised_at: at("2026-07-23T05:00:00Z"),
            ..alarm.clone()
        };
        assert_eq!(s.insert_alarms(&[again]).await.expect("insert"), 0);
        let open = s.alarms(Some("open"), i64::MAX, 10).await.expect("list");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].occurrences, 2);
        assert_eq!(open[0].last_raised_at, Some(at("2026-07-23T05:00:00Z")));
        s.acknowledge_alarm(open[0].id, "operator@utility", now())
            .await
            .expect("ack");
        assert!(matches!(
            s.acknowledge_alarm(open[0].id, "again", now()).await,
            Err(Error::NotFound)
        ));
        assert_eq!(
            s.clear_alarms(id, "magneticTamper", now())
                .await
                .expect("clear"),
            1
        );
        let all = s.alarms(None, i64::MAX, 10).await.expect("list");
        assert_eq!(all[0].state, "cleared");
        assert_eq!(all[0].acknowledged_by.as_deref(), Some("operator@utility"));
        // Once cleared, the kind can be raised anew as a second alarm.
        let later = NewAlarm {
            raised_at: at("2026-07-24T01:00:00Z"),
            ..alarm.clone()
        };
        assert_eq!(s.insert_alarms(&[later]).await.expect("insert"), 1);
        assert_eq!(s.alarms(None, i64::MAX, 10).await.expect("list").len(), 2);
    }
}

#[tokio::test]
async fn commands_move_through_their_states_once() {
    for f in stores().await {
        let s = &f.store;
        let meter_id = one_meter(s).await;
        let c = CommandRow {
            id: Uuid::new_v4(),
            meter_id,
            kind: "valveClose".into(),
            fport: 10,
            payload: vec![1, 2],
            confirmed: true,
            requested_by: "operator".into(),
            state: "pending".into(),
            attempts: 0,
            error: None,
            created_at: now(),
            updated_at: now(),
            expires_at: now() + Duration::hours(1),
            sent_at: None,
            completed_at: None,
            deadline_at: None,
            result: None,
            schedule_id: None,
        };
        s.insert_command(&c).await.expect("insert");
        assert!(matches!(
            s.insert_command(&c).await,
            Err(Error::Conflict(_))
        ));
        assert!(
            s.transition_command(c.id, &["pending"], "queued", None, now())
                .await
                .expect("t")
        );
        assert!(
            !s.transition_command(c.id, &["pending"], "queued", None, now())
                .await
                .expect("t")
        );
        assert!(
            s.transition_command(
                c.id,
                &["queued", "sent"],
                "failed",
                Some("F_CNT_DOWN"),
                now()
            )
            .await
            .expect("t")
        );
        let stored = s.command(c.id).await.expect("get");
        assert_eq!((stored.state.as_str(), stored.attempts), ("failed", 1));
        assert_eq!(stored.error.as_deref(), Some("F_CNT_DOWN"));
        assert_eq!(stored.payload, vec![1, 2]);
        assert_eq!(
            s.commands_for_meter(meter_id, 10)
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(matches!(
            s.command(Uuid::new_v4()).await,
            Err(Error::NotFound)
        ));
    }
}

#[tokio::test]
async fn inspections_are_listed_newest_first() {
    for f in stores().await {
        let s = &f.store;
        let meter_id = one_meter(s).await;
        for (day, outcome) in [
            ("2026-07-01T09:00:00Z", "ok"),
            ("2026-07-20T09:00:00Z", "tampered"),
        ] {
            let visit = NewInspection {
                meter_id,
                alarm_id: None,
                visited_at: at(day),
                inspector: "field-crew-7".into(),
                outcome: outcome.into(),
                notes: String::new(),
            };
            s.insert_inspection(&visit, now()).await.expect("insert");
        }
        let visits = s.inspections_for_meter(meter_id, 10).await.expect("list");
        assert_eq!(
            visits
                .iter()
                .map(|v| v.outcome.as_str())
                .collect::<Vec<_>>(),
            ["tampered", "ok"]
        );
    }
}

#[tokio::test]
async fn concurrent_writers_never_see_busy_errors() {
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        let mut tasks = Vec::new();
        for t in 0..16 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    let r = StoredReading {
                        reading_time: at("2026-07-01T00:00:00Z") + Duration::minutes(t * 100 + i),
                        ..reading(id, 0)
                    };
                    s.insert_readings(&[r]).await.expect("no busy error");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(s.count_readings().await.expect("count"), 320);
    }
}

/// Counts readings from a connection of its own, on a thread of its own: what another
/// reader of the database sees at this moment, asked from inside a synchronous callback.
fn readings_seen_by_another_connection(url: &str) -> i64 {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use sqlx::Connection as _;
            let sql = "SELECT COUNT(*) FROM readings";
            if url.starts_with("sqlite:") {
                let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("url");
                let mut c = sqlx::SqliteConnection::connect_with(&options.read_only(true))
                    .await
                    .expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            } else {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            }
        })
    })
    .join()
    .expect("reader thread")
}

/// The cache hides a write's responses from just before its commit: the hold a batch takes
/// must see its outcome while nothing of it is visible to other readers yet, and what it
/// returns comes back to the writer after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_hold_is_taken_before_its_commit() {
    use meterhub::storage::ingest::{Effect, Plan};
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        let plan = Plan {
            effects: vec![Effect::Reading(reading(id, 3))],
            ..Plan::default()
        };
        let url = f.db.url().to_owned();
        let (outcome, seen_in_hold) = s
            .apply_batch(std::slice::from_ref(&plan), now(), |outcome| {
                assert_eq!(outcome.readings, 1, "the hold sees what the batch did");
                readings_seen_by_another_connection(&url)
            })
            .await
            .expect("apply");
        assert_eq!(outcome.readings, 1);
        assert_eq!(seen_in_hold, 0, "the hold runs before the commit");
        assert_eq!(readings_seen_by_another_connection(&url), 1);
    }
}

/// A batch writes each meter's link state only from an uplink not older than the stored one,
/// and the rules' state (here the clock drift) whenever a reading was observed: the two are
/// written together, and neither may undo the other.
#[tokio::test]
async fn link_state_never_moves_back_while_observed_state_is_written() {
    use meterhub::monitor::rules::{Observed, Rules};
    use meterhub::storage::ingest::{Effect, Observation, Plan};
    use meterhub::storage::meters::LinkUpdate;
    let link = |meter_id, seen: &str, battery: i16| LinkUpdate {
        meter_id,
        last_seen_at: at(seen),
        overdue_at: at(seen) + Duration::days(2),
        battery_millivolts: Some(3_000 + i32::from(battery)),
        battery_percent: Some(battery),
        rssi: Some(-80),
        snr: Some(7.5),
        application_id: None,
    };
    for f in stores().await {
        let s = &f.store;
        let id = one_meter(s).await;
        let apply = |effects: Vec<Effect>| async move {
            let plan = Plan {
                effects,
                ..Plan::default()
            };
            s.apply_batch(std::slice::from_ref(&plan), now(), |_| ())
                .await
                .expect("apply");
        };
        let read = || async {
            s.meter_by_dev_eui(&meter(1).dev_eui)
                .await
                .expect("q")
                .expect("m")
        };
        apply(vec![Effect::Link(link(id, "2026-07-20T10:00:00Z", 90))]).await;
        // An older uplink, redelivered late, with a reading whose drift is measured.
        let observe = Observation {
            meter_id: id,
            dev_eui: meter(1).dev_eui,
            observed: Observed {
                at: at("2026-07-19T10:00:00Z"),
                register: Some(1_000),
                valve: 1,
                battery_percent: 50,
                drift_ms: Some(5_000),
            },
            rules: Rules::default(),
            resync_expires_at: now() + Duration::hours(1),
            at: now(),
        };
        apply(vec![
            Effect::Observe(observe),
            Effect::Link(link(id, "2026-07-19T10:00:00Z", 50)),
        ])
        .await;
        let m = read().await;
        assert_eq!(m.last_seen_at, Some(at("2026-07-20T10:00:00Z")));
        assert_eq!(
            m.battery_percent,
            Some(90),
            "the older uplink's battery is not kept"
        );
        assert_eq!(
            m.clock_drift_ms,
            Some(5_000),
            "the observed state is written"
        );
        // A newer uplink without a reading: the link moves on, the state stays.
        apply(vec![Effect::Link(link(id, "2026-07-21T10:00:00Z", 80))]).await;
        let m = read().await;
        assert_eq!(m.last_seen_at, Some(at("2026-07-21T10:00:00Z")));
        assert_eq!(m.battery_percent, Some(80));
        assert_eq!(m.status, "active");
        assert_eq!(m.clock_drift_ms, Some(5_000));
    }
}
