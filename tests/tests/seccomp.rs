//! `linux.seccomp` on real containers: a denied syscall fails with its errno in init and in
//! exec'd processes, an allowlist runs busybox, argument rules, SCMP_ACT_NOTIFY refused, and
//! the filter survives a checkpoint and restore.

use std::fs;
use std::time::Duration;

use migrate_tests::prereq::require_criu;
use migrate_tests::rt::{chain, read_all, wait_for};
use migrate_tests::{TestBundle, TestRuntime};
use runtime::{CheckpointOpts, Container, CreateOpts, ExecOpts, RestoreOpts, Status};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// Everything is allowed except `mkdir`, which fails with EPERM.
fn deny_mkdir() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

fn with_seccomp(args: &[&str], seccomp: Value) -> TestBundle {
    let mut b = TestBundle::busybox(args);
    b.edit(|s| s["linux"]["seccomp"] = seccomp);
    b
}

fn run_to_end(t: &TestRuntime, id: &str, bundle: &TestBundle) -> (i32, String, String) {
    t.run_to_end(id, bundle.path(), T)
}

/// Runs `cmd` with `sh -c` in the container: (exit code, stdout, stderr).
fn exec_sh(c: &Container, cmd: &str) -> (i32, String, String) {
    let (p, mut io) = c
        .exec(ExecOpts::new(["sh", "-c", cmd]))
        .unwrap_or_else(|e| panic!("exec {cmd}: {}", chain(&e)));
    let err = io.stderr.take().unwrap();
    let err = std::thread::spawn(move || read_all(err, T));
    let out = read_all(io.stdout.take().unwrap(), T);
    (p.wait().unwrap(), out, err.join().unwrap())
}

/// The `Seccomp:` and `Seccomp_filters:` lines of a host process.
fn seccomp_status(pid: i32) -> (String, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

#[test]
fn a_denied_syscall_fails_with_eperm_and_everything_else_works() {
    let t = TestRuntime::new();
    // Both ways of installing the filter: late, with no_new_privs; early, while init still has
    // CAP_SYS_ADMIN, without it.
    for nnp in [true, false] {
        let mut b = with_seccomp(
            &[
                "sh",
                "-c",
                "mkdir /tmp/d; echo mkdir=$?; ls / >/dev/null && echo ls=ok; touch /tmp/f && echo touch=ok; grep Seccomp: /proc/self/status",
            ],
            deny_mkdir(),
        );
        b.edit(|s| s["process"]["noNewPrivileges"] = json!(nnp));
        let (code, out, err) = run_to_end(&t, &format!("deny-{nnp}"), &b);
        assert_eq!(code, 0, "nnp {nnp}: {err}");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["mkdir=1", "ls=ok", "touch=ok", "Seccomp:", "2"],
            "nnp {nnp}; stderr: {err}"
        );
        assert!(
            err.contains("mkdir: can't create directory '/tmp/d': Operation not permitted"),
            "nnp {nnp}: {err}"
        );
    }
}

#[test]
fn exec_processes_get_the_containers_filter() {
    let t = TestRuntime::new();
    let b = with_seccomp(&["sleep", "60"], deny_mkdir());
    let (c, _io) = t.run("exec", b.path());
    // `start` returns before init has exec'd (and installed the filter just before that).
    wait_for("init to install its filter", T, || {
        (seccomp_status(c.pid()) == ("2".into(), "1".into())).then_some(())
    });
    let (code, out, err) = exec_sh(
        &c,
        "mkdir /tmp/e; echo mkdir=$?; echo hi > /tmp/g && cat /tmp/g",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mkdir=1\nhi\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn an_allowlist_runs_busybox_sh() {
    let t = TestRuntime::new();
    // What busybox's sh, ls, wc, cat and grep need (strace), and the usual neighbours;
    // not mkdir.
    let allowed = [
        "access",
        "arch_prctl",
        "brk",
        "chdir",
        "clock_gettime",
        "clock_nanosleep",
        "clone",
        "clone3",
        "close",
        "dup",
        "dup2",
        "dup3",
        "execve",
        "exit",
        "exit_group",
        "faccessat",
        "faccessat2",
        "fchdir",
        "fcntl",
        "fstat",
        "futex",
        "getcwd",
        "getdents64",
        "getegid",
        "geteuid",
        "getgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getrandom",
        "gettid",
        "getuid",
        "ioctl",
        "kill",
        "lseek",
        "madvise",
        "mmap",
        "mprotect",
        "munmap",
        "nanosleep",
        "newfstatat",
        "openat",
        "pipe",
        "pipe2",
        "poll",
        "prctl",
        "pread64",
        "prlimit64",
        "read",
        "readlink",
        "readv",
        "rseq",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "sendfile",
        "set_robust_list",
        "set_tid_address",
        "setpgid",
        "stat",
        "statx",
        "sysinfo",
        "umask",
        "uname",
        "vfork",
        "wait4",
        "write",
        "writev",
    ];
    let b = with_seccomp(
        &[
            "sh",
            "-c",
            "echo hello; ls /bin | wc -l; grep Seccomp: /proc/self/status; mkdir /tmp/x || echo denied",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": &allowed[..], "action": "SCMP_ACT_ALLOW"}]
        }),
    );
    let (code, out, err) = run_to_end(&t, "allow", &b);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "stdout: {out}; stderr: {err}");
    assert_eq!(lines[0], "hello");
    assert!(lines[1].parse::<u32>().unwrap() > 100, "{out}");
    assert_eq!(lines[2], "Seccomp:\t2");
    assert_eq!(lines[3], "denied");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn argument_rules_match_only_their_values() {
    let t = TestRuntime::new();
    // IPv4 TCP sockets (AF_INET and, masked, SOCK_STREAM) fail with EACCES; netlink does not.
    // kill with SIGUSR1 fails with EPERM; kill -0 does not.
    let b = with_seccomp(
        &[
            "sh",
            "-c",
            "nc 127.0.0.1 1 </dev/null; ip -o link show lo | grep -c lo; kill -0 $$ && echo kill0=ok; kill -USR1 $$; echo usr1=$?",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 15, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}
                ]},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}
                ]}
            ]
        }),
    );
    let (code, out, err) = run_to_end(&t, "args", &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\nkill0=ok\nusr1=1\n", "stderr: {err}");
    assert!(
        err.contains("Permission denied"),
        "the socket's EACCES: {err}"
    );
    assert!(
        err.contains("Operation not permitted"),
        "kill's EPERM: {err}"
    );
}

#[test]
fn notify_is_refused_at_create() {
    let t = TestRuntime::new();
    let b = with_seccomp(
        &["true"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/seccomp-agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    let err = match t.rt.create("notify", b.path(), CreateOpts::default()) {
        Ok(_) => panic!("a SCMP_ACT_NOTIFY profile was accepted"),
        Err(e) => chain(&e),
    };
    assert!(
        err.ends_with("linux.seccomp.listenerPath is not supported: this runtime has no seccomp agent support (SCMP_ACT_NOTIFY)"),
        "{err}"
    );
    let mut b = b;
    b.edit(|s| s["linux"]["seccomp"]["listenerPath"] = Value::Null);
    let err = match t.rt.create("notify", b.path(), CreateOpts::default()) {
        Ok(_) => panic!("a SCMP_ACT_NOTIFY profile was accepted"),
        Err(e) => chain(&e),
    };
    assert!(
        err.ends_with("seccomp action SCMP_ACT_NOTIFY (mkdir) is not supported: this runtime has no seccomp agent support"),
        "{err}"
    );
    assert!(t.rt.list().unwrap().is_empty());
}

/// The last line the container's loop wrote: "<iteration> <made|denied>".
fn last_try(c: &Container) -> Option<(u64, String)> {
    let text = fs::read_to_string(c.upper_dir().join("tmp/try")).ok()?;
    let (n, what) = text.trim().split_once(' ')?;
    Some((n.parse().ok()?, what.to_string()))
}

#[test]
fn the_filter_survives_checkpoint_and_restore() {
    require_criu();
    let t = TestRuntime::new();
    let b = with_seccomp(
        &[
            "sh",
            "-c",
            // Written atomically: a dump may come between truncate and write.
            "i=0; while :; do i=$((i+1)); if mkdir /tmp/d 2>/dev/null; then r=made; rmdir /tmp/d; else r=denied; fi; echo \"$i $r\" > /tmp/try.new; mv /tmp/try.new /tmp/try; usleep 20000; done",
        ],
        deny_mkdir(),
    );
    let (c, _io) = t.run("sc", b.path());
    let (at_dump, what) = wait_for("the loop to run", T, || {
        last_try(&c).filter(|(n, _)| *n > 3)
    });
    assert_eq!(what, "denied");
    let images = tempfile::tempdir_in("/run").unwrap();
    let dir = images.path().join("ckpt");
    c.checkpoint(&dir, CheckpointOpts::default())
        .unwrap_or_else(|e| panic!("checkpoint: {}", chain(&e)));
    assert_eq!(c.status(), Status::Stopped);
    c.delete(false).unwrap();
    let (r, _io, _) =
        t.rt.restore(&dir, "sc", RestoreOpts::default())
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(r.status(), Status::Running);
    // CRIU put the filter back on the restored init.
    assert_eq!(seccomp_status(r.pid()), ("2".into(), "1".into()));
    let (n, what) = wait_for("the restored loop to go on", T, || {
        last_try(&r).filter(|(n, _)| *n > at_dump + 3)
    });
    assert_eq!(
        what, "denied",
        "iteration {n} after restore made the directory"
    );
    // A process exec'd into the restored container gets the filter from its spec.
    let (code, out, err) = exec_sh(&r, "mkdir /tmp/e; echo mkdir=$?");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mkdir=1\n", "stderr: {err}");
}

/// Profiles older than close_range (runtime-tools', older Docker's) deny it with EPERM, and
/// the runtime's own set-up after the filter is installed must not depend on it.
#[test]
fn a_profile_without_close_range_still_starts_and_execs() {
    let t = TestRuntime::new();
    for nnp in [false, true] {
        let mut b = with_seccomp(
            &["sh", "-c", "echo started; exec sleep 60"],
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            }),
        );
        b.edit(|s| s["process"]["noNewPrivileges"] = json!(nnp));
        let id = format!("noclose-{nnp}");
        let (c, _io) = t.run(&id, b.path());
        assert_eq!(c.status(), Status::Running, "noNewPrivileges {nnp}");
        let (code, out, err) = exec_sh(&c, "echo exec-ok");
        assert_eq!((code, out.trim()), (0, "exec-ok"), "stderr: {err}");
        c.delete(true).unwrap();
    }
}

/// The profile `oci-runtime-tool generate` writes (Docker's older default) has a MASKED_EQ rule
/// without valueTwo: it compares the masked argument with 0, as runc reads it.
#[test]
fn a_masked_eq_rule_without_value_two_compares_with_zero() {
    let t = TestRuntime::new();
    // A fork's clone flags lack CLONE_NEWUSER (0x10000000) and have SIGCHLD (0x11).
    for (mask, forks) in [(0x1000_0000u64, false), (0x11, true)] {
        let b = with_seccomp(
            &["sh", "-c", "(echo forked) ; echo done"],
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["clone", "fork", "vfork", "clone3"], "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                    "args": [{"index": 0, "value": mask, "op": "SCMP_CMP_MASKED_EQ"}]}]
            }),
        );
        let (_, out, err) = run_to_end(&t, &format!("masked-{mask:x}"), &b);
        assert_eq!(
            out.contains("forked"),
            forks,
            "mask {mask:#x}: (flags & mask) == 0 must {}match; out {out:?} err {err:?}",
            if forks { "not " } else { "" }
        );
    }
}
