//! Property tests of the whole core over random event sequences: a cluster
//! heartbeating on its own, random silences, cut links, fence outcomes and
//! malformed input (unknown nodes, stale sessions, replayed sequence
//! numbers, results for intents that do not exist). Nothing panics,
//! refusals change no state, and the fencing rules hold on every action.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbiter::core::{
    Action, ArbiterCore, ClusterSpec, Control, Delta, Event, LevelOutcome, NodeId, NodeSpec,
    Persisted, QuorumMode, TieBreaker, Timing,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Ev {
    /// Let time pass in 10 ms ticks; live nodes heartbeat every 100 ms.
    Advance(u64),
    /// Node stops heartbeating (or starts again).
    ToggleSilent(NodeId),
    /// Reports between the two nodes stop (or start again).
    ToggleCut(NodeId, NodeId),
    /// The pending fence (by index) finishes.
    Finish(usize, bool),
    /// Node reconnects with a new session.
    Reconnect(NodeId),
    /// Malformed or stale input.
    Garbage(NodeId, u64, u64, Vec<NodeId>),
    Bogus(NodeId, u64, u64),
    /// An operator's control: 0 fence, 1 confirm, 2 unfence, 3 maintenance
    /// of the node, 4 of the whole cluster; the flag switches it on or off.
    Control(u8, NodeId, bool),
}

fn ev(n: u32) -> impl Strategy<Value = Ev> {
    let node = 1..=n;
    prop_oneof![
        6 => (10u64..400).prop_map(Ev::Advance),
        2 => node.clone().prop_map(Ev::ToggleSilent),
        2 => (node.clone(), node.clone()).prop_map(|(a, b)| Ev::ToggleCut(a, b)),
        3 => (0usize..8, prop::bool::weighted(0.7)).prop_map(|(i, ok)| Ev::Finish(i, ok)),
        1 => node.clone().prop_map(Ev::Reconnect),
        1 => (0..n + 3, 0u64..4, 0u64..50, proptest::collection::vec(0..n + 3, 0..5)).prop_map(|(a, s, q, r)| Ev::Garbage(a, s, q, r)),
        1 => (0..n + 3, 0u64..6, 0u64..12).prop_map(|(a, i, t)| Ev::Bogus(a, i, t)),
        1 => (0u8..5, 0..n + 2, prop::bool::ANY).prop_map(|(k, a, on)| Ev::Control(k, a, on)),
    ]
}

fn spec(n: u32, lms: bool) -> ClusterSpec {
    ClusterSpec {
        name: "p".into(),
        nodes: (1..=n)
            .map(|i| {
                (
                    i,
                    NodeSpec {
                        votes: 1,
                        priority: 0,
                        fence_levels: 2,
                        watchdog_level: None,
                    },
                )
            })
            .collect(),
        quorum_mode: if lms {
            QuorumMode::LastManStanding
        } else {
            QuorumMode::TieBreaker
        },
        tie_breaker: TieBreaker::LowestNodeId,
        timing: Timing::default(),
        storm_limit: n as usize,
        groups: Vec::new(),
    }
}

/// Checks every action against the rules, tracking what was persisted.
#[derive(Default)]
struct Rules {
    store: Persisted,
    intent_node: BTreeMap<u64, NodeId>,
    confirmed: BTreeSet<u64>,
    fenced_since_epoch: BTreeSet<NodeId>,
    pending: Vec<(NodeId, u64, usize, u64)>,
    fences: u32,
    announced_gone: u32,
    leases: u32,
}

impl Rules {
    fn check(&mut self, now: Duration, actions: Vec<Action>) -> Result<(), TestCaseError> {
        for a in actions {
            match a {
                Action::Persist(d) => {
                    match &d {
                        Delta::FenceIntent {
                            intent,
                            node,
                            reason,
                        } => {
                            prop_assert!(
                                self.intent_node.insert(*intent, *node).is_none(),
                                "intent ids are unique"
                            );
                            prop_assert!(
                                !(self.store.maintenance_all
                                    || self.store.maintenance.contains(node))
                                    || reason.contains("manual")
                                    || reason.contains("operator"),
                                "node {} fenced automatically in maintenance: {}",
                                node,
                                reason
                            );
                        }
                        Delta::FenceConfirmed { intent, node, .. } => {
                            prop_assert_eq!(
                                self.intent_node.get(intent),
                                Some(node),
                                "confirmation matches an intent"
                            );
                            self.confirmed.insert(*intent);
                            self.fenced_since_epoch.insert(*node);
                        }
                        Delta::Backed { epoch, .. } | Delta::EpochRaised { epoch } => {
                            prop_assert!(*epoch > self.store.epoch, "epochs only grow")
                        }
                        Delta::FenceAttemptFailed { .. }
                        | Delta::AlertCleared { .. }
                        | Delta::AliveAfterOff { .. }
                        | Delta::AgentSeen { .. }
                        | Delta::Watchdog { .. }
                        | Delta::WatchdogFenced { .. }
                        | Delta::Operator { .. }
                        | Delta::Maintenance { .. }
                        | Delta::MaintenanceHeld { .. }
                        | Delta::Group { .. } => {}
                        // The configuration never changes here.
                        Delta::Unconfigured { nodes } => {
                            prop_assert!(
                                false,
                                "nodes {:?} left a configuration that kept them",
                                nodes
                            )
                        }
                    }
                    self.store.apply(&d);
                }
                Action::Fence {
                    node,
                    intent,
                    level,
                    attempt,
                } => {
                    prop_assert_eq!(
                        self.intent_node.get(&intent),
                        Some(&node),
                        "a fence runs only under a persisted intent"
                    );
                    prop_assert!(!self.confirmed.contains(&intent));
                    self.fences += 1;
                    self.pending.push((node, intent, level, attempt));
                }
                Action::Announce {
                    gone,
                    survivors,
                    epoch,
                    ..
                } => {
                    prop_assert_eq!(
                        epoch,
                        self.store.epoch,
                        "announced after the epoch was persisted"
                    );
                    for g in &gone {
                        prop_assert!(
                            self.fenced_since_epoch.contains(g),
                            "node {} announced gone without a confirmed fence",
                            g
                        );
                        prop_assert!(!survivors.contains(g));
                        self.announced_gone += 1;
                    }
                    self.fenced_since_epoch.clear();
                }
                Action::Ack {
                    node,
                    lease: Some(_),
                    backed: survivors,
                    epoch,
                    ..
                } => {
                    prop_assert!(
                        survivors.contains(&node),
                        "leases only to members of the backed set"
                    );
                    prop_assert_eq!(epoch, self.store.epoch);
                    prop_assert!(
                        now >= Timing::default().lease_max(),
                        "no lease in the start-up grace"
                    );
                    self.leases += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn step(
    core: &mut ArbiterCore,
    rules: &mut Rules,
    now: Duration,
    event: Event,
) -> Result<(), TestCaseError> {
    let before = core.status();
    let actions = core.step(now, event);
    if actions.iter().any(|a| matches!(a, Action::Refuse { .. })) {
        prop_assert_eq!(actions.len(), 1, "a refusal comes alone");
        prop_assert_eq!(core.status(), before, "a refusal changes no state");
    }
    rules.check(now, actions)
}

fn run(n: u32, lms: bool, events: Vec<Ev>) -> Result<Rules, TestCaseError> {
    let mut core = ArbiterCore::new(spec(n, lms), Persisted::default(), Duration::ZERO);
    let mut rules = Rules::default();
    let mut now = Duration::ZERO;
    let mut session: BTreeMap<NodeId, u64> = (1..=n).map(|i| (i, 1)).collect();
    let mut seq: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut silent: BTreeSet<NodeId> = BTreeSet::new();
    let mut cut: BTreeSet<(NodeId, NodeId)> = BTreeSet::new();
    for i in 1..=n {
        step(
            &mut core,
            &mut rules,
            now,
            Event::Connected {
                node: i,
                session: 1,
                known_epoch: 0,
                instance: 1,
                boot: 0,
            },
        )?;
    }
    for e in events {
        match e {
            Ev::Advance(ms) => {
                let end = now + Duration::from_millis(ms);
                while now < end {
                    now += Duration::from_millis(10);
                    if now.as_millis().is_multiple_of(100) {
                        for i in (1..=n).filter(|i| !silent.contains(i)) {
                            let s = seq.entry(i).or_default();
                            *s += 1;
                            let reach = (1..=n)
                                .filter(|&j| {
                                    j != i
                                        && !cut.contains(&(i.min(j), i.max(j)))
                                        && !silent.contains(&j)
                                })
                                .collect();
                            let hb = Event::Heartbeat {
                                node: i,
                                session: session[&i],
                                seq: *s,
                                sent_at_us: 0,
                                reachable: reach,
                                heuristics: 0,
                                known_epoch: 0,
                                applied_seq: 0,
                                groups: Vec::new(),
                                acked_seq: 0,
                                ridden: std::time::Duration::ZERO,
                            };
                            step(&mut core, &mut rules, now, hb)?;
                        }
                    }
                    step(&mut core, &mut rules, now, Event::Tick)?;
                }
            }
            Ev::ToggleSilent(a) => {
                if !silent.remove(&a) {
                    silent.insert(a);
                }
            }
            Ev::ToggleCut(a, b) => {
                if a != b && !cut.remove(&(a.min(b), a.max(b))) {
                    cut.insert((a.min(b), a.max(b)));
                }
            }
            Ev::Finish(i, ok) => {
                if !rules.pending.is_empty() {
                    let (node, intent, level, attempt) =
                        rules.pending.remove(i % rules.pending.len());
                    let outcome = if ok {
                        LevelOutcome::ConfirmedOff
                    } else {
                        LevelOutcome::Failed("device error".into())
                    };
                    if ok {
                        // The node is off: it says nothing more until it reboots.
                        silent.insert(node);
                    }
                    step(
                        &mut core,
                        &mut rules,
                        now,
                        Event::FenceFinished {
                            node,
                            intent,
                            level,
                            attempt,
                            outcome,
                        },
                    )?;
                }
            }
            Ev::Reconnect(a) => {
                let s = session.entry(a).or_default();
                *s += 1;
                seq.insert(a, 0);
                silent.remove(&a);
                let s = *s;
                step(
                    &mut core,
                    &mut rules,
                    now,
                    Event::Connected {
                        node: a,
                        session: s,
                        known_epoch: 0,
                        instance: s,
                        boot: 0,
                    },
                )?;
            }
            Ev::Garbage(a, s, q, r) => {
                let hb = Event::Heartbeat {
                    node: a,
                    session: s + 100,
                    seq: q,
                    sent_at_us: 0,
                    reachable: r,
                    heuristics: 0,
                    known_epoch: 0,
                    applied_seq: 0,
                    groups: Vec::new(),
                    acked_seq: 0,
                    ridden: std::time::Duration::ZERO,
                };
                step(&mut core, &mut rules, now, hb)?;
            }
            Ev::Control(kind, a, on) => {
                let control = match kind {
                    0 => Control::Fence {
                        node: a,
                        reason: String::new(),
                    },
                    1 => Control::Confirm { node: a },
                    2 => Control::Unfence { node: a },
                    3 => Control::Maintenance { node: Some(a), on },
                    _ => Control::Maintenance { node: None, on },
                };
                let before = core.status();
                let checked = core.check_control(now, &control);
                let actions = core.step(
                    now,
                    Event::Operator {
                        by: "prop".into(),
                        control,
                    },
                );
                if checked.is_err() {
                    prop_assert!(actions.is_empty(), "a refused control acts: {:?}", actions);
                    prop_assert_eq!(core.status(), before, "a refused control changes state");
                }
                // The operator says true: a node confirmed off is silent.
                if actions.iter().any(|a| {
                    matches!(
                        a,
                        Action::Persist(Delta::FenceConfirmed {
                            operator: Some(_),
                            ..
                        })
                    )
                }) {
                    silent.insert(a);
                }
                rules.check(now, actions)?;
            }
            Ev::Bogus(a, i, t) => {
                let ev = Event::FenceFinished {
                    node: a,
                    intent: i + 1000,
                    level: 0,
                    attempt: t,
                    outcome: LevelOutcome::ConfirmedOff,
                };
                step(&mut core, &mut rules, now, ev)?;
            }
        }
    }
    Ok(rules)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_event_sequences_keep_the_fencing_rules(
        (n, lms, events) in (2u32..6, any::<bool>()).prop_flat_map(|(n, lms)| (Just(n), Just(lms), proptest::collection::vec(ev(n), 1..120)))
    ) {
        run(n, lms, events)?;
    }
}

/// The generator reaches the interesting paths: leases, fences, announcements.
#[test]
fn the_generator_exercises_fencing() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut fences, mut gone, mut leases) = (0, 0, 0);
    for _ in 0..200 {
        let events = proptest::collection::vec(ev(4), 1..120)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let r = run(4, true, events).expect("rules hold");
        fences += r.fences;
        gone += r.announced_gone;
        leases += r.leases;
    }
    eprintln!("fences {fences}, gone {gone}, leases {leases}");
    assert!(
        fences > 100 && gone > 30 && leases > 1000,
        "fences {fences}, gone {gone}, leases {leases}"
    );
}
