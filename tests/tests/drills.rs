//! Failover drills against two agents: the example drills in deploy/drills pass, with RTO and
//! RPO that agree with the agents' own records; a drill whose probe fails runs its cleanup,
//! exits non-zero and loses no container; bad drill files are refused with line and field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use migrate_tests::hosts::TwoHosts;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn drill_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/drills")
        .join(name)
        .display()
        .to_string()
}

/// `web` (an address, a counter in /tmp/count, a TCP echo service on 8000) and `db` (a
/// counter, no address), both on host1.
fn start_web_and_db(hosts: &TwoHosts) -> (TestBundle, TestBundle, String) {
    let web = TestBundle::busybox(&[
        "sh",
        "-c",
        "nc -ll -p 8000 -e cat & i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 20000; done",
    ]);
    let db = TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done",
    ]);
    let ip = hosts.next_container_ip();
    hosts.host1.ok(&[
        "run",
        "web",
        "--bundle",
        &web.path().display().to_string(),
        "--ip",
        &ip,
    ]);
    hosts
        .host1
        .ok(&["run", "db", "--bundle", &db.path().display().to_string()]);
    let addr = ip.split('/').next().unwrap().to_string();
    wait_for("web's service", T, || {
        hosts.client_connect(&addr, 8000).ok()
    });
    (web, db, addr)
}

/// Runs a drill with `--output json`; returns (exit success, report, stderr).
fn run_drill(
    on: &migrate_tests::agent::TestAgent,
    file: &str,
    report: &Path,
) -> (bool, Value, String) {
    let out = on.cli(&[
        "drill",
        "run",
        file,
        "--report",
        &report.display().to_string(),
        "--output",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().next().unwrap_or("null"))
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {stdout}\n{}\n--- agent log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                on.log()
            )
        });
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn steps(report: &Value) -> Vec<&Value> {
    report["steps"].as_array().unwrap().iter().collect()
}

fn ms(v: &Value) -> i64 {
    v.as_i64().unwrap()
}

#[test]
fn the_example_drills_pass_and_their_rto_and_rpo_match_the_journals() {
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let (_web, _db, addr) = start_web_and_db(&hosts);
    let dir = tempfile::tempdir().unwrap();

    for (file, from) in [
        ("planned-maintenance.toml", &hosts.host1),
        ("rolling-drain.toml", &hosts.host1),
    ] {
        let md = dir.path().join(format!("{file}.md"));
        let (ok, report, err) = run_drill(from, &drill_file(file), &md);
        assert!(ok && report["passed"] == true, "{file}: {report}\n{err}");
        assert!(
            steps(&report).iter().all(|s| s["outcome"] == "passed"),
            "{file}: {report}"
        );
        assert!(!report["rto_measured"].as_bool().unwrap_or(false));
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.contains(report["name"].as_str().unwrap()), "{text}");
        let mut running = hosts.host1.running();
        running.sort();
        assert_eq!(running, ["db", "web"], "{file} did not bring them back");
        assert!(hosts.host2.running().is_empty());
    }

    // Host loss, coordinated from host2: host1 "dies", web comes back on host2 from its
    // replicated backup.
    let md: PathBuf = dir.path().join("host-loss.md");
    let (ok, report, err) = run_drill(&hosts.host2, &drill_file("host-loss.toml"), &md);
    assert!(ok && report["passed"] == true, "{report}\n{err}");
    assert_eq!(hosts.host2.running(), ["web"]);
    wait_for("web's service on host2", T, || {
        hosts.client_connect(&addr, 8000).ok()
    });
    // host1 is back: web (restored elsewhere) removed there, db (restored nowhere) restarted.
    assert_eq!(hosts.host1.running(), ["db"]);

    let s = steps(&report);
    let fail = s.iter().find(|s| s["action"] == "fail-host").unwrap();
    let healthy = s.iter().find(|s| s["action"] == "wait-healthy").unwrap();
    let rto = ms(&report["rto_ms"]);
    assert!(
        report["rto_measured"] == true && report["rto_met"] == true,
        "{report}"
    );
    let window = ms(&healthy["finished_unix_ms"]) - ms(&fail["started_unix_ms"]);
    assert!(
        (rto - window).abs() <= 100,
        "RTO {rto} ms is not failure start to healthy ({window} ms)"
    );
    // The restore that recovered web, as host2 journaled it, lies inside that window.
    let restore = hosts
        .host2
        .json(&["ops"])
        .into_iter()
        .find(|o| o["kind"] == "backup-restore" && o["container_id"] == "web")
        .expect("host2 journaled the restore");
    assert_eq!(restore["state"], "succeeded");
    assert!(
        ms(&restore["started_unix_ms"]) >= ms(&fail["started_unix_ms"])
            && ms(&restore["finished_unix_ms"]) <= ms(&fail["started_unix_ms"]) + rto,
        "restore {restore} outside the RTO window of {report}"
    );
    // RPO: the failure's start minus when the restored backup was taken.
    let backup = hosts.host2.json(&["backup", "ls", "web"]).remove(0);
    let rpo = ms(&report["rpo_ms"]);
    assert!(
        report["rpo_measured"] == true && report["rpo_met"] == true,
        "{report}"
    );
    assert_eq!(
        rpo,
        ms(&fail["started_unix_ms"]) - ms(&backup["created_unix"]) * 1000,
        "RPO does not match the backup's time"
    );
    eprintln!("host loss: RTO {rto} ms, RPO {rpo} ms");

    // History on the coordinator.
    let id = report["drill_id"].as_str().unwrap();
    let ls = hosts.host2.json(&["drill", "ls"]);
    assert!(ls.iter().any(|d| d["drill_id"] == id), "{ls:?}");
    let shown = hosts.host2.json(&["drill", "show", id]).remove(0);
    assert_eq!(shown["rto_ms"], report["rto_ms"]);
    assert!(std::fs::read_to_string(&md).unwrap().contains("RTO"));
}

#[test]
fn a_failing_probe_fails_the_drill_runs_cleanup_and_keeps_the_container() {
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let (_web, _db, _addr) = start_web_and_db(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad-probe.toml");
    std::fs::write(
        &file,
        r#"name = "probe that never passes"

[[step]]
action = "move"
container = "web"
to = "host2"

[[step]]
action = "wait-healthy"
container = "web"
timeout_secs = 3
probe = { tcp_port = 9999 }

[[step]]
action = "sleep"
secs = 1

[[cleanup]]
action = "move-back"
container = "web"
"#,
    )
    .unwrap();
    let md = dir.path().join("report.md");
    let (ok, report, err) = run_drill(&hosts.host1, &file.display().to_string(), &md);
    assert!(!ok, "a failed drill exited 0: {report}");
    assert_eq!(report["passed"], false);
    assert!(err.contains("failed"), "{err}");
    let s = steps(&report);
    let outcomes: Vec<(&str, bool, &str)> = s
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap(),
                s["cleanup"].as_bool().unwrap_or(false),
                s["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("move", false, "passed"),
            ("wait-healthy", false, "failed"),
            ("sleep", false, "skipped"),
            ("move-back", true, "passed"),
        ],
        "{report}"
    );
    assert!(
        report["error"].as_str().unwrap().contains("wait-healthy"),
        "{report}"
    );
    assert!(md.exists(), "no Markdown report for a failed drill");
    // Never lost: web is back where it was, running once.
    assert!(hosts.host1.running().contains(&"web".to_string()));
    assert!(hosts.host2.running().is_empty());
}

#[test]
fn invalid_drill_files_are_refused_with_line_and_field() {
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let (_web, _db, _addr) = start_web_and_db(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown action",
            "name = \"x\"\n\n[[step]]\naction = \"explode\"\ncontainer = \"web\"\n",
            "4",
            "action",
        ),
        (
            "missing field",
            "name = \"x\"\n\n[[step]]\naction = \"move\"\ncontainer = \"web\"\n",
            "3",
            "to",
        ),
        (
            "unknown host (the agent's check)",
            "name = \"x\"\n\n[[step]]\naction = \"move\"\ncontainer = \"web\"\nto = \"host9\"\n",
            "6",
            "host9",
        ),
        (
            "unknown container (the agent's check)",
            "name = \"x\"\n\n[[step]]\naction = \"sleep\"\nsecs = 1\n\n[[step]]\naction = \"backup\"\ncontainer = \"nosuch\"\n",
            "9",
            "nosuch",
        ),
    ];
    for (what, text, line, needle) in cases {
        let file = dir.path().join("drill.toml");
        std::fs::write(&file, text).unwrap();
        let f = file.display().to_string();
        let out = hosts.host1.cli(&["drill", "validate", &f]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            err.contains(&format!("{f}:{line}:")) && err.contains(needle),
            "{what}: expected line {line} and {needle:?} in: {err}"
        );
        // `run` refuses it too, before doing anything.
        let out = hosts.host1.cli(&["drill", "run", &f]);
        assert!(!out.status.success(), "{what}: ran");
    }
    let ok = hosts
        .host1
        .ok(&["drill", "validate", &drill_file("planned-maintenance.toml")]);
    assert!(ok.contains("ok"), "{ok}");
    let mut running = hosts.host1.running();
    running.sort();
    assert_eq!(running, ["db", "web"]);
}
