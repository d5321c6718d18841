//! Billing data over HTTP: a meter's consumption per day, week and month in Europe/Madrid,
//! across DST days, month and year ends, 2028-02-29, gaps, wraps and backward steps.

use chrono::{DateTime, Duration, Utc};
use meterhub::storage::readings::StoredReading;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::{TestApi, dev_eui, request};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").to_utc()
}

fn reading(meter_id: i64, at: DateTime<Utc>, litres: i64, wh: Option<i64>) -> StoredReading {
    StoredReading {
        meter_id,
        reading_time: at,
        received_at: Utc::now(),
        gas_volume_litres: Some(litres),
        energy_wh: wh,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: None,
        gas_pressure_pa: None,
        valve: 1,
        door: 0,
        battery_millivolts: 3_600,
        battery_percent: 90,
        flags: 0,
        f_cnt: None,
    }
}

/// Readings every `step` from `from` (inclusive) to `to` (exclusive), `per_step` litres (and
/// ten times as many Wh) apart, the first at `first` litres.
fn series(
    meter_id: i64,
    from: &str,
    to: &str,
    step: Duration,
    first: i64,
    per_step: i64,
) -> Vec<StoredReading> {
    let (mut t, end) = (at(from), at(to));
    let mut out = Vec::new();
    let mut litres = first;
    while t < end {
        out.push(reading(meter_id, t, litres % (1 << 32), Some(litres * 10)));
        t += step;
        litres += per_step;
    }
    out
}

async fn rows(api: &TestApi, meter: u32, query: &str) -> Vec<Value> {
    let r = api
        .get(&format!(
            "/api/v1/meters/{}/consumption?{query}",
            dev_eui(meter)
        ))
        .await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()["items"].as_array().expect("items").clone()
}

fn pick(rows: &[Value], field: &str) -> Vec<Value> {
    rows.iter().map(|r| r[field].clone()).collect()
}

/// The fixture's four meters (in `north`) and their readings.
async fn fixture_readings(env: &crate::support::Env) {
    env.register(4).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        let m = env.store.meter_by_dev_eui(&dev_eui(n)).await;
        ids.push(m.expect("query").expect("meter").id);
    }
    let hour = Duration::hours(1);
    let day = Duration::days(1);
    let mut stored = Vec::new();
    // Meter 1: hourly, a litre (10 Wh) an hour, around both DST changes of 2026.
    stored.extend(series(
        ids[0],
        "2026-03-27T00:00:00Z",
        "2026-04-02T00:00:00Z",
        hour,
        1_000,
        1,
    ));
    stored.extend(series(
        ids[0],
        "2026-10-23T00:00:00Z",
        "2026-10-28T00:00:00Z",
        hour,
        9_000,
        1,
    ));
    // Meter 2: daily at Madrid midnight (23:00 UTC in winter), 100 litres a day, through
    // February 2028 and its 29th, except the reading that opens 2028-03-02.
    stored.extend(
        series(
            ids[1],
            "2028-01-31T23:00:00Z",
            "2028-03-10T23:00:00Z",
            day,
            50_000,
            100,
        )
        .into_iter()
        .filter(|r| r.reading_time != at("2028-03-01T23:00:00Z")),
    );
    // Meter 3: daily at Madrid midnight across the year end, wrapping past 2³² on the way.
    stored.extend(series(
        ids[2],
        "2026-11-30T23:00:00Z",
        "2027-02-01T23:00:00Z",
        day,
        (1 << 32) - 1_000,
        100,
    ));
    // Meter 4: daily at Madrid midnight in May 2026 (summer: 22:00 UTC), its register going
    // back once on May 10th, then silent for a fortnight from May 20th.
    let mut m4 = series(
        ids[3],
        "2026-04-30T22:00:00Z",
        "2026-05-20T22:00:00Z",
        day,
        5_000_000,
        100,
    );
    m4.extend(series(
        ids[3],
        "2026-06-04T22:00:00Z",
        "2026-06-10T22:00:00Z",
        day,
        6_000_000,
        100,
    ));
    for r in &mut m4 {
        if r.reading_time == at("2026-05-10T22:00:00Z") {
            r.gas_volume_litres = Some(4_000_000);
        }
    }
    stored.extend(m4);
    env.store.insert_readings(&stored).await.expect("insert");
}

async fn consumption(dialect: Dialect) {
    // Stored before the server starts: the scheduler may close any of these periods at once
    // (depending on today's date), and must find their readings when it does.
    let Some(api) = TestApi::start_seeded(
        dialect,
        |s| {
            s.utility.time_zone = "Europe/Madrid".to_owned();
        },
        |env| Box::pin(fixture_readings(env)),
    )
    .await
    else {
        return;
    };

    // The spring day lasts 23 hours, and consumes 23 litres.
    let spring = rows(&api, 1, "period=day&from=2026-03-28&to=2026-03-31").await;
    assert_eq!(
        pick(&spring, "gasLitres"),
        [json!(24), json!(23), json!(24)]
    );
    assert_eq!(
        pick(&spring, "energyWh"),
        [json!(240), json!(230), json!(240)]
    );
    assert_eq!(pick(&spring, "readings"), [json!(24), json!(23), json!(24)]);
    let d = &spring[1];
    assert_eq!(d["periodStart"], "2026-03-29T00:00:00+01:00");
    assert_eq!(d["periodEnd"], "2026-03-30T00:00:00+02:00");
    assert_eq!(d["periodStartUtc"], "2026-03-28T23:00:00Z");
    assert_eq!(d["periodEndUtc"], "2026-03-29T22:00:00Z");
    assert_eq!(d["quality"], "measured");
    assert_eq!(d["gasRegisterStart"], 1_000 + 47);
    assert_eq!(d["gasRegisterEnd"], 1_000 + 70);
    assert_eq!(d["gasCubicMetres"], json!(0.023));
    assert_eq!(d["energyKwh"], json!(0.23));
    // The autumn day lasts 25.
    let autumn = rows(&api, 1, "period=day&from=2026-10-25&to=2026-10-26").await;
    assert_eq!(pick(&autumn, "gasLitres"), [json!(25)]);
    assert_eq!(autumn[0]["periodEnd"], "2026-10-26T00:00:00+01:00");
    // A month without a reading near its start is incomplete, without a figure.
    let march = rows(&api, 1, "period=month&from=2026-03-01&to=2026-04-01").await;
    assert_eq!(pick(&march, "quality"), [json!("incomplete")]);
    assert_eq!(march[0]["gasLitres"], Value::Null);

    // 2028-02-29 is a day like any other; the missing midnight reading of March 2nd is
    // interpolated, and both days it bounds are estimated (March 1st and 2nd).
    let leap = rows(&api, 2, "period=day&from=2028-02-28&to=2028-03-04").await;
    assert_eq!(pick(&leap, "gasLitres"), vec![json!(100); 5]);
    assert_eq!(
        pick(&leap, "quality"),
        ["measured", "measured", "estimated", "estimated", "measured"].map(|q| json!(q))
    );
    assert_eq!(leap[1]["periodStart"], "2028-02-29T00:00:00+01:00");
    let february = rows(&api, 2, "period=month&from=2028-02-01&to=2028-03-01").await;
    assert_eq!(pick(&february, "gasLitres"), [json!(2_900)]);
    assert_eq!(february[0]["quality"], "measured");
    // Weeks: Monday 2028-02-28 to Monday 2028-03-06.
    let week = rows(&api, 2, "period=week&from=2028-03-01&to=2028-03-02").await;
    assert_eq!(week[0]["periodStart"], "2028-02-28T00:00:00+01:00");
    // Its boundaries were read: the missing reading inside it does not matter.
    assert_eq!(week[0]["gasLitres"], 700);
    assert_eq!(week[0]["quality"], "measured");

    // Across the year end and a wrap at 2³²: consumption, never a negative.
    let months = rows(&api, 3, "period=month&from=2026-12-01&to=2027-02-01").await;
    assert_eq!(pick(&months, "gasLitres"), [json!(3_100), json!(3_100)]);
    assert_eq!(
        pick(&months, "quality"),
        [json!("measured"), json!("measured")]
    );
    assert_eq!(months[0]["gasRegisterStart"], (1i64 << 32) - 1_000);
    assert_eq!(months[0]["gasRegisterEnd"], 2_100);
    assert_eq!(months[1]["periodStart"], "2027-01-01T00:00:00+01:00");

    // A backward step: the day it falls in and the day starting on the reading in doubt
    // are invalid, the rest measured; a silent fortnight is incomplete.
    let may = rows(&api, 4, "period=day&from=2026-05-09&to=2026-05-13").await;
    assert_eq!(
        pick(&may, "quality"),
        ["measured", "invalid", "invalid", "measured"].map(|q| json!(q))
    );
    assert_eq!(
        pick(&may, "gasLitres"),
        [json!(100), Value::Null, Value::Null, json!(100)]
    );
    let silent = rows(&api, 4, "period=day&from=2026-05-25&to=2026-05-26").await;
    assert_eq!(pick(&silent, "quality"), [json!("incomplete")]);

    // Keyset pages: two days a page, the second starting after the first.
    let path = format!(
        "/api/v1/meters/{}/consumption?period=day&from=2026-03-28&to=2026-03-31&limit=2",
        dev_eui(1)
    );
    let first = api.get(&path).await.json();
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = api.get(&format!("{path}&cursor={cursor}")).await.json();
    assert_eq!(
        second["items"][0]["periodStart"],
        "2026-03-30T00:00:00+02:00"
    );
    assert_eq!(second["nextCursor"], Value::Null);

    // The command: every meter's days as CSV and as JSON, the same rows as the API's.
    let days = "--from=2026-03-28";
    let csv = report(&api, &[days, "--to=2026-03-31", "--format=csv"]).await;
    let json: Vec<Value> =
        serde_json::from_slice(&report(&api, &[days, "--to=2026-03-31", "--format=json"]).await)
            .expect("a JSON array");
    let mut lines = csv::Reader::from_reader(csv.as_slice());
    let header: Vec<String> = lines
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert!(
        header.contains(&"gasCubicMetres".to_owned()) && header.contains(&"energyKwh".to_owned())
    );
    let parsed: Vec<Vec<String>> = lines
        .records()
        .map(|r| r.expect("a CSV row").iter().map(String::from).collect())
        .collect();
    assert_eq!(parsed.len(), 4 * 3, "three days of four meters");
    assert_eq!(parsed.len(), json.len());
    for (line, object) in parsed.iter().zip(&json) {
        let as_text: Vec<String> = header
            .iter()
            .map(|c| match &object[c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(line, &as_text, "CSV and JSON rows agree");
    }
    let first_meter: Vec<Value> = json
        .iter()
        .filter(|r| r["devEui"] == dev_eui(1))
        .map(|r| {
            let mut r = r.clone();
            for f in ["devEui", "serial", "region", "usageType"] {
                r.as_object_mut().expect("object").remove(f);
            }
            r
        })
        .collect();
    assert_eq!(first_meter, spring, "the command's rows are the API's");

    region_totals(&api).await;
    export(&api).await;
    api.stop().await;
}

/// The fixture's region (all four meters are in `north`, residential): totals per day and
/// counts of meters by quality.
async fn region_totals(api: &TestApi) {
    let path = "/api/v1/regions/north/consumption?period=day&from=2026-05-09&to=2026-05-13";
    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let days = r.json()["items"].as_array().expect("items").clone();
    assert_eq!(
        pick(&days, "periodStart"),
        ["09", "10", "11", "12"].map(|d| json!(format!("2026-05-{d}T00:00:00+02:00")))
    );
    // Meter 4 is measured, then invalid twice, then measured; the three others have no
    // reading in May: incomplete.
    let meters = pick(&days, "meters");
    assert_eq!(
        meters[0],
        json!({"measured": 1, "estimated": 0, "incomplete": 3, "invalid": 0})
    );
    assert_eq!(
        meters[1],
        json!({"measured": 0, "estimated": 0, "incomplete": 3, "invalid": 1})
    );
    assert_eq!(
        pick(&days, "gasLitres"),
        [json!(100), json!(0), json!(0), json!(100)]
    );
    assert_eq!(days[0]["gasCubicMetres"], json!(0.1));
    assert_eq!(days[0]["usageTypes"][0]["usageType"], "residential");
    assert_eq!(days[0]["usageTypes"][0]["gasLitres"], 100);
    assert_eq!(days[0]["usageTypes"][0]["meters"], meters[0]);
    assert_eq!(days[0]["usageTypes"].as_array().map(Vec::len), Some(1));

    // The spring day: only meter 1 was read, hourly.
    let spring = "/api/v1/regions/north/consumption?period=day&from=2026-03-28&to=2026-03-31";
    let first = api.get(&format!("{spring}&limit=2")).await.json();
    assert_eq!(
        pick(first["items"].as_array().expect("items"), "gasLitres"),
        [json!(24), json!(23)]
    );
    assert_eq!(first["items"][1]["energyWh"], 230);
    assert_eq!(first["items"][1]["meters"]["measured"], 1);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = api.get(&format!("{spring}&limit=2&cursor={cursor}")).await;
    assert_eq!(second.header("x-cache"), Some("miss"));
    let second = second.json();
    assert_eq!(
        second["items"][0]["periodStart"],
        "2026-03-30T00:00:00+02:00"
    );
    assert_eq!(second["items"][0]["gasLitres"], 24);
    assert_eq!(second["nextCursor"], Value::Null);
    api.get_until_cached(&format!("{spring}&limit=2")).await;

    let none = api.get("/api/v1/regions/atlantis/consumption").await;
    assert_eq!(none.status, 404, "{}", none.text());
}

/// A billing run's export: JSON pages of meters, and the same rows as streamed CSV.
async fn export(api: &TestApi) {
    let base = "/api/v1/consumption?period=day&month=2026-05";
    let mut json_rows = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}&limit=3&cursor={c}"),
            None => format!("{base}&limit=3"),
        };
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        json_rows.extend(page["items"].as_array().expect("items").iter().cloned());
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 2, "three meters, then one");
    assert_eq!(json_rows.len(), 4 * 31, "May's days of four meters");
    let tenth: Vec<&Value> = json_rows
        .iter()
        .filter(|r| r["devEui"] == dev_eui(4) && r["periodStartUtc"] == "2026-05-09T22:00:00Z")
        .collect();
    assert_eq!(tenth.len(), 1);
    assert_eq!(tenth[0]["quality"], "invalid");
    assert_eq!(tenth[0]["region"], "north");

    let csv = request(
        api.addr,
        "GET",
        base,
        Some(&api.viewer),
        None,
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(
        csv.header("content-type")
            .is_some_and(|c| c.starts_with("text/csv")),
        "{:?}",
        csv.headers
    );
    let mut lines = csv::Reader::from_reader(csv.body.as_slice());
    let header: Vec<String> = lines
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    for unit in ["gasLitres", "gasCubicMetres", "energyWh", "energyKwh"] {
        assert!(header.contains(&unit.to_owned()), "{header:?}");
    }
    let parsed: Vec<Vec<String>> = lines
        .records()
        .map(|r| r.expect("a CSV row").iter().map(String::from).collect())
        .collect();
    assert_eq!(parsed.len(), json_rows.len());
    for (line, object) in parsed.iter().zip(&json_rows) {
        let as_text: Vec<String> = header
            .iter()
            .map(|c| match &object[c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(line, &as_text, "the CSV and JSON exports agree row for row");
    }

    // The month itself: one row a meter; meter 4's register went backwards in it.
    let month = api
        .get("/api/v1/consumption?month=2026-05&region=north")
        .await;
    let rows = month.json()["items"].as_array().expect("items").clone();
    assert_eq!(
        pick(&rows, "quality"),
        ["incomplete", "incomplete", "incomplete", "invalid"].map(|q| json!(q))
    );
    let paged = request(
        api.addr,
        "GET",
        &format!("{base}&limit=3"),
        Some(&api.viewer),
        None,
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!(paged.status, 400, "{}", paged.text());
    let none = api
        .get("/api/v1/consumption?month=2026-05&region=atlantis")
        .await;
    assert_eq!(none.status, 404, "{}", none.text());
}

/// `meterhub report consumption --period day ARGS` on the test's database, in Madrid.
async fn report(api: &TestApi, args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .args(["report", "consumption", "--period", "day"])
        .args(args)
        .arg(format!("--database-url={}", api.env.db.url()))
        .env("METERHUB_UTILITY__TIME_ZONE", "Europe/Madrid")
        .env_remove("METERHUB_CONFIG")
        .output()
        .await
        .expect("run meterhub");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("12 rows for 4 meters"), "{err}");
    out.stdout
}

#[tokio::test]
async fn consumption_across_dst_leap_days_wraps_and_gaps_sqlite() {
    consumption(Dialect::Sqlite).await;
}

#[tokio::test]
async fn consumption_across_dst_leap_days_wraps_and_gaps_postgres() {
    consumption(Dialect::Postgres).await;
}

/// A cached consumption answer is dropped when ingest stores a reading of its meter.
async fn ingest_invalidates(dialect: Dialect) {
    use crate::support::{days_ago, ingest, meter_body, reading_event};
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let r = api.post("/api/v1/meters", Some(meter_body(1))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let event = |d: i64, litres: u32| {
        let id = uuid::Uuid::new_v4().to_string();
        (1, reading_event(1, &id, days_ago(d), Utc::now(), litres))
    };
    ingest(&api, vec![event(3, 1_000), event(2, 2_000)], 2).await;
    let path = format!(
        "/api/v1/meters/{}/consumption?period=day&from={}&to={}",
        dev_eui(1),
        days_ago(3).date_naive(),
        days_ago(1).date_naive()
    );
    let first = api.get(&path).await;
    assert_eq!(first.header("x-cache"), Some("miss"));
    let items = first.json()["items"].clone();
    assert_eq!(
        pick(items.as_array().expect("rows"), "quality"),
        [json!("measured"), json!("incomplete")]
    );
    api.get_until_cached(&path).await;
    ingest(&api, vec![event(1, 2_500)], 3).await;
    let after = api.get(&path).await;
    assert_ne!(after.header("x-cache"), Some("hit"));
    assert_eq!(after.json()["items"][1]["gasLitres"], 500);
    api.stop().await;
}

#[tokio::test]
async fn ingest_invalidates_cached_consumption_sqlite() {
    ingest_invalidates(Dialect::Sqlite).await;
}

#[tokio::test]
async fn ingest_invalidates_cached_consumption_postgres() {
    ingest_invalidates(Dialect::Postgres).await;
}

/// A register going backwards raises one `registerBackwards` alarm: not again when the same
/// readings are delivered again, nor when its consumption is read again and again.
async fn backwards_alarm_once(dialect: Dialect) {
    use crate::support::{days_ago, ingest, meter_body, reading_event};
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let r = api.post("/api/v1/meters", Some(meter_body(1))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ids: Vec<String> = (0..6).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let event = |k: usize, d: i64, litres: u32| {
        (
            1,
            reading_event(1, &ids[k], days_ago(d), Utc::now(), litres),
        )
    };
    let first = vec![
        event(0, 6, 5_000_000),
        event(1, 5, 5_000_100),
        event(2, 4, 4_000_000),
        event(3, 3, 4_000_100),
    ];
    ingest(&api, first.clone(), 4).await;
    // At least once: the same events again, then one new reading behind them.
    let mut again = first;
    again.push(event(4, 2, 4_000_200));
    ingest(&api, again, 5).await;
    let path = format!(
        "/api/v1/meters/{}/consumption?period=day&from={}&to={}",
        dev_eui(1),
        days_ago(6).date_naive(),
        days_ago(2).date_naive()
    );
    for _ in 0..3 {
        let r = api.get_uncached(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let rows = r.json()["items"].as_array().expect("rows").clone();
        assert!(
            pick(&rows, "quality").contains(&json!("invalid")),
            "{rows:?}"
        );
    }
    let alarms = api
        .get(&format!(
            "/api/v1/alarms?meter={}&kind=registerBackwards",
            dev_eui(1)
        ))
        .await
        .json();
    let items = alarms["items"].as_array().expect("alarms");
    assert_eq!(items.len(), 1, "{alarms}");
    assert_eq!(items[0]["value"], -1_000_100);
    assert_eq!(items[0]["source"], "server");
    let stored: Vec<_> = api
        .env
        .store
        .alarms(None, i64::MAX, 100)
        .await
        .expect("alarms")
        .into_iter()
        .filter(|a| a.kind == "registerBackwards")
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].occurrences, 1, "raised once");
    api.stop().await;
}

#[tokio::test]
async fn a_register_going_backwards_raises_one_alarm_sqlite() {
    backwards_alarm_once(Dialect::Sqlite).await;
}

#[tokio::test]
async fn a_register_going_backwards_raises_one_alarm_postgres() {
    backwards_alarm_once(Dialect::Postgres).await;
}

/// Madrid's local midnight starting `day`.
fn madrid_midnight(day: chrono::NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone;
    chrono_tz::Europe::Madrid
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("Madrid's midnights exist")
        .to_utc()
}

/// Waits up to 30 s for `row(GET path)` to satisfy `done`; returns the last answer.
async fn wait_row(api: &TestApi, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        if done(&v) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The month a scheduler starting now closes first in Madrid with three days' grace: the one
/// before the month of the day three days ago (that month's end plus the grace is still to
/// come, the one before it has passed).
fn month_closed_first() -> chrono::NaiveDate {
    use chrono::{Datelike, Months};
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Madrid)
        .date_naive();
    let d = today - chrono::Days::new(3);
    d.with_day(1).expect("first") - Months::new(1)
}

/// `meterhub report consumption --period month --month M --format F` on the test's database.
async fn report_month(api: &TestApi, month: &str, format: &str) -> Vec<u8> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .args([
            "report",
            "consumption",
            "--period",
            "month",
            "--month",
            month,
        ])
        .arg(format!("--format={format}"))
        .arg(format!("--database-url={}", api.env.db.url()))
        .env("METERHUB_UTILITY__TIME_ZONE", "Europe/Madrid")
        .env_remove("METERHUB_CONFIG")
        .output()
        .await
        .expect("run meterhub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The CSV rows of an export as JSON-like objects (every value text).
fn csv_rows(body: &[u8]) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = csv::Reader::from_reader(body);
    let header: Vec<String> = lines
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    lines
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.expect("a CSV row").iter().map(String::from))
                .collect()
        })
        .collect()
}

/// A month closed past its grace keeps its published figure when a late reading arrives:
/// the reading adds a revision, listed per meter, in the export (JSON and CSV) and by the
/// command. Closing again changes nothing; periods within their grace stay open. The late
/// reading is lower than the meter's latest but fits between its neighbours in time: no
/// `registerBackwards` alarm; a late reading that does go back raises one.
async fn closed_periods_and_revisions(dialect: Dialect) {
    use crate::support::{ingest, reading_event};
    use chrono::{Days, Months};
    let month = month_closed_first();
    let next_month = month + Months::new(1);
    let (start, end) = (madrid_midnight(month), madrid_midnight(next_month));
    // Daily readings at Madrid midnight from the month's first day to eight days before its
    // end, then silence: the month's end has no reading within the 7-day gap.
    let mut seeded = Vec::new();
    let last_day = next_month - Days::new(8);
    let mut day = month;
    let mut litres = 10_000;
    while day <= last_day {
        seeded.push((madrid_midnight(day), litres));
        day = day + Days::new(1);
        litres += 100;
    }
    let last_litres = litres - 100;
    let count = seeded.len() as i64;
    let Some(api) = TestApi::start_seeded(
        dialect,
        |s| {
            s.utility.time_zone = "Europe/Madrid".to_owned();
            s.billing.grace_days = 3;
        },
        move |env| {
            Box::pin(async move {
                env.register(1).await;
                let m = env.store.meter_by_dev_eui(&dev_eui(1)).await;
                let id = m.expect("query").expect("meter").id;
                let rows: Vec<StoredReading> = seeded
                    .iter()
                    .map(|(at, litres)| reading(id, *at, *litres, None))
                    .collect();
                env.store.insert_readings(&rows).await.expect("insert");
            })
        },
    )
    .await
    else {
        return;
    };
    let meter = dev_eui(1);
    let month_path = format!(
        "/api/v1/meters/{meter}/consumption?period=month&from={month}&to={}",
        month + Days::new(1)
    );
    let closed = |v: &Value| !v["items"][0]["closedAt"].is_null();
    let published = wait_row(&api, &month_path, closed).await["items"][0].clone();
    assert!(
        closed(&json!({ "items": [published.clone()] })),
        "{published}"
    );
    assert_eq!(published["quality"], "incomplete", "{published}");
    assert_eq!(published["gasLitres"], Value::Null);
    assert_eq!(published["revisions"], 0);
    assert_eq!(published["periodStartUtc"], json!(start));

    // Within the grace: the month after, and the last three days, stay open; the day before
    // them closes.
    let after = api
        .get(&format!(
            "/api/v1/meters/{meter}/consumption?period=month&from={next_month}&to={}",
            next_month + Days::new(1)
        ))
        .await
        .json();
    assert_eq!(after["items"][0]["closedAt"], Value::Null, "{after}");
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Madrid)
        .date_naive();
    let days_path = |from: chrono::NaiveDate, to: chrono::NaiveDate| {
        format!("/api/v1/meters/{meter}/consumption?period=day&from={from}&to={to}")
    };
    let due = today - Days::new(4);
    let closed_day = wait_row(&api, &days_path(due, due + Days::new(1)), closed).await;
    assert!(closed(&closed_day), "{closed_day}");
    let open = api
        .get(&days_path(today - Days::new(3), today + Days::new(1)))
        .await
        .json();
    assert_eq!(
        pick(open["items"].as_array().expect("days"), "closedAt"),
        vec![Value::Null; 4]
    );

    // The meter speaks again (yesterday, far above), then the reading of the month's end
    // arrives late: lower than the latest, but between its neighbours in time.
    let id = |_: u32| uuid::Uuid::new_v4().to_string();
    let high = last_litres + 10_000;
    let yesterday = crate::support::days_ago(1);
    ingest(
        &api,
        vec![(
            1,
            reading_event(1, &id(0), yesterday, Utc::now(), high as u32),
        )],
        count + 1,
    )
    .await;
    let at_end = last_litres + 800;
    ingest(
        &api,
        vec![(1, reading_event(1, &id(1), end, Utc::now(), at_end as u32))],
        count + 2,
    )
    .await;
    let revisions_path = format!("/api/v1/meters/{meter}/consumption/revisions");
    let monthly = |v: &Value| -> Vec<Value> {
        v["items"]
            .as_array()
            .expect("revisions")
            .iter()
            .filter(|r| r["period"] == "month")
            .cloned()
            .collect()
    };
    let listed = wait_row(&api, &revisions_path, |v| !monthly(v).is_empty()).await;
    let revisions = monthly(&listed);
    assert_eq!(revisions.len(), 1, "{listed}");
    let r = &revisions[0];
    assert_eq!(r["revision"], 1);
    assert_eq!(r["reason"], "lateReading");
    assert_eq!(r["readingTime"], json!(end));
    assert_eq!(
        (&r["oldQuality"], &r["oldGasLitres"]),
        (&json!("incomplete"), &Value::Null)
    );
    assert_eq!(r["quality"], "measured", "{r}");
    assert_eq!(r["gasLitres"], at_end - 10_000);
    assert_eq!(r["gasRegisterEnd"], at_end);
    assert_eq!(r["periodStart"], json!(published["periodStart"]));

    // The published figure stays; the row says it was revised, and to what.
    let now = wait_row(&api, &month_path, |v| v["items"][0]["revisions"] == 1).await;
    let row = &now["items"][0];
    assert_eq!(row["quality"], "incomplete", "{row}");
    assert_eq!(row["gasLitres"], Value::Null);
    assert_eq!(row["closedAt"], published["closedAt"]);
    assert_eq!(row["revisions"], 1);
    assert_eq!(row["revisedQuality"], "measured");
    assert_eq!(row["revisedGasLitres"], at_end - 10_000);
    assert_eq!(row["revisedAt"], r["revisedAt"]);

    // No alarm: the late reading fits the series by time.
    let alarms_path = format!("/api/v1/alarms?meter={meter}&kind=registerBackwards");
    let alarms = api.get_uncached(&alarms_path).await.json();
    assert_eq!(
        alarms["items"].as_array().map(Vec::len),
        Some(0),
        "{alarms}"
    );

    // The export, as JSON pages and as CSV, and the command carry the same.
    let label = month.format("%Y-%m").to_string();
    let export = api
        .get(&format!("/api/v1/consumption?month={label}"))
        .await
        .json();
    let items = export["items"].as_array().expect("rows");
    assert_eq!(items.len(), 1, "{export}");
    let mut expected = row.clone();
    for (k, v) in [
        ("devEui", json!(meter)),
        ("serial", items[0]["serial"].clone()),
        ("region", json!("north")),
        ("usageType", json!("residential")),
    ] {
        expected[k] = v;
    }
    assert_eq!(items[0], expected, "the export's row is the meter's");
    let csv = request(
        api.addr,
        "GET",
        &format!("/api/v1/consumption?month={label}"),
        Some(&api.viewer),
        None,
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    let lines = csv_rows(&csv.body);
    assert_eq!(lines.len(), 1);
    for (column, value) in [
        ("quality", "incomplete"),
        ("gasLitres", ""),
        ("revisions", "1"),
        ("revisedQuality", "measured"),
        ("revisedGasLitres", &(at_end - 10_000).to_string()),
    ] {
        assert_eq!(lines[0][column], value, "{column}: {:?}", lines[0]);
    }
    assert_eq!(
        Some(&lines[0]["closedAt"]),
        row["closedAt"].as_str().map(String::from).as_ref()
    );
    let command: Vec<Value> =
        serde_json::from_slice(&report_month(&api, &label, "json").await).expect("JSON");
    assert_eq!(
        command,
        vec![expected.clone()],
        "the command's rows are the API's"
    );
    let command_csv = csv_rows(&report_month(&api, &label, "csv").await);
    assert_eq!(command_csv, lines, "the command's CSV is the API's");

    // Closing again (a second holder of the lease) adds nothing and changes nothing.
    let store = &api.env.store;
    let meter_id = store
        .meter_by_dev_eui(&meter)
        .await
        .expect("query")
        .expect("meter")
        .id;
    let days = (month, month + Days::new(1));
    let stored = store
        .closed_of_meter(meter_id, "month", days)
        .await
        .expect("closed");
    assert_eq!(stored.len(), 1);
    let mut again = stored[0].clone();
    again.figures.quality = "measured".into();
    again.figures.gas_litres = Some(1);
    again.closed_at = Utc::now();
    let (new, ()) = store
        .close_periods(&[again], |_| ())
        .await
        .expect("close again");
    assert_eq!(new, 0);
    assert_eq!(
        store
            .closed_of_meter(meter_id, "month", days)
            .await
            .expect("closed"),
        stored
    );
    let settings = {
        let mut s = api.env.settings("calendar");
        s.utility.time_zone = "Europe/Madrid".to_owned();
        s
    };
    let calendar =
        meterhub::billing::Calendar::new(&settings.utility, &settings.billing).expect("calendar");
    let next = meterhub::billing::closing::next_closing(
        store,
        &calendar,
        meterhub::billing::PeriodKind::Month,
        Utc::now(),
        100,
    )
    .await
    .expect("next closing");
    assert!(
        next.is_none(),
        "the month is closed, the next within its grace"
    );

    // A late reading that does go back (below the one before it in time) raises the alarm,
    // once, and revises the month again: invalid now, still published as it was.
    let back = last_litres - 50;
    ingest(
        &api,
        vec![(
            1,
            reading_event(
                1,
                &id(2),
                madrid_midnight(last_day + Days::new(1)),
                Utc::now(),
                back as u32,
            ),
        )],
        count + 3,
    )
    .await;
    let listed = wait_row(&api, &revisions_path, |v| monthly(v).len() == 2).await;
    let second = monthly(&listed)[1].clone();
    assert_eq!(
        (&second["revision"], &second["quality"]),
        (&json!(2), &json!("invalid")),
        "{listed}"
    );
    assert_eq!(
        (&second["oldQuality"], &second["oldGasLitres"]),
        (&json!("measured"), &json!(at_end - 10_000))
    );
    let row = wait_row(&api, &month_path, |v| v["items"][0]["revisions"] == 2).await;
    assert_eq!(row["items"][0]["quality"], "incomplete");
    assert_eq!(row["items"][0]["revisedQuality"], "invalid");
    let alarms = api.get_uncached(&alarms_path).await.json();
    let items = alarms["items"].as_array().expect("alarms");
    assert_eq!(items.len(), 1, "{alarms}");
    assert_eq!(items[0]["value"], -50);

    // Retention removes the month's readings (on PostgreSQL, the UTC months holding them):
    // the closed figure and its revisions are served as they were.
    let after_month = next_month.and_hms_opt(0, 0, 0).expect("midnight").and_utc() + Days::new(1);
    let retention = meterhub::config::RetentionSettings {
        readings_days: u32::try_from((Utc::now() - after_month).num_days()).ok(),
        ..Default::default()
    };
    let removed = meterhub::retention::run(store, None, &retention, Utc::now(), false)
        .await
        .expect("retention");
    assert!(
        removed.rows() >= u64::try_from(count).unwrap_or(0),
        "{removed:?}"
    );
    let kept = api.get_uncached(&month_path).await.json();
    assert_eq!(kept["items"][0], row["items"][0], "{kept}");
    api.stop().await;
}

#[tokio::test]
async fn a_late_reading_revises_a_closed_month_without_changing_it_sqlite() {
    closed_periods_and_revisions(Dialect::Sqlite).await;
}

#[tokio::test]
async fn a_late_reading_revises_a_closed_month_without_changing_it_postgres() {
    closed_periods_and_revisions(Dialect::Postgres).await;
}

/// Closes periods of `kind` as the scheduler does under its lease at `now`: the next chunk
/// (here two meters) at a time, until nothing is left to close.
async fn close_all(
    store: &meterhub::storage::Store,
    calendar: &meterhub::billing::Calendar,
    kind: meterhub::billing::PeriodKind,
    now: DateTime<Utc>,
) {
    for _ in 0..100 {
        let Some(c) = meterhub::billing::closing::next_closing(store, calendar, kind, now, 2)
            .await
            .expect("closing")
        else {
            return;
        };
        store.close_periods(&c.rows, |_| ()).await.expect("close");
    }
    panic!("closing never ends");
}

/// A meter registered after months closed gets, when it is first closed, rows for every
/// earlier closed month it has readings for, and none for those it has not.
async fn new_meter_backfill(dialect: Dialect) {
    use meterhub::billing::{Calendar, PeriodKind};
    let Some(env) = crate::support::Env::new(dialect).await else {
        return;
    };
    let store = &env.store;
    let calendar = Calendar {
        time_zone: chrono_tz::UTC,
        ..Calendar::default()
    };
    let id_of = |n: u32| async move {
        store
            .meter_by_dev_eui(&dev_eui(n))
            .await
            .expect("query")
            .expect("meter")
            .id
    };
    let day = Duration::days(1);
    env.register(1).await;
    let first = id_of(1).await;
    let rows = series(
        first,
        "2026-01-01T00:00:00Z",
        "2026-06-10T00:00:00Z",
        day,
        1_000,
        100,
    );
    store.insert_readings(&rows).await.expect("insert");
    // March closes first (nothing was closed before), then April a month later.
    close_all(
        store,
        &calendar,
        PeriodKind::Month,
        at("2026-04-10T00:00:00Z"),
    )
    .await;
    close_all(
        store,
        &calendar,
        PeriodKind::Month,
        at("2026-05-10T00:00:00Z"),
    )
    .await;
    // Two meters join: the second with readings from March 20th, the third from May 5th.
    env.register(3).await;
    let (second, third) = (id_of(2).await, id_of(3).await);
    let rows = series(
        second,
        "2026-03-20T00:00:00Z",
        "2026-06-10T00:00:00Z",
        day,
        5_000,
        200,
    );
    store.insert_readings(&rows).await.expect("insert");
    let rows = series(
        third,
        "2026-05-05T00:00:00Z",
        "2026-06-10T00:00:00Z",
        day,
        9_000,
        300,
    );
    store.insert_readings(&rows).await.expect("insert");
    close_all(
        store,
        &calendar,
        PeriodKind::Month,
        at("2026-06-10T00:00:00Z"),
    )
    .await;

    let months = |id: i64| async move {
        let from = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let to = chrono::NaiveDate::from_ymd_opt(2026, 7, 1).expect("date");
        store
            .closed_of_meter(id, "month", (from, to))
            .await
            .expect("closed")
            .into_iter()
            .map(|c| {
                (
                    c.first_day.to_string(),
                    c.figures.quality,
                    c.figures.gas_litres,
                )
            })
            .collect::<Vec<_>>()
    };
    let row = |d: &str, q: &str, l: Option<i64>| (d.to_owned(), q.to_owned(), l);
    assert_eq!(
        months(first).await,
        vec![
            row("2026-03-01", "measured", Some(3_100)),
            row("2026-04-01", "measured", Some(3_000)),
            row("2026-05-01", "measured", Some(3_100)),
        ]
    );
    // March: its start has no reading within the gap, but the meter read in it.
    assert_eq!(
        months(second).await,
        vec![
            row("2026-03-01", "incomplete", None),
            row("2026-04-01", "measured", Some(6_000)),
            row("2026-05-01", "measured", Some(6_200)),
        ]
    );
    // Nothing before May: no closed March; April, the month being closed when it came, is
    // closed for every meter (incomplete, as May: no reading near its start).
    assert_eq!(
        months(third).await,
        vec![
            row("2026-04-01", "incomplete", None),
            row("2026-05-01", "incomplete", None),
        ]
    );
}

#[tokio::test]
async fn a_new_meter_is_closed_for_every_earlier_period_it_has_readings_for_sqlite() {
    new_meter_backfill(Dialect::Sqlite).await;
}

#[tokio::test]
async fn a_new_meter_is_closed_for_every_earlier_period_it_has_readings_for_postgres() {
    new_meter_backfill(Dialect::Postgres).await;
}
