//! Notifications ("action scripts") that CRIU sends in the middle of a dump or restore.
//!
//! CRIU blocks until the callback answers; an `Err` answer makes CRIU roll back where it can:
//! a refused `post-dump` resumes the dumped tree (the source keeps running), a refused
//! `post-restore` kills the restored tree. Refusals of `pre-resume`/`post-resume` are only
//! logged by CRIU, but the call still returns the callback's error.
//!
//! Observed order (CRIU 4.2): dump: `pre-dump`, `network-lock`, `query-ext-files`,
//! `post-dump` (+ `status-ready` with lazy pages); a failed dump adds `network-unlock`.
//! Restore: `pre-restore`, `setup-namespaces`, `post-setup-namespaces`, `post-restore`,
//! `network-unlock`, `pre-resume`, `post-resume`.

use std::os::fd::OwnedFd;

/// What a notify callback returns when it refuses a notification.
pub type NotifyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The callback type: it sees each notification and may take its descriptor.
pub type NotifyFn<'a> = dyn FnMut(&mut Notify) -> Result<(), NotifyError> + 'a;

/// The names CRIU gives its notifications (`criu/action-scripts.c`).
pub mod script {
    /// Before the tree is dumped.
    pub const PRE_DUMP: &str = "pre-dump";
    /// Images are complete, the tree is still frozen: the commit point of a migration.
    pub const POST_DUMP: &str = "post-dump";
    /// Before the restore starts.
    pub const PRE_RESTORE: &str = "pre-restore";
    /// The restored tree exists and is about to resume; carries its root pid.
    pub const POST_RESTORE: &str = "post-restore";
    /// The network of the dumped netns must be locked.
    pub const NETWORK_LOCK: &str = "network-lock";
    /// The network may flow again.
    pub const NETWORK_UNLOCK: &str = "network-unlock";
    /// Namespaces of the restored root exist (configure an empty netns here); carries its pid.
    pub const SETUP_NAMESPACES: &str = "setup-namespaces";
    /// After `setup-namespaces`.
    pub const POST_SETUP_NAMESPACES: &str = "post-setup-namespaces";
    /// Right before restored tasks resume.
    pub const PRE_RESUME: &str = "pre-resume";
    /// Restored tasks run.
    pub const POST_RESUME: &str = "post-resume";
    /// Carries the master side of a restored orphan pty as a descriptor.
    pub const ORPHAN_PTS_MASTER: &str = "orphan-pts-master";
    /// Lazy dump: images are written, the page server is ready.
    pub const STATUS_READY: &str = "status-ready";
    /// CRIU asks for extra external files (answered with a plain ack).
    pub const QUERY_EXT_FILES: &str = "query-ext-files";
    /// Before image streaming starts.
    pub const PRE_STREAM: &str = "pre-stream";
}

/// One notification from CRIU.
#[derive(Debug)]
pub struct Notify {
    /// Its name, one of [`script`].
    pub script: String,
    /// The root task's host pid (`setup-namespaces` and `post-restore` only).
    pub pid: Option<i32>,
    /// The descriptor CRIU sent with it (the pty master of `orphan-pts-master`).
    /// Take it to keep it; whatever is left is closed once the callback returns.
    pub fd: Option<OwnedFd>,
}

/// A callback that accepts every notification, for callers that need none.
pub fn accept_all(_: &mut Notify) -> Result<(), NotifyError> {
    Ok(())
}
