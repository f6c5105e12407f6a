//! Backups: `leave_running` checkpoints of a running container, cut into the chunk store (so
//! consecutive backups share what did not change), kept by a retention policy, optionally
//! replicated to a peer over the peer API, verified by re-hashing (and by a throw-away restore),
//! and restored here or on a peer. Schedules run them ([`scheduler`]).
//!
//! A backup is visible (catalog row and manifest) only once every chunk it names is durable; a
//! backup cut short leaves nothing but unreferenced chunks, which garbage collection removes.

pub mod retention;
pub mod schedule;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1::{self as pb, OperationResult, PutBackupRequest};

use crate::catalog::{BackupRecord, ContainerRecord, Restart, ScheduleRecord};
use crate::daemon::{desired, now_unix, Agent};
use crate::error::AgentError;
use crate::moves::{self, Counters, Landing, LandingNet};
use crate::ops::OpHandle;
use crate::shim::chain;
use crate::store::{Manifest, MANIFEST_VERSION};

/// Kind of a backup's manifest in the store.
pub const MANIFEST_KIND: &str = "backup";
/// How long a restore test lets the restored copy run before checking it.
const RESTORE_TEST_RUN: Duration = Duration::from_secs(1);

/// The proto form of a backup record.
pub fn to_proto(b: &BackupRecord) -> pb::Backup {
    pb::Backup {
        backup_id: b.id.clone(),
        container_id: b.container_id.clone(),
        origin: b.origin.clone(),
        created_unix: b.created_unix,
        frozen_ms: b.frozen_ms,
        logical_bytes: b.logical_bytes,
        stored_bytes: b.stored_bytes,
        added_bytes: b.added_bytes,
        sent_bytes: b.sent_bytes,
        replicas: b.replicas.clone(),
        verified_unix: b.verified_unix,
        verified_ok: b.verified_ok,
        verify_detail: b.verify_detail.clone(),
        ip: b.ip.clone(),
    }
}

/// The proto form of a schedule.
pub fn schedule_to_proto(s: &ScheduleRecord) -> pb::BackupSchedule {
    pb::BackupSchedule {
        container_id: s.container_id.clone(),
        every_secs: s.every_secs,
        cron: s.cron.clone(),
        keep: s.keep,
        keep_daily: s.keep_daily,
        replicate_to: s.replicate_to.clone(),
        last_run_unix: s.last_run_unix,
        next_run_unix: s.next_run_unix,
        last_error: s.last_error.clone(),
    }
}

/// A new backup id: `<container>-<UTC time>-<4 hex>`.
fn new_id(container: &str, now: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{container}-{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        &uuid::Uuid::new_v4().simple().to_string()[..4]
    )
}

fn scratch(agent: &Agent, what: &str, op_id: &str) -> PathBuf {
    agent.config.scratch_dir().join(format!("{what}-{op_id}"))
}

/// Takes a backup of container `id` and, if asked (or its schedule says so), replicates it;
/// then applies the container's retention policy, if it has a schedule.
pub async fn backup_now(
    agent: Arc<Agent>,
    op: &OpHandle,
    id: &str,
    replicate_to: &str,
) -> Result<OperationResult, String> {
    let schedule = agent.catalog.schedule(id).map_err(|e| chain(&e))?;
    let to = if replicate_to.is_empty() {
        schedule
            .as_ref()
            .map(|s| s.replicate_to.clone())
            .unwrap_or_default()
    } else {
        replicate_to.to_string()
    };
    if !to.is_empty() && !agent.config.peers.contains_key(&to) {
        return Err(format!("unknown host {to}: not in this agent's [peers]"));
    }
    // Blocking work on this async thread (a backup holds the op by reference throughout).
    let (mut rec, manifest, layer) = tokio::task::block_in_place(|| take(&agent, op, id))?;
    let (keep, keep_daily) = schedule
        .as_ref()
        .map(|s| (s.keep, s.keep_daily))
        .unwrap_or((0, 0));
    if !to.is_empty() {
        replicate(
            &agent, op, &mut rec, &manifest, &layer, &to, keep, keep_daily,
        )
        .await
        .map_err(|e| {
            format!(
                "backup {} was taken here, but copying it to {to} failed: {e}",
                rec.id
            )
        })?;
    }
    if schedule.is_some() {
        tokio::task::block_in_place(|| {
            apply_retention(&agent, Some(op), id, &agent.config.node, keep, keep_daily)
        })?;
    }
    op.event(
        "done",
        format!(
            "backup {}: frozen {} ms, {} bytes logical, {} bytes added to the store{}",
            rec.id,
            rec.frozen_ms,
            rec.logical_bytes,
            rec.added_bytes,
            if to.is_empty() {
                String::new()
            } else {
                format!(", {} bytes sent to {to}", rec.sent_bytes)
            }
        ),
    );
    Ok(OperationResult {
        backups: vec![to_proto(&rec)],
        ..Default::default()
    })
}

/// The local part of a backup: dump (the container keeps running), store, commit, record.
fn take(
    agent: &Arc<Agent>,
    op: &OpHandle,
    id: &str,
) -> Result<(BackupRecord, Manifest, Manifest), String> {
    let crec = agent.record(id).map_err(|e| e.to_string())?;
    let _busy = agent.claim(id).map_err(|e| e.to_string())?;
    let c = agent
        .live(id)
        .filter(|c| {
            matches!(
                c.status(),
                runtime::Status::Running | runtime::Status::Paused
            )
        })
        .ok_or_else(|| format!("container {id} is not running"))?;
    // Chunks written from here on are named by a manifest only at the end.
    let _store = agent.store_lock.blocking_read();
    op.event("layer", "storing the bundle layer");
    // What the layer adds to the store (the first time, or when the bundle changed) is part of
    // what this backup costs.
    let mut layer_added = 0;
    let layer = moves::layer_manifest(agent, std::path::Path::new(&crec.bundle), |r, new| {
        if new {
            layer_added += agent.store.stored_size(&r.hash);
        }
    })?;
    let dir = scratch(agent, "backup", op.id());
    let was_running = c.status() == runtime::Status::Running;
    if was_running {
        // Journaled: recovery thaws a container whose backup was cut short after this.
        op.event(
            "freeze",
            "freezing and dumping with CRIU; the container keeps running",
        );
    }
    let hold = moves::fault("backup-hold").and_then(|v| v.parse::<u64>().ok());
    let opts = runtime::CheckpointOpts {
        leave_running: true,
        tcp_established: !crec.ip.is_empty(),
        ..Default::default()
    };
    let dumped = c.checkpoint_with(&dir, opts, |_| {
        if let Some(ms) = hold {
            tracing::info!(
                "backup-hold: holding the container frozen for {ms} ms (injected fault)"
            );
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(())
    });
    let stored = dumped.map_err(|e| chain(&e)).and_then(|done| {
        op.event(
            "store",
            format!(
                "dumped in {} ms (frozen {} ms); storing the new chunks",
                done.dump_time.as_millis(),
                done.frozen.as_millis()
            ),
        );
        let mut added = 0;
        let mut seen = HashSet::new();
        let mut stored = 0;
        let files = agent
            .store
            .ingest_dir(&dir, |r, new| {
                if seen.insert(r.hash.clone()) {
                    let size = agent.store.stored_size(&r.hash);
                    stored += size;
                    if new {
                        added += size;
                    }
                }
            })
            .map_err(|e| chain(&e))?;
        Ok((done, files, stored, added))
    });
    let provenance = moves::provenance(agent, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (done, files, stored_bytes, added_bytes) = stored?;
    let now = now_unix();
    let m = Manifest {
        version: MANIFEST_VERSION,
        id: new_id(id, now),
        kind: MANIFEST_KIND.into(),
        container_id: id.to_string(),
        files,
        provenance,
    };
    agent.store.commit(&m).map_err(|e| chain(&e))?;
    let rec = BackupRecord {
        id: m.id.clone(),
        container_id: id.to_string(),
        origin: agent.config.node.clone(),
        layer_id: layer.id.clone(),
        created_unix: now,
        frozen_ms: done.frozen.as_millis() as u64,
        logical_bytes: m.logical_bytes(),
        stored_bytes,
        added_bytes: added_bytes + layer_added,
        restart: crec.restart.as_str().to_string(),
        ip: crec.ip.clone(),
        mac: crec.mac.clone(),
        container_created_unix: crec.created_unix,
        ..Default::default()
    };
    if let Err(e) = agent.catalog.put_backup(&rec) {
        let _ = agent.store.remove_manifest(&m.id);
        return Err(chain(&e));
    }
    agent.metrics.backups.inc();
    agent
        .metrics
        .backup_bytes_added
        .inc_by(added_bytes + layer_added);
    agent
        .metrics
        .backup_frozen
        .observe(done.frozen.as_secs_f64());
    Ok((rec, m, layer))
}

/// Copies a backup to peer `to`: the chunks it lacks, then the manifests and record.
#[allow(clippy::too_many_arguments)]
async fn replicate(
    agent: &Arc<Agent>,
    op: &OpHandle,
    rec: &mut BackupRecord,
    m: &Manifest,
    layer: &Manifest,
    to: &str,
    keep: u32,
    keep_daily: u32,
) -> Result<(), String> {
    op.event("replicate", format!("copying {} to {to}", rec.id));
    let mut client = moves::peer_client(agent, to).await?;
    let mut counters = Counters::default();
    moves::send_chunks(agent, &mut client, to, op, layer, &mut counters).await?;
    moves::send_chunks(agent, &mut client, to, op, m, &mut counters).await?;
    let req = PutBackupRequest {
        transfer_id: op.id().to_string(),
        backup: Some(to_proto(rec)),
        manifest: serde_json::to_vec(m).map_err(|e| e.to_string())?,
        layer_manifest: serde_json::to_vec(layer).map_err(|e| e.to_string())?,
        restart: rec.restart.clone(),
        mac: rec.mac.clone(),
        container_created_unix: rec.container_created_unix,
        keep,
        keep_daily,
    };
    client
        .put_backup(req)
        .await
        .map_err(|s| format!("{to}: {}", chain(&s)))?;
    rec.sent_bytes += counters.sent;
    if !rec.replicas.iter().any(|r| r == to) {
        rec.replicas.push(to.to_string());
    }
    agent.catalog.put_backup(rec).map_err(|e| chain(&e))?;
    agent.metrics.backup_bytes_sent.inc_by(counters.sent);
    op.event(
        "replicate",
        format!("{to} holds {} ({} bytes sent)", rec.id, counters.sent),
    );
    Ok(())
}

/// Target side of replication: keeps the backup whose chunks arrived under `transfer_id`,
/// then applies the source's retention policy to the copies from that source.
pub fn accept_replica(agent: &Arc<Agent>, req: &PutBackupRequest) -> Result<u32, String> {
    let b = req.backup.as_ref().ok_or("no backup in the request")?;
    let m: Manifest =
        serde_json::from_slice(&req.manifest).map_err(|e| format!("bad backup manifest: {e}"))?;
    let layer: Manifest = serde_json::from_slice(&req.layer_manifest)
        .map_err(|e| format!("bad layer manifest: {e}"))?;
    if m.id != b.backup_id || m.kind != MANIFEST_KIND || m.container_id != b.container_id {
        return Err(format!(
            "manifest {} does not describe backup {}",
            m.id, b.backup_id
        ));
    }
    runtime::id::validate_id(&b.container_id).map_err(|e| e.to_string())?;
    {
        let _store = agent.store_lock.blocking_read();
        moves::transfer_store(agent, &req.transfer_id)
            .unstage()
            .map_err(|e| chain(&e))?;
        agent.store.commit(&layer).map_err(|e| chain(&e))?;
        agent.store.commit(&m).map_err(|e| chain(&e))?;
    }
    let rec = BackupRecord {
        id: b.backup_id.clone(),
        container_id: b.container_id.clone(),
        origin: b.origin.clone(),
        layer_id: layer.id.clone(),
        created_unix: b.created_unix,
        frozen_ms: b.frozen_ms,
        logical_bytes: b.logical_bytes,
        stored_bytes: b.stored_bytes,
        added_bytes: b.added_bytes,
        restart: req.restart.clone(),
        ip: b.ip.clone(),
        mac: req.mac.clone(),
        container_created_unix: req.container_created_unix,
        ..Default::default()
    };
    agent.catalog.put_backup(&rec).map_err(|e| chain(&e))?;
    agent
        .incoming
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&req.transfer_id);
    tracing::info!(backup.id = %rec.id, container.id = %rec.container_id, origin = %rec.origin, "kept a replicated backup");
    if req.keep > 0 {
        apply_retention(
            agent,
            None,
            &rec.container_id,
            &rec.origin,
            req.keep,
            req.keep_daily,
        )?;
    }
    Ok(agent
        .catalog
        .backups(Some(&rec.container_id))
        .map_err(|e| chain(&e))?
        .iter()
        .filter(|x| x.origin == rec.origin)
        .count() as u32)
}

/// Deletes the backups of container `id` taken on `origin` that the policy lets go, then
/// frees their chunks.
fn apply_retention(
    agent: &Arc<Agent>,
    op: Option<&OpHandle>,
    id: &str,
    origin: &str,
    keep: u32,
    keep_daily: u32,
) -> Result<(), String> {
    let all: Vec<BackupRecord> = agent
        .catalog
        .backups(Some(id))
        .map_err(|e| chain(&e))?
        .into_iter()
        .filter(|b| b.origin == origin)
        .collect();
    let expired = retention::expired(&all, keep, keep_daily);
    if expired.is_empty() {
        return Ok(());
    }
    for b in &expired {
        forget(agent, b)?;
    }
    let msg = format!(
        "retention (keep {keep}, daily {keep_daily}) removed {}",
        expired.join(", ")
    );
    match op {
        Some(op) => op.event("retention", msg),
        None => tracing::info!(container.id = %id, "{msg}"),
    }
    agent.collect_garbage(Duration::ZERO).map(|_| ())
}

/// Removes a backup's record and manifest (its chunks go at the next garbage collection).
fn forget(agent: &Agent, id: &str) -> Result<(), String> {
    agent.store.remove_manifest(id).map_err(|e| chain(&e))?;
    agent.catalog.delete_backup(id).map_err(|e| chain(&e))
}

/// `backup rm`: removes a backup and frees the chunks nothing else references.
pub fn remove(agent: &Arc<Agent>, id: &str) -> Result<(), AgentError> {
    find(agent, id)?;
    forget(agent, id).map_err(AgentError::Internal)?;
    agent
        .collect_garbage(Duration::ZERO)
        .map_err(AgentError::Internal)?;
    Ok(())
}

/// A backup by id.
pub fn find(agent: &Agent, id: &str) -> Result<BackupRecord, AgentError> {
    agent
        .catalog
        .backup(id)?
        .ok_or_else(|| AgentError::NotFound(format!("backup {id} does not exist")))
}

/// Which backup `backup restore` means: `backup_id`, or the newest of container `id`.
pub fn choose(agent: &Agent, id: &str, backup_id: &str) -> Result<BackupRecord, AgentError> {
    if !backup_id.is_empty() {
        let b = find(agent, backup_id)?;
        if !id.is_empty() && b.container_id != id {
            return Err(AgentError::InvalidArgument(format!(
                "backup {backup_id} is of container {}, not {id}",
                b.container_id
            )));
        }
        return Ok(b);
    }
    agent
        .catalog
        .backups(Some(id))?
        .into_iter()
        .next()
        .ok_or_else(|| AgentError::NotFound(format!("container {id} has no backup on this host")))
}

/// Lists backups with the store space their distinct chunks take.
pub fn list(agent: &Agent, container_id: &str) -> Result<pb::ListBackupsResponse, AgentError> {
    let filter = (!container_id.is_empty()).then_some(container_id);
    let backups = agent.catalog.backups(filter)?;
    let mut seen = HashSet::new();
    let mut stored_bytes = 0;
    for b in &backups {
        for id in [&b.id, &b.layer_id] {
            if let Ok(m) = agent.store.manifest(id) {
                for r in m.chunks() {
                    if seen.insert(r.hash.clone()) {
                        stored_bytes += agent.store.stored_size(&r.hash);
                    }
                }
            }
        }
    }
    Ok(pb::ListBackupsResponse {
        logical_bytes: backups.iter().map(|b| b.logical_bytes).sum(),
        stored_bytes,
        backups: backups.iter().map(to_proto).collect(),
    })
}

/// Restores container `as_id` from backup `b` on this host. With `isolated`, the container gets
/// its address in a namespace connected to nothing and no restart policy (a restore test).
pub fn restore(
    agent: &Arc<Agent>,
    op: &OpHandle,
    b: &BackupRecord,
    as_id: &str,
    isolated: bool,
) -> Result<pb::Container, String> {
    runtime::id::validate_id(as_id).map_err(|e| e.to_string())?;
    let _busy = agent.claim(as_id).map_err(|e| e.to_string())?;
    let old = agent.catalog.container(as_id).map_err(|e| chain(&e))?;
    if let Some(c) = agent.live(as_id) {
        if c.status() != runtime::Status::Stopped {
            return Err(format!(
                "container {as_id} runs here ({}): remove it first, or restore under another name with --as",
                c.status()
            ));
        }
    }
    let m = agent
        .store
        .manifest(&b.id)
        .map_err(|e| format!("backup {} cannot be restored: {}", b.id, chain(&e)))?;
    let layer = agent
        .store
        .manifest(&b.layer_id)
        .map_err(|e| format!("backup {} cannot be restored: {}", b.id, chain(&e)))?;
    op.event(
        "verify",
        format!("verifying the {} chunks of {}", m.chunks().count(), b.id),
    );
    // Every chunk is checked before anything starts: a damaged backup restores nothing.
    let chunks: Vec<_> = m.chunks().chain(layer.chunks()).cloned().collect();
    agent
        .store
        .verify_chunks(&chunks)
        .map_err(|e| format!("backup {} cannot be restored: {}", b.id, chain(&e)))?;
    if old.is_some() {
        // A stopped container of that name gives way.
        if let Some(c) = agent.live(as_id) {
            c.delete(true).map_err(|e| chain(&e))?;
        }
        if let Some(o) = &old {
            agent.network_down(o);
        }
        agent
            .catalog
            .delete_container(as_id)
            .map_err(|e| chain(&e))?;
    }
    let rec = ContainerRecord {
        id: as_id.to_string(),
        bundle: String::new(),
        restart: if isolated {
            Restart::No
        } else {
            Restart::parse(&b.restart).unwrap_or(Restart::No)
        },
        desired: desired::RUNNING.into(),
        exit_code: None,
        restarts: 0,
        created_unix: b.container_created_unix,
        ip: b.ip.clone(),
        mac: b.mac.clone(),
    };
    let landing = Landing {
        images_ready: false,
        store: agent.store.clone(),
        layer: &layer,
        checkpoint: &m,
        dir: scratch(agent, "restore", op.id()),
        network: if isolated {
            LandingNet::Isolated
        } else {
            LandingNet::Bridge { check_free: true }
        },
        tcp_close: true,
        lazy_move: None,
        trusted: chunks.into_iter().map(|r| r.hash).collect(),
    };
    let landed = moves::land(agent, op, rec.clone(), &landing);
    let _ = std::fs::remove_dir_all(&landing.dir);
    landed?;
    let rec = agent.record(as_id).map_err(|e| e.to_string())?;
    Ok(agent.describe(&rec))
}

/// `backup restore` on this host, or (with `on` naming a peer) on that peer after copying the
/// backup there.
pub async fn restore_anywhere(
    agent: Arc<Agent>,
    op: &OpHandle,
    req: &pb::RestoreBackupRequest,
) -> Result<OperationResult, String> {
    let b = choose(&agent, &req.id, &req.backup_id).map_err(|e| e.to_string())?;
    let as_id = if req.r#as.is_empty() {
        b.container_id.clone()
    } else {
        req.r#as.clone()
    };
    let container = if req.on.is_empty() || req.on == agent.config.node {
        tokio::task::block_in_place(|| restore(&agent, op, &b, &as_id, false))?
    } else {
        let to = req.on.clone();
        if !agent.config.peers.contains_key(&to) {
            return Err(format!("unknown host {to}: not in this agent's [peers]"));
        }
        let m = agent.store.manifest(&b.id).map_err(|e| chain(&e))?;
        let layer = agent.store.manifest(&b.layer_id).map_err(|e| chain(&e))?;
        let mut b = b;
        replicate(&agent, op, &mut b, &m, &layer, &to, 0, 0).await?;
        op.event(
            "restore",
            format!("{to} is restoring {as_id} from {}", b.id),
        );
        let mut client = moves::peer_client(&agent, &to).await?;
        client
            .restore_backup(pb::PeerRestoreBackupRequest {
                backup_id: b.id.clone(),
                r#as: as_id,
            })
            .await
            .map_err(|s| format!("{to}: {}", chain(&s)))?
            .into_inner()
            .container
            .ok_or_else(|| format!("{to} restored nothing"))?
    };
    op.event(
        "done",
        format!("{} runs as pid {}", container.id, container.pid),
    );
    Ok(OperationResult {
        container: Some(container),
        ..Default::default()
    })
}

/// Verifies backup `b`: every chunk of it and of its layer re-hashed; with `restore_test`, it
/// is also restored as a throw-away container with no network, checked to run, and removed.
/// The outcome is recorded on the backup.
pub fn verify(
    agent: &Arc<Agent>,
    op: &OpHandle,
    b: &BackupRecord,
    restore_test: bool,
) -> BackupRecord {
    let outcome = check(agent, op, b, restore_test);
    let mut b = b.clone();
    b.verified_unix = now_unix();
    b.verified_ok = outcome.is_ok();
    b.verify_detail = match outcome {
        Ok(detail) => detail,
        Err(e) => e,
    };
    // The backup may have been removed meanwhile: record only if it is still there.
    if agent.catalog.backup(&b.id).ok().flatten().is_some() {
        let _ = agent.catalog.put_backup(&b);
    }
    op.event(
        "verify",
        format!(
            "{}: {}{}",
            b.id,
            if b.verified_ok { "ok" } else { "FAILED" },
            if b.verify_detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", b.verify_detail)
            }
        ),
    );
    b
}

fn check(
    agent: &Arc<Agent>,
    op: &OpHandle,
    b: &BackupRecord,
    restore_test: bool,
) -> Result<String, String> {
    let m = agent.store.manifest(&b.id).map_err(|e| chain(&e))?;
    let layer = agent.store.manifest(&b.layer_id).map_err(|e| chain(&e))?;
    let chunks: Vec<_> = m.chunks().chain(layer.chunks()).cloned().collect();
    op.event(
        "verify",
        format!("re-hashing the {} chunks of {}", chunks.len(), b.id),
    );
    agent.store.verify_chunks(&chunks).map_err(|e| chain(&e))?;
    let mut detail = format!("{} chunks verified", chunks.len());
    if restore_test {
        let test_id = format!(
            "{}-verify-{}",
            b.container_id,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        // Journaled: recovery removes the test container if the agent stops mid-test.
        op.event("restore-test", test_id.clone());
        let ran = restore(agent, op, b, &test_id, true).and_then(|c| {
            std::thread::sleep(RESTORE_TEST_RUN);
            match agent.live(&test_id).map(|c| c.status()) {
                Some(runtime::Status::Running) => Ok(c.pid),
                other => Err(format!(
                    "the restored copy did not keep running ({})",
                    other.map(|s| s.to_string()).unwrap_or("gone".into())
                )),
            }
        });
        remove_test_container(agent, &test_id);
        let pid = ran.map_err(|e| format!("restore test: {e}"))?;
        detail = format!(
            "{detail}; restored as {test_id} (pid {pid}), ran {} ms, removed",
            RESTORE_TEST_RUN.as_millis()
        );
    }
    Ok(detail)
}

fn remove_test_container(agent: &Arc<Agent>, id: &str) {
    let Ok(Some(rec)) = agent.catalog.container(id) else {
        return;
    };
    let _busy = agent.claim(id);
    if let Ok(mut r) = agent.record(id) {
        r.desired = desired::STOPPED.into();
        let _ = agent.catalog.put_container(&r);
    }
    if let Some(c) = agent.live(id) {
        if let Err(e) = c.delete(true) {
            tracing::warn!(container.id = %id, error = %chain(&e), "cannot remove a restore-test container");
        }
    }
    agent.network_down(&rec);
    let _ = agent.catalog.delete_container(id);
    for p in [agent.exit_path(id), agent.log_file(id)] {
        let _ = std::fs::remove_file(p);
    }
}

/// After a restart: settles backups, verifications and restores the previous agent process
/// left in the middle. A container frozen for a backup is thawed; a restore-test container
/// is removed; scratch images are deleted. Nothing of a cut-short backup was ever visible.
pub fn recover(agent: &Arc<Agent>, interrupted: &[crate::catalog::OperationRecord]) {
    for op in interrupted {
        let journal = agent.catalog.journal_of(&op.id).unwrap_or_default();
        match op.kind.as_str() {
            "backup" => {
                let _ = std::fs::remove_dir_all(scratch(agent, "backup", &op.id));
                let froze = journal.iter().any(|e| e.step == "freeze");
                if let Some(c) = agent.live(&op.container_id) {
                    if froze && c.status() == runtime::Status::Paused {
                        tracing::warn!(container.id = %op.container_id, operation.id = %op.id, "interrupted backup left the container frozen; thawing it");
                        if let Err(e) = c.resume() {
                            tracing::error!(container.id = %op.container_id, error = %chain(&e), "cannot thaw");
                        }
                    }
                }
            }
            "backup-verify" | "backup-restore" => {
                let _ = std::fs::remove_dir_all(scratch(agent, "restore", &op.id));
                for e in journal.iter().filter(|e| e.step == "restore-test") {
                    tracing::warn!(container.id = %e.detail, "removing the container of an interrupted restore test");
                    remove_test_container(agent, &e.detail);
                }
            }
            _ => {}
        }
    }
}

/// Runs due schedules, one backup per container at a time. A schedule whose time passed while
/// the agent was down runs once, then keeps its rhythm from then on.
pub fn scheduler(agent: Arc<Agent>) {
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = now_unix();
            let Ok(schedules) = agent.catalog.schedules() else {
                continue;
            };
            for mut s in schedules {
                // Due, and neither backing up nor held by another operation (a move, a
                // checkpoint): a busy container's run waits until it is free.
                if s.next_run_unix > now
                    || agent.is_busy(&s.container_id)
                    || running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&s.container_id)
                {
                    continue;
                }
                let cron = (!s.cron.is_empty())
                    .then(|| schedule::Cron::parse(&s.cron).ok())
                    .flatten();
                s.last_run_unix = now;
                s.next_run_unix =
                    schedule::next_run(s.every_secs, cron.as_ref(), now).unwrap_or(i64::MAX);
                if agent.catalog.put_schedule(&s).is_err() {
                    continue;
                }
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(s.container_id.clone());
                let (agent, running) = (agent.clone(), running.clone());
                tokio::spawn(async move {
                    let id = s.container_id.clone();
                    let op = agent.ops.start("backup", &id);
                    op.event("schedule", "scheduled backup");
                    let span = op.span.clone();
                    let result = tracing::Instrument::instrument(
                        backup_now(agent.clone(), &op, &id, ""),
                        span,
                    )
                    .await;
                    let error = result.as_ref().err().cloned().unwrap_or_default();
                    if !error.is_empty() {
                        tracing::warn!(container.id = %id, error = %error, "scheduled backup failed");
                    }
                    op.finish(result);
                    // Record the outcome on the schedule, if it still exists.
                    if let Ok(Some(mut cur)) = agent.catalog.schedule(&id) {
                        cur.last_error = error;
                        let _ = agent.catalog.put_schedule(&cur);
                    }
                    running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                });
            }
        }
    });
}

/// A moved-in container's schedule: kept here, its next run one interval (or cron slot) from
/// now. Replication to this host would be pointless, so it becomes replication to `source`,
/// where the container came from.
pub fn adopt_schedule(
    agent: &Agent,
    op: &OpHandle,
    id: &str,
    s: &pb::BackupSchedule,
    source: &str,
) {
    let cron = (!s.cron.is_empty())
        .then(|| schedule::Cron::parse(&s.cron).ok())
        .flatten();
    let now = now_unix();
    let replicate_to = if s.replicate_to == agent.config.node {
        source.to_string()
    } else {
        s.replicate_to.clone()
    };
    let rec = ScheduleRecord {
        container_id: id.to_string(),
        every_secs: s.every_secs,
        cron: s.cron.clone(),
        keep: s.keep.max(1),
        keep_daily: s.keep_daily,
        replicate_to,
        last_run_unix: s.last_run_unix,
        next_run_unix: schedule::next_run(s.every_secs, cron.as_ref(), now).unwrap_or(i64::MAX),
        last_error: String::new(),
    };
    match agent.catalog.put_schedule(&rec) {
        Ok(()) => op.event(
            "schedule",
            format!(
                "backup schedule kept (replicating to {})",
                if rec.replicate_to.is_empty() {
                    "nowhere"
                } else {
                    &rec.replicate_to
                }
            ),
        ),
        Err(e) => {
            tracing::warn!(container.id = %id, error = %chain(&e), "cannot keep the moved container's backup schedule")
        }
    }
}

/// `backup schedule`: validates and stores a schedule; the first run is one interval (or the
/// next cron slot) from now.
pub fn set_schedule(
    agent: &Arc<Agent>,
    req: &pb::ScheduleBackupRequest,
) -> Result<ScheduleRecord, AgentError> {
    agent.record(&req.id)?;
    let bad = |m: String| AgentError::InvalidArgument(m);
    let cron = match (req.every_secs, req.cron.trim()) {
        (0, "") => {
            return Err(bad(
                "a schedule needs an interval (--every) or a cron expression (--at)".into(),
            ))
        }
        (n, c) if n > 0 && !c.is_empty() => {
            return Err(bad(
                "give either an interval (--every) or a cron expression (--at), not both".into(),
            ))
        }
        (_, "") => None,
        (_, c) => Some(schedule::Cron::parse(c).map_err(bad)?),
    };
    if req.keep == 0 {
        return Err(bad("--keep must be at least 1".into()));
    }
    if !req.replicate_to.is_empty() && !agent.config.peers.contains_key(&req.replicate_to) {
        return Err(bad(format!(
            "unknown host {}: not in this agent's [peers]",
            req.replicate_to
        )));
    }
    let now = now_unix();
    let next = schedule::next_run(req.every_secs, cron.as_ref(), now).ok_or_else(|| {
        bad(format!(
            "cron expression {:?} never matches in the next five years",
            req.cron
        ))
    })?;
    let previous = agent.catalog.schedule(&req.id)?;
    let s = ScheduleRecord {
        container_id: req.id.clone(),
        every_secs: req.every_secs,
        cron: req.cron.trim().to_string(),
        keep: req.keep,
        keep_daily: req.keep_daily,
        replicate_to: req.replicate_to.clone(),
        last_run_unix: previous.map(|p| p.last_run_unix).unwrap_or(0),
        next_run_unix: next,
        last_error: String::new(),
    };
    agent.catalog.put_schedule(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_store_and_container_names() {
        let id = new_id("web", 1_764_113_400);
        assert!(id.starts_with("web-20251125T233000Z-"), "{id}");
        assert!(crate::store::valid_id(&id));
        assert!(runtime::id::validate_id(&id).is_ok());
        assert_ne!(new_id("web", 0), new_id("web", 0));
    }
}
