//! `Runtime::restore`: bring a checkpoint back as a running container, under the same or a new
//! id, in a new cgroup, with new stdio pipes. A failed restore leaves nothing behind.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use super::checkpoint::{CheckpointMeta, NETNS_KEY, ROOTFS_DIFF};
use super::create::resources_with_default_devices;
use super::{now_unix, proc_stat, stdio_links, Container, Undo, SPEC_FILE};
use crate::cgroups::Cgroup;
use crate::criu::{notify, CgroupMode, Criu, RestoreRequest};
use crate::error::{Error, Result};
use crate::factory::Runtime;
use crate::id::validate_id;
use crate::process::plan::RootfsPlan;
use crate::process::spawn::{ContainerStdio, Stdio};
use crate::state::{NamespaceState, State, STATE_VERSION};
use crate::syscall::tty;

/// Options of a restore.
pub struct RestoreOpts {
    /// New stdio for the restored process (its old pipes are gone).
    pub stdio: Stdio,
    /// Network namespace to restore into, when the container had joined one by path
    /// (default: the same path as at checkpoint). Needed for `tcp_established`.
    pub netns: Option<PathBuf>,
    /// Cgroup path (default: the runtime's parent + the new id).
    pub cgroup_path: Option<String>,
    /// The bundle on this host, when it is not where it was at checkpoint (after a move):
    /// its rootfs becomes the overlay's lower layer.
    pub bundle: Option<PathBuf>,
    /// Restore established TCP connections closed (a backup restored later: their peers have
    /// long moved on).
    pub tcp_close: bool,
    /// Post-copy: the checkpoint was dumped with lazy pages, and a lazy-pages daemon on the
    /// same images dir ([`crate::criu::Criu::lazy_pages`]) serves the missing memory.
    pub lazy_pages: bool,
}

impl Default for RestoreOpts {
    fn default() -> Self {
        RestoreOpts {
            stdio: Stdio::Pipes,
            netns: None,
            cgroup_path: None,
            bundle: None,
            tcp_close: false,
            lazy_pages: false,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Copy)]
pub struct Restored {
    /// How long CRIU's restore took.
    pub restore_time: Duration,
}

impl Runtime {
    /// Restores the checkpoint in `dir` as container `id`.
    pub fn restore(
        &self,
        dir: &Path,
        id: &str,
        opts: RestoreOpts,
    ) -> Result<(Container, ContainerStdio, Restored)> {
        validate_id(id)?;
        let meta = CheckpointMeta::load(dir)?;
        let spec_path = dir.join(SPEC_FILE);
        let spec = Spec::load(&spec_path).map_err(|e| Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            reason: format!("{SPEC_FILE}: {e}"),
        })?;
        let (bundle_dir, lower) = match &opts.bundle {
            Some(b) => (
                b.clone(),
                b.join(
                    spec.root()
                        .as_ref()
                        .map(|r| r.path().clone())
                        .unwrap_or_else(|| PathBuf::from("rootfs")),
                ),
            ),
            None => (meta.state.bundle.clone(), meta.state.rootfs_lower.clone()),
        };
        if !lower.is_dir() {
            return Err(Error::InvalidCheckpoint {
                dir: dir.to_path_buf(),
                reason: format!("its base rootfs {} does not exist here", lower.display()),
            });
        }
        for (dest, source) in &meta.bind_mounts {
            if !source.exists() {
                return Err(Error::InvalidCheckpoint {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "bind mount {dest}: source {} does not exist here",
                        source.display()
                    ),
                });
            }
        }
        let criu = Criu::locate()?;
        let state_dir = self.root.join(id);
        if state_dir.exists() {
            return Err(Error::AlreadyExists { id: id.to_string() });
        }
        let wrap = |step: &str, e: Error| Error::Create {
            id: id.to_string(),
            step: step.to_string(),
            source: Box::new(e),
        };
        let mut undo = Undo::default();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&state_dir)
            .map_err(|e| Error::io("create state directory", &state_dir, e))?;
        undo.dir = Some(state_dir.clone());

        let mkdir = |name: &str| -> Result<PathBuf> {
            let p = state_dir.join(name);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(|e| Error::io("create", &p, e))?;
            Ok(p)
        };
        let (upper, work, rootfs) = (mkdir("upper")?, mkdir("work")?, mkdir("rootfs")?);
        unpack_rootfs_diff(&dir.join(ROOTFS_DIFF), &upper)
            .map_err(|e| wrap("unpack rootfs changes", e))?;
        let plan = RootfsPlan {
            mode: meta.state.rootfs_mode,
            lower: lower.clone(),
            upper,
            work,
            mountpoint: rootfs.clone(),
        };
        mount_rootfs(&plan).map_err(|e| wrap("mount rootfs", e))?;
        undo.mounted = Some(rootfs.clone());
        spec.save(state_dir.join(SPEC_FILE)).map_err(|e| {
            wrap(
                "save spec",
                Error::io(
                    "write",
                    state_dir.join(SPEC_FILE),
                    std::io::Error::other(e.to_string()),
                ),
            )
        })?;

        let cgroup_path = opts
            .cgroup_path
            .clone()
            .unwrap_or_else(|| format!("{}/{id}", self.cgroup_parent));
        let cgroup = Cgroup::create(
            &self.layout,
            &cgroup_path,
            Some(&resources_with_default_devices(&spec)),
        )
        .map_err(|e| wrap("create cgroup", e.into()))?;
        undo.cgroup = Some(cgroup.clone());

        // A terminal container gets a new pty from CRIU, whose master goes to the console
        // socket; other stdio replaces the dumped pipes.
        let (console, fds, stdio) = match opts.stdio {
            Stdio::Terminal { console_socket } => {
                (Some(console_socket), Vec::new(), ContainerStdio::default())
            }
            other => {
                let (fds, stdio) = other.into_fds().map_err(|e| wrap("set up stdio", e))?;
                (None, Vec::from(fds), stdio)
            }
        };
        let mut inherit_fds = Vec::new();
        for (key, fd) in meta.state.stdio.iter().zip(fds) {
            if key.starts_with("pipe:") && !inherit_fds.iter().any(|(k, _)| k == key) {
                inherit_fds.push((key.clone(), fd));
            }
        }
        let mut namespaces = meta.state.namespaces.clone();
        for ns in namespaces
            .iter_mut()
            .filter(|ns| ns.typ == "network" && ns.path.is_some())
        {
            let path = opts
                .netns
                .clone()
                .or_else(|| ns.path.clone())
                .unwrap_or_default();
            let file = fs::File::open(&path)
                .map_err(|e| wrap("open network namespace", Error::io("open", &path, e)))?;
            inherit_fds.push((NETNS_KEY.to_string(), file.into()));
            ns.path = Some(path);
        }
        let req = RestoreRequest {
            images_dir: dir.to_path_buf(),
            root: Some(rootfs.clone()),
            rst_sibling: true,
            manage_cgroups_mode: Some(CgroupMode::Soft),
            cg_root: vec![(None, cgroup_path.clone())],
            ext_mounts: meta
                .bind_mounts
                .iter()
                .map(|(d, s)| (d.clone(), s.display().to_string()))
                .collect(),
            inherit_fds,
            tcp_established: meta.tcp_established,
            tcp_close: opts.tcp_close,
            lazy_pages: opts.lazy_pages,
            ext_unix_sk: meta.ext_unix_sk,
            file_locks: meta.file_locks,
            empty_net_ns: meta.empty_net_ns,
            evasive_devices: true,
            orphan_pts_master: true,
            ..Default::default()
        };
        let mut restored_pid = None;
        let outcome = criu.restore(&req, &mut |n: &mut notify::Notify| {
            if n.script == notify::script::ORPHAN_PTS_MASTER {
                let master =
                    n.fd.take()
                        .ok_or("orphan-pts-master came without a descriptor")?;
                let console = console
                    .as_ref()
                    .ok_or("the checkpoint has a terminal: restore needs a console socket")?;
                tty::send_fd(console.as_fd(), tty::CONSOLE_NAME, master.as_fd())?;
            }
            if n.script == notify::script::SETUP_NAMESPACES && meta.empty_net_ns {
                if let Some(pid) = n.pid {
                    loopback_up(pid)?;
                }
            }
            if n.script == notify::script::POST_RESTORE {
                restored_pid = n.pid;
            }
            Ok(())
        });
        let outcome = outcome.map_err(|e| wrap("restore with criu", e.into()))?;
        let pid = outcome.pid;
        undo.pid = Some(pid);
        if restored_pid.is_some_and(|p| p != pid) {
            return Err(wrap(
                "restore with criu",
                Error::Init {
                    step: "post-restore".into(),
                    message: format!(
                        "criu reported pid {pid} but post-restore said {restored_pid:?}"
                    ),
                },
            ));
        }
        let (_, pid_start_time) = proc_stat(pid).ok_or_else(|| {
            wrap(
                "record init",
                Error::Init {
                    step: "record init".into(),
                    message: format!("restored init {pid} is gone"),
                },
            )
        })?;
        let state = State {
            version: STATE_VERSION,
            id: id.to_string(),
            bundle: bundle_dir,
            pid,
            pid_start_time,
            created_unix: now_unix(),
            cgroup_path,
            rootfs_mode: meta.state.rootfs_mode,
            rootfs_lower: lower,
            stdio: stdio_links(pid),
            namespaces: namespaces
                .into_iter()
                .map(|ns| NamespaceState {
                    typ: ns.typ,
                    path: ns.path,
                })
                .collect(),
            annotations: meta.state.annotations.clone(),
        };
        state.save(&state_dir).map_err(|e| wrap("save state", e))?;
        // The restored mount namespace holds its own reference to the rootfs.
        if let Some(m) = undo.mounted.take() {
            let _ = umount2(&m, MntFlags::MNT_DETACH);
        }
        undo.pid = None;
        undo.cgroup = None;
        undo.dir = None;
        let container = Container {
            dir: state_dir,
            state,
            layout: self.layout.clone(),
            helper: self.helper.clone(),
        };
        Ok((
            container,
            stdio,
            Restored {
                restore_time: outcome.elapsed,
            },
        ))
    }
}

/// Brings loopback up in the (empty) network namespace CRIU made for process `pid`.
fn loopback_up(pid: i32) -> std::result::Result<(), crate::criu::NotifyError> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "link", "set", "lo", "up"])
        .output()
        .map_err(|e| format!("cannot run nsenter: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot bring up loopback of restored process {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

fn unpack_rootfs_diff(tar: &Path, upper: &Path) -> Result<()> {
    if !tar.is_file() {
        return Err(Error::io(
            "find",
            tar,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let out = Command::new("tar")
        .args([
            "--extract",
            "--xattrs",
            "--xattrs-include=trusted.*",
            "--numeric-owner",
            "--preserve-permissions",
            "-f",
        ])
        .arg(tar)
        .arg("-C")
        .arg(upper)
        .output()
        .map_err(|e| Error::io("run tar on", tar, e))?;
    if !out.status.success() {
        return Err(Error::io(
            "unpack",
            tar,
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

fn mount_rootfs(plan: &RootfsPlan) -> Result<()> {
    crate::rootfs::mount_root(plan).map_err(|(step, message)| Error::Init { step, message })?;
    // CRIU wants the root's mount private so nothing propagates out of the restored namespace.
    mount(
        None::<&str>,
        &plan.mountpoint,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("make {} private", plan.mountpoint.display()), e))
}
