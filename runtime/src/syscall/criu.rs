//! The datagram socket that carries CRIU's RPC: a `SOCK_SEQPACKET` pair, whole-message sends,
//! and receives sized with `MSG_PEEK | MSG_TRUNC` that also collect `SCM_RIGHTS` descriptors.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// Most descriptors one CRIU message may carry; CRIU sends at most one (`orphan-pts-master`).
const MAX_FDS: usize = 4;

/// Creates a connected `AF_UNIX` / `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Sends `data` as one datagram, with `fds` attached as `SCM_RIGHTS` when not empty.
///
/// `MSG_NOSIGNAL`: a peer that died gives `EPIPE`, not a process-killing `SIGPIPE`.
pub fn send_datagram(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let iov = [IoSlice::new(data)];
    let sent = retry_eintr(|| {
        socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
    })?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short datagram send: {sent} of {} bytes", data.len()),
        ));
    }
    Ok(())
}

/// One received datagram and the descriptors that came with it.
#[derive(Debug)]
pub struct Datagram {
    /// The message bytes.
    pub data: Vec<u8>,
    /// Descriptors received through `SCM_RIGHTS`, already close-on-exec.
    pub fds: Vec<OwnedFd>,
}

/// Receives one whole datagram; `None` means the peer closed its end (or exited).
///
/// The size comes from a `MSG_PEEK | MSG_TRUNC` probe, so a message of any length fits.
pub fn recv_datagram(sock: BorrowedFd<'_>) -> io::Result<Option<Datagram>> {
    let raw = sock.as_raw_fd();
    let len = match retry_eintr(|| {
        socket::recv(raw, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)
    }) {
        // A peer that exits before reading what we sent resets the connection: also an end.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
        other => other?,
    };
    if len == 0 {
        return Ok(None);
    }
    let mut data = vec![0u8; len];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (bytes, received, truncated) = {
        let mut iov = [IoSliceMut::new(&mut data)];
        // The datagram is already queued (the peek saw it), so EINTR cannot strike here.
        let msg = socket::recvmsg::<()>(
            raw,
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut received: Vec<RawFd> = Vec::new();
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                received.extend(fds);
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC);
        (msg.bytes, received, truncated)
    };
    let fds: Vec<OwnedFd> = received
        .into_iter()
        // SAFETY: each fd was just installed in our table by recvmsg(SCM_RIGHTS) for this
        // call alone; nothing else knows its number, so this OwnedFd is its only owner.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if truncated {
        // `fds` drops here, closing whatever did arrive.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram or its descriptors were truncated",
        ));
    }
    if bytes == 0 {
        return Ok(None);
    }
    data.truncate(bytes);
    Ok(Some(Datagram { data, fds }))
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn datagrams_keep_boundaries_and_carry_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        send_datagram(a.as_fd(), b"first", &[]).unwrap();
        let big = vec![7u8; 100_000];
        send_datagram(a.as_fd(), &big, &[]).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"via scm_rights").unwrap();
        send_datagram(a.as_fd(), b"with fd", &[file.as_fd()]).unwrap();

        let one = recv_datagram(b.as_fd()).unwrap().unwrap();
        assert_eq!(one.data, b"first");
        assert!(one.fds.is_empty());
        let two = recv_datagram(b.as_fd()).unwrap().unwrap();
        assert_eq!(two.data.len(), 100_000);
        let three = recv_datagram(b.as_fd()).unwrap().unwrap();
        assert_eq!(three.data, b"with fd");
        assert_eq!(three.fds.len(), 1);
        let mut got = std::fs::File::from(three.fds.into_iter().next().unwrap());
        got.rewind().unwrap();
        let mut text = String::new();
        got.read_to_string(&mut text).unwrap();
        assert_eq!(text, "via scm_rights");

        drop(a);
        assert!(recv_datagram(b.as_fd()).unwrap().is_none());
    }
}
