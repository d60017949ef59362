//! The operator's controls (`fencectl fence`, `confirm`, `unfence`,
//! `maintenance`): checked first ([`ArbiterCore::check_control`], whose
//! error the operator reads), then applied by `Event::Operator`. Each is
//! written to the history (`Delta::Operator`) before its effects.
//!
//! The rules, in DESIGN.md's terms:
//!
//! - **fence**: an operator's word is the evidence, so the availability
//!   rule does not apply; the safety rules do. The node stops being a
//!   candidate at once (no lease from this step on), its intent is
//!   persisted before any device is touched, and the survivors take over
//!   only after the fence is confirmed and every lease it held has ended,
//!   as for any fence. Refused when it would leave a quorate cluster
//!   without quorum (every node would lose its lease).
//! - **confirm**: the operator swears the node is off. Refused while the
//!   node speaks (a node heard within `lost_after` is not off). Any running
//!   fence of it ends (a late result is ignored); the agent last heard on
//!   it is recorded off like after a device's confirmation, so if it
//!   speaks again that is the alive-after-off alert. The commit still
//!   waits for every lease the node held to end. A wrong confirmation (the
//!   node was running) is the one way an operator can make two holders:
//!   `fencectl` says so before it asks.
//! - **unfence**: a node off or gone is powered on through the devices of
//!   its topology that can; it rejoins as a new boot, as after any reboot.
//! - **maintenance**: no automatic fence of the node (or of any node; the
//!   cluster's and each node's are independent): a member leaving is
//!   reported (`MaintenanceHold`), not shot, and the transition waits;
//!   leases follow the verdict as always. Such a member is no incumbent
//!   any more and comes back into the verdict only where it fits with all
//!   of it: like a node being fenced, it can never flip the verdict onto
//!   its side (review 20). A fence already running goes on.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    Action, ArbiterCore, ConfirmedBy, Control, Delta, FenceJob, Mutant, NodeId, Notice, Phase,
};

impl ArbiterCore {
    /// Is automatic fencing of `node` off (its maintenance, or the whole
    /// cluster's)?
    pub fn in_maintenance(&self, node: NodeId) -> bool {
        self.maintenance_all || self.maintenance.contains(&node)
    }

    /// The proving window after a held member's maintenance ended (the
    /// agents' probe window, then `settle`): held until then.
    pub(super) fn proving_window(&self) -> Duration {
        let t = self.spec.timing;
        t.heartbeat_interval * 3 + t.settle
    }

    /// Whether maintenance keeps `node` from being fenced now: it is in
    /// maintenance, or it is held and its proving window from its
    /// maintenance's end still runs.
    pub(super) fn still_held(&self, node: NodeId, now: Duration) -> bool {
        self.in_maintenance(node)
            || (self.maintenance_held.contains(&node)
                && self.mutant != Some(Mutant::HeldFencedWhileYoung)
                && self
                    .maintenance_ended
                    .get(&node)
                    .is_some_and(|&at| now.saturating_sub(at) < self.proving_window()))
    }

    /// Held members whose hold is over are members again before anything
    /// is decided: a candidate and an incumbent like any (nothing was
    /// committed while they were held, so the set the arbiter backs still
    /// names them). Decided while still counted held, a member would be
    /// left out by the very step that ends its hold and fenced on a verdict
    /// it had no part in.
    pub(super) fn release_proven_holds(&mut self, now: Duration, out: &mut Vec<Action>) {
        // (The young hold's planted bug is the code as it was: no release,
        // fenced on the stale held set.)
        if matches!(
            self.mutant,
            Some(Mutant::DecidesOnStaleHold | Mutant::HeldFencedWhileYoung)
        ) || self.maintenance_held.is_empty()
        {
            return;
        }
        let held: BTreeSet<NodeId> = self
            .maintenance_held
            .iter()
            .copied()
            .filter(|&n| self.still_held(n, now))
            .collect();
        if held != self.maintenance_held {
            self.maintenance_ended.retain(|n, _| held.contains(n));
            self.maintenance_held = held.clone();
            out.push(Action::Persist(Delta::MaintenanceHeld { nodes: held }));
        }
    }

    /// Nodes in maintenance, and whether the whole cluster is.
    pub fn maintenance(&self) -> (&BTreeSet<NodeId>, bool) {
        (&self.maintenance, self.maintenance_all)
    }

    /// May `control` be applied now? `Ok` says what it will do; `Err` why
    /// not, in words for the operator. Nothing changes either way.
    pub fn check_control(&self, now: Duration, control: &Control) -> Result<String, String> {
        let name = &self.spec.name;
        let known = |node: NodeId| {
            self.nodes.get(&node).ok_or_else(|| {
                format!(
                    "cluster {name:?} has no node {node} (nodes: {:?})",
                    self.nodes.keys().collect::<Vec<_>>()
                )
            })
        };
        match control {
            Control::Fence { node, .. } => {
                let v = known(*node)?;
                match &v.phase {
                    Phase::Leaving(job) => {
                        return Err(format!(
                            "node {node} is already being fenced (intent {})",
                            job.intent
                        ));
                    }
                    Phase::Off | Phase::Gone => {
                        return Err(format!("node {node} is already fenced (recorded off)"));
                    }
                    Phase::AliveAfterOff { .. } => {
                        return Err(format!(
                            "node {node} spoke after its fence was confirmed: fix its fence device, then `fencectl clear` it (a member outside the verdict is fenced again)"
                        ));
                    }
                    Phase::Member | Phase::Joining => {}
                }
                // Would the others still be quorate? (Only a cluster that
                // is quorate now can lose quorum by it.) The verdict may be
                // an older one, held: count only its nodes that are still
                // candidates (not being fenced, off or gone since).
                if let Some(verdict) = &self.verdict {
                    let votes = |set: &mut dyn Iterator<Item = &NodeId>| -> u64 {
                        set.map(|n| u64::from(self.spec.nodes[n].votes)).sum()
                    };
                    let standing: BTreeSet<NodeId> = verdict
                        .iter()
                        .copied()
                        .filter(|n| self.nodes.get(n).is_some_and(|v| v.phase.is_candidate()))
                        .collect();
                    let now_votes = votes(&mut standing.iter());
                    let rest: BTreeSet<NodeId> =
                        standing.iter().copied().filter(|n| n != node).collect();
                    if self.quorum.is_quorate(now_votes, true)
                        && !self.quorum.is_quorate(votes(&mut rest.iter()), true)
                    {
                        return Err(format!(
                            "fencing node {node} would leave {rest:?} without quorum: every node would lose its lease"
                        ));
                    }
                }
                let levels = self.spec.nodes[node].fence_levels;
                Ok(format!(
                    "fencing node {node}: intent persisted, level 1 of {levels} started; `fencectl status` follows it"
                ))
            }
            Control::Confirm { node } => {
                let Some(v) = self.nodes.get(node) else {
                    if self.orphan_intents.contains_key(node)
                        || self.placement.may_run(*node).is_some()
                    {
                        return Ok(format!(
                            "node {node}, no longer configured, recorded off: its open intent is closed and the groups it may run are released"
                        ));
                    }
                    return Err(format!(
                        "cluster {name:?} has no node {node}, and nothing waits for one"
                    ));
                };
                match &v.phase {
                    Phase::Off | Phase::Gone => {
                        return Err(format!("node {node} is already recorded off"));
                    }
                    Phase::AliveAfterOff { .. } => {
                        return Err(format!(
                            "node {node} spoke after its fence was confirmed: it is not off"
                        ));
                    }
                    Phase::Member | Phase::Joining | Phase::Leaving(_) => {}
                }
                // Heard (a heartbeat, or a session opened) within
                // `lost_after`, or a session still open: it speaks.
                let lost_after = self.spec.timing.lost_after;
                let heard = [v.last_heard, v.session.map(|_| v.session_since)]
                    .into_iter()
                    .flatten()
                    .filter(|_| v.session.is_some())
                    .max();
                if let Some(h) = heard.filter(|h| now.saturating_sub(*h) <= lost_after) {
                    return Err(format!(
                        "node {node} is not off: its agent was heard {} ms ago",
                        now.saturating_sub(h).as_millis()
                    ));
                }
                if v.connected {
                    return Err(format!(
                        "node {node} is not off: its agent's session is still open (a frozen node is not off either)"
                    ));
                }
                Ok(format!(
                    "node {node} recorded off by an operator; the survivors take over once every lease it held has ended"
                ))
            }
            Control::Unfence { node } => {
                let v = known(*node)?;
                match v.phase {
                    Phase::Off | Phase::Gone => Ok(format!(
                        "powering node {node} on through the devices of its topology that can; it rejoins once its agent runs"
                    )),
                    ref p => Err(format!(
                        "node {node} is not fenced (it is {}): nothing to unfence",
                        p.name()
                    )),
                }
            }
            Control::Maintenance { node, on } => {
                if let Some(n) = node {
                    known(*n)?;
                }
                let what = node.map_or_else(|| "cluster".to_string(), |n| format!("node {n}"));
                Ok(if *on {
                    format!(
                        "maintenance on for {what}: no automatic fencing; a node leaving is reported, not fenced, and the survivors wait"
                    )
                } else if node.is_some() && self.maintenance_all {
                    format!(
                        "maintenance off for {what}; the whole cluster stays in maintenance (`maintenance off` without --node ends it)"
                    )
                } else if node.is_none() && !self.maintenance.is_empty() {
                    format!(
                        "maintenance off for the cluster; nodes {:?} stay in maintenance of their own",
                        self.maintenance
                    )
                } else {
                    format!("maintenance off for {what}: automatic fencing resumes")
                })
            }
        }
    }

    /// Apply an operator's control (nothing if `check_control` refuses it).
    pub(super) fn operator(
        &mut self,
        now: Duration,
        by: String,
        control: Control,
        out: &mut Vec<Action>,
    ) {
        let detail = match self.check_control(now, &control) {
            Ok(d) => d,
            Err(_) => return,
        };
        let action = control.name();
        let node = control.node();
        out.push(Action::Persist(Delta::Operator {
            by: by.clone(),
            action,
            node,
            detail: match &control {
                Control::Fence { reason, .. } => reason.clone(),
                _ => detail.clone(),
            },
        }));
        match control {
            Control::Fence { node, reason } => {
                let intent = self.next_intent;
                self.next_intent += 1;
                self.next_attempt += 1;
                let reason = if reason.is_empty() {
                    format!("manual, by {by}")
                } else {
                    format!("manual, by {by}: {reason}")
                };
                out.push(Action::Persist(Delta::FenceIntent {
                    intent,
                    node,
                    reason,
                }));
                self.by_watchdog.remove(&node);
                out.push(Action::Fence {
                    node,
                    intent,
                    level: 0,
                    attempt: self.next_attempt,
                });
                let levels = self.spec.nodes[&node].fence_levels;
                let job = FenceJob::start(
                    node,
                    intent,
                    levels,
                    self.next_attempt,
                    now,
                    &self.spec.timing,
                );
                if let Some(v) = self.nodes.get_mut(&node) {
                    v.phase = Phase::Leaving(job);
                }
            }
            Control::Confirm { node } => {
                if !self.nodes.contains_key(&node) {
                    self.confirm_unconfigured(now, node, &by, out);
                } else {
                    let intent = match &self.nodes[&node].phase {
                        Phase::Leaving(job) => job.intent,
                        _ => {
                            let intent = self.next_intent;
                            self.next_intent += 1;
                            out.push(Action::Persist(Delta::FenceIntent {
                                intent,
                                node,
                                reason: format!("confirmed off by an operator ({by})"),
                            }));
                            intent
                        }
                    };
                    // (A running level's late result is ignored: the node
                    // is no longer leaving.)
                    self.confirmed_off(now, node, intent, ConfirmedBy::Operator(by.clone()), out);
                }
            }
            Control::Unfence { node } => out.push(Action::PowerOn { node }),
            Control::Maintenance { node, on } => {
                let was: BTreeSet<NodeId> = self
                    .maintenance_held
                    .iter()
                    .copied()
                    .filter(|&n| self.in_maintenance(n))
                    .collect();
                match node {
                    Some(n) if on => {
                        self.maintenance.insert(n);
                    }
                    Some(n) => {
                        self.maintenance.remove(&n);
                    }
                    None => self.maintenance_all = on,
                }
                // A held node whose maintenance ends (really ends: not a
                // repeated "off") gets a proving window from now: its links
                // may have healed a moment ago, their edges not yet proven
                // up (`start_fences`).
                for n in was {
                    if !self.in_maintenance(n) {
                        self.maintenance_ended.insert(n, now);
                    }
                }
                out.push(Action::Persist(Delta::Maintenance { node, on }));
            }
        }
        out.push(Action::Notice(Notice::Operator {
            by,
            action,
            node,
            detail,
        }));
        self.evaluate(now, out);
    }

    /// Confirm off a node no longer configured: its open intent closes
    /// (or one is written and closed) and, once the first grace is over
    /// (every lease of an earlier life has ended), the groups it may run
    /// are released.
    fn confirm_unconfigured(
        &mut self,
        _now: Duration,
        node: NodeId,
        by: &str,
        out: &mut Vec<Action>,
    ) {
        let intent = match self.orphan_intents.remove(&node) {
            Some(i) => i,
            None => {
                let intent = self.next_intent;
                self.next_intent += 1;
                out.push(Action::Persist(Delta::FenceIntent {
                    intent,
                    node,
                    reason: format!("no longer configured; confirmed off by an operator ({by})"),
                }));
                intent
            }
        };
        out.push(Action::Persist(Delta::FenceConfirmed {
            intent,
            node,
            instance: 0,
            boot: 0,
            operator: Some(by.to_string()),
        }));
        self.removed_off.insert(node);
        if self.ready {
            let configured: BTreeSet<NodeId> = self.spec.nodes.keys().copied().collect();
            let (deltas, _, _) = self
                .placement
                .forget_unconfigured(&configured, &self.removed_off);
            out.extend(deltas.into_iter().map(Action::Persist));
        }
    }
}
