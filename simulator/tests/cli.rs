//! The `meterhub-sim` binary's flags: the registry's application id, the clock the udp
//! transport accepts and the faults it refuses, the clock's range, and its JSON summary.

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meterhub-sim"))
        .args(args)
        .output()
        .expect("meterhub-sim runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_registry_carries_the_application_id_given() {
    let id = "9a1c4f2e-5b7d-4e83-a0c6-2d8f1e3b7a95";
    let out = sim(&["registry", "--meters", "3", "--application-id", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row.split(',').nth(2), Some(id), "{row}");
    }
    // Upper case is written as ChirpStack writes ids: lower case, hyphenated.
    let out = sim(&[
        "registry",
        "--meters",
        "1",
        "--application-id",
        &id.to_uppercase(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
}

#[test]
fn a_malformed_application_id_is_refused_naming_the_flag() {
    let out = sim(&["registry", "--application-id", "app-1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--application-id"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_udp_transport_refuses_an_accelerated_clock_unless_allowed() {
    let out = sim(&["run", "--transport", "udp", "--clock-speed", "60"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("real time") && err.contains("--allow-accelerated-clock"),
        "{err}"
    );
}

#[test]
fn the_udp_transport_writes_its_summary_as_json() {
    let dir = std::env::temp_dir().join(format!("meterhub-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("summary.json");
    // A bridge that is not there: the run sends into the void for two seconds and reports.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
    let gateway = socket.local_addr().expect("address").to_string();
    drop(socket);
    let out = sim(&[
        "run",
        "--transport",
        "udp",
        "--gateway",
        &gateway,
        "--meters",
        "4",
        "--days",
        "0.00002",
        "--summary-json",
        path.to_str().expect("utf-8 path"),
        "--garbled",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("summary written")).expect("JSON");
    assert_eq!(json["transport"], "udp");
    assert_eq!(json["faults"]["garbled"], 0, "no meter joined the void");
    assert_eq!(json["faults"]["lost"], 0);
    assert_eq!(json["meters"], 4);
    assert_eq!(
        json["expectedReadingsByMeter"].as_array().map(Vec::len),
        Some(4)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_udp_transport_refuses_each_fault_it_cannot_play_by_name() {
    let cases: [(&[&str], &str); 3] = [
        (&["--reorder", "0.1"], "--reorder"),
        (&["--skip-f-cnt-check"], "--skip-f-cnt-check"),
        (&["--second-path", "0.1"], "--gateways 2"),
    ];
    for (flags, named) in cases {
        let out = sim(&[&["run", "--transport", "udp", "--loss", "0.1"][..], flags].concat());
        assert!(!out.status.success(), "{flags:?} ran");
        let err = stderr(&out);
        assert!(err.contains(named), "{flags:?}: {err}");
    }
}

#[test]
fn one_address_per_gateway_or_one_for_all() {
    let out = sim(&[
        "run",
        "--transport",
        "udp",
        "--gateways",
        "3",
        "--gateway",
        "127.0.0.1:1700",
        "--gateway",
        "127.0.0.1:1701",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("once per gateway"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_refuses_a_clock_that_leaves_what_a_meter_can_show_before_starting() {
    let registry =
        std::env::temp_dir().join(format!("meterhub-sim-cli-{}.csv", std::process::id()));
    let registry = registry.to_str().expect("utf-8 path");
    // No broker listens on port 1: a run that started would fail differently.
    let base = [
        "run",
        "--meters",
        "3",
        "--mqtt-url",
        "mqtt://127.0.0.1:1",
        "--clock-speed",
        "86400",
        "--registry",
        registry,
    ];
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(365)).to_rfc3339();
    let cases: [(&[&str], &str); 3] = [
        // Anchored a year ago at a day per second: tens of thousands of years on.
        (
            &[
                "--clock-start",
                "2026-01-01T00:00:00Z",
                "--clock-anchor",
                &year_ago,
            ],
            "--clock-anchor",
        ),
        (&["--clock-start", "1975-01-01T00:00:00Z"], "--clock-start"),
        (
            &["--clock-start", "2115-06-01T00:00:00Z", "--days", "365"],
            "--days",
        ),
    ];
    for (flags, named) in cases {
        let out = sim(&[&base[..], flags].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} ran");
        assert!(err.contains(named), "{flags:?}: {err}");
        assert!(!std::path::Path::new(registry).exists(), "{flags:?} wrote");
    }
}
