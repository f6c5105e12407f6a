//! `migrate ops [--limit N]`

use proto::v1::ListOperationsRequest;

use super::Ctx;
use crate::output;
use crate::view::OperationView;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// At most this many operations, newest first.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<()> {
    let request = ListOperationsRequest { limit: args.limit };
    let operations = ctx.client.list_operations(request).await?;
    let views: Vec<OperationView> = operations
        .into_inner()
        .operations
        .into_iter()
        .map(OperationView::from)
        .collect();
    output::list(ctx.format, &views)
}
