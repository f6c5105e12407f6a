//! Control groups (v1, hybrid and v2): limits, membership, freezer and stats.
//!
//! A [`Cgroup`] is one path such as `/migrate/web` inside a [`Layout`]. On a v1
//! host it is a directory in every hierarchy (each controller, the named
//! `systemd` hierarchy) plus, on a hybrid host, in the `unified` cgroup2 mount,
//! which has no controllers but lets cgroup2 tools (and `/proc/<pid>/cgroup`'s
//! `0::` line) see the container. Limits go to the v1 controllers. On a v2 host it
//! is one directory whose ancestors delegate the controllers it needs.
//!
//! Layout roots are parameters, so the unit tests run against a temporary
//! directory that imitates either layout; `real_tests` exercise the host's
//! cgroupfs and need root.
//!
//! # Why plain filesystem code and not cgroups-rs
//!
//! cgroups-rs 0.5.1 was evaluated for this. On this hybrid host its
//! `hierarchies::auto()` picks V1 (because `/sys/fs/cgroup` is a tmpfs), and its V1
//! handles every controller and the named `systemd` hierarchy, but it reads only
//! `cgroup` mounts, so the `unified` cgroup2 mount is invisible: it cannot put a
//! process there. Its paths are fixed (`/proc/self/mountinfo`, `/sys/fs/cgroup`),
//! so nothing can be tested against a temporary layout; its v2 freezer reports the
//! *requested* state (`cgroup.freeze`), not `cgroup.events`, with no bounded wait;
//! `create` leaves half-made directories behind on failure, logs and ignores
//! cpuset-seeding and `subtree_control` errors; and it depends unconditionally on
//! `zbus` 5 (about 90 crates, an async D-Bus stack) and `nix` 0.25 beside our 0.30.
//! The whole job is a few hundred lines of file writes, so this module does them.

mod create;
mod destroy;
mod error;
mod freezer;
mod fsutil;
mod layout;
mod resources;
mod stats;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod real_tests;

use std::path::{Path, PathBuf};

pub use error::CgroupError;
pub use freezer::FreezerState;
pub use layout::{Hierarchy, Layout};
pub use resources::default_device_rules;
pub use stats::CgroupStats;

/// One control group: a layout and a path below its root(s), like `/migrate/web`.
///
/// [`Cgroup::open`] touches nothing; [`Cgroup::create`] makes the directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    layout: Layout,
    /// Normalised: one leading `/`, no empty segments.
    path: String,
}

impl Cgroup {
    /// A handle on an existing (or not yet existing) cgroup, without filesystem access.
    pub fn open(layout: &Layout, path: &str) -> Cgroup {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        Cgroup {
            layout: layout.clone(),
            path: format!("/{}", segments.join("/")),
        }
    }

    /// The cgroup path, e.g. `/migrate/web`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The layout this cgroup lives in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every directory this cgroup has or would have: one per v1 hierarchy plus the
    /// hybrid `unified` one, or the single v2 directory. Empty when the path is
    /// invalid or the v1 root cannot be listed.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.try_dirs().unwrap_or_default()
    }

    /// Whether any of the cgroup's directories exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|dir| dir.is_dir())
    }

    /// Moves process `pid` into the cgroup in every hierarchy, the hybrid `unified`
    /// mount included.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.try_dirs()? {
            let path = dir.join("cgroup.procs");
            std::fs::write(&path, pid.to_string()).map_err(|source| CgroupError::AddProcess {
                pid,
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// The processes in the cgroup and the cgroups below it, sorted (v1: read from
    /// the freezer hierarchy, else pids, else any).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = match self.layout {
            Layout::V1 { .. } => self
                .controller_dir("freezer")
                .or_else(|_| self.controller_dir("pids"))
                .or_else(|err| self.try_dirs()?.into_iter().next().ok_or(err))?,
            Layout::V2 { .. } => self.layout_root().join(self.rel()?),
        };
        fsutil::read_procs_recursive(&dir)
    }

    /// The path below the root, checked: no `.`/`..` segments and not the root itself.
    fn rel(&self) -> Result<PathBuf, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath {
            path: self.path.clone(),
            reason,
        };
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(invalid("the root cgroup cannot be managed"));
        }
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(invalid("'.' and '..' are not allowed"));
        }
        if segments.iter().any(|s| s.contains('\0')) {
            return Err(invalid("contains a NUL byte"));
        }
        Ok(segments.iter().collect())
    }

    /// [`Self::rel`] for infallible callers; an invalid path maps to a name that cannot exist.
    fn rel_lossy(&self) -> PathBuf {
        self.rel()
            .unwrap_or_else(|_| PathBuf::from("invalid cgroup path"))
    }

    fn layout_root(&self) -> &Path {
        match &self.layout {
            Layout::V1 { root, .. } | Layout::V2 { root } => root,
        }
    }

    fn try_dirs(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let rel = self.rel()?;
        match &self.layout {
            Layout::V1 { unified, .. } => {
                let mut dirs: Vec<PathBuf> = self
                    .layout
                    .v1_hierarchies()?
                    .into_iter()
                    .map(|h| h.dir.join(&rel))
                    .collect();
                dirs.extend(unified.as_ref().map(|u| u.join(&rel)));
                Ok(dirs)
            }
            Layout::V2 { root } => Ok(vec![root.join(rel)]),
        }
    }

    /// The directory holding `controller`'s files: its v1 hierarchy's directory, or
    /// the cgroup's directory on v2.
    fn controller_dir(&self, controller: &str) -> Result<PathBuf, CgroupError> {
        let rel = self.rel()?;
        match &self.layout {
            Layout::V1 { root, .. } => self
                .layout
                .v1_hierarchies()?
                .into_iter()
                .find(|h| h.has(controller))
                .map(|h| h.dir.join(&rel))
                .ok_or_else(|| CgroupError::ControllerMissing {
                    controller: controller.to_string(),
                    path: root.clone(),
                }),
            Layout::V2 { root } => Ok(root.join(rel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn open_normalises_and_touches_nothing() {
        let layout = Layout::V2 {
            root: "/nonexistent/cgroup".into(),
        };
        let cg = Cgroup::open(&layout, "migrate//web/");
        assert_eq!(cg.path(), "/migrate/web");
        assert_eq!(
            cg.dirs(),
            vec![PathBuf::from("/nonexistent/cgroup/migrate/web")]
        );
        assert!(!cg.exists());
    }

    #[test]
    fn add_process_writes_every_hierarchy_and_unified() {
        let fake = fake::v1(true);
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        cg.add_process(4242).unwrap();
        let dirs = cg.dirs();
        assert_eq!(dirs.len(), fake::V1_HIERARCHIES.len() + 1);
        for dir in dirs {
            assert_eq!(
                fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
                "4242"
            );
        }
        assert_eq!(cg.procs().unwrap(), vec![4242]);
    }

    #[test]
    fn add_process_to_a_missing_cgroup_names_the_file() {
        let fake = fake::v2();
        let cg = Cgroup::open(&fake.layout, "/gone");
        let err = cg.add_process(7).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to add process 7 to {}",
                fake.root().join("gone/cgroup.procs").display()
            )
        );
    }

    #[test]
    fn a_missing_v1_controller_is_named() {
        let fake = fake::v1_without_cpuset();
        let cg = Cgroup::open(&fake.layout, "/web");
        let err = cg.controller_dir("cpuset").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the cpuset controller is not available at {}",
                fake.root().display()
            )
        );
    }
}
