//! Post-copy moves (`migrate move --mode lazy`) between two agents: the container runs on the
//! target at once and its memory follows through the agents' channel; the memory checksum
//! holds once it is all there, a TCP client keeps its connection, no page-server port is open
//! anywhere, and the preflight refuses hosts that cannot do it.
//!
//! The tests here change `fs.pipe-max-size`, which is global: they run one at a time.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use migrate_tests::hosts::{HostAgent, TwoHosts};
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// memhog over `mib` MiB (re-verified continuously) and a TCP echo service on port 8000.
fn memory_bundle(mib: u32) -> TestBundle {
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        &format!("nc -ll -p 8000 -e cat & exec /bin/memhog {mib} /tmp/mem"),
    ]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    b
}

/// memhog's status line: `ok|BAD <round> <checksum>`.
fn mem(on: &HostAgent) -> (String, u64, String) {
    // Absent until memhog has filled its memory once.
    let out = on.cli(&["exec", "web", "--", "cat", "/tmp/mem"]);
    let out = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = out.split_whitespace().collect();
    (
        f.first().unwrap_or(&"").to_string(),
        f.get(1).and_then(|r| r.parse().ok()).unwrap_or(0),
        f.get(2).unwrap_or(&"").to_string(),
    )
}

fn echo(conn: &mut (BufReader<TcpStream>, TcpStream), msg: &str) -> String {
    conn.1.write_all(format!("{msg}\n").as_bytes()).unwrap();
    let mut line = String::new();
    conn.0.read_line(&mut line).unwrap();
    line
}

fn start_web(hosts: &TwoHosts, b: &TestBundle) -> String {
    let ip = hosts.next_container_ip();
    hosts.host1.ok(&[
        "run",
        "web",
        "--bundle",
        &b.path().display().to_string(),
        "--ip",
        &ip,
    ]);
    ip.split('/').next().unwrap().to_string()
}

/// TCP sockets on a host, one `state local peer process` line each.
fn tcp_sockets(h: &HostAgent) -> Vec<String> {
    h.on_host_ok(&["ss", "-Htanp"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn listeners(h: &HostAgent) -> BTreeSet<String> {
    tcp_sockets(h)
        .iter()
        .filter(|l| l.starts_with("LISTEN"))
        .filter_map(|l| l.split(' ').nth(3).map(str::to_string))
        .collect()
}

/// Pids of running `criu lazy-pages` daemons.
fn lazy_daemons() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("criu") && c.contains("lazy-pages")
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn lazy_move_of_256_mib_keeps_memory_and_connection_and_opens_no_port() {
    let _serial = serial();
    migrate_tests::prereq::require_criu();
    let mut hosts = TwoHosts::start();
    // host2 takes its time to set up the page relay: `Receive` must still find it.
    hosts
        .host2
        .set_env("MIGRATE_FAULT", "lazy-relay-open-delay");
    let b = memory_bundle(256);
    let addr = start_web(&hosts, &b);
    let s = wait_for("the echo service", T, || {
        hosts.client_connect(&addr, 8000).ok()
    });
    s.set_read_timeout(Some(T)).unwrap();
    let mut conn = (BufReader::new(s.try_clone().unwrap()), s);
    assert_eq!(echo(&mut conn, "hello"), "hello\n");
    let (_, _, checksum) = wait_for("memhog to fill and verify", T, || {
        let m = mem(&hosts.host1);
        (m.0 == "ok" && m.1 >= 1).then_some(m)
    });

    // Watch both hosts while the move runs: no listener may appear, no CRIU process may own a
    // TCP socket, and the lazy-pages daemon must be seen at work (or the watch proved nothing).
    let before: Vec<BTreeSet<String>> = [&hosts.host1, &hosts.host2]
        .iter()
        .map(|h| listeners(h))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let report = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen_daemon = false;
            let mut problems = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if !lazy_daemons().is_empty() {
                    seen_daemon = true;
                }
                for (i, h) in [&hosts.host1, &hosts.host2].iter().enumerate() {
                    for l in tcp_sockets(h) {
                        if l.contains("\"criu\"") {
                            problems.push(format!("{}: criu owns a TCP socket: {l}", h.node));
                        }
                    }
                    for l in listeners(h).difference(&before[i]) {
                        problems.push(format!("{}: new listener {l}", h.node));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen_daemon, problems)
        });
        // `cli`, not `ok`: a panic here would leave the watcher running and the scope waiting.
        let out = hosts.host1.cli(&[
            "move", "web", "--to", "host2", "--mode", "lazy", "--yes", "--output", "json",
        ]);
        done.store(true, Ordering::Relaxed);
        let (seen_daemon, problems) = watcher.join().unwrap();
        assert!(
            out.status.success(),
            "the lazy move failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            seen_daemon,
            "never saw the lazy-pages daemon run during the move"
        );
        assert!(problems.is_empty(), "{problems:#?}");
        serde_json::from_str::<Value>(out.lines().last().unwrap()).unwrap()
    });

    eprintln!("lazy move report: {report}");
    assert_eq!(report["mode"], "lazy", "{report}");
    let downtime = report["downtime_ms"].as_u64().unwrap();
    let resident = report["resident_ms"].as_u64().unwrap();
    assert!(
        downtime > 0 && resident >= downtime,
        "downtime {downtime} ms, resident after {resident} ms: {report}"
    );
    let pages =
        report["pages_faulted"].as_u64().unwrap() + report["pages_pushed"].as_u64().unwrap();
    // Most of memhog's 256 MiB is private anonymous memory: it must have come lazily.
    assert!(
        pages * 4096 >= 200 << 20,
        "only {pages} pages came after the start: {report}"
    );
    assert!(
        report["bytes_lazy"].as_u64().unwrap() >= pages * 4096,
        "{report}"
    );
    assert!(
        report["bytes_sent"].as_u64().unwrap() < 64 << 20,
        "the frozen phase carried memory: {report}"
    );
    assert!(
        hosts.host1.running().is_empty(),
        "the source still runs web"
    );
    assert_eq!(hosts.host2.running(), ["web"]);
    assert!(
        lazy_daemons().is_empty(),
        "a lazy-pages daemon outlived the move"
    );
    // Fully resident: the checksum memhog computes over all of it is the one from before.
    let (state, _, after) = wait_for("memhog to verify on host2", T, || {
        let m = mem(&hosts.host2);
        (m.0 != "ok" || m.2 == checksum).then_some(m)
    });
    assert_eq!((state.as_str(), after.as_str()), ("ok", checksum.as_str()));
    assert_eq!(
        echo(&mut conn, "after-lazy-move"),
        "after-lazy-move\n",
        "the client's connection did not survive"
    );
}

/// Restores `fs.pipe-max-size` when dropped.
struct PipeMaxSize(String);

impl PipeMaxSize {
    fn set(value: u64) -> PipeMaxSize {
        let old = std::fs::read_to_string(PIPE_MAX_SIZE).unwrap();
        std::fs::write(PIPE_MAX_SIZE, value.to_string()).unwrap();
        PipeMaxSize(old.trim().to_string())
    }
}

impl Drop for PipeMaxSize {
    fn drop(&mut self) {
        let _ = std::fs::write(PIPE_MAX_SIZE, &self.0);
    }
}

#[test]
fn lazy_move_is_refused_without_yes_or_with_a_small_pipe_max_size() {
    let _serial = serial();
    migrate_tests::prereq::require_criu();
    let hosts = TwoHosts::start();
    let b = memory_bundle(16);
    start_web(&hosts, &b);
    wait_for("memhog to verify", T, || {
        (mem(&hosts.host1).0 == "ok").then_some(())
    });

    let no_yes = hosts
        .host1
        .cli(&["move", "web", "--to", "host2", "--mode", "lazy"]);
    let err = String::from_utf8_lossy(&no_yes.stderr);
    assert!(!no_yes.status.success());
    assert!(
        err.contains("cannot be rolled back") && err.contains("--yes"),
        "{err}"
    );

    let small = {
        let _small = PipeMaxSize::set(1 << 20);
        hosts
            .host1
            .cli(&["move", "web", "--to", "host2", "--mode", "lazy", "--yes"])
    };
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(!small.status.success());
    assert!(
        err.contains("preflight")
            && err.contains("fs.pipe-max-size")
            && err.contains("sysctl -w fs.pipe-max-size=4194304"),
        "the refusal must name the fix: {err}"
    );

    // Nothing happened: web runs on host1, not frozen, and host2 has nothing.
    assert_eq!(hosts.host1.running(), ["web"]);
    assert!(hosts.host2.running().is_empty());
    let round = mem(&hosts.host1).1;
    wait_for("memhog to keep going on host1", T, || {
        (mem(&hosts.host1).1 > round).then_some(())
    });
}

/// Two hosts whose host1 agent runs with `fault` after 32 MiB of page traffic, and web (memhog
/// over 128 MiB) on host1 once it verified its memory; returns its checksum.
fn web_with_fault(fault: &str) -> (TwoHosts, TestBundle, String) {
    let mut hosts = TwoHosts::start();
    hosts
        .host1
        .set_env("MIGRATE_FAULT", &format!("{fault}={}", 32 << 20));
    let b = memory_bundle(128);
    start_web(&hosts, &b);
    let (_, _, checksum) = wait_for("memhog to fill and verify", T, || {
        let m = mem(&hosts.host1);
        (m.0 == "ok" && m.1 >= 1).then_some(m)
    });
    (hosts, b, checksum)
}

/// memhog on `h` goes on to a later round with `checksum`.
fn goes_on_with(h: &HostAgent, checksum: &str) {
    let round = mem(h).1;
    let (state, _, after) = wait_for("memhog to go on", T, || {
        let m = mem(h);
        (m.0 != "ok" || m.1 > round).then_some(m)
    });
    assert_eq!((state.as_str(), after.as_str()), ("ok", checksum));
}

#[test]
fn lazy_move_whose_relay_breaks_mid_way_ends_with_one_copy_and_says_what_was_lost() {
    let _serial = serial();
    migrate_tests::prereq::require_criu();
    // The source's relay stops after 32 MiB of the 128 MiB.
    let (hosts, _b, checksum) = web_with_fault("lazy-relay-break");
    let out = hosts
        .host1
        .cli(&["move", "web", "--to", "host2", "--mode", "lazy", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("lazy move with a broken relay: {err}");
    assert!(!out.status.success(), "the move should fail");
    assert!(
        err.contains("failed after it ran there for")
            && err.contains("MiB sent")
            && err.contains("runs on host1 again from its checkpoint")
            && err.contains("is lost"),
        "the error must say what was lost: {err}"
    );
    // Exactly one copy: host2 removed its own, host1 runs again, with its memory intact.
    assert!(hosts.host2.running().is_empty(), "host2 kept its copy");
    assert!(
        hosts.host2.runtime().list().unwrap().is_empty(),
        "runtime state left on host2"
    );
    assert!(lazy_daemons().is_empty(), "a lazy-pages daemon was left");
    assert_eq!(hosts.host1.running(), ["web"]);
    goes_on_with(&hosts.host1, &checksum);
}

#[test]
fn target_agent_killed_while_memory_arrives_ends_with_one_copy() {
    let _serial = serial();
    migrate_tests::prereq::require_criu();
    // The relay stalls after 32 MiB: the container runs on host2 with most memory missing.
    let (mut hosts, _b, checksum) = web_with_fault("lazy-relay-stall");
    let mover = hosts
        .host1
        .spawn_cli(&["move", "web", "--to", "host2", "--mode", "lazy", "--yes"]);
    wait_for("the relay to stall", T, || {
        hosts.host1.log().contains("lazy-relay-stall").then_some(())
    });
    hosts.host2.kill9();
    hosts.host2.restart();
    let out = mover.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("lazy move with the target agent killed: {err}");
    assert!(!out.status.success(), "the move should fail");
    assert!(err.contains("failed after it ran there for"), "{err}");
    // host2 removed the copy that lost its page source when its agent came back.
    wait_for("host2 to remove its copy", T, || {
        (hosts.host2.running().is_empty() && hosts.host2.runtime().list().unwrap().is_empty())
            .then_some(())
    });
    assert!(
        hosts
            .host2
            .log()
            .contains("memory was still arriving: removing the copy"),
        "host2 did not say why it removed the copy"
    );
    // host1 has the only copy: thawed with its memory, or still frozen if host2 could not be
    // asked in time (then `migrate resume` is the operator's call, made here).
    if !err.contains("runs on host1 again") {
        assert!(err.contains("stays frozen"), "{err}");
        hosts.host1.ok(&["resume", "web"]);
    }
    assert_eq!(hosts.host1.running(), ["web"]);
    goes_on_with(&hosts.host1, &checksum);
}
