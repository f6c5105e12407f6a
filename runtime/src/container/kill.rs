//! `kill`: send a signal to init, or to every process of the container.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Container;
use crate::error::{Error, Result};
use crate::state::Status;

/// How long `kill --all` may take to freeze the container before signalling.
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Container {
    /// Sends `signal` to init, or with `all` to every process in the container's cgroup
    /// (frozen while signalled, so no process can fork away).
    pub fn kill(&self, signal: Signal, all: bool) -> Result<()> {
        let status = self.require(&[Status::Created, Status::Running, Status::Paused], "kill")?;
        if !all {
            return kill(Pid::from_raw(self.state.pid), signal).map_err(|e| {
                Error::sys(format!("send {signal} to container {}", self.state.id), e)
            });
        }
        let cgroup = self.cgroup();
        if status != Status::Paused {
            cgroup.freeze(FREEZE_TIMEOUT)?;
        }
        let mut result = Ok(());
        for pid in cgroup.procs()? {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => {
                    result = Err(Error::sys(
                        format!(
                            "send {signal} to process {pid} of container {}",
                            self.state.id
                        ),
                        e,
                    ))
                }
            }
        }
        // A frozen v1 task cannot die; thaw so SIGKILL takes effect (paused stays paused
        // unless the signal kills it).
        if status != Status::Paused || signal == Signal::SIGKILL {
            cgroup.thaw()?;
        }
        result
    }
}

/// A signal by name (`KILL`, `SIGKILL`, any case) or number, as `kill` commands take it.
pub fn parse_signal(s: &str) -> Option<Signal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().ok()
}
