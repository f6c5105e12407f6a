//! Loading an OCI bundle and refusing specs the runtime cannot honour, before anything is created.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

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
        if typ == LinuxNamespaceType::User {
            return Err("user namespaces are not supported".into());
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
    let mount_ns = namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Mount);
    if !mount_ns {
        return Err("a new mount namespace is required".into());
    }
    let has_ns = |t| namespaces.iter().any(|ns| ns.typ() == t);
    if spec.hostname().is_some() && !has_ns(LinuxNamespaceType::Uts) {
        return Err("hostname is set but there is no uts namespace".into());
    }
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
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}])),
                "a new mount namespace is required",
            ),
            (
                Box::new(|v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type": "mount"}, {"type": "user"}])
                }),
                "user namespaces are not supported",
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
