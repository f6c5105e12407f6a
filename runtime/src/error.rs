//! The runtime's error type: one enum, each message lowercase and naming what failed.

use std::io;
use std::path::PathBuf;

use crate::cgroups::CgroupError;
use crate::criu::CriuError;

/// Everything the runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id breaks the id rules.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    /// A container with this id already exists.
    #[error("container {id} already exists")]
    AlreadyExists { id: String },
    /// No container with this id.
    #[error("container {id} does not exist")]
    NotFound { id: String },
    /// The bundle or its spec is unusable.
    #[error("invalid bundle {bundle}: {reason}")]
    InvalidBundle { bundle: PathBuf, reason: String },
    /// The container is in a state that does not allow the operation.
    #[error("container {id} is {status}: cannot {op}")]
    WrongState {
        id: String,
        status: String,
        op: &'static str,
    },
    /// A step of creating the container failed (everything already made was removed).
    #[error("failed to create container {id}: {step}")]
    Create {
        id: String,
        step: String,
        #[source]
        source: Box<Error>,
    },
    /// The container's init process reported an error while setting itself up.
    #[error("container init failed at {step}: {message}")]
    Init { step: String, message: String },
    /// An OCI hook failed.
    #[error("hook {hook} failed: {message}")]
    Hook { hook: String, message: String },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A CRIU call failed.
    #[error(transparent)]
    Criu(#[from] CriuError),
    /// The caller's post-dump hook refused the checkpoint; the container was resumed.
    #[error("checkpoint of container {id} aborted at post-dump: {reason}")]
    CheckpointAborted { id: String, reason: String },
    /// A checkpoint directory is unusable.
    #[error("invalid checkpoint {dir}: {reason}")]
    InvalidCheckpoint { dir: PathBuf, reason: String },
    /// The `migrate-rt-init` helper binary is missing.
    #[error("helper binary migrate-rt-init not found (looked in {looked}); build it with `cargo build --workspace --bins` or set MIGRATE_RT_INIT")]
    HelperMissing { looked: String },
    /// A filesystem or process operation failed.
    #[error("failed to {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A syscall failed.
    #[error("failed to {what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    /// The persisted state of a container is unreadable.
    #[error("corrupt state file {path}: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    /// Something the runtime cannot do yet, e.g. `checkpoint of containers with a user
    /// namespace`.
    #[error("{what} is not supported yet")]
    NotSupported { what: String },
    /// A timeout elapsed.
    #[error("timed out after {secs:.1}s waiting for {what}")]
    Timeout { what: String, secs: f64 },
}

impl Error {
    /// Wraps an io error with what was being done and to which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Wraps a syscall error with what was being done.
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Error {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// True when the error means "no such container".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Shorthand for the runtime's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and all its causes on one line (`a: b: c`), as users see it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
