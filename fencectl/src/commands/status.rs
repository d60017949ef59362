//! `fencectl status` and `fencectl nodes`.

use proto::v1 as pb;
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, connect, exit, request};

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub quorum_mode: String,
    pub epoch: u64,
    pub quorate: bool,
    pub in_grace: bool,
    /// Is the arbiter hearing from a quorate set of nodes?
    pub in_contact: bool,
    /// Nodes given lost_after + reconnect_allowance to come back.
    pub pending: Vec<u32>,
    /// Standing critical alerts (a node alive after its confirmed fence...).
    pub alerts: Vec<String>,
    pub survivors: Vec<u32>,
    pub target_survivors: Vec<u32>,
    pub fencing: Vec<u32>,
    pub fenced: Vec<u32>,
    pub total_votes: u32,
    pub arbiter_votes: u32,
    /// The whole cluster in maintenance (no automatic fencing).
    pub maintenance: bool,
    /// Nodes in maintenance one by one.
    pub maintenance_nodes: Vec<u32>,
    /// Every running fence: since when, rounds failed, errors.
    pub fences: Vec<FenceView>,
}

/// A running fence, as `status` and `nodes` show it.
#[derive(Debug, Serialize)]
pub struct FenceView {
    pub node: u32,
    pub intent: u64,
    pub running_ms: u64,
    pub rounds_failed: u32,
    /// The level running (0-based), `None` between rounds.
    pub level: Option<u32>,
    pub levels: u32,
    /// Milliseconds until the next round, between rounds.
    pub next_retry_ms: Option<i64>,
    /// The last error of each level (`None`: it has not failed).
    pub level_errors: Vec<Option<String>>,
    pub last_failure_ms: Option<i64>,
    pub alerts_raised: u32,
}

impl From<pb::FenceProgress> for FenceView {
    fn from(f: pb::FenceProgress) -> Self {
        FenceView {
            node: f.node_id,
            intent: f.intent_id,
            running_ms: f.running_ms,
            rounds_failed: f.rounds_failed,
            level: u32::try_from(f.level).ok(),
            levels: f.levels,
            next_retry_ms: (f.next_retry_ms >= 0).then_some(f.next_retry_ms),
            level_errors: f
                .level_errors
                .into_iter()
                .map(|e| (!e.is_empty()).then_some(e))
                .collect(),
            last_failure_ms: (f.last_failure_ms >= 0).then_some(f.last_failure_ms),
            alerts_raised: f.alerts_raised,
        }
    }
}

impl FenceView {
    /// Lines for the text output, indented by `indent`.
    fn render(&self, indent: &str) -> String {
        let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
        let now = match (self.level, self.next_retry_ms) {
            (Some(l), _) => format!("level {} of {} running", l + 1, self.levels),
            (None, Some(ms)) => format!("next round in {}", secs(ms.max(0) as u64)),
            (None, None) => "waiting".into(),
        };
        let mut s = format!(
            "{indent}fence of node {} (intent {}): for {}, {} rounds failed, {now}, {} alerts raised\n",
            self.node,
            self.intent,
            secs(self.running_ms),
            self.rounds_failed,
            self.alerts_raised
        );
        for (i, e) in self.level_errors.iter().enumerate() {
            if let Some(e) = e {
                s += &format!("{indent}  level {}: {e}\n", i + 1);
            }
        }
        if self.rounds_failed > 0 {
            s += &format!(
                "{indent}  (fix the device, or if node {} is known to be off: fencectl confirm {} --cluster ... --yes)\n",
                self.node, self.node
            );
        }
        s
    }
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub arbiter: String,
    pub version: String,
    pub uptime_ms: u64,
    pub healthy: bool,
    /// In a group on etcd: "leader" or "standby" ("" for a lone arbiter).
    /// A standby's view (`--no-follow`) is what the store holds: no live
    /// contact, quorum or fence progress.
    pub role: String,
    /// This arbiter's name in its group.
    pub arbiter_name: String,
    /// Who leads, as a standby saw it.
    pub leader: String,
    pub leader_url: String,
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
    /// Set while the node is alive after a confirmed fence.
    pub alert: Option<String>,
    /// No automatic fencing of it (its own maintenance or the cluster's).
    pub maintenance: bool,
    /// Its running fence.
    pub fence: Option<FenceView>,
    /// How far past the arbiter's last grant its agent rides its lease
    /// out (0: not riding), and the cluster's most (0: ride-out off).
    pub ridden_ms: u64,
    pub ride_out_ms: u64,
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
        .status(request(pb::StatusRequest {
            cluster: cluster.into(),
        }))
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
            in_contact: c.in_contact,
            pending: c.pending,
            alerts: c.alerts,
            survivors: c.survivors,
            target_survivors: c.target_survivors,
            fencing: c.fencing,
            fenced: c.fenced,
            total_votes: c.total_votes,
            arbiter_votes: c.arbiter_votes,
            maintenance: c.maintenance,
            maintenance_nodes: c.maintenance_nodes,
            fences: c.fences.into_iter().map(FenceView::from).collect(),
        })
        .collect();
    let standby = r.role == "standby";
    let healthy = !standby
        && clusters.iter().all(|c| {
            c.quorate
                && !c.in_grace
                && c.in_contact
                && c.fencing.is_empty()
                && c.alerts.is_empty()
                && !c.maintenance
                && c.maintenance_nodes.is_empty()
        });
    Ok(StatusView {
        arbiter: url.into(),
        version: r.version,
        uptime_ms: r.arbiter_uptime_ms,
        healthy,
        clusters,
        role: r.role,
        arbiter_name: r.arbiter,
        leader: r.leader,
        leader_url: r.leader_url,
    })
}

pub fn render_status(v: &StatusView) -> String {
    let mut s = format!(
        "arbiter {} (v{}, up {:.1}s)\n",
        v.arbiter,
        v.version,
        v.uptime_ms as f64 / 1000.0
    );
    let standby = v.role == "standby";
    match v.role.as_str() {
        "leader" => s += &format!("  leads its group as {:?}\n", v.arbiter_name),
        "standby" => {
            let leader = if v.leader.is_empty() {
                "no leader known".to_string()
            } else {
                format!("the leader is {:?} at {}", v.leader, v.leader_url)
            };
            s += &format!(
                "  STANDBY {:?} ({leader}): the state as stored, nothing live\n",
                v.arbiter_name
            );
        }
        _ => {}
    }
    for c in &v.clusters {
        let state = if standby {
            "stored"
        } else if !c.alerts.is_empty() {
            "ALERT"
        } else if c.in_grace {
            "start-up grace"
        } else if !c.in_contact {
            "NO CONTACT (arbiter hears no quorate set)"
        } else if !c.quorate {
            "NO QUORUM"
        } else if !c.fencing.is_empty() {
            "fencing"
        } else if c.maintenance {
            "MAINTENANCE (no automatic fencing)"
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
        for f in &c.fences {
            s += &f.render("    ");
        }
        if !c.maintenance_nodes.is_empty() {
            s += &format!(
                "  maintenance: {} (no automatic fencing)\n",
                list(&c.maintenance_nodes)
            );
        }
        s += &format!("  fenced:    {}\n", list(&c.fenced));
        if !c.pending.is_empty() {
            s += &format!(
                "  awaiting:  {} (silence not counted yet)\n",
                list(&c.pending)
            );
        }
        for a in &c.alerts {
            s += &format!("  ALERT:     {a}\n");
        }
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
            alert: (!n.alert.is_empty()).then_some(n.alert),
            maintenance: n.maintenance,
            fence: n.fence.map(FenceView::from),
            ridden_ms: n.ridden_ms,
            ride_out_ms: n.ride_out_ms,
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
            if n.lease {
                "yes"
            } else if n.ridden_ms > 0 {
                "rides"
            } else {
                "no"
            },
            if n.connected { "yes" } else { "no" },
            n.last_heard_ms
                .map_or("never".to_string(), |m| format!("{m}ms")),
            list(&n.reachable),
            n.known_epoch
        );
        if let Some(a) = &n.alert {
            s += &format!("{:<10} {:>4}  ALERT: {a}\n", "", n.node);
        }
        if n.ridden_ms > 0 {
            s += &format!(
                "{:<10} {:>4}  lease ridden out {}ms past its grant on the whole mesh (at most {}ms)\n",
                "", n.node, n.ridden_ms, n.ride_out_ms
            );
        }
        if n.maintenance {
            s += &format!(
                "{:<10} {:>4}  maintenance: not fenced automatically\n",
                "", n.node
            );
        }
        if let Some(f) = &n.fence {
            s += &f.render(&" ".repeat(17));
        }
    }
    s
}

/// `fencectl clear NODE --cluster C --yes`: clear a node's alive-after-off
/// alert once its fence device is fixed.
pub async fn clear(
    url: &str,
    cluster: &str,
    node: u32,
    yes: bool,
    out: Output,
) -> Result<u8, CliError> {
    if !yes {
        return Err(CliError::Usage(
            "clearing an alive-after-off alert lets the node take part again: fix the fence device's wiring first (the node it switches must be this one), then add --yes".into(),
        ));
    }
    if cluster.is_empty() {
        return Err(CliError::Usage("name the cluster with --cluster".into()));
    }
    let mut c = connect(url).await?;
    let r = c
        .clear(pb::ClearRequest {
            cluster: cluster.into(),
            node_id: node,
            operator: crate::commands::control::operator_user(),
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    match out {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "cleared": node, "message": r.message })
        ),
        Output::Text => println!("{}", r.message),
    }
    Ok(exit::OK)
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
