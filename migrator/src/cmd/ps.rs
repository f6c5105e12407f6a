//! `migrate ps`

use proto::v1::ListRequest;

use super::Ctx;
use crate::output;
use crate::view::ContainerView;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let containers = ctx
        .client
        .list(ListRequest {})
        .await?
        .into_inner()
        .containers;
    let views: Vec<ContainerView> = containers.into_iter().map(ContainerView::from).collect();
    output::list(ctx.format, &views)
}
