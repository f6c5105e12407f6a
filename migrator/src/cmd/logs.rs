//! `migrate logs NAME [-f] [--tail N]`: the container's output, byte for byte, on stdout (in
//! either output format: it is the container's data, not a result to render).

use std::io::Write;

use proto::v1::LogsRequest;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub name: String,
    /// Keep printing new output until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Start with only the last N lines (0: all).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 0)]
    pub tail: u32,
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<()> {
    let request = LogsRequest {
        id: args.name,
        follow: args.follow,
        tail: args.tail,
    };
    let mut chunks = ctx.client.logs(request).await?.into_inner();
    while let Some(chunk) = chunks.message().await? {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&chunk.data)?;
        stdout.flush()?;
    }
    Ok(())
}
