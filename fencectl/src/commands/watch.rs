//! `fencectl watch`: the live event stream.

use proto::v1 as pb;
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, connect, exit};

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub cluster: String,
    pub unix_us: u64,
    pub kind: String,
    pub node: u32,
    pub epoch: u64,
    pub nodes: Vec<u32>,
    pub detail: String,
}

impl From<pb::ClusterEvent> for EventView {
    fn from(e: pb::ClusterEvent) -> Self {
        EventView {
            cluster: e.cluster,
            unix_us: e.unix_us,
            kind: e.kind,
            node: e.node_id,
            epoch: e.epoch,
            nodes: e.nodes,
            detail: e.detail,
        }
    }
}

pub fn render_event(e: &EventView) -> String {
    let secs = e.unix_us / 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut line = format!(
        "{h:02}:{m:02}:{s:02}.{:06}Z {} {}",
        e.unix_us % 1_000_000,
        e.cluster,
        e.kind
    );
    if e.node != 0 {
        line += &format!(" node={}", e.node);
    }
    line += &format!(" epoch={}", e.epoch);
    if !e.nodes.is_empty() {
        line += &format!(" nodes={:?}", e.nodes);
    }
    if !e.detail.is_empty() {
        line += &format!(" {}", e.detail);
    }
    line
}

/// Open the watch stream.
pub async fn subscribe(
    url: &str,
    cluster: &str,
) -> Result<tonic::Streaming<pb::ClusterEvent>, CliError> {
    let mut c = connect(url).await?;
    Ok(c.watch(pb::WatchRequest {
        cluster: cluster.into(),
    })
    .await
    .map_err(|s| CliError::from_status(url, s))?
    .into_inner())
}

pub async fn watch(url: &str, cluster: &str, out: Output) -> Result<u8, CliError> {
    let mut stream = subscribe(url, cluster).await?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
            m = stream.message() => match m {
                Ok(Some(e)) => {
                    let v = EventView::from(e);
                    match out {
                        Output::Json => println!("{}", serde_json::to_string(&v).expect("serializable")),
                        Output::Text => println!("{}", render_event(&v)),
                    }
                }
                Ok(None) => return Err(CliError::Unreachable { url: url.into(), reason: "the arbiter closed the stream (shutting down?)".into() }),
                Err(s) => return Err(CliError::from_status(url, s)),
            }
        }
    }
}
