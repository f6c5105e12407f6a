//! Length-prefixed JSON messages between the runtime and its helper, over a unix socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest message accepted (a spec with many mounts is a few KiB).
const MAX_MESSAGE: u32 = 16 << 20;

/// What the helper and init tell the runtime, and what the runtime tells init.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Message {
    /// The helper cloned the process with this host PID.
    Pid(i32),
    /// The runtime placed the process in its cgroup: carry on.
    Go,
    /// Init finished setting up and waits for `start`.
    Ready,
    /// A step failed; the sender exits next.
    Failed {
        /// The step that failed (`mount /proc`, `pivot_root`, ...).
        step: String,
        /// What went wrong.
        message: String,
    },
}

/// Sends one message.
pub fn send<T: Serialize>(sock: &mut UnixStream, msg: &T) -> io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(data.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + data.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&data);
    sock.write_all(&frame)
}

/// Receives one message; EOF before a message is `UnexpectedEof`.
pub fn recv<T: DeserializeOwned>(sock: &mut UnixStream) -> io::Result<T> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_MESSAGE {
        return Err(io::Error::other(format!(
            "message of {len} bytes is too large"
        )));
    }
    let mut data = vec![0u8; len as usize];
    sock.read_exact(&mut data)?;
    serde_json::from_slice(&data).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        send(&mut a, &Message::Pid(7)).unwrap();
        send(
            &mut a,
            &Message::Failed {
                step: "x".into(),
                message: "y".into(),
            },
        )
        .unwrap();
        assert_eq!(recv::<Message>(&mut b).unwrap(), Message::Pid(7));
        assert_eq!(
            recv::<Message>(&mut b).unwrap(),
            Message::Failed {
                step: "x".into(),
                message: "y".into()
            }
        );
        drop(a);
        assert_eq!(
            recv::<Message>(&mut b).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
