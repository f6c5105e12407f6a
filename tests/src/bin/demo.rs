//! The demo: two hosts (network namespaces on one L2 segment), an agent on each talking mTLS, a
//! stateful container with a TCP service on host1, a client talking to it the whole time, and a
//! live move to host2. Prints the move report and what the client saw; cleans up after itself.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migrate_tests::hosts::TwoHosts;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;

/// What the client saw while the container moved.
#[derive(Default)]
struct ClientLog {
    requests: u64,
    errors: u64,
    longest_ms: u128,
}

fn main() -> Result<()> {
    println!("== setting up two hosts (network namespaces, 198.18.0.0/15) with an agent on each");
    let hosts = TwoHosts::start();
    println!("{}", indent(&hosts.host1.ok(&["hosts"])));
    let bundle = TestBundle::busybox(&[
        "sh",
        "-c",
        "/bin/memhog 64 /tmp/mem & nc -ll -p 8000 -e cat & i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 100000; done",
    ]);
    bundle.add_file(
        &migrate_tests::bundle::static_program("memhog"),
        "/bin/memhog",
    );
    let ip = hosts.next_container_ip();
    let addr = ip.split('/').next().context("ip")?.to_string();
    println!("== host1: migrate run web --ip {ip}  (64 MiB of checksummed memory, a counter, a TCP echo service on :8000)");
    println!(
        "{}",
        indent(&hosts.host1.ok(&[
            "run",
            "web",
            "--bundle",
            &bundle.path().display().to_string(),
            "--ip",
            &ip
        ]))
    );
    let stream = wait_for("the echo service", Duration::from_secs(30), || {
        hosts.client_connect(&addr, 8000).ok()
    });
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    wait_for("memory filled", Duration::from_secs(60), || {
        let out = hosts.host1.cli(&["exec", "web", "--", "cat", "/tmp/mem"]);
        String::from_utf8_lossy(&out.stdout)
            .starts_with("ok ")
            .then_some(())
    });
    let before = hosts
        .host1
        .ok(&["exec", "web", "--", "sh", "-c", "cat /tmp/count /tmp/mem"]);

    println!("== a client in the root namespace sends a line every 20 ms over one TCP connection");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || -> ClientLog {
            let mut log = ClientLog::default();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let msg = format!("ping {}\n", log.requests);
                line.clear();
                let ok = writer.write_all(msg.as_bytes()).is_ok()
                    && reader.read_line(&mut line).is_ok()
                    && line == msg;
                log.requests += 1;
                if !ok {
                    log.errors += 1;
                    break;
                }
                log.longest_ms = log.longest_ms.max(t.elapsed().as_millis());
                std::thread::sleep(Duration::from_millis(20));
            }
            log
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    println!("== host1: migrate move web --to host2");
    let report = hosts.host1.cli(&["move", "web", "--to", "host2"]);
    println!("{}", indent(&String::from_utf8_lossy(&report.stdout)));
    if !report.status.success() {
        bail!(
            "the move failed: {}",
            String::from_utf8_lossy(&report.stderr).trim()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let log = client
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    println!("== the client: {} requests on one connection, {} errors, no reconnect, longest pause {} ms", log.requests, log.errors, log.longest_ms);
    let after = hosts
        .host2
        .ok(&["exec", "web", "--", "sh", "-c", "cat /tmp/count /tmp/mem"]);
    println!("== state before (host1) and after (host2): counter, then memory checksum");
    println!(
        "   before: {}",
        before.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!(
        "   after:  {}",
        after.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!("== host1 ps:\n{}", indent(&hosts.host1.ok(&["ps"])));
    println!("== host2 ps:\n{}", indent(&hosts.host2.ok(&["ps"])));
    if log.errors > 0 {
        bail!("the client saw errors during the move");
    }
    println!("== done; removing hosts, agents and containers");
    Ok(())
}

fn indent(s: &str) -> String {
    s.trim_end()
        .lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
