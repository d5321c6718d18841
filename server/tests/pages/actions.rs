//! What operators do from the pages, in the browser: a valve command confirmed, queued and
//! followed until the meter acknowledges it (ChirpStack's `txack` and `ack` published on the
//! test broker); a message quarantined for an unknown device, the meter installed through the
//! form (a bad serial shown beside its field first), the message replayed; a visit recorded;
//! the region's filters, search and pages; the alarms' time range; a viewer without buttons
//! and forged forms refused.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use firmware_protocol::{DoorState, GpsTime, Reading, Serial, StatusFlags, Uplink, ValveState};
use meterhub::storage::meters::{LinkUpdate, NewMeter};
use serde_json::json;
use test_support::Dialect;

use super::bridge::{APP, CommandListener, Publisher, event, topic, up_event};
use super::http;
use super::{browse, meter};

/// A reading frame with a chosen battery charge.
fn frame(serial: Serial, litres: u32, battery_percent: u8) -> Vec<u8> {
    let m = Uplink::Reading(Reading {
        serial,
        meter_time: GpsTime::from_unix(Utc::now().timestamp()).expect("GPS range"),
        valve: ValveState::Open,
        door: DoorState::NotFitted,
        battery_millivolts: 3_600,
        battery_percent,
        flags: StatusFlags::empty(),
        gas_volume_litres: Some(litres),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: Some(1_250),
        gas_pressure_pa: Some(102_300),
    });
    let mut buf = [0u8; 64];
    let n = m.encode(&mut buf).expect("encodes");
    buf[..n].to_vec()
}

fn serial_of(n: u32) -> Serial {
    Serial::new(12, 26, 1, n).expect("valid")
}

/// Meters of region `east` (numbers 100 on): more than a page of them.
const EAST: u32 = 55;

async fn actions(dialect: Dialect) {
    let Some((browser, s, tag, base)) = browse(dialect).await else {
        return;
    };
    let b = &browser;
    let store = &s.env.store;
    let now = Utc::now();
    let id_of = |n: u32| format!("a1b2c3d4e5{n:06x}");

    // The fleet as the filters will find it: meter 2 reports a low battery, meter 3 is silent,
    // meter 1's leak is acknowledged; a region of more meters than a page.
    let east: Vec<NewMeter> = (100..100 + EAST).map(|n| meter(n, "east")).collect();
    store.register_meters(&east, now).await.expect("east");
    let m = |n: u32| async move {
        store
            .meter_by_dev_eui(&id_of(n))
            .await
            .expect("read")
            .expect("meter")
    };
    let (one, two, three) = (m(1).await, m(2).await, m(3).await);
    let link = |meter_id, overdue_at, battery_percent| LinkUpdate {
        meter_id,
        last_seen_at: now - TimeDelta::hours(2),
        overdue_at,
        battery_millivolts: Some(3_300),
        battery_percent: Some(battery_percent),
        rssi: Some(-100),
        snr: Some(5.0),
        application_id: None,
    };
    store
        .update_links(&[
            link(two.id, now + TimeDelta::days(1), 4),
            link(three.id, now - TimeDelta::hours(1), 80),
        ])
        .await
        .expect("links");
    let alarms = store
        .alarms_filtered(
            &meterhub::storage::listings::AlarmFilter {
                meter_id: Some(one.id),
                kind: Some("leak".into()),
                ..Default::default()
            },
            i64::MAX,
            5,
        )
        .await
        .expect("alarms");
    store
        .acknowledge_alarm(alarms[0].id, "Olga Operator", now)
        .await
        .expect("acknowledged");

    // ---- Filters, search and pages of a region.
    b.goto(&format!("{base}/signin")).await;
    b.sign_in(&s.operator).await;
    b.goto(&format!("{base}/regions/north")).await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 3);
    b.check("#silent", true).await;
    b.click("#filter").await;
    let rows = b.text("#meters tbody").await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 1, "{rows}");
    assert!(
        rows.contains(&three.dev_eui) && rows.contains("silent"),
        "{rows}"
    );
    b.check("#silent", false).await;
    b.check("#battery", true).await;
    b.click("#filter").await;
    let rows = b.text("#meters tbody").await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 1, "{rows}");
    assert!(
        rows.contains(&two.dev_eui) && rows.contains("low"),
        "{rows}"
    );
    b.shot(&format!("{tag}-region-filtered")).await;
    b.check("#silent", true).await;
    b.click("#filter").await;
    assert_eq!(b.text("#no-meters").await, "No meter matches.");
    b.goto(&format!("{base}/regions/north")).await;
    b.select("#alarm", "acknowledged").await;
    b.click("#filter").await;
    let rows = b.text("#meters tbody").await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 1, "{rows}");
    assert!(rows.contains(&one.dev_eui), "{rows}");
    b.goto(&format!("{base}/regions/north")).await;
    b.fill("#q", "2").await;
    b.select("#by", "bodyNumber").await;
    b.click("#filter").await;
    let rows = b.text("#meters tbody").await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 1, "{rows}");
    assert!(rows.contains(&two.dev_eui), "{rows}");
    b.fill("#q", "user-3").await;
    b.select("#by", "").await;
    b.submit("#q").await;
    assert!(b.text("#meters tbody").await.contains(&three.dev_eui));
    // A page at a time: 50, then the rest, with the filters kept.
    b.goto(&format!("{base}/regions/east?status=installed"))
        .await;
    assert_eq!(b.all("#meters tbody tr").await.len(), 50);
    b.click("a[rel=next]").await;
    assert!(
        b.path().await.contains("status=installed"),
        "{}",
        b.path().await
    );
    assert_eq!(b.all("#meters tbody tr").await.len(), (EAST - 50) as usize);
    assert_eq!(b.all("a[rel=next]").await.len(), 0, "the last page");
    // A bad filter value is a 400 naming it.
    b.goto(&format!("{base}/regions/north?silent=maybe")).await;
    assert!(b.text("main").await.contains("silent"));

    // ---- Alarms by time raised (seeded two hours ago).
    let at = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    b.goto(&format!(
        "{base}/alarms?from={}&to={}",
        at(now - TimeDelta::minutes(100)),
        at(now - TimeDelta::minutes(80))
    ))
    .await;
    assert_eq!(b.all("table.alarms tbody tr").await.len(), 0);
    b.goto(&format!(
        "{base}/alarms?from={}&to={}",
        at(now - TimeDelta::hours(3)),
        at(now - TimeDelta::hours(1))
    ))
    .await;
    assert_eq!(b.all("table.alarms tbody tr").await.len(), 3);
    assert_eq!(
        b.attr("#from", "value").await.as_deref(),
        Some(at(now - TimeDelta::hours(3)).as_str()),
        "the filter shows what it filters by"
    );
    b.shot(&format!("{tag}-alarms-range")).await;

    // ---- A valve command, confirmed and followed until the meter acknowledges it.
    let mut chirpstack = CommandListener::connect(&s.env.broker, &format!("pages-cs-{tag}")).await;
    let mut publisher = Publisher::connect(&s.env.broker, &format!("pages-up-{tag}")).await;
    b.goto(&format!("{base}/meters/{}", one.dev_eui)).await;
    let kinds: Vec<String> = {
        let mut k = Vec::new();
        for e in b.all("#command-buttons a").await {
            k.push(e.attr("data-kind").await.expect("attr").unwrap_or_default());
        }
        k
    };
    assert_eq!(
        kinds,
        [
            "readNow",
            "selfTest",
            "forceResync",
            "valveOpen",
            "valveClose"
        ],
        "a gas meter has valve buttons"
    );
    b.click("a[data-kind=valveClose]").await;
    assert!(b.text("h1").await.contains("Close valve on meter"));
    b.shot(&format!("{tag}-command-confirm")).await;
    b.click("#confirm").await;
    let path = b.path().await;
    assert!(path.starts_with("/commands/"), "{path}");
    let id = path.trim_start_matches("/commands/").to_owned();
    assert_eq!(b.text("#command-state").await, "pending");
    assert_eq!(
        b.all("meta[http-equiv=refresh]").await.len(),
        1,
        "it follows itself"
    );
    b.shot(&format!("{tag}-command-pending")).await;
    // The meter's uplink releases it; ChirpStack says it went out, then that it was acked.
    publisher
        .publish(
            topic(&one.dev_eui, "up"),
            up_event(
                &one.dev_eui,
                &uuid::Uuid::new_v4().to_string(),
                30,
                1,
                &frame(serial_of(1), 200_000, 88),
            ),
        )
        .await;
    let (_, down) = chirpstack
        .next(Duration::from_secs(20))
        .await
        .expect("released to ChirpStack");
    assert_eq!(down.id.map(|u| u.to_string()), Some(id.clone()));
    let seen = b
        .wait_for_text("#command-state", "queued", Duration::from_secs(20))
        .await;
    assert_eq!(seen, "queued");
    publisher
        .publish(
            topic(&one.dev_eui, "txack"),
            event(
                &one.dev_eui,
                json!({"queueItemId": id, "fCntDown": 7, "time": Utc::now()}),
            ),
        )
        .await;
    let seen = b
        .wait_for_text("#command-state", "sent", Duration::from_secs(20))
        .await;
    assert_eq!(seen, "sent");
    publisher
        .publish(
            topic(&one.dev_eui, "ack"),
            event(
                &one.dev_eui,
                json!({"deduplicationId": uuid::Uuid::new_v4(), "time": Utc::now(),
                       "queueItemId": id, "acknowledged": true, "fCntDown": 7}),
            ),
        )
        .await;
    let seen = b
        .wait_for_text("#command-state", "acknowledged", Duration::from_secs(20))
        .await;
    assert_eq!(seen, "acknowledged");
    assert!(b.text("#command-final").await.contains("acknowledged"));
    assert_eq!(b.all("meta[http-equiv=refresh]").await.len(), 0, "it stops");
    assert_eq!(
        b.attr("#progress li.current", "data-state")
            .await
            .as_deref(),
        Some("acknowledged")
    );
    assert_eq!(
        b.all("#progress li.done").await.len(),
        3,
        "pending, queued, sent"
    );
    b.shot(&format!("{tag}-command-acknowledged")).await;
    b.goto(&format!("{base}/meters/{}", one.dev_eui)).await;
    let listed = b.text("#commands").await;
    assert!(
        listed.contains("valveClose") && listed.contains("acknowledged"),
        "{listed}"
    );

    // A self-test with no test ticked is refused beside the tests, nothing queued.
    let before = store
        .commands_for_meter(one.id, 100)
        .await
        .expect("read")
        .len();
    b.click("a[data-kind=selfTest]").await;
    for cb in b.all("input[name=tests]").await {
        cb.click().await.expect("unticks");
    }
    b.click("#confirm").await;
    assert!(b.text("#tests-error").await.contains("at least one test"));
    assert_eq!(
        store
            .commands_for_meter(one.id, 100)
            .await
            .expect("read")
            .len(),
        before
    );

    // A meter without a gas reading offers no valve, and refuses one asked for by hand.
    b.goto(&format!("{base}/meters/{}", three.dev_eui)).await;
    assert_eq!(b.all("a[data-kind=valveClose]").await.len(), 0);
    assert_eq!(b.all("a[data-kind=readNow]").await.len(), 1);
    b.goto(&format!(
        "{base}/meters/{}/commands/valveClose",
        three.dev_eui
    ))
    .await;
    assert!(
        b.text("main")
            .await
            .contains("only a gas meter has a valve")
    );

    // ---- A visit recorded from the meter page, with a bad time first.
    b.goto(&format!("{base}/meters/{}/inspections", one.dev_eui))
        .await;
    b.set_value("#visitedAt", "").await;
    b.fill("#inspector", "crew 7").await;
    b.select("#outcome", "tampered").await;
    b.select("#alarmId", &alarms[0].id.to_string()).await;
    b.fill("#notes", "magnet <removed>").await;
    b.click("#record-visit").await;
    assert!(b.text("#visitedAt-error").await.contains("required"));
    assert_eq!(
        b.prop("#notes", "value").await.as_deref(),
        Some("magnet <removed>")
    );
    // A visit a minute ago: the field as a browser fills it.
    let when = (Utc::now() - TimeDelta::minutes(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    b.set_value("#visitedAt", &when).await;
    b.click("#record-visit").await;
    assert_eq!(
        b.path().await,
        format!("/meters/{}/inspections", one.dev_eui)
    );
    let visits = b.text("#inspections").await;
    assert!(
        visits.contains("crew 7") && visits.contains("magnet <removed>"),
        "{visits}"
    );
    let stored = store
        .inspections_page(one.id, None, 10)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].alarm_id, Some(alarms[0].id));
    b.shot(&format!("{tag}-inspections")).await;

    // ---- A message from a device nobody installed yet is quarantined.
    let newcomer = serial_of(900);
    let newcomer_eui = id_of(900);
    publisher
        .publish(
            topic(&newcomer_eui, "up"),
            up_event(
                &newcomer_eui,
                &uuid::Uuid::new_v4().to_string(),
                1,
                1,
                &frame(newcomer, 5_000, 95),
            ),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let quarantined = loop {
        let rows = store.quarantined(None, i64::MAX, 10).await.expect("read");
        if let Some(r) = rows
            .into_iter()
            .find(|r| r.dev_eui.as_deref() == Some(newcomer_eui.as_str()))
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "quarantined within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.goto(&format!("{base}/quarantine")).await;
    let row = b
        .text(&format!("tr[data-quarantined='{}']", quarantined.id))
        .await;
    assert!(
        row.contains("unregistered_device") && row.contains(&newcomer_eui),
        "{row}"
    );
    b.shot(&format!("{tag}-quarantine")).await;
    // Replayed before the meter exists: refused, with the reason.
    b.click(&format!(
        "tr[data-quarantined='{}'] a.button",
        quarantined.id
    ))
    .await;
    b.click("#confirm").await;
    assert!(
        b.text("#replay-result")
            .await
            .contains("unregistered_device"),
        "{}",
        b.text("main").await
    );

    // ---- An admin installs it: a bad serial is shown beside its field, then it is right.
    b.click("header button").await;
    b.sign_in(&s.admin).await;
    b.click_link("Install a meter").await;
    // The right serial with its last digit changed: a wrong check digit.
    let right = newcomer.to_string();
    let last = right
        .chars()
        .last()
        .and_then(|c| c.to_digit(10))
        .expect("a digit");
    let wrong = format!("{}{}", &right[..13], (last + 1) % 10);
    b.fill("#serial", &wrong).await;
    b.fill("#devEui", &newcomer_eui).await;
    b.fill("#applicationId", APP).await;
    b.fill("#bodyNumber", "900").await;
    b.fill("#userId", "user-900").await;
    b.fill("#region", "north").await;
    b.set_value("#productionDate", "2026-01-01").await;
    b.click("#install-submit").await;
    let error = b.text("#serial-error").await;
    assert!(error.contains("check digit"), "{error}");
    assert_eq!(
        b.attr("#serial", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(
        b.all(".field-error").await.len(),
        1,
        "only the serial is wrong"
    );
    assert_eq!(
        b.attr("#devEui", "value").await.as_deref(),
        Some(newcomer_eui.as_str()),
        "what was typed stays"
    );
    b.shot(&format!("{tag}-install-error")).await;
    b.fill("#serial", &newcomer.to_string()).await;
    b.click("#install-submit").await;
    assert_eq!(b.path().await, format!("/meters/{newcomer_eui}"));
    assert!(b.text("#details").await.contains(&newcomer.to_string()));

    // ---- The quarantined message replayed, now that its meter exists.
    b.goto(&format!("{base}/quarantine/{}/replay", quarantined.id))
        .await;
    b.click("#confirm").await;
    let result = b.text("#replay-result").await;
    assert!(result.contains("1 reading(s) stored"), "{result}");
    b.shot(&format!("{tag}-replayed")).await;
    let newcomer_id = store
        .meter_by_dev_eui(&newcomer_eui)
        .await
        .expect("read")
        .expect("installed")
        .id;
    let readings = store
        .readings_for_meter(
            newcomer_id,
            now - TimeDelta::days(1),
            Utc::now() + TimeDelta::hours(1),
            10,
        )
        .await
        .expect("read");
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].gas_volume_litres, Some(5_000));

    // ---- A viewer sees no action and is refused what it forges.
    b.click("header button").await;
    b.sign_in(&s.viewer).await;
    b.goto(&format!("{base}/meters/{}", one.dev_eui)).await;
    assert_eq!(
        b.all("#command-buttons").await.len(),
        0,
        "no command buttons"
    );
    assert_eq!(b.all("a.button").await.len(), 0);
    b.goto(&format!("{base}/quarantine")).await;
    assert_eq!(b.all("#quarantine a.button").await.len(), 0, "no replay");
    assert_eq!(b.all("a[href='/install']").await.len(), 0, "no install");
    b.goto(&format!("{base}/meters/{}/commands/readNow", one.dev_eui))
        .await;
    assert!(b.text("main").await.contains("needs the operator role"));
    b.goto(&format!("{base}/install")).await;
    assert!(b.text("main").await.contains("needs the admin role"));
    b.shot(&format!("{tag}-viewer-refused")).await;
    let cookie = b.session_cookie().await;
    let token = b
        .attr("header input[name=csrf]", "value")
        .await
        .expect("the session's token");
    let commands = store
        .commands_for_meter(one.id, 100)
        .await
        .expect("read")
        .len();
    let forged = [
        (
            format!("/meters/{}/commands", one.dev_eui),
            format!("csrf={token}&kind=readNow"),
        ),
        (
            format!("/meters/{}/commands", one.dev_eui),
            "kind=readNow".to_owned(),
        ),
        ("/install".to_owned(), format!("csrf={token}&serial=1")),
        (
            format!("/quarantine/{}/replay", quarantined.id),
            format!("csrf={token}"),
        ),
        (
            format!("/meters/{}/inspections", one.dev_eui),
            format!("csrf={token}&visitedAt=2026-01-01T00%3A00&inspector=x&outcome=ok"),
        ),
    ];
    for (path, form) in &forged {
        let (status, _) = http::post(s.addr, path, &cookie, form).await;
        assert_eq!(status, 403, "{path} {form}");
    }
    assert_eq!(
        store
            .commands_for_meter(one.id, 100)
            .await
            .expect("read")
            .len(),
        commands,
        "nothing queued"
    );
    // And an operator's form without its token, or with another session's, is refused too.
    b.click("header button").await;
    b.sign_in(&s.operator).await;
    let cookie = b.session_cookie().await;
    for form in [
        "kind=readNow".to_owned(),
        format!("csrf={token}&kind=readNow"),
    ] {
        let (status, _) = http::post(
            s.addr,
            &format!("/meters/{}/commands", one.dev_eui),
            &cookie,
            &form,
        )
        .await;
        assert_eq!(status, 403, "{form}");
    }
    assert_eq!(
        store
            .commands_for_meter(one.id, 100)
            .await
            .expect("read")
            .len(),
        commands
    );

    publisher.flush().await;
    browser.close().await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_from_the_pages_in_a_browser_sqlite() {
    actions(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_from_the_pages_in_a_browser_postgres() {
    actions(Dialect::Postgres).await;
}
