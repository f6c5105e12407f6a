//! Temporary directories that imitate a v1 (hybrid) or v2 cgroup layout, for tests
//! that need no root. Only the files this module reads before writing exist.

use std::fs;
use std::path::{Path, PathBuf};

use super::Layout;

/// The v1 hierarchies of this test host, in the order `Layout::v1_hierarchies` returns them.
pub(super) const V1_HIERARCHIES: [&str; 9] = [
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd",
];

/// A fake layout; the directory goes away on drop.
pub(super) struct Fake {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pub layout: Layout,
}

impl Fake {
    /// The layout root (symlinks resolved, as `v1_hierarchies` reports paths).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    (dir, root)
}

fn hierarchy(root: &Path, name: &str) {
    fs::create_dir(root.join(name)).unwrap();
    fs::write(root.join(name).join("cgroup.procs"), "").unwrap();
}

/// A v1 host like this one; `unified` adds the hybrid cgroup2 mount.
pub(super) fn v1(unified: bool) -> Fake {
    let fake = v1_with(&V1_HIERARCHIES, unified);
    fs::write(fake.root.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    fs::write(fake.root.join("cpuset/cpuset.mems"), "0\n").unwrap();
    fake
}

/// A hybrid v1 host without a cpuset hierarchy (whose seeded files would keep
/// plain directories from being removed by `rmdir`).
pub(super) fn v1_without_cpuset() -> Fake {
    let names: Vec<&str> = V1_HIERARCHIES
        .iter()
        .copied()
        .filter(|h| *h != "cpuset")
        .collect();
    v1_with(&names, true)
}

/// A hybrid v1 host like this one with more hierarchies (such as `net_cls,net_prio`).
pub(super) fn v1_plus(extra: &[&str]) -> Fake {
    let names: Vec<&str> = V1_HIERARCHIES.iter().chain(extra).copied().collect();
    v1_with(&names, true)
}

fn v1_with(names: &[&str], unified: bool) -> Fake {
    let (dir, root) = tempdir();
    for name in names {
        hierarchy(&root, name);
    }
    let unified = unified.then(|| {
        hierarchy(&root, "unified");
        root.join("unified")
    });
    Fake {
        _dir: dir,
        layout: Layout::V1 {
            root: root.clone(),
            unified,
        },
        root,
    }
}

/// A pure v2 host offering cpu, cpuset, io, memory and pids, none delegated yet.
pub(super) fn v2() -> Fake {
    let (dir, root) = tempdir();
    fs::write(root.join("cgroup.procs"), "").unwrap();
    fs::write(
        root.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    Fake {
        _dir: dir,
        layout: Layout::V2 { root: root.clone() },
        root,
    }
}
