//! Cluster CA and node certificates (rcgen), so operators need no openssl.
//!
//! `migrate-agent certs init` calls [`init_ca`] once per cluster; `migrate-agent certs issue
//! <node>` calls [`issue`] once per host. The files are plain PEM:
//!
//! ```text
//! <ca-dir>/ca.crt     0644  self-signed CA, ECDSA P-256, 10 years, CA:true pathlen:0, keyCertSign
//! <ca-dir>/ca.key     0600  the CA's private key (keep it off the hosts if you can)
//! <out-dir>/<node>.crt 0600 leaf for <node>: CN and DNS SAN = <node> (plus an IP SAN when <node>
//!                           is an IP address), EKU serverAuth + clientAuth, 2 years
//! <out-dir>/<node>.key 0600 the node's private key
//! ```
//!
//! A node uses one certificate both as a server (other agents connect to it) and as a client (it
//! connects to other agents); [`crate::tls`] checks that the name in it is in the peer list.
//! Files are written atomically (temp file, fsync, rename) and never replaced unless `force`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::Tag;

/// File name of the cluster CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the cluster CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long the cluster CA is valid.
const CA_VALIDITY: Duration = Duration::days(3653);
/// How long a node certificate is valid (capped by the CA's own expiry).
const NODE_VALIDITY: Duration = Duration::days(731);
/// Certificates start being valid a little in the past, so a host whose clock runs slightly
/// behind the issuing machine's accepts them at once.
const BACKDATE: Duration = Duration::hours(1);
/// Longest node name: one DNS label's worth, which keeps names short and usable as file names.
const MAX_NODE_LEN: usize = 63;
/// Longest cluster name (it ends up in the CA's subject).
const MAX_CLUSTER_LEN: usize = 64;

/// The files written by [`init_ca`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (PEM, 0644).
    pub cert: PathBuf,
    /// The CA private key (PEM, 0600).
    pub key: PathBuf,
}

impl CaFiles {
    /// Where [`init_ca`] puts the CA files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
        }
    }
}

/// The files written by [`issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// The node certificate (PEM, 0600).
    pub cert: PathBuf,
    /// The node private key (PEM, 0600).
    pub key: PathBuf,
}

impl NodeFiles {
    /// Where [`issue`] puts the files for `node` in `dir`.
    pub fn in_dir(dir: &Path, node: &str) -> Self {
        Self {
            cert: dir.join(format!("{node}.crt")),
            key: dir.join(format!("{node}.key")),
        }
    }
}

/// Errors from creating the cluster CA or issuing node certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A node name that cannot be a certificate name or a peer-list entry.
    #[error("invalid node name {node:?}: {reason}")]
    InvalidNode { node: String, reason: &'static str },
    /// A cluster name that cannot go into the CA's subject.
    #[error("invalid cluster name {cluster:?}: {reason}")]
    InvalidCluster {
        cluster: String,
        reason: &'static str,
    },
    /// The target file exists and `force` was not given.
    #[error("{path} already exists; refusing to overwrite it without force")]
    Exists { path: PathBuf },
    /// The node's files would land on top of the CA's own files.
    #[error("node certificate {path} would overwrite the cluster CA")]
    ClobbersCa { path: PathBuf },
    #[error("failed to create directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The CA certificate file holds no usable PEM certificate.
    #[error("{path} holds no PEM certificate")]
    NoCaCert { path: PathBuf },
    /// The CA certificate is unusable for issuing (not a CA, expired, unparsable subject...).
    #[error("{path} is not a usable CA certificate: {reason}")]
    BadCaCert { path: PathBuf, reason: String },
    /// The CA key file cannot be parsed.
    #[error("{path} is not a usable private key")]
    BadCaKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// `ca.key` and `ca.crt` are not a pair.
    #[error("CA key {key} does not belong to CA certificate {cert}")]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    /// rcgen refused to generate a key or a certificate.
    #[error("failed to generate the {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// The freshly issued certificate does not verify against the CA: a bug, never written out.
    #[error("the certificate issued for {node} does not verify against CA {ca}")]
    SelfCheck {
        node: String,
        ca: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Checks that `node` can be a certificate name and a peer-list entry: 1 to 63 characters of
/// `[A-Za-z0-9.-]`, not starting with `-` or `.`, not ending with `.`, no empty label (`..`).
///
/// The config should run its peer list through this too, so a typo is reported at start-up.
pub fn validate_node_name(node: &str) -> Result<(), CertError> {
    let invalid = |reason| {
        Err(CertError::InvalidNode {
            node: node.to_owned(),
            reason,
        })
    };
    if node.is_empty() {
        return invalid("it is empty");
    }
    if node.len() > MAX_NODE_LEN {
        return invalid("it is longer than 63 characters");
    }
    if !node
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return invalid("only letters, digits, '-' and '.' are allowed");
    }
    if node.starts_with('-') || node.starts_with('.') {
        return invalid("it must not start with '-' or '.'");
    }
    if node.ends_with('.') || node.contains("..") {
        return invalid("it must not end with '.' or contain an empty label");
    }
    Ok(())
}

fn validate_cluster_name(cluster: &str) -> Result<(), CertError> {
    let invalid = |reason| {
        Err(CertError::InvalidCluster {
            cluster: cluster.to_owned(),
            reason,
        })
    };
    if cluster.trim().is_empty() {
        return invalid("it is empty");
    }
    if cluster.chars().count() > MAX_CLUSTER_LEN {
        return invalid("it is longer than 64 characters");
    }
    if cluster.chars().any(char::is_control) {
        return invalid("it contains control characters");
    }
    Ok(())
}

/// Creates the cluster CA in `dir` (created with mode 0700 if missing): `ca.crt` (0644) and
/// `ca.key` (0600). Refuses to replace an existing CA unless `force`: every node certificate
/// issued by the old CA stops being accepted once the agents load the new `ca.crt`.
pub fn init_ca(dir: &Path, cluster: &str, force: bool) -> Result<CaFiles, CertError> {
    validate_cluster_name(cluster)?;
    let files = CaFiles::in_dir(dir);
    if !force {
        refuse_existing(&[&files.cert, &files.key])?;
    }
    create_private_dir(dir)?;

    let key = generate_key("CA key")?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, cluster);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{cluster} cluster CA"));
    // pathlen 0: this CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let cert = params
        .self_signed(&key)
        .map_err(|source| CertError::Generate {
            what: "CA certificate".to_owned(),
            source,
        })?;

    // Key first: a crash between the two writes leaves a key without a certificate, which
    // `init_ca` without force reports instead of silently pairing mismatched files.
    write_atomic(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// Issues a certificate for `node`, signed by the CA in `ca_dir`, into `out_dir` (created with
/// mode 0700 if missing) as `<node>.crt` and `<node>.key`, both 0600. Refuses to replace
/// existing files unless `force`.
pub fn issue(
    ca_dir: &Path,
    node: &str,
    out_dir: &Path,
    force: bool,
) -> Result<NodeFiles, CertError> {
    validate_node_name(node)?;
    let ca_files = CaFiles::in_dir(ca_dir);
    let files = NodeFiles::in_dir(out_dir, node);
    if !force {
        refuse_existing(&[&files.cert, &files.key])?;
    }
    let ca = load_ca(&ca_files)?;
    create_private_dir(out_dir)?;
    refuse_ca_clobber(&ca_files, &files)?;

    let key = generate_key("node key")?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, node);
    let dns = node.try_into().map_err(|source| CertError::Generate {
        what: format!("DNS name for {node}"),
        source,
    })?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    if let Ok(ip) = node.parse::<IpAddr>() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = (now + NODE_VALIDITY).min(ca.not_after);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|source| CertError::Generate {
            what: format!("certificate for {node}"),
            source,
        })?;

    // Check the result with the same verifier the peers use, so a subject that did not
    // round-trip exactly (the leaf's issuer must equal the CA's subject byte for byte) is caught
    // here and not at the first connection.
    crate::tls::verify_node_chain(&ca.der, &[cert.der().clone()]).map_err(|source| {
        CertError::SelfCheck {
            node: node.to_owned(),
            ca: ca_files.cert.clone(),
            source,
        }
    })?;

    write_atomic(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&files.cert, cert.pem().as_bytes(), 0o600)?;
    Ok(files)
}

/// A CA read back from disk, ready to sign.
struct LoadedCa {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

fn load_ca(files: &CaFiles) -> Result<LoadedCa, CertError> {
    let cert_pem = fs::read(&files.cert).map_err(|source| CertError::Read {
        path: files.cert.clone(),
        source,
    })?;
    let der = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| CertError::NoCaCert {
            path: files.cert.clone(),
        })?;
    let bad = |reason: String| CertError::BadCaCert {
        path: files.cert.clone(),
        reason,
    };
    let (_, x509) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| bad(format!("unparsable: {e}")))?;
    if !x509.is_ca() {
        return Err(bad("it is not a CA (basicConstraints CA:false)".to_owned()));
    }
    let not_after = x509.validity().not_after.to_datetime();
    if not_after <= OffsetDateTime::now_utc() {
        return Err(bad(format!("it expired at {not_after}")));
    }
    let subject = subject_to_rcgen(x509.subject()).map_err(bad)?;

    let key_pem = fs::read_to_string(&files.key).map_err(|source| CertError::Read {
        path: files.key.clone(),
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|source| CertError::BadCaKey {
        path: files.key.clone(),
        source,
    })?;
    if key.subject_public_key_info() != x509.public_key().raw {
        return Err(CertError::CaKeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    let issuer = Issuer::new(params, key);
    Ok(LoadedCa {
        der,
        issuer,
        not_after,
    })
}

/// Rebuilds the CA's subject for rcgen, keeping each attribute's order and string type so the
/// leaf's issuer field encodes to the same bytes as the CA's subject.
fn subject_to_rcgen(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter_rdn() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("its subject has a multi-valued RDN".to_owned());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("its subject has an unparsable attribute type")?
            .collect();
        let text = attr
            .as_str()
            .map_err(|_| "its subject has a non-string attribute".to_owned())?;
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| "its subject has an invalid PrintableString".to_owned())?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|_| "its subject has an invalid IA5String".to_owned())?,
            ),
            tag => return Err(format!("its subject uses an unsupported string type {tag}")),
        };
        let ty = DnType::from_oid(&oid);
        if dn.get(&ty).is_some() {
            return Err("its subject repeats an attribute".to_owned());
        }
        dn.push(ty, value);
    }
    Ok(dn)
}

fn generate_key(what: &str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| CertError::Generate {
        what: what.to_owned(),
        source,
    })
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(CertError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CertError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// `issue(dir, "ca", dir, true)` would replace the CA with a leaf; refuse that even with force.
fn refuse_ca_clobber(ca: &CaFiles, node: &NodeFiles) -> Result<(), CertError> {
    let same = |a: &Path, b: &Path| match (a.parent(), b.parent()) {
        (Some(pa), Some(pb)) => {
            a.file_name() == b.file_name()
                && matches!(
                    (fs::canonicalize(pa), fs::canonicalize(pb)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        _ => false,
    };
    for path in [&node.cert, &node.key] {
        if same(path, &ca.cert) || same(path, &ca.key) {
            return Err(CertError::ClobbersCa { path: path.clone() });
        }
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `contents` to `path` with exactly `mode` (whatever the umask): temp file in the same
/// directory, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        // A temp file left by a crashed run with the same pid would make create_new fail.
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn parse_pem(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        der.to_vec()
    }

    #[test]
    fn init_writes_ca_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let files = init_ca(&dir, "test", false).unwrap();
        assert_eq!(files, CaFiles::in_dir(&dir));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o644);

        let der = parse_pem(&files.cert);
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(x509.is_ca());
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign());
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "test cluster CA");
        let lifetime =
            x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp();
        assert!(lifetime > 10 * 365 * 86400, "CA lifetime {lifetime}s");
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let files = init_ca(tmp.path(), "test", false).unwrap();
        let before = fs::read(&files.key).unwrap();

        let err = init_ca(tmp.path(), "test", false).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
        assert_eq!(fs::read(&files.key).unwrap(), before);

        init_ca(tmp.path(), "test", true).unwrap();
        assert_ne!(fs::read(&files.key).unwrap(), before);
    }

    #[test]
    fn init_refuses_bad_cluster_name() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "  ", "a\nb"] {
            let err = init_ca(tmp.path(), bad, false).unwrap_err();
            assert!(matches!(err, CertError::InvalidCluster { .. }), "{err}");
        }
        assert!(!tmp.path().join(CA_CERT_FILE).exists());
    }

    #[test]
    fn issue_writes_leaf_with_san_and_ekus() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = init_ca(&tmp.path().join("ca"), "test", false).unwrap();
        let out = tmp.path().join("nodes");
        let files = issue(&tmp.path().join("ca"), "host1", &out, false).unwrap();
        assert_eq!(files, NodeFiles::in_dir(&out, "host1"));
        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o600);

        let der = parse_pem(&files.cert);
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!leaf.is_ca());
        let cn = leaf.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "host1");
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names, vec![GeneralName::DNSName("host1")]);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let lifetime =
            leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
        assert!(
            (2 * 365 * 86400..3 * 365 * 86400).contains(&lifetime),
            "lifetime {lifetime}s"
        );

        let ca_der = parse_pem(&ca.cert);
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(leaf.issuer().as_raw(), ca_x509.subject().as_raw());
    }

    #[test]
    fn issue_adds_ip_san_for_ip_node() {
        let tmp = tempfile::tempdir().unwrap();
        init_ca(tmp.path(), "test", false).unwrap();
        let files = issue(tmp.path(), "198.18.0.2", tmp.path(), false).unwrap();
        let der = parse_pem(&files.cert);
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![
                GeneralName::DNSName("198.18.0.2"),
                GeneralName::IPAddress(&[198, 18, 0, 2]),
            ]
        );
    }

    #[test]
    fn issue_refuses_invalid_node_names() {
        let tmp = tempfile::tempdir().unwrap();
        init_ca(tmp.path(), "test", false).unwrap();
        let long = "a".repeat(64);
        for bad in [
            "", "-host", ".host", "host.", "ho..st", "host_1", "host 1", "höst", "a/b", "../x",
            &long,
        ] {
            let err = issue(tmp.path(), bad, tmp.path(), false).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidNode { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().starts_with("invalid node name"), "{err}");
        }
        for good in ["h", "host-1", "Host1.example", "10.0.0.1", &"a".repeat(63)] {
            validate_node_name(good).unwrap();
        }
    }

    #[test]
    fn issue_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        init_ca(tmp.path(), "test", false).unwrap();
        let files = issue(tmp.path(), "host1", tmp.path(), false).unwrap();
        let err = issue(tmp.path(), "host1", tmp.path(), false).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        let before = fs::read(&files.cert).unwrap();
        issue(tmp.path(), "host1", tmp.path(), true).unwrap();
        assert_ne!(fs::read(&files.cert).unwrap(), before);
    }

    #[test]
    fn issue_never_overwrites_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = init_ca(tmp.path(), "test", false).unwrap();
        let before = fs::read(&ca.key).unwrap();
        let err = issue(tmp.path(), "ca", tmp.path(), true).unwrap_err();
        assert!(matches!(err, CertError::ClobbersCa { .. }), "{err}");
        assert_eq!(fs::read(&ca.key).unwrap(), before);
    }

    #[test]
    fn issue_needs_a_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let err = issue(tmp.path(), "host1", tmp.path(), false).unwrap_err();
        assert!(matches!(err, CertError::Read { .. }), "{err}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }

    #[test]
    fn issue_refuses_mismatched_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        init_ca(&a, "test", false).unwrap();
        init_ca(&b, "test", false).unwrap();
        fs::copy(b.join(CA_KEY_FILE), a.join(CA_KEY_FILE)).unwrap();
        let err = issue(&a, "host1", tmp.path(), false).unwrap_err();
        assert!(matches!(err, CertError::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn issue_refuses_a_leaf_as_ca() {
        let tmp = tempfile::tempdir().unwrap();
        init_ca(tmp.path(), "test", false).unwrap();
        let leaf = issue(tmp.path(), "host1", tmp.path(), false).unwrap();
        let fake = tmp.path().join("fake");
        fs::create_dir(&fake).unwrap();
        fs::copy(&leaf.cert, fake.join(CA_CERT_FILE)).unwrap();
        fs::copy(&leaf.key, fake.join(CA_KEY_FILE)).unwrap();
        let err = issue(&fake, "host2", tmp.path(), false).unwrap_err();
        assert!(matches!(err, CertError::BadCaCert { .. }), "{err}");
    }
}
