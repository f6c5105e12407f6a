//! What the benchmark binaries share: argument errors, exit codes, and their `main`.

use std::process::ExitCode;

use serde_json::{json, Value};

/// Runs a benchmark: `parse` gives the arguments (an empty error means "print usage"), `run`
/// does the work. Usage errors exit 2, failures 1 with one `error:` line.
pub fn main<A>(
    usage: &str,
    parse: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(&A) -> anyhow::Result<()>,
) -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The machine the numbers come from: cores, kernel, CPU model, memory.
pub fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": cpu,
        "mem_gib": (mem_kib as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
    })
}

/// [`machine`] with more fields.
pub fn machine_with(extra: Value) -> Value {
    let mut m = machine();
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m
}
