//! Checkpoint/restore benchmark (issue 3): a container holding 64 MiB, 256 MiB or 1 GiB of
//! resident memory (`memhog`) is checkpointed and restored with the embedded runtime, side by
//! side with `runc checkpoint` / `runc restore` of an identical bundle, interleaved in the same
//! process, images on a private tmpfs.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p migrate-tests --bin bench-checkpoint -- [--runs N] [--warmup N] [--sizes 64,256,1024] [--json] [--runc PATH] [--logs DIR]
//! ```
//!
//! `--logs DIR` keeps CRIU's dump.log and restore.log of every run in `DIR/<variant>-<MiB>-<run>`.
//!
//! Every restore is checked before it counts: the restored `memhog` must verify its whole
//! memory again (two more rounds) with the checksum it had before the dump.
//!
//! Results go to stdout (a table, or one JSON object with `--json`), progress to stderr.
//! Every container, cgroup, runc state, image dir and mount it made is removed on the way out,
//! also after a failure or Ctrl-C.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use migrate_tests::bench::{
    check_interrupted, criu_log_total, machine_line, median, ms, read_log, runc_path, DumpLog,
    MemStatus,
};
use migrate_tests::rt::chain;
use migrate_tests::{TestBundle, TestRuntime};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use runtime::criu::Criu;
use runtime::{CheckpointOpts, CreateOpts, RestoreOpts, Runtime};
use serde_json::{json, Value};

const USAGE: &str =
    "usage: bench-checkpoint [--runs N] [--warmup N] [--sizes 64,256,1024] [--json] [--runc PATH] [--logs DIR]";

/// How long memhog may take to fill its memory, or to verify it again after a restore.
const WAIT: Duration = Duration::from_secs(180);

struct Args {
    runs: usize,
    warmup: usize,
    sizes: Vec<u64>,
    json: bool,
    runc: PathBuf,
    logs: Option<PathBuf>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        runs: 3,
        warmup: 1,
        sizes: vec![64, 256, 1024],
        json: false,
        runc: PathBuf::from("/usr/sbin/runc"),
        logs: None,
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
            "--sizes" => {
                args.sizes = value("--sizes")?
                    .split(',')
                    .map(|s| s.trim().parse::<u64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| "--sizes needs MiB numbers separated by commas".to_string())?
            }
            "--runc" => args.runc = PathBuf::from(value("--runc")?),
            "--logs" => args.logs = Some(PathBuf::from(value("--logs")?)),
            "--json" => args.json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err("--sizes needs sizes of at least 1 MiB".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    migrate_tests::bench::main(USAGE, parse_args, run)
}

/// What one checkpoint + restore of one variant measured.
#[derive(Default, Clone)]
struct Sample {
    /// Wall time of `checkpoint()` / `runc checkpoint`.
    checkpoint: Duration,
    /// Ours: the runtime's `frozen` (pre-dump until the tree is killed). runc: `None`.
    frozen: Option<Duration>,
    /// Ours: the runtime's `dump_time`. runc: `None`.
    dump_time: Option<Duration>,
    /// Ours: from the end of the runtime's post-dump hook until `checkpoint()` returned.
    after_post_dump: Option<Duration>,
    /// Ours: deleting the checkpointed (stopped) container, which `runc checkpoint` does inside.
    delete_after: Option<Duration>,
    /// Wall time of `restore()` / `runc restore -d`.
    restore: Duration,
    /// From CRIU's dump.log, the same way for both.
    dump_log: DumpLog,
    /// From CRIU's restore.log: its first to last timestamp.
    restore_log: Option<Duration>,
    /// Size of the image dir.
    image_bytes: u64,
}

/// The variants compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Ours,
    Runc,
}

impl Variant {
    const ALL: [Variant; 2] = [Variant::Ours, Variant::Runc];

    fn name(self) -> &'static str {
        match self {
            Variant::Ours => "ours",
            Variant::Runc => "runc",
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-checkpoint needs root (it creates namespaces, mounts and cgroups)");
    }
    let helper = runtime::process::spawn::locate_helper().context(
        "the runtime's helper must sit next to this binary; run `cargo build --release --workspace --bins` first",
    )?;
    let criu = Criu::locate().map_err(|e| anyhow!("{}", chain(&e)))?;
    let criu_version = criu.version().map_err(|e| anyhow!("{}", chain(&e)))?;
    // runc finds `criu` through PATH: put the directory of the CRIU we use first.
    let runc_path = runc_path(&criu)?;
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
    let machine = machine_info(&runc_version, &format!("{criu_version}"), criu.path());
    let memhog = migrate_tests::bundle::static_program("memhog");

    // Drop order is the reverse: runc's containers, ours, the image tmpfs, then the bundles.
    let mut ours_bundle = memhog_bundle(&memhog);
    let mut runc_bundle = memhog_bundle(&memhog);
    let images = Tmpfs::new()?;
    let ours = TestRuntime::new();
    let runc = Runc::new(&args.runc, runc_path)?;

    eprintln!(
        "bench-checkpoint: sizes {:?} MiB, {} warm-up + {} runs each, images on tmpfs {}",
        args.sizes,
        args.warmup,
        args.runs,
        images.path().display()
    );
    let mut one = |v: Variant, mib: u64, tag: &str| -> Result<Sample> {
        check_interrupted()?;
        let name = format!("{}-{mib}-{tag}", v.name());
        let dir = images.path().join(&name);
        let sample = match v {
            Variant::Ours => run_ours(&ours.rt, &mut ours_bundle, mib, tag, &dir),
            Variant::Runc => runc.run(&mut runc_bundle, mib, tag, &dir),
        }
        .with_context(|| format!("{} {mib} MiB run {tag}", v.name()));
        if let Some(logs) = &args.logs {
            keep_logs(&dir, &logs.join(&name))?;
        }
        // The images are not needed past the run; free the tmpfs now.
        let _ = fs::remove_dir_all(&dir);
        let sample = sample?;
        eprintln!(
            "bench-checkpoint: {mib} MiB run {tag} {}: checkpoint {:.0} ms, frozen {:.0} ms, restore {:.0} ms",
            v.name(),
            ms(sample.checkpoint),
            ms(sample.frozen.unwrap_or(sample.checkpoint)),
            ms(sample.restore)
        );
        Ok(sample)
    };
    // Untimed: the first CRIU, tar and runc runs of a process pay for cold caches.
    for w in 0..args.warmup {
        for v in Variant::ALL {
            one(v, args.sizes[0], &format!("warmup{w}"))?;
        }
    }
    let mut results = Vec::new();
    for (si, &mib) in args.sizes.iter().enumerate() {
        let mut samples = [Vec::new(), Vec::new()];
        for i in 0..args.runs {
            // Alternate who goes first, so neither always inherits the other's freed memory.
            for k in 0..2 {
                let v = Variant::ALL[(i + si + k) % 2];
                samples[v as usize].push(one(v, mib, &i.to_string())?);
            }
        }
        results.push((mib, samples));
    }

    let report = Report {
        args,
        machine,
        helper,
        results,
    };
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

/// Copies CRIU's logs of a run out of the image dir (`--logs`).
fn keep_logs(images: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for name in ["dump.log", "restore.log"] {
        let from = images.join(name);
        if from.is_file() {
            fs::copy(&from, to.join(name))
                .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// A busybox bundle with the static memhog at /bin/memhog (args set per run).
fn memhog_bundle(memhog: &Path) -> TestBundle {
    let b = TestBundle::busybox(&["/bin/memhog", "1", "/tmp/mem"]);
    b.add_file(memhog, "/bin/memhog");
    b
}

fn set_args(bundle: &mut TestBundle, mib: u64, status: &str) {
    bundle.edit(|s| s["process"]["args"] = json!(["/bin/memhog", mib.to_string(), status]));
}

/// Polls the status file until `done` accepts it (or memhog reports corruption).
fn wait_status(
    path: &Path,
    what: &str,
    mut done: impl FnMut(&MemStatus) -> bool,
) -> Result<MemStatus> {
    let deadline = Instant::now() + WAIT;
    loop {
        check_interrupted()?;
        if let Some(s) = MemStatus::read(path) {
            if !s.ok {
                bail!("memhog reports {s:?} in {} ({what})", path.display());
            }
            if done(&s) {
                return Ok(s);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {WAIT:?} waiting for {what} ({}: {:?})",
                path.display(),
                MemStatus::read(path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The restored memhog must complete two more full verification rounds with the same sum.
fn verify_restored(path: &Path, at_dump: &MemStatus) -> Result<()> {
    let s = wait_status(path, "the restored memhog to verify its memory", |s| {
        s.round >= at_dump.round + 2
    })?;
    if s.checksum != at_dump.checksum {
        bail!(
            "memory changed across checkpoint/restore: checksum {} before, {} after",
            at_dump.checksum,
            s.checksum
        );
    }
    Ok(())
}

/// Reads the status memhog wrote last before the dump and checks it against the filled one.
fn status_at_dump(path: &Path, filled: &MemStatus) -> Result<MemStatus> {
    let s = MemStatus::read(path).with_context(|| format!("read {} after dump", path.display()))?;
    if !s.ok || s.checksum != filled.checksum {
        bail!("memhog status before the restore is {s:?}, filled with {filled:?}");
    }
    Ok(s)
}

/// One checkpoint + restore with the embedded runtime.
fn run_ours(
    rt: &Runtime,
    bundle: &mut TestBundle,
    mib: u64,
    tag: &str,
    dir: &Path,
) -> Result<Sample> {
    let e = |what: &'static str| move |e: runtime::Error| anyhow!("{what}: {}", chain(&e));
    set_args(bundle, mib, "/tmp/mem");
    let id = format!("ck-{mib}-{tag}");
    // On failure the containers stay behind for TestRuntime's Drop to remove.
    let (c, _io) = rt
        .create(&id, bundle.path(), CreateOpts::default())
        .map_err(e("create"))?;
    c.start().map_err(e("start"))?;
    let status = c.upper_dir().join("tmp/mem");
    let filled = wait_status(&status, "memhog to fill its memory", |s| s.round >= 1)?;

    let t = Instant::now();
    let mut post_dump_at = None;
    let done = c
        .checkpoint_with(
            dir,
            CheckpointOpts {
                leave_running: false,
                ..Default::default()
            },
            |_| {
                post_dump_at = Some(Instant::now());
                Ok(())
            },
        )
        .map_err(e("checkpoint"))?;
    let checkpoint = t.elapsed();
    let after_post_dump = post_dump_at.map(|p| p.elapsed());
    let at_dump = status_at_dump(&status, &filled)?;
    let t = Instant::now();
    c.delete(false)
        .map_err(e("delete the checkpointed container"))?;
    let delete_after = t.elapsed();

    let t = Instant::now();
    let (r, _rio, _) = rt
        .restore(dir, &format!("rs-{mib}-{tag}"), RestoreOpts::default())
        .map_err(e("restore"))?;
    let restore = t.elapsed();
    verify_restored(&r.upper_dir().join("tmp/mem"), &at_dump)?;
    r.delete(true).map_err(e("delete the restored container"))?;
    Ok(Sample {
        checkpoint,
        frozen: Some(done.frozen),
        dump_time: Some(done.dump_time),
        after_post_dump,
        delete_after: Some(delete_after),
        restore,
        dump_log: DumpLog::parse(&read_log(&dir.join("dump.log"))),
        restore_log: criu_log_total(&read_log(&dir.join("restore.log"))),
        image_bytes: dir_size(dir),
    })
}

/// A private runc state root and log; its Drop force-deletes whatever runc left there.
struct Runc {
    runc: PathBuf,
    path_env: std::ffi::OsString,
    dir: tempfile::TempDir,
}

impl Runc {
    fn new(runc: &Path, path_env: std::ffi::OsString) -> Result<Runc> {
        let dir = tempfile::Builder::new()
            .prefix("migrate-bench-runc-")
            .tempdir_in("/run")
            .context("create runc state root")?;
        fs::create_dir(dir.path().join("state")).context("create runc state root")?;
        Ok(Runc {
            runc: runc.to_path_buf(),
            path_env,
            dir,
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("runc.log")
    }

    /// `runc --root R --log L <args>`, stdio on /dev/null, with CRIU's directory first in PATH.
    fn exec(&self, args: &[&std::ffi::OsStr]) -> Result<()> {
        let _ = fs::remove_file(self.log());
        let status = Command::new(&self.runc)
            .env("PATH", &self.path_env)
            .arg("--root")
            .arg(self.dir.path().join("state"))
            .arg("--log")
            .arg(self.log())
            .args(args)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null())
            .status()
            .with_context(|| format!("start {}", self.runc.display()))?;
        if !status.success() {
            let log = fs::read_to_string(self.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("runc {:?} failed ({status}): {}", args, tail.join(" | "));
        }
        Ok(())
    }

    fn force_delete(&self, id: &str) {
        let _ = self.exec(&["delete".as_ref(), "--force".as_ref(), id.as_ref()]);
    }

    /// One checkpoint + restore with runc, on the bundle's rootfs in place.
    fn run(&self, bundle: &mut TestBundle, mib: u64, tag: &str, dir: &Path) -> Result<Sample> {
        let name = format!("mem-{mib}-{tag}");
        set_args(bundle, mib, &format!("/tmp/{name}"));
        let status = bundle.rootfs().join("tmp").join(&name);
        let _ = fs::remove_file(&status);
        let id = format!("bench-ck-{}-{mib}-{tag}", std::process::id());
        let id2 = format!("{id}-r");
        let result = self.run_ids(bundle.path(), &id, &id2, &status, dir);
        self.force_delete(&id2);
        self.force_delete(&id);
        let _ = fs::remove_file(&status);
        result
    }

    fn run_ids(
        &self,
        bundle: &Path,
        id: &str,
        id2: &str,
        status: &Path,
        dir: &Path,
    ) -> Result<Sample> {
        self.exec(&[
            "run".as_ref(),
            "-d".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id.as_ref(),
        ])?;
        let filled = wait_status(status, "memhog to fill its memory", |s| s.round >= 1)?;

        let t = Instant::now();
        self.exec(&[
            "checkpoint".as_ref(),
            "--image-path".as_ref(),
            dir.as_os_str(),
            id.as_ref(),
        ])?;
        let checkpoint = t.elapsed();
        let at_dump = status_at_dump(status, &filled)?;

        let t = Instant::now();
        self.exec(&[
            "restore".as_ref(),
            "-d".as_ref(),
            "--image-path".as_ref(),
            dir.as_os_str(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id2.as_ref(),
        ])?;
        let restore = t.elapsed();
        verify_restored(status, &at_dump)?;
        Ok(Sample {
            checkpoint,
            frozen: None,
            dump_time: None,
            after_post_dump: None,
            delete_after: None,
            restore,
            dump_log: DumpLog::parse(&read_log(&dir.join("dump.log"))),
            restore_log: criu_log_total(&read_log(&dir.join("restore.log"))),
            image_bytes: dir_size(dir),
        })
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let Ok(out) = Command::new(&self.runc)
            .arg("--root")
            .arg(self.dir.path().join("state"))
            .args(["list", "-q"])
            .stderr(ProcStdio::null())
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            eprintln!("cleanup: runc delete --force {id}");
            self.force_delete(id);
        }
    }
}

/// A tmpfs mounted on a temp dir under /run for the images; unmounted on Drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new() -> Result<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("migrate-bench-images-")
            .tempdir_in("/run")
            .context("create image mount point")?;
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )
        .with_context(|| format!("mount tmpfs on {}", dir.path().display()))?;
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(self.dir.path(), MntFlags::MNT_DETACH) {
            eprintln!("cleanup: unmount {}: {e}", self.dir.path().display());
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Where the numbers come from.
fn machine_info(runc_version: &str, criu_version: &str, criu: &Path) -> Value {
    migrate_tests::bench::machine_with(json!({
        "runc": runc_version,
        "criu": format!("{criu_version} ({})", criu.display()),
    }))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Reads one number (ms or MiB) off a sample.
type Reader = fn(&Sample) -> Option<f64>;

/// The rows of the table: name, and how to read a sample of ours and of runc.
type Metric = (&'static str, Reader, Reader);

const METRICS: [Metric; 7] = [
    (
        "checkpoint (wall)",
        |s| Some(ms(s.checkpoint)),
        |s| Some(ms(s.checkpoint)),
    ),
    (
        "frozen (ours: runtime; runc: ckpt wall)",
        |s| s.frozen.map(ms),
        |s| Some(ms(s.checkpoint)),
    ),
    (
        "frozen (CRIU log: freeze -> kill)",
        |s| s.dump_log.frozen.map(ms),
        |s| s.dump_log.frozen.map(ms),
    ),
    (
        "CRIU dump (log first -> last)",
        |s| s.dump_log.total.map(ms),
        |s| s.dump_log.total.map(ms),
    ),
    (
        "restore (wall)",
        |s| Some(ms(s.restore)),
        |s| Some(ms(s.restore)),
    ),
    (
        "CRIU restore (log first -> last)",
        |s| s.restore_log.map(ms),
        |s| s.restore_log.map(ms),
    ),
    (
        "images (MiB)",
        |s| Some(s.image_bytes as f64 / (1 << 20) as f64),
        |s| Some(s.image_bytes as f64 / (1 << 20) as f64),
    ),
];

/// Details of ours only: the pieces of its wall times.
const OURS_ONLY: [(&str, Reader); 4] = [
    ("runtime dump_time", |s| s.dump_time.map(ms)),
    ("post-dump hook done -> checkpoint() returns", |s| {
        s.after_post_dump.map(ms)
    }),
    ("post-dump hook (CRIU log)", |s| {
        s.dump_log.post_dump.map(ms)
    }),
    ("delete of the checkpointed container", |s| {
        s.delete_after.map(ms)
    }),
];

struct Report<'a> {
    args: &'a Args,
    machine: Value,
    helper: PathBuf,
    results: Vec<(u64, [Vec<Sample>; 2])>,
}

impl Report<'_> {
    fn med(samples: &[Sample], f: Reader) -> Option<f64> {
        median(samples.iter().filter_map(f).collect())
    }

    fn print_table(&self) {
        println!("{}", machine_line(&self.machine));
        println!(
            "checkpoint (leave_running=false) + restore of a memhog container, images on tmpfs; {} runs per size, interleaved, after {} warm-up run(s) at {} MiB; medians in ms",
            self.args.runs, self.args.warmup, self.args.sizes[0]
        );
        let cell = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
        for (mib, samples) in &self.results {
            let (o, r) = (&samples[0], &samples[1]);
            println!();
            println!("{mib} MiB ({} + {} runs)", o.len(), r.len());
            println!(
                "{:<50} {:>10} {:>10} {:>10}",
                "", "ours", "runc", "ours/runc"
            );
            for (name, fo, fr) in METRICS {
                let (a, b) = (Self::med(o, fo), Self::med(r, fr));
                let ratio = a.zip(b).map(|(a, b)| format!("{:.2}", a / b));
                println!(
                    "{:<50} {:>10} {:>10} {:>10}",
                    name,
                    cell(a),
                    cell(b),
                    ratio.unwrap_or_else(|| "-".into())
                );
            }
            for (name, f) in OURS_ONLY {
                println!(
                    "{:<50} {:>10}",
                    format!("ours: {name}"),
                    cell(Self::med(o, f))
                );
            }
        }
        println!();
        println!("notes: runc reports no frozen time; its checkpoint wall time stands in (an upper bound:");
        println!("  it includes runc's and CRIU's start-up before the freeze). \"frozen (CRIU log)\" measures");
        println!("  both the same way, from dump.log's \"freezing cgroup\" to \"Unfreezing tasks\" (the kill).");
        println!("  runc's checkpoint includes removing the container; ours is deleted separately (row above).");
    }

    fn json(&self) -> Value {
        let sizes: Vec<Value> = self
            .results
            .iter()
            .map(|(mib, samples)| {
                let mut metrics = serde_json::Map::new();
                for (name, fo, fr) in METRICS {
                    let (a, b) = (Self::med(&samples[0], fo), Self::med(&samples[1], fr));
                    metrics.insert(
                        name.to_string(),
                        json!({
                            "ours_median": a.map(round1),
                            "runc_median": b.map(round1),
                            "ratio": a.zip(b).map(|(a, b)| (a / b * 1000.0).round() / 1000.0),
                            "ours": samples[0].iter().map(|s| fo(s).map(round1)).collect::<Vec<_>>(),
                            "runc": samples[1].iter().map(|s| fr(s).map(round1)).collect::<Vec<_>>(),
                        }),
                    );
                }
                for (name, f) in OURS_ONLY {
                    metrics.insert(
                        format!("ours: {name}"),
                        json!({
                            "ours_median": Self::med(&samples[0], f).map(round1),
                            "ours": samples[0].iter().map(|s| f(s).map(round1)).collect::<Vec<_>>(),
                        }),
                    );
                }
                json!({"mib": mib, "metrics_ms": metrics})
            })
            .collect();
        json!({
            "benchmark": "checkpoint-restore",
            "what": "memhog container: checkpoint (leave_running=false) into tmpfs, restore as a new id, verified by memhog's checksum",
            "runs": self.args.runs,
            "warmup": self.args.warmup,
            "machine": self.machine,
            "helper": self.helper.display().to_string(),
            "sizes": sizes,
        })
    }
}
