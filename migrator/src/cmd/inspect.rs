//! `migrate inspect NAME`

use proto::v1::ContainerRef;

use super::Ctx;
use crate::output;
use crate::view::ContainerView;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub name: String,
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<()> {
    let request = ContainerRef { id: args.name };
    let container = ctx.client.inspect(request).await?.into_inner();
    output::object(ctx.format, &ContainerView::from(container))
}
