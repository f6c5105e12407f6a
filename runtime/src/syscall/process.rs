//! Process creation and fd plumbing that the standard library and nix offer only as `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::unistd::Pid;

/// Where a forked or cloned process continues.
pub enum ForkResult {
    /// In the parent, with the child's PID.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Spawns `cmd` with each `(fd, target)` pair installed as fd number `target` in the child.
///
/// Sources are first duplicated to high, close-on-exec fd numbers so that a source equal to
/// another pair's target cannot be clobbered before it is installed.
pub fn spawn_with_fds(cmd: &mut Command, fds: &[(RawFd, RawFd)]) -> io::Result<Child> {
    let mut staged: Vec<(OwnedFd, RawFd)> = Vec::with_capacity(fds.len());
    for &(fd, target) in fds {
        let high = nix::fcntl::fcntl(
            // SAFETY: the caller owns `fd` for the duration of this call; we only duplicate it.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100),
        )
        .map_err(io::Error::from)?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        staged.push((unsafe { OwnedFd::from_raw_fd(high) }, target));
    }
    let pairs: Vec<(RawFd, RawFd)> = staged.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    // SAFETY: the closure runs between fork and exec and calls only dup2, which is
    // async-signal-safe; it allocates nothing and takes no locks. dup2 clears
    // close-on-exec on the target, so exactly the listed fds survive the exec.
    unsafe {
        cmd.pre_exec(move || {
            for &(fd, target) in &pairs {
                if libc::dup2(fd, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(staged);
    child
}

/// Clones the calling process like `fork`, but makes the child a child of the caller's parent
/// (`CLONE_PARENT`). Used by the single-threaded helper after it unshared a PID namespace, so
/// the container's init becomes PID 1 there and the runtime's caller can wait for it.
pub fn clone_parent() -> nix::Result<ForkResult> {
    // SAFETY: the helper that calls this is single-threaded, so the child gets a consistent copy
    // of the address space, exactly as with fork(). A null stack pointer means "share the
    // stack copy-on-write", which is what fork does.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(nix::Error::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Forks the calling (single-threaded) helper process.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: only the single-threaded helper binary calls this, so the child may allocate
    // and run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(ForkResult::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(ForkResult::Child),
    }
}

/// Marks every fd from `first` upwards close-on-exec, so the next exec inherits none of them.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open fds; it does not
    // invalidate any fd this process still uses.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = nix::Error::last();
    // Without close_range (old kernels), or with a seccomp profile that predates it (it
    // answers EPERM, as the runtime-tools and older Docker profiles do): mark each open fd.
    if !matches!(err, nix::Error::ENOSYS | nix::Error::EPERM) {
        return Err(err);
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| err)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD only changes the close-on-exec flag of `fd`; an fd that was the
        // directory iterator's and is closed by now fails with EBADF, which is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Restores default handling of SIGPIPE, which the Rust runtime ignores at start-up and an
/// exec would otherwise pass on to the container's process.
pub fn reset_sigpipe() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL does not run any handler code; no other thread exists.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(|_| ())
}

/// Takes ownership of an fd number this process inherited at start.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    nix::fcntl::fcntl(
        // SAFETY: borrowed only to check that the fd is open.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(|e| io::Error::other(format!("fd {fd} was not inherited: {e}")))?;
    // SAFETY: the fd is open (checked above) and was passed to this process to own; nothing
    // else in the process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
