//! The `meterhub` binary's command line.

use std::process::Command;

fn meterhub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .args(args)
        .output()
        .expect("run meterhub")
}

#[test]
fn help_lists_the_subcommands() {
    let out = meterhub(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("decode") && text.contains("encode"), "{text}");
}

#[test]
fn decode_prints_the_json_of_a_clock_sync_request() {
    let out = meterhub(&["decode", "--fport", "202", "01 00 04 00 00 1f"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["commands"][0]["command"], "appTimeReq");
    assert_eq!(json["commands"][0]["deviceTime"], 1024);
}

#[test]
fn encode_prints_port_and_hex_of_a_command() {
    let out = meterhub(&[
        "encode",
        r#"{"message":"command","command":"setReportingInterval","minutes":60}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fPort 10: 01063c00"
    );
}

#[test]
fn a_bad_frame_fails_with_the_protocol_error() {
    let out = meterhub(&["decode", "--fport", "2", "0105"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("frame too short: expected 11 bytes, found 2"),
        "{err}"
    );
}

#[test]
fn text_that_is_not_hex_is_refused_clearly() {
    let out = meterhub(&["decode", "--fport", "1", "zz"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid hex"));
}

#[test]
fn configfile_prints_commented_defaults_that_parse_as_toml() {
    let out = meterhub(&["configfile"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# meterhub settings"), "{text}");
    let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert_eq!(
        parsed["database"]["url"].as_str(),
        Some("sqlite://./meterhub.db")
    );
}

#[test]
fn retention_dry_run_prints_each_set_table_with_its_cutoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/m.db", dir.path().display());
    let out = Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .args(["retention", "--dry-run", "--database-url", &db])
        .env("METERHUB_RETENTION__AUDIT_DAYS", "30")
        .output()
        .expect("run meterhub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["dryRun"], true);
    let tables = report["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 1, "{report}");
    assert_eq!(tables[0]["table"], "meter_audit");
    assert_eq!(tables[0]["rows"], 0);
    assert!(tables[0]["cutoff"].is_string());

    // A readings retention too short for billing is refused, naming the setting.
    let out = Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .args(["retention", "--database-url", &db])
        .env("METERHUB_RETENTION__READINGS_DAYS", "10")
        .output()
        .expect("run meterhub");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retention.readings_days"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn migrate_then_import_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/m.db", dir.path().display());
    let out = meterhub(&["migrate", "--database-url", &db]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));

    let file = dir.path().join("meters.csv");
    std::fs::write(
        &file,
        "serial,dev_eui,application_id,body_number,user_id,region,usage_type,mode,production_date\n\
         12261000012348,70b3d5e75e000001,0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f,1,u1,north,residential,credit,2026-03-15\n\
         12261000012349,70b3d5e75e000002,0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f,2,u2,north,residential,credit,2026-03-15\n",
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    let out = meterhub(&["meters", "import", &file, "--database-url", &db]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a refused row makes the exit status a failure"
    );
    assert!(
        stdout.contains("line 3: serial: bad check digit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 new, 0 updated, 0 unchanged, 1 refused"),
        "{stdout}"
    );
}

/// The accelerated clock is a pure function of wall time: another process given the same
/// speed, start and anchor maps the same wall instant to the same simulated time.
#[test]
fn an_accelerated_clock_agrees_with_another_process() {
    use firmware_protocol::clock::Clock;
    let start = "2026-01-01T00:00:00Z";
    // Anchored a few seconds ago, on whatever day the test runs.
    let anchor = chrono::Utc::now() - chrono::Duration::seconds(5);
    let anchor_text = anchor.to_rfc3339();
    let out = meterhub(&[
        "clock",
        "--clock-speed",
        "86400",
        "--clock-start",
        start,
        "--clock-anchor",
        &anchor_text,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let wall = report["wallUnixMicros"].as_i64().expect("wall");
    let theirs = report["simulatedUnixMicros"].as_i64().expect("simulated");
    let start = chrono::DateTime::parse_from_rfc3339(start).expect("valid");
    let anchor = chrono::DateTime::parse_from_rfc3339(&anchor_text).expect("valid");
    let ours = Clock::accelerated_from(86_400, start.into(), anchor.into()).expect("speed > 0");
    let difference = (ours.at_wall_unix_micros(wall) - theirs).abs();
    // At 86 400× a wall microsecond is 86 ms simulated: the two may differ by a rounding.
    assert!(difference < 1_000_000, "differ by {difference} µs");
    assert_eq!(report["speed"], 86_400);
    // And the simulated time is a day per wall second past the start.
    let wall_secs = (wall - anchor.timestamp_micros()) as f64 / 1e6;
    let simulated_days = (theirs - start.timestamp_micros()) as f64 / 86_400e6;
    assert!(
        (wall_secs - simulated_days).abs() < 1e-6,
        "{wall_secs} vs {simulated_days}"
    );
}

#[test]
fn a_clock_that_leaves_what_a_meter_can_show_is_refused_naming_the_flag() {
    // The start anchored a year ago, at a day per second: tens of thousands of years on.
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(365)).to_rfc3339();
    let out = meterhub(&[
        "clock",
        "--clock-speed",
        "86400",
        "--clock-start",
        "2026-01-01T00:00:00Z",
        "--clock-anchor",
        &year_ago,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--clock-anchor") && err.contains("2116"),
        "{err}"
    );

    // Anchored now (the default), the same start reads 2026 on any day.
    let out = meterhub(&[
        "clock",
        "--clock-speed",
        "86400",
        "--clock-start",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let simulated = report["simulated"].as_str().expect("simulated");
    assert!(
        simulated.starts_with("2026-") || simulated.starts_with("2027-"),
        "{simulated}"
    );
}

#[test]
fn serve_refuses_an_out_of_range_clock_before_touching_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("never.db");
    let url = format!("sqlite://{}", db.display());
    let out = meterhub(&[
        "serve",
        "--database-url",
        &url,
        "--clock-speed",
        "86400",
        "--clock-start",
        "1979-06-01T00:00:00Z",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--clock-start") && err.contains("1980-01-06"),
        "{err}"
    );
    assert!(!db.exists(), "the database was created");
}

/// `meterhub migrate` against `url`: its stderr, after checking that it failed.
fn failed_start(url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .arg("migrate")
        .env("METERHUB_DATABASE__URL", url)
        .output()
        .expect("run meterhub");
    assert!(!out.status.success(), "migrated {url}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unreachable_database_is_named_with_host_port_and_cause_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let started = std::time::Instant::now();
    let err = failed_start(&format!("postgres://meter:s3cret@127.0.0.1:{port}/billing"));
    for part in [
        format!("127.0.0.1:{port}"),
        "\"billing\"".to_owned(),
        "connection refused".to_owned(),
    ] {
        assert!(err.contains(&part), "{part:?} missing: {err}");
    }
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a refusal needs no time-out"
    );
}

#[test]
fn a_missing_database_is_said_once_with_what_to_do() {
    let Some(url) = test_support::services::require("METERHUB_TEST_DATABASE_URL", "PostgreSQL")
    else {
        return;
    };
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    let err = failed_start(&format!("{base}/meterhub_no_such_database"));
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(err.contains("\"meterhub_no_such_database\""), "{err}");
    assert!(err.contains("createdb"), "{err}");
    assert!(!err.contains(" at line "), "{err}");
}

#[test]
fn a_sqlite_file_in_a_missing_directory_is_named() {
    let err = failed_start("sqlite:///nonexistent-meterhub-dir/x/meterhub.db");
    assert!(
        err.contains("/nonexistent-meterhub-dir/x/meterhub.db"),
        "{err}"
    );
    assert!(err.contains("directory exists"), "{err}");
}

#[test]
fn logs_written_to_a_file_or_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("plain.db").display());
    // No broker listens on port 1: `serve` starts and logs that it cannot reach it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_meterhub"))
        .arg("serve")
        .env("METERHUB_DATABASE__URL", &url)
        .env("METERHUB_MQTT__URL", "mqtt://127.0.0.1:1")
        .env("METERHUB_HTTP__BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run meterhub serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut log = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("stderr is text");
        let logged = line.contains("INFO") || line.contains("WARN");
        log.push(line);
        if logged {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    assert!(
        log.contains("INFO") || log.contains("WARN"),
        "no log line to look at: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
}

/// `meterhub demo` without `--exit` keeps serving once its fleet is done: the pages and the API
/// answer, the admin key it printed signs in, and SIGTERM stops it within the shutdown grace
/// (15 s by default).
#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_serving_after_its_fleet_and_its_printed_key_signs_in() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let database = dir.path().join("demo.db");
    let mut demo = test_support::Process::builder(env!("CARGO_BIN_EXE_meterhub"))
        .args(["demo", "--meters", "20", "--days", "2", "--speed", "864000"])
        .arg("--database")
        .arg(&database)
        .env("METERHUB_HTTP__BIND", "127.0.0.1:0")
        .start()
        .expect("meterhub demo starts");
    let line = demo
        .wait_for_output("keeps serving", Duration::from_secs(300))
        .await
        .expect("the fleet finishes and the demo says it keeps serving");
    assert!(line.contains("readings stored"), "{line}");
    let said = demo
        .wait_for_output("sign in with the admin API key", Duration::from_secs(5))
        .await
        .expect("the sign-in line");
    let (url, key) = said
        .strip_prefix("open ")
        .and_then(|rest| rest.split_once(" in a browser and sign in with the admin API key "))
        .map(|(url, key)| (url.to_owned(), key.trim().to_owned()))
        .unwrap_or_else(|| panic!("an address and a key in {said:?}"));
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    assert!(key.starts_with("mh_"), "{key}");

    // Well after the fleet is done, the server still answers, and the key is an admin's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(demo.is_running(), "{}", demo.output());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let regions = http
        .get(format!("{url}api/v1/regions"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(regions.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&regions.bytes().await.expect("a body")).expect("json");
    assert!(
        body["items"].as_array().is_some_and(|r| !r.is_empty()),
        "the fleet's regions: {body}"
    );
    let keys = http
        .get(format!("{url}api/v1/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(keys.status(), 200, "only an admin lists keys");
    let home = http.get(&url).send().await.expect("the pages answer");
    assert_eq!(home.status(), 303, "the pages ask to sign in");
    let signed_in = http
        .post(format!("{url}signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .expect("the sign-in form answers");
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"/"[..]),
        "signed in"
    );

    let started = Instant::now();
    let status = demo
        .terminate(Duration::from_secs(15 + 10))
        .await
        .expect("SIGTERM stops the demo");
    // A clean stop: the exit status says whether every reading was stored (a loaded machine
    // may leave the count unfinished; the demo then serves all the same).
    assert!(status.code().is_some(), "{status}\n{}", demo.output());
    assert_eq!(
        status.success(),
        demo.stdout().contains("(all stored)"),
        "{status}\n{}",
        demo.output()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15 + 5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        demo.stdout().contains("readings of registered meters"),
        "{}",
        demo.output()
    );
}
