//! `start`: release a created container's init to exec the user process.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::signal::Signal;

use super::{hooks, Container, EXEC_FIFO};
use crate::error::{Error, Result};
use crate::state::Status;

impl Container {
    /// Lets init exec the spec's process. Fails unless the container is `created`.
    pub fn start(&self) -> Result<()> {
        self.require(&[Status::Created], "start")?;
        let spec = self.spec()?;
        // A failing startContainer hook stops the container, as runc does; poststart hooks
        // only warn (the spec's rule), and all of them run.
        let stop_on_error = |e: Error| {
            let _ = self.kill(Signal::SIGKILL, true);
            e
        };
        let place = hooks::Place::Container {
            pid: self.state.pid,
            root: true,
        };
        hooks::run(&spec, "startContainer", &self.oci_state(), place).map_err(stop_on_error)?;
        let fifo = self.dir.join(EXEC_FIFO);
        // Non-blocking: if init is gone there is no reader and the open fails with ENXIO
        // instead of hanging.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => Error::WrongState {
                    id: self.state.id.clone(),
                    status: "stopped".into(),
                    op: "start",
                },
                _ => Error::io("open", &fifo, e),
            })?;
        file.write_all(&[0])
            .map_err(|e| Error::io("write to", &fifo, e))?;
        fs::remove_file(&fifo).map_err(|e| Error::io("remove", &fifo, e))?;
        for e in hooks::run_all(&spec, "poststart", &self.oci_state(), hooks::Place::Runtime) {
            eprintln!("warning: {e}");
        }
        Ok(())
    }
}
