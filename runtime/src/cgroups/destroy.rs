//! Removing a cgroup from every hierarchy, refusing while processes remain.

use super::{fsutil, Cgroup, CgroupError};

impl Cgroup {
    /// Removes the cgroup (and any cgroups below it) from every hierarchy.
    ///
    /// Refuses, removing nothing, while any of its directories still lists a
    /// process. `rmdir` is retried for a short while when the kernel still answers
    /// EBUSY (a just-reaped task). Directories that are already gone are fine;
    /// every hierarchy is tried, and the first failure is returned.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let dirs = self.try_dirs()?;
        for dir in &dirs {
            let pids = fsutil::read_procs_recursive(dir)?;
            if !pids.is_empty() {
                return Err(CgroupError::ProcessesRemain {
                    path: dir.clone(),
                    pids,
                });
            }
        }
        let mut first_error = None;
        for dir in &dirs {
            if let Err(err) = fsutil::remove_tree(dir) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use std::fs;

    #[test]
    fn destroy_removes_every_directory_and_is_idempotent() {
        let fake = fake::v1_without_cpuset();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        assert!(cg.dirs().iter().all(|d| d.is_dir()));
        cg.destroy().unwrap();
        assert!(!cg.exists());
        assert!(cg.dirs().iter().all(|d| !d.exists()));
        cg.destroy().unwrap();
    }

    #[test]
    fn destroy_refuses_while_processes_remain_and_removes_nothing() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let dir = fake.root().join("web");
        fs::write(dir.join("cgroup.procs"), "99\n").unwrap();
        let err = cg.destroy().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cgroup {} still has processes [99]", dir.display())
        );
        assert!(dir.is_dir());
    }

    #[test]
    fn destroy_of_a_never_created_cgroup_is_fine() {
        let fake = fake::v1(true);
        Cgroup::open(&fake.layout, "/never").destroy().unwrap();
    }
}
