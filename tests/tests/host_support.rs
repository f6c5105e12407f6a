//! Settings the host cannot honour are not ignored silently: a cgroup resource whose
//! controller or control file the host lacks refuses the create, naming the setting; an
//! AppArmor or SELinux setting on a host without that module runs with one warning line.
//! Each test checks this host's side of the rule (with the module or controller present the
//! setting is applied, or refused because the runtime cannot apply it).

use std::process::{Command, Stdio};

use migrate_tests::rt::chain;
use migrate_tests::{TestBundle, TestRuntime};
use runtime::cgroups::{Cgroup, Layout};
use runtime::CreateOpts;
use serde_json::{json, Value};

/// Whether the host's cgroups offer `controller` (a v1 hierarchy, or v2's root controllers).
fn has_controller(layout: &Layout, controller: &str) -> bool {
    match layout {
        Layout::V1 { .. } => layout
            .v1_hierarchies()
            .expect("list v1 hierarchies")
            .iter()
            .any(|h| h.has(controller)),
        Layout::V2 { root } => std::fs::read_to_string(root.join("cgroup.controllers"))
            .expect("read cgroup.controllers")
            .split_whitespace()
            .any(|c| c == controller),
    }
}

/// Creates a container with `resources`; the error chain when refused.
fn create_with(t: &TestRuntime, id: &str, resources: Value) -> Result<(), String> {
    let mut b = TestBundle::busybox(&["true"]);
    b.edit(|s| s["linux"]["resources"] = resources);
    match t.rt.create(id, b.path(), CreateOpts::default()) {
        Ok((c, _io)) => {
            c.delete(true).unwrap();
            Ok(())
        }
        Err(e) => Err(chain(&e)),
    }
}

#[test]
fn cgroup_settings_without_their_controller_refuse_the_create() {
    let t = TestRuntime::new();
    let layout = t.rt.cgroup_layout().clone();
    let cases = [
        (
            "hugetlb",
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
            "linux.resources.hugepageLimits",
        ),
        (
            "net_cls",
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID",
        ),
        (
            "net_prio",
            json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
            "linux.resources.network.priorities",
        ),
    ];
    for (controller, resources, setting) in cases {
        let result = create_with(&t, controller, resources);
        if layout.is_v2() && controller.starts_with("net_") {
            let err = result.expect_err("cgroup v2 has no net_cls or net_prio");
            assert!(
                err.contains(&format!(
                    "cannot apply {setting}: cgroup v2 has no {controller} controller"
                )),
                "{err}"
            );
        } else if has_controller(&layout, controller) {
            assert_eq!(result, Ok(()), "{controller} is there: {setting} applies");
        } else {
            let err = result.expect_err(controller);
            assert!(
                err.contains(&format!(
                    "cannot apply {setting}: the {controller} controller is not available at "
                )),
                "{err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
    assert!(
        t.rt.list().unwrap().is_empty(),
        "a refused create leaves nothing"
    );
}

#[test]
fn block_io_weights_need_the_hosts_weight_files() {
    let t = TestRuntime::new();
    let layout = t.rt.cgroup_layout().clone();
    let weight = create_with(&t, "weight", json!({"blockIO": {"weight": 500}}));
    let leaf = create_with(&t, "leaf", json!({"blockIO": {"leafWeight": 500}}));
    if layout.is_v2() {
        // io.bfq.weight, else io.weight (converted), or refused; v2 has no leaf weights.
        if let Err(err) = weight {
            assert!(
                err.contains("cannot apply linux.resources.blockIO.weight: "),
                "{err}"
            );
        }
        let err = leaf.expect_err("v2 has no leaf weights");
        assert!(
            err.contains(
                "cannot apply linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weights"
            ),
            "{err}"
        );
        return;
    }
    // What a cgroup of this host's blkio hierarchy offers (its root lacks some files).
    let probe = Cgroup::create(&layout, &format!("{}/probe", t.cgroup_parent), None).unwrap();
    let blkio = layout
        .v1_hierarchies()
        .unwrap()
        .into_iter()
        .find(|h| h.has("blkio"))
        .expect("a blkio hierarchy")
        .dir
        .join(probe.path().trim_start_matches('/'));
    let has = |f: &str| blkio.join(f).exists();
    let (has_weight, has_leaf) = (
        has("blkio.bfq.weight") || has("blkio.weight"),
        has("blkio.leaf_weight"),
    );
    probe.destroy().unwrap();
    match weight {
        Ok(()) => assert!(has_weight, "applied without a weight file"),
        Err(err) => {
            assert!(
                !has_weight,
                "refused although the host has a weight file: {err}"
            );
            assert!(
                err.contains("cannot apply linux.resources.blockIO.weight: the kernel offers neither blkio.bfq.weight nor blkio.weight in "),
                "{err}"
            );
        }
    }
    // CFQ's leaf weights are gone from kernels since 5.0.
    match leaf {
        Ok(()) => assert!(has_leaf, "applied without blkio.leaf_weight"),
        Err(err) => {
            assert!(
                !has_leaf,
                "refused although the host has blkio.leaf_weight: {err}"
            );
            assert!(
                err.contains("cannot apply linux.resources.blockIO.leafWeight: the kernel does not offer blkio.leaf_weight in "),
                "{err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}

#[test]
fn apparmor_and_selinux_settings_warn_on_a_host_without_them() {
    let host = runtime::lsm::Host::detect();
    let mut b = TestBundle::busybox(&["true"]);
    b.edit(|s| {
        s["process"]["apparmorProfile"] = json!("acme_default");
        s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
        s["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
        // A leaf of its own, removed with the container (the default parent would stay).
        s["linux"]["cgroupsPath"] = json!(format!("/migrate-test-lsm-{}", std::process::id()));
    });
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(migrate_tests::agent::binary("migrate-runc"))
        .arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("lsm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if host.apparmor || host.selinux {
        assert_eq!(out.status.code(), Some(1), "refused: {stderr}");
        assert!(stderr.contains("cannot be applied:"), "{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "warning: process.apparmorProfile \"acme_default\" is ignored: AppArmor is not enabled on this host",
            "warning: process.selinuxLabel \"system_u:system_r:container_t:s0\" is ignored: SELinux is not enabled on this host",
            "warning: linux.mountLabel \"system_u:object_r:container_file_t:s0\" is ignored: SELinux is not enabled on this host",
        ]
    );
}
