//! Prerequisite checks. A missing prerequisite fails the test and names the set-up command.

use std::path::Path;

/// The command that installs everything the tests need.
pub const SETUP: &str = "bash deploy/install.sh";

/// Fails unless we are root and the host tools the runtime tests need are installed.
pub fn require_runtime() {
    // SAFETY-free check: geteuid has no preconditions.
    if !nix_is_root() {
        panic!("these tests need root (they create namespaces, mounts and cgroups); run them as root after `{SETUP}`");
    }
    for tool in ["/bin/busybox"] {
        if !Path::new(tool).exists() {
            panic!("{tool} is missing; run `{SETUP}`");
        }
    }
}

/// Fails unless CRIU >= 4.1 is installed where the runtime looks for it.
pub fn require_criu() {
    require_runtime();
    if !Path::new("/usr/local/sbin/criu").exists() && std::env::var_os("MIGRATE_CRIU").is_none() {
        panic!("CRIU >= 4.1 is missing (/usr/local/sbin/criu); run `{SETUP}`");
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Fails unless Podman is installed.
pub fn require_podman() {
    require_criu();
    if !Path::new("/usr/bin/podman").exists() {
        panic!("podman is missing; run `{SETUP}`");
    }
}
