//! OCI bundles built from the host's static busybox, with a spec close to `runc spec`'s.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// A bundle in a temp dir: `rootfs/` with busybox and its applets, and a spec to edit.
pub struct TestBundle {
    dir: tempfile::TempDir,
    /// The spec, written to `config.json` by [`TestBundle::write`].
    pub spec: Value,
}

impl TestBundle {
    /// A busybox bundle running `args`, with pid, mount, ipc, uts, network and cgroup
    /// namespaces, the usual mounts, masked and read-only paths, and runc's default capabilities.
    pub fn busybox(args: &[&str]) -> TestBundle {
        crate::prereq::require_runtime();
        let dir = tempfile::Builder::new()
            .prefix("migrate-bundle-")
            .tempdir()
            .expect("create bundle dir");
        let rootfs = dir.path().join("rootfs");
        build_busybox_rootfs(&rootfs);
        let spec = default_spec(args);
        let bundle = TestBundle { dir, spec };
        bundle.write();
        bundle
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle's rootfs.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Changes the spec and rewrites `config.json`.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.spec);
        self.write();
        self
    }

    /// Writes `config.json`.
    pub fn write(&self) {
        let text = serde_json::to_string_pretty(&self.spec).expect("spec serializes");
        fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }

    /// Copies a host file into the rootfs at the same path.
    pub fn add_file(&self, host: &Path, inside: &str) {
        let dest = self.rootfs().join(inside.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("has parent")).expect("mkdir");
        fs::copy(host, &dest)
            .unwrap_or_else(|e| panic!("copy {} into bundle: {e}", host.display()));
    }
}

fn build_busybox_rootfs(rootfs: &Path) {
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir in rootfs");
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    fs::write(rootfs.join("etc/hostname"), "bundle\n").expect("hostname");
}

/// runc's default capability set.
pub const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn default_spec(args: &[&str]) -> Value {
    let caps = json!(DEFAULT_CAPS);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Compiles `tests/support/<name>.c` statically (once per test binary) and returns the binary.
pub fn static_program(name: &str) -> PathBuf {
    use std::sync::Mutex;
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-programs");
    fs::create_dir_all(&dir).expect("create target/test-programs");
    let out = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("gcc is missing ({e}); run `{}`", crate::prereq::SETUP));
    assert!(
        status.success(),
        "compiling {} failed; run `{}`",
        src.display(),
        crate::prereq::SETUP
    );
    fs::rename(&tmp, &out).expect("install test program");
    built.push((name.to_string(), out.clone()));
    out
}
