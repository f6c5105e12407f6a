//! One `criu swrk` process and the conversation with it (CRIU-NOTES §2).
//!
//! The child gets the server end of a `SOCK_SEQPACKET` pair as fd 3 (`criu swrk 3`) and any
//! descriptors it must inherit as fds 4, 5, ...; our copy of the server end is closed right
//! after the spawn, so a CRIU that dies gives us EOF instead of a hang. One datagram carries
//! one protobuf message. While a request runs, CRIU sends `NOTIFY` messages and blocks until
//! it gets an answer; the final message has the request's own type. [`Session`] reaps the
//! child on every path, including errors and panics (its `Drop`).

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use protobuf::Message;
use rust_criu::rust_criu_protobuf::rpc;

use super::error::{CriuError, CriuFailure};
use super::notify::{script, Notify, NotifyError, NotifyFn};
use super::request::{ChildFds, SWRK_FD};
use crate::syscall::criu::{recv_datagram, send_datagram, seqpacket_pair};
use crate::syscall::process::spawn_with_fds;

/// At most this many `Error` lines of a log go into an error message.
const MAX_LOG_ERRORS: usize = 10;

/// A running `criu swrk`.
#[derive(Debug)]
pub(crate) struct Session {
    sock: Option<OwnedFd>,
    child: Option<Child>,
}

/// What one request/answer exchange produced.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    /// CRIU's final answer; `None` when it closed the socket without one.
    pub response: Option<rpc::Criu_resp>,
    /// The first notification our callback refused, and why.
    pub refused: Option<(String, NotifyError)>,
    /// The root pid CRIU announced (`setup-namespaces`, `post-restore`).
    pub root_pid: Option<i32>,
}

impl Exchange {
    /// True when CRIU answered with success and no callback refused anything.
    pub(crate) fn succeeded(&self) -> bool {
        self.refused.is_none() && self.response.as_ref().is_some_and(|r| r.success())
    }
}

impl Session {
    /// Starts `criu swrk 3` with `fds` installed from fd 4 on.
    pub(crate) fn start(
        criu: &Path,
        fds: &ChildFds<'_>,
        request: &'static str,
    ) -> Result<Session, CriuError> {
        let (ours, theirs) =
            seqpacket_pair().map_err(|source| CriuError::Socket { request, source })?;
        let mut cmd = Command::new(criu);
        cmd.arg("swrk")
            .arg(SWRK_FD.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut pairs = vec![(theirs.as_raw_fd(), SWRK_FD)];
        pairs.extend(fds.pairs());
        let child = spawn_with_fds(&mut cmd, &pairs).map_err(|source| CriuError::Spawn {
            path: criu.to_path_buf(),
            source,
        })?;
        // Only the child may hold the server end: its exit must read as EOF here.
        drop(theirs);
        Ok(Session {
            sock: Some(ours),
            child: Some(child),
        })
    }

    /// Sends `req` and answers notifications until CRIU's final answer of `req`'s type.
    ///
    /// A refused notification is answered with `notify_success = false`; the exchange then
    /// goes on, so CRIU can roll back (and send e.g. `network-unlock`) and give its answer.
    pub(crate) fn exchange(
        &mut self,
        req: &rpc::Criu_req,
        request: &'static str,
        notify: &mut NotifyFn<'_>,
    ) -> Result<Exchange, CriuError> {
        let sock = self.sock.as_ref().ok_or_else(|| CriuError::Socket {
            request,
            source: std::io::Error::from(std::io::ErrorKind::NotConnected),
        })?;
        let expected = req.type_();
        let bytes = req
            .write_to_bytes()
            .map_err(|source| CriuError::Protocol { request, source })?;
        let mut exchange = Exchange::default();
        if send_datagram(sock.as_fd(), &bytes, &[]).is_err() {
            // CRIU is gone already; its exit status and log tell why.
            return Ok(exchange);
        }
        loop {
            let datagram = recv_datagram(sock.as_fd())
                .map_err(|source| CriuError::Socket { request, source })?;
            let Some(datagram) = datagram else {
                return Ok(exchange);
            };
            let resp = rpc::Criu_resp::parse_from_bytes(&datagram.data)
                .map_err(|source| CriuError::Protocol { request, source })?;
            let kind = resp.type_();
            if kind == rpc::Criu_req_type::NOTIFY {
                let mut note = Notify {
                    script: resp.notify.script().to_string(),
                    pid: resp.notify.pid,
                    fd: None,
                };
                if note.script == script::ORPHAN_PTS_MASTER {
                    note.fd = datagram.fds.into_iter().next();
                }
                if note.pid.is_some() {
                    exchange.root_pid = note.pid;
                }
                let answer = notify(&mut note);
                let ok = answer.is_ok();
                if let Err(e) = answer {
                    exchange.refused.get_or_insert((note.script.clone(), e));
                }
                let mut ack = rpc::Criu_req::new();
                ack.set_type(rpc::Criu_req_type::NOTIFY);
                ack.set_notify_success(ok);
                let ack = ack
                    .write_to_bytes()
                    .map_err(|source| CriuError::Protocol { request, source })?;
                if send_datagram(sock.as_fd(), &ack, &[]).is_err() {
                    return Ok(exchange);
                }
                continue;
            }
            // A rejected request comes back as EMPTY with success = false.
            if kind == expected || !resp.success() {
                exchange.response = Some(resp);
                return Ok(exchange);
            }
            return Err(CriuError::UnexpectedResponse {
                request,
                response: format!("{kind:?}"),
            });
        }
    }

    /// Closes the socket and waits for CRIU to exit; `None` if it was reaped elsewhere.
    pub(crate) fn finish(mut self) -> Option<ExitStatus> {
        self.reap()
    }

    fn reap(&mut self) -> Option<ExitStatus> {
        // CRIU exits once it has answered; if it has not, EOF on its socket ends it. Never
        // SIGKILL it: that leaves `.criu.cgyard.*` mounts behind (CRIU-NOTES P26).
        self.sock = None;
        // ECHILD means somebody else reaped it (a blanket reaper); nothing is left over then.
        self.child.take().and_then(|mut child| child.wait().ok())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Turns a finished exchange into CRIU's answer, or into the error that describes it.
pub(crate) fn settle(
    request: &'static str,
    exchange: Exchange,
    status: Option<ExitStatus>,
    log_file: Option<&Path>,
) -> Result<rpc::Criu_resp, CriuError> {
    if let Some((script, source)) = exchange.refused {
        return Err(CriuError::Notify { script, source });
    }
    match exchange.response {
        Some(resp) if resp.success() => Ok(resp),
        resp => Err(CriuError::Failed(Box::new(failure(
            request,
            resp.as_ref(),
            status,
            log_file,
        )))),
    }
}

/// Describes a failed request from CRIU's answer (if any), its exit status and its log.
pub(crate) fn failure(
    request: &'static str,
    resp: Option<&rpc::Criu_resp>,
    status: Option<ExitStatus>,
    log_file: Option<&Path>,
) -> CriuFailure {
    CriuFailure {
        request,
        cr_errno: resp.and_then(|r| r.cr_errno).filter(|e| *e != 0),
        cr_errmsg: resp.and_then(|r| r.cr_errmsg.clone()),
        log_errors: log_file.map(log_errors).unwrap_or_default(),
        log_file: log_file.map(Path::to_path_buf),
        exit: match (resp, status) {
            (None, Some(status)) => Some(describe_exit(status)),
            (None, None) => Some("exited".to_string()),
            _ => None,
        },
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_string(),
    }
}

/// The `Error` lines of a CRIU log, without timestamps, source locations and the
/// `RLIMIT_NOFILE` complaint that hosts without `CAP_SYS_RESOURCE` log on every run.
pub(crate) fn log_errors(path: &Path) -> Vec<String> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut errors: Vec<String> = text
        .lines()
        .filter_map(error_message)
        .filter(|m| !m.contains("RLIMIT_NOFILE"))
        .collect();
    if errors.len() > MAX_LOG_ERRORS {
        let more = errors.len() - MAX_LOG_ERRORS;
        errors.truncate(MAX_LOG_ERRORS);
        errors.push(format!("... {more} more"));
    }
    errors
}

/// `(00.012345)  1234: Error (criu/cr-dump.c:2093): Dumping FAILED.` → `Dumping FAILED.`
fn error_message(line: &str) -> Option<String> {
    let at = line.find("Error (")?;
    let rest = &line[at..];
    let message = rest.find("): ").map_or(rest, |end| &rest[end + 3..]).trim();
    (!message.is_empty()).then(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::criu::{recv_datagram, send_datagram, seqpacket_pair};
    use std::io::{Read, Seek, Write};

    #[test]
    fn log_errors_keep_the_cause_and_drop_the_rlimit_noise() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        fs::write(
            &log,
            "(00.000010) Version: 4.2.1\n\
             (00.000200) Error (criu/rlimit.c:12): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n\
             (00.001000) Warn  (criu/cr-dump.c:1): something\n\
             (00.002000) Error (criu/seize.c:1072): seize 99999: Can't seize: No such process\n\
             (00.002100)    77: Error (criu/cr-dump.c:2093): Dumping FAILED.\n",
        )
        .unwrap();
        assert_eq!(
            log_errors(&log),
            [
                "seize 99999: Can't seize: No such process",
                "Dumping FAILED."
            ]
        );
        assert!(log_errors(&dir.path().join("missing.log")).is_empty());
    }

    fn resp(kind: rpc::Criu_req_type, success: bool) -> rpc::Criu_resp {
        let mut r = rpc::Criu_resp::new();
        r.set_type(kind);
        r.set_success(success);
        r
    }

    fn notify_msg(name: &str, pid: Option<i32>) -> rpc::Criu_resp {
        let mut r = resp(rpc::Criu_req_type::NOTIFY, true);
        let mut n = rpc::Criu_notify::new();
        n.set_script(name.to_string());
        n.pid = pid;
        r.notify = protobuf::MessageField::some(n);
        r
    }

    /// A fake CRIU on the other end of a socket pair: it checks the request, sends `notes`
    /// (one with a descriptor), records each ack, then sends `last`.
    fn fake_criu(
        sock: OwnedFd,
        notes: Vec<rpc::Criu_resp>,
        last: rpc::Criu_resp,
    ) -> std::thread::JoinHandle<Vec<bool>> {
        std::thread::spawn(move || {
            let req = recv_datagram(sock.as_fd()).unwrap().unwrap();
            let req = rpc::Criu_req::parse_from_bytes(&req.data).unwrap();
            assert_eq!(req.type_(), rpc::Criu_req_type::RESTORE);
            let mut acks = Vec::new();
            let mut pty = tempfile::tempfile().unwrap();
            pty.write_all(b"pty").unwrap();
            for note in notes {
                let fds = if note.notify.script() == script::ORPHAN_PTS_MASTER {
                    vec![pty.as_fd()]
                } else {
                    vec![]
                };
                send_datagram(sock.as_fd(), &note.write_to_bytes().unwrap(), &fds).unwrap();
                let ack = recv_datagram(sock.as_fd()).unwrap().unwrap();
                let ack = rpc::Criu_req::parse_from_bytes(&ack.data).unwrap();
                assert_eq!(ack.type_(), rpc::Criu_req_type::NOTIFY);
                acks.push(ack.notify_success());
            }
            send_datagram(sock.as_fd(), &last.write_to_bytes().unwrap(), &[]).unwrap();
            acks
        })
    }

    fn session_with(sock: OwnedFd) -> Session {
        Session {
            sock: Some(sock),
            child: None,
        }
    }

    fn restore_req() -> rpc::Criu_req {
        let mut req = rpc::Criu_req::new();
        req.set_type(rpc::Criu_req_type::RESTORE);
        req.opts = protobuf::MessageField::some(rpc::Criu_opts::new());
        req.opts.as_mut().unwrap().images_dir_fd = Some(-1);
        req
    }

    #[test]
    fn notifications_reach_a_stateful_closure_and_carry_fds() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let mut done = resp(rpc::Criu_req_type::RESTORE, true);
        let mut restored = rpc::Criu_restore_resp::new();
        restored.set_pid(4242);
        done.restore = protobuf::MessageField::some(restored);
        let criu = fake_criu(
            theirs,
            vec![
                notify_msg(script::SETUP_NAMESPACES, Some(4242)),
                notify_msg(script::ORPHAN_PTS_MASTER, None),
                notify_msg(script::POST_RESTORE, Some(4242)),
            ],
            done,
        );
        let mut seen = Vec::new();
        let mut master = None;
        let mut session = session_with(ours);
        let exchange = session
            .exchange(&restore_req(), "restore", &mut |n: &mut Notify| {
                seen.push((n.script.clone(), n.pid));
                if let Some(fd) = n.fd.take() {
                    master = Some(fd);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(criu.join().unwrap(), [true, true, true]);
        assert!(exchange.succeeded());
        assert_eq!(exchange.root_pid, Some(4242));
        assert_eq!(exchange.response.unwrap().restore.pid(), 4242);
        assert_eq!(
            seen,
            [
                (script::SETUP_NAMESPACES.to_string(), Some(4242)),
                (script::ORPHAN_PTS_MASTER.to_string(), None),
                (script::POST_RESTORE.to_string(), Some(4242)),
            ]
        );
        let mut master = fs::File::from(master.expect("pty master fd"));
        master.rewind().unwrap();
        let mut text = String::new();
        master.read_to_string(&mut text).unwrap();
        assert_eq!(text, "pty");
    }

    #[test]
    fn a_refusal_is_acked_negatively_and_criu_still_answers() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let criu = fake_criu(
            theirs,
            vec![
                notify_msg(script::POST_RESTORE, Some(7)),
                notify_msg(script::NETWORK_UNLOCK, None),
            ],
            resp(rpc::Criu_req_type::RESTORE, false),
        );
        let mut session = session_with(ours);
        let exchange = session
            .exchange(&restore_req(), "restore", &mut |n: &mut Notify| {
                if n.script == script::POST_RESTORE {
                    Err("not today".into())
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(criu.join().unwrap(), [false, true]);
        assert!(!exchange.succeeded());
        let err = settle("restore", exchange, None, None).unwrap_err();
        assert_eq!(err.to_string(), "notify callback for post-restore failed");
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "not today"
        );
    }

    #[test]
    fn eof_without_an_answer_is_a_failure() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let criu = std::thread::spawn(move || {
            recv_datagram(theirs.as_fd()).unwrap().unwrap();
            drop(theirs);
        });
        let mut session = session_with(ours);
        let exchange = session
            .exchange(
                &restore_req(),
                "restore",
                &mut super::super::notify::accept_all,
            )
            .unwrap();
        criu.join().unwrap();
        assert!(exchange.response.is_none());
        let err = settle("restore", exchange, None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "criu restore failed (criu exited without answering)"
        );
    }
}
