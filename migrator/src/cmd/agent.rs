//! `migrate agent status`: what the local agent is and can do, and how many peers answer it.
//! `migrate agent unfence`: ends the failure a drill's `fail-host` left this host in.

use proto::v1::{HostsRequest, StatusRequest, UnfenceRequest};
use serde::Serialize;

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

/// `agent unfence`'s JSON line.
#[derive(Debug, Serialize)]
struct Unfenced {
    /// The containers removed: restored elsewhere while this host was failed.
    removed: Vec<String>,
}

pub async fn unfence(ctx: &mut Ctx) -> anyhow::Result<()> {
    let response = ctx.client.unfence(UnfenceRequest {}).await?.into_inner();
    let text = if response.removed.is_empty() {
        "unfenced; no containers to remove".to_string()
    } else {
        format!(
            "unfenced; removed {} (they were restored elsewhere)",
            response.removed.join(", ")
        )
    };
    let unfenced = Unfenced {
        removed: response.removed,
    };
    output::note(ctx.format, &text, &unfenced)
}
