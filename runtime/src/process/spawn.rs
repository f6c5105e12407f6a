//! The runtime's side of the helper: finding the binary, spawning it with its socket and the
//! container's stdio, and the stdio plumbing itself.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::fcntl::OFlag;

use super::channel::{self, Message};
use super::init::{CONSOLE_FD, SYNC_FD};
use crate::error::{Error, Result};
use crate::syscall::process::spawn_with_fds;

/// Name of the helper binary.
pub const HELPER_NAME: &str = "migrate-rt-init";

/// How long the runtime waits for each answer of the helper or init.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to look for the helper: `$MIGRATE_RT_INIT`, next to the running binary, one directory
/// up (cargo puts test binaries in `target/*/deps/`), then `/usr/local/libexec/migrate`.
pub fn locate_helper() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("MIGRATE_RT_INIT") {
        candidates.push(PathBuf::from(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(HELPER_NAME));
            if let Some(up) = dir.parent() {
                candidates.push(up.join(HELPER_NAME));
            }
        }
    }
    candidates.push(PathBuf::from("/usr/local/libexec/migrate").join(HELPER_NAME));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::HelperMissing {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The container's standard streams, as given to its process.
#[derive(Debug)]
pub enum Stdio {
    /// The runtime makes three pipes and hands back the ends the caller keeps.
    Pipes,
    /// The caller's own fds. They should not be files of the host's mount namespace if the
    /// container is to be checkpointed (CRIU cannot dump those); pipes and sockets are fine.
    Fds {
        /// Becomes fd 0.
        stdin: OwnedFd,
        /// Becomes fd 1.
        stdout: OwnedFd,
        /// Becomes fd 2.
        stderr: OwnedFd,
    },
    /// A pseudo-terminal, as runc makes one for `process.terminal`: it is allocated inside
    /// the container (from the container's own `/dev/pts`), its slave becomes the process's
    /// stdin, stdout, stderr and controlling terminal, and its master is sent over
    /// `console_socket` (a connected unix socket) with `SCM_RIGHTS`, the message being
    /// [`CONSOLE_NAME`](crate::syscall::tty::CONSOLE_NAME) as with runc. Receive it with
    /// [`recv_fd`](crate::syscall::tty::recv_fd). For `create` and `exec`.
    Terminal {
        /// Where the master goes.
        console_socket: OwnedFd,
    },
}

/// The ends of the container's stdio pipes that stay with the caller (when [`Stdio::Pipes`]).
#[derive(Debug, Default)]
pub struct ContainerStdio {
    /// Write end of the process's stdin; drop it to send EOF.
    pub stdin: Option<OwnedFd>,
    /// Read end of the process's stdout.
    pub stdout: Option<OwnedFd>,
    /// Read end of the process's stderr.
    pub stderr: Option<OwnedFd>,
}

/// What the helper is started with: its stdio, and the console socket of a terminal.
pub struct HelperStdio {
    /// The helper's fds 0, 1 and 2 (the process's own stdio unless it gets a terminal).
    pub fds: [OwnedFd; 3],
    /// The console socket ([`Stdio::Terminal`]), passed to the helper as [`CONSOLE_FD`].
    pub console: Option<OwnedFd>,
}

impl Stdio {
    /// Splits into the three fds for the process and the caller's ends. A terminal cannot be
    /// split so (only `create` and `exec` make one).
    pub fn into_fds(self) -> Result<([OwnedFd; 3], ContainerStdio)> {
        if matches!(self, Stdio::Terminal { .. }) {
            return Err(Error::Init {
                step: "set up stdio".into(),
                message: "a terminal is only made by create and exec".into(),
            });
        }
        let (helper, caller) = self.into_helper_stdio()?;
        Ok((helper.fds, caller))
    }

    /// Splits into what the helper is started with and the caller's ends.
    pub fn into_helper_stdio(self) -> Result<(HelperStdio, ContainerStdio)> {
        match self {
            Stdio::Terminal { console_socket } => {
                // Until the pty replaces them, the process's stdio read and write nothing.
                let null = || {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_CLOEXEC)
                        .open("/dev/null")
                        .map(OwnedFd::from)
                        .map_err(|e| Error::io("open", "/dev/null", e))
                };
                Ok((
                    HelperStdio {
                        fds: [null()?, null()?, null()?],
                        console: Some(console_socket),
                    },
                    ContainerStdio::default(),
                ))
            }
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => Ok((
                HelperStdio {
                    fds: [stdin, stdout, stderr],
                    console: None,
                },
                ContainerStdio::default(),
            )),
            Stdio::Pipes => {
                let pipe = || {
                    nix::unistd::pipe2(OFlag::O_CLOEXEC)
                        .map_err(|e| Error::sys("create stdio pipe", e))
                };
                let (in_r, in_w) = pipe()?;
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                Ok((
                    HelperStdio {
                        fds: [in_r, out_w, err_w],
                        console: None,
                    },
                    ContainerStdio {
                        stdin: Some(in_w),
                        stdout: Some(out_r),
                        stderr: Some(err_r),
                    },
                ))
            }
        }
    }
}

/// A running helper and the runtime's end of its socket.
pub struct Helper {
    /// The helper process.
    pub child: Child,
    /// The runtime's end of the socket.
    pub sock: UnixStream,
}

/// Starts `migrate-rt-init <mode>` with the given stdio, its socket on fd 3 and the console
/// socket, if any, on fd 4.
pub fn spawn_helper(helper: &Path, mode: &str, stdio: HelperStdio) -> Result<Helper> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("create socket pair for", helper, e))?;
    ours.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| Error::io("set timeout on socket for", helper, e))?;
    let HelperStdio { fds, console } = stdio;
    let [stdin, stdout, stderr] = fds;
    let mut cmd = Command::new(helper);
    cmd.arg(mode)
        .env_clear()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let mut fds = vec![(theirs.as_raw_fd(), SYNC_FD)];
    if let Some(console) = &console {
        fds.push((console.as_raw_fd(), CONSOLE_FD));
    }
    let child = spawn_with_fds(&mut cmd, &fds).map_err(|e| Error::io("start helper", helper, e))?;
    Ok(Helper { child, sock: ours })
}

/// Reads the next message; a closed socket or a `Failed` message become errors.
pub fn expect(sock: &mut UnixStream, waiting_for: &str) -> Result<Message> {
    match channel::recv::<Message>(sock) {
        Ok(Message::Failed { step, message }) => Err(Error::Init { step, message }),
        Ok(msg) => Ok(msg),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Err(Error::Timeout {
                what: waiting_for.to_string(),
                secs: HANDSHAKE_TIMEOUT.as_secs_f64(),
            })
        }
        Err(e) => Err(Error::Init {
            step: waiting_for.to_string(),
            message: format!("helper exited without answering ({e})"),
        }),
    }
}
