//! `checkpoint`: freeze the container through its freezer cgroup, dump it with CRIU into a
//! directory, and write the runtime's own metadata and the rootfs changes beside the images.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::{Container, SPEC_FILE};
use crate::criu::{notify, CgroupMode, Criu, CriuError, DumpRequest, PageServer};
use crate::error::{Error, Result};
use crate::state::{write_atomic, State, Status};

/// The runtime's metadata in a checkpoint directory.
pub const CHECKPOINT_META: &str = "runtime.json";
/// The container's rootfs changes (its overlay upper dir) as a tar archive.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// Version of [`CheckpointMeta`].
pub const CHECKPOINT_VERSION: u32 = 1;

/// Options of a checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointOpts {
    /// Keep the container running after the dump (a snapshot); otherwise it is killed.
    pub leave_running: bool,
    /// Dump established TCP connections (restore needs the same IP).
    pub tcp_established: bool,
    /// Allow unix sockets connected to peers outside the container.
    pub ext_unix_sk: bool,
    /// Dump file locks.
    pub file_locks: bool,
}

/// What the runtime writes beside CRIU's images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The container's state at dump time (id, bundle, cgroup path, stdio, namespaces, ...).
    pub state: State,
    /// Options the dump used (restore must match `tcp_established`, `ext_unix_sk`, `file_locks`).
    pub tcp_established: bool,
    /// See [`CheckpointOpts::ext_unix_sk`].
    pub ext_unix_sk: bool,
    /// See [`CheckpointOpts::file_locks`].
    pub file_locks: bool,
    /// The container's private network namespace was dumped without its configuration (as runc
    /// does); restore recreates it empty and brings loopback up.
    #[serde(default)]
    pub empty_net_ns: bool,
    /// Bind mounts marked external at dump: destination in the container, host source.
    pub bind_mounts: Vec<(String, PathBuf)>,
    /// How long the container was frozen, in milliseconds (dump until resumed or killed).
    pub frozen_ms: u64,
}

impl CheckpointMeta {
    /// Reads `<dir>/runtime.json`.
    pub fn load(dir: &Path) -> Result<CheckpointMeta> {
        let bad = |reason: String| Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            reason,
        };
        let text = fs::read(dir.join(CHECKPOINT_META))
            .map_err(|e| bad(format!("cannot read {CHECKPOINT_META}: {e}")))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(&text).map_err(|e| bad(format!("{CHECKPOINT_META}: {e}")))?;
        if meta.version != CHECKPOINT_VERSION {
            return Err(bad(format!(
                "checkpoint version {} is not the supported {CHECKPOINT_VERSION}",
                meta.version
            )));
        }
        if !dir.join("inventory.img").is_file() {
            return Err(bad(
                "inventory.img is missing (not a CRIU image directory)".into()
            ));
        }
        Ok(meta)
    }
}

/// What a checkpoint did.
#[derive(Debug, Clone)]
pub struct Checkpointed {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// How long CRIU's dump took.
    pub dump_time: Duration,
    /// How long the container was frozen.
    pub frozen: Duration,
}

impl Container {
    /// Refuses containers whose namespaces the dump and restore do not handle yet: a user
    /// namespace (restore would have to recreate it and mount the overlay inside it), and no
    /// mount namespace of their own (init shares the host's mounts).
    fn check_dumpable(&self) -> Result<()> {
        let has = |typ: &str| self.state.namespaces.iter().any(|ns| ns.typ == typ);
        let what = if has("user") {
            "checkpoint of containers with a user namespace"
        } else if !has("mount") {
            "checkpoint of containers without a mount namespace of their own"
        } else {
            return Ok(());
        };
        Err(Error::NotSupported { what: what.into() })
    }

    /// Checkpoints the container into `dir` (created, must not exist or be empty).
    pub fn checkpoint(&self, dir: &Path, opts: CheckpointOpts) -> Result<Checkpointed> {
        self.checkpoint_with(dir, opts, |_| Ok(()))
    }

    /// Checkpoints the container, calling `at_post_dump` when the images are complete and the
    /// container is still frozen. `Ok` lets the dump finish (the container is killed, or thawed
    /// with `leave_running`); `Err(reason)` resumes the container where it was and fails the
    /// checkpoint with [`Error::CheckpointAborted`]. This is the hold that safe migration needs.
    pub fn checkpoint_with(
        &self,
        dir: &Path,
        opts: CheckpointOpts,
        at_post_dump: impl FnMut(&Path) -> std::result::Result<(), String>,
    ) -> Result<Checkpointed> {
        self.dump(dir, opts, None, at_post_dump)
    }

    /// Post-copy: checkpoints the container but its private memory, which CRIU serves on
    /// `page_server` (to a lazy-pages daemon at the other end, see [`Criu::lazy_pages`]).
    /// `at_ready` runs once the images in `dir` are complete (with `runtime.json`) and pages
    /// are being served; `Err(reason)` there resumes the container as with
    /// [`Container::checkpoint_with`]. The call returns when every page has been fetched, or
    /// fails if the page server's peer went away first; either way the container is then
    /// resumed with `leave_running` (into its freezer state) or killed.
    pub fn checkpoint_lazy(
        &self,
        dir: &Path,
        opts: CheckpointOpts,
        page_server: OwnedFd,
        at_ready: impl FnMut(&Path) -> std::result::Result<(), String>,
    ) -> Result<Checkpointed> {
        self.dump(dir, opts, Some(page_server), at_ready)
    }

    fn dump(
        &self,
        dir: &Path,
        opts: CheckpointOpts,
        page_server: Option<OwnedFd>,
        mut at_ready: impl FnMut(&Path) -> std::result::Result<(), String>,
    ) -> Result<Checkpointed> {
        let lazy = page_server.is_some();
        // A paused container can be checkpointed too: CRIU leaves the freezer as it found it,
        // so with `leave_running` it stays frozen afterwards (what a safe move needs).
        self.require(&[Status::Running, Status::Paused], "checkpoint")?;
        self.check_dumpable()?;
        let criu = Criu::locate()?;
        create_empty_dir(dir)?;
        let spec = self.spec()?;
        let bind_mounts = bind_mounts(&spec);
        let mut external = Vec::new();
        // A private network namespace only ever has loopback (the runtime configures nothing
        // else in it), so CRIU need not save and restore its links, routes and firewall rules:
        // that saves tens of milliseconds of frozen time.
        let empty_net_ns = self
            .state
            .namespaces
            .iter()
            .any(|ns| ns.typ == "network" && ns.path.is_none());
        for ns in &self.state.namespaces {
            if ns.typ == "network" && ns.path.is_some() {
                let link =
                    fs::read_link(format!("/proc/{}/ns/net", self.state.pid)).map_err(|e| {
                        Error::io(
                            "read network namespace of",
                            format!("/proc/{}", self.state.pid),
                            e,
                        )
                    })?;
                let ino = link
                    .to_string_lossy()
                    .trim_start_matches("net:[")
                    .trim_end_matches(']')
                    .to_string();
                external.push(format!("net[{ino}]:{NETNS_KEY}"));
            }
        }
        let req = DumpRequest {
            images_dir: dir.to_path_buf(),
            pid: self.state.pid,
            leave_running: opts.leave_running,
            tcp_established: opts.tcp_established,
            ext_unix_sk: opts.ext_unix_sk,
            file_locks: opts.file_locks,
            freeze_cgroup: Some(self.cgroup().freezer_path()),
            manage_cgroups_mode: Some(CgroupMode::Soft),
            ext_mounts: bind_mounts
                .iter()
                .map(|(dest, _)| (dest.clone(), dest.clone()))
                .collect(),
            external,
            empty_net_ns,
            // A terminal container's pty master is outside the tree (the console socket's
            // receiver holds it): CRIU dumps the slave as an orphan (as runc, always).
            orphan_pts_master: true,
            lazy_pages: lazy,
            page_server: page_server.map(|fd| PageServer {
                fd: Some(fd),
                ..Default::default()
            }),
            ..Default::default()
        };
        let started = Instant::now();
        let mut frozen_at = None;
        let mut aborted = None;
        let mut meta = CheckpointMeta {
            version: CHECKPOINT_VERSION,
            state: self.state.clone(),
            tcp_established: opts.tcp_established,
            ext_unix_sk: opts.ext_unix_sk,
            file_locks: opts.file_locks,
            empty_net_ns,
            bind_mounts,
            frozen_ms: 0,
        };
        let result = criu.dump(&req, &mut |n: &mut notify::Notify| {
            if n.script == notify::script::PRE_DUMP {
                frozen_at = Some(Instant::now());
            }
            let ready = if lazy {
                notify::script::STATUS_READY
            } else {
                notify::script::POST_DUMP
            };
            if n.script == notify::script::POST_DUMP {
                // Images are complete and the tree is frozen: save what the runtime needs
                // beside them (all of it now when the images leave before the dump returns).
                let mut saved = self.save_rootfs_diff(dir).and_then(|()| {
                    spec.save(dir.join(SPEC_FILE)).map_err(|e| {
                        Error::io(
                            "write",
                            dir.join(SPEC_FILE),
                            std::io::Error::other(e.to_string()),
                        )
                    })
                });
                if lazy && saved.is_ok() {
                    meta.frozen_ms = frozen_at
                        .map(|t| t.elapsed().as_millis() as u64)
                        .unwrap_or(0);
                    saved = write_meta(dir, &meta);
                }
                if let Err(e) = saved {
                    aborted = Some(e.to_string());
                    return Err(e.to_string().into());
                }
            }
            if n.script != ready {
                return Ok(());
            }
            at_ready(dir).map_err(|reason| {
                aborted = Some(reason.clone());
                reason.into()
            })
        });
        let frozen = frozen_at.map(|t| t.elapsed()).unwrap_or_default();
        match result {
            Ok(outcome) => {
                if !lazy {
                    meta.frozen_ms = frozen.as_millis() as u64;
                    write_meta(dir, &meta)?;
                }
                if !opts.leave_running {
                    // CRIU killed the tree; reap init if it is our child.
                    self.try_reap();
                }
                Ok(Checkpointed {
                    dir: dir.to_path_buf(),
                    dump_time: outcome.elapsed.max(started.elapsed()),
                    frozen,
                })
            }
            Err(CriuError::Notify { .. }) if aborted.is_some() => Err(Error::CheckpointAborted {
                id: self.state.id.clone(),
                reason: aborted.unwrap_or_default(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Archives the overlay upper dir (the container's changes) into the checkpoint.
    fn save_rootfs_diff(&self, dir: &Path) -> Result<()> {
        let upper = self.upper_dir();
        let tar = dir.join(ROOTFS_DIFF);
        let out = Command::new("tar")
            .args([
                "--create",
                "--xattrs",
                "--xattrs-include=trusted.*",
                "--numeric-owner",
                "--sparse",
                "-f",
            ])
            .arg(&tar)
            .arg("-C")
            .arg(&upper)
            .arg(".")
            .output()
            .map_err(|e| Error::io("run tar on", &upper, e))?;
        if !out.status.success() {
            return Err(Error::io(
                "archive",
                &upper,
                std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            ));
        }
        Ok(())
    }
}

/// Writes `<dir>/runtime.json`.
fn write_meta(dir: &Path, meta: &CheckpointMeta) -> Result<()> {
    let data = serde_json::to_vec_pretty(meta).map_err(|e| {
        Error::io(
            "encode",
            dir.join(CHECKPOINT_META),
            std::io::Error::other(e),
        )
    })?;
    write_atomic(&dir.join(CHECKPOINT_META), &data)
}

/// CRIU's key for an external network namespace.
pub(crate) const NETNS_KEY: &str = "extRootNetNS";

/// The spec's bind mounts: destination and host source.
pub(crate) fn bind_mounts(spec: &Spec) -> Vec<(String, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.source().clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn create_empty_dir(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidCheckpoint {
                    dir: dir.to_path_buf(),
                    reason: "directory is not empty".into(),
                });
            }
            Ok(())
        }
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create checkpoint directory", dir, e)),
    }
}
