//! The local `Agent` API (CLI → agent over the unix socket).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::v1::agent_server::Agent as AgentApi;
use proto::v1::*;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::daemon::{checkpoint_to_proto, restart_from_proto, Agent};
use crate::error::AgentError;

type EventStream = Pin<Box<dyn Stream<Item = Result<OperationEvent, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// The local API service.
pub struct LocalApi {
    agent: Arc<Agent>,
}

impl LocalApi {
    /// Serves `agent`.
    pub fn new(agent: Arc<Agent>) -> LocalApi {
        LocalApi { agent }
    }

    /// Runs a blocking daemon call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        method: &str,
        f: impl FnOnce(Arc<Agent>) -> Result<T, AgentError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        self.agent.metrics.rpcs.with_label_values(&[method]).inc();
        let agent = self.agent.clone();
        let r = tokio::task::spawn_blocking(move || f(agent))
            .await
            .map_err(|e| Status::internal(format!("handler panicked: {e}")))?;
        if let Err(e) = &r {
            tracing::warn!(method, error = %e, "request failed");
        }
        r.map(Response::new).map_err(Status::from)
    }

    fn watch_stream(&self, op_id: &str) -> Result<EventStream, Status> {
        let (history, rx) = self
            .agent
            .ops
            .watch(op_id)
            .ok_or_else(|| Status::not_found(format!("operation {op_id} does not exist")))?;
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut ended = false;
            for e in history {
                ended |= e.done.is_some();
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
            let Some(mut rx) = rx else { return };
            while let Ok(e) = rx.recv().await {
                let last = e.done.is_some();
                if tx.send(Ok(e)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out)))
    }
}

#[tonic::async_trait]
impl AgentApi for LocalApi {
    async fn run(&self, req: Request<RunRequest>) -> Result<Response<Container>, Status> {
        let r = req.into_inner();
        self.blocking("run", move |a| {
            a.run(
                &r.id,
                &PathBuf::from(&r.bundle),
                restart_from_proto(r.restart),
                &r.ip,
            )
        })
        .await
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.blocking("list", |a| {
            let containers = a
                .catalog
                .containers()?
                .iter()
                .map(|r| a.describe(r))
                .collect();
            Ok(ListResponse { containers })
        })
        .await
    }

    async fn inspect(&self, req: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        let id = req.into_inner().id;
        self.blocking("inspect", move |a| Ok(a.describe(&a.record(&id)?)))
            .await
    }

    type LogsStream = LogStream;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogStream>, Status> {
        let r = req.into_inner();
        self.agent.metrics.rpcs.with_label_values(&["logs"]).inc();
        self.agent.record(&r.id).map_err(Status::from)?;
        let path = self.agent.log_file(&r.id);
        let agent = self.agent.clone();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut offset = 0u64;
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            let start = tail_start(&data, r.tail as usize);
            if tx
                .send(Ok(LogChunk {
                    data: data[start..].to_vec(),
                }))
                .await
                .is_err()
            {
                return;
            }
            offset += data.len() as u64;
            if !r.follow {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if agent.catalog.container(&r.id).ok().flatten().is_none() {
                    return;
                }
                let Ok(mut f) = tokio::fs::File::open(&path).await else {
                    continue;
                };
                let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // rotated
                }
                if len == offset {
                    continue;
                }
                let mut buf = Vec::with_capacity((len - offset) as usize);
                if f.seek(std::io::SeekFrom::Start(offset)).await.is_err()
                    || f.read_to_end(&mut buf).await.is_err()
                {
                    continue;
                }
                offset += buf.len() as u64;
                if tx.send(Ok(LogChunk { data: buf })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let r = req.into_inner();
        self.blocking("exec", move |a| a.exec(&r.id, r.args, r.env))
            .await
    }

    async fn stop(&self, req: Request<StopRequest>) -> Result<Response<Container>, Status> {
        let r = req.into_inner();
        let timeout = Duration::from_secs(if r.timeout_secs == 0 {
            10
        } else {
            r.timeout_secs as u64
        });
        self.blocking("stop", move |a| a.stop(&r.id, timeout)).await
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<Container>, Status> {
        let r = req.into_inner();
        self.blocking("kill", move |a| a.kill(&r.id, &r.signal, r.all))
            .await
    }

    async fn remove(
        &self,
        req: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        let r = req.into_inner();
        self.blocking("remove", move |a| {
            a.remove(&r.id, r.force).map(|()| RemoveResponse {})
        })
        .await
    }

    async fn pause(&self, req: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        let id = req.into_inner().id;
        self.blocking("pause", move |a| a.pause(&id, true)).await
    }

    async fn resume(&self, req: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        let id = req.into_inner().id;
        self.blocking("resume", move |a| a.pause(&id, false)).await
    }

    type CheckpointStream = EventStream;

    async fn checkpoint(
        &self,
        req: Request<CheckpointRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["checkpoint"])
            .inc();
        self.agent.record(&r.id).map_err(Status::from)?;
        let op = self.agent.ops.start("checkpoint", &r.id);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let result = agent.checkpoint(&op, &r.id, r.leave_running, r.tcp_established);
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    type RestoreStream = EventStream;

    async fn restore(&self, req: Request<RestoreRequest>) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["restore"])
            .inc();
        runtime::id::validate_id(&r.id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let op = self.agent.ops.start("restore", &r.id);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let result = agent.restore(&op, &r.checkpoint_id, &r.id);
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    type MoveStream = EventStream;

    async fn r#move(&self, req: Request<MoveRequest>) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent.metrics.rpcs.with_label_values(&["move"]).inc();
        self.agent.record(&r.id).map_err(Status::from)?;
        if !self.agent.config.peers.contains_key(&r.to) {
            return Err(Status::invalid_argument(format!(
                "unknown host {}: not in this agent's [peers]",
                r.to
            )));
        }
        let op = self.agent.ops.start("move", &r.id);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let span = op.span.clone();
            let result = tracing::Instrument::instrument(
                crate::moves::move_out(agent.clone(), &op, &r.id, &r.to, r.dry_run, &r.mode, r.yes),
                span,
            )
            .await;
            let result = result.map(|mut res| {
                if let Some(rec) = res
                    .r#move
                    .as_ref()
                    .filter(|m| !m.dry_run)
                    .map(|m| m.target.clone())
                {
                    tracing::info!(target = %rec, "move finished");
                }
                res.container = None;
                res
            });
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let r = req.into_inner();
        self.blocking("list_checkpoints", move |a| {
            let filter = (!r.container_id.is_empty()).then_some(r.container_id.as_str());
            let checkpoints = a
                .catalog
                .checkpoints(filter)?
                .iter()
                .map(checkpoint_to_proto)
                .collect();
            Ok(ListCheckpointsResponse { checkpoints })
        })
        .await
    }

    async fn list_operations(
        &self,
        req: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let limit = match req.into_inner().limit {
            0 => 50,
            n => n,
        };
        self.blocking("list_operations", move |a| {
            let operations = a
                .catalog
                .operations(limit)?
                .iter()
                .map(crate::ops::to_proto)
                .collect();
            Ok(ListOperationsResponse { operations })
        })
        .await
    }

    type WatchOperationStream = EventStream;

    async fn watch_operation(
        &self,
        req: Request<OperationRef>,
    ) -> Result<Response<EventStream>, Status> {
        let id = req.into_inner().operation_id;
        Ok(Response::new(self.watch_stream(&id)?))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<AgentStatus>, Status> {
        self.blocking("status", |a| {
            let report = a.criu_report();
            let (criu_version, criu_check, criu_features) = match report {
                Ok(r) => (
                    r.version.to_string(),
                    if r.looks_good {
                        "Looks good.".to_string()
                    } else {
                        r.check_output
                            .lines()
                            .last()
                            .unwrap_or("criu check failed")
                            .to_string()
                    },
                    r.features
                        .iter()
                        .map(|f| Feature {
                            name: f.name.clone(),
                            supported: f.supported,
                        })
                        .collect(),
                ),
                Err(e) => (String::new(), e.clone(), Vec::new()),
            };
            Ok(AgentStatus {
                node: a.config.node.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                kernel: a.host.kernel.clone(),
                cgroup_layout: a.host.cgroup_layout.clone(),
                criu_version,
                criu_check,
                criu_features,
                cpu_model: a.host.cpu_model.clone(),
                containers: a.catalog.containers()?.len() as u32,
                uptime_secs: a.uptime().as_secs(),
            })
        })
        .await
    }

    async fn hosts(&self, _: Request<HostsRequest>) -> Result<Response<HostsResponse>, Status> {
        self.agent.metrics.rpcs.with_label_values(&["hosts"]).inc();
        let mut hosts = Vec::new();
        for (name, address) in &self.agent.config.peers {
            hosts.push(crate::service::peer::probe(&self.agent, name, address).await);
        }
        Ok(Response::new(HostsResponse { hosts }))
    }

    async fn schedule_backup(
        &self,
        req: Request<ScheduleBackupRequest>,
    ) -> Result<Response<BackupSchedule>, Status> {
        let r = req.into_inner();
        self.blocking("schedule_backup", move |a| {
            let s = crate::backups::set_schedule(&a, &r)?;
            tracing::info!(container.id = %s.container_id, every = s.every_secs, cron = %s.cron, keep = s.keep, "backup schedule set");
            Ok(crate::backups::schedule_to_proto(&s))
        })
        .await
    }

    async fn unschedule_backup(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<BackupSchedule>, Status> {
        let id = req.into_inner().id;
        self.blocking("unschedule_backup", move |a| {
            let s = a.catalog.schedule(&id)?.ok_or_else(|| {
                AgentError::NotFound(format!("container {id} has no backup schedule"))
            })?;
            a.catalog.delete_schedule(&id)?;
            Ok(crate::backups::schedule_to_proto(&s))
        })
        .await
    }

    async fn list_backup_schedules(
        &self,
        _: Request<ListBackupSchedulesRequest>,
    ) -> Result<Response<ListBackupSchedulesResponse>, Status> {
        self.blocking("list_backup_schedules", |a| {
            Ok(ListBackupSchedulesResponse {
                schedules: a
                    .catalog
                    .schedules()?
                    .iter()
                    .map(crate::backups::schedule_to_proto)
                    .collect(),
            })
        })
        .await
    }

    type BackupNowStream = EventStream;

    async fn backup_now(
        &self,
        req: Request<BackupNowRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["backup_now"])
            .inc();
        self.agent.record(&r.id).map_err(Status::from)?;
        let op = self.agent.ops.start("backup", &r.id);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let span = op.span.clone();
            let result = tracing::Instrument::instrument(
                crate::backups::backup_now(agent, &op, &r.id, &r.replicate_to),
                span,
            )
            .await;
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    async fn list_backups(
        &self,
        req: Request<ListBackupsRequest>,
    ) -> Result<Response<ListBackupsResponse>, Status> {
        let id = req.into_inner().container_id;
        self.blocking("list_backups", move |a| crate::backups::list(&a, &id))
            .await
    }

    async fn show_backup(&self, req: Request<BackupRef>) -> Result<Response<Backup>, Status> {
        let id = req.into_inner().backup_id;
        self.blocking("show_backup", move |a| {
            crate::backups::find(&a, &id).map(|b| crate::backups::to_proto(&b))
        })
        .await
    }

    async fn remove_backup(
        &self,
        req: Request<BackupRef>,
    ) -> Result<Response<RemoveBackupResponse>, Status> {
        let id = req.into_inner().backup_id;
        self.blocking("remove_backup", move |a| {
            crate::backups::remove(&a, &id)?;
            tracing::info!(backup.id = %id, "backup removed");
            Ok(RemoveBackupResponse {})
        })
        .await
    }

    type VerifyBackupStream = EventStream;

    async fn verify_backup(
        &self,
        req: Request<VerifyBackupRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["verify_backup"])
            .inc();
        let backups = if r.backup_id.is_empty() {
            self.agent.catalog.backups(None).map_err(AgentError::from)?
        } else {
            vec![crate::backups::find(&self.agent, &r.backup_id)?]
        };
        if backups.is_empty() {
            return Err(Status::not_found("there are no backups on this host"));
        }
        let container = if r.backup_id.is_empty() {
            String::new()
        } else {
            backups[0].container_id.clone()
        };
        let op = self.agent.ops.start("backup-verify", &container);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let _enter = op.span.clone().entered();
            let checked: Vec<_> = backups
                .iter()
                .map(|b| crate::backups::verify(&agent, &op, b, r.restore_test))
                .collect();
            let failed: Vec<String> = checked
                .iter()
                .filter(|b| !b.verified_ok)
                .map(|b| format!("{}: {}", b.id, b.verify_detail))
                .collect();
            let result = if failed.is_empty() {
                Ok(OperationResult {
                    backups: checked.iter().map(crate::backups::to_proto).collect(),
                    ..Default::default()
                })
            } else {
                Err(format!(
                    "{} of {} backups failed verification: {}",
                    failed.len(),
                    checked.len(),
                    failed.join("; ")
                ))
            };
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    type RestoreBackupStream = EventStream;

    async fn restore_backup(
        &self,
        req: Request<RestoreBackupRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["restore_backup"])
            .inc();
        let b = crate::backups::choose(&self.agent, &r.id, &r.backup_id)?;
        let name = if r.r#as.is_empty() {
            b.container_id.clone()
        } else {
            r.r#as.clone()
        };
        runtime::id::validate_id(&name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let op = self.agent.ops.start("backup-restore", &name);
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let span = op.span.clone();
            let result = tracing::Instrument::instrument(
                crate::backups::restore_anywhere(agent, &op, &r),
                span,
            )
            .await;
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    type RunDrillStream = EventStream;

    async fn run_drill(
        &self,
        req: Request<RunDrillRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["run_drill"])
            .inc();
        let drill = r
            .drill
            .ok_or_else(|| Status::invalid_argument("no drill in the request"))?;
        let op = self.agent.ops.start("drill", "");
        let stream = self.watch_stream(op.id())?;
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let span = op.span.clone();
            let result = tracing::Instrument::instrument(
                crate::drills::run(agent, &op, &drill, r.dry_run),
                span,
            )
            .await;
            op.finish(result);
        });
        Ok(Response::new(stream))
    }

    async fn validate_drill(
        &self,
        req: Request<Drill>,
    ) -> Result<Response<ValidateDrillResponse>, Status> {
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["validate_drill"])
            .inc();
        let problems = crate::drills::validate(&self.agent, &req.into_inner()).await;
        Ok(Response::new(ValidateDrillResponse { problems }))
    }

    async fn list_drills(
        &self,
        _: Request<ListDrillsRequest>,
    ) -> Result<Response<ListDrillsResponse>, Status> {
        self.blocking("list_drills", |a| {
            let mut drills = crate::drills::history(&a, None).map_err(AgentError::Internal)?;
            for d in &mut drills {
                d.steps.clear();
            }
            Ok(ListDrillsResponse { drills })
        })
        .await
    }

    async fn show_drill(&self, req: Request<DrillRef>) -> Result<Response<DrillReport>, Status> {
        let id = req.into_inner().drill_id;
        self.blocking("show_drill", move |a| {
            crate::drills::history(&a, Some(&id))
                .map_err(AgentError::Internal)?
                .pop()
                .ok_or_else(|| AgentError::NotFound(format!("drill {id} does not exist")))
        })
        .await
    }

    async fn unfence(
        &self,
        _: Request<UnfenceRequest>,
    ) -> Result<Response<UnfenceResponse>, Status> {
        self.agent
            .metrics
            .rpcs
            .with_label_values(&["unfence"])
            .inc();
        crate::drills::unfence(&self.agent)
            .await
            .map(Response::new)
            .map_err(Status::internal)
    }
}

/// Index where the last `lines` lines of `data` start (0 = everything).
fn tail_start(data: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return 0;
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::tail_start;

    #[test]
    fn tail_lines() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[tail_start(d, 0)..], b"a\nb\nc\n");
        assert_eq!(&d[tail_start(d, 1)..], b"c\n");
        assert_eq!(&d[tail_start(d, 2)..], b"b\nc\n");
        assert_eq!(&d[tail_start(d, 9)..], b"a\nb\nc\n");
    }
}
