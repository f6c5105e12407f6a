//! The container shim: a small process per container (`migrate-agent shim ...`) that creates or
//! restores the container with the runtime, so the container's init is the shim's child, copies
//! its stdout/stderr to a rotating log file, and records its exit code in an exit file.
//!
//! The shim lives in its own process group and does not depend on the agent: stopping or
//! killing the agent leaves containers running, their logs flowing and their exit codes
//! recorded; a restarted agent re-adopts them from the runtime state and these files.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What the shim is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    /// Container id.
    pub id: String,
    /// The runtime's state root.
    pub state_root: PathBuf,
    /// Cgroup parent of the container.
    pub cgroup_parent: String,
    /// The container's log file.
    pub log: PathBuf,
    /// Where the exit record is written when init exits.
    pub exit_file: PathBuf,
    /// Rotate the log at this size.
    pub log_max_bytes: u64,
    /// Rotated logs kept.
    pub log_keep: u32,
    /// Create from a bundle, or restore from a checkpoint.
    pub action: ShimAction,
}

/// How the container comes to life.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShimAction {
    /// Create and start from an OCI bundle.
    Create {
        /// Bundle directory.
        bundle: PathBuf,
        /// Network namespace to join instead of the spec's.
        netns: Option<PathBuf>,
    },
    /// Restore from a checkpoint directory.
    Restore {
        /// Checkpoint directory.
        checkpoint: PathBuf,
        /// Network namespace to restore into (default: as at checkpoint).
        netns: Option<PathBuf>,
        /// The bundle on this host, when it moved here from elsewhere.
        bundle: Option<PathBuf>,
        /// Restore established TCP connections closed (see `runtime::RestoreOpts`).
        #[serde(default)]
        tcp_close: bool,
        /// Post-copy: memory comes from the lazy-pages daemon on the same images.
        #[serde(default)]
        lazy_pages: bool,
    },
}

/// The shim's first (and only) line on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimStarted {
    /// Host PID of the container's init, when it started.
    pub pid: Option<i32>,
    /// The error chain on one line, when it did not.
    pub error: Option<String>,
    /// Milliseconds CRIU took (restore only).
    pub restore_ms: Option<u64>,
}

/// The exit file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// When, Unix seconds.
    pub finished_unix: i64,
}

impl ExitRecord {
    /// Reads an exit file, if present and complete.
    pub fn read(path: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }
}

pub use runtime::error::chain;

/// Starts a shim for `spec` and waits for its report. Returns the shim's report.
pub fn spawn(
    agent_exe: &Path,
    spec: &ShimSpec,
    shim_log: &Path,
    timeout: Duration,
) -> std::io::Result<ShimStarted> {
    use std::os::unix::process::CommandExt;
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(shim_log)?;
    let mut child = Command::new(agent_exe)
        .arg("shim")
        .arg(serde_json::to_string(spec).map_err(std::io::Error::other)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // Its own process group: signals to the agent's group do not reach containers.
        .process_group(0)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("shim stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // The shim outlives this call; reap it in the background when it exits.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let line = rx
        .recv_timeout(timeout)
        .map_err(|_| std::io::Error::other(format!("shim gave no answer within {timeout:?}")))?;
    if line.trim().is_empty() {
        let tail = fs::read_to_string(shim_log).unwrap_or_default();
        let last = tail.lines().last().unwrap_or("no output").to_string();
        return Err(std::io::Error::other(format!(
            "shim exited without answering: {last}"
        )));
    }
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Entry point of `migrate-agent shim <json>`. Never returns.
pub fn main(spec_json: &str) -> ! {
    let spec: ShimSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shim: bad spec: {e}");
            std::process::exit(2);
        }
    };
    let _ = fs::remove_file(&spec.exit_file);
    let started = start(&spec);
    let report = match &started {
        Ok((c, _, restore_ms)) => ShimStarted {
            pid: Some(c.pid()),
            error: None,
            restore_ms: *restore_ms,
        },
        Err(e) => ShimStarted {
            pid: None,
            error: Some(e.clone()),
            restore_ms: None,
        },
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&report).unwrap_or_default()
    );
    let _ = out.flush();
    let Ok((container, stdio, _)) = started else {
        std::process::exit(1);
    };
    let log = Arc::new(Mutex::new(LogWriter::open(
        &spec.log,
        spec.log_max_bytes,
        spec.log_keep,
    )));
    let pumps: Vec<_> = [stdio.stdout, stdio.stderr]
        .into_iter()
        .flatten()
        .map(|fd| pump(fd, log.clone()))
        .collect();
    drop(stdio.stdin);
    let code = container.wait().unwrap_or(-1);
    let record = ExitRecord {
        exit_code: code,
        finished_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let tmp = spec.exit_file.with_extension("exit.tmp");
    let data = serde_json::to_vec(&record).unwrap_or_default();
    if fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, &spec.exit_file))
        .is_err()
    {
        eprintln!("shim: cannot write {}", spec.exit_file.display());
    }
    // Give the pumps a moment to drain what init wrote last.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    for p in pumps {
        while !p.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Ok(mut w) = log.lock() {
        w.flush();
    }
    std::process::exit(0)
}

type Started = (runtime::Container, runtime::ContainerStdio, Option<u64>);

fn start(spec: &ShimSpec) -> Result<Started, String> {
    let rt = runtime::Runtime::new(&spec.state_root)
        .map_err(|e| chain(&e))?
        .with_cgroup_parent(spec.cgroup_parent.clone());
    match &spec.action {
        ShimAction::Create { bundle, netns } => {
            let opts = runtime::CreateOpts {
                netns: netns.clone(),
                ..Default::default()
            };
            let (c, stdio) = rt.create(&spec.id, bundle, opts).map_err(|e| chain(&e))?;
            if let Err(e) = c.start() {
                let msg = chain(&e);
                let _ = c.delete(true);
                return Err(msg);
            }
            Ok((c, stdio, None))
        }
        ShimAction::Restore {
            checkpoint,
            netns,
            bundle,
            tcp_close,
            lazy_pages,
        } => {
            let opts = runtime::RestoreOpts {
                netns: netns.clone(),
                bundle: bundle.clone(),
                tcp_close: *tcp_close,
                lazy_pages: *lazy_pages,
                ..Default::default()
            };
            let (c, stdio, restored) = rt
                .restore(checkpoint, &spec.id, opts)
                .map_err(|e| chain(&e))?;
            Ok((c, stdio, Some(restored.restore_time.as_millis() as u64)))
        }
    }
}

fn pump(fd: OwnedFd, log: Arc<Mutex<LogWriter>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut src = File::from(fd);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut w) = log.lock() {
                        w.write(&buf[..n]);
                    }
                }
            }
        }
    })
}

/// Appends to a log file, rotating it to `.1`, `.2`, ... when it reaches `max_bytes`.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl LogWriter {
    /// Opens (appending to) `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> LogWriter {
        let file = OpenOptions::new().create(true).append(true).open(path).ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            keep,
        }
    }

    /// Appends `data`, rotating first when it would pass the limit.
    pub fn write(&mut self, data: &[u8]) {
        if self.size > 0 && self.size + data.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }

    fn rotate(&mut self) {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.keep == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            for i in (1..self.keep).rev() {
                let _ = fs::rename(name(i), name(i + 1));
            }
            let _ = fs::rename(&self.path, name(1));
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, 100, 2);
        for i in 0..10 {
            w.write(format!("{i:049}\n").as_bytes());
        }
        w.flush();
        assert_eq!(fs::read_to_string(&path).unwrap().len(), 100);
        assert!(dir.path().join("c.log.1").exists());
        assert!(dir.path().join("c.log.2").exists());
        assert!(!dir.path().join("c.log.3").exists());
        let newest = fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with(&format!("{:049}\n", 9)));
    }

    #[test]
    fn exit_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.exit");
        assert_eq!(ExitRecord::read(&p), None);
        let r = ExitRecord {
            exit_code: 137,
            finished_unix: 5,
        };
        fs::write(&p, serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(ExitRecord::read(&p), Some(r));
    }
}
