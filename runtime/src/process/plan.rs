//! What the runtime asks the helper to do: the serialized plans for `init` and `exec`.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::state::RootfsMode;

/// Everything init needs to build the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitPlan {
    /// Container id (for messages).
    pub id: String,
    /// The validated spec.
    pub spec: Spec,
    /// How to build the root filesystem.
    pub rootfs: RootfsPlan,
    /// The fifo `start` writes to.
    pub exec_fifo: PathBuf,
    /// True on a pure cgroup v2 host (decides what a `cgroup` mount becomes).
    pub cgroup_v2: bool,
    /// The helper holds a console socket on `CONSOLE_FD`: give init a pty and send its master
    /// there (see [`Stdio::Terminal`](super::spawn::Stdio::Terminal)).
    pub console: bool,
}

/// Where the root filesystem comes from and where it is assembled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Overlay or plain.
    pub mode: RootfsMode,
    /// The bundle's rootfs (overlay lower layer).
    pub lower: PathBuf,
    /// Overlay upper dir (the container's changes).
    pub upper: PathBuf,
    /// Overlay work dir.
    pub work: PathBuf,
    /// Directory the rootfs is mounted on before `pivot_root`.
    pub mountpoint: PathBuf,
}

/// A process to start inside a running container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecPlan {
    /// Host PID of the container's init, whose namespaces are joined.
    pub init_pid: i32,
    /// The process to run (args, env, cwd, user, capabilities, ...).
    pub process: Process,
    /// The helper holds a console socket on `CONSOLE_FD`: give the process a pty.
    pub console: bool,
    /// The container's seccomp profile, which an exec'd process gets too (as with runc).
    #[serde(default)]
    pub seccomp: Option<LinuxSeccomp>,
    /// The helper exits once the process runs instead of waiting for it (`exec -d`).
    #[serde(default)]
    pub detach: bool,
}
