//! The lazy-pages daemon (`criu lazy-pages`) of a post-copy restore.
//!
//! A lazy restore leaves the tree's private memory behind on the source. The daemon, started
//! beside the restore on the same images, takes the restored tree's userfaultfd, fetches each
//! page the tree touches from the source's page server and, once the restore is done, pushes
//! the rest in the background. It talks to the page server over a socket the caller hands in
//! (`--ps-socket`), so no TCP port is opened: the caller relays that socket however it likes.
//! The daemon exits 0 when every page has arrived.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Criu, CriuError};
use crate::syscall::process::spawn_with_fds;

/// The daemon's log, next to the images.
pub const LAZY_PAGES_LOG: &str = "lazy-pages.log";
/// The socket the restore connects to, in the work dir (CRIU's fixed name).
const LAZY_PAGES_SOCKET: &str = "lazy-pages.socket";
/// The page-server socket's number in the daemon.
const PS_FD: i32 = 3;
/// How long the daemon may take to load the images and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `criu lazy-pages`; killed and reaped on drop unless [`LazyPages::wait`] ran.
#[derive(Debug)]
pub struct LazyPages {
    child: Option<Child>,
    dir: PathBuf,
}

impl Criu {
    /// Starts the lazy-pages daemon on the images in `dir` (also its work dir, where the
    /// restore finds it), fetching pages over `page_server`, and returns once it listens for
    /// the restore. A restore with `lazy_pages` and the same images dir can follow.
    pub fn lazy_pages(&self, dir: &Path, page_server: OwnedFd) -> Result<LazyPages, CriuError> {
        let _ = std::fs::remove_file(dir.join(LAZY_PAGES_SOCKET));
        let mut cmd = Command::new(&self.path);
        cmd.arg("lazy-pages")
            .arg("--page-server")
            .arg("--ps-socket")
            .arg(PS_FD.to_string())
            .arg("--images-dir")
            .arg(dir)
            .arg("--work-dir")
            .arg(dir)
            .arg("--log-file")
            .arg(LAZY_PAGES_LOG)
            .arg("-v4")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            spawn_with_fds(&mut cmd, &[(page_server.as_raw_fd(), PS_FD)]).map_err(|source| {
                CriuError::Spawn {
                    path: self.path.clone(),
                    source,
                }
            })?;
        // Only the daemon may hold its end: its exit must read as EOF on the other one.
        drop(page_server);
        let mut daemon = LazyPages {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !dir.join(LAZY_PAGES_SOCKET).exists() {
            if let Some(status) = daemon.try_status() {
                return Err(daemon.failure(format!("exited before it was ready ({status})")));
            }
            if Instant::now() > deadline {
                return Err(daemon.failure(format!(
                    "did not listen within {} s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(daemon)
    }
}

impl LazyPages {
    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the daemon is done: `Ok` once every page reached the restored tree.
    pub fn wait(mut self) -> Result<(), CriuError> {
        let status = match self.child.take() {
            Some(mut c) => c.wait().map_err(|source| CriuError::Spawn {
                path: PathBuf::from("criu lazy-pages"),
                source,
            })?,
            None => return Ok(()),
        };
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(format!("failed ({status})")))
        }
    }

    /// Stops the daemon now (the restored tree can then no longer get its missing pages).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// An error with what the daemon's log says.
    fn failure(&mut self, what: String) -> CriuError {
        self.kill();
        let log = self.dir.join(LAZY_PAGES_LOG);
        let errors: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Error"))
            .take(5)
            .map(str::to_string)
            .collect();
        CriuError::LazyPages {
            what,
            errors: if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join(" | "))
            },
            log,
        }
    }
}

impl Drop for LazyPages {
    fn drop(&mut self) {
        self.kill();
    }
}
