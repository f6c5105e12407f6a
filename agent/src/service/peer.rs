//! The `Peer` API (agent → agent over mutual TLS), and probing peers for `hosts`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::peer_client::PeerClient;
use proto::v1::peer_server::Peer;
use proto::v1::*;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

use crate::daemon::Agent;
use crate::tls::{self, PeerName};

/// How long `hosts` waits for each peer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The peer API service. Every request has passed [`tls::peer_interceptor`].
pub struct PeerApi {
    agent: Arc<Agent>,
}

impl PeerApi {
    /// Serves `agent`.
    pub fn new(agent: Arc<Agent>) -> PeerApi {
        PeerApi { agent }
    }
}

#[tonic::async_trait]
impl Peer for PeerApi {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let peer = peer_name(&req);
        let claimed = req.into_inner().node;
        if !claimed.is_empty() && claimed != peer {
            return Err(Status::permission_denied(format!(
                "peer certificate names {peer}, but the request says {claimed}"
            )));
        }
        tracing::info!(peer = %peer, "hello from peer");
        let a = self.agent.clone();
        let criu_version = tokio::task::spawn_blocking(move || {
            a.criu_report()
                .as_ref()
                .map(|r| r.version.to_string())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        Ok(Response::new(HelloResponse {
            node: self.agent.config.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            criu_version,
            kernel: self.agent.host.kernel.clone(),
        }))
    }

    async fn preflight(
        &self,
        req: Request<PreflightRequest>,
    ) -> Result<Response<PreflightResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let r = req.into_inner();
        tracing::info!(container.id = %r.container_id, move.id = %r.move_id, "preflight");
        let resp = self
            .blocking(move |a| Ok(crate::moves::preflight(&a, &r)))
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(resp))
    }

    async fn have_chunks(
        &self,
        req: Request<HaveChunksRequest>,
    ) -> Result<Response<HaveChunksResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let r = req.into_inner();
        let store = crate::moves::transfer_store(&self.agent, &r.move_id);
        let have = r.hashes.iter().map(|h| store.has(h)).collect();
        Ok(Response::new(HaveChunksResponse { have }))
    }

    async fn put_chunks(
        &self,
        req: Request<tonic::Streaming<ChunkUpload>>,
    ) -> Result<Response<PutChunksResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let mut stream = req.into_inner();
        let (mut chunks, mut bytes) = (0u64, 0u64);
        // Verify and store several chunks at once (decompress + hash is the costly part), while
        // the next ones arrive.
        let mut pending = tokio::task::JoinSet::new();
        let limit = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            * 2;
        let check = |r: Result<Result<(), (String, String)>, tokio::task::JoinError>| -> Result<(), Status> {
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err((hash, e))) => {
                    tracing::warn!(chunk = %hash, error = %e, "refused a chunk");
                    Err(Status::data_loss(e))
                }
                Err(e) => Err(Status::internal(e.to_string())),
            }
        };
        // Placements without data name chunks that may still be on their way: they wait
        // until every chunk of the stream is stored.
        let mut placements = Vec::new();
        let put = |pending: &mut tokio::task::JoinSet<_>, chunk: ChunkUpload| {
            let a = self.agent.clone();
            pending.spawn_blocking(move || {
                crate::moves::put_chunk(&a, &chunk).map_err(|e| (chunk.hash.clone(), e))
            });
        };
        while let Some(chunk) = stream.message().await? {
            if chunk.data.is_empty() {
                placements.push(chunk);
                continue;
            }
            bytes += chunk.data.len() as u64;
            chunks += 1;
            put(&mut pending, chunk);
            while pending.len() >= limit {
                check(pending.join_next().await.expect("pending is not empty"))?;
            }
        }
        while let Some(r) = pending.join_next().await {
            check(r)?;
        }
        for chunk in placements {
            put(&mut pending, chunk);
            while pending.len() >= limit {
                check(pending.join_next().await.expect("pending is not empty"))?;
            }
        }
        while let Some(r) = pending.join_next().await {
            check(r)?;
        }
        Ok(Response::new(PutChunksResponse { chunks, bytes }))
    }

    async fn receive(
        &self,
        req: Request<ReceiveRequest>,
    ) -> Result<Response<ReceiveResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let source = peer_name(&req);
        let r = req.into_inner();
        let op = self
            .agent
            .ops
            .start_with_id(&r.move_id, "move-in", &r.container_id);
        let a = self.agent.clone();
        let result = tokio::task::spawn_blocking(move || {
            let res = crate::moves::receive(&a, &op, &r, &source);
            match &res {
                Ok(_) => op.finish(Ok(Default::default())),
                Err(e) => op.finish(Err(e.clone())),
            }
            res
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok((pid, restore_ms)) => Ok(Response::new(ReceiveResponse { pid, restore_ms })),
            Err(e) => Err(Status::failed_precondition(e)),
        }
    }

    async fn finish(
        &self,
        req: Request<FinishRequest>,
    ) -> Result<Response<FinishResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let r = req.into_inner();
        tracing::info!(move.id = %r.move_id, commit = r.commit, "move finished by the source");
        self.blocking(move |a| crate::moves::finish(&a, &r.move_id, r.commit))
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(FinishResponse {}))
    }

    async fn move_status(
        &self,
        req: Request<MoveStatusRequest>,
    ) -> Result<Response<MoveStatusResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let id = req.into_inner().move_id;
        let state = self
            .blocking(move |a| Ok(crate::moves::status(&a, &id)))
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(MoveStatusResponse { state }))
    }

    async fn put_backup(
        &self,
        req: Request<PutBackupRequest>,
    ) -> Result<Response<PutBackupResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let peer = peer_name(&req);
        let r = req.into_inner();
        let origin = r
            .backup
            .as_ref()
            .map(|b| b.origin.clone())
            .unwrap_or_default();
        if origin != peer {
            return Err(Status::permission_denied(format!(
                "{peer} may only replicate its own backups, not one taken on {origin:?}"
            )));
        }
        let kept = self
            .blocking(move |a| crate::backups::accept_replica(&a, &r))
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(PutBackupResponse { kept }))
    }

    async fn restore_backup(
        &self,
        req: Request<PeerRestoreBackupRequest>,
    ) -> Result<Response<PeerRestoreBackupResponse>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        let r = req.into_inner();
        let b = crate::backups::find(&self.agent, &r.backup_id)?;
        let name = if r.r#as.is_empty() {
            b.container_id.clone()
        } else {
            r.r#as.clone()
        };
        let op = self.agent.ops.start("backup-restore", &name);
        let a = self.agent.clone();
        let result = tokio::task::spawn_blocking(move || {
            let res = crate::backups::restore(&a, &op, &b, &name, false);
            op.finish(res.clone().map(|_| Default::default()));
            res
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        result
            .map(|container| {
                Response::new(PeerRestoreBackupResponse {
                    container: Some(container),
                })
            })
            .map_err(Status::failed_precondition)
    }

    type PageRelayStream = tokio_stream::wrappers::ReceiverStream<Result<PageRelayMessage, Status>>;

    async fn page_relay(
        &self,
        req: Request<tonic::Streaming<PageRelayMessage>>,
    ) -> Result<Response<Self::PageRelayStream>, Status> {
        crate::drills::check_not_fenced(&self.agent)?;
        crate::lazy::relay_to_target(self.agent.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn drill_step(
        &self,
        req: Request<PeerDrillStepRequest>,
    ) -> Result<Response<PeerDrillStepResponse>, Status> {
        let r = req.into_inner();
        let step = r.step.unwrap_or_default();
        // A failed host answers only the step that ends its failure.
        if step.action != "recover-host" {
            crate::drills::check_not_fenced(&self.agent)?;
        }
        tracing::info!(drill.id = %r.drill_id, action = %step.action, container.id = %step.container, "drill step");
        crate::drills::local_step(self.agent.clone(), &r.drill_id, &step)
            .await
            .map(Response::new)
            .map_err(Status::failed_precondition)
    }
}

impl PeerApi {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<Agent>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || f(agent))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// The calling peer's node name, from its certificate (set by [`tls::peer_interceptor`]).
fn peer_name<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<PeerName>()
        .map(|p| p.0.clone())
        .unwrap_or_default()
}

/// Connects to peer `name` at `address` over mTLS and says hello.
pub async fn probe(agent: &Agent, name: &str, address: &str) -> Host {
    let started = Instant::now();
    let result = hello(agent, name, address).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(r) => Host {
            name: name.into(),
            address: address.into(),
            reachable: true,
            detail: format!(
                "agent {} criu {} kernel {}",
                r.version, r.criu_version, r.kernel
            ),
            latency_ms,
        },
        Err(e) => Host {
            name: name.into(),
            address: address.into(),
            reachable: false,
            detail: e,
            latency_ms,
        },
    }
}

async fn hello(agent: &Agent, name: &str, address: &str) -> Result<HelloResponse, String> {
    let files = agent.config.tls.as_ref().ok_or("no [tls] in the config")?;
    let tls = tls::client_config(files, name).map_err(|e| crate::shim::chain(&e))?;
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| crate::shim::chain(&e))?
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| crate::shim::chain(&e))?;
    let mut client = PeerClient::new(channel);
    let resp = client
        .hello(HelloRequest {
            node: agent.config.node.clone(),
        })
        .await
        .map_err(|s| crate::shim::chain(&s))?;
    let resp = resp.into_inner();
    if resp.node != name {
        return Err(format!(
            "peer at {address} says it is {}, not {name}",
            resp.node
        ));
    }
    Ok(resp)
}
