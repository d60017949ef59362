//! The agent's resource groups: a pure core, like [`crate::lease`].
//!
//! Inputs: the groups the arbiter defines (Welcome), the placements of each
//! acknowledgement, the lease's end, and the results of the starts and
//! stops the shell ran. Outputs: which group to start or stop. The shell
//! runs them (`resource_runner.rs`) and reports back.
//!
//! Rules:
//! - A group starts only while the agent holds a lease and the latest
//!   acknowledgement grants it with `start` (the arbiter says so only once
//!   no other node may be running it).
//! - It stops when an acknowledgement no longer places it here, and at once
//!   (urgent: processes killed, addresses first) when the lease ends.
//! - A group is first stopped when it becomes known (a new agent process
//!   cleans up what a crashed one may have left running).
//! - A start that fails, or a group whose monitor gave up, is stopped and
//!   reported `Failed` until an acknowledgement no longer places it here
//!   (the arbiter moved it).
//! - A stop that fails is `StopFailed` for good: nothing starts again in
//!   this process; the arbiter fences the node.
//! - [`GroupKeeper::report`] says which acknowledgement was applied last:
//!   a stop it asked for has begun by then, and "stopped" means done.

use std::collections::BTreeMap;

/// A group's state on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRun {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
    StopFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInput {
    /// The groups the arbiter defines (every Welcome).
    Defined {
        groups: Vec<String>,
    },
    /// An acknowledgement: `seq`, whether it grants a lease, and the groups
    /// placed here (`true`: may start).
    Ack {
        seq: u64,
        leased: bool,
        grants: Vec<(String, bool)>,
    },
    /// The lease ended (expired or denied).
    LeaseLost,
    StartDone {
        group: String,
        ok: bool,
    },
    /// A start failed and undoing it failed too (a resource it had started
    /// did not stop): as a failed stop.
    StartUndoFailed {
        group: String,
    },
    StopDone {
        group: String,
        ok: bool,
    },
    /// The group's monitor failed more often than its restart limit.
    MonitorGaveUp {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutput {
    Start {
        group: String,
    },
    /// `urgent`: the lease ended; kill rather than ask.
    Stop {
        group: String,
        urgent: bool,
    },
}

#[derive(Debug, Clone)]
struct Local {
    run: GroupRun,
    /// Stopping because it failed: `Failed` once stopped.
    failing: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GroupKeeper {
    groups: BTreeMap<String, Local>,
    grants: BTreeMap<String, bool>,
    leased: bool,
    applied_seq: u64,
    /// A stop failed: nothing starts again.
    untrusted: bool,
    /// The arbiter defined the groups at least once.
    defined: bool,
}

impl GroupKeeper {
    pub fn new() -> Self {
        Self::default()
    }

    /// The acknowledgement applied last and every group not stopped.
    pub fn report(&self) -> (u64, Vec<(String, GroupRun)>) {
        let states = self
            .groups
            .iter()
            .filter(|(_, l)| l.run != GroupRun::Stopped)
            .map(|(g, l)| (g.clone(), l.run))
            .collect();
        (self.applied_seq, states)
    }

    pub fn state(&self, group: &str) -> Option<GroupRun> {
        self.groups.get(group).map(|l| l.run)
    }

    /// At rest: the groups are known (the arbiter defined them) and every
    /// one is stopped (or stopped after failing), none failed to stop.
    /// What the watchdog may be fed on without a lease.
    pub fn at_rest(&self) -> bool {
        self.defined
            && !self.untrusted
            && self
                .groups
                .values()
                .all(|l| matches!(l.run, GroupRun::Stopped | GroupRun::Failed))
    }

    /// Some group is starting, running or stopping (for shutdown).
    pub fn busy(&self) -> bool {
        self.groups.values().any(|l| {
            matches!(
                l.run,
                GroupRun::Starting | GroupRun::Running | GroupRun::Stopping
            )
        })
    }

    pub fn step(&mut self, input: GroupInput) -> Vec<GroupOutput> {
        let mut out = Vec::new();
        let mut urgent = false;
        match input {
            GroupInput::Defined { groups } => {
                self.defined = true;
                for g in groups {
                    if !self.groups.contains_key(&g) {
                        // Whatever a crashed process left behind is stopped
                        // before anything is reported.
                        self.groups.insert(
                            g.clone(),
                            Local {
                                run: GroupRun::Stopping,
                                failing: false,
                            },
                        );
                        out.push(GroupOutput::Stop {
                            group: g,
                            urgent: false,
                        });
                    }
                }
            }
            GroupInput::Ack {
                seq,
                leased,
                grants,
            } => {
                if seq < self.applied_seq {
                    return out; // an older acknowledgement: never go back
                }
                self.applied_seq = seq;
                self.leased = leased;
                self.grants = grants.into_iter().collect();
                for (g, l) in self.groups.iter_mut() {
                    // Moved away: a failure is over.
                    if l.run == GroupRun::Failed && !self.grants.contains_key(g) {
                        l.run = GroupRun::Stopped;
                    }
                }
                urgent = !leased;
            }
            GroupInput::LeaseLost => {
                self.leased = false;
                urgent = true;
            }
            GroupInput::StartDone { group, ok } => {
                if let Some(l) = self.groups.get_mut(&group)
                    && l.run == GroupRun::Starting
                {
                    l.run = if ok {
                        GroupRun::Running
                    } else {
                        // The shell stopped what had started; it must move.
                        GroupRun::Failed
                    };
                }
                urgent = !self.leased;
            }
            GroupInput::StartUndoFailed { group } => {
                if let Some(l) = self.groups.get_mut(&group)
                    && l.run == GroupRun::Starting
                {
                    l.run = GroupRun::StopFailed;
                    self.untrusted = true;
                }
                urgent = !self.leased;
            }
            GroupInput::StopDone { group, ok } => {
                if let Some(l) = self.groups.get_mut(&group)
                    && l.run == GroupRun::Stopping
                {
                    l.run = match (ok, l.failing) {
                        (false, _) => GroupRun::StopFailed,
                        (true, true) => GroupRun::Failed,
                        (true, false) => GroupRun::Stopped,
                    };
                    l.failing = false;
                    if !ok {
                        self.untrusted = true;
                    }
                }
                urgent = !self.leased;
            }
            GroupInput::MonitorGaveUp { group } => {
                if let Some(l) = self.groups.get_mut(&group)
                    && l.run == GroupRun::Running
                {
                    l.run = GroupRun::Stopping;
                    l.failing = true;
                    out.push(GroupOutput::Stop {
                        group,
                        urgent: false,
                    });
                }
            }
        }
        self.reconcile(urgent, &mut out);
        out
    }

    fn reconcile(&mut self, urgent: bool, out: &mut Vec<GroupOutput>) {
        for (g, l) in self.groups.iter_mut() {
            let placed = self.grants.get(g).copied();
            match l.run {
                GroupRun::Stopped if self.leased && placed == Some(true) && !self.untrusted => {
                    l.run = GroupRun::Starting;
                    out.push(GroupOutput::Start { group: g.clone() });
                }
                // (Still placed here, even if not `start`: the arbiter lets
                // its holder keep running.)
                GroupRun::Running if !self.leased || placed.is_none() => {
                    l.run = GroupRun::Stopping;
                    out.push(GroupOutput::Stop {
                        group: g.clone(),
                        urgent,
                    });
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, leased: bool, grants: &[(&str, bool)]) -> GroupInput {
        GroupInput::Ack {
            seq,
            leased,
            grants: grants.iter().map(|(g, s)| (g.to_string(), *s)).collect(),
        }
    }

    fn start(g: &str) -> GroupOutput {
        GroupOutput::Start { group: g.into() }
    }

    fn stop(g: &str, urgent: bool) -> GroupOutput {
        GroupOutput::Stop {
            group: g.into(),
            urgent,
        }
    }

    fn defined(k: &mut GroupKeeper, groups: &[&str]) {
        let out = k.step(GroupInput::Defined {
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        assert_eq!(
            out.len(),
            groups.len(),
            "every new group is cleaned up first"
        );
        for g in groups {
            assert!(out.contains(&stop(g, false)));
            k.step(GroupInput::StopDone {
                group: g.to_string(),
                ok: true,
            });
        }
    }

    #[test]
    fn a_group_is_cleaned_up_first_and_starts_only_with_a_lease_and_a_start_grant() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["web"]);
        assert_eq!(k.report(), (0, vec![]));
        assert_eq!(k.step(ack(1, false, &[("web", true)])), vec![]);
        assert_eq!(k.step(ack(2, true, &[("web", false)])), vec![]);
        assert_eq!(k.step(ack(3, true, &[("web", true)])), vec![start("web")]);
        assert_eq!(k.report(), (3, vec![("web".into(), GroupRun::Starting)]));
        k.step(GroupInput::StartDone {
            group: "web".into(),
            ok: true,
        });
        assert_eq!(k.state("web"), Some(GroupRun::Running));
        // Still placed here without `start`: keeps running.
        assert_eq!(k.step(ack(4, true, &[("web", false)])), vec![]);
    }

    #[test]
    fn a_group_moved_away_stops_and_reports_stopped_after_the_ack() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["web"]);
        k.step(ack(1, true, &[("web", true)]));
        k.step(GroupInput::StartDone {
            group: "web".into(),
            ok: true,
        });
        assert_eq!(k.step(ack(2, true, &[])), vec![stop("web", false)]);
        assert_eq!(k.report(), (2, vec![("web".into(), GroupRun::Stopping)]));
        k.step(GroupInput::StopDone {
            group: "web".into(),
            ok: true,
        });
        assert_eq!(k.report(), (2, vec![]));
    }

    #[test]
    fn the_lease_ending_stops_every_group_at_once() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["a", "b"]);
        k.step(ack(1, true, &[("a", true), ("b", true)]));
        for g in ["a", "b"] {
            k.step(GroupInput::StartDone {
                group: g.into(),
                ok: true,
            });
        }
        assert_eq!(
            k.step(GroupInput::LeaseLost),
            vec![stop("a", true), stop("b", true)]
        );
        // A start finishing after the lease ended is stopped at once.
        let mut k = GroupKeeper::new();
        defined(&mut k, &["a"]);
        k.step(ack(1, true, &[("a", true)]));
        assert_eq!(k.step(GroupInput::LeaseLost), vec![]);
        assert_eq!(
            k.step(GroupInput::StartDone {
                group: "a".into(),
                ok: true
            }),
            vec![stop("a", true)]
        );
    }

    #[test]
    fn a_start_whose_undo_failed_is_a_failed_stop() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["a"]);
        k.step(ack(1, true, &[("a", true)]));
        k.step(GroupInput::StartUndoFailed { group: "a".into() });
        assert_eq!(k.report().1, vec![("a".into(), GroupRun::StopFailed)]);
        // Moved away: still StopFailed (never reported stopped).
        k.step(ack(2, true, &[]));
        assert_eq!(k.report().1, vec![("a".into(), GroupRun::StopFailed)]);
    }

    #[test]
    fn a_failed_stop_stops_every_start_for_good() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["a", "b"]);
        k.step(ack(1, true, &[("a", true)]));
        k.step(GroupInput::StartDone {
            group: "a".into(),
            ok: true,
        });
        k.step(ack(2, true, &[]));
        k.step(GroupInput::StopDone {
            group: "a".into(),
            ok: false,
        });
        assert_eq!(k.report().1, vec![("a".into(), GroupRun::StopFailed)]);
        assert_eq!(k.step(ack(3, true, &[("a", true), ("b", true)])), vec![]);
    }

    #[test]
    fn a_failed_group_stays_failed_until_moved_away_and_an_old_ack_changes_nothing() {
        let mut k = GroupKeeper::new();
        defined(&mut k, &["a"]);
        k.step(ack(5, true, &[("a", true)]));
        k.step(GroupInput::StartDone {
            group: "a".into(),
            ok: true,
        });
        assert_eq!(
            k.step(GroupInput::MonitorGaveUp { group: "a".into() }),
            vec![stop("a", false)]
        );
        k.step(GroupInput::StopDone {
            group: "a".into(),
            ok: true,
        });
        assert_eq!(k.state("a"), Some(GroupRun::Failed));
        // Still granted (the arbiter has not seen the report yet): no restart.
        assert_eq!(k.step(ack(6, true, &[("a", true)])), vec![]);
        assert_eq!(k.step(ack(4, true, &[])), vec![], "older ack ignored");
        assert_eq!(k.state("a"), Some(GroupRun::Failed));
        k.step(ack(7, true, &[]));
        assert_eq!(k.state("a"), Some(GroupRun::Stopped));
        assert_eq!(k.step(ack(8, true, &[("a", true)])), vec![start("a")]);
    }
}
