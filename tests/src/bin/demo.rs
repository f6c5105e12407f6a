//! The demo: runs a busybox container with the embedded runtime and shows it isolated.

use std::time::Duration;

use anyhow::{Context, Result};
use migrate_tests::rt::read_all;
use migrate_tests::{TestBundle, TestRuntime};
use runtime::ExecOpts;
use serde_json::json;

fn main() -> Result<()> {
    let t = TestRuntime::new();
    let mut bundle = TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done",
    ]);
    bundle.edit(|s| {
        s["hostname"] = json!("demo-box");
        s["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 32}, "devices": [{"allow": false, "access": "rwm"}]});
    });
    println!(
        "== bundle {} (busybox rootfs, overlay on top)",
        bundle.path().display()
    );
    let (c, _stdio) = t.run("demo", bundle.path());
    println!(
        "== container 'demo' is {}; its init is host PID {}",
        c.status(),
        c.pid()
    );
    let show = |title: &str, cmd: &str| -> Result<()> {
        let (p, mut io) = c
            .exec(ExecOpts::new(["sh", "-c", cmd]))
            .context("exec in container")?;
        let out = read_all(io.stdout.take().context("stdout")?, Duration::from_secs(10));
        p.wait()?;
        println!(
            "-- {title}\n{}",
            out.trim_end()
                .lines()
                .map(|l| format!("   {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    };
    show(
        "inside: PID of init, hostname",
        "echo \"pid of init: $(cut -d' ' -f1 /proc/1/stat)\"; echo \"hostname: $(hostname)\"",
    )?;
    show("inside: every process it can see", "ps -o pid,args")?;
    show(
        "inside: network interfaces (own network namespace)",
        "ip -o link | cut -d: -f2",
    )?;
    let stats = c.stats()?;
    println!(
        "-- host: cgroup {} memory {} KiB used of {} KiB limit, {} processes (limit {})",
        c.persisted().cgroup_path,
        stats.memory_usage / 1024,
        stats.memory_limit.unwrap_or(0) / 1024,
        stats.pids_current,
        stats
            .pids_limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into())
    );
    let count = || {
        std::fs::read_to_string(c.upper_dir().join("tmp/count"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "-- host: the container's counter (its writes land in its overlay upper dir): {}",
        count()
    );
    c.pause()?;
    let paused = count();
    std::thread::sleep(Duration::from_millis(500));
    println!("-- paused: counter {} -> {} after 0.5 s", paused, count());
    c.resume()?;
    std::thread::sleep(Duration::from_millis(500));
    println!("-- resumed: counter {}", count());
    let images = tempfile::Builder::new()
        .prefix("migrate-demo-")
        .tempdir_in("/run")?;
    let done = c.checkpoint(images.path(), runtime::CheckpointOpts::default())?;
    let at_dump = count();
    println!(
        "-- checkpointed with CRIU in {} ms (frozen {} ms) at counter {at_dump}; the container is {}",
        done.dump_time.as_millis(),
        done.frozen.as_millis(),
        c.status()
    );
    c.delete(false)?;
    let (c, _stdio, restored) =
        t.rt.restore(images.path(), "demo", runtime::RestoreOpts::default())?;
    std::thread::sleep(Duration::from_millis(500));
    let count = || {
        std::fs::read_to_string(c.upper_dir().join("tmp/count"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    println!(
        "-- restored in {} ms as host PID {}: counter went on from {at_dump} to {}",
        restored.restore_time.as_millis(),
        c.pid(),
        count()
    );
    let dirs = c.cgroup().dirs();
    c.delete(true)?;
    let left = dirs.iter().filter(|d| d.exists()).count();
    println!("== deleted: {left} cgroup directories and no state left behind");
    Ok(())
}
