//! The freezer: v1 `freezer.state`, v2 `cgroup.freeze` + `cgroup.events`.
//!
//! A hybrid host freezes through its v1 freezer hierarchy only; that is also the
//! directory CRIU's `freeze_cgroup` option must name ([`Cgroup::freezer_path`]).
//! Freezing waits a bounded time for the kernel to report every task frozen and
//! thaws again on timeout, so a failed freeze never leaves a container stopped.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::{fsutil, Cgroup, CgroupError, Layout};

/// First pause between polls of the freezer state; doubled up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(1);
/// Longest pause between polls of the freezer state.
const POLL_MAX: Duration = Duration::from_millis(20);

/// What the freezer reports for a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Tasks run normally.
    Thawed,
    /// A freeze was requested and some tasks are not frozen yet.
    Freezing,
    /// Every task is frozen (on v2 also when an ancestor is frozen).
    Frozen,
}

impl Cgroup {
    /// The freezer directory: the v1 freezer hierarchy's (also on hybrid hosts),
    /// or the cgroup's own directory on v2. Pass it to CRIU as `freeze_cgroup`.
    pub fn freezer_path(&self) -> PathBuf {
        match &self.layout {
            Layout::V1 { root, .. } => self
                .controller_dir("freezer")
                .unwrap_or_else(|_| root.join("freezer").join(self.rel_lossy())),
            Layout::V2 { root } => root.join(self.rel_lossy()),
        }
    }

    /// Freezes every task and waits, at most `timeout`, until the kernel reports
    /// FROZEN. On timeout it thaws the cgroup again and returns
    /// [`CgroupError::FreezeTimeout`].
    ///
    /// v1 re-requests FROZEN on every poll, as runc does: a task that was forking
    /// while the first request went out is caught by a later one.
    pub fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + timeout;
        let mut pause = POLL_FIRST;
        self.request_freeze()?;
        loop {
            if self.freezer_state()? == FreezerState::Frozen {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.undo_freeze(timeout));
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
            if !self.layout.is_v2() {
                self.request_freeze()?;
            }
        }
    }

    /// Thaws the cgroup (does not wait: thawing takes effect at once).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let (file, value) = match self.layout {
            Layout::V1 { .. } => ("freezer.state", "THAWED"),
            Layout::V2 { .. } => ("cgroup.freeze", "0"),
        };
        fsutil::write(&self.freezer_path().join(file), value)
    }

    /// What the freezer reports now. On v2: `Frozen` when `cgroup.events` says
    /// `frozen 1`, `Freezing` when `cgroup.freeze` is 1 but the tasks are not all
    /// frozen yet, else `Thawed`.
    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let dir = self.freezer_path();
        if !self.layout.is_v2() {
            let path = dir.join("freezer.state");
            let text = fsutil::read(&path)?;
            return match text.trim() {
                "THAWED" => Ok(FreezerState::Thawed),
                "FREEZING" => Ok(FreezerState::Freezing),
                "FROZEN" => Ok(FreezerState::Frozen),
                other => Err(CgroupError::Parse {
                    path,
                    content: other.to_string(),
                }),
            };
        }
        let events = dir.join("cgroup.events");
        if fsutil::keyed_u64(&events, &fsutil::read(&events)?, "frozen")? == 1 {
            return Ok(FreezerState::Frozen);
        }
        let requested = fsutil::read(&dir.join("cgroup.freeze"))?;
        Ok(match requested.trim() {
            "1" => FreezerState::Freezing,
            _ => FreezerState::Thawed,
        })
    }

    fn request_freeze(&self) -> Result<(), CgroupError> {
        let (file, value) = match self.layout {
            Layout::V1 { .. } => ("freezer.state", "FROZEN"),
            Layout::V2 { .. } => ("cgroup.freeze", "1"),
        };
        fsutil::write(&self.freezer_path().join(file), value)
    }

    fn undo_freeze(&self, timeout: Duration) -> CgroupError {
        let path = self.freezer_path();
        match self.thaw() {
            Ok(()) => CgroupError::FreezeTimeout { path, timeout },
            Err(err) => CgroupError::FreezeTimeoutThawFailed {
                path,
                timeout,
                source: Box::new(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use std::fs;

    #[test]
    fn v1_freeze_and_thaw_write_freezer_state() {
        let fake = fake::v1(true);
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let state = fake.root().join("freezer/web/freezer.state");
        assert_eq!(cg.freezer_path(), fake.root().join("freezer/web"));
        cg.freeze(Duration::from_millis(100)).unwrap();
        assert_eq!(fs::read_to_string(&state).unwrap(), "FROZEN");
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
        cg.thaw().unwrap();
        assert_eq!(fs::read_to_string(&state).unwrap(), "THAWED");
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
        fs::write(&state, "FREEZING\n").unwrap();
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Freezing);
    }

    #[test]
    fn v2_freeze_waits_for_cgroup_events() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let dir = fake.root().join("web");
        assert_eq!(cg.freezer_path(), dir);
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze(Duration::from_millis(100)).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
    }

    #[test]
    fn v2_freeze_timeout_thaws_and_reports() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let dir = fake.root().join("web");
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let started = Instant::now();
        let err = cg.freeze(Duration::from_millis(60)).unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(60) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("cgroup {} did not freeze within 60ms", dir.display())
        );
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
    }

    #[test]
    fn v2_freezing_state_while_tasks_are_not_frozen_yet() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let dir = fake.root().join("web");
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        fs::write(dir.join("cgroup.freeze"), "1\n").unwrap();
        assert_eq!(cg.freezer_state().unwrap(), FreezerState::Freezing);
    }

    #[test]
    fn freezing_a_missing_cgroup_names_the_file() {
        let fake = fake::v1(true);
        let cg = Cgroup::open(&fake.layout, "/gone");
        let err = cg.freeze(Duration::from_millis(10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to write \"FROZEN\" to {}",
                fake.root().join("freezer/gone/freezer.state").display()
            )
        );
    }
}
