//! `migrate move NAME --to HOST [--dry-run] [--mode cold|lazy|precopy] [--yes]`: live
//! migration, with progress on stderr and the move report at the end.

use anyhow::Context;
use proto::v1::{MoveReport, MoveRequest};
use serde::Serialize;

use super::Ctx;
use crate::output::{self, Fields};
use crate::progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub name: String,
    /// Target host (a peer name from the agent's config).
    #[arg(long, value_name = "HOST")]
    pub to: String,
    /// Only ask the target whether it can take the container; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// cold (stop-and-copy, the default) or lazy (post-copy: the container runs on the target
    /// at once and its memory follows); precopy is refused with the reason.
    #[arg(long, default_value = "cold", value_parser = ["cold", "lazy", "precopy"])]
    pub mode: String,
    /// Accept that a lazy move cannot be rolled back once the container runs on the target.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// The move report as printed.
#[derive(Debug, Serialize)]
pub struct MoveView {
    pub operation_id: String,
    pub container_id: String,
    pub target: String,
    pub dry_run: bool,
    pub preflight: Vec<String>,
    pub downtime_ms: u64,
    pub total_ms: u64,
    pub phases: std::collections::BTreeMap<String, u64>,
    pub bytes_raw: u64,
    pub bytes_compressed: u64,
    pub bytes_sent: u64,
    pub bytes_preseeded: u64,
    pub chunks_total: u64,
    pub chunks_sent: u64,
    pub target_pid: i32,
    pub mode: String,
    pub resident_ms: u64,
    pub pages_faulted: u64,
    pub pages_pushed: u64,
    pub fault_p50_us: u64,
    pub fault_p99_us: u64,
    pub bytes_lazy: u64,
}

impl MoveView {
    fn new(operation_id: String, container_id: String, r: MoveReport) -> MoveView {
        MoveView {
            operation_id,
            container_id,
            target: r.target,
            dry_run: r.dry_run,
            preflight: r.preflight,
            downtime_ms: r.downtime_ms,
            total_ms: r.total_ms,
            phases: r.phases.into_iter().map(|p| (p.name, p.ms)).collect(),
            bytes_raw: r.bytes_raw,
            bytes_compressed: r.bytes_compressed,
            bytes_sent: r.bytes_sent,
            bytes_preseeded: r.bytes_preseeded,
            chunks_total: r.chunks_total,
            chunks_sent: r.chunks_sent,
            target_pid: r.target_pid,
            mode: r.mode,
            resident_ms: r.resident_ms,
            pages_faulted: r.pages_faulted,
            pages_pushed: r.pages_pushed,
            fault_p50_us: r.fault_p50_us,
            fault_p99_us: r.fault_p99_us,
            bytes_lazy: r.bytes_lazy,
        }
    }
}

impl Fields for MoveView {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("container", self.container_id.clone()),
            ("target", self.target.clone()),
        ];
        for line in &self.preflight {
            f.push(("preflight", line.clone()));
        }
        if self.dry_run {
            f.push((
                "verdict",
                "the target can take it (dry run: nothing changed)".into(),
            ));
            return f;
        }
        f.push(("mode", self.mode.clone()));
        f.push(("downtime", format!("{} ms", self.downtime_ms)));
        if self.mode == "lazy" {
            f.push(("fully resident", format!("{} ms", self.resident_ms)));
            f.push((
                "pages",
                format!(
                    "{} fetched on demand, {} pushed",
                    self.pages_faulted, self.pages_pushed
                ),
            ));
            f.push((
                "fault latency",
                format!("p50 {} us, p99 {} us", self.fault_p50_us, self.fault_p99_us),
            ));
            f.push(("memory after start", output::bytes(self.bytes_lazy)));
        }
        f.push(("total", format!("{} ms", self.total_ms)));
        for (name, ms) in &self.phases {
            f.push(("phase", format!("{name} {ms} ms")));
        }
        f.push(("bytes raw", output::bytes(self.bytes_raw)));
        f.push(("bytes compressed", output::bytes(self.bytes_compressed)));
        f.push(("bytes sent", output::bytes(self.bytes_sent)));
        f.push(("pre-seeded", output::bytes(self.bytes_preseeded)));
        f.push((
            "chunks sent",
            format!("{} of {}", self.chunks_sent, self.chunks_total),
        ));
        f.push(("target pid", self.target_pid.to_string()));
        f.push(("operation", self.operation_id.clone()));
        f
    }
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<()> {
    let request = MoveRequest {
        id: args.name.clone(),
        to: args.to,
        dry_run: args.dry_run,
        mode: args.mode,
        yes: args.yes,
    };
    let events = ctx.client.r#move(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let operation_id = result
        .operation
        .as_ref()
        .map(|o| o.operation_id.clone())
        .unwrap_or_default();
    let report = result
        .r#move
        .context("the agent reported success but no move report")?;
    output::object(ctx.format, &MoveView::new(operation_id, args.name, report))
}
