//! Agent overhead benchmark (issue 4): `migrate run` + `migrate rm -f` of a `/bin/true`
//! container through a real agent and CLI, next to the runtime's own create + start + wait +
//! delete and `runc run` on the same bundle, interleaved in one run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/bench-agent [--runs N]
//! ```

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use migrate_tests::agent::TestAgent;
use migrate_tests::{TestBundle, TestRuntime};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut runs = 30usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a value")?
                    .parse()
                    .context("--runs needs a number")?
            }
            other => bail!("unknown argument {other}; usage: bench-agent [--runs N]"),
        }
    }
    runtime::syscall::signals::catch_interrupts().context("install signal handlers")?;
    let bundle = TestBundle::busybox(&["true"]);
    let agent = TestAgent::start("bench", "");
    let rt = TestRuntime::new();
    let runc_root = tempfile::Builder::new()
        .prefix("bench-agent-runc-")
        .tempdir_in("/run")?;
    let (mut through_agent, mut library, mut runc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        if runtime::syscall::signals::interrupted() {
            bail!("interrupted");
        }
        let warm = i >= 3;
        let id = format!("b{i}");
        let t = Instant::now();
        agent.ok(&["run", &id, "--bundle", &bundle.path().display().to_string()]);
        agent.ok(&["rm", "--force", &id]);
        let a = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let (c, _io) = rt.run(&id, bundle.path());
        c.wait().context("wait")?;
        c.delete(false).context("delete")?;
        let l = t.elapsed().as_secs_f64() * 1000.0;
        let r = run_runc(runc_root.path(), bundle.path(), &id)?;
        if warm {
            through_agent.push(a);
            library.push(l);
            runc.push(r);
        }
    }
    let (a, l, r) = (
        median(&mut through_agent),
        median(&mut library),
        median(&mut runc),
    );
    println!(
        "machine: {} cores, kernel {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel()
    );
    println!("{runs} runs each, interleaved; median ms");
    println!("{:<44} {:>9} {:>9}", "variant", "median", "vs runc");
    println!(
        "{:<44} {:>9.2} {:>9.2}",
        "migrate run + migrate rm -f (agent + CLI)",
        a,
        a / r
    );
    println!(
        "{:<44} {:>9.2} {:>9.2}",
        "runtime create+start+wait+delete (library)",
        l,
        l / r
    );
    println!("{:<44} {:>9.2} {:>9.2}", "runc run", r, 1.0);
    println!(
        "agent overhead over the library: {:.2} ms ({:.1}x)",
        a - l,
        a / l
    );
    Ok(())
}

fn run_runc(root: &Path, bundle: &Path, id: &str) -> Result<f64> {
    let t = Instant::now();
    let status = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run runc (installed by deploy/install.sh)")?;
    if !status.success() {
        bail!("runc run failed: {status}");
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
