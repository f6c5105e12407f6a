//! `migrate-runc`, the runc-compatible command line, on real containers: the lifecycle with
//! runc's commands and flags, the OCI state document, exit codes and error output as runc
//! writes them, and checkpoint/restore with runc's flags.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A state root of its own, emptied (containers deleted) when dropped.
struct Runc {
    root: tempfile::TempDir,
}

impl Runc {
    fn new() -> Runc {
        migrate_tests::prereq::require_runtime();
        Runc {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(migrate_tests::agent::binary("migrate-runc"));
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        // Containers inherit stdout/stderr: give them /dev/null so `output()` does not wait
        // for detached containers to close our pipes.
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "migrate-runc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates with the container's stdio on /dev/null (a detached container must not hold
    /// the test's pipes).
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path) {
        let status = self
            .cmd(&[
                "create",
                "--bundle",
                &bundle.display().to_string(),
                "--pid-file",
                &pid_file.display().to_string(),
                id,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "create {id}");
    }

    /// Runs a command whose containers get pipes for stdio (as conmon gives them), so they can
    /// be checkpointed: CRIU cannot dump files of the host's mount namespace such as
    /// /dev/null. Returns the pipes, which must outlive the container.
    fn with_pipes(&self, args: &[&str]) -> Vec<Box<dyn std::any::Any>> {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipes: Vec<Box<dyn std::any::Any>> = vec![
            Box::new(child.stdin.take()),
            Box::new(child.stdout.take()),
            Box::new(child.stderr.take()),
        ];
        assert!(child.wait().unwrap().success(), "migrate-runc {args:?}");
        pipes
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        if let Ok(rt) = runtime::Runtime::new(self.root.path()) {
            for c in rt.list().unwrap_or_default() {
                let _ = c.delete(true);
            }
        }
    }
}

/// A busybox bundle whose container gets a cgroup of its own at the top (`linux.cgroupsPath`),
/// which deleting the container removes: nothing is left under the runtime's default parent.
fn bundle(args: &[&str]) -> TestBundle {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut b = TestBundle::busybox(args);
    b.edit(|spec| {
        spec["linux"]["cgroupsPath"] =
            Value::from(format!("/migrate-runc-test-{}-{n}", std::process::id()));
    });
    b.write();
    b
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn lifecycle_with_runc_commands_state_and_exit_codes() {
    let runc = Runc::new();
    let b = bundle(&["sh", "-c", "echo started > /tmp/s; exec sleep 1000"]);
    let pid_file = runc.root.path().join("c1.pid");
    runc.create("c1", b.path(), &pid_file);

    let s = runc.state("c1");
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["id"], "c1");
    assert_eq!(s["ociVersion"], "1.2.0");
    assert_eq!(s["bundle"], path(b.path()).as_str());
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(s["pid"], pid);

    runc.ok(&["start", "c1"]);
    assert_eq!(runc.state("c1")["status"], "running");
    // Starting twice is an error, as with runc.
    let out = runc.run(&["start", "c1"]);
    assert_eq!(out.status.code(), Some(1));

    let listed: Vec<Value> = serde_json::from_str(&runc.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "c1");
    assert_eq!(runc.ok(&["list", "-q"]), "c1\n");
    let pids: Vec<i64> = serde_json::from_str(&runc.ok(&["ps", "--format", "json", "c1"])).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");

    // exec: exit code and output come through (once the container wrote its file: `start`
    // returns when init was released, not when it ran).
    wait_for("the container to write /tmp/s", T, || {
        runc.run(&["exec", "c1", "test", "-s", "/tmp/s"])
            .status
            .success()
            .then_some(())
    });
    let out = runc.run(&["exec", "c1", "sh", "-c", "cat /tmp/s; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    let process = runc.root.path().join("process.json");
    std::fs::write(
        &process,
        r#"{"args": ["sh", "-c", "echo $GREETING"], "env": ["GREETING=hi"], "cwd": "/"}"#,
    )
    .unwrap();
    let out = runc.run(&["exec", "--process", &path(&process), "c1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{out:?}");

    runc.ok(&["pause", "c1"]);
    assert_eq!(runc.state("c1")["status"], "paused");
    runc.ok(&["resume", "c1"]);
    assert_eq!(runc.state("c1")["status"], "running");

    // Deleting a running container needs --force.
    let out = runc.run(&["delete", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("level=error"),
        "{out:?}"
    );
    runc.ok(&["kill", "c1", "KILL"]);
    wait_for("c1 to stop", T, || {
        (runc.state("c1")["status"] == "stopped").then_some(())
    });
    runc.ok(&["delete", "c1"]);

    // A missing container: runc's message, exit 1, text or JSON on stderr.
    let out = runc.run(&["state", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("time=\"") && err.contains("level=error msg=\"container does not exist\""),
        "{err}"
    );
    let out = runc.run(&["--log-format", "json", "kill", "c1"]);
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["level"], "error");
    assert_eq!(e["msg"], "container does not exist");
    // Usage errors exit 2.
    assert_eq!(runc.run(&["start"]).status.code(), Some(2));
    // delete --force of something that is not there succeeds, as with runc.
    runc.ok(&["delete", "--force", "c2"]);
}

#[test]
fn run_in_the_foreground_exits_with_the_container_code() {
    let runc = Runc::new();
    let b = bundle(&["sh", "-c", "echo out; exit 7"]);
    let out = runc.run(&["run", "--bundle", &path(b.path()), "fg"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    // And it is gone afterwards.
    assert_eq!(runc.ok(&["list", "-q"]), "");
}

#[test]
fn spec_and_features() {
    let runc = Runc::new();
    let dir = tempfile::tempdir().unwrap();
    runc.ok(&["spec", "--bundle", &path(dir.path())]);
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    // Not twice.
    assert_eq!(
        runc.run(&["spec", "--bundle", &path(dir.path())])
            .status
            .code(),
        Some(1)
    );
    let f: Value = serde_json::from_str(&runc.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .contains(&Value::from("startContainer")));
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&Value::from("pid")));
    let seccomp = &f["linux"]["seccomp"];
    assert_eq!(seccomp["enabled"], true);
    for (list, item) in [
        ("actions", "SCMP_ACT_ERRNO"),
        ("operators", "SCMP_CMP_MASKED_EQ"),
        ("archs", "SCMP_ARCH_X86_64"),
    ] {
        assert!(
            seccomp[list]
                .as_array()
                .unwrap()
                .contains(&Value::from(item)),
            "{list}: {seccomp}"
        );
    }
    assert!(!seccomp["actions"]
        .as_array()
        .unwrap()
        .contains(&Value::from("SCMP_ACT_NOTIFY")));
}

#[test]
fn checkpoint_and_restore_with_runc_flags_keep_a_counter() {
    migrate_tests::prereq::require_criu();
    let runc = Runc::new();
    let b = bundle(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done",
    ]);
    let pid_file = runc.root.path().join("pid");
    let _stdio = runc.with_pipes(&["create", "--bundle", &path(b.path()), "ck"]);
    runc.ok(&["start", "ck"]);
    let count = || -> u64 {
        let out = runc.run(&["exec", "ck", "cat", "/tmp/n"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    wait_for("the counter", T, || (count() > 5).then_some(()));
    let images: PathBuf = runc.root.path().join("images");
    let work = runc.root.path().join("work");
    runc.ok(&[
        "checkpoint",
        "--image-path",
        &path(&images),
        "--work-path",
        &path(&work),
        "--manage-cgroups-mode",
        "soft",
        "ck",
    ]);
    assert!(work.join("dump.log").is_file());
    // The checkpointed container is gone, as with runc.
    assert_eq!(runc.run(&["state", "ck"]).status.code(), Some(1));
    let _restored_stdio = runc.with_pipes(&[
        "restore",
        "--image-path",
        &path(&images),
        "--bundle",
        &path(b.path()),
        "--detach",
        "--pid-file",
        &path(&pid_file),
        "ck",
    ]);
    assert_eq!(runc.state("ck")["status"], "running");
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(runc.state("ck")["pid"], pid);
    let after_restore = count();
    assert!(after_restore > 5, "the counter restarted: {after_restore}");
    wait_for("the counter to go on", T, || {
        (count() > after_restore).then_some(())
    });
    runc.ok(&["delete", "--force", "ck"]);
}

/// A hook running `sh -c SCRIPT`, with the state on its stdin.
fn sh_hook(script: &str) -> Value {
    serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn hooks_run_in_order_with_the_state_and_a_failing_one_stops_the_container() {
    let runc = Runc::new();
    let out = tempfile::tempdir().unwrap();
    let o = path(out.path());
    let mut b = bundle(&["sh", "-c", "exec sleep 1000"]);
    b.edit(|spec| {
        spec["hooks"] = serde_json::json!({
            "createRuntime": [sh_hook(&format!("cat > {o}/createRuntime.json"))],
            // In the container's namespaces before pivot_root: host paths still resolve.
            "createContainer": [sh_hook(&format!("cat > {o}/createContainer.json"))],
            // In the container, after pivot_root: its own /tmp.
            "startContainer": [sh_hook("cat > /tmp/startContainer.json")],
            "poststart": [sh_hook(&format!("cat > {o}/poststart.json"))],
            "poststop": [sh_hook(&format!("cat > {o}/poststop.json"))],
        });
    });
    let pid_file = runc.root.path().join("pid");
    runc.create("hk", b.path(), &pid_file);
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.path().join(name)).unwrap()).unwrap()
    };
    let created = read("createRuntime.json");
    assert_eq!(created["status"], "creating");
    assert_eq!(created["id"], "hk");
    assert_eq!(created["bundle"], path(b.path()).as_str());
    assert_eq!(read("createContainer.json")["status"], "creating");
    assert!(!out.path().join("poststart.json").exists());

    runc.ok(&["start", "hk"]);
    let started = read("poststart.json");
    assert_eq!(started["status"], "running");
    assert!(started["pid"].as_i64().unwrap() > 0);
    let inside = runc.ok(&["exec", "hk", "cat", "/tmp/startContainer.json"]);
    let inside: Value = serde_json::from_str(&inside).unwrap();
    assert_eq!(inside["status"], "created");

    runc.ok(&["delete", "--force", "hk"]);
    assert_eq!(read("poststop.json")["status"], "stopped");

    // A failing createRuntime hook fails create, and nothing is left.
    let mut bad = bundle(&["sh", "-c", "exec sleep 1000"]);
    bad.edit(|spec| {
        spec["hooks"] = serde_json::json!({"createRuntime": [sh_hook("echo refused >&2; exit 3")]});
    });
    let out = runc.run(&["create", "--bundle", &path(bad.path()), "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hook createRuntime[0] /bin/sh failed") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(runc.ok(&["list", "-q"]), "");
    // A hook past its timeout is killed and fails.
    let mut slow = bundle(&["sh", "-c", "exec sleep 1000"]);
    slow.edit(|spec| {
        spec["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    });
    runc.create("slow", slow.path(), &pid_file);
    let t0 = std::time::Instant::now();
    let out = runc.run(&["start", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{out:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    // ... and the container is stopped.
    wait_for("the container to stop", T, || {
        (runc.state("slow")["status"] == "stopped").then_some(())
    });
    runc.ok(&["delete", "slow"]);
}

/// A console socket as runc's callers (conmon, containerd's shim, `recvtty`) listen on one.
struct ConsoleSocket {
    dir: tempfile::TempDir,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> ConsoleSocket {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("console.sock")).unwrap();
        ConsoleSocket { dir, listener }
    }

    fn path(&self) -> String {
        path(&self.dir.path().join("console.sock"))
    }

    /// Accepts the runtime's connection and receives the master: runc's message, one fd.
    fn receive(&self) -> Terminal {
        self.listener.set_nonblocking(true).unwrap();
        let conn = wait_for("the runtime to connect to the console socket", T, || {
            self.listener.accept().ok().map(|(c, _)| c)
        });
        conn.set_nonblocking(false).unwrap();
        let (name, master) = runtime::syscall::tty::recv_fd(conn.as_fd()).unwrap();
        assert_eq!(name, "/dev/ptmx", "runc sends the name of what it opened");
        Terminal::new(master)
    }
}

/// The master side of a container's terminal: what we type, and what it printed so far.
struct Terminal {
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    fn new(master: OwnedFd) -> Terminal {
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO when every slave is closed.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            master,
            output,
            seen: String::new(),
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Reads until the output (since the last match) contains `needle`; returns what was read.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + T;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("no {needle:?} on the terminal; it showed {:?}", self.seen),
            }
        }
        let end = self.seen.find(needle).unwrap() + needle.len();
        let read: String = self.seen.drain(..end).collect();
        read
    }
}

/// A busybox bundle whose process gets a terminal (`process.terminal`), 30 rows by 100 columns.
fn terminal_bundle(args: &[&str]) -> TestBundle {
    let mut b = bundle(args);
    b.edit(|spec| {
        spec["process"]["terminal"] = Value::from(true);
        spec["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100});
    });
    b
}

/// stderr of a failed command, after checking it failed with exit code 1.
fn failure(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn terminal_container_sends_the_pty_master_to_the_console_socket() {
    let runc = Runc::new();
    let b = terminal_bundle(&["sh"]);
    let console = ConsoleSocket::new();
    let pid_file = runc.root.path().join("pid");
    let out = runc.run(&[
        "create",
        "--bundle",
        &path(b.path()),
        "--console-socket",
        &console.path(),
        "--pid-file",
        &path(&pid_file),
        "tty1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut term = console.receive();
    assert_eq!(runc.state("tty1")["status"], "created");
    runc.ok(&["start", "tty1"]);

    term.type_line("stty size; tty; echo hello-$((6*7))");
    let shown = term.expect("hello-42");
    // The slave of the container's own devpts, sized as the spec says.
    assert!(shown.contains("30 100"), "{shown:?}");
    assert!(shown.contains("/dev/pts/0"), "{shown:?}");
    // It is init's stdin, stdout, stderr and controlling terminal, and /dev/console.
    let inside = runc.ok(&[
        "exec",
        "tty1",
        "sh",
        "-c",
        "for fd in 0 1 2; do readlink /proc/1/fd/$fd; done; cut -d' ' -f7 /proc/1/stat; ls -l /dev/console",
    ]);
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines.len(), 5, "{inside}");
    assert_eq!(lines[..3], ["/dev/pts/0"; 3], "{inside}");
    // tty_nr of /dev/pts/0: major 136, minor 0.
    assert_eq!(lines[3], (136 << 8).to_string(), "{inside}");
    assert!(lines[4].contains("136,   0"), "{inside}");

    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let s = runc.state("tty1");
    assert_eq!(s["status"], "running");
    assert_eq!(s["pid"], pid);
    let pids: Vec<i64> =
        serde_json::from_str(&runc.ok(&["ps", "--format", "json", "tty1"])).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");

    // The shell reads what we type: it exits, and the container stops.
    term.type_line("exit 3");
    wait_for("tty1 to stop", T, || {
        (runc.state("tty1")["status"] == "stopped").then_some(())
    });
    runc.ok(&["delete", "tty1"]);
    assert_eq!(runc.ok(&["list", "-q"]), "");
}

#[test]
fn exec_tty_gets_a_terminal_of_the_container() {
    let runc = Runc::new();
    let b = bundle(&["sleep", "1000"]);
    let pid_file = runc.root.path().join("pid");
    runc.create("ex", b.path(), &pid_file);
    runc.ok(&["start", "ex"]);

    // Detached, the master goes to the console socket.
    let console = ConsoleSocket::new();
    let exec_pid = runc.root.path().join("exec.pid");
    runc.ok(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &console.path(),
        "--pid-file",
        &path(&exec_pid),
        "ex",
        "sh",
    ]);
    let mut term = console.receive();
    // The shell leads a session of its own, whose controlling terminal is the pty.
    term.type_line(
        "tty; [ \"$(cut -d' ' -f6,7 /proc/$$/stat)\" = \"$$ 34816\" ] && echo hello-$((6*7))",
    );
    let shown = term.expect("hello-42");
    assert!(shown.contains("/dev/pts/0"), "{shown:?}");
    let host_pid: i64 = std::fs::read_to_string(&exec_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i64> = serde_json::from_str(&runc.ok(&["ps", "--format", "json", "ex"])).unwrap();
    assert!(pids.contains(&host_pid), "{pids:?} {host_pid}");
    term.type_line("exit");
    wait_for("the exec'd shell to exit", T, || {
        let pids: Vec<i64> =
            serde_json::from_str(&runc.ok(&["ps", "--format", "json", "ex"])).unwrap();
        (!pids.contains(&host_pid)).then_some(())
    });

    // A process file with `terminal` and `consoleSize`.
    let console = ConsoleSocket::new();
    let process = runc.root.path().join("process.json");
    std::fs::write(
        &process,
        r#"{"terminal": true, "consoleSize": {"height": 40, "width": 120}, "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/tmp"}"#,
    )
    .unwrap();
    runc.ok(&[
        "exec",
        "--process",
        &path(&process),
        "--detach",
        "--console-socket",
        &console.path(),
        "ex",
    ]);
    let mut term = console.receive();
    term.type_line("stty size; pwd; echo hello-$((6*7))");
    let shown = term.expect("hello-42");
    assert!(shown.contains("40 120"), "{shown:?}");
    assert!(shown.contains("/tmp"), "{shown:?}");
    term.type_line("exit");

    // In the foreground, migrate-runc relays the terminal to its own stdio (as runc does).
    let out = runc.run(&[
        "exec",
        "-t",
        "ex",
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo hello-$((6*7)); exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("/dev/pts/"), "{shown:?}");
    assert!(shown.contains("hello-42"), "{shown:?}");
    runc.ok(&["delete", "--force", "ex"]);
}

#[test]
fn run_in_the_foreground_relays_the_terminal() {
    let runc = Runc::new();
    let b = terminal_bundle(&["sh"]);
    let mut child = runc
        .cmd(&["run", "--bundle", &path(b.path()), "fgtty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"stty size; echo hello-$((6*7)); exit 4\n")
        .unwrap();
    let out = migrate_tests::rt::read_all(child.stdout.take().unwrap().into(), T);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4), "{out:?}");
    assert!(out.contains("hello-42"), "{out:?}");
    assert!(out.contains("30 100"), "{out:?}");
    assert_eq!(runc.ok(&["list", "-q"]), "");
}

#[test]
fn terminal_flags_are_checked_as_runc_checks_them() {
    let runc = Runc::new();
    let tty = terminal_bundle(&["sh"]);
    let plain = bundle(&["sleep", "1000"]);
    let console = ConsoleSocket::new();

    // A terminal, detached, with nowhere to send it.
    let err = failure(&runc.run(&["create", "--bundle", &path(tty.path()), "t1"]));
    assert!(
        err.contains(
            r#"level=error msg="cannot allocate tty if runc will detach without setting console socket""#
        ),
        "{err}"
    );
    let err = failure(&runc.run(&["run", "-d", "--bundle", &path(tty.path()), "t1"]));
    assert!(
        err.contains("cannot allocate tty if runc will detach"),
        "{err}"
    );
    // A console socket without a terminal, or in the foreground.
    let refused = "cannot use console socket if runc will not detach or allocate tty";
    for args in [
        vec![
            "create",
            "--console-socket",
            &console.path(),
            "--bundle",
            &path(plain.path()),
            "t2",
        ],
        vec![
            "run",
            "--console-socket",
            &console.path(),
            "--bundle",
            &path(tty.path()),
            "t3",
        ],
    ] {
        let err = failure(&runc.run(&args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>()));
        assert!(err.contains(refused), "{args:?}: {err}");
    }
    // Nothing was made.
    assert_eq!(runc.ok(&["list", "-q"]), "");

    // The same for exec.
    runc.create("t4", plain.path(), &runc.root.path().join("pid"));
    runc.ok(&["start", "t4"]);
    let err = failure(&runc.run(&["exec", "-t", "-d", "t4", "sh"]));
    assert!(
        err.contains("cannot allocate tty if runc will detach"),
        "{err}"
    );
    let err = failure(&runc.run(&["exec", "--console-socket", &console.path(), "t4", "true"]));
    assert!(err.contains(refused), "{err}");
    let err = failure(&runc.run(&[
        "exec",
        "-t",
        "--console-socket",
        &console.path(),
        "t4",
        "sh",
    ]));
    assert!(err.contains(refused), "{err}");
    // And a console socket nobody listens on.
    let err = failure(&runc.run(&[
        "create",
        "--console-socket",
        "/nonexistent.sock",
        "--bundle",
        &path(tty.path()),
        "t5",
    ]));
    assert!(err.contains("dial unix /nonexistent.sock"), "{err}");
    runc.ok(&["delete", "--force", "t4"]);
    assert_eq!(runc.ok(&["list", "-q"]), "");
}

#[test]
fn terminal_container_checkpoints_and_restores_with_a_new_master() {
    migrate_tests::prereq::require_criu();
    let runc = Runc::new();
    let b = terminal_bundle(&["sh"]);
    let console = ConsoleSocket::new();
    runc.ok(&[
        "create",
        "--bundle",
        &path(b.path()),
        "--console-socket",
        &console.path(),
        "ck",
    ]);
    let mut term = console.receive();
    runc.ok(&["start", "ck"]);
    term.type_line("X=kept-$((6*7)); echo set-$X");
    term.expect("set-kept-42");

    let images = runc.root.path().join("images");
    runc.ok(&["checkpoint", "--image-path", &path(&images), "ck"]);
    drop(term);
    // Restored detached with a terminal: a console socket is needed, as with runc.
    let err = failure(&runc.run(&[
        "restore",
        "--image-path",
        &path(&images),
        "--bundle",
        &path(b.path()),
        "--detach",
        "ck",
    ]));
    assert!(err.contains("cannot allocate tty"), "{err}");
    // CRIU makes a new pty; its master comes to the new console socket.
    let console = ConsoleSocket::new();
    runc.ok(&[
        "restore",
        "--image-path",
        &path(&images),
        "--bundle",
        &path(b.path()),
        "--detach",
        "--console-socket",
        &console.path(),
        "ck",
    ]);
    let mut term = console.receive();
    assert_eq!(runc.state("ck")["status"], "running");
    term.type_line("echo restored-$X; tty");
    let shown = term.expect("restored-kept-42");
    assert!(shown.contains("restored-kept-42"), "{shown:?}");
    term.expect("/dev/pts/");
    runc.ok(&["delete", "--force", "ck"]);
}
