//! `fencectl status` and `fencectl nodes`.

use proto::v1 as pb;
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, connect, exit};

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub quorum_mode: String,
    pub epoch: u64,
    pub quorate: bool,
    pub in_grace: bool,
    pub survivors: Vec<u32>,
    pub target_survivors: Vec<u32>,
    pub fencing: Vec<u32>,
    pub fenced: Vec<u32>,
    pub total_votes: u32,
    pub arbiter_votes: u32,
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub arbiter: String,
    pub version: String,
    pub uptime_ms: u64,
    pub healthy: bool,
    pub clusters: Vec<ClusterView>,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub cluster: String,
    pub node: u32,
    pub name: String,
    pub state: String,
    pub lease: bool,
    pub connected: bool,
    pub last_heard_ms: Option<i64>,
    pub reachable: Vec<u32>,
    pub votes: u32,
    pub priority: u32,
    pub known_epoch: u64,
    pub config_fingerprint: String,
}

fn list(v: &[u32]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn fetch_status(url: &str, cluster: &str) -> Result<StatusView, CliError> {
    let mut c = connect(url).await?;
    let r = c
        .status(pb::StatusRequest {
            cluster: cluster.into(),
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    let clusters: Vec<ClusterView> = r
        .clusters
        .into_iter()
        .map(|c| ClusterView {
            name: c.name,
            quorum_mode: c.quorum_mode,
            epoch: c.epoch,
            quorate: c.quorate,
            in_grace: c.in_grace,
            survivors: c.survivors,
            target_survivors: c.target_survivors,
            fencing: c.fencing,
            fenced: c.fenced,
            total_votes: c.total_votes,
            arbiter_votes: c.arbiter_votes,
        })
        .collect();
    let healthy = clusters
        .iter()
        .all(|c| c.quorate && !c.in_grace && c.fencing.is_empty());
    Ok(StatusView {
        arbiter: url.into(),
        version: r.version,
        uptime_ms: r.arbiter_uptime_ms,
        healthy,
        clusters,
    })
}

pub fn render_status(v: &StatusView) -> String {
    let mut s = format!(
        "arbiter {} (v{}, up {:.1}s)\n",
        v.arbiter,
        v.version,
        v.uptime_ms as f64 / 1000.0
    );
    for c in &v.clusters {
        let state = if c.in_grace {
            "start-up grace"
        } else if !c.quorate {
            "NO QUORUM"
        } else if !c.fencing.is_empty() {
            "fencing"
        } else {
            "ok"
        };
        s += &format!(
            "cluster {}: {}  epoch {}  quorum {} (arbiter {} of {} votes)\n",
            c.name, state, c.epoch, c.quorum_mode, c.arbiter_votes, c.total_votes
        );
        s += &format!("  survivors: {}\n", list(&c.survivors));
        if !c.target_survivors.is_empty() {
            s += &format!("  moving to: {}\n", list(&c.target_survivors));
        }
        s += &format!("  fencing:   {}\n", list(&c.fencing));
        s += &format!("  fenced:    {}\n", list(&c.fenced));
    }
    s
}

pub async fn status(url: &str, cluster: &str, out: Output) -> Result<u8, CliError> {
    let v = fetch_status(url, cluster).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        ),
        Output::Text => print!("{}", render_status(&v)),
    }
    Ok(if v.healthy { exit::OK } else { exit::DEGRADED })
}

pub async fn fetch_nodes(url: &str, cluster: &str) -> Result<Vec<NodeView>, CliError> {
    let mut c = connect(url).await?;
    let r = c
        .nodes(pb::NodesRequest {
            cluster: cluster.into(),
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    Ok(r.nodes
        .into_iter()
        .map(|n| NodeView {
            cluster: n.cluster,
            node: n.node_id,
            name: n.name,
            state: n.state,
            lease: n.lease,
            connected: n.connected,
            last_heard_ms: (n.last_heard_ms >= 0).then_some(n.last_heard_ms),
            reachable: n.reachable,
            votes: n.votes,
            priority: n.priority,
            known_epoch: n.known_epoch,
            config_fingerprint: n.config_fingerprint,
        })
        .collect())
}

pub fn render_nodes(nodes: &[NodeView]) -> String {
    let mut s = format!(
        "{:<10} {:>4}  {:<10} {:<8} {:<5} {:<9} {:>10}  {:<12} {:>5}\n",
        "CLUSTER", "NODE", "NAME", "STATE", "LEASE", "CONNECTED", "LAST HEARD", "REACHES", "EPOCH"
    );
    for n in nodes {
        s += &format!(
            "{:<10} {:>4}  {:<10} {:<8} {:<5} {:<9} {:>10}  {:<12} {:>5}\n",
            n.cluster,
            n.node,
            n.name,
            n.state,
            if n.lease { "yes" } else { "no" },
            if n.connected { "yes" } else { "no" },
            n.last_heard_ms
                .map_or("never".to_string(), |m| format!("{m}ms")),
            list(&n.reachable),
            n.known_epoch
        );
    }
    s
}

pub async fn nodes(url: &str, cluster: &str, out: Output) -> Result<u8, CliError> {
    let v = fetch_nodes(url, cluster).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        ),
        Output::Text => print!("{}", render_nodes(&v)),
    }
    Ok(exit::OK)
}
