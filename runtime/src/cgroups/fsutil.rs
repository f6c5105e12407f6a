//! Small filesystem helpers for cgroupfs: read and write control files, create
//! and remove cgroup directories, list member processes. Every error names its path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use super::CgroupError;

/// How often `rmdir` is retried while the kernel still reports the cgroup busy
/// (a reaped task's css_set can linger for a moment after it left `cgroup.procs`).
const RMDIR_RETRIES: u32 = 6;
/// First pause between `rmdir` retries; doubled each time (10 ms .. 320 ms, ~0.6 s in all).
const RMDIR_FIRST_DELAY: Duration = Duration::from_millis(10);

/// Reads a whole control file.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a control file, or `None` if it does not exist.
pub(super) fn read_if_present(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a control file holding one unsigned number.
pub(super) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    parse_u64(path, text.trim())
}

/// Reads a limit: a number, or `max` (v2, v1 `pids.max`) for no limit.
/// v1 memory files spell "no limit" as a huge number (`PAGE_COUNTER_MAX` pages);
/// anything from 2^62 up is reported as `None` too.
pub(super) fn read_limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    let value = parse_u64(path, text)?;
    Ok((value < 1 << 62).then_some(value))
}

/// Finds `key value` in a flat-keyed file such as `cpu.stat` or `cgroup.events`.
pub(super) fn keyed_u64(path: &Path, text: &str, key: &str) -> Result<u64, CgroupError> {
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim())
    });
    match value {
        Some(value) => parse_u64(path, value),
        None => Err(CgroupError::Parse {
            path: path.to_path_buf(),
            content: format!("no {key:?} line"),
        }),
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.to_string(),
    })
}

/// Writes one value into a control file (one `write(2)`, as the kernel wants it).
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Creates `base/rel` level by level. Each directory this call creates is pushed
/// to `created` (so the caller can undo) and handed to `on_new` before the next level.
pub(super) fn mkdir_levels(
    base: &Path,
    rel: &Path,
    created: &mut Vec<PathBuf>,
    mut on_new: impl FnMut(&Path) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut dir = base.to_path_buf();
    for component in rel.components() {
        dir.push(component);
        if dir.is_dir() {
            continue;
        }
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            // Someone else created it in the meantime: theirs, not ours to undo.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => continue,
            Err(source) => return Err(CgroupError::CreateDir { path: dir, source }),
        }
        on_new(&dir)?;
    }
    Ok(())
}

/// Removes a cgroup directory and its child cgroups, deepest first. Retries while
/// the kernel answers EBUSY; a directory that is already gone is fine.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    rmdir_retrying(dir)
}

fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = RMDIR_FIRST_DELAY;
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_RETRIES => {
                thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// The pids in `dir/cgroup.procs`; a cgroup that does not exist has none.
pub(super) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let Some(text) = read_if_present(&path)? else {
        return Ok(Vec::new());
    };
    text.split_whitespace()
        .map(|pid| {
            pid.parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                content: pid.to_string(),
            })
        })
        .collect()
}

/// The pids in `dir` and every cgroup below it, sorted, without duplicates.
pub(super) fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = read_procs(dir)?;
    for child in child_dirs(dir)? {
        pids.extend(read_procs_recursive(&child)?);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_limit_understands_max_and_the_v1_unlimited_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("limit");
        fs::write(&file, "max\n").unwrap();
        assert_eq!(read_limit(&file).unwrap(), None);
        fs::write(&file, "9223372036854771712\n").unwrap();
        assert_eq!(read_limit(&file).unwrap(), None);
        fs::write(&file, "67108864\n").unwrap();
        assert_eq!(read_limit(&file).unwrap(), Some(64 << 20));
        fs::write(&file, "lots\n").unwrap();
        let err = read_limit(&file).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn keyed_u64_finds_the_key_and_names_the_file_when_missing() {
        let path = Path::new("/x/cpu.stat");
        let text = "usage_usec 1234\nuser_usec 1000\n";
        assert_eq!(keyed_u64(path, text, "usage_usec").unwrap(), 1234);
        let err = keyed_u64(path, text, "nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected content \"no \\\"nope\\\" line\" in /x/cpu.stat"
        );
    }

    #[test]
    fn mkdir_levels_reports_only_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        let mut created = Vec::new();
        let mut seen = Vec::new();
        mkdir_levels(dir.path(), Path::new("a/b/c"), &mut created, |d| {
            seen.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        let expected = vec![dir.path().join("a/b"), dir.path().join("a/b/c")];
        assert_eq!(created, expected);
        assert_eq!(seen, expected);
    }

    #[test]
    fn remove_tree_removes_children_and_accepts_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("cg");
        fs::create_dir_all(cg.join("child/grandchild")).unwrap();
        remove_tree(&cg).unwrap();
        assert!(!cg.exists());
        remove_tree(&cg).unwrap();
    }

    #[test]
    fn read_procs_recursive_merges_children() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("child")).unwrap();
        fs::write(dir.path().join("cgroup.procs"), "7\n3\n").unwrap();
        fs::write(dir.path().join("child/cgroup.procs"), "5\n3\n").unwrap();
        assert_eq!(read_procs_recursive(dir.path()).unwrap(), vec![3, 5, 7]);
        assert!(read_procs(&dir.path().join("gone")).unwrap().is_empty());
    }
}
