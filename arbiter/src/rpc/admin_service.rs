//! The admin API used by fencectl: status, nodes, history, watch. Fence,
//! unfence, confirm and maintenance are reserved and answer UNIMPLEMENTED.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::identity;
use crate::core::Phase;
use crate::driver::{ClusterHandle, Snapshot, ToDriver};
use crate::store::Store;

pub struct AdminService {
    clusters: Arc<BTreeMap<String, ClusterHandle>>,
    store: Arc<dyn Store>,
    started: tokio::time::Instant,
    tracker: TaskTracker,
    token: CancellationToken,
    tls: bool,
}

/// Identities allowed to read (status, nodes, history, watch).
const READERS: &[&str] = &["admin", "reader"];
/// Identities allowed to change anything.
const ADMINS: &[&str] = &["admin"];

impl AdminService {
    pub fn new(
        clusters: Arc<BTreeMap<String, ClusterHandle>>,
        store: Arc<dyn Store>,
        tracker: TaskTracker,
        token: CancellationToken,
        tls: bool,
    ) -> Self {
        AdminService {
            clusters,
            store,
            started: tokio::time::Instant::now(),
            tracker,
            token,
            tls,
        }
    }

    /// The clusters a request names: one by name, or all when empty.
    fn select(&self, name: &str) -> Result<Vec<&ClusterHandle>, Status> {
        if name.is_empty() {
            return Ok(self.clusters.values().collect());
        }
        self.clusters.get(name).map(|c| vec![c]).ok_or_else(|| {
            Status::not_found(format!("cluster {name:?} does not exist on this arbiter"))
        })
    }
}

fn node_state(s: &Snapshot, id: u32) -> &'static str {
    let v = &s.nodes[&id];
    match &v.phase {
        Phase::Member if !v.alive => "lost",
        Phase::Member if s.status.verdict.as_ref().is_some_and(|x| !x.contains(&id)) => "leaving",
        Phase::Joining if !v.alive => "down",
        Phase::Off | Phase::Gone => "fenced",
        p => p.name(),
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        identity::require(&req, self.tls, READERS, "status")?;
        let mut clusters = Vec::new();
        for c in self.select(&req.get_ref().cluster)? {
            let s = c.snapshot().await?;
            let spec = &c.plan.spec;
            let target = s
                .status
                .verdict
                .clone()
                .filter(|v| *v != s.status.backed)
                .unwrap_or_default();
            clusters.push(pb::ClusterStatus {
                name: spec.name.clone(),
                quorum_mode: spec.quorum_mode.as_str().into(),
                epoch: s.status.epoch,
                survivors: s.status.backed.iter().copied().collect(),
                target_survivors: target.into_iter().collect(),
                fencing: s.status.fencing.iter().copied().collect(),
                fenced: s.status.gone.iter().copied().collect(),
                quorate: s.status.verdict.is_some(),
                in_grace: s.status.in_grace,
                in_contact: s.status.in_contact,
                pending: s.status.pending.iter().copied().collect(),
                alerts: s
                    .status
                    .alerts
                    .iter()
                    .map(|(n, d)| format!("node {n} alive after a confirmed fence: {d}"))
                    .chain(s.status.orphan_intents.iter().map(|(n, i)| {
                        format!("open fence intent {i} for node {n}, which is no longer configured")
                    }))
                    .collect(),
                total_votes: s.status.total_votes as u32,
                arbiter_votes: s.status.arbiter_votes as u32,
            });
        }
        Ok(Response::new(pb::StatusReply {
            clusters,
            arbiter_uptime_ms: self.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn nodes(
        &self,
        req: Request<pb::NodesRequest>,
    ) -> Result<Response<pb::NodesReply>, Status> {
        identity::require(&req, self.tls, READERS, "nodes")?;
        let mut nodes = Vec::new();
        for c in self.select(&req.get_ref().cluster)? {
            let s = c.snapshot().await?;
            let spec = &c.plan.spec;
            for (&id, v) in &s.nodes {
                let lease = v.lease_bound.is_some_and(|u| u > s.now);
                nodes.push(pb::NodeInfo {
                    cluster: spec.name.clone(),
                    node_id: id,
                    name: c.plan.names.get(&id).cloned().unwrap_or_default(),
                    state: node_state(&s, id).into(),
                    connected: v.connected,
                    lease,
                    last_heard_ms: v
                        .last_heard
                        .map_or(-1, |t| s.now.saturating_sub(t).as_millis() as i64),
                    reachable: v.reach.iter().copied().collect(),
                    votes: spec.nodes[&id].votes,
                    priority: spec.nodes[&id].priority,
                    heuristics: v.heuristics,
                    config_fingerprint: s.fingerprints.get(&id).cloned().unwrap_or_default(),
                    known_epoch: v.known_epoch,
                    alert: s.status.alerts.get(&id).cloned().unwrap_or_default(),
                });
            }
        }
        Ok(Response::new(pb::NodesReply { nodes }))
    }

    async fn resources(
        &self,
        req: Request<pb::ResourcesRequest>,
    ) -> Result<Response<pb::ResourcesReply>, Status> {
        identity::require(&req, self.tls, READERS, "resources")?;
        let mut groups = Vec::new();
        for c in self.select(&req.get_ref().cluster)? {
            let s = c.snapshot().await?;
            for g in &s.status.groups {
                let plan = c.plan.groups.iter().find(|p| p.name == g.name);
                groups.push(pb::GroupInfo {
                    cluster: c.plan.spec.name.clone(),
                    name: g.name.clone(),
                    holder: g.holder.unwrap_or(0),
                    holder_name: g
                        .holder
                        .and_then(|h| c.plan.names.get(&h).cloned())
                        .unwrap_or_default(),
                    state: g.state.into(),
                    since_ms: s.now.saturating_sub(g.since).as_millis() as u64,
                    waiting_for: g.waiting_for.iter().copied().collect(),
                    resources: plan
                        .map(|p| p.resources.iter().map(|r| r.label()).collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(Response::new(pb::ResourcesReply { groups }))
    }

    async fn r#move(
        &self,
        r: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "move")?;
        let req = r.get_ref();
        if req.cluster.is_empty() {
            return Err(Status::invalid_argument("name the cluster (--cluster)"));
        }
        let c = self.select(&req.cluster)?[0];
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.tx.send(ToDriver::Move {
            group: req.group.clone(),
            node: req.node_id,
            reply: tx,
        })
        .await
        .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        let checked = rx
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        match checked {
            Ok(()) => Ok(Response::new(pb::CommandReply {
                message: format!(
                    "group {:?} moves to node {}: its holder stops it and acknowledges, then node {} starts it (watch with `fencectl resources`)",
                    req.group, req.node_id, req.node_id
                ),
            })),
            Err(why) => Err(Status::failed_precondition(why)),
        }
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        identity::require(&req, self.tls, READERS, "history")?;
        let r = req.get_ref();
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let mut fences = Vec::new();
        for c in self.select(&r.cluster)? {
            let name = c.plan.spec.name.clone();
            let recs = self
                .store
                .history(&name, limit)
                .map_err(|e| Status::internal(e.to_string()))?;
            fences.extend(recs.into_iter().map(|h| pb::FenceRecord {
                cluster: name.clone(),
                node_id: h.node,
                intent_id: h.intent,
                reason: h.reason,
                started_unix_ms: h.started_unix_ms,
                finished_unix_ms: h.finished_unix_ms.unwrap_or(0),
                outcome: h.outcome,
                epoch: h.epoch,
                detail: h.failures.join("; "),
            }));
        }
        Ok(Response::new(pb::HistoryReply { fences }))
    }

    type WatchStream = ReceiverStream<Result<pb::ClusterEvent, Status>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        identity::require(&req, self.tls, READERS, "watch")?;
        let mut subs: Vec<_> = self
            .select(&req.get_ref().cluster)?
            .iter()
            .map(|c| c.events.subscribe())
            .collect();
        let (tx, rx) = mpsc::channel(256);
        let token = self.token.clone();
        self.tracker.spawn(async move {
            // One forwarding loop per subscribed cluster, joined here.
            let mut set = tokio::task::JoinSet::new();
            for mut sub in subs.drain(..) {
                let tx = tx.clone();
                set.spawn(async move {
                    loop {
                        match sub.recv().await {
                            Ok(ev) => {
                                if tx.send(Ok(ev)).await.is_err() {
                                    break;
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                let _ = tx
                                    .send(Err(Status::data_loss(format!(
                                        "watcher too slow: {n} events dropped"
                                    ))))
                                    .await;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                });
            }
            tokio::select! {
                _ = token.cancelled() => {}
                _ = async { while set.join_next().await.is_some() {} } => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fence(
        &self,
        r: Request<pb::FenceRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "fence")?;
        Err(Status::unimplemented(
            "manual fencing is not available in this release",
        ))
    }
    async fn unfence(
        &self,
        r: Request<pb::UnfenceRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "unfence")?;
        Err(Status::unimplemented(
            "unfence is not available in this release; a fenced node rejoins by itself when it comes back",
        ))
    }
    async fn confirm(
        &self,
        r: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "confirm")?;
        Err(Status::unimplemented(
            "manual confirm is not available in this release",
        ))
    }
    async fn set_maintenance(
        &self,
        r: Request<pb::MaintenanceRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "maintenance")?;
        Err(Status::unimplemented(
            "maintenance mode is not available in this release",
        ))
    }

    async fn clear(
        &self,
        r: Request<pb::ClearRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "clear")?;
        let req = r.get_ref();
        if req.cluster.is_empty() {
            return Err(Status::invalid_argument("name the cluster (--cluster)"));
        }
        let c = self.select(&req.cluster)?[0];
        let node = req.node_id;
        if !c.plan.spec.nodes.contains_key(&node) {
            return Err(Status::not_found(format!(
                "cluster {:?} has no node {node}",
                req.cluster
            )));
        }
        let before = c.snapshot().await?;
        let Some(detail) = before.status.alerts.get(&node).cloned() else {
            return Err(Status::failed_precondition(format!(
                "node {node} of cluster {:?} has no alert to clear",
                req.cluster
            )));
        };
        c.tx.send(ToDriver::Clear { node })
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        tracing::warn!(cluster = %req.cluster, node.id = node, alert = %detail, "operator cleared an alive-after-off alert");
        Ok(Response::new(pb::CommandReply {
            message: format!("alert of node {node} cleared (was: {detail})"),
        }))
    }
}
