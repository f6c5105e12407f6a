//! What the benchmark binaries share: argument errors, exit codes and their `main`; the
//! machine description; medians and units; CRIU's log timings; memhog containers and their
//! status; the agents' CLI; and runc run inside a test host, whose state root, log and image
//! tmpfs are removed on drop.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use runtime::criu::Criu;
use runtime::syscall::signals::interrupted;
use serde_json::{json, Value};

use crate::agent::AgentNs;
use crate::hosts::{HostAgent, TwoHosts};
use crate::rt::chain;
use crate::TestBundle;

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

/// A benchmark's command line, flag by flag: `while let Some(flag) = flags.next_flag()`, then
/// [`Flags::number`] and the like for the flag's value, and [`unknown_flag`] for the rest.
pub struct Flags(std::iter::Skip<std::env::Args>);

impl Flags {
    /// The process's arguments.
    pub fn from_env() -> Flags {
        Flags(std::env::args().skip(1))
    }

    /// The next flag.
    pub fn next_flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.0.next().ok_or_else(|| format!("{flag} needs a value"))
    }

    /// A number after `flag`.
    pub fn number(&mut self, flag: &str) -> Result<usize, String> {
        self.value(flag)?
            .parse()
            .map_err(|_| format!("{flag} needs a number"))
    }

    /// A path after `flag`.
    pub fn path(&mut self, flag: &str) -> Result<PathBuf, String> {
        self.value(flag).map(PathBuf::from)
    }

    /// Sizes in MiB after `flag`, separated by commas: `--sizes 64,256,1024`.
    pub fn sizes(&mut self, flag: &str) -> Result<Vec<u64>, String> {
        let sizes: Vec<u64> = self
            .value(flag)?
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{flag} needs MiB numbers separated by commas"))?;
        if sizes.is_empty() || sizes.contains(&0) {
            return Err(format!("{flag} needs sizes of at least 1 MiB"));
        }
        Ok(sizes)
    }
}

/// The error for a flag the benchmark does not know (`-h` and `--help` ask for the usage, see
/// [`main`]).
pub fn unknown_flag(flag: &str) -> String {
    match flag {
        "-h" | "--help" => String::new(),
        other => format!("unknown argument {other:?}"),
    }
}

/// Prints the runs that failed and were run again on fresh hosts, if any: the first line of
/// each error (`--json` has all of it, the agent log's tail too).
pub fn print_failures(failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    println!();
    println!(
        "failed and retried once on fresh hosts ({}):",
        failures.len()
    );
    for f in failures {
        println!("  {}", f.lines().next().unwrap_or(""));
    }
}

/// Prints a benchmark's results to stdout: one JSON object with `--json`, else the table.
pub fn print_results(json: bool, to_json: impl FnOnce() -> Value, table: impl FnOnce()) {
    if json {
        println!(
            "{}",
            serde_json::to_string(&to_json()).expect("report serializes")
        );
    } else {
        table();
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

/// The machine as the first line of a report: cores, CPU, kernel, memory, then the `runc`,
/// `criu` and `zstd` fields where it has them.
pub fn machine_line(m: &Value) -> String {
    let mut line = format!(
        "machine: {} CPUs ({}), kernel {}, {} GiB RAM",
        m["nproc"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["mem_gib"]
    );
    for (key, prefix) in [("runc", ""), ("criu", "CRIU "), ("zstd", "")] {
        if let Some(v) = m[key].as_str() {
            line.push_str(&format!("; {prefix}{v}"));
        }
    }
    line
}

// ---- numbers ----

/// A duration in ms.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Bytes in MiB.
pub fn mib_of(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The median; `None` for no values.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Rounded to 2 decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rounded to 3 decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An error once Ctrl-C (or SIGTERM) arrived, so the benchmark unwinds through its guards.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

// ---- prerequisites, and runc next to our CRIU ----

/// The first line a tool prints for `arg` (e.g. `--version`), from stdout or stderr.
pub fn first_line(cmd: &Path, arg: &str) -> Result<String> {
    let out = Command::new(cmd)
        .arg(arg)
        .output()
        .with_context(|| format!("failed to run {}", cmd.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// A `PATH` for runc with CRIU's directory first: runc finds `criu` through `PATH`, and so
/// uses the CRIU the runtime uses.
pub fn runc_path(criu: &Criu) -> Result<OsString> {
    let criu_dir = criu
        .path()
        .parent()
        .context("CRIU's path has no directory")?;
    std::env::join_paths(
        std::iter::once(criu_dir.to_path_buf()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .context("build runc's PATH")
}

/// What a benchmark that drives the agents side by side with runc needs from the machine.
pub struct Tools {
    /// The static memhog (`tests/support/memhog.c`).
    pub memhog: PathBuf,
    /// runc.
    pub runc: PathBuf,
    /// `PATH` for runc: CRIU's directory first (see [`runc_path`]).
    pub runc_path: OsString,
    /// [`machine`] with the versions of runc, CRIU and zstd.
    pub machine: Value,
}

impl Tools {
    /// Checks that `bench` runs as root, that the agent, the CLI and the runtime's helper sit
    /// next to it, that CRIU, runc (`runc`), zstd and every one of `tools` are installed; then
    /// builds memhog.
    pub fn check(bench: &str, runc: &Path, tools: &[&str]) -> Result<Tools> {
        if !nix::unistd::geteuid().is_root() {
            bail!("{bench} needs root (it creates namespaces, mounts and cgroups)");
        }
        let exe = std::env::current_exe().context("current exe")?;
        for bin in ["migrate", "migrate-agent", "migrate-rt-init"] {
            let path = exe.with_file_name(bin);
            if !path.is_file() {
                bail!(
                    "{} is missing; run `cargo build --release --workspace --bins` first",
                    path.display()
                );
            }
        }
        crate::prereq::require_criu();
        let criu = Criu::locate().map_err(|e| anyhow!("{}", chain(&e)))?;
        let criu_version = criu.version().map_err(|e| anyhow!("{}", chain(&e)))?;
        let runc_version =
            first_line(runc, "--version").context("install runc or pass --runc PATH")?;
        let zstd_version = first_line(Path::new("zstd"), "--version")
            .with_context(|| format!("{bench} needs zstd (apt-get install zstd)"))?;
        for tool in tools {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
            {
                bail!("{tool} is missing ({bench} needs it)");
            }
        }
        Ok(Tools {
            memhog: crate::bundle::static_program("memhog"),
            runc: runc.to_path_buf(),
            runc_path: runc_path(&criu)?,
            machine: machine_with(json!({
                "runc": runc_version,
                "criu": format!("{criu_version} ({})", criu.path().display()),
                "zstd": zstd_version,
            })),
        })
    }
}

// ---- CRIU's logs ----

/// A CRIU log's timed lines: `(00.053690) text` → (seconds, text); untimed lines are skipped.
pub fn criu_log_lines(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('(')?;
            let (ts, text) = rest.split_once(')')?;
            Some((ts.trim().parse::<f64>().ok()?, text.trim().to_string()))
        })
        .collect()
}

/// A log file's text, "" if it cannot be read.
pub fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// From a CRIU log's first timestamp to its last.
pub fn criu_log_total(text: &str) -> Option<Duration> {
    let lines = criu_log_lines(text);
    let (first, last) = (lines.first()?.0, lines.last()?.0);
    Some(Duration::from_secs_f64((last - first).max(0.0)))
}

/// Intervals read off CRIU's dump.log timestamps.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpLog {
    /// CRIU's first to last timestamp.
    pub total: Option<Duration>,
    /// From "freezing cgroup" to "Unfreezing tasks" (where the tree is killed, or resumed with
    /// `leave_running`): frozen time, measured the same way for any caller of CRIU.
    pub frozen: Option<Duration>,
    /// From "Running post-dump scripts" to "Unfreezing tasks": the post-dump hook's time.
    pub post_dump: Option<Duration>,
}

impl DumpLog {
    /// Reads the intervals off the text of a dump.log.
    pub fn parse(text: &str) -> DumpLog {
        let lines = criu_log_lines(text);
        let at = |needle: &str| {
            lines
                .iter()
                .find(|(_, text)| text.starts_with(needle))
                .map(|(t, _)| *t)
        };
        let span =
            |a: Option<f64>, b: Option<f64>| Some(Duration::from_secs_f64((b? - a?).max(0.0)));
        let unfreeze = at("Unfreezing tasks");
        DumpLog {
            total: criu_log_total(text),
            frozen: span(at("freezing cgroup"), unfreeze),
            post_dump: span(at("Running post-dump scripts"), unfreeze),
        }
    }
}

// ---- memhog ----

/// How long memhog may take to fill its memory, or to verify it again.
pub const MEMHOG_WAIT: Duration = Duration::from_secs(180);

/// A busybox bundle running `memhog MIB /tmp/mem [CHURN_PCT]` (`tests/support/memhog.c`).
pub fn memhog_bundle(memhog: &Path, mib: u64, churn_pct: Option<u32>) -> TestBundle {
    let mib = mib.to_string();
    let churn = churn_pct.map(|p| p.to_string());
    let mut args = vec!["/bin/memhog", mib.as_str(), "/tmp/mem"];
    args.extend(churn.as_deref());
    let b = TestBundle::busybox(&args);
    b.add_file(memhog, "/bin/memhog");
    b
}

/// One parsed memhog status line: "ok <round> <checksum>".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemStatus {
    /// Whether the last round verified (`ok`) or found corruption.
    pub ok: bool,
    /// Rounds completed.
    pub round: u64,
    /// The memory's checksum, in hex.
    pub checksum: String,
}

impl MemStatus {
    /// Parses a status line.
    pub fn parse(text: &str) -> Option<MemStatus> {
        let f: Vec<&str> = text.split_whitespace().collect();
        Some(MemStatus {
            ok: *f.first()? == "ok",
            round: f.get(1)?.parse().ok()?,
            checksum: f.get(2)?.to_string(),
        })
    }

    /// Reads a status file.
    pub fn read(path: &Path) -> Option<MemStatus> {
        MemStatus::parse(&fs::read_to_string(path).ok()?)
    }

    /// memhog's status inside container `name` of `h`'s agent (`migrate exec ... cat`).
    pub fn in_container(h: &HostAgent, name: &str) -> Option<MemStatus> {
        let out = h.cli(&["exec", name, "--", "cat", "/tmp/mem"]);
        if !out.status.success() {
            return None;
        }
        MemStatus::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// Polls `read` every `poll` until `done` accepts the status; an error if memhog reports
/// corruption, after [`MEMHOG_WAIT`], or on Ctrl-C.
pub fn wait_status(
    what: &str,
    mut read: impl FnMut() -> Option<MemStatus>,
    mut done: impl FnMut(&MemStatus) -> bool,
    poll: Duration,
) -> Result<MemStatus> {
    let deadline = Instant::now() + MEMHOG_WAIT;
    let mut last = None;
    loop {
        check_interrupted()?;
        if let Some(s) = read() {
            if !s.ok {
                bail!("memhog reports {s:?} ({what})");
            }
            if done(&s) {
                return Ok(s);
            }
            last = Some(s);
        }
        if Instant::now() > deadline {
            bail!("timed out after {MEMHOG_WAIT:?} waiting for {what} (last status {last:?})");
        }
        std::thread::sleep(poll);
    }
}

// ---- the agents ----

/// Runs the `migrate` CLI against `h`'s agent; stdout, or an error with stderr and the tail of
/// the agent's log.
pub fn cli(h: &HostAgent, args: &[&str]) -> Result<String> {
    let out = h.cli(args);
    if !out.status.success() {
        let log = strip_ansi(&h.log());
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "migrate {args:?} on {} failed ({}): {}\n--- {} agent log (tail) ---\n{}",
            h.node,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            h.node,
            tail.join("\n")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of the CLI's `--output json` that is an object with field `key`.
pub fn json_line(out: &str, key: &str) -> Result<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get(key).is_some())
        .with_context(|| format!("no {key} in {out:?}"))
}

/// The text without ANSI colour codes (the agent's text log has them).
pub fn strip_ansi(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let mut esc = false;
    for c in text.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, c) if c.is_ascii_alphabetic() => esc = false,
            (true, _) => {}
            (false, c) => s.push(c),
        }
    }
    s
}

/// Removes container `name` from host `on` (or, failing that, the other host) when dropped,
/// also after a failure. Set `on` to `None` once it is gone.
pub struct AgentContainer<'a> {
    /// The hosts.
    pub hosts: &'a TwoHosts,
    /// The container's name.
    pub name: &'a str,
    /// The host that has it now.
    pub on: Option<&'static str>,
}

impl Drop for AgentContainer<'_> {
    fn drop(&mut self) {
        let Some(on) = self.on else { return };
        let out = self.hosts.host(on).cli(&["rm", "-f", self.name]);
        if !out.status.success() {
            // Maybe a failed move left it on the other host.
            let other = if on == "host1" { "host2" } else { "host1" };
            let _ = self.hosts.host(other).cli(&["rm", "-f", self.name]);
        }
    }
}

// ---- runc inside a test host ----

/// A command inside host `h`: its network and mount namespaces (as `HostAgent::on_host`), with
/// `path` as `PATH` (runc's, see [`runc_path`]) and stdin on /dev/null.
pub fn host_cmd(h: &HostAgent, path: &OsStr, program: &str) -> Result<Command> {
    let Some(AgentNs::Host(pid)) = &h.ns else {
        bail!("{} is not a test host", h.node);
    };
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--target={pid}"))
        .args(["--mount", "--net", "--", program])
        .env("PATH", path)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `bash -c script` inside host `h` (see [`host_cmd`]); stdout, or an error with stderr.
pub fn host_sh(h: &HostAgent, path: &OsStr, script: &str) -> Result<String> {
    let out: Output = host_cmd(h, path, "bash")?
        .args(["-c", script])
        .output()
        .with_context(|| format!("run on {}: {script}", h.node))?;
    if !out.status.success() {
        bail!(
            "on {}: `{script}` failed ({}): {}",
            h.node,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// runc inside one test host: its own state root and log, and an image dir on a tmpfs mounted
/// inside that host's mount namespace. `Drop` force-deletes the containers in `ids` and
/// unmounts the tmpfs.
pub struct HostRunc<'a> {
    host: &'a HostAgent,
    tools: &'a Tools,
    /// runc's `--root`.
    pub root: PathBuf,
    /// runc's `--log`.
    pub log: PathBuf,
    /// The image dir (a tmpfs inside the host).
    pub images: PathBuf,
    mounted: bool,
    /// Containers to delete on drop.
    pub ids: Vec<String>,
}

impl<'a> HostRunc<'a> {
    /// Makes `runc-<name>`, `runc-<name>.log` and `images-<name>` in `work` and mounts a tmpfs
    /// on the image dir inside `host`.
    pub fn new(host: &'a HostAgent, tools: &'a Tools, work: &Path, name: &str) -> Result<Self> {
        let mut r = HostRunc {
            host,
            tools,
            root: work.join(format!("runc-{name}")),
            log: work.join(format!("runc-{name}.log")),
            images: work.join(format!("images-{name}")),
            mounted: false,
            ids: Vec::new(),
        };
        fs::create_dir(&r.root).context("create runc root")?;
        fs::create_dir(&r.images).context("create image dir")?;
        r.sh(&format!(
            "mount -t tmpfs -o mode=0700 tmpfs '{}'",
            r.images.display()
        ))?;
        r.mounted = true;
        Ok(r)
    }

    /// The host it runs in.
    pub fn host(&self) -> &'a HostAgent {
        self.host
    }

    /// Runs `bash -c script` inside the host (see [`host_sh`]).
    pub fn sh(&self, script: &str) -> Result<String> {
        host_sh(self.host, &self.tools.runc_path, script)
    }

    /// A command inside the host (see [`host_cmd`]).
    pub fn cmd(&self, program: &str) -> Result<Command> {
        host_cmd(self.host, &self.tools.runc_path, program)
    }

    /// `runc --root R --log L <args>` inside the host, stdio on /dev/null (a detached
    /// container inherits it).
    pub fn run(&self, args: &[&str]) -> Result<()> {
        let _ = fs::remove_file(&self.log);
        let status = self
            .cmd(&self.tools.runc.display().to_string())?
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("run runc")?;
        if !status.success() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "runc {args:?} on {} failed ({status}): {}",
                self.host.node,
                tail.join(" | ")
            );
        }
        Ok(())
    }
}

impl Drop for HostRunc<'_> {
    fn drop(&mut self) {
        for id in self.ids.clone() {
            let _ = self.run(&["delete", "--force", &id]);
        }
        if self.mounted {
            if let Err(e) = self.sh(&format!("umount '{}'", self.images.display())) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}
