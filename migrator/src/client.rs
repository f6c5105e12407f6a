//! The connection to the local migrate-agent: gRPC over its unix socket.

use std::error::Error;
use std::io;
use std::path::Path;

use anyhow::anyhow;
use hyper_util::rt::TokioIo;
use proto::v1::agent_client::AgentClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// A connected Agent API client.
pub type Client = AgentClient<Channel>;

/// Connects to the agent at `socket`; fails with one readable line when nothing answers there.
pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    let path = socket.to_path_buf();
    // The URI is a placeholder: the connector ignores it and dials the socket.
    let channel = Endpoint::try_from("http://agent")?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|err| unreachable(socket, &err))?;
    Ok(AgentClient::new(channel))
}

/// The error for an agent that cannot be reached, naming the OS's reason and what to check.
fn unreachable(socket: &Path, err: &tonic::transport::Error) -> anyhow::Error {
    let io_error = io_cause(err);
    let reason = match io_error {
        Some(io_error) => io_error.to_string(),
        None => innermost(err).to_string(),
    };
    let hint = match io_error.map(io::Error::kind) {
        Some(io::ErrorKind::PermissionDenied) => "the socket is for root only",
        _ => "is the agent running? see docs/troubleshooting.md",
    };
    anyhow!(
        "cannot reach migrate-agent at {}: {reason} ({hint})",
        socket.display()
    )
}

/// The first `io::Error` in the error's chain of sources.
fn io_cause<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a io::Error> {
    std::iter::successors(Some(err), |&err| err.source()).find_map(|err| err.downcast_ref())
}

/// The last error in the chain: the most specific one.
fn innermost<'a>(err: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    std::iter::successors(Some(err), |&err| err.source())
        .last()
        .unwrap_or(err)
}
