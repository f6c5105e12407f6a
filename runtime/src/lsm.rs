//! AppArmor and SELinux settings of a spec: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`.
//!
//! The runtime applies neither. On a host where the security module is not enabled such a
//! setting could not take effect under any runtime, so, as crun does, it is ignored with a
//! warning. On a host where the module is enabled it is refused: running the container
//! unconfined there would silently drop the confinement the spec asked for.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// Which security modules a host has enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// AppArmor is enabled (`/sys/module/apparmor/parameters/enabled` says `Y`).
    pub apparmor: bool,
    /// SELinux is enabled (selinuxfs is mounted).
    pub selinux: bool,
}

impl Host {
    /// The running host's modules.
    pub fn detect() -> Host {
        Host::detect_under(Path::new("/"))
    }

    /// The modules of a host whose `/sys` and `/proc` are under `root` (a temp dir in tests).
    ///
    /// AppArmor as runc decides it (the module parameter; runc also wants securityfs, which
    /// only says where its files are). SELinux when selinuxfs is mounted, at
    /// `/sys/fs/selinux` or anywhere in the mount table, which is what libselinux looks for.
    pub fn detect_under(root: &Path) -> Host {
        let at = |p: &str| -> PathBuf { root.join(p) };
        let apparmor = std::fs::read_to_string(at("sys/module/apparmor/parameters/enabled"))
            .is_ok_and(|v| v.starts_with('Y'));
        let selinux = at("sys/fs/selinux/enforce").exists()
            || std::fs::read_to_string(at("proc/self/mountinfo"))
                .is_ok_and(|m| m.lines().any(|l| l.contains(" - selinuxfs ")));
        Host { apparmor, selinux }
    }
}

/// Checks the spec's AppArmor and SELinux settings against `host`: the warnings to print (one
/// line each, without the `warning:` prefix), or why the spec is refused.
pub fn check(spec: &Spec, host: &Host) -> Result<Vec<String>, String> {
    let process = spec.process().as_ref();
    let settings = [
        (
            "process.apparmorProfile",
            "AppArmor",
            host.apparmor,
            process.and_then(|p| p.apparmor_profile().clone()),
        ),
        (
            "process.selinuxLabel",
            "SELinux",
            host.selinux,
            process.and_then(|p| p.selinux_label().clone()),
        ),
        (
            "linux.mountLabel",
            "SELinux",
            host.selinux,
            spec.linux().as_ref().and_then(|l| l.mount_label().clone()),
        ),
    ];
    let mut warnings = Vec::new();
    for (setting, module, enabled, value) in settings {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        if enabled {
            return Err(format!(
                "{setting} {value:?} cannot be applied: {module} is enabled on this host and this runtime does not apply {module} settings"
            ));
        }
        warnings.push(format!(
            "{setting} {value:?} is ignored: {module} is not enabled on this host"
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {}
        });
        if let Some(p) = v.get("process") {
            for (k, val) in p.as_object().unwrap() {
                base["process"][k] = val.clone();
            }
        }
        if let Some(l) = v.get("linux") {
            base["linux"] = l.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn nothing_asked_nothing_said() {
        let s = spec(serde_json::json!({"process": {"apparmorProfile": ""}}));
        let all = Host {
            apparmor: true,
            selinux: true,
        };
        assert_eq!(check(&s, &all), Ok(vec![]));
        assert_eq!(check(&s, &Host::default()), Ok(vec![]));
    }

    #[test]
    fn without_the_module_each_setting_warns_once() {
        let s = spec(serde_json::json!({
            "process": {"apparmorProfile": "acme_default", "selinuxLabel": "system_u:system_r:container_t:s0"},
            "linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}
        }));
        assert_eq!(
            check(&s, &Host::default()).unwrap(),
            [
                "process.apparmorProfile \"acme_default\" is ignored: AppArmor is not enabled on this host",
                "process.selinuxLabel \"system_u:system_r:container_t:s0\" is ignored: SELinux is not enabled on this host",
                "linux.mountLabel \"system_u:object_r:container_file_t:s0\" is ignored: SELinux is not enabled on this host",
            ]
        );
    }

    #[test]
    fn with_the_module_the_setting_is_refused() {
        let s = spec(serde_json::json!({"process": {"apparmorProfile": "acme_default"}}));
        let host = Host {
            apparmor: true,
            selinux: false,
        };
        assert_eq!(
            check(&s, &host).unwrap_err(),
            "process.apparmorProfile \"acme_default\" cannot be applied: AppArmor is enabled on this host and this runtime does not apply AppArmor settings"
        );
        let s = spec(serde_json::json!({"linux": {"mountLabel": "x"}}));
        let host = Host {
            apparmor: false,
            selinux: true,
        };
        assert!(check(&s, &host)
            .unwrap_err()
            .starts_with("linux.mountLabel \"x\" cannot be applied: SELinux is enabled"));
    }

    #[test]
    fn detection_reads_the_module_parameter_and_selinuxfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(Host::detect_under(root), Host::default());
        let param = root.join("sys/module/apparmor/parameters");
        std::fs::create_dir_all(&param).unwrap();
        std::fs::write(param.join("enabled"), "N\n").unwrap();
        assert!(!Host::detect_under(root).apparmor);
        std::fs::write(param.join("enabled"), "Y\n").unwrap();
        assert!(Host::detect_under(root).apparmor);
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::write(
            root.join("proc/self/mountinfo"),
            "30 25 0:27 / /sys/fs/selinux rw,relatime shared:6 - selinuxfs selinuxfs rw\n",
        )
        .unwrap();
        assert!(Host::detect_under(root).selinux);
    }
}
