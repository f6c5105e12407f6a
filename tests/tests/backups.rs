//! Scheduled, forever-incremental backups: they never stop the container for longer than they
//! report, retention and garbage collection keep exactly what they should, an idle container's
//! next backup adds almost nothing, damage is found and refused, a replicated backup restores
//! on the peer with the source host gone, and an agent killed mid-backup leaves nothing behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use migrate_tests::agent::TestAgent;
use migrate_tests::hosts::TwoHosts;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time: the freeze-gap test measures scheduling from
/// inside a container, and the others' CRIU dumps on the same 2 vCPUs would add to it.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Longest pause the ticker may see beyond the reported freeze: it sleeps 1 ms per tick and
/// shares two vCPUs with CRIU and the agent storing chunks right after the thaw.
const SCHEDULING_SLACK_MS: u64 = 200;

/// A container whose init ticks every millisecond (see tests/support/ticker.c) next to memhog
/// (`MIB` MiB, re-verified forever).
fn ticking_bundle(mib: u32) -> TestBundle {
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        &format!("/bin/memhog {mib} /tmp/mem & exec /bin/ticker /tmp/tick"),
    ]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    b.add_file(
        &migrate_tests::bundle::static_program("ticker"),
        "/bin/ticker",
    );
    b
}

fn run(agent: &TestAgent, id: &str, b: &TestBundle, ip: Option<&str>) {
    let bundle = b.path().display().to_string();
    let mut args = vec!["run", id, "--bundle", &bundle];
    if let Some(ip) = ip {
        args.extend(["--ip", ip]);
    }
    agent.ok(&args);
    wait_for("memhog's first verified round", T, || {
        let out = agent.cli(&["exec", id, "--", "cat", "/tmp/mem"]);
        String::from_utf8_lossy(&out.stdout)
            .starts_with("ok ")
            .then_some(())
    });
}

/// (ticks, longest gap in ms) as the ticker inside `id` reports them.
fn ticks(agent: &TestAgent, id: &str) -> (u64, u64) {
    let out = wait_for("the ticker's status", T, || {
        let out = agent.cli(&["exec", id, "--", "cat", "/tmp/tick"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let mut f = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (f.next().unwrap(), f.next().unwrap() / 1000)
}

/// memhog's checksum inside `id`.
fn checksum(agent: &TestAgent, id: &str) -> String {
    let out = agent.ok(&["exec", id, "--", "cat", "/tmp/mem"]);
    assert!(out.starts_with("ok "), "memhog in {id}: {out}");
    out.split_whitespace().nth(2).unwrap().to_string()
}

/// Sends one line to the echo service and reads the answer.
fn echo(conn: &mut std::net::TcpStream, msg: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    conn.write_all(format!("{msg}\n").as_bytes()).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    let mut line = String::new();
    BufReader::new(&*conn).read_line(&mut line).unwrap();
    line
}

fn backup_now(agent: &TestAgent, id: &str, extra: &[&str]) -> Value {
    let mut args = vec!["backup", "now", id];
    args.extend(extra);
    agent.json(&args).remove(0)
}

/// `backup ls` as (backups, totals).
fn backups(agent: &TestAgent, id: &str) -> (Vec<Value>, Value) {
    let mut lines = agent.json(&["backup", "ls", id]);
    let totals = lines.pop().expect("a totals line");
    (lines, totals["totals"].clone())
}

fn store(agent: &TestAgent) -> std::path::PathBuf {
    agent.state_dir.join("store")
}

/// Every chunk file in an agent's store.
fn chunk_files(agent: &TestAgent) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in std::fs::read_dir(store(agent).join("chunks")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            out.insert(name.trim_end_matches(".zst").to_string());
        }
    }
    out
}

/// Every committed manifest: (id, kind, chunk hashes).
fn manifests(agent: &TestAgent) -> Vec<(String, String, Vec<String>)> {
    std::fs::read_dir(store(agent).join("manifests"))
        .unwrap()
        .map(|e| {
            let m: Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            let chunks = m["files"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|f| f["chunks"].as_array().unwrap().iter())
                .map(|c| c["hash"].as_str().unwrap().to_string())
                .collect();
            (
                m["id"].as_str().unwrap().to_string(),
                m["kind"].as_str().unwrap().to_string(),
                chunks,
            )
        })
        .collect()
}

fn backup_manifests(agent: &TestAgent) -> BTreeSet<String> {
    manifests(agent)
        .into_iter()
        .filter(|(_, kind, _)| kind == "backup")
        .map(|(id, _, _)| id)
        .collect()
}

fn ids(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|b| b["backup_id"].as_str().unwrap().to_string())
        .collect()
}

fn succeeded_backups(agent: &TestAgent, id: &str) -> usize {
    agent
        .json(&["ops"])
        .iter()
        .filter(|o| o["kind"] == "backup" && o["container_id"] == id && o["state"] == "succeeded")
        .count()
}

#[test]
fn scheduled_backups_keep_the_container_running_and_retention_keeps_the_policy() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let agent = TestAgent::start("host1", "");
    let b = ticking_bundle(16);
    run(&agent, "web", &b, None);
    let (ticks0, _) = ticks(&agent, "web");

    let s = agent.json(&["backup", "schedule", "web", "--every", "2s", "--keep", "10"]);
    assert_eq!(s[0]["container_id"], "web", "{s:?}");
    assert_eq!(s[0]["every_secs"], 2, "{s:?}");
    wait_for("four scheduled backups", T, || {
        (succeeded_backups(&agent, "web") >= 4).then_some(())
    });
    agent.ok(&["backup", "unschedule", "web"]);
    assert!(agent.json(&["backup", "schedules"]).is_empty());
    // A run may have started just before the schedule went.
    wait_for("no backup in flight", T, || {
        (!agent
            .json(&["ops"])
            .iter()
            .any(|o| o["kind"] == "backup" && o["state"] == "running"))
        .then_some(())
    });
    let (list, totals) = backups(&agent, "web");
    assert!(list.len() >= 4, "{list:?}");
    assert_eq!(totals["backups"], list.len());
    // Deduplicated storage is far below the sum of the backups' logical sizes.
    assert!(
        totals["stored_bytes"].as_u64().unwrap() * 2 < totals["logical_bytes"].as_u64().unwrap(),
        "{totals}"
    );

    // The ticker never stopped for longer than the longest freeze the backups reported.
    let (ticks1, longest_gap_ms) = ticks(&agent, "web");
    let longest_freeze_ms = list
        .iter()
        .map(|b| b["frozen_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    eprintln!(
        "{} backups; longest reported freeze {longest_freeze_ms} ms; longest gap seen inside {longest_gap_ms} ms",
        list.len()
    );
    assert!(
        ticks1 > ticks0 + 1000,
        "the ticker stalled: {ticks0} -> {ticks1}"
    );
    assert!(longest_freeze_ms > 0);
    assert!(
        longest_gap_ms <= longest_freeze_ms + SCHEDULING_SLACK_MS,
        "the container stopped for {longest_gap_ms} ms, but backups reported at most {longest_freeze_ms} ms frozen"
    );

    // Retention: with a schedule keeping 2, the next backup leaves exactly the 2 newest.
    agent.ok(&["backup", "schedule", "web", "--every", "1h", "--keep", "2"]);
    let chunks_before = chunk_files(&agent);
    let newest = backup_now(&agent, "web", &[]);
    let (kept, _) = backups(&agent, "web");
    let mut expected: Vec<&Value> = list.iter().collect();
    expected.sort_by_key(|b| std::cmp::Reverse(b["created_unix"].as_i64().unwrap()));
    let expected: BTreeSet<String> = [
        newest["backup_id"].as_str().unwrap().to_string(),
        expected[0]["backup_id"].as_str().unwrap().to_string(),
    ]
    .into();
    assert_eq!(ids(&kept), expected, "retention kept the wrong backups");
    assert_eq!(backup_manifests(&agent), expected);

    // Garbage collection removed exactly the chunks no manifest references any more.
    let referenced: BTreeSet<String> = manifests(&agent)
        .into_iter()
        .flat_map(|(_, _, c)| c)
        .collect();
    let now = chunk_files(&agent);
    assert_eq!(
        now, referenced,
        "chunk files differ from what manifests reference"
    );
    assert!(
        now.len() < chunks_before.len(),
        "nothing was collected ({} chunks before, {} after)",
        chunks_before.len(),
        now.len()
    );
    // And what is left is whole.
    let verified = agent.json(&["backup", "verify"]);
    assert_eq!(verified.len(), 2);
    assert!(
        verified.iter().all(|b| b["verified_ok"] == true),
        "{verified:?}"
    );
    agent.ok(&["backup", "unschedule", "web"]);
    assert_eq!(agent.running(), ["web"]);
}

#[test]
fn an_idle_containers_next_backup_adds_under_a_tenth() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let agent = TestAgent::start("host1", "");
    let b = ticking_bundle(64);
    run(&agent, "db", &b, None);
    let first = backup_now(&agent, "db", &[]);
    let second = backup_now(&agent, "db", &[]);
    let (a1, a2) = (
        first["added_bytes"].as_u64().unwrap(),
        second["added_bytes"].as_u64().unwrap(),
    );
    eprintln!(
        "first backup added {a1} bytes ({} logical), the second {a2} bytes ({:.2} %)",
        first["logical_bytes"],
        a2 as f64 * 100.0 / a1 as f64
    );
    assert!(a1 > 16 << 20, "the first backup stored too little: {first}");
    assert!(a2 * 10 < a1, "the second backup added {a2} of {a1} bytes");
    // The first backup also added the bundle layer; its own chunks were all new.
    let s1 = first["stored_bytes"].as_u64().unwrap();
    assert!(a1 > s1 && a1 - s1 < 4 << 20, "added {a1}, stored {s1}");
    assert!(second["stored_bytes"].as_u64().unwrap() > a2);

    // Removing the first frees only what the second does not share.
    let id1 = first["backup_id"].as_str().unwrap();
    agent.ok(&["backup", "rm", id1]);
    let referenced: BTreeSet<String> = manifests(&agent)
        .into_iter()
        .flat_map(|(_, _, c)| c)
        .collect();
    assert_eq!(chunk_files(&agent), referenced);
    let err = agent.cli(&["backup", "show", id1]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("does not exist"),
        "{err:?}"
    );
    let v = agent.json(&["backup", "verify", second["backup_id"].as_str().unwrap()]);
    assert_eq!(v[0]["verified_ok"], true, "{v:?}");

    // Removing the container ends its schedule; its backups stay.
    agent.ok(&["backup", "schedule", "db", "--every", "1h", "--keep", "1"]);
    agent.ok(&["rm", "--force", "db"]);
    assert!(agent.json(&["backup", "schedules"]).is_empty());
    assert_eq!(backups(&agent, "db").0.len(), 1);
}

#[test]
fn a_corrupt_chunk_is_found_and_its_backup_refuses_to_restore() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let agent = TestAgent::start("host1", "");
    let b = ticking_bundle(16);
    run(&agent, "web", &b, None);
    let backup = backup_now(&agent, "web", &[]);
    let id = backup["backup_id"].as_str().unwrap().to_string();

    // Whole, it verifies, and a restore test runs it as a throw-away container.
    let v = agent.json(&["backup", "verify", &id, "--restore-test"]);
    assert_eq!(v[0]["verified_ok"], true, "{v:?}");
    let detail = v[0]["verify_detail"].as_str().unwrap();
    assert!(detail.contains("restored as web-verify-"), "{detail}");
    assert_eq!(
        agent.running(),
        ["web"],
        "the restore test left a container"
    );
    let shown = agent.json(&["backup", "show", &id]).remove(0);
    assert!(shown["verified_unix"].as_i64().unwrap() > 0, "{shown}");

    // Damage one chunk of the memory image on disk.
    let (_, _, chunks) = manifests(&agent)
        .into_iter()
        .find(|(m, _, _)| *m == id)
        .unwrap();
    let victim = &chunks[chunks.len() / 2];
    let path = store(&agent)
        .join("chunks")
        .join(&victim[..2])
        .join(format!("{victim}.zst"));
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len() / 2;
    data[n] ^= 0x55;
    std::fs::write(&path, data).unwrap();

    let out = agent.cli(&["backup", "verify", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify passed a corrupt backup");
    assert!(
        err.contains("corrupt") && err.contains(victim.as_str()),
        "{err}"
    );
    let shown = agent.json(&["backup", "show", &id]).remove(0);
    assert_eq!(shown["verified_ok"], false, "{shown}");

    let out = agent.cli(&["backup", "restore", "web", "--from", &id, "--as", "web2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt backup restored");
    assert!(
        err.contains("corrupt") && err.contains(victim.as_str()),
        "{err}"
    );
    assert!(
        !agent.json(&["ps"]).iter().any(|c| c["id"] == "web2"),
        "a container was created from a corrupt backup"
    );
    assert_eq!(agent.running(), ["web"]);
    assert!(
        std::fs::read_dir(agent.scratch.path())
            .unwrap()
            .next()
            .is_none(),
        "restore images left in the scratch dir"
    );
}

#[test]
fn an_agent_killed_mid_backup_leaves_no_backup_and_no_frozen_container() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let mut agent = TestAgent::start("host1", "");
    let b = ticking_bundle(16);
    run(&agent, "web", &b, None);
    agent.set_env("MIGRATE_FAULT", "backup-hold=20000");
    let mut cli = agent.spawn_cli(&["backup", "now", "web"]);
    // CRIU holds the tasks stopped (under ptrace, the freezer thawed again), so "frozen" is
    // seen from inside: the ticker stops advancing.
    wait_for("the backup to freeze the container", T, || {
        if let Ok(Some(status)) = cli.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(cli.stderr.as_mut().unwrap(), &mut err);
            panic!(
                "the backup ended ({status}) before it froze the container: {err}\n{}",
                agent.log()
            );
        }
        let (t0, _) = ticks(&agent, "web");
        std::thread::sleep(Duration::from_millis(500));
        (ticks(&agent, "web").0 == t0).then_some(())
    });
    // Two backups of one container never overlap: a second one is refused while this runs.
    let second = agent.cli(&["backup", "now", "web"]);
    assert!(!second.status.success(), "a second backup ran alongside");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another operation in progress"),
        "{second:?}"
    );
    agent.kill9();
    let _ = cli.wait();
    agent.set_env("MIGRATE_FAULT", "");
    let rt = agent.runtime();
    wait_for("the container to run again", T, || {
        (rt.load("web").ok()?.status() == runtime::Status::Running).then_some(())
    });
    let (t0, _) = ticks(&agent, "web");
    std::thread::sleep(Duration::from_millis(300));
    let (t1, _) = ticks(&agent, "web");
    assert!(t1 > t0, "the container does not tick after recovery");
    let (list, _) = backups(&agent, "web");
    assert!(list.is_empty(), "a cut-short backup is visible: {list:?}");
    assert!(backup_manifests(&agent).is_empty());
    assert!(
        std::fs::read_dir(agent.scratch.path())
            .unwrap()
            .next()
            .is_none(),
        "the cut-short backup's images are still in the scratch dir"
    );
    let ops: Vec<Value> = agent
        .json(&["ops"])
        .into_iter()
        .filter(|o| o["kind"] == "backup")
        .collect();
    assert!(ops.iter().all(|o| o["state"] == "failed"), "{ops:?}");
    assert!(
        ops.iter()
            .any(|o| o["error"].as_str().unwrap().contains("interrupted")),
        "{ops:?}"
    );
    // And the next backup works.
    let next = backup_now(&agent, "web", &[]);
    assert!(next["logical_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_replicated_backup_restores_on_the_peer_with_the_source_host_down() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let mut hosts = TwoHosts::start();
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "/bin/memhog 32 /tmp/mem & nc -ll -p 8000 -e cat & exec sleep 100000",
    ]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    let ip = hosts.next_container_ip();
    let addr = ip.split('/').next().unwrap().to_string();
    run(&hosts.host1, "web", &b, Some(&ip));
    let sum = checksum(&hosts.host1, "web");
    hosts
        .host1
        .ok(&["exec", "web", "--", "sh", "-c", "echo before > /tmp/marker"]);

    // A client is connected while the backup is taken: its connection is in the images and
    // comes back closed in restored copies, and the original keeps it.
    let mut conn = hosts.client_connect(&addr, 8000).unwrap();
    assert_eq!(echo(&mut conn, "before"), "before\n");
    let backup = backup_now(&hosts.host1, "web", &["--replicate-to", "host2"]);
    assert_eq!(backup["replicas"], serde_json::json!(["host2"]), "{backup}");
    assert!(backup["sent_bytes"].as_u64().unwrap() > 0, "{backup}");
    let id = backup["backup_id"].as_str().unwrap().to_string();
    hosts
        .host1
        .ok(&["exec", "web", "--", "sh", "-c", "echo after > /tmp/after"]);

    // host2 holds the copy, and it restores in isolation while the original still serves.
    let (there, _) = backups(&hosts.host2, "web");
    assert_eq!(ids(&there), [id.clone()].into());
    assert_eq!(there[0]["origin"], "host1");
    let v = hosts
        .host2
        .json(&["backup", "verify", &id, "--restore-test"]);
    assert_eq!(v[0]["verified_ok"], true, "{v:?}");
    assert!(hosts.host2.running().is_empty());
    assert_eq!(hosts.host2.netns_list(), Vec::<String>::new());
    assert_eq!(
        echo(&mut conn, "still-here"),
        "still-here\n",
        "the restore test disturbed the original"
    );

    // `--on`: host1 copies a backup to host2 and has host2 restore it there.
    let calc = TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done",
    ]);
    hosts.host1.ok(&[
        "run",
        "calc",
        "--bundle",
        &calc.path().display().to_string(),
    ]);
    backup_now(&hosts.host1, "calc", &[]);
    let copy = hosts
        .host1
        .json(&[
            "backup", "restore", "calc", "--on", "host2", "--as", "calc2",
        ])
        .remove(0);
    assert_eq!(copy["id"], "calc2");
    assert_eq!(hosts.host2.running(), ["calc2"]);
    hosts.host2.ok(&["rm", "--force", "calc2"]);
    // A copy that would take the original's address while it is in use is refused, and
    // leaves nothing on host2.
    let out = hosts.host1.cli(&[
        "backup", "restore", "web", "--on", "host2", "--as", "web-copy",
    ]);
    assert!(!out.status.success(), "two containers got {ip}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{out:?}"
    );
    assert!(hosts.host2.running().is_empty());
    assert_eq!(hosts.host2.netns_list(), Vec::<String>::new());

    // host1 dies: cut off, its agent and its container killed.
    hosts.link_down("host1");
    hosts.host1.kill9();
    for c in hosts.host1.runtime().list().unwrap() {
        c.delete(true).unwrap();
    }

    let restored = hosts.host2.json(&["backup", "restore", "web"]).remove(0);
    assert_eq!(restored["id"], "web");
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(restored["ip"], ip.as_str());
    assert_eq!(hosts.host2.running(), ["web"]);
    assert_eq!(checksum(&hosts.host2, "web"), sum, "memory changed");
    let files = hosts.host2.ok(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "cat /tmp/marker; ls /tmp/after 2>/dev/null || echo no-after",
    ]);
    assert_eq!(files, "before\nno-after\n", "not the state at backup time");
    let s = wait_for("the service on host2", T, || {
        hosts.client_connect(&addr, 8000).ok()
    });
    let mut s = s;
    assert_eq!(echo(&mut s, "hello"), "hello\n");
    assert!(Path::new(&hosts.host2.scratch.path())
        .read_dir()
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_run_missed_while_the_agent_was_down_runs_once_on_start() {
    migrate_tests::prereq::require_criu();
    let _serial = serial();
    let mut agent = TestAgent::start("host1", "");
    let b = ticking_bundle(8);
    run(&agent, "web", &b, None);
    agent.ok(&["backup", "schedule", "web", "--every", "4s", "--keep", "10"]);
    // Down before the first run is due, and for two more intervals.
    agent.stop();
    std::thread::sleep(Duration::from_secs(10));
    agent.restart();
    wait_for("the missed run", T, || {
        (succeeded_backups(&agent, "web") == 1).then_some(())
    });
    // Not once per missed slot: the next run is an interval later.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        succeeded_backups(&agent, "web"),
        1,
        "missed slots were made up one by one"
    );
    let s = agent.json(&["backup", "schedules"]).remove(0);
    assert!(s["last_run_unix"].as_i64().unwrap() > 0, "{s}");
    assert_eq!(s["last_error"], "", "{s}");
    wait_for("the next regular run", T, || {
        (succeeded_backups(&agent, "web") >= 2).then_some(())
    });
    agent.ok(&["backup", "unschedule", "web"]);
}
