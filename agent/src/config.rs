//! The agent's configuration file (TOML, default `/etc/migrate/agent.toml`). Unknown keys and
//! bad values are errors that name the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::TlsFiles;

/// Default location of the config file.
pub const DEFAULT_CONFIG: &str = "/etc/migrate/agent.toml";
/// Default local socket.
pub const DEFAULT_SOCKET: &str = "/run/migrate/agent.sock";

/// Configuration errors: each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, unknown keys or wrong types.
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range.
    #[error("invalid config {path}: {key}: {reason}")]
    Value {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's name; its peers know it by this name (and its certificate carries it).
    pub node: String,
    /// Where the agent keeps its catalog, container state, logs and checkpoints.
    pub state_dir: PathBuf,
    /// The local API socket (mode 0600).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// `text` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Address of the Prometheus `/metrics` endpoint (off when absent).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Cgroup parent of the containers (default `/migrate`).
    #[serde(default = "default_cgroup_parent")]
    pub cgroup_parent: String,
    /// Log files are rotated at this size (default 10 MiB), keeping `log_keep` old files.
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
    /// Rotated log files kept (default 3).
    #[serde(default = "default_log_keep")]
    pub log_keep: u32,
    /// Where a move's images live while it runs (default: `/dev/shm/migrate-<node>` when
    /// `/dev/shm` is a tmpfs, else `<state_dir>/checkpoints`).
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
    /// The peer API.
    #[serde(default)]
    pub peer: Option<PeerListen>,
    /// Certificates for the peer API.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Other agents: name → address (`host:port`).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Container networking.
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// Run lazy moves without `--yes`: their lack of rollback is accepted for every move.
    #[serde(default)]
    pub lazy_moves_without_yes: bool,
}

/// How containers with an address are attached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The bridge (in the agent's network namespace) that containers' veths join. Hosts
    /// between which containers move must share its L2 segment.
    pub bridge: String,
}

/// Where the peer API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerListen {
    /// TCP address, e.g. `198.18.0.1:7443`.
    pub listen: SocketAddr,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_cgroup_parent() -> String {
    runtime::factory::DEFAULT_CGROUP_PARENT.to_string()
}
fn default_log_max_bytes() -> u64 {
    10 << 20
}
fn default_log_keep() -> u32 {
    3
}

impl Config {
    /// Reads and validates the config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text (`path` is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e
                .to_string()
                .replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        if let Err(reason) = validate_node_name(&self.node) {
            return Err(bad("node", reason));
        }
        if let Some(p) = &self.scratch_dir {
            if !p.is_absolute() {
                return Err(bad(
                    "scratch_dir",
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        for (key, p) in [("state_dir", &self.state_dir), ("socket", &self.socket)] {
            if !p.is_absolute() {
                return Err(bad(key, format!("{} is not an absolute path", p.display())));
            }
        }
        if !self.cgroup_parent.starts_with('/') || self.cgroup_parent.contains("..") {
            return Err(bad(
                "cgroup_parent",
                format!("{:?} must be an absolute cgroup path", self.cgroup_parent),
            ));
        }
        if self.log_max_bytes < 4096 {
            return Err(bad("log_max_bytes", "must be at least 4096".into()));
        }
        for (name, addr) in &self.peers {
            if let Err(reason) = validate_node_name(name) {
                return Err(bad(&format!("peers.{name}"), reason));
            }
            if name == &self.node {
                return Err(bad(
                    &format!("peers.{name}"),
                    "a peer cannot have this node's own name".into(),
                ));
            }
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(bad(
                    &format!("peers.{name}"),
                    format!("{addr:?} is not host:port"),
                ));
            }
        }
        if let Some(net) = &self.network {
            let ok = !net.bridge.is_empty()
                && net.bridge.len() <= 15
                && net
                    .bridge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !ok {
                return Err(bad(
                    "network.bridge",
                    format!("{:?} is not an interface name", net.bridge),
                ));
            }
        }
        if (self.peer.is_some() || !self.peers.is_empty()) && self.tls.is_none() {
            return Err(bad(
                "tls",
                "the peer API needs [tls] ca, cert and key".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            for (key, p) in [
                ("tls.ca", &tls.ca),
                ("tls.cert", &tls.cert),
                ("tls.key", &tls.key),
            ] {
                if !p.is_absolute() {
                    return Err(bad(key, format!("{} is not an absolute path", p.display())));
                }
            }
        }
        Ok(())
    }

    /// The runtime's state root.
    pub fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }
    /// Per-container log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
    /// The checkpoint store.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.state_dir.join("checkpoints")
    }
    /// Where moves keep their images while they run.
    pub fn scratch_dir(&self) -> PathBuf {
        if let Some(p) = &self.scratch_dir {
            return p.clone();
        }
        let shm = Path::new("/dev/shm");
        let tmpfs = nix::sys::statfs::statfs(shm)
            .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
            .unwrap_or(false);
        if tmpfs {
            shm.join(format!("migrate-{}", self.node))
        } else {
            self.checkpoints_dir()
        }
    }

    /// The catalog database.
    pub fn catalog_path(&self) -> PathBuf {
        self.state_dir.join("catalog.db")
    }
}

/// Node names: 1..=63 of `[A-Za-z0-9.-]`, not starting with `-` or `.`.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid node name (1-63 of A-Z a-z 0-9 . -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "host1"
state_dir = "/var/lib/migrate"
metrics_listen = "127.0.0.1:9464"
[peer]
listen = "198.18.0.1:7443"
[tls]
ca = "/etc/migrate/ca.crt"
cert = "/etc/migrate/host1.crt"
key = "/etc/migrate/host1.key"
[peers]
host2 = "198.18.0.2:7443"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/migrate/agent.toml"), text)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.node, "host1");
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.peers["host2"], "198.18.0.2:7443");
        assert_eq!(c.cgroup_parent, "/migrate");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                GOOD.replace("node = \"host1\"", "node = \"host1\"\ncolour = \"blue\""),
                "colour",
            ),
            (GOOD.replace("\"host1\"", "\"bad name\""), "node"),
            (
                GOOD.replace("/var/lib/migrate", "relative/dir"),
                "state_dir",
            ),
            (GOOD.replace("198.18.0.2:7443", "nowhere"), "peers.host2"),
            (
                GOOD.replace("listen = \"198.18.0.1:7443\"", "listen = \"not-an-addr\""),
                "listen",
            ),
            (
                GOOD.replace("metrics_listen = \"127.0.0.1:9464\"", "metrics_listen = 5"),
                "metrics_listen",
            ),
            (GOOD.replace("[tls]\nca", "[tls]\ncolor = 1\nca"), "color"),
            (format!("log_format = \"xml\"\n{GOOD}"), "xml"),
            ("node = \"h\"".to_string(), "state_dir"),
        ];
        for (text, key) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
            assert!(
                err.starts_with("invalid config /etc/migrate/agent.toml"),
                "{err}"
            );
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml.example");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.network.unwrap().bridge, "br0");
    }

    #[test]
    fn peers_need_tls() {
        let text = "node = \"a\"\nstate_dir = \"/s\"\n[peers]\nb = \"198.18.0.2:1\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("tls"), "{err}");
    }
}
