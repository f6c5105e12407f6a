//! What the runtime remembers about a container: `<state-root>/<id>/state.json`, written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the state document; bumped on incompatible changes.
pub const STATE_VERSION: u32 = 1;

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Set up, waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by the freezer.
    Paused,
    /// Init is gone.
    Stopped,
}

impl Status {
    /// The OCI name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the container's root filesystem is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsMode {
    /// The bundle's rootfs is the read-only lower layer of an overlay; changes go to `upper/`.
    #[default]
    Overlay,
    /// The bundle's rootfs is used in place.
    Plain,
}

/// The persisted state of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Container id.
    pub id: String,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Host PID of the container's init.
    pub pid: i32,
    /// Start time of init in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub pid_start_time: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Cgroup path relative to each hierarchy's root.
    pub cgroup_path: String,
    /// Rootfs mode.
    pub rootfs_mode: RootfsMode,
    /// The bundle rootfs (the overlay's lower layer, or the rootfs itself).
    pub rootfs_lower: PathBuf,
    /// What init's fds 0, 1, 2 pointed to at start (`/proc/<pid>/fd/N` link targets).
    pub stdio: Vec<String>,
    /// Namespaces init was placed in: OCI type name and the path joined, if any.
    pub namespaces: Vec<NamespaceState>,
    /// Annotations from the spec.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// One namespace of the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceState {
    /// OCI namespace type (`pid`, `network`, ...).
    #[serde(rename = "type")]
    pub typ: String,
    /// The path that was joined, when the namespace was not new.
    pub path: Option<PathBuf>,
}

impl State {
    /// Reads `<dir>/state.json`.
    pub fn load(dir: &Path) -> Result<State> {
        let path = dir.join("state.json");
        let text = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let state: State = serde_json::from_slice(&text).map_err(|e| Error::CorruptState {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::CorruptState {
                path,
                reason: format!(
                    "state version {} is not the supported {STATE_VERSION}",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Writes `<dir>/state.json` atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(|e| Error::CorruptState {
            path: dir.join("state.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join("state.json"), &data)
    }
}

/// Replaces `path` with `data` so readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            version: STATE_VERSION,
            id: "web".into(),
            bundle: "/b".into(),
            pid: 42,
            pid_start_time: 123456,
            created_unix: 1,
            cgroup_path: "/migrate/web".into(),
            rootfs_mode: RootfsMode::Overlay,
            rootfs_lower: "/b/rootfs".into(),
            stdio: vec!["pipe:[1]".into(), "pipe:[2]".into(), "pipe:[3]".into()],
            namespaces: vec![NamespaceState {
                typ: "network".into(),
                path: Some("/run/netns/x".into()),
            }],
            annotations: [("a".to_string(), "b".to_string())].into(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = sample();
        state.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), state);
        // The temp file does not linger.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["state.json"]);
    }

    #[test]
    fn corrupt_and_future_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("state.json"), "{").unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(Error::CorruptState { .. })
        ));
        let mut state = sample();
        state.version = 99;
        state.save(dir.path()).unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state version 99"), "{err}");
    }
}
