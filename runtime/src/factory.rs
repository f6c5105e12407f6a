//! `Runtime`: the factory that owns a state root and creates, loads and lists containers.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::cgroups::Layout;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::id::validate_id;
use crate::process::spawn::locate_helper;

/// Default cgroup parent under which containers without `linux.cgroupsPath` are placed.
pub const DEFAULT_CGROUP_PARENT: &str = "/migrate";

/// A state root (`<root>/<id>/state.json` per container) plus the host facts the runtime needs.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) root: PathBuf,
    pub(crate) helper: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) cgroup_parent: String,
}

impl Runtime {
    /// Opens (creating, mode 0700) the state root, finds the helper binary and detects cgroups.
    pub fn new(root: impl Into<PathBuf>) -> Result<Runtime> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| Error::io("create state root", &root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io("resolve state root", &root, e))?;
        Ok(Runtime {
            root,
            helper: locate_helper()?,
            layout: Layout::detect()?,
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_string(),
        })
    }

    /// Uses `parent` (e.g. `/migrate-test-42`) as the cgroup parent for new containers.
    pub fn with_cgroup_parent(mut self, parent: impl Into<String>) -> Runtime {
        self.cgroup_parent = parent.into();
        self
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The detected cgroup layout.
    pub fn cgroup_layout(&self) -> &Layout {
        &self.layout
    }

    /// Loads an existing container.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.root.join(id);
        if !dir.join("state.json").is_file() {
            return Err(Error::NotFound { id: id.to_string() });
        }
        Container::load(self, dir)
    }

    /// Every container under the state root, sorted by id. Unreadable entries are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("state.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids.iter().filter_map(|id| self.load(id).ok()).collect())
    }
}
