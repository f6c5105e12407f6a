//! Live migration between agents (`migrate move NAME --to HOST`, cold mode).
//!
//! Source ([`move_out`]): preflight on the target while the container runs → pre-seed the bundle
//! layer → freeze the container's cgroup → CRIU dump (the container stays frozen: CRIU restores
//! the freezer state it found) → send only the chunks the target lacks → the target restores and
//! reports running → commit: kill the frozen source copy, free its address, tell the target.
//! Any failure before the target reports running rolls back: the target discards what it got
//! for this move and the source thaws. Because the source stays frozen in its cgroup until the
//! agent decides, a crash of the source agent never lets two copies run; on restart it asks the
//! target what happened ([`recover`]).
//!
//! Target (the `Peer` handlers call [`preflight`], [`put_chunk`], [`receive`], [`finish`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::peer_client::PeerClient;
use proto::v1::{
    ChunkUpload, FinishRequest, HaveChunksRequest, MoveReport, MoveStatusRequest, OperationResult,
    PhaseTime, PreflightRequest, PreflightResponse, PutChunksResponse, ReceiveRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::catalog::{ContainerRecord, Restart};
use crate::daemon::{desired, now_unix, Agent};
use crate::ops::OpHandle;
use crate::shim::{chain, ShimAction};
use crate::store::{ChunkRef, Manifest, Provenance, Store, MANIFEST_VERSION};

/// Chunks per `HaveChunks` question.
const HAVE_BATCH: usize = 512;
/// How long the source waits for the target to restore.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Test hook: `MIGRATE_FAULT=<name>[,<name>...]` makes an agent misbehave on purpose (see
/// docs/troubleshooting.md). Never set in production.
pub const FAULT_ENV: &str = "MIGRATE_FAULT";

/// Whether fault `name` is switched on for this agent process.
pub fn fault(name: &str) -> Option<String> {
    let all = std::env::var(FAULT_ENV).ok()?;
    all.split(',').find_map(|f| {
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        (k == name).then(|| v.to_string())
    })
}

/// Connects to peer `name` over mutual TLS, with windows and message sizes for bulk transfer.
pub async fn peer_client(agent: &Agent, name: &str) -> Result<PeerClient<Channel>, String> {
    let address = agent
        .config
        .peers
        .get(name)
        .ok_or_else(|| format!("unknown host {name}: not in this agent's [peers]"))?;
    let files = agent
        .config
        .tls
        .as_ref()
        .ok_or("this agent has no [tls] configured")?;
    let tls = crate::tls::client_config(files, name).map_err(|e| chain(&e))?;
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| chain(&e))?
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| format!("cannot reach {name} at {address}: {}", chain(&e)))?;
    Ok(PeerClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

fn status_err(host: &str, s: tonic::Status) -> String {
    format!("{host}: {}", chain(&s))
}

/// Progress counters of a transfer (a move, or a backup's replication).
#[derive(Default)]
pub(crate) struct Counters {
    pub raw: u64,
    pub compressed: u64,
    pub sent: u64,
    pub chunks: u64,
    pub chunks_sent: u64,
}

/// The source side of a move.
pub async fn move_out(
    agent: Arc<Agent>,
    op: &OpHandle,
    id: &str,
    to: &str,
    dry_run: bool,
    mode: &str,
    yes: bool,
) -> Result<OperationResult, String> {
    let t0 = Instant::now();
    let mut report = MoveReport {
        target: to.to_string(),
        dry_run,
        ..Default::default()
    };
    let mut phase = Instant::now();
    let mut lap = |report: &mut MoveReport, name: &str| {
        report.phases.push(PhaseTime {
            name: name.into(),
            ms: phase.elapsed().as_millis() as u64,
        });
        phase = Instant::now();
    };
    check_mode(&agent, mode, yes).await?;
    let lazy = mode == "lazy";
    let rec = agent.record(id).map_err(|e| e.to_string())?;
    if to == agent.config.node {
        return Err(format!("container {id} is already on {to}"));
    }
    let busy = agent.claim(id).map_err(|e| e.to_string())?;
    let c = agent
        .live(id)
        .filter(|c| c.status() == runtime::Status::Running)
        .ok_or_else(|| format!("container {id} is not running"))?;
    let spec = c.spec().map_err(|e| chain(&e))?;
    if spec.mounts().iter().flatten().any(|m| {
        m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    }) {
        return Err(format!(
            "container {id} has bind-mounted volumes, which moves do not carry yet"
        ));
    }

    op.event("preflight", format!("asking {to}"));
    let mut client = peer_client(&agent, to).await?;
    let (cpuinfo, stats, upper) = {
        let a = agent.clone();
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || -> Result<_, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            runtime::criu::Criu::locate()
                .and_then(|criu| criu.cpuinfo_dump(dir.path()))
                .map_err(|e| chain(&e))?;
            let cpuinfo = std::fs::read(dir.path().join("cpuinfo.img"))
                .map_err(|e| format!("cannot read cpuinfo image: {e}"))?;
            let _ = &a;
            Ok((
                cpuinfo,
                c2.stats().ok(),
                crate::daemon::dir_size(&c2.upper_dir()),
            ))
        })
        .await
        .map_err(|e| e.to_string())??
    };
    let memory = stats.map(|s| s.memory_usage).unwrap_or(0);
    let report_criu = agent
        .criu_report()
        .as_ref()
        .map(|r| r.version.to_string())
        .unwrap_or_default();
    let pf = client
        .preflight(PreflightRequest {
            move_id: op.id().to_string(),
            container_id: id.to_string(),
            criu_version: report_criu,
            kernel: agent.host.kernel.clone(),
            cpuinfo,
            need_disk_bytes: memory + upper + crate::daemon::dir_size(Path::new(&rec.bundle)),
            need_memory_bytes: memory,
            ip: rec.ip.clone(),
            mode: mode.to_string(),
            cpu_model: agent.host.cpu_model.clone(),
        })
        .await
        .map_err(|s| status_err(to, s))?
        .into_inner();
    report.preflight = pf.checks.clone();
    if lazy {
        // The source serves the pages: it needs the same prerequisites as the target.
        let a = agent.clone();
        let here = tokio::task::spawn_blocking(move || crate::lazy::prerequisites(&a))
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = here {
            report.preflight.push(format!("{e}: FAIL"));
            return Err(format!(
                "preflight on {} refused the move: {e}",
                agent.config.node
            ));
        }
        report
            .preflight
            .push(format!("lazy pages on {}: ok", agent.config.node));
    }
    lap(&mut report, "preflight");
    if !pf.ok {
        return Err(format!(
            "preflight on {to} refused the move: {}",
            pf.reasons.join("; ")
        ));
    }
    op.event("preflight", format!("{to} can take {id}"));
    if dry_run {
        report.total_ms = t0.elapsed().as_millis() as u64;
        return Ok(OperationResult {
            r#move: Some(report),
            ..Default::default()
        });
    }

    // Chunks written from here on are named by a manifest only at the end: keep garbage
    // collection away until then. The chunks staged while frozen are dropped if the move
    // fails (and moved into the store when it succeeds).
    let _store = agent.store_lock.clone().read_owned().await;
    let _stage = StageGuard(transfer_store(&agent, op.id()));
    // Pre-seed while the container runs: the bundle it was created from.
    op.event("preseed", "sending the bundle layer the target lacks");
    let mut counters = Counters::default();
    let layer = {
        let a = agent.clone();
        let bundle = PathBuf::from(&rec.bundle);
        tokio::task::spawn_blocking(move || layer_manifest(&a, &bundle, |_, _| {}))
            .await
            .map_err(|e| e.to_string())??
    };
    send_chunks(&agent, &mut client, to, op, &layer, &mut counters).await?;
    // The newest earlier checkpoint of this container (from a move or backup made here): most
    // of its chunks will be in the new checkpoint too, so send them before freezing.
    if let Some(earlier) = newest_checkpoint(&agent, id) {
        op.event(
            "preseed",
            format!("sending chunks of the earlier checkpoint {}", earlier.id),
        );
        let mut preseed = Counters::default();
        send_chunks(&agent, &mut client, to, op, &earlier, &mut preseed).await?;
        report.bytes_preseeded = preseed.sent;
    }
    lap(&mut report, "preseed");

    // Freeze: from here on a failure must thaw the source.
    let frozen_at = Instant::now();
    op.event("freeze", "freezing the container");
    let outcome = frozen_phase(
        &agent,
        &mut client,
        to,
        op,
        &c,
        &rec,
        &layer,
        &mut counters,
        &mut report,
        &mut lap,
        lazy,
    )
    .await;
    let (pid, restore_ms, checkpoint, tail) = match outcome {
        Ok(v) => v,
        Err((e, receive_attempted)) => {
            op.event("rollback", format!("rolling back: {e}"));
            rollback(
                &agent,
                &mut client,
                to,
                op.id(),
                &c,
                !rec.ip.is_empty(),
                receive_attempted,
            )
            .await
            .map_err(|r| format!("{e}; rollback: {r}"))?;
            return Err(e);
        }
    };
    report.downtime_ms = frozen_at.elapsed().as_millis() as u64;
    report.mode = if lazy { "lazy" } else { "cold" }.into();
    if let Some(tail) = tail {
        op.event(
            "memory",
            format!(
                "running on {to} as pid {pid} after {} ms frozen; its memory follows",
                report.downtime_ms
            ),
        );
        match await_memory(&agent, &mut client, to, op, &c, &rec, tail, frozen_at).await {
            Ok(stats) => {
                report.resident_ms = frozen_at.elapsed().as_millis() as u64;
                report.pages_faulted = stats.pages_faulted;
                report.pages_pushed = stats.pages_pushed;
                report.fault_p50_us = stats.fault_p50_us;
                report.fault_p99_us = stats.fault_p99_us;
                report.bytes_lazy = stats.bytes;
                let m = &agent.metrics;
                m.move_resident.observe(report.resident_ms as f64 / 1000.0);
                m.move_lazy_pages
                    .with_label_values(&["faulted"])
                    .inc_by(stats.pages_faulted);
                m.move_lazy_pages
                    .with_label_values(&["pushed"])
                    .inc_by(stats.pages_pushed);
                lap(&mut report, "memory");
            }
            Err(e) => return Err(e),
        }
    }
    if fault("crash-after-receive").is_some() {
        tracing::error!(
            "crash-after-receive: exiting right after the target reported running (injected fault)"
        );
        std::process::exit(70);
    }
    op.event(
        "commit",
        format!(
            "running on {to} as pid {pid} (criu restore {restore_ms} ms); removing the source copy"
        ),
    );
    // Still holding the claim: the exit watcher must not see the copy die and record it.
    commit_source(&agent, id, &rec).await;
    drop(busy);
    // Off the downtime: keep the checkpoint's manifest here for a later move's pre-seed (this
    // syncs every chunk written while frozen, which costs seconds for a large container).
    {
        let staged = transfer_store(&agent, op.id());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || {
            staged.unstage()?;
            staged.commit(&checkpoint)
        })
        .await
        {
            tracing::warn!(error = %chain(&e), "cannot keep the checkpoint's manifest; a later move sends it all again");
        }
    }
    if let Err(s) = client
        .finish(FinishRequest {
            move_id: op.id().to_string(),
            commit: true,
        })
        .await
    {
        tracing::warn!(error = %chain(&s), "target did not acknowledge the commit; it keeps the container anyway");
    }
    lap(&mut report, "commit");
    report.total_ms = t0.elapsed().as_millis() as u64;
    report.bytes_raw = counters.raw;
    report.bytes_compressed = counters.compressed;
    report.bytes_sent = counters.sent;
    report.chunks_total = counters.chunks;
    report.chunks_sent = counters.chunks_sent;
    report.target_pid = pid;
    agent
        .metrics
        .move_downtime
        .observe(report.downtime_ms as f64 / 1000.0);
    agent.metrics.move_bytes_sent.inc_by(report.bytes_sent);
    op.event(
        "done",
        format!(
            "downtime {} ms, {} of {} bytes sent",
            report.downtime_ms, report.bytes_sent, report.bytes_raw
        ),
    );
    Ok(OperationResult {
        r#move: Some(report),
        ..Default::default()
    })
}

async fn check_mode(agent: &Arc<Agent>, mode: &str, yes: bool) -> Result<(), String> {
    match mode {
        "" | "cold" => Ok(()),
        "lazy" if !yes && !agent.config.lazy_moves_without_yes => Err(
            "a lazy move cannot be rolled back once the container runs on the target: until all of its memory has arrived, a broken link between the hosts stops the copy there and the container restarts on the source from its checkpoint, losing what it did meanwhile; pass --yes to accept (or set lazy_moves_without_yes in the agent's config)"
                .into(),
        ),
        // Its prerequisites are checked on both hosts in the preflight.
        "lazy" => Ok(()),
        "precopy" => {
            let a = agent.clone();
            let dirty = tokio::task::spawn_blocking(move || {
                a.criu_report()
                    .as_ref()
                    .ok()
                    .and_then(|r| r.feature("mem_dirty_track"))
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if dirty {
                Err("pre-copy moves (--mode precopy) are not implemented yet; use the default cold mode".into())
            } else {
                Err("pre-copy needs soft-dirty memory tracking, which this kernel lacks (`criu check --feature mem_dirty_track` fails); use the default cold mode".into())
            }
        }
        other => Err(format!("unknown mode {other:?}: use cold, lazy or precopy")),
    }
}

/// Everything between freezing and the target running. Errors say whether `Receive` was sent.
#[allow(clippy::too_many_arguments)]
async fn frozen_phase(
    agent: &Arc<Agent>,
    client: &mut PeerClient<Channel>,
    to: &str,
    op: &OpHandle,
    c: &runtime::Container,
    rec: &ContainerRecord,
    layer: &Manifest,
    counters: &mut Counters,
    report: &mut MoveReport,
    lap: &mut impl FnMut(&mut MoveReport, &str),
    lazy: bool,
) -> Result<(i32, u64, Manifest, Option<LazyTail>), (String, bool)> {
    let no = |e: String| (e, false);
    let c2 = c.clone();
    let dir = move_dir(agent, op.id());
    let tcp = !rec.ip.is_empty();
    let d2 = dir.clone();
    let node = agent.config.node.clone();
    let has_ip = !rec.ip.is_empty();
    let id = rec.id.clone();
    // Post-copy: CRIU serves the memory it left out on one end of a socketpair, and the
    // agent relays the other end to the target.
    let (criu_end, relay_end) = if lazy {
        let (a, b) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| no(format!("page relay socket: {e}")))?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let mut dump = tokio::task::spawn_blocking(move || -> Result<(), String> {
        c2.pause().map_err(|e| chain(&e))?;
        // Network lock: with the link down nothing reaches the frozen sockets, so their state
        // cannot move past the dump (and a later kill sends no RST to clients).
        if has_ip {
            crate::network::set_link(&node, &id, false).map_err(|e| chain(&e))?;
        }
        let opts = runtime::CheckpointOpts {
            leave_running: true,
            tcp_established: tcp,
            ..Default::default()
        };
        match criu_end {
            // Returns once every page is served (or the relay broke).
            Some(sock) => {
                let mut ready = Some(ready_tx);
                c2.checkpoint_lazy(&d2, opts, sock.into(), |_| {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    Ok(())
                })
            }
            None => c2.checkpoint(&d2, opts),
        }
        .map_err(|e| chain(&e))?;
        // CRIU put the freezer back as it found it: frozen. Make sure.
        if c2.status() != runtime::Status::Paused {
            c2.pause().map_err(|e| chain(&e))?;
        }
        Ok(())
    });
    let mut lazy_dump = None;
    let dumped = if lazy {
        let ready = tokio::select! {
            ready = ready_rx => match ready {
                // The images are complete; the dump goes on serving pages.
                Ok(()) => Ok(()),
                Err(_) => Err("the lazy dump ended before its images were ready".to_string()),
            },
            done = &mut dump => match done {
                Ok(Ok(())) => Err("the lazy dump ended before its images were ready".to_string()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e.to_string()),
            },
        };
        // Awaited when the move ends or fails: the dump lets go of the container only then.
        lazy_dump = Some(dump);
        ready
    } else {
        dump.await.map_err(|e| e.to_string()).and_then(|r| r)
    };
    let dumped = dumped.map_err(no);
    lap(report, "dump");
    // Hash, compress and send in one pipeline: chunks go out while later ones are still being
    // cut.
    let streamed = match dumped {
        Ok(()) => {
            op.event("transfer", format!("streaming the checkpoint to {to}"));
            stream_checkpoint(agent, client, to, op, c, &dir, counters)
                .await
                .map_err(no)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let checkpoint = match streamed {
        Ok(c) => c,
        Err(e) => {
            // A lazy dump still waits to serve pages: closing its socket ends it, and the
            // container must be back in the source's hands before the caller thaws it.
            drop(relay_end);
            if let Some(d) = lazy_dump {
                let _ = d.await;
            }
            return Err(e);
        }
    };
    lap(report, "transfer");
    op.event("restore", format!("{to} is restoring {}", rec.id));
    let req = ReceiveRequest {
        lazy: false,
        move_id: op.id().to_string(),
        container_id: rec.id.clone(),
        layer_manifest: serde_json::to_vec(layer).map_err(|e| no(e.to_string()))?,
        checkpoint_manifest: serde_json::to_vec(&checkpoint).map_err(|e| no(e.to_string()))?,
        restart: rec.restart.as_str().to_string(),
        ip: rec.ip.clone(),
        mac: rec.mac.clone(),
        created_unix: rec.created_unix,
        backup_schedule: agent
            .catalog
            .schedule(&rec.id)
            .ok()
            .flatten()
            .map(|s| crate::backups::schedule_to_proto(&s)),
    };
    // The relay must be open before the target starts its lazy-pages daemon on it.
    let tail = match (lazy_dump, relay_end) {
        (Some(dump), Some(sock)) => {
            let relayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let opened = crate::lazy::relay_from_source(
                client.clone(),
                to.to_string(),
                op.id().to_string(),
                sock,
                relayed.clone(),
            )
            .await;
            match opened {
                Ok(relay) => Some(LazyTail {
                    dump,
                    relay,
                    relayed,
                }),
                Err(e) => {
                    // The socket is gone with the failed relay: the dump ends.
                    let _ = dump.await;
                    return Err(no(e));
                }
            }
        }
        _ => None,
    };
    let mut request = tonic::Request::new(ReceiveRequest {
        lazy: tail.is_some(),
        ..req
    });
    request.set_timeout(RECEIVE_TIMEOUT);
    let resp = match client.receive(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            if let Some(t) = tail {
                t.stop().await;
            }
            return Err((status_err(to, s), true));
        }
    };
    lap(report, "restore");
    Ok((resp.pid, resp.restore_ms, checkpoint, tail))
}

/// A lazy move after the container runs on the target: the dump still serving pages, and
/// the relay carrying them.
struct LazyTail {
    dump: tokio::task::JoinHandle<Result<(), String>>,
    relay: tokio::task::JoinHandle<Result<proto::v1::LazyStats, String>>,
    /// Page bytes sent so far.
    relayed: Arc<std::sync::atomic::AtomicU64>,
}

impl LazyTail {
    /// Ends the relay (CRIU sees its socket close) and waits for the dump to let go of the
    /// container.
    async fn stop(self) {
        self.relay.abort();
        let _ = self.relay.await;
        let _ = self.dump.await;
    }
}

/// A lazy move once the container runs on the target: reports the memory still following
/// until the dump has served every page. If the pages stop before that, the target's copy is
/// gone (it stops itself) and the source's frozen copy, as of the checkpoint, is the one left:
/// it is thawed once the target confirms, and the error says what was lost.
#[allow(clippy::too_many_arguments)]
async fn await_memory(
    agent: &Arc<Agent>,
    client: &mut PeerClient<Channel>,
    to: &str,
    op: &OpHandle,
    c: &runtime::Container,
    rec: &ContainerRecord,
    mut tail: LazyTail,
    frozen_at: Instant,
) -> Result<proto::v1::LazyStats, String> {
    let ran_at = Instant::now();
    // The dump returns when its page server's socket closes, also when the relay broke: only
    // the target's stats, sent once its daemon has every page, say the memory is all there.
    let tick = || {
        op.event(
            "memory",
            format!(
                "{} MiB of memory sent to {to}",
                tail.relayed.load(std::sync::atomic::Ordering::Relaxed) >> 20
            ),
        )
    };
    let relayed = loop {
        tokio::select! {
            done = &mut tail.relay => break done.map_err(|e| e.to_string()).and_then(|r| r),
            _ = tokio::time::sleep(Duration::from_secs(1)) => tick(),
        }
    };
    // Closing the relay's socket ends a dump still waiting for requests.
    let dumped = tail.dump.await.map_err(|e| e.to_string()).and_then(|r| r);
    if let (Ok(_), Err(e)) = (&relayed, &dumped) {
        tracing::warn!(move.id = %op.id(), error = %e, "the target has every page, but the lazy dump ended with an error");
    }
    let sent = tail.relayed.load(std::sync::atomic::Ordering::Relaxed);
    match relayed {
        Ok(stats) => {
            op.event(
                "memory",
                format!(
                    "all memory on {to} {} ms after the freeze: {} pages fetched on demand, {} pushed",
                    frozen_at.elapsed().as_millis(),
                    stats.pages_faulted,
                    stats.pages_pushed
                ),
            );
            Ok(stats)
        }
        Err(e) => {
            let ran = ran_at.elapsed();
            let lost = format!(
                "lazy move of {id} to {to} failed after it ran there for {:.1} s: its memory stopped arriving ({e}) with {} MiB sent; {to} stopped its copy, which cannot run without the rest",
                ran.as_secs_f64(),
                sent >> 20,
                id = rec.id
            );
            op.event("rollback", lost.clone());
            match rollback(agent, client, to, op.id(), c, !rec.ip.is_empty(), true).await {
                Ok(()) => Err(format!(
                    "{lost}; {id} runs on {here} again from its checkpoint, and what it did on {to} in those {:.1} s is lost (its TCP peers may see resets)",
                    ran.as_secs_f64(),
                    id = rec.id,
                    here = agent.config.node
                )),
                Err(r) => Err(format!("{lost}; {r}")),
            }
        }
    }
}

/// Source-side rollback: the target discards the move, then the source thaws. If the target
/// may have restored and cannot be asked, the source stays frozen (never two running copies).
async fn rollback(
    agent: &Arc<Agent>,
    client: &mut PeerClient<Channel>,
    to: &str,
    move_id: &str,
    c: &runtime::Container,
    has_ip: bool,
    receive_attempted: bool,
) -> Result<(), String> {
    let mut confirmed = false;
    for attempt in 0..5 {
        match client
            .finish(FinishRequest {
                move_id: move_id.to_string(),
                commit: false,
            })
            .await
        {
            Ok(_) => {
                confirmed = true;
                break;
            }
            Err(s) => {
                tracing::warn!(attempt, error = %chain(&s), "target did not confirm the abort");
                if !receive_attempted {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    if receive_attempted && !confirmed {
        return Err(format!(
            "{to} may have restored the container and cannot be reached to confirm; the source copy stays frozen (it will be resolved when {to} answers, or thaw it with `migrate resume`)"
        ));
    }
    let c = c.clone();
    let node = agent.config.node.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        if has_ip {
            crate::network::set_link(&node, c.id(), true).map_err(|e| chain(&e))?;
        }
        c.resume().map_err(|e| chain(&e))
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(())
}

/// Removes the frozen source copy after the target took over.
async fn commit_source(agent: &Arc<Agent>, id: &str, rec: &ContainerRecord) {
    let a = agent.clone();
    let id = id.to_string();
    let rec = rec.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(mut r) = a.record(&id) {
            r.desired = desired::STOPPED.into();
            let _ = a.catalog.put_container(&r);
        }
        // Cut the network first: the killed sockets must not send RSTs to clients that now
        // talk to the target.
        a.network_down(&rec);
        // Its backup schedule went with it.
        let _ = a.catalog.delete_schedule(&id);
        if let Some(c) = a.live(&id) {
            if let Err(e) = c.delete(true) {
                tracing::warn!(container.id = %id, error = %chain(&e), "cannot remove the source copy");
            }
        }
        let _ = a.catalog.delete_container(&id);
        for p in [a.exit_path(&id), a.log_file(&id)] {
            let _ = std::fs::remove_file(p);
        }
    })
    .await;
}

/// Cuts the checkpoint in `dir` into chunks (on every core) and streams the ones the target
/// lacks while the rest are still being cut; returns the manifest, not yet committed (that
/// waits until the container runs on the target).
async fn stream_checkpoint(
    agent: &Arc<Agent>,
    client: &mut PeerClient<Channel>,
    to: &str,
    op: &OpHandle,
    c: &runtime::Container,
    dir: &Path,
    counters: &mut Counters,
) -> Result<Manifest, String> {
    let (refs_tx, mut refs_rx) = tokio::sync::mpsc::channel::<Placed>(4 * HAVE_BATCH);
    // New chunks go to the scratch tmpfs while the container is frozen; they move into the
    // store after it runs on the target.
    let staged = transfer_store(agent, op.id());
    let producer = {
        let store = staged.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            store.ingest_dir_placed(&dir, |path, offset, r, _| {
                let _ = refs_tx.blocking_send(Placed {
                    r: r.clone(),
                    path: path.to_string(),
                    offset,
                });
            })
        })
    };
    let upload = Upload::start(client);
    let corrupt = fault("corrupt-chunk").is_some();
    let mut known = HashSet::new();
    let mut batch: Vec<Placed> = Vec::new();
    let mut failed = None;
    loop {
        let next = refs_rx.recv().await;
        let done = next.is_none();
        if let Some(p) = next {
            counters.raw += p.r.size;
            counters.chunks += 1;
            batch.push(p);
        }
        if failed.is_none()
            && (batch.len() >= HAVE_BATCH / 8
                || (done && !batch.is_empty())
                || (refs_rx.is_empty() && !batch.is_empty()))
        {
            if let Err(e) = offer(
                &staged,
                client,
                to,
                op.id(),
                &std::mem::take(&mut batch),
                &mut known,
                &upload.tx,
                corrupt,
                counters,
            )
            .await
            {
                failed = Some(e);
            }
        }
        if done {
            break;
        }
    }
    let sent = upload.finish(to, failed, counters).await;
    let files = producer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| chain(&e));
    sent?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        id: format!("ckpt-{}-{}", c.id(), uuid::Uuid::new_v4().simple()),
        kind: "checkpoint".into(),
        container_id: c.id().to_string(),
        files: files?,
        provenance: provenance(agent, dir),
    };
    op.event(
        "transfer",
        format!(
            "sent {} of {} chunks, {} bytes compressed",
            counters.chunks_sent, counters.chunks, counters.sent
        ),
    );
    Ok(m)
}

/// A `PutChunks` stream to the target, fed through `tx` while the caller goes on.
struct Upload {
    tx: tokio::sync::mpsc::Sender<ChunkUpload>,
    done: tokio::task::JoinHandle<Result<tonic::Response<PutChunksResponse>, tonic::Status>>,
}

impl Upload {
    fn start(client: &PeerClient<Channel>) -> Upload {
        let (tx, rx) = tokio::sync::mpsc::channel::<ChunkUpload>(8);
        let mut uploader = client.clone();
        let done = tokio::spawn(async move {
            uploader
                .put_chunks(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        Upload { tx, done }
    }

    /// Ends the stream and counts what the target took. If the sender `failed`, the target's
    /// error (which usually explains it) wins over the sender's.
    async fn finish(
        self,
        to: &str,
        failed: Option<String>,
        counters: &mut Counters,
    ) -> Result<PutChunksResponse, String> {
        drop(self.tx);
        let sent = self
            .done
            .await
            .map_err(|e| e.to_string())?
            .map_err(|s| status_err(to, s));
        if let Some(e) = failed {
            return Err(sent.err().unwrap_or(e));
        }
        let sent = sent?.into_inner();
        counters.sent += sent.bytes;
        counters.chunks_sent += sent.chunks;
        Ok(sent)
    }
}

/// Where and how the checkpoint in `dir` was made.
pub(crate) fn provenance(agent: &Agent, dir: &Path) -> Provenance {
    let spec = std::fs::read(dir.join("config.json")).unwrap_or_default();
    Provenance {
        source_node: agent.config.node.clone(),
        criu_version: agent
            .criu_report()
            .as_ref()
            .map(|r| r.version.to_string())
            .unwrap_or_default(),
        kernel: agent.host.kernel.clone(),
        cpu_model: agent.host.cpu_model.clone(),
        spec_hash: crate::store::hash(&spec),
        created_unix: now_unix(),
    }
}

/// Asks the target which of `batch` it lacks and queues those for upload.
#[allow(clippy::too_many_arguments)]
/// A chunk and, in a move's frozen phase, where it goes in the image files (`path` empty
/// otherwise).
struct Placed {
    r: ChunkRef,
    path: String,
    offset: u64,
}

/// Asks the target which chunks of `batch` it lacks (of those not in `known`: chunks this
/// transfer already sent, or the target said it holds), and queues them for upload, in order;
/// every other placed chunk goes as a placement without data.
#[allow(clippy::too_many_arguments)]
async fn offer(
    store: &Store,
    client: &mut PeerClient<Channel>,
    to: &str,
    move_id: &str,
    batch: &[Placed],
    known: &mut HashSet<String>,
    up: &tokio::sync::mpsc::Sender<ChunkUpload>,
    corrupt: bool,
    counters: &mut Counters,
) -> Result<(), String> {
    let mut ask: Vec<String> = Vec::new();
    for p in batch {
        if !known.contains(&p.r.hash) && !ask.contains(&p.r.hash) {
            ask.push(p.r.hash.clone());
        }
    }
    let mut lacking = HashSet::new();
    if !ask.is_empty() {
        let have = client
            .have_chunks(HaveChunksRequest {
                hashes: ask.clone(),
                move_id: move_id.to_string(),
            })
            .await
            .map_err(|s| status_err(to, s))?
            .into_inner()
            .have;
        for (h, has) in ask
            .into_iter()
            .zip(have.into_iter().chain(std::iter::repeat(false)))
        {
            if !has {
                lacking.insert(h.clone());
            }
            known.insert(h);
        }
    }
    for p in batch {
        let data = if lacking.remove(&p.r.hash) {
            let mut data = store.read_compressed_raw(&p.r).map_err(|e| chain(&e))?;
            counters.compressed += data.len() as u64;
            if corrupt && counters.compressed == data.len() as u64 {
                let n = data.len() / 2;
                data[n] ^= 0xff;
            }
            data
        } else if p.path.is_empty() {
            continue;
        } else {
            Vec::new()
        };
        let upload = ChunkUpload {
            move_id: move_id.to_string(),
            hash: p.r.hash.clone(),
            size: p.r.size,
            data,
            path: p.path.clone(),
            offset: p.offset,
        };
        if up.send(upload).await.is_err() {
            return Err(format!("{to} stopped taking chunks"));
        }
    }
    Ok(())
}

/// The store as a transfer (a move or a backup's replication, on either side) sees it: new
/// chunks are staged on the scratch tmpfs until the transfer commits.
pub(crate) fn transfer_store(agent: &Agent, transfer_id: &str) -> Store {
    agent.store.staged(
        &agent
            .config
            .scratch_dir()
            .join(format!("stage-{transfer_id}")),
    )
}

/// Drops a transfer's staged chunks when it goes out of scope (after a successful move they
/// were moved into the store already, and there is nothing left to drop).
struct StageGuard(Store);

impl Drop for StageGuard {
    fn drop(&mut self) {
        self.0.drop_stage();
    }
}

/// Where a move's images live while it runs (see [`crate::config::Config::scratch_dir`]).
fn move_dir(agent: &Agent, move_id: &str) -> PathBuf {
    agent.config.scratch_dir().join(format!("move-{move_id}"))
}

/// The newest checkpoint or backup manifest of container `id` in the local store.
fn newest_checkpoint(agent: &Agent, id: &str) -> Option<Manifest> {
    agent
        .store
        .manifest_ids()
        .ok()?
        .iter()
        .filter_map(|m| agent.store.manifest(m).ok())
        .filter(|m| (m.kind == "checkpoint" || m.kind == "backup") && m.container_id == id)
        .max_by_key(|m| m.provenance.created_unix)
}

/// Sends the chunks of `m` that the target lacks, compressed.
pub(crate) async fn send_chunks(
    agent: &Arc<Agent>,
    client: &mut PeerClient<Channel>,
    to: &str,
    op: &OpHandle,
    m: &Manifest,
    counters: &mut Counters,
) -> Result<(), String> {
    let mut unique: Vec<Placed> = Vec::new();
    let mut seen = HashSet::new();
    for r in m.chunks() {
        counters.raw += r.size;
        counters.chunks += 1;
        if seen.insert(r.hash.clone()) {
            unique.push(Placed {
                r: r.clone(),
                path: String::new(),
                offset: 0,
            });
        }
    }
    let mut known = HashSet::new();
    let upload = Upload::start(client);
    let corrupt = fault("corrupt-chunk").is_some();
    let mut failed = None;
    for batch in unique.chunks(HAVE_BATCH) {
        if let Err(e) = offer(
            &agent.store,
            client,
            to,
            op.id(),
            batch,
            &mut known,
            &upload.tx,
            corrupt,
            counters,
        )
        .await
        {
            failed = Some(e);
            break;
        }
    }
    let sent = upload.finish(to, failed, counters).await?;
    op.event(
        "transfer",
        format!(
            "sent {} of {} chunks, {} bytes compressed",
            sent.chunks,
            unique.len(),
            sent.bytes
        ),
    );
    Ok(())
}

/// The bundle as a content-addressed layer: one tar of the bundle directory, chunked.
/// `on_chunk` sees each chunk as it is stored (and whether it was new). The archive leaves out
/// access and change times, so reading the bundle does not make a new layer.
pub(crate) fn layer_manifest(
    agent: &Agent,
    bundle: &Path,
    on_chunk: impl FnMut(&ChunkRef, bool),
) -> Result<Manifest, String> {
    // A container that arrived by a move runs from a layer unpacked here: reuse that layer as
    // it is (archiving the unpacked copy again would give a new id for the same content).
    if bundle.parent() == Some(agent.config.state_dir.join("bundles").as_path()) {
        if let Some(m) = bundle
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|id| agent.store.manifest(id).ok())
        {
            if m.kind == "layer" {
                return Ok(m);
            }
        }
    }
    let tmp =
        tempfile::tempdir_in(agent.config.state_dir.join("store")).map_err(|e| e.to_string())?;
    let tar = tmp.path().join("bundle.tar");
    let out = std::process::Command::new("tar")
        .args([
            "--create",
            "--sort=name",
            "--numeric-owner",
            "--xattrs",
            "--pax-option=delete=atime,delete=ctime",
            "-f",
        ])
        .arg(&tar)
        .arg("-C")
        .arg(bundle)
        .arg(".")
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot archive bundle {}: {}",
            bundle.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let files = agent
        .store
        .ingest_dir(tmp.path(), on_chunk)
        .map_err(|e| chain(&e))?;
    let digest = crate::store::hash(serde_json::to_string(&files).unwrap_or_default().as_bytes());
    let m = Manifest {
        version: MANIFEST_VERSION,
        id: format!("layer-{}", &digest[..24]),
        kind: "layer".into(),
        container_id: String::new(),
        files,
        provenance: Provenance {
            source_node: agent.config.node.clone(),
            created_unix: now_unix(),
            ..Default::default()
        },
    };
    agent.store.commit(&m).map_err(|e| chain(&e))?;
    Ok(m)
}

// ---- target side ----

/// Checks whether this host can take the container.
pub fn preflight(agent: &Arc<Agent>, req: &PreflightRequest) -> PreflightResponse {
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    let mut check = |ok: bool, line: String| {
        checks.push(format!("{line}: {}", if ok { "ok" } else { "FAIL" }));
        if !ok {
            reasons.push(line);
        }
    };
    let ours = match fault("criu-version") {
        Some(v) => Ok(v),
        None => agent
            .criu_report()
            .as_ref()
            .map(|r| r.version.to_string())
            .map_err(|e| e.clone()),
    };
    match &ours {
        Ok(v) => {
            let ok = v
                .parse::<runtime::criu::CriuVersion>()
                .map(|v| v >= runtime::criu::MIN_VERSION)
                .unwrap_or(false);
            check(
                ok,
                format!(
                    "criu {v} on {} (need >= {})",
                    agent.config.node,
                    runtime::criu::MIN_VERSION
                ),
            );
        }
        Err(e) => check(false, format!("criu on {}: {e}", agent.config.node)),
    }
    match cpuinfo_check(&req.cpuinfo) {
        Ok(()) => check(
            true,
            format!(
                "cpu features of {} ({}) available here",
                req.cpu_model, agent.host.cpu_model
            ),
        ),
        Err(e) => check(
            false,
            format!(
                "cpu of the source ({}) is not compatible with this one ({}): {e}",
                req.cpu_model, agent.host.cpu_model
            ),
        ),
    }
    let kernels = format!(
        "kernel {} here, {} on the source",
        agent.host.kernel, req.kernel
    );
    let free_disk = fault("free-disk")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| free_disk(&agent.config.state_dir));
    check(
        free_disk >= req.need_disk_bytes * 2,
        format!(
            "free disk {} MiB (need {} MiB)",
            free_disk >> 20,
            (req.need_disk_bytes * 2) >> 20
        ),
    );
    let free_mem = mem_available();
    check(
        free_mem >= req.need_memory_bytes,
        format!(
            "available memory {} MiB (need {} MiB)",
            free_mem >> 20,
            req.need_memory_bytes >> 20
        ),
    );
    let exists = agent
        .catalog
        .container(&req.container_id)
        .ok()
        .flatten()
        .is_some();
    check(
        !exists,
        format!("no container named {} here", req.container_id),
    );
    if !req.ip.is_empty() {
        let bridge = agent.bridge();
        check(
            bridge.is_some_and(|b| std::path::Path::new(&format!("/sys/class/net/{b}")).exists()),
            format!(
                "bridge for address {} ({})",
                req.ip,
                bridge.unwrap_or("none configured")
            ),
        );
        let taken = agent
            .catalog
            .containers()
            .unwrap_or_default()
            .iter()
            .any(|c| c.ip == req.ip);
        check(
            !taken,
            format!("address {} not used by a container here", req.ip),
        );
    }
    match req.mode.as_str() {
        "" | "cold" => {}
        "lazy" => match crate::lazy::prerequisites(agent) {
            Ok(()) => check(true, format!("lazy pages on {}", agent.config.node)),
            Err(e) => check(false, e),
        },
        other => check(false, format!("mode {other} supported")),
    }
    checks.push(kernels);
    PreflightResponse {
        ok: reasons.is_empty(),
        reasons,
        checks,
    }
}

fn cpuinfo_check(img: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("cpuinfo.img"), img).map_err(|e| e.to_string())?;
    runtime::criu::Criu::locate()
        .and_then(|c| c.cpuinfo_check(dir.path()))
        .map_err(|e| chain(&e))
}

fn free_disk(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0)
}

fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

/// Stores one received chunk (verified against its hash) for `move_id`.
pub fn put_chunk(agent: &Agent, c: &ChunkUpload) -> Result<(), String> {
    if let Some(ms) = fault("slow-chunks").and_then(|v| v.parse::<u64>().ok()) {
        tracing::info!(chunk = %c.hash, "slow-chunks: delaying a received chunk by {ms} ms (injected fault)");
        std::thread::sleep(Duration::from_millis(ms));
    }
    let store = transfer_store(agent, &c.move_id);
    let raw = if c.data.is_empty() {
        // A placement of a chunk that arrived earlier or was held already.
        let r = ChunkRef {
            hash: c.hash.clone(),
            size: c.size,
        };
        let trusted = agent
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&c.move_id)
            .is_some_and(|s| s.contains(&c.hash));
        if trusted {
            store.read_unverified(&r)
        } else {
            store.read(&r)
        }
        .map_err(|e| chain(&e))?
    } else {
        let raw = crate::store::verify(&c.hash, c.size, &c.data).map_err(|e| chain(&e))?;
        let new = !store.has(&c.hash);
        store
            .put_verified(&c.hash, &c.data)
            .map_err(|e| chain(&e))?;
        if new {
            agent
                .incoming
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(c.move_id.clone())
                .or_default()
                .insert(c.hash.clone());
        }
        raw
    };
    if !c.path.is_empty() {
        place(agent, &c.move_id, &c.path, c.offset, &raw)?;
    }
    Ok(())
}

/// Writes a chunk where it goes in a move's image files, and counts it.
fn place(agent: &Agent, move_id: &str, path: &str, offset: u64, data: &[u8]) -> Result<(), String> {
    let rel = Path::new(path);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!("image path {path:?} is not a plain relative path"));
    }
    let file = move_dir(agent, move_id).join(rel);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&file)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    std::os::unix::fs::FileExt::write_all_at(&f, data, offset)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    agent
        .placed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(move_id.to_string())
        .or_default()
        .entry(path.to_string())
        .or_default()
        .insert(offset, data.len() as u64);
    Ok(())
}

/// Whether the placements of `move_id` wrote every byte of every file of `m` (each file is
/// then exactly as the manifest describes, and nothing is left to materialize).
fn placed_complete(agent: &Agent, move_id: &str, m: &Manifest) -> bool {
    let placed = agent.placed.lock().unwrap_or_else(|e| e.into_inner());
    let Some(files) = placed.get(move_id) else {
        return false;
    };
    m.files.iter().all(|f| {
        let written: u64 = files
            .get(&f.path)
            .map(|offsets| offsets.values().sum())
            .unwrap_or(0);
        let on_disk = std::fs::metadata(move_dir(agent, move_id).join(&f.path))
            .map(|md| md.len())
            .ok();
        written == f.size && (on_disk == Some(f.size) || f.size == 0)
    })
}

/// Materializes and restores a moved container; returns its pid and CRIU's restore time.
/// `source` is the sending peer's node name.
pub fn receive(
    agent: &Arc<Agent>,
    op: &OpHandle,
    req: &ReceiveRequest,
    source: &str,
) -> Result<(i32, u64), String> {
    let layer: Manifest = serde_json::from_slice(&req.layer_manifest)
        .map_err(|e| format!("bad layer manifest: {e}"))?;
    let ckpt: Manifest = serde_json::from_slice(&req.checkpoint_manifest)
        .map_err(|e| format!("bad checkpoint manifest: {e}"))?;
    let id = req.container_id.clone();
    runtime::id::validate_id(&id).map_err(|e| e.to_string())?;
    let _busy = agent.claim(&id).map_err(|e| e.to_string())?;
    if agent
        .catalog
        .container(&id)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!("a container named {id} exists here"));
    }
    for m in [&layer, &ckpt] {
        m.validate()
            .map_err(|e| format!("invalid manifest {}: {e}", m.id))?;
    }
    let images_ready = placed_complete(agent, &req.move_id, &ckpt);
    op.event(
        "materialize",
        if images_ready {
            "the checkpoint's images were written as the chunks arrived; unpacking the bundle"
        } else {
            "writing the checkpoint's images from the store, and the bundle"
        },
    );
    let rec = ContainerRecord {
        id: id.clone(),
        bundle: String::new(),
        restart: Restart::parse(&req.restart).unwrap_or(Restart::No),
        desired: desired::RUNNING.into(),
        exit_code: None,
        restarts: 0,
        created_unix: req.created_unix,
        ip: req.ip.clone(),
        mac: req.mac.clone(),
    };
    let landing = Landing {
        images_ready,
        store: transfer_store(agent, &req.move_id),
        layer: &layer,
        checkpoint: &ckpt,
        dir: move_dir(agent, op.id()),
        network: LandingNet::Bridge { check_free: false },
        tcp_close: false,
        lazy_move: req.lazy.then(|| req.move_id.clone()),
        trusted: agent
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&req.move_id)
            .cloned()
            .unwrap_or_default(),
    };
    let started = land(agent, op, rec, &landing)?;
    // The manifests are committed when the source commits (off the downtime: committing
    // syncs every chunk received, which costs seconds for a large container).
    agent
        .pending_manifests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(req.move_id.clone(), vec![layer, ckpt]);
    if let Some(s) = &req.backup_schedule {
        crate::backups::adopt_schedule(agent, op, &id, s, source);
    }
    Ok((started.pid.unwrap_or(0), started.restore_ms.unwrap_or(0)))
}

/// How a landing container is connected.
pub(crate) enum LandingNet {
    /// To the bridge, with its address (refused first if `check_free` and someone answers for
    /// it).
    Bridge { check_free: bool },
    /// Its address in a namespace connected to nothing (restore tests).
    Isolated,
}

/// What [`land`] restores: a checkpoint and the bundle layer it runs on, both in the store.
pub(crate) struct Landing<'a> {
    /// Where the chunks are (the store, or a transfer's staged view of it).
    pub store: Store,
    pub layer: &'a Manifest,
    pub checkpoint: &'a Manifest,
    /// Where the images are written (on the scratch tmpfs); removed if the restore fails.
    pub dir: PathBuf,
    pub network: LandingNet,
    pub tcp_close: bool,
    /// Post-copy: the move whose page relay brings the memory the images lack.
    pub lazy_move: Option<String>,
    /// The images are in `dir` already (a move wrote them as the chunks arrived).
    pub images_ready: bool,
    /// Chunks verified moments ago (received for this move, or checked by the caller): they
    /// are written without hashing them again.
    pub trusted: HashSet<String>,
}

/// Restores a container from the store on this host: writes the images (verifying every
/// chunk) and the bundle, sets up the network, restores through a shim, records and watches
/// the container. `rec.bundle` is filled in. On failure nothing of it is left but the bundle.
pub(crate) fn land(
    agent: &Arc<Agent>,
    op: &OpHandle,
    mut rec: ContainerRecord,
    l: &Landing<'_>,
) -> Result<crate::shim::ShimStarted, String> {
    let id = rec.id.clone();
    let images = if l.images_ready {
        // Written as the chunks arrived: only the empty files and the modes are left.
        l.checkpoint.files.iter().try_for_each(|f| {
            let p = l.dir.join(&f.path);
            if f.size == 0 {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(f.mode))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
    } else {
        let _ = std::fs::remove_dir_all(&l.dir);
        l.store
            .materialize(l.checkpoint, &l.dir, &l.trusted)
            .map_err(|e| chain(&e))
    };
    // A lazy restore's daemon needs only the images: it starts (loading them, ~0.1 s) while
    // the bundle is unpacked and the network set up.
    let daemon = match (&images, &l.lazy_move) {
        (Ok(()), Some(m)) => {
            let (a, m, id, dir) = (agent.clone(), m.clone(), id.clone(), l.dir.clone());
            Some(std::thread::spawn(move || {
                crate::lazy::start_daemon(&a, &m, &id, &dir)
            }))
        }
        _ => None,
    };
    let prepared = images
        .and_then(|()| materialize_layer(agent, &l.store, l.layer))
        .and_then(|bundle| {
            rec.bundle = bundle.display().to_string();
            match l.network {
                LandingNet::Bridge { check_free } => agent.network_up(&rec, check_free),
                LandingNet::Isolated => agent.network_isolated(&rec),
            }
            .map(|netns| (bundle, netns))
            .map_err(|e| e.to_string())
        });
    let daemon = daemon.map_or(Ok(()), |t| {
        t.join()
            .unwrap_or_else(|_| Err("the lazy-pages daemon's starter panicked".into()))
    });
    // On failure: a lazy move's daemon is stopped (which ends the relay), the images go.
    let undo = |network: bool| {
        if let Some(m) = &l.lazy_move {
            agent
                .lazy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(m);
        }
        if network {
            agent.network_down(&rec);
        }
        let _ = std::fs::remove_dir_all(&l.dir);
    };
    let (bundle, netns) = match prepared {
        Ok(p) => p,
        Err(e) => {
            undo(false);
            return Err(e);
        }
    };
    op.event("restore", "restoring with CRIU");
    let restored = if fault("fail-restore").is_some() {
        Err("restore failed (injected fault fail-restore)".to_string())
    } else {
        daemon.and_then(|()| {
            agent
                .spawn_shim(
                    &id,
                    ShimAction::Restore {
                        checkpoint: l.dir.clone(),
                        netns,
                        bundle: Some(bundle),
                        tcp_close: l.tcp_close,
                        lazy_pages: l.lazy_move.is_some(),
                    },
                )
                .map_err(|e| e.to_string())
        })
    };
    let started = match restored {
        Ok(s) => s,
        Err(e) => {
            undo(true);
            return Err(e);
        }
    };
    agent
        .catalog
        .put_container(&rec)
        .map_err(|e| e.to_string())?;
    if !rec.ip.is_empty() && matches!(l.network, LandingNet::Bridge { .. }) {
        // Announce in the background: the container already runs, and arping takes a second.
        let net = crate::network::NetSpec {
            ip: rec.ip.clone(),
            mac: rec.mac.clone(),
        };
        let (node, cid) = (agent.config.node.clone(), id.clone());
        std::thread::spawn(move || {
            if let Err(e) = crate::network::announce(&node, &cid, &net) {
                tracing::warn!(container.id = %cid, error = %chain(&e), "gratuitous ARP failed");
            }
        });
    }
    agent.watch(&id);
    op.event("running", format!("pid {}", started.pid.unwrap_or(0)));
    Ok(started)
}

/// The bundle of a layer on this host (extracted once per layer).
pub(crate) fn materialize_layer(
    agent: &Agent,
    store: &Store,
    layer: &Manifest,
) -> Result<PathBuf, String> {
    let dest = agent.config.state_dir.join("bundles").join(&layer.id);
    if dest.join("config.json").is_file() {
        return Ok(dest);
    }
    let tmp = agent
        .config
        .state_dir
        .join("bundles")
        .join(format!(".{}.tmp", layer.id));
    let _ = std::fs::remove_dir_all(&tmp);
    store
        .materialize(layer, &tmp.join("layer"), &Default::default())
        .map_err(|e| chain(&e))?;
    let root = tmp.join("bundle");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("tar")
        .args([
            "--extract",
            "--numeric-owner",
            "--preserve-permissions",
            "--xattrs",
            "-f",
        ])
        .arg(tmp.join("layer/bundle.tar"))
        .arg("-C")
        .arg(&root)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot unpack layer {}: {}",
            layer.id,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&root, &dest)
        .map_err(|e| format!("cannot install bundle {}: {e}", dest.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dest)
}

/// The source's decision. Abort discards everything this move brought here.
pub fn finish(agent: &Arc<Agent>, move_id: &str, commit: bool) -> Result<(), String> {
    let record = agent
        .catalog
        .operation(move_id)
        .map_err(|e| e.to_string())?;
    let pending = agent
        .pending_manifests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(move_id)
        .unwrap_or_default();
    agent
        .placed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(move_id);
    let staged = transfer_store(agent, move_id);
    if commit {
        if let Err(e) = staged.unstage() {
            tracing::warn!(move.id = %move_id, error = %chain(&e), "cannot move the received chunks into the store");
        }
        for m in &pending {
            if let Err(e) = agent.store.commit(m) {
                tracing::warn!(move.id = %move_id, manifest = %m.id, error = %chain(&e), "cannot keep a moved-in manifest");
            }
        }
        agent
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(move_id);
        let _ = std::fs::remove_dir_all(move_dir(agent, move_id));
        if let Some(r) = &record {
            let _ = agent
                .catalog
                .journal_step(&r.id, "committed", "source committed");
        }
        return Ok(());
    }
    // A lazy copy still fetching memory: freeze it before its page source goes away.
    crate::lazy::stop_lost(agent, move_id, "the source aborted the move");
    if let Some(r) = &record {
        if let Ok(Some(rec)) = agent.catalog.container(&r.container_id) {
            let ours = agent
                .catalog
                .journal_of(move_id)
                .map(|j| j.iter().any(|e| e.step == "running"))
                .unwrap_or(false);
            if ours {
                if let Some(c) = agent.live(&rec.id) {
                    let _ = c.delete(true);
                }
                agent.network_down(&rec);
                let _ = agent.catalog.delete_container(&rec.id);
                let _ = agent.catalog.delete_schedule(&rec.id);
            }
        }
        let _ = agent
            .catalog
            .journal_step(&r.id, "aborted", "source aborted");
    }
    let _ = std::fs::remove_dir_all(move_dir(agent, move_id));
    staged.drop_stage();
    discard_received(agent, move_id);
    Ok(())
}

/// Deletes the manifests and chunks an aborted move brought.
fn discard_received(agent: &Agent, move_id: &str) {
    let received = agent
        .incoming
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(move_id)
        .unwrap_or_default();
    let mut live = HashSet::new();
    for id in agent.store.manifest_ids().unwrap_or_default() {
        if let Ok(m) = agent.store.manifest(&id) {
            if m.kind == "checkpoint"
                && m.provenance.source_node != agent.config.node
                && received.iter().any(|h| m.chunks().any(|c| &c.hash == h))
            {
                let _ = agent.store.remove_manifest(&id);
                continue;
            }
            live.extend(m.chunks().map(|c| c.hash.clone()));
        }
    }
    for h in received.difference(&live) {
        agent.store.remove_chunk(h);
    }
}

/// What this agent knows of a move.
pub fn status(agent: &Agent, move_id: &str) -> String {
    let Ok(journal) = agent.catalog.journal_of(move_id) else {
        return "unknown".into();
    };
    let steps: Vec<&str> = journal.iter().map(|e| e.step.as_str()).collect();
    if steps.contains(&"aborted") {
        "aborted"
    } else if steps.contains(&"committed") {
        "committed"
    } else if steps.contains(&"running") {
        "running"
    } else if steps.is_empty() {
        "unknown"
    } else {
        "receiving"
    }
    .into()
}

/// After a restart of the source agent: settle moves it was in the middle of. A container left
/// frozen by an interrupted move is killed if the target runs it, thawed otherwise.
pub async fn recover(agent: Arc<Agent>, interrupted: Vec<crate::catalog::OperationRecord>) {
    for op in interrupted.into_iter().filter(|o| o.kind == "move") {
        let journal = agent.catalog.journal_of(&op.id).unwrap_or_default();
        let Some(to) = journal
            .iter()
            .find(|e| e.step == "preflight")
            .and_then(|e| e.detail.strip_prefix("asking ").map(str::to_string))
        else {
            continue;
        };
        let frozen = journal.iter().any(|e| e.step == "freeze");
        if !frozen {
            continue;
        }
        let Ok(rec) = agent.record(&op.container_id) else {
            continue;
        };
        loop {
            let answer = match peer_client(&agent, &to).await {
                Ok(mut client) => client
                    .move_status(MoveStatusRequest {
                        move_id: op.id.clone(),
                    })
                    .await
                    .map(|r| r.into_inner().state)
                    .map_err(|s| chain(&s)),
                Err(e) => Err(e),
            };
            match answer.as_deref() {
                Ok("running") | Ok("committed") => {
                    tracing::warn!(container.id = %rec.id, operation.id = %op.id, "interrupted move: target runs the container; removing the source copy");
                    commit_source(&agent, &rec.id, &rec).await;
                    if let Ok(mut client) = peer_client(&agent, &to).await {
                        let _ = client
                            .finish(FinishRequest {
                                move_id: op.id.clone(),
                                commit: true,
                            })
                            .await;
                    }
                    break;
                }
                Ok(_) => {
                    tracing::warn!(container.id = %rec.id, operation.id = %op.id, "interrupted move: target does not run the container; thawing the source");
                    if let Ok(mut client) = peer_client(&agent, &to).await {
                        let _ = client
                            .finish(FinishRequest {
                                move_id: op.id.clone(),
                                commit: false,
                            })
                            .await;
                    }
                    if let Some(c) = agent.live(&rec.id) {
                        let node = agent.config.node.clone();
                        let has_ip = !rec.ip.is_empty();
                        let _ = tokio::task::spawn_blocking(move || {
                            if has_ip {
                                let _ = crate::network::set_link(&node, c.id(), true);
                            }
                            c.resume()
                        })
                        .await;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(container.id = %rec.id, error = %e, "interrupted move: cannot ask {to} yet; the source copy stays frozen");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
}
