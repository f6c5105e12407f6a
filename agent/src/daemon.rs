//! The agent's state and its container verbs: run, stop, kill, remove, pause, resume, exec,
//! checkpoint, restore; supervision of exits with restart policies; re-adoption at start.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use proto::v1::{self as pb, OperationResult};
use runtime::{CheckpointOpts, Runtime, Status};

use crate::catalog::{Catalog, CheckpointRecord, ContainerRecord, Restart};
use crate::config::Config;
use crate::error::{AgentError, Result};
use crate::metrics::Metrics;
use crate::ops::{OpHandle, Operations};
use crate::shim::{self, ExitRecord, ShimAction, ShimSpec};

/// How long to wait for a shim to report that the container started.
const SHIM_TIMEOUT: Duration = Duration::from_secs(60);
/// How often supervision looks for exits.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Desired states recorded in the catalog.
pub mod desired {
    /// Keep it running (restart policy applies).
    pub const RUNNING: &str = "running";
    /// Stopped on purpose.
    pub const STOPPED: &str = "stopped";
    /// Being checkpointed: an exit now is the checkpoint's doing.
    pub const CHECKPOINTING: &str = "checkpointing";
}

/// Facts about this host, gathered once.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// `v1`, `hybrid` or `v2`.
    pub cgroup_layout: String,
}

/// The daemon.
pub struct Agent {
    /// Its configuration.
    pub config: Config,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The embedded runtime (state under `<state_dir>/containers`).
    pub runtime: Runtime,
    /// Operations in flight.
    pub ops: Arc<Operations>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Host facts.
    pub host: HostInfo,
    /// `criu check` report, computed on first use.
    pub criu: OnceLock<std::result::Result<runtime::criu::CheckReport, String>>,
    /// The chunk store (checkpoints, layers, moves).
    pub store: crate::store::Store,
    /// Chunks received per incoming move, to discard them if the move is aborted.
    pub incoming: Mutex<std::collections::HashMap<String, HashSet<String>>>,
    /// Where the chunks of each incoming move were written in its image files: path →
    /// offset → length.
    #[allow(clippy::type_complexity)]
    pub placed: Mutex<
        std::collections::HashMap<
            String,
            std::collections::HashMap<String, std::collections::BTreeMap<u64, u64>>,
        >,
    >,
    /// Manifests of moves that restored here, committed when the source commits the move.
    pub pending_manifests: Mutex<std::collections::HashMap<String, Vec<crate::store::Manifest>>>,
    /// Lazy moves landing here: their page relays and lazy-pages daemons.
    pub lazy: crate::lazy::Landings,
    /// Held (shared) by whatever writes chunks before committing the manifest that names them
    /// (backups, outgoing moves); garbage collection takes it exclusively.
    pub store_lock: Arc<tokio::sync::RwLock<()>>,
    exe: PathBuf,
    started: Instant,
    watched: Mutex<HashSet<String>>,
    busy: Mutex<HashSet<String>>,
}

/// Marks a container busy for the duration of an operation (one operation per container).
pub struct BusyGuard {
    agent: Arc<Agent>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.agent
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Agent {
    /// Opens the state directory, catalog and runtime.
    pub fn open(config: Config) -> anyhow::Result<Arc<Agent>> {
        use anyhow::Context;
        for dir in [
            config.state_dir.clone(),
            config.logs_dir(),
            config.checkpoints_dir(),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let catalog = Arc::new(Catalog::open(&config.catalog_path())?);
        let runtime = Runtime::new(config.containers_dir())
            .context("cannot open the container runtime")?
            .with_cgroup_parent(config.cgroup_parent.clone());
        let metrics = Arc::new(Metrics::new());
        let store = crate::store::Store::open(&config.state_dir.join("store"))?;
        let ops = Operations::new(catalog.clone(), metrics.clone());
        let host = HostInfo {
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpu_model: fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default(),
            cgroup_layout: match runtime.cgroup_layout() {
                runtime::cgroups::Layout::V2 { .. } => "v2".into(),
                runtime::cgroups::Layout::V1 {
                    unified: Some(_), ..
                } => "hybrid".into(),
                runtime::cgroups::Layout::V1 { .. } => "v1".into(),
            },
        };
        Ok(Arc::new(Agent {
            config,
            catalog,
            runtime,
            ops,
            metrics,
            host,
            criu: OnceLock::new(),
            store,
            incoming: Mutex::new(std::collections::HashMap::new()),
            store_lock: Arc::new(tokio::sync::RwLock::new(())),
            pending_manifests: Mutex::new(std::collections::HashMap::new()),
            lazy: Default::default(),
            placed: Mutex::new(std::collections::HashMap::new()),
            exe: std::env::current_exe().context("cannot find the agent's own binary")?,
            started: Instant::now(),
            watched: Mutex::new(HashSet::new()),
            busy: Mutex::new(HashSet::new()),
        }))
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The agent binary (for shims).
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.config.logs_dir().join(format!("{id}.log"))
    }
    pub(crate) fn exit_path(&self, id: &str) -> PathBuf {
        self.config.logs_dir().join(format!("{id}.exit"))
    }

    /// Claims `id` for one operation, or fails if another runs.
    pub fn claim(self: &Arc<Self>, id: &str) -> Result<BusyGuard> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(id.to_string()) {
            return Err(AgentError::FailedPrecondition(format!(
                "container {id} has another operation in progress"
            )));
        }
        Ok(BusyGuard {
            agent: self.clone(),
            id: id.to_string(),
        })
    }

    /// Whether an operation holds container `id` now.
    pub fn is_busy(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// The catalog record, or NOT_FOUND.
    pub fn record(&self, id: &str) -> Result<ContainerRecord> {
        runtime::id::validate_id(id).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        self.catalog
            .container(id)?
            .ok_or_else(|| AgentError::NotFound(format!("container {id} does not exist")))
    }

    /// The runtime's view of a container, if it has state.
    pub(crate) fn live(&self, id: &str) -> Option<runtime::Container> {
        self.runtime.load(id).ok()
    }

    /// The proto view of a container.
    pub fn describe(&self, rec: &ContainerRecord) -> pb::Container {
        let live = self.live(&rec.id);
        let status = live.as_ref().map(|c| c.status()).unwrap_or(Status::Stopped);
        let stats = live
            .as_ref()
            .filter(|_| status != Status::Stopped)
            .and_then(|c| c.stats().ok());
        pb::Container {
            id: rec.id.clone(),
            status: match status {
                Status::Created => pb::ContainerStatus::Created,
                Status::Running => pb::ContainerStatus::Running,
                Status::Paused => pb::ContainerStatus::Paused,
                Status::Stopped => pb::ContainerStatus::Stopped,
            } as i32,
            pid: if status == Status::Stopped {
                0
            } else {
                live.as_ref().map(|c| c.pid()).unwrap_or(0)
            },
            bundle: rec.bundle.clone(),
            restart: restart_to_proto(rec.restart) as i32,
            // The shim records the exit before the watcher does: report it as soon as it exists.
            exit_code: rec
                .exit_code
                .or_else(|| {
                    (status == Status::Stopped)
                        .then(|| ExitRecord::read(&self.exit_path(&rec.id)).map(|e| e.exit_code))
                        .flatten()
                })
                .unwrap_or(-1),
            restarts: rec.restarts,
            created_unix: rec.created_unix,
            cgroup: live
                .as_ref()
                .map(|c| c.persisted().cgroup_path.clone())
                .unwrap_or_default(),
            memory_bytes: stats.as_ref().map(|s| s.memory_usage).unwrap_or(0),
            pids: stats.as_ref().map(|s| s.pids_current as u32).unwrap_or(0),
            ip: rec.ip.clone(),
        }
    }

    /// Creates and starts a container through a shim.
    pub fn run(
        self: &Arc<Self>,
        id: &str,
        bundle: &Path,
        restart: Restart,
        ip: &str,
    ) -> Result<pb::Container> {
        runtime::id::validate_id(id).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        let _busy = self.claim(id)?;
        if self.catalog.container(id)?.is_some() {
            return Err(AgentError::AlreadyExists(format!(
                "container {id} already exists"
            )));
        }
        if !bundle.is_absolute() {
            return Err(AgentError::InvalidArgument(format!(
                "bundle path {} is not absolute",
                bundle.display()
            )));
        }
        let b = runtime::spec::Bundle::load(bundle).map_err(AgentError::from)?;
        let mac = if ip.is_empty() {
            String::new()
        } else {
            crate::network::mac_for(id, ip)
        };
        let rec = ContainerRecord {
            id: id.to_string(),
            bundle: b.dir.display().to_string(),
            restart,
            desired: desired::RUNNING.into(),
            exit_code: None,
            restarts: 0,
            created_unix: now_unix(),
            ip: ip.to_string(),
            mac,
        };
        let netns = self.network_up(&rec, true)?;
        self.catalog.put_container(&rec)?;
        if let Err(e) = self.spawn_shim(
            id,
            ShimAction::Create {
                bundle: b.dir.clone(),
                netns,
            },
        ) {
            let _ = self.catalog.delete_container(id);
            self.network_down(&rec);
            return Err(e);
        }
        tracing::info!(container.id = id, bundle = %b.dir.display(), "container started");
        self.watch(id);
        Ok(self.describe(&rec))
    }

    /// Sets up the container's network namespace with its address, if it has one. With
    /// `check_free`, refuses an address another host or container already answers for.
    pub fn network_up(&self, rec: &ContainerRecord, check_free: bool) -> Result<Option<PathBuf>> {
        if rec.ip.is_empty() {
            return Ok(None);
        }
        let bridge = self.bridge().ok_or_else(|| {
            AgentError::InvalidArgument("this agent has no [network] bridge configured, so containers cannot get an address".into())
        })?;
        crate::network::parse_ip(&rec.ip)
            .map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        if check_free && crate::network::ip_in_use(bridge, &rec.ip) {
            return Err(AgentError::FailedPrecondition(format!(
                "address {} is already in use",
                rec.ip
            )));
        }
        self.network_setup(rec, Some(bridge))
    }

    /// Like [`Agent::network_up`], but the namespace is not connected to anything: the
    /// container keeps its address and reaches no one (restore tests).
    pub fn network_isolated(&self, rec: &ContainerRecord) -> Result<Option<PathBuf>> {
        if rec.ip.is_empty() {
            return Ok(None);
        }
        self.network_setup(rec, None)
    }

    fn network_setup(
        &self,
        rec: &ContainerRecord,
        bridge: Option<&str>,
    ) -> Result<Option<PathBuf>> {
        let net = crate::network::NetSpec {
            ip: rec.ip.clone(),
            mac: rec.mac.clone(),
        };
        crate::network::setup(&self.config.node, &rec.id, bridge, &net)
            .map(Some)
            .map_err(|e| {
                AgentError::Internal(format!(
                    "cannot set up the network of {}: {}",
                    rec.id,
                    shim::chain(&e)
                ))
            })
    }

    /// Removes the container's network namespace, if it has one.
    pub fn network_down(&self, rec: &ContainerRecord) {
        if !rec.ip.is_empty() {
            if let Err(e) = crate::network::teardown(&self.config.node, &rec.id) {
                tracing::warn!(container.id = %rec.id, error = %shim::chain(&e), "cannot remove network namespace");
            }
        }
    }

    /// The bridge containers join, if configured.
    pub fn bridge(&self) -> Option<&str> {
        self.config.network.as_ref().map(|n| n.bridge.as_str())
    }

    pub(crate) fn spawn_shim(&self, id: &str, action: ShimAction) -> Result<shim::ShimStarted> {
        let _ = fs::remove_file(self.exit_path(id));
        let spec = ShimSpec {
            id: id.to_string(),
            state_root: self.runtime.root().to_path_buf(),
            cgroup_parent: self.config.cgroup_parent.clone(),
            log: self.log_path(id),
            exit_file: self.exit_path(id),
            log_max_bytes: self.config.log_max_bytes,
            log_keep: self.config.log_keep,
            action,
        };
        let shim_log = self.config.logs_dir().join(format!("{id}.shim.log"));
        let started = shim::spawn(&self.exe, &spec, &shim_log, SHIM_TIMEOUT)
            .map_err(|e| AgentError::Internal(format!("failed to start shim for {id}: {e}")))?;
        match &started.error {
            Some(err) if err.contains("invalid") => Err(AgentError::InvalidArgument(err.clone())),
            Some(err) => Err(AgentError::Internal(err.clone())),
            None => Ok(started),
        }
    }

    /// Starts supervising `id` (once): records its exit and applies the restart policy.
    pub fn watch(self: &Arc<Self>, id: &str) {
        if !self
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
        {
            return;
        }
        let agent = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let a = agent.clone();
                let i = id.clone();
                let keep = tokio::task::spawn_blocking(move || a.check_exit(&i))
                    .await
                    .unwrap_or(false);
                if !keep {
                    break;
                }
            }
            agent
                .watched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }

    /// One supervision step; returns whether to keep watching.
    fn check_exit(self: &Arc<Self>, id: &str) -> bool {
        let Ok(Some(mut rec)) = self.catalog.container(id) else {
            return false;
        };
        if self.is_busy(id) {
            return true;
        }
        let alive = self.live(id).is_some_and(|c| c.init_alive());
        if alive {
            return true;
        }
        let exit = ExitRecord::read(&self.exit_path(id));
        if exit.is_none() && self.live(id).is_some() {
            // The shim writes the exit file right after init exits; give it a moment.
            std::thread::sleep(Duration::from_millis(200));
        }
        let exit = exit.or_else(|| ExitRecord::read(&self.exit_path(id)));
        rec.exit_code = exit.as_ref().map(|e| e.exit_code);
        tracing::info!(
            container.id = id,
            exit_code = rec.exit_code,
            "container exited"
        );
        let restart = rec.desired == desired::RUNNING && rec.restart.restarts_after(rec.exit_code);
        if !restart {
            if rec.desired == desired::RUNNING {
                rec.desired = desired::STOPPED.into();
            }
            let _ = self.catalog.update_container(&rec);
            return false;
        }
        rec.restarts += 1;
        let _ = self.catalog.update_container(&rec);
        // Back off a little more after each restart, up to 5 s.
        std::thread::sleep(Duration::from_millis(
            (100u64 << rec.restarts.min(6)).min(5000),
        ));
        if let Some(c) = self.live(id) {
            let _ = c.delete(true);
        }
        let netns = (!rec.ip.is_empty()).then(|| crate::network::netns_path(&self.config.node, id));
        match self.spawn_shim(
            id,
            ShimAction::Create {
                bundle: PathBuf::from(&rec.bundle),
                netns,
            },
        ) {
            Ok(_) => {
                tracing::info!(
                    container.id = id,
                    restarts = rec.restarts,
                    "container restarted by its restart policy"
                );
                true
            }
            Err(e) => {
                tracing::warn!(container.id = id, error = %e, "restart failed");
                rec.desired = desired::STOPPED.into();
                let _ = self.catalog.update_container(&rec);
                false
            }
        }
    }

    /// Re-adopts every container of the catalog after a (re)start.
    pub fn adopt_all(self: &Arc<Self>) -> Result<()> {
        let interrupted = self.catalog.running_operations()?;
        let n = self
            .catalog
            .fail_interrupted_operations(crate::ops::now_ms())?;
        crate::backups::recover(self, &interrupted);
        crate::lazy::recover(self);
        // No transfer survives a restart.
        self.sweep_stages(Duration::ZERO);
        tokio::spawn(crate::moves::recover(self.clone(), interrupted));
        if n > 0 {
            tracing::warn!(
                count = n,
                "operations interrupted by the previous agent marked failed"
            );
        }
        for mut rec in self.catalog.containers()? {
            if rec.desired == desired::CHECKPOINTING {
                rec.desired = desired::RUNNING.into();
                self.catalog.put_container(&rec)?;
            }
            let alive = self.live(&rec.id).is_some_and(|c| c.init_alive());
            tracing::info!(container.id = %rec.id, alive, "re-adopting container");
            if alive || rec.desired == desired::RUNNING {
                self.watch(&rec.id);
            }
        }
        Ok(())
    }

    /// SIGTERM to every process, SIGKILL after `timeout`.
    pub fn stop(self: &Arc<Self>, id: &str, timeout: Duration) -> Result<pb::Container> {
        let mut rec = self.record(id)?;
        let _busy = self.claim(id)?;
        rec.desired = desired::STOPPED.into();
        self.catalog.put_container(&rec)?;
        if let Some(c) = self.live(id).filter(|c| c.status() != Status::Stopped) {
            if c.status() == Status::Paused {
                let _ = c.resume();
            }
            let _ = c.kill(Signal::SIGTERM, true);
            if !wait_until(timeout, || !c.init_alive()) {
                tracing::info!(
                    container.id = id,
                    "container ignored SIGTERM; sending SIGKILL"
                );
                c.kill(Signal::SIGKILL, true).map_err(AgentError::from)?;
                if !wait_until(Duration::from_secs(10), || !c.init_alive()) {
                    return Err(AgentError::Internal(format!(
                        "container {id} did not die after SIGKILL"
                    )));
                }
            }
        }
        self.settle_exit(&mut rec);
        Ok(self.describe(&rec))
    }

    /// Waits briefly for the shim's exit record and stores the exit code.
    fn settle_exit(&self, rec: &mut ContainerRecord) {
        wait_until(Duration::from_secs(2), || self.exit_path(&rec.id).exists());
        if let Some(exit) = ExitRecord::read(&self.exit_path(&rec.id)) {
            rec.exit_code = Some(exit.exit_code);
        }
        let _ = self.catalog.update_container(rec);
    }

    /// Sends a signal.
    pub fn kill(self: &Arc<Self>, id: &str, signal: &str, all: bool) -> Result<pb::Container> {
        let mut rec = self.record(id)?;
        let sig = parse_signal(signal)?;
        let c = self.live(id).ok_or_else(|| {
            AgentError::FailedPrecondition(format!("container {id} is not running"))
        })?;
        if matches!(
            sig,
            Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT
        ) {
            rec.desired = desired::STOPPED.into();
            self.catalog.put_container(&rec)?;
        }
        c.kill(sig, all).map_err(AgentError::from)?;
        if sig == Signal::SIGKILL {
            wait_until(Duration::from_secs(5), || !c.init_alive());
            self.settle_exit(&mut rec);
        }
        Ok(self.describe(&rec))
    }

    /// Removes a container (running only with `force`).
    pub fn remove(self: &Arc<Self>, id: &str, force: bool) -> Result<()> {
        let rec = self.record(id)?;
        let _busy = self.claim(id)?;
        if let Some(c) = self.live(id) {
            let status = c.status();
            if status != Status::Stopped && !force {
                return Err(AgentError::FailedPrecondition(format!(
                    "container {id} is {status}: stop it first or use --force"
                )));
            }
            let mut r = rec.clone();
            r.desired = desired::STOPPED.into();
            self.catalog.put_container(&r)?;
            c.delete(true).map_err(AgentError::from)?;
        }
        self.network_down(&rec);
        self.catalog.delete_container(id)?;
        // Its backups stay (they may be all that is left of it); its schedule has nothing to
        // back up any more.
        self.catalog.delete_schedule(id)?;
        for p in [
            self.log_path(id),
            self.exit_path(id),
            self.config.logs_dir().join(format!("{id}.shim.log")),
        ] {
            let _ = fs::remove_file(p);
        }
        for i in 1..=self.config.log_keep {
            let _ = fs::remove_file(format!("{}.{i}", self.log_path(id).display()));
        }
        tracing::info!(container.id = id, "container removed");
        Ok(())
    }

    /// Freezes or thaws.
    pub fn pause(self: &Arc<Self>, id: &str, pause: bool) -> Result<pb::Container> {
        let rec = self.record(id)?;
        let _busy = self.claim(id)?;
        let c = self.live(id).ok_or_else(|| {
            AgentError::FailedPrecondition(format!("container {id} is not running"))
        })?;
        if pause {
            c.pause().map_err(AgentError::from)?;
        } else {
            // A move that could not be confirmed leaves the copy frozen with its link down
            // (the network lock): resuming it brings both back.
            if !rec.ip.is_empty() {
                crate::network::set_link(&self.config.node, id, true)
                    .map_err(|e| AgentError::FailedPrecondition(shim::chain(&e)))?;
            }
            c.resume().map_err(AgentError::from)?;
        }
        Ok(self.describe(&rec))
    }

    /// Runs a command in the container and collects its output.
    pub fn exec(
        self: &Arc<Self>,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
    ) -> Result<pb::ExecResponse> {
        self.record(id)?;
        if args.is_empty() {
            return Err(AgentError::InvalidArgument("exec needs a command".into()));
        }
        let c = self.live(id).ok_or_else(|| {
            AgentError::FailedPrecondition(format!("container {id} is not running"))
        })?;
        let mut opts = runtime::ExecOpts::new(args);
        opts.env = env;
        let (p, mut io) = c.exec(opts).map_err(AgentError::from)?;
        drop(io.stdin.take());
        let read = |fd: Option<std::os::fd::OwnedFd>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(fd) = fd {
                    let _ = std::io::Read::read_to_end(&mut fs::File::from(fd), &mut buf);
                }
                buf
            })
        };
        let (out, err) = (read(io.stdout.take()), read(io.stderr.take()));
        let exit_code = p.wait().map_err(AgentError::from)?;
        Ok(pb::ExecResponse {
            exit_code,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Checkpoints a container into the store.
    pub fn checkpoint(
        self: &Arc<Self>,
        op: &OpHandle,
        id: &str,
        leave_running: bool,
        tcp_established: bool,
    ) -> std::result::Result<OperationResult, String> {
        let mut rec = self.record(id).map_err(|e| e.to_string())?;
        let _busy = self.claim(id).map_err(|e| e.to_string())?;
        let c = self
            .live(id)
            .filter(|c| c.status() == Status::Running)
            .ok_or_else(|| format!("container {id} is not running"))?;
        op.event("preflight", "checking CRIU");
        runtime::criu::Criu::locate().map_err(|e| shim::chain(&e))?;
        let ckpt_id = format!("{id}-{}", &op.id()[..8]);
        let dir = self.config.checkpoints_dir().join(&ckpt_id);
        let previous = rec.desired.clone();
        rec.desired = desired::CHECKPOINTING.into();
        self.catalog
            .put_container(&rec)
            .map_err(|e| e.to_string())?;
        op.event("dump", "freezing and dumping with CRIU");
        let opts = CheckpointOpts {
            leave_running,
            tcp_established,
            ..Default::default()
        };
        let result = c.checkpoint_with(&dir, opts, |_| {
            op.event("dump", "images complete; container frozen");
            Ok(())
        });
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                rec.desired = previous;
                let _ = self.catalog.put_container(&rec);
                let _ = fs::remove_dir_all(&dir);
                return Err(shim::chain(&e));
            }
        };
        let size = dir_size(&dir);
        self.metrics.checkpoint_bytes.inc_by(size);
        let record = CheckpointRecord {
            id: ckpt_id.clone(),
            container_id: id.to_string(),
            dir: dir.display().to_string(),
            created_unix: now_unix(),
            size_bytes: size,
            frozen_ms: done.frozen.as_millis() as u64,
            leave_running,
        };
        self.catalog
            .put_checkpoint(&record)
            .map_err(|e| e.to_string())?;
        rec.desired = if leave_running {
            previous
        } else {
            desired::STOPPED.into()
        };
        if !leave_running {
            wait_until(Duration::from_secs(2), || self.exit_path(id).exists());
            rec.exit_code = ExitRecord::read(&self.exit_path(id)).map(|e| e.exit_code);
        }
        self.catalog
            .put_container(&rec)
            .map_err(|e| e.to_string())?;
        op.event(
            "commit",
            format!(
                "checkpoint {ckpt_id}: {size} bytes, frozen {} ms",
                record.frozen_ms
            ),
        );
        Ok(OperationResult {
            checkpoint: Some(checkpoint_to_proto(&record)),
            ..Default::default()
        })
    }

    /// Restores a checkpoint from the store as container `id`.
    pub fn restore(
        self: &Arc<Self>,
        op: &OpHandle,
        checkpoint_id: &str,
        id: &str,
    ) -> std::result::Result<OperationResult, String> {
        runtime::id::validate_id(id).map_err(|e| e.to_string())?;
        let _busy = self.claim(id).map_err(|e| e.to_string())?;
        let all = self.catalog.checkpoints(None).map_err(|e| e.to_string())?;
        let ckpt = if checkpoint_id.is_empty() {
            all.into_iter()
                .find(|c| c.container_id == id)
                .ok_or_else(|| format!("container {id} has no checkpoint"))?
        } else {
            all.into_iter()
                .find(|c| c.id == checkpoint_id)
                .ok_or_else(|| format!("checkpoint {checkpoint_id} does not exist"))?
        };
        let meta = runtime::container::CheckpointMeta::load(Path::new(&ckpt.dir))
            .map_err(|e| shim::chain(&e))?;
        let old = self.catalog.container(id).map_err(|e| e.to_string())?;
        if let Some(c) = self.live(id) {
            if c.status() != Status::Stopped {
                return Err(format!(
                    "container {id} is {}: remove it or restore under another name",
                    c.status()
                ));
            }
            c.delete(false).map_err(|e| shim::chain(&e))?;
        }
        op.event(
            "restore",
            format!("restoring checkpoint {} with CRIU", ckpt.id),
        );
        let started = self
            .spawn_shim(
                id,
                ShimAction::Restore {
                    checkpoint: PathBuf::from(&ckpt.dir),
                    netns: None,
                    bundle: None,
                    tcp_close: false,
                    lazy_pages: false,
                },
            )
            .map_err(|e| e.to_string())?;
        let rec = ContainerRecord {
            id: id.to_string(),
            bundle: meta.state.bundle.display().to_string(),
            restart: old.as_ref().map(|o| o.restart).unwrap_or(Restart::No),
            desired: desired::RUNNING.into(),
            exit_code: None,
            restarts: old.as_ref().map(|o| o.restarts).unwrap_or(0),
            created_unix: old
                .as_ref()
                .map(|o| o.created_unix)
                .unwrap_or_else(now_unix),
            ip: old.as_ref().map(|o| o.ip.clone()).unwrap_or_default(),
            mac: old.as_ref().map(|o| o.mac.clone()).unwrap_or_default(),
        };
        self.catalog
            .put_container(&rec)
            .map_err(|e| e.to_string())?;
        self.watch(id);
        op.event(
            "commit",
            format!(
                "running as pid {} (criu restore {} ms)",
                started.pid.unwrap_or(0),
                started.restore_ms.unwrap_or(0)
            ),
        );
        Ok(OperationResult {
            container: Some(self.describe(&rec)),
            ..Default::default()
        })
    }

    /// Deletes chunks that no manifest references and that are older than `min_age`, sparing
    /// the chunks of incoming transfers. Waits for backups and moves that are writing chunks.
    /// Blocking.
    pub fn collect_garbage(&self, min_age: Duration) -> std::result::Result<(usize, u64), String> {
        let _exclusive = self.store_lock.blocking_write();
        let keep: HashSet<String> = self
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect();
        let since = std::time::SystemTime::now() - min_age;
        let (n, bytes) = self.store.gc(since, &keep).map_err(|e| shim::chain(&e))?;
        if n > 0 {
            tracing::info!(chunks = n, bytes, "store: removed unreferenced chunks");
        }
        Ok((n, bytes))
    }

    /// Removes transfers' staging directories (on the scratch tmpfs) older than `min_age`:
    /// what transfers that never finished left behind.
    pub fn sweep_stages(&self, min_age: Duration) {
        let Ok(entries) = fs::read_dir(self.config.scratch_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() >= min_age)
                .unwrap_or(true);
            if e.file_name().to_string_lossy().starts_with("stage-") && stale {
                tracing::info!(dir = %e.path().display(), "removing the staged chunks of an unfinished transfer");
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// The `criu check` report (computed once).
    pub fn criu_report(&self) -> &std::result::Result<runtime::criu::CheckReport, String> {
        self.criu.get_or_init(|| {
            runtime::criu::Criu::locate()
                .and_then(|c| c.check())
                .map_err(|e| shim::chain(&e))
        })
    }

    /// Path of a container's log file.
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.log_path(id)
    }
}

/// The proto form of a checkpoint record.
pub fn checkpoint_to_proto(r: &CheckpointRecord) -> pb::Checkpoint {
    pb::Checkpoint {
        checkpoint_id: r.id.clone(),
        container_id: r.container_id.clone(),
        created_unix: r.created_unix,
        size_bytes: r.size_bytes,
        frozen_ms: r.frozen_ms,
        leave_running: r.leave_running,
    }
}

/// Proto restart policy.
pub fn restart_to_proto(r: Restart) -> pb::RestartPolicy {
    match r {
        Restart::No => pb::RestartPolicy::No,
        Restart::OnFailure => pb::RestartPolicy::OnFailure,
        Restart::Always => pb::RestartPolicy::Always,
    }
}

/// Catalog restart policy from proto.
pub fn restart_from_proto(r: i32) -> Restart {
    match pb::RestartPolicy::try_from(r).unwrap_or(pb::RestartPolicy::No) {
        pb::RestartPolicy::No => Restart::No,
        pb::RestartPolicy::OnFailure => Restart::OnFailure,
        pb::RestartPolicy::Always => Restart::Always,
    }
}

/// `KILL`, `SIGKILL`, `9` → SIGKILL.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if s.trim().is_empty() {
        return Ok(Signal::SIGKILL);
    }
    runtime::container::parse_signal(s)
        .ok_or_else(|| AgentError::InvalidArgument(format!("unknown signal {}", s.trim())))
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sighup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn restart_policies() {
        assert!(!Restart::No.restarts_after(Some(1)));
        assert!(Restart::OnFailure.restarts_after(Some(1)));
        assert!(Restart::OnFailure.restarts_after(None));
        assert!(!Restart::OnFailure.restarts_after(Some(0)));
        assert!(Restart::Always.restarts_after(Some(0)));
    }
}
