//! Podman drives `migrate-runc` as its OCI runtime: a container from an image imported from a
//! busybox rootfs tarball runs, is checkpointed with `podman container checkpoint` and
//! restored with `podman container restore`, and its counter goes on from where it was.

use std::process::{Command, Output};
use std::time::Duration;

use migrate_tests::rt::wait_for;

const T: Duration = Duration::from_secs(60);

struct Podman {
    runtime: String,
    image: String,
    name: String,
    /// Podman's cgroup parent did not exist before the test: remove it (empty) afterwards.
    remove_parent: bool,
    /// Nor did migrate-runc's default state root (Podman passes no --root).
    remove_state_root: bool,
}

/// migrate-runc's default `--root`.
const STATE_ROOT: &str = "/run/migrate-runc";

/// Where Podman (with cgroupfs) puts its containers' cgroups, in every v1 hierarchy.
fn libpod_parents() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("libpod_parent"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `Seccomp:` lines of the container's init and of an exec'd process.
    fn seccomp_modes(&self) -> Vec<String> {
        let out = self.run(&[
            "exec",
            &self.name,
            "grep",
            "-h",
            "Seccomp:",
            "/proc/1/status",
            "/proc/self/status",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout.lines().map(str::to_string).collect()
    }

    fn counter(&self) -> Option<u64> {
        let out = self.run(&["exec", &self.name, "cat", "/tmp/n"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn status(&self) -> String {
        self.ok(&["inspect", "--format", "{{.State.Status}}", &self.name])
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--force", &self.name]);
        let _ = self.run(&["rmi", "--force", &self.image]);
        if self.remove_state_root {
            let _ = std::fs::remove_dir(STATE_ROOT);
        }
        if self.remove_parent {
            // Podman leaves conmon's (empty) cgroup in it.
            for p in libpod_parents() {
                let _ = std::fs::remove_dir(p.join("conmon"));
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}

#[test]
fn podman_runs_checkpoints_and_restores_through_migrate_runc() {
    migrate_tests::prereq::require_podman();
    let tag = format!("migrate-test-{}", std::process::id());
    let p = Podman {
        runtime: migrate_tests::agent::binary("migrate-runc")
            .display()
            .to_string(),
        image: format!("localhost/{tag}:1"),
        name: tag.clone(),
        remove_parent: libpod_parents().is_empty(),
        remove_state_root: !std::path::Path::new(STATE_ROOT).exists(),
    };
    // An image from a busybox rootfs tarball (no registry).
    let bundle = migrate_tests::TestBundle::busybox(&["true"]);
    let tar = bundle.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(bundle.rootfs())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    p.ok(&["import", &tar.display().to_string(), &p.image]);

    // This VM's root lacks CAP_SYS_RESOURCE, and Podman's default limits (nofile and nproc
    // 1048576) are above the hard limits here, which no runtime could set (runc neither).
    p.ok(&[
        "run",
        "--detach",
        "--name",
        &p.name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        &p.image,
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done",
    ]);
    assert_eq!(p.status(), "running");
    wait_for("the counter", T, || p.counter().filter(|n| *n > 10));
    // Podman's default seccomp profile is applied to init and to exec'd processes.
    assert_eq!(p.seccomp_modes(), ["Seccomp:\t2", "Seccomp:\t2"]);
    // `podman exec` gets the process's exit code: conmon reaps it (migrate-runc's helper
    // leaves it to conmon, as runc does).
    for code in [0, 3] {
        let out = p.run(&["exec", &p.name, "sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.status.code(), Some(code), "{out:?}");
    }

    p.ok(&["container", "checkpoint", &p.name]);
    assert_eq!(p.status(), "exited");
    p.ok(&["container", "restore", &p.name]);
    assert_eq!(p.status(), "running");
    let restored = wait_for("the restored counter", T, || p.counter());
    assert!(restored > 10, "the counter started over: {restored}");
    wait_for("the counter to go on", T, || {
        p.counter().filter(|n| *n > restored)
    });
    // CRIU restored init's filter.
    assert_eq!(p.seccomp_modes(), ["Seccomp:\t2", "Seccomp:\t2"]);
    p.ok(&["rm", "--force", &p.name]);
}
