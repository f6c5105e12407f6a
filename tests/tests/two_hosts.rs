//! The two-host fixture itself: two agents in their own hosts (network and mount namespaces)
//! on one L2 segment see each other over mutual TLS, the test reaches hosts and containers
//! from the root namespace, concurrent instances share nothing, and nothing is left after
//! `Drop`.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use migrate_tests::hosts::TwoHosts;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use serde_json::Value;

fn hosts_json(agent: &migrate_tests::agent::TestAgent) -> Vec<Value> {
    agent
        .ok(&["hosts", "--output", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stdout(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which of an instance's names still exist in the root namespace.
fn leftovers(names: &[String]) -> Vec<String> {
    let netns = stdout("ip", &["netns", "list"]);
    let links = stdout("ip", &["-o", "link"]);
    names
        .iter()
        .filter(|n| {
            netns
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str()))
                || links.contains(&format!(": {n}:"))
                || links.contains(&format!(": {n}@"))
        })
        .cloned()
        .collect()
}

#[test]
fn two_agents_on_one_segment() {
    let hosts = TwoHosts::start();
    assert_eq!(
        (hosts.host1.node.as_str(), hosts.host2.node.as_str()),
        ("host1", "host2")
    );

    // Each sees the other over mutual TLS, at its address on the segment.
    for (me, other) in [(&hosts.host1, &hosts.host2), (&hosts.host2, &hosts.host1)] {
        let h = hosts_json(me);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0]["name"].as_str(), Some(other.node.as_str()), "{h:?}");
        assert_eq!(h[0]["reachable"], true, "{h:?}");
        let table = me.ok(&["hosts"]);
        assert!(table.contains(&other.peer_addr), "{table}");
    }

    // The hosts answer on the segment from the root namespace (the client side), and each
    // agent listens inside its own host.
    assert!(hosts.ping(&hosts.host1.ip), "host1 does not answer ping");
    assert!(hosts.ping(&hosts.host2.ip), "host2 does not answer ping");
    hosts.client_connect(&hosts.host1.ip, 7443).unwrap();
    hosts.client_connect(&hosts.host2.ip, 7443).unwrap();
    assert!(
        hosts.client_connect(&hosts.client_ip, 7443).is_err(),
        "the peer API listens in the root namespace"
    );

    // Inside a host, /sys and the links are the host's own, cgroups are still there, and
    // /run/netns is the host's (empty: no containers yet).
    for h in [&hosts.host1, &hosts.host2] {
        let net = h.on_host_ok(&["ls", "/sys/class/net"]);
        assert!(
            net.contains("br0") && net.contains("uplink") && !net.contains("eth0"),
            "{net}"
        );
        let cg = h.on_host_ok(&["ls", "/sys/fs/cgroup"]);
        assert!(!cg.trim().is_empty(), "no cgroups inside {}", h.node);
        assert_eq!(h.netns_list(), Vec::<String>::new());
        let addr = h.on_host_ok(&["ip", "-o", "-4", "addr", "show", "br0"]);
        assert!(addr.contains(&format!("inet {}/24", h.ip)), "{addr}");
    }

    // Container addresses: distinct, on the segment, with the prefix.
    let a = hosts.next_container_ip();
    let b = hosts.next_container_ip();
    assert_ne!(a, b);
    let net = hosts.subnet.trim_end_matches("0/24");
    assert!(
        a.starts_with(net) && a.ends_with("/24"),
        "{a} in {}",
        hosts.subnet
    );

    // A cut uplink isolates a host; restoring it brings it back.
    hosts.link_down("host2");
    assert!(!hosts.ping(&hosts.host2.ip));
    hosts.link_up("host2");
    wait_for("host2 to answer again", Duration::from_secs(10), || {
        hosts.ping(&hosts.host2.ip).then_some(())
    });

    let names = hosts.names();
    assert_eq!(leftovers(&names), names);
    let pki = hosts.pki.clone();
    assert!(pki.join("ca.crt").exists());
    drop(hosts);
    assert_eq!(leftovers(&names), Vec::<String>::new());
    assert!(!pki.exists(), "{} is left", pki.display());
}

#[test]
fn concurrent_instances_share_nothing() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(TwoHosts::start);
        let b = s.spawn(TwoHosts::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.subnet, b.subnet);
    let (na, nb) = (a.names(), b.names());
    assert!(na.iter().all(|n| !nb.contains(n)), "{na:?} {nb:?}");
    // Both segments work side by side.
    assert!(a.ping(&a.host1.ip) && b.ping(&b.host1.ip));
    assert_eq!(
        hosts_json(&a.host1)[0]["address"],
        a.host2.peer_addr.as_str()
    );
    assert_eq!(
        hosts_json(&b.host1)[0]["address"],
        b.host2.peer_addr.as_str()
    );
    drop(a);
    assert_eq!(leftovers(&na), Vec::<String>::new());
    assert!(b.ping(&b.host2.ip), "dropping one instance broke the other");
    drop(b);
    assert_eq!(leftovers(&nb), Vec::<String>::new());
}

#[test]
fn container_with_an_address_is_reachable_from_the_client() {
    let mut hosts = TwoHosts::start();
    let bundle = TestBundle::busybox(&["nc", "-ll", "-p", "8000", "-e", "cat"]);
    let ip = hosts.next_container_ip();
    let bundle_dir = bundle.path().display().to_string();
    hosts
        .host1
        .ok(&["run", "web", "--bundle", &bundle_dir, "--ip", &ip]);
    // The agent named the container's namespace on its host, and only there.
    assert_eq!(hosts.host1.netns_list(), ["mig-host1-web"]);
    assert_eq!(hosts.host2.netns_list(), Vec::<String>::new());
    assert!(!stdout("ip", &["netns", "list"]).contains("mig-host1-web"));

    let s = wait_for(
        "the container's echo service",
        Duration::from_secs(20),
        || hosts.client_connect(&ip, 8000).ok(),
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut echo = |msg: &str| {
        w.write_all(format!("{msg}\n").as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(echo("hello"), "hello\n");
    assert!(hosts.ping(&ip));

    // A restarted agent (a new process in the same host) finds the container's namespace
    // where it left it, and removes it with the container.
    hosts.host1.set_env("MIGRATE_TEST_MARKER", "1");
    let ps = hosts.host1.spawn_cli(&["ps"]).wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("web"),
        "{ps:?}"
    );
    assert_eq!(echo("again"), "again\n");
    hosts.host1.ok(&["rm", "-f", "web"]);
    assert_eq!(hosts.host1.netns_list(), Vec::<String>::new());

    // Dropped with a container still running: everything goes.
    let ip2 = hosts.next_container_ip();
    hosts
        .host1
        .ok(&["run", "web2", "--bundle", &bundle_dir, "--ip", &ip2]);
    assert_eq!(hosts.host1.netns_list(), ["mig-host1-web2"]);
    let names = hosts.names();
    drop(hosts);
    assert_eq!(leftovers(&names), Vec::<String>::new());
}
