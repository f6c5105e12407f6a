//! `pause` and `resume`: freeze and thaw the container's cgroup.

use std::time::Duration;

use super::Container;
use crate::error::Result;
use crate::state::Status;

/// How long `pause` waits for the freezer to report FROZEN before thawing and failing.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

impl Container {
    /// Freezes every process of a running container.
    pub fn pause(&self) -> Result<()> {
        self.require(&[Status::Running, Status::Created], "pause")?;
        Ok(self.cgroup().freeze(PAUSE_TIMEOUT)?)
    }

    /// Thaws a paused container.
    pub fn resume(&self) -> Result<()> {
        self.require(&[Status::Paused], "resume")?;
        Ok(self.cgroup().thaw()?)
    }
}
