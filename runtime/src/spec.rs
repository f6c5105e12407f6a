//! Loading an OCI bundle and refusing specs the runtime cannot honour, before anything is created.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A bundle whose spec passed validation.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// Absolute path of the bundle's root filesystem.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads and validates `<dir>/config.json`.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let bad = |reason: String| Error::InvalidBundle {
            bundle: dir.to_path_buf(),
            reason,
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| bad(format!("cannot open directory: {e}")))?;
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(bad("config.json is missing".into()));
        }
        let text =
            std::fs::read(&config).map_err(|e| bad(format!("cannot read config.json: {e}")))?;
        let spec: Spec =
            serde_json::from_slice(&text).map_err(|e| bad(format!("config.json: {e}")))?;
        Bundle::from_spec(&dir, spec)
    }

    /// Validates an already parsed spec for the bundle at `dir`.
    pub fn from_spec(dir: &Path, spec: Spec) -> Result<Bundle> {
        let bad = |reason: String| Error::InvalidBundle {
            bundle: dir.to_path_buf(),
            reason,
        };
        validate(&spec).map_err(bad)?;
        // AppArmor and SELinux are not applied: a warning without the module, refused with it.
        for warning in crate::lsm::check(&spec, &crate::lsm::Host::detect()).map_err(bad)? {
            eprintln!("warning: {warning}");
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| bad("root is missing".into()))?;
        let rootfs = dir.join(root.path());
        if !rootfs.is_dir() {
            return Err(bad(format!(
                "root filesystem {} does not exist or is not a directory",
                rootfs.display()
            )));
        }
        check_overlay_safe(&rootfs).map_err(bad)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            spec,
            rootfs,
        })
    }
}

/// Paths that go into overlayfs options may not hold its separators.
pub fn check_overlay_safe(path: &Path) -> std::result::Result<(), String> {
    let s = path.to_string_lossy();
    if s.contains([',', ':', '\\']) {
        return Err(format!(
            "path {s} contains ',' ':' or '\\', which overlayfs cannot take"
        ));
    }
    Ok(())
}

/// Every rule a spec must satisfy; the error is the reason.
pub fn validate(spec: &Spec) -> std::result::Result<(), String> {
    let version = spec.version();
    let major = version.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(format!(
            "unsupported OCI version {version:?} (this runtime supports 1.x)"
        ));
    }
    let process = spec.process().as_ref().ok_or("process is missing")?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err("process.args is empty".into()),
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        ));
    }
    if spec.root().is_none() {
        return Err("root is missing".into());
    }
    let linux = spec.linux().as_ref().ok_or("linux section is missing")?;
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for ns in &namespaces {
        let typ = ns.typ();
        if !seen.insert(typ) {
            return Err(format!("namespace {typ} is listed twice"));
        }
        if let Some(path) = ns.path() {
            if !path.exists() {
                return Err(format!(
                    "namespace {typ} path {} does not exist",
                    path.display()
                ));
            }
        }
    }
    let has_ns = |t| namespaces.iter().any(|ns| ns.typ() == t);
    validate_user_namespace(spec, linux)?;
    // Without a mount namespace init stays in the runtime's (the host's) and enters its root
    // with chroot; a user namespace could not mount anything there.
    if has_ns(LinuxNamespaceType::User) && !has_ns(LinuxNamespaceType::Mount) {
        return Err("a user namespace needs a mount namespace too".into());
    }
    if spec.hostname().is_some() && !has_ns(LinuxNamespaceType::Uts) {
        return Err("hostname is set but there is no uts namespace".into());
    }
    validate_sysctl_namespaces(linux, &namespaces)?;
    for mount in spec.mounts().iter().flatten() {
        let dest = mount.destination();
        let name = dest.display();
        if !dest.is_absolute() {
            return Err(format!("mount destination {name} is not absolute"));
        }
        if dest.components().any(|c| c == Component::ParentDir) {
            return Err(format!("mount destination {name} contains '..'"));
        }
        let options = mount.options().clone().unwrap_or_default();
        let is_bind = options.iter().any(|o| o == "bind" || o == "rbind")
            || mount.typ().as_deref() == Some("bind");
        if is_bind {
            let source = mount
                .source()
                .as_ref()
                .ok_or_else(|| format!("bind mount {name} has no source"))?;
            if !source.is_absolute() || !source.exists() {
                return Err(format!(
                    "bind mount {name}: source {} does not exist",
                    source.display()
                ));
            }
        } else if mount.typ().as_deref().unwrap_or("").is_empty() {
            return Err(format!("mount {name} has no type"));
        }
        if let Some(bad) = options.iter().find(|o| o.contains('\0')) {
            return Err(format!("mount {name} has an invalid option {bad:?}"));
        }
    }
    // The seccomp profile must compile; the filter is built again where it is installed.
    if let Some(seccomp) = linux.seccomp() {
        crate::seccomp::compile(seccomp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A new user namespace needs both mappings, and they must map the container's root (init
/// becomes uid and gid 0 there before it builds the rootfs) and the process's user and groups.
/// A namespace joined by path keeps its own mappings; mappings without a user namespace are
/// refused, as runc does.
fn validate_user_namespace(spec: &Spec, linux: &Linux) -> std::result::Result<(), String> {
    let user_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|ns| ns.typ() == LinuxNamespaceType::User);
    let uids = linux.uid_mappings().as_deref().unwrap_or(&[]);
    let gids = linux.gid_mappings().as_deref().unwrap_or(&[]);
    let Some(user_ns) = user_ns else {
        if !uids.is_empty() || !gids.is_empty() {
            return Err("uidMappings or gidMappings are set but there is no user namespace".into());
        }
        return Ok(());
    };
    if user_ns.path().is_some() {
        if !uids.is_empty() || !gids.is_empty() {
            return Err(
                "uidMappings and gidMappings cannot be set for a user namespace joined by path (it has its own)"
                    .into(),
            );
        }
        return Ok(());
    }
    for (name, map) in [("uidMappings", uids), ("gidMappings", gids)] {
        check_id_mappings(name, map)?;
    }
    let user = spec.process().as_ref().map(|p| p.user());
    let mut wanted_uids = vec![("the container's root", 0)];
    let mut wanted_gids = vec![("the container's root", 0)];
    if let Some(user) = user {
        wanted_uids.push(("process.user.uid", user.uid()));
        wanted_gids.push(("process.user.gid", user.gid()));
        for gid in user.additional_gids().iter().flatten() {
            wanted_gids.push(("process.user.additionalGids", *gid));
        }
    }
    for (name, map, wanted) in [
        ("uidMappings", uids, wanted_uids),
        ("gidMappings", gids, wanted_gids),
    ] {
        for (what, id) in wanted {
            if host_id(map, id).is_none() {
                return Err(format!("{name} do not map {id} ({what})"));
            }
        }
    }
    Ok(())
}

/// The kernel's rules for one map, checked up front for a clear message: at least one line,
/// at most 340, no empty range, no overflow, no overlap on either side.
fn check_id_mappings(name: &str, map: &[LinuxIdMapping]) -> std::result::Result<(), String> {
    if map.is_empty() {
        return Err(format!("a new user namespace needs {name}"));
    }
    if map.len() > MAX_ID_MAPPINGS {
        return Err(format!(
            "{name} has {} lines, the kernel takes at most {MAX_ID_MAPPINGS}",
            map.len()
        ));
    }
    let range = |start: u32, size: u32| (u64::from(start), u64::from(start) + u64::from(size));
    for (i, m) in map.iter().enumerate() {
        if m.size() == 0 {
            return Err(format!("{name}[{i}] has size 0"));
        }
        for (side, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            if range(start, m.size()).1 > 1 << 32 {
                return Err(format!(
                    "{name}[{i}]: {side} {start} + size {} overflows",
                    m.size()
                ));
            }
        }
        for (j, other) in map.iter().enumerate().take(i) {
            let overlap = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
            if overlap(
                range(m.container_id(), m.size()),
                range(other.container_id(), other.size()),
            ) || overlap(
                range(m.host_id(), m.size()),
                range(other.host_id(), other.size()),
            ) {
                return Err(format!("{name}[{i}] overlaps {name}[{j}]"));
            }
        }
    }
    Ok(())
}

/// Most lines a uid_map or gid_map takes (since Linux 4.15).
const MAX_ID_MAPPINGS: usize = 340;

/// The host id that `id` in the container maps to.
pub fn host_id(map: &[LinuxIdMapping], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id())?;
        (offset < m.size()).then(|| m.host_id() + offset)
    })
}

/// The text of `/proc/<pid>/uid_map` or `gid_map` for `map`: one `container host size` line
/// each.
pub fn id_map_text(map: &[LinuxIdMapping]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Host uid and gid of the container's root, when the spec asks for a new user namespace.
pub fn mapped_root(spec: &Spec) -> Option<(u32, u32)> {
    let linux = spec.linux().as_ref()?;
    let new_user_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    if !new_user_ns {
        return None;
    }
    Some((
        host_id(linux.uid_mappings().as_deref()?, 0)?,
        host_id(linux.gid_mappings().as_deref()?, 0)?,
    ))
}

/// Sysctls change the namespace of whoever writes them: one that belongs to a namespace the
/// container does not have (or joins by path) would change the host's value. The same classes
/// as runc's.
fn validate_sysctl_namespaces(
    linux: &Linux,
    namespaces: &[LinuxNamespace],
) -> std::result::Result<(), String> {
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        let needs = if key.starts_with("net.") {
            Some((LinuxNamespaceType::Network, "network"))
        } else if key.starts_with("fs.mqueue.")
            || [
                "kernel.msgmax",
                "kernel.msgmnb",
                "kernel.msgmni",
                "kernel.sem",
                "kernel.shmall",
                "kernel.shmmax",
                "kernel.shmmni",
                "kernel.shm_rmid_forced",
            ]
            .contains(&key.as_str())
        {
            Some((LinuxNamespaceType::Ipc, "ipc"))
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some((LinuxNamespaceType::Uts, "uts"))
        } else {
            None
        };
        if let Some((typ, name)) = needs {
            if !namespaces.iter().any(|ns| ns.typ() == typ) {
                return Err(format!(
                    "sysctl {key} needs a {name} namespace (it would change the host's)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(patch: impl FnOnce(&mut serde_json::Value)) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        });
        patch(&mut v);
        serde_json::from_value(v).expect("test spec parses")
    }

    #[test]
    fn good_spec_passes() {
        assert_eq!(validate(&spec_json(|_| {})), Ok(()));
    }

    #[test]
    fn rejects_bad_specs() {
        type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Patch, &str)> = vec![
            (
                Box::new(|v| v["ociVersion"] = "2.0.0".into()),
                "unsupported OCI version",
            ),
            (
                Box::new(|v| v["process"]["args"] = serde_json::json!([])),
                "process.args is empty",
            ),
            (
                Box::new(|v| v["process"]["cwd"] = "rel".into()),
                "not absolute",
            ),
            (
                Box::new(|v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type": "mount"}, {"type": "user"}])
                }),
                "a new user namespace needs uidMappings",
            ),
            (
                Box::new(|v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type": "pid"}, {"type": "user"}]);
                    v["linux"]["uidMappings"] = map(0, 100000, 65536);
                    v["linux"]["gidMappings"] = map(0, 100000, 65536);
                }),
                "a user namespace needs a mount namespace too",
            ),
            (
                Box::new(|v| {
                    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"})
                }),
                "sysctl net.ipv4.ip_forward needs a network namespace",
            ),
            (
                Box::new(|v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type": "mount"}, {"type": "mount"}])
                }),
                "listed twice",
            ),
            (
                Box::new(
                    |v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "network", "path": "/nonexistent/ns"}]),
                ),
                "does not exist",
            ),
            (Box::new(|v| v["hostname"] = "x".into()), "no uts namespace"),
            (
                Box::new(|v| {
                    v["mounts"] = serde_json::json!([{"destination": "tmp", "type": "tmpfs"}])
                }),
                "not absolute",
            ),
            (
                Box::new(|v| {
                    v["mounts"] = serde_json::json!([{"destination": "/a/../b", "type": "tmpfs"}])
                }),
                "contains '..'",
            ),
            (
                Box::new(
                    |v| v["mounts"] = serde_json::json!([{"destination": "/data", "source": "/nonexistent-src", "options": ["rbind"]}]),
                ),
                "does not exist",
            ),
            (
                Box::new(|v| v["mounts"] = serde_json::json!([{"destination": "/x"}])),
                "has no type",
            ),
        ];
        for (patch, want) in cases {
            let err = validate(&spec_json(patch)).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    fn map(container: u32, host: u32, size: u32) -> serde_json::Value {
        serde_json::json!([{"containerID": container, "hostID": host, "size": size}])
    }

    fn with_user_ns(uids: serde_json::Value, gids: serde_json::Value) -> Spec {
        spec_json(|v| {
            v["linux"]["namespaces"] =
                serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}]);
            v["linux"]["uidMappings"] = uids;
            v["linux"]["gidMappings"] = gids;
        })
    }

    #[test]
    fn user_namespace_needs_sound_mappings() {
        let good = with_user_ns(map(0, 100000, 65536), map(0, 100000, 65536));
        assert_eq!(validate(&good), Ok(()));
        assert_eq!(mapped_root(&good), Some((100000, 100000)));
        let cases = [
            (
                serde_json::Value::Null,
                map(0, 100000, 65536),
                "needs uidMappings",
            ),
            (
                map(0, 100000, 65536),
                serde_json::json!([]),
                "needs gidMappings",
            ),
            (
                map(1, 100000, 65536),
                map(0, 100000, 65536),
                "do not map 0 (the container's root)",
            ),
            (
                map(0, 100000, 0),
                map(0, 100000, 1),
                "uidMappings[0] has size 0",
            ),
            (
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 10}, {"containerID": 5, "hostID": 200000, "size": 10}]),
                map(0, 100000, 1),
                "uidMappings[1] overlaps uidMappings[0]",
            ),
            (
                map(0, 100000, 1),
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 10}, {"containerID": 20, "hostID": 100005, "size": 10}]),
                "gidMappings[1] overlaps gidMappings[0]",
            ),
            (map(0, u32::MAX, 2), map(0, 1, 1), "overflows"),
        ];
        for (uids, gids, want) in cases {
            let err = validate(&with_user_ns(uids, gids)).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        // The process's user must be mapped too.
        let mut spec = with_user_ns(map(0, 100000, 1), map(0, 100000, 1));
        let mut process = spec.process().clone().unwrap();
        let mut user = process.user().clone();
        user.set_uid(1000);
        process.set_user(user);
        spec.set_process(Some(process));
        let err = validate(&spec).unwrap_err();
        assert!(err.contains("do not map 1000 (process.user.uid)"), "{err}");
    }

    #[test]
    fn mappings_need_a_new_user_namespace() {
        let err = validate(&spec_json(|v| v["linux"]["uidMappings"] = map(0, 1, 1))).unwrap_err();
        assert!(err.contains("there is no user namespace"), "{err}");
        let joined = spec_json(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user", "path": "/proc/self/ns/user"}]);
        });
        assert_eq!(validate(&joined), Ok(()));
        assert_eq!(mapped_root(&joined), None);
        let err = validate(&spec_json(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user", "path": "/proc/self/ns/user"}]);
            v["linux"]["uidMappings"] = map(0, 1, 1);
            v["linux"]["gidMappings"] = map(0, 1, 1);
        }))
        .unwrap_err();
        assert!(err.contains("joined by path"), "{err}");
    }

    #[test]
    fn no_mount_namespace_is_accepted() {
        let spec = spec_json(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]));
        assert_eq!(validate(&spec), Ok(()));
    }

    #[test]
    fn id_maps_as_the_kernel_reads_them() {
        let spec = with_user_ns(
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 1}, {"containerID": 1, "hostID": 200001, "size": 999}]),
            map(0, 100000, 1),
        );
        let uids = spec
            .linux()
            .as_ref()
            .unwrap()
            .uid_mappings()
            .clone()
            .unwrap();
        assert_eq!(id_map_text(&uids), "0 100000 1\n1 200001 999\n");
        assert_eq!(host_id(&uids, 0), Some(100000));
        assert_eq!(host_id(&uids, 5), Some(200005));
        assert_eq!(host_id(&uids, 1000), None);
    }

    #[test]
    fn unknown_namespace_type_fails_to_parse() {
        let v = serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "bogus"}]}
        });
        assert!(serde_json::from_value::<Spec>(v).is_err());
    }

    #[test]
    fn bundle_load_names_missing_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json is missing"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        let spec = spec_json(|_| {});
        spec.save(dir.path().join("config.json")).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("root filesystem"), "{err}");
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        assert!(Bundle::load(dir.path()).is_ok());
        let err = Bundle::load(Path::new("/nonexistent/bundle"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open directory"), "{err}");
    }
}
