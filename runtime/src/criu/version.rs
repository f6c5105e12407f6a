//! CRIU's version number and the oldest one this project accepts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The oldest CRIU that works here: 4.1 handles the split `[vvar]`/`[vvar_vclock]` mappings
/// of kernels ≥ 6.13 (CRIU-NOTES P2); 3.17 fails in `criu check` already.
pub const MIN_VERSION: CriuVersion = CriuVersion::new(4, 1, 0);

/// A CRIU release number, `major.minor.sublevel`; ordered numerically.
///
/// A build from a git checkout also reports a git id; it does not take part in comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CriuVersion {
    /// Major number (4 in 4.2.1).
    pub major: u32,
    /// Minor number (2 in 4.2.1).
    pub minor: u32,
    /// Sublevel (1 in 4.2.1); 0 when CRIU reports none.
    pub sublevel: u32,
}

impl CriuVersion {
    /// A version from its three numbers.
    pub const fn new(major: u32, minor: u32, sublevel: u32) -> CriuVersion {
        CriuVersion {
            major,
            minor,
            sublevel,
        }
    }
}

impl fmt::Display for CriuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.sublevel)
    }
}

/// A string that is not `major.minor[.sublevel]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid criu version {0:?}: expected major.minor[.sublevel]")]
pub struct ParseVersionError(pub String);

impl FromStr for CriuVersion {
    type Err = ParseVersionError;

    /// Parses `4.2`, `4.2.1`, and `Version: 4.2.1` style text.
    fn from_str(s: &str) -> Result<CriuVersion, ParseVersionError> {
        let bad = || ParseVersionError(s.to_string());
        let text = s.trim().trim_start_matches("Version:").trim();
        let mut parts = text.split('.');
        let mut next = |required: bool| -> Result<u32, ParseVersionError> {
            match parts.next() {
                Some(p) => p.trim().parse().map_err(|_| bad()),
                None if required => Err(bad()),
                None => Ok(0),
            }
        };
        let version = CriuVersion::new(next(true)?, next(true)?, next(false)?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_numerically() {
        let v = |s: &str| s.parse::<CriuVersion>().unwrap();
        assert!(v("3.17.1") < MIN_VERSION);
        assert!(v("4.1") >= MIN_VERSION);
        assert!(v("4.2.1") > v("4.2"));
        assert!(v("4.10.0") > v("4.9.9"));
        assert_eq!(v("Version: 4.2.1").to_string(), "4.2.1");
        assert_eq!(MIN_VERSION.to_string(), "4.1.0");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "4", "4.x", "4.2.1.5", "v4.2"] {
            assert!(s.parse::<CriuVersion>().is_err(), "{s}");
        }
    }
}
