//! A runtime on a temp state root and a unique cgroup parent; its `Drop` removes every
//! container, cgroup and directory the test made, even when the test failed.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtime::cgroups::Cgroup;
use runtime::{Container, ContainerStdio, CreateOpts, Runtime};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A runtime whose state root and cgroup parent are private to one test.
pub struct TestRuntime {
    /// The runtime under test.
    pub rt: Runtime,
    /// Cgroup parent of this runtime's containers.
    pub cgroup_parent: String,
    state: tempfile::TempDir,
}

impl Default for TestRuntime {
    fn default() -> Self {
        TestRuntime::new()
    }
}

impl TestRuntime {
    /// A new runtime under `/run/migrate-test-*` with cgroup parent `/migrate-test-<pid>-<n>`.
    pub fn new() -> TestRuntime {
        crate::prereq::require_runtime();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let parent = format!("/migrate-test-{}-{n}", std::process::id());
        let state = tempfile::Builder::new()
            .prefix("migrate-test-")
            .tempdir_in("/run")
            .expect("state dir");
        let rt = Runtime::new(state.path())
            .expect("open runtime")
            .with_cgroup_parent(parent.clone());
        TestRuntime {
            rt,
            cgroup_parent: parent,
            state,
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        self.state.path()
    }

    /// Creates and starts a container from `bundle`, with piped stdio.
    pub fn run(&self, id: &str, bundle: &Path) -> (Container, ContainerStdio) {
        let (c, stdio) = self
            .rt
            .create(id, bundle, CreateOpts::default())
            .unwrap_or_else(|e| panic!("create {id}: {}", chain(&e)));
        c.start()
            .unwrap_or_else(|e| panic!("start {id}: {}", chain(&e)));
        (c, stdio)
    }

    /// Creates and starts container `id`, closes its stdin and runs it to completion:
    /// (exit code, stdout, stderr).
    pub fn run_to_end(&self, id: &str, bundle: &Path, timeout: Duration) -> (i32, String, String) {
        let (c, mut stdio) = self.run(id, bundle);
        drop(stdio.stdin.take());
        let err = stdio.stderr.take().expect("stderr pipe");
        let err = std::thread::spawn(move || read_all(err, timeout));
        let out = read_all(stdio.stdout.take().expect("stdout pipe"), timeout);
        let code = c.wait().expect("wait");
        (code, out, err.join().expect("stderr reader"))
    }

    /// The cgroup parent's directories in every hierarchy.
    pub fn parent_cgroup(&self) -> Cgroup {
        Cgroup::open(self.rt.cgroup_layout(), &self.cgroup_parent)
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list() {
            for c in list {
                let id = c.id().to_string();
                if let Err(e) = c.delete(true) {
                    eprintln!("cleanup: delete {id}: {}", chain(&e));
                }
            }
        }
        if let Err(e) = self.parent_cgroup().destroy() {
            eprintln!("cleanup: remove cgroup {}: {e}", self.cgroup_parent);
        }
    }
}

pub use runtime::error::chain;

/// Reads a pipe until EOF (or until `timeout`, then panics).
pub fn read_all(fd: OwnedFd, timeout: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("pipe not closed within {timeout:?}"))
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
