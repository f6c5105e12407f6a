//! Container networking with an address that moves with the container.
//!
//! Each container with an address gets its own named network namespace
//! (`/run/netns/mig-<node>-<id>`) holding `lo` and `eth0`, one end of a veth pair whose other end
//! is enslaved to the host's bridge (config `[network] bridge`). `eth0` carries the container's
//! fixed IPv4 address and a MAC derived from the container and its address ([`mac_for`]), so the
//! same container has the same IP and MAC on every host. Hosts between which containers move
//! must share the bridge's L2 segment; there is no default route (same-segment traffic only).
//!
//! After a move, [`announce`] sends gratuitous ARP from inside the container's namespace so the
//! switches and bridges of the segment learn the MAC's new port and neighbours refresh their ARP
//! caches. [`ip_in_use`] and [`arp_owner`] are the preflight's "is this address free here".
//!
//! Everything runs the `ip` command (iproute2) and busybox `arping` as subprocesses, in the
//! agent's own network namespace: the agent must run inside the host namespace that holds the
//! bridge, and in the mount namespace where `/run/netns` is visible to whoever inspects it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// The busybox binary whose `arping` applet announces and probes addresses.
pub const BUSYBOX: &str = "/bin/busybox";
/// The interface name of the container's end of the veth pair, inside its namespace.
pub const CONTAINER_IF: &str = "eth0";
/// Every container namespace name starts with this (then `<node>-`).
pub const NETNS_PREFIX: &str = "mig-";

/// Longest namespace name [`netns_name`] returns (a file name under `/run/netns`).
const MAX_NETNS_NAME: usize = 100;
/// Kernel limit on interface names (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// A container's network identity: what must be the same on every host it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// IPv4 address with prefix length, e.g. `198.18.1.10/16`.
    pub ip: String,
    /// Locally administered unicast MAC, e.g. `02:5a:...` (see [`mac_for`]).
    pub mac: String,
}

impl NetSpec {
    /// The spec for container `id` at `ip` (CIDR), with the MAC derived by [`mac_for`].
    pub fn new(id: &str, ip: &str) -> Result<NetSpec, NetError> {
        parse_ip(ip)?;
        Ok(NetSpec {
            ip: ip.trim().to_string(),
            mac: mac_for(id, ip),
        })
    }

    /// Checks both fields.
    pub fn validate(&self) -> Result<(), NetError> {
        parse_ip(&self.ip)?;
        parse_mac(&self.mac)?;
        Ok(())
    }
}

/// Errors from setting up, tearing down or probing container networks.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address is not a usable IPv4 host address with a prefix length.
    #[error("invalid container address {ip:?}: {reason}")]
    InvalidIp { ip: String, reason: String },
    /// The MAC is malformed, multicast or all zeros.
    #[error("invalid container MAC {mac:?}: {reason}")]
    InvalidMac { mac: String, reason: String },
    /// The bridge name cannot be an interface name.
    #[error("invalid bridge name {name:?}: {reason}")]
    InvalidBridge { name: String, reason: String },
    /// The bridge is not there (in the agent's network namespace).
    #[error("bridge {bridge} does not exist in this network namespace: {stderr}")]
    NoBridge { bridge: String, stderr: String },
    /// A command could not be started at all.
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// Setting up failed, and removing what had been made failed too; `source` is why the
    /// setup failed.
    #[error(
        "setting up network namespace {netns} failed, and so did removing it again: {cleanup}"
    )]
    Rollback {
        netns: String,
        cleanup: String,
        #[source]
        source: Box<NetError>,
    },
}

/// Parses and validates a container address such as `198.18.1.10/16`: a unicast IPv4 host
/// address (not unspecified, `0.x`, loopback, multicast or broadcast; not the network or
/// broadcast address of its subnet for prefixes up to /30) and a prefix length 1..=32.
pub fn parse_ip(cidr: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let bad = |reason: &str| NetError::InvalidIp {
        ip: cidr.to_string(),
        reason: reason.to_string(),
    };
    let (addr, prefix) = cidr
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 198.18.1.10/16"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad("the address is not a dotted-quad IPv4 address"))?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the prefix length is not a number"));
    }
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| bad("the prefix length is not a number"))?;
    if !(1..=32).contains(&prefix) {
        return Err(bad("the prefix length must be 1 to 32"));
    }
    if addr.is_unspecified() || addr.octets()[0] == 0 {
        return Err(bad("0.0.0.0/8 is not a host address"));
    }
    if addr.is_loopback() {
        return Err(bad("loopback addresses stay inside a namespace"));
    }
    if addr.is_multicast() || addr.is_broadcast() || addr.octets()[0] >= 240 {
        return Err(bad("not a unicast address"));
    }
    if prefix <= 30 {
        let host_bits = u32::MAX >> prefix;
        let a = u32::from(addr);
        if a & host_bits == 0 {
            return Err(bad("it is the subnet's network address"));
        }
        if a & host_bits == host_bits {
            return Err(bad("it is the subnet's broadcast address"));
        }
    }
    Ok((addr, prefix))
}

/// Parses a MAC (`aa:bb:cc:dd:ee:ff`, either case) and returns it in lowercase. Refuses
/// multicast and all-zero addresses.
pub fn parse_mac(mac: &str) -> Result<String, NetError> {
    let bad = |reason: &str| NetError::InvalidMac {
        mac: mac.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad("expected six hex octets separated by ':'"));
    }
    let octets: Vec<u8> = parts
        .iter()
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_default())
        .collect();
    if octets[0] & 1 == 1 {
        return Err(bad("it is a multicast address"));
    }
    if octets.iter().all(|&o| o == 0) {
        return Err(bad("it is all zeros"));
    }
    Ok(mac.to_ascii_lowercase())
}

/// The MAC of container `id` at address `ip`: `02:` (locally administered, unicast) followed
/// by five bytes of a BLAKE3 hash of both. Deterministic across hosts and versions, so a moved
/// container keeps its MAC. A prefix length on `ip` (`/16`) is ignored.
pub fn mac_for(container_id: &str, ip: &str) -> String {
    let addr = ip.trim().split('/').next().unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(b"migrate container mac\0");
    h.update(container_id.as_bytes());
    h.update(b"\0");
    h.update(addr.as_bytes());
    let b = h.finalize();
    let b = b.as_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// The name of container `id`'s network namespace on `node`: `mig-<node>-<id>` when that is
/// at most 100 characters of `A-Z a-z 0-9 . _ -`. Otherwise (a long or odd id) it is
/// `mig-<node>-<first 40 characters of id>+<16 hex digits of a hash>`, or `mig-<node>-+<hash>`
/// for an id with other characters; `+` never occurs in container ids, so the two forms cannot
/// collide. For a valid node name every form starts with `mig-<node>-`, which is how one
/// host's namespaces are found on a machine shared by several agents (tests).
pub fn netns_name(node: &str, id: &str) -> String {
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let node = if safe(node) && node.len() <= 63 {
        node.to_string()
    } else {
        short_hash(&["node", node], 16)
    };
    let plain = format!("{NETNS_PREFIX}{node}-{id}");
    if safe(id) && plain.len() <= MAX_NETNS_NAME {
        return plain;
    }
    let hash = short_hash(&["netns", &node, id], 16);
    let head: String = if safe(id) {
        id.chars().take(40).collect()
    } else {
        String::new()
    };
    format!("{NETNS_PREFIX}{node}-{head}+{hash}")
}

/// The host end of container `id`'s veth pair on `node`: `mv` and 13 hex digits of a hash (15
/// characters, the kernel's limit).
pub fn host_veth(node: &str, id: &str) -> String {
    format!("mv{}", short_hash(&["veth", node, id], MAX_IFNAME - 2))
}

/// Path of container `id`'s network namespace on `node`: `/run/netns/<netns_name(node, id)>`.
pub fn netns_path(node: &str, id: &str) -> PathBuf {
    named_path(&netns_name(node, id))
}

fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Gives container `id` on `node` its network: creates the namespace `netns_name(node, id)`
/// with `lo` up and `eth0` carrying `net.mac` and `net.ip`, the other end of whose veth pair is
/// enslaved to `bridge` and up. Without a bridge the host end stays down and unattached: the
/// container has its address but no way out (a restore test). Returns the namespace's path,
/// for the runtime to join.
///
/// A namespace (or host veth) left from an earlier attempt is removed first. On failure,
/// everything this call made is removed again.
pub fn setup(
    node: &str,
    id: &str,
    bridge: Option<&str>,
    net: &NetSpec,
) -> Result<PathBuf, NetError> {
    let (addr, prefix) = parse_ip(&net.ip)?;
    let mac = parse_mac(&net.mac)?;
    if let Some(bridge) = bridge {
        check_ifname(bridge)?;
        if let Err(e) = ip(&["-o", "link", "show", "dev", bridge]) {
            return Err(match e {
                NetError::Command { stderr, .. } => NetError::NoBridge {
                    bridge: bridge.to_string(),
                    stderr,
                },
                e => e,
            });
        }
    }
    let name = netns_name(node, id);
    let veth = host_veth(node, id);
    if named_path(&name).symlink_metadata().is_ok() || link_exists(&veth)? {
        teardown(node, id)?;
    }
    let cidr = format!("{addr}/{prefix}");
    let made = (|| {
        ip(&["netns", "add", &name])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        // The container end is born inside the namespace under its final name and MAC, so it
        // never exists in the host namespace where its name could clash.
        ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            CONTAINER_IF,
            "address",
            &mac,
            "netns",
            &name,
        ])?;
        ip(&["-n", &name, "addr", "add", &cidr, "dev", CONTAINER_IF])?;
        ip(&["-n", &name, "link", "set", CONTAINER_IF, "up"])?;
        if let Some(bridge) = bridge {
            ip(&["link", "set", &veth, "master", bridge])?;
            ip(&["link", "set", &veth, "up"])?;
        }
        Ok(())
    })();
    match made {
        Ok(()) => Ok(named_path(&name)),
        Err(e) => match teardown(node, id) {
            Ok(()) => Err(e),
            Err(cleanup) => Err(NetError::Rollback {
                netns: name,
                cleanup: crate::shim::chain(&cleanup),
                source: Box::new(e),
            }),
        },
    }
}

/// Removes container `id`'s network on `node`: its host veth (which takes `eth0` with it) and
/// its namespace. Succeeds when they are already gone.
pub fn teardown(node: &str, id: &str) -> Result<(), NetError> {
    let name = netns_name(node, id);
    let veth = host_veth(node, id);
    // Deleting the host end first removes the pair even if a process still holds the
    // namespace open.
    if link_exists(&veth)? {
        if let Err(e) = ip(&["link", "del", "dev", &veth]) {
            if link_exists(&veth)? {
                return Err(e);
            }
        }
    }
    if named_path(&name).symlink_metadata().is_ok() {
        if let Err(e) = ip(&["netns", "del", &name]) {
            if named_path(&name).symlink_metadata().is_ok() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Brings the host end of container `id`'s veth down or up. Down isolates the container (the
/// network lock of a move: nothing reaches its sockets, and nothing they send gets out).
pub fn set_link(node: &str, id: &str, up: bool) -> Result<(), NetError> {
    let veth = host_veth(node, id);
    ip(&["link", "set", "dev", &veth, if up { "up" } else { "down" }]).map(|_| ())
}

/// Announces the container's address from inside its namespace with gratuitous ARP
/// (`arping -U -c 2`, about one second), so bridges and switches learn the MAC's new port and
/// neighbours update their ARP caches after a move.
pub fn announce(node: &str, id: &str, net: &NetSpec) -> Result<(), NetError> {
    let (addr, _) = parse_ip(&net.ip)?;
    let name = netns_name(node, id);
    let addr = addr.to_string();
    run(
        "ip",
        &[
            "netns",
            "exec",
            &name,
            BUSYBOX,
            "arping",
            "-U",
            "-c",
            "2",
            "-I",
            CONTAINER_IF,
            &addr,
        ],
    )?;
    Ok(())
}

/// Best-effort check whether `ip` (with or without `/prefix`) is taken, as seen from this
/// network namespace: true if an interface here carries it (`ip -o addr`), or if something on
/// `bridge`'s segment answers an ARP duplicate-address probe for it (see [`arp_owner`]; takes
/// up to two seconds when nobody answers).
///
/// True only on positive evidence: an address that cannot be parsed, a missing bridge or a
/// failing probe count as "not in use". Containers' own addresses live in their namespaces, so
/// they show up here only through the probe. During a move the source's (frozen) copy still
/// answers ARP for the container's address, so a move's preflight should use [`arp_owner`] and
/// accept the container's own MAC.
pub fn ip_in_use(bridge: &str, ip: &str) -> bool {
    let Ok(addr) = bare_addr(ip) else {
        return false;
    };
    if local_has(addr) {
        return true;
    }
    matches!(arp_owner(bridge, ip), Ok(Some(_)))
}

/// Sends an ARP duplicate-address probe for `ip` (with or without `/prefix`) on `bridge`
/// (`arping -D -c 2 -w 2`, from 0.0.0.0, so no ARP cache learns anything) and returns the MAC
/// of the first host that answers, or `None` after two seconds of silence.
pub fn arp_owner(bridge: &str, ip: &str) -> Result<Option<String>, NetError> {
    let addr = bare_addr(ip)?.to_string();
    check_ifname(bridge)?;
    let args = ["arping", "-D", "-c", "2", "-w", "2", "-I", bridge, &addr];
    let out = output(BUSYBOX, &args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(mac) = parse_arping_reply(&stdout) {
        return Ok(Some(mac));
    }
    // busybox exits 1 when a reply came (parsed above), 0 for silence, and 1 or 2 on errors.
    if out.status.success() {
        Ok(None)
    } else {
        Err(command_error(BUSYBOX, &args, &out))
    }
}

/// The MAC from busybox arping's `Unicast reply from 198.18.0.5 [02:aa:...] 0.1ms` line.
fn parse_arping_reply(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .filter(|l| l.contains("reply from"))
        .find_map(|l| {
            let start = l.find('[')? + 1;
            let end = start + l[start..].find(']')?;
            parse_mac(&l[start..end]).ok()
        })
}

fn bare_addr(ip: &str) -> Result<Ipv4Addr, NetError> {
    let ip = ip.trim();
    if ip.contains('/') {
        return parse_ip(ip).map(|(a, _)| a);
    }
    parse_ip(&format!("{ip}/32")).map(|(a, _)| a)
}

fn local_has(addr: Ipv4Addr) -> bool {
    let needle = format!(" {addr}/");
    ip(&["-o", "-4", "addr", "show"])
        .map(|out| out.lines().any(|l| l.contains(&needle)))
        .unwrap_or(false)
}

fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidBridge {
            name: name.to_string(),
            reason: format!("expected 1 to {MAX_IFNAME} of A-Z a-z 0-9 . _ -"),
        })
    }
}

/// Whether interface `name` exists in this namespace.
fn link_exists(name: &str) -> Result<bool, NetError> {
    let args = ["-o", "link", "show", "dev", name];
    let out = output("ip", &args)?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("does not exist") || stderr.contains("Cannot find device") {
        return Ok(false);
    }
    Err(command_error("ip", &args, &out))
}

fn short_hash(parts: &[&str], len: usize) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    h.finalize().to_hex()[..len].to_string()
}

/// Runs `ip ARGS`, returning stdout.
fn ip(args: &[&str]) -> Result<String, NetError> {
    run("ip", args)
}

/// Runs a command, returning its stdout or an error naming it with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let out = output(program, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(command_error(program, args, &out))
    }
}

fn output(program: &str, args: &[&str]) -> Result<Output, NetError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            command: command_line(program, args),
            source,
        })
}

fn command_error(program: &str, args: &[&str], out: &Output) -> NetError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    NetError::Command {
        command: command_line(program, args),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            "no error output".into()
        } else {
            stderr
        },
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ip_accepts_host_addresses() {
        assert_eq!(
            parse_ip("198.18.1.10/16").unwrap(),
            (Ipv4Addr::new(198, 18, 1, 10), 16)
        );
        assert_eq!(
            parse_ip(" 198.19.7.99/24 ").unwrap(),
            (Ipv4Addr::new(198, 19, 7, 99), 24)
        );
        assert_eq!(parse_ip("10.0.0.0/32").unwrap().1, 32);
        assert_eq!(parse_ip("10.0.0.0/31").unwrap().1, 31);
    }

    #[test]
    fn parse_ip_refuses_what_is_not_a_host_address() {
        for bad in [
            "",
            "198.18.1.10",
            "198.18.1.10/",
            "198.18.1.10/33",
            "198.18.1.10/0",
            "198.18.1.10/+8",
            "198.18.1.10/016",
            "198.18.1/16",
            "198.18.1.256/16",
            "198.018.1.1/16",
            "fe80::1/64",
            "0.0.0.0/8",
            "0.1.2.3/8",
            "127.0.0.1/8",
            "224.0.0.1/4",
            "255.255.255.255/32",
            "240.0.0.1/8",
            "198.18.0.0/16",
            "198.18.255.255/16",
            "198.18.1.0/24",
            "198.18.1.255/24",
            "web/16",
        ] {
            let err = parse_ip(bad).expect_err(bad);
            assert!(matches!(err, NetError::InvalidIp { .. }), "{bad}: {err}");
            assert!(
                err.to_string().contains("invalid container address"),
                "{err}"
            );
        }
    }

    #[test]
    fn mac_for_is_deterministic_local_unicast() {
        let m = mac_for("web", "198.18.1.10/16");
        assert_eq!(m, mac_for("web", "198.18.1.10/16"));
        assert_eq!(m, mac_for("web", "198.18.1.10/24"), "prefix is ignored");
        assert_eq!(m, mac_for("web", "198.18.1.10"));
        assert!(m.starts_with("02:"), "{m}");
        assert_eq!(parse_mac(&m).unwrap(), m);
        assert_eq!(m.len(), 17);
        assert_ne!(m, mac_for("db", "198.18.1.10/16"));
        assert_ne!(m, mac_for("web", "198.18.1.11/16"));
        // No ambiguity between the id and the address.
        assert_ne!(mac_for("a", "1.2.3.4"), mac_for("a1", ".2.3.4"));
    }

    #[test]
    fn parse_mac_refuses_bad_ones() {
        assert_eq!(parse_mac("02:AA:bb:00:01:ff").unwrap(), "02:aa:bb:00:01:ff");
        for bad in [
            "",
            "02:aa:bb:00:01",
            "02:aa:bb:00:01:ff:00",
            "02-aa-bb-00-01-ff",
            "2:aa:bb:00:01:ff",
            "02:aa:bb:00:01:fg",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netns_names_are_readable_bounded_and_distinct() {
        assert_eq!(netns_name("host1", "web"), "mig-host1-web");
        assert_eq!(netns_name("mt7-host2", "db.1_x"), "mig-mt7-host2-db.1_x");
        assert_ne!(netns_name("host1", "web"), netns_name("host2", "web"));

        let long = "a".repeat(1024);
        let n = netns_name("host1", &long);
        assert!(n.len() <= MAX_NETNS_NAME, "{n}");
        assert!(n.starts_with("mig-host1-aaaa"), "{n}");
        assert_eq!(n, netns_name("host1", &long));
        let other = format!("{}b", "a".repeat(1023));
        assert_ne!(n, netns_name("host1", &other));

        for odd in ["../x", "a/b", "", ".hidden", "x y"] {
            let n = netns_name("host1", odd);
            assert!(n.starts_with("mig-host1-+"), "{odd}: {n}");
            assert!(!n.contains('/') && !n.contains(' '), "{n}");
        }
        assert_ne!(netns_name("host1", "a/b"), netns_name("host1", "a/c"));
        // A bad node name never leaks into the path either.
        let n = netns_name("../etc", "web");
        assert!(n.starts_with(NETNS_PREFIX) && !n.contains('/'), "{n}");
    }

    #[test]
    fn host_veth_names_fit_the_kernel_limit() {
        let v = host_veth("host1", "web");
        assert_eq!(v.len(), 15, "{v}");
        assert!(v.starts_with("mv"));
        assert_eq!(v, host_veth("host1", "web"));
        assert_ne!(v, host_veth("host2", "web"));
        assert_ne!(v, host_veth("host1", "web2"));
        assert_eq!(host_veth("host1", &"x".repeat(1024)).len(), 15);
    }

    #[test]
    fn net_spec_derives_the_mac() {
        let s = NetSpec::new("web", "198.18.1.10/16").unwrap();
        assert_eq!(s.mac, mac_for("web", "198.18.1.10/16"));
        s.validate().unwrap();
        assert!(NetSpec::new("web", "198.18.1.10").is_err());
        let bad = NetSpec {
            ip: "198.18.1.10/16".into(),
            mac: "ff:ff:ff:ff:ff:ff".into(),
        };
        assert!(matches!(bad.validate(), Err(NetError::InvalidMac { .. })));
    }

    #[test]
    fn arping_replies_are_parsed() {
        let out = "ARPING 198.18.200.10 from 0.0.0.0 br0\n\
                   Unicast reply from 198.18.200.10 [02:11:22:33:44:55] 0.008ms\n\
                   Sent 1 probe(s) (0 broadcast(s))\n\
                   Received 1 response(s) (0 request(s), 0 broadcast(s))\n";
        assert_eq!(
            parse_arping_reply(out).as_deref(),
            Some("02:11:22:33:44:55")
        );
        let silent = "ARPING 198.18.200.11 from 0.0.0.0 br0\nSent 2 probe(s) (0 broadcast(s))\n\
                      Received 0 response(s) (0 request(s), 0 broadcast(s))\n";
        assert_eq!(parse_arping_reply(silent), None);
    }

    #[test]
    fn bad_bridge_names_are_refused_before_running_anything() {
        let spec = NetSpec::new("web", "198.18.1.10/16").unwrap();
        for bad in ["", "a-very-long-bridge-name", "br 0", "br/0"] {
            let err = setup("host1", "web", Some(bad), &spec).expect_err(bad);
            assert!(
                matches!(err, NetError::InvalidBridge { .. }),
                "{bad}: {err}"
            );
        }
        assert!(!ip_in_use("br/0", "198.18.1.10"));
        assert!(!ip_in_use("br0", "not-an-address"));
    }
}

/// Tests that need root: they build a bridge in a throw-away network namespace and attach a
/// container namespace to it. They fail (never skip) without root.
#[cfg(test)]
mod root_tests {
    use super::*;
    use std::fs::File;

    /// A named namespace deleted on drop, whatever happened.
    struct ThrowAway(String);
    impl Drop for ThrowAway {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }

    /// Tears a container's network down on drop.
    struct Attached(String, String);
    impl Drop for Attached {
        fn drop(&mut self) {
            let _ = teardown(&self.0, &self.1);
        }
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (it creates network namespaces); run it as root after \
             `bash deploy/install.sh`"
        );
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing; run `bash deploy/install.sh`"
        );
    }

    /// Runs `f` on a thread that has entered network namespace `ns` (its subprocesses start
    /// there too), so the code under test sees it as "this namespace", as the agent would.
    fn inside(ns: &str, f: impl FnOnce() + Send + 'static) {
        let path = named_path(ns);
        let r = std::thread::spawn(move || {
            let fd = File::open(&path).expect("open netns");
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join();
        if let Err(panic) = r {
            std::panic::resume_unwind(panic);
        }
    }

    fn sh(program: &str, args: &[&str]) -> Output {
        Command::new(program).args(args).output().expect(program)
    }

    fn netns_listed(name: &str) -> bool {
        String::from_utf8_lossy(&sh("ip", &["netns", "list"]).stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn container_network_on_a_bridge() {
        require_root();
        let pid = std::process::id();
        let outer = ThrowAway(format!("mig-nettest-{pid}"));
        let _ = sh("ip", &["netns", "del", &outer.0]);
        run("ip", &["netns", "add", &outer.0]).unwrap();
        let node = format!("nt{pid}");
        let id = "web".to_string();
        let name = netns_name(&node, &id);
        let veth = host_veth(&node, &id);
        let (n2, i2, name2, veth2) = (node.clone(), id.clone(), name.clone(), veth.clone());
        inside(&outer.0, move || {
            let (node, id, name, veth) = (n2, i2, name2, veth2);
            let br = "mignbr";
            for args in [
                &["link", "set", "lo", "up"][..],
                &["link", "add", br, "type", "bridge"],
                &["addr", "add", "198.18.200.254/16", "dev", br],
                &["link", "set", br, "up"],
            ] {
                ip(args).unwrap();
            }
            let spec = NetSpec::new(&id, "198.18.200.10/16").unwrap();
            let _guard = Attached(node.clone(), id.clone());

            let path = setup(&node, &id, Some(br), &spec).unwrap();
            assert_eq!(path, netns_path(&node, &id));
            assert_eq!(path, named_path(&name));
            assert!(netns_listed(&name));
            let eth0 = ip(&["-n", &name, "addr", "show", "eth0"]).unwrap();
            assert!(eth0.contains("inet 198.18.200.10/16"), "{eth0}");
            assert!(eth0.contains(&format!("link/ether {}", spec.mac)), "{eth0}");
            assert!(eth0.contains("state UP") || eth0.contains(",UP"), "{eth0}");
            let lo = ip(&["-n", &name, "link", "show", "lo"]).unwrap();
            assert!(lo.contains("UP"), "{lo}");
            let host_end = ip(&["-o", "link", "show", "dev", &veth]).unwrap();
            assert!(host_end.contains(&format!("master {br}")), "{host_end}");

            // Again: the leftover namespace is replaced, not refused.
            setup(&node, &id, Some(br), &spec).unwrap();

            let pinged = (0..5).any(|_| {
                sh(BUSYBOX, &["ping", "-c", "1", "-W", "1", "198.18.200.10"])
                    .status
                    .success()
            });
            assert!(pinged, "the container does not answer ping from the bridge");

            // Link down: cut off (no ping, no ARP answer); up again: back.
            set_link(&node, &id, false).unwrap();
            let ping1 = || {
                sh(BUSYBOX, &["ping", "-c", "1", "-W", "1", "198.18.200.10"])
                    .status
                    .success()
            };
            assert!(!ping1(), "ping answered with the link down");
            assert!(!ip_in_use(br, "198.18.200.10"));
            set_link(&node, &id, true).unwrap();
            assert!((0..5).any(|_| ping1()), "no ping after the link came back");

            announce(&node, &id, &spec).unwrap();
            let fdb = run("bridge", &["fdb", "show", "dev", &veth]).unwrap();
            assert!(fdb.contains(&spec.mac), "{fdb}");

            assert!(ip_in_use(br, "198.18.200.10"), "the container answers ARP");
            assert!(
                ip_in_use(br, "198.18.200.254/16"),
                "the bridge's own address"
            );
            assert!(!ip_in_use(br, "198.18.200.11"));
            assert_eq!(
                arp_owner(br, "198.18.200.10/16").unwrap().as_deref(),
                Some(spec.mac.as_str())
            );
            assert!(matches!(
                arp_owner("nosuchbr0", "198.18.200.10"),
                Err(NetError::Command { .. })
            ));

            teardown(&node, &id).unwrap();
            teardown(&node, &id).unwrap();
            assert!(!netns_listed(&name));
            assert!(!named_path(&name).exists());
            assert!(!link_exists(&veth).unwrap());
            assert!(!ip_in_use(br, "198.18.200.10"));

            // Isolated (a restore test): the address is there, but nothing reaches it.
            setup(&node, &id, None, &spec).unwrap();
            let eth0 = ip(&["-n", &name, "addr", "show", "eth0"]).unwrap();
            assert!(eth0.contains("inet 198.18.200.10/16"), "{eth0}");
            let host_end = ip(&["-o", "link", "show", "dev", &veth]).unwrap();
            assert!(!host_end.contains("master"), "{host_end}");
            assert!(!ping1(), "an isolated namespace answered ping");
            assert!(!ip_in_use(br, "198.18.200.10"));
            teardown(&node, &id).unwrap();

            // Failures undo what they made: no bridge at all, and a "bridge" that cannot take
            // ports (fails after the namespace and the veth exist).
            let err = setup(&node, &id, Some("nosuchbr0"), &spec).unwrap_err();
            assert!(matches!(err, NetError::NoBridge { .. }), "{err}");
            let err = setup(&node, &id, Some("lo"), &spec).unwrap_err();
            assert!(
                matches!(&err, NetError::Command { command, .. } if command.contains("master lo")),
                "{err}"
            );
            assert!(!netns_listed(&name));
            assert!(!link_exists(&veth).unwrap());
            assert!(set_link(&node, &id, true).is_err());
            let err = announce(&node, &id, &spec).unwrap_err();
            assert!(err.to_string().contains("arping"), "{err}");
            let links = ip(&["-o", "link"]).unwrap();
            assert!(!links.contains(&veth), "{links}");
        });
        drop(outer);
        assert!(!netns_listed(&name));
        assert!(!netns_listed(&format!("mig-nettest-{pid}")));
        let root_links = String::from_utf8_lossy(&sh("ip", &["-o", "link"]).stdout).into_owned();
        assert!(!root_links.contains(&veth) && !root_links.contains("mignbr"));
    }
}
