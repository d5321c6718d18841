use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use test_support::Process;

const READY: Duration = Duration::from_secs(10);

fn shell(script: &str) -> Process {
    Process::builder("/bin/sh")
        .args(["-c", script])
        .start()
        .expect("start /bin/sh")
}

#[tokio::test]
async fn process_is_killed_and_restarted() {
    let mut process = shell("echo ready $$; exec sleep 600");
    let first = process
        .wait_for_output("ready", READY)
        .await
        .expect("first run ready");
    assert!(process.is_running());

    let status = process.kill().expect("kill");
    assert_eq!(status.signal(), Some(9), "SIGKILL");
    assert!(!process.is_running());
    assert_eq!(process.id(), None);

    process.restart().expect("restart");
    let second = process
        .wait_for_output("ready", READY)
        .await
        .expect("second run ready");
    assert_ne!(first, second, "a new run with a new pid");
    assert!(process.stdout().contains("--- run 2 ---"));
    assert!(
        process.stdout().contains(&first),
        "the first run's output is kept"
    );
}

#[tokio::test]
async fn output_is_matched_only_once_its_line_is_whole() {
    // The needle arrives before the rest of its line, as from `eprintln!` on an unbuffered
    // stderr: the line returned is the whole one.
    let mut process =
        shell("printf 'listening on http://'; sleep 0.5; echo 127.0.0.1:80; exec sleep 600");
    let line = process
        .wait_for_output("listening on http://", READY)
        .await
        .expect("line written");
    assert_eq!(line, "listening on http://127.0.0.1:80");
}

#[tokio::test]
async fn process_terminates_gracefully_on_sigterm() {
    let mut process =
        shell("trap 'echo stopping; exit 3' TERM; echo ready; while :; do sleep 0.05; done");
    process
        .wait_for_output("ready", READY)
        .await
        .expect("ready");
    let status = process
        .terminate(Duration::from_secs(10))
        .await
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(3));
    assert!(process.stdout().contains("stopping"));
}

#[tokio::test]
async fn process_that_ignores_sigterm_is_killed_and_reported() {
    let mut process = shell("trap '' TERM; echo ready; exec sleep 600");
    process
        .wait_for_output("ready", READY)
        .await
        .expect("ready");
    let error = process
        .terminate(Duration::from_millis(300))
        .await
        .expect_err("a process that ignores SIGTERM");
    assert!(format!("{error:#}").contains("SIGTERM"), "{error:#}");
    assert!(!process.is_running());
}

#[tokio::test]
async fn readiness_fails_with_the_output_when_the_process_exits() {
    let mut process = shell("echo something went wrong >&2; exit 7");
    let started = Instant::now();
    let error = process
        .wait_for_output("ready", Duration::from_secs(30))
        .await
        .expect_err("the process exits instead");
    let message = format!("{error:#}");
    assert!(message.contains("something went wrong"), "{message}");
    assert!(message.contains("exit status: 7"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails at once, not at the timeout"
    );
}

#[tokio::test]
async fn readiness_times_out_with_the_output() {
    let mut process = shell("echo still booting; exec sleep 600");
    let error = process
        .wait_for_output("ready", Duration::from_millis(300))
        .await
        .expect_err("never ready");
    let message = format!("{error:#}");
    assert!(message.contains("still booting"), "{message}");
}

#[tokio::test]
async fn readiness_waits_for_a_port_to_accept() {
    let mut process = shell("exec sleep 600");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let open = listener.local_addr().expect("address").port();
    process
        .wait_for_port(open, READY)
        .await
        .expect("the port accepts");

    let closed = test_support::free_port().expect("a free port");
    process
        .wait_for_port(closed, Duration::from_millis(200))
        .await
        .expect_err("nothing listens there");
}

#[tokio::test]
async fn readiness_fails_when_the_port_belongs_to_another_process() {
    // As a server that exits with "address in use" while someone else listens on its port.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let taken = listener.local_addr().expect("address").port();
    let mut process = shell("echo cannot bind: address in use >&2; exit 1");
    process.wait(READY).await.expect("exits");
    let error = process
        .wait_for_port(taken, READY)
        .await
        .expect_err("the listener is not the process's");
    let message = format!("{error:#}");
    assert!(message.contains("exit status: 1"), "{message}");
    assert!(message.contains("address in use"), "{message}");
}

#[tokio::test]
async fn process_gets_its_arguments_and_environment() {
    let mut process = Process::builder("/bin/sh")
        .arg("-c")
        .arg("echo \"args=$0 $1 env=$METERHUB_SELFTEST\"")
        .args(["first", "second"])
        .env("METERHUB_SELFTEST", "set by the test")
        .start()
        .expect("start");
    let status = process.wait(READY).await.expect("exits");
    assert!(status.success());
    assert!(
        process
            .stdout()
            .contains("args=first second env=set by the test"),
        "{}",
        process.stdout()
    );
}

#[tokio::test]
async fn kill_reaches_the_whole_process_group() {
    let mut process = shell("sleep 600 & echo child $!; wait");
    let line = process
        .wait_for_output("child", READY)
        .await
        .expect("child started");
    let child: u32 = line
        .trim_start_matches("child ")
        .trim()
        .parse()
        .expect("a pid");
    process.kill().expect("kill");

    // The orphan is reaped by whoever adopts it; until then it is a zombie, which is dead too.
    let deadline = Instant::now() + READY;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
        let alive = state.is_some_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        });
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shell's child survived the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shell that starts a background `sleep` and exits at once, leaving the `sleep` in its
/// process group; returns the group's id once the shell has exited.
async fn shell_that_leaves_a_child_behind() -> (Process, u32) {
    let mut process = shell("sleep 600 & echo group $$; exit 0");
    let line = process
        .wait_for_output("group", READY)
        .await
        .expect("the shell reports its group");
    let group: u32 = line
        .trim_start_matches("group ")
        .trim()
        .parse()
        .expect("a pid");
    let status = process.wait(READY).await.expect("the shell exits");
    assert!(status.success());
    assert!(
        !living_members(group).is_empty(),
        "the background sleep still runs after the shell exited"
    );
    (process, group)
}

/// The processes of group `group` that have not exited (zombies, exited but not yet reaped by
/// whoever adopted them, do not count).
fn living_members(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name in parentheses: state, parent pid, process group, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(group) && state != Some("Z") {
            members.push(pid);
        }
    }
    members
}

async fn wait_until_group_is_gone(group: u32, after: &str) {
    let deadline = Instant::now() + READY;
    loop {
        let members = living_members(group);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes {members:?} of group {group} survived {after}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_reaches_the_group_after_the_process_exited() {
    let (mut process, group) = shell_that_leaves_a_child_behind().await;
    let status = process.kill().expect("kill");
    assert_eq!(
        status.code(),
        Some(0),
        "the shell's own exit status is kept"
    );
    wait_until_group_is_gone(group, "kill()").await;
    assert_eq!(process.id(), None, "reaped");
}

#[tokio::test]
async fn drop_reaches_the_group_after_the_process_exited() {
    let (process, group) = shell_that_leaves_a_child_behind().await;
    drop(process);
    wait_until_group_is_gone(group, "the drop").await;
}
