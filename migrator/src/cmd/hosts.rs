//! `migrate hosts`: the configured peers and whether each answers.

use proto::v1::HostsRequest;

use super::Ctx;
use crate::output;
use crate::view::HostView;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let hosts = ctx.client.hosts(HostsRequest {}).await?.into_inner().hosts;
    let views: Vec<HostView> = hosts.into_iter().map(HostView::from).collect();
    output::list(ctx.format, &views)
}
