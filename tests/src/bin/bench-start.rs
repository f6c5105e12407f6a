//! Start-latency benchmark (issue 2): a `/bin/true` container, create + start + wait + delete,
//! with the embedded runtime (overlay and plain rootfs) side by side with `runc run` on the same
//! bundle, interleaved in the same process so machine noise hits every variant alike.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p migrate-tests --bin bench-start -- [--runs N] [--warmup N] [--json] [--runc PATH]
//! ```
//!
//! Results go to stdout (a table, or one JSON object with `--json`), progress to stderr.
//! Every container, cgroup, temp dir and runc state it made is removed on the way out, also
//! after a failure or Ctrl-C.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migrate_tests::rt::chain;
use migrate_tests::{TestBundle, TestRuntime};
use runtime::{CreateOpts, RootfsMode, Runtime, Stdio};
use serde_json::{json, Value};

const USAGE: &str = "usage: bench-start [--runs N] [--warmup N] [--json] [--runc PATH]";

struct Args {
    runs: usize,
    warmup: usize,
    json: bool,
    runc: PathBuf,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        runs: 50,
        warmup: 3,
        json: false,
        runc: default_runc(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => {
                args.runs = value("--runs")?
                    .parse()
                    .map_err(|_| "--runs needs a number".to_string())?
            }
            "--warmup" => {
                args.warmup = value("--warmup")?
                    .parse()
                    .map_err(|_| "--warmup needs a number".to_string())?
            }
            "--runc" => args.runc = PathBuf::from(value("--runc")?),
            "--json" => args.json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(args)
}

fn default_runc() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runc"))
}

fn main() -> ExitCode {
    migrate_tests::bench::main(USAGE, parse_args, run)
}

/// The three things measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    OursOverlay,
    OursPlain,
    Runc,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::OursOverlay, Variant::OursPlain, Variant::Runc];

    fn name(self) -> &'static str {
        match self {
            Variant::OursOverlay => "ours-overlay",
            Variant::OursPlain => "ours-plain",
            Variant::Runc => "runc",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Variant::OursOverlay => "ours_overlay",
            Variant::OursPlain => "ours_plain",
            Variant::Runc => "runc",
        }
    }
}

/// Phases of one run of ours, in order.
const PHASES: [&str; 4] = ["create", "start", "wait", "delete"];

/// Timings of one run: the total, and for ours the phases.
struct Sample {
    total: Duration,
    phases: Option<[Duration; 4]>,
}

fn run(args: &Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-start needs root (it creates namespaces, mounts and cgroups)");
    }
    let helper = runtime::process::spawn::locate_helper()
        .context("the runtime's helper must sit next to this binary; run `cargo build --release --workspace --bins` first")?;
    let runc_version = Command::new(&args.runc)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "failed to run {} (install runc or pass --runc PATH)",
                args.runc.display()
            )
        })?;
    let runc_version = String::from_utf8_lossy(&runc_version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    runtime::syscall::signals::catch_interrupts().context("install signal handlers")?;

    let machine = machine_info(&runc_version, &helper);
    // Declaration order is drop order in reverse: runc state, then our containers and cgroups,
    // then the bundle they all use.
    let bundle = TestBundle::busybox(&["true"]);
    let ours = TestRuntime::new();
    let runc = RuncRoot::new(&args.runc)?;

    eprintln!(
        "bench-start: bundle {}, {} warm-up + {} measured runs of each variant",
        bundle.path().display(),
        args.warmup,
        args.runs
    );
    let mut samples: Vec<Vec<Sample>> = Variant::ALL
        .iter()
        .map(|_| Vec::with_capacity(args.runs))
        .collect();
    for i in 0..args.warmup + args.runs {
        // Rotate the order every round so no variant always runs right after another.
        for k in 0..Variant::ALL.len() {
            if runtime::syscall::signals::interrupted() {
                bail!("interrupted; cleaned up");
            }
            let v = Variant::ALL[(i + k) % Variant::ALL.len()];
            let sample = match v {
                Variant::OursOverlay => run_ours(
                    &ours.rt,
                    &format!("bench-ov-{i}"),
                    bundle.path(),
                    RootfsMode::Overlay,
                ),
                Variant::OursPlain => run_ours(
                    &ours.rt,
                    &format!("bench-pl-{i}"),
                    bundle.path(),
                    RootfsMode::Plain,
                ),
                Variant::Runc => runc.run(
                    &format!("bench-runc-{}-{i}", std::process::id()),
                    bundle.path(),
                ),
            }
            .with_context(|| format!("{} run {i}", v.name()))?;
            if i >= args.warmup {
                samples[v as usize].push(sample);
            }
        }
        if (i + 1) % 10 == 0 {
            eprintln!(
                "bench-start: {} of {} rounds",
                i + 1,
                args.warmup + args.runs
            );
        }
    }

    let report = Report::new(args, machine, &samples);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report.json()).expect("report serializes")
        );
    } else {
        report.print_table();
    }
    Ok(())
}

/// `/dev/null` three times, as the container's stdio (what `runc run` gets from us too).
fn null_stdio() -> Result<Stdio> {
    let open = || -> Result<OwnedFd> {
        Ok(File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("open /dev/null")?
            .into())
    };
    Ok(Stdio::Fds {
        stdin: open()?,
        stdout: open()?,
        stderr: open()?,
    })
}

/// One create + start + wait + delete with the embedded runtime.
fn run_ours(rt: &Runtime, id: &str, bundle: &Path, rootfs: RootfsMode) -> Result<Sample> {
    let t0 = Instant::now();
    let stdio = null_stdio()?;
    let (c, _io) = rt
        .create(
            id,
            bundle,
            CreateOpts {
                rootfs,
                stdio,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("create: {}", chain(&e)))?;
    let t1 = Instant::now();
    // On failure past this point the container stays behind for TestRuntime's Drop to remove.
    c.start()
        .map_err(|e| anyhow::anyhow!("start: {}", chain(&e)))?;
    let t2 = Instant::now();
    let code = c
        .wait()
        .map_err(|e| anyhow::anyhow!("wait: {}", chain(&e)))?;
    let t3 = Instant::now();
    c.delete(false)
        .map_err(|e| anyhow::anyhow!("delete: {}", chain(&e)))?;
    let t4 = Instant::now();
    if code != 0 {
        bail!("container {id} exited with {code}, expected 0");
    }
    Ok(Sample {
        total: t4 - t0,
        phases: Some([t1 - t0, t2 - t1, t3 - t2, t4 - t3]),
    })
}

/// A private runc state root; its Drop force-deletes whatever runc left there.
struct RuncRoot {
    runc: PathBuf,
    dir: tempfile::TempDir,
}

impl RuncRoot {
    fn new(runc: &Path) -> Result<RuncRoot> {
        let dir = tempfile::Builder::new()
            .prefix("migrate-bench-runc-")
            .tempdir_in("/run")
            .context("create runc state root")?;
        Ok(RuncRoot {
            runc: runc.to_path_buf(),
            dir,
        })
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root").arg(self.dir.path());
        cmd
    }

    /// One `runc run` (create + start + wait + delete), stdio on /dev/null.
    fn run(&self, id: &str, bundle: &Path) -> Result<Sample> {
        let t0 = Instant::now();
        let status = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null())
            .status()
            .with_context(|| format!("start {}", self.runc.display()))?;
        let total = t0.elapsed();
        if !status.success() {
            self.force_delete(id);
            bail!(
                "runc run {id} failed ({status}): {}",
                self.diagnose(bundle, id)
            );
        }
        Ok(Sample {
            total,
            phases: None,
        })
    }

    /// After a failed run: runs once more, untimed, with output captured, for the message.
    fn diagnose(&self, bundle: &Path, id: &str) -> String {
        let id = format!("{id}-diag");
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(ProcStdio::null())
            .output();
        self.force_delete(&id);
        match out {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if text.is_empty() {
                    format!("a second try gave {} and no message", out.status)
                } else {
                    text
                }
            }
            Err(e) => format!("a second try did not start: {e}"),
        }
    }

    fn force_delete(&self, id: &str) {
        let _ = self
            .cmd()
            .args(["delete", "--force", id])
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null())
            .status();
    }
}

impl Drop for RuncRoot {
    fn drop(&mut self) {
        let Ok(out) = self.cmd().args(["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            eprintln!("cleanup: runc delete --force {id}");
            self.force_delete(id);
        }
    }
}

/// Where the numbers come from.
fn machine_info(runc_version: &str, helper: &Path) -> Value {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let cgroups = if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup") && l.contains(" cgroup2 "))
    {
        "v2"
    } else if mounts.lines().any(|l| l.contains(" cgroup2 ")) {
        "v1 (hybrid, with the cgroup2 unified mount)"
    } else {
        "v1"
    };
    migrate_tests::bench::machine_with(json!({
        "cgroups": cgroups,
        "runc": runc_version,
        "helper": helper.display().to_string(),
    }))
}

/// Median, p10, p90 and min of a set of durations, in ms.
struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
    min: f64,
}

impl Stats {
    fn of(values: impl IntoIterator<Item = Duration>) -> Stats {
        let mut ms: Vec<f64> = values.into_iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Stats {
            median: percentile(&ms, 0.5),
            p10: percentile(&ms, 0.1),
            p90: percentile(&ms, 0.9),
            min: ms[0],
        }
    }

    fn json(&self) -> Value {
        json!({"median_ms": round3(self.median), "p10_ms": round3(self.p10), "p90_ms": round3(self.p90), "min_ms": round3(self.min)})
    }
}

/// Linear interpolation between the closest ranks of a sorted, non-empty slice.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Report<'a> {
    args: &'a Args,
    machine: Value,
    samples: &'a [Vec<Sample>],
    totals: Vec<Stats>,
}

impl<'a> Report<'a> {
    fn new(args: &'a Args, machine: Value, samples: &'a [Vec<Sample>]) -> Report<'a> {
        let totals = samples
            .iter()
            .map(|s| Stats::of(s.iter().map(|x| x.total)))
            .collect();
        Report {
            args,
            machine,
            samples,
            totals,
        }
    }

    fn ratio(&self, v: Variant) -> f64 {
        self.totals[v as usize].median / self.totals[Variant::Runc as usize].median
    }

    fn phase_stats(&self, v: Variant) -> Option<Vec<Stats>> {
        let runs = &self.samples[v as usize];
        runs.first()?.phases?;
        Some(
            (0..PHASES.len())
                .map(|p| Stats::of(runs.iter().filter_map(|s| s.phases.map(|ph| ph[p]))))
                .collect(),
        )
    }

    fn print_table(&self) {
        let m = &self.machine;
        println!(
            "machine: {} CPUs ({}), kernel {}, {} GiB RAM, cgroups {}, {}",
            m["nproc"],
            m["cpu"].as_str().unwrap_or(""),
            m["kernel"].as_str().unwrap_or(""),
            m["mem_gib"],
            m["cgroups"].as_str().unwrap_or(""),
            m["runc"].as_str().unwrap_or("")
        );
        println!(
            "start latency of a /bin/true container (create + start + wait + delete): {} runs of each variant, interleaved, after {} warm-up runs",
            self.args.runs, self.args.warmup
        );
        println!();
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>10}",
            "variant", "median ms", "p10 ms", "p90 ms", "min ms"
        );
        for v in Variant::ALL {
            let s = &self.totals[v as usize];
            println!(
                "{:<14} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                v.name(),
                s.median,
                s.p10,
                s.p90,
                s.min
            );
        }
        println!();
        for v in [Variant::OursOverlay, Variant::OursPlain] {
            println!("ratio {} / runc (median): {:.2}", v.name(), self.ratio(v));
        }
        println!();
        println!("phases of ours, median ms (p90):");
        println!(
            "{:<14} {:>14} {:>14} {:>14} {:>14}",
            "variant", PHASES[0], PHASES[1], PHASES[2], PHASES[3]
        );
        for v in [Variant::OursOverlay, Variant::OursPlain] {
            if let Some(ph) = self.phase_stats(v) {
                let cells: Vec<String> = ph
                    .iter()
                    .map(|s| format!("{:.2} ({:.2})", s.median, s.p90))
                    .collect();
                println!(
                    "{:<14} {:>14} {:>14} {:>14} {:>14}",
                    v.name(),
                    cells[0],
                    cells[1],
                    cells[2],
                    cells[3]
                );
            }
        }
    }

    fn json(&self) -> Value {
        let mut results = serde_json::Map::new();
        for v in Variant::ALL {
            let mut r = self.totals[v as usize].json();
            if let Some(ph) = self.phase_stats(v) {
                r["phases"] = PHASES
                    .iter()
                    .zip(&ph)
                    .map(|(name, s)| (name.to_string(), s.json()))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            r["samples_ms"] = self.samples[v as usize]
                .iter()
                .map(|s| round3(s.total.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .into();
            results.insert(v.key().to_string(), r);
        }
        json!({
            "benchmark": "start-latency",
            "what": "create + start + wait + delete of a /bin/true busybox container",
            "runs": self.args.runs,
            "warmup": self.args.warmup,
            "machine": self.machine,
            "results": results,
            "ratio_median": {
                "ours_overlay_vs_runc": round3(self.ratio(Variant::OursOverlay)),
                "ours_plain_vs_runc": round3(self.ratio(Variant::OursPlain)),
            },
        })
    }
}
