//! The one error type of the cgroups module: every variant names the file,
//! directory or cgroup it is about.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mount table lists no cgroup or cgroup2 filesystem.
    #[error("no cgroup filesystem is mounted")]
    NoCgroupMount,
    /// The cgroup path is not a plain `/a/b` path below the hierarchy root.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading a cgroup file, directory or the mount table failed.
    #[error("failed to read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing a value into a cgroup file failed.
    #[error("failed to write {value:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup file holds something this module does not understand.
    #[error("unexpected content {content:?} in {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// `mkdir` of a cgroup directory failed.
    #[error("failed to create cgroup directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `rmdir` of a cgroup directory failed (after retries while busy).
    #[error("failed to remove cgroup directory {path}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A controller the request needs is not mounted (v1) or not offered by the parent (v2).
    #[error("the {controller} controller is not available at {path}")]
    ControllerMissing {
        /// The controller, e.g. `memory`.
        controller: String,
        /// The hierarchy root (v1) or the cgroup that would have to delegate it (v2).
        path: PathBuf,
    },
    /// The resources ask for something contradictory, such as swap below the memory limit.
    #[error("invalid resources for cgroup {path}: {reason}")]
    InvalidResources {
        /// The cgroup path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The spec asks for a resource this host's cgroups cannot enforce (its controller or
    /// control file is missing, or the cgroup version has no such setting).
    #[error("cannot apply {setting}: {reason}")]
    Unsupported {
        /// The spec setting, e.g. `linux.resources.blockIO.weight`.
        setting: String,
        /// Why, naming the controller or file.
        reason: String,
    },
    /// Writing a pid into `cgroup.procs` failed.
    #[error("failed to add process {pid} to {path}")]
    AddProcess {
        /// The process.
        pid: i32,
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The freezer did not report FROZEN in time; the cgroup was thawed again.
    #[error("cgroup {path} did not freeze within {timeout:?}")]
    FreezeTimeout {
        /// The freezer directory.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// The freezer did not report FROZEN in time, and thawing it again failed too.
    #[error("cgroup {path} did not freeze within {timeout:?}, and thawing it again failed")]
    FreezeTimeoutThawFailed {
        /// The freezer directory.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
        /// Why the thaw failed.
        #[source]
        source: Box<CgroupError>,
    },
    /// The cgroup cannot be removed because processes are still in it.
    #[error("cgroup {path} still has processes {pids:?}")]
    ProcessesRemain {
        /// The directory that still holds processes.
        path: PathBuf,
        /// The processes (host pids).
        pids: Vec<i32>,
    },
    /// Creating the cgroup failed, and removing what had been created failed as well.
    #[error("failed to create cgroup {path}, and undoing it left {leftover} behind ({cleanup})")]
    CreateRollback {
        /// The cgroup path.
        path: String,
        /// The directory that could not be removed.
        leftover: PathBuf,
        /// Why it could not be removed.
        cleanup: std::io::Error,
        /// Why the create failed in the first place.
        #[source]
        source: Box<CgroupError>,
    },
}
