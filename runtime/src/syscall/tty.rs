//! Pseudo-terminals for terminal containers, and handing a descriptor to another process over a
//! unix socket (`SCM_RIGHTS`), as runc hands the pty master to `--console-socket`.

use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// `f_type` of a devpts filesystem (`DEVPTS_SUPER_MAGIC` in `<linux/magic.h>`).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// What runc writes next to the master it sends (the name of the file it opened).
pub const CONSOLE_NAME: &str = "/dev/ptmx";

/// Longest name accepted with a received descriptor.
const MAX_NAME: usize = 4096;

/// A new pseudo-terminal: its master and where its slave is.
#[derive(Debug)]
pub struct Pty {
    /// The master side, close-on-exec.
    pub master: OwnedFd,
    /// The slave's path in the devpts instance the pty came from (`/dev/pts/0`).
    pub slave: PathBuf,
}

/// Allocates a pty from the devpts instance mounted at `pts` (the container's `/dev/pts`
/// after `pivot_root`, so the slave belongs to the container), and unlocks its slave.
///
/// `pts/ptmx` must be a devpts node: a `/dev/pts` that is not devpts (a bind of the host's
/// `/dev`, say) is refused rather than handing out a pty of another instance.
pub fn open_pty(pts: &Path) -> io::Result<Pty> {
    let ptmx = pts.join("ptmx");
    let master: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&ptmx)?
        .into();
    let fs = nix::sys::statfs::fstatfs(&master).map_err(io::Error::from)?;
    if fs.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC {
        return Err(io::Error::other(format!(
            "{} is not on a devpts filesystem",
            ptmx.display()
        )));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one c_int through the pointer, which points to a live local;
    // `master` is an open pty master for the duration of the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint through the pointer, which points to a live local.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pty {
        master,
        slave: pts.join(number.to_string()),
    })
}

/// Sets a terminal's size in rows and columns.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which points to a live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal's size in rows and columns.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which points to a live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((size.ws_row, size.ws_col))
}

/// Makes the terminal `fd` the controlling terminal of the calling session leader.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a terminal that is already
    // some other session's); no memory is passed.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `fd` over the unix socket `sock` with `name` as the message, as runc's
/// `utils.SendFd` does (the receiver reads the name with the descriptor).
pub fn send_fd(sock: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) if n == name.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {n} of {} bytes with the descriptor", name.len()),
                ))
            }
        }
    }
}

/// Receives one descriptor sent with [`send_fd`] (or by runc) from `sock`; returns the name that
/// came with it and the descriptor, close-on-exec. A message without a descriptor is an error.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<(String, OwnedFd)> {
    let mut name = vec![0u8; MAX_NAME];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 1]);
    let (bytes, received) = loop {
        let mut iov = [IoSliceMut::new(&mut name)];
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut received: Vec<RawFd> = Vec::new();
                for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        received.extend(fds);
                    }
                }
                break (msg.bytes, received);
            }
        }
    };
    let mut fds: Vec<OwnedFd> = received
        .into_iter()
        // SAFETY: each fd was just installed in our table by recvmsg(SCM_RIGHTS) for this call
        // alone; nothing else knows its number, so this OwnedFd is its only owner.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if fds.len() != 1 {
        // Whatever did arrive is closed as `fds` drops.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            if bytes == 0 && fds.is_empty() {
                "the socket closed before a descriptor arrived".to_string()
            } else {
                format!("expected one descriptor, got {}", fds.len())
            },
        ));
    }
    name.truncate(bytes);
    Ok((String::from_utf8_lossy(&name).into_owned(), fds.remove(0)))
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: impl AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_descriptor_and_its_name_cross_a_stream_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"passed").unwrap();
        send_fd(a.as_fd(), CONSOLE_NAME, file.as_fd()).unwrap();
        let (name, fd) = recv_fd(b.as_fd()).unwrap();
        assert_eq!(name, "/dev/ptmx");
        let mut got = fs::File::from(fd);
        got.rewind().unwrap();
        let mut text = String::new();
        got.read_to_string(&mut text).unwrap();
        assert_eq!(text, "passed");
        // Data without a descriptor, then EOF: both errors.
        (&a).write_all(b"x").unwrap();
        assert!(recv_fd(b.as_fd()).is_err());
        drop(a);
        let err = recv_fd(b.as_fd()).unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }

    #[test]
    fn window_size_round_trips_and_pipes_are_not_terminals() {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_window_size(pty.master.as_fd(), 30, 100).unwrap();
        assert_eq!(window_size(pty.slave.as_fd()).unwrap(), (30, 100));
        assert!(is_terminal(&pty.slave));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(!is_terminal(&r));
        assert!(window_size(r.as_fd()).is_err());
    }
}
