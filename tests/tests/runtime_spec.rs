//! Spec settings the OCI runtime-tools validation suite found missing or wrong, on real
//! containers: root propagation, memory swappiness and the OOM killer, joining a mount
//! namespace by path, and poststart/poststop hooks that only warn.

use std::fs;
use std::time::Duration;

use migrate_tests::rt::{read_all, wait_for};
use migrate_tests::{TestBundle, TestRuntime};
use runtime::ExecOpts;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// The optional fields of the container's root mount in its own mountinfo.
fn root_mount_tags(c: &runtime::Container) -> String {
    let (p, mut io) = c
        .exec(ExecOpts::new(["cat", "/proc/self/mountinfo"]))
        .expect("exec");
    let out = read_all(io.stdout.take().unwrap(), T);
    p.wait().unwrap();
    out.lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            f[6..sep].join(" ")
        })
        .unwrap_or_default()
}

#[test]
fn root_propagation_applies_to_the_container_root() {
    let t = TestRuntime::new();
    for (prop, tag) in [
        ("shared", "shared:"),
        ("unbindable", "unbindable"),
        ("private", ""),
    ] {
        let mut b = TestBundle::busybox(&["sleep", "60"]);
        b.edit(|s| s["linux"]["rootfsPropagation"] = json!(prop));
        let (c, _io) = t.run(&format!("prop-{prop}"), b.path());
        let tags = root_mount_tags(&c);
        if tag.is_empty() {
            assert!(
                !tags.contains("shared:") && !tags.contains("master:"),
                "{prop}: {tags}"
            );
        } else {
            assert!(tags.contains(tag), "{prop}: root mount tags {tags:?}");
        }
        c.delete(true).unwrap();
    }
}

#[test]
fn memory_swappiness_and_oom_killer_are_set_on_v1() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(|s| {
        s["linux"]["resources"]["memory"] =
            json!({"limit": 64 << 20, "swappiness": 7, "disableOOMKiller": true})
    });
    let (c, _io) = t.run("swap", b.path());
    let memory = c
        .cgroup()
        .dirs()
        .into_iter()
        .find(|d| d.join("memory.swappiness").exists())
        .expect("a v1 memory cgroup (this host is hybrid)");
    assert_eq!(
        fs::read_to_string(memory.join("memory.swappiness"))
            .unwrap()
            .trim(),
        "7"
    );
    assert!(
        fs::read_to_string(memory.join("memory.oom_control"))
            .unwrap()
            .contains("oom_kill_disable 1"),
        "the OOM killer is still on"
    );
    c.delete(true).unwrap();

    let mut bad = TestBundle::busybox(&["true"]);
    bad.edit(|s| s["linux"]["resources"]["memory"] = json!({"swappiness": 101}));
    let Err(e) = t.rt.create("badswap", bad.path(), Default::default()) else {
        panic!("swappiness 101 must be refused");
    };
    assert!(
        migrate_tests::rt::chain(&e).contains("swappiness 101"),
        "{}",
        migrate_tests::rt::chain(&e)
    );
}

#[test]
fn a_mount_namespace_can_be_joined_by_path() {
    let t = TestRuntime::new();
    // A mount namespace of its own, held by a process outside any container.
    let mut holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "60"])
        .spawn()
        .expect("run unshare");
    let ns = format!("/proc/{}/ns/mnt", holder.id());
    let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
    let target = wait_for("unshare to enter its mount namespace", T, || {
        fs::read_link(&ns).ok().filter(|l| *l != ours)
    });
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(|s| {
        for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "mount" {
                n["path"] = json!(ns);
            }
        }
    });
    let (c, _io) = t.run("mnt-join", b.path());
    let theirs = fs::read_link(format!("/proc/{}/ns/mnt", c.pid())).unwrap();
    c.delete(true).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        theirs, target,
        "the container is not in the namespace it asked to join"
    );
}

/// A hook running `sh -c SCRIPT`.
fn sh_hook(script: &str) -> serde_json::Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_others_still_run() {
    let t = TestRuntime::new();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(|s| {
        s["hooks"] = json!({
            "poststart": [sh_hook("exit 3"), sh_hook(&format!("touch {o}/poststart-2"))],
            "poststop": [sh_hook("exit 4"), sh_hook(&format!("touch {o}/poststop-2"))],
        })
    });
    let (c, _io) = t.run("hooks", b.path());
    assert!(
        out.path().join("poststart-2").exists(),
        "the poststart hook after the failing one did not run"
    );
    assert_eq!(
        c.status(),
        runtime::Status::Running,
        "a failing poststart hook only warns"
    );
    c.delete(true).unwrap();
    assert!(
        out.path().join("poststop-2").exists(),
        "the poststop hook after the failing one did not run"
    );
}

#[test]
fn an_ambient_capability_that_is_not_inheritable_only_warns() {
    let t = TestRuntime::new();
    // As `runc spec` writes it: ambient without inheritable.
    let mut b = TestBundle::busybox(&["sh", "-c", "grep CapAmb /proc/self/status"]);
    b.edit(|s| {
        let caps = &mut s["process"]["capabilities"];
        caps["ambient"] = json!(["CAP_NET_BIND_SERVICE"]);
        caps["inheritable"] = json!([]);
    });
    let (code, out, err) = t.run_to_end("ambient", b.path(), T);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0000000000000000"),
        "no ambient capability: {out}"
    );
    assert!(
        err.contains("cannot raise ambient capability"),
        "no warning"
    );
}
