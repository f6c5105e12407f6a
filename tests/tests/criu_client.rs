//! The CRIU RPC client (`runtime::criu`) against the real CRIU: version and capability
//! checks, CPU info, a dump/restore round trip of a plain host process tree (also with its
//! stdout re-attached through `inherit_fd`), refused `post-dump` and `post-restore`
//! notifications, a failing dump and a refused pre-copy. Each test checks that no CRIU process
//! is left behind.
//!
//! Needs root and CRIU >= 4.1 (`deploy/install.sh`); without them the tests fail and say so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runtime::criu::{notify, Criu, CriuError, DumpRequest, Notify, RestoreRequest, MIN_VERSION};
use tempfile::TempDir;

/// CRIU calls are serialized: the workloads share the host's pid space, and the "no CRIU
/// left over" checks look at all of this process's children.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the serial lock, checks the prerequisites and makes this process a subreaper, so
/// the workloads' orphaned children (killed by a dump) are reaped here at once instead of
/// whenever pid 1 gets to them (their pids must be free again before a restore).
fn setup() -> (MutexGuard<'static, ()>, Criu) {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CRIU tests need root; run them as root after `deploy/install.sh`"
    );
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let criu = Criu::locate().unwrap_or_else(|e| panic!("{e}"));
    (guard, criu)
}

/// Fails if any CRIU process (running or zombie) is still our child.
fn assert_no_criu_children() {
    let me = std::process::id() as i32;
    let left: Vec<String> = processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.comm == "criu")
        .map(|p| format!("{} ({})", p.pid, p.state))
        .collect();
    assert!(left.is_empty(), "criu processes left behind: {left:?}");
}

#[derive(Debug)]
struct Proc {
    pid: i32,
    comm: String,
    state: char,
    ppid: i32,
    sid: i32,
}

fn stat(pid: i32) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let _pgrp = rest.next()?;
    let sid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        comm: text[open + 1..close].to_string(),
        state,
        ppid,
        sid,
    })
}

fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|p| p.state != 'Z')
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        sleep(Duration::from_millis(20));
    }
}

/// A shell loop in its own session writing an increasing counter to a file every 0.1 s.
/// `Drop` kills the whole session and reaps it, whichever copy (original or restored) runs.
struct Workload {
    pid: i32,
    child: Option<Child>,
    restored: bool,
    dir: TempDir,
}

impl Workload {
    fn start() -> Workload {
        Workload::spawn(false)
    }

    /// Like `start`, but the loop also echoes the counter to its stdout, a pipe to us.
    fn start_piped() -> Workload {
        Workload::spawn(true)
    }

    fn spawn(piped: bool) -> Workload {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = dir.path().join("counter");
        let echo = if piped { "echo $i; " } else { "" };
        let script = format!(
            "i=0; while :; do i=$((i+1)); {echo}echo $i > {}; sleep 0.1; done",
            counter.display()
        );
        // Host /dev/null (or a pipe to us) as stdio: fine for a process in the host mount
        // namespace (CRIU-NOTES P4).
        let child = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(if piped { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn setsid sh");
        let w = Workload {
            pid: child.id() as i32,
            child: Some(child),
            restored: false,
            dir,
        };
        wait_for(
            "the workload to count to 3",
            Duration::from_secs(10),
            || w.counter().is_some_and(|n| n >= 3),
        );
        w
    }

    fn counter(&self) -> Option<u64> {
        fs::read_to_string(self.dir.path().join("counter"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn images(&self) -> PathBuf {
        let dir = self.dir.path().join("images");
        fs::create_dir_all(&dir).expect("images dir");
        dir
    }

    /// Reaps the original process after CRIU killed it, then waits until every pid of the
    /// session is free again (needed to restore the same pids).
    fn reap_dumped(&mut self) {
        let child = self.child.take().expect("original process");
        let status = wait_child(child);
        assert!(
            !status.success(),
            "the dumped shell should have been killed, got {status}"
        );
        self.wait_session_gone();
    }

    fn wait_session_gone(&self) {
        let me = std::process::id() as i32;
        wait_for(
            "the dumped session to be gone",
            Duration::from_secs(30),
            || {
                let members: Vec<Proc> = processes()
                    .into_iter()
                    .filter(|p| p.sid == self.pid)
                    .collect();
                for p in &members {
                    if p.ppid == me && p.state == 'Z' {
                        let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
                    }
                }
                members.is_empty()
            },
        );
    }

    /// Counter increases over the next second: the loop runs.
    fn assert_counting(&self) -> (u64, u64) {
        let before = self.counter().expect("counter");
        let mut after = before;
        wait_for("the counter to advance", Duration::from_secs(5), || {
            after = self.counter().unwrap_or(before);
            after > before + 2
        });
        (before, after)
    }
}

fn wait_child(mut child: Child) -> std::process::ExitStatus {
    child.wait().expect("wait for child")
}

impl Drop for Workload {
    fn drop(&mut self) {
        // setsid made the shell a process-group leader; its children share the group.
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        if let Some(child) = self.child.take() {
            let _ = wait_child(child);
        } else if self.restored {
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
        // Reap orphans that came to us as subreaper, so no zombie outlives the test.
        let me = std::process::id() as i32;
        for p in processes() {
            if p.sid == self.pid && p.ppid == me {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(p.pid), None);
            }
        }
    }
}

#[test]
fn version_is_at_least_4_1() {
    let (_serial, criu) = setup();
    let start = Instant::now();
    let version = criu.version().expect("version request");
    eprintln!(
        "criu {} at {} ({:?})",
        version,
        criu.path().display(),
        start.elapsed()
    );
    assert!(version >= MIN_VERSION, "criu {version} < {MIN_VERSION}");
    assert_eq!(criu.ensure_version().expect("ensure_version"), version);
    assert_no_criu_children();
}

#[test]
fn check_report_matches_this_kernel() {
    let (_serial, criu) = setup();
    let start = Instant::now();
    let report = criu.check().expect("criu check");
    eprintln!(
        "check report ({:?}): {}",
        start.elapsed(),
        serde_json::to_string(&report).expect("json")
    );
    assert!(report.looks_good, "criu check: {}", report.check_output);
    report.ensure_usable().expect("usable");
    assert_eq!(report.feature("uffd"), Some(true), "{report:?}");
    assert_eq!(report.feature("uffd-noncoop"), Some(true), "{report:?}");
    // This kernel has no soft-dirty: pre-copy is refused with a clear reason.
    assert_eq!(report.feature("mem_dirty_track"), Some(false), "{report:?}");
    assert!(!report.rpc.mem_track);
    assert!(report.rpc.lazy_pages);
    assert!(matches!(
        report.ensure_pre_copy(),
        Err(CriuError::PreCopyUnsupported)
    ));
    assert_no_criu_children();
}

#[test]
fn cpuinfo_dump_then_check_on_the_same_host() {
    let (_serial, criu) = setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    criu.cpuinfo_dump(dir.path()).expect("cpuinfo dump");
    let dumped = start.elapsed();
    assert_no_criu_children();
    assert!(dir.path().join("cpuinfo.img").is_file());
    let start = Instant::now();
    criu.cpuinfo_check(dir.path()).expect("cpuinfo check");
    eprintln!("cpuinfo dump {dumped:?}, check {:?}", start.elapsed());
    assert!(dir.path().join("cpuinfo-check.log").is_file());
    assert_no_criu_children();
}

#[test]
fn dump_and_restore_a_process_tree() {
    let (_serial, criu) = setup();
    let mut w = Workload::start();
    let images = w.images();

    let mut dump_notes = Vec::new();
    let dumped = criu
        .dump(
            &DumpRequest {
                images_dir: images.clone(),
                pid: w.pid,
                ..Default::default()
            },
            &mut |n: &mut Notify| {
                dump_notes.push(n.script.clone());
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("dump: {e}"));
    assert_no_criu_children();
    assert_eq!(dumped.log_file, images.join("dump.log"));
    assert!(dumped.log_file.is_file());
    assert!(images.join("inventory.img").is_file());
    assert!(
        dump_notes.iter().any(|s| s == notify::script::POST_DUMP),
        "{dump_notes:?}"
    );

    // Without leave_running CRIU killed the tree.
    w.reap_dumped();
    assert!(!alive(w.pid));
    let at_dump = w.counter().expect("counter at dump");
    sleep(Duration::from_millis(300));
    assert_eq!(w.counter(), Some(at_dump), "nothing counts while dumped");

    let mut notified_pid = None;
    let mut restore_notes = Vec::new();
    let restored = criu
        .restore(
            &RestoreRequest {
                images_dir: images.clone(),
                rst_sibling: true,
                ..Default::default()
            },
            &mut |n: &mut Notify| {
                restore_notes.push(n.script.clone());
                if n.script == notify::script::POST_RESTORE {
                    notified_pid = n.pid;
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("restore: {e}"));
    w.restored = true;
    assert_no_criu_children();
    eprintln!(
        "dump {:?}, restore {:?}; dump notes {dump_notes:?}; restore notes {restore_notes:?}",
        dumped.elapsed, restored.elapsed
    );
    assert_eq!(Some(restored.pid), notified_pid, "post-restore pid");
    assert_eq!(restored.pid, w.pid, "same pid without a pid namespace");
    assert_eq!(restored.log_file, images.join("restore.log"));
    assert!(restored.log_file.is_file());
    let me = std::process::id() as i32;
    assert_eq!(
        stat(restored.pid).map(|p| p.ppid),
        Some(me),
        "rst_sibling makes the restored root our child"
    );

    let (_, now) = w.assert_counting();
    assert!(
        now > at_dump && now < at_dump + 100,
        "counter continues from {at_dump}, got {now}"
    );

    kill(Pid::from_raw(restored.pid), Signal::SIGKILL).expect("kill restored");
    let status = waitpid(Pid::from_raw(restored.pid), None).expect("reap restored");
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "{status:?}"
    );
    w.restored = false;
    w.wait_session_gone();
}

#[test]
fn refused_post_dump_leaves_the_process_running() {
    let (_serial, criu) = setup();
    let w = Workload::start();
    let images = w.images();
    let mut notes = Vec::new();
    let err = criu
        .dump(
            &DumpRequest {
                images_dir: images.clone(),
                pid: w.pid,
                ..Default::default()
            },
            &mut |n: &mut Notify| {
                notes.push(n.script.clone());
                if n.script == notify::script::POST_DUMP {
                    Err("destination refused".into())
                } else {
                    Ok(())
                }
            },
        )
        .expect_err("a refused post-dump fails the dump");
    assert_no_criu_children();
    eprintln!("refused dump: {err}; notes {notes:?}");
    match &err {
        CriuError::Notify { script, source } => {
            assert_eq!(script, notify::script::POST_DUMP);
            assert_eq!(source.to_string(), "destination refused");
        }
        other => panic!("expected a notify error, got {other:?}"),
    }
    assert!(images.join("dump.log").is_file(), "the log is kept");
    assert!(alive(w.pid), "CRIU resumed the tree");
    w.assert_counting();
}

#[test]
fn dumping_a_missing_pid_reports_the_log_errors() {
    let (_serial, criu) = setup();
    let images = tempfile::tempdir().expect("temp dir");
    let pid_max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("pid_max number");
    let pid = (2..pid_max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid");
    let err = criu
        .dump(
            &DumpRequest {
                images_dir: images.path().into(),
                pid,
                ..Default::default()
            },
            &mut notify::accept_all,
        )
        .expect_err("dumping a missing pid fails");
    assert_no_criu_children();
    let text = err.to_string();
    eprintln!("missing pid {pid}: {text}");
    let CriuError::Failed(failure) = &err else {
        panic!("expected a criu failure, got {err:?}");
    };
    assert_eq!(failure.request, "dump");
    assert!(!failure.log_errors.is_empty(), "{failure:?}");
    for line in &failure.log_errors {
        assert!(text.contains(line.as_str()), "{text} lacks {line}");
        assert!(
            !line.contains("RLIMIT_NOFILE"),
            "harmless line kept: {line}"
        );
    }
    let log = fs::read_to_string(images.path().join("dump.log")).expect("dump.log");
    assert!(
        log.contains(&failure.log_errors[0]),
        "error lines come from dump.log"
    );
    assert!(text.contains("dump.log"), "{text}");
}

#[test]
fn pre_copy_is_refused_with_a_clear_reason() {
    let (_serial, criu) = setup();
    let w = Workload::start();
    let round = w.dir.path().join("round1");
    fs::create_dir_all(&round).expect("round dir");
    let err = criu
        .pre_dump(
            &[DumpRequest {
                images_dir: round,
                pid: w.pid,
                ..Default::default()
            }],
            &DumpRequest {
                images_dir: w.images(),
                pid: w.pid,
                parent_img: Some("../round1".into()),
                ..Default::default()
            },
            &mut notify::accept_all,
        )
        .expect_err("no soft-dirty on this kernel");
    assert_no_criu_children();
    assert!(matches!(err, CriuError::PreCopyUnsupported), "{err:?}");
    assert!(err.to_string().contains("soft-dirty"), "{err}");
    assert!(alive(w.pid));
}

#[test]
fn refused_post_restore_kills_the_restored_tree_and_reaps_it() {
    let (_serial, criu) = setup();
    let mut w = Workload::start();
    let images = w.images();
    let dump = DumpRequest {
        images_dir: images.clone(),
        pid: w.pid,
        ..Default::default()
    };
    criu.dump(&dump, &mut notify::accept_all)
        .unwrap_or_else(|e| panic!("dump: {e}"));
    w.reap_dumped();

    let mut restored_pid = None;
    let err = criu
        .restore(
            &RestoreRequest {
                images_dir: images,
                rst_sibling: true,
                ..Default::default()
            },
            &mut |n: &mut Notify| {
                if n.script == notify::script::POST_RESTORE {
                    restored_pid = n.pid;
                    return Err("health probe failed".into());
                }
                Ok(())
            },
        )
        .expect_err("a refused post-restore fails the restore");
    assert_no_criu_children();
    eprintln!("refused restore: {err}");
    assert!(
        matches!(&err, CriuError::Notify { script, .. } if script == notify::script::POST_RESTORE),
        "{err:?}"
    );
    let pid = restored_pid.expect("post-restore carried the pid");
    assert_eq!(pid, w.pid);
    // CRIU killed the tree; the client reaped the root, which was our child.
    assert!(stat(pid).is_none(), "restored root left as {:?}", stat(pid));
    w.wait_session_gone();
}

#[test]
fn restore_reattaches_stdout_through_inherit_fd() {
    let (_serial, criu) = setup();
    let mut w = Workload::start_piped();
    let stdout_key = fs::read_link(format!("/proc/{}/fd/1", w.pid))
        .expect("readlink stdout")
        .to_string_lossy()
        .into_owned();
    assert!(stdout_key.starts_with("pipe:["), "{stdout_key}");
    let images = w.images();
    criu.dump(
        &DumpRequest {
            images_dir: images.clone(),
            pid: w.pid,
            ..Default::default()
        },
        &mut notify::accept_all,
    )
    .unwrap_or_else(|e| panic!("dump: {e}"));
    w.reap_dumped();
    let at_dump = w.counter().expect("counter at dump");

    // A new pipe replaces the dumped stdout; CRIU gets the write end as one of its own fds.
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let restore = RestoreRequest {
        images_dir: images,
        rst_sibling: true,
        inherit_fds: vec![(stdout_key, write_end)],
        ..Default::default()
    };
    let restored = criu
        .restore(&restore, &mut notify::accept_all)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    w.restored = true;
    drop(restore); // our copy of the write end: EOF comes when the restored shell dies
    assert_no_criu_children();
    w.assert_counting();

    kill(Pid::from_raw(restored.pid), Signal::SIGKILL).expect("kill restored");
    waitpid(Pid::from_raw(restored.pid), None).expect("reap restored");
    w.restored = false;
    w.wait_session_gone();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(read_end), &mut out).expect("read pipe");
    let first: u64 = out
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no output on the new stdout: {out:?}"));
    assert!(
        first > at_dump && first <= at_dump + 2,
        "the restored loop writes to the new pipe, continuing from {at_dump}: {out:?}"
    );
}
