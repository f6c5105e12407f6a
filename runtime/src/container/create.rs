//! `Runtime::create`: validate, make the state directory and cgroup, start init through the
//! helper and wait until it is set up. Any failure removes everything made so far.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceType, LinuxResources, Spec,
};

use super::{hooks, now_unix, proc_stat, stdio_links, Container, Undo, EXEC_FIFO, SPEC_FILE};
use crate::cgroups::{default_device_rules, Cgroup};
use crate::error::{Error, Result};
use crate::factory::Runtime;
use crate::id::validate_id;
use crate::process::channel::{self, Message};
use crate::process::plan::{InitPlan, RootfsPlan};
use crate::process::spawn::{expect, spawn_helper, ContainerStdio, Stdio};
use crate::spec::{check_overlay_safe, id_map_text, mapped_root, Bundle};
use crate::state::{NamespaceState, RootfsMode, State, STATE_VERSION};

/// Directory of the state directory on which init mounts the container's root.
pub(crate) const ROOTFS_MOUNTPOINT: &str = "rootfs";

/// Options of `create`.
pub struct CreateOpts {
    /// Overlay (default) or plain rootfs.
    pub rootfs: RootfsMode,
    /// The container's stdio.
    pub stdio: Stdio,
    /// Join this network namespace instead of what the spec says (a namespace prepared by
    /// the caller, e.g. with the container's address).
    pub netns: Option<PathBuf>,
}

impl Default for CreateOpts {
    fn default() -> Self {
        CreateOpts {
            rootfs: RootfsMode::Overlay,
            stdio: Stdio::Pipes,
            netns: None,
        }
    }
}

impl Runtime {
    /// Creates a container from the bundle at `bundle`; its process waits for [`Container::start`].
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        opts: CreateOpts,
    ) -> Result<(Container, ContainerStdio)> {
        validate_id(id)?;
        let mut bundle = Bundle::load(bundle)?;
        if let Some(netns) = &opts.netns {
            join_netns(&mut bundle.spec, netns);
        }
        let dir = self.root.join(id);
        if dir.exists() {
            return Err(Error::AlreadyExists { id: id.to_string() });
        }
        if opts.rootfs == RootfsMode::Overlay {
            check_overlay_safe(&dir).map_err(|reason| Error::InvalidBundle {
                bundle: bundle.dir.clone(),
                reason,
            })?;
        }
        let wrap = |step: &str, e: Error| Error::Create {
            id: id.to_string(),
            step: step.to_string(),
            source: Box::new(e),
        };
        let mut undo = Undo::default();

        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists { id: id.to_string() },
                _ => Error::io("create state directory", &dir, e),
            })?;
        undo.dir = Some(dir.clone());
        let plan = self
            .prepare_dir(id, &dir, &bundle, opts.rootfs)
            .map_err(|e| wrap("prepare state directory", e))?;

        let cgroup_path = self.cgroup_path(id, &bundle.spec);
        let resources = resources_with_default_devices(&bundle.spec);
        let cgroup = Cgroup::create(&self.layout, &cgroup_path, Some(&resources))
            .map_err(|e| wrap("create cgroup", e.into()))?;
        undo.cgroup = Some(cgroup.clone());

        // Without a mount namespace init mounts the rootfs in the runtime's: unmount it when
        // create fails (delete does it otherwise).
        if !has_namespace(&bundle.spec, LinuxNamespaceType::Mount) {
            undo.mounted = Some(plan.rootfs.mountpoint.clone());
        }

        let (fds, stdio) = opts
            .stdio
            .into_helper_stdio()
            .map_err(|e| wrap("set up stdio", e))?;
        let plan = InitPlan {
            console: fds.console.is_some(),
            ..plan
        };
        let mut helper =
            spawn_helper(&self.helper, "init", fds).map_err(|e| wrap("start helper", e))?;
        let sent = channel::send(&mut helper.sock, &plan)
            .map_err(|e| Error::io("send plan to", &self.helper, e));
        let pid = sent.and_then(|()| expect(&mut helper.sock, "init pid"));
        let _ = helper.child.wait();
        let pid = match pid.map_err(|e| wrap("start init", e))? {
            Message::Pid(pid) => pid,
            other => {
                return Err(wrap(
                    "start init",
                    Error::Init {
                        step: "start init".into(),
                        message: format!("unexpected {other:?}"),
                    },
                ))
            }
        };
        undo.pid = Some(pid);
        // Init waits in its user namespace for `Go`: map it before anything runs there, and
        // give its root what it must write.
        if has_namespace(&bundle.spec, LinuxNamespaceType::User) {
            write_id_maps(pid, &bundle.spec).map_err(|e| wrap("map user namespace", e))?;
            let root = root_on_host(pid).map_err(|e| wrap("map user namespace", e))?;
            give_to_container_root(&plan.rootfs, root)
                .and_then(|()| delegate_cgroup(&cgroup, &bundle.spec, root))
                .map_err(|e| wrap("prepare for the user namespace", e))?;
        }
        cgroup
            .add_process(pid)
            .map_err(|e| wrap("join cgroup", e.into()))?;
        // Init's namespaces exist; its root is not set up yet.
        let creating = serde_json::json!({
            "ociVersion": "1.2.0",
            "id": id,
            "status": "creating",
            "pid": pid,
            "bundle": bundle.dir,
            "annotations": bundle.spec.annotations().clone().unwrap_or_default(),
        });
        for (kind, place) in [
            ("prestart", hooks::Place::Runtime),
            ("createRuntime", hooks::Place::Runtime),
            (
                "createContainer",
                hooks::Place::Container { pid, root: false },
            ),
        ] {
            hooks::run(&bundle.spec, kind, &creating, place).map_err(|e| wrap("run hooks", e))?;
        }
        channel::send(&mut helper.sock, &Message::Go)
            .map_err(|e| wrap("release init", Error::io("write to init of", &dir, e)))?;
        match expect(&mut helper.sock, "init setup").map_err(|e| wrap("set up container", e))? {
            Message::Ready => {}
            other => {
                return Err(wrap(
                    "set up container",
                    Error::Init {
                        step: "setup".into(),
                        message: format!("unexpected {other:?}"),
                    },
                ))
            }
        }

        let (_, pid_start_time) = proc_stat(pid).ok_or_else(|| {
            wrap(
                "record init",
                Error::Init {
                    step: "record init".into(),
                    message: format!("init {pid} exited during setup"),
                },
            )
        })?;
        let state = State {
            version: STATE_VERSION,
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            pid,
            pid_start_time,
            created_unix: now_unix(),
            cgroup_path,
            rootfs_mode: opts.rootfs,
            rootfs_lower: bundle.rootfs.clone(),
            stdio: stdio_links(pid),
            namespaces: namespace_states(&bundle.spec),
            annotations: bundle
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        };
        state.save(&dir).map_err(|e| wrap("save state", e))?;
        undo.pid = None;
        undo.mounted = None;
        undo.cgroup = None;
        undo.dir = None;
        let container = Container {
            dir,
            state,
            layout: self.layout.clone(),
            helper: self.helper.clone(),
        };
        Ok((container, stdio))
    }

    fn prepare_dir(
        &self,
        id: &str,
        dir: &Path,
        bundle: &Bundle,
        mode: RootfsMode,
    ) -> Result<InitPlan> {
        let mkdir = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .map_err(|e| Error::io("create", &path, e))?;
            Ok(path)
        };
        let rootfs = RootfsPlan {
            mode,
            lower: bundle.rootfs.clone(),
            upper: mkdir("upper")?,
            work: mkdir("work")?,
            mountpoint: mkdir(ROOTFS_MOUNTPOINT)?,
        };

        let fifo = dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::sys(format!("create {}", fifo.display()), e))?;
        bundle.spec.save(dir.join(SPEC_FILE)).map_err(|e| {
            Error::io(
                "write",
                dir.join(SPEC_FILE),
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(InitPlan {
            id: id.to_string(),
            spec: bundle.spec.clone(),
            rootfs,
            exec_fifo: fifo,
            cgroup_v2: self.layout.is_v2(),
            console: false,
        })
    }

    fn cgroup_path(&self, id: &str, spec: &Spec) -> String {
        match spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
        {
            Some(path) if path.is_absolute() => path.display().to_string(),
            Some(path) => format!("{}/{}", self.cgroup_parent, path.display()),
            None => format!("{}/{id}", self.cgroup_parent),
        }
    }
}

/// Writes init's `uid_map` and `gid_map` when it has a new user namespace. setgroups stays
/// allowed: the runtime is privileged, unlike rootless runc, which must deny it.
fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    use std::io::Write;
    let Some(linux) = spec
        .linux()
        .as_ref()
        .filter(|_| mapped_root(spec).is_some())
    else {
        return Ok(());
    };
    for (file, map) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        // The kernel takes a map in a single write.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(id_map_text(map.as_deref().unwrap_or(&[])).as_bytes()))
            .map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// Host uid and gid of the root of init's user namespace (new or joined), from its maps.
fn root_on_host(pid: i32) -> Result<(u32, u32)> {
    let mut ids = [0; 2];
    for (id, file) in ids.iter_mut().zip(["uid_map", "gid_map"]) {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        *id = root_in_map(&text).ok_or_else(|| {
            Error::io(
                "use",
                &path,
                std::io::Error::other("the user namespace does not map 0 (its root)"),
            )
        })?;
    }
    Ok((ids[0], ids[1]))
}

/// The host id that 0 maps to in the text of a `uid_map` or `gid_map`.
fn root_in_map(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<u32> = line
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        match f[..] {
            [0, host, size] if size > 0 => Some(host),
            _ => None,
        }
    })
}

/// In a user namespace init mounts the overlay as the namespace's root (the kernel makes the
/// work directory for the mounter) and reaches it from the state directory: that directory
/// becomes searchable (not listable) by others, as runc's are (the state root above it stays
/// private), and the upper and work directories become the container root's, so that what it
/// writes is its own on the host too. The bundle's files stay as they are, as with runc.
fn give_to_container_root(plan: &RootfsPlan, (uid, gid): (u32, u32)) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = plan.mountpoint.parent() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("make searchable", dir, e))?;
    }
    for dir in [&plan.upper, &plan.work] {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| Error::io("give the container's root", dir, e))?;
    }
    Ok(())
}

/// As runc: on cgroup v2, a container with its own user and cgroup namespaces and a writable
/// cgroup mount gets its cgroup delegated (the directory and the files the kernel lists in
/// `/sys/kernel/cgroup/delegate` owned by its root), so that its root can manage it.
/// Nothing on v1, where runc does not do it either.
fn delegate_cgroup(cgroup: &Cgroup, spec: &Spec, (uid, gid): (u32, u32)) -> Result<()> {
    let own_cgroupns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Cgroup && ns.path().is_none())
        });
    let rw_cgroup_mount = spec.mounts().iter().flatten().any(|m| {
        matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"))
            && !m.options().iter().flatten().any(|o| o == "ro")
    });
    if !cgroup.layout().is_v2() || !own_cgroupns || !rw_cgroup_mount {
        return Ok(());
    }
    let Some(dir) = cgroup.dirs().into_iter().next() else {
        return Ok(());
    };
    let files = fs::read_to_string("/sys/kernel/cgroup/delegate")
        .unwrap_or_else(|_| "cgroup.procs\ncgroup.subtree_control\ncgroup.threads\n".to_string());
    let paths = std::iter::once(dir.clone()).chain(files.lines().map(|f| dir.join(f)));
    for path in paths {
        match std::os::unix::fs::chown(&path, Some(uid), Some(gid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("delegate to the container's root", &path, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// True when the spec lists a namespace of type `typ` (new or joined).
fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|ns| ns.typ() == typ))
}

/// Makes the spec join the network namespace at `path`.
fn join_netns(spec: &mut Spec, path: &Path) {
    use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType};
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(path.to_path_buf())
            .build()
            .expect("namespace has every field"),
    );
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

fn namespace_states(spec: &Spec) -> Vec<NamespaceState> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|ns| NamespaceState {
            typ: ns_type_name(ns.typ()),
            path: ns.path().clone(),
        })
        .collect()
}

/// OCI name of a namespace type (`network`, `mount`, ...).
fn ns_type_name(t: oci_spec::runtime::LinuxNamespaceType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The spec's resources with the device rules completed: the spec's rules, then the default
/// nodes and the spec's own devices (the cgroup denies everything else).
pub(crate) fn resources_with_default_devices(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut resources = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend(default_device_rules());
    for d in linux.and_then(|l| l.devices().clone()).unwrap_or_default() {
        let typ = if d.typ() == LinuxDeviceType::B {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .major(d.major())
                .minor(d.minor())
                .access("rwm")
                .build()
                .expect("rule"),
        );
    }
    resources.set_devices(Some(rules));
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_in_a_kernel_map() {
        assert_eq!(
            root_in_map("         0     100000      65536\n"),
            Some(100000)
        );
        assert_eq!(root_in_map("1 5 3\n0 7 1\n"), Some(7));
        assert_eq!(root_in_map("1 5 3\n"), None);
        assert_eq!(root_in_map(""), None);
    }
}
