//! What the CLI prints for each API message: flat structs with stable snake_case JSON keys
//! (enums as lowercase words), and how each looks as a table row or as `key: value` lines.

use proto::v1::{self as api, ContainerStatus, RestartPolicy};
use serde::Serialize;

use crate::output::{self, age, bytes, or_dash, Fields, Row};

/// The lowercase word for a container status.
pub fn status_word(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Unknown => "unknown",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Stopped => "stopped",
    }
}

/// The flag spelling of a restart policy.
pub fn restart_word(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::No => "no",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Always => "always",
    }
}

/// A container (`ps`, `inspect`, `run`, `stop`, `kill`, `pause`, `resume`, `restore`).
#[derive(Debug, Serialize)]
pub struct ContainerView {
    pub id: String,
    pub status: &'static str,
    pub pid: i32,
    pub bundle: String,
    pub restart: &'static str,
    pub restarts: u32,
    pub exit_code: i32,
    pub created_unix: i64,
    pub cgroup: String,
    pub memory_bytes: u64,
    pub pids: u32,
    pub ip: String,
}

impl From<api::Container> for ContainerView {
    fn from(c: api::Container) -> Self {
        Self {
            status: status_word(c.status()),
            restart: restart_word(c.restart()),
            id: c.id,
            pid: c.pid,
            bundle: c.bundle,
            restarts: c.restarts,
            exit_code: c.exit_code,
            created_unix: c.created_unix,
            cgroup: c.cgroup,
            memory_bytes: c.memory_bytes,
            pids: c.pids,
            ip: c.ip,
        }
    }
}

impl ContainerView {
    /// `always` or, after restarts, `always (3)`.
    fn restart_cell(&self) -> String {
        if self.restarts == 0 {
            self.restart.to_string()
        } else {
            format!("{} ({})", self.restart, self.restarts)
        }
    }
}

impl Row for ContainerView {
    const HEADERS: &'static [&'static str] = &[
        "ID", "STATUS", "PID", "RESTART", "EXIT", "CREATED", "MEMORY",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.status.to_string(),
            or_dash(self.pid, self.pid == 0),
            self.restart_cell(),
            or_dash(self.exit_code, self.exit_code < 0),
            age(self.created_unix, output::now_unix()),
            or_dash(bytes(self.memory_bytes), self.memory_bytes == 0),
        ]
    }
}

impl Fields for ContainerView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.clone()),
            ("status", self.status.to_string()),
            ("pid", or_dash(self.pid, self.pid == 0)),
            ("bundle", self.bundle.clone()),
            ("restart", self.restart_cell()),
            ("exit code", or_dash(self.exit_code, self.exit_code < 0)),
            ("created", age(self.created_unix, output::now_unix())),
            ("cgroup", or_dash(&self.cgroup, self.cgroup.is_empty())),
            ("memory", bytes(self.memory_bytes)),
            ("pids", self.pids.to_string()),
        ]
    }
}

/// A checkpoint in the store (`checkpoints`, `checkpoint`).
#[derive(Debug, Serialize)]
pub struct CheckpointView {
    pub checkpoint_id: String,
    pub container_id: String,
    pub created_unix: i64,
    pub size_bytes: u64,
    pub frozen_ms: u64,
    pub leave_running: bool,
}

impl From<api::Checkpoint> for CheckpointView {
    fn from(c: api::Checkpoint) -> Self {
        Self {
            checkpoint_id: c.checkpoint_id,
            container_id: c.container_id,
            created_unix: c.created_unix,
            size_bytes: c.size_bytes,
            frozen_ms: c.frozen_ms,
            leave_running: c.leave_running,
        }
    }
}

impl Row for CheckpointView {
    const HEADERS: &'static [&'static str] = &["ID", "CONTAINER", "CREATED", "SIZE", "FROZEN"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.checkpoint_id.clone(),
            self.container_id.clone(),
            age(self.created_unix, output::now_unix()),
            bytes(self.size_bytes),
            format!("{}ms", self.frozen_ms),
        ]
    }
}

impl Fields for CheckpointView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("checkpoint", self.checkpoint_id.clone()),
            ("container", self.container_id.clone()),
            ("created", age(self.created_unix, output::now_unix())),
            ("size", bytes(self.size_bytes)),
            ("frozen", format!("{}ms", self.frozen_ms)),
            ("left running", yes_no(self.leave_running).to_string()),
        ]
    }
}

/// A long operation (`ops`).
#[derive(Debug, Serialize)]
pub struct OperationView {
    pub operation_id: String,
    pub kind: String,
    pub container_id: String,
    pub state: String,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    pub error: String,
}

impl From<api::Operation> for OperationView {
    fn from(op: api::Operation) -> Self {
        Self {
            operation_id: op.operation_id,
            kind: op.kind,
            container_id: op.container_id,
            state: op.state,
            started_unix_ms: op.started_unix_ms,
            finished_unix_ms: op.finished_unix_ms,
            error: op.error,
        }
    }
}

impl Row for OperationView {
    const HEADERS: &'static [&'static str] =
        &["ID", "KIND", "CONTAINER", "STATE", "STARTED", "ERROR"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.operation_id.clone(),
            self.kind.clone(),
            self.container_id.clone(),
            self.state.clone(),
            age(self.started_unix_ms / 1000, output::now_unix()),
            or_dash(&self.error, self.error.is_empty()),
        ]
    }
}

/// A peer host (`hosts`).
#[derive(Debug, Serialize)]
pub struct HostView {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    pub latency_ms: u64,
    pub detail: String,
}

impl From<api::Host> for HostView {
    fn from(h: api::Host) -> Self {
        Self {
            name: h.name,
            address: h.address,
            reachable: h.reachable,
            latency_ms: h.latency_ms,
            detail: h.detail,
        }
    }
}

impl Row for HostView {
    const HEADERS: &'static [&'static str] = &["NAME", "ADDRESS", "REACHABLE", "LATENCY", "DETAIL"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.address.clone(),
            yes_no(self.reachable).to_string(),
            or_dash(format!("{}ms", self.latency_ms), !self.reachable),
            or_dash(&self.detail, self.detail.is_empty()),
        ]
    }
}

/// One CRIU feature and whether this host has it.
#[derive(Debug, Serialize)]
pub struct FeatureView {
    pub name: String,
    pub supported: bool,
}

/// The agent's own status (`agent status`), with how many configured peers answer.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub node: String,
    pub version: String,
    pub kernel: String,
    pub cgroup_layout: String,
    pub criu_version: String,
    pub criu_check: String,
    pub criu_features: Vec<FeatureView>,
    pub cpu_model: String,
    pub containers: u32,
    pub uptime_secs: u64,
    /// `None` when the agent could not list its peers.
    pub peers_total: Option<usize>,
    pub peers_reachable: Option<usize>,
}

impl StatusView {
    /// Combines the agent's status with its peer list (`None`: the peers are unknown).
    pub fn new(status: api::AgentStatus, hosts: Option<&[api::Host]>) -> Self {
        let peers_total = hosts.map(<[api::Host]>::len);
        let peers_reachable = hosts.map(|hosts| hosts.iter().filter(|h| h.reachable).count());
        Self {
            node: status.node,
            version: status.version,
            kernel: status.kernel,
            cgroup_layout: status.cgroup_layout,
            criu_version: status.criu_version,
            criu_check: status.criu_check,
            criu_features: status
                .criu_features
                .into_iter()
                .map(|f| FeatureView {
                    name: f.name,
                    supported: f.supported,
                })
                .collect(),
            cpu_model: status.cpu_model,
            containers: status.containers,
            uptime_secs: status.uptime_secs,
            peers_total,
            peers_reachable,
        }
    }

    /// `uffd, lazy_pages; missing: mem_dirty_track`
    fn features_line(&self) -> String {
        let names = |supported: bool| {
            let names: Vec<&str> = self
                .criu_features
                .iter()
                .filter(|f| f.supported == supported)
                .map(|f| f.name.as_str())
                .collect();
            names.join(", ")
        };
        match (names(true), names(false)) {
            (have, missing) if missing.is_empty() => or_dash(&have, have.is_empty()),
            (have, missing) if have.is_empty() => format!("missing: {missing}"),
            (have, missing) => format!("{have}; missing: {missing}"),
        }
    }

    fn peers_line(&self) -> String {
        match (self.peers_reachable, self.peers_total) {
            (Some(reachable), Some(total)) => format!("{reachable}/{total} reachable"),
            _ => "unknown".to_string(),
        }
    }
}

impl Fields for StatusView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("node", self.node.clone()),
            ("version", self.version.clone()),
            ("kernel", self.kernel.clone()),
            ("cgroups", self.cgroup_layout.clone()),
            ("criu", self.criu_version.clone()),
            ("criu check", self.criu_check.clone()),
            ("criu features", self.features_line()),
            ("cpu", self.cpu_model.clone()),
            ("containers", self.containers.to_string()),
            ("uptime", output::duration(self.uptime_secs)),
            ("peers", self.peers_line()),
        ]
    }
}

/// The result of a long operation: what it produced, plus the operation's id.
#[derive(Debug, Serialize)]
pub struct Outcome<T> {
    pub operation_id: String,
    #[serde(flatten)]
    pub result: T,
}

impl<T: Fields> Fields for Outcome<T> {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = self.result.fields();
        fields.push(("operation", self.operation_id.clone()));
        fields
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_json_uses_words_for_enums() {
        let container = api::Container {
            id: "web".into(),
            status: ContainerStatus::Paused as i32,
            restart: RestartPolicy::OnFailure as i32,
            exit_code: -1,
            ..Default::default()
        };
        let json = serde_json::to_value(ContainerView::from(container)).unwrap();
        assert_eq!(json["status"], "paused");
        assert_eq!(json["restart"], "on-failure");
        assert_eq!(json["exit_code"], -1);
    }

    #[test]
    fn features_line_lists_missing_ones_last() {
        let status = api::AgentStatus {
            criu_features: vec![
                api::Feature {
                    name: "uffd".into(),
                    supported: true,
                },
                api::Feature {
                    name: "mem_dirty_track".into(),
                    supported: false,
                },
            ],
            ..Default::default()
        };
        let view = StatusView::new(status, None);
        assert_eq!(view.features_line(), "uffd; missing: mem_dirty_track");
        assert_eq!(view.peers_line(), "unknown");
    }
}
