//! `delete`: remove a stopped container (or, forced, kill it first): processes, cgroup, the
//! rootfs mounts of a container without a mount namespace, state.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::Signal;

use super::create::ROOTFS_MOUNTPOINT;
use super::{hooks, Container};
use crate::error::{Error, Result};
use crate::state::Status;

/// How long `delete --force` waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Container {
    /// Removes the container. A container that is not stopped is refused unless `force`, which
    /// kills every process first.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        if status != Status::Stopped {
            if !force {
                return Err(Error::WrongState {
                    id: self.state.id.clone(),
                    status: status.to_string(),
                    op: "delete (use force)",
                });
            }
            self.kill(Signal::SIGKILL, true)?;
        }
        let cgroup = self.cgroup();
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            self.try_reap();
            let left = if cgroup.exists() {
                cgroup.procs()?
            } else {
                Vec::new()
            };
            if left.is_empty() && !self.init_alive() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("processes {left:?} of container {} to exit", self.state.id),
                    secs: KILL_WAIT.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cgroup.destroy()?;
        self.unmount_rootfs()?;
        let spec = self.spec().ok();
        let mut state = self.oci_state();
        state["status"] = "stopped".into();
        fs::remove_dir_all(&self.dir)
            .map_err(|e| Error::io("remove state directory", &self.dir, e))?;
        // Poststop hooks cannot undo a deletion: their failures do not fail it (as runc).
        if let Some(spec) = spec {
            for e in hooks::run_all(&spec, "poststop", &state, hooks::Place::Runtime) {
                eprintln!("warning: {e}");
            }
        }
        Ok(())
    }
}

impl Container {
    /// A container without a mount namespace of its own had its rootfs (and every mount under
    /// it) mounted in the runtime's namespace: detach the whole tree. Then make sure nothing is
    /// mounted under the state directory any more, so that removing it cannot reach into a
    /// bundle or a host directory bound there.
    fn unmount_rootfs(&self) -> Result<()> {
        let rootfs = self.dir.join(ROOTFS_MOUNTPOINT);
        if !self.state.namespaces.iter().any(|ns| ns.typ == "mount") {
            match umount2(&rootfs, MntFlags::MNT_DETACH) {
                // EINVAL: not a mount point (init failed before mounting it).
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(Error::sys(format!("unmount {}", rootfs.display()), e)),
            }
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        if let Some(left) = mounts_under(&mountinfo, &self.dir).first() {
            return Err(Error::io(
                "remove state directory",
                &self.dir,
                std::io::Error::other(format!("{} is still mounted", left.display())),
            ));
        }
        Ok(())
    }
}

/// Mount points of `mountinfo` (`/proc/<pid>/mountinfo` text) at or below `dir`.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_below_a_directory() {
        let info = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
90 27 0:50 / /run/m/c1/rootfs rw - overlay overlay rw
91 90 0:51 / /run/m/c1/rootfs/proc rw - proc proc rw
92 27 0:52 / /run/m/c10/rootfs rw - overlay overlay rw
93 27 0:53 / /run/m/c2/my\\040dir rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_under(info, Path::new("/run/m/c1")),
            [
                PathBuf::from("/run/m/c1/rootfs"),
                PathBuf::from("/run/m/c1/rootfs/proc")
            ]
        );
        assert_eq!(
            mounts_under(info, Path::new("/run/m/c2")),
            [PathBuf::from("/run/m/c2/my dir")]
        );
        assert!(mounts_under(info, Path::new("/run/m/c3")).is_empty());
    }
}
