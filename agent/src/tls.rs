//! Mutual TLS for the peer API: server and client configs, and peer authorization.
//!
//! Two checks guard every peer connection:
//!
//! 1. The TLS handshake: the server requires a client certificate chaining to the cluster CA
//!    ([`server_config`]); the client trusts only the cluster CA and checks the server's name
//!    ([`client_config`]). A certificate from another CA never gets past the handshake.
//! 2. The peer list: [`peer_interceptor`] (or [`authorize`] in a handler) reads the name in the
//!    client certificate ([`peer_node`]) and refuses, with `PERMISSION_DENIED`, a name that is
//!    not in this agent's peer list. An authorized request carries a [`PeerName`] extension.
//!
//! ```text
//! let tls = tls::server_config(&config.tls)?;
//! let peer = PeerServer::with_interceptor(service, tls::peer_interceptor(config.peers.clone()));
//! Server::builder().tls_config(tls)?.add_service(peer).serve_with_incoming(TcpIncoming::from(listener))
//! ```
//!
//! The client certificate reaches the interceptor through a request extension that tonic's TLS
//! acceptor sets only when the server's IO is a `TcpStream` (`TcpIncoming`, `serve`, or any
//! incoming stream of `TcpStream`s): with another IO type `peer_certs()` is `None` and every
//! request is refused as `UNAUTHENTICATED`, which fails closed.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};
use tracing::warn;
use x509_parser::extensions::GeneralName;

use crate::certs::CA_CERT_FILE;

/// A TLS handshake that has not finished by then is dropped, so a stalled or malicious client
/// cannot hold a connection open without authenticating.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an agent finds its TLS material (the `[tls]` table of the agent config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate (`ca.crt`): the only CA trusted for peers.
    pub ca: PathBuf,
    /// This node's certificate (`<node>.crt`), used as server and as client.
    pub cert: PathBuf,
    /// This node's private key (`<node>.key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `migrate-agent certs init/issue` write when CA and node share `dir`:
    /// `dir/ca.crt`, `dir/<node>.crt`, `dir/<node>.key`.
    pub fn in_dir(dir: &Path, node: &str) -> Self {
        let node_files = crate::certs::NodeFiles::in_dir(dir, node);
        Self {
            ca: dir.join(CA_CERT_FILE),
            cert: node_files.cert,
            key: node_files.key,
        }
    }
}

/// Errors from loading the TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not PEM.
    #[error("{path} is not valid PEM")]
    Pem {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A certificate file without a certificate in it.
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    /// A key file without a private key in it.
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    /// The CA file holds something that cannot be a trust anchor.
    #[error("{path} is not a usable CA certificate")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The key cannot be loaded, or does not belong to the certificate.
    #[error("private key {key} cannot be used with certificate {cert}")]
    BadKey {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Our own certificate would be refused by every peer (other CA, expired, wrong usage).
    #[error("certificate {cert} is not valid under the cluster CA {ca}")]
    NotTrusted {
        cert: PathBuf,
        ca: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The name the client expects the server to present cannot be a TLS server name.
    #[error("invalid peer server name {name:?}")]
    ServerName {
        name: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// The authorized peer's node name, added to the request's extensions by
/// [`peer_interceptor`] for handlers to log or compare with what the request claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(pub String);

/// Installs rustls' ring crypto provider as the process default, once. tonic's server side
/// builds its rustls config with the process default, which rustls can only pick by itself
/// when exactly one provider feature is compiled in; installing it explicitly keeps working
/// if another dependency ever enables aws-lc-rs.
pub fn install_crypto_provider() {
    // Err means some provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server side of the peer API: present our certificate, and require a client certificate
/// that chains to the cluster CA (the handshake fails otherwise). The peer-list check happens
/// per request in [`peer_interceptor`].
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let material = Material::load(files)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
        .client_ca_root(Certificate::from_pem(&material.ca_pem))
        .client_auth_optional(false)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// The client side of the peer API: trust only the cluster CA, present our certificate, and
/// require the server's certificate to name `server_name` (the peer as named in our peer list;
/// the URI may use an address instead).
pub fn client_config(files: &TlsFiles, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
    install_crypto_provider();
    ServerName::try_from(server_name).map_err(|source| TlsError::ServerName {
        name: server_name.to_owned(),
        source,
    })?;
    let material = Material::load(files)?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&material.ca_pem))
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
        .domain_name(server_name)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// The node name in the client certificate of `req`: the first DNS subject alternative name,
/// else the subject's common name. `None` without a client certificate (not a TLS connection,
/// or the server does not run tonic's TLS acceptor over TCP) or without a name in it.
pub fn peer_node<T>(req: &Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    cert_node_name(certs.first()?)
}

/// Allows `req` only if its client certificate names a host in `peers`, and returns that name.
/// `UNAUTHENTICATED` when there is no client certificate or no name in it, `PERMISSION_DENIED`
/// when the name is not in `peers`.
pub fn authorize<T>(req: &Request<T>, peers: &[String]) -> Result<String, Status> {
    let Some(certs) = req.peer_certs() else {
        return Err(Status::unauthenticated(
            "no client certificate: the peer API needs mutual TLS with a certificate from the cluster CA",
        ));
    };
    let Some(name) = certs.first().and_then(cert_node_name) else {
        return Err(Status::unauthenticated(
            "peer certificate has neither a DNS name nor a common name",
        ));
    };
    if peers.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
        Ok(name)
    } else {
        Err(Status::permission_denied(format!(
            "peer certificate names {name}, which is not in this agent's peer list"
        )))
    }
}

/// An interceptor for `PeerServer::with_interceptor` that runs [`authorize`] on every Peer RPC
/// and adds the peer's [`PeerName`] to the request extensions.
pub fn peer_interceptor(
    peers: Vec<String>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let peers: Arc<[String]> = peers.into();
    move |mut req: Request<()>| match authorize(&req, &peers) {
        Ok(name) => {
            req.extensions_mut().insert(PeerName(name));
            Ok(req)
        }
        Err(status) => {
            // Logged here because the caller only sees the status.
            let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            warn!(peer.addr = %remote, reason = status.message(), "peer refused");
            Err(status)
        }
    }
}

/// Checks `chain` (leaf first) the way a peer's server does: chains to `ca`, valid now,
/// clientAuth usage. Shared with [`crate::certs::issue`] as a self-check.
pub(crate) fn verify_node_chain(
    ca: &CertificateDer<'_>,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier.verify_client_cert(leaf, intermediates, UnixTime::now())?;
    Ok(())
}

fn cert_node_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let dns = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
        });
    dns.or_else(|| {
        let cn = cert.subject().iter_common_name().next()?;
        cn.as_str().ok().map(str::to_owned)
    })
}

/// The PEM files, read and checked up front so a bad path or a mismatched pair is reported at
/// start-up with the file's name (tonic would only say "invalid certificate" at bind time, or
/// accept it and fail every handshake).
struct Material {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Material {
    fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca_pem = read(&files.ca)?;
        let ca = parse_certs(&files.ca, &ca_pem)?;
        let mut roots = RootCertStore::empty();
        for cert in &ca {
            roots.add(cert.clone()).map_err(|source| TlsError::BadCa {
                path: files.ca.clone(),
                source,
            })?;
        }

        let cert_pem = read(&files.cert)?;
        let chain = parse_certs(&files.cert, &cert_pem)?;
        let key_pem = read(&files.key)?;
        let key = parse_key(&files.key, &key_pem)?;
        warn_if_key_exposed(&files.key);

        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|source| {
            TlsError::BadKey {
                key: files.key.clone(),
                cert: files.cert.clone(),
                source,
            }
        })?;

        let trusted = ca
            .iter()
            .any(|anchor| verify_node_chain(anchor, &chain).is_ok());
        if !trusted {
            // Report the reason against the first anchor: with one cluster CA that is the one.
            let source = verify_node_chain(&ca[0], &chain).unwrap_err();
            return Err(TlsError::NotTrusted {
                cert: files.cert.clone(),
                ca: files.ca.clone(),
                source,
            });
        }

        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_path_buf(),
        })
}

fn warn_if_key_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "private key is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    fn cluster(dir: &Path) -> TlsFiles {
        certs::init_ca(dir, "test", false).unwrap();
        certs::issue(dir, "host1", dir, false).unwrap();
        TlsFiles::in_dir(dir, "host1")
    }

    #[test]
    fn configs_load_from_issued_files() {
        let tmp = tempfile::tempdir().unwrap();
        let files = cluster(tmp.path());
        server_config(&files).unwrap();
        client_config(&files, "host2").unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = cluster(tmp.path());
        files.key = tmp.path().join("nope.key");
        let err = server_config(&files).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.key"), "{err}");
    }

    #[test]
    fn cert_from_another_ca_is_refused_at_load() {
        let tmp = tempfile::tempdir().unwrap();
        let files = cluster(&tmp.path().join("a"));
        let other = cluster(&tmp.path().join("b"));
        let mixed = TlsFiles {
            ca: files.ca.clone(),
            ..other
        };
        let err = server_config(&mixed).unwrap_err();
        assert!(matches!(err, TlsError::NotTrusted { .. }), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused_at_load() {
        let tmp = tempfile::tempdir().unwrap();
        let files = cluster(tmp.path());
        certs::issue(tmp.path(), "host2", tmp.path(), false).unwrap();
        let mixed = TlsFiles {
            key: tmp.path().join("host2.key"),
            ..files
        };
        let err = client_config(&mixed, "host2").unwrap_err();
        assert!(matches!(err, TlsError::BadKey { .. }), "{err}");
    }

    #[test]
    fn cert_file_without_cert_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = cluster(tmp.path());
        files.ca = files.key.clone();
        let err = server_config(&files).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    }

    #[test]
    fn bad_server_name_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let files = cluster(tmp.path());
        let err = client_config(&files, "not a name").unwrap_err();
        assert!(matches!(err, TlsError::ServerName { .. }), "{err}");
    }

    #[test]
    fn request_without_tls_is_unauthenticated() {
        let req = Request::new(());
        assert_eq!(peer_node(&req), None);
        let status = authorize(&req, &["host1".to_owned()]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let status = peer_interceptor(vec!["host1".to_owned()])(req).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn node_name_prefers_san_over_cn() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["san-name".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn-name");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_node_name(cert.der()).as_deref(), Some("san-name"));

        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn-name");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_node_name(cert.der()).as_deref(), Some("cn-name"));
    }

    #[test]
    fn tls_files_deny_unknown_fields() {
        let files: TlsFiles =
            toml::from_str("ca = \"/a/ca.crt\"\ncert = \"/a/h.crt\"\nkey = \"/a/h.key\"\n")
                .unwrap();
        assert_eq!(files.ca, Path::new("/a/ca.crt"));
        let err =
            toml::from_str::<TlsFiles>("ca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"\ncrt = \"/d\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("crt"), "{err}");
    }
}
