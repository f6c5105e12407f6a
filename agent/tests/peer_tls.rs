//! The peer API over real mutual TLS on loopback: a certificate from another CA, a name not in
//! the peer list, no client certificate, or the wrong server name are all refused; a listed peer
//! with a certificate from the cluster CA gets through and is identified by its certificate.

use std::path::Path;
use std::time::Duration;

use agent::certs;
use agent::tls::{self, PeerName, TlsFiles};
use proto::v1::peer_client::PeerClient;
use proto::v1::peer_server::{Peer, PeerServer};
use proto::v1::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

/// Answers `Hello` with the name the interceptor authorized, so tests see who the server
/// thinks is calling.
struct EchoPeer;

#[tonic::async_trait]
impl Peer for EchoPeer {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let name = req
            .extensions()
            .get::<PeerName>()
            .ok_or_else(|| Status::internal("interceptor did not set PeerName"))?;
        Ok(Response::new(HelloResponse {
            node: name.0.clone(),
            ..Default::default()
        }))
    }

    // The move RPCs are not what these tests are about; the interceptor guards them the same way.
    async fn preflight(
        &self,
        _: Request<PreflightRequest>,
    ) -> Result<Response<PreflightResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn have_chunks(
        &self,
        _: Request<HaveChunksRequest>,
    ) -> Result<Response<HaveChunksResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn put_chunks(
        &self,
        _: Request<tonic::Streaming<ChunkUpload>>,
    ) -> Result<Response<PutChunksResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn receive(
        &self,
        _: Request<ReceiveRequest>,
    ) -> Result<Response<ReceiveResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn finish(&self, _: Request<FinishRequest>) -> Result<Response<FinishResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn move_status(
        &self,
        _: Request<MoveStatusRequest>,
    ) -> Result<Response<MoveStatusResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn put_backup(
        &self,
        _: Request<PutBackupRequest>,
    ) -> Result<Response<PutBackupResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn restore_backup(
        &self,
        _: Request<PeerRestoreBackupRequest>,
    ) -> Result<Response<PeerRestoreBackupResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    async fn drill_step(
        &self,
        _: Request<PeerDrillStepRequest>,
    ) -> Result<Response<PeerDrillStepResponse>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
    type PageRelayStream = tokio_stream::wrappers::ReceiverStream<Result<PageRelayMessage, Status>>;
    async fn page_relay(
        &self,
        _: Request<tonic::Streaming<PageRelayMessage>>,
    ) -> Result<Response<Self::PageRelayStream>, Status> {
        Err(Status::unimplemented("tls test peer"))
    }
}

/// A cluster CA with certificates for host1, host2 and host3, and a second, unrelated CA with
/// a certificate for host1 (same name, wrong CA).
struct Cluster {
    _tmp: tempfile::TempDir,
    host1: TlsFiles,
    host2: TlsFiles,
    host3: TlsFiles,
    /// host1's name, signed by another CA; trusts the cluster CA so only the server can object.
    impostor: TlsFiles,
    /// host2's name, signed by another CA, as a server.
    impostor_server: TlsFiles,
}

impl Cluster {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        certs::init_ca(&dir, "test", false).unwrap();
        for node in ["host1", "host2", "host3"] {
            certs::issue(&dir, node, &dir, false).unwrap();
        }
        let other = tmp.path().join("other");
        certs::init_ca(&other, "other", false).unwrap();
        certs::issue(&other, "host1", &other, false).unwrap();
        certs::issue(&other, "host2", &other, false).unwrap();
        let impostor = TlsFiles {
            ca: dir.join(certs::CA_CERT_FILE),
            ..TlsFiles::in_dir(&other, "host1")
        };
        Self {
            host1: TlsFiles::in_dir(&dir, "host1"),
            host2: TlsFiles::in_dir(&dir, "host2"),
            host3: TlsFiles::in_dir(&dir, "host3"),
            impostor,
            impostor_server: TlsFiles::in_dir(&other, "host2"),
            _tmp: tmp,
        }
    }
}

/// A Peer server on 127.0.0.1 (port 0), stopped on drop.
struct PeerAgent {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl PeerAgent {
    async fn start(files: &TlsFiles, peers: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peers = peers.iter().map(|p| p.to_string()).collect();
        let service = PeerServer::with_interceptor(EchoPeer, tls::peer_interceptor(peers));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::builder()
            .tls_config(tls::server_config(files).unwrap())
            .unwrap()
            .add_service(service);
        let task = tokio::spawn(server.serve_with_incoming_shutdown(
            TcpIncoming::from(listener),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            port,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = &mut self.task;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server did not stop")
            .unwrap()
            .expect("server failed");
    }
}

impl Drop for PeerAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a call failed.
#[derive(Debug)]
enum Failure {
    /// TCP, TLS or HTTP/2 set-up; the chain of causes.
    Connect(String),
    /// The RPC itself.
    Rpc(Status),
}

/// Dials the agent by address, verifying the server as `server_name`, and says hello.
async fn hello(port: u16, tls: ClientTlsConfig) -> Result<String, Failure> {
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| Failure::Connect(chain(&e)))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Failure::Connect(chain(&e)))?;
    let reply = PeerClient::new(channel)
        .hello(HelloRequest {
            node: "whoever".to_owned(),
        })
        .await
        .map_err(Failure::Rpc)?;
    Ok(reply.into_inner().node)
}

async fn hello_as(port: u16, files: &TlsFiles, server_name: &str) -> Result<String, Failure> {
    hello(port, tls::client_config(files, server_name).unwrap()).await
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The call failed in the TLS handshake (before the peer-list check could run), with the
/// server's `alert`. With TLS 1.3 the client finishes its side of the handshake before the
/// server has judged the client certificate, so the refusal may surface at connect time or at
/// the first RPC (as `UNKNOWN` "transport error" carrying the alert).
fn assert_refused_by_tls(result: Result<String, Failure>, alert: &str) {
    let text = match result {
        Ok(name) => panic!("call succeeded as {name}"),
        Err(Failure::Connect(text)) => text,
        Err(Failure::Rpc(status)) => {
            assert!(
                !matches!(status.code(), Code::PermissionDenied | Code::Ok),
                "expected a TLS failure, got {status:?}"
            );
            chain(&status)
        }
    };
    assert!(text.contains(alert), "expected alert {alert}, got: {text}");
}

#[tokio::test]
async fn listed_peer_with_cluster_certificate_is_accepted() {
    let cluster = Cluster::new();
    let agent = PeerAgent::start(&cluster.host2, &["host1"]).await;
    let name = hello_as(agent.port, &cluster.host1, "host2").await.unwrap();
    assert_eq!(name, "host1");
    agent.shutdown().await;
}

#[tokio::test]
async fn peer_not_in_peer_list_is_permission_denied() {
    let cluster = Cluster::new();
    let agent = PeerAgent::start(&cluster.host2, &["host1"]).await;
    match hello_as(agent.port, &cluster.host3, "host2").await {
        Err(Failure::Rpc(status)) => {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert_eq!(
                status.message(),
                "peer certificate names host3, which is not in this agent's peer list"
            );
        }
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let cluster = Cluster::new();
    // host1 is listed: only the CA check stands between the impostor and the service.
    let agent = PeerAgent::start(&cluster.host2, &["host1"]).await;
    // The impostor's files do not verify under the CA it trusts, so client_config refuses to
    // build them; go around it as an attacker would.
    let err = tls::client_config(&cluster.impostor, "host2").unwrap_err();
    assert!(matches!(err, tls::TlsError::NotTrusted { .. }), "{err}");
    let raw = raw_client_config(&cluster.impostor, "host2", true);
    assert_refused_by_tls(hello(agent.port, raw).await, "UnknownCA");

    // The server shrugs it off and keeps serving.
    let name = hello_as(agent.port, &cluster.host1, "host2").await.unwrap();
    assert_eq!(name, "host1");
    agent.shutdown().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let cluster = Cluster::new();
    let agent = PeerAgent::start(&cluster.host2, &["host1"]).await;
    let raw = raw_client_config(&cluster.host1, "host2", false);
    assert_refused_by_tls(hello(agent.port, raw).await, "CertificateRequired");
    agent.shutdown().await;
}

#[tokio::test]
async fn server_with_wrong_name_is_refused_by_client() {
    let cluster = Cluster::new();
    let agent = PeerAgent::start(&cluster.host2, &["host1"]).await;
    match hello_as(agent.port, &cluster.host1, "host9").await {
        Err(Failure::Connect(text)) => {
            assert!(text.contains(r#"not valid for name "host9""#), "{text}")
        }
        other => panic!("expected a connection failure, got {other:?}"),
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn server_from_another_ca_is_refused_by_client() {
    let cluster = Cluster::new();
    let agent = PeerAgent::start(&cluster.impostor_server, &["host1"]).await;
    match hello_as(agent.port, &cluster.host1, "host2").await {
        Err(Failure::Connect(text)) => assert!(text.contains("UnknownIssuer"), "{text}"),
        other => panic!("expected a connection failure, got {other:?}"),
    }
    agent.shutdown().await;
}

/// A client config built straight from the files, skipping `tls::client_config`'s checks; with
/// `identity` false it presents no client certificate.
fn raw_client_config(files: &TlsFiles, server_name: &str, identity: bool) -> ClientTlsConfig {
    tls::install_crypto_provider();
    let read = |p: &Path| std::fs::read(p).unwrap();
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&files.ca)))
        .domain_name(server_name);
    if identity {
        config.identity(tonic::transport::Identity::from_pem(
            read(&files.cert),
            read(&files.key),
        ))
    } else {
        config
    }
}
