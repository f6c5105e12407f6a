//! Tests against the host's real cgroup filesystem. They need root and fail
//! (never skip) without it. Each test makes `/migrate-test-<pid>-<n>` and a
//! guard removes it, with any child process, even when an assertion fails.

use std::fs;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

const MIB: i64 = 1 << 20;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Removes the cgroup and kills the child however the test ends.
struct Guard {
    cgroup: Cgroup,
    child: Option<Child>,
}

impl Guard {
    /// Kills and reaps the direct child. Thaws first: a frozen task does not die
    /// until thawed, and `wait` would hang.
    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.cgroup.thaw();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill_child();
        if !self.cgroup.exists() {
            return;
        }
        // Grandchildren (the worker's `dd`) are in the cgroup too: thaw (a frozen
        // task only dies once thawed), kill whatever is left, then remove.
        let _ = self.cgroup.thaw();
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(pids) = self.cgroup.procs() {
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Err(err) = self.cgroup.destroy() {
            eprintln!("test cleanup: {err}");
        }
    }
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the real cgroup tests need root: run `sudo -E cargo test -p migrate-runtime --lib cgroups`"
    );
}

fn unique_path() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/migrate-test-{}-{n}", std::process::id())
}

fn host_layout() -> Layout {
    require_root();
    Layout::detect().expect("detect the host's cgroup layout")
}

fn limits() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
        .build()
        .unwrap()
}

/// A shell that waits for a line on stdin, then burns a little cpu and memory
/// (a 1 MiB dd buffer) inside the cgroup, then becomes `sleep`.
fn spawn_worker() -> Child {
    Command::new("sh")
        .arg("-c")
        .arg("read _; dd if=/dev/zero of=/dev/null bs=1M count=200 2>/dev/null; exec sleep 60")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn proc_state(pid: i32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.chars().next().unwrap()
}

fn limit_file(layout: &Layout, cgroup: &Cgroup) -> String {
    let file = match layout {
        Layout::V1 { .. } => cgroup
            .controller_dir("memory")
            .unwrap()
            .join("memory.limit_in_bytes"),
        Layout::V2 { .. } => cgroup.controller_dir("memory").unwrap().join("memory.max"),
    };
    fs::read_to_string(file).unwrap().trim().to_string()
}

#[test]
fn real_lifecycle_limits_membership_freeze_stats_and_cleanup() {
    let layout = host_layout();
    let path = unique_path();
    let cgroup = Cgroup::create(&layout, &path, Some(&limits())).expect("create");
    let mut guard = Guard {
        cgroup: cgroup.clone(),
        child: None,
    };
    let dirs = cgroup.dirs();
    assert!(
        !dirs.is_empty() && dirs.iter().all(|d| d.is_dir()),
        "{dirs:?}"
    );
    if let Layout::V1 {
        unified: Some(unified),
        ..
    } = &layout
    {
        assert!(dirs.contains(&unified.join(path.trim_start_matches('/'))));
    }
    assert_eq!(limit_file(&layout, &cgroup), (64 * MIB).to_string());

    let child = guard.child.insert(spawn_worker());
    let pid = child.id() as i32;
    cgroup.add_process(pid).expect("add_process");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();

    // Every hierarchy, the hybrid `0::` line included, shows the new path.
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in membership.lines() {
        assert!(
            line.ends_with(&format!(":{path}")),
            "{line} in\n{membership}"
        );
    }
    wait_until("the worker to finish dd and exec sleep", || {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        comm.trim() == "sleep" && cgroup.procs().is_ok_and(|p| p == [pid])
    });

    cgroup.freeze(Duration::from_secs(5)).expect("freeze");
    assert_eq!(cgroup.freezer_state().unwrap(), FreezerState::Frozen);
    let state = proc_state(pid);
    assert!(state == 'D' || state == 'S', "frozen task in state {state}");
    cgroup.thaw().expect("thaw");
    assert_eq!(cgroup.freezer_state().unwrap(), FreezerState::Thawed);

    let stats = cgroup.stats().expect("stats");
    assert_eq!(stats.memory_limit, Some(64 << 20), "{stats:?}");
    assert_eq!(stats.pids_limit, Some(32), "{stats:?}");
    assert_eq!(stats.pids_current, 1, "{stats:?}");
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");
    assert!(
        stats.memory_max_usage.unwrap_or(stats.memory_usage) > 0,
        "{stats:?}"
    );

    let err = cgroup.destroy().expect_err("destroy with a process inside");
    assert!(matches!(err, CgroupError::ProcessesRemain { .. }), "{err}");
    assert!(cgroup.exists());

    guard.kill_child();
    cgroup.destroy().expect("destroy");
    assert!(!cgroup.exists());
    for dir in &dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn real_nested_cgroup_create_and_destroy() {
    let layout = host_layout();
    let parent = unique_path();
    let path = format!("{parent}/web");
    let parent_cgroup = Cgroup::open(&layout, &parent);
    let _parent_guard = Guard {
        cgroup: parent_cgroup.clone(),
        child: None,
    };
    let cgroup = Cgroup::create(&layout, &path, Some(&limits())).expect("create nested");
    let _guard = Guard {
        cgroup: cgroup.clone(),
        child: None,
    };
    if let Layout::V1 { .. } = layout {
        let cpuset = cgroup.controller_dir("cpuset").unwrap();
        let cpus = fs::read_to_string(cpuset.join("cpuset.cpus")).unwrap();
        assert!(
            !cpus.trim().is_empty(),
            "cpuset.cpus not seeded in {}",
            cpuset.display()
        );
    }
    // An empty cgroup freezes at once.
    cgroup.freeze(Duration::from_secs(1)).expect("freeze empty");
    cgroup.thaw().unwrap();
    cgroup.destroy().unwrap();
    parent_cgroup.destroy().unwrap();
    assert!(!parent_cgroup.exists());
}

#[test]
fn real_v1_devices_deny_all_then_allow_the_list() {
    let layout = host_layout();
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(default_device_rules()));
    let cgroup = Cgroup::create(&layout, &unique_path(), Some(&resources)).expect("create");
    let _guard = Guard {
        cgroup: cgroup.clone(),
        child: None,
    };
    // v2 needs an eBPF device program: apply skips devices there.
    if let Layout::V1 { .. } = layout {
        let list = fs::read_to_string(
            cgroup
                .controller_dir("devices")
                .unwrap()
                .join("devices.list"),
        )
        .unwrap();
        assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
        assert!(!list.lines().any(|l| l == "a *:* rwm"), "{list}");
    }
}

#[test]
fn real_create_failure_leaves_nothing_behind() {
    let layout = host_layout();
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .swap(MIB)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let path = unique_path();
    let err = Cgroup::create(&layout, &path, Some(&resources)).expect_err("swap below limit");
    assert!(matches!(err, CgroupError::InvalidResources { .. }), "{err}");
    assert!(!Cgroup::open(&layout, &path).exists());
}
