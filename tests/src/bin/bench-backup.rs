//! Backup benchmark (issue 6): a container holding 1 GiB of resident memory (`memhog`, half
//! compressible) is backed up K times in a row with `migrate backup now --replicate-to host2`,
//! idle and busy (10 % of its memory rewritten between backups), side by side with what an
//! operator stores and sends per backup without deduplication today: a podman-style full
//! archive, `runc checkpoint --leave-running` → `tar | zstd -1 -T0`, every time.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/bench-backup [--runs N] [--backups K] [--sizes 1024] [--variants idle,busy] [--churn PCT] [--warmup N] [--json] [--runc PATH]
//! ```
//!
//! Each run of a variant gets a fresh pair of hosts ([`TwoHosts`]), so its first backup finds
//! empty stores on both (memhog writes the same data in every run: a store that kept an earlier
//! run's chunks would take almost nothing). Ours and runc run one after the other on host1, and
//! which goes first alternates.
//!
//! - **Ours**: `migrate run web` on host1 (`memhog MIB /tmp/mem`, or `memhog MIB /tmp/mem PCT`
//!   when busy), wait for memhog's first verified round, then K times `migrate backup now web
//!   --replicate-to host2 --output json`. Before each backup after the first, memhog must have
//!   started a round after the previous backup returned, so a busy memhog has rewritten its
//!   share since. Each backup gives `frozen_ms`, `logical_bytes`, `stored_bytes`,
//!   `added_bytes` (what it added to host1's store) and `sent_bytes` (what it sent to host2); the
//!   benchmark times the CLI, measures how much the chunk files of both stores grew (which
//!   counts the bundle layer's chunks too), and reads CRIU's dump.log, which the backup keeps in
//!   the store, for the frozen time as CRIU logs it.
//! - **runc**: inside host1 (its network and mount namespaces), its own runc root, its own copy
//!   of the bundle, images on a tmpfs mounted inside host1. K times, with the same waits:
//!   `runc checkpoint --leave-running --image-path DIR`, then `tar -C DIR -cf - . | zstd -1 -T0
//!   | wc -c` for the size of the full archive (what such a backup stores, and sends), then the
//!   image dir is deleted. Its frozen time comes from the dump.log in DIR.
//!
//! At the end of each side memhog must still report `ok` (and, idle, its first checksum): the
//! dumps did not disturb its memory. Results go to stdout (a table, or one JSON object with
//! `--json`), progress to stderr. Every container, runc state, tmpfs, bundle and both hosts are
//! removed on the way out, also after a failure or Ctrl-C.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migrate_tests::bench::{
    check_interrupted, cli, json_line, machine_line, median, memhog_bundle, mib_of, ms,
    print_failures, print_results, round2, unknown_flag, wait_status, AgentContainer, DumpLog,
    Flags, HostRunc, MemStatus, Tools,
};
use migrate_tests::hosts::{HostAgent, TwoHosts};
use runtime::syscall::signals::{self, interrupted};
use serde_json::{json, Value};

const USAGE: &str = "usage: bench-backup [--runs N] [--backups K] [--sizes 1024] [--variants idle,busy] [--churn PCT] [--warmup N] [--json] [--runc PATH]";

/// The container's name for ours.
const NAME: &str = "web";

struct Args {
    runs: usize,
    backups: usize,
    warmup: usize,
    sizes: Vec<u64>,
    variants: Vec<Variant>,
    churn: u32,
    json: bool,
    runc: PathBuf,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        runs: 3,
        backups: 4,
        warmup: 1,
        sizes: vec![1024],
        variants: vec![Variant::Idle, Variant::Busy],
        churn: 10,
        json: false,
        runc: PathBuf::from("/usr/sbin/runc"),
    };
    let mut flags = Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--runs" => args.runs = flags.number(&flag)?,
            "--backups" => args.backups = flags.number(&flag)?,
            "--warmup" => args.warmup = flags.number(&flag)?,
            "--sizes" => args.sizes = flags.sizes(&flag)?,
            "--variants" => {
                args.variants = flags
                    .value(&flag)?
                    .split(',')
                    .map(|v| match v.trim() {
                        "idle" => Ok(Variant::Idle),
                        "busy" => Ok(Variant::Busy),
                        other => Err(format!("unknown variant {other:?} (idle, busy)")),
                    })
                    .collect::<std::result::Result<_, _>>()?
            }
            "--churn" => args.churn = flags.number(&flag)?.min(101) as u32,
            "--runc" => args.runc = flags.path(&flag)?,
            "--json" => args.json = true,
            other => return Err(unknown_flag(other)),
        }
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if args.backups < 2 {
        return Err("--backups must be at least 2 (the first and the later ones)".into());
    }
    if args.variants.is_empty() {
        return Err("--variants needs idle, busy or both".into());
    }
    if !(1..=100).contains(&args.churn) {
        return Err("--churn needs a percentage from 1 to 100".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    migrate_tests::bench::main(USAGE, parse_args, run)
}

/// What the container does between backups.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// memhog only re-verifies its memory: nothing changes.
    Idle,
    /// memhog rewrites `--churn` percent of its memory at the start of every round.
    Busy,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Idle => "idle",
            Variant::Busy => "busy",
        }
    }
}

/// Who takes the backups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Runc,
}

/// One `migrate backup now` (ms and bytes).
#[derive(Debug, Default, Clone)]
struct OursBackup {
    /// Wall time of the CLI: bundle layer, dump, store, replicate.
    wall: f64,
    /// The backup's `frozen_ms`.
    frozen_ms: f64,
    /// From CRIU's dump.log (kept in the backup): "freezing cgroup" → "Unfreezing tasks".
    frozen_log: Option<f64>,
    logical: u64,
    /// All of the backup's chunks, compressed.
    stored: u64,
    /// The chunks that were new to host1's store.
    added: u64,
    /// Compressed bytes sent to host2.
    sent: u64,
    /// How much host1's chunk files grew: what the backup really cost in storage there.
    grew1: u64,
    /// How much host2's chunk files grew.
    grew2: u64,
}

/// One runc snapshot (ms and bytes).
#[derive(Debug, Default, Clone)]
struct RuncSnapshot {
    /// Wall time of `runc checkpoint --leave-running`.
    checkpoint: f64,
    /// From CRIU's dump.log: "freezing cgroup" → "Unfreezing tasks".
    frozen_log: Option<f64>,
    /// Wall time of `tar | zstd -1 -T0 | wc -c`.
    archive_time: f64,
    /// The full archive's size.
    archive: u64,
    /// The image dir's size (`du -sb`).
    image: u64,
}

/// The K backups of each side in one run of a variant.
#[derive(Debug, Default, Clone)]
struct RunSample {
    ours: Vec<OursBackup>,
    runc: Vec<RuncSnapshot>,
}

fn run(args: &Args) -> Result<()> {
    let env = Tools::check(
        "bench-backup",
        &args.runc,
        &["bash", "tar", "nsenter", "du", "wc"],
    )?;
    signals::catch_interrupts().context("install signal handlers")?;
    eprintln!(
        "bench-backup: sizes {:?} MiB, variants {}, {} runs of {} backups each (busy: {} % rewritten per round), {} warm-up run(s); fresh hosts per run",
        args.sizes,
        args.variants
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", "),
        args.runs,
        args.backups,
        args.churn,
        args.warmup
    );
    let started = Instant::now();
    let plan = |mib: u64, v: Variant, k: usize, tag: String| Plan {
        mib,
        churn: (v == Variant::Busy).then_some(args.churn),
        k,
        tag,
    };
    // Untimed: the first CRIU, tar, zstd and runc runs of a process pay for cold caches.
    for w in 0..args.warmup {
        let p = plan(args.sizes[0], args.variants[0], 2, format!("warmup{w}"));
        one_run(&env, &p, w % 2 == 0)?;
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &mib in &args.sizes {
        for (vi, &v) in args.variants.iter().enumerate() {
            results.push(VariantResult {
                mib,
                variant: v,
                runs: Vec::new(),
            });
            for i in 0..args.runs {
                let p = plan(mib, v, args.backups, format!("{mib}-{}-{i}", v.name()));
                // Alternate who goes first.
                let ours_first = (i + vi) % 2 == 0;
                let s = match one_run(&env, &p, ours_first) {
                    Ok(s) => s,
                    // One retry, on fresh hosts; the failure is reported.
                    Err(e) if !interrupted() => {
                        eprintln!("bench-backup: FAILED, retrying on fresh hosts: {e:#}");
                        failures.push(format!("{}: {e:#}", p.tag));
                        one_run(&env, &p, ours_first)?
                    }
                    Err(e) => return Err(e),
                };
                results.last_mut().expect("pushed above").runs.push(s);
            }
        }
    }
    let report = Report {
        args,
        machine: env.machine.clone(),
        results,
        failures,
        elapsed: started.elapsed(),
    };
    print_results(args.json, || report.json(), || report.print_table());
    Ok(())
}

/// One run of a variant: its size, what memhog rewrites, how many backups, its name.
struct Plan {
    mib: u64,
    churn: Option<u32>,
    k: usize,
    tag: String,
}

/// One run of a variant on fresh hosts: K backups of ours and K runc snapshots.
fn one_run(env: &Tools, p: &Plan, ours_first: bool) -> Result<RunSample> {
    let tag = &p.tag;
    check_interrupted()?;
    let hosts = TwoHosts::start();
    let order = if ours_first {
        [Side::Ours, Side::Runc]
    } else {
        [Side::Runc, Side::Ours]
    };
    let mut sample = RunSample::default();
    for side in order {
        check_interrupted()?;
        let t = Instant::now();
        match side {
            Side::Ours => {
                sample.ours = run_ours(&hosts, env, p).with_context(|| format!("ours {tag}"))?
            }
            Side::Runc => {
                sample.runc = run_runc(&hosts, env, p).with_context(|| format!("runc {tag}"))?
            }
        }
        eprintln!(
            "bench-backup: {tag} {} done [{:.0} s]",
            if side == Side::Ours { "ours" } else { "runc" },
            t.elapsed().as_secs_f64()
        );
    }
    Ok(sample)
}

/// What one backup measured, as a line of progress.
trait Progress {
    fn progress(&self) -> String;
}

impl Progress for OursBackup {
    fn progress(&self) -> String {
        format!(
            "frozen {:.0} ms (CRIU log {}), added {:.2} MiB (host1's store grew {:.2}), sent {:.2} MiB (host2's grew {:.2}), logical {:.1} MiB, wall {:.0} ms",
            self.frozen_ms,
            self.frozen_log.map_or("-".into(), |x| format!("{x:.0} ms")),
            mib_of(self.added),
            mib_of(self.grew1),
            mib_of(self.sent),
            mib_of(self.grew2),
            mib_of(self.logical),
            self.wall
        )
    }
}

impl Progress for RuncSnapshot {
    fn progress(&self) -> String {
        format!(
            "frozen (CRIU log) {}, checkpoint {:.0} ms, archive {:.2} MiB in {:.0} ms",
            self.frozen_log.map_or("-".into(), |x| format!("{x:.0} ms")),
            self.checkpoint,
            mib_of(self.archive),
            self.archive_time
        )
    }
}

/// Takes the plan's K backups of a running memhog with `take` (given the backup's number,
/// from 1), reporting each on stderr under the plan's tag and `side`.
fn take_backups<T: Progress>(
    p: &Plan,
    side: &str,
    mut read: impl FnMut() -> Option<MemStatus>,
    poll: Duration,
    mut take: impl FnMut(usize) -> Result<T>,
) -> Result<Vec<T>> {
    let first = wait_status(
        "memhog to fill its memory",
        &mut read,
        |s| s.round >= 1,
        poll,
    )?;
    let mut last = first.clone();
    let mut taken = Vec::new();
    for n in 1..=p.k {
        if n > 1 {
            let after = last.round;
            wait_status(
                "memhog's next round",
                &mut read,
                |s| s.round >= after + 2,
                poll,
            )?;
        }
        let t = take(n)?;
        eprintln!("bench-backup: {} {side} #{n}: {}", p.tag, t.progress());
        taken.push(t);
        last = wait_status(
            &format!("memhog after backup {n}"),
            &mut read,
            |_| true,
            poll,
        )?;
    }
    let end = wait_status(
        "memhog to verify its memory after the backups",
        &mut read,
        |s| s.round > last.round,
        poll,
    )?;
    if p.churn.is_none() && end.checksum != first.checksum {
        bail!(
            "an idle memhog's memory changed: checksum {} at the start, {} at the end",
            first.checksum,
            end.checksum
        );
    }
    Ok(taken)
}

// ---- ours ----

fn run_ours(hosts: &TwoHosts, env: &Tools, p: &Plan) -> Result<Vec<OursBackup>> {
    let b = memhog_bundle(&env.memhog, p.mib, p.churn);
    let mut guard = AgentContainer {
        hosts,
        name: NAME,
        on: Some("host1"),
    };
    let h = &hosts.host1;
    let bundle = b.path().display().to_string();
    cli(h, &["run", NAME, "--bundle", &bundle])?;
    let read = || MemStatus::in_container(h, NAME);
    let backups = take_backups(p, "ours", read, Duration::from_millis(100), |_| {
        backup_now(hosts)
    })?;
    cli(h, &["rm", "-f", NAME])?;
    guard.on = None;
    Ok(backups)
}

/// One `migrate backup now --replicate-to host2` on host1.
fn backup_now(hosts: &TwoHosts) -> Result<OursBackup> {
    let h = &hosts.host1;
    let before = [store_bytes(&hosts.host1), store_bytes(&hosts.host2)];
    let t = Instant::now();
    let out = cli(
        h,
        &[
            "backup",
            "now",
            NAME,
            "--replicate-to",
            "host2",
            "--output",
            "json",
        ],
    )?;
    let wall = ms(t.elapsed());
    let grew = |h: &HostAgent, before: u64| store_bytes(h).saturating_sub(before);
    let (grew1, grew2) = (grew(&hosts.host1, before[0]), grew(&hosts.host2, before[1]));
    let v = json_line(&out, "backup_id").context("no backup")?;
    let num = |key: &str| {
        v[key]
            .as_u64()
            .with_context(|| format!("backup without {key}: {v}"))
    };
    if v["replicas"] != json!(["host2"]) {
        bail!("the backup was not replicated to host2: {v}");
    }
    let id = v["backup_id"].as_str().context("backup_id")?;
    Ok(OursBackup {
        wall,
        frozen_ms: num("frozen_ms")? as f64,
        frozen_log: DumpLog::parse(&dump_log_of(h, id)?).frozen.map(ms),
        logical: num("logical_bytes")?,
        stored: num("stored_bytes")?,
        added: num("added_bytes")?,
        sent: num("sent_bytes")?,
        grew1,
        grew2,
    })
}

/// The size of the chunk files in `h`'s store.
fn store_bytes(h: &HostAgent) -> u64 {
    let chunks = h.state_dir.join("store/chunks");
    fs::read_dir(&chunks)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| f.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// CRIU's dump.log of backup `id`, put back together from the chunks in `h`'s store (the
/// backup keeps every file of its image dir; chunks are single zstd frames).
fn dump_log_of(h: &HostAgent, id: &str) -> Result<String> {
    let store = h.state_dir.join("store");
    let path = store.join("manifests").join(format!("{id}.json"));
    let m: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("parse {}", path.display()))?;
    let chunks: Vec<PathBuf> = m["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == "dump.log"))
        .and_then(|f| f["chunks"].as_array())
        .with_context(|| format!("backup {id} has no dump.log"))?
        .iter()
        .filter_map(|c| c["hash"].as_str())
        .map(|hash| {
            store
                .join("chunks")
                .join(&hash[..2])
                .join(format!("{hash}.zst"))
        })
        .collect();
    let out = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .args(&chunks)
        .output()
        .context("run zstd")?;
    if !out.status.success() {
        bail!(
            "zstd -d of the dump.log of {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---- runc ----

fn run_runc(hosts: &TwoHosts, env: &Tools, p: &Plan) -> Result<Vec<RuncSnapshot>> {
    // Before the guard, so it outlives the container: runc uses this copy's rootfs in place.
    let b = memhog_bundle(&env.memhog, p.mib, p.churn);
    let work = tempfile::Builder::new()
        .prefix("migrate-bench-backup-")
        .tempdir_in("/run")
        .context("create runc's work dir")?;
    let mut r = HostRunc::new(&hosts.host1, env, work.path(), "host1")?;
    let id = format!("bench-backup-{}", std::process::id());
    r.ids.push(id.clone());
    let bundle = b.path().display().to_string();
    r.run(&["run", "-d", "--bundle", &bundle, &id])?;
    let status = b.rootfs().join("tmp/mem");
    let read = || MemStatus::read(&status);
    let snapshots = take_backups(p, "runc", read, Duration::from_millis(20), |n| {
        snapshot(&r, &id, n)
    })?;
    r.run(&["delete", "--force", &id])?;
    r.ids.clear();
    Ok(snapshots)
}

/// Snapshot `n`: `runc checkpoint --leave-running` into a fresh image dir, archived as a full
/// `tar | zstd -1 -T0` to count its size, then deleted.
fn snapshot(r: &HostRunc, id: &str, n: usize) -> Result<RuncSnapshot> {
    // The tmpfs is mounted inside host1 only: everything in it is done from there.
    let dir = r.images.join(format!("snapshot-{n}"));
    let dir = dir.display().to_string();
    let t = Instant::now();
    r.run(&["checkpoint", "--leave-running", "--image-path", &dir, id])?;
    let checkpoint = ms(t.elapsed());
    let t = Instant::now();
    let archive = bytes_of(
        &r.sh(&format!(
            "set -o pipefail; tar -C '{dir}' -cf - . | zstd -1 -T0 -q | wc -c"
        ))?,
        "the archive",
    )?;
    let archive_time = ms(t.elapsed());
    let image = bytes_of(&r.sh(&format!("du -sb '{dir}'"))?, "the image dir")?;
    let log = r.sh(&format!("cat '{dir}/dump.log'"))?;
    r.sh(&format!("rm -rf '{dir}'"))?;
    Ok(RuncSnapshot {
        checkpoint,
        frozen_log: DumpLog::parse(&log).frozen.map(ms),
        archive_time,
        archive,
        image,
    })
}

/// The first number of a command's output (`wc -c`, `du -sb`).
fn bytes_of(out: &str, what: &str) -> Result<u64> {
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no size of {what} in {out:?}"))
}

// ---- report ----

/// All runs of one size and variant.
struct VariantResult {
    mib: u64,
    variant: Variant,
    runs: Vec<RunSample>,
}

/// Which backups a row summarizes: the first, or the later ones (all runs pooled).
#[derive(Clone, Copy)]
enum Group {
    First,
    Later,
}

impl Group {
    const ALL: [Group; 2] = [Group::First, Group::Later];

    fn contains(self, index: usize) -> bool {
        match self {
            Group::First => index == 0,
            Group::Later => index > 0,
        }
    }

    fn name(self, k: usize) -> String {
        match self {
            Group::First => "backup 1".into(),
            Group::Later => format!("backups 2..{k}"),
        }
    }
}

type OursReader = fn(&OursBackup) -> Option<f64>;
type RuncReader = fn(&RuncSnapshot) -> Option<f64>;

/// The rows compared: name, ours, runc's full archive path.
const COMPARED: [(&str, OursReader, RuncReader); 7] = [
    (
        "frozen, CRIU log: freeze -> unfreeze (ms)",
        |o| o.frozen_log,
        |r| r.frozen_log,
    ),
    (
        "frozen: ours frozen_ms / runc checkpoint wall (ms)",
        |o| Some(o.frozen_ms),
        |r| Some(r.checkpoint),
    ),
    (
        "stored: ours added_bytes / full archive (MiB)",
        |o| Some(mib_of(o.added)),
        |r| Some(mib_of(r.archive)),
    ),
    (
        "stored: host1's chunk files grew / full archive (MiB)",
        |o| Some(mib_of(o.grew1)),
        |r| Some(mib_of(r.archive)),
    ),
    (
        "sent: ours sent_bytes / full archive (MiB)",
        |o| Some(mib_of(o.sent)),
        |r| Some(mib_of(r.archive)),
    ),
    (
        "wall: backup now / checkpoint + archive (ms)",
        |o| Some(o.wall),
        |r| Some(r.checkpoint + r.archive_time),
    ),
    (
        "logical: ours logical_bytes / image dir (MiB)",
        |o| Some(mib_of(o.logical)),
        |r| Some(mib_of(r.image)),
    ),
];

/// Details of ours: what host2's chunk files grew by, and the whole backup in the store's form
/// (all its chunks, compressed).
const OURS_ONLY: [(&str, OursReader); 2] = [
    ("ours: host2's chunk files grew (MiB)", |o| {
        Some(mib_of(o.grew2))
    }),
    ("ours: stored_bytes, all its chunks (MiB)", |o| {
        Some(mib_of(o.stored))
    }),
];

impl VariantResult {
    /// The median of `f` over the samples of one side (`side`) of every run whose index (from
    /// 0) `pick` keeps.
    fn med<T>(
        &self,
        side: fn(&RunSample) -> &[T],
        pick: impl Fn(usize) -> bool,
        f: fn(&T) -> Option<f64>,
    ) -> Option<f64> {
        median(
            self.runs
                .iter()
                .flat_map(|r| side(r).iter().enumerate())
                .filter(|(i, _)| pick(*i))
                .filter_map(|(_, x)| f(x))
                .collect(),
        )
    }

    fn ours(&self, g: Group, f: OursReader) -> Option<f64> {
        self.med(|r| r.ours.as_slice(), |i| g.contains(i), f)
    }

    fn runc(&self, g: Group, f: RuncReader) -> Option<f64> {
        self.med(|r| r.runc.as_slice(), |i| g.contains(i), f)
    }

    /// Median over the runs of backup `i` (from 0).
    fn ours_at(&self, i: usize, f: OursReader) -> Option<f64> {
        self.med(|r| r.ours.as_slice(), |j| j == i, f)
    }

    fn runc_at(&self, i: usize, f: RuncReader) -> Option<f64> {
        self.med(|r| r.runc.as_slice(), |j| j == i, f)
    }

    /// Median of the ratios ours/runc of the same backup of the same run.
    fn paired_ratio(&self, g: Group, fo: OursReader, fr: RuncReader) -> Option<f64> {
        median(
            self.runs
                .iter()
                .flat_map(|r| r.ours.iter().zip(&r.runc).enumerate())
                .filter(|(i, _)| g.contains(*i))
                .filter_map(|(_, (o, s))| Some(fo(o)? / fr(s)?))
                .collect(),
        )
    }

    fn title(&self, churn: u32) -> String {
        match self.variant {
            Variant::Idle => format!("{} MiB, idle", self.mib),
            Variant::Busy => format!(
                "{} MiB, busy ({churn} % of memory rewritten between backups)",
                self.mib
            ),
        }
    }
}

struct Report<'a> {
    args: &'a Args,
    machine: Value,
    results: Vec<VariantResult>,
    /// Runs that failed and were run again once.
    failures: Vec<String>,
    elapsed: Duration,
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    })
}

/// Rounded to 4 significant digits (ratios run from 0.001 to 1).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a / b)
}

impl Report<'_> {
    fn print_table(&self) {
        println!("{}", machine_line(&self.machine));
        println!(
            "{} backups in a row with `migrate backup now --replicate-to host2`, against `runc checkpoint --leave-running` + `tar | zstd -1 -T0` each time (a full archive), interleaved on fresh hosts per run; medians; {:.0} s in all",
            self.args.backups,
            self.elapsed.as_secs_f64()
        );
        let k = self.args.backups;
        for r in &self.results {
            println!();
            println!("{}: {} runs", r.title(self.args.churn), r.runs.len());
            print!("{:<52}", "");
            for g in Group::ALL {
                print!(" | {:^38}", g.name(k));
            }
            println!();
            print!("{:<52}", "");
            for _ in Group::ALL {
                print!(
                    " | {:>9} {:>9} {:>8} {:>9}",
                    "ours", "runc", "ratio", "(paired)"
                );
            }
            println!();
            for (name, fo, fr) in COMPARED {
                print!("{name:<52}");
                for g in Group::ALL {
                    let (a, b) = (r.ours(g, fo), r.runc(g, fr));
                    print!(
                        " | {:>9} {:>9} {:>8} {:>9}",
                        cell(a),
                        cell(b),
                        ratio(a, b).map_or("-".into(), |x| format!("{x:.4}")),
                        r.paired_ratio(g, fo, fr)
                            .map_or("-".into(), |x| format!("{x:.4}"))
                    );
                }
                println!();
            }
            for (name, f) in OURS_ONLY {
                print!("{name:<52}");
                for g in Group::ALL {
                    print!(" | {:>9} {:>29}", cell(r.ours(g, f)), "");
                }
                println!();
            }
            println!("per backup (medians over the runs):");
            println!(
                "  {:>3} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10}",
                "#",
                "added MiB",
                "grew1 MiB",
                "sent MiB",
                "grew2 MiB",
                "archive MiB",
                "frozen ours",
                "frozen runc",
                "wall ours"
            );
            for i in 0..k {
                println!(
                    "  {:>3} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10}",
                    i + 1,
                    cell(r.ours_at(i, |o| Some(mib_of(o.added)))),
                    cell(r.ours_at(i, |o| Some(mib_of(o.grew1)))),
                    cell(r.ours_at(i, |o| Some(mib_of(o.sent)))),
                    cell(r.ours_at(i, |o| Some(mib_of(o.grew2)))),
                    cell(r.runc_at(i, |s| Some(mib_of(s.archive)))),
                    cell(r.ours_at(i, |o| o.frozen_log)),
                    cell(r.runc_at(i, |s| s.frozen_log)),
                    cell(r.ours_at(i, |o| Some(o.wall))),
                );
            }
        }
        print_failures(&self.failures);
        println!();
        println!("notes: \"frozen, CRIU log\" is measured the same way for both, from dump.log's \"freezing cgroup\"");
        println!("  to \"Unfreezing tasks\"; ours' frozen_ms runs from CRIU's pre-dump notification until the dump");
        println!("  returns, runc reports none (its checkpoint wall time stands in, start-up included). Ours' sent");
        println!("  and stored bytes of backup 1 include the bundle layer; the runc archive carries no bundle.");
        println!("  \"chunk files grew\" measures the stores themselves. Ratios are of the medians; (paired) is");
        println!("  the median of the ratios of the same backup in the same run.");
    }

    fn json(&self) -> Value {
        let k = self.args.backups;
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let mut groups = serde_json::Map::new();
                for g in Group::ALL {
                    let mut rows = serde_json::Map::new();
                    for (name, fo, fr) in COMPARED {
                        let (a, b) = (r.ours(g, fo), r.runc(g, fr));
                        rows.insert(
                            name.to_string(),
                            json!({
                                "ours_median": a.map(round2),
                                "runc_median": b.map(round2),
                                "ratio": ratio(a, b).map(round_sig),
                                "paired_ratio_median": r.paired_ratio(g, fo, fr).map(round_sig),
                            }),
                        );
                    }
                    for (name, f) in OURS_ONLY {
                        rows.insert(
                            name.to_string(),
                            json!({ "ours_median": r.ours(g, f).map(round2) }),
                        );
                    }
                    groups.insert(g.name(k), Value::Object(rows));
                }
                let runs: Vec<Value> = r
                    .runs
                    .iter()
                    .map(|s| {
                        json!({
                            "ours": s.ours.iter().map(|b| json!({
                                "wall_ms": round2(b.wall),
                                "frozen_ms": b.frozen_ms,
                                "frozen_criu_log_ms": b.frozen_log.map(round2),
                                "logical_bytes": b.logical,
                                "stored_bytes": b.stored,
                                "added_bytes": b.added,
                                "sent_bytes": b.sent,
                                "host1_store_growth_bytes": b.grew1,
                                "host2_store_growth_bytes": b.grew2,
                            })).collect::<Vec<_>>(),
                            "runc": s.runc.iter().map(|x| json!({
                                "checkpoint_ms": round2(x.checkpoint),
                                "frozen_criu_log_ms": x.frozen_log.map(round2),
                                "archive_ms": round2(x.archive_time),
                                "archive_bytes": x.archive,
                                "image_bytes": x.image,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "mib": r.mib,
                    "variant": r.variant.name(),
                    "churn_pct": (r.variant == Variant::Busy).then_some(self.args.churn),
                    "runs": runs.len(),
                    "medians": groups,
                    "samples": runs,
                })
            })
            .collect();
        json!({
            "benchmark": "backups",
            "what": "memhog container backed up K times with `migrate backup now --replicate-to host2`, vs runc checkpoint --leave-running | tar | zstd -1 -T0 (a full archive per backup), idle and busy",
            "runs": self.args.runs,
            "backups": k,
            "warmup": self.args.warmup,
            "machine": self.machine,
            "elapsed_s": self.elapsed.as_secs(),
            "failures_retried": self.failures,
            "results": results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_the_first_backup_from_the_later_ones() {
        let r = VariantResult {
            mib: 64,
            variant: Variant::Idle,
            runs: vec![RunSample {
                ours: (1..=3)
                    .map(|n| OursBackup {
                        added: n << 20,
                        ..Default::default()
                    })
                    .collect(),
                runc: (1..=3)
                    .map(|_| RuncSnapshot {
                        archive: 4 << 20,
                        ..Default::default()
                    })
                    .collect(),
            }],
        };
        let (fo, fr): (OursReader, RuncReader) =
            (|o| Some(mib_of(o.added)), |s| Some(mib_of(s.archive)));
        assert_eq!(r.ours(Group::First, fo), Some(1.0));
        assert_eq!(r.ours(Group::Later, fo), Some(2.5));
        assert_eq!(r.paired_ratio(Group::Later, fo, fr), Some(2.5 / 4.0));
        assert_eq!(bytes_of("123\t/x\n", "x").unwrap(), 123);
        assert_eq!(round_sig(0.0012345), 0.001235);
        assert_eq!(round_sig(1.23456), 1.235);
    }
}
