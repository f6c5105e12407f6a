//! Post-copy moves (`migrate move --mode lazy`): the page relay between the source's CRIU
//! page server and the target's lazy-pages daemon, and what it measures.
//!
//! Neither CRIU process opens a TCP port: each side hands its CRIU one end of a socketpair
//! (`--ps-socket`) and the agents carry the bytes over `Peer.PageRelay`, inside their mutual
//! TLS channel. The source opens the relay before `Receive`; the target parks its daemon's
//! end until `Receive` starts the daemon on it. Once the container runs on the target there
//! is no going back: if the relay breaks before every page arrived, the target freezes and
//! stops its copy (it cannot run without its memory) and the source keeps its frozen copy,
//! as of the checkpoint.

use std::collections::{HashMap, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::v1::peer_client::PeerClient;
use proto::v1::{LazyStats, PageRelayMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Status;

use crate::daemon::Agent;
use crate::shim::chain;

/// Largest relay message.
const RELAY_CHUNK: usize = 1 << 20;

/// What the target keeps per incoming lazy move.
#[derive(Default)]
pub struct LazyLanding {
    /// The daemon's end of the relay's socketpair, until `Receive` starts the daemon on it.
    pub daemon_end: Option<std::os::fd::OwnedFd>,
    /// The running daemon.
    pub daemon: Option<runtime::criu::LazyPages>,
    /// The container being restored.
    pub container_id: Option<String>,
    /// Why its memory can no longer arrive, once that happened.
    pub lost: Option<String>,
    /// Holds the relay's end open should this agent die (see [`Keeper`]).
    pub keeper: Option<Keeper>,
}

/// A process that holds a copy of the relay's end of the daemon's socket, so that if this
/// agent dies the daemon sees a silent page server, not a closed one. A daemon that loses its
/// page server exits and closes the container's userfaultfd, and the kernel would then hand
/// zero pages to the container wherever memory is missing; a silent one leaves the faulting
/// threads blocked until the restarted agent removes the container ([`recover`]). Killed when
/// the move's landing ends.
pub struct Keeper(std::process::Child);

/// The name keepers carry on their command line (`ps`), followed by the move id.
const KEEPER_TAG: &str = "migrate-lazy-keeper-";

impl Keeper {
    fn start(move_id: &str, end: &impl std::os::fd::AsRawFd) -> Result<Keeper, String> {
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "while :; do sleep 3600; done",
            &format!("{KEEPER_TAG}{move_id}"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        runtime::syscall::process::spawn_with_fds(&mut cmd, &[(end.as_raw_fd(), 3)])
            .map(Keeper)
            .map_err(|e| format!("cannot start the page relay's keeper: {e}"))
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The source side: carries what CRIU's page server (the other end of `sock`) writes to the
/// target and the daemon's requests back, until CRIU closes the socket and the target ends the
/// relay with its stats. `relayed` counts the page bytes sent so far.
///
/// Returns once the target has the relay (its daemon can be started on it, so `Receive` may
/// follow); the returned task carries the pages until the end.
pub async fn relay_from_source(
    mut client: PeerClient<Channel>,
    to: String,
    move_id: String,
    sock: UnixStream,
    relayed: Arc<std::sync::atomic::AtomicU64>,
) -> Result<tokio::task::JoinHandle<Result<LazyStats, String>>, String> {
    sock.set_nonblocking(true)
        .map_err(|e| format!("page relay socket: {e}"))?;
    let sock =
        tokio::net::UnixStream::from_std(sock).map_err(|e| format!("page relay socket: {e}"))?;
    let (mut from_criu, mut to_criu) = sock.into_split();
    let (tx, rx) = tokio::sync::mpsc::channel::<PageRelayMessage>(16);
    tx.send(PageRelayMessage {
        move_id,
        ..Default::default()
    })
    .await
    .map_err(|_| "page relay closed before it opened".to_string())?;
    // Test hooks: after this many bytes the relay breaks (`MIGRATE_FAULT=lazy-relay-break=N`)
    // or stalls, open but silent (`lazy-relay-stall=N`).
    let bytes_of = |name: &str| crate::moves::fault(name).and_then(|v| v.parse::<u64>().ok());
    let (break_at, stall_at) = (bytes_of("lazy-relay-break"), bytes_of("lazy-relay-stall"));
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            match from_criu.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let sent = relayed.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    if break_at.is_some_and(|b| sent + n as u64 >= b) {
                        tracing::error!(
                            "lazy-relay-break: cutting the page relay (injected fault)"
                        );
                        break;
                    }
                    if stall_at.is_some_and(|b| sent + n as u64 >= b) {
                        tracing::error!(
                            "lazy-relay-stall: the page relay stops moving (injected fault)"
                        );
                        std::future::pending::<()>().await;
                    }
                    let msg = PageRelayMessage {
                        data: buf[..n].to_vec(),
                        ..Default::default()
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    // The call returns once the target has parked the daemon's end of the relay.
    let mut replies = match client
        .page_relay(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => {
            reader.abort();
            return Err(format!("page relay to {to}: {}", s.message()));
        }
    };
    Ok(tokio::spawn(async move {
        let result = async {
            let mut stats = None;
            while let Some(m) = replies
                .message()
                .await
                .map_err(|s| format!("page relay to {to} broke: {}", s.message()))?
            {
                if !m.data.is_empty() {
                    to_criu
                        .write_all(&m.data)
                        .await
                        .map_err(|e| format!("page relay: cannot write to criu: {e}"))?;
                }
                if m.stats.is_some() {
                    stats = m.stats;
                }
            }
            stats.ok_or_else(|| format!("{to} ended the page relay before every page arrived"))
        }
        .await;
        reader.abort();
        result
    }))
}

/// The target side of `Peer.PageRelay`: parks the daemon's end for `Receive`, relays, and ends
/// with the stats once the daemon reports every page in place.
pub async fn relay_to_target(
    agent: Arc<Agent>,
    mut inbound: tonic::Streaming<PageRelayMessage>,
) -> Result<tokio_stream::wrappers::ReceiverStream<Result<PageRelayMessage, Status>>, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("page relay without a first message"))?;
    let move_id = first.move_id;
    if move_id.is_empty() {
        return Err(Status::invalid_argument(
            "the page relay's first message must name the move",
        ));
    }
    if crate::moves::fault("lazy-relay-open-delay").is_some() {
        // Test hook: a slow target must still have the relay before `Receive` comes.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Status::internal(format!("socketpair: {e}")))?;
    let keeper = Keeper::start(&move_id, &ours).map_err(Status::internal)?;
    {
        let mut lazy = agent.lazy.lock().unwrap_or_else(|e| e.into_inner());
        if lazy.contains_key(&move_id) {
            return Err(Status::already_exists(format!(
                "move {move_id} has a page relay already"
            )));
        }
        lazy.insert(
            move_id.clone(),
            LazyLanding {
                daemon_end: Some(theirs.into()),
                keeper: Some(keeper),
                ..Default::default()
            },
        );
    }
    ours.set_nonblocking(true)
        .map_err(|e| Status::internal(e.to_string()))?;
    let ours =
        tokio::net::UnixStream::from_std(ours).map_err(|e| Status::internal(e.to_string()))?;
    let (mut from_daemon, mut to_daemon) = ours.into_split();
    let traffic = Arc::new(Mutex::new(PageTraffic::default()));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<PageRelayMessage, Status>>(16);

    // Pages from the source to the daemon. A broken link before the end loses the pages
    // still missing: stop the copy here before it can touch them.
    {
        let (agent, move_id, traffic) = (agent.clone(), move_id.clone(), traffic.clone());
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => {
                        lock(&traffic).pages(&m.data, Instant::now());
                        if to_daemon.write_all(&m.data).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        // The source ends the stream once its page server closed. Unless the
                        // daemon's closing request was answered, pages are missing.
                        if !lock(&traffic).closed {
                            let reason =
                                "the source ended the page relay before every page arrived";
                            let a = agent.clone();
                            let id = move_id.clone();
                            let _ = tokio::task::spawn_blocking(move || stop_lost(&a, &id, reason))
                                .await;
                        }
                        let _ = to_daemon.shutdown().await;
                        break;
                    }
                    Err(s) => {
                        let reason =
                            format!("the page relay from the source broke: {}", s.message());
                        let a = agent.clone();
                        let id = move_id.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || stop_lost(&a, &id, &reason)).await;
                        break;
                    }
                }
            }
        });
    }
    // Requests from the daemon to the source; when the daemon closes its end it is done.
    tokio::spawn(async move {
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            match from_daemon.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    lock(&traffic).requests(&buf[..n], Instant::now());
                    let msg = PageRelayMessage {
                        data: buf[..n].to_vec(),
                        ..Default::default()
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let a = agent.clone();
        let id = move_id.clone();
        let done = tokio::task::spawn_blocking(move || finish_daemon(&a, &id))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let reply = match done {
            Ok(()) => Ok(PageRelayMessage {
                stats: Some(lock(&traffic).stats()),
                ..Default::default()
            }),
            Err(e) => Err(Status::data_loss(e)),
        };
        let _ = tx.send(reply).await;
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this host can take part in a lazy move: CRIU's lazy-pages support (userfaultfd)
/// and, read now, `fs.pipe-max-size` (CRIU-NOTES P1).
pub fn prerequisites(agent: &Agent) -> Result<(), String> {
    let mut report = agent.criu_report().clone()?;
    report.pipe_max_size = runtime::criu::pipe_max_size();
    report
        .ensure_lazy_pages()
        .map_err(|e| format!("{}: {e}", agent.config.node))
}

/// Target: starts the lazy-pages daemon of `move_id` on the images in `dir`, on the relay the
/// source opened. Called by `Receive` before the restore.
pub fn start_daemon(
    agent: &Agent,
    move_id: &str,
    container_id: &str,
    dir: &std::path::Path,
) -> Result<(), String> {
    let end = {
        let mut lazy = lock(&agent.lazy);
        let landing = lazy
            .get_mut(move_id)
            .ok_or_else(|| format!("lazy move {move_id}: the source opened no page relay"))?;
        landing.container_id = Some(container_id.to_string());
        landing
            .daemon_end
            .take()
            .ok_or_else(|| format!("lazy move {move_id}: the lazy-pages daemon runs already"))?
    };
    let criu = runtime::criu::Criu::locate().map_err(|e| chain(&e))?;
    let daemon = criu.lazy_pages(dir, end).map_err(|e| chain(&e))?;
    tracing::info!(move.id = %move_id, pid = daemon.pid().unwrap_or(0), "lazy-pages daemon ready");
    let _ = agent.catalog.journal_step(
        move_id,
        MEMORY_FOLLOWS,
        "the lazy-pages daemon fetches the memory",
    );
    if let Some(l) = lock(&agent.lazy).get_mut(move_id) {
        l.daemon = Some(daemon);
    }
    Ok(())
}

/// Target: waits for the daemon after it closed its end. `Ok` once every page is in place;
/// otherwise the copy here is stopped.
fn finish_daemon(agent: &Agent, move_id: &str) -> Result<(), String> {
    let (daemon, lost) = lock(&agent.lazy)
        .get_mut(move_id)
        .map(|l| (l.daemon.take(), l.lost.clone()))
        .unwrap_or_default();
    let result = match (daemon, lost) {
        (_, Some(lost)) => Err(lost),
        (Some(d), None) => d.wait().map_err(|e| chain(&e)),
        (None, None) => Err("the lazy-pages daemon never started".into()),
    };
    match &result {
        Ok(()) => {
            let _ = agent
                .catalog
                .journal_step(move_id, RESIDENT, "every page arrived");
        }
        Err(e) => stop_lost(agent, move_id, e),
    }
    lock(&agent.lazy).remove(move_id);
    result
}

/// Journal steps of a lazy move on the target: the daemon started, every page arrived.
const MEMORY_FOLLOWS: &str = "memory-follows";
const RESIDENT: &str = "resident";

/// Target, at start (before containers are re-adopted): a lazy move whose memory was still
/// arriving when this agent stopped lost its page source with it, and its daemon has exited:
/// the container may have read zeros where its pages were missing. It is removed; the source
/// still has its frozen copy and thaws it once it learns the move was aborted.
pub fn recover(agent: &Arc<Agent>) {
    let lost: Vec<(String, String)> = agent
        .catalog
        .operations(200)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.kind == "move-in")
        .filter(|o| {
            let steps: Vec<String> = agent
                .catalog
                .journal_of(&o.id)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.step)
                .collect();
            let has = |s: &str| steps.iter().any(|x| x == s);
            has(MEMORY_FOLLOWS) && !has(RESIDENT) && !has("aborted") && !has("committed")
        })
        .map(|o| (o.id, o.container_id))
        .collect();
    // Freeze first: once its daemon goes, a container would read zeros for missing pages.
    for (_, id) in &lost {
        if let Some(c) = agent.live(id) {
            let _ = c.pause();
        }
    }
    // No lazy move survives a restart: their daemons (blocked on a silent page server) and
    // keepers go.
    let scratch = agent.config.scratch_dir().display().to_string();
    for pid in processes_whose_cmdline(|c| {
        c.contains(KEEPER_TAG) || (c.contains("lazy-pages") && c.contains(&scratch))
    }) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for (move_id, id) in lost {
        tracing::error!(move.id = %move_id, container.id = %id, "the agent stopped while a lazy move's memory was still arriving: removing the copy");
        lock(&agent.lazy).insert(
            move_id.clone(),
            LazyLanding {
                container_id: Some(id),
                ..Default::default()
            },
        );
        stop_lost(
            agent,
            &move_id,
            "this agent stopped while the container's memory was still arriving",
        );
        lock(&agent.lazy).remove(&move_id);
    }
}

/// Pids of the processes whose command line (arguments joined by spaces) matches.
fn processes_whose_cmdline(matches: impl Fn(&str) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| matches(&String::from_utf8_lossy(&c).replace('\0', " ")))
                .unwrap_or(false)
        })
        .collect()
}

/// Target: the container's missing memory cannot arrive any more. Freeze it first, so no
/// task reads a page that is not there (after the daemon is gone it would read zeros), then
/// stop the daemon and remove the copy.
pub fn stop_lost(agent: &Agent, move_id: &str, reason: &str) {
    let (id, daemon) = {
        let mut lazy = lock(&agent.lazy);
        if lazy.get(move_id).is_some_and(|l| l.container_id.is_none()) {
            // Nothing landed yet (`Receive` never came): drop the parked end and the keeper,
            // which ends the relay.
            lazy.remove(move_id);
            return;
        }
        match lazy.get_mut(move_id) {
            Some(l) if l.lost.is_none() => {
                l.lost = Some(reason.to_string());
                (l.container_id.clone(), l.daemon.take())
            }
            _ => (None, None),
        }
    };
    let Some(id) = id else {
        return;
    };
    tracing::error!(move.id = %move_id, container.id = %id, %reason, "lazy move lost its page source; stopping the copy here");
    let live = agent.live(&id);
    if let Some(c) = &live {
        let _ = c.pause();
    }
    drop(daemon);
    // As when a move commits on the source: the exit watcher must not restart it.
    if let Ok(mut r) = agent.record(&id) {
        r.desired = crate::daemon::desired::STOPPED.into();
        let _ = agent.catalog.put_container(&r);
        agent.network_down(&r);
    }
    if let Some(c) = live {
        if let Err(e) = c.delete(true) {
            tracing::warn!(container.id = %id, error = %chain(&e), "cannot remove the copy that lost its memory");
        }
    }
    let _ = agent.catalog.delete_container(&id);
    // The source learns from this that its frozen copy is the only one left.
    let _ = agent.catalog.journal_step(
        move_id,
        "aborted",
        &format!("lost its page source: {reason}"),
    );
}

/// Page-server protocol on the target's relay: the daemon's requests and the source's
/// answers, parsed only to count and time them (the bytes pass through unchanged).
///
/// A request is CRIU's `page_server_iov` (32 bytes: `cmd` u32, padding, `nr_pages`, `vaddr`,
/// `dst_id` u64). `PS_IOV_GET` is answered with an iov header and `nr_pages` pages; the closing
/// command with a 4-byte status. The daemon asks for a single page on a fault and for 16 pages
/// and more in the background, which is how the two are told apart.
#[derive(Default)]
struct PageTraffic {
    req_buf: Vec<u8>,
    resp_buf: Vec<u8>,
    /// Requests not answered yet: pages asked (0 for a close) and when.
    outstanding: VecDeque<(u64, Instant)>,
    /// Bytes of the answer in progress still to skip.
    payload_left: u64,
    current: Option<(u64, Instant)>,
    faulted: u64,
    pushed: u64,
    bytes: u64,
    fault_latency: Vec<Duration>,
    /// The daemon's closing request was answered: it has every page.
    closed: bool,
    /// The stream did not parse; stop counting rather than count wrong.
    confused: bool,
}

const IOV_LEN: usize = 32;
const PS_IOV_GET: u32 = 7;
const PS_IOV_CLOSE: u32 = 0x1023;
const PS_IOV_FORCE_CLOSE: u32 = 0x1024;
const PS_CMD_MASK: u32 = 0xffff;
const PAGE: u64 = 4096;

impl PageTraffic {
    fn requests(&mut self, data: &[u8], now: Instant) {
        if self.confused {
            return;
        }
        self.req_buf.extend_from_slice(data);
        let mut at = 0;
        while self.req_buf.len() - at >= IOV_LEN {
            let h = &self.req_buf[at..at + IOV_LEN];
            at += IOV_LEN;
            let cmd = u32::from_ne_bytes(h[0..4].try_into().unwrap_or_default());
            let nr = u64::from_ne_bytes(h[8..16].try_into().unwrap_or_default());
            match cmd & PS_CMD_MASK {
                PS_IOV_GET => self.outstanding.push_back((nr, now)),
                c if c == PS_IOV_CLOSE & PS_CMD_MASK || c == PS_IOV_FORCE_CLOSE & PS_CMD_MASK => {
                    self.outstanding.push_back((0, now))
                }
                _ => self.confused = true,
            }
        }
        self.req_buf.drain(..at);
    }

    fn pages(&mut self, mut data: &[u8], now: Instant) {
        self.bytes += data.len() as u64;
        while !data.is_empty() && !self.confused {
            if self.payload_left > 0 {
                let n = (self.payload_left as usize).min(data.len());
                self.payload_left -= n as u64;
                data = &data[n..];
                if self.payload_left == 0 {
                    self.answered(now);
                }
                continue;
            }
            let Some(&(asked, _)) = self.outstanding.front() else {
                self.confused = true;
                break;
            };
            let need = if asked == 0 { 4 } else { IOV_LEN };
            let take = (need - self.resp_buf.len()).min(data.len());
            self.resp_buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.resp_buf.len() < need {
                break;
            }
            let header = std::mem::take(&mut self.resp_buf);
            self.current = self.outstanding.pop_front();
            if asked == 0 {
                self.current = None;
                self.closed = true;
                continue;
            }
            let nr = u64::from_ne_bytes(header[8..16].try_into().unwrap_or_default());
            if let Some(c) = &mut self.current {
                c.0 = nr;
            }
            self.payload_left = nr * PAGE;
            if nr == 0 {
                self.answered(now);
            }
        }
    }

    fn answered(&mut self, now: Instant) {
        let Some((nr, asked_at)) = self.current.take() else {
            return;
        };
        if nr == 1 {
            self.faulted += 1;
            self.fault_latency.push(now.duration_since(asked_at));
        } else {
            self.pushed += nr;
        }
    }

    fn stats(&self) -> LazyStats {
        let mut l = self.fault_latency.clone();
        l.sort();
        let pct = |p: usize| {
            if l.is_empty() {
                0
            } else {
                l[((l.len() - 1) * p) / 100].as_micros() as u64
            }
        };
        LazyStats {
            pages_faulted: self.faulted,
            pages_pushed: self.pushed,
            fault_p50_us: pct(50),
            fault_p99_us: pct(99),
            bytes: self.bytes,
        }
    }
}

/// Lazy moves the target is receiving, by move id.
pub type Landings = Mutex<HashMap<String, LazyLanding>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(cmd: u32, nr: u64, vaddr: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(IOV_LEN);
        v.extend_from_slice(&cmd.to_ne_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&nr.to_ne_bytes());
        v.extend_from_slice(&vaddr.to_ne_bytes());
        v.extend_from_slice(&1u64.to_ne_bytes());
        v
    }

    #[test]
    fn faults_and_pushes_are_counted_across_split_messages() {
        let mut t = PageTraffic::default();
        let t0 = Instant::now();
        let mut reqs = iov(PS_IOV_GET, 1, 0x1000);
        reqs.extend(iov(PS_IOV_GET, 16, 0x10000));
        // Requests split mid-header.
        t.requests(&reqs[..20], t0);
        t.requests(&reqs[20..], t0);
        let mut answer = iov(6 | (1 << 16), 1, 0x1000);
        answer.extend(vec![7u8; PAGE as usize]);
        answer.extend(iov(6 | (1 << 16), 16, 0x10000));
        answer.extend(vec![8u8; 16 * PAGE as usize]);
        let later = t0 + Duration::from_millis(3);
        for piece in answer.chunks(1000) {
            t.pages(piece, later);
        }
        t.requests(&iov(PS_IOV_FORCE_CLOSE, 0, 0), later);
        assert!(!t.closed);
        t.pages(&0i32.to_ne_bytes(), later);
        assert!(!t.confused && t.closed);
        let s = t.stats();
        assert_eq!((s.pages_faulted, s.pages_pushed), (1, 16));
        assert_eq!(s.fault_p50_us, 3000);
        assert_eq!(s.bytes, answer.len() as u64 + 4);
    }

    #[test]
    fn an_unknown_command_stops_counting_but_not_relaying() {
        let mut t = PageTraffic::default();
        t.requests(&iov(99, 1, 0), Instant::now());
        assert!(t.confused);
        t.pages(&[1, 2, 3], Instant::now());
        assert_eq!(t.stats().bytes, 3);
    }
}
