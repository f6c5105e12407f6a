//! What the CLI prints for each API message: flat structs with stable snake_case JSON keys
//! (enums as lowercase words), and how each looks as a table row or as `key: value` lines.

use proto::v1::{self as api, ContainerStatus, RestartPolicy};
use serde::Serialize;

use crate::output::{self, age, bytes, or_dash, until, Fields, Row};

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

/// A backup in the store (`backup ls`, `backup show`, `backup now`).
#[derive(Debug, Serialize)]
pub struct BackupView {
    pub backup_id: String,
    pub container_id: String,
    pub origin: String,
    pub created_unix: i64,
    pub frozen_ms: u64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub added_bytes: u64,
    pub sent_bytes: u64,
    pub replicas: Vec<String>,
    pub verified_unix: i64,
    pub verified_ok: bool,
    pub verify_detail: String,
    pub ip: String,
}

impl From<api::Backup> for BackupView {
    fn from(b: api::Backup) -> Self {
        Self {
            backup_id: b.backup_id,
            container_id: b.container_id,
            origin: b.origin,
            created_unix: b.created_unix,
            frozen_ms: b.frozen_ms,
            logical_bytes: b.logical_bytes,
            stored_bytes: b.stored_bytes,
            added_bytes: b.added_bytes,
            sent_bytes: b.sent_bytes,
            replicas: b.replicas,
            verified_unix: b.verified_unix,
            verified_ok: b.verified_ok,
            verify_detail: b.verify_detail,
            ip: b.ip,
        }
    }
}

impl BackupView {
    /// `ok 3m ago`, `FAILED 3m ago` or `never`.
    fn verified_cell(&self) -> String {
        if self.verified_unix <= 0 {
            return "never".to_string();
        }
        let result = if self.verified_ok { "ok" } else { "FAILED" };
        format!("{result} {}", age(self.verified_unix, output::now_unix()))
    }

    /// `host2, host3` or `-`.
    fn replicas_cell(&self) -> String {
        or_dash(self.replicas.join(", "), self.replicas.is_empty())
    }
}

impl Row for BackupView {
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "CONTAINER",
        "ORIGIN",
        "CREATED",
        "FROZEN",
        "LOGICAL",
        "ADDED",
        "REPLICAS",
        "VERIFIED",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.backup_id.clone(),
            self.container_id.clone(),
            or_dash(&self.origin, self.origin.is_empty()),
            age(self.created_unix, output::now_unix()),
            format!("{}ms", self.frozen_ms),
            bytes(self.logical_bytes),
            bytes(self.added_bytes),
            self.replicas_cell(),
            self.verified_cell(),
        ]
    }
}

impl Fields for BackupView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("backup", self.backup_id.clone()),
            ("container", self.container_id.clone()),
            ("origin", or_dash(&self.origin, self.origin.is_empty())),
            ("created", age(self.created_unix, output::now_unix())),
            ("frozen", format!("{}ms", self.frozen_ms)),
            ("logical", bytes(self.logical_bytes)),
            ("stored", bytes(self.stored_bytes)),
            ("added", bytes(self.added_bytes)),
            ("sent", bytes(self.sent_bytes)),
            ("replicas", self.replicas_cell()),
            ("verified", self.verified_cell()),
            (
                "verify detail",
                or_dash(&self.verify_detail, self.verify_detail.is_empty()),
            ),
            ("ip", or_dash(&self.ip, self.ip.is_empty())),
        ]
    }
}

/// A backup as `backup verify` reports it: the same JSON as a backup, a shorter table.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct VerifiedView(pub BackupView);

impl Row for VerifiedView {
    const HEADERS: &'static [&'static str] = &["ID", "CONTAINER", "VERIFIED", "DETAIL"];

    fn cells(&self) -> Vec<String> {
        let b = &self.0;
        vec![
            b.backup_id.clone(),
            b.container_id.clone(),
            b.verified_cell(),
            or_dash(&b.verify_detail, b.verify_detail.is_empty()),
        ]
    }
}

/// A container's backup schedule (`backup schedule`, `backup schedules`, `backup unschedule`).
#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub container_id: String,
    /// 0 when `cron` is set.
    pub every_secs: u64,
    pub cron: String,
    pub keep: u32,
    pub keep_daily: u32,
    pub replicate_to: String,
    pub last_run_unix: i64,
    pub next_run_unix: i64,
    pub last_error: String,
}

impl From<api::BackupSchedule> for ScheduleView {
    fn from(s: api::BackupSchedule) -> Self {
        Self {
            container_id: s.container_id,
            every_secs: s.every_secs,
            cron: s.cron,
            keep: s.keep,
            keep_daily: s.keep_daily,
            replicate_to: s.replicate_to,
            last_run_unix: s.last_run_unix,
            next_run_unix: s.next_run_unix,
            last_error: s.last_error,
        }
    }
}

impl ScheduleView {
    /// `1h30m` for an interval, the cron expression otherwise.
    fn when_cell(&self) -> String {
        if self.cron.is_empty() {
            output::interval(self.every_secs)
        } else {
            self.cron.clone()
        }
    }
}

impl Row for ScheduleView {
    const HEADERS: &'static [&'static str] = &[
        "CONTAINER",
        "EVERY/AT",
        "KEEP",
        "KEEP DAILY",
        "REPLICATE TO",
        "LAST RUN",
        "NEXT RUN",
        "LAST ERROR",
    ];

    fn cells(&self) -> Vec<String> {
        let now = output::now_unix();
        vec![
            self.container_id.clone(),
            self.when_cell(),
            self.keep.to_string(),
            or_dash(self.keep_daily, self.keep_daily == 0),
            or_dash(&self.replicate_to, self.replicate_to.is_empty()),
            age(self.last_run_unix, now),
            until(self.next_run_unix, now),
            or_dash(&self.last_error, self.last_error.is_empty()),
        ]
    }
}

impl Fields for ScheduleView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let now = output::now_unix();
        let when = if self.cron.is_empty() {
            ("every", output::interval(self.every_secs))
        } else {
            ("at", format!("{} (UTC)", self.cron))
        };
        vec![
            ("container", self.container_id.clone()),
            when,
            ("keep", self.keep.to_string()),
            ("keep daily", or_dash(self.keep_daily, self.keep_daily == 0)),
            (
                "replicate to",
                or_dash(&self.replicate_to, self.replicate_to.is_empty()),
            ),
            ("last run", age(self.last_run_unix, now)),
            ("next run", until(self.next_run_unix, now)),
            (
                "last error",
                or_dash(&self.last_error, self.last_error.is_empty()),
            ),
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
    fn backup_verified_cell() {
        let mut backup = BackupView::from(api::Backup::default());
        assert_eq!(backup.verified_cell(), "never");
        assert_eq!(backup.replicas_cell(), "-");
        backup.verified_unix = output::now_unix() - 180;
        assert_eq!(backup.verified_cell(), "FAILED 3m ago");
        backup.verified_ok = true;
        assert_eq!(backup.verified_cell(), "ok 3m ago");
        backup.replicas = vec!["host2".into(), "host3".into()];
        assert_eq!(backup.replicas_cell(), "host2, host3");
    }

    #[test]
    fn verified_json_is_the_backup() {
        let backup = api::Backup {
            backup_id: "b1".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(VerifiedView(BackupView::from(backup))).unwrap();
        assert_eq!(json["backup_id"], "b1");
        assert_eq!(json["verified_ok"], false);
    }

    #[test]
    fn schedule_shows_interval_or_cron() {
        let mut schedule = ScheduleView::from(api::BackupSchedule {
            container_id: "web".into(),
            every_secs: 5400,
            keep: 3,
            ..Default::default()
        });
        assert_eq!(schedule.when_cell(), "1h30m");
        assert_eq!(schedule.fields()[1], ("every", "1h30m".to_string()));
        schedule.every_secs = 0;
        schedule.cron = "0 3 * * *".into();
        assert_eq!(schedule.when_cell(), "0 3 * * *");
        assert_eq!(schedule.fields()[1], ("at", "0 3 * * * (UTC)".to_string()));
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
