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
