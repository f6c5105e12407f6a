//! Failover drills: this agent coordinates a drill's steps in order, doing each on the host it
//! concerns (here, or on a peer through `Peer.DrillStep`), measures RTO and RPO, runs the
//! cleanup steps after a failure, and keeps the report in its catalog.
//!
//! `fail-host` fences a host: its containers are killed and kept down, and its agent answers
//! peers only to end the fence, as if the host had died. `recover-host` (or `migrate agent
//! unfence` on that host) ends it. Of the containers it killed, those that now run on a peer
//! (restored there) are removed, so a stale copy never comes back; those that run nowhere are
//! started again from their bundles, as after a reboot; if a peer cannot be asked, they stay
//! stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use proto::v1::{
    self as pb, Drill, DrillProblem, DrillReport, DrillStep, DrillStepResult, OperationResult,
    PeerDrillStepRequest, PeerDrillStepResponse,
};

use crate::daemon::{desired, Agent};
use crate::ops::{now_ms, OpHandle};
use crate::shim::chain;

/// Every action a drill step may have.
pub const ACTIONS: &[&str] = &[
    "move",
    "move-back",
    "backup",
    "fail-host",
    "recover-host",
    "restore-latest",
    "wait-healthy",
    "assert",
    "sleep",
];
/// How long `wait-healthy` waits when the step does not say.
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// One probe's connect and read timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

// ---- fencing (fail-host) ----

/// What a fence killed, kept in `<state_dir>/fenced` so it survives agent restarts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    pub drill_id: String,
    pub killed: Vec<String>,
}

fn fence_path(agent: &Agent) -> std::path::PathBuf {
    agent.config.state_dir.join("fenced")
}

/// The fence this host is under, if any.
pub fn fenced(agent: &Agent) -> Option<Fence> {
    let text = std::fs::read(fence_path(agent)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Fails this host for drill `drill_id`: every container is killed and kept down (its
/// restart policy does not bring it back), and peers are refused until [`unfence`].
pub fn fence(agent: &Arc<Agent>, drill_id: &str) -> Result<String, String> {
    let mut killed = Vec::new();
    for mut rec in agent.catalog.containers().map_err(|e| chain(&e))? {
        rec.desired = desired::STOPPED.into();
        agent.catalog.put_container(&rec).map_err(|e| chain(&e))?;
        agent.network_down(&rec);
        if let Some(c) = agent.live(&rec.id) {
            if c.status() != runtime::Status::Stopped {
                c.kill(nix::sys::signal::Signal::SIGKILL, true)
                    .map_err(|e| chain(&e))?;
                killed.push(rec.id.clone());
            }
        }
    }
    let f = Fence {
        drill_id: drill_id.to_string(),
        killed: killed.clone(),
    };
    std::fs::write(
        fence_path(agent),
        serde_json::to_vec(&f).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("cannot record the fence: {e}"))?;
    tracing::warn!(drill.id = %drill_id, killed = ?killed, "host failed by a drill: containers killed, peers refused");
    Ok(format!(
        "{} failed: killed {}",
        agent.config.node,
        if killed.is_empty() {
            "nothing".to_string()
        } else {
            killed.join(", ")
        }
    ))
}

/// Ends a fence and answers peers again. Each container it killed is removed if a peer runs
/// it now, started again if no peer does, and left stopped if a peer cannot be asked.
pub async fn unfence(agent: &Arc<Agent>) -> Result<pb::UnfenceResponse, String> {
    let mut out = pb::UnfenceResponse::default();
    let Some(f) = fenced(agent) else {
        return Ok(out);
    };
    for id in &f.killed {
        let Ok(Some(rec)) = agent.catalog.container(id) else {
            continue;
        };
        let mut elsewhere = Some(false);
        for peer in agent.config.peers.keys() {
            let locate = DrillStep {
                action: "locate".into(),
                container: id.clone(),
                ..Default::default()
            };
            match ask_peer(agent, &f.drill_id, peer, &locate).await {
                Ok(r) if r.running => {
                    elsewhere = Some(true);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(container.id = %id, peer = %peer, error = %e, "cannot ask where the container runs");
                    elsewhere = None;
                }
            }
        }
        let a = agent.clone();
        let i = id.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
            match elsewhere {
                Some(true) => a.remove(&i, true).map_err(|e| e.to_string()),
                Some(false) => {
                    a.remove(&i, true).map_err(|e| e.to_string())?;
                    a.run(&i, std::path::Path::new(&rec.bundle), rec.restart, &rec.ip)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        done.map_err(|e| format!("cannot recover {id}: {e}"))?;
        match elsewhere {
            Some(true) => out.removed.push(id.clone()),
            Some(false) => out.restarted.push(id.clone()),
            None => out.kept_stopped.push(id.clone()),
        }
    }
    std::fs::remove_file(fence_path(agent)).map_err(|e| format!("cannot lift the fence: {e}"))?;
    tracing::warn!(drill.id = %f.drill_id, removed = ?out.removed, restarted = ?out.restarted, kept_stopped = ?out.kept_stopped, "host recovered from a drill's failure");
    Ok(out)
}

/// Refuses a peer request while this host is failed by a drill.
pub fn check_not_fenced(agent: &Agent) -> Result<(), tonic::Status> {
    match fenced(agent) {
        Some(f) => Err(tonic::Status::unavailable(format!(
            "{} is down (failed by drill {})",
            agent.config.node, f.drill_id
        ))),
        None => Ok(()),
    }
}

// ---- validation ----

fn problem(step: i32, cleanup: bool, field: &str, message: impl Into<String>) -> DrillProblem {
    DrillProblem {
        step,
        cleanup,
        field: field.into(),
        message: message.into(),
    }
}

/// The fields an action needs, besides `action`.
fn required(action: &str) -> &'static [&'static str] {
    match action {
        "move" => &["container", "to"],
        "move-back" | "backup" | "wait-healthy" => &["container"],
        "fail-host" | "recover-host" => &["host"],
        "restore-latest" => &["container", "host"],
        "assert" => &["container", "exec"],
        "sleep" => &["secs"],
        _ => &[],
    }
}

fn field_set(s: &DrillStep, field: &str) -> bool {
    match field {
        "container" => !s.container.is_empty(),
        "host" => !s.host.is_empty(),
        "to" => !s.to.is_empty(),
        "exec" => !s.exec.is_empty(),
        "secs" => s.secs > 0,
        "probe" => s.probe.is_some(),
        _ => true,
    }
}

/// Checks a drill against this cluster: actions, fields, hosts, and that every container it
/// names runs somewhere now.
pub async fn validate(agent: &Arc<Agent>, d: &Drill) -> Vec<DrillProblem> {
    let mut out = Vec::new();
    if d.steps.is_empty() {
        out.push(problem(-1, false, "step", "the drill has no steps"));
    }
    let hosts: HashSet<&str> = agent
        .config
        .peers
        .keys()
        .map(String::as_str)
        .chain([agent.config.node.as_str()])
        .collect();
    let mut containers = Vec::new();
    let all = d
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (i, false, s))
        .chain(d.cleanup.iter().enumerate().map(|(i, s)| (i, true, s)));
    for (i, cleanup, s) in all {
        let i = i as i32;
        if !ACTIONS.contains(&s.action.as_str()) {
            out.push(problem(
                i,
                cleanup,
                "action",
                format!(
                    "unknown action {:?}: use one of {}",
                    s.action,
                    ACTIONS.join(", ")
                ),
            ));
            continue;
        }
        for f in required(&s.action) {
            if !field_set(s, f) {
                out.push(problem(i, cleanup, f, format!("{} needs {f}", s.action)));
            }
        }
        for (field, host) in [("host", &s.host), ("to", &s.to)] {
            if !host.is_empty() && !hosts.contains(host.as_str()) {
                out.push(problem(
                    i,
                    cleanup,
                    field,
                    format!("unknown host {host}: not this host nor one of its [peers]"),
                ));
            }
        }
        if s.action == "fail-host" && s.host == agent.config.node {
            out.push(problem(
                i,
                cleanup,
                "host",
                format!(
                    "{} coordinates this drill and cannot fail itself: run the drill from another host",
                    s.host
                ),
            ));
        }
        if s.action == "wait-healthy" {
            match &s.probe {
                None => out.push(problem(i, cleanup, "probe", "wait-healthy needs a probe")),
                Some(p) => {
                    let kinds = [!p.exec.is_empty(), p.tcp_port > 0, p.http_port > 0]
                        .iter()
                        .filter(|k| **k)
                        .count();
                    if kinds != 1 {
                        out.push(problem(
                            i,
                            cleanup,
                            "probe",
                            "a probe has exactly one of exec, tcp_port, http_port",
                        ));
                    }
                }
            }
        }
        if !s.container.is_empty() && !containers.contains(&(s.container.clone(), i, cleanup)) {
            containers.push((s.container.clone(), i, cleanup));
        }
    }
    if d.rto_secs > 0 && !d.steps.iter().any(|s| s.action == "fail-host") {
        out.push(problem(
            -1,
            false,
            "rto_secs",
            "an RTO objective needs a fail-host step to measure from",
        ));
    }
    let mut checked = HashSet::new();
    for (c, i, cleanup) in containers {
        if !checked.insert(c.clone()) {
            continue;
        }
        if let Err(e) = runtime::id::validate_id(&c) {
            out.push(problem(i, cleanup, "container", e.to_string()));
            continue;
        }
        if locate(agent, "", &c).await.is_err() {
            out.push(problem(
                i,
                cleanup,
                "container",
                format!("container {c} runs on no host of this cluster"),
            ));
        }
    }
    out
}

// ---- running ----

/// The running state of a drill.
struct Run<'a> {
    agent: &'a Arc<Agent>,
    op: &'a OpHandle,
    drill_id: String,
    /// Where each container runs, as far as this drill knows.
    at: HashMap<String, String>,
    /// Where each container was before this drill's last move of it.
    before: HashMap<String, String>,
    /// When the failure step started (ms), and the recovery measurements.
    failed_at_ms: Option<i64>,
    rto_ms: Option<u64>,
    rpo_ms: Option<u64>,
}

/// Runs a drill (or, with `dry_run`, only validates it and lists the plan).
pub async fn run(
    agent: Arc<Agent>,
    op: &OpHandle,
    d: &Drill,
    dry_run: bool,
) -> Result<OperationResult, String> {
    let problems = validate(&agent, d).await;
    if !problems.is_empty() {
        return Err(format!(
            "invalid drill: {}",
            problems
                .iter()
                .map(|p| format!(
                    "{}{}: {}",
                    if p.step < 0 {
                        String::new()
                    } else {
                        format!(
                            "{} {} ",
                            if p.cleanup { "cleanup" } else { "step" },
                            p.step + 1
                        )
                    },
                    p.field,
                    p.message
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let mut report = DrillReport {
        drill_id: op.id().to_string(),
        name: d.name.clone(),
        dry_run,
        started_unix_ms: now_ms(),
        rto_objective_secs: d.rto_secs,
        rpo_objective_secs: d.rpo_secs,
        coordinator: agent.config.node.clone(),
        ..Default::default()
    };
    let mut r = Run {
        agent: &agent,
        op,
        drill_id: op.id().to_string(),
        at: HashMap::new(),
        before: HashMap::new(),
        failed_at_ms: None,
        rto_ms: None,
        rpo_ms: None,
    };
    let mut failure: Option<String> = None;
    for (i, s) in d.steps.iter().enumerate() {
        let mut res = DrillStepResult {
            index: i as u32,
            action: s.action.clone(),
            target: target(s),
            started_unix_ms: now_ms(),
            ..Default::default()
        };
        if dry_run || failure.is_some() {
            res.outcome = if dry_run { "planned" } else { "skipped" }.into();
        } else {
            op.event(
                "step",
                format!("step {}: {} {}", i + 1, s.action, res.target),
            );
            match r.step(s, res.started_unix_ms).await {
                Ok(detail) => {
                    res.outcome = "passed".into();
                    res.detail = detail;
                }
                Err(e) => {
                    res.outcome = "failed".into();
                    res.detail = e.clone();
                    failure = Some(format!("step {} ({}) failed: {e}", i + 1, s.action));
                }
            }
            op.event(
                "step",
                format!("step {}: {}: {}", i + 1, res.outcome, res.detail),
            );
        }
        res.finished_unix_ms = now_ms();
        report.steps.push(res);
    }
    if !dry_run {
        // After a failure every cleanup step runs; a drill that passed still runs the ones that
        // recover hosts, so it never leaves a host failed.
        for (i, s) in d.cleanup.iter().enumerate() {
            if failure.is_none() && s.action != "recover-host" {
                continue;
            }
            let started = now_ms();
            op.event(
                "cleanup",
                format!("cleanup {}: {} {}", i + 1, s.action, target(s)),
            );
            let outcome = r.step(s, started).await;
            report.steps.push(DrillStepResult {
                index: i as u32,
                cleanup: true,
                action: s.action.clone(),
                target: target(s),
                outcome: if outcome.is_ok() { "passed" } else { "failed" }.into(),
                detail: outcome.unwrap_or_else(|e| e),
                started_unix_ms: started,
                finished_unix_ms: now_ms(),
            });
        }
    }
    report.finished_unix_ms = now_ms();
    report.rto_measured = r.rto_ms.is_some();
    report.rto_ms = r.rto_ms.unwrap_or(0);
    report.rto_met = d.rto_secs == 0 || r.rto_ms.is_some_and(|ms| ms <= d.rto_secs * 1000);
    report.rpo_measured = r.rpo_ms.is_some();
    report.rpo_ms = r.rpo_ms.unwrap_or(0);
    report.rpo_met = d.rpo_secs == 0 || r.rpo_ms.is_some_and(|ms| ms <= d.rpo_secs * 1000);
    let mut errors: Vec<String> = failure.into_iter().collect();
    if !dry_run {
        if !report.rto_met {
            errors.push(match r.rto_ms {
                Some(ms) => format!("RTO {ms} ms exceeds the objective of {} s", d.rto_secs),
                None => "the RTO objective was not measured".into(),
            });
        }
        if !report.rpo_met {
            errors.push(match r.rpo_ms {
                Some(ms) => format!("RPO {ms} ms exceeds the objective of {} s", d.rpo_secs),
                None => "the RPO objective was not measured".into(),
            });
        }
        if let Some(c) = report
            .steps
            .iter()
            .find(|s| s.cleanup && s.outcome == "failed")
        {
            errors.push(format!(
                "cleanup {} ({}) failed: {}",
                c.index + 1,
                c.action,
                c.detail
            ));
        }
    }
    report.passed = errors.is_empty();
    report.error = errors.join("; ");
    if !dry_run {
        agent
            .catalog
            .put_drill(
                &report.drill_id,
                report.started_unix_ms,
                &report.encode_to_vec(),
            )
            .map_err(|e| chain(&e))?;
    }
    op.event(
        "done",
        format!(
            "drill {}: {}",
            d.name,
            if report.passed {
                "passed".to_string()
            } else {
                format!("FAILED: {}", report.error)
            }
        ),
    );
    Ok(OperationResult {
        drill: Some(report),
        ..Default::default()
    })
}

fn target(s: &DrillStep) -> String {
    match s.action.as_str() {
        "move" => format!("{} -> {}", s.container, s.to),
        "fail-host" | "recover-host" => s.host.clone(),
        "restore-latest" => format!("{} on {}", s.container, s.host),
        "sleep" => format!("{} s", s.secs),
        _ => s.container.clone(),
    }
}

impl Run<'_> {
    /// Does one step; `Ok` carries what happened, one line.
    async fn step(&mut self, s: &DrillStep, started_ms: i64) -> Result<String, String> {
        match s.action.as_str() {
            "move" => self.move_to(&s.container, &s.to).await,
            "move-back" => {
                let to = self
                    .before
                    .get(&s.container)
                    .cloned()
                    .ok_or_else(|| format!("this drill has not moved {} yet", s.container))?;
                self.move_to(&s.container, &to).await
            }
            "backup" => {
                let host = self.host_of(&s.container).await?;
                let resp = self.on(&host, s).await?;
                Ok(resp.detail)
            }
            "fail-host" => {
                let resp = self.on(&s.host, s).await?;
                self.failed_at_ms = Some(started_ms);
                self.at.retain(|_, h| *h != s.host);
                Ok(resp.detail)
            }
            "recover-host" => Ok(self.on(&s.host, s).await?.detail),
            "restore-latest" => {
                let resp = self.on(&s.host, s).await?;
                self.at.insert(s.container.clone(), s.host.clone());
                let from = self.failed_at_ms.unwrap_or(started_ms);
                self.rpo_ms = Some((from - resp.backup_created_unix * 1000).max(0) as u64);
                Ok(resp.detail)
            }
            "wait-healthy" => {
                let waited = self.wait_healthy(s).await?;
                if let (Some(failed), None) = (self.failed_at_ms, self.rto_ms) {
                    self.rto_ms = Some((now_ms() - failed).max(0) as u64);
                }
                Ok(waited)
            }
            "assert" => {
                let host = self.host_of(&s.container).await?;
                let exec = DrillStep {
                    action: "exec".into(),
                    container: s.container.clone(),
                    exec: s.exec.clone(),
                    ..Default::default()
                };
                let resp = self.on(&host, &exec).await?;
                let stdout = String::from_utf8_lossy(&resp.stdout);
                if resp.exit_code != s.exit_code {
                    return Err(format!(
                        "{:?} exited {}, expected {}",
                        s.exec, resp.exit_code, s.exit_code
                    ));
                }
                if !stdout.contains(&s.stdout_contains) {
                    return Err(format!(
                        "the output of {:?} does not contain {:?}: {:?}",
                        s.exec,
                        s.stdout_contains,
                        stdout.trim()
                    ));
                }
                Ok(format!("{:?} on {host}: exit {}", s.exec, resp.exit_code))
            }
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(s.secs)).await;
                Ok(format!("slept {} s", s.secs))
            }
            other => Err(format!("unknown action {other:?}")),
        }
    }

    async fn move_to(&mut self, container: &str, to: &str) -> Result<String, String> {
        let from = self.host_of(container).await?;
        if from == to {
            return Err(format!("{container} already runs on {to}"));
        }
        let step = DrillStep {
            action: "move".into(),
            container: container.into(),
            to: to.into(),
            ..Default::default()
        };
        let resp = self.on(&from, &step).await?;
        self.before.insert(container.to_string(), from);
        self.at.insert(container.to_string(), to.to_string());
        Ok(resp.detail)
    }

    /// Where `container` runs: as this drill last saw it, or asked of every host.
    async fn host_of(&mut self, container: &str) -> Result<String, String> {
        if let Some(h) = self.at.get(container) {
            return Ok(h.clone());
        }
        let (host, _) = locate(self.agent, &self.drill_id, container).await?;
        self.at.insert(container.to_string(), host.clone());
        Ok(host)
    }

    async fn on(&self, host: &str, s: &DrillStep) -> Result<PeerDrillStepResponse, String> {
        on_host(self.agent, &self.drill_id, host, s).await
    }

    async fn wait_healthy(&mut self, s: &DrillStep) -> Result<String, String> {
        let probe = s.probe.clone().ok_or("no probe")?;
        let timeout = if s.timeout_secs > 0 {
            Duration::from_secs(s.timeout_secs)
        } else {
            DEFAULT_HEALTH_TIMEOUT
        };
        let t0 = Instant::now();
        let mut last = String::from("not probed");
        let mut tries = 0;
        while t0.elapsed() < timeout {
            tries += 1;
            match self.probe_once(&s.container, &probe).await {
                Ok(what) => {
                    return Ok(format!(
                        "{what} after {} ms ({tries} probes)",
                        t0.elapsed().as_millis()
                    ))
                }
                Err(e) => last = e,
            }
            self.op.event("probe", format!("{}: {last}", s.container));
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        Err(format!(
            "{} not healthy after {} s: {last}",
            s.container,
            timeout.as_secs()
        ))
    }

    async fn probe_once(&mut self, container: &str, p: &pb::Probe) -> Result<String, String> {
        // Where it runs may have changed (a restore elsewhere): ask again each time.
        self.at.remove(container);
        let (host, ip) = locate(self.agent, &self.drill_id, container).await?;
        self.at.insert(container.to_string(), host.clone());
        if !p.exec.is_empty() {
            let exec = DrillStep {
                action: "exec".into(),
                container: container.into(),
                exec: p.exec.clone(),
                ..Default::default()
            };
            let resp = on_host(self.agent, &self.drill_id, &host, &exec).await?;
            return if resp.exit_code == 0 {
                Ok(format!("{:?} exits 0 on {host}", p.exec))
            } else {
                Err(format!("{:?} exited {}", p.exec, resp.exit_code))
            };
        }
        let addr = ip.split('/').next().unwrap_or_default().to_string();
        if addr.is_empty() {
            return Err(format!("{container} has no address to probe"));
        }
        let port = if p.tcp_port > 0 {
            p.tcp_port
        } else {
            p.http_port
        };
        let sock = format!("{addr}:{port}");
        let mut stream = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&sock))
            .await
            .map_err(|_| format!("connect to {sock} timed out"))?
            .map_err(|e| format!("connect to {sock}: {e}"))?;
        if p.tcp_port > 0 {
            return Ok(format!("{sock} accepts connections ({host})"));
        }
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = if p.http_path.is_empty() {
            "/"
        } else {
            &p.http_path
        };
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut head = vec![0u8; 64];
        let n = tokio::time::timeout(PROBE_TIMEOUT, async {
            stream.write_all(req.as_bytes()).await?;
            stream.read(&mut head).await
        })
        .await
        .map_err(|_| format!("GET http://{sock}{path} timed out"))?
        .map_err(|e| format!("GET http://{sock}{path}: {e}"))?;
        let status = String::from_utf8_lossy(&head[..n]).to_string();
        let code = status
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if code.starts_with('2') {
            Ok(format!("GET http://{sock}{path}: {code} ({host})"))
        } else {
            Err(format!(
                "GET http://{sock}{path}: {}",
                status.lines().next().unwrap_or("no answer")
            ))
        }
    }
}

/// The host `container` runs on and its address: here first, then each peer that answers.
async fn locate(
    agent: &Arc<Agent>,
    drill_id: &str,
    container: &str,
) -> Result<(String, String), String> {
    let step = DrillStep {
        action: "locate".into(),
        container: container.into(),
        ..Default::default()
    };
    let mut hosts = vec![agent.config.node.clone()];
    hosts.extend(agent.config.peers.keys().cloned());
    for h in hosts {
        if let Ok(resp) = on_host(agent, drill_id, &h, &step).await {
            if resp.running {
                return Ok((h, resp.ip));
            }
        }
    }
    Err(format!("{container} runs on no host that answers"))
}

/// Does one step on `host`: here, or through the peer API.
async fn on_host(
    agent: &Arc<Agent>,
    drill_id: &str,
    host: &str,
    s: &DrillStep,
) -> Result<PeerDrillStepResponse, String> {
    if host == agent.config.node {
        return Box::pin(local_step(agent.clone(), drill_id, s)).await;
    }
    ask_peer(agent, drill_id, host, s).await
}

/// Has peer `host` do one step.
async fn ask_peer(
    agent: &Arc<Agent>,
    drill_id: &str,
    host: &str,
    s: &DrillStep,
) -> Result<PeerDrillStepResponse, String> {
    let mut client = crate::moves::peer_client(agent, host).await?;
    let mut req = tonic::Request::new(PeerDrillStepRequest {
        drill_id: drill_id.to_string(),
        step: Some(s.clone()),
    });
    req.set_timeout(Duration::from_secs(600));
    client
        .drill_step(req)
        .await
        .map(|r| r.into_inner())
        .map_err(|st| format!("{host}: {}", chain(&st)))
}

/// One step done on this host (for the coordinator itself, or for a peer coordinating).
pub async fn local_step(
    agent: Arc<Agent>,
    drill_id: &str,
    s: &DrillStep,
) -> Result<PeerDrillStepResponse, String> {
    let node = agent.config.node.clone();
    let mut resp = PeerDrillStepResponse::default();
    match s.action.as_str() {
        "locate" => {
            if let Ok(Some(rec)) = agent.catalog.container(&s.container) {
                resp.running = agent
                    .live(&s.container)
                    .is_some_and(|c| c.status() == runtime::Status::Running);
                resp.ip = rec.ip;
            }
        }
        "exec" => {
            let (a, id, args) = (agent.clone(), s.container.clone(), s.exec.clone());
            let out = tokio::task::spawn_blocking(move || a.exec(&id, args, Vec::new()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            resp.exit_code = out.exit_code;
            resp.stdout = out.stdout;
        }
        "backup" => {
            let op = agent.ops.start("backup", &s.container);
            op.event("drill", format!("step of drill {drill_id}"));
            let res = crate::backups::backup_now(agent.clone(), &op, &s.container, &s.to).await;
            let detail = res.as_ref().ok().and_then(|r| r.backups.first()).map(|b| {
                format!(
                    "backup {} on {node}: frozen {} ms, {} bytes added{}",
                    b.backup_id,
                    b.frozen_ms,
                    b.added_bytes,
                    if b.replicas.is_empty() {
                        String::new()
                    } else {
                        format!(", copied to {}", b.replicas.join(", "))
                    }
                )
            });
            op.finish(res.clone());
            res?;
            resp.detail = detail.unwrap_or_default();
        }
        "move" => {
            let op = agent.ops.start("move", &s.container);
            op.event("drill", format!("step of drill {drill_id}"));
            let res = crate::moves::move_out(
                agent.clone(),
                &op,
                &s.container,
                &s.to,
                false,
                "cold",
                false,
            )
            .await;
            let detail = res.as_ref().ok().and_then(|r| r.r#move.as_ref()).map(|m| {
                format!(
                    "{} moved {node} -> {}: downtime {} ms, {} bytes sent",
                    s.container, s.to, m.downtime_ms, m.bytes_sent
                )
            });
            op.finish(res.clone());
            res?;
            resp.detail = detail.unwrap_or_default();
        }
        "fail-host" => {
            let (a, id) = (agent.clone(), drill_id.to_string());
            resp.detail = tokio::task::spawn_blocking(move || fence(&a, &id))
                .await
                .map_err(|e| e.to_string())??;
        }
        "recover-host" => {
            let u = unfence(&agent).await?;
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            resp.detail = format!(
                "{node} is back; removed (running elsewhere): {}; restarted: {}; left stopped: {}",
                list(&u.removed),
                list(&u.restarted),
                list(&u.kept_stopped)
            );
        }
        "restore-latest" => {
            let b = crate::backups::choose(&agent, &s.container, "").map_err(|e| e.to_string())?;
            let op = agent.ops.start("backup-restore", &s.container);
            op.event("drill", format!("step of drill {drill_id}"));
            let req = pb::RestoreBackupRequest {
                id: s.container.clone(),
                backup_id: b.id.clone(),
                ..Default::default()
            };
            let res = crate::backups::restore_anywhere(agent.clone(), &op, &req).await;
            op.finish(res.clone());
            res?;
            resp.backup_created_unix = b.created_unix;
            resp.detail = format!(
                "{} restored on {node} from {} (taken on {})",
                s.container, b.id, b.origin
            );
        }
        other => return Err(format!("{node} cannot do drill action {other:?}")),
    }
    Ok(resp)
}

/// Past drill runs, newest first; with `steps`, the full reports.
pub fn history(agent: &Agent, id: Option<&str>) -> Result<Vec<DrillReport>, String> {
    agent
        .catalog
        .drills(id)
        .map_err(|e| chain(&e))?
        .iter()
        .map(|bytes| DrillReport::decode(bytes.as_slice()).map_err(|e| e.to_string()))
        .collect()
}
