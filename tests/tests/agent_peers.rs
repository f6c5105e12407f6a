//! Agents talking to each other over mutual TLS: certificates made with `migrate-agent certs`,
//! `migrate hosts` reporting reachable peers, and refusal of unknown names and foreign CAs.

use std::path::Path;
use std::process::Command;

use migrate_tests::agent::{binary, TestAgent};
use serde_json::Value;

fn certs(args: &[&str]) {
    let out = Command::new(binary("migrate-agent"))
        .arg("certs")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls(dir: &Path, node: &str) -> String {
    format!(
        "[tls]\nca = \"{0}/ca.crt\"\ncert = \"{0}/{node}.crt\"\nkey = \"{0}/{node}.key\"\n",
        dir.display()
    )
}

fn hosts(agent: &TestAgent) -> Vec<Value> {
    agent
        .ok(&["hosts", "--output", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn peers_over_mutual_tls() {
    let pki = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let d = pki.path().to_str().unwrap();
    certs(&["init", "--dir", d]);
    for node in ["host1", "host2", "host3"] {
        certs(&["issue", node, "--dir", d]);
    }
    certs(&["init", "--dir", other.path().to_str().unwrap()]);
    certs(&["issue", "host1", "--dir", other.path().to_str().unwrap()]);
    // Issuing again without --force is refused.
    let out = Command::new(binary("migrate-agent"))
        .args(["certs", "issue", "host1", "--dir", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    let base = 21000 + (std::process::id() % 5000) as u16 * 4;
    let (p1, p2, p3, p4) = (base, base + 1, base + 2, base + 3);
    let host2 = TestAgent::start(
        "host2",
        &format!(
            "[peer]\nlisten = \"127.0.0.1:{p2}\"\n{}[peers]\nhost1 = \"127.0.0.1:{p1}\"\n",
            tls(pki.path(), "host2")
        ),
    );
    let host1 = TestAgent::start(
        "host1",
        &format!(
            "[peer]\nlisten = \"127.0.0.1:{p1}\"\n{}[peers]\nhost2 = \"127.0.0.1:{p2}\"\n",
            tls(pki.path(), "host1")
        ),
    );
    let h = hosts(&host1);
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0]["name"].as_str(), h[0]["reachable"].as_bool()),
        (Some("host2"), Some(true)),
        "{h:?}"
    );
    assert!(h[0]["detail"].as_str().unwrap().contains("criu"), "{h:?}");
    let table = host1.ok(&["hosts"]);
    assert!(
        table.contains("host2") && table.contains(&format!("127.0.0.1:{p2}")),
        "{table}"
    );

    // host3 has a valid certificate from the same CA, but host2 does not list it.
    let host3 = TestAgent::start(
        "host3",
        &format!(
            "[peer]\nlisten = \"127.0.0.1:{p3}\"\n{}[peers]\nhost2 = \"127.0.0.1:{p2}\"\n",
            tls(pki.path(), "host3")
        ),
    );
    let h = hosts(&host3);
    assert_eq!(h[0]["reachable"], false);
    assert!(
        h[0]["detail"]
            .as_str()
            .unwrap()
            .contains("not in this agent's peer list"),
        "{h:?}"
    );

    // A "host1" whose certificate comes from another CA is refused during the handshake.
    let impostor = TestAgent::start(
        "host1",
        &format!(
            "[peer]\nlisten = \"127.0.0.1:{p4}\"\n{}[peers]\nhost2 = \"127.0.0.1:{p2}\"\n",
            tls(other.path(), "host1")
        ),
    );
    let h = hosts(&impostor);
    assert_eq!(h[0]["reachable"], false, "{h:?}");
    let detail = h[0]["detail"].as_str().unwrap().to_lowercase();
    assert!(
        detail.contains("certificate")
            || detail.contains("unknownca")
            || detail.contains("not trusted")
            || detail.contains("tls"),
        "{detail}"
    );
    assert!(
        host2.log().contains("peer refused") || host2.log().contains("host3"),
        "host2 logs the refusal"
    );
    let status: Value = serde_json::from_str(
        host1
            .ok(&["agent", "status", "--output", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (status["node"].as_str(), status["peers_reachable"].as_u64()),
        (Some("host1"), Some(1)),
        "{status}"
    );
}
