//! User namespaces (container root mapped to an unprivileged host range) and containers
//! without a mount namespace of their own, on real containers.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use migrate_tests::rt::{chain, read_all, wait_for};
use migrate_tests::{TestBundle, TestRuntime};
use runtime::{CheckpointOpts, CreateOpts, ExecOpts, RootfsMode};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// Host id of the container's root.
const HOST_ROOT: u32 = 100000;

/// Gives the spec a new user namespace mapping container 0..65536 to host 100000..165536.
fn map_to_host_range(spec: &mut Value) {
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": HOST_ROOT, "size": 65536}]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
}

/// `(uid, gid)` fields of `/proc/<pid>/status`: real, effective, saved, filesystem.
fn host_ids(pid: i32) -> (Vec<u32>, Vec<u32>) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    (field("Uid:"), field("Gid:"))
}

fn ns_of(pid: &str, ns: &str) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
}

#[test]
fn container_root_is_an_unprivileged_host_range() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&[
        "sh",
        "-c",
        "{ id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; } > /report; exec sleep 60",
    ]);
    b.edit(|s| {
        map_to_host_range(s);
        // Set by the helper before it enters the user namespace (lowering it would need the
        // host's CAP_SYS_RESOURCE).
        s["process"]["oomScoreAdj"] = json!(100);
    });
    let (c, _io) = t.run("userns", b.path());
    let report = c.upper_dir().join("report");
    let text = wait_for("the container's report", T, || {
        fs::read_to_string(&report)
            .ok()
            .filter(|s| s.lines().count() == 4)
    });
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "id -u inside: {text}");
    assert_eq!(lines[1], ["0"], "id -g inside: {text}");
    assert_eq!(lines[2], ["0", "100000", "65536"], "uid_map: {text}");
    assert_eq!(lines[3], ["0", "100000", "65536"], "gid_map: {text}");

    // On the host, init is the unprivileged 100000, and so is what it wrote.
    let (uids, gids) = host_ids(c.pid());
    assert_eq!(
        fs::read_to_string(format!("/proc/{}/oom_score_adj", c.pid())).unwrap(),
        "100\n"
    );
    assert_eq!(uids, [HOST_ROOT; 4]);
    assert_eq!(gids, [HOST_ROOT; 4]);
    let meta = fs::metadata(&report).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HOST_ROOT, HOST_ROOT));
    assert_ne!(
        ns_of(&c.pid().to_string(), "user"),
        ns_of("self", "user"),
        "init has a user namespace of its own"
    );

    // The bundle's files are left as they are (as runc): host root's, which the container
    // sees as the overflow id, but can read and run.
    let (p, mut io) = c
        .exec(ExecOpts::new([
            "sh",
            "-c",
            "id -u; readlink /proc/self/ns/user; stat -c %u /bin/busybox; touch /bin/x || echo denied",
        ]))
        .unwrap();
    let out = read_all(io.stdout.take().unwrap(), T);
    assert_eq!(p.wait().unwrap(), 0);
    let out: Vec<&str> = out.lines().collect();
    assert_eq!(out[0], "0", "exec runs as the container's root: {out:?}");
    assert_eq!(
        Path::new(out[1]),
        ns_of(&c.pid().to_string(), "user"),
        "exec joins init's user namespace"
    );
    assert_eq!(out[2], "65534", "host root's files are unmapped inside");
    assert_eq!(
        out[3], "denied",
        "and the container's root cannot change them"
    );
    assert!(!b.rootfs().join("bin/x").exists());

    let id = c.id().to_string();
    c.delete(true)
        .unwrap_or_else(|e| panic!("delete {id}: {}", chain(&e)));
}

#[test]
fn plain_rootfs_in_a_user_namespace_is_used_in_place() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sh", "-c", "id -u; cat /etc/hostname"]);
    b.edit(map_to_host_range);
    let opts = CreateOpts {
        rootfs: RootfsMode::Plain,
        ..CreateOpts::default()
    };
    let (c, mut io) =
        t.rt.create("plain", b.path(), opts)
            .unwrap_or_else(|e| panic!("create: {}", chain(&e)));
    c.start().unwrap();
    let out = read_all(io.stdout.take().unwrap(), T);
    assert_eq!(c.wait().unwrap(), 0);
    assert_eq!(out, "0\nbundle\n");
}

#[test]
fn hooks_in_the_container_join_its_user_namespace() {
    let t = TestRuntime::new();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("hook-ns");
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    let script = format!("readlink /proc/self/ns/user > {}", file.display());
    b.edit(|s| {
        map_to_host_range(s);
        s["hooks"] =
            json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    let (c, _io) = t.run("hooked", b.path());
    let seen = fs::read_to_string(&file).expect("the hook ran");
    assert_eq!(Path::new(seen.trim()), ns_of(&c.pid().to_string(), "user"));
}

#[test]
fn missing_or_mismatched_mappings_are_refused() {
    let t = TestRuntime::new();
    type Patch = fn(&mut Value);
    let cases: [(Patch, &str); 4] = [
        (
            |s| {
                map_to_host_range(s);
                s["linux"].as_object_mut().unwrap().remove("uidMappings");
            },
            "a new user namespace needs uidMappings",
        ),
        (
            |s| {
                map_to_host_range(s);
                s["linux"]["gidMappings"] = json!([]);
            },
            "a new user namespace needs gidMappings",
        ),
        (
            |s| {
                map_to_host_range(s);
                s["linux"]["uidMappings"] =
                    json!([{"containerID": 1, "hostID": HOST_ROOT, "size": 65535}]);
            },
            "uidMappings do not map 0 (the container's root)",
        ),
        (
            |s| {
                s["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": HOST_ROOT, "size": 1}])
            },
            "uidMappings or gidMappings are set but there is no user namespace",
        ),
    ];
    for (i, (patch, want)) in cases.into_iter().enumerate() {
        let mut b = TestBundle::busybox(&["true"]);
        b.edit(patch);
        let id = format!("bad{i}");
        let err = match t.rt.create(&id, b.path(), CreateOpts::default()) {
            Ok(_) => panic!("{id}: created, but {want:?} was expected"),
            Err(e) => chain(&e),
        };
        assert!(err.contains(want), "{id}: {err:?} should say {want:?}");
        assert!(!t.root().join(&id).exists(), "{id}: nothing is left");
    }
}

#[test]
fn features_list_the_user_namespace() {
    migrate_tests::prereq::require_runtime();
    let out = Command::new(migrate_tests::agent::binary("migrate-runc"))
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user")),
        "{f}"
    );
}

#[test]
fn checkpoint_of_a_user_namespace_is_refused() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(map_to_host_range);
    let (c, _io) = t.run("nodump", b.path());
    let images = tempfile::tempdir().unwrap();
    let err = c
        .checkpoint(&images.path().join("img"), CheckpointOpts::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        chain(&err),
        "checkpoint of containers with a user namespace is not supported yet"
    );
    assert!(c.init_alive(), "the container keeps running");
    assert!(!images.path().join("img").exists());
}

/// Mount points in the test's (the host's) mount namespace at or below `dir`.
fn host_mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

#[test]
fn without_a_mount_namespace_the_root_is_a_chroot_that_delete_unmounts() {
    for mode in [RootfsMode::Overlay, RootfsMode::Plain] {
        let t = TestRuntime::new();
        let mut b = TestBundle::busybox(&["sh", "-c", "echo ok > /written; exec sleep 60"]);
        b.edit(|s| {
            s["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"}]);
        });
        let opts = CreateOpts {
            rootfs: mode,
            ..CreateOpts::default()
        };
        let (c, _io) =
            t.rt.create("nomnt", b.path(), opts)
                .unwrap_or_else(|e| panic!("create ({mode:?}): {}", chain(&e)));
        c.start().unwrap();
        let written = match mode {
            RootfsMode::Overlay => c.upper_dir().join("written"),
            RootfsMode::Plain => b.rootfs().join("written"),
        };
        wait_for("the container's file", T, || fs::metadata(&written).ok());
        let pid = c.pid().to_string();
        assert_eq!(ns_of(&pid, "mnt"), ns_of("self", "mnt"), "{mode:?}");
        let rootfs = c.dir().join("rootfs");
        assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), rootfs);
        let mounts = host_mounts_under(c.dir());
        for sub in ["", "proc", "dev", "sys"] {
            let want = rootfs.join(sub);
            assert!(
                mounts.contains(&want),
                "{mode:?}: {} is mounted on the host: {mounts:?}",
                want.display()
            );
        }

        // exec lands in the same root.
        let (p, mut io) = c
            .exec(ExecOpts::new(["sh", "-c", "cat /written; ls /bin/busybox"]))
            .unwrap();
        let out = read_all(io.stdout.take().unwrap(), T);
        assert_eq!(p.wait().unwrap(), 0);
        assert_eq!(out, "ok\n/bin/busybox\n", "{mode:?}");

        let dir = c.dir().to_path_buf();
        c.delete(true)
            .unwrap_or_else(|e| panic!("delete ({mode:?}): {}", chain(&e)));
        assert_eq!(host_mounts_under(&dir), Vec::<PathBuf>::new(), "{mode:?}");
        assert!(!dir.exists(), "{mode:?}");
        assert!(
            b.rootfs().join("bin/busybox").exists(),
            "{mode:?}: the bundle is untouched"
        );
    }
}

#[test]
fn checkpoint_without_a_mount_namespace_is_refused() {
    let t = TestRuntime::new();
    let mut b = TestBundle::busybox(&["sleep", "60"]);
    b.edit(|s| s["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]));
    let (c, _io) = t.run("nomnt-dump", b.path());
    let images = tempfile::tempdir().unwrap();
    let err = c
        .checkpoint(&images.path().join("img"), CheckpointOpts::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        chain(&err),
        "checkpoint of containers without a mount namespace of their own is not supported yet"
    );
}
