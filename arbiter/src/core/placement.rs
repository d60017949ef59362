//! Where each resource group runs: a pure part of the core.
//!
//! The arbiter places every group on one node of the survivor set (its
//! *holder*) and tells that node, in each acknowledgement, whether it may
//! start the group. The rule that keeps a group from running twice is kept
//! here, in one place:
//!
//! - `possible` (durable) is the set of nodes that may be running the
//!   group. A node enters it the moment the arbiter lets it start (persisted
//!   before the acknowledgement that says so leaves), and leaves it only
//!   when it is confirmed off (and every lease it held has ended), or when
//!   it *acknowledged the stop*: a report, on the session the withdrawal
//!   was sent on, that it has applied an acknowledgement no longer placing
//!   the group on it and that the group is stopped there.
//! - A holder may start the group only while it holds a lease and
//!   `possible` holds no other node.
//!
//! A group the store has no record of runs nowhere if the store has a
//! history (a group added to the configuration: no agent was ever told to
//! start it). With a store that has none (the very first start, or a store
//! lost), it may be running on any of its allowed nodes: every one of them
//! must acknowledge the stop, or be confirmed off, before it starts
//! anywhere — so a node down at the very first start holds its groups back
//! until it reports.
//!
//! Acknowledgements on one session arrive in order and the agent applies
//! them in order, so "applied an acknowledgement sent after the withdrawal"
//! is a sequence number compare: the acknowledgement for heartbeat `seq`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::NodeId;
use super::action::Delta;

/// One group as the core sees it (its resources are the agents' business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    /// Allowed nodes, most preferred first.
    pub nodes: Vec<NodeId>,
    /// Move back to a more preferred node when it becomes available.
    pub failback: bool,
}

/// What the store keeps of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    /// The node the group is placed on.
    pub holder: Option<NodeId>,
    /// The nodes that may be running it.
    pub possible: BTreeSet<NodeId>,
    /// Where an operator moved it last (preferred over the configured
    /// order while it can run there).
    #[serde(default)]
    pub moved_to: Option<NodeId>,
}

/// A group's state on one node, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunState {
    Stopped,
    Starting,
    Running,
    Stopping,
    /// Its monitor failed more often than the restart limit allows; it
    /// was stopped. The group must move.
    Failed,
    /// A stop failed or timed out: the node cannot be trusted until it is
    /// fenced.
    StopFailed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Stopped => "stopped",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Failed => "failed",
            RunState::StopFailed => "stop-failed",
        }
    }
}

/// The placement of one group told to its holder with an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    /// The holder may start it (it holds a lease and no other node may be
    /// running the group). `false`: placed here, waiting for the previous
    /// holder to stop or be fenced.
    pub start: bool,
}

/// One group, for `fencectl resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub name: String,
    pub holder: Option<NodeId>,
    /// `unplaced`, `waiting` (for a previous holder), `starting`, `running`,
    /// `stopping`, `failed`, `stopped`.
    pub state: &'static str,
    /// Since when (core clock) it has had this holder.
    pub since: Duration,
    /// Nodes other than the holder that may still be running it.
    pub waiting_for: BTreeSet<NodeId>,
}

/// The placement of every group of one cluster.
#[derive(Debug, Clone)]
pub struct Placement {
    specs: Vec<GroupSpec>,
    records: BTreeMap<String, GroupRecord>,
    /// (group, node) -> (session, seq) of the first acknowledgement on that
    /// session that no longer let the node run the group.
    withdrawn: BTreeMap<(String, NodeId), (u64, u64)>,
    reported: BTreeMap<(String, NodeId), RunState>,
    /// A group failed on a node: not placed there again until an operator
    /// moves it there or the node's agent is a new one.
    banned: BTreeSet<(String, NodeId)>,
    /// Nodes that reported a failed stop.
    untrusted: BTreeSet<NodeId>,
    since: BTreeMap<String, Duration>,
    /// Checker tests only: start without waiting for the previous holder.
    ignore_possible: bool,
}

impl Placement {
    /// The placement recovered from the store. A group without a record
    /// may be running on any of its allowed nodes when the store has no
    /// history (`fresh`), and on none otherwise.
    pub fn new(
        specs: Vec<GroupSpec>,
        stored: &BTreeMap<String, GroupRecord>,
        fresh: bool,
        now: Duration,
    ) -> Self {
        let records = specs
            .iter()
            .map(|g| {
                let r = stored.get(&g.name).cloned().unwrap_or_else(|| GroupRecord {
                    holder: None,
                    possible: if fresh {
                        g.nodes.iter().copied().collect()
                    } else {
                        BTreeSet::new()
                    },
                    moved_to: None,
                });
                (g.name.clone(), r)
            })
            .collect();
        let since = specs.iter().map(|g| (g.name.clone(), now)).collect();
        Placement {
            specs,
            records,
            withdrawn: BTreeMap::new(),
            reported: BTreeMap::new(),
            banned: BTreeSet::new(),
            untrusted: BTreeSet::new(),
            since,
            ignore_possible: false,
        }
    }

    #[doc(hidden)]
    pub fn set_ignore_possible(&mut self) {
        self.ignore_possible = true;
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn record(&self, group: &str) -> Option<&GroupRecord> {
        self.records.get(group)
    }

    /// A group `node` may be running (it is in the group's `possible`).
    pub fn may_run(&self, node: NodeId) -> Option<&str> {
        self.records
            .iter()
            .find(|(_, r)| r.possible.contains(&node))
            .map(|(g, _)| g.as_str())
    }

    /// A node that reported a failed stop: it must be fenced.
    pub fn untrusted(&self, node: NodeId) -> bool {
        self.untrusted.contains(&node)
    }

    /// Choose each group's holder among `candidates` (members of the
    /// survivor set that may hold a lease), and drop from `possible` every
    /// node `cleared` says is confirmed off with its leases over. Returns
    /// the records to persist.
    pub fn place(
        &mut self,
        now: Duration,
        candidates: &BTreeSet<NodeId>,
        cleared: impl Fn(NodeId) -> bool,
    ) -> Vec<Delta> {
        let mut out = Vec::new();
        for g in &self.specs {
            let rec = self.records.get_mut(&g.name).expect("one record per spec");
            let before = rec.clone();
            rec.possible.retain(|&n| !cleared(n));
            let allowed: Vec<NodeId> = rec
                .moved_to
                .iter()
                .chain(g.nodes.iter())
                .copied()
                .filter(|n| g.nodes.contains(n))
                .filter(|n| candidates.contains(n) && !self.untrusted.contains(n))
                .filter(|n| !self.banned.contains(&(g.name.clone(), *n)))
                .collect();
            let keep = rec.holder.is_some_and(|h| {
                allowed.contains(&h) && (!g.failback || allowed.first() == Some(&h))
            });
            if !keep {
                if let Some(&best) = allowed.first() {
                    rec.holder = Some(best);
                } else if rec.holder.is_some_and(|h| !candidates.contains(&h)) {
                    rec.holder = None;
                }
            }
            if rec.holder != before.holder {
                self.since.insert(g.name.clone(), now);
            }
            if *rec != before {
                out.push(Delta::Group {
                    group: g.name.clone(),
                    record: rec.clone(),
                });
            }
        }
        out
    }

    /// The groups placed on `node`, for the acknowledgement of its heartbeat
    /// `seq` on `session`; `leased` says whether that acknowledgement grants
    /// a lease. Returns the grants and the records to persist **before**
    /// the acknowledgement is sent.
    pub fn grants(
        &mut self,
        node: NodeId,
        session: u64,
        seq: u64,
        leased: bool,
    ) -> (Vec<Grant>, Vec<Delta>) {
        let mut grants = Vec::new();
        let mut out = Vec::new();
        for g in &self.specs {
            let rec = self.records.get_mut(&g.name).expect("one record per spec");
            if rec.holder == Some(node) && !self.untrusted.contains(&node) {
                // Placed here again: an earlier withdrawal is void (a
                // report acknowledging it could predate this placement).
                self.withdrawn.remove(&(g.name.clone(), node));
                let alone = self.ignore_possible || rec.possible.iter().all(|&p| p == node);
                let start = leased && alone;
                if start && rec.possible.insert(node) {
                    out.push(Delta::Group {
                        group: g.name.clone(),
                        record: rec.clone(),
                    });
                }
                grants.push(Grant {
                    group: g.name.clone(),
                    start,
                });
            } else if rec.possible.contains(&node) {
                let w = self
                    .withdrawn
                    .entry((g.name.clone(), node))
                    .or_insert((session, seq));
                if w.0 != session {
                    *w = (session, seq);
                }
            }
        }
        (grants, out)
    }

    /// A report from `node` on `session`: it has applied the
    /// acknowledgement of heartbeat `applied_seq`, and its groups are in
    /// these states (a group not listed is stopped). `may_acknowledge`:
    /// no earlier process of this node may still hold a lease (a stop this
    /// process reports is not that one's). Returns the records to persist
    /// and the groups whose state on `node` changed.
    pub fn report(
        &mut self,
        node: NodeId,
        session: u64,
        applied_seq: u64,
        states: &[(String, RunState)],
        may_acknowledge: bool,
    ) -> (Vec<Delta>, Vec<(String, RunState)>) {
        let mut out = Vec::new();
        let before: BTreeMap<String, RunState> = self
            .reported
            .iter()
            .filter(|((_, n), _)| *n == node)
            .map(|((g, _), s)| (g.clone(), *s))
            .collect();
        self.reported.retain(|(_, n), _| *n != node);
        for (group, state) in states {
            let Some(rec) = self.records.get_mut(group) else {
                continue;
            };
            self.reported.insert((group.clone(), node), *state);
            // A node saying it runs (or may run) a group the store does
            // not expect there — a store behind the agents, a group new to
            // the store but started by hand, a clean-up under way — may run
            // it: the agents correct the store, as their epochs do.
            if matches!(
                state,
                RunState::Starting | RunState::Running | RunState::Stopping | RunState::StopFailed
            ) && rec.possible.insert(node)
            {
                out.push(Delta::Group {
                    group: group.clone(),
                    record: rec.clone(),
                });
            }
            match state {
                RunState::StopFailed => {
                    self.untrusted.insert(node);
                }
                RunState::Failed => {
                    self.banned.insert((group.clone(), node));
                }
                _ => {}
            }
        }
        for g in &self.specs {
            let rec = self.records.get_mut(&g.name).expect("one record per spec");
            if rec.holder == Some(node) || !rec.possible.contains(&node) {
                continue;
            }
            let state = self
                .reported
                .get(&(g.name.clone(), node))
                .copied()
                .unwrap_or(RunState::Stopped);
            let told = self
                .withdrawn
                .get(&(g.name.clone(), node))
                .is_some_and(|&(s, q)| s == session && applied_seq >= q);
            if told && may_acknowledge && matches!(state, RunState::Stopped | RunState::Failed) {
                rec.possible.remove(&node);
                self.withdrawn.remove(&(g.name.clone(), node));
                out.push(Delta::Group {
                    group: g.name.clone(),
                    record: rec.clone(),
                });
            }
        }
        let changed = self
            .specs
            .iter()
            .filter_map(|g| {
                let now = self.reported.get(&(g.name.clone(), node)).copied();
                let was = before.get(&g.name).copied();
                let s = now.unwrap_or(RunState::Stopped);
                (s != was.unwrap_or(RunState::Stopped)).then(|| (g.name.clone(), s))
            })
            .collect();
        (out, changed)
    }

    /// A new agent instance on `node` (a restart or a reboot): what the old
    /// one reported and failed no longer counts against placing groups
    /// there. A failed stop neither, when the new instance runs on the same
    /// machine (`same_boot`): it stops every group first, and the node
    /// stays in `possible` until it reports that stop done (or is fenced).
    /// Another boot cannot undo a failed stop it may not see (a second
    /// machine speaking as the node): only the fence does.
    pub fn new_instance(&mut self, node: NodeId, same_boot: bool) {
        self.reported.retain(|(_, n), _| *n != node);
        self.banned.retain(|(_, n)| *n != node);
        if same_boot {
            self.untrusted.remove(&node);
        }
    }

    /// Nodes the configuration no longer has that were recorded off (their
    /// fence confirmed, not back since) run no group: they leave
    /// `possible`. Another removed node may still run one (an agent that
    /// crashed leaves its resources running, and a refused agent learns no
    /// group to clean up): it stays, and is returned so that the operator
    /// hears of it. Returns the records to persist, the nodes dropped and
    /// the nodes kept.
    pub fn forget_unconfigured(
        &mut self,
        configured: &BTreeSet<NodeId>,
        off: &BTreeSet<NodeId>,
    ) -> (Vec<Delta>, BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let mut out = Vec::new();
        let mut dropped = BTreeSet::new();
        let mut kept = BTreeSet::new();
        for (name, rec) in self.records.iter_mut() {
            let before = rec.possible.len();
            rec.possible.retain(|n| {
                if configured.contains(n) {
                    return true;
                }
                if off.contains(n) {
                    dropped.insert(*n);
                    false
                } else {
                    kept.insert(*n);
                    true
                }
            });
            if rec.possible.len() != before {
                out.push(Delta::Group {
                    group: name.clone(),
                    record: rec.clone(),
                });
            }
        }
        (out, dropped, kept)
    }

    /// `node` is confirmed off: its reports and its failed stop are over.
    pub fn confirmed_off(&mut self, node: NodeId) {
        self.reported.retain(|(_, n), _| *n != node);
        self.withdrawn.retain(|(_, n), _| *n != node);
        self.banned.retain(|(_, n)| *n != node);
        self.untrusted.remove(&node);
    }

    /// Check an operator's move of `group` to `node` (a member that may
    /// hold a lease, among the group's allowed nodes).
    pub fn check_move(
        &self,
        group: &str,
        node: NodeId,
        candidates: &BTreeSet<NodeId>,
    ) -> Result<(), String> {
        let Some(g) = self.specs.iter().find(|g| g.name == group) else {
            let known: Vec<&str> = self.specs.iter().map(|g| g.name.as_str()).collect();
            return Err(format!("no group {group:?} (groups: {})", known.join(", ")));
        };
        if !g.nodes.contains(&node) {
            return Err(format!(
                "group {group:?} may not run on node {node}: it is not in the group's nodes"
            ));
        }
        if !candidates.contains(&node) || self.untrusted.contains(&node) {
            return Err(format!(
                "node {node} is not a member of the survivor set that may hold a lease now"
            ));
        }
        Ok(())
    }

    /// An operator moves `group` to `node` (checked by
    /// [`Placement::check_move`]). The old holder stops and acknowledges,
    /// then `node` starts.
    pub fn move_group(&mut self, now: Duration, group: &str, node: NodeId) -> Vec<Delta> {
        self.banned.remove(&(group.to_string(), node));
        let Some(rec) = self.records.get_mut(group) else {
            return Vec::new();
        };
        let before = rec.clone();
        rec.moved_to = Some(node);
        rec.holder = Some(node);
        if before.holder != rec.holder {
            self.since.insert(group.to_string(), now);
        }
        if *rec == before {
            return Vec::new();
        }
        vec![Delta::Group {
            group: group.to_string(),
            record: rec.clone(),
        }]
    }

    pub fn status(&self) -> Vec<GroupStatus> {
        self.specs
            .iter()
            .map(|g| {
                let rec = &self.records[&g.name];
                let waiting_for: BTreeSet<NodeId> = rec
                    .possible
                    .iter()
                    .copied()
                    .filter(|&n| Some(n) != rec.holder)
                    .collect();
                let here = rec
                    .holder
                    .and_then(|h| self.reported.get(&(g.name.clone(), h)).copied());
                let state = match (rec.holder, here) {
                    (None, _) => "unplaced",
                    (Some(_), _) if !waiting_for.is_empty() => "waiting",
                    (Some(_), Some(s)) => s.as_str(),
                    (Some(_), None) => "stopped",
                };
                GroupStatus {
                    name: g.name.clone(),
                    holder: rec.holder,
                    state,
                    since: self.since[&g.name],
                    waiting_for,
                }
            })
            .collect()
    }
}
