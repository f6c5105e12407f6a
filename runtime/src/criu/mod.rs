//! Client of CRIU's RPC (`criu swrk`): version, feature checks, dump and restore.
//!
//! Each call starts one `criu swrk` process, sends one request (or, for pre-copy, a chain of
//! `PRE_DUMP`s and a `DUMP`), answers CRIU's notifications through a caller's closure, and
//! reaps the process before it returns, whatever happened. Messages are the types generated
//! from CRIU's `rpc.proto` that `rust-criu` exports; its `Criu` driver is not used because it
//! drops the restored pid, takes only plain `fn` callbacks, leaks fds and zombies, and lacks
//! `cg_root`, `FEATURE_CHECK`, `CPUINFO_*`, pre-dumps, `network_lock` and the page-server
//! socket (CRIU-NOTES §1).
//!
//! Calls block; async callers run them in `spawn_blocking`. Every dump and restore logs at
//! level 4 to `dump.log` / `restore.log` next to its images. On failure the error carries the
//! `Error` lines of that log, not just CRIU's first error message (which on hosts without
//! `CAP_SYS_RESOURCE` is a harmless `RLIMIT_NOFILE` complaint).
//!
//! ```no_run
//! use runtime::criu::{Criu, DumpRequest, notify};
//! # fn main() -> Result<(), runtime::criu::CriuError> {
//! let criu = Criu::locate()?; // CRIU >= 4.1, or an error naming deploy/install.sh
//! let req = DumpRequest { images_dir: "/run/ckpt/web".into(), pid: 4242, ..Default::default() };
//! criu.dump(&req, &mut |n: &mut notify::Notify| {
//!     if n.script == notify::script::POST_DUMP { /* ship the images, then say yes */ }
//!     Ok(())
//! })?;
//! # Ok(()) }
//! ```

mod check;
mod error;
mod lazy;
pub mod notify;
mod request;
mod swrk;
mod version;

use std::env;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protobuf::MessageField;
use rust_criu::rust_criu_protobuf::rpc;

pub use check::{
    pipe_max_size, CheckReport, FeatureCheck, RpcFeatures, LAZY_PIPE_MAX_SIZE, REPORTED_FEATURES,
};
pub use error::{CriuError, CriuFailure, INSTALL_HINT};
pub use lazy::{LazyPages, LAZY_PAGES_LOG};
pub use notify::{Notify, NotifyError, NotifyFn};
pub use request::{
    CgroupMode, DumpRequest, JoinNamespace, NetworkLock, PageServer, RestoreRequest,
    DEFAULT_LOG_LEVEL,
};
pub use version::{CriuVersion, ParseVersionError, MIN_VERSION};

use request::{log_name, ChildFds, Dirs};
use swrk::{settle, Exchange, Session};

/// Environment variable that names the CRIU binary to use, overriding the search.
pub const CRIU_ENV: &str = "MIGRATE_CRIU";

/// Where `deploy/install.sh` installs CRIU.
pub const INSTALLED_CRIU: &str = "/usr/local/sbin/criu";

/// A CRIU binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criu {
    path: PathBuf,
}

/// A finished dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpOutcome {
    /// CRIU's log of the dump, next to the images.
    pub log_file: PathBuf,
    /// From sending the request to CRIU's answer (notification callbacks included).
    pub elapsed: Duration,
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// Host pid of the restored root task; the caller's child when `rst_sibling` was set.
    pub pid: i32,
    /// CRIU's log of the restore, next to the images.
    pub log_file: PathBuf,
    /// From sending the request to CRIU's answer (notification callbacks included).
    pub elapsed: Duration,
}

impl Criu {
    /// Finds CRIU and checks that it is at least [`MIN_VERSION`].
    ///
    /// Looks at `$MIGRATE_CRIU` (which, when set, is the only candidate), then
    /// [`INSTALLED_CRIU`], then `criu` on `PATH`. Every failure names `deploy/install.sh`.
    pub fn locate() -> Result<Criu, CriuError> {
        let path = find_criu(
            env::var_os(CRIU_ENV),
            Path::new(INSTALLED_CRIU),
            env::var_os("PATH"),
        )?;
        // Asking CRIU for its version costs a process start (~3 ms); remember a binary that
        // passed, for as long as it is the same file.
        static CHECKED: std::sync::Mutex<Option<(PathBuf, Option<std::time::SystemTime>)>> =
            std::sync::Mutex::new(None);
        let stamp = (
            path.clone(),
            std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        );
        let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
        if checked.as_ref() == Some(&stamp) {
            return Ok(Criu::at(path));
        }
        let criu = Criu::at(path);
        criu.ensure_version()?;
        *checked = Some(stamp);
        Ok(criu)
    }

    /// The CRIU binary at `path`, unchecked.
    pub fn at(path: impl Into<PathBuf>) -> Criu {
        Criu { path: path.into() }
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks CRIU for its version (`VERSION` request).
    pub fn version(&self) -> Result<CriuVersion, CriuError> {
        const REQUEST: &str = "version";
        let resp = self.call(
            REQUEST,
            request(rpc::Criu_req_type::VERSION),
            &ChildFds::default(),
            None,
            &mut notify::accept_all,
        )?;
        let v = resp
            .version
            .as_ref()
            .ok_or_else(|| CriuError::UnexpectedResponse {
                request: REQUEST,
                response: "VERSION without a version".into(),
            })?;
        let num = |n: i32| u32::try_from(n).unwrap_or(0);
        Ok(CriuVersion::new(
            num(v.major_number()),
            num(v.minor_number()),
            num(v.sublevel()),
        ))
    }

    /// Fails unless this CRIU answers and is at least [`MIN_VERSION`]; returns its version.
    pub fn ensure_version(&self) -> Result<CriuVersion, CriuError> {
        let found = self.version().map_err(|e| CriuError::Unusable {
            path: self.path.clone(),
            source: Box::new(e),
        })?;
        if found < MIN_VERSION {
            return Err(CriuError::TooOld {
                path: self.path.clone(),
                found,
                required: MIN_VERSION,
            });
        }
        Ok(found)
    }

    /// Asks CRIU which of memory tracking, lazy pages and the pidfd store work here
    /// (`FEATURE_CHECK` request).
    pub fn features(&self) -> Result<RpcFeatures, CriuError> {
        let mut req = request(rpc::Criu_req_type::FEATURE_CHECK);
        let mut ask = rpc::Criu_features::new();
        ask.set_mem_track(true);
        ask.set_lazy_pages(true);
        ask.set_pidfd_store(true);
        req.features = MessageField::some(ask);
        let resp = self.call(
            "feature-check",
            req,
            &ChildFds::default(),
            None,
            &mut notify::accept_all,
        )?;
        let f = &resp.features;
        Ok(RpcFeatures {
            mem_track: f.mem_track(),
            lazy_pages: f.lazy_pages(),
            pidfd_store: f.pidfd_store(),
        })
    }

    /// Everything known about CRIU on this host: version, `criu check`, the
    /// [`REPORTED_FEATURES`] one by one, `FEATURE_CHECK`, and `fs.pipe-max-size`.
    ///
    /// Only fails if CRIU cannot be run at all; an unfit host shows in the report (see
    /// [`CheckReport::ensure_usable`] and friends).
    pub fn check(&self) -> Result<CheckReport, CriuError> {
        let version = self.version()?;
        let (ok, check_output) = check::run_check(&self.path, &["check"])?;
        let mut features = Vec::with_capacity(REPORTED_FEATURES.len());
        for name in REPORTED_FEATURES {
            let (supported, message) = check::run_check(&self.path, &["check", "--feature", name])?;
            features.push(FeatureCheck {
                name: (*name).to_string(),
                supported,
                message,
            });
        }
        Ok(CheckReport {
            criu_path: self.path.clone(),
            version,
            looks_good: check::looks_good(ok, &check_output),
            check_output,
            features,
            rpc: self.features()?,
            pipe_max_size: check::pipe_max_size(),
        })
    }

    /// Writes this host's CPU description (`cpuinfo.img`) into `dir` (`CPUINFO_DUMP`).
    pub fn cpuinfo_dump(&self, dir: &Path) -> Result<(), CriuError> {
        self.cpuinfo(
            "cpuinfo-dump",
            rpc::Criu_req_type::CPUINFO_DUMP,
            dir,
            log_name::CPUINFO_DUMP,
        )
    }

    /// Checks that this host's CPU can run images whose `cpuinfo.img` is in `dir`
    /// (`CPUINFO_CHECK`); an incompatible CPU gives [`CriuError::CpuIncompatible`].
    pub fn cpuinfo_check(&self, dir: &Path) -> Result<(), CriuError> {
        self.cpuinfo(
            "cpuinfo-check",
            rpc::Criu_req_type::CPUINFO_CHECK,
            dir,
            log_name::CPUINFO_CHECK,
        )
    }

    /// Dumps a process tree (`DUMP`).
    ///
    /// `notify` sees every notification; refusing `post-dump` makes CRIU resume the tree,
    /// which then keeps running, and the call returns [`CriuError::Notify`]. Without
    /// `leave_running` CRIU kills the tree after a successful dump; reaping the root task is
    /// up to its parent.
    pub fn dump(
        &self,
        req: &DumpRequest,
        notify: &mut NotifyFn<'_>,
    ) -> Result<DumpOutcome, CriuError> {
        let dirs = Dirs::open(&req.images_dir, req.work_dir.as_deref())?;
        let mut fds = ChildFds::default();
        let opts = req.to_opts(&dirs, log_name::DUMP, &mut fds)?;
        let started = Instant::now();
        let result = self.call(
            "dump",
            with_opts(rpc::Criu_req_type::DUMP, opts),
            &fds,
            Some(&dirs.log_path(log_name::DUMP)),
            notify,
        );
        let elapsed = started.elapsed();
        let log_file = dirs.keep_log(log_name::DUMP);
        result.map(|_| DumpOutcome { log_file, elapsed })
    }

    /// Pre-copy: each of `rounds` as a `PRE_DUMP` (the tree keeps running), then `last` as
    /// the final `DUMP`, all in one CRIU session. Each request needs its own images dir, and
    /// each after the first a `parent_img` pointing at the one before.
    ///
    /// Needs soft-dirty memory tracking; without it (as on kernels built without
    /// `CONFIG_MEM_SOFT_DIRTY`) this fails with [`CriuError::PreCopyUnsupported`] before
    /// anything is dumped.
    pub fn pre_dump(
        &self,
        rounds: &[DumpRequest],
        last: &DumpRequest,
        notify: &mut NotifyFn<'_>,
    ) -> Result<DumpOutcome, CriuError> {
        if !self.features()?.mem_track {
            return Err(CriuError::PreCopyUnsupported);
        }
        struct Step {
            name: &'static str,
            req: rpc::Criu_req,
            dirs: Dirs,
            log: &'static str,
        }
        let mut fds = ChildFds::default();
        let mut steps = Vec::with_capacity(rounds.len() + 1);
        let all = rounds.iter().map(|r| (r, true)).chain([(last, false)]);
        for (round, is_pre) in all {
            let dirs = Dirs::open(&round.images_dir, round.work_dir.as_deref())?;
            let (name, kind, log) = if is_pre {
                ("pre-dump", rpc::Criu_req_type::PRE_DUMP, log_name::PRE_DUMP)
            } else {
                ("dump", rpc::Criu_req_type::DUMP, log_name::DUMP)
            };
            let mut opts = round.to_opts(&dirs, log, &mut fds)?;
            opts.track_mem = Some(true);
            steps.push(Step {
                name,
                req: with_opts(kind, opts),
                dirs,
                log,
            });
        }

        let started = Instant::now();
        let mut session = Session::start(&self.path, &fds, "pre-dump")?;
        let mut outcome: Option<(usize, Result<Exchange, CriuError>)> = None;
        for (i, step) in steps.iter().enumerate() {
            let exchange = session.exchange(&step.req, step.name, notify);
            let carry_on = matches!(&exchange, Ok(e) if e.succeeded()) && i + 1 < steps.len();
            if !carry_on {
                outcome = Some((i, exchange));
                break;
            }
        }
        let status = session.finish();
        let elapsed = started.elapsed();
        let Some((at, exchange)) = outcome else {
            return Err(CriuError::InvalidRequest(
                "pre-copy without a final dump".into(),
            ));
        };
        let step = &steps[at];
        let log_file = step.dirs.keep_log(step.log);
        let result = settle(
            step.name,
            exchange?,
            status,
            Some(&step.dirs.log_path(step.log)),
        );
        match result {
            Err(CriuError::Failed(f))
                if f.log_errors
                    .iter()
                    .any(|l| l.contains("Tracking memory is not available")) =>
            {
                Err(CriuError::PreCopyUnsupported)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(DumpOutcome { log_file, elapsed }),
        }
    }

    /// Restores a process tree (`RESTORE`) and returns the restored root's host pid.
    ///
    /// Refusing `post-restore` makes CRIU kill the restored tree. When the restore fails
    /// after the root task was created as our child (`rst_sibling`), it is reaped here.
    pub fn restore(
        &self,
        req: &RestoreRequest,
        notify: &mut NotifyFn<'_>,
    ) -> Result<RestoreOutcome, CriuError> {
        const REQUEST: &str = "restore";
        let dirs = Dirs::open(&req.images_dir, req.work_dir.as_deref())?;
        let mut fds = ChildFds::default();
        let opts = req.to_opts(&dirs, log_name::RESTORE, &mut fds)?;
        let started = Instant::now();
        let mut session = Session::start(&self.path, &fds, REQUEST)?;
        let exchange = session.exchange(
            &with_opts(rpc::Criu_req_type::RESTORE, opts),
            REQUEST,
            notify,
        );
        let status = session.finish();
        let elapsed = started.elapsed();
        let log_file = dirs.keep_log(log_name::RESTORE);
        let exchange = exchange?;
        let failed = !exchange.succeeded();
        let root_pid = exchange.root_pid.or_else(|| {
            exchange
                .response
                .as_ref()
                .and_then(|r| r.restore.as_ref())
                .map(|r| r.pid())
        });
        if failed && req.rst_sibling {
            if let Some(pid) = root_pid.filter(|p| *p > 0) {
                reap_killed_child(pid);
            }
        }
        let resp = settle(
            REQUEST,
            exchange,
            status,
            Some(&dirs.log_path(log_name::RESTORE)),
        )?;
        let pid = resp
            .restore
            .as_ref()
            .map(|r| r.pid())
            .filter(|p| *p > 0)
            .ok_or_else(|| CriuError::UnexpectedResponse {
                request: REQUEST,
                response: "RESTORE without a pid".into(),
            })?;
        Ok(RestoreOutcome {
            pid,
            log_file,
            elapsed,
        })
    }

    fn cpuinfo(
        &self,
        name: &'static str,
        kind: rpc::Criu_req_type,
        dir: &Path,
        log: &str,
    ) -> Result<(), CriuError> {
        let dirs = Dirs::open(dir, None)?;
        let mut opts = rpc::Criu_opts::new();
        dirs.apply(&mut opts, log, None);
        let result = self.call(
            name,
            with_opts(kind, opts),
            &ChildFds::default(),
            Some(&dirs.log_path(log)),
            &mut notify::accept_all,
        );
        match result {
            Err(CriuError::Failed(f))
                if kind == rpc::Criu_req_type::CPUINFO_CHECK
                    && f.cr_errno == Some(libc::ENOTSUP) =>
            {
                Err(CriuError::CpuIncompatible(f))
            }
            other => other.map(drop),
        }
    }

    /// One request in its own `criu swrk`, reaped before returning.
    fn call(
        &self,
        name: &'static str,
        req: rpc::Criu_req,
        fds: &ChildFds<'_>,
        log_file: Option<&Path>,
        notify: &mut NotifyFn<'_>,
    ) -> Result<rpc::Criu_resp, CriuError> {
        let mut session = Session::start(&self.path, fds, name)?;
        let exchange = session.exchange(&req, name, notify);
        let status = session.finish();
        settle(name, exchange?, status, log_file)
    }
}

fn request(kind: rpc::Criu_req_type) -> rpc::Criu_req {
    let mut req = rpc::Criu_req::new();
    req.set_type(kind);
    req
}

fn with_opts(kind: rpc::Criu_req_type, opts: rpc::Criu_opts) -> rpc::Criu_req {
    let mut req = request(kind);
    req.opts = MessageField::some(opts);
    req
}

/// Waits briefly for a restored root task that CRIU killed after a failed restore, so it
/// does not linger as our zombie. Gives up quietly if it is not our child or does not die.
fn reap_killed_child(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    for _ in 0..100 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The CRIU binary to use: `env` (the override) if set, else `installed`, else `criu` in a
/// directory of `path_var`.
fn find_criu(
    env: Option<OsString>,
    installed: &Path,
    path_var: Option<OsString>,
) -> Result<PathBuf, CriuError> {
    let not_found = |looked: String| CriuError::NotFound {
        looked,
        required: MIN_VERSION,
    };
    if let Some(chosen) = env.filter(|v| !v.is_empty()) {
        let chosen = PathBuf::from(chosen);
        return if is_executable(&chosen) {
            Ok(chosen)
        } else {
            Err(not_found(format!("${CRIU_ENV}={}", chosen.display())))
        };
    }
    if is_executable(installed) {
        return Ok(installed.to_path_buf());
    }
    let on_path = path_var
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("criu"))
        .find(|p| is_executable(p));
    on_path.ok_or_else(|| not_found(format!("{}, PATH", installed.display())))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn search_order_is_override_then_installed_then_path() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let on_path = executable(&bin, "criu");
        let installed = executable(tmp.path(), "installed-criu");
        let chosen = executable(tmp.path(), "chosen-criu");
        let path_var = Some(OsString::from(format!("/nonexistent:{}", bin.display())));

        let found = find_criu(Some(chosen.clone().into()), &installed, path_var.clone());
        assert_eq!(found.unwrap(), chosen);
        let found = find_criu(None, &installed, path_var.clone());
        assert_eq!(found.unwrap(), installed);
        let missing = tmp.path().join("missing");
        let found = find_criu(Some("".into()), &missing, path_var.clone());
        assert_eq!(found.unwrap(), on_path);
    }

    #[test]
    fn nothing_found_names_the_install_script() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let e = find_criu(None, &missing, Some("/nonexistent".into())).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("deploy/install.sh"), "{text}");
        assert!(text.contains(">= 4.1.0"), "{text}");
        // An override that does not exist is an error, not a reason to look elsewhere.
        let installed = executable(tmp.path(), "criu");
        let e = find_criu(Some(missing.clone().into()), &installed, None).unwrap_err();
        assert!(e.to_string().contains("$MIGRATE_CRIU="), "{e}");
    }

    #[test]
    fn a_binary_that_is_not_criu_is_unusable() {
        // `false swrk 3` exits at once without answering: the version request sees EOF.
        // (A script written by the test could hit ETXTBSY while other tests fork.)
        let e = Criu::at("/bin/false").ensure_version().unwrap_err();
        assert!(matches!(e, CriuError::Unusable { .. }), "{e:?}");
        assert!(e.to_string().contains("deploy/install.sh"), "{e}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("exited with status 1"), "{cause}");
    }
}
