//! Two test hosts on one L2 segment, for the move tests and the demo: two network namespaces,
//! each with a bridge `br0` holding the host's address and an uplink to a bridge in the test's
//! own (root) namespace, which also holds the "client" address the test talks to containers
//! from; two agents, `host1` and `host2`, one inside each host, with certificates from one
//! cluster CA and each other as peers.
//!
//! ```text
//!  root namespace: the test, as the client (198.19.K.254/24 on mtKbr)
//!    mtKbr ─┬─ mtKu1 ═══ uplink ─ br0 (198.19.K.1/24)   host mtKh1: agent "host1"
//!           └─ mtKu2 ═══ uplink ─ br0 (198.19.K.2/24)   host mtKh2: agent "host2"
//!  containers: 198.19.K.10 ..= 198.19.K.99 /24, their veths on their host's br0
//! ```
//!
//! A host is more than a network namespace: a small holder process (`sleep infinity`) keeps a
//! mount namespace per host in which `/sys` is the host network namespace's own sysfs (so
//! `/sys/class/net` shows the host's links, with `/sys/fs/cgroup` kept) and `/run/netns` is a
//! private tmpfs, so the namespaces an agent makes for its containers (`mig-<node>-<id>`) are
//! that host's alone, as on separate machines. The agent and all its restarts enter the
//! holder's namespaces; [`HostAgent::on_host`] runs a command there.
//!
//! Concurrent instances (threads of one test binary, or several binaries) never share
//! anything: each claims a subnet `198.19.K.0/24` by holding an exclusive `flock` on
//! `/run/migrate-tests/subnet-198.19.K.lock` for its lifetime (the kernel releases it even if
//! the test is killed), and every name it makes derives from `K`: namespaces `mtKh1`/`mtKh2`,
//! bridge `mtKbr`, uplinks `mtKu1`/`mtKu2`, files in `/run/migrate-tests/netK`. What a killed
//! instance left (namespaces, links, files, and processes inside its hosts) is removed by the
//! next instance that starts. The other half of the test range, 198.18.0.0/16, stays free for
//! the other fixtures.
//!
//! `Drop` stops both agents (deleting their containers) and the holders (with them the
//! containers' namespaces), kills anything still inside the hosts, and deletes both host
//! namespaces, the veths, the bridge and the instance's files. The lock files (empty, one per
//! subnet ever used) stay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::agent::{binary, AgentNs, TestAgent};
use crate::netns::run;

/// Whether the agents' configs get `[network] bridge = "br0"`.
pub const NETWORK_BRIDGE: bool = true;
/// Port of the peer API on each host.
pub const PEER_PORT: u16 = 7443;
/// The bridge inside each host that containers' veths join.
pub const HOST_BRIDGE: &str = "br0";
/// Where instances claim subnets.
const LOCK_DIR: &str = "/run/migrate-tests";
/// Container addresses handed out by [`TwoHosts::next_container_ip`]: `.10 ..= .99`.
const CONTAINER_IPS: std::ops::RangeInclusive<usize> = 10..=99;

/// Run by the holder, inside the host's network namespace and a new mount namespace whose
/// mounts are all slaves (nothing done here reaches the test's namespace). `$1` is a scratch
/// directory that carries the cgroup mounts across the new sysfs.
const HOLDER_SCRIPT: &str = r#"set -e
mkdir -p "$1"
mount --rbind /sys/fs/cgroup "$1"
mount -t sysfs sysfs /sys
mount --rbind "$1" /sys/fs/cgroup
umount -l "$1"
rmdir "$1"
mount -t tmpfs -o mode=0755 tmpfs /run/netns
exec sleep infinity
"#;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One host: its agent (through `Deref`, `host1.ok(&["ps"])` etc.) and where it lives.
pub struct HostAgent {
    /// The agent, running inside the host.
    pub agent: TestAgent,
    /// The host's address on the segment (on its `br0`), e.g. `198.19.7.1`.
    pub ip: String,
    /// The host's network namespace (`/run/netns/<netns>` in the test's namespace).
    pub netns: String,
    /// Where its peer API listens, `<ip>:7443`.
    pub peer_addr: String,
    /// The root-namespace end of its uplink ([`TwoHosts::link_down`] cuts it).
    pub uplink: String,
    // After the agent: its containers are gone before the holder goes.
    holder: Holder,
}

impl HostAgent {
    /// Runs a command inside the host (its network and mount namespaces: its links, its
    /// `/run/netns`, its `/sys`), e.g. `on_host(&["ip", "netns", "list"])`.
    pub fn on_host(&self, args: &[&str]) -> Output {
        self.holder.command(args).output().expect("run nsenter")
    }

    /// Like [`HostAgent::on_host`], returning stdout and panicking with stderr on failure.
    pub fn on_host_ok(&self, args: &[&str]) -> String {
        let out = self.on_host(args);
        assert!(
            out.status.success(),
            "{args:?} on {} failed: {}",
            self.node,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The names in the host's `/run/netns` (its containers' network namespaces).
    pub fn netns_list(&self) -> Vec<String> {
        self.on_host_ok(&["ip", "netns", "list"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

impl Deref for HostAgent {
    type Target = TestAgent;
    fn deref(&self) -> &TestAgent {
        &self.agent
    }
}

impl DerefMut for HostAgent {
    fn deref_mut(&mut self) -> &mut TestAgent {
        &mut self.agent
    }
}

/// Two hosts with agents `host1` and `host2` on one segment, and the test as their client.
pub struct TwoHosts {
    /// The agent on the first host (node `host1`, address `.1`).
    pub host1: HostAgent,
    /// The agent on the second host (node `host2`, address `.2`).
    pub host2: HostAgent,
    /// The test's own address on the segment (root namespace), e.g. `198.19.7.254`.
    pub client_ip: String,
    /// The segment, e.g. `198.19.7.0/24`.
    pub subnet: String,
    /// The cluster CA and both hosts' certificates (`ca.crt`, `host1.crt`, `host1.key`, ...).
    pub pki: PathBuf,
    next_ip: AtomicUsize,
    // Dropped after the hosts.
    net: Topology,
}

impl TwoHosts {
    /// Builds the segment, starts both agents, and waits until each reaches the other over
    /// mutual TLS.
    pub fn start() -> TwoHosts {
        TwoHosts::start_with(NETWORK_BRIDGE)
    }

    /// Like [`TwoHosts::start`]; `network_bridge` says whether the agents' configs name the
    /// hosts' bridge (`[network] bridge = "br0"`).
    pub fn start_with(network_bridge: bool) -> TwoHosts {
        crate::prereq::require_runtime();
        let net = Topology::claim();
        net.build();

        let pki = net.dir.join("pki");
        let d = pki.to_str().expect("utf-8 temp dir");
        certs(&["init", "--dir", d]);
        certs(&["issue", "host1", "--dir", d]);
        certs(&["issue", "host2", "--dir", d]);

        let start_host = |i: usize| {
            let (node, other) = [("host1", "host2"), ("host2", "host1")][i];
            let holder = Holder::start(&net.hosts[i], &net.dir.join(format!("cg-{node}")));
            let ip = net.host_ip(i);
            let other_ip = net.host_ip(1 - i);
            let mut extra = format!(
                "[peer]\nlisten = \"{ip}:{PEER_PORT}\"\n\
                 [tls]\nca = \"{d}/ca.crt\"\ncert = \"{d}/{node}.crt\"\nkey = \"{d}/{node}.key\"\n\
                 [peers]\n{other} = \"{other_ip}:{PEER_PORT}\"\n"
            );
            if network_bridge {
                extra.push_str(&format!("[network]\nbridge = \"{HOST_BRIDGE}\"\n"));
            }
            let agent = TestAgent::start_in(node, &extra, Some(AgentNs::Host(holder.pid())));
            HostAgent {
                agent,
                peer_addr: format!("{ip}:{PEER_PORT}"),
                ip: ip.to_string(),
                netns: net.hosts[i].clone(),
                uplink: net.uplinks[i].clone(),
                holder,
            }
        };
        let host1 = start_host(0);
        let host2 = start_host(1);
        let hosts = TwoHosts {
            host1,
            host2,
            client_ip: net.client_ip().to_string(),
            subnet: format!("{}/24", net.ip(0)),
            pki,
            next_ip: AtomicUsize::new(*CONTAINER_IPS.start()),
            net,
        };
        hosts.wait_for_peers(Duration::from_secs(30));
        hosts
    }

    /// The host whose agent is `node` (`"host1"` or `"host2"`).
    pub fn host(&self, node: &str) -> &HostAgent {
        [&self.host1, &self.host2]
            .into_iter()
            .find(|h| h.node == node)
            .unwrap_or_else(|| panic!("no host {node:?} (there are host1 and host2)"))
    }

    /// A fresh container address on the segment, with its prefix: `198.19.K.<10..=99>/24`.
    pub fn next_container_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::SeqCst);
        assert!(
            CONTAINER_IPS.contains(&n),
            "this TwoHosts handed out all its container addresses"
        );
        format!("{}/24", self.net.ip(n as u8))
    }

    /// Connects from the test (the root namespace) to `ip` (with or without `/prefix`),
    /// which must be on this segment; one attempt, two seconds at most.
    pub fn client_connect(&self, ip: &str, port: u16) -> io::Result<TcpStream> {
        let addr = self.on_segment(ip);
        TcpStream::connect_timeout(&SocketAddr::from((addr, port)), Duration::from_secs(2))
    }

    /// Whether `ip` (on this segment) answers one ping from the test's namespace within a
    /// second (busybox ping: iputils may be missing).
    pub fn ping(&self, ip: &str) -> bool {
        let addr = self.on_segment(ip).to_string();
        Command::new("/bin/busybox")
            .args(["ping", "-c", "1", "-W", "1", &addr])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Cuts host `node` off the segment (its uplink goes down); nothing else changes.
    pub fn link_down(&self, node: &str) {
        run("ip", &["link", "set", &self.host(node).uplink, "down"]);
    }

    /// Reconnects host `node` after [`TwoHosts::link_down`].
    pub fn link_up(&self, node: &str) {
        run("ip", &["link", "set", &self.host(node).uplink, "up"]);
    }

    /// Every name this instance made in the root namespace: its two host namespaces
    /// (`ip netns list`), its bridge and its uplinks (`ip link`).
    pub fn names(&self) -> Vec<String> {
        let n = &self.net;
        let mut v = vec![n.bridge.clone()];
        v.extend(n.hosts.iter().cloned());
        v.extend(n.uplinks.iter().cloned());
        v
    }

    fn on_segment(&self, ip: &str) -> Ipv4Addr {
        let addr: Ipv4Addr = ip
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|_| panic!("{ip:?} is not an IPv4 address"));
        assert_eq!(
            addr.octets()[..3],
            self.net.ip(0).octets()[..3],
            "{ip} is not on this TwoHosts' segment {}",
            self.subnet
        );
        addr
    }

    fn wait_for_peers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let outs: Vec<String> = [&self.host1, &self.host2]
                .iter()
                .map(|h| h.ok(&["hosts", "--output", "json"]))
                .collect();
            let ready = outs.iter().all(|out| {
                out.lines().any(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .is_ok_and(|v| v["reachable"] == serde_json::Value::Bool(true))
                })
            });
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the two agents do not reach each other after {timeout:?}:\n{}\n{}\n\
                     --- host1 log ---\n{}\n--- host2 log ---\n{}",
                    outs[0],
                    outs[1],
                    self.host1.log(),
                    self.host2.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn certs(args: &[&str]) {
    let out = Command::new(binary("migrate-agent"))
        .arg("certs")
        .args(args)
        .output()
        .expect("run migrate-agent certs");
    assert!(
        out.status.success(),
        "migrate-agent certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process that holds a host's namespaces (see the module docs); killed on drop.
struct Holder {
    child: Child,
}

impl Holder {
    /// Starts it in network namespace `netns`; `scratch` must not exist yet.
    fn start(netns: &str, scratch: &Path) -> Holder {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["--", "unshare", "--mount", "--propagation", "slave", "--"])
            .args(["/bin/sh", "-c", HOLDER_SCRIPT, "holder"])
            .arg(scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start the namespace holder of {netns}: {e} (nsenter, unshare and mount \
                     come from util-linux; run `{}`)",
                    crate::prereq::SETUP
                )
            });
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready once the script has exec'd `sleep`, i.e. every mount is in place.
        while fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the namespace holder of {netns} failed ({status}): {err}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the namespace holder of {netns} did not get ready");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Holder { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid()))
            .args(["--mount", "--net", "--"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The network of one instance, named after its subnet `198.19.K.0/24`; everything it names
/// is removed on drop (and before building, in case a killed holder of `K` left it).
struct Topology {
    k: u8,
    /// Root-namespace bridge `mtKbr`.
    bridge: String,
    /// Host namespaces `mtKh1`, `mtKh2`.
    hosts: [String; 2],
    /// Root-namespace ends of the hosts' uplinks `mtKu1`, `mtKu2`.
    uplinks: [String; 2],
    /// Its files (certificates, scratch): `/run/migrate-tests/netK`.
    dir: PathBuf,
    // Last: released after the cleanup in `drop`.
    _lock: Flock<File>,
}

impl Topology {
    /// Claims a free subnet: starts at one derived from the pid and a counter and takes the
    /// first whose lock nobody holds and that the root namespace does not already use.
    fn claim() -> Topology {
        fs::create_dir_all(LOCK_DIR).expect("create /run/migrate-tests");
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst) as u64;
        let seed = (u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let first = (seed >> 56) as u8;
        for i in 0..=255u8 {
            let k = first.wrapping_add(i);
            let Some(t) = Topology::try_lock(k) else {
                continue;
            };
            t.remove();
            if !t.subnet_used_elsewhere() {
                return t;
            }
        }
        panic!("no free subnet in 198.19.0.0/16 for a TwoHosts (all 256 taken)");
    }

    /// Topology `k` if nobody holds its lock.
    fn try_lock(k: u8) -> Option<Topology> {
        let path = Path::new(LOCK_DIR).join(format!("subnet-198.19.{k}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
        Some(Topology {
            k,
            bridge: format!("mt{k}br"),
            hosts: [format!("mt{k}h1"), format!("mt{k}h2")],
            uplinks: [format!("mt{k}u1"), format!("mt{k}u2")],
            dir: Path::new(LOCK_DIR).join(format!("net{k}")),
            _lock: lock,
        })
    }

    /// `198.19.K.<last>`.
    fn ip(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.k, last)
    }

    fn host_ip(&self, i: usize) -> Ipv4Addr {
        self.ip(i as u8 + 1)
    }

    fn client_ip(&self) -> Ipv4Addr {
        self.ip(254)
    }

    /// Whether the root namespace already has an address or a route in our /24 (someone
    /// else's, since ours were just removed).
    fn subnet_used_elsewhere(&self) -> bool {
        let prefix = format!("198.19.{}.", self.k);
        let addrs = run("ip", &["-o", "-4", "addr", "show"]);
        let routes = run(
            "ip",
            &["-4", "route", "show", "root", &format!("{prefix}0/24")],
        );
        addrs.contains(&format!("inet {prefix}")) || !routes.trim().is_empty()
    }

    fn build(&self) {
        fs::create_dir(&self.dir).unwrap_or_else(|e| panic!("create {}: {e}", self.dir.display()));
        let br = self.bridge.as_str();
        let client = format!("{}/24", self.client_ip());
        // No IPv6 link-local addresses: nothing but the test's IPv4 traffic on the segment.
        for args in [
            &["link", "add", br, "type", "bridge"][..],
            &["link", "set", br, "addrgenmode", "none"],
            &["addr", "add", &client, "dev", br],
            &["link", "set", br, "up"],
        ] {
            run("ip", args);
        }
        for i in 0..2 {
            let (ns, up) = (self.hosts[i].as_str(), self.uplinks[i].as_str());
            let addr = format!("{}/24", self.host_ip(i));
            run("ip", &["netns", "add", ns]);
            let inside = |args: &[&str]| {
                let mut v = vec!["-n", ns];
                v.extend_from_slice(args);
                run("ip", &v);
            };
            inside(&["link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "link", "add", up, "type", "veth", "peer", "name", "uplink", "netns", ns,
                ],
            );
            for args in [
                &["link", "set", up, "addrgenmode", "none"][..],
                &["link", "set", up, "master", br],
                &["link", "set", up, "up"],
            ] {
                run("ip", args);
            }
            inside(&["link", "add", HOST_BRIDGE, "type", "bridge"]);
            inside(&["link", "set", HOST_BRIDGE, "addrgenmode", "none"]);
            inside(&["link", "set", "uplink", "addrgenmode", "none"]);
            inside(&["link", "set", "uplink", "master", HOST_BRIDGE]);
            inside(&["link", "set", "uplink", "up"]);
            inside(&["addr", "add", &addr, "dev", HOST_BRIDGE]);
            inside(&["link", "set", HOST_BRIDGE, "up"]);
        }
    }

    /// Removes everything this instance's names stand for; idempotent, ignores what is gone.
    /// Processes still inside a host (left by a killed test) are killed first.
    fn remove(&self) {
        for ns in &self.hosts {
            kill_processes_in(&Path::new("/run/netns").join(ns));
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        // Deleting the namespaces took the uplinks with them, unless something still holds a
        // namespace open; delete them by name anyway.
        for link in self.uplinks.iter().chain([&self.bridge]) {
            if link_exists(link) {
                let _ = Command::new("ip").args(["link", "del", link]).output();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}

/// SIGKILLs every process whose network namespace is the one at `path` (no-op if there is no
/// such namespace). Only ever called with the subnet lock held, so the processes belong to a
/// dead instance (or to this one, being dropped).
fn kill_processes_in(path: &Path) {
    let Ok(ns) = fs::metadata(path) else {
        return;
    };
    let me = std::process::id();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(m) = fs::metadata(entry.path().join("ns/net")) else {
            continue;
        };
        if pid != me && m.dev() == ns.dev() && m.ino() == ns.ino() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes what instances that died without their `Drop` (a killed test) left: every subnet
/// whose names still exist but whose lock nobody holds. Two `ip` calls when there is nothing
/// to do.
fn sweep_stale() {
    let netns = Command::new("ip").args(["netns", "list"]).output();
    let links = Command::new("ip").args(["-o", "link"]).output();
    let (Ok(netns), Ok(links)) = (netns, links) else {
        return;
    };
    let netns = String::from_utf8_lossy(&netns.stdout);
    let links = String::from_utf8_lossy(&links.stdout);
    for k in 0..=255u8 {
        let tag = format!("mt{k}");
        let ours = |n: &str| {
            n.strip_prefix(&tag)
                .is_some_and(|r| ["h1", "h2"].contains(&r))
        };
        let left = netns
            .lines()
            .any(|l| l.split_whitespace().next().is_some_and(ours))
            || links.contains(&format!(": {tag}br:"))
            || Path::new(LOCK_DIR).join(format!("net{k}")).exists();
        if left {
            // Dropping it removes everything and releases the lock.
            drop(Topology::try_lock(k));
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}
