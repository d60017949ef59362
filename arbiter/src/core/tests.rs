//! Scenario tests of the core: exact actions for a given event sequence.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn spec(n: u32, mode: QuorumMode) -> ClusterSpec {
    ClusterSpec {
        name: "t".into(),
        nodes: (1..=n)
            .map(|id| {
                (
                    id,
                    NodeSpec {
                        votes: 1,
                        priority: 0,
                        fence_levels: 2,
                    },
                )
            })
            .collect(),
        quorum_mode: mode,
        tie_breaker: TieBreaker::LowestNodeId,
        timing: Timing::default(),
        storm_limit: ClusterSpec::default_storm_limit(n as usize),
    }
}

/// Drives a core with heartbeats every 100 ms from the nodes in `up`, each
/// reporting the peers in its entry.
struct Harness {
    core: ArbiterCore,
    now: Duration,
    seq: BTreeMap<NodeId, u64>,
    log: Vec<Action>,
}

impl Harness {
    fn new(spec: ClusterSpec) -> Self {
        let mut core = ArbiterCore::new(spec, Persisted::default(), Duration::ZERO);
        let ids: Vec<NodeId> = core.spec().nodes.keys().copied().collect();
        let mut log = Vec::new();
        for id in ids {
            log.extend(core.step(
                Duration::ZERO,
                Event::Connected {
                    node: id,
                    session: u64::from(id),
                    known_epoch: 0,
                },
            ));
        }
        Harness {
            core,
            now: Duration::ZERO,
            seq: BTreeMap::new(),
            log,
        }
    }

    /// Advance `dur` in 10 ms ticks; every 100 ms each node of `reach`
    /// heartbeats with its reachability list.
    fn run(&mut self, dur: Duration, reach: &[(NodeId, &[NodeId])]) {
        let end = self.now + dur;
        while self.now < end {
            self.now += ms(10);
            if self.now.as_millis().is_multiple_of(100) {
                for &(id, r) in reach {
                    let seq = self.seq.entry(id).or_default();
                    *seq += 1;
                    let ev = Event::Heartbeat {
                        node: id,
                        session: u64::from(id),
                        seq: *seq,
                        sent_at_us: self.now.as_micros() as u64,
                        reachable: r.to_vec(),
                        heuristics: 0,
                        known_epoch: self.core.epoch(),
                    };
                    let out = self.core.step(self.now, ev);
                    self.log.extend(out);
                }
            }
            let out = self.core.step(self.now, Event::Tick);
            self.log.extend(out);
        }
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.log)
    }
}

fn fences(actions: &[Action]) -> Vec<(NodeId, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fence { node, level, .. } => Some((*node, *level)),
            _ => None,
        })
        .collect()
}

/// Intent and attempt of the first `Fence` action.
fn first_fence(actions: &[Action]) -> (u64, u64) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Fence {
                intent, attempt, ..
            } => Some((*intent, *attempt)),
            _ => None,
        })
        .expect("a Fence action")
}

fn leased(actions: &[Action], node: NodeId) -> bool {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Ack { node: n, lease, .. } if *n == node => Some(lease.is_some()),
            _ => None,
        })
        .unwrap_or(false)
}

const ALL3: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])];

#[test]
fn no_lease_during_start_up_grace_then_epoch_one_for_everyone() {
    let mut h = Harness::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(400), &ALL3);
    let early = h.take();
    assert!(
        early
            .iter()
            .all(|a| !matches!(a, Action::Ack { lease: Some(_), .. }))
    );
    h.run(ms(300), &ALL3);
    let later = h.take();
    assert!(later.contains(&Action::Persist(Delta::Backed {
        epoch: 1,
        survivors: [1, 2, 3].into(),
        gone: [].into()
    })));
    assert!((1..=3).all(|n| leased(&later, n)));
    assert!(fences(&later).is_empty());
}

#[test]
fn a_silent_node_is_fenced_and_survivors_hear_only_after_confirmation() {
    let mut h = Harness::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    h.take();
    h.run(ms(600), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    assert_eq!(fences(&out), vec![(3, 0)]);
    let intent_pos = out
        .iter()
        .position(|a| matches!(a, Action::Persist(Delta::FenceIntent { node: 3, .. })))
        .unwrap();
    let fence_pos = out
        .iter()
        .position(|a| matches!(a, Action::Fence { node: 3, .. }))
        .unwrap();
    assert!(
        intent_pos < fence_pos,
        "intent is persisted before the device is touched"
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Announce { .. })));
    // Survivors keep their lease under the old set meanwhile.
    assert!(leased(&out, 1) && leased(&out, 2));
    let (intent, attempt) = first_fence(&out);
    let out = h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::ConfirmedOff,
        },
    );
    assert_eq!(
        out,
        vec![
            Action::Persist(Delta::FenceConfirmed { intent, node: 3 }),
            Action::Persist(Delta::Backed {
                epoch: 2,
                survivors: [1, 2].into(),
                gone: [3].into()
            }),
            Action::Announce {
                to: [1, 2].into(),
                epoch: 2,
                survivors: [1, 2].into(),
                gone: [3].into()
            },
        ]
    );
}

#[test]
fn failed_level_falls_through_and_a_failed_fence_is_never_success() {
    let mut h = Harness::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    h.run(ms(600), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    let (intent, attempt) = first_fence(&out);
    let out = h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::Failed("bmc said no".into()),
        },
    );
    assert_eq!(fences(&out), vec![(3, 1)]);
    let attempt2 = match out.last() {
        Some(Action::Fence { attempt, .. }) => *attempt,
        _ => panic!("{out:?}"),
    };
    // A late success of the abandoned level changes nothing.
    let late = h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::ConfirmedOff,
        },
    );
    assert!(late.is_empty());
    let out = h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 1,
            attempt: attempt2,
            outcome: LevelOutcome::Failed("pdu timeout".into()),
        },
    );
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Persist(Delta::FenceAttemptFailed { node: 3, .. })
    )));
    h.run(ms(2000), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    assert!(!out.iter().any(|a| matches!(a, Action::Announce { .. })));
    assert_eq!(
        fences(&out).first(),
        Some(&(3, 0)),
        "retried from level 0 after backoff"
    );
    assert_eq!(h.core.epoch(), 1);
}

#[test]
fn a_node_cut_off_from_peers_but_not_from_the_arbiter_is_fenced() {
    let mut h = Harness::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    h.take();
    // 3 still heartbeats but reaches nobody: after settle, {1,2} wins.
    h.run(ms(150), &[(1, &[2]), (2, &[1]), (3, &[])]);
    assert!(
        fences(&h.take()).is_empty(),
        "a change younger than settle fences nobody"
    );
    h.run(ms(200), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let out = h.take();
    assert_eq!(fences(&out), vec![(3, 0)]);
    h.run(ms(200), &[(1, &[2]), (2, &[1]), (3, &[])]);
    assert!(!leased(&h.take(), 3), "a node being fenced is not renewed");
}

#[test]
fn storm_limit_holds_instead_of_shooting_most_nodes() {
    let mut h = Harness::new(spec(5, QuorumMode::LastManStanding));
    let all: Vec<(NodeId, Vec<NodeId>)> = (1..=5)
        .map(|i| (i, (1..=5).filter(|&j| j != i).collect()))
        .collect();
    let all_ref: Vec<(NodeId, &[NodeId])> = all.iter().map(|(i, r)| (*i, r.as_slice())).collect();
    h.run(ms(800), &all_ref);
    h.take();
    h.run(ms(800), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    assert!(fences(&out).is_empty());
    assert!(out.contains(&Action::Notice(Notice::StormHold {
        leaving: [3, 4, 5].into()
    })));
}

#[test]
fn unknown_nodes_are_refused_without_state_change() {
    let mut h = Harness::new(spec(3, QuorumMode::TieBreaker));
    let before = h.core.status();
    let out = h.core.step(
        ms(1),
        Event::Heartbeat {
            node: 9,
            session: 9,
            seq: 1,
            sent_at_us: 0,
            reachable: vec![],
            heuristics: 0,
            known_epoch: 0,
        },
    );
    assert!(matches!(out.as_slice(), [Action::Refuse { node: 9, .. }]));
    let out = h.core.step(
        ms(1),
        Event::Heartbeat {
            node: 1,
            session: 1,
            seq: 1,
            sent_at_us: 0,
            reachable: vec![2, 42],
            heuristics: 0,
            known_epoch: 0,
        },
    );
    assert!(matches!(out.as_slice(), [Action::Refuse { node: 1, .. }]));
    assert_eq!(h.core.node(1).unwrap().last_heard, None);
    assert_eq!(h.core.status(), before);
}

#[test]
fn restart_resumes_open_intents_and_waits_out_old_leases() {
    let s = spec(3, QuorumMode::LastManStanding);
    let persisted = Persisted {
        epoch: 4,
        backed: [1, 2, 3].into(),
        gone: [].into(),
        open_intents: [(3, 17)].into(),
        next_intent: 18,
    };
    let start = Duration::from_secs(100);
    let mut core = ArbiterCore::new(s, persisted, start);
    let out = core.step(start, Event::Tick);
    assert!(matches!(
        out.as_slice(),
        [Action::Fence {
            node: 3,
            intent: 17,
            level: 0,
            ..
        }]
    ));
    core.step(
        start,
        Event::Connected {
            node: 1,
            session: 5,
            known_epoch: 4,
        },
    );
    let out = core.step(
        start + ms(100),
        Event::Heartbeat {
            node: 1,
            session: 5,
            seq: 1,
            sent_at_us: 0,
            reachable: vec![2],
            heuristics: 0,
            known_epoch: 4,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [Action::Ack {
            lease: None,
            epoch: 4,
            ..
        }]
    ));
}

#[test]
fn a_silent_heavyweight_never_outvotes_fresh_nodes_with_its_stale_report() {
    // Node 3 has more votes than 1 and 2 together. When it goes silent its
    // last report still says it reaches everyone; deciding on it would fence
    // the two live nodes.
    let mut s = spec(3, QuorumMode::LastManStanding);
    s.nodes.get_mut(&3).unwrap().votes = 3;
    let mut h = Harness::new(s);
    h.run(ms(800), &ALL3);
    h.take();
    h.run(ms(1000), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    assert_eq!(fences(&out), vec![(3, 0)]);
}
