//! `delete`: remove a stopped container (or, forced, kill it first): processes, cgroup, state.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{hooks, Container};
use crate::error::{Error, Result};
use crate::state::Status;

/// How long `delete --force` waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Container {
    /// Removes the container. A container that is not stopped is refused unless `force`, which
    /// kills every process first.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        if status != Status::Stopped {
            if !force {
                return Err(Error::WrongState {
                    id: self.state.id.clone(),
                    status: status.to_string(),
                    op: "delete (use force)",
                });
            }
            self.kill(Signal::SIGKILL, true)?;
        }
        let cgroup = self.cgroup();
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            self.try_reap();
            let left = if cgroup.exists() {
                cgroup.procs()?
            } else {
                Vec::new()
            };
            if left.is_empty() && !self.init_alive() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("processes {left:?} of container {} to exit", self.state.id),
                    secs: KILL_WAIT.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cgroup.destroy()?;
        let spec = self.spec().ok();
        let mut state = self.oci_state();
        state["status"] = "stopped".into();
        fs::remove_dir_all(&self.dir)
            .map_err(|e| Error::io("remove state directory", &self.dir, e))?;
        // Poststop hooks cannot undo a deletion: their failures do not fail it (as runc).
        if let Some(spec) = spec {
            for e in hooks::run_all(&spec, "poststop", &state, hooks::Place::Runtime) {
                eprintln!("warning: {e}");
            }
        }
        Ok(())
    }
}
