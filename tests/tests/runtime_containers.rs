//! The embedded runtime on real containers: isolation, limits, mounts, capabilities,
//! lifecycle, exec, pause/resume, cleanup, and refusal of bad input.

use std::fs;
use std::path::Path;
use std::time::Duration;

use migrate_tests::netns::NetNs;
use migrate_tests::rt::{chain, read_all, wait_for};
use migrate_tests::{TestBundle, TestRuntime};
use nix::sys::signal::Signal;
use runtime::{CreateOpts, ExecOpts, RootfsMode, Status};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn run_to_end(t: &TestRuntime, id: &str, bundle: &TestBundle) -> (i32, String, String) {
    t.run_to_end(id, bundle.path(), T)
}

#[test]
fn init_is_pid_1_with_own_hostname_and_proc() {
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'",
    ]);
    let (code, out, err) = run_to_end(&t, "iso", &b);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "box");
    let procs: usize = lines[2].parse().unwrap();
    assert!(
        procs <= 4,
        "/proc shows {procs} processes, expected only the container's"
    );
}

#[test]
fn memory_limit_is_enforced() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]);
    b.edit(|s| s["linux"]["resources"]["memory"] = json!({"limit": 32 << 20}));
    let (code, _, err) = run_to_end(&t, "oom", &b);
    assert_eq!(code, 128 + 9, "dd should be OOM-killed; stderr: {err}");
    let mut ok = TestBundle::busybox(&["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"]);
    ok.edit(|s| s["linux"]["resources"]["memory"] = json!({"limit": 32 << 20}));
    let (code, _, err) = run_to_end(&t, "fits", &ok);
    assert_eq!(code, 0, "8M fits in 32M; stderr: {err}");
}

#[test]
fn pids_limit_is_enforced() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(|s| s["linux"]["resources"]["pids"] = json!({"limit": 5}));
    let (c, _io) = t.run("pids", b.path());
    assert_eq!(c.stats().unwrap().pids_limit, Some(5));
    // init + this shell + 10 sleeps would be 12 processes; the limit stops the shell at 5.
    let (p, mut io) = c
        .exec(ExecOpts::new([
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 </dev/null >/dev/null 2>&1 & done; wait",
        ]))
        .unwrap();
    let err = read_all(io.stderr.take().unwrap(), T);
    assert_ne!(p.wait().unwrap(), 0, "the shell should fail to fork");
    assert!(
        err.contains("fork"),
        "the shell reports the failed fork: {err}"
    );
    let n = c.processes().unwrap().len();
    assert!(n <= 5, "{n} processes in a container limited to 5");
    assert_eq!(n, 4, "init and the 3 sleeps that fit stay");
}

#[test]
fn bind_mount_visible_and_read_only() {
    let t = TestRuntime::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hello"), "from host\n").unwrap();
    let mut b = TestBundle::busybox(&["sh", "-c", "cat /data/hello; touch /data/new && echo wrote; cat /rw/hello; touch /rw/new && echo rw-ok"]);
    let src = host.path().display().to_string();
    b.edit(|s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/rw", "type": "bind", "source": src, "options": ["rbind", "rw"]}));
    });
    let (code, out, err) = run_to_end(&t, "bind", &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from host\nfrom host\nrw-ok\n", "stderr: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        host.path().join("new").exists(),
        "the rw bind writes through to the host"
    );
}

#[test]
fn masked_and_read_only_paths() {
    let t = TestRuntime::new();
    // Paths that exist on the host and are not empty there.
    assert!(
        fs::metadata("/proc/timer_list").is_ok()
            && fs::read_dir("/sys/firmware").unwrap().count() > 0
    );
    let b = TestBundle::busybox(&["sh", "-c", "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname || echo ro"]);
    let (code, out, err) = run_to_end(&t, "mask", &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "ro"],
        "stderr: {err}"
    );
}

#[test]
fn sysctls_are_set_before_proc_sys_turns_read_only() {
    let t = TestRuntime::new();
    // As Podman's specs do: a network sysctl, with /proc/sys among the read-only paths.
    let mut b = TestBundle::busybox(&["cat", "/proc/sys/net/ipv4/ping_group_range"]);
    b.edit(|spec| {
        spec["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ping_group_range": "0 0"});
    });
    let (code, out, err) = run_to_end(&t, "sysctl", &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0"]);
}

#[test]
fn capabilities_are_dropped_as_specified() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&[
        "sh",
        "-c",
        "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    ]);
    b.edit(|s| {
        let only_kill = json!(["CAP_KILL"]);
        s["process"]["capabilities"] = json!({"bounding": only_kill, "effective": only_kill, "permitted": only_kill, "inheritable": [], "ambient": []});
    });
    let (code, out, err) = run_to_end(&t, "caps", &b);
    assert_eq!(code, 0, "{err}");
    // CAP_KILL is capability 5.
    for set in ["CapEff", "CapBnd", "CapPrm"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000020")),
            "{set} not just CAP_KILL: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn user_cwd_env_and_rlimits_apply() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $GREETING; ulimit -n; umask",
    ]);
    b.edit(|s| {
        s["process"]["user"] =
            json!({"uid": 65534, "gid": 65534, "additionalGids": [65534, 10], "umask": 63});
        s["process"]["cwd"] = json!("/tmp");
        s["process"]["env"] = json!(["PATH=/bin", "GREETING=hi"]);
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    });
    let (code, out, err) = run_to_end(&t, "user", &b);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["65534", "65534", "65534 10", "/tmp", "hi", "256", "0077"],
        "stderr: {err}"
    );
}

fn counter(t: &TestRuntime, id: &str) -> (runtime::Container, TestBundle) {
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 20000; done",
    ]);
    let (c, _) = t.run(id, b.path());
    (c, b)
}

fn read_count(c: &runtime::Container) -> u64 {
    wait_for("the counter file", T, || {
        fs::read_to_string(c.upper_dir().join("tmp/count"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    let t = TestRuntime::new();
    let (c, _b) = counter(&t, "pause");
    wait_for("counter to start", T, || (read_count(&c) > 2).then_some(()));
    c.pause().unwrap();
    assert_eq!(c.status(), Status::Paused);
    let frozen = read_count(&c);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_count(&c), frozen, "the counter advanced while paused");
    c.resume().unwrap();
    assert_eq!(c.status(), Status::Running);
    wait_for("counter to advance after resume", T, || {
        (read_count(&c) > frozen + 3).then_some(())
    });
    assert!(matches!(c.resume(), Err(runtime::Error::WrongState { .. })));
}

#[test]
fn exec_joins_the_container_and_returns_exit_code() {
    let t = TestRuntime::new();
    let (c, _b) = counter(&t, "exec");
    let (p, mut io) = c.exec(ExecOpts::new(["sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/net; exit 7"])).unwrap();
    let out = read_all(io.stdout.take().unwrap(), T);
    assert_eq!(p.wait().unwrap(), 7);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box");
    assert!(lines[1].starts_with("sh -c i=0"), "{out}");
    let init_net = fs::read_link(format!("/proc/{}/ns/net", c.pid())).unwrap();
    assert_eq!(lines[2], init_net.display().to_string());
    // The exec'd process sits in the container's cgroup while it runs.
    let (p, _io) = c.exec(ExecOpts::new(["sleep", "5"])).unwrap();
    assert!(c.processes().unwrap().contains(&p.pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGKILL).unwrap();
    assert_eq!(p.wait().unwrap(), 128 + 9);
    let err = c
        .exec(ExecOpts::new(["no-such-binary"]))
        .map(|_| ())
        .unwrap_err();
    assert!(chain(&err).contains("no-such-binary"), "{}", chain(&err));
}

#[test]
fn lifecycle_states_and_oci_state_json() {
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&["sleep", "60"]);
    let (c, _io) =
        t.rt.create("life", b.path(), CreateOpts::default())
            .unwrap();
    assert_eq!(c.status(), Status::Created);
    let st = c.oci_state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "life");
    assert_eq!(st["pid"], c.pid());
    assert_eq!(
        st["bundle"],
        b.path().canonicalize().unwrap().display().to_string()
    );
    c.start().unwrap();
    assert_eq!(c.status(), Status::Running);
    assert!(matches!(c.start(), Err(runtime::Error::WrongState { .. })));
    // A second runtime on the same root sees the same container (state is on disk).
    let again = runtime::Runtime::new(t.root())
        .unwrap()
        .load("life")
        .unwrap();
    assert_eq!(again.status(), Status::Running);
    assert_eq!(again.pid(), c.pid());
    let stats = c.stats().unwrap();
    assert!(
        stats.memory_usage > 0 && stats.pids_current == 1,
        "{stats:?}"
    );
    assert_eq!(c.processes().unwrap(), vec![c.pid()]);
    assert!(
        matches!(
            c.clone().delete(false),
            Err(runtime::Error::WrongState { .. })
        ),
        "running container deleted without force"
    );
    // PID 1 of a namespace ignores signals it has no handler for, except SIGKILL.
    c.kill(Signal::SIGKILL, false).unwrap();
    assert_eq!(c.wait().unwrap(), 128 + 9);
    assert_eq!(c.status(), Status::Stopped);
    assert_eq!(c.oci_state()["pid"], 0);
    c.delete(false).unwrap();
    assert!(t.rt.load("life").unwrap_err().is_not_found());
}

#[test]
fn kill_and_delete_leave_nothing_behind() {
    let t = TestRuntime::new();
    let (c, _b) = counter(&t, "clean");
    let (p, _io) = c.exec(ExecOpts::new(["sleep", "60"])).unwrap();
    let pids = c.processes().unwrap();
    assert!(pids.len() >= 2);
    let dirs = c.cgroup().dirs();
    assert!(dirs.iter().all(|d| d.exists()));
    let dir = c.dir().to_path_buf();
    c.delete(true).unwrap();
    assert_eq!(p.wait().unwrap(), 128 + 9);
    for d in &dirs {
        assert!(!d.exists(), "cgroup dir {} left behind", d.display());
    }
    assert!(!dir.exists(), "state dir left behind");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || runtime::container::proc_stat(pid).map(|s| s.0) == Some('Z'),
            "process {pid} left behind"
        );
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "mount under {} left behind",
        dir.display()
    );
}

#[test]
fn union_rootfs_keeps_bundle_pristine_and_shareable() {
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "echo changed > /etc/hostname; echo new > /root/file; rm /bin/vi; sleep 60",
    ]);
    let (c1, _) = t.run("u1", b.path());
    let (c2, _) = t.run("u2", b.path());
    for c in [&c1, &c2] {
        wait_for("writes in the container", T, || {
            c.upper_dir().join("root/file").exists().then_some(())
        });
        assert_eq!(
            fs::read_to_string(c.upper_dir().join("etc/hostname")).unwrap(),
            "changed\n"
        );
    }
    assert_eq!(
        fs::read_to_string(b.rootfs().join("etc/hostname")).unwrap(),
        "bundle\n",
        "bundle was modified"
    );
    assert!(!b.rootfs().join("root/file").exists());
    assert!(
        b.rootfs().join("bin/vi").symlink_metadata().is_ok(),
        "a deletion reached the bundle"
    );
}

#[test]
fn plain_rootfs_writes_in_place() {
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&["sh", "-c", "echo plain > /root/file"]);
    let (c, _io) =
        t.rt.create(
            "plain",
            b.path(),
            CreateOpts {
                rootfs: RootfsMode::Plain,
                ..Default::default()
            },
        )
        .unwrap();
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    assert_eq!(
        fs::read_to_string(b.rootfs().join("root/file")).unwrap(),
        "plain\n"
    );
}

#[test]
fn joins_existing_network_namespace_by_path() {
    let t = TestRuntime::new();
    let ns = NetNs::new(&format!("mt-join-{}", std::process::id()));
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    let path = ns.path().display().to_string();
    b.edit(|s| {
        for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(path);
            }
        }
    });
    let (c, _) = t.run("netjoin", b.path());
    let theirs = fs::read_link(format!("/proc/{}/ns/net", c.pid())).unwrap();
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(ns.path()).unwrap().ino();
    assert_eq!(theirs.display().to_string(), format!("net:[{ino}]"));
    c.delete(true).unwrap();
}

fn assert_nothing_created(t: &TestRuntime, id: &str) {
    assert!(!t.root().join(id).exists(), "state dir of {id} exists");
    let cg =
        runtime::cgroups::Cgroup::open(t.rt.cgroup_layout(), &format!("{}/{id}", t.cgroup_parent));
    assert!(!cg.exists(), "cgroup of {id} exists");
}

#[test]
fn bad_specs_and_ids_change_nothing() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["true"]);
    type Patch = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Patch, &str)> = vec![
        (
            "v",
            Box::new(|s| s["ociVersion"] = json!("0.9.0")),
            "unsupported OCI version",
        ),
        (
            "ns",
            Box::new(|s| s["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}])),
            "bogus",
        ),
        (
            "mnt",
            Box::new(|s| s["mounts"] = json!([{"destination": "relative", "type": "tmpfs"}])),
            "not absolute",
        ),
        (
            "root",
            Box::new(|s| s["root"]["path"] = json!("missing")),
            "root filesystem",
        ),
        (
            "exe",
            Box::new(|s| s["process"]["args"] = json!(["/bin/does-not-exist"])),
            "does-not-exist",
        ),
        (
            "mnttype",
            Box::new(|s| {
                s["mounts"] = json!([{"destination": "/x", "type": "nosuchfs", "source": "x"}])
            }),
            "mount /x",
        ),
    ];
    for (id, patch, want) in cases {
        b.edit(|s| *s = TestBundle::busybox(&["true"]).spec.clone());
        b.edit(|s| patch(s));
        let err =
            t.rt.create(id, b.path(), CreateOpts::default())
                .map(|_| ())
                .unwrap_err();
        assert!(
            chain(&err).contains(want),
            "{id}: {} should mention {want}",
            chain(&err)
        );
        assert_nothing_created(&t, id);
    }
    let good = TestBundle::busybox(&["sleep", "60"]);
    for id in ["", ".x", "a/b", "a b"] {
        let err =
            t.rt.create(id, good.path(), CreateOpts::default())
                .map(|_| ())
                .unwrap_err();
        assert!(err.to_string().contains("invalid container id"), "{err}");
    }
    let err =
        t.rt.create(
            "nobundle",
            Path::new("/nonexistent/bundle"),
            CreateOpts::default(),
        )
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("invalid bundle"), "{err}");
    let (c, _) = t.run("dup", good.path());
    let err =
        t.rt.create("dup", good.path(), CreateOpts::default())
            .map(|_| ())
            .unwrap_err();
    assert!(matches!(err, runtime::Error::AlreadyExists { .. }), "{err}");
    assert_eq!(
        c.status(),
        Status::Running,
        "the duplicate create disturbed the first container"
    );
    assert_eq!(t.rt.list().unwrap().len(), 1);
}
