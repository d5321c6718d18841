use meterhub::storage::Error;
use meterhub::storage::meters::{LinkUpdate, Registered};

use crate::{at, meter, now, stores};

#[tokio::test]
async fn registering_is_idempotent_and_updates_only_what_changed() {
    for f in stores().await {
        let s = &f.store;
        let m = meter(1);
        assert_eq!(
            s.register_meter(&m, now()).await.expect("insert"),
            Registered::Inserted
        );
        assert_eq!(
            s.register_meter(&m, now()).await.expect("again"),
            Registered::Unchanged
        );
        let moved = meterhub::storage::meters::NewMeter {
            region_id: "east".into(),
            ..m.clone()
        };
        assert_eq!(
            s.register_meter(&moved, now()).await.expect("update"),
            Registered::Updated
        );
        let stored = s
            .meter_by_dev_eui(&m.dev_eui)
            .await
            .expect("query")
            .expect("registered");
        assert!(stored.matches(&moved));
        assert_eq!(stored.status, "installed");
        assert_eq!(stored.created_at, now());
        let regions: Vec<String> = s
            .regions()
            .await
            .expect("regions")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(regions, ["east", "south"]);
    }
}

#[tokio::test]
async fn a_serial_held_by_another_meter_is_a_conflict() {
    for f in stores().await {
        let s = &f.store;
        s.register_meter(&meter(1), now()).await.expect("insert");
        let thief = meterhub::storage::meters::NewMeter {
            dev_eui: "ffffffffffffffff".into(),
            ..meter(1)
        };
        let err = s.register_meter(&thief, now()).await.expect_err("conflict");
        assert!(
            matches!(err, Error::Conflict(ref m) if m.contains(&meter(1).dev_eui)),
            "{err}"
        );
        assert!(
            s.meter_by_dev_eui("ffffffffffffffff")
                .await
                .expect("query")
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_failing_batch_registers_nothing() {
    for f in stores().await {
        let s = &f.store;
        s.register_meter(&meter(1), now()).await.expect("insert");
        let batch = vec![
            meter(2),
            meterhub::storage::meters::NewMeter {
                dev_eui: "eeeeeeeeeeeeeeee".into(),
                ..meter(1)
            },
        ];
        assert!(s.register_meters(&batch, now()).await.is_err());
        assert!(
            s.meter_by_dev_eui(&meter(2).dev_eui)
                .await
                .expect("query")
                .is_none()
        );
    }
}

#[tokio::test]
async fn meters_page_by_id_and_filter_by_region() {
    for f in stores().await {
        let s = &f.store;
        let batch: Vec<_> = (1..=7).map(meter).collect();
        s.register_meters(&batch, now()).await.expect("insert");
        let first = s.meters(None, 0, 3).await.expect("page 1");
        assert_eq!(first.len(), 3);
        let rest = s.meters(None, first[2].id, 10).await.expect("page 2");
        assert_eq!(rest.len(), 4);
        let north = s.meters(Some("north"), 0, 10).await.expect("north");
        assert_eq!(north.len(), 3);
        assert!(north.iter().all(|m| m.region_id == "north"));
        let by_serial = s
            .meter_by_serial(&meter(5).serial)
            .await
            .expect("query")
            .expect("found");
        assert_eq!(by_serial.dev_eui, meter(5).dev_eui);
    }
}

#[tokio::test]
async fn link_state_moves_forward_only() {
    for f in stores().await {
        let s = &f.store;
        s.register_meter(&meter(1), now()).await.expect("insert");
        let id = s
            .meter_by_dev_eui(&meter(1).dev_eui)
            .await
            .expect("q")
            .expect("m")
            .id;
        let update = |t: &str, mv: Option<i32>| LinkUpdate {
            meter_id: id,
            last_seen_at: at(t),
            overdue_at: at(t) + chrono::Duration::days(2),
            battery_millivolts: mv,
            battery_percent: None,
            rssi: Some(-100),
            snr: Some(7.5),
            application_id: None,
        };
        s.update_links(&[update("2026-07-23T10:00:00Z", Some(3600))])
            .await
            .expect("update");
        // An older uplink redelivered later must not move the state back.
        s.update_links(&[update("2026-07-22T10:00:00Z", Some(3000))])
            .await
            .expect("update");
        s.update_links(&[update("2026-07-23T11:00:00Z", None)])
            .await
            .expect("update");
        let m = s
            .meter_by_dev_eui(&meter(1).dev_eui)
            .await
            .expect("q")
            .expect("m");
        assert_eq!(m.last_seen_at, Some(at("2026-07-23T11:00:00Z")));
        assert_eq!(m.battery_millivolts, Some(3600));
        assert_eq!(m.status, "active");
        assert_eq!(m.snr, Some(7.5));
    }
}

#[tokio::test]
async fn link_state_of_over_a_thousand_meters_is_applied_and_absent_values_kept() {
    for f in stores().await {
        let s = &f.store;
        let new: Vec<_> = (0..1_200).map(meter).collect();
        s.register_meters(&new, now()).await.expect("register");
        let mut ids = Vec::new();
        for m in &new {
            ids.push(
                s.meter_by_dev_eui(&m.dev_eui)
                    .await
                    .expect("q")
                    .expect("m")
                    .id,
            );
        }
        let seen = at("2026-07-23T10:00:00Z");
        let full: Vec<LinkUpdate> = ids
            .iter()
            .map(|&id| LinkUpdate {
                meter_id: id,
                last_seen_at: seen,
                overdue_at: seen + chrono::Duration::days(2),
                battery_millivolts: Some(3_000 + id as i32),
                battery_percent: Some(80),
                rssi: Some(-100),
                snr: Some(-2.25),
                application_id: Some("a1".to_owned()),
            })
            .collect();
        s.update_links(&full).await.expect("update");
        // Every optional value absent: each keeps what the meter had.
        let later = seen + chrono::Duration::hours(1);
        let bare: Vec<LinkUpdate> = ids
            .iter()
            .map(|&id| LinkUpdate {
                meter_id: id,
                last_seen_at: later,
                overdue_at: later + chrono::Duration::days(2),
                battery_millivolts: None,
                battery_percent: None,
                rssi: None,
                snr: None,
                application_id: None,
            })
            .collect();
        s.update_links(&bare).await.expect("update");
        for &id in [ids[0], ids[999], ids[1_000], ids[1_199]].iter() {
            let m = s
                .meters(None, id - 1, 1)
                .await
                .expect("q")
                .pop()
                .expect("m");
            assert_eq!(m.id, id);
            assert_eq!(m.last_seen_at, Some(later));
            assert_eq!(m.overdue_at, Some(later + chrono::Duration::days(2)));
            assert_eq!(m.battery_millivolts, Some(3_000 + id as i32));
            assert_eq!(m.battery_percent, Some(80));
            assert_eq!(m.rssi, Some(-100));
            assert_eq!(m.snr, Some(-2.25));
            assert_eq!(m.application_id, "a1");
            assert_eq!(m.status, "active");
        }
    }
}

/// A batch larger than one SQLite statement: new, unchanged, changed and conflicting meters,
/// each decided against the registry before the batch, a conflict refusing only its meter.
#[tokio::test]
async fn a_batch_registers_new_and_changed_meters_and_refuses_only_its_conflicts() {
    for f in stores().await {
        let s = &f.store;
        let before: Vec<_> = (0..10).map(meter).collect();
        s.register_meters(&before, now()).await.expect("register");
        let mut batch: Vec<_> = (0..4_500).map(meter).collect();
        batch[1].region_id = "east".into();
        // Meter 4 000's serial is meter 3's, registered to another DevEUI.
        batch[4_000].serial = meter(3).serial;
        batch.remove(3);
        let outcomes = s
            .register_meter_batch(&batch, later())
            .await
            .expect("batch");
        assert_eq!(outcomes.len(), batch.len());
        assert_eq!(outcomes[0], Ok(Registered::Unchanged));
        assert_eq!(outcomes[1], Ok(Registered::Updated));
        assert_eq!(outcomes[10], Ok(Registered::Inserted));
        let refused: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert_eq!(
            refused,
            [&Err(format!(
                "serial {} is registered to devEui {}",
                meter(3).serial,
                meter(3).dev_eui
            ))]
        );
        let count = |r: Registered| outcomes.iter().filter(|o| **o == Ok(r.clone())).count();
        assert_eq!(
            (
                count(Registered::Inserted),
                count(Registered::Updated),
                count(Registered::Unchanged)
            ),
            (4_489, 1, 8)
        );
        let moved = s
            .meter_by_dev_eui(&batch[1].dev_eui)
            .await
            .expect("q")
            .expect("m");
        assert!(moved.matches(&batch[1]));
        assert_eq!((moved.created_at, moved.updated_at), (now(), later()));
        let last = s
            .meter_by_dev_eui(&batch[4_498].dev_eui)
            .await
            .expect("q")
            .expect("m");
        assert!(last.matches(&batch[4_498]));
        assert_eq!(last.status, "installed");
        assert!(
            s.meter_by_dev_eui(&meter(4_000).dev_eui)
                .await
                .expect("q")
                .is_none()
        );
        let regions: Vec<String> = s
            .regions()
            .await
            .expect("regions")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(regions, ["east", "north", "south"]);
    }
}

fn later() -> chrono::DateTime<chrono::Utc> {
    at("2026-07-23T13:00:00Z")
}
