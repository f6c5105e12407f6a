//! Live-move benchmark (issue 5): a container holding 64 MiB, 256 MiB or 1 GiB of resident
//! memory (`memhog`, half compressible) is moved between two hosts with `migrate move`, side by
//! side with the manual path operators use today (`runc checkpoint` → `tar | zstd` → copy →
//! `zstd -d | tar` → `runc restore`), interleaved in the same process.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/bench-move [--runs N] [--large-runs N] [--warmup N] [--sizes 64,256,1024] [--json] [--runc PATH] [--logs DIR]
//! ```
//!
//! Every run gets a fresh pair of hosts ([`TwoHosts`]: two network namespaces on one L2
//! segment, an agent in each, mTLS between them), so the first move finds an empty store on the
//! target (memhog's data is the same in every run, and a target that kept the chunks of an
//! earlier run would receive almost nothing).
//!
//! - **Ours**: `migrate run web` on host1, wait for memhog's first round, `migrate move web --to
//!   host2 --output json`; the downtime, total, bytes and phases come from the move report. The
//!   moved memhog must go on verifying its memory on host2 with the checksum it had. Then it
//!   moves back to host1 and once more to host2, unchanged: the third move's `bytes_sent` as a
//!   share of the first's is the "second move" metric. The agents' logs give a finer split of
//!   the phases (see [`Profile`]).
//! - **Manual**: runc inside the same two hosts (their network and mount namespaces), each host
//!   with its own runc root, its own copy of the bundle and an image dir on a tmpfs mounted
//!   inside that host. Timed from the start of `runc checkpoint` on host1 to the return of
//!   `runc restore -d` on host2: checkpoint, then `tar -C DIR -cf - . | zstd -1 -T0` over TCP
//!   (bash's `/dev/tcp`) to `busybox nc -l` on host2 piped into `zstd -d | tar -C DIR2 -xf -`,
//!   then the restore. The compressed stream is counted by a `dd` in the pipe. The restored
//!   memhog must go on with the same checksum.
//!
//! - **Lazy** (issue 8): the same container moved once with `migrate move --mode lazy --yes`:
//!   it runs on host2 as soon as everything but its private memory is there, and the memory
//!   follows through the agents' page relay. Downtime, time until fully resident, pages faulted
//!   and pushed and the fault latency come from the move report; memhog must go on with its
//!   checksum once all its memory is there.
//!
//! Results go to stdout (a table, or one JSON object with `--json`), progress to stderr.
//! Every container, runc state, tmpfs, listener, bundle and both hosts are removed on the way
//! out, also after a failure or Ctrl-C.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migrate_tests::bench::{
    check_interrupted, cli, host_cmd, json_line, machine_line, median, memhog_bundle, mib_of, ms,
    print_failures, print_results, round2, round3, strip_ansi, unknown_flag, wait_status,
    AgentContainer, Flags, HostRunc, MemStatus, Tools,
};
use migrate_tests::hosts::{HostAgent, TwoHosts};
use runtime::syscall::signals::{self, interrupted};
use serde_json::{json, Value};

const USAGE: &str = "usage: bench-move [--runs N] [--large-runs N] [--warmup N] [--sizes 64,256,1024] [--json] [--runc PATH] [--logs DIR]";

/// How long one step of the manual path (a copy, a runc call) may take.
const STEP: Duration = Duration::from_secs(300);
/// Where host2's `nc` listens for the manual path's stream.
const PORT: u16 = 7600;
/// Sizes from this one up run `--large-runs` times.
const LARGE_MIB: u64 = 1024;
/// The container's name for ours.
const NAME: &str = "web";

struct Args {
    runs: usize,
    large_runs: Option<usize>,
    warmup: usize,
    sizes: Vec<u64>,
    json: bool,
    runc: PathBuf,
    logs: Option<PathBuf>,
}

impl Args {
    fn runs_for(&self, mib: u64) -> usize {
        if mib >= LARGE_MIB {
            self.large_runs.unwrap_or(self.runs)
        } else {
            self.runs
        }
    }
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        runs: 3,
        large_runs: None,
        warmup: 1,
        sizes: vec![64, 256, 1024],
        json: false,
        runc: PathBuf::from("/usr/sbin/runc"),
        logs: None,
    };
    let mut flags = Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--runs" => args.runs = flags.number(&flag)?,
            "--large-runs" => args.large_runs = Some(flags.number(&flag)?),
            "--warmup" => args.warmup = flags.number(&flag)?,
            "--sizes" => args.sizes = flags.sizes(&flag)?,
            "--runc" => args.runc = flags.path(&flag)?,
            "--logs" => args.logs = Some(flags.path(&flag)?),
            "--json" => args.json = true,
            other => return Err(unknown_flag(other)),
        }
    }
    if args.runs == 0 || args.large_runs == Some(0) {
        return Err("--runs and --large-runs must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    migrate_tests::bench::main(USAGE, parse_args, run)
}

/// The numbers of one `migrate move`, from its report (ms and bytes).
#[derive(Debug, Default, Clone)]
struct MoveNums {
    downtime: f64,
    total: f64,
    /// Wall time of the `migrate move` CLI, as the benchmark sees it.
    wall: f64,
    bytes_sent: u64,
    /// Chunks of an earlier checkpoint sent before the freeze (not in `bytes_sent`).
    bytes_preseeded: u64,
    bytes_raw: u64,
    bytes_compressed: u64,
    chunks_sent: u64,
    chunks_total: u64,
    phases: BTreeMap<String, f64>,
}

impl MoveNums {
    /// Everything the move put on the wire: the chunks sent before and during the freeze.
    fn wire(&self) -> u64 {
        self.bytes_sent + self.bytes_preseeded
    }
}

/// What one run of ours measured.
#[derive(Debug, Default, Clone)]
struct OursSample {
    first: MoveNums,
    /// host2 → host1, the container unchanged.
    back: MoveNums,
    /// host1 → host2 again, the container unchanged.
    third: MoveNums,
    /// A finer split of the first move, from the agents' logs.
    profile: Profile,
}

/// What one lazy move measured (ms, bytes, pages).
#[derive(Debug, Default, Clone)]
struct LazySample {
    downtime: f64,
    /// From the freeze until every page is on the target.
    resident: f64,
    total: f64,
    faulted: f64,
    pushed: f64,
    fault_p50_us: f64,
    fault_p99_us: f64,
    /// Sent while frozen (everything but the private memory).
    bytes_sent: u64,
    /// Page bytes relayed after the container started on the target.
    bytes_lazy: u64,
    phases: BTreeMap<String, f64>,
}

/// What one run of the manual path measured (ms and bytes).
#[derive(Debug, Default, Clone)]
struct ManualSample {
    /// From `runc checkpoint`'s start to `runc restore`'s return (the container is frozen or
    /// dead all along).
    downtime: f64,
    /// From starting the listener on host2 to `runc restore`'s return.
    total: f64,
    checkpoint: f64,
    copy: f64,
    restore: f64,
    /// The zstd stream as counted in the pipe.
    wire_bytes: u64,
    /// The image dir (`du -sb`).
    image_bytes: u64,
}

/// A finer split of our first move, from the timestamps of the agents' log lines (operation
/// events), in ms. Each is `None` when a line is missing.
#[derive(Debug, Default, Clone)]
struct Profile {
    /// Source: "freezing the container" → "streaming the checkpoint": pause, network lock,
    /// CRIU dump.
    dump: Option<f64>,
    /// Source: "streaming the checkpoint" → "sent N of M chunks": cutting, hashing, compressing
    /// and storing the images' chunks while the missing ones stream to the target (which
    /// verifies and stores each).
    stream: Option<f64>,
    /// Target: its materialize event → "restoring with CRIU": write whatever of the checkpoint
    /// did not arrive in place, unpack the bundle layer, network set-up.
    target_materialize: Option<f64>,
    /// Target: "restoring with CRIU" → "running".
    target_restore: Option<f64>,
    /// CRIU's own restore time as the target reports it ("criu restore N ms").
    criu_restore: Option<f64>,
    /// Bytes the pre-seed sent (the bundle layer), part of the first move's `bytes_sent`.
    layer_bytes: Option<u64>,
    /// Source: "sent N of M chunks" → the target's materialize event: the Receive call
    /// reaching it.
    handoff: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Ours,
    Lazy,
    Manual,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Ours => "ours",
            Variant::Lazy => "lazy",
            Variant::Manual => "manual",
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let env = Tools::check(
        "bench-move",
        &args.runc,
        &["bash", "tar", "dd", "ss", "nsenter", "du"],
    )?;
    signals::catch_interrupts().context("install signal handlers")?;
    let machine = env.machine.clone();
    let plan: Vec<String> = args
        .sizes
        .iter()
        .map(|&m| format!("{m} MiB x{}", args.runs_for(m)))
        .collect();
    eprintln!(
        "bench-move: {}; {} warm-up run(s) at {} MiB; a fresh pair of hosts per run",
        plan.join(", "),
        args.warmup,
        args.sizes[0]
    );

    let started = Instant::now();
    let one = |v: Variant, hosts: &TwoHosts, mib: u64, tag: &str| -> Result<Sample> {
        check_interrupted()?;
        let t = Instant::now();
        let s = match v {
            Variant::Ours => run_ours(hosts, &env, mib).map(|o| Sample::Ours(Box::new(o))),
            Variant::Lazy => run_lazy(hosts, &env, mib).map(Sample::Lazy),
            Variant::Manual => run_manual(hosts, &env, mib, tag).map(Sample::Manual),
        }
        .with_context(|| format!("{} {mib} MiB run {tag}", v.name()))?;
        match &s {
            Sample::Ours(o) => eprintln!(
                "bench-move: {mib} MiB run {tag} ours: downtime {:.0} ms (dump {:.0}, transfer {:.0}, restore {:.0}), total {:.0} ms, sent {:.1} MiB; third move sent {:.2} MiB, downtime {:.0} ms [{:.0} s]",
                o.first.downtime,
                o.first.phases.get("dump").copied().unwrap_or(f64::NAN),
                o.first.phases.get("transfer").copied().unwrap_or(f64::NAN),
                o.first.phases.get("restore").copied().unwrap_or(f64::NAN),
                o.first.total,
                mib_of(o.first.wire()),
                mib_of(o.third.wire()),
                o.third.downtime,
                t.elapsed().as_secs_f64()
            ),
            Sample::Lazy(l) => eprintln!(
                "bench-move: {mib} MiB run {tag} lazy: downtime {:.0} ms (dump {:.0}, transfer {:.0}, restore {:.0}), fully resident after {:.0} ms, {:.0} pages faulted (p50 {:.0} us, p99 {:.0} us), {:.0} pushed [{:.0} s]",
                l.downtime,
                l.phases.get("dump").copied().unwrap_or(f64::NAN),
                l.phases.get("transfer").copied().unwrap_or(f64::NAN),
                l.phases.get("restore").copied().unwrap_or(f64::NAN),
                l.resident,
                l.faulted,
                l.fault_p50_us,
                l.fault_p99_us,
                l.pushed,
                t.elapsed().as_secs_f64()
            ),
            Sample::Manual(m) => eprintln!(
                "bench-move: {mib} MiB run {tag} manual: downtime {:.0} ms (checkpoint {:.0}, copy {:.0}, restore {:.0}), sent {:.1} MiB [{:.0} s]",
                m.downtime,
                m.checkpoint,
                m.copy,
                m.restore,
                mib_of(m.wire_bytes),
                t.elapsed().as_secs_f64()
            ),
        }
        Ok(s)
    };
    let mut results = Vec::new();
    for w in 0..args.warmup {
        let hosts = TwoHosts::start();
        for v in [Variant::Ours, Variant::Lazy, Variant::Manual] {
            one(v, &hosts, args.sizes[0], &format!("warmup{w}"))?;
        }
    }
    let mut failures = Vec::new();
    for (si, &mib) in args.sizes.iter().enumerate() {
        let mut ours = Vec::new();
        let mut lazy = Vec::new();
        let mut manual = Vec::new();
        for i in 0..args.runs_for(mib) {
            check_interrupted()?;
            // Fresh hosts: the target's store holds nothing of earlier runs.
            let hosts = TwoHosts::start();
            // Rotate who goes first.
            let mut order = [Variant::Ours, Variant::Lazy, Variant::Manual];
            order.rotate_left((i + si) % 3);
            let mut hosts = Some(hosts);
            for v in order {
                let tag = i.to_string();
                let mut attempt = 0;
                let s = loop {
                    let h = hosts.get_or_insert_with(TwoHosts::start);
                    let s = one(v, h, mib, &tag);
                    save_logs(args, h, &format!("{mib}-{i}-{}-{attempt}", v.name()))?;
                    match s {
                        Ok(s) => break s,
                        // One retry, on fresh hosts (a failed move may have left chunks on
                        // the target); the failure is reported.
                        Err(e) if attempt == 0 && !interrupted() => {
                            eprintln!("bench-move: FAILED, retrying on fresh hosts: {e:#}");
                            failures.push(format!("{e:#}"));
                            hosts = None;
                            attempt += 1;
                        }
                        Err(e) => return Err(e),
                    }
                };
                match s {
                    Sample::Ours(o) => ours.push(*o),
                    Sample::Lazy(l) => lazy.push(l),
                    Sample::Manual(m) => manual.push(m),
                }
            }
        }
        results.push(SizeResult {
            mib,
            ours,
            lazy,
            manual,
        });
    }
    let report = Report {
        args,
        machine,
        results,
        failures,
        elapsed: started.elapsed(),
    };
    print_results(args.json, || report.json(), || report.print_table());
    Ok(())
}

/// `--logs DIR`: keeps both agents' logs as they were after a variant ran, as
/// `DIR/<MiB>-<run>-<variant>-<attempt>-host{1,2}.log`, and the manifests in their stores as
/// `DIR/<...>-host{1,2}-<manifest>.json`.
fn save_logs(args: &Args, hosts: &TwoHosts, name: &str) -> Result<()> {
    let Some(dir) = &args.logs else {
        return Ok(());
    };
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for h in [&hosts.host1, &hosts.host2] {
        let path = dir.join(format!("{name}-{}.log", h.node));
        fs::write(&path, h.log()).with_context(|| format!("write {}", path.display()))?;
        // The manifests in its store: which files the moves carried, in which chunks.
        let manifests = h.state_dir.join("store/manifests");
        for e in fs::read_dir(&manifests).into_iter().flatten().flatten() {
            let to = dir.join(format!(
                "{name}-{}-{}",
                h.node,
                e.file_name().to_string_lossy()
            ));
            fs::copy(e.path(), &to).with_context(|| format!("copy {}", e.path().display()))?;
        }
    }
    Ok(())
}

enum Sample {
    Ours(Box<OursSample>),
    Lazy(LazySample),
    Manual(ManualSample),
}

/// Checks that a moved memhog goes on: a round after `before`'s, with the same checksum.
fn check_continues(s: &MemStatus, before: &MemStatus, what: &str) -> Result<()> {
    if s.checksum != before.checksum {
        bail!(
            "{what}: memory changed: checksum {} before, {} after",
            before.checksum,
            s.checksum
        );
    }
    Ok(())
}

// ---- ours ----

/// How often memhog's status is read.
const POLL: Duration = Duration::from_millis(100);

/// memhog (`mib` MiB) running as `NAME` on host1 once it has filled its memory; the guard
/// removes it from wherever it is at the end.
fn start_memhog<'a>(
    hosts: &'a TwoHosts,
    env: &Tools,
    mib: u64,
) -> Result<(migrate_tests::TestBundle, AgentContainer<'a>)> {
    let b = memhog_bundle(&env.memhog, mib, None);
    let guard = AgentContainer {
        hosts,
        name: NAME,
        on: Some("host1"),
    };
    cli(
        &hosts.host1,
        &["run", NAME, "--bundle", &b.path().display().to_string()],
    )?;
    wait_status(
        "memhog to fill its memory on host1",
        || MemStatus::in_container(&hosts.host1, NAME),
        |s| s.round >= 1,
        POLL,
    )?;
    Ok((b, guard))
}

fn run_ours(hosts: &TwoHosts, env: &Tools, mib: u64) -> Result<OursSample> {
    let (_b, mut guard) = start_memhog(hosts, env, mib)?;
    let log_marks = (hosts.host1.log().len(), hosts.host2.log().len());
    let mut moves = Vec::new();
    for (from, to) in [("host1", "host2"), ("host2", "host1"), ("host1", "host2")] {
        let (src, dst) = (hosts.host(from), hosts.host(to));
        let before = MemStatus::in_container(src, NAME)
            .with_context(|| format!("read memhog's status on {from} before the move"))?;
        let t = Instant::now();
        let out = cli(src, &["move", NAME, "--to", to, "--output", "json"])?;
        let wall = ms(t.elapsed());
        guard.on = Some(to);
        let mut nums = parse_report(&out)?;
        nums.wall = wall;
        let after = wait_status(
            &format!("the moved memhog to verify its memory on {to}"),
            || MemStatus::in_container(dst, NAME),
            |s| s.round > before.round,
            POLL,
        )?;
        check_continues(&after, &before, &format!("move {from} -> {to}"))?;
        moves.push(nums);
    }
    let profile = Profile::from_logs(
        &hosts.host1.log()[log_marks.0..],
        &hosts.host2.log()[log_marks.1..],
    );
    cli(&hosts.host2, &["rm", "-f", NAME])?;
    guard.on = None;
    let third = moves.pop().expect("three moves");
    let back = moves.pop().expect("three moves");
    let first = moves.pop().expect("three moves");
    Ok(OursSample {
        first,
        back,
        third,
        profile,
    })
}

fn run_lazy(hosts: &TwoHosts, env: &Tools, mib: u64) -> Result<LazySample> {
    let (_b, mut guard) = start_memhog(hosts, env, mib)?;
    let before = MemStatus::in_container(&hosts.host1, NAME)
        .context("read memhog's status on host1 before the lazy move")?;
    let out = cli(
        &hosts.host1,
        &[
            "move", NAME, "--to", "host2", "--mode", "lazy", "--yes", "--output", "json",
        ],
    )?;
    guard.on = Some("host2");
    let v = json_line(&out, "downtime_ms").context("no move report")?;
    let num = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("lazy move report without {k}: {v}"))
    };
    let sample = LazySample {
        downtime: num("downtime_ms")?,
        resident: num("resident_ms")?,
        total: num("total_ms")?,
        faulted: num("pages_faulted")?,
        pushed: num("pages_pushed")?,
        fault_p50_us: num("fault_p50_us")?,
        fault_p99_us: num("fault_p99_us")?,
        bytes_sent: num("bytes_sent")? as u64,
        bytes_lazy: num("bytes_lazy")? as u64,
        phases: v["phases"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let after = wait_status(
        "the lazily moved memhog to verify its memory on host2",
        || MemStatus::in_container(&hosts.host2, NAME),
        |s| s.round > before.round,
        POLL,
    )?;
    check_continues(&after, &before, "lazy move host1 -> host2")?;
    cli(&hosts.host2, &["rm", "-f", NAME])?;
    guard.on = None;
    Ok(sample)
}

/// The move report (`--output json`: one object on a line).
fn parse_report(out: &str) -> Result<MoveNums> {
    let v = json_line(out, "downtime_ms").context("no move report")?;
    let num = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("move report without {k}: {v}"))
    };
    let phases = v["phases"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(MoveNums {
        downtime: num("downtime_ms")? as f64,
        total: num("total_ms")? as f64,
        wall: 0.0,
        bytes_sent: num("bytes_sent")?,
        // Reported since the pre-seed of earlier checkpoints (bfed915); 0 before.
        bytes_preseeded: v["bytes_preseeded"].as_u64().unwrap_or(0),
        bytes_raw: num("bytes_raw")?,
        bytes_compressed: num("bytes_compressed")?,
        chunks_sent: num("chunks_sent")?,
        chunks_total: num("chunks_total")?,
        phases,
    })
}

impl Profile {
    /// Reads the first move's operation events off the two agents' text logs (only the part
    /// written since the run started). A line looks like
    /// `2026-01-02T03:04:05.123456Z  INFO op{...}: agent::ops: streaming the checkpoint to host2 phase="transfer"`.
    fn from_logs(src: &str, dst: &str) -> Profile {
        let (src, dst) = (&strip_ansi(src), &strip_ansi(dst));
        let at = |log: &str, needle: &str| -> Option<(f64, String)> {
            log.lines()
                .find(|l| l.contains(needle))
                .and_then(|l| Some((log_time(l)?, l.to_string())))
        };
        let span = |a: &Option<(f64, String)>, b: &Option<(f64, String)>| {
            Some(((b.as_ref()?.0 - a.as_ref()?.0) * 1e3).max(0.0))
        };
        let freeze = at(src, "freezing the container");
        let dumped = at(src, "streaming the checkpoint to");
        // Both the pre-seed of the bundle layer and the checkpoint's transfer end with "sent N
        // of M chunks, B bytes compressed": the first such line is the layer's, the first
        // after the dump the checkpoint's.
        let is_sent =
            |l: &&str| l.contains("sent ") && l.contains(" of ") && l.contains(" chunks, ");
        let layer_bytes = src.lines().find(is_sent).and_then(|l| {
            let (_, rest) = l.split_once(" chunks, ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        });
        let sent = src
            .lines()
            .skip_while(|l| !l.contains("streaming the checkpoint to"))
            .find(is_sent)
            .and_then(|l| Some((log_time(l)?, l.to_string())));
        let verify = at(dst, "phase=\"materialize\"");
        let restoring = at(dst, "restoring with CRIU");
        let running = at(dst, "phase=\"running\"");
        let commit = at(src, "removing the source copy");
        let criu_restore = commit.as_ref().and_then(|(_, l)| {
            let rest = l.split("criu restore ").nth(1)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        });
        Profile {
            dump: span(&freeze, &dumped),
            stream: span(&dumped, &sent),
            handoff: span(&sent, &verify),
            target_materialize: span(&verify, &restoring),
            target_restore: span(&restoring, &running),
            criu_restore,
            layer_bytes,
        }
    }
}

/// Seconds since midnight of a log line's RFC 3339 timestamp (enough for differences within a
/// run).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let time = time.split(['+', '-']).next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

// ---- the manual path ----

/// Everything the manual path made; `Drop` removes it (the listener, then each host's runc
/// containers and tmpfs, then the work dir).
struct ManualGuard<'a> {
    sides: [HostRunc<'a>; 2],
    listener: Option<Child>,
    _work: tempfile::TempDir,
}

impl ManualGuard<'_> {
    fn host(&self, i: usize) -> &HostAgent {
        self.sides[i].host()
    }

    /// `runc <args>` inside host `i` (see [`HostRunc::run`]).
    fn runc(&self, i: usize, args: &[&str]) -> Result<()> {
        self.sides[i].run(args)
    }
}

impl Drop for ManualGuard<'_> {
    fn drop(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = l.kill();
            let _ = l.wait();
        }
    }
}

fn run_manual(hosts: &TwoHosts, env: &Tools, mib: u64, tag: &str) -> Result<ManualSample> {
    // Before the guard, so they outlive the containers. Each host has its own copy of the bundle (runc uses the rootfs in place).
    let b1 = memhog_bundle(&env.memhog, mib, None);
    let b2 = memhog_bundle(&env.memhog, mib, None);
    let work = tempfile::Builder::new()
        .prefix("migrate-bench-move-")
        .tempdir_in("/run")
        .context("create the manual path's work dir")?;
    // Each host's own runc root and tmpfs, mounted inside that host's mount namespace.
    let side1 = HostRunc::new(&hosts.host1, env, work.path(), "host1")?;
    let side2 = HostRunc::new(&hosts.host2, env, work.path(), "host2")?;
    let count = work.path().join("wire-bytes");
    let (img1, img2) = (
        side1.images.display().to_string(),
        side2.images.display().to_string(),
    );
    let mut g = ManualGuard {
        sides: [side1, side2],
        listener: None,
        _work: work,
    };
    let id = format!("bench-move-{}-{mib}-{tag}", std::process::id());
    let id2 = format!("{id}-r");
    g.sides[0].ids.push(id.clone());
    g.sides[1].ids.push(id2.clone());
    g.runc(
        0,
        &[
            "run",
            "-d",
            "--bundle",
            &b1.path().display().to_string(),
            &id,
        ],
    )?;
    let status1 = b1.rootfs().join("tmp/mem");
    let status2 = b2.rootfs().join("tmp/mem");
    let read = |p: &std::path::Path| MemStatus::read(p);
    let poll = Duration::from_millis(20);
    wait_status(
        "memhog to fill its memory (runc, host1)",
        || read(&status1),
        |s| s.round >= 1,
        poll,
    )?;

    // The operator's procedure starts: a listener on host2 ...
    let t_start = Instant::now();
    let listener = host_cmd(g.host(1), &env.runc_path, "bash")?
        .args([
            "-c",
            &format!(
                "set -o pipefail; busybox nc -l -p {PORT} | zstd -d -q | tar -C '{img2}' -xf -"
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the listener on host2")?;
    g.listener = Some(listener);
    wait_listening(&g)?;

    // ... then the container is frozen and dumped, copied and restored.
    let t0 = Instant::now();
    g.runc(0, &["checkpoint", "--image-path", &img1, &id])?;
    let t_ck = Instant::now();
    g.sides[0].sh(
        &format!(
            "set -o pipefail; tar -C '{img1}' -cf - . | zstd -1 -T0 -q | dd bs=1M 2>'{}' >/dev/tcp/{}/{PORT}",
            count.display(),
            hosts.host2.ip
        ),
    )?;
    wait_listener(&mut g)?;
    let t_copy = Instant::now();
    g.runc(
        1,
        &[
            "restore",
            "-d",
            "--image-path",
            &img2,
            "--bundle",
            &b2.path().display().to_string(),
            &id2,
        ],
    )
    .map_err(|e| {
        let log = g.sides[1]
            .sh(&format!(
                "grep -E 'Error|rror \\(|fail' '{img2}/restore.log' | tail -n 8"
            ))
            .unwrap_or_default();
        e.context(format!("restore.log:\n{log}"))
    })?;
    let t1 = Instant::now();

    let at_dump = read(&status1).context("read memhog's status on host1 after the dump")?;
    let after = wait_status(
        "the restored memhog (runc, host2) to verify its memory",
        || read(&status2),
        |s| s.round > at_dump.round,
        poll,
    )?;
    check_continues(&after, &at_dump, "manual path")?;
    let wire_bytes = dd_bytes(&fs::read_to_string(&count).unwrap_or_default())
        .with_context(|| format!("no byte count from dd in {}", count.display()))?;
    let image_bytes = g.sides[0]
        .sh(&format!("du -sb '{img1}'"))?
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du of the image dir")?;
    g.runc(1, &["delete", "--force", &id2])?;
    g.sides[1].ids.clear();
    drop(g);
    Ok(ManualSample {
        downtime: ms(t1 - t0),
        total: ms(t1 - t_start),
        checkpoint: ms(t_ck - t0),
        copy: ms(t_copy - t_ck),
        restore: ms(t1 - t_copy),
        wire_bytes,
        image_bytes,
    })
}

/// Waits until host2's `nc` listens on [`PORT`].
fn wait_listening(g: &ManualGuard) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = g.sides[1].sh(&format!("ss -Hltn 'sport = :{PORT}'"))?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the listener on host2 does not listen on port {PORT}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for host2's receiving pipe (`nc | zstd -d | tar -x`) to finish.
fn wait_listener(g: &mut ManualGuard) -> Result<()> {
    let mut l = g.listener.take().context("no listener")?;
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(status) = l.try_wait().context("wait for the listener")? {
            let mut err = String::new();
            if let Some(mut e) = l.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            if !status.success() {
                bail!("receiving on host2 failed ({status}): {}", err.trim());
            }
            return Ok(());
        }
        if Instant::now() > deadline || interrupted() {
            let _ = l.kill();
            let _ = l.wait();
            bail!("receiving on host2 did not finish");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The byte count of coreutils dd's summary: "123 bytes (...) copied, ...".
fn dd_bytes(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains(" bytes") && l.contains("copied"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---- report ----

struct SizeResult {
    mib: u64,
    ours: Vec<OursSample>,
    lazy: Vec<LazySample>,
    manual: Vec<ManualSample>,
}

type OursReader = fn(&OursSample) -> Option<f64>;
type LazyReader = fn(&LazySample) -> Option<f64>;

/// The lazy move's numbers.
const LAZY: [(&str, LazyReader); 12] = [
    ("downtime (ms)", |l| Some(l.downtime)),
    ("fully resident after (ms)", |l| Some(l.resident)),
    ("total (ms)", |l| Some(l.total)),
    ("phase dump (ms)", |l| l.phases.get("dump").copied()),
    ("phase transfer (ms)", |l| l.phases.get("transfer").copied()),
    ("phase restore (ms)", |l| l.phases.get("restore").copied()),
    ("sent while frozen (MiB)", |l| Some(mib_of(l.bytes_sent))),
    ("memory after the start (MiB)", |l| {
        Some(mib_of(l.bytes_lazy))
    }),
    ("pages faulted on demand", |l| Some(l.faulted)),
    ("pages pushed in the background", |l| Some(l.pushed)),
    ("fault latency p50 (us)", |l| Some(l.fault_p50_us)),
    ("fault latency p99 (us)", |l| Some(l.fault_p99_us)),
];
type ManualReader = fn(&ManualSample) -> Option<f64>;

/// Rows compared with the manual path: name, ours, manual.
const COMPARED: [(&str, OursReader, ManualReader); 5] = [
    (
        "downtime (ms)",
        |o| Some(o.first.downtime),
        |m| Some(m.downtime),
    ),
    ("total (ms)", |o| Some(o.first.total), |m| Some(m.total)),
    (
        "bytes on the wire (MiB)",
        |o| Some(mib_of(o.first.wire())),
        |m| Some(mib_of(m.wire_bytes)),
    ),
    (
        "  of which the checkpoint, without the bundle (MiB)",
        |o| Some(mib_of(o.first.wire() - o.profile.layer_bytes?)),
        |m| Some(mib_of(m.wire_bytes)),
    ),
    (
        "bytes before compression (MiB)",
        |o| Some(mib_of(o.first.bytes_raw)),
        |m| Some(mib_of(m.image_bytes)),
    ),
];

/// Details of ours (first move unless named).
const OURS_ONLY: [(&str, OursReader); 19] = [
    ("CLI wall time of `migrate move` (ms)", |o| {
        Some(o.first.wall)
    }),
    ("phase preflight (ms)", |o| {
        o.first.phases.get("preflight").copied()
    }),
    ("phase preseed (ms)", |o| {
        o.first.phases.get("preseed").copied()
    }),
    ("phase dump (ms)", |o| o.first.phases.get("dump").copied()),
    ("phase transfer (ms)", |o| {
        o.first.phases.get("transfer").copied()
    }),
    ("phase restore (ms)", |o| {
        o.first.phases.get("restore").copied()
    }),
    ("phase commit (ms)", |o| {
        o.first.phases.get("commit").copied()
    }),
    ("log: freeze -> dumped (ms)", |o| o.profile.dump),
    ("log: cut + hash + compress + store + send (ms)", |o| {
        o.profile.stream
    }),
    ("log: sent -> target starts receive (ms)", |o| {
        o.profile.handoff
    }),
    ("log: target materialize (ms)", |o| {
        o.profile.target_materialize
    }),
    ("log: target restore (ms)", |o| o.profile.target_restore),
    ("log: CRIU restore on target (ms)", |o| {
        o.profile.criu_restore
    }),
    ("bytes compressed (MiB)", |o| {
        Some(mib_of(o.first.bytes_compressed))
    }),
    ("chunks sent / total", |o| {
        Some(o.first.chunks_sent as f64 / o.first.chunks_total.max(1) as f64)
    }),
    ("move back, unchanged: bytes sent (MiB)", |o| {
        Some(mib_of(o.back.wire()))
    }),
    ("third move, unchanged: bytes sent (MiB)", |o| {
        Some(mib_of(o.third.wire()))
    }),
    ("third move, unchanged: downtime (ms)", |o| {
        Some(o.third.downtime)
    }),
    ("third move sent / first move sent", second_move_fraction),
];

/// The "second move" metric: the third move's bytes sent (host1 → host2 again, the container
/// unchanged) over the first move's.
fn second_move_fraction(o: &OursSample) -> Option<f64> {
    Some(o.third.wire() as f64 / o.first.wire().max(1) as f64)
}

/// Details of the manual path.
const MANUAL_ONLY: [(&str, ManualReader); 3] = [
    ("runc checkpoint (ms)", |m| Some(m.checkpoint)),
    ("tar | zstd -> TCP -> zstd -d | tar (ms)", |m| Some(m.copy)),
    ("runc restore -d (ms)", |m| Some(m.restore)),
];

struct Report<'a> {
    args: &'a Args,
    machine: Value,
    results: Vec<SizeResult>,
    /// Runs that failed and were retried once.
    failures: Vec<String>,
    elapsed: Duration,
}

impl SizeResult {
    fn ours(&self, f: OursReader) -> Option<f64> {
        median(self.ours.iter().filter_map(f).collect())
    }
    fn manual(&self, f: ManualReader) -> Option<f64> {
        median(self.manual.iter().filter_map(f).collect())
    }
    fn lazy(&self, f: LazyReader) -> Option<f64> {
        median(self.lazy.iter().filter_map(f).collect())
    }
    /// Median of the per-run ratios of the lazy downtime over the manual path's.
    fn lazy_vs_manual(&self) -> Option<f64> {
        median(
            self.lazy
                .iter()
                .zip(&self.manual)
                .map(|(l, m)| l.downtime / m.downtime)
                .collect(),
        )
    }
    /// Median of the per-run ratios of the lazy downtime over the cold move's.
    fn lazy_vs_cold(&self) -> Option<f64> {
        median(
            self.lazy
                .iter()
                .zip(&self.ours)
                .map(|(l, o)| l.downtime / o.first.downtime)
                .collect(),
        )
    }
    /// Median of the per-run ratios ours/manual (runs are paired: same hosts, same run).
    fn paired_ratio(&self, fo: OursReader, fm: ManualReader) -> Option<f64> {
        median(
            self.ours
                .iter()
                .zip(&self.manual)
                .filter_map(|(o, m)| Some(fo(o)? / fm(m)?))
                .collect(),
        )
    }
}

impl Report<'_> {
    fn print_table(&self) {
        println!("{}", machine_line(&self.machine));
        println!(
            "live move of a memhog container between two hosts (network namespaces), ours vs the manual runc path, interleaved; medians; {:.0} s in all",
            self.elapsed.as_secs_f64()
        );
        let cell = |x: Option<f64>, unit_mib: bool| {
            x.map_or("-".to_string(), |x| {
                if unit_mib {
                    format!("{x:.2}")
                } else {
                    format!("{x:.0}")
                }
            })
        };
        for r in &self.results {
            println!();
            println!(
                "{} MiB ({} runs of each)",
                r.mib,
                r.ours.len().min(r.manual.len())
            );
            println!(
                "{:<52} {:>10} {:>10} {:>12} {:>14}",
                "", "ours", "manual", "ours/manual", "(paired runs)"
            );
            for (name, fo, fm) in COMPARED {
                let mibs = name.contains("MiB");
                let (a, b) = (r.ours(fo), r.manual(fm));
                println!(
                    "{:<52} {:>10} {:>10} {:>12} {:>14}",
                    name,
                    cell(a, mibs),
                    cell(b, mibs),
                    a.zip(b)
                        .map_or("-".into(), |(a, b)| format!("{:.2}", a / b)),
                    r.paired_ratio(fo, fm)
                        .map_or("-".into(), |x| format!("{x:.2}"))
                );
            }
            for (name, f) in OURS_ONLY {
                let fine = name.contains("MiB") || name.contains('/');
                println!(
                    "{:<52} {:>10}",
                    format!("ours: {name}"),
                    cell(r.ours(f), fine)
                );
            }
            for (name, f) in MANUAL_ONLY {
                println!(
                    "{:<52} {:>21}",
                    format!("manual: {name}"),
                    cell(r.manual(f), false)
                );
            }
            for (name, f) in LAZY {
                println!(
                    "{:<52} {:>10}",
                    format!("lazy: {name}"),
                    cell(r.lazy(f), name.contains("MiB"))
                );
            }
            println!(
                "{:<52} {:>10}",
                "lazy: downtime / manual (paired runs)",
                r.lazy_vs_manual().map_or("-".into(), |x| format!("{x:.3}"))
            );
            println!(
                "{:<52} {:>10}",
                "lazy: downtime / cold (paired runs)",
                r.lazy_vs_cold().map_or("-".into(), |x| format!("{x:.3}"))
            );
        }
        println!();
        println!("targets:");
        for line in self.targets() {
            println!("  {line}");
        }
        print_failures(&self.failures);
        println!();
        println!(
            "notes: ours' numbers come from the move report (downtime: frozen until running on the"
        );
        println!("  target); the manual downtime runs from `runc checkpoint`'s start to `runc restore`'s return.");
        println!("  Ours' bytes include the bundle layer (pre-seed, first move only); the manual path assumes");
        println!("  the bundle is already on host2 and carries no rootfs changes.");
    }

    /// The issue's three targets, each with its verdict.
    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let down = COMPARED[0];
        let bytes = COMPARED[2];
        if let Some(r) = self
            .results
            .iter()
            .filter(|r| r.mib >= LARGE_MIB)
            .max_by_key(|r| r.mib)
        {
            if let Some(x) = r.ours(down.1).zip(r.manual(down.2)).map(|(a, b)| a / b) {
                lines.push(format!(
                    "downtime at {} MiB <= 0.5 x manual: {x:.2} x, {}",
                    r.mib,
                    verdict(x <= 0.5)
                ));
            }
        } else {
            lines.push("downtime at 1 GiB: not measured (add 1024 to --sizes)".into());
        }
        for r in &self.results {
            if let Some(x) = r.ours(bytes.1).zip(r.manual(bytes.2)).map(|(a, b)| a / b) {
                lines.push(format!(
                    "bytes on the wire at {} MiB <= manual: {x:.3} x, {}",
                    r.mib,
                    verdict(x <= 1.0)
                ));
            }
        }
        let lazy_down = |r: &SizeResult| r.lazy(|l| Some(l.downtime));
        if let (Some(small), Some(large)) = (self.results.first(), self.results.last()) {
            if large.mib > small.mib {
                if let Some((a, b)) = lazy_down(large).zip(lazy_down(small)) {
                    lines.push(format!(
                        "lazy downtime at {} MiB <= 1.5 x at {} MiB: {:.2} x, {}",
                        large.mib,
                        small.mib,
                        a / b,
                        verdict(a / b <= 1.5)
                    ));
                }
            }
        }
        if let Some(r) = self
            .results
            .iter()
            .filter(|r| r.mib >= LARGE_MIB)
            .max_by_key(|r| r.mib)
        {
            if let Some(x) = lazy_down(r).zip(r.manual(down.2)).map(|(a, b)| a / b) {
                lines.push(format!(
                    "lazy downtime at {} MiB < 0.1 x manual: {x:.3} x, {}",
                    r.mib,
                    verdict(x < 0.1)
                ));
            }
        }
        for r in &self.results {
            if let Some(x) = r.ours(second_move_fraction) {
                lines.push(format!(
                    "third move (unchanged) at {} MiB < 10 % of the first: {:.2} %, {}",
                    r.mib,
                    x * 100.0,
                    verdict(x < 0.1)
                ));
            }
        }
        lines
    }

    fn json(&self) -> Value {
        let sizes: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let mut compared = serde_json::Map::new();
                for (name, fo, fm) in COMPARED {
                    let (a, b) = (r.ours(fo), r.manual(fm));
                    compared.insert(
                        name.to_string(),
                        json!({
                            "ours_median": a.map(round2),
                            "manual_median": b.map(round2),
                            "ratio": a.zip(b).map(|(a, b)| round3(a / b)),
                            "paired_ratio_median": r.paired_ratio(fo, fm).map(round3),
                            "ours": r.ours.iter().map(|s| fo(s).map(round2)).collect::<Vec<_>>(),
                            "manual": r.manual.iter().map(|s| fm(s).map(round2)).collect::<Vec<_>>(),
                        }),
                    );
                }
                let mut ours = serde_json::Map::new();
                for (name, f) in OURS_ONLY {
                    ours.insert(
                        name.to_string(),
                        json!({
                            "median": r.ours(f).map(|x| round2(x * 100.0) / 100.0),
                            "runs": r.ours.iter().map(|s| f(s).map(|x| round2(x * 100.0) / 100.0)).collect::<Vec<_>>(),
                        }),
                    );
                }
                let mut manual = serde_json::Map::new();
                for (name, f) in MANUAL_ONLY {
                    manual.insert(
                        name.to_string(),
                        json!({
                            "median": r.manual(f).map(round2),
                            "runs": r.manual.iter().map(|s| f(s).map(round2)).collect::<Vec<_>>(),
                        }),
                    );
                }
                let mut lazy = serde_json::Map::new();
                for (name, f) in LAZY {
                    lazy.insert(
                        name.to_string(),
                        json!({
                            "median": r.lazy(f).map(round2),
                            "runs": r.lazy.iter().map(|s| f(s).map(round2)).collect::<Vec<_>>(),
                        }),
                    );
                }
                lazy.insert("downtime / manual (paired)".into(), json!(r.lazy_vs_manual().map(round3)));
                lazy.insert("downtime / cold (paired)".into(), json!(r.lazy_vs_cold().map(round3)));
                json!({
                    "mib": r.mib,
                    "runs": r.ours.len().min(r.manual.len()),
                    "lazy": lazy,
                    "compared": compared,
                    "ours": ours,
                    "manual": manual,
                    "second_move_fraction": r.ours(second_move_fraction).map(|x| round2(x * 1e4) / 1e4),
                })
            })
            .collect();
        json!({
            "benchmark": "live-move",
            "what": "memhog container (half-compressible memory) moved host1 -> host2 with `migrate move`, vs runc checkpoint | tar | zstd -1 -T0 | TCP | zstd -d | tar | runc restore between the same hosts",
            "runs": self.args.runs,
            "large_runs": self.args.large_runs.unwrap_or(self.args.runs),
            "warmup": self.args.warmup,
            "machine": self.machine,
            "elapsed_s": self.elapsed.as_secs(),
            "targets": self.targets(),
            "failures_retried": self.failures,
            "sizes": sizes,
        })
    }
}
