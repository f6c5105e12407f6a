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
        NetNs {
            name: name.to_string(),
        }
    }

    /// Path to join it by.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command and panics with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e} (run `{}`)", crate::prereq::SETUP));
    if !out.status.success() {
        panic!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace joined to the host by a veth pair with addresses from 198.18.0.0/15:
/// the host end is `198.18.<n>.1/24`, the namespace end `198.18.<n>.2/24`.
pub struct LinkedNetNs {
    /// The namespace.
    pub ns: NetNs,
    /// Host-side veth name.
    pub host_if: String,
    /// Address of the host end.
    pub host_ip: String,
    /// Address inside the namespace.
    pub ns_ip: String,
}

impl LinkedNetNs {
    /// Creates the namespace and the link; `n` picks the /24 (keep it unique per test).
    pub fn new(name: &str, n: u8) -> LinkedNetNs {
        let ns = NetNs::new(name);
        let host_if = format!("mth{n}");
        let peer = format!("mtn{n}");
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        let host_ip = format!("198.18.{n}.1");
        let ns_ip = format!("198.18.{n}.2");
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ],
        );
        let linked = LinkedNetNs {
            ns,
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        run("ip", &["link", "set", &peer, "netns", &linked.ns.name]);
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        run(
            "ip",
            &[
                "-n",
                &linked.ns.name,
                "addr",
                "add",
                &format!("{ns_ip}/24"),
                "dev",
                &peer,
            ],
        );
        run("ip", &["-n", &linked.ns.name, "link", "set", &peer, "up"]);
        linked
    }
}

impl Drop for LinkedNetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
