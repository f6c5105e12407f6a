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
    /// Killed by the failure and running on a peer now: removed here.
    removed: Vec<String>,
    /// Killed by the failure and running nowhere: started again.
    restarted: Vec<String>,
    /// Killed by the failure, fate unknown (a peer did not answer): left stopped.
    kept_stopped: Vec<String>,
}

pub async fn unfence(ctx: &mut Ctx) -> anyhow::Result<()> {
    let response = ctx.client.unfence(UnfenceRequest {}).await?.into_inner();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let text = format!(
        "unfenced; removed (running elsewhere): {}; restarted: {}; left stopped (a peer did not answer): {}",
        list(&response.removed),
        list(&response.restarted),
        list(&response.kept_stopped)
    );
    let unfenced = Unfenced {
        removed: response.removed,
        restarted: response.restarted,
        kept_stopped: response.kept_stopped,
    };
    output::note(ctx.format, &text, &unfenced)
}
