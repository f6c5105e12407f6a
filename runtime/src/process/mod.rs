//! The single-threaded helper (`migrate-rt-init`) that does namespace and mount work, and the
//! runtime's side of talking to it.
//!
//! `create` spawns `migrate-rt-init init`, sends it an [`plan::InitPlan`] over a socket on fd 3;
//! the helper joins/unshares namespaces and clones the container's init as a child of the
//! runtime's caller (`CLONE_PARENT`), reports its PID and exits. The runtime puts that PID in the
//! container's cgroup (and, with a new user namespace, writes init's uid and gid maps) and says
//! "go"; init builds the rootfs (becoming the user namespace's root once the host paths are
//! mounted), drops privileges, reports "ready", then blocks on the state directory's
//! `exec.fifo` until `start` writes to it, and execs.
//!
//! A process that gets a terminal ([`spawn::Stdio::Terminal`]) finds the caller's console
//! socket on fd 4 of the helper. As with runc, the pty is allocated by the process itself from
//! the container's `/dev/pts/ptmx` (after `pivot_root` for init, after joining the mount
//! namespace for `exec`), so the slave belongs to the container's devpts; the master goes over
//! the socket and the slave becomes stdio and the controlling terminal.

pub mod channel;
pub mod init;
pub mod plan;
pub mod spawn;
