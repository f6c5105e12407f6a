//! Terminals as runc handles them: `process.terminal` (or `exec --tty`) with `--console-socket`
//! sends the pty master to the caller's socket; in the foreground (`run`, `exec` without
//! `--detach`) migrate-runc receives the master itself and relays it to its own stdin and
//! stdout, as runc does.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};
use runtime::syscall::tty;
use runtime::Stdio;

use crate::Result;

/// How long the relay keeps reading after the process exited (the rest of its output).
const DRAIN: Duration = Duration::from_secs(5);

/// runc's rules for `--console-socket` against `process.terminal` and `--detach`, with its
/// messages (`checkTerminal` in runc's `utils_linux.go`).
pub fn check(detach: bool, terminal: bool, console_socket: &Option<PathBuf>) -> Result<()> {
    if detach && terminal && console_socket.is_none() {
        return Err(
            "cannot allocate tty if runc will detach without setting console socket".into(),
        );
    }
    if (!detach || !terminal) && console_socket.is_some() {
        return Err("cannot use console socket if runc will not detach or allocate tty".into());
    }
    Ok(())
}

/// Where the master of a terminal goes.
pub enum Console {
    /// To the caller's `--console-socket`.
    Socket,
    /// To us: the other end of this socket pair receives it, and [`Relay`] serves it.
    Relay(UnixStream),
}

/// The container's stdio for a process that gets a terminal (after [`check`] passed): the
/// caller's console socket when detached, else a socket pair of our own.
pub fn terminal_stdio(console_socket: &Option<PathBuf>) -> Result<(Stdio, Console)> {
    match console_socket {
        Some(path) => {
            let sock = UnixStream::connect(path)
                .map_err(|e| format!("dial unix {}: connect: {e}", path.display()))?;
            Ok((
                Stdio::Terminal {
                    console_socket: sock.into(),
                },
                Console::Socket,
            ))
        }
        None => {
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| format!("create console socket pair: {e}"))?;
            Ok((
                Stdio::Terminal {
                    console_socket: theirs.into(),
                },
                Console::Relay(ours),
            ))
        }
    }
}

/// Copies our stdin to the pty master and the master to our stdout, with our terminal (when
/// stdin is one) in raw mode and its size given to the pty. Window size changes after the start
/// are not passed on.
pub struct Relay {
    output: mpsc::Receiver<()>,
    saved: Option<Termios>,
}

impl Relay {
    /// Receives the master from `sock` and starts relaying.
    pub fn start(sock: UnixStream) -> Result<Relay> {
        let (_, master) =
            tty::recv_fd(sock.as_fd()).map_err(|e| format!("receive the pty master: {e}"))?;
        drop(sock);
        let stdin = io::stdin();
        let mut saved = None;
        if tty::is_terminal(stdin.as_fd()) {
            if let Ok((rows, cols)) = tty::window_size(stdin.as_fd()) {
                let _ = tty::set_window_size(master.as_fd(), rows, cols);
            }
            let current = termios::tcgetattr(stdin.as_fd())
                .map_err(|e| format!("read terminal mode: {e}"))?;
            let mut raw = current.clone();
            termios::cfmakeraw(&mut raw);
            // As runc: the host terminal still turns "\n" into "\r\n".
            raw.output_flags |= termios::OutputFlags::OPOST;
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                .map_err(|e| format!("set terminal raw: {e}"))?;
            saved = Some(current);
        }
        let master = std::fs::File::from(master);
        let mut input = master
            .try_clone()
            .map_err(|e| format!("duplicate the pty master: {e}"))?;
        thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut input);
        });
        let (done, output) = mpsc::channel();
        thread::spawn(move || {
            let mut master = master;
            let mut out = io::stdout().lock();
            // Ends with EIO once every slave is closed (the process and its children exited).
            let _ = io::copy(&mut master, &mut out);
            let _ = out.flush();
            let _ = done.send(());
        });
        Ok(Relay { output, saved })
    }

    /// After the process exited: lets the rest of its output through and restores our terminal.
    pub fn finish(self) {
        let _ = self.output.recv_timeout(DRAIN);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &saved);
        }
    }
}

/// Starts the relay when the master comes to us.
pub fn relay(console: Console) -> Result<Option<Relay>> {
    match console {
        Console::Socket => Ok(None),
        Console::Relay(sock) => Relay::start(sock).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_terminal_rules() {
        let sock = Some(PathBuf::from("/s"));
        // create (always detached)
        assert!(check(true, true, &sock).is_ok());
        assert!(check(true, false, &None).is_ok());
        assert_eq!(
            check(true, true, &None).unwrap_err(),
            "cannot allocate tty if runc will detach without setting console socket"
        );
        assert_eq!(
            check(true, false, &sock).unwrap_err(),
            "cannot use console socket if runc will not detach or allocate tty"
        );
        // run / exec in the foreground relay the terminal themselves
        assert!(check(false, true, &None).is_ok());
        assert!(check(false, true, &sock).is_err());
        assert!(check(false, false, &None).is_ok());
    }
}
