//! The agent started from its config and driven through the real `migrate` CLI: the container
//! lifecycle, restart safety, restart policies, the local socket's permissions, and bad input.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use migrate_tests::agent::{binary, TestAgent};
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn ps(agent: &TestAgent) -> Vec<Value> {
    json_lines(&agent.ok(&["ps", "--output", "json"]))
}

fn counter_bundle() -> TestBundle {
    TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo line $i; usleep 50000; done",
    ])
}

fn log_lines(agent: &TestAgent, id: &str) -> Vec<String> {
    agent
        .ok(&["logs", id])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn lifecycle_through_the_cli() {
    migrate_tests::prereq::require_criu();
    let agent = TestAgent::start("host1", "");
    let b = counter_bundle();
    let bundle = b.path().display().to_string();
    agent.ok(&["run", "web", "--bundle", &bundle]);
    let list = ps(&agent);
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["status"].as_str()),
        (Some("web"), Some("running"))
    );
    let table = agent.ok(&["ps"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains("web") && table.contains("running"),
        "{table}"
    );
    wait_for("log lines", T, || {
        (log_lines(&agent, "web").len() > 3).then_some(())
    });
    assert_eq!(log_lines(&agent, "web")[0], "line 1");
    assert_eq!(agent.ok(&["logs", "--tail", "1", "web"]).lines().count(), 1);

    let out = agent.cli(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo in-$(hostname); exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "exec exit code passes through");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-box\n");

    agent.ok(&["pause", "web"]);
    assert_eq!(
        json_lines(&agent.ok(&["inspect", "web", "--output", "json"]))[0]["status"],
        "paused"
    );
    agent.ok(&["resume", "web"]);

    let ck = json_lines(&agent.ok(&["checkpoint", "web", "--output", "json"]));
    let ckpt_id = ck.last().unwrap()["checkpoint_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{ck:?}"))
        .to_string();
    assert_eq!(ps(&agent)[0]["status"], "stopped");
    let before = log_lines(&agent, "web").len();
    let listed = json_lines(&agent.ok(&["checkpoints", "web", "--output", "json"]));
    assert_eq!(listed[0]["checkpoint_id"], ckpt_id.as_str());
    agent.ok(&["restore", "web", "--from", &ckpt_id]);
    assert_eq!(ps(&agent)[0]["status"], "running");
    wait_for("logs continue after restore", T, || {
        (log_lines(&agent, "web").len() > before + 3).then_some(())
    });
    for (i, line) in log_lines(&agent, "web").iter().enumerate() {
        assert_eq!(
            line,
            &format!("line {}", i + 1),
            "the counter restarted instead of continuing"
        );
    }

    let out = agent.cli(&["rm", "web"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rm of a running container without --force fails"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    agent.ok(&["stop", "web", "--timeout", "1"]);
    assert_eq!(ps(&agent)[0]["status"], "stopped");
    agent.ok(&["rm", "web"]);
    assert!(ps(&agent).is_empty());
    assert!(
        agent.runtime().list().unwrap().is_empty(),
        "runtime state left after rm"
    );
    let ops = json_lines(&agent.ok(&["ops", "--output", "json"]));
    assert_eq!(ops.len(), 2, "{ops:?}");
}

#[test]
fn containers_survive_agent_sigkill_and_are_readopted() {
    let mut agent = TestAgent::start("host1", "");
    let b = counter_bundle();
    agent.ok(&["run", "web", "--bundle", &b.path().display().to_string()]);
    let pid = ps(&agent)[0]["pid"].as_i64().unwrap();
    wait_for("logs", T, || {
        (log_lines(&agent, "web").len() > 2).then_some(())
    });
    agent.kill9();
    let during = std::fs::read_to_string(agent.state_dir.join("logs/web.log"))
        .unwrap()
        .lines()
        .count();
    std::thread::sleep(Duration::from_millis(500));
    let later = std::fs::read_to_string(agent.state_dir.join("logs/web.log"))
        .unwrap()
        .lines()
        .count();
    assert!(later > during, "logs stopped while the agent was down");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with the agent"
    );
    agent.restart();
    let list = ps(&agent);
    assert_eq!(
        (list[0]["status"].as_str(), list[0]["pid"].as_i64()),
        (Some("running"), Some(pid))
    );
    let n = log_lines(&agent, "web").len();
    wait_for("logs continue after re-adoption", T, || {
        (log_lines(&agent, "web").len() > n + 3).then_some(())
    });
    // A clean SIGTERM also leaves it running.
    assert!(agent.terminate().success());
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "SIGTERM of the agent killed the container"
    );
    agent.restart();
    // An exit while the agent is down is recorded when it comes back.
    agent.kill9();
    let rt = agent.runtime();
    rt.load("web")
        .unwrap()
        .kill(nix::sys::signal::Signal::SIGKILL, false)
        .unwrap();
    wait_for("container death", T, || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    agent.restart();
    let c = wait_for("exit recorded", T, || {
        ps(&agent).into_iter().find(|c| c["exit_code"] != -1)
    });
    assert_eq!(
        (c["status"].as_str(), c["exit_code"].as_i64()),
        (Some("stopped"), Some(137))
    );
}

#[test]
fn restart_policy_on_failure_restarts_failed_containers() {
    let agent = TestAgent::start("host1", "");
    let b = TestBundle::busybox(&["sh", "-c", "echo started; sleep 0.3; exit 3"]);
    agent.ok(&[
        "run",
        "flaky",
        "--bundle",
        &b.path().display().to_string(),
        "--restart",
        "on-failure",
    ]);
    wait_for("three runs", T, || {
        (log_lines(&agent, "flaky")
            .iter()
            .filter(|l| *l == "started")
            .count()
            >= 3)
            .then_some(())
    });
    let c = ps(&agent).into_iter().find(|c| c["id"] == "flaky").unwrap();
    assert_eq!(c["restart"], "on-failure");
    assert!(c["restarts"].as_u64() >= Some(2), "{c}");
    assert_eq!(c["exit_code"], 3);
    let ok = TestBundle::busybox(&["true"]);
    agent.ok(&[
        "run",
        "once",
        "--bundle",
        &ok.path().display().to_string(),
        "--restart",
        "on-failure",
    ]);
    // Stopped, and its exit recorded (the shim writes it just after init is reaped).
    let c = wait_for("clean exit", T, || {
        ps(&agent)
            .into_iter()
            .find(|c| c["id"] == "once" && c["status"] == "stopped" && c["exit_code"] != -1)
    });
    assert_eq!(
        (c["exit_code"].as_i64(), c["restarts"].as_u64()),
        (Some(0), Some(0))
    );
    agent.ok(&["rm", "--force", "flaky"]);
}

#[test]
fn local_socket_is_root_only() {
    let agent = TestAgent::start("host1", "");
    let meta = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let out = std::process::Command::new(binary("migrate"))
        .arg("--socket")
        .arg(&agent.socket)
        .arg("ps")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ermission denied"), "{err}");
}

#[test]
fn bad_input_is_one_clear_line_and_changes_nothing() {
    let agent = TestAgent::start("host1", "");
    let b = counter_bundle();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["inspect", "ghost"], "container ghost does not exist"),
        (vec!["rm", "ghost"], "does not exist"),
        (
            vec!["run", "bad/id", "--bundle", "/tmp"],
            "invalid container id",
        ),
        (
            vec!["run", "x", "--bundle", "/nonexistent/bundle"],
            "/nonexistent/bundle",
        ),
        (vec!["kill", "ghost", "--signal", "TERM"], "does not exist"),
        (vec!["restore", "ghost"], "ghost"),
    ];
    for (args, want) in cases {
        let out = agent.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{args:?} printed more than one line: {err}"
        );
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err:?} should mention {want}"
        );
    }
    assert_eq!(
        agent.cli(&["run", "--no-such-flag"]).status.code(),
        Some(2),
        "usage errors exit 2"
    );
    agent.ok(&["run", "web", "--bundle", &b.path().display().to_string()]);
    let out = agent.cli(&["run", "web", "--bundle", &b.path().display().to_string()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = agent.cli(&["kill", "web", "--signal", "NOPE"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal NOPE"));
    assert_eq!(ps(&agent).len(), 1, "bad input changed the container list");
    assert_eq!(ps(&agent)[0]["status"], "running");
}

#[test]
fn malformed_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "node = \"h\"\nstate_dir = \"/tmp/x\"\nbogus_key = 1\n",
            "bogus_key",
        ),
        ("node = \"bad name\"\nstate_dir = \"/tmp/x\"\n", "node"),
        ("node = \"h\"\nstate_dir = \"relative\"\n", "state_dir"),
        (
            "node = \"h\"\nstate_dir = \"/tmp/x\"\n[peers]\nh2 = \"nowhere\"\n",
            "peers.h2",
        ),
        ("node = [\n", "invalid config"),
    ];
    for (text, key) in cases {
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(binary("migrate-agent"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(key), "{err:?} should name {key}");
    }
    let out = std::process::Command::new(binary("migrate-agent"))
        .arg("--config")
        .arg("/nonexistent.toml")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent.toml"));
}

#[test]
fn metrics_endpoint_counts_operations() {
    use std::io::{Read, Write};
    let port = 19464 + (std::process::id() % 1000) as u16;
    let agent = TestAgent::start("host1", &format!("metrics_listen = \"127.0.0.1:{port}\""));
    let b = counter_bundle();
    agent.ok(&["run", "web", "--bundle", &b.path().display().to_string()]);
    let scrape = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let body = wait_for("metrics", T, scrape);
    assert!(
        body.contains("migrate_containers{status=\"running\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("migrate_rpc_requests_total{method=\"run\"} 1"),
        "{body}"
    );
}

#[test]
fn sigterm_drains_a_running_checkpoint_before_exiting() {
    migrate_tests::prereq::require_criu();
    let mut agent = TestAgent::start("host1", "");
    let b = TestBundle::busybox(&["/bin/memhog", "256", "/tmp/mem"]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    agent.ok(&["run", "big", "--bundle", &b.path().display().to_string()]);
    wait_for("memory filled", T, || {
        let out = agent.cli(&["exec", "big", "--", "cat", "/tmp/mem"]);
        String::from_utf8_lossy(&out.stdout)
            .starts_with("ok ")
            .then_some(())
    });
    let cli = agent.spawn_cli(&["checkpoint", "big", "--leave-running"]);
    wait_for("the dump to start", T, || {
        agent.log().contains("freezing and dumping").then_some(())
    });
    let status = agent.terminate();
    assert!(
        status.success(),
        "the agent did not exit cleanly: {status}\n{}",
        agent.log()
    );
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the checkpoint in flight failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        agent.log().contains("waiting for operations to finish"),
        "no drain in the log:\n{}",
        agent.log()
    );
    agent.restart();
    let ops = json_lines(&agent.ok(&["ops", "--output", "json"]));
    assert_eq!(
        (ops[0]["kind"].as_str(), ops[0]["state"].as_str()),
        (Some("checkpoint"), Some("succeeded")),
        "{ops:?}"
    );
    assert_eq!(
        ps(&agent)[0]["status"],
        "running",
        "the container stopped with the agent"
    );
}
