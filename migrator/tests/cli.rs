//! Behaviour tests of the real `migrate` binary against a fake agent: an in-process
//! `migrate.v1.Agent` server with canned answers on a unix socket in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::v1::agent_server::{Agent, AgentServer};
use proto::v1::{
    AgentStatus, Backup, BackupNowRequest, BackupRef, BackupSchedule, Checkpoint,
    CheckpointRequest, Container, ContainerRef, ContainerStatus, Drill, DrillProblem, DrillRef,
    DrillReport, DrillStep, DrillStepResult, ExecRequest, ExecResponse, Feature, Host,
    HostsRequest, HostsResponse, KillRequest, ListBackupSchedulesRequest,
    ListBackupSchedulesResponse, ListBackupsRequest, ListBackupsResponse, ListCheckpointsRequest,
    ListCheckpointsResponse, ListDrillsRequest, ListDrillsResponse, ListOperationsRequest,
    ListOperationsResponse, ListRequest, ListResponse, LogChunk, LogsRequest, MoveReport,
    MoveRequest, Operation, OperationEvent, OperationRef, OperationResult, PhaseTime,
    RemoveBackupResponse, RemoveRequest, RemoveResponse, RestartPolicy, RestoreBackupRequest,
    RestoreRequest, RunDrillRequest, RunRequest, ScheduleBackupRequest, StatusRequest, StopRequest,
    UnfenceRequest, UnfenceResponse, ValidateDrillResponse, VerifyBackupRequest,
};
use serde_json::Value;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

type Stream<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

/// The fake agent: canned containers, and a log of the requests it got.
#[derive(Default)]
struct Fake {
    requests: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn record(&self, request: &impl std::fmt::Debug) {
        self.requests.lock().unwrap().push(format!("{request:?}"));
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn web() -> Container {
    Container {
        id: "web".into(),
        status: ContainerStatus::Running as i32,
        pid: 4242,
        bundle: "/srv/bundles/web".into(),
        restart: RestartPolicy::Always as i32,
        exit_code: -1,
        restarts: 0,
        created_unix: now() - 90,
        cgroup: "/migrate/web".into(),
        memory_bytes: 12 * 1024 * 1024,
        pids: 3,
        ip: "198.18.1.10/16".into(),
    }
}

fn db() -> Container {
    Container {
        id: "db".into(),
        status: ContainerStatus::Stopped as i32,
        pid: 0,
        bundle: "/srv/bundles/db".into(),
        restart: RestartPolicy::OnFailure as i32,
        exit_code: 1,
        restarts: 2,
        created_unix: now() - 7200,
        ..Default::default()
    }
}

fn operation(kind: &str, id: &str, state: &str, error: &str) -> Operation {
    Operation {
        operation_id: format!("op-{kind}-{id}"),
        kind: kind.into(),
        container_id: id.into(),
        state: state.into(),
        started_unix_ms: now() * 1000 - 5000,
        finished_unix_ms: now() * 1000,
        error: error.into(),
    }
}

fn checkpoint_of(id: &str) -> Checkpoint {
    Checkpoint {
        checkpoint_id: format!("ck-{id}-1"),
        container_id: id.into(),
        created_unix: now() - 30,
        size_bytes: 3 * 1024 * 1024,
        frozen_ms: 340,
        leave_running: true,
    }
}

fn progress(op: &str, phase: &str, done_bytes: u64, total_bytes: u64) -> OperationEvent {
    OperationEvent {
        operation_id: op.into(),
        phase: phase.into(),
        message: format!("{phase} in progress"),
        done_bytes,
        total_bytes,
        ..Default::default()
    }
}

fn finished(op: &str, result: OperationResult) -> OperationEvent {
    OperationEvent {
        operation_id: op.into(),
        phase: "commit".into(),
        done: Some(result),
        ..Default::default()
    }
}

/// Events of a checkpoint of `id`: `web` succeeds, `bad` fails in CRIU, `lost` breaks off with
/// a gRPC error, `cut` ends without a final event.
fn checkpoint_events(id: &str) -> Vec<Result<OperationEvent, Status>> {
    let op = format!("op-checkpoint-{id}");
    let mut events = vec![
        Ok(progress(&op, "freeze", 0, 0)),
        Ok(progress(&op, "dump", 1024, 4096)),
    ];
    match id {
        "web" => events.push(Ok(finished(
            &op,
            OperationResult {
                success: true,
                operation: Some(operation("checkpoint", id, "succeeded", "")),
                checkpoint: Some(checkpoint_of(id)),
                ..Default::default()
            },
        ))),
        "bad" => events.push(Ok(finished(
            &op,
            OperationResult {
                success: false,
                error: "criu dump failed: can't lookup mount for fd 1".into(),
                operation: Some(operation("checkpoint", id, "failed", "criu dump failed")),
                ..Default::default()
            },
        ))),
        "lost" => events.push(Err(Status::internal("agent lost the criu process"))),
        _ => {}
    }
    events
}

/// `web`'s backups are replicated to host2 and verified; `db`'s are neither.
fn backup_of(id: &str, n: u32) -> Backup {
    let web = id == "web";
    Backup {
        backup_id: format!("bk-{id}-{n}"),
        container_id: id.into(),
        origin: "host1".into(),
        created_unix: now() - 600,
        frozen_ms: 120,
        logical_bytes: 64 << 20,
        stored_bytes: 20 << 20,
        added_bytes: 2 << 20,
        sent_bytes: if web { 2 << 20 } else { 0 },
        replicas: if web { vec!["host2".into()] } else { vec![] },
        verified_unix: if web { now() - 180 } else { 0 },
        verified_ok: web,
        verify_detail: if web {
            "1024 chunks ok".into()
        } else {
            String::new()
        },
        ip: if web {
            "198.18.1.10/16".into()
        } else {
            String::new()
        },
    }
}

fn schedule_of(id: &str) -> BackupSchedule {
    match id {
        "web" => BackupSchedule {
            container_id: id.into(),
            every_secs: 900,
            keep: 24,
            keep_daily: 7,
            replicate_to: "host2".into(),
            last_run_unix: now() - 300,
            next_run_unix: now() + 600 + 30,
            ..Default::default()
        },
        _ => BackupSchedule {
            container_id: id.into(),
            cron: "0 3 * * *".into(),
            keep: 3,
            last_run_unix: now() - 7200,
            next_run_unix: now() + 3 * 3600 + 30,
            last_error: "criu dump failed".into(),
            ..Default::default()
        },
    }
}

/// The final event of a long backup operation that failed with `error`.
fn failed_backup_op(
    op: &str,
    kind: &str,
    id: &str,
    error: &str,
) -> Vec<Result<OperationEvent, Status>> {
    let done = OperationResult {
        success: false,
        error: error.into(),
        operation: Some(operation(kind, id, "failed", error)),
        ..Default::default()
    };
    vec![Ok(progress(op, kind, 0, 0)), Ok(finished(op, done))]
}

#[tonic::async_trait]
impl Agent for Fake {
    async fn run(&self, request: Request<RunRequest>) -> Result<Response<Container>, Status> {
        let request = request.into_inner();
        self.record(&request);
        Ok(Response::new(Container {
            id: request.id,
            bundle: request.bundle,
            restart: request.restart,
            status: ContainerStatus::Running as i32,
            pid: 777,
            exit_code: -1,
            created_unix: now(),
            ..Default::default()
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        Ok(Response::new(ListResponse {
            containers: vec![web(), db()],
        }))
    }

    async fn inspect(&self, request: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        match request.into_inner().id.as_str() {
            "web" => Ok(Response::new(web())),
            id => Err(Status::not_found(format!("container {id} does not exist"))),
        }
    }

    type LogsStream = Stream<LogChunk>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.record(request.get_ref());
        let chunks = ["line one\n", "line two\n", "partial"].map(|text| {
            Ok(LogChunk {
                data: text.as_bytes().to_vec(),
            })
        });
        Ok(Response::new(tokio_stream::iter(chunks.to_vec())))
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(ExecResponse {
            exit_code: 3,
            stdout: format!(
                "ran {} with {}\n",
                request.args.join(" "),
                request.env.join(",")
            )
            .into_bytes(),
            stderr: b"warning from inside\n".to_vec(),
        }))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<Container>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(db()))
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<Container>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(Container {
            status: ContainerStatus::Stopped as i32,
            pid: 0,
            exit_code: 137,
            ..web()
        }))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        let request = request.into_inner();
        if request.id == "web" && !request.force {
            return Err(Status::failed_precondition(
                "container web is running; stop it or use --force",
            ));
        }
        Ok(Response::new(RemoveResponse {}))
    }

    async fn pause(&self, _: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        Ok(Response::new(Container {
            status: ContainerStatus::Paused as i32,
            ..web()
        }))
    }

    async fn resume(&self, _: Request<ContainerRef>) -> Result<Response<Container>, Status> {
        Ok(Response::new(web()))
    }

    type CheckpointStream = Stream<OperationEvent>;

    async fn checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<Self::CheckpointStream>, Status> {
        let request = request.into_inner();
        self.record(&request);
        Ok(Response::new(tokio_stream::iter(checkpoint_events(
            &request.id,
        ))))
    }

    type RestoreStream = Stream<OperationEvent>;

    async fn restore(
        &self,
        request: Request<RestoreRequest>,
    ) -> Result<Response<Self::RestoreStream>, Status> {
        let request = request.into_inner();
        self.record(&request);
        let op = format!("op-restore-{}", request.id);
        let done = OperationResult {
            success: true,
            operation: Some(operation("restore", &request.id, "succeeded", "")),
            container: Some(web()),
            ..Default::default()
        };
        let events = vec![Ok(progress(&op, "restore", 0, 0)), Ok(finished(&op, done))];
        Ok(Response::new(tokio_stream::iter(events)))
    }

    type MoveStream = Stream<OperationEvent>;

    async fn r#move(
        &self,
        request: Request<MoveRequest>,
    ) -> Result<Response<Self::MoveStream>, Status> {
        let request = request.into_inner();
        self.record(&request);
        let op = format!("op-move-{}", request.id);
        let report = MoveReport {
            target: request.to.clone(),
            dry_run: request.dry_run,
            preflight: vec!["criu 4.2.1 on host2 (need >= 4.1): ok".into()],
            downtime_ms: 420,
            total_ms: 900,
            phases: vec![PhaseTime {
                name: "dump".into(),
                ms: 200,
            }],
            bytes_raw: 1 << 20,
            bytes_compressed: 1 << 19,
            bytes_sent: 1 << 18,
            chunks_total: 4,
            chunks_sent: 1,
            target_pid: 4242,
            bytes_preseeded: 0,
            mode: "cold".into(),
            ..Default::default()
        };
        let done = OperationResult {
            success: true,
            operation: Some(operation("move", &request.id, "succeeded", "")),
            r#move: Some(report),
            ..Default::default()
        };
        let events = vec![Ok(progress(&op, "transfer", 1, 2)), Ok(finished(&op, done))];
        Ok(Response::new(tokio_stream::iter(events)))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints: vec![checkpoint_of("web"), checkpoint_of("db")],
        }))
    }

    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(ListOperationsResponse {
            operations: vec![
                operation("checkpoint", "web", "succeeded", ""),
                operation("checkpoint", "bad", "failed", "criu dump failed"),
            ],
        }))
    }

    type WatchOperationStream = Stream<OperationEvent>;

    async fn watch_operation(
        &self,
        _: Request<OperationRef>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<AgentStatus>, Status> {
        let feature = |name: &str, supported| Feature {
            name: name.into(),
            supported,
        };
        Ok(Response::new(AgentStatus {
            node: "host1".into(),
            version: "0.1.0".into(),
            kernel: "6.18.0".into(),
            cgroup_layout: "hybrid".into(),
            criu_version: "4.2.1".into(),
            criu_check: "Looks good.".into(),
            criu_features: vec![feature("uffd", true), feature("mem_dirty_track", false)],
            cpu_model: "Test CPU".into(),
            containers: 2,
            uptime_secs: 3 * 3600,
        }))
    }

    async fn hosts(&self, _: Request<HostsRequest>) -> Result<Response<HostsResponse>, Status> {
        Ok(Response::new(HostsResponse {
            hosts: vec![
                Host {
                    name: "host2".into(),
                    address: "198.18.0.2:7443".into(),
                    reachable: true,
                    detail: "0.1.0".into(),
                    latency_ms: 4,
                },
                Host {
                    name: "host3".into(),
                    address: "198.18.0.3:7443".into(),
                    reachable: false,
                    detail: "connection refused".into(),
                    latency_ms: 0,
                },
            ],
        }))
    }

    async fn schedule_backup(
        &self,
        request: Request<ScheduleBackupRequest>,
    ) -> Result<Response<BackupSchedule>, Status> {
        self.schedule_backup_impl(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn unschedule_backup(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<BackupSchedule>, Status> {
        match request.into_inner().id.as_str() {
            "web" => Ok(Response::new(schedule_of("web"))),
            id => Err(Status::not_found(format!(
                "container {id} has no backup schedule"
            ))),
        }
    }

    async fn list_backup_schedules(
        &self,
        _: Request<ListBackupSchedulesRequest>,
    ) -> Result<Response<ListBackupSchedulesResponse>, Status> {
        Ok(Response::new(ListBackupSchedulesResponse {
            schedules: vec![schedule_of("web"), schedule_of("db")],
        }))
    }

    type BackupNowStream = Stream<OperationEvent>;

    async fn backup_now(
        &self,
        request: Request<BackupNowRequest>,
    ) -> Result<Response<Self::BackupNowStream>, Status> {
        let events = self.backup_now_events(request.into_inner());
        Ok(Response::new(tokio_stream::iter(events)))
    }

    async fn list_backups(
        &self,
        request: Request<ListBackupsRequest>,
    ) -> Result<Response<ListBackupsResponse>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(ListBackupsResponse {
            backups: vec![backup_of("web", 2), backup_of("web", 1), backup_of("db", 1)],
            logical_bytes: 3 * (64 << 20),
            stored_bytes: 30 << 20,
        }))
    }

    async fn show_backup(&self, request: Request<BackupRef>) -> Result<Response<Backup>, Status> {
        match request.into_inner().backup_id.as_str() {
            "bk-web-1" => Ok(Response::new(backup_of("web", 1))),
            id => Err(Status::not_found(format!("backup {id} does not exist"))),
        }
    }

    async fn remove_backup(
        &self,
        request: Request<BackupRef>,
    ) -> Result<Response<RemoveBackupResponse>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(RemoveBackupResponse {}))
    }

    type VerifyBackupStream = Stream<OperationEvent>;

    async fn verify_backup(
        &self,
        request: Request<VerifyBackupRequest>,
    ) -> Result<Response<Self::VerifyBackupStream>, Status> {
        let events = self.verify_events(request.into_inner());
        Ok(Response::new(tokio_stream::iter(events)))
    }

    type RestoreBackupStream = Stream<OperationEvent>;

    async fn restore_backup(
        &self,
        request: Request<RestoreBackupRequest>,
    ) -> Result<Response<Self::RestoreBackupStream>, Status> {
        let events = self.restore_backup_events(request.into_inner());
        Ok(Response::new(tokio_stream::iter(events)))
    }

    type RunDrillStream = Stream<OperationEvent>;

    async fn run_drill(
        &self,
        request: Request<RunDrillRequest>,
    ) -> Result<Response<Self::RunDrillStream>, Status> {
        let request = request.into_inner();
        self.record(&request);
        let drill = request.drill.unwrap_or_default();
        Ok(Response::new(tokio_stream::iter(drill_events(
            &drill,
            request.dry_run,
        ))))
    }

    async fn validate_drill(
        &self,
        request: Request<Drill>,
    ) -> Result<Response<ValidateDrillResponse>, Status> {
        let drill = request.into_inner();
        self.record(&drill);
        Ok(Response::new(ValidateDrillResponse {
            problems: drill_problems(&drill),
        }))
    }

    async fn list_drills(
        &self,
        _: Request<ListDrillsRequest>,
    ) -> Result<Response<ListDrillsResponse>, Status> {
        let failed = DrillReport {
            drill_id: "op-drill-2".into(),
            passed: false,
            rto_measured: false,
            error: "step 4 (wait-healthy) failed: web not healthy after 30 s".into(),
            ..past_drill()
        };
        let drills = [failed, past_drill()].map(|d| DrillReport {
            steps: Vec::new(),
            ..d
        });
        Ok(Response::new(ListDrillsResponse {
            drills: drills.to_vec(),
        }))
    }

    async fn show_drill(
        &self,
        request: Request<DrillRef>,
    ) -> Result<Response<DrillReport>, Status> {
        match request.into_inner().drill_id.as_str() {
            "op-drill-1" => Ok(Response::new(past_drill())),
            id => Err(Status::not_found(format!("drill {id} does not exist"))),
        }
    }

    async fn unfence(
        &self,
        request: Request<UnfenceRequest>,
    ) -> Result<Response<UnfenceResponse>, Status> {
        self.record(request.get_ref());
        Ok(Response::new(UnfenceResponse {
            removed: vec!["web".into()],
            restarted: vec!["db".into()],
            kept_stopped: vec![],
        }))
    }
}

/// What the fake's ValidateDrill finds: hosts other than host1 and host2, and containers other
/// than web and db.
fn drill_problems(drill: &Drill) -> Vec<DrillProblem> {
    let mut problems = Vec::new();
    let steps = (drill.steps.iter().enumerate().map(|(i, s)| (i, false, s)))
        .chain(drill.cleanup.iter().enumerate().map(|(i, s)| (i, true, s)));
    for (i, cleanup, step) in steps {
        let problem = |field: &str, message: String| DrillProblem {
            step: i as i32,
            cleanup,
            field: field.into(),
            message,
        };
        for (field, host) in [("host", &step.host), ("to", &step.to)] {
            if !host.is_empty() && host != "host1" && host != "host2" {
                problems.push(problem(
                    field,
                    format!("unknown host {host}: not this host nor one of its [peers]"),
                ));
            }
        }
        if !step.container.is_empty() && step.container != "web" && step.container != "db" {
            problems.push(problem(
                "container",
                format!(
                    "container {} runs on no host of this cluster",
                    step.container
                ),
            ));
        }
    }
    problems
}

fn step_result(i: usize, cleanup: bool, step: &DrillStep, outcome: &str) -> DrillStepResult {
    let ran = outcome != "skipped" && outcome != "planned";
    DrillStepResult {
        index: i as u32,
        cleanup,
        action: step.action.clone(),
        target: if step.host.is_empty() {
            step.container.clone()
        } else {
            step.host.clone()
        },
        outcome: outcome.into(),
        detail: if outcome == "failed" {
            "web not healthy after 30 s: connection refused".into()
        } else {
            String::new()
        },
        started_unix_ms: if ran { now() * 1000 - 2000 } else { 0 },
        finished_unix_ms: if ran { now() * 1000 - 1000 } else { 0 },
    }
}

/// A drill run by the fake: named `... fails`, its wait-healthy step fails (and the drill is
/// reported as the agent does: a successful operation whose report did not pass); named
/// `... crashes`, the operation itself fails without a report.
fn drill_events(drill: &Drill, dry_run: bool) -> Vec<Result<OperationEvent, Status>> {
    let op = "op-drill-9";
    if drill.name.ends_with("crashes") {
        let done = OperationResult {
            success: false,
            error: "the coordinator lost host2".into(),
            ..Default::default()
        };
        return vec![Ok(progress(op, "step", 0, 0)), Ok(finished(op, done))];
    }
    let fails = drill.name.ends_with("fails");
    let mut failed = false;
    let mut steps = Vec::new();
    for (i, step) in drill.steps.iter().enumerate() {
        let outcome = if dry_run {
            "planned"
        } else if failed {
            "skipped"
        } else if fails && step.action == "wait-healthy" {
            failed = true;
            "failed"
        } else {
            "passed"
        };
        steps.push(step_result(i, false, step, outcome));
    }
    if !dry_run {
        for (i, step) in drill.cleanup.iter().enumerate() {
            steps.push(step_result(i, true, step, "passed"));
        }
    }
    let report = DrillReport {
        drill_id: op.into(),
        name: drill.name.clone(),
        passed: !failed,
        dry_run,
        started_unix_ms: now() * 1000 - 3000,
        finished_unix_ms: now() * 1000,
        steps,
        rto_measured: !failed && !dry_run,
        rto_ms: 2500,
        rto_objective_secs: drill.rto_secs,
        rto_met: !failed,
        rpo_measured: false,
        rpo_ms: 0,
        rpo_objective_secs: drill.rpo_secs,
        rpo_met: drill.rpo_secs == 0,
        error: if failed {
            "step 4 (wait-healthy) failed: web not healthy after 30 s".into()
        } else {
            String::new()
        },
        coordinator: "host2".into(),
    };
    let done = OperationResult {
        success: true,
        drill: Some(report),
        ..Default::default()
    };
    vec![Ok(progress(op, "step", 0, 0)), Ok(finished(op, done))]
}

/// The run `drill show op-drill-1` and `drill ls` know.
fn past_drill() -> DrillReport {
    let step = |i: usize, action: &str, host: &str| {
        let step = DrillStep {
            action: action.into(),
            container: "web".into(),
            host: host.into(),
            ..Default::default()
        };
        step_result(i, false, &step, "passed")
    };
    DrillReport {
        drill_id: "op-drill-1".into(),
        name: "host loss".into(),
        passed: true,
        started_unix_ms: now() * 1000 - 600_000,
        finished_unix_ms: now() * 1000 - 600_000 + 14_200,
        steps: vec![step(0, "fail-host", "host1"), step(1, "wait-healthy", "")],
        rto_measured: true,
        rto_ms: 12_300,
        rto_objective_secs: 60,
        rto_met: true,
        rpo_measured: true,
        rpo_ms: 4_000,
        rpo_objective_secs: 300,
        rpo_met: true,
        coordinator: "host2".into(),
        ..Default::default()
    }
}

/// The backup RPCs of the fake, kept apart from the rest for reading.
impl Fake {
    async fn schedule_backup_impl(
        &self,
        request: ScheduleBackupRequest,
    ) -> Result<BackupSchedule, Status> {
        self.record(&request);
        if request.cron == "bad" {
            return Err(Status::invalid_argument(
                "cron expression \"bad\" needs 5 fields",
            ));
        }
        Ok(BackupSchedule {
            container_id: request.id,
            every_secs: request.every_secs,
            cron: request.cron,
            keep: request.keep,
            keep_daily: request.keep_daily,
            replicate_to: request.replicate_to,
            next_run_unix: now() + 14 * 60 + 30,
            ..Default::default()
        })
    }

    fn backup_now_events(&self, request: BackupNowRequest) -> Vec<Result<OperationEvent, Status>> {
        self.record(&request);
        let op = format!("op-backup-{}", request.id);
        if request.id != "web" {
            return failed_backup_op(&op, "backup", &request.id, "container db is not running");
        }
        let done = OperationResult {
            success: true,
            operation: Some(operation("backup", &request.id, "succeeded", "")),
            backups: vec![backup_of("web", 2)],
            ..Default::default()
        };
        vec![Ok(progress(&op, "dump", 1, 2)), Ok(finished(&op, done))]
    }

    fn verify_events(&self, request: VerifyBackupRequest) -> Vec<Result<OperationEvent, Status>> {
        self.record(&request);
        let op = "op-verify";
        let backups = match request.backup_id.as_str() {
            "" => vec![backup_of("web", 1), backup_of("db", 1)],
            "bk-web-1" => vec![backup_of("web", 1)],
            id => {
                return failed_backup_op(op, "verify", "", &format!("backup {id} does not exist"))
            }
        };
        let backups = backups
            .into_iter()
            .map(|b| Backup {
                verified_unix: now() - 120,
                verify_detail: if b.verified_ok {
                    "1024 chunks ok".into()
                } else {
                    "chunk 3f2a hash mismatch".into()
                },
                ..b
            })
            .collect();
        let done = OperationResult {
            success: true,
            operation: Some(operation("verify", "", "succeeded", "")),
            backups,
            ..Default::default()
        };
        vec![Ok(progress(op, "verify", 1, 2)), Ok(finished(op, done))]
    }

    fn restore_backup_events(
        &self,
        request: RestoreBackupRequest,
    ) -> Vec<Result<OperationEvent, Status>> {
        self.record(&request);
        let op = format!("op-restore-backup-{}", request.id);
        let id = if request.r#as.is_empty() {
            request.id.clone()
        } else {
            request.r#as.clone()
        };
        let done = OperationResult {
            success: true,
            operation: Some(operation("restore-backup", &request.id, "succeeded", "")),
            container: Some(Container { id, ..web() }),
            ..Default::default()
        };
        vec![Ok(progress(&op, "restore", 0, 0)), Ok(finished(&op, done))]
    }
}

/// A running fake agent; dropping it stops the server and removes the socket's directory.
struct FakeAgent {
    socket: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl FakeAgent {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(async { UnixListener::bind(&socket) })
            .unwrap();
        let fake = Fake::default();
        let requests = fake.requests.clone();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServer::new(fake))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Self {
            socket,
            requests,
            dir,
            _runtime: runtime,
        }
    }

    /// Runs `migrate --socket <fake> ARGS...` to completion.
    fn migrate(&self, args: &[&str]) -> Output {
        migrate_at(&self.socket, self.dir.path(), args)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Runs the real binary in `cwd`, with no MIGRATE_* settings from the environment.
fn migrate_at(socket: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .current_dir(cwd)
        .env_remove("MIGRATE_SOCKET")
        .env_remove("MIGRATE_OUTPUT")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(output: Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    stdout(&output)
}

/// Asserts exit 1 with exactly one `error: ...` line on stderr and nothing on stdout.
#[track_caller]
fn fails_with(output: Output, line: &str) {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", stdout(&output));
    assert_eq!(stderr(&output), format!("error: {line}\n"));
    assert_eq!(stdout(&output), "");
}

#[test]
fn ps_prints_an_aligned_table() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["ps"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STATUS", "PID", "RESTART", "EXIT", "CREATED", "MEMORY"]
    );
    let web: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        web,
        ["web", "running", "4242", "always", "-", "1m", "ago", "12.0", "MiB"]
    );
    let db: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        db,
        [
            "db",
            "stopped",
            "-",
            "on-failure",
            "(2)",
            "1",
            "2h",
            "ago",
            "-"
        ]
    );
    // Aligned: every row's STATUS column starts where the header's does.
    let status_at = lines[0].find("STATUS").unwrap();
    assert_eq!(lines[1].find("running"), Some(status_at));
    assert_eq!(lines[2].find("stopped"), Some(status_at));
}

#[test]
fn ps_json_prints_one_object_per_container() {
    let agent = FakeAgent::start();
    let output = agent.migrate(&["ps", "--output", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let objects = json_lines(&output);
    assert_eq!(objects.len(), 2);
    let expected = [
        "bundle",
        "cgroup",
        "created_unix",
        "exit_code",
        "id",
        "ip",
        "memory_bytes",
        "pid",
        "pids",
        "restart",
        "restarts",
        "status",
    ];
    for object in &objects {
        assert_eq!(keys(object), expected);
    }
    assert_eq!(objects[0]["id"], "web");
    assert_eq!(objects[0]["status"], "running");
    assert_eq!(objects[0]["restart"], "always");
    assert_eq!(objects[0]["memory_bytes"], 12 * 1024 * 1024);
    assert_eq!(objects[1]["status"], "stopped");
    assert_eq!(objects[1]["restart"], "on-failure");
    assert_eq!(objects[1]["exit_code"], 1);
}

#[test]
fn output_format_comes_from_the_environment_too() {
    let agent = FakeAgent::start();
    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("ps")
        .env("MIGRATE_SOCKET", &agent.socket)
        .env("MIGRATE_OUTPUT", "json")
        .output()
        .unwrap();
    assert_eq!(json_lines(&output).len(), 2);
}

#[test]
fn inspect_prints_key_value_lines() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["inspect", "web"]));
    assert!(out.starts_with("id:"), "{out}");
    for line in [
        "status:    running",
        "pid:       4242",
        "bundle:    /srv/bundles/web",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
}

#[test]
fn inspect_missing_is_one_error_line_and_exit_1() {
    let agent = FakeAgent::start();
    fails_with(
        agent.migrate(&["inspect", "missing"]),
        "container missing does not exist",
    );
}

#[test]
fn usage_errors_exit_2() {
    let agent = FakeAgent::start();
    let output = agent.migrate(&["ps", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--no-such-flag"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        agent.migrate(&["run", "web"]).status.code(),
        Some(2),
        "--bundle missing"
    );
    assert_eq!(
        agent.migrate(&["ps", "--output", "xml"]).status.code(),
        Some(2)
    );
}

#[test]
fn exec_passes_output_through_and_exits_with_the_commands_code() {
    let agent = FakeAgent::start();
    let output = agent.migrate(&["exec", "web", "-e", "A=1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stdout(&output), "ran sh -c exit 3 with A=1\n");
    assert_eq!(stderr(&output), "warning from inside\n");
}

#[test]
fn run_sends_an_absolute_bundle_and_the_restart_policy() {
    let agent = FakeAgent::start();
    let output = agent.migrate(&[
        "run",
        "api",
        "--bundle",
        "bundles/api",
        "--restart",
        "on-failure",
        "-o",
        "json",
    ]);
    let objects = json_lines(&output);
    assert_eq!(objects.len(), 1, "stderr: {}", stderr(&output));
    let expected = agent.dir.path().canonicalize().unwrap().join("bundles/api");
    assert_eq!(objects[0]["bundle"], expected.to_str().unwrap());
    assert_eq!(objects[0]["restart"], "on-failure");
    assert_eq!(objects[0]["status"], "running");
}

#[test]
fn logs_writes_the_chunks_verbatim() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["logs", "web", "--follow", "--tail", "5"]));
    assert_eq!(out, "line one\nline two\npartial");
    let requests = agent.requests();
    assert!(
        requests.iter().any(|r| r.contains("follow: true, tail: 5")),
        "{requests:?}"
    );
}

#[test]
fn lifecycle_commands_print_the_container() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["kill", "web", "--signal", "TERM", "--all"]));
    assert!(
        out.lines().nth(1).unwrap().starts_with("web  stopped"),
        "{out}"
    );
    assert!(out.contains("137"), "{out}");
    ok(agent.migrate(&["stop", "db", "--timeout", "3"]));
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("signal: \"TERM\", all: true")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("timeout_secs: 3")),
        "{requests:?}"
    );

    let paused = json_lines(&agent.migrate(&["pause", "web", "-o", "json"]));
    assert_eq!(paused[0]["status"], "paused");
    let resumed = json_lines(&agent.migrate(&["resume", "web", "-o", "json"]));
    assert_eq!(resumed[0]["status"], "running");
}

#[test]
fn rm_confirms_or_reports_why_not() {
    let agent = FakeAgent::start();
    fails_with(
        agent.migrate(&["rm", "web"]),
        "container web is running; stop it or use --force",
    );
    assert_eq!(
        ok(agent.migrate(&["rm", "web", "--force"])),
        "removed web\n"
    );
    let removed = json_lines(&agent.migrate(&["rm", "db", "-o", "json"]));
    assert_eq!(removed, [serde_json::json!({"id": "db", "removed": true})]);
}

#[test]
fn checkpoint_follows_the_events_and_prints_the_result() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["checkpoint", "web", "--leave-running", "--tcp-established"]));
    assert!(out.lines().any(|l| l == "checkpoint:   ck-web-1"), "{out}");
    assert!(
        out.lines().any(|l| l == "operation:    op-checkpoint-web"),
        "{out}"
    );
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("leave_running: true, tcp_established: true")),
        "{requests:?}"
    );

    let output = agent.migrate(&["checkpoint", "web", "--output", "json"]);
    let objects = json_lines(&output);
    assert_eq!(objects.len(), 1);
    assert_eq!(
        keys(&objects[0]),
        [
            "checkpoint_id",
            "container_id",
            "created_unix",
            "frozen_ms",
            "leave_running",
            "operation_id",
            "size_bytes"
        ]
    );
    assert_eq!(objects[0]["checkpoint_id"], "ck-web-1");
    assert_eq!(objects[0]["operation_id"], "op-checkpoint-web");
    assert_eq!(
        stderr(&output),
        "",
        "no progress output when stderr is not a terminal"
    );
}

#[test]
fn failed_checkpoint_exits_1_with_the_agents_reason() {
    let agent = FakeAgent::start();
    fails_with(
        agent.migrate(&["checkpoint", "bad"]),
        "criu dump failed: can't lookup mount for fd 1",
    );
    fails_with(
        agent.migrate(&["checkpoint", "bad", "-o", "json"]),
        "criu dump failed: can't lookup mount for fd 1",
    );
}

#[test]
fn broken_event_streams_are_failures() {
    let agent = FakeAgent::start();
    fails_with(
        agent.migrate(&["checkpoint", "lost"]),
        "agent lost the criu process",
    );
    fails_with(
        agent.migrate(&["checkpoint", "cut"]),
        "the agent ended the operation's event stream without a result",
    );
}

#[test]
fn restore_prints_the_restored_container() {
    let agent = FakeAgent::start();
    let objects =
        json_lines(&agent.migrate(&["restore", "web", "--from", "ck-web-1", "-o", "json"]));
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["operation_id"], "op-restore-web");
    assert_eq!(objects[0]["id"], "web");
    assert_eq!(objects[0]["status"], "running");
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("checkpoint_id: \"ck-web-1\", id: \"web\"")),
        "{requests:?}"
    );
}

#[test]
fn checkpoints_and_ops_are_tables() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["checkpoints", "web"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "CONTAINER", "CREATED", "SIZE", "FROZEN"]);
    assert_eq!(out.lines().count(), 3);
    assert!(out.contains("3.0 MiB") && out.contains("340ms"), "{out}");

    let out = ok(agent.migrate(&["ops", "--limit", "5"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "KIND", "CONTAINER", "STATE", "STARTED", "ERROR"]
    );
    assert!(
        out.lines().nth(2).unwrap().ends_with("criu dump failed"),
        "{out}"
    );
    let ops = json_lines(&agent.migrate(&["ops", "-o", "json"]));
    assert_eq!(
        keys(&ops[0]),
        [
            "container_id",
            "error",
            "finished_unix_ms",
            "kind",
            "operation_id",
            "started_unix_ms",
            "state"
        ]
    );
    let requests = agent.requests();
    assert!(
        requests.iter().any(|r| r.contains("container_id: \"web\"")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("limit: 5")),
        "{requests:?}"
    );
}

#[test]
fn agent_status_shows_capabilities_and_peers() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["agent", "status"]));
    for line in [
        "criu:          4.2.1",
        "criu check:    Looks good.",
        "criu features: uffd; missing: mem_dirty_track",
        "peers:         1/2 reachable",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    let status = json_lines(&agent.migrate(&["agent", "status", "-o", "json"]));
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["peers_reachable"], 1);
    assert_eq!(status[0]["peers_total"], 2);
    assert_eq!(
        status[0]["criu_features"][1],
        serde_json::json!({"name": "mem_dirty_track", "supported": false})
    );
}

#[test]
fn hosts_lists_peers_and_their_health() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["hosts"]));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "ADDRESS", "REACHABLE", "LATENCY", "DETAIL"]
    );
    assert_eq!(rows[1], ["host2", "198.18.0.2:7443", "yes", "4ms", "0.1.0"]);
    assert_eq!(
        rows[2],
        [
            "host3",
            "198.18.0.3:7443",
            "no",
            "-",
            "connection",
            "refused"
        ]
    );
    let hosts = json_lines(&agent.migrate(&["hosts", "-o", "json"]));
    assert_eq!(
        keys(&hosts[0]),
        ["address", "detail", "latency_ms", "name", "reachable"]
    );
}

#[test]
fn missing_agent_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        migrate_at(Path::new("/nonexistent"), dir.path(), &["ps"]),
        "cannot reach migrate-agent at /nonexistent: No such file or directory (os error 2) \
         (is the agent running? see docs/troubleshooting.md)",
    );
}

#[test]
fn completions_need_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(migrate_at(
        Path::new("/nonexistent"),
        dir.path(),
        &["completions", "bash"],
    ));
    assert!(out.contains("_migrate()"), "{out}");
    assert!(out.contains("checkpoint"), "{out}");
    assert!(
        out.contains("migrate__subcmd__backup__subcmd__schedule"),
        "{out}"
    );
    for shell in ["zsh", "fish"] {
        let out = ok(migrate_at(
            Path::new("/nonexistent"),
            dir.path(),
            &["completions", shell],
        ));
        assert!(out.contains("migrate"), "{shell}: {out}");
    }
}

#[test]
fn move_prints_the_report_and_sends_the_request() {
    let agent = FakeAgent::start();
    let out = agent.migrate(&["move", "web", "--to", "host2", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "host2");
    assert_eq!(v["downtime_ms"], 420);
    assert_eq!(v["bytes_sent"], 1 << 18);
    assert_eq!(v["phases"]["dump"], 200);
    assert_eq!(v["operation_id"], "op-move-web");
    let table = agent.migrate(&["move", "web", "--to", "host2"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("downtime") && text.contains("420 ms"),
        "{text}"
    );
    let bad = agent.migrate(&["move", "web", "--to", "host2", "--mode", "warp"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// The cells of a table line: columns are two or more spaces apart, cells have single spaces.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

/// The value of `label:` in `key: value` output.
#[track_caller]
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|line| line.strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"))
        .trim()
}

#[test]
fn backup_schedule_sends_seconds_and_prints_the_schedule() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&[
        "backup",
        "schedule",
        "web",
        "--every",
        "1h30m",
        "--keep",
        "24",
        "--keep-daily",
        "7",
        "--replicate-to",
        "host2",
    ]));
    assert_eq!(field(&out, "container"), "web");
    assert_eq!(field(&out, "every"), "1h30m");
    assert_eq!(field(&out, "keep"), "24");
    assert_eq!(field(&out, "keep daily"), "7");
    assert_eq!(field(&out, "replicate to"), "host2");
    assert_eq!(field(&out, "last run"), "-");
    assert_eq!(field(&out, "next run"), "in 14m");
    assert_eq!(field(&out, "last error"), "-");
    let requests = agent.requests();
    assert!(
        requests.iter().any(|r| r.contains(
            "every_secs: 5400, cron: \"\", keep: 24, keep_daily: 7, replicate_to: \"host2\""
        )),
        "{requests:?}"
    );

    let out = ok(agent.migrate(&[
        "backup",
        "schedule",
        "db",
        "--at",
        "0 3 * * *",
        "--keep",
        "3",
    ]));
    assert_eq!(field(&out, "at"), "0 3 * * * (UTC)");
    assert_eq!(field(&out, "keep daily"), "-");
    let json = json_lines(&agent.migrate(&[
        "backup",
        "schedule",
        "db",
        "--at",
        "0 3 * * *",
        "--keep",
        "3",
        "-o",
        "json",
    ]));
    assert_eq!(
        keys(&json[0]),
        [
            "container_id",
            "cron",
            "every_secs",
            "keep",
            "keep_daily",
            "last_error",
            "last_run_unix",
            "next_run_unix",
            "replicate_to"
        ]
    );
    assert_eq!(json[0]["cron"], "0 3 * * *");
    assert_eq!(json[0]["every_secs"], 0);

    fails_with(
        agent.migrate(&["backup", "schedule", "db", "--at", "bad", "--keep", "3"]),
        "cron expression \"bad\" needs 5 fields",
    );
}

#[test]
fn backup_schedule_usage_errors_exit_2() {
    let agent = FakeAgent::start();
    for args in [
        &["backup", "schedule", "web", "--keep", "3"][..],
        &[
            "backup",
            "schedule",
            "web",
            "--every",
            "15m",
            "--at",
            "0 3 * * *",
            "--keep",
            "3",
        ],
        &["backup", "schedule", "web", "--every", "15m"],
        &["backup", "schedule", "web", "--every", "15m", "--keep", "0"],
        &["backup", "schedule", "web", "--every", "0s", "--keep", "3"],
    ] {
        let output = agent.migrate(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = agent.migrate(&["backup", "schedule", "web", "--every", "15w", "--keep", "3"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown unit 'w'"),
        "{}",
        stderr(&output)
    );
    assert!(agent.requests().is_empty(), "{:?}", agent.requests());
}

#[test]
fn backup_schedules_and_unschedule() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["backup", "schedules"]));
    let rows: Vec<Vec<&str>> = out.lines().map(cells).collect();
    assert_eq!(
        rows[0],
        [
            "CONTAINER",
            "EVERY/AT",
            "KEEP",
            "KEEP DAILY",
            "REPLICATE TO",
            "LAST RUN",
            "NEXT RUN",
            "LAST ERROR"
        ]
    );
    assert_eq!(
        rows[1],
        ["web", "15m", "24", "7", "host2", "5m ago", "in 10m", "-"]
    );
    assert_eq!(
        rows[2],
        [
            "db",
            "0 3 * * *",
            "3",
            "-",
            "-",
            "2h ago",
            "in 3h",
            "criu dump failed"
        ]
    );
    assert_eq!(
        json_lines(&agent.migrate(&["backup", "schedules", "-o", "json"])).len(),
        2
    );

    assert_eq!(
        ok(agent.migrate(&["backup", "unschedule", "web"])),
        "removed the backup schedule of web; its backups stay\n"
    );
    let json = json_lines(&agent.migrate(&["backup", "unschedule", "web", "-o", "json"]));
    assert_eq!(json[0]["container_id"], "web");
    assert_eq!(json[0]["every_secs"], 900);
    fails_with(
        agent.migrate(&["backup", "unschedule", "db"]),
        "container db has no backup schedule",
    );
}

#[test]
fn backup_now_follows_the_operation_and_prints_the_backup() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["backup", "now", "web", "--replicate-to", "host2"]));
    assert_eq!(field(&out, "backup"), "bk-web-2");
    assert_eq!(field(&out, "replicas"), "host2");
    assert_eq!(field(&out, "operation"), "op-backup-web");
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("id: \"web\", replicate_to: \"host2\"")),
        "{requests:?}"
    );

    let output = agent.migrate(&["backup", "now", "web", "-o", "json"]);
    let json = json_lines(&output);
    assert_eq!(json.len(), 1);
    assert_eq!(
        keys(&json[0]),
        [
            "added_bytes",
            "backup_id",
            "container_id",
            "created_unix",
            "frozen_ms",
            "ip",
            "logical_bytes",
            "operation_id",
            "origin",
            "replicas",
            "sent_bytes",
            "stored_bytes",
            "verified_ok",
            "verified_unix",
            "verify_detail"
        ]
    );
    assert_eq!(json[0]["replicas"], serde_json::json!(["host2"]));
    assert_eq!(stderr(&output), "");

    fails_with(
        agent.migrate(&["backup", "now", "db"]),
        "container db is not running",
    );
}

#[test]
fn backup_ls_prints_the_backups_and_their_totals() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["backup", "ls", "web"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(
        cells(lines[0]),
        [
            "ID",
            "CONTAINER",
            "ORIGIN",
            "CREATED",
            "FROZEN",
            "LOGICAL",
            "ADDED",
            "REPLICAS",
            "VERIFIED"
        ]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "bk-web-2",
            "web",
            "host1",
            "10m ago",
            "120ms",
            "64.0 MiB",
            "2.0 MiB",
            "host2",
            "ok 3m ago"
        ]
    );
    assert_eq!(
        cells(lines[3]),
        ["bk-db-1", "db", "host1", "10m ago", "120ms", "64.0 MiB", "2.0 MiB", "-", "never"]
    );
    assert_eq!(
        lines[4],
        "3 backups: 192.0 MiB logical, 30.0 MiB stored after deduplication"
    );
    assert!(
        agent
            .requests()
            .iter()
            .any(|r| r.contains("container_id: \"web\"")),
        "{:?}",
        agent.requests()
    );

    let json = json_lines(&agent.migrate(&["backup", "ls", "-o", "json"]));
    assert_eq!(json.len(), 4);
    assert_eq!(json[0]["backup_id"], "bk-web-2");
    assert_eq!(
        json[3],
        serde_json::json!({"totals": {"backups": 3, "logical_bytes": 3 * (64 << 20), "stored_bytes": 30 << 20}})
    );
}

#[test]
fn backup_show_and_rm() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["backup", "show", "bk-web-1"]));
    for (label, value) in [
        ("backup", "bk-web-1"),
        ("container", "web"),
        ("origin", "host1"),
        ("created", "10m ago"),
        ("frozen", "120ms"),
        ("logical", "64.0 MiB"),
        ("stored", "20.0 MiB"),
        ("added", "2.0 MiB"),
        ("sent", "2.0 MiB"),
        ("replicas", "host2"),
        ("verified", "ok 3m ago"),
        ("verify detail", "1024 chunks ok"),
        ("ip", "198.18.1.10/16"),
    ] {
        assert_eq!(field(&out, label), value, "{label}");
    }
    fails_with(
        agent.migrate(&["backup", "show", "bk-nope"]),
        "backup bk-nope does not exist",
    );

    assert_eq!(
        ok(agent.migrate(&["backup", "rm", "bk-web-1"])),
        "removed backup bk-web-1\n"
    );
    let json = json_lines(&agent.migrate(&["backup", "rm", "bk-db-1", "-o", "json"]));
    assert_eq!(
        json,
        [serde_json::json!({"backup_id": "bk-db-1", "removed": true})]
    );
}

#[test]
fn backup_verify_prints_results_and_fails_when_any_backup_is_damaged() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["backup", "verify", "bk-web-1", "--restore-test"]));
    let rows: Vec<Vec<&str>> = out.lines().map(cells).collect();
    assert_eq!(rows[0], ["ID", "CONTAINER", "VERIFIED", "DETAIL"]);
    assert_eq!(rows[1], ["bk-web-1", "web", "ok 2m ago", "1024 chunks ok"]);
    assert!(
        agent
            .requests()
            .iter()
            .any(|r| r.contains("backup_id: \"bk-web-1\", restore_test: true")),
        "{:?}",
        agent.requests()
    );

    let output = agent.migrate(&["backup", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: 1 of 2 backups failed verification: bk-db-1\n"
    );
    let out = stdout(&output);
    let rows: Vec<Vec<&str>> = out.lines().map(cells).collect();
    assert_eq!(
        rows[2],
        ["bk-db-1", "db", "FAILED 2m ago", "chunk 3f2a hash mismatch"]
    );

    fails_with(
        agent.migrate(&["backup", "verify", "bk-gone"]),
        "backup bk-gone does not exist",
    );
}

#[test]
fn backup_restore_prints_the_restored_container() {
    let agent = FakeAgent::start();
    let json = json_lines(&agent.migrate(&[
        "backup", "restore", "web", "--from", "bk-web-1", "--on", "host2", "--as", "web2", "-o",
        "json",
    ]));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["id"], "web2");
    assert_eq!(json[0]["status"], "running");
    assert_eq!(json[0]["operation_id"], "op-restore-backup-web");
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r
                .contains("id: \"web\", backup_id: \"bk-web-1\", on: \"host2\", r#as: \"web2\"")),
        "{requests:?}"
    );
    let out = ok(agent.migrate(&["backup", "restore", "web"]));
    assert_eq!(field(&out, "id"), "web");
    assert_eq!(field(&out, "operation"), "op-restore-backup-web");
}

/// The shipped example drill: backup, fail-host, restore-latest, wait-healthy, assert; cleanup
/// recover-host.
fn host_loss() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/drills/host-loss.toml");
    std::fs::read_to_string(path).unwrap()
}

/// The 1-based line of the first line of `text` that is `line`.
fn line_number(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).unwrap() + 1
}

/// Writes a drill file into the fake's directory (the CLI's working directory).
fn drill_file(agent: &FakeAgent, name: &str, text: &str) {
    std::fs::write(agent.dir.path().join(name), text).unwrap();
}

#[test]
fn drill_validate_checks_the_file_with_the_agent() {
    let agent = FakeAgent::start();
    drill_file(&agent, "host-loss.toml", &host_loss());
    let out = ok(agent.migrate(&["drill", "validate", "host-loss.toml"]));
    assert_eq!(out, "host-loss.toml: ok (5 steps, 1 cleanup step)\n");
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("Drill { name: \"host loss\", rto_secs: 60, rpo_secs: 300")),
        "{requests:?}"
    );
    let json = json_lines(&agent.migrate(&["drill", "validate", "host-loss.toml", "-o", "json"]));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["valid"], true);
    assert_eq!(json[0]["steps"], 5);
    assert_eq!(json[0]["cleanup_steps"], 1);
}

#[test]
fn drill_file_problems_are_lines_and_need_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name = \"x\"\n[[step]]\naction = \"fial-host\"\n\n[[step]]\naction = \"sleep\"\nto = \"host2\"\n";
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let socket = dir.path().join("nothing.sock");
    let out = migrate_at(&socket, dir.path(), &["drill", "validate", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "bad.toml:3: step 1: field action: unknown action \"fial-host\"; one of move, move-back, \
         backup, fail-host, recover-host, restore-latest, wait-healthy, assert, sleep\n\
         bad.toml:5: step 2 (sleep): field secs: missing; sleep takes secs\n\
         bad.toml:7: step 2 (sleep): field to: does not apply to sleep; sleep takes secs\n\
         error: bad.toml: 3 problems\n"
    );
    let out = migrate_at(&socket, dir.path(), &["drill", "run", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).ends_with("error: bad.toml: 3 problems; the drill was not run\n"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.path().join("syntax.toml"), "name = \"x\n").unwrap();
    let out = migrate_at(&socket, dir.path(), &["drill", "validate", "syntax.toml"]);
    let err = stderr(&out);
    assert!(err.starts_with("syntax.toml:1: TOML syntax: "), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    fails_with(
        migrate_at(&socket, dir.path(), &["drill", "validate", "absent.toml"]),
        "failed to read drill file absent.toml: No such file or directory (os error 2)",
    );
}

#[test]
fn drill_agent_problems_land_on_the_files_lines() {
    let agent = FakeAgent::start();
    // fail-host's host (the cleanup's comes last in the file).
    let text = host_loss().replacen("host = \"host1\"", "host = \"host9\"", 1);
    let line = line_number(&text, "host = \"host9\"");
    drill_file(&agent, "d.toml", &text);
    let out = agent.migrate(&["drill", "validate", "d.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "d.toml:{line}: step 2 (fail-host): field host: unknown host host9: not this host \
             nor one of its [peers]\nerror: d.toml: 1 problem\n"
        )
    );
    let out = agent.migrate(&["drill", "validate", "d.toml", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json = json_lines(&out);
    assert_eq!(json[0]["valid"], false);
    assert_eq!(
        json[0]["problems"][0],
        serde_json::json!({
            "line": line, "step": 1, "cleanup": false, "action": "fail-host", "field": "host",
            "message": "unknown host host9: not this host nor one of its [peers]"
        })
    );
    // A drill with problems is not run.
    let out = agent.migrate(&["drill", "run", "d.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).ends_with("error: d.toml: 1 problem; the drill was not run\n"));
    let requests = agent.requests();
    assert!(
        !requests.iter().any(|r| r.starts_with("RunDrillRequest")),
        "{requests:?}"
    );
}

#[test]
fn drill_run_prints_the_report_and_writes_markdown() {
    let agent = FakeAgent::start();
    drill_file(&agent, "host-loss.toml", &host_loss());
    let out = agent.migrate(&["drill", "run", "host-loss.toml"]);
    assert_eq!(stderr(&out), "report written to drill-op-drill-9.md\n");
    let text = ok(out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("drill host loss (op-drill-9), coordinated by host2, started "),
        "{text}"
    );
    assert_eq!(
        cells(lines[1]),
        ["#", "ACTION", "TARGET", "OUTCOME", "TIME (ms)", "DETAIL"]
    );
    assert_eq!(
        cells(lines[3]),
        ["2", "fail-host", "host1", "passed", "1000", "-"]
    );
    assert_eq!(
        cells(lines[7]),
        ["cleanup 1", "recover-host", "host1", "passed", "1000", "-"]
    );
    assert_eq!(lines[8], "RTO 2.5 s (objective 60 s): met");
    assert_eq!(lines[9], "RPO not measured (objective 300 s)");
    assert_eq!(lines[10], "PASSED");
    let md = std::fs::read_to_string(agent.dir.path().join("drill-op-drill-9.md")).unwrap();
    assert!(md.starts_with("# Drill report: host loss\n"), "{md}");
    assert!(md.contains("- **Verdict:** **PASSED**\n"), "{md}");
    assert!(md.contains("| RTO <= 60 s | 2.5 s | yes |"), "{md}");
    assert!(
        md.contains("| 4 | wait-healthy | web | passed | 1000 | - |"),
        "{md}"
    );
    let requests = agent.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("RunDrillRequest") && r.ends_with("dry_run: false }")),
        "{requests:?}"
    );
}

#[test]
fn failed_drill_still_prints_and_keeps_its_report_then_exits_1() {
    let agent = FakeAgent::start();
    drill_file(
        &agent,
        "f.toml",
        &host_loss().replace("\"host loss\"", "\"host loss fails\""),
    );
    let out = agent.migrate(&["drill", "run", "f.toml", "--report", "out.md"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("RTO not measured (objective 60 s)\n"),
        "{text}"
    );
    assert!(
        text.ends_with("FAILED: step 4 (wait-healthy) failed: web not healthy after 30 s\n"),
        "{text}"
    );
    assert_eq!(
        stderr(&out),
        "report written to out.md\nerror: drill op-drill-9 failed: step 4 (wait-healthy) \
         failed: web not healthy after 30 s\n"
    );
    let md = std::fs::read_to_string(agent.dir.path().join("out.md")).unwrap();
    assert!(md.contains("- **Verdict:** **FAILED**: step 4"), "{md}");
    assert!(
        md.contains("| 4 | wait-healthy | web | failed | 1000 | web not healthy after 30 s: connection refused |"),
        "{md}"
    );
}

#[test]
fn drill_run_json_is_one_object_and_dry_run_changes_nothing() {
    let agent = FakeAgent::start();
    drill_file(&agent, "host-loss.toml", &host_loss());
    let out = agent.migrate(&["drill", "run", "host-loss.toml", "--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = json_lines(&out);
    assert_eq!(json.len(), 1);
    let report = &json[0];
    assert_eq!(report["drill_id"], "op-drill-9");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["passed"], true);
    assert_eq!(report["steps"].as_array().unwrap().len(), 5);
    assert_eq!(report["steps"][0]["outcome"], "planned");
    assert!(keys(report).contains(&"rto_objective_secs"));
    assert!(agent.dir.path().join("drill-op-drill-9.md").exists());
    let requests = agent.requests();
    assert!(
        requests.iter().any(|r| r.ends_with("dry_run: true }")),
        "{requests:?}"
    );
    let text = ok(agent.migrate(&["drill", "run", "host-loss.toml", "--dry-run"]));
    assert!(
        text.ends_with("\nPASSED (dry run: nothing was changed)\n"),
        "{text}"
    );
}

#[test]
fn drill_that_ends_without_a_report_is_one_error_line() {
    let agent = FakeAgent::start();
    drill_file(
        &agent,
        "c.toml",
        &host_loss().replace("\"host loss\"", "\"host loss crashes\""),
    );
    fails_with(
        agent.migrate(&["drill", "run", "c.toml"]),
        "the coordinator lost host2",
    );
    assert!(!agent.dir.path().join("drill-op-drill-9.md").exists());
}

#[test]
fn drill_ls_and_show() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["drill", "ls"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["ID", "NAME", "STARTED", "DURATION", "RESULT", "RTO", "RPO"]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "op-drill-2",
            "host loss",
            "10m ago",
            "14.2 s",
            "FAILED",
            "-",
            "4.0 s"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        [
            "op-drill-1",
            "host loss",
            "10m ago",
            "14.2 s",
            "PASSED",
            "12.3 s",
            "4.0 s"
        ]
    );
    let json = json_lines(&agent.migrate(&["drill", "ls", "-o", "json"]));
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["passed"], false);

    let out = agent.migrate(&["drill", "show", "op-drill-1"]);
    assert_eq!(stderr(&out), "");
    let text = ok(out);
    assert!(
        text.contains(
            "\nRTO 12.3 s (objective 60 s): met\nRPO 4.0 s (objective 300 s): met\nPASSED\n"
        ),
        "{text}"
    );
    assert!(!agent.dir.path().join("drill-op-drill-1.md").exists());
    let out = agent.migrate(&["drill", "show", "op-drill-1", "--report", "r.md"]);
    assert_eq!(stderr(&out), "report written to r.md\n");
    assert!(agent.dir.path().join("r.md").exists());
    fails_with(
        agent.migrate(&["drill", "show", "op-nope"]),
        "drill op-nope does not exist",
    );
}

#[test]
fn agent_unfence_prints_what_became_of_each_container() {
    let agent = FakeAgent::start();
    let out = ok(agent.migrate(&["agent", "unfence"]));
    assert_eq!(
        out,
        "unfenced; removed (running elsewhere): web; restarted: db; left stopped (a peer did not answer): none\n"
    );
    let json = json_lines(&agent.migrate(&["agent", "unfence", "-o", "json"]));
    assert_eq!(
        json[0],
        serde_json::json!({"removed": ["web"], "restarted": ["db"], "kept_stopped": []})
    );
    assert!(agent.requests().iter().any(|r| r == "UnfenceRequest"));
}
