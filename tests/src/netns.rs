//! Network namespaces made with `ip netns`, deleted on drop.

use std::path::PathBuf;
use std::process::Command;

/// A named network namespace at `/run/netns/<name>`.
pub struct NetNs {
    /// Its name.
    pub name: String,
}

impl NetNs {
    /// Creates `ip netns add <name>`; panics with the command's error otherwise.
    pub fn new(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        run("ip", &["-n", name, "link", "set", "lo", "up"]);
        NetNs { name: name.to_string() }
    }

    /// Path to join it by.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Runs a command and panics with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e} (run `{}`)", crate::prereq::SETUP));
    if !out.status.success() {
        panic!("{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
