//! `migrate agent status`: what the local agent is and can do, and how many peers answer it.

use proto::v1::{HostsRequest, StatusRequest};

use super::Ctx;
use crate::output;
use crate::view::StatusView;

pub async fn status(ctx: &mut Ctx) -> anyhow::Result<()> {
    let status = ctx.client.status(StatusRequest {}).await?.into_inner();
    // The agent's own status is still worth printing when listing its peers fails.
    let hosts = ctx.client.hosts(HostsRequest {}).await.ok();
    let hosts = hosts.map(|response| response.into_inner().hosts);
    let view = StatusView::new(status, hosts.as_deref());
    output::object(ctx.format, &view)
}
