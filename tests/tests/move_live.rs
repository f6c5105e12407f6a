//! Live migration between two agents on two hosts (network namespaces on one L2 segment):
//! a stateful container with a TCP service moves there and back keeping its memory, files,
//! counter and client connection, and every failure leaves it running on the source, unchanged,
//! with nothing left on the target.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use migrate_tests::hosts::TwoHosts;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn json(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A container with memory (memhog 32 MiB, re-verified every 50 ms), a counter, an appending
/// log and a TCP echo service on port 8000.
fn stateful_bundle() -> TestBundle {
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "/bin/memhog 32 /tmp/mem & nc -ll -p 8000 -e cat & exec 3>>/tmp/log; i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; echo line$i >&3; usleep 50000; done",
    ]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    b
}

struct State {
    count: u64,
    mem: String,
    log_ok: bool,
}

fn state(hosts: &TwoHosts, on: &migrate_tests::agent::TestAgent) -> State {
    let _ = hosts;
    let out = on.ok(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "cat /tmp/count; cat /tmp/mem; cat /tmp/log",
    ]);
    let mut lines = out.lines();
    let count = lines.next().unwrap_or("0").trim().parse().unwrap_or(0);
    let mem = lines.next().unwrap_or("").to_string();
    let log: Vec<&str> = lines.collect();
    let log_ok = log
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("line{}", i + 1));
    State { count, mem, log_ok }
}

fn echo(stream: &mut (BufReader<TcpStream>, TcpStream), msg: &str) -> String {
    stream.1.write_all(format!("{msg}\n").as_bytes()).unwrap();
    let mut line = String::new();
    stream.0.read_line(&mut line).unwrap();
    line
}

#[test]
fn stateful_container_moves_there_and_back() {
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let b = stateful_bundle();
    let ip = hosts.next_container_ip();
    hosts.host1.ok(&[
        "run",
        "web",
        "--bundle",
        &b.path().display().to_string(),
        "--ip",
        &ip,
    ]);
    let addr = ip.split('/').next().unwrap().to_string();
    let s = wait_for("the echo service", T, || {
        hosts.client_connect(&addr, 8000).ok()
    });
    s.set_read_timeout(Some(T)).unwrap();
    let mut conn = (BufReader::new(s.try_clone().unwrap()), s);
    assert_eq!(echo(&mut conn, "hello"), "hello\n");
    wait_for("memhog verified", T, || {
        state(&hosts, &hosts.host1)
            .mem
            .starts_with("ok ")
            .then_some(())
    });
    let before = state(&hosts, &hosts.host1);
    let checksum = before.mem.split_whitespace().nth(2).unwrap().to_string();
    // Its backup schedule moves with it.
    hosts.host1.ok(&[
        "backup",
        "schedule",
        "web",
        "--every",
        "1h",
        "--keep",
        "3",
        "--replicate-to",
        "host2",
    ]);
    let schedule_on = |h: &migrate_tests::agent::TestAgent| -> Vec<(String, String)> {
        h.json(&["backup", "schedules"])
            .iter()
            .map(|s| {
                (
                    s["container_id"].as_str().unwrap().to_string(),
                    s["replicate_to"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let report = json(
        &hosts
            .host1
            .ok(&["move", "web", "--to", "host2", "--output", "json"]),
    );
    let r = &report[0];
    assert_eq!(r["target"], "host2");
    assert!(
        r["downtime_ms"].as_u64().unwrap() > 0 && r["bytes_sent"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(
        r["bytes_sent"].as_u64() <= r["bytes_compressed"].as_u64(),
        "{r}"
    );
    assert!(
        hosts.host1.running().is_empty(),
        "the source still runs web"
    );
    assert_eq!(hosts.host2.running(), ["web"]);
    assert_eq!(
        echo(&mut conn, "after-move"),
        "after-move\n",
        "the client's connection did not survive"
    );
    let there = state(&hosts, &hosts.host2);
    assert!(
        there.count >= before.count,
        "counter restarted: {} < {}",
        there.count,
        before.count
    );
    assert!(
        there.mem.starts_with("ok ") && there.mem.ends_with(&checksum),
        "memory changed: {} vs {checksum}",
        there.mem
    );
    assert!(there.log_ok, "the appended log lost or duplicated lines");
    assert!(
        hosts
            .host2
            .log()
            .contains("images were written as the chunks arrived"),
        "the target wrote the images from the store after the transfer"
    );
    assert!(schedule_on(&hosts.host1).is_empty());
    assert_eq!(
        schedule_on(&hosts.host2),
        [("web".to_string(), "host1".to_string())],
        "the schedule did not follow (replicating to where it came from)"
    );

    // Back again; the target already holds the bundle layer, so the second move sends less.
    let back = json(
        &hosts
            .host2
            .ok(&["move", "web", "--to", "host1", "--output", "json"]),
    );
    assert!(
        back[0]["bytes_sent"].as_u64() < r["bytes_sent"].as_u64(),
        "{} vs {}",
        back[0],
        r
    );
    assert_eq!(hosts.host1.running(), ["web"]);
    assert!(hosts.host2.running().is_empty());
    assert_eq!(echo(&mut conn, "home"), "home\n");
    let home = state(&hosts, &hosts.host1);
    assert!(home.count >= there.count && home.mem.ends_with(&checksum) && home.log_ok);
    assert!(schedule_on(&hosts.host2).is_empty());
    assert_eq!(
        schedule_on(&hosts.host1),
        [("web".to_string(), "host2".to_string())]
    );
    for h in [&hosts.host1, &hosts.host2] {
        let left: Vec<_> = std::fs::read_dir(h.scratch.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "move images left in {}: {left:?}",
            h.scratch.path().display()
        );
    }
}

#[test]
fn dry_run_reports_preflight_and_changes_nothing() {
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let b = TestBundle::busybox(&["sleep", "600"]);
    hosts
        .host1
        .ok(&["run", "web", "--bundle", &b.path().display().to_string()]);
    let out = hosts
        .host1
        .ok(&["move", "web", "--to", "host2", "--dry-run"]);
    assert!(out.contains("criu") && out.contains("ok"), "{out}");
    assert_eq!(hosts.host1.running(), ["web"]);
    assert!(hosts.host2.running().is_empty());
    let out = hosts
        .host1
        .cli(&["move", "web", "--to", "host2", "--mode", "precopy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("soft-dirty"), "{err}");
    let out = hosts.host1.cli(&["move", "web", "--to", "nowhere"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown host nowhere"));
}

/// Asserts the move failed, web still runs on host1 and keeps counting, and host2 has nothing.
fn assert_rolled_back(hosts: &TwoHosts, out: std::process::Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "the move should fail: {err}");
    assert!(
        err.to_lowercase().contains(&want.to_lowercase()),
        "{err:?} should mention {want}"
    );
    assert_eq!(
        hosts.host1.running(),
        ["web"],
        "web is not running on the source after the failed move"
    );
    let c1 = state(hosts, &hosts.host1).count;
    wait_for("the source counter to advance (not frozen)", T, || {
        (state(hosts, &hosts.host1).count > c1 + 2).then_some(())
    });
    wait_for("host2 to discard the move", T, || {
        let ps = json(&hosts.host2.ok(&["ps", "--output", "json"]));
        let manifests = std::fs::read_dir(hosts.host2.state_dir.join("store/manifests"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("ckpt-"))
                    .count()
            })
            .unwrap_or(0);
        let ckpts = std::fs::read_dir(hosts.host2.state_dir.join("checkpoints"))
            .map(|d| d.count())
            .unwrap_or(0);
        (ps.is_empty() && manifests == 0 && ckpts == 0).then_some(())
    });
    assert!(
        hosts.host2.runtime().list().unwrap().is_empty(),
        "runtime state left on host2"
    );
}

fn run_web(hosts: &TwoHosts, b: &TestBundle) {
    hosts.host1.ok(&[
        "run",
        "web",
        "--bundle",
        &b.path().display().to_string(),
        "--ip",
        &hosts.next_container_ip(),
    ]);
    wait_for("counter", T, || {
        (state(hosts, &hosts.host1).count > 2).then_some(())
    });
}

#[test]
fn failures_leave_the_container_on_the_source() {
    migrate_tests::prereq::require_criu();
    let b = stateful_bundle();
    // Restore fails on the target.
    let mut hosts = TwoHosts::start();
    hosts.host2.set_env("MIGRATE_FAULT", "fail-restore");
    run_web(&hosts, &b);
    let out = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    assert_rolled_back(&hosts, out, "fail-restore");
    // A chunk corrupted in flight is refused by the target.
    hosts.host2.set_env("MIGRATE_FAULT", "");
    hosts.host1.set_env("MIGRATE_FAULT", "corrupt-chunk");
    let out = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    assert_rolled_back(&hosts, out, "corrupt");
    hosts.host1.set_env("MIGRATE_FAULT", "");
    // Too little disk on the target: refused in preflight, before anything is frozen.
    hosts.host2.set_env("MIGRATE_FAULT", "free-disk=1000");
    let out = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    assert_rolled_back(&hosts, out, "free disk");
    // CRIU too old on the target (simulated).
    hosts.host2.set_env("MIGRATE_FAULT", "criu-version=3.17.1");
    let out = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    assert_rolled_back(&hosts, out, "criu 3.17.1");
    // The target agent dies mid-transfer.
    hosts.host2.set_env("MIGRATE_FAULT", "slow-chunks=400");
    let mover = hosts.host1.spawn_cli(&["move", "web", "--to", "host2"]);
    wait_for("chunks arriving on host2", T, || {
        hosts.host2.log().contains("slow-chunks").then_some(())
    });
    hosts.host2.kill9();
    let out = mover.wait_with_output().unwrap();
    hosts.host2.set_env("MIGRATE_FAULT", "");
    assert_rolled_back(&hosts, out, "host2");
    // The network is cut mid-transfer.
    hosts.host2.set_env("MIGRATE_FAULT", "slow-chunks=400");
    let mover = hosts.host1.spawn_cli(&["move", "web", "--to", "host2"]);
    wait_for("chunks arriving on host2", T, || {
        (hosts.host2.log().matches("slow-chunks").count() >= 2).then_some(())
    });
    hosts.link_down("host2");
    let out = mover.wait_with_output().unwrap();
    hosts.link_up("host2");
    hosts.host2.set_env("MIGRATE_FAULT", "");
    assert_rolled_back(&hosts, out, "host2");
    assert!(Path::new(&hosts.host1.state_dir).exists());
}

#[test]
fn source_agent_killed_after_target_runs_ends_with_one_copy() {
    migrate_tests::prereq::require_criu();
    let mut hosts = TwoHosts::start();
    let b = stateful_bundle();
    hosts.host1.set_env("MIGRATE_FAULT", "crash-after-receive");
    run_web(&hosts, &b);
    let out = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the source agent should have crashed mid-move"
    );
    hosts.host1.kill9();
    assert_eq!(hosts.host2.running(), ["web"], "the target runs web");
    hosts.host1.set_env("MIGRATE_FAULT", "");
    wait_for("host1 to give up its frozen copy", T, || {
        hosts.host1.running().is_empty().then_some(())
    });
    wait_for("host1 to forget web", T, || {
        json(&hosts.host1.ok(&["ps", "--output", "json"]))
            .is_empty()
            .then_some(())
    });
    let c = state(&hosts, &hosts.host2).count;
    wait_for("web counts on host2", T, || {
        (state(&hosts, &hosts.host2).count > c + 2).then_some(())
    });
}
