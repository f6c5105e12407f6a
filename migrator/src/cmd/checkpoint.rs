//! `migrate checkpoint NAME`, `migrate restore NAME` (long operations, with progress on stderr)
//! and `migrate checkpoints [NAME]`.

use anyhow::Context;
use proto::v1::{CheckpointRequest, ListCheckpointsRequest, OperationResult, RestoreRequest};

use super::Ctx;
use crate::view::{CheckpointView, ContainerView, Outcome};
use crate::{output, progress};

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// Container id.
    pub name: String,
    /// Keep the container running after the dump (a snapshot); otherwise it stops.
    #[arg(long)]
    pub leave_running: bool,
    /// Checkpoint established TCP connections too.
    #[arg(long)]
    pub tcp_established: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Container id to restore as.
    pub name: String,
    /// Checkpoint to restore (default: the newest of NAME).
    #[arg(long = "from", value_name = "CHECKPOINT_ID")]
    pub from: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the checkpoints of this container.
    pub name: Option<String>,
}

pub async fn checkpoint(ctx: &mut Ctx, args: CheckpointArgs) -> anyhow::Result<()> {
    let request = CheckpointRequest {
        id: args.name,
        leave_running: args.leave_running,
        tcp_established: args.tcp_established,
    };
    let events = ctx.client.checkpoint(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let operation_id = operation_id(&result);
    let checkpoint = result
        .checkpoint
        .context("the agent reported success but no checkpoint")?;
    let outcome = Outcome {
        operation_id,
        result: CheckpointView::from(checkpoint),
    };
    output::object(ctx.format, &outcome)
}

pub async fn restore(ctx: &mut Ctx, args: RestoreArgs) -> anyhow::Result<()> {
    let request = RestoreRequest {
        id: args.name,
        checkpoint_id: args.from.unwrap_or_default(),
    };
    let events = ctx.client.restore(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let operation_id = operation_id(&result);
    let container = result
        .container
        .context("the agent reported success but no container")?;
    let outcome = Outcome {
        operation_id,
        result: ContainerView::from(container),
    };
    output::object(ctx.format, &outcome)
}

pub async fn list(ctx: &mut Ctx, args: ListArgs) -> anyhow::Result<()> {
    let request = ListCheckpointsRequest {
        container_id: args.name.unwrap_or_default(),
    };
    let checkpoints = ctx.client.list_checkpoints(request).await?;
    let views: Vec<CheckpointView> = checkpoints
        .into_inner()
        .checkpoints
        .into_iter()
        .map(CheckpointView::from)
        .collect();
    output::list(ctx.format, &views)
}

/// The id of the operation that produced `result` (empty if the agent sent none).
pub fn operation_id(result: &OperationResult) -> String {
    result
        .operation
        .as_ref()
        .map(|op| op.operation_id.clone())
        .unwrap_or_default()
}
