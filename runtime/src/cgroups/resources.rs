//! OCI resources → cgroup control-file writes, for v1 and v2.
//!
//! [`plan_v1`] and [`plan_v2`] are pure: they turn `LinuxResources` into an
//! ordered list of [`Setting`]s, so the translation is unit-tested without a
//! cgroup filesystem. [`Cgroup::apply`] writes them.
//!
//! Devices are v1 only: the v2 device controller is an eBPF program attached to
//! the cgroup (runc/crun generate and load one), which this module does not do.

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

use super::{fsutil, Cgroup, CgroupError, Layout};

/// One write into one control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Setting {
    /// The controller whose directory holds the file (v1 hierarchy, v2 controller to enable).
    pub controller: &'static str,
    /// The control file, e.g. `memory.limit_in_bytes`.
    pub file: &'static str,
    /// What to write.
    pub value: String,
    /// Written only where the kernel offers the file (swap accounting may be off).
    pub if_present: bool,
}

impl Setting {
    fn new(controller: &'static str, file: &'static str, value: impl ToString) -> Setting {
        Setting {
            controller,
            file,
            value: value.to_string(),
            if_present: false,
        }
    }

    fn if_present(mut self) -> Setting {
        self.if_present = true;
        self
    }
}

impl Cgroup {
    /// Applies memory (limit, swap where the kernel accounts it, reservation), cpu
    /// (v1 shares/quota/period; v2 `cpu.weight`/`cpu.max`), cpuset (cpus/mems),
    /// pids (`pids.max`) and, on v1 only, devices (deny all, then the list in order).
    ///
    /// Unset or zero values are left alone. On v2 the needed controllers are first
    /// enabled in the ancestors' `cgroup.subtree_control`; devices are skipped (eBPF).
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        let planned = match &self.layout {
            Layout::V1 { .. } => {
                let current = self.v1_memory_limit()?;
                plan_v1(resources, current)
            }
            Layout::V2 { .. } => plan_v2(resources),
        };
        let settings = planned.map_err(|reason| CgroupError::InvalidResources {
            path: self.path.clone(),
            reason,
        })?;
        if let Layout::V2 { root } = &self.layout {
            let mut wanted: Vec<&str> = settings.iter().map(|s| s.controller).collect();
            wanted.sort_unstable();
            wanted.dedup();
            super::create::enable_v2_controllers(root, &rel, &wanted, true)?;
        }
        for setting in &settings {
            let file = self.controller_dir(setting.controller)?.join(setting.file);
            if setting.if_present && !file.exists() {
                continue;
            }
            fsutil::write(&file, &setting.value)?;
        }
        Ok(())
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

/// Plans the v1 writes. `current_memory_limit` decides the order of the memory
/// and memory+swap writes: the kernel rejects a memory limit above memsw and a
/// memsw below the memory limit, so the one that grows goes first (as runc does).
pub(super) fn plan_v1(
    resources: &LinuxResources,
    current_memory_limit: Option<u64>,
) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    if let Some(memory) = resources.memory() {
        out.extend(memory_v1(memory, current_memory_limit)?);
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
    Ok(out)
}

/// Plans the v2 writes (devices skipped: v2 needs an eBPF program).
pub(super) fn plan_v2(resources: &LinuxResources) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    if let Some(memory) = resources.memory() {
        out.extend(memory_v2(memory)?);
    }
    if let Some(cpu) = resources.cpu() {
        out.extend(cpu_v2(cpu));
        out.extend(cpuset(cpu));
    }
    out.extend(pids(resources));
    Ok(out)
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
    Ok(out)
}

fn memory_v2(memory: &LinuxMemory) -> Result<Vec<Setting>, String> {
    let (limit, swap) = limits(memory)?;
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
    out
}

fn cpu_v2(cpu: &LinuxCpu) -> Vec<Setting> {
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
    out
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

    fn writes(settings: &[Setting]) -> Vec<String> {
        settings
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
        assert!(raise
            .iter()
            .all(|s| s.if_present == (s.file == "memory.memsw.limit_in_bytes")));
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
            "memory+swap limit 33554432 is below the memory limit 67108864"
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
}
