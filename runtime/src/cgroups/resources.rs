//! OCI resources → cgroup control-file writes, for v1 and v2.
//!
//! [`plan_v1`] and [`plan_v2`] are pure: they turn `LinuxResources` into an
//! ordered list of [`Setting`]s, so the translation is unit-tested without a
//! cgroup filesystem. [`Cgroup::apply`] checks that the cgroup has every file the
//! plan needs, then writes them.
//!
//! Nothing the spec asks for is dropped silently. A setting whose controller or
//! control file this host lacks (blkio weights without BFQ, net_cls, net_prio or
//! hugetlb not mounted, ...) refuses the whole request before anything is written,
//! naming the setting, as runc does; so does a setting the cgroup version cannot
//! express (`network` on v2, `unified` on v1). Two settings only warn, as runc
//! ignores them: `memory.kernel` (kernel memory limits are deprecated) and, on v2,
//! `memory.disableOOMKiller`.
//!
//! Devices are v1 only: the v2 device controller is an eBPF program attached to
//! the cgroup (runc/crun generate and load one), which this module does not do.

use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
    LinuxThrottleDevice,
};

use super::{fsutil, Cgroup, CgroupError, Layout};

/// What [`Cgroup::apply`] does when the cgroup lacks a setting's control file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IfMissing {
    /// Write anyway: a core file of its controller, so the failed write is the error.
    Write,
    /// Leave it: swap accounting may be off (runc skips it too).
    Skip,
    /// Refuse the request before anything is written, naming this spec setting.
    Refuse(&'static str),
}

/// One write into one control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Setting {
    /// The controller whose directory holds the file (v1 hierarchy, v2 controller to enable).
    pub controller: String,
    /// The control file, e.g. `memory.limit_in_bytes`.
    pub file: String,
    /// What to write.
    pub value: String,
    /// What to do where the kernel does not offer the file.
    pub if_missing: IfMissing,
    /// The file and value written instead when the cgroup lacks `file` (BFQ's weight
    /// files first, then CFQ's or v2's `io.weight`).
    pub fallback: Option<(String, String)>,
}

impl Setting {
    fn new(controller: &str, file: impl Into<String>, value: impl ToString) -> Setting {
        Setting {
            controller: controller.to_string(),
            file: file.into(),
            value: value.to_string(),
            if_missing: IfMissing::Write,
            fallback: None,
        }
    }

    fn if_present(mut self) -> Setting {
        self.if_missing = IfMissing::Skip;
        self
    }

    /// Refused, as `setting`, where the host lacks the controller or the file.
    fn required(mut self, setting: &'static str) -> Setting {
        self.if_missing = IfMissing::Refuse(setting);
        self
    }

    fn or_else(mut self, file: impl Into<String>, value: impl ToString) -> Setting {
        self.fallback = Some((file.into(), value.to_string()));
        self
    }
}

/// The writes a request needs, and the settings it asks for that are only warned about.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// In order.
    pub settings: Vec<Setting>,
    /// One line each, printed as `warning: ...`.
    pub warnings: Vec<String>,
}

/// Why a request cannot be planned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PlanError {
    /// Contradictory or out-of-range values.
    Invalid(String),
    /// A setting this cgroup version cannot express.
    Unsupported {
        /// The spec setting, e.g. `linux.resources.network.classID`.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<String> for PlanError {
    fn from(reason: String) -> PlanError {
        PlanError::Invalid(reason)
    }
}

fn unsupported(setting: &'static str, reason: &str) -> PlanError {
    PlanError::Unsupported {
        setting,
        reason: reason.to_string(),
    }
}

impl Cgroup {
    /// Applies memory (limit, swap where the kernel accounts it, reservation, swappiness,
    /// OOM killer, kernel TCP), cpu (v1 shares/quota/period/burst/real-time/idle; v2
    /// `cpu.weight`/`cpu.max`/`cpu.max.burst`/`cpu.idle`), cpuset (cpus/mems), pids,
    /// block I/O (weights, throttling), hugetlb limits, net_cls/net_prio (v1), rdma,
    /// `unified` (v2) and, on v1 only, devices (deny all, then the list in order).
    ///
    /// Unset or zero values are left alone. On v2 the needed controllers are first
    /// enabled in the ancestors' `cgroup.subtree_control`; devices are skipped (eBPF).
    /// A setting the host cannot enforce refuses the request before anything is written
    /// ([`CgroupError::Unsupported`]).
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        let planned = match &self.layout {
            Layout::V1 { .. } => {
                let current = self.v1_memory_limit()?;
                plan_v1(resources, current)
            }
            Layout::V2 { .. } => plan_v2(resources),
        };
        let plan = planned.map_err(|e| match e {
            PlanError::Invalid(reason) => CgroupError::InvalidResources {
                path: self.path.clone(),
                reason,
            },
            PlanError::Unsupported { setting, reason } => CgroupError::Unsupported {
                setting: setting.to_string(),
                reason,
            },
        })?;
        if let Layout::V2 { root } = &self.layout {
            let mut wanted: Vec<&str> = plan
                .settings
                .iter()
                .map(|s| s.controller.as_str())
                .filter(|c| *c != "cgroup")
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            super::create::enable_v2_controllers(root, &rel, &wanted, true)
                .map_err(|e| name_the_setting(e, &plan.settings))?;
        }
        let writes = self.resolve(&plan.settings)?;
        for warning in &plan.warnings {
            eprintln!("warning: {warning}");
        }
        for (file, value) in &writes {
            fsutil::write(file, value)?;
        }
        Ok(())
    }

    /// The file each setting is written to, checked before anything is written.
    fn resolve(&self, settings: &[Setting]) -> Result<Vec<(PathBuf, String)>, CgroupError> {
        let mut out = Vec::with_capacity(settings.len());
        for s in settings {
            let dir = self
                .controller_dir(&s.controller)
                .map_err(|e| name_the_setting(e, std::slice::from_ref(s)))?;
            let file = dir.join(&s.file);
            if file.exists() {
                out.push((file, s.value.clone()));
                continue;
            }
            if let Some((other, value)) = &s.fallback {
                if dir.join(other).exists() {
                    out.push((dir.join(other), value.clone()));
                    continue;
                }
            }
            match s.if_missing {
                IfMissing::Write => out.push((file, s.value.clone())),
                IfMissing::Skip => {}
                IfMissing::Refuse(setting) => {
                    let reason = match &s.fallback {
                        Some((other, _)) => format!(
                            "the kernel offers neither {} nor {other} in {}",
                            s.file,
                            dir.display()
                        ),
                        None => {
                            format!("the kernel does not offer {} in {}", s.file, dir.display())
                        }
                    };
                    return Err(CgroupError::Unsupported {
                        setting: setting.to_string(),
                        reason,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The current v1 memory limit, when the memory hierarchy has the file.
    fn v1_memory_limit(&self) -> Result<Option<u64>, CgroupError> {
        let Ok(dir) = self.controller_dir("memory") else {
            return Ok(None);
        };
        let file = dir.join("memory.limit_in_bytes");
        match fsutil::read_if_present(&file)? {
            Some(text) => Ok(text.trim().parse().ok()),
            None => Ok(None),
        }
    }
}

/// A missing controller becomes a refusal naming the first setting that needed it.
fn name_the_setting(err: CgroupError, settings: &[Setting]) -> CgroupError {
    let CgroupError::ControllerMissing { controller, .. } = &err else {
        return err;
    };
    let needing = settings.iter().find_map(|s| match s.if_missing {
        IfMissing::Refuse(setting) if &s.controller == controller => Some(setting),
        _ => None,
    });
    match needing {
        Some(setting) => CgroupError::Unsupported {
            setting: setting.to_string(),
            reason: err.to_string(),
        },
        None => err,
    }
}

/// Plans the v1 writes. `current_memory_limit` decides the order of the memory
/// and memory+swap writes: the kernel rejects a memory limit above memsw and a
/// memsw below the memory limit, so the one that grows goes first (as runc does).
pub(super) fn plan_v1(
    resources: &LinuxResources,
    current_memory_limit: Option<u64>,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    let out = &mut plan.settings;
    if let Some(memory) = resources.memory() {
        out.extend(memory_v1(memory, current_memory_limit)?);
        plan.warnings.extend(kernel_memory_warning(memory));
    }
    if let Some(cpu) = resources.cpu() {
        out.extend(cpu_v1(cpu));
        out.extend(cpuset(cpu));
    }
    out.extend(pids(resources));
    if let Some(devices) = resources.devices() {
        out.push(Setting::new("devices", "devices.deny", "a"));
        out.extend(devices.iter().map(device_rule));
    }
    if let Some(blkio) = resources.block_io() {
        out.extend(blkio_v1(blkio));
    }
    out.extend(hugetlb(resources, "limit_in_bytes")?);
    if let Some(network) = resources.network() {
        if let Some(class) = network.class_id().filter(|c| *c != 0) {
            out.push(
                Setting::new("net_cls", "net_cls.classid", class)
                    .required("linux.resources.network.classID"),
            );
        }
        for p in network.priorities().iter().flatten() {
            out.push(
                Setting::new(
                    "net_prio",
                    "net_prio.ifpriomap",
                    format!("{} {}", p.name(), p.priority()),
                )
                .required("linux.resources.network.priorities"),
            );
        }
    }
    out.extend(rdma(resources));
    if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(unsupported(
            "linux.resources.unified",
            "it needs cgroup v2 and this host uses cgroup v1",
        ));
    }
    Ok(plan)
}

/// Plans the v2 writes (devices skipped: v2 needs an eBPF program).
pub(super) fn plan_v2(resources: &LinuxResources) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    let out = &mut plan.settings;
    if let Some(memory) = resources.memory() {
        out.extend(memory_v2(memory)?);
        plan.warnings.extend(kernel_memory_warning(memory));
        if memory.disable_oom_killer() == Some(true) {
            plan.warnings.push(
                "linux.resources.memory.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer"
                    .to_string(),
            );
        }
    }
    if let Some(cpu) = resources.cpu() {
        out.extend(cpu_v2(cpu)?);
        out.extend(cpuset(cpu));
    }
    out.extend(pids(resources));
    if let Some(blkio) = resources.block_io() {
        out.extend(io_v2(blkio)?);
    }
    out.extend(hugetlb(resources, "max")?);
    if let Some(network) = resources.network() {
        if network.class_id().is_some_and(|c| c != 0) {
            return Err(unsupported(
                "linux.resources.network.classID",
                "cgroup v2 has no net_cls controller",
            ));
        }
        if network.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(unsupported(
                "linux.resources.network.priorities",
                "cgroup v2 has no net_prio controller",
            ));
        }
    }
    out.extend(rdma(resources));
    out.extend(unified(resources)?);
    Ok(plan)
}

/// `memory.kernel` is ignored with a warning, as runc ignores it: the kernel deprecated
/// kernel memory limits in 5.4 and cgroup v2 never had one.
fn kernel_memory_warning(memory: &LinuxMemory) -> Option<String> {
    memory.kernel().filter(|k| *k != 0).map(|_| {
        "linux.resources.memory.kernel is ignored: kernel memory limits are deprecated by the kernel (5.4) and not set"
            .to_string()
    })
}

/// Memory limit and memory+swap with runc's rules: 0 is unset, -1 unlimited,
/// an unlimited memory with unset swap makes swap unlimited too.
fn limits(memory: &LinuxMemory) -> Result<(i64, i64), String> {
    let limit = memory.limit().unwrap_or(0);
    let mut swap = memory.swap().unwrap_or(0);
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    if limit > 0 && swap > 0 && swap < limit {
        return Err(format!(
            "memory+swap limit {swap} is below the memory limit {limit}"
        ));
    }
    if swap > 0 && limit <= 0 {
        return Err("a swap limit needs a memory limit".to_string());
    }
    Ok((limit, swap))
}

fn memory_v1(memory: &LinuxMemory, current_limit: Option<u64>) -> Result<Vec<Setting>, String> {
    let (limit, swap) = limits(memory)?;
    let limit_setting = Setting::new("memory", "memory.limit_in_bytes", limit);
    let swap_setting = Setting::new("memory", "memory.memsw.limit_in_bytes", swap).if_present();
    let mut out = match (limit != 0, swap != 0) {
        (true, true) => {
            let swap_grows = swap == -1 || current_limit.is_some_and(|cur| cur < swap as u64);
            if swap_grows {
                vec![swap_setting, limit_setting]
            } else {
                vec![limit_setting, swap_setting]
            }
        }
        (true, false) => vec![limit_setting],
        (false, true) => vec![swap_setting],
        (false, false) => Vec::new(),
    };
    if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
        out.push(Setting::new(
            "memory",
            "memory.soft_limit_in_bytes",
            reservation,
        ));
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(format!("memory swappiness {swappiness} is above 100"));
        }
        out.push(Setting::new("memory", "memory.swappiness", swappiness));
    }
    if memory.disable_oom_killer() == Some(true) {
        out.push(Setting::new("memory", "memory.oom_control", 1));
    }
    if let Some(tcp) = memory.kernel_tcp().filter(|t| *t != 0) {
        out.push(
            Setting::new("memory", "memory.kmem.tcp.limit_in_bytes", tcp)
                .required("linux.resources.memory.kernelTCP"),
        );
    }
    if let Some(hierarchy) = memory.use_hierarchy() {
        out.push(Setting::new(
            "memory",
            "memory.use_hierarchy",
            u8::from(hierarchy),
        ));
    }
    Ok(out)
}

fn memory_v2(memory: &LinuxMemory) -> Result<Vec<Setting>, PlanError> {
    let (limit, swap) = limits(memory)?;
    if memory.swappiness().is_some() {
        return Err(unsupported(
            "linux.resources.memory.swappiness",
            "cgroup v2 has no memory.swappiness",
        ));
    }
    if memory.kernel_tcp().is_some_and(|t| t != 0) {
        return Err(unsupported(
            "linux.resources.memory.kernelTCP",
            "cgroup v2 has no kernel TCP memory limit",
        ));
    }
    if memory.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "linux.resources.memory.useHierarchy",
            "cgroup v2 is always hierarchical",
        ));
    }
    let mut out = Vec::new();
    if limit != 0 {
        out.push(Setting::new("memory", "memory.max", max_or(limit)));
    }
    // OCI's swap is memory+swap (the v1 memsw); v2's memory.swap.max is swap alone.
    if swap != 0 {
        let swap_only = if swap == -1 { -1 } else { swap - limit };
        out.push(Setting::new("memory", "memory.swap.max", max_or(swap_only)).if_present());
    }
    if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
        out.push(Setting::new("memory", "memory.low", max_or(reservation)));
    }
    Ok(out)
}

fn cpu_v1(cpu: &LinuxCpu) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        out.push(Setting::new("cpu", "cpu.shares", shares));
    }
    if let Some(period) = cpu.period().filter(|p| *p != 0) {
        out.push(Setting::new("cpu", "cpu.cfs_period_us", period));
    }
    if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
        out.push(Setting::new("cpu", "cpu.cfs_quota_us", quota));
    }
    if let Some(burst) = cpu.burst() {
        out.push(
            Setting::new("cpu", "cpu.cfs_burst_us", burst).required("linux.resources.cpu.burst"),
        );
    }
    // The period first, as runc: the runtime must fit in it.
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        out.push(
            Setting::new("cpu", "cpu.rt_period_us", period)
                .required("linux.resources.cpu.realtimePeriod"),
        );
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        out.push(
            Setting::new("cpu", "cpu.rt_runtime_us", runtime)
                .required("linux.resources.cpu.realtimeRuntime"),
        );
    }
    if let Some(idle) = cpu.idle() {
        out.push(Setting::new("cpu", "cpu.idle", idle).required("linux.resources.cpu.idle"));
    }
    out
}

fn cpu_v2(cpu: &LinuxCpu) -> Result<Vec<Setting>, PlanError> {
    if cpu.realtime_period().is_some_and(|p| p != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimePeriod",
            "cgroup v2 has no real-time CPU budget",
        ));
    }
    if cpu.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimeRuntime",
            "cgroup v2 has no real-time CPU budget",
        ));
    }
    let mut out = Vec::new();
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        out.push(Setting::new("cpu", "cpu.weight", shares_to_weight(shares)));
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut value = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            value = format!("{value} {period}");
        }
        out.push(Setting::new("cpu", "cpu.max", value));
    }
    if let Some(burst) = cpu.burst() {
        out.push(Setting::new("cpu", "cpu.max.burst", burst).required("linux.resources.cpu.burst"));
    }
    if let Some(idle) = cpu.idle() {
        out.push(Setting::new("cpu", "cpu.idle", idle).required("linux.resources.cpu.idle"));
    }
    Ok(out)
}

/// v1 block I/O: weights on BFQ's files where the kernel has them, else CFQ's (gone since
/// Linux 5.0); throttling per device.
fn blkio_v1(blkio: &LinuxBlockIo) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(weight) = blkio.weight().filter(|w| *w != 0) {
        out.push(
            Setting::new("blkio", "blkio.bfq.weight", weight)
                .or_else("blkio.weight", weight)
                .required("linux.resources.blockIO.weight"),
        );
    }
    if let Some(leaf) = blkio.leaf_weight().filter(|w| *w != 0) {
        out.push(
            Setting::new("blkio", "blkio.leaf_weight", leaf)
                .required("linux.resources.blockIO.leafWeight"),
        );
    }
    for dev in blkio.weight_device().iter().flatten() {
        let id = format!("{}:{}", dev.major(), dev.minor());
        if let Some(weight) = dev.weight().filter(|w| *w != 0) {
            let value = format!("{id} {weight}");
            out.push(
                Setting::new("blkio", "blkio.bfq.weight_device", &value)
                    .or_else("blkio.weight_device", &value)
                    .required("linux.resources.blockIO.weightDevice"),
            );
        }
        if let Some(leaf) = dev.leaf_weight().filter(|w| *w != 0) {
            out.push(
                Setting::new("blkio", "blkio.leaf_weight_device", format!("{id} {leaf}"))
                    .required("linux.resources.blockIO.weightDevice"),
            );
        }
    }
    for (setting, file, devices) in throttles(blkio) {
        for dev in devices {
            out.push(
                Setting::new(
                    "blkio",
                    file,
                    format!("{}:{} {}", dev.major(), dev.minor(), dev.rate()),
                )
                .required(setting),
            );
        }
    }
    out
}

/// The four throttle lists: spec setting, v1 file, devices (`io_v2` adds the `io.max` keys).
fn throttles(blkio: &LinuxBlockIo) -> [(&'static str, &'static str, &[LinuxThrottleDevice]); 4] {
    fn list(l: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        l.as_deref().unwrap_or(&[])
    }
    [
        (
            "linux.resources.blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            list(blkio.throttle_read_bps_device()),
        ),
        (
            "linux.resources.blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            list(blkio.throttle_write_bps_device()),
        ),
        (
            "linux.resources.blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            list(blkio.throttle_read_iops_device()),
        ),
        (
            "linux.resources.blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            list(blkio.throttle_write_iops_device()),
        ),
    ]
}

/// v2 block I/O as runc writes it: the weight on `io.bfq.weight` (same scale as v1), else
/// converted onto `io.weight`; per-device weights only with BFQ; throttling on `io.max`.
fn io_v2(blkio: &LinuxBlockIo) -> Result<Vec<Setting>, PlanError> {
    let no_leaf = || {
        unsupported(
            "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weights",
        )
    };
    if blkio.leaf_weight().is_some_and(|w| w != 0) {
        return Err(no_leaf());
    }
    let mut out = Vec::new();
    if let Some(weight) = blkio.weight().filter(|w| *w != 0) {
        out.push(
            Setting::new("io", "io.bfq.weight", weight)
                .or_else("io.weight", blkio_weight_to_io_weight(weight))
                .required("linux.resources.blockIO.weight"),
        );
    }
    for dev in blkio.weight_device().iter().flatten() {
        if dev.leaf_weight().is_some_and(|w| w != 0) {
            return Err(no_leaf());
        }
        if let Some(weight) = dev.weight().filter(|w| *w != 0) {
            out.push(
                Setting::new(
                    "io",
                    "io.bfq.weight",
                    format!("{}:{} {weight}", dev.major(), dev.minor()),
                )
                .required("linux.resources.blockIO.weightDevice"),
            );
        }
    }
    for ((setting, _, devices), key) in throttles(blkio)
        .into_iter()
        .zip(["rbps", "wbps", "riops", "wiops"])
    {
        for dev in devices {
            out.push(
                Setting::new(
                    "io",
                    "io.max",
                    format!("{}:{} {key}={}", dev.major(), dev.minor(), dev.rate()),
                )
                .required(setting),
            );
        }
    }
    Ok(out)
}

/// v1 blkio weight [10, 1000] onto v2 `io.weight` [1, 10000], runc's formula.
pub(super) fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// `hugetlb.<size>.<suffix>` for each limit (`limit_in_bytes` on v1, `max` on v2).
fn hugetlb(resources: &LinuxResources, suffix: &str) -> Result<Vec<Setting>, PlanError> {
    let mut out = Vec::new();
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = limit.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PlanError::Invalid(format!(
                "hugepage size {size:?} is not a size such as 2MB"
            )));
        }
        let value = if suffix == "max" {
            max_or(limit.limit())
        } else {
            limit.limit().to_string()
        };
        out.push(
            Setting::new("hugetlb", format!("hugetlb.{size}.{suffix}"), value)
                .required("linux.resources.hugepageLimits"),
        );
    }
    Ok(out)
}

/// `rdma.max` lines, one per device (sorted, for a stable order).
fn rdma(resources: &LinuxResources) -> Vec<Setting> {
    let mut devices: Vec<_> = resources.rdma().iter().flatten().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .map(|(device, limits)| {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            Setting::new("rdma", "rdma.max", line).required("linux.resources.rdma")
        })
        .collect()
}

/// `linux.resources.unified` (v2): each key is a control file, written last so that it
/// overrides the settings above (as runc). Its controller is the part before the first dot.
fn unified(resources: &LinuxResources) -> Result<Vec<Setting>, PlanError> {
    let mut entries: Vec<_> = resources.unified().iter().flatten().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (file, value) in entries {
        let controller = match file.split_once('.') {
            Some((c, rest)) if !c.is_empty() && !rest.is_empty() && !file.contains('/') => c,
            _ => {
                return Err(PlanError::Invalid(format!(
                    "unified key {file:?} is not a control file name such as memory.high"
                )))
            }
        };
        out.push(
            Setting::new(controller, file.as_str(), value).required("linux.resources.unified"),
        );
    }
    Ok(out)
}

/// v1 shares [2, 262144] onto v2 weight [1, 10000], the formula runc and crun use.
pub(super) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn cpuset(cpu: &LinuxCpu) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        out.push(Setting::new("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        out.push(Setting::new("cpuset", "cpuset.mems", mems));
    }
    out
}

fn pids(resources: &LinuxResources) -> Option<Setting> {
    let limit = resources.pids().as_ref()?.limit();
    (limit != 0).then(|| Setting::new("pids", "pids.max", max_or(limit)))
}

fn device_rule(rule: &LinuxDeviceCgroup) -> Setting {
    let file = if rule.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    // Display gives the kernel's syntax: "c 1:3 rwm", with "*" for a missing number.
    Setting::new("devices", file, rule)
}

/// `max` for a negative value (unlimited), else the number.
fn max_or(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// The device rules runc allows every container by default (after denying all):
/// `mknod` of any device, `/dev/{null,zero,full,random,urandom,tty,ptmx}` and
/// `/dev/pts/*`. Pass them in `LinuxResources::devices` (with the spec's own rules)
/// or the container cannot open `/dev/null` on a v1 host.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_string()));
        rule
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"), // null
        rule(C, Some(1), Some(5), "rwm"), // zero
        rule(C, Some(1), Some(7), "rwm"), // full
        rule(C, Some(1), Some(8), "rwm"), // random
        rule(C, Some(1), Some(9), "rwm"), // urandom
        rule(C, Some(5), Some(0), "rwm"), // tty
        rule(C, Some(5), Some(2), "rwm"), // ptmx
        rule(C, Some(136), None, "rwm"),  // pts/*
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn writes(plan: &Plan) -> Vec<String> {
        plan.settings
            .iter()
            .map(|s| format!("{}={}", s.file, s.value))
            .collect()
    }

    fn memory(limit: i64, swap: Option<i64>) -> LinuxResources {
        let mut builder = LinuxMemoryBuilder::default().limit(limit);
        if let Some(swap) = swap {
            builder = builder.swap(swap);
        }
        LinuxResourcesBuilder::default()
            .memory(builder.build().unwrap())
            .build()
            .unwrap()
    }

    fn full() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
            .devices(default_device_rules()[2..3].to_vec())
            .build()
            .unwrap()
    }

    #[test]
    fn v1_plan_covers_every_controller_in_order() {
        assert_eq!(
            writes(&plan_v1(&full(), None).unwrap()),
            [
                "memory.limit_in_bytes=67108864",
                "memory.soft_limit_in_bytes=33554432",
                "cpu.shares=1024",
                "cpu.cfs_period_us=100000",
                "cpu.cfs_quota_us=50000",
                "cpuset.cpus=0",
                "cpuset.mems=0",
                "pids.max=32",
                "devices.deny=a",
                "devices.allow=c 1:3 rwm",
            ]
        );
    }

    #[test]
    fn v2_plan_converts_shares_quota_and_skips_devices() {
        assert_eq!(
            writes(&plan_v2(&full()).unwrap()),
            [
                "memory.max=67108864",
                "memory.low=33554432",
                "cpu.weight=39",
                "cpu.max=50000 100000",
                "cpuset.cpus=0",
                "cpuset.mems=0",
                "pids.max=32",
            ]
        );
    }

    #[test]
    fn v1_swap_write_order_follows_the_current_limit() {
        // Fresh cgroup: both unlimited, so lowering the memory limit first is the valid order.
        let fresh = plan_v1(&memory(64 << 20, Some(128 << 20)), Some(u64::MAX >> 1)).unwrap();
        assert_eq!(
            writes(&fresh),
            [
                "memory.limit_in_bytes=67108864",
                "memory.memsw.limit_in_bytes=134217728"
            ]
        );
        // Raising both above the current limit: memsw has to grow first.
        let raise = plan_v1(&memory(256 << 20, Some(512 << 20)), Some(64 << 20)).unwrap();
        assert_eq!(
            writes(&raise),
            [
                "memory.memsw.limit_in_bytes=536870912",
                "memory.limit_in_bytes=268435456"
            ]
        );
        assert!(raise.settings.iter().all(
            |s| (s.if_missing == IfMissing::Skip) == (s.file == "memory.memsw.limit_in_bytes")
        ));
    }

    #[test]
    fn unlimited_memory_makes_swap_unlimited() {
        assert_eq!(
            writes(&plan_v1(&memory(-1, None), None).unwrap()),
            ["memory.memsw.limit_in_bytes=-1", "memory.limit_in_bytes=-1"]
        );
        assert_eq!(
            writes(&plan_v2(&memory(-1, None)).unwrap()),
            ["memory.max=max", "memory.swap.max=max"]
        );
    }

    #[test]
    fn v2_swap_is_swap_alone() {
        assert_eq!(
            writes(&plan_v2(&memory(64 << 20, Some(96 << 20))).unwrap()),
            ["memory.max=67108864", "memory.swap.max=33554432"]
        );
    }

    #[test]
    fn swap_below_limit_is_refused() {
        let err = plan_v2(&memory(64 << 20, Some(32 << 20))).unwrap_err();
        assert_eq!(
            err,
            PlanError::Invalid(
                "memory+swap limit 33554432 is below the memory limit 67108864".into()
            )
        );
        assert!(plan_v1(&memory(0, Some(32 << 20)), None).is_err());
    }

    #[test]
    fn shares_map_onto_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
    }

    #[test]
    fn unlimited_pids_and_quota() {
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            writes(&plan_v2(&res).unwrap()),
            ["cpu.max=max", "pids.max=max"]
        );
        assert_eq!(
            writes(&plan_v1(&res, None).unwrap()),
            ["cpu.cfs_quota_us=-1", "pids.max=max"]
        );
    }

    #[test]
    fn default_device_rules_use_the_kernel_syntax() {
        let rules: Vec<String> = default_device_rules()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(rules[0], "c *:* m");
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert!(rules.contains(&"c 136:* rwm".to_string()));
    }

    fn json(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).expect("resources parse")
    }

    /// What each setting does where the file is missing: `!` refuses, `?` skips.
    fn marked(plan: &Plan) -> Vec<String> {
        plan.settings
            .iter()
            .map(|s| {
                let mark = match s.if_missing {
                    IfMissing::Write => "",
                    IfMissing::Skip => "?",
                    IfMissing::Refuse(_) => "!",
                };
                match &s.fallback {
                    Some((f, v)) => format!("{mark}{}={}|{f}={v}", s.file, s.value),
                    None => format!("{mark}{}={}", s.file, s.value),
                }
            })
            .collect()
    }

    fn everything_else() -> LinuxResources {
        json(serde_json::json!({
            "cpu": {"burst": 1000, "idle": 1},
            "blockIO": {
                "weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 100}}
        }))
    }

    #[test]
    fn v1_plan_covers_block_io_hugetlb_network_rdma_and_cpu_extras() {
        let mut res = everything_else();
        let v1_only = json(serde_json::json!({
            "memory": {"kernelTCP": 8388608, "useHierarchy": true},
            "cpu": {"burst": 1000, "idle": 1, "realtimePeriod": 1000000, "realtimeRuntime": 950000},
            "blockIO": {"leafWeight": 200, "weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]},
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
        }));
        res.set_memory(*v1_only.memory())
            .set_cpu(v1_only.cpu().clone())
            .set_block_io(v1_only.block_io().clone())
            .set_network(v1_only.network().clone());
        assert_eq!(
            marked(&plan_v1(&res, None).unwrap()),
            [
                "!memory.kmem.tcp.limit_in_bytes=8388608",
                "memory.use_hierarchy=1",
                "!cpu.cfs_burst_us=1000",
                "!cpu.rt_period_us=1000000",
                "!cpu.rt_runtime_us=950000",
                "!cpu.idle=1",
                "!blkio.bfq.weight=500|blkio.weight=500",
                "!blkio.leaf_weight=200",
                "!blkio.bfq.weight_device=8:0 300|blkio.weight_device=8:0 300",
                "!blkio.throttle.read_bps_device=8:0 1048576",
                "!blkio.throttle.write_iops_device=8:16 100",
                "!hugetlb.2MB.limit_in_bytes=4194304",
                "!net_cls.classid=1048577",
                "!net_prio.ifpriomap=eth0 5",
                "!rdma.max=mlx4_0 hca_handle=2 hca_object=100",
                "!rdma.max=mlx5_1 hca_handle=3",
            ]
        );
    }

    #[test]
    fn v2_plan_covers_io_hugetlb_rdma_cpu_extras_and_unified() {
        let mut res = everything_else();
        res.set_unified(Some(
            [("memory.high".to_string(), "64M".to_string())].into(),
        ));
        assert_eq!(
            marked(&plan_v2(&res).unwrap()),
            [
                "!cpu.max.burst=1000",
                "!cpu.idle=1",
                "!io.bfq.weight=500|io.weight=4950",
                "!io.bfq.weight=8:0 300",
                "!io.max=8:0 rbps=1048576",
                "!io.max=8:16 wiops=100",
                "!hugetlb.2MB.max=4194304",
                "!rdma.max=mlx4_0 hca_handle=2 hca_object=100",
                "!rdma.max=mlx5_1 hca_handle=3",
                "!memory.high=64M",
            ]
        );
    }

    #[test]
    fn blkio_weights_map_onto_io_weights_like_runc() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn settings_the_cgroup_version_cannot_express_are_refused_by_name() {
        let v2_cases = [
            (
                serde_json::json!({"network": {"classID": 1}}),
                "linux.resources.network.classID",
                "cgroup v2 has no net_cls controller",
            ),
            (
                serde_json::json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
                "linux.resources.network.priorities",
                "cgroup v2 has no net_prio controller",
            ),
            (
                serde_json::json!({"memory": {"swappiness": 10}}),
                "linux.resources.memory.swappiness",
                "cgroup v2 has no memory.swappiness",
            ),
            (
                serde_json::json!({"memory": {"kernelTCP": 1048576}}),
                "linux.resources.memory.kernelTCP",
                "cgroup v2 has no kernel TCP memory limit",
            ),
            (
                serde_json::json!({"memory": {"useHierarchy": false}}),
                "linux.resources.memory.useHierarchy",
                "cgroup v2 is always hierarchical",
            ),
            (
                serde_json::json!({"cpu": {"realtimeRuntime": 1000}}),
                "linux.resources.cpu.realtimeRuntime",
                "cgroup v2 has no real-time CPU budget",
            ),
            (
                serde_json::json!({"blockIO": {"leafWeight": 10}}),
                "linux.resources.blockIO.leafWeight",
                "cgroup v2 has no leaf weights",
            ),
        ];
        for (v, setting, reason) in v2_cases {
            assert_eq!(
                plan_v2(&json(v)).unwrap_err(),
                PlanError::Unsupported {
                    setting,
                    reason: reason.into()
                }
            );
        }
        let err = plan_v1(
            &json(serde_json::json!({"unified": {"memory.high": "1M"}})),
            None,
        );
        assert_eq!(
            err.unwrap_err(),
            PlanError::Unsupported {
                setting: "linux.resources.unified",
                reason: "it needs cgroup v2 and this host uses cgroup v1".into()
            }
        );
        for bad in ["2MB/../x", ""] {
            let res = json(serde_json::json!({"hugepageLimits": [{"pageSize": bad, "limit": 1}]}));
            assert!(
                matches!(plan_v1(&res, None), Err(PlanError::Invalid(_))),
                "{bad}"
            );
        }
        let res = json(serde_json::json!({"unified": {"../etc/passwd": "x"}}));
        assert!(matches!(plan_v2(&res), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn kernel_memory_and_the_v2_oom_killer_only_warn() {
        let res =
            json(serde_json::json!({"memory": {"kernel": 1048576, "disableOOMKiller": true}}));
        let v1 = plan_v1(&res, None).unwrap();
        assert_eq!(writes(&v1), ["memory.oom_control=1"]);
        assert_eq!(
            v1.warnings,
            ["linux.resources.memory.kernel is ignored: kernel memory limits are deprecated by the kernel (5.4) and not set"]
        );
        let v2 = plan_v2(&res).unwrap();
        assert!(v2.settings.is_empty());
        assert_eq!(v2.warnings.len(), 2);
        assert_eq!(
            v2.warnings[1],
            "linux.resources.memory.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer"
        );
    }

    mod on_fake_hosts {
        use std::fs;

        use super::super::super::fake;
        use super::*;

        fn weight(w: u16) -> LinuxResources {
            json(serde_json::json!({"memory": {"limit": 67108864}, "blockIO": {"weight": w}}))
        }

        #[test]
        fn v1_blkio_weight_without_weight_files_is_refused_before_any_write() {
            let fake = fake::v1_without_cpuset();
            let err = Cgroup::create(&fake.layout, "/web", Some(&weight(500))).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot apply linux.resources.blockIO.weight: the kernel offers neither blkio.bfq.weight nor blkio.weight in {}",
                    fake.root().join("blkio/web").display()
                )
            );
            // Nothing written, and the cgroup rolled back.
            assert!(!fake.root().join("memory/web").exists());
        }

        #[test]
        fn v1_blkio_weight_goes_to_bfq_else_cfq() {
            for (present, written) in [
                (
                    &["blkio.bfq.weight", "blkio.weight"][..],
                    "blkio.bfq.weight",
                ),
                (&["blkio.weight"][..], "blkio.weight"),
            ] {
                let fake = fake::v1(true);
                let dir = fake.root().join("blkio/web");
                fs::create_dir(&dir).unwrap();
                for f in present {
                    fs::write(dir.join(f), "100").unwrap();
                }
                Cgroup::create(&fake.layout, "/web", Some(&weight(500))).unwrap();
                assert_eq!(fs::read_to_string(dir.join(written)).unwrap(), "500");
                let others: Vec<_> = present.iter().filter(|f| **f != written).collect();
                for f in others {
                    assert_eq!(fs::read_to_string(dir.join(f)).unwrap(), "100", "{f}");
                }
            }
        }

        #[test]
        fn v1_controllers_the_host_does_not_mount_are_refused_by_setting() {
            let fake = fake::v1_without_cpuset();
            let cases = [
                (
                    serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
                    "linux.resources.hugepageLimits",
                    "hugetlb",
                ),
                (
                    serde_json::json!({"network": {"classID": 1}}),
                    "linux.resources.network.classID",
                    "net_cls",
                ),
                (
                    serde_json::json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
                    "linux.resources.network.priorities",
                    "net_prio",
                ),
                (
                    serde_json::json!({"rdma": {"mlx4_0": {"hcaHandles": 1}}}),
                    "linux.resources.rdma",
                    "rdma",
                ),
            ];
            for (v, setting, controller) in cases {
                let err = Cgroup::create(&fake.layout, "/web", Some(&json(v))).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!(
                        "cannot apply {setting}: the {controller} controller is not available at {}",
                        fake.root().display()
                    )
                );
            }
        }

        #[test]
        fn v1_net_cls_and_net_prio_are_written_where_mounted() {
            let fake = fake::v1_plus(&["net_cls,net_prio"]);
            let dir = fake.root().join("net_cls,net_prio/web");
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("net_cls.classid"), "0").unwrap();
            fs::write(dir.join("net_prio.ifpriomap"), "").unwrap();
            let res = json(serde_json::json!({"network": {"classID": 1048577,
                "priorities": [{"name": "lo", "priority": 2}]}}));
            Cgroup::create(&fake.layout, "/web", Some(&res)).unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("net_cls.classid")).unwrap(),
                "1048577"
            );
            assert_eq!(
                fs::read_to_string(dir.join("net_prio.ifpriomap")).unwrap(),
                "lo 2"
            );
        }

        #[test]
        fn v2_refuses_a_controller_the_host_does_not_offer_by_setting() {
            let fake = fake::v2();
            let res =
                json(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}));
            let err = Cgroup::create(&fake.layout, "/web", Some(&res)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot apply linux.resources.hugepageLimits: the hugetlb controller is not available at {}",
                    fake.root().display()
                )
            );
            assert!(!fake.root().join("web").exists());
        }

        #[test]
        fn v2_weight_falls_back_to_io_weight_converted() {
            let fake = fake::v2();
            let dir = fake.root().join("web");
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("io.weight"), "default 100").unwrap();
            let res = json(serde_json::json!({"blockIO": {"weight": 500}}));
            Cgroup::create(&fake.layout, "/web", Some(&res)).unwrap();
            assert_eq!(fs::read_to_string(dir.join("io.weight")).unwrap(), "4950");
            // The io controller was enabled for it (the fake keeps only the last write).
            assert_eq!(
                fs::read_to_string(fake.root().join("cgroup.subtree_control")).unwrap(),
                "+io"
            );
        }
    }
}
