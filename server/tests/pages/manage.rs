//! A meter changed and part of its data deleted from the pages, in the browser: the change
//! form with the API's field errors beside their fields; the delete form's confirmation with
//! the dry run (how many, the closed billing period touched), refused without force, then
//! forced with a reason; an operator may change but not delete; a forged form is refused.

use chrono::{Duration, TimeDelta, Utc};
use meterhub::storage::billing_periods::{ClosedPeriod, StoredFigures};
use meterhub::storage::deletion::Data;
use test_support::Dialect;

use super::{browse, http};

async fn manage(dialect: Dialect) {
    let Some((browser, s, tag, base)) = browse(dialect).await else {
        return;
    };
    let b = &browser;
    let store = &s.env.store;
    let one = store
        .meter_by_dev_eui(&s.dev_eui)
        .await
        .expect("read")
        .expect("meter 1");

    // ---- The change form: a bad interval beside its field, then a good change.
    b.goto(&format!("{base}/signin")).await;
    b.sign_in(&s.admin).await;
    b.goto(&format!("{base}/meters/{}", s.dev_eui)).await;
    b.click("#change-link").await;
    assert_eq!(b.path().await, format!("/meters/{}/change", s.dev_eui));
    assert_eq!(
        b.prop("#userId", "value").await.as_deref(),
        Some(one.user_id.as_str())
    );
    b.fill("#reportingIntervalMinutes", "5").await;
    b.fill("#reason", "survey").await;
    b.click("#change-submit").await;
    assert!(
        b.text("#reportingIntervalMinutes-error")
            .await
            .contains("15"),
        "{}",
        b.text("main").await
    );
    b.shot(&format!("{tag}-change-error")).await;
    b.fill("#reportingIntervalMinutes", "60").await;
    b.fill("#reason", " ").await;
    b.click("#change-submit").await;
    assert!(b.text("#reason-error").await.contains("required"));
    b.fill("#reason", "leak survey").await;
    b.fill("#userId", "user-77").await;
    b.click("#change-submit").await;
    assert_eq!(b.path().await, format!("/meters/{}", s.dev_eui));
    let changed = store
        .meter_by_dev_eui(&s.dev_eui)
        .await
        .expect("read")
        .expect("meter 1");
    assert_eq!(changed.reporting_interval_minutes, 60);
    assert_eq!(changed.user_id, "user-77");
    let history = store
        .meter_history(one.id, i64::MAX, 1)
        .await
        .expect("read");
    assert_eq!(history[0].actor, "Ada Admin");
    assert_eq!(history[0].reason, "leak survey");

    // ---- Delete data: a closed day among the readings of 12 to 8 days ago.
    let day = (Utc::now() - TimeDelta::days(10)).date_naive();
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let closed = ClosedPeriod {
        meter_id: one.id,
        kind: "day".into(),
        first_day: day,
        period_start: start,
        period_end: start + Duration::days(1),
        figures: StoredFigures {
            quality: "measured".into(),
            readings: 1,
            gas_quality: Some("measured".into()),
            gas_litres: Some(1_500),
            gas_register_start: None,
            gas_register_end: None,
            energy_quality: None,
            energy_wh: None,
            energy_register_start: None,
            energy_register_end: None,
        },
        closed_at: start + Duration::days(4),
    };
    store
        .close_periods(std::slice::from_ref(&closed), |_| ())
        .await
        .expect("close");
    let (first, last) = (day - chrono::Days::new(2), day + chrono::Days::new(2));
    let range = (
        first.and_hms_opt(0, 0, 0).expect("t").and_utc(),
        (last + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .expect("t")
            .and_utc(),
    );
    let before = store
        .in_range(Data::Readings, one.id, range)
        .await
        .expect("count");
    assert_eq!(before.count, 5, "a reading a day");

    b.goto(&format!("{base}/meters/{}", s.dev_eui)).await;
    b.click("#delete-link").await;
    b.set_value("#from", &first.to_string()).await;
    b.set_value("#to", &last.to_string()).await;
    b.click("#delete-preview").await;
    assert!(
        b.text("#delete-count").await.starts_with("5 readings"),
        "{}",
        b.text("main").await
    );
    // The scheduler may have closed the latest week and month due as well.
    let touched = b.text("#delete-closed").await;
    assert!(touched.contains(&format!("day {day}")), "{touched}");
    assert!(b.text("#delete-force-note").await.contains("force"));
    b.shot(&format!("{tag}-delete-confirm")).await;
    // Not forced: refused, nothing deleted.
    b.fill("#reason", "sensor fault").await;
    b.click("#delete-submit").await;
    assert!(b.text("#force-error").await.contains("force"));
    assert_eq!(
        store
            .in_range(Data::Readings, one.id, range)
            .await
            .expect("count")
            .count,
        5
    );
    // Forced, with the reason: what the dry run said goes, and the day is revised.
    b.check("#force", true).await;
    b.fill("#reason", "sensor fault").await;
    b.click("#delete-submit").await;
    assert!(
        b.text("#delete-done")
            .await
            .starts_with("5 readings deleted"),
        "{}",
        b.text("main").await
    );
    assert!(b.text("#delete-revisions").await.contains("revision 1"));
    b.shot(&format!("{tag}-delete-done")).await;
    assert_eq!(
        store
            .in_range(Data::Readings, one.id, range)
            .await
            .expect("count")
            .count,
        0
    );
    let history = store
        .meter_history(one.id, i64::MAX, 1)
        .await
        .expect("read");
    assert_eq!(history[0].reason, "sensor fault");

    // A form without this session's token is refused, and nothing is deleted.
    let alarms_range = (range.0, Utc::now() + Duration::days(1));
    let alarms = store
        .in_range(Data::Alarms, one.id, alarms_range)
        .await
        .expect("count")
        .count;
    assert!(alarms >= 2, "{alarms}");
    let cookie = b.session_cookie().await;
    let form = format!(
        "data=alarms&from={first}&to={}&reason=x",
        Utc::now().date_naive()
    );
    let (status, _) = http::post(
        s.addr,
        &format!("/meters/{}/delete", s.dev_eui),
        &cookie,
        &form,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        store
            .in_range(Data::Alarms, one.id, alarms_range)
            .await
            .expect("count")
            .count,
        alarms
    );

    // ---- An operator changes but does not delete.
    b.click("header button").await;
    b.sign_in(&s.operator).await;
    b.goto(&format!("{base}/meters/{}", s.dev_eui)).await;
    assert_eq!(b.all("#change-link").await.len(), 1);
    assert_eq!(b.all("#delete-link").await.len(), 0);
    b.goto(&format!("{base}/meters/{}/delete", s.dev_eui)).await;
    assert!(b.text("main").await.contains("needs the admin role"));

    browser.close().await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_is_changed_and_its_data_deleted_from_the_pages_sqlite() {
    manage(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_is_changed_and_its_data_deleted_from_the_pages_postgres() {
    manage(Dialect::Postgres).await;
}
