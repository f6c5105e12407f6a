//! Checkpoint and restore of real containers through CRIU: state survives, failures roll back.

use std::fs;
use std::time::Duration;

use migrate_tests::prereq::require_criu;
use migrate_tests::rt::{chain, read_all, wait_for};
use migrate_tests::{TestBundle, TestRuntime};
use runtime::{CheckpointOpts, Container, ExecOpts, RestoreOpts, Status};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn counter_bundle() -> TestBundle {
    TestBundle::busybox(&[
        "sh",
        "-c",
        // Written atomically: a dump (or a reader) may come between truncate and write.
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; usleep 20000; done",
    ])
}

fn count(c: &Container) -> u64 {
    wait_for("the counter file", T, || {
        fs::read_to_string(c.upper_dir().join("tmp/count"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

fn exec_out(c: &Container, cmd: &str) -> (i32, String) {
    let (p, mut io) = c
        .exec(ExecOpts::new(["sh", "-c", cmd]))
        .unwrap_or_else(|e| panic!("exec {cmd}: {}", chain(&e)));
    let out = read_all(io.stdout.take().unwrap(), T);
    (p.wait().unwrap(), out)
}

#[test]
fn counter_continues_after_restore_with_same_id() {
    require_criu();
    let t = TestRuntime::new();
    let b = counter_bundle();
    let (c, _io) = t.run("ctr", b.path());
    wait_for("counter to run", T, || (count(&c) > 5).then_some(()));
    let images = tempfile::tempdir_in("/run").unwrap();
    let dir = images.path().join("ckpt");
    let done = c
        .checkpoint(&dir, CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    assert!(done.frozen > Duration::ZERO);
    assert_eq!(
        c.status(),
        Status::Stopped,
        "a checkpoint without leave_running stops the container"
    );
    let at_dump = count(&c);
    assert!(dir.join("dump.log").is_file() && dir.join("runtime.json").is_file());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&c), at_dump, "the counter ran on after the dump");
    c.delete(false).unwrap();
    let (r, _io, _) =
        t.rt.restore(&dir, "ctr", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(r.status(), Status::Running);
    assert!(dir.join("restore.log").is_file());
    let first = count(&r);
    assert!(
        first >= at_dump,
        "restored counter {first} started below {at_dump}: it restarted instead of continuing"
    );
    wait_for("restored counter to advance", T, || {
        (count(&r) > first + 3).then_some(())
    });
    // Its private network namespace was restored empty (as runc does), with loopback up.
    let (_, lo) = exec_out(&r, "ip -o link show lo");
    assert!(lo.contains("UP"), "loopback is down after restore: {lo}");
    // exec works in the restored container (it lives in a new time namespace).
    let (code, out) = exec_out(&r, "cat /tmp/count");
    assert_eq!(code, 0);
    assert!(out.trim().parse::<u64>().unwrap() >= first);
}

#[test]
fn leave_running_checkpoint_restores_as_second_container() {
    require_criu();
    let t = TestRuntime::new();
    let b = counter_bundle();
    let (c, _io) = t.run("orig", b.path());
    wait_for("counter to run", T, || (count(&c) > 5).then_some(()));
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(
        images.path(),
        CheckpointOpts {
            leave_running: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    assert_eq!(c.status(), Status::Running);
    let before = count(&c);
    wait_for("original keeps counting", T, || {
        (count(&c) > before + 3).then_some(())
    });
    let (copy, _io, _) =
        t.rt.restore(images.path(), "copy", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(copy.status(), Status::Running);
    assert_ne!(copy.pid(), c.pid());
    let start = count(&copy);
    wait_for("copy counts too", T, || {
        (count(&copy) > start + 3).then_some(())
    });
    assert_eq!(c.status(), Status::Running);
}

#[test]
fn restore_into_new_cgroup_enforces_memory_limit() {
    require_criu();
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sh", "-c", "echo ready > /tmp/ready; sleep 600"]);
    b.edit(|s| s["linux"]["resources"]["memory"] = json!({"limit": 48 << 20}));
    let (c, _io) = t.run("mem", b.path());
    wait_for("container ready", T, || {
        c.upper_dir().join("tmp/ready").exists().then_some(())
    });
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(images.path(), CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    let new_path = format!("{}/elsewhere/mem2", t.cgroup_parent);
    let opts = RestoreOpts {
        cgroup_path: Some(new_path.clone()),
        ..Default::default()
    };
    let (r, _io, _) =
        t.rt.restore(images.path(), "mem2", opts)
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    let cg = fs::read_to_string(format!("/proc/{}/cgroup", r.pid())).unwrap();
    assert!(
        cg.lines().any(|l| l.starts_with(&format!(
            "{}:",
            cg.lines()
                .find(|l| l.contains(":memory:"))
                .unwrap()
                .split(':')
                .next()
                .unwrap()
        )) && l.ends_with(&new_path)),
        "{cg}"
    );
    assert_eq!(r.stats().unwrap().memory_limit, Some(48 << 20));
    let (code, _) = exec_out(&r, "dd if=/dev/zero of=/dev/null bs=96M count=1");
    assert_eq!(
        code,
        128 + 9,
        "allocating past the limit in the restored container is OOM-killed"
    );
    let (code, _) = exec_out(&r, "dd if=/dev/zero of=/dev/null bs=8M count=1");
    assert_eq!(code, 0);
}

#[test]
fn shm_and_appended_file_offset_survive() {
    require_criu();
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&["sh", "-c", "echo shm-data > /dev/shm/keep; exec 3>>/tmp/log; i=0; while :; do i=$((i+1)); echo line$i >&3; usleep 20000; done"]);
    let (c, _io) = t.run("shm", b.path());
    wait_for("log lines", T, || {
        (fs::read_to_string(c.upper_dir().join("tmp/log"))
            .ok()?
            .lines()
            .count()
            > 5)
        .then_some(())
    });
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(images.path(), CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    c.delete(false).unwrap();
    let (r, _io, _) =
        t.rt.restore(images.path(), "shm", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    let (code, out) = exec_out(&r, "cat /dev/shm/keep");
    assert_eq!((code, out.as_str()), (0, "shm-data\n"));
    wait_for("more log lines", T, || {
        let text = fs::read_to_string(r.upper_dir().join("tmp/log")).ok()?;
        (text.lines().count() > 15).then_some(())
    });
    // Appending through the restored fd kept the offset: lines are consecutive, none overwritten.
    let text = fs::read_to_string(r.upper_dir().join("tmp/log")).unwrap();
    for (n, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            format!("line{}", n + 1),
            "log broken at line {}: {text}",
            n + 1
        );
    }
}

#[test]
fn refused_dump_leaves_container_running_and_thawed() {
    require_criu();
    let t = TestRuntime::new();
    let b = counter_bundle();
    let (c, _io) = t.run("refuse", b.path());
    wait_for("counter to run", T, || (count(&c) > 3).then_some(()));
    let images = tempfile::tempdir_in("/run").unwrap();
    // The caller's hold refuses at post-dump: CRIU resumes the frozen tree.
    let err = c
        .checkpoint_with(&images.path().join("a"), CheckpointOpts::default(), |_| {
            Err("target said no".into())
        })
        .unwrap_err();
    assert!(
        matches!(err, runtime::Error::CheckpointAborted { .. }),
        "{}",
        chain(&err)
    );
    assert_eq!(c.status(), Status::Running);
    let n = count(&c);
    wait_for("counter advances after the refused dump", T, || {
        (count(&c) > n + 3).then_some(())
    });
    // CRIU itself refuses: an established TCP connection inside the container, dumped without
    // tcp_established. The container must come back running and unfrozen.
    let mut b = TestBundle::busybox(&["sh", "-c", "ip link set lo up; sleep 1000 | nc -l -p 7000 >/dev/null & sleep 0.3; (while :; do echo x; sleep 1; done) | nc 127.0.0.1 7000 >/dev/null & i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 20000; done"]);
    // CAP_NET_ADMIN to bring up loopback.
    b.edit(|s| {
        for set in ["bounding", "effective", "permitted"] {
            s["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_NET_ADMIN"));
        }
    });
    let (c, _io) = t.run("tcp", b.path());
    wait_for("connection inside", T, || {
        let (_, out) = exec_out(&c, "netstat -tn | grep -c ESTABLISHED");
        (out.trim().parse::<u32>().ok()? >= 2).then_some(())
    });
    let err = c
        .checkpoint(&images.path().join("b"), CheckpointOpts::default())
        .unwrap_err();
    assert!(matches!(err, runtime::Error::Criu(_)), "{}", chain(&err));
    assert!(
        chain(&err).contains("tcp") || chain(&err).contains("TCP"),
        "CRIU's reason reaches the caller: {}",
        chain(&err)
    );
    assert_eq!(
        c.status(),
        Status::Running,
        "container not running after a failed dump"
    );
    assert!(matches!(
        c.cgroup().freezer_state().unwrap(),
        runtime::cgroups::FreezerState::Thawed
    ));
    let n = count(&c);
    wait_for("counter advances after CRIU's refusal", T, || {
        (count(&c) > n + 3).then_some(())
    });
}

fn mem_status(c: &Container) -> (String, u64, String) {
    wait_for("memhog status", T, || {
        let text = fs::read_to_string(c.upper_dir().join("tmp/mem")).ok()?;
        let f: Vec<&str> = text.split_whitespace().collect();
        Some((
            f.first()?.to_string(),
            f.get(1)?.parse().ok()?,
            f.get(2)?.to_string(),
        ))
    })
}

/// A running container whose init is `memhog 64 /tmp/mem`.
fn memhog(t: &TestRuntime, id: &str) -> (Container, TestBundle, runtime::ContainerStdio) {
    let b = TestBundle::busybox(&["/bin/memhog", "64", "/tmp/mem"]);
    b.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    let (c, io) = t.run(id, b.path());
    (c, b, io)
}

/// memhog's status once it has verified its memory at least once.
fn verified(c: &Container) -> (String, u64, String) {
    wait_for("memhog to fill and verify", T, || {
        let s = mem_status(c);
        (s.1 >= 2).then_some(s)
    })
}

#[test]
fn memory_workload_survives_with_its_checksum() {
    require_criu();
    let t = TestRuntime::new();
    let (c, _b, _io) = memhog(&t, "memhog");
    let (state, _, sum) = verified(&c);
    assert_eq!(state, "ok");
    assert!(c.stats().unwrap().memory_usage > 64 << 20);
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(images.path(), CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    let (_, round_at_dump, _) = mem_status(&c);
    c.delete(false).unwrap();
    let (r, _io, _) =
        t.rt.restore(images.path(), "memhog", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    let (state, round, after) = wait_for("memhog to re-verify after restore", T, || {
        let s = mem_status(&r);
        (s.1 >= round_at_dump + 2 || s.0 != "ok").then_some(s)
    });
    assert_eq!(
        (state.as_str(), after.as_str()),
        ("ok", sum.as_str()),
        "memory changed across checkpoint/restore"
    );
    assert!(
        round > round_at_dump,
        "it continued from round {round_at_dump}, not from scratch"
    );
}

#[test]
fn process_tree_keeps_its_pids() {
    require_criu();
    let t = TestRuntime::new();
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "sleep 1000 & (sleep 1000 & sleep 1000) & sleep 1000 & while :; do usleep 50000; done",
    ]);
    let (c, _io) = t.run("tree", b.path());
    let tree = |c: &Container| {
        let (_, out) = exec_out(
            c,
            "ps -o pid,ppid,args | grep -v -e 'ps -o' -e 'grep' -e 'sh -c ps' -e usleep",
        );
        let rows: Vec<Vec<String>> = out
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .filter(|f: &Vec<String>| f.len() >= 3 && f[0] != "PID")
            .collect();
        // The loop's shell forks before each usleep: such a transient child (same args as
        // its parent) is not part of the tree. A shell counts when it is init or has
        // children (the subshell).
        let parents: Vec<&String> = rows.iter().map(|f| &f[1]).collect();
        let mut lines: Vec<String> = rows
            .iter()
            .filter(|f| f[2..].join(" ") == "sleep 1000" || f[0] == "1" || parents.contains(&&f[0]))
            .map(|f| f.join(" "))
            .collect();
        lines.sort();
        lines
    };
    let before = wait_for("all children", T, || {
        let t = tree(&c);
        (t.iter().filter(|l| l.ends_with("sleep 1000")).count() == 4).then_some(t)
    });
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(images.path(), CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    c.delete(false).unwrap();
    let (r, _io, _) =
        t.rt.restore(images.path(), "tree", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(
        tree(&r),
        before,
        "the process tree changed across checkpoint/restore"
    );
}

#[test]
fn tcp_connection_from_outside_survives() {
    use std::io::{BufRead, BufReader, Write};
    require_criu();
    let t = TestRuntime::new();
    let net = migrate_tests::netns::LinkedNetNs::new(&format!("mt-tcp-{}", std::process::id()), 41);
    let mut b = TestBundle::busybox(&["nc", "-l", "-p", "8000", "-e", "cat"]);
    let path = net.ns.path().display().to_string();
    b.edit(|s| {
        for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(path);
            }
        }
    });
    let (c, _io) = t.run("tcp", b.path());
    let addr = format!("{}:8000", net.ns_ip);
    let stream = wait_for("the server to listen", T, || {
        std::net::TcpStream::connect(&addr).ok()
    });
    stream.set_read_timeout(Some(T)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    writer.write_all(b"before\n").unwrap();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");
    let images = tempfile::tempdir_in("/run").unwrap();
    let opts = CheckpointOpts {
        tcp_established: true,
        ..Default::default()
    };
    c.checkpoint(images.path(), opts)
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    c.delete(false).unwrap();
    // Sent while the server is down: the network lock holds it until the restore.
    writer.write_all(b"during\n").unwrap();
    let (r, _io, _) =
        t.rt.restore(images.path(), "tcp", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(r.status(), Status::Running);
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "during\n");
    writer.write_all(b"after\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line, "after\n",
        "the same connection keeps working after restore"
    );
}

#[test]
fn bind_mounted_volume_is_reattached_on_restore() {
    require_criu();
    let t = TestRuntime::new();
    let vol = tempfile::tempdir().unwrap();
    let mut b = TestBundle::busybox(&[
        "sh",
        "-c",
        "exec 3>>/data/log; i=0; while :; do i=$((i+1)); echo $i >&3; usleep 20000; done",
    ]);
    let src = vol.path().display().to_string();
    b.edit(|s| s["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "rw"]})));
    let (c, _io) = t.run("vol", b.path());
    let lines = |p: &std::path::Path| {
        fs::read_to_string(p.join("log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("volume writes", T, || (lines(vol.path()) > 5).then_some(()));
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(images.path(), CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    c.delete(false).unwrap();
    let at_dump = lines(vol.path());
    let (_r, _io, _) =
        t.rt.restore(images.path(), "vol", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    wait_for("writes to the volume after restore", T, || {
        (lines(vol.path()) > at_dump + 5).then_some(())
    });
    let text = fs::read_to_string(vol.path().join("log")).unwrap();
    for (n, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            (n + 1).to_string(),
            "volume log broken at line {}",
            n + 1
        );
    }
}

#[test]
fn failed_restore_leaves_nothing_behind() {
    require_criu();
    let t = TestRuntime::new();
    let b = counter_bundle();
    let (c, _io) = t.run("broken", b.path());
    wait_for("counter to run", T, || (count(&c) > 3).then_some(()));
    let images = tempfile::tempdir_in("/run").unwrap();
    c.checkpoint(
        images.path(),
        CheckpointOpts {
            leave_running: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    // Damage the images: the core image of the init task.
    let core = fs::read_dir(images.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("core-")
        })
        .expect("a core image");
    fs::write(&core, b"garbage").unwrap();
    let before: Vec<_> = fs::read_dir(t.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let err =
        t.rt.restore(images.path(), "copy", RestoreOpts::default())
            .map(|_| ())
            .unwrap_err();
    assert!(chain(&err).contains("restore"), "{}", chain(&err));
    let after: Vec<_> = fs::read_dir(t.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "the failed restore left state behind");
    let cg =
        runtime::cgroups::Cgroup::open(t.rt.cgroup_layout(), &format!("{}/copy", t.cgroup_parent));
    assert!(!cg.exists(), "the failed restore left its cgroup");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&t.root().join("copy").display().to_string()),
        "the failed restore left a mount"
    );
    assert_eq!(c.status(), Status::Running, "the original was disturbed");
    // Bad input: not a checkpoint at all.
    let empty = tempfile::tempdir().unwrap();
    let err =
        t.rt.restore(empty.path(), "x", RestoreOpts::default())
            .map(|_| ())
            .unwrap_err();
    assert!(
        matches!(err, runtime::Error::InvalidCheckpoint { .. }),
        "{}",
        chain(&err)
    );
}

#[test]
fn lazy_checkpoint_restores_with_memory_fetched_over_a_socket() {
    require_criu();
    let t = TestRuntime::new();
    let (c, _b, _io) = memhog(&t, "lazysrc");
    let (_, _, sum) = verified(&c);
    let images = tempfile::tempdir_in("/run").unwrap();
    let (server, client) = std::os::unix::net::UnixStream::pair().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let dumper = {
        let c = c.clone();
        let dir = images.path().to_path_buf();
        std::thread::spawn(move || {
            c.checkpoint_lazy(&dir, CheckpointOpts::default(), server.into(), |_| {
                ready_tx.send(()).map_err(|e| e.to_string())
            })
        })
    };
    ready_rx
        .recv_timeout(T)
        .expect("the lazy dump never reported its images ready");
    assert!(
        images.path().join("runtime.json").is_file(),
        "runtime.json must be written before the images leave"
    );
    let (_, round_at_dump, _) = mem_status(&c);
    let criu = runtime::criu::Criu::locate().unwrap();
    let daemon = criu
        .lazy_pages(images.path(), client.into())
        .unwrap_or_else(|e| panic!("lazy-pages: {}", chain(&e)));
    let (r, _io, _) =
        t.rt.restore(
            images.path(),
            "lazydst",
            RestoreOpts {
                lazy_pages: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("lazy restore: {}", chain(&e)));
    daemon
        .wait()
        .unwrap_or_else(|e| panic!("lazy-pages daemon: {}", chain(&e)));
    dumper
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("lazy dump: {}", chain(&e)));
    let log = fs::read_to_string(images.path().join(runtime::criu::LAZY_PAGES_LOG)).unwrap();
    assert!(
        log.lines().filter(|l| l.contains("uffd_copy")).count() > 10,
        "pages should have arrived through userfaultfd"
    );
    let (state, _, after) = wait_for("memhog to re-verify after the lazy restore", T, || {
        let s = mem_status(&r);
        (s.0 != "ok" || s.1 >= round_at_dump + 2).then_some(s)
    });
    assert_eq!(
        (state.as_str(), after.as_str()),
        ("ok", sum.as_str()),
        "memory changed across the lazy restore"
    );
    let _ = c.delete(true);
}
