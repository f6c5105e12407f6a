//! Resource usage of a cgroup: memory, cpu time and pids, from v1 or v2 files.

use super::{fsutil, Cgroup, CgroupError, Layout};

/// A snapshot of a cgroup's usage and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory charged now, in bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_usage: u64,
    /// Highest memory charge seen, in bytes (v1 `memory.max_usage_in_bytes`; v2
    /// `memory.peak`, which kernels before 5.19 lack).
    pub memory_max_usage: Option<u64>,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// CPU time used, in nanoseconds (v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec).
    pub cpu_usage_ns: u64,
    /// Tasks (threads included) in the cgroup (`pids.current`).
    pub pids_current: u64,
    /// Task limit; `None` when unlimited (`pids.max` = max).
    pub pids_limit: Option<u64>,
}

impl Cgroup {
    /// Reads memory, cpu and pids usage and limits.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        match self.layout {
            Layout::V1 { .. } => self.stats_v1(),
            Layout::V2 { .. } => self.stats_v2(),
        }
    }

    fn stats_v1(&self) -> Result<CgroupStats, CgroupError> {
        let memory = self.controller_dir("memory")?;
        let cpuacct = self.controller_dir("cpuacct")?;
        let pids = self.controller_dir("pids")?;
        Ok(CgroupStats {
            memory_usage: fsutil::read_u64(&memory.join("memory.usage_in_bytes"))?,
            memory_max_usage: Some(fsutil::read_u64(&memory.join("memory.max_usage_in_bytes"))?),
            memory_limit: fsutil::read_limit(&memory.join("memory.limit_in_bytes"))?,
            cpu_usage_ns: fsutil::read_u64(&cpuacct.join("cpuacct.usage"))?,
            pids_current: fsutil::read_u64(&pids.join("pids.current"))?,
            pids_limit: fsutil::read_limit(&pids.join("pids.max"))?,
        })
    }

    fn stats_v2(&self) -> Result<CgroupStats, CgroupError> {
        let dir = self.controller_dir("memory")?;
        let peak = dir.join("memory.peak");
        let memory_max_usage = match fsutil::read_if_present(&peak)? {
            Some(_) => Some(fsutil::read_u64(&peak)?),
            None => None,
        };
        let cpu_stat = dir.join("cpu.stat");
        let usage_usec = fsutil::keyed_u64(&cpu_stat, &fsutil::read(&cpu_stat)?, "usage_usec")?;
        Ok(CgroupStats {
            memory_usage: fsutil::read_u64(&dir.join("memory.current"))?,
            memory_max_usage,
            memory_limit: fsutil::read_limit(&dir.join("memory.max"))?,
            cpu_usage_ns: usage_usec.saturating_mul(1000),
            pids_current: fsutil::read_u64(&dir.join("pids.current"))?,
            pids_limit: fsutil::read_limit(&dir.join("pids.max"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use std::fs;
    use std::path::Path;

    fn put(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn v1_stats_come_from_memory_cpuacct_and_pids() {
        let fake = fake::v1(true);
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let root = fake.root();
        put(
            &root.join("memory/web"),
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.max_usage_in_bytes", "8192\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        put(&root.join("cpuacct/web"), &[("cpuacct.usage", "123456\n")]);
        put(
            &root.join("pids/web"),
            &[("pids.current", "2\n"), ("pids.max", "32\n")],
        );
        assert_eq!(
            cg.stats().unwrap(),
            CgroupStats {
                memory_usage: 4096,
                memory_max_usage: Some(8192),
                memory_limit: None,
                cpu_usage_ns: 123_456,
                pids_current: 2,
                pids_limit: Some(32),
            }
        );
    }

    #[test]
    fn v2_stats_convert_usec_and_read_max() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        put(
            &fake.root().join("web"),
            &[
                ("memory.current", "4096\n"),
                ("memory.max", "67108864\n"),
                (
                    "cpu.stat",
                    "usage_usec 250\nuser_usec 200\nsystem_usec 50\n",
                ),
                ("pids.current", "1\n"),
                ("pids.max", "max\n"),
            ],
        );
        let stats = cg.stats().unwrap();
        assert_eq!(stats.memory_max_usage, None, "no memory.peak in this fake");
        assert_eq!(stats.memory_limit, Some(64 << 20));
        assert_eq!(stats.cpu_usage_ns, 250_000);
        assert_eq!(stats.pids_limit, None);
        fs::write(fake.root().join("web/memory.peak"), "16384\n").unwrap();
        assert_eq!(cg.stats().unwrap().memory_max_usage, Some(16384));
    }

    #[test]
    fn missing_stats_file_names_it() {
        let fake = fake::v2();
        let cg = Cgroup::create(&fake.layout, "/web", None).unwrap();
        let err = cg.stats().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to read {}",
                fake.root().join("web/cpu.stat").display()
            )
        );
    }
}
