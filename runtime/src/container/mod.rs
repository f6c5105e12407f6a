//! A container: its persisted state and the verbs on it, one private module per verb.

mod checkpoint;
mod create;
mod delete;
mod exec;
pub mod hooks;
mod kill;
mod pause;
mod restore;
mod start;

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroups::{Cgroup, CgroupStats, FreezerState, Layout};
use crate::error::{Error, Result};
use crate::factory::Runtime;
use crate::state::{State, Status};

pub use checkpoint::{CheckpointMeta, CheckpointOpts, Checkpointed, CHECKPOINT_META, ROOTFS_DIFF};
pub use create::CreateOpts;
pub use exec::{ExecOpts, ExecProcess};
pub use kill::parse_signal;
pub use restore::{RestoreOpts, Restored};

/// Name of the fifo init blocks on until `start`.
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
/// Copy of the spec the container was created from.
pub(crate) const SPEC_FILE: &str = "config.json";

/// A container under a runtime's state root.
#[derive(Debug, Clone)]
pub struct Container {
    dir: PathBuf,
    state: State,
    layout: Layout,
    helper: PathBuf,
}

impl Container {
    pub(crate) fn load(runtime: &Runtime, dir: PathBuf) -> Result<Container> {
        let state = State::load(&dir)?;
        Ok(Container {
            dir,
            state,
            layout: runtime.layout.clone(),
            helper: runtime.helper.clone(),
        })
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Host PID of the container's init.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// The persisted state.
    pub fn persisted(&self) -> &State {
        &self.state
    }

    /// The container's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The overlay upper directory: exactly the files the container changed.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The spec the container was created from.
    pub fn spec(&self) -> Result<Spec> {
        let path = self.dir.join(SPEC_FILE);
        Spec::load(&path).map_err(|e| Error::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> Cgroup {
        Cgroup::open(&self.layout, &self.state.cgroup_path)
    }

    /// The OCI status, computed from the live system: a dead or reused init PID is `stopped`.
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if matches!(
            self.cgroup().freezer_state(),
            Ok(FreezerState::Frozen | FreezerState::Freezing)
        ) {
            return Status::Paused;
        }
        if self.dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        Status::Running
    }

    /// The OCI state document (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped {
            0
        } else {
            self.state.pid
        };
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.state.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": self.state.bundle,
            "annotations": self.state.annotations,
        })
    }

    /// True while init is the same live process that was recorded at create.
    pub fn init_alive(&self) -> bool {
        match proc_stat(self.state.pid) {
            Some((state, start)) => {
                start == self.state.pid_start_time && state != 'Z' && state != 'X'
            }
            None => false,
        }
    }

    /// PIDs of every process in the container.
    pub fn processes(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup().procs()?)
    }

    /// Resource usage from the container's cgroup.
    pub fn stats(&self) -> Result<CgroupStats> {
        Ok(self.cgroup().stats()?)
    }

    /// Waits for init to exit and returns its exit code (128 + signal when killed). Only works
    /// in the process that created the container (init is its child).
    pub fn wait(&self) -> Result<i32> {
        match waitpid(Pid::from_raw(self.state.pid), None) {
            Ok(status) => Ok(exit_code(status)),
            Err(e) => Err(Error::sys(
                format!("wait for init of container {}", self.state.id),
                e,
            )),
        }
    }

    /// Reaps init if it is our exited child; returns its exit code then.
    pub fn try_reap(&self) -> Option<i32> {
        match waitpid(Pid::from_raw(self.state.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(status) => Some(exit_code(status)),
        }
    }

    fn require(&self, allowed: &[Status], op: &'static str) -> Result<Status> {
        let status = self.status();
        if allowed.contains(&status) {
            Ok(status)
        } else {
            Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                op,
            })
        }
    }
}

/// What to undo when create or restore fails part-way: kill the process, unmount, remove the
/// cgroup and the state directory. Each field is cleared once its thing is kept.
#[derive(Default)]
pub(crate) struct Undo {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) mounted: Option<PathBuf>,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) pid: Option<i32>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(m) = self.mounted.take() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.destroy();
        }
        if let Some(dir) = self.dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// What fds 0, 1 and 2 of `pid` point to (`pipe:[123]`, ...): restore re-attaches these.
pub(crate) fn stdio_links(pid: i32) -> Vec<String> {
    (0..3)
        .map(|fd| {
            fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Exit code of a wait status: the code, or 128 + signal.
pub(crate) fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => -1,
    }
}

/// State letter and start time (clock ticks since boot) of a process, from `/proc/<pid>/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line is the 20th after the command name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert!(start > 0);
        assert!(proc_stat(i32::MAX).is_none());
    }
}
