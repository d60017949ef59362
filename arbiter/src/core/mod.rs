//! The arbiter's functional core: membership, the survivor decision, leases
//! and the fencing orchestration of one cluster, as a pure state machine.
//!
//! ```text
//!   Event (Tick, Connected, Heartbeat, FenceFinished, ...)   now: Duration
//!                         │
//!                         ▼
//!               ArbiterCore::step(now, event)
//!                         │
//!                         ▼
//!   Vec<Action> (Persist, Ack, Fence, Announce, Refuse, Notice), in order
//! ```
//!
//! **Architecture invariant:** nothing here does I/O, reads a clock, spawns
//! or draws random numbers; `now` is an input. The shell (`driver.rs`) and the
//! simulation (`tests/`) run the very same code.
//!
//! Safety rules this module enforces:
//! - a lease is granted only to a member of the backed survivor set that is
//!   also in the current verdict and not being fenced, and never during the
//!   start-up grace period (`Timing::lease_max` after construction);
//! - the backed set changes (and the epoch grows) only once every node
//!   leaving it is confirmed fenced; only then are survivors told;
//! - every fence starts with a persisted intent; intents recovered at start
//!   are resumed;
//! - more than `storm_limit` nodes leaving at once fences nobody;
//! - no verdict changes while a live node is suspect (silent for more than
//!   two heartbeat intervals but not yet lost): its report is stale.

pub mod action;
pub mod decide;
pub mod event;
pub mod fence_plan;
pub mod membership;
pub mod quorum;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use action::{Action, Delta, Notice};
pub use decide::{Candidate, TieBreaker, Verdict};
pub use event::{Event, LevelOutcome};
pub use fence_plan::{FenceJob, JobState, JobStep};
pub use membership::{Edges, NodeView};
pub use quorum::{Quorum, QuorumMode};
pub use spec::{ClusterSpec, NodeSpec, Persisted, Timing};

/// Node identifier, unique within a cluster.
pub type NodeId = u32;

/// A read-only snapshot for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    pub epoch: u64,
    pub backed: BTreeSet<NodeId>,
    pub verdict: Option<BTreeSet<NodeId>>,
    pub fencing: BTreeSet<NodeId>,
    pub gone: BTreeSet<NodeId>,
    pub in_grace: bool,
    pub total_votes: u64,
    pub arbiter_votes: u64,
}

/// The core of one cluster.
#[derive(Debug, Clone)]
pub struct ArbiterCore {
    spec: ClusterSpec,
    quorum: Quorum,
    /// No lease and no decision before this instant (start-up grace).
    ready_at: Duration,
    ready: bool,
    nodes: BTreeMap<NodeId, NodeView>,
    edges: Edges,
    epoch: u64,
    backed: BTreeSet<NodeId>,
    gone: BTreeSet<NodeId>,
    /// The last verdict; `None` before the grace ends or without quorum.
    verdict: Option<BTreeSet<NodeId>>,
    last_decision: Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    no_quorum_noticed: bool,
    storm_noticed: Option<BTreeSet<NodeId>>,
    jobs: BTreeMap<NodeId, FenceJob>,
    /// Nodes confirmed fenced since the backed set last changed.
    confirmed: BTreeSet<NodeId>,
    /// Intents recovered from the store, resumed at the first tick.
    to_resume: BTreeMap<NodeId, u64>,
    next_intent: u64,
    next_attempt: u64,
    /// The last decision's inputs and result: the search runs only when
    /// the live nodes, their settled edges or the incumbents change.
    decision_cache: Option<(DecisionInput, Verdict)>,
}

type DecisionInput = (Vec<Candidate>, BTreeSet<(NodeId, NodeId)>, BTreeSet<NodeId>);

impl ArbiterCore {
    /// A core starting at `now` from durable state. It grants no lease and
    /// decides nothing until every lease it may have granted in an earlier
    /// life has expired and every live agent had `lost_after` to reconnect.
    pub fn new(spec: ClusterSpec, persisted: Persisted, now: Duration) -> Self {
        let votes = spec.nodes.values().map(|n| u64::from(n.votes)).sum();
        let quorum = Quorum::new(spec.quorum_mode, votes);
        let ready_at = now + spec.timing.lease_max().max(spec.timing.lost_after);
        let nodes = spec
            .nodes
            .keys()
            .map(|&id| (id, NodeView::default()))
            .collect();
        let to_resume = persisted
            .open_intents
            .iter()
            .filter(|(n, _)| spec.nodes.contains_key(n))
            .map(|(&n, &i)| (n, i))
            .collect();
        ArbiterCore {
            quorum,
            ready_at,
            ready: false,
            nodes,
            edges: Edges::default(),
            epoch: persisted.epoch,
            backed: persisted.backed,
            gone: persisted.gone,
            verdict: None,
            last_decision: None,
            no_quorum_noticed: false,
            storm_noticed: None,
            jobs: BTreeMap::new(),
            confirmed: BTreeSet::new(),
            to_resume,
            next_intent: persisted.next_intent.max(1),
            next_attempt: 1,
            decision_cache: None,
            spec,
        }
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.get(&id)
    }

    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            epoch: self.epoch,
            backed: self.backed.clone(),
            verdict: self.verdict.clone(),
            fencing: self.jobs.keys().copied().collect(),
            gone: self.gone.clone(),
            in_grace: !self.ready,
            total_votes: self.quorum.total(),
            arbiter_votes: self.quorum.arbiter_votes,
        }
    }

    /// Feed one event; returns the actions to execute in order.
    pub fn step(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Tick => self.tick(now, &mut out),
            Event::Connected {
                node,
                session,
                known_epoch,
            } => match self.nodes.get_mut(&node) {
                None => out.push(Action::Refuse {
                    node,
                    session,
                    reason: format!(
                        "node {node} is not a member of cluster {:?}",
                        self.spec.name
                    ),
                }),
                Some(v) => {
                    v.session = Some(session);
                    v.connected = true;
                    v.last_seq = 0;
                    v.known_epoch = v.known_epoch.max(known_epoch);
                }
            },
            Event::Disconnected { node, session } => {
                if let Some(v) = self.nodes.get_mut(&node)
                    && v.session == Some(session)
                {
                    v.connected = false;
                }
            }
            Event::Heartbeat {
                node,
                session,
                seq,
                sent_at_us,
                reachable,
                heuristics,
                known_epoch,
            } => self.heartbeat(
                now,
                node,
                session,
                seq,
                sent_at_us,
                reachable,
                heuristics,
                known_epoch,
                &mut out,
            ),
            Event::FenceFinished {
                node,
                intent,
                level: _,
                attempt,
                outcome,
            } => self.fence_finished(now, node, intent, attempt, outcome, &mut out),
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn heartbeat(
        &mut self,
        now: Duration,
        node: NodeId,
        session: u64,
        seq: u64,
        sent_at_us: u64,
        reachable: Vec<NodeId>,
        heuristics: u32,
        known_epoch: u64,
        out: &mut Vec<Action>,
    ) {
        if !self.nodes.contains_key(&node) {
            out.push(Action::Refuse {
                node,
                session,
                reason: format!(
                    "node {node} is not a member of cluster {:?}",
                    self.spec.name
                ),
            });
            return;
        }
        if let Some(bad) = reachable.iter().find(|r| !self.nodes.contains_key(r)) {
            out.push(Action::Refuse {
                node,
                session,
                reason: format!(
                    "heartbeat from node {node} reports node {bad}, which cluster {:?} does not have",
                    self.spec.name
                ),
            });
            return;
        }
        let view = self.nodes.get_mut(&node).expect("checked above");
        if view.session != Some(session) || seq <= view.last_seq {
            // Stale session, replayed or reordered heartbeat: ignored.
            return;
        }
        view.last_seq = seq;
        view.last_heard = Some(now);
        view.reach = reachable.into_iter().filter(|&r| r != node).collect();
        view.heuristics = heuristics;
        if known_epoch > view.known_epoch {
            view.known_epoch = known_epoch;
            if known_epoch == self.epoch {
                out.push(Action::Notice(Notice::EpochAcknowledged {
                    node,
                    epoch: known_epoch,
                }));
            }
        }
        let reason = if !self.ready {
            "arbiter start-up grace period"
        } else if self.jobs.contains_key(&node) {
            "node is being fenced"
        } else if self.confirmed.contains(&node) {
            "node was fenced; it rejoins at the next epoch"
        } else if self.verdict.is_none() {
            "no quorate survivor set"
        } else if !self.backed.contains(&node) {
            "not in the backed survivor set"
        } else if !self.verdict.as_ref().is_some_and(|v| v.contains(&node)) {
            "outside the current verdict"
        } else {
            ""
        };
        let lease = reason.is_empty().then_some(self.spec.timing.lease);
        let view = self.nodes.get_mut(&node).expect("checked above");
        if lease.is_some() {
            view.lease_until = Some(now + self.spec.timing.lease_max());
        }
        out.push(Action::Ack {
            node,
            session,
            seq,
            sent_at_us,
            lease,
            epoch: self.epoch,
            survivors: self.backed.clone(),
            gone: self.gone.clone(),
            reason,
        });
    }

    fn fence_finished(
        &mut self,
        now: Duration,
        node: NodeId,
        intent: u64,
        attempt: u64,
        outcome: LevelOutcome,
        out: &mut Vec<Action>,
    ) {
        let Some(job) = self.jobs.get_mut(&node) else {
            return;
        };
        if job.intent != intent || !job.is_current(attempt) {
            return; // a late result of a level already given up on
        }
        match outcome {
            LevelOutcome::ConfirmedOff => {
                self.jobs.remove(&node);
                out.push(Action::Persist(Delta::FenceConfirmed { intent, node }));
                self.confirmed.insert(node);
                if let Some(v) = self.nodes.get_mut(&node) {
                    // The node is off: forget its session; it rejoins with
                    // a new one once it is back.
                    v.session = None;
                    v.connected = false;
                    v.last_heard = None;
                    v.lease_until = None;
                    v.reach.clear();
                }
                // Complete the transition now rather than at the next tick.
                self.evaluate(now, out);
            }
            LevelOutcome::Failed(detail) => {
                let level = match job.state {
                    JobState::Running { level, .. } => level,
                    JobState::Backoff { .. } => 0,
                };
                out.push(Action::Notice(Notice::FenceFailed {
                    node,
                    intent,
                    level,
                    detail: detail.clone(),
                }));
                self.next_attempt += 1;
                let step = job.level_failed(now, self.next_attempt, &self.spec.timing);
                self.job_step(node, intent, step, detail, out);
            }
        }
    }

    fn job_step(
        &mut self,
        node: NodeId,
        intent: u64,
        step: JobStep,
        detail: String,
        out: &mut Vec<Action>,
    ) {
        match step {
            JobStep::RunLevel { level, attempt } => out.push(Action::Fence {
                node,
                intent,
                level,
                attempt,
            }),
            JobStep::RoundFailed { .. } => out.push(Action::Persist(Delta::FenceAttemptFailed {
                intent,
                node,
                detail: format!("every fence level failed; last: {detail}"),
            })),
            JobStep::Wait => {}
        }
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        // Resume intents recovered from the store: fencing is always safe.
        for (node, intent) in std::mem::take(&mut self.to_resume) {
            let levels = self.spec.nodes[&node].fence_levels;
            self.next_attempt += 1;
            let job = FenceJob::start(
                node,
                intent,
                levels,
                self.next_attempt,
                now,
                &self.spec.timing,
            );
            self.jobs.insert(node, job);
            out.push(Action::Fence {
                node,
                intent,
                level: 0,
                attempt: self.next_attempt,
            });
        }
        // Fence timers.
        let timing = self.spec.timing;
        let nodes: Vec<NodeId> = self.jobs.keys().copied().collect();
        for node in nodes {
            let attempt = self.next_attempt + 1;
            let job = self.jobs.get_mut(&node).expect("listed above");
            if let Some(step) = job.on_tick(now, attempt, &timing) {
                self.next_attempt = attempt;
                let intent = job.intent;
                if matches!(step, JobStep::RoundFailed { .. }) {
                    out.push(Action::Notice(Notice::FenceFailed {
                        node,
                        intent,
                        level: job.levels - 1,
                        detail: "no result within the fence timeout".into(),
                    }));
                }
                self.job_step(node, intent, step, "fence level timed out".into(), out);
            }
        }
        // Liveness notices.
        let lost_after = self.spec.timing.lost_after;
        for (&id, v) in self.nodes.iter_mut() {
            let alive = v.is_alive(now, lost_after);
            if alive != v.alive {
                v.alive = alive;
                out.push(Action::Notice(if alive {
                    Notice::NodeAlive { node: id }
                } else {
                    Notice::NodeLost { node: id }
                }));
            }
        }
        if !self.ready {
            if now < self.ready_at {
                return;
            }
            self.ready = true;
            out.push(Action::Notice(Notice::GraceOver));
        }
        self.evaluate(now, out);
    }

    /// Recompute the verdict and move the backed set toward it.
    fn evaluate(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.ready {
            return;
        }
        let t = self.spec.timing;
        let alive: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, v)| v.is_alive(now, t.lost_after))
            .map(|(&id, _)| id)
            .collect();
        // Pending: while a live node is silent longer than two heartbeat
        // intervals but not yet lost, its last report is stale; deciding
        // on it could let a stale clique outvote fresh nodes. Keep the last
        // verdict (leases go on only under the unchanged backed set).
        let fresh_within = t.heartbeat_interval * 2;
        let suspect = alive.iter().any(|id| {
            self.nodes[id]
                .last_heard
                .is_some_and(|h| now.saturating_sub(h) > fresh_within)
        });
        if suspect {
            return;
        }
        // A node fenced in this transition is no incumbent any more, even
        // though the backed set still lists it until the epoch changes.
        let incumbents: BTreeSet<NodeId> =
            self.backed.difference(&self.confirmed).copied().collect();
        let edges = self
            .edges
            .update(now, t.settle, &alive, &incumbents, &self.nodes);
        let candidates: Vec<Candidate> = alive
            .iter()
            .map(|&id| {
                let s = &self.spec.nodes[&id];
                Candidate {
                    id,
                    votes: s.votes,
                    priority: s.priority,
                    heuristics: self.nodes[&id].heuristics,
                }
            })
            .collect();
        let input = (candidates, edges, incumbents);
        let decided = match &self.decision_cache {
            Some((i, v)) if *i == input => v.clone(),
            _ => {
                let v = decide::decide_with_incumbents(
                    &input.0,
                    &input.1,
                    &input.2,
                    &self.quorum,
                    self.spec.tie_breaker,
                );
                self.decision_cache = Some((input, v.clone()));
                v
            }
        };
        let verdict = match decided {
            Verdict::Survivors(s) => {
                self.no_quorum_noticed = false;
                s
            }
            Verdict::NoQuorum { best } => {
                if !self.no_quorum_noticed {
                    self.no_quorum_noticed = true;
                    out.push(Action::Notice(Notice::NoQuorum { best }));
                }
                self.verdict = None;
                return;
            }
        };
        self.verdict = Some(verdict.clone());
        let leaving: BTreeSet<NodeId> = self.backed.difference(&verdict).copied().collect();
        let decision = (verdict.clone(), leaving.clone());
        if self.last_decision.as_ref() != Some(&decision)
            && (verdict != self.backed || !leaving.is_empty())
        {
            out.push(Action::Notice(Notice::Decision {
                survivors: verdict.clone(),
                leaving: leaving.clone(),
            }));
        }
        self.last_decision = Some(decision);

        let to_start: BTreeSet<NodeId> = leaving
            .iter()
            .filter(|n| !self.jobs.contains_key(n) && !self.confirmed.contains(n))
            .copied()
            .collect();
        if !to_start.is_empty() {
            let unconfirmed = leaving.difference(&self.confirmed).count();
            if unconfirmed > self.spec.storm_limit {
                if self.storm_noticed.as_ref() != Some(&leaving) {
                    self.storm_noticed = Some(leaving.clone());
                    out.push(Action::Notice(Notice::StormHold { leaving }));
                }
                return;
            }
            for node in to_start {
                let intent = self.next_intent;
                self.next_intent += 1;
                self.next_attempt += 1;
                out.push(Action::Persist(Delta::FenceIntent {
                    intent,
                    node,
                    reason: format!("left the survivor set; verdict {:?}", verdict),
                }));
                let levels = self.spec.nodes[&node].fence_levels;
                self.jobs.insert(
                    node,
                    FenceJob::start(node, intent, levels, self.next_attempt, now, &t),
                );
                out.push(Action::Fence {
                    node,
                    intent,
                    level: 0,
                    attempt: self.next_attempt,
                });
            }
        }
        let all_confirmed = leaving.iter().all(|n| self.confirmed.contains(n));
        if self.jobs.is_empty()
            && all_confirmed
            && (verdict != self.backed || !self.confirmed.is_empty())
        {
            self.epoch += 1;
            let newly_gone: BTreeSet<NodeId> =
                self.confirmed.difference(&verdict).copied().collect();
            let mut gone: BTreeSet<NodeId> = self.gone.union(&newly_gone).copied().collect();
            gone.retain(|n| !verdict.contains(n));
            self.gone = gone;
            self.backed = verdict.clone();
            self.confirmed.clear();
            self.storm_noticed = None;
            out.push(Action::Persist(Delta::Backed {
                epoch: self.epoch,
                survivors: self.backed.clone(),
                gone: self.gone.clone(),
            }));
            out.push(Action::Announce {
                to: self.backed.clone(),
                epoch: self.epoch,
                survivors: self.backed.clone(),
                gone: newly_gone,
            });
        }
    }
}

#[cfg(test)]
mod tests;
