//! Listeners and lifecycle: the local API on a unix socket (0600), the peer API over mutual
//! TLS, `/metrics`, and a graceful drain on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::v1::agent_server::AgentServer;
use proto::v1::peer_server::PeerServer;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::daemon::Agent;
use crate::service::{local::LocalApi, peer::PeerApi};
use crate::tls;

/// Unreferenced chunks older than this are garbage.
const GC_AGE: Duration = Duration::from_secs(3600);
/// How often the store is collected.
const GC_INTERVAL: Duration = Duration::from_secs(600);

/// How long SIGTERM waits for running operations before the agent exits anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the agent until SIGTERM or SIGINT, then drains.
pub async fn serve(agent: Arc<Agent>) -> anyhow::Result<()> {
    agent
        .adopt_all()
        .map_err(|e| anyhow::anyhow!("cannot re-adopt containers: {e}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let socket = agent.config.socket.clone();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", socket.display()))?;
    tracing::info!(socket = %socket.display(), node = %agent.config.node, "local API listening");
    let local = Server::builder()
        .trace_fn(|req| tracing::info_span!("rpc", rpc.method = %req.uri().path()))
        .add_service(AgentServer::new(LocalApi::new(agent.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            stopped(),
        );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { local.await.context("local API failed") });

    if let Some(peer) = &agent.config.peer {
        let files = agent.config.tls.as_ref().context("[peer] needs [tls]")?;
        let tls = tls::server_config(files).map_err(|e| anyhow::anyhow!(crate::shim::chain(&e)))?;
        let peers: Vec<String> = agent.config.peers.keys().cloned().collect();
        let addr = peer.listen;
        let svc =
            PeerServer::with_interceptor(PeerApi::new(agent.clone()), tls::peer_interceptor(peers));
        let server = Server::builder()
            .tls_config(tls)
            .context("bad TLS config")?
            // A peer that vanished mid-stream (a move's page relay) is noticed within ~30 s.
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .trace_fn(|req| tracing::info_span!("peer_rpc", rpc.method = %req.uri().path()))
            .add_service(svc)
            .serve_with_shutdown(addr, stopped());
        tracing::info!(%addr, "peer API listening (mutual TLS)");
        tasks.spawn(async move {
            server
                .await
                .with_context(|| format!("peer API on {addr} failed"))
        });
    }

    if let Some(addr) = agent.config.metrics_listen {
        let a = agent.clone();
        let render = move || {
            refresh_container_gauges(&a);
            a.metrics.render()
        };
        tracing::info!(%addr, "metrics listening");
        let stop = stopped();
        tasks.spawn(async move {
            crate::metrics::serve(addr, render, stop)
                .await
                .with_context(|| format!("metrics on {addr} failed"))
        });
    }

    // Chunks no manifest names (a transfer cut off before its manifest) are removed once they
    // are an hour old; younger ones may belong to a manifest being assembled.
    crate::backups::scheduler(agent.clone());
    let gc_agent = agent.clone();
    tokio::spawn(async move {
        loop {
            let a = gc_agent.clone();
            a.sweep_stages(GC_AGE);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.collect_garbage(GC_AGE)).await
            {
                tracing::warn!(error = %e, "store garbage collection failed");
            }
            tokio::time::sleep(GC_INTERVAL).await;
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        Some(r) = tasks.join_next() => {
            r??;
        }
    }
    let _ = stop_tx.send(true);
    drain(&agent).await;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "listener ended with an error");
        }
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!("agent stopped; containers keep running");
    Ok(())
}

/// Waits for running operations to finish (they reach their own safe point or roll back).
async fn drain(agent: &Agent) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let running = agent.ops.running();
        if running == 0 {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(running, "drain timed out; exiting with operations running");
            return;
        }
        tracing::info!(running, "waiting for operations to finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn refresh_container_gauges(agent: &Agent) {
    let mut counts = std::collections::BTreeMap::new();
    for s in ["created", "running", "paused", "stopped"] {
        counts.insert(s, 0i64);
    }
    for rec in agent.catalog.containers().unwrap_or_default() {
        let status = agent
            .runtime
            .load(&rec.id)
            .map(|c| c.status().as_str())
            .unwrap_or("stopped");
        *counts.entry(status).or_default() += 1;
    }
    for (status, n) in counts {
        agent.metrics.containers.with_label_values(&[status]).set(n);
    }
}
