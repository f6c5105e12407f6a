//! Which cgroup filesystems a host has and where: [`Layout`] (v1 or hybrid, or
//! pure v2), read from the mount table, and the v1 hierarchies under its root.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// Where the host's cgroup filesystems are mounted.
///
/// The paths are plain parameters, so tests can point them at a temporary
/// directory that imitates either layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1: one directory per hierarchy under `root` (`/sys/fs/cgroup/memory`,
    /// `/sys/fs/cgroup/systemd`, ...). `unified` is the cgroup2 mount of a hybrid
    /// host (`/sys/fs/cgroup/unified`): no controllers there, membership only.
    V1 {
        /// The directory holding the v1 hierarchy mounts.
        root: PathBuf,
        /// The cgroup2 mount of a hybrid host.
        unified: Option<PathBuf>,
    },
    /// Pure cgroup v2: one tree at `root` (`/sys/fs/cgroup`).
    V2 {
        /// The cgroup2 mount.
        root: PathBuf,
    },
}

/// One cgroup v1 hierarchy: a mount directory and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The mount directory, symlinks resolved (`/sys/fs/cgroup/cpu,cpuacct`).
    pub dir: PathBuf,
    /// Controllers named by the directory (`["cpu", "cpuacct"]`); a named hierarchy
    /// such as `systemd` carries its name.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// Whether this hierarchy carries `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Mount options of a v1 cgroup mount that are not controllers.
const NON_CONTROLLER_OPTIONS: [&str; 8] = [
    "rw",
    "ro",
    "none",
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// One cgroup mount from the mount table.
struct CgroupMount {
    mount_point: PathBuf,
    v2: bool,
    /// Real controllers (v1 only; `name=` hierarchies have none).
    controllers: Vec<String>,
}

impl Layout {
    /// Detects the running host's layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Layout, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let mountinfo = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Layout::detect_from(&mountinfo)
    }

    /// Detects the layout from the text of a `mountinfo` file.
    ///
    /// v1 (or hybrid) when some v1 mount carries a real controller: `root` is the
    /// directory holding those mounts, `unified` a cgroup2 mount if there is one.
    /// Otherwise v2 at the cgroup2 mount (`/sys/fs/cgroup` preferred).
    pub fn detect_from(mountinfo: &str) -> Result<Layout, CgroupError> {
        let mounts: Vec<CgroupMount> = mountinfo.lines().filter_map(parse_line).collect();
        let v1_root = mounts
            .iter()
            .find(|m| !m.v2 && !m.controllers.is_empty())
            .and_then(|m| m.mount_point.parent().map(Path::to_path_buf));
        let v2_mounts: Vec<&PathBuf> = mounts
            .iter()
            .filter(|m| m.v2)
            .map(|m| &m.mount_point)
            .collect();
        if let Some(root) = v1_root {
            let unified = v2_mounts
                .iter()
                .find(|p| p.starts_with(&root))
                .or_else(|| v2_mounts.first())
                .map(|p| p.to_path_buf());
            return Ok(Layout::V1 { root, unified });
        }
        let root = v2_mounts
            .iter()
            .find(|p| p.as_path() == Path::new("/sys/fs/cgroup"))
            .or_else(|| v2_mounts.first())
            .ok_or(CgroupError::NoCgroupMount)?;
        Ok(Layout::V2 {
            root: root.to_path_buf(),
        })
    }

    /// Whether this is a pure cgroup v2 host.
    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// The cgroup2 tree: the whole layout on v2, the `unified` mount on a hybrid host.
    pub fn unified(&self) -> Option<&Path> {
        match self {
            Layout::V1 { unified, .. } => unified.as_deref(),
            Layout::V2 { root } => Some(root),
        }
    }

    /// The v1 hierarchies: each directory under `root` that holds a `cgroup.procs`
    /// (symlinks such as `cpu -> cpu,cpuacct` resolved and counted once), except
    /// the `unified` mount; sorted by directory. Empty on v2.
    ///
    /// Controllers come from the directory name, the way systemd and cgroupfs-mount
    /// name their mount points.
    pub fn v1_hierarchies(&self) -> Result<Vec<Hierarchy>, CgroupError> {
        let Layout::V1 { root, unified } = self else {
            return Ok(Vec::new());
        };
        let unified = unified.as_deref().and_then(|u| fs::canonicalize(u).ok());
        let entries = fs::read_dir(root).map_err(|source| CgroupError::Read {
            path: root.clone(),
            source,
        })?;
        let mut dirs = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Read {
                path: root.clone(),
                source,
            })?;
            let Ok(dir) = fs::canonicalize(entry.path()) else {
                continue; // a dangling symlink is no hierarchy
            };
            if dir.join("cgroup.procs").is_file() && Some(&dir) != unified.as_ref() {
                dirs.insert(dir);
            }
        }
        Ok(dirs.into_iter().map(hierarchy_of).collect())
    }
}

fn hierarchy_of(dir: PathBuf) -> Hierarchy {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let controllers = name.split(',').map(str::to_string).collect();
    Hierarchy { dir, controllers }
}

/// Parses one mountinfo line (proc(5)); `None` unless it is a cgroup mount.
fn parse_line(line: &str) -> Option<CgroupMount> {
    let (mount_fields, fs_fields) = line.split_once(" - ")?;
    let mount_point = mount_fields.split(' ').nth(4)?;
    let mut fs_fields = fs_fields.split(' ');
    let fs_type = fs_fields.next()?;
    let super_options = fs_fields.nth(1).unwrap_or("");
    let v2 = match fs_type {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    let controllers = if v2 {
        Vec::new()
    } else {
        super_options
            .split(',')
            .filter(|o| !o.contains('=') && !NON_CONTROLLER_OPTIONS.contains(o))
            .map(str::to_string)
            .collect()
    };
    Some(CgroupMount {
        mount_point: PathBuf::from(unescape(mount_point)),
        v2,
        controllers,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        let code = escape
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test host's table: v1 controllers, a named systemd hierarchy, cgroup2 at `unified`.
    const HYBRID: &str = "\
22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd distribution in unified mode.
    const PURE_V2: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// An older systemd host: co-mounted controllers, no cgroup2.
    const LEGACY_V1: &str = "\
25 20 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn detects_this_hosts_hybrid_layout() {
        assert_eq!(
            Layout::detect_from(HYBRID).unwrap(),
            Layout::V1 {
                root: "/sys/fs/cgroup".into(),
                unified: Some("/sys/fs/cgroup/unified".into()),
            }
        );
    }

    #[test]
    fn detects_pure_v2() {
        let layout = Layout::detect_from(PURE_V2).unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert!(layout.is_v2());
        assert_eq!(layout.unified(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn detects_legacy_v1_without_unified() {
        let layout = Layout::detect_from(LEGACY_V1).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                root: "/sys/fs/cgroup".into(),
                unified: None,
            }
        );
        assert!(!layout.is_v2());
    }

    #[test]
    fn a_named_v1_hierarchy_alone_does_not_make_a_v1_host() {
        let table = "\
28 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
40 24 0:37 / /run/compat/systemd rw - cgroup cgroup rw,name=systemd
";
        assert!(Layout::detect_from(table).unwrap().is_v2());
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let err = Layout::detect_from("22 27 0:21 / /sys rw - sysfs sysfs rw\n").unwrap_err();
        assert!(matches!(err, CgroupError::NoCgroupMount));
        assert_eq!(err.to_string(), "no cgroup filesystem is mounted");
    }

    #[test]
    fn mount_points_are_unescaped() {
        let table = "30 1 0:26 / /tmp/cg\\040root/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            Layout::detect_from(table).unwrap(),
            Layout::V1 {
                root: "/tmp/cg root".into(),
                unified: None
            }
        );
    }

    #[test]
    fn v1_hierarchies_resolve_symlinks_and_skip_unified_and_non_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for dir in [
            "cpu,cpuacct",
            "memory",
            "systemd",
            "unified",
            "not-a-cgroup",
        ] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        for dir in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            fs::write(root.join(dir).join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
        let layout = Layout::V1 {
            root: root.to_path_buf(),
            unified: Some(root.join("unified")),
        };
        let found = layout.v1_hierarchies().unwrap();
        let names: Vec<Vec<String>> = found.iter().map(|h| h.controllers.clone()).collect();
        assert_eq!(
            names,
            vec![
                vec!["cpu".to_string(), "cpuacct".to_string()],
                vec!["memory".to_string()],
                vec!["systemd".to_string()],
            ]
        );
        assert!(found[0].has("cpuacct"));
    }
}
