//! `Runtime::create`: validate, make the state directory and cgroup, start init through the
//! helper and wait until it is set up. Any failure removes everything made so far.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources, Spec};

use super::{hooks, now_unix, proc_stat, stdio_links, Container, Undo, EXEC_FIFO, SPEC_FILE};
use crate::cgroups::{default_device_rules, Cgroup};
use crate::error::{Error, Result};
use crate::factory::Runtime;
use crate::id::validate_id;
use crate::process::channel::{self, Message};
use crate::process::plan::{InitPlan, RootfsPlan};
use crate::process::spawn::{expect, spawn_helper, ContainerStdio, Stdio};
use crate::spec::{check_overlay_safe, Bundle};
use crate::state::{NamespaceState, RootfsMode, State, STATE_VERSION};

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
            mountpoint: mkdir("rootfs")?,
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
