//! Every ```sh block of README.md and docs/*.md runs as written, so a documented command that
//! stops working fails the build.
//!
//! A block is skipped only when the line before its fence is
//! `<!-- example: not run: REASON -->` with a reason. Each document's blocks run in order, each
//! in its own `bash -e -o pipefail`, in one working folder per document (so a file one example
//! writes, such as `meters.csv`, is there for the next). A block fails when a command of it
//! fails; the failure names the file and the line of that command, with its output.
//!
//! What the examples are given, in place of a reader's machine:
//! - `cargo run [--release] -p PACKAGE -- ARGS` runs the binary of PACKAGE this test build
//!   already made (a debug build: building the release profile as well would double CI's
//!   time), through a `cargo` on `PATH` that knows only that form; `meterhub` and
//!   `meterhub-sim` on `PATH` are the same binaries. They are found next to this
//!   test's `meterhub`, so run the check as part of `cargo test --workspace --all-features`
//!   (which builds every binary), or `cargo build --workspace --all-features` first.
//! - `curl` is the system's curl with `--fail-with-body --silent --show-error`: an HTTP error
//!   fails the example. `curl` and `jq` must be installed (`.ci/run` installs them).
//! - The addresses `127.0.0.1:8080` (the REST API) and `127.0.0.1:1883` (the MQTT broker) in an
//!   example's text are replaced by those of a server and a private broker started for the
//!   test (`METERHUB_HTTP__BIND` points `meterhub demo` to a free port too). A document whose
//!   examples call the API gets a `meterhub serve` on SQLite (`./meterhub.db` of its folder),
//!   with API keys in `$KEY` (viewer), `$OPERATOR_KEY` and `$ADMIN_KEY`, and the meter the
//!   examples use (`a1b2c3d4e5000001`, region `north`) registered with one open
//!   magnetic-tamper alarm.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use test_support::{Broker, Process};

/// The marker line that keeps the next block from running.
const MARKER: &str = "<!-- example: not run:";
/// The address the examples reach the REST API at.
const DOC_HTTP: &str = "127.0.0.1:8080";
/// The address the examples reach the MQTT broker at.
const DOC_MQTT: &str = "127.0.0.1:1883";
/// The meter the API examples use, and its registry entry.
const DOC_METER: &str = "a1b2c3d4e5000001";
const DOC_APPLICATION: &str = "3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23";
/// The longest one example may take (the demo and a 30-day simulator run at a day per second).
const EXAMPLE_LIMIT: Duration = Duration::from_secs(600);

/// One fenced block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Example {
    /// 1-based line of the block's first line of code.
    line: usize,
    /// The code, as written.
    code: String,
    /// Why it is not run, when it is marked.
    not_run: Option<String>,
}

/// The ```sh blocks of a Markdown text; an error for a marker without a reason, a marker not
/// followed by a block, or a block left open.
fn examples(text: &str) -> Result<Vec<Example>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut marker: Option<(usize, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(rest) = line.strip_prefix(MARKER) {
            let reason = rest.trim().trim_end_matches("-->").trim();
            if reason.is_empty() || !rest.trim_end().ends_with("-->") {
                return Err(format!(
                    "line {}: a marker needs a reason: `{MARKER} REASON -->`",
                    i + 1
                ));
            }
            marker = Some((i + 1, reason.to_owned()));
            i += 1;
            continue;
        }
        if line.starts_with("```") {
            let fence = &line[..line.len() - line.trim_start_matches('`').len()];
            let lang = line.trim_start_matches('`').trim();
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == fence)
                .ok_or_else(|| format!("line {}: the block is not closed", i + 1))?;
            if lang == "sh" {
                found.push(Example {
                    line: i + 2,
                    code: lines[i + 1..end].join("\n"),
                    not_run: marker.take().map(|(_, reason)| reason),
                });
            } else if let Some((at, _)) = marker.take() {
                return Err(format!(
                    "line {at}: the marker is not followed by a ```sh block"
                ));
            }
            i = end + 1;
            continue;
        }
        if !line.is_empty()
            && let Some((at, _)) = marker.take()
        {
            return Err(format!(
                "line {at}: the marker is not followed by a ```sh block"
            ));
        }
        i += 1;
    }
    if let Some((at, _)) = marker {
        return Err(format!(
            "line {at}: the marker is not followed by a ```sh block"
        ));
    }
    Ok(found)
}

/// The documents whose examples run: README.md and docs/*.md, relative to the workspace.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// An example's code as it runs: the documented addresses replaced by the test's.
fn as_run(code: &str, http: &str, mqtt: &str) -> String {
    code.replace(DOC_HTTP, http).replace(DOC_MQTT, mqtt)
}

/// The script around an example: a failing command reports its line, counted from the
/// block's first line of code.
fn script(code: &str) -> String {
    // Line 1 of the script is the trap, so the example's own lines start at 2.
    format!("trap 'echo \"doc example failed at its line $((LINENO - 1))\" >&2' ERR\n{code}\n")
}

/// The line of the document a failure names, from the script's report.
fn failed_line(example: &Example, stderr: &str) -> usize {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("doc example failed at its line "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(example.line, |n| example.line + n.saturating_sub(1))
}

/// Where the built binaries and the shims the examples run with are.
struct Tools {
    bin: tempfile::TempDir,
    meterhub: PathBuf,
}

impl Tools {
    fn install() -> Tools {
        let meterhub = PathBuf::from(env!("CARGO_BIN_EXE_meterhub"));
        let built = meterhub.parent().expect("target folder").to_path_buf();
        let bin = tempfile::tempdir().expect("tempdir");
        for name in ["meterhub", "meterhub-sim"] {
            let binary = built.join(name);
            assert!(
                binary.exists(),
                "{} is missing: the doc examples run the workspace's binaries; run them with \
                 `cargo test --workspace --all-features` or build first with \
                 `cargo build --workspace --all-features`",
                binary.display()
            );
            std::os::unix::fs::symlink(&binary, bin.path().join(name)).expect("symlink");
        }
        let curl = which("curl");
        let _ = which("jq");
        write_script(
            &bin.path().join("cargo"),
            &format!(
                r#"#!/usr/bin/env bash
# `cargo run [--release] -p PACKAGE -- ARGS`: the already built binary of PACKAGE.
set -e
usage() {{ echo "doc examples map only 'cargo run [--release] -p PACKAGE -- ARGS', not: cargo $*" >&2; exit 97; }}
[ "$1" = run ] || usage "$@"
shift
[ "$1" = --release ] && shift
[ "$1" = -p ] || usage "$@"
package="$2"
shift 2
[ "$#" -eq 0 ] || [ "$1" = -- ] || usage "$@"
[ "$#" -eq 0 ] || shift
exec "{bin}/$package" "$@"
"#,
                bin = bin.path().display()
            ),
        );
        write_script(
            &bin.path().join("curl"),
            &format!(
                "#!/bin/sh\nexec {} --fail-with-body --silent --show-error \"$@\"\n",
                curl.display()
            ),
        );
        Tools { bin, meterhub }
    }

    /// `PATH` with the shims first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed: the doc examples use it (.ci/run installs it)")
        })
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write shim");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A command with the examples' environment: the shims first on `PATH`, no inherited
/// `METERHUB_…` settings.
fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, tools: &Tools) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir).env("PATH", tools.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("METERHUB_") {
            c.env_remove(name);
        }
    }
    c
}

/// Runs a command to its end (bounded), with its output.
fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    let watchdog = std::thread::spawn(move || {
        if waited.recv_timeout(limit).is_err() {
            // Still running: end the example's whole process group.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{pid}")])
                .status();
        }
    });
    let out = child.wait_with_output().expect("wait");
    let _ = done.send(());
    let _ = watchdog.join();
    out
}

/// A `meterhub serve` for a document's API examples, with keys and a meter to talk about.
struct DocServer {
    process: Process,
    http: String,
    keys: BTreeMap<&'static str, String>,
}

impl DocServer {
    async fn start(dir: &Path, broker: &Broker, tools: &Tools) -> DocServer {
        let port = test_support::free_port().expect("port");
        let http = format!("127.0.0.1:{port}");
        let meterhub = |args: &[&str]| {
            let out = run_bounded(
                {
                    let mut c = command(&tools.meterhub, dir, tools);
                    c.args(args);
                    c
                },
                Duration::from_secs(120),
            );
            assert!(
                out.status.success(),
                "meterhub {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        std::fs::write(
            dir.join("doc-meter.csv"),
            format!(
                "serial,devEui,applicationId,bodyNumber,userId,region,usageType,mode,\
                 productionDate\n12261000012348,{DOC_METER},{DOC_APPLICATION},1001,customer-17,\
                 north,residential,credit,2026-01-15\n"
            ),
        )
        .expect("registry");
        meterhub(&["meters", "import", "doc-meter.csv"]);
        let mut keys = BTreeMap::new();
        for (var, role) in [
            ("KEY", "viewer"),
            ("OPERATOR_KEY", "operator"),
            ("ADMIN_KEY", "admin"),
        ] {
            let name = format!("docs-{role}");
            let out = meterhub(&["keys", "create", "--name", name.as_str(), "--role", role]);
            let secret = out
                .lines()
                .find_map(|l| l.strip_prefix("secret "))
                .unwrap_or_else(|| panic!("no secret in {out}"))
                .to_owned();
            keys.insert(var, secret);
        }
        let mqtt_url = format!("mqtt://{}:{}", broker.host(), broker.port());
        let mut process = Process::builder(&tools.meterhub)
            .args([
                "serve",
                "--http-bind",
                http.as_str(),
                "--mqtt-url",
                mqtt_url.as_str(),
            ])
            .current_dir(dir)
            .start()
            .expect("meterhub serve");
        process
            .wait_for_port(port, Duration::from_secs(120))
            .await
            .expect("the server listens");
        let server = DocServer {
            process,
            http,
            keys,
        };
        server.wait_until_ready().await;
        server.raise_alarm(broker).await;
        server
    }

    /// Waits for `/ready`: subscribed at the broker (an event published before is not
    /// delivered to the server) and the database answering.
    async fn wait_until_ready(&self) {
        let url = format!("http://{}/ready", self.http);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new("curl")
                .args(["-sS", "-f", "-o", "/dev/null"])
                .arg(&url)
                .output()
                .expect("curl");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server is not ready: {}",
                self.process.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes a magnetic-tamper alarm of the documented meter, as ChirpStack would, and
    /// waits until the API lists it.
    async fn raise_alarm(&self, broker: &Broker) {
        let frame = firmware_protocol::Uplink::Alarm(firmware_protocol::Alarm {
            kind: firmware_protocol::AlarmKind::MagneticTamper,
            raised: true,
            meter_time: firmware_protocol::GpsTime::from_unix(Utc::now().timestamp() - 3_600)
                .expect("GPS range"),
            value: 3,
        });
        let mut buf = [0u8; 64];
        let len = frame.encode(&mut buf).expect("encodes");
        let sample = include_str!("../../firmware-protocol/tests/samples/chirpstack/event-up.json");
        let mut event: Value = serde_json::from_str(sample).expect("sample");
        event["deduplicationId"] = json!(uuid::Uuid::new_v4().to_string());
        event["time"] = json!(Utc::now().to_rfc3339());
        event["deviceInfo"]["devEui"] = json!(DOC_METER);
        event["deviceInfo"]["applicationId"] = json!(DOC_APPLICATION);
        event["fCnt"] = json!(2);
        event["fPort"] = json!(2);
        event["data"] = json!(base64::engine::general_purpose::STANDARD.encode(&buf[..len]));
        if let Some(o) = event.as_object_mut() {
            o.remove("object");
        }
        let topic = format!("application/{DOC_APPLICATION}/device/{DOC_METER}/event/up");
        let mut options = MqttOptions::new("doc-examples", broker.host(), broker.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&event).expect("json"),
            )
            .await
            .expect("publish");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_)))) => break,
                _ if Instant::now() > deadline => panic!("the broker did not take the alarm"),
                _ => {}
            }
        }
        let _ = client.disconnect().await;
        let url = format!(
            "http://{}/api/v1/alarms?state=open&meter={DOC_METER}",
            self.http
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new("curl")
                .args(["-sS", "-H"])
                .arg(format!("Authorization: Bearer {}", self.keys["KEY"]))
                .arg(&url)
                .output()
                .expect("curl");
            let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if listed["items"].as_array().is_some_and(|a| !a.is_empty()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not store the alarm: {listed}\n{}",
                self.process.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs every example; collects every failure before failing, so one run names them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_command_runs_as_written() {
    test_support::init_tracing();
    // This crate's folder, compiled in: the documents of the tree under test.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let tools = Tools::install();
    let broker = Broker::start().await;
    let mqtt = format!("{}:{}", broker.host(), broker.port());
    let demo_http = format!("127.0.0.1:{}", test_support::free_port().expect("port"));
    let mut failures = Vec::new();
    let mut ran = 0;
    for doc in documents(&root) {
        let text = std::fs::read_to_string(root.join(&doc)).expect("document");
        let list = examples(&text).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        let runnable: Vec<&Example> = list.iter().filter(|e| e.not_run.is_none()).collect();
        if runnable.is_empty() {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let server = if runnable
            .iter()
            .any(|e| e.code.contains(DOC_HTTP) || e.code.contains("meterhub keys"))
        {
            Some(DocServer::start(dir.path(), &broker, &tools).await)
        } else {
            None
        };
        let http = server
            .as_ref()
            .map_or(DOC_HTTP.to_owned(), |s| s.http.clone());
        for example in runnable {
            let mut c = command("bash", dir.path(), &tools);
            c.args(["-e", "-o", "pipefail", "-c"])
                .arg(script(&as_run(&example.code, &http, &mqtt)))
                .env("METERHUB_HTTP__BIND", &demo_http);
            if let Some(server) = &server {
                for (var, key) in &server.keys {
                    c.env(var, key);
                }
            }
            let started = Instant::now();
            let out = tokio::task::spawn_blocking(move || run_bounded(c, EXAMPLE_LIMIT))
                .await
                .expect("example");
            ran += 1;
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!(
                "{}:{}: {} in {:.1} s",
                doc.display(),
                example.line,
                if out.status.success() { "ok" } else { "FAILED" },
                started.elapsed().as_secs_f64()
            );
            if !out.status.success() {
                failures.push(format!(
                    "{}:{}: exit {:?}\n--- stdout\n{}--- stderr\n{}",
                    doc.display(),
                    failed_line(example, &stderr),
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout),
                    stderr
                ));
            }
        }
        if let Some(mut server) = server {
            let _ = server.process.terminate(Duration::from_secs(30)).await;
        }
    }
    assert!(ran > 0, "no examples found");
    assert!(
        failures.is_empty(),
        "{} of {ran} doc examples failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn blocks_are_found_with_their_lines_and_markers() {
    let text = "# Title\n\n```sh\necho one\necho two\n```\n\n<!-- example: not run: needs a \
                gateway -->\n```sh\nfalse\n```\n```toml\na = 1\n```\n";
    let found = examples(text).expect("parses");
    assert_eq!(
        found,
        vec![
            Example {
                line: 4,
                code: "echo one\necho two".into(),
                not_run: None
            },
            Example {
                line: 10,
                code: "false".into(),
                not_run: Some("needs a gateway".into())
            },
        ]
    );
}

#[test]
fn a_marker_needs_a_reason_and_a_block() {
    assert!(examples("<!-- example: not run: -->\n```sh\nls\n```\n").is_err());
    assert!(examples("<!-- example: not run: why -->\ntext\n```sh\nls\n```\n").is_err());
    assert!(examples("<!-- example: not run: why -->\n```json\n{}\n```\n").is_err());
    assert!(examples("```sh\nls\n").is_err());
}

#[test]
fn a_failure_names_the_line_of_the_command_that_failed() {
    let example = Example {
        line: 40,
        code: "true\nfalse\ntrue".into(),
        not_run: None,
    };
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c"])
        .arg(script(&example.code))
        .output()
        .expect("bash");
    assert!(!out.status.success());
    assert_eq!(
        failed_line(&example, &String::from_utf8_lossy(&out.stderr)),
        41
    );
}

#[test]
fn documented_addresses_are_replaced_by_the_tests() {
    assert_eq!(
        as_run(
            "curl http://127.0.0.1:8080/x; sim --mqtt-url mqtt://127.0.0.1:1883",
            "127.0.0.1:5",
            "127.0.0.1:6"
        ),
        "curl http://127.0.0.1:5/x; sim --mqtt-url mqtt://127.0.0.1:6"
    );
}
