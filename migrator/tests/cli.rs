//! Behaviour tests of the real `migrate` binary against a fake agent: an in-process
//! `migrate.v1.Agent` server with canned answers on a unix socket in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::v1::agent_server::{Agent, AgentServer};
use proto::v1::{
    AgentStatus, Checkpoint, CheckpointRequest, Container, ContainerRef, ContainerStatus,
    ExecRequest, ExecResponse, Feature, Host, HostsRequest, HostsResponse, KillRequest,
    ListCheckpointsRequest, ListCheckpointsResponse, ListOperationsRequest, ListOperationsResponse,
    ListRequest, ListResponse, LogChunk, LogsRequest, MoveReport, MoveRequest, Operation,
    OperationEvent, OperationRef, OperationResult, PhaseTime, RemoveRequest, RemoveResponse,
    RestartPolicy, RestoreRequest, RunRequest, StatusRequest, StopRequest,
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
