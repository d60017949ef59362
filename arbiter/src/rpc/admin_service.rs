//! The admin API used by fencectl: status, nodes, history, watch, and the
//! operator's controls (fence, confirm, unfence, maintenance, clear, move),
//! which the cluster's core checks and applies (`core/operator.rs`).

use std::sync::Arc;

use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::identity;
use super::role::Role;
use crate::config::ClusterPlan;
use crate::core::{Control, JobState, Phase};
use crate::driver::{ClusterHandle, Snapshot, ToDriver};
use crate::store::Store;

pub struct AdminService {
    role: Arc<Role>,
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
    /// Send one control to its cluster's task; its core checks it.
    async fn control(
        &self,
        cluster: &str,
        by: String,
        control: Control,
    ) -> Result<Response<pb::CommandReply>, Status> {
        if cluster.is_empty() && self.role.serving()?.len() != 1 {
            return Err(Status::invalid_argument("name the cluster (--cluster)"));
        }
        let c = self.select(cluster)?[0];
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.tx.send(ToDriver::Operator {
            by,
            control,
            reply: tx,
        })
        .await
        .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        match rx
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?
        {
            Ok(message) => Ok(Response::new(pb::CommandReply { message })),
            Err(why) => Err(Status::failed_precondition(why)),
        }
    }

    pub fn new(
        role: Arc<Role>,
        store: Arc<dyn Store>,
        tracker: TaskTracker,
        token: CancellationToken,
        tls: bool,
    ) -> Self {
        AdminService {
            role,
            store,
            started: tokio::time::Instant::now(),
            tracker,
            token,
            tls,
        }
    }

    /// The clusters a request names: one by name, or all when empty.
    /// A standby refers every call to the leader (see [`Role::serving`]).
    fn select(&self, name: &str) -> Result<Vec<&ClusterHandle>, Status> {
        let clusters = self.role.serving()?;
        if name.is_empty() {
            return Ok(clusters.values().collect());
        }
        clusters.get(name).map(|c| vec![c]).ok_or_else(|| {
            Status::not_found(format!("cluster {name:?} does not exist on this arbiter"))
        })
    }

    /// The plans of the clusters a request names, as a standby knows them.
    fn select_plans(&self, name: &str) -> Result<Vec<Arc<ClusterPlan>>, Status> {
        let plans = self.role.plans();
        if name.is_empty() {
            return Ok(plans.values().cloned().collect());
        }
        plans.get(name).map(|c| vec![c.clone()]).ok_or_else(|| {
            Status::not_found(format!("cluster {name:?} does not exist on this arbiter"))
        })
    }

    /// A standby's `status`, read-only from the store: what the leader
    /// last wrote (epoch, backed set, fences open and confirmed, alerts,
    /// maintenance); nothing live (no node's contact, no quorum).
    async fn standby_status(&self, cluster: &str) -> Result<pb::StatusReply, Status> {
        let plans = self.select_plans(cluster)?;
        let store = self.store.clone();
        // Store reads wait on etcd: off the runtime's threads.
        let clusters = tokio::task::spawn_blocking(move || stored_status(&*store, &plans))
            .await
            .map_err(|e| Status::internal(format!("the store read: {e}")))??;
        let leader = self.role.leader();
        Ok(pb::StatusReply {
            clusters,
            arbiter_uptime_ms: self.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
            role: self.role.name().into(),
            arbiter: self.role.me().name.clone(),
            leader: leader.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
            leader_url: leader.map(|l| l.url).unwrap_or_default(),
        })
    }
}

/// What the store holds of each cluster, as a standby shows it: no live
/// view (contact, quorum, fence progress).
fn stored_status(
    store: &dyn Store,
    plans: &[Arc<ClusterPlan>],
) -> Result<Vec<pb::ClusterStatus>, Status> {
    let mut clusters = Vec::new();
    for plan in plans {
        let spec = &plan.spec;
        let p = store
            .load(&spec.name)
            .map_err(|e| Status::unavailable(format!("the store: {e}")))?;
        clusters.push(pb::ClusterStatus {
            name: spec.name.clone(),
            quorum_mode: spec.quorum_mode.as_str().into(),
            epoch: p.epoch,
            survivors: p.backed.iter().copied().collect(),
            fencing: p.open_intents.keys().copied().collect(),
            fenced: p.gone.iter().copied().collect(),
            alerts: p
                .alerts
                .iter()
                .map(|(n, d)| format!("node {n} alive after a confirmed fence: {d}"))
                .collect(),
            total_votes: spec.nodes.values().map(|n| n.votes).sum::<u32>(),
            maintenance: p.maintenance_all,
            maintenance_nodes: p.maintenance.iter().copied().collect(),
            ..Default::default()
        });
    }
    Ok(clusters)
}

/// A running fence of the node, for `fencectl status` and `nodes`.
fn fence_progress(s: &Snapshot, v: &crate::core::NodeView) -> Option<pb::FenceProgress> {
    let Phase::Leaving(job) = &v.phase else {
        return None;
    };
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    let (level, next_retry_ms) = match job.state {
        JobState::Running { level, .. } => (level as i32, -1),
        JobState::Backoff { retry_at } => (-1, ms(retry_at.saturating_sub(s.now))),
    };
    Some(pb::FenceProgress {
        intent_id: job.intent,
        running_ms: s.now.saturating_sub(job.since).as_millis() as u64,
        rounds_failed: job.rounds_failed,
        level,
        levels: job.levels as u32,
        next_retry_ms,
        level_errors: job
            .errors
            .iter()
            .map(|e| e.clone().unwrap_or_default())
            .collect(),
        last_failure_ms: job.last_failure.map_or(-1, |t| ms(s.now.saturating_sub(t))),
        alerts_raised: s.alerts_raised.get(&job.intent).copied().unwrap_or(0),
        node_id: job.node,
    })
}

/// The state a watch starts from: one `snapshot` event for the cluster
/// (epoch, survivors, a summary) and one per node (its state).
fn snapshot_events(c: &ClusterHandle, s: &Snapshot) -> Vec<pb::ClusterEvent> {
    let us = crate::driver::unix_us();
    let name = c.plan.spec.name.clone();
    let ev = |node_id: u32, nodes: Vec<u32>, detail: String| pb::ClusterEvent {
        cluster: name.clone(),
        unix_ms: us / 1000,
        kind: "snapshot".into(),
        node_id,
        epoch: s.status.epoch,
        nodes,
        detail,
        unix_us: us,
    };
    let mut summary = vec![format!(
        "epoch {}, survivors {:?}, {}",
        s.status.epoch,
        s.status.backed,
        if s.status.verdict.is_some() {
            "quorate"
        } else {
            "no quorum"
        }
    )];
    if s.status.in_grace {
        summary.push("in start-up grace".into());
    }
    if !s.status.fencing.is_empty() {
        summary.push(format!("fencing {:?}", s.status.fencing));
    }
    if s.maintenance.1 {
        summary.push("maintenance: whole cluster".into());
    } else if !s.maintenance.0.is_empty() {
        summary.push(format!("maintenance: nodes {:?}", s.maintenance.0));
    }
    summary.extend(
        s.status
            .alerts
            .iter()
            .map(|(n, d)| format!("alert: node {n} alive after off: {d}")),
    );
    let mut out = vec![ev(
        0,
        s.status.backed.iter().copied().collect(),
        summary.join("; "),
    )];
    for (&id, v) in &s.nodes {
        let mut detail = node_state(s, id).to_string();
        if let Some(f) = fence_progress(s, v) {
            detail.push_str(&format!(
                " (intent {}, {} rounds failed, running {} ms)",
                f.intent_id, f.rounds_failed, f.running_ms
            ));
        }
        if s.maintenance.1 || s.maintenance.0.contains(&id) {
            detail.push_str(", maintenance");
        }
        out.push(ev(id, vec![], detail));
    }
    out
}

/// Who asks for a control: the certificate's identity, the user fencectl
/// says it runs as, and the caller's address.
fn who<T>(req: &Request<T>, tls: bool, user: &str) -> Result<String, Status> {
    let id = match identity::caller(req, tls)? {
        None => "no certificate (insecure_plaintext)".to_string(),
        Some(ids) => ids
            .iter()
            .find(|i| ADMINS.contains(&i.as_str()))
            .cloned()
            .unwrap_or_else(|| ids.join(",")),
    };
    let user: String = user.chars().filter(|c| !c.is_control()).take(64).collect();
    let user = if user.is_empty() {
        "unknown user".to_string()
    } else {
        user
    };
    Ok(match req.remote_addr() {
        Some(a) => format!("{user} ({id}, from {a})"),
        None => format!("{user} ({id})"),
    })
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
        if self.role.answers_itself(&req) {
            return Ok(Response::new(
                self.standby_status(&req.get_ref().cluster).await?,
            ));
        }
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
                maintenance: s.maintenance.1,
                maintenance_nodes: s.maintenance.0.iter().copied().collect(),
                fences: s
                    .nodes
                    .values()
                    .filter_map(|v| fence_progress(&s, v))
                    .collect(),
            });
        }
        Ok(Response::new(pb::StatusReply {
            clusters,
            arbiter_uptime_ms: self.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
            role: self.role.name().into(),
            arbiter: self.role.me().name.clone(),
            leader: self.role.me().name.clone(),
            leader_url: self.role.me().url.clone(),
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
                    maintenance: s.maintenance.1 || s.maintenance.0.contains(&id),
                    fence: fence_progress(&s, v),
                    // What a silent agent said last is not "now".
                    ridden_ms: if v
                        .last_heard
                        .is_some_and(|t| s.now.saturating_sub(t) <= spec.timing.fresh_within())
                    {
                        v.ridden.as_millis() as u64
                    } else {
                        0
                    },
                    ride_out_ms: spec.timing.ride_out.as_millis() as u64,
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
        let by = who(&r, self.tls, &req.operator)?;
        c.tx.send(ToDriver::Move {
            group: req.group.clone(),
            node: req.node_id,
            by,
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
        let names: Vec<String> = if self.role.answers_itself(&req) {
            self.select_plans(&r.cluster)?
                .iter()
                .map(|p| p.spec.name.clone())
                .collect()
        } else {
            self.select(&r.cluster)?
                .iter()
                .map(|c| c.plan.spec.name.clone())
                .collect()
        };
        let store = self.store.clone();
        // Store reads may wait on etcd: off the runtime's threads.
        let (fences, controls) = tokio::task::spawn_blocking(move || {
            let mut fences = Vec::new();
            let mut controls = Vec::new();
            for name in names {
                let recs = store
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
                    confirmed_by: h.confirmed_by.unwrap_or_default(),
                }));
                let recs = store
                    .controls(&name, limit)
                    .map_err(|e| Status::internal(e.to_string()))?;
                controls.extend(recs.into_iter().map(|h| pb::ControlRecord {
                    cluster: name.clone(),
                    unix_ms: h.unix_ms,
                    by: h.by,
                    action: h.action,
                    node_id: h.node.unwrap_or(0),
                    detail: h.detail,
                }));
            }
            Ok::<_, Status>((fences, controls))
        })
        .await
        .map_err(|e| Status::internal(format!("the store read: {e}")))??;
        Ok(Response::new(pb::HistoryReply { fences, controls }))
    }

    type WatchStream = ReceiverStream<Result<pb::ClusterEvent, Status>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        identity::require(&req, self.tls, READERS, "watch")?;
        let clusters = self.select(&req.get_ref().cluster)?;
        // Subscribe first, then take the snapshot: nothing falls between.
        let mut subs: Vec<_> = clusters.iter().map(|c| c.events.subscribe()).collect();
        let mut first = Vec::new();
        for c in &clusters {
            first.extend(snapshot_events(c, &c.snapshot().await?));
        }
        let (tx, rx) = mpsc::channel(256);
        let token = self.token.clone();
        self.tracker.spawn(async move {
            for ev in first {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
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
        let q = r.get_ref();
        let by = who(&r, self.tls, &q.operator)?;
        let reason: String = q
            .reason
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        self.control(
            &q.cluster,
            by,
            Control::Fence {
                node: q.node_id,
                reason,
            },
        )
        .await
    }
    async fn unfence(
        &self,
        r: Request<pb::UnfenceRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "unfence")?;
        let q = r.get_ref();
        let by = who(&r, self.tls, &q.operator)?;
        self.control(&q.cluster, by, Control::Unfence { node: q.node_id })
            .await
    }
    async fn confirm(
        &self,
        r: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "confirm")?;
        let q = r.get_ref();
        let by = who(&r, self.tls, &q.operator)?;
        self.control(&q.cluster, by, Control::Confirm { node: q.node_id })
            .await
    }
    async fn set_maintenance(
        &self,
        r: Request<pb::MaintenanceRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        identity::require(&r, self.tls, ADMINS, "maintenance")?;
        let q = r.get_ref();
        let by = who(&r, self.tls, &q.operator)?;
        let node = match (q.whole_cluster, q.node_id) {
            (true, 0) => None,
            (false, 0) => {
                return Err(Status::invalid_argument(
                    "name a node (node_id), or the whole cluster (whole_cluster)",
                ));
            }
            (true, _) => {
                return Err(Status::invalid_argument(
                    "a node (node_id) or the whole cluster (whole_cluster), not both",
                ));
            }
            (false, n) => Some(n),
        };
        let control = Control::Maintenance {
            node,
            on: q.enabled,
        };
        self.control(&q.cluster, by, control).await
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
        let by = who(&r, self.tls, &req.operator)?;
        c.tx.send(ToDriver::Clear { node, by })
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        tracing::warn!(cluster = %req.cluster, node.id = node, alert = %detail, "operator cleared an alive-after-off alert");
        Ok(Response::new(pb::CommandReply {
            message: format!("alert of node {node} cleared (was: {detail})"),
        }))
    }
}
