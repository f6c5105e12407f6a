//! The agent's gRPC API exercised directly (the CLI tests drive the same agent through the
//! `migrate` binary): operations stream events and land in the catalog and journal.

use std::time::Duration;

use migrate_tests::agent::TestAgent;
use migrate_tests::rt::wait_for;
use migrate_tests::TestBundle;
use proto::v1::agent_client::AgentClient;
use proto::v1::*;
use tonic::transport::Channel;

async fn client(agent: &TestAgent) -> AgentClient<Channel> {
    let path = agent.socket.clone();
    let channel = tonic::transport::Endpoint::try_from("http://agent")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect to agent");
    AgentClient::new(channel)
}

async fn last_event(mut s: tonic::Streaming<OperationEvent>) -> (Vec<String>, OperationResult) {
    let mut phases = Vec::new();
    while let Some(e) = s.message().await.expect("event stream") {
        phases.push(e.phase.clone());
        if let Some(done) = e.done {
            return (phases, done);
        }
    }
    panic!("stream ended without a final event: {phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_restore_stream_events_and_journal() {
    migrate_tests::prereq::require_criu();
    let agent = TestAgent::start("host1", "");
    let mut c = client(&agent).await;
    let b = TestBundle::busybox(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i; usleep 50000; done",
    ]);
    let run = c
        .run(RunRequest {
            id: "web".into(),
            bundle: b.path().display().to_string(),
            restart: 0,
            ip: String::new(),
        })
        .await
        .expect("run")
        .into_inner();
    assert_eq!(run.status, ContainerStatus::Running as i32);
    let ck = c
        .checkpoint(CheckpointRequest {
            id: "web".into(),
            leave_running: false,
            tcp_established: false,
        })
        .await
        .expect("checkpoint")
        .into_inner();
    let (phases, done) = last_event(ck).await;
    assert!(done.success, "checkpoint failed: {}", done.error);
    assert!(
        phases.contains(&"dump".to_string()) && phases.contains(&"commit".to_string()),
        "{phases:?}"
    );
    let ckpt = done.checkpoint.expect("checkpoint result");
    assert!(ckpt.size_bytes > 0);
    let op_id = done.operation.expect("operation").operation_id;
    let after = c
        .inspect(ContainerRef { id: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.status, ContainerStatus::Stopped as i32);
    // A watcher that arrives late still sees the whole history.
    let (replayed, again) = last_event(
        c.watch_operation(OperationRef {
            operation_id: op_id.clone(),
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert!(
        again.success && replayed.len() == phases.len(),
        "{replayed:?} vs {phases:?}"
    );
    let rs = c
        .restore(RestoreRequest {
            checkpoint_id: String::new(),
            id: "web".into(),
        })
        .await
        .expect("restore")
        .into_inner();
    let (_, done) = last_event(rs).await;
    assert!(done.success, "restore failed: {}", done.error);
    let restored = done.container.expect("container");
    assert_eq!(restored.status, ContainerStatus::Running as i32);
    let ops = c
        .list_operations(ListOperationsRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner()
        .operations;
    assert_eq!(
        ops.iter()
            .map(|o| (o.kind.as_str(), o.state.as_str()))
            .collect::<Vec<_>>(),
        [("restore", "succeeded"), ("checkpoint", "succeeded")]
    );
    // The counter continued: the log's numbers go on past the checkpoint without restarting at 1.
    let logs = || async {
        let mut s = c
            .clone()
            .logs(LogsRequest {
                id: "web".into(),
                follow: false,
                tail: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(ch) = s.message().await.unwrap() {
            out.extend(ch.data);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let n_before = logs().await.lines().count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = logs().await;
    assert!(
        text.lines().count() > n_before,
        "logs did not continue after restore"
    );
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "log line {} is {line}", i + 1);
    }
    c.remove(RemoveRequest {
        id: "web".into(),
        force: true,
    })
    .await
    .unwrap();
    wait_for("container gone", Duration::from_secs(10), || {
        agent.runtime().list().ok().filter(|l| l.is_empty())
    });
}
