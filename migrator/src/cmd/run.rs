//! `migrate run NAME --bundle DIR [--restart no|on-failure|always]`

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use proto::v1::{RestartPolicy, RunRequest};

use super::Ctx;
use crate::output;
use crate::view::ContainerView;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id: letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// OCI bundle directory (holding config.json and the rootfs).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// What to do when the container's process exits.
    #[arg(long, value_enum, default_value_t = Restart::No)]
    pub restart: Restart,
    /// Give the container its own network namespace with this address (CIDR, e.g.
    /// 198.18.1.10/16) on the agent's bridge; it keeps it when it moves.
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<String>,
}

/// The restart policy as spelled on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

impl From<Restart> for RestartPolicy {
    fn from(restart: Restart) -> Self {
        match restart {
            Restart::No => RestartPolicy::No,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
        }
    }
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<()> {
    // The agent resolves paths from its own working directory, not ours.
    let bundle = std::path::absolute(&args.bundle)
        .with_context(|| format!("bad bundle path {}", args.bundle.display()))?;
    let request = RunRequest {
        id: args.name,
        bundle: bundle.to_string_lossy().into_owned(),
        restart: RestartPolicy::from(args.restart) as i32,
        ip: args.ip.unwrap_or_default(),
    };
    let container = ctx.client.run(request).await?.into_inner();
    output::list(ctx.format, &[ContainerView::from(container)])
}
