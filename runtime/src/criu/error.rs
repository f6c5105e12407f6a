//! What talking to CRIU can fail with, and how a failed CRIU request is described.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::notify::NotifyError;
use super::version::CriuVersion;

/// The command that sets up a host for this project: it installs CRIU ≥ 4.1 and raises the
/// sysctls CRIU needs. Errors about a missing or unfit CRIU name it.
pub const INSTALL_HINT: &str = "run deploy/install.sh";

/// Everything the CRIU client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// No CRIU binary at any of the places searched.
    #[error("criu not found (looked at {looked}); {hint} to install criu >= {required}", hint = INSTALL_HINT)]
    NotFound {
        /// The places searched, in order.
        looked: String,
        /// The oldest acceptable version.
        required: CriuVersion,
    },
    /// The CRIU found is older than [`MIN_VERSION`](super::MIN_VERSION).
    #[error("criu at {path} is version {found}, need >= {required}; {hint} to install a newer criu", hint = INSTALL_HINT)]
    TooOld {
        /// The binary.
        path: PathBuf,
        /// What it reported.
        found: CriuVersion,
        /// The oldest acceptable version.
        required: CriuVersion,
    },
    /// The CRIU found does not even answer a version request.
    #[error("criu at {path} is not usable; {hint}", hint = INSTALL_HINT)]
    Unusable {
        /// The binary.
        path: PathBuf,
        /// Why the version request failed.
        #[source]
        source: Box<CriuError>,
    },
    /// `criu check` does not report "Looks good" on this host.
    #[error("criu check failed on this host: {output}; {hint}", hint = INSTALL_HINT)]
    CheckFailed {
        /// What `criu check` printed.
        output: String,
    },
    /// A kernel or host feature that the requested mode needs is absent.
    #[error("{mode} needs {feature}, which this host lacks ({detail}); {hint}", hint = INSTALL_HINT)]
    MissingFeature {
        /// What was asked for, e.g. "lazy migration".
        mode: &'static str,
        /// The missing feature, as `criu check --feature` names it.
        feature: String,
        /// What the check reported.
        detail: String,
    },
    /// Pre-copy (`PRE_DUMP`) needs soft-dirty memory tracking, which the kernel lacks.
    #[error("pre-copy needs memory dirty tracking (soft-dirty), which this kernel lacks; use stop-and-copy or lazy migration")]
    PreCopyUnsupported,
    /// The lazy-pages daemon of a post-copy restore failed.
    #[error("criu lazy-pages {what}{errors}; see {}", log.display())]
    LazyPages {
        /// What went wrong ("exited before it was ready (exit status: 1)").
        what: String,
        /// `: ` and the `Error` lines of its log, or nothing.
        errors: String,
        /// Its log.
        log: PathBuf,
    },
    /// The request itself is malformed (caught before CRIU runs).
    #[error("invalid criu request: {0}")]
    InvalidRequest(String),
    /// A directory or file CRIU needs could not be opened or read.
    #[error("failed to {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The CRIU process could not be started.
    #[error("failed to run criu at {path}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The RPC socket failed (creating it, sending or receiving).
    #[error("criu rpc socket failed during {request}")]
    Socket {
        /// The request in flight.
        request: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A message could not be encoded, or CRIU sent one that does not decode.
    #[error("bad criu rpc message during {request}")]
    Protocol {
        /// The request in flight.
        request: &'static str,
        /// The cause.
        #[source]
        source: protobuf::Error,
    },
    /// CRIU answered with a message of the wrong type.
    #[error("criu answered a {request} request with a {response} message")]
    UnexpectedResponse {
        /// The request sent.
        request: &'static str,
        /// The type CRIU answered with.
        response: String,
    },
    /// CRIU reports that the request failed (or exited without answering it).
    #[error("{0}")]
    Failed(Box<CriuFailure>),
    /// The CPU of this host cannot run images whose `cpuinfo.img` was checked.
    #[error("this host's cpu is not compatible with the checkpoint's: {0}")]
    CpuIncompatible(Box<CriuFailure>),
    /// A notify callback refused a notification; CRIU was told and rolled back as it does.
    #[error("notify callback for {script} failed")]
    Notify {
        /// The notification, e.g. `post-dump`.
        script: String,
        /// What the callback returned.
        #[source]
        source: NotifyError,
    },
}

/// A request CRIU did not carry out, with what CRIU said about it.
///
/// `cr_errmsg` is CRIU's *first* error-level log line; on hosts without `CAP_SYS_RESOURCE`
/// that is a harmless `RLIMIT_NOFILE` complaint even for successful runs, so the message
/// leads with the `Error` lines of the log file instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriuFailure {
    /// The request: `dump`, `restore`, `pre-dump`, `cpuinfo-check`, ...
    pub request: &'static str,
    /// CRIU's errno for the failure, if it set one.
    pub cr_errno: Option<i32>,
    /// CRIU's first error message, if any.
    pub cr_errmsg: Option<String>,
    /// The `Error` lines of the log file (timestamps stripped, harmless ones dropped).
    pub log_errors: Vec<String>,
    /// The log file of this request.
    pub log_file: Option<PathBuf>,
    /// Set when CRIU exited without a final answer: how it exited.
    pub exit: Option<String>,
}

impl fmt::Display for CriuFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "criu {} failed", self.request)?;
        if let Some(exit) = &self.exit {
            write!(f, " (criu {exit} without answering)")?;
        }
        let errmsg = self
            .cr_errmsg
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty());
        if !self.log_errors.is_empty() {
            write!(f, ": {}", self.log_errors.join("; "))?;
        } else if let Some(msg) = errmsg {
            write!(f, ": {msg}")?;
        } else if let Some(errno) = self.cr_errno {
            write!(f, ": {}", io::Error::from_raw_os_error(errno))?;
        }
        if let Some(log) = &self.log_file {
            write!(f, " (log: {})", log.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> CriuFailure {
        CriuFailure {
            request: "dump",
            cr_errno: Some(3),
            cr_errmsg: Some("rlimit: Can't setup RLIMIT_NOFILE for self".into()),
            log_errors: vec![],
            log_file: Some(PathBuf::from("/img/dump.log")),
            exit: None,
        }
    }

    #[test]
    fn failure_prefers_log_lines_over_first_error() {
        let mut f = failure();
        f.log_errors = vec!["seize: no such process".into(), "Dumping FAILED.".into()];
        assert_eq!(
            CriuError::Failed(Box::new(f)).to_string(),
            "criu dump failed: seize: no such process; Dumping FAILED. (log: /img/dump.log)"
        );
    }

    #[test]
    fn failure_falls_back_to_errmsg_then_errno() {
        let f = failure();
        assert!(f.to_string().contains("RLIMIT_NOFILE"));
        let f = CriuFailure {
            cr_errmsg: None,
            log_file: None,
            ..failure()
        };
        assert_eq!(
            f.to_string(),
            "criu dump failed: No such process (os error 3)"
        );
    }

    #[test]
    fn errors_cross_threads() {
        // Callers run the client in spawn_blocking and wrap errors in anyhow.
        fn send_sync_static<T: Send + Sync + 'static>() {}
        send_sync_static::<CriuError>();
    }

    #[test]
    fn setup_errors_name_the_install_script() {
        let e = CriuError::TooOld {
            path: "/usr/sbin/criu".into(),
            found: CriuVersion::new(3, 17, 1),
            required: super::super::MIN_VERSION,
        };
        assert_eq!(
            e.to_string(),
            "criu at /usr/sbin/criu is version 3.17.1, need >= 4.1.0; run deploy/install.sh to install a newer criu"
        );
    }
}
