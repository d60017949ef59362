//! The imperative shell of one cluster: it owns the core, feeds it events
//! (sessions, heartbeats, fence results, a 10 ms tick) and executes its
//! actions in order: persist (durably, before anything after it), answer
//! agents, run fence levels, announce, publish the timeline.
//!
//! Only this task awaits on the core's behalf; fence levels run in tracked
//! tasks and report back through the same channel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fence_drivers::FenceDriver;
use proto::v1 as pb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tracing::{error, info, warn};

use crate::alert::{Alert, AlertKind, Alerter, Severity};
use crate::config::{ClusterPlan, FenceTarget};
use crate::core::{
    Action, ArbiterCore, Control, CoreStatus, Event, LevelOutcome, NodeId, NodeView, Notice,
    RunState,
};
use crate::fence_orchestrator::{Progress, power_on, run_level};
use crate::metrics::{ClusterMetrics, FenceResult, Metrics};
use crate::store::{Store, StoreError};

pub type AgentTx = mpsc::Sender<Result<pb::ArbiterMessage, Status>>;

/// Messages into a cluster's task.
pub enum ToDriver {
    Connected {
        node: NodeId,
        session: u64,
        known_epoch: u64,
        instance: u64,
        /// A digest of the agent machine's boot id (0: not told).
        boot: u64,
        fingerprint: String,
        /// The watchdog its Hello said is armed (ms; 0: none).
        watchdog_ms: u32,
        out: AgentTx,
    },
    Disconnected {
        node: NodeId,
        session: u64,
    },
    Heartbeat {
        node: NodeId,
        session: u64,
        hb: pb::Heartbeat,
    },
    FenceDone {
        node: NodeId,
        intent: u64,
        level: usize,
        attempt: u64,
        outcome: LevelOutcome,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    /// An operator cleared a node's alive-after-off alert.
    Clear {
        node: NodeId,
        by: String,
    },
    /// An operator's control; the reply says what was done, or why not.
    /// (An unfence replies once its devices answered.)
    Operator {
        by: String,
        control: Control,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The devices answered an unfence of `node`.
    PowerOnDone {
        node: NodeId,
        result: Result<Vec<String>, String>,
    },
    /// An operator moves a resource group; the reply says why not.
    Move {
        group: String,
        node: NodeId,
        by: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A group state as an agent reported it.
fn run_state(s: pb::GroupRunState) -> RunState {
    match s {
        pb::GroupRunState::Stopped => RunState::Stopped,
        pb::GroupRunState::Starting => RunState::Starting,
        pb::GroupRunState::Running => RunState::Running,
        pb::GroupRunState::Stopping => RunState::Stopping,
        pb::GroupRunState::Failed => RunState::Failed,
        pb::GroupRunState::StopFailed => RunState::StopFailed,
    }
}

/// What the admin API reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: CoreStatus,
    /// Nodes in maintenance, and whether the whole cluster is.
    pub maintenance: (std::collections::BTreeSet<NodeId>, bool),
    /// Alerts raised per running fence (intent).
    pub alerts_raised: BTreeMap<u64, u32>,
    pub nodes: BTreeMap<NodeId, NodeView>,
    pub fingerprints: BTreeMap<NodeId, String>,
    pub now: Duration,
}

/// The handle services use to reach a cluster's task.
#[derive(Clone)]
pub struct ClusterHandle {
    pub plan: Arc<ClusterPlan>,
    pub tx: mpsc::Sender<ToDriver>,
    pub events: broadcast::Sender<pb::ClusterEvent>,
}

impl ClusterHandle {
    pub async fn snapshot(&self) -> Result<Snapshot, Status> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(ToDriver::Snapshot(tx))
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))
    }
}

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Publish one timeline event (watch stream).
pub fn publish(
    events: &broadcast::Sender<pb::ClusterEvent>,
    cluster: &str,
    kind: &str,
    node: NodeId,
    epoch: u64,
    nodes: Vec<NodeId>,
    detail: String,
) {
    let us = unix_us();
    let _ = events.send(pb::ClusterEvent {
        cluster: cluster.to_string(),
        unix_ms: us / 1000,
        kind: kind.to_string(),
        node_id: node,
        epoch,
        nodes,
        detail,
        unix_us: us,
    });
}

/// Check every device each `every` (which keeps warm sessions alive) and
/// log when one stops or starts answering; on cancel, close the devices'
/// sessions (also when monitoring is off: `every` is `None`).
async fn monitor_devices(
    cluster: String,
    devices: Arc<BTreeMap<String, Arc<dyn FenceDriver>>>,
    every: Option<Duration>,
    token: CancellationToken,
    alerter: Alerter,
    metrics: ClusterMetrics,
) {
    let Some(every) = every else {
        token.cancelled().await;
        return close_all(&devices).await;
    };
    let mut healthy: BTreeMap<String, bool> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick.tick() => {}
        }
        // One check may take the interval, but at least a second.
        let limit = every.max(Duration::from_secs(1));
        for (name, dev) in devices.iter() {
            let r = tokio::select! {
                _ = token.cancelled() => break,
                r = tokio::time::timeout(limit, dev.monitor()) => r,
            };
            let r = r.unwrap_or_else(|_| {
                Err(fence_drivers::FenceError::Timeout {
                    device: name.clone(),
                    timeout: limit,
                })
            });
            let was = healthy.insert(name.clone(), r.is_ok());
            metrics.device_up(name, r.is_ok());
            match (&r, was) {
                (Err(e), Some(true) | None) => {
                    warn!(cluster = %cluster, device = %name, error = %e, "fence device does not answer its monitor check");
                    alerter.raise(
                        Alert::new(
                            AlertKind::DeviceMonitorFailed,
                            cluster.as_str(),
                            format!("fence device {name} does not answer its monitor check: {e}"),
                        )
                        .detail("device", name.as_str())
                        .detail("error", e.to_string()),
                    );
                }
                (Ok(()), Some(false)) => {
                    info!(cluster = %cluster, device = %name, "fence device answers again")
                }
                _ => {}
            }
        }
    }
    close_all(&devices).await
}

/// Close every device's session (an IPMI Close Session), briefly.
async fn close_all(devices: &BTreeMap<String, Arc<dyn FenceDriver>>) {
    for dev in devices.values() {
        let _ = tokio::time::timeout(Duration::from_millis(500), dev.close()).await;
    }
}

pub struct ClusterDriver {
    plan: Arc<ClusterPlan>,
    core: ArbiterCore,
    store: Arc<dyn Store>,
    devices: Arc<BTreeMap<String, Arc<dyn FenceDriver>>>,
    sessions: BTreeMap<NodeId, (u64, AgentTx)>,
    /// Per node, the watchdog its session last reported (session, ms), so
    /// the core hears of changes only.
    watchdogs: BTreeMap<NodeId, (u64, u32)>,
    fingerprints: BTreeMap<NodeId, String>,
    self_tx: mpsc::Sender<ToDriver>,
    events: broadcast::Sender<pb::ClusterEvent>,
    origin: Instant,
    tracker: TaskTracker,
    token: CancellationToken,
    /// Every group as agents are told it in their Welcome.
    group_definitions: Vec<pb::GroupDefinition>,
    /// Alerts raised per fence intent (level failures, failed rounds).
    alerts_raised: BTreeMap<u64, u32>,
    alerter: Alerter,
    metrics: ClusterMetrics,
    /// The process's metrics (store write latency).
    all_metrics: Arc<Metrics>,
    /// When each fence intent began (for the duration histogram), and why.
    intent_started: BTreeMap<u64, Instant>,
    intent_reasons: BTreeMap<u64, String>,
    /// Ticks since the node gauges were last set.
    ticks: u32,
    /// Fence level tasks still running, per node: a confirm ends the fence
    /// in the core, not the level's `off` already on its way.
    levels_running: BTreeMap<NodeId, usize>,
    /// Unfences waiting for those to finish (an `on` must never be
    /// overtaken by a stale `off`).
    power_on_waiting: BTreeSet<NodeId>,
    /// Unfences whose `on` is on its way to the devices.
    powering_on: BTreeSet<NodeId>,
    /// With `[arbiter.etcd]`: until when this process leads; no lease is
    /// granted past it.
    leader: Option<Arc<crate::leadership::LeaderClock>>,
    /// Fence levels waiting for those to finish (an `off` must never be
    /// overtaken by an `on`).
    levels_waiting: BTreeMap<NodeId, Vec<LevelRun>>,
    /// Operators waiting for an unfence's result, per node.
    unfence_replies: BTreeMap<NodeId, Vec<oneshot::Sender<Result<String, String>>>>,
}

/// One fence level to run: what [`Action::Fence`] asked, with its devices.
struct LevelRun {
    node: NodeId,
    intent: u64,
    level: usize,
    attempt: u64,
    epoch: u64,
    targets: Vec<FenceTarget>,
}

impl ClusterDriver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Arc<ClusterPlan>,
        store: Arc<dyn Store>,
        devices: BTreeMap<String, Arc<dyn FenceDriver>>,
        handle: &ClusterHandle,
        tracker: TaskTracker,
        token: CancellationToken,
        alerter: Alerter,
        all_metrics: Arc<Metrics>,
        leader: Option<Arc<crate::leadership::LeaderClock>>,
    ) -> Result<Self, StoreError> {
        // With etcd: no device acts once this arbiter no longer leads.
        let devices = match &leader {
            Some(clock) => devices
                .into_iter()
                .map(|(name, d)| (name, crate::leadership::LeaderOnly::wrap(d, clock.clone())))
                .collect(),
            None => devices,
        };
        let persisted = store.load(&plan.spec.name)?;
        if persisted == crate::core::Persisted::default() {
            warn!(cluster = %plan.spec.name, "no stored history for this cluster: a first start, or the store was lost or replaced; every node is waited for");
            alerter.raise(Alert::new(
                AlertKind::StartWithoutHistory,
                plan.spec.name.as_str(),
                "the arbiter starts without stored history for this cluster (a first start, or a lost store): every configured node is waited for",
            ));
        }
        let metrics = all_metrics.cluster(&plan.spec.name);
        info!(cluster = %plan.spec.name, lease.epoch = persisted.epoch, backed = ?persisted.backed,
              open_intents = ?persisted.open_intents, "cluster state loaded; start-up grace begins");
        let core = ArbiterCore::new(plan.spec.clone(), persisted, Duration::ZERO);
        let group_definitions = plan
            .groups
            .iter()
            .map(|g| pb::GroupDefinition {
                name: g.name.clone(),
                resources_json: serde_json::to_string(&g.resources)
                    .expect("resource specs serialize"),
                monitor_interval_ms: g.monitor_interval.as_millis() as u64,
                max_restarts: g.max_restarts,
                restart_window_ms: g.restart_window.as_millis() as u64,
            })
            .collect();
        Ok(ClusterDriver {
            group_definitions,
            plan,
            core,
            store,
            devices: Arc::new(devices),
            sessions: BTreeMap::new(),
            watchdogs: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
            self_tx: handle.tx.clone(),
            events: handle.events.clone(),
            origin: Instant::now(),
            tracker,
            token,
            unfence_replies: BTreeMap::new(),
            levels_running: BTreeMap::new(),
            power_on_waiting: BTreeSet::new(),
            powering_on: BTreeSet::new(),
            leader,
            levels_waiting: BTreeMap::new(),
            alerts_raised: BTreeMap::new(),
            alerter,
            metrics,
            all_metrics,
            intent_started: BTreeMap::new(),
            intent_reasons: BTreeMap::new(),
            ticks: 0,
        })
    }

    fn name(&self) -> &str {
        &self.plan.spec.name
    }

    /// Run until cancelled. A store failure ends the task with an error:
    /// the arbiter must stop rather than act on state it could not persist.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ToDriver>) -> Result<(), StoreError> {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let devices = self.devices.clone();
        let (cluster, token) = (self.name().to_string(), self.token.clone());
        self.tracker.spawn(monitor_devices(
            cluster,
            devices,
            self.plan.monitor_interval,
            token,
            self.alerter.clone(),
            self.metrics.clone(),
        ));
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    // A leader whose etcd lease lapsed (frozen, cut off)
                    // stops at its first tick: the new leader decides.
                    if self.leader.as_ref().is_some_and(|c| !c.holds()) {
                        return Err(StoreError::Deposed {
                            cluster: self.name().to_string(),
                            leader: "unknown (this arbiter's etcd lease lapsed)".into(),
                        });
                    }
                    self.step(Event::Tick)?;
                    self.gauges();
                }
                msg = rx.recv() => match msg {
                    None => return Ok(()),
                    Some(m) => self.handle(m)?,
                },
            }
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The gauges, about once a second (nodes by state, quorum, grace,
    /// epoch).
    fn gauges(&mut self) {
        self.ticks += 1;
        if self.ticks < 100 {
            return;
        }
        self.ticks = 0;
        let status = self.core.status();
        self.metrics.set_quorate(status.verdict.is_some());
        self.metrics.set_in_grace(status.in_grace);
        self.metrics.set_epoch(status.epoch);
        let phases: Vec<&'static str> = self
            .plan
            .spec
            .nodes
            .keys()
            .filter_map(|id| self.core.node(*id).map(|v| v.phase.name()))
            .collect();
        self.metrics.count_nodes(phases);
    }

    /// The alert and the metrics a notice raises.
    fn alert_and_count(&mut self, n: &Notice, epoch: u64) {
        let c = self.plan.spec.name.clone();
        let c = c.as_str();
        match n {
            Notice::Decision { .. } => self.metrics.decision(),
            Notice::FenceFailed {
                node,
                intent,
                level,
                detail,
            } => {
                self.metrics.level_failed();
                self.fence_alert(
                    *intent,
                    Alert::new(
                        AlertKind::FenceLevelFailed,
                        c,
                        format!("fence level {} of node {node} failed: {detail}", level + 1),
                    )
                    .node(*node)
                    .epoch(epoch)
                    .detail("intent", *intent)
                    .detail("level", *level as u64)
                    .detail("error", detail.as_str()),
                );
            }
            Notice::FenceRoundFailed {
                node,
                intent,
                rounds,
                retry_in,
                detail,
            } => {
                self.metrics.fence_result(FenceResult::Failed, None);
                self.fence_alert(
                    *intent,
                    Alert::new(
                        AlertKind::FenceFailed,
                        c,
                        format!(
                            "fencing node {node} failed at every level ({rounds} rounds); retrying in {retry_in:?}; the survivors wait"
                        ),
                    )
                    .node(*node)
                    .epoch(epoch)
                    .detail("intent", *intent)
                    .detail("rounds", *rounds)
                    .detail("retry_in_ms", retry_in.as_millis() as u64)
                    .detail("error", detail.as_str()),
                );
            }
            Notice::StormHold { leaving } => {
                self.metrics.storm_hold();
                self.alerter.raise(
                    Alert::new(
                        AlertKind::StormHold,
                        c,
                        format!("fence storm: {} nodes leaving at once ({leaving:?}); fencing nobody", leaving.len()),
                    )
                    .epoch(epoch)
                    .detail("leaving", leaving.iter().copied().collect::<Vec<_>>()),
                );
            }
            Notice::NoQuorum { best } => self.alerter.raise(
                Alert::new(
                    AlertKind::NoQuorum,
                    c,
                    format!("no quorate survivor set (best {best:?}): no leases, no fencing"),
                )
                .epoch(epoch)
                .detail("best", best.iter().copied().collect::<Vec<_>>()),
            ),
            Notice::AliveAfterOff { node, detail } => self.alerter.raise(
                Alert::new(
                    AlertKind::AliveAfterOff,
                    c,
                    format!("node {node} was confirmed off but is alive: {detail}"),
                )
                .node(*node)
                .epoch(epoch)
                .detail("detail", detail.as_str()),
            ),
            Notice::EpochBehind {
                node,
                reported,
                stored,
            } => self.alerter.raise(
                Alert::new(
                    AlertKind::StartWithoutHistory,
                    c,
                    format!(
                        "node {node} holds epoch {reported}, the store only {stored}: the arbiter started without its history"
                    ),
                )
                .severity(Severity::Critical)
                .node(*node)
                .epoch(epoch)
                .detail("reported", *reported)
                .detail("stored", *stored),
            ),
            _ => {}
        }
    }

    /// Raise an alert about a fence (counted for `fencectl status`).
    fn fence_alert(&mut self, intent: u64, alert: Alert) {
        *self.alerts_raised.entry(intent).or_default() += 1;
        self.alerter.raise(alert);
    }

    fn handle(&mut self, msg: ToDriver) -> Result<(), StoreError> {
        match msg {
            ToDriver::Connected {
                node,
                session,
                known_epoch,
                instance,
                boot,
                fingerprint,
                watchdog_ms,
                out,
            } => {
                info!(cluster = %self.name(), node.id = node, session, "agent connected");
                self.sessions.insert(node, (session, out));
                self.fingerprints.insert(node, fingerprint);
                let refused = self.step(Event::Connected {
                    node,
                    session,
                    known_epoch,
                    instance,
                    boot,
                })?;
                if !refused {
                    self.watchdog(node, session, watchdog_ms)?;
                    let t = self.plan.spec.timing;
                    let welcome = pb::Welcome {
                        heartbeat_interval_ms: t.heartbeat_interval.as_millis() as u64,
                        lease_ms: t.lease.as_millis() as u64,
                        peers: self
                            .plan
                            .addresses
                            .iter()
                            .filter(|(id, _)| **id != node)
                            .map(|(&id, a)| pb::Peer {
                                node_id: id,
                                probe_address: a.clone(),
                                name: self.plan.names.get(&id).cloned().unwrap_or_default(),
                            })
                            .collect(),
                        epoch: self.core.epoch(),
                        groups: self.group_definitions.clone(),
                        node_name: self.plan.names.get(&node).cloned().unwrap_or_default(),
                        ride_out_ms: t.ride_out.as_millis() as u64,
                    };
                    self.send_to(node, session, pb::arbiter_message::Body::Welcome(welcome));
                }
            }
            ToDriver::Disconnected { node, session } => {
                if self.sessions.get(&node).is_some_and(|(s, _)| *s == session) {
                    self.sessions.remove(&node);
                    info!(cluster = %self.name(), node.id = node, session, "agent disconnected");
                }
                self.step(Event::Disconnected { node, session })?;
            }
            ToDriver::Heartbeat { node, session, hb } => {
                if self.watchdogs.get(&node) != Some(&(session, hb.watchdog_timeout_ms)) {
                    self.watchdog(node, session, hb.watchdog_timeout_ms)?;
                }
                self.step(Event::Heartbeat {
                    node,
                    session,
                    seq: hb.seq,
                    sent_at_us: hb.sent_at_us,
                    reachable: hb.reachable,
                    heuristics: hb.heuristics,
                    known_epoch: hb.known_epoch,
                    applied_seq: hb.applied_seq,
                    acked_seq: hb.acked_seq,
                    ridden: Duration::from_millis(hb.ridden_ms.min(600_000)),
                    groups: hb
                        .groups
                        .iter()
                        .map(|g| (g.group.clone(), run_state(g.state())))
                        .collect(),
                })?;
            }
            ToDriver::FenceDone {
                node,
                intent,
                level,
                attempt,
                outcome,
            } => {
                self.level_ended(node);
                self.step(Event::FenceFinished {
                    node,
                    intent,
                    level,
                    attempt,
                    outcome,
                })?;
                self.start_waiting_power_on(node);
            }
            ToDriver::Clear { node, by } => {
                self.execute(Action::Persist(crate::core::Delta::Operator {
                    by,
                    action: "clear",
                    node: Some(node),
                    detail: "alive-after-off alert cleared".into(),
                }))?;
                self.step(Event::Clear { node })?;
            }
            ToDriver::Operator { by, control, reply } => {
                let checked = match control {
                    // The unfence's `on` may land after the operator swore
                    // the node is off: let it end first.
                    Control::Confirm { node } if self.powering_on.contains(&node) => Err(format!(
                        "an unfence is switching node {node} on right now; confirm once it has ended (see `fencectl watch`)"
                    )),
                    _ => self.core.check_control(self.now(), &control),
                };
                match checked {
                    Err(why) => {
                        warn!(cluster = %self.name(), operator = %by, control = control.name(), node.id = ?control.node(), reason = %why, "operator control refused");
                        let _ = reply.send(Err(why));
                    }
                    Ok(done) => {
                        warn!(cluster = %self.name(), operator = %by, control = control.name(), node.id = ?control.node(), "operator control");
                        let unfence = match control {
                            Control::Unfence { node } => Some(node),
                            _ => None,
                        };
                        self.step(Event::Operator { by, control })?;
                        match unfence {
                            Some(node) => self.unfence_replies.entry(node).or_default().push(reply),
                            None => {
                                let _ = reply.send(Ok(done));
                            }
                        }
                    }
                }
            }
            ToDriver::PowerOnDone { node, result } => {
                self.powering_on.remove(&node);
                for run in self.levels_waiting.remove(&node).unwrap_or_default() {
                    if self.core.awaits_level(run.node, run.intent, run.attempt) {
                        self.spawn_level(run);
                    } else {
                        // Its fence timed it out, moved on or ended while it
                        // waited: its `off` would hit a node the core no
                        // longer fences this way (maybe back and healthy).
                        info!(cluster = %self.name(), node.id = node, fence.intent = run.intent, fence.level = run.level,
                              "fence level dropped: its fence no longer waits for it");
                        self.level_ended(node);
                    }
                }
                self.start_waiting_power_on(node);
                let cluster = self.name().to_string();
                let epoch = self.core.epoch();
                let (kind, detail) = match &result {
                    Ok(devices) => {
                        warn!(cluster = %cluster, node.id = node, devices = ?devices, "node powered on (unfence); it rejoins once its agent runs");
                        ("unfenced", format!("switched on: {}", devices.join(", ")))
                    }
                    Err(e) => {
                        error!(cluster = %cluster, node.id = node, error = %e, "unfence failed");
                        ("unfence_failed", e.clone())
                    }
                };
                publish(
                    &self.events,
                    &cluster,
                    kind,
                    node,
                    epoch,
                    vec![],
                    detail.clone(),
                );
                for reply in self.unfence_replies.remove(&node).unwrap_or_default() {
                    let _ = reply.send(match &result {
                        Ok(_) => Ok(format!(
                            "node {node} powered on ({detail}); it rejoins once its agent runs"
                        )),
                        Err(e) => Err(format!("unfence of node {node} failed: {e}")),
                    });
                }
            }
            ToDriver::Move {
                group,
                node,
                by,
                reply,
            } => {
                let checked = self.core.check_move(&group, node);
                if checked.is_ok() {
                    info!(cluster = %self.name(), group = %group, node.id = node, operator = %by, "operator moves a resource group");
                    self.execute(Action::Persist(crate::core::Delta::Operator {
                        by,
                        action: "move",
                        node: Some(node),
                        detail: format!("group {group:?} to node {node}"),
                    }))?;
                    self.step(Event::Move { group, node })?;
                }
                let _ = reply.send(checked);
            }
            ToDriver::Snapshot(reply) => {
                let nodes = self
                    .plan
                    .spec
                    .nodes
                    .keys()
                    .filter_map(|&id| self.core.node(id).map(|v| (id, v.clone())))
                    .collect();
                let (m, all) = self.core.maintenance();
                let _ = reply.send(Snapshot {
                    status: self.core.status(),
                    maintenance: (m.clone(), all),
                    alerts_raised: self.alerts_raised.clone(),
                    nodes,
                    fingerprints: self.fingerprints.clone(),
                    now: self.now(),
                });
            }
        }
        Ok(())
    }

    fn send_to(&mut self, node: NodeId, session: u64, body: pb::arbiter_message::Body) {
        if let Some((s, tx)) = self.sessions.get(&node)
            && *s == session
            && tx
                .try_send(Ok(pb::ArbiterMessage { body: Some(body) }))
                .is_err()
        {
            warn!(cluster = %self.name(), node.id = node, "agent stream full or closed; message dropped");
        }
    }

    /// Step the core and execute its actions in order. Returns whether the
    /// event's session was refused.
    /// The nodes of a message's `gone` that the watchdog rule counted.
    fn gone_by_watchdog(&self, gone: &std::collections::BTreeSet<NodeId>) -> Vec<NodeId> {
        self.core
            .gone_by_watchdog()
            .intersection(gone)
            .copied()
            .collect()
    }

    /// Tell the core which watchdog the agent of `session` holds armed.
    fn watchdog(&mut self, node: NodeId, session: u64, ms: u32) -> Result<(), StoreError> {
        self.watchdogs.insert(node, (session, ms));
        self.step(Event::Watchdog {
            node,
            session,
            timeout: (ms > 0).then(|| Duration::from_millis(u64::from(ms))),
        })?;
        Ok(())
    }

    fn step(&mut self, event: Event) -> Result<bool, StoreError> {
        let now = self.now();
        let actions = self.core.step(now, event);
        let mut refused = false;
        for action in actions {
            refused |= matches!(action, Action::Refuse { .. });
            self.execute(action)?;
        }
        Ok(refused)
    }

    fn execute(&mut self, action: Action) -> Result<(), StoreError> {
        let cluster = self.plan.spec.name.clone();
        let epoch = self.core.epoch();
        match action {
            Action::Persist(delta) => {
                let ms = unix_us() / 1000;
                // Durable before anything after it runs (redb commit fsyncs).
                let began = Instant::now();
                if let Err(e) =
                    tokio::task::block_in_place(|| self.store.apply(&cluster, &delta, ms))
                {
                    error!(cluster = %cluster, error = %e, "cannot persist; stopping the arbiter");
                    return Err(e);
                }
                self.all_metrics.store_write(began.elapsed());
                if let crate::core::Delta::FenceIntent {
                    intent,
                    node,
                    reason,
                } = &delta
                {
                    info!(cluster = %cluster, node.id = node, fence.intent = intent, reason = %reason, "fence intent persisted");
                    self.intent_started.insert(*intent, Instant::now());
                    self.intent_reasons.insert(*intent, reason.clone());
                    publish(
                        &self.events,
                        &cluster,
                        "fence_intent",
                        *node,
                        epoch,
                        vec![],
                        format!("intent {intent}: {reason}"),
                    );
                }
                if let crate::core::Delta::Group { group, record } = &delta {
                    info!(cluster = %cluster, group = %group, holder = ?record.holder, possible = ?record.possible,
                          "resource group placement persisted");
                    publish(
                        &self.events,
                        &cluster,
                        "placement",
                        record.holder.unwrap_or(0),
                        epoch,
                        record.possible.iter().copied().collect(),
                        format!(
                            "{group}: placed on {}; may run on {:?}",
                            record
                                .holder
                                .map_or("no node".to_string(), |h| format!("node {h}")),
                            record.possible
                        ),
                    );
                }
                if let crate::core::Delta::FenceConfirmed {
                    intent,
                    node,
                    operator,
                    ..
                } = &delta
                {
                    info!(cluster = %cluster, node.id = node, fence.intent = intent, operator = ?operator, "fence confirmed and persisted");
                    let took = self.intent_started.remove(intent).map(|t| t.elapsed());
                    let (result, by) = match operator {
                        Some(who) => (FenceResult::ManualConfirmed, format!("an operator, {who}")),
                        None if self.core.gone_by_watchdog().contains(node) => (
                            FenceResult::Confirmed,
                            "the watchdog rule (its armed watchdog has reset it)".to_string(),
                        ),
                        None => (FenceResult::Confirmed, "its fence devices".to_string()),
                    };
                    self.metrics.fence_result(result, took);
                    self.alerts_raised.remove(intent);
                    self.intent_reasons.remove(intent);
                    let mut alert = Alert::new(
                        AlertKind::FenceConfirmed,
                        cluster.as_str(),
                        format!("node {node} confirmed off by {by}"),
                    )
                    .node(*node)
                    .epoch(epoch)
                    .detail("intent", *intent);
                    if let Some(who) = operator {
                        alert = alert.detail("confirmed_by", who.as_str());
                    }
                    self.alerter.raise(alert);
                    publish(
                        &self.events,
                        &cluster,
                        "fence_confirmed",
                        *node,
                        epoch,
                        vec![],
                        format!("intent {intent}"),
                    );
                }
            }
            Action::Ack {
                node,
                session,
                seq,
                sent_at_us,
                lease,
                epoch,
                backed,
                gone,
                reason,
                grants,
                leaving,
                undecided,
            } => {
                // With etcd: no lease from a leader whose own lease may
                // have lapsed (a standby may lead already), and no say
                // over a lease ridden out either.
                let (lease, grants, reason, undecided) = match &self.leader {
                    Some(clock) if lease.is_some() && !clock.holds() => {
                        (None, Vec::new(), "the arbiter's leadership lapsed", true)
                    }
                    _ => (lease, grants, reason, undecided),
                };
                if lease.is_some() {
                    self.metrics.lease_granted();
                }
                let ack = pb::Ack {
                    groups: grants
                        .into_iter()
                        .map(|g| pb::GroupGrant {
                            group: g.group,
                            start: g.start,
                        })
                        .collect(),
                    seq,
                    sent_at_us,
                    lease_ms: lease.map_or(0, |d| d.as_millis() as u64),
                    epoch,
                    backed: backed.into_iter().collect(),
                    gone_by_watchdog: self.gone_by_watchdog(&gone),
                    gone: gone.into_iter().collect(),
                    reason: reason.to_string(),
                    leaving: leaving.into_iter().collect(),
                    undecided,
                };
                self.send_to(node, session, pb::arbiter_message::Body::Ack(ack));
            }
            Action::Fence {
                node,
                intent,
                level,
                attempt,
            } => {
                // A level the plan does not have (or without devices) is
                // run as empty, and `run_level` fails it: never "off".
                let targets = self
                    .plan
                    .levels
                    .get(&node)
                    .and_then(|l| l.get(level))
                    .cloned()
                    .unwrap_or_default();
                info!(cluster = %cluster, node.id = node, fence.intent = intent, fence.level = level,
                      fence.devices = ?targets.iter().map(|t| format!("{}:{}", t.device, t.port)).collect::<Vec<_>>(), "fencing");
                // The first level run of an intent (also one resumed after a
                // restart) is the fence starting.
                if !self.alerts_raised.contains_key(&intent) {
                    // (No reason here: the intent was persisted before
                    // this process started, and is resumed.)
                    let reason = self
                        .intent_reasons
                        .get(&intent)
                        .cloned()
                        .unwrap_or_else(|| "resumed after the arbiter restarted".to_string());
                    self.fence_alert(
                        intent,
                        Alert::new(
                            AlertKind::FenceStarted,
                            cluster.as_str(),
                            format!("fencing node {node}: {reason}"),
                        )
                        .node(node)
                        .epoch(epoch)
                        .detail("intent", intent)
                        .detail("reason", reason),
                    );
                }
                publish(
                    &self.events,
                    &cluster,
                    "fence_level_started",
                    node,
                    epoch,
                    vec![],
                    format!("level {level}"),
                );
                // A fence of the node started after an unfence that still
                // waits supersedes it: the node stays off.
                if self.power_on_waiting.remove(&node) {
                    self.unfence_superseded(node, intent, epoch);
                }
                *self.levels_running.entry(node).or_default() += 1;
                let run = LevelRun {
                    node,
                    intent,
                    level,
                    attempt,
                    epoch,
                    targets,
                };
                if self.powering_on.contains(&node) {
                    // An unfence's `on` is on its way to the devices: this
                    // level's `off` must not be overtaken by it.
                    info!(cluster = %cluster, node.id = node, fence.intent = intent, fence.level = level,
                          "fence level waits for the unfence still running");
                    self.levels_waiting.entry(node).or_default().push(run);
                } else {
                    self.spawn_level(run);
                }
            }
            Action::Announce {
                to,
                epoch,
                survivors,
                gone,
            } => {
                info!(cluster = %cluster, lease.epoch = epoch, survivors = ?survivors, gone = ?gone, "survivors notified");
                let ann = pb::Announcement {
                    epoch,
                    survivors: survivors.iter().copied().collect(),
                    gone: gone.iter().copied().collect(),
                    gone_by_watchdog: self.gone_by_watchdog(&gone),
                };
                for n in &to {
                    if let Some(&(s, _)) = self.sessions.get(n) {
                        self.send_to(*n, s, pb::arbiter_message::Body::Announcement(ann.clone()));
                    }
                }
                publish(
                    &self.events,
                    &cluster,
                    "survivors_notified",
                    0,
                    epoch,
                    survivors.into_iter().collect(),
                    format!("gone: {:?}", gone),
                );
            }
            Action::PowerOn { node } => {
                if self.powering_on.contains(&node) || self.power_on_waiting.contains(&node) {
                    // One unfence at a time per node: this one is answered
                    // with the one under way.
                    info!(cluster = %cluster, node.id = node, "unfence joins the one already under way");
                } else if self.levels_running.contains_key(&node) {
                    // A fence level of this node still runs (the operator
                    // confirmed it off meanwhile): its `off` could land
                    // after our `on`. The `on` waits for it.
                    info!(cluster = %cluster, node.id = node, "unfence waits for the fence level still running");
                    self.power_on_waiting.insert(node);
                } else {
                    self.start_power_on(node);
                }
            }
            Action::Refuse {
                node,
                session,
                reason,
            } => {
                warn!(cluster = %cluster, node.id = node, session, reason = %reason, "agent refused");
                if let Some((s, tx)) = self.sessions.get(&node)
                    && *s == session
                {
                    let _ = tx.try_send(Err(Status::invalid_argument(reason)));
                    self.sessions.remove(&node);
                }
            }
            Action::Notice(n) => self.notice(n, epoch),
        }
        Ok(())
    }

    /// `on` through every device of the node's topology that has one.

    /// Runs one fence level on its devices; its outcome comes back as
    /// [`ToDriver::FenceDone`].
    fn spawn_level(&mut self, run: LevelRun) {
        let LevelRun {
            node,
            intent,
            level,
            attempt,
            epoch,
            targets,
        } = run;
        let name = self.name().to_string();
        let devices = self.devices.clone();
        let tx = self.self_tx.clone();
        let events = self.events.clone();
        let timeout = self.plan.spec.timing.fence_timeout;
        let token = self.token.clone();
        self.tracker.spawn(async move {
            let ev = events.clone();
            let progress = move |p: Progress| match p {
                Progress::OffSent { device, port } => {
                    publish(&ev, &name, "fence_off_sent", node, epoch, vec![], format!("{device}:{port}"))
                }
                Progress::ConfirmedOff { device, port } => {
                    publish(&ev, &name, "fence_status_off", node, epoch, vec![], format!("{device}:{port}"))
                }
            };
            // In a task of its own, so a panic in a device driver still
            // ends the level (as a failure) and never leaves it counted.
            let run = tokio::spawn(async move {
                tokio::select! {
                    biased;
                    // On shutdown the intent stays open; the next start resumes it.
                    _ = token.cancelled() => None,
                    o = run_level(&targets, &devices, timeout, Duration::from_millis(10), progress) => Some(o),
                }
            });
            let outcome = match run.await {
                Ok(Some(o)) => o,
                Ok(None) => return,
                Err(e) => LevelOutcome::Failed(format!("the fence level's task failed: {e}")),
            };
            let _ = tx.send(ToDriver::FenceDone { node, intent, level, attempt, outcome }).await;
        });
    }

    /// One fence level of `node` ended (or was dropped).
    fn level_ended(&mut self, node: NodeId) {
        if let Some(n) = self.levels_running.get_mut(&node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.levels_running.remove(&node);
            }
        }
    }

    /// Start the unfence that waited for the node's fence levels, once the
    /// last of them ended.
    fn start_waiting_power_on(&mut self, node: NodeId) {
        if !self.levels_running.contains_key(&node) && self.power_on_waiting.remove(&node) {
            self.start_power_on(node);
        }
    }

    /// An unfence still waiting for a fence level to end is dropped: a
    /// newer fence of the node (`intent`) started meanwhile, and its `off`
    /// must stand. The operators who asked are told.
    fn unfence_superseded(&mut self, node: NodeId, intent: u64, epoch: u64) {
        let cluster = self.name().to_string();
        let why = format!(
            "a new fence of node {node} (intent {intent}) started before the unfence could switch it on; the node stays off"
        );
        warn!(cluster = %cluster, node.id = node, fence.intent = intent, "unfence dropped: the node is fenced again");
        publish(
            &self.events,
            &cluster,
            "unfence_failed",
            node,
            epoch,
            vec![],
            why.clone(),
        );
        for reply in self.unfence_replies.remove(&node).unwrap_or_default() {
            let _ = reply.send(Err(format!("unfence of node {node} dropped: {why}")));
        }
    }

    fn start_power_on(&mut self, node: NodeId) {
        let levels = self.plan.levels.get(&node).cloned().unwrap_or_default();
        let devices = self.devices.clone();
        let tx = self.self_tx.clone();
        let timeout = self.plan.spec.timing.fence_timeout;
        let token = self.token.clone();
        info!(cluster = %self.name(), node.id = node, "powering on (unfence)");
        self.powering_on.insert(node);
        self.tracker.spawn(async move {
            // In a task of its own: a panic still ends the unfence (as a
            // failure), so the node's fence levels never wait for it forever.
            let run = tokio::spawn(async move {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => None,
                    r = power_on(&levels, &devices, timeout) => Some(r),
                }
            });
            let result = match run.await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => Err(format!("the unfence's task failed: {e}")),
            };
            let _ = tx.send(ToDriver::PowerOnDone { node, result }).await;
        });
    }

    fn notice(&mut self, n: Notice, epoch: u64) {
        self.alert_and_count(&n, epoch);
        let c = self.name();
        let (kind, node, nodes, detail) = match n {
            Notice::NodeAlive { node } => {
                info!(cluster = %c, node.id = node, "node alive");
                ("node_alive", node, vec![], String::new())
            }
            Notice::NodeLost { node } => {
                warn!(cluster = %c, node.id = node, "node lost: no heartbeat within lost_after");
                ("node_lost", node, vec![], String::new())
            }
            Notice::Decision { survivors, leaving } => {
                warn!(cluster = %c, survivors = ?survivors, leaving = ?leaving, "survivor decision");
                (
                    "decision",
                    0,
                    survivors.into_iter().collect(),
                    format!("leaving: {leaving:?}"),
                )
            }
            Notice::NoQuorum { best } => {
                error!(cluster = %c, best = ?best, "no quorate survivor set: no leases, no fencing");
                ("no_quorum", 0, best.into_iter().collect(), String::new())
            }
            Notice::StormHold { leaving } => {
                error!(cluster = %c, leaving = ?leaving, "fence storm: too many nodes at once; holding, fencing nobody");
                (
                    "alert",
                    0,
                    leaving.into_iter().collect(),
                    "fence storm limit: holding".into(),
                )
            }
            Notice::FenceFailed {
                node,
                intent,
                level,
                detail,
            } => {
                error!(cluster = %c, node.id = node, fence.intent = intent, fence.level = level, error = %detail, "fence level failed");
                (
                    "fence_failed",
                    node,
                    vec![],
                    format!("level {level}: {detail}"),
                )
            }
            Notice::FenceRoundFailed {
                node,
                intent,
                rounds,
                retry_in,
                detail,
            } => {
                error!(cluster = %c, node.id = node, fence.intent = intent, fence.rounds = rounds, retry_in = ?retry_in, error = %detail,
                       "fence failed at every level; retrying (the survivors wait: fix the device, or `fencectl confirm` a node known to be off)");
                (
                    "fence_round_failed",
                    node,
                    vec![],
                    format!("round {rounds} failed, next in {retry_in:?}: {detail}"),
                )
            }
            Notice::MaintenanceHold { nodes } => {
                warn!(cluster = %c, nodes = ?nodes, "maintenance: nodes outside the verdict are not fenced; the survivors wait (end maintenance, or `fencectl confirm` them)");
                (
                    "maintenance_hold",
                    0,
                    nodes.into_iter().collect(),
                    "would be fenced; in maintenance".into(),
                )
            }
            Notice::Operator {
                by,
                action,
                node,
                detail,
            } => {
                warn!(cluster = %c, operator = %by, control = action, node.id = ?node, detail = %detail, "operator control applied");
                (
                    "operator",
                    node.unwrap_or(0),
                    vec![],
                    format!("{action} by {by}: {detail}"),
                )
            }
            Notice::EpochAcknowledged { node, epoch } => {
                info!(cluster = %c, node.id = node, lease.epoch = epoch, "epoch acknowledged");
                ("epoch_acknowledged", node, vec![], String::new())
            }
            Notice::GraceOver => {
                info!(cluster = %c, "start-up grace over; granting leases");
                ("grace_over", 0, vec![], String::new())
            }
            Notice::ContactLost => {
                warn!(cluster = %c, "the arbiter hears no quorate set (its own network, or a stall): deciding and fencing nothing until it does");
                ("contact_lost", 0, vec![], String::new())
            }
            Notice::ContactRegained { pending } => {
                info!(cluster = %c, pending = ?pending, "the arbiter hears a quorate set again; nodes not back yet get lost_after + reconnect_allowance");
                (
                    "contact_regained",
                    0,
                    pending.into_iter().collect(),
                    String::new(),
                )
            }
            Notice::DeafGap { gap, excused } => {
                warn!(cluster = %c, gap = ?gap, excused = ?excused, "the arbiter heard no node for a while, then several again (its own network, likely): nodes silent since get lost_after + reconnect_allowance");
                (
                    "deaf_gap",
                    0,
                    excused.into_iter().collect(),
                    format!("{gap:?}"),
                )
            }
            Notice::Stalled { gap } => {
                warn!(cluster = %c, gap = ?gap, "the arbiter did not run for a while (stall or clock jump): no silence in that gap counts");
                ("stalled", 0, vec![], format!("{gap:?}"))
            }
            Notice::AliveAfterOff { node, detail } => {
                error!(cluster = %c, node.id = node, detail = %detail,
                       "CRITICAL: a fence device confirmed this node off but it is alive: wrong outlet or lying device; no lease until an operator clears it (fencectl clear)");
                ("alert", node, vec![], format!("alive after off: {detail}"))
            }
            Notice::AlertCleared { node } => {
                warn!(cluster = %c, node.id = node, "alive-after-off alert cleared by an operator");
                ("alert_cleared", node, vec![], String::new())
            }
            Notice::EpochBehind {
                node,
                reported,
                stored,
            } => {
                error!(cluster = %c, node.id = node, reported, stored,
                       "an agent holds a higher epoch than the store: the arbiter started without its history (store lost or replaced); persisting a higher epoch before granting anything");
                (
                    "alert",
                    node,
                    vec![],
                    format!("store behind: agent epoch {reported}, stored {stored}"),
                )
            }
            Notice::GroupState { group, node, state } => {
                info!(cluster = %c, group = %group, node.id = node, state = state.as_str(), "resource group state");
                (
                    "group",
                    node,
                    vec![],
                    format!("{group}: {}", state.as_str()),
                )
            }
            Notice::Watchdog { node, timeout } => {
                match timeout {
                    Some(t) => {
                        info!(cluster = %c, node.id = node, watchdog.timeout = ?t, "agent holds its watchdog armed")
                    }
                    None => warn!(cluster = %c, node.id = node, "agent holds no watchdog armed"),
                }
                (
                    "watchdog",
                    node,
                    vec![],
                    timeout.map_or_else(
                        || "none armed".to_string(),
                        |t| format!("armed, timeout {t:?}"),
                    ),
                )
            }
            Notice::WatchdogWait {
                node,
                intent,
                until,
            } => {
                let wait = until.saturating_sub(self.now());
                info!(cluster = %c, node.id = node, fence.intent = intent, wait = ?wait,
                      "fence level watchdog: the node counts as fenced once its lease, its watchdog's timeout and the margin have passed");
                (
                    "fence_level_started",
                    node,
                    vec![],
                    format!(
                        "watchdog: counted fenced in {wait:?} (lease + watchdog timeout + margin)"
                    ),
                )
            }
            Notice::WatchdogFenced { node, intent } => {
                warn!(cluster = %c, node.id = node, fence.intent = intent,
                      "node counted fenced by its watchdog: reset, or standing with every group stopped and no lease");
                (
                    "watchdog_fenced",
                    node,
                    vec![],
                    "by the watchdog rule: reset, or at rest with no lease".to_string(),
                )
            }
            Notice::ConfigChanged { detail } => {
                warn!(cluster = %c, detail = %detail, "configuration changed since the state was stored");
                ("config_changed", 0, vec![], detail)
            }
            Notice::OrphanIntent { node, intent } => {
                error!(cluster = %c, node.id = node, fence.intent = intent,
                       "an open fence intent names a node no longer configured: not resumed, kept open; settle it by hand");
                (
                    "alert",
                    node,
                    vec![],
                    format!("open intent {intent} for a node no longer configured"),
                )
            }
        };
        publish(&self.events, c, kind, node, epoch, nodes, detail);
    }
}
