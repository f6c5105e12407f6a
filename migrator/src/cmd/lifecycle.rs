//! `migrate stop | kill | rm | pause | resume NAME`: one call each, printing the container as a
//! one-row table (or one JSON object).

use proto::v1::{Container, ContainerRef, KillRequest, RemoveRequest, StopRequest};
use serde::Serialize;

use super::Ctx;
use crate::output;
use crate::view::ContainerView;

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Container id.
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Container id.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL (0: the agent's default, 10).
    #[arg(short, long, value_name = "SECS", default_value_t = 0)]
    pub timeout: u32,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Container id.
    pub name: String,
    /// Signal name (TERM, SIGKILL) or number; the agent's default is KILL.
    #[arg(short, long, value_name = "SIG")]
    pub signal: Option<String>,
    /// Signal every process in the container, not only its init.
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Container id.
    pub name: String,
    /// Remove it even if it is running (it is killed first).
    #[arg(short, long)]
    pub force: bool,
}

/// `rm`'s JSON line.
#[derive(Debug, Serialize)]
struct Removed {
    id: String,
    removed: bool,
}

pub async fn stop(ctx: &mut Ctx, args: StopArgs) -> anyhow::Result<()> {
    let request = StopRequest {
        id: args.name,
        timeout_secs: args.timeout,
    };
    let container = ctx.client.stop(request).await?.into_inner();
    print(ctx, container)
}

pub async fn kill(ctx: &mut Ctx, args: KillArgs) -> anyhow::Result<()> {
    let request = KillRequest {
        id: args.name,
        signal: args.signal.unwrap_or_default(),
        all: args.all,
    };
    let container = ctx.client.kill(request).await?.into_inner();
    print(ctx, container)
}

pub async fn rm(ctx: &mut Ctx, args: RmArgs) -> anyhow::Result<()> {
    let request = RemoveRequest {
        id: args.name.clone(),
        force: args.force,
    };
    ctx.client.remove(request).await?;
    let removed = Removed {
        id: args.name,
        removed: true,
    };
    output::note(ctx.format, &format!("removed {}", removed.id), &removed)
}

pub async fn pause(ctx: &mut Ctx, args: NameArgs) -> anyhow::Result<()> {
    let container = ctx.client.pause(ContainerRef { id: args.name }).await?;
    print(ctx, container.into_inner())
}

pub async fn resume(ctx: &mut Ctx, args: NameArgs) -> anyhow::Result<()> {
    let container = ctx.client.resume(ContainerRef { id: args.name }).await?;
    print(ctx, container.into_inner())
}

fn print(ctx: &Ctx, container: Container) -> anyhow::Result<()> {
    output::list(ctx.format, &[ContainerView::from(container)])
}
