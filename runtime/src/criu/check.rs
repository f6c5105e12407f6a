//! What this host's CRIU and kernel can do: `criu check`, `criu check --feature <name>` for
//! the features migration modes depend on, and CRIU's `FEATURE_CHECK` RPC, gathered in a
//! [`CheckReport`] that the agent reports and that preflight checks consult.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::error::CriuError;
use super::version::CriuVersion;

/// The `criu check --feature` names the report covers.
pub const REPORTED_FEATURES: &[&str] = &[
    "mem_dirty_track",
    "uffd",
    "uffd-noncoop",
    "timens",
    "pidfd_store",
    "clone3_set_tid",
    "get_rseq_conf",
    "network_lock_nftables",
];

/// Lazy pages need `fs.pipe-max-size` at least this large when root lacks
/// `CAP_SYS_RESOURCE` (CRIU-NOTES P1); `deploy/install.sh` raises it.
pub const LAZY_PIPE_MAX_SIZE: u64 = 4 << 20;

/// Where the kernel exposes `fs.pipe-max-size`.
const PIPE_MAX_SIZE_PATH: &str = "/proc/sys/fs/pipe-max-size";

/// One `criu check --feature <name>` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureCheck {
    /// The feature, as CRIU names it.
    pub name: String,
    /// Whether CRIU reports it as available.
    pub supported: bool,
    /// What CRIU printed about it.
    pub message: String,
}

/// The answer to CRIU's `FEATURE_CHECK` RPC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RpcFeatures {
    /// Memory dirty tracking (soft-dirty): needed by pre-copy.
    pub mem_track: bool,
    /// userfaultfd with non-cooperative events: needed by lazy pages.
    pub lazy_pages: bool,
    /// `pidfd_open` + `pidfd_getfd`.
    pub pidfd_store: bool,
}

/// Everything known about CRIU on this host.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The CRIU binary checked.
    pub criu_path: PathBuf,
    /// Its version.
    pub version: CriuVersion,
    /// Whether `criu check` said "Looks good".
    pub looks_good: bool,
    /// What `criu check` printed.
    pub check_output: String,
    /// One entry per name in [`REPORTED_FEATURES`].
    pub features: Vec<FeatureCheck>,
    /// The `FEATURE_CHECK` answer.
    pub rpc: RpcFeatures,
    /// `fs.pipe-max-size`, if readable.
    pub pipe_max_size: Option<u64>,
}

impl CheckReport {
    /// Whether `criu check --feature name` succeeded; `None` if it was not checked.
    pub fn feature(&self, name: &str) -> Option<bool> {
        self.features
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.supported)
    }

    /// Fails unless plain checkpoint/restore works here (`criu check` looks good).
    pub fn ensure_usable(&self) -> Result<(), CriuError> {
        if self.looks_good {
            Ok(())
        } else {
            Err(CriuError::CheckFailed {
                output: one_line(&self.check_output),
            })
        }
    }

    /// Fails unless lazy migration (post-copy) can work here.
    pub fn ensure_lazy_pages(&self) -> Result<(), CriuError> {
        const MODE: &str = "lazy migration";
        self.ensure_usable()?;
        self.require(MODE, "uffd")?;
        self.require(MODE, "uffd-noncoop")?;
        if !self.rpc.lazy_pages {
            return Err(CriuError::MissingFeature {
                mode: MODE,
                feature: "lazy_pages".into(),
                detail: "criu's feature check reports no lazy-pages support".into(),
            });
        }
        match self.pipe_max_size {
            Some(size) if size >= LAZY_PIPE_MAX_SIZE => Ok(()),
            found => Err(CriuError::MissingFeature {
                mode: MODE,
                feature: format!("fs.pipe-max-size >= {LAZY_PIPE_MAX_SIZE}"),
                detail: match found {
                    Some(size) => format!(
                        "it is {size}; raise it with `sysctl -w fs.pipe-max-size={LAZY_PIPE_MAX_SIZE}`"
                    ),
                    None => format!("{PIPE_MAX_SIZE_PATH} is unreadable"),
                },
            }),
        }
    }

    /// Fails unless pre-copy (iterative pre-dumps) can work here.
    pub fn ensure_pre_copy(&self) -> Result<(), CriuError> {
        self.ensure_usable()?;
        if self.feature("mem_dirty_track") == Some(true) && self.rpc.mem_track {
            Ok(())
        } else {
            Err(CriuError::PreCopyUnsupported)
        }
    }

    fn require(&self, mode: &'static str, name: &str) -> Result<(), CriuError> {
        let found = self.features.iter().find(|f| f.name == name);
        match found {
            Some(f) if f.supported => Ok(()),
            _ => Err(CriuError::MissingFeature {
                mode,
                feature: name.to_string(),
                detail: found
                    .map(|f| one_line(&f.message))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "not checked".into()),
            }),
        }
    }
}

/// Runs `criu <args>` (a `check` subcommand) and returns whether it succeeded and what it
/// printed (stdout and stderr).
pub(crate) fn run_check(criu: &Path, args: &[&str]) -> Result<(bool, String), CriuError> {
    let output = Command::new(criu)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CriuError::Spawn {
            path: criu.to_path_buf(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text.trim().to_string()))
}

/// Whether `criu check` output says all is well.
pub(crate) fn looks_good(success: bool, output: &str) -> bool {
    success && output.contains("Looks good")
}

/// Reads `fs.pipe-max-size` now.
pub fn pipe_max_size() -> Option<u64> {
    std::fs::read_to_string(PIPE_MAX_SIZE_PATH)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CheckReport {
        CheckReport {
            criu_path: "/usr/local/sbin/criu".into(),
            version: CriuVersion::new(4, 2, 1),
            looks_good: true,
            check_output: "Looks good.".into(),
            features: vec![
                FeatureCheck {
                    name: "mem_dirty_track".into(),
                    supported: false,
                    message: "Dirty tracking is OFF. Memory snapshot will not work.".into(),
                },
                FeatureCheck {
                    name: "uffd".into(),
                    supported: true,
                    message: "UFFD is supported".into(),
                },
                FeatureCheck {
                    name: "uffd-noncoop".into(),
                    supported: true,
                    message: "UFFD noncoop is supported".into(),
                },
            ],
            rpc: RpcFeatures {
                mem_track: false,
                lazy_pages: true,
                pidfd_store: true,
            },
            pipe_max_size: Some(4 << 20),
        }
    }

    #[test]
    fn modes_follow_the_features() {
        let r = report();
        r.ensure_usable().unwrap();
        r.ensure_lazy_pages().unwrap();
        assert!(matches!(
            r.ensure_pre_copy(),
            Err(CriuError::PreCopyUnsupported)
        ));
        assert_eq!(r.feature("uffd"), Some(true));
        assert_eq!(r.feature("timens"), None);
    }

    #[test]
    fn missing_pieces_name_the_fix() {
        let mut r = report();
        r.pipe_max_size = Some(1 << 20);
        let e = r.ensure_lazy_pages().unwrap_err().to_string();
        assert!(e.contains("fs.pipe-max-size >= 4194304"), "{e}");
        assert!(e.ends_with("run deploy/install.sh"), "{e}");

        let mut r = report();
        r.features[2].supported = false;
        let e = r.ensure_lazy_pages().unwrap_err().to_string();
        assert!(e.starts_with("lazy migration needs uffd-noncoop"), "{e}");

        let mut r = report();
        r.looks_good = false;
        r.check_output = "Error (criu/kerndat.c:1): vdso: Unexpected rt vDSO area bounds\n".into();
        let e = r.ensure_usable().unwrap_err().to_string();
        assert!(e.contains("vDSO") && e.contains("deploy/install.sh"), "{e}");
    }

    #[test]
    fn looks_good_needs_both_status_and_text() {
        assert!(looks_good(true, "Looks good."));
        assert!(!looks_good(false, "Looks good."));
        assert!(!looks_good(true, "Unknown feature"));
    }
}
