//! Creating a cgroup: directories in every v1 hierarchy (+ the hybrid `unified`
//! mount) or in the v2 tree, v1 cpuset seeding, v2 controller delegation, and
//! undoing all of it when any step fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{fsutil, Cgroup, CgroupError, Layout};

/// The v2 controllers a container cgroup gets when the host offers them:
/// the ones [`Cgroup::apply`] writes and [`Cgroup::stats`] reads.
const V2_CONTROLLERS: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

impl Cgroup {
    /// Creates the cgroup and applies `resources`.
    ///
    /// v1: `mkdir` in every hierarchy under the layout root (all controllers, the
    /// named `systemd` hierarchy) and in the hybrid `unified` cgroup2 mount; new
    /// cpuset directories get `cpuset.cpus`/`cpuset.mems` from their parent, since an
    /// empty cpuset cannot hold tasks. v2: `mkdir` in the tree and enable cpu, cpuset,
    /// memory and pids (those the host offers) in each ancestor's `cgroup.subtree_control`.
    ///
    /// Directories that already exist are reused. On any failure every directory
    /// this call created is removed again (subtree_control changes stay: they are
    /// harmless and may be shared).
    pub fn create(
        layout: &Layout,
        path: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        let cgroup = Cgroup::open(layout, path);
        let rel = cgroup.rel()?;
        let mut created = Vec::new();
        match cgroup.build(&rel, resources, &mut created) {
            Ok(()) => Ok(cgroup),
            Err(err) => Err(cgroup.undo_create(created, err)),
        }
    }

    fn build(
        &self,
        rel: &Path,
        resources: Option<&LinuxResources>,
        created: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { unified, .. } => {
                for hierarchy in self.layout.v1_hierarchies()? {
                    let base = &hierarchy.dir;
                    fsutil::mkdir_levels(base, rel, created, |dir| {
                        if hierarchy.has("cpuset") {
                            seed_cpuset(base, dir)
                        } else {
                            Ok(())
                        }
                    })?;
                }
                if let Some(unified) = unified {
                    fsutil::mkdir_levels(unified, rel, created, |_| Ok(()))?;
                }
            }
            Layout::V2 { root } => {
                fsutil::mkdir_levels(root, rel, created, |_| Ok(()))?;
                enable_v2_controllers(root, rel, &V2_CONTROLLERS, false)?;
            }
        }
        match resources {
            Some(resources) => self.apply(resources),
            None => Ok(()),
        }
    }

    /// Removes what a failed create made, deepest first; keeps both causes if that fails too.
    fn undo_create(&self, created: Vec<PathBuf>, cause: CgroupError) -> CgroupError {
        let mut leftover = None;
        for dir in created.into_iter().rev() {
            if let Err(err) = fs::remove_dir(&dir) {
                if err.kind() != std::io::ErrorKind::NotFound && leftover.is_none() {
                    leftover = Some((dir, err));
                }
            }
        }
        match leftover {
            None => cause,
            Some((dir, cleanup)) => CgroupError::CreateRollback {
                path: self.path.clone(),
                leftover: dir,
                cleanup,
                source: Box::new(cause),
            },
        }
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` into a new v1 cpuset directory from the
/// nearest ancestor (up to the hierarchy root `base`) that has them set.
fn seed_cpuset(base: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fsutil::read_if_present(&dir.join(file))?.unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let inherited = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(base))
            .map(|a| fsutil::read_if_present(&a.join(file)))
            .find_map(|value| match value {
                Ok(Some(v)) if v.trim().is_empty() => None,
                Ok(None) => None,
                other => Some(other),
            });
        if let Some(value) = inherited {
            let value = value?.unwrap_or_default();
            fsutil::write(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// Enables `wanted` controllers in `cgroup.subtree_control` of `root` and of each
/// ancestor of `root/rel` (not `rel` itself: it will hold processes, and v2 forbids
/// processes in a cgroup that delegates controllers). With `strict`, a controller
/// the host or an ancestor does not offer is an error; otherwise it is passed over.
///
/// Each level offers what its parent delegates (`root` offers `cgroup.controllers`),
/// so this walks down from the root and writes only what is missing, in one write.
pub(super) fn enable_v2_controllers(
    root: &Path,
    rel: &Path,
    wanted: &[&str],
    strict: bool,
) -> Result<(), CgroupError> {
    let root_offers = fsutil::read(&root.join("cgroup.controllers"))?;
    let mut offered: BTreeSet<String> = words(&root_offers);
    for dir in ancestors(root, rel) {
        let enabled = words(
            &fsutil::read_if_present(&dir.join("cgroup.subtree_control"))?.unwrap_or_default(),
        );
        let mut missing = Vec::new();
        for controller in wanted {
            if enabled.contains(*controller) {
                continue;
            }
            if offered.contains(*controller) {
                missing.push(*controller);
            } else if strict {
                return Err(CgroupError::ControllerMissing {
                    controller: controller.to_string(),
                    path: dir,
                });
            }
        }
        if !missing.is_empty() {
            let request: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            fsutil::write(&dir.join("cgroup.subtree_control"), &request.join(" "))?;
        }
        offered = enabled
            .into_iter()
            .chain(missing.into_iter().map(str::to_string))
            .collect();
    }
    Ok(())
}

/// `root`, `root/a`, `root/a/b` for `rel` = `a/b/c`: every ancestor of the leaf.
fn ancestors(root: &Path, rel: &Path) -> Vec<PathBuf> {
    let components: Vec<_> = rel.components().collect();
    let mut dir = root.to_path_buf();
    let mut dirs = vec![dir.clone()];
    for component in &components[..components.len().saturating_sub(1)] {
        dir.push(component);
        dirs.push(dir.clone());
    }
    dirs
}

/// The controller names in `cgroup.controllers` / `cgroup.subtree_control` text
/// (a leading `+` accepted, so a file we wrote ourselves in a test reads the same).
fn words(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

    fn memory(limit: i64, swap: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn v1_create_makes_a_dir_in_every_hierarchy_and_unified() {
        let fake = fake::v1(true);
        let cg = Cgroup::create(&fake.layout, "/migrate/web", None).unwrap();
        let mut expected: Vec<PathBuf> = fake::V1_HIERARCHIES
            .iter()
            .map(|h| fake.root().join(h).join("migrate/web"))
            .collect();
        expected.push(fake.root().join("unified/migrate/web"));
        assert_eq!(cg.dirs(), expected);
        assert!(expected.iter().all(|d| d.is_dir()));
        assert!(cg.exists());
    }

    #[test]
    fn v1_create_seeds_cpuset_at_every_new_level() {
        let fake = fake::v1(false);
        Cgroup::create(&fake.layout, "/migrate/web", None).unwrap();
        for level in ["migrate", "migrate/web"] {
            let dir = fake.root().join("cpuset").join(level);
            assert_eq!(fs::read_to_string(dir.join("cpuset.cpus")).unwrap(), "0-1");
            assert_eq!(fs::read_to_string(dir.join("cpuset.mems")).unwrap(), "0");
        }
    }

    #[test]
    fn v1_create_applies_resources() {
        let fake = fake::v1(true);
        Cgroup::create(&fake.layout, "/web", Some(&memory(64 << 20, 128 << 20))).unwrap();
        let dir = fake.root().join("memory/web");
        assert_eq!(
            fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            "67108864"
        );
        // The fake has no swap accounting file: skipped, not created.
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn v1_create_failure_removes_what_it_created() {
        let fake = fake::v1_without_cpuset();
        fs::create_dir(fake.root().join("pids/migrate")).unwrap();
        fs::write(fake.root().join("pids/migrate/web"), "in the way").unwrap();
        let err = Cgroup::create(&fake.layout, "/migrate/web", None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to create cgroup directory ")
                && err.to_string().ends_with("pids/migrate/web"),
            "{err}"
        );
        for hierarchy in ["blkio", "cpu", "freezer", "memory"] {
            assert!(
                !fake.root().join(hierarchy).join("migrate").exists(),
                "{hierarchy}"
            );
        }
        // Pre-existing directories are not ours to remove.
        assert!(fake.root().join("pids/migrate").is_dir());
    }

    #[test]
    fn v2_create_delegates_controllers_down_the_tree() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/migrate/web", None).unwrap();
        let root = fake.root();
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +memory +pids"
        );
        assert_eq!(
            fs::read_to_string(root.join("migrate/cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +memory +pids"
        );
        // The leaf holds processes, so it delegates nothing.
        assert!(!root.join("migrate/web/cgroup.subtree_control").exists());
        assert_eq!(cg.dirs(), vec![root.join("migrate/web")]);
    }

    #[test]
    fn v2_create_writes_only_missing_controllers_and_passes_over_unoffered_ones() {
        let fake = fake::v2();
        let root = fake.root();
        fs::write(root.join("cgroup.controllers"), "cpu memory io").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "memory").unwrap();
        Cgroup::create(&fake.layout, "/web", None).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
    }

    #[test]
    fn v2_apply_names_a_controller_the_host_does_not_offer() {
        let fake = fake::v2();
        fs::write(fake.root().join("cgroup.controllers"), "cpu").unwrap();
        let err = Cgroup::create(&fake.layout, "/web", Some(&memory(64 << 20, 0))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the memory controller is not available at {}",
                fake.root().display()
            )
        );
        assert!(!fake.root().join("web").exists());
    }

    #[test]
    fn invalid_resources_roll_back_new_parents_too() {
        let fake = fake::v1_without_cpuset();
        let err = Cgroup::create(
            &fake.layout,
            "/migrate/web",
            Some(&memory(64 << 20, 1 << 20)),
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::InvalidResources { .. }), "{err}");
        let cg = Cgroup::open(&fake.layout, "/migrate");
        assert!(cg.dirs().len() > 1 && !cg.exists());
    }

    #[test]
    fn ancestors_stop_above_the_leaf() {
        let root = Path::new("/cg");
        assert_eq!(
            ancestors(root, Path::new("a/b/c")),
            [root.to_path_buf(), root.join("a"), root.join("a/b")]
        );
        assert_eq!(ancestors(root, Path::new("a")), [root.to_path_buf()]);
    }

    #[test]
    fn bad_paths_are_refused_before_touching_anything() {
        let fake = fake::v2();
        for path in ["/", "", "/a/../../etc", "/a/./b"] {
            let err = Cgroup::create(&fake.layout, path, None).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{path}: {err}"
            );
        }
        assert_eq!(fs::read_dir(fake.root()).unwrap().count(), 3);
    }
}
