//! Scenario tests of the core: exact actions for a given event sequence.

use super::test_support::*;
use super::*;

fn spec(n: u32, mode: QuorumMode) -> ClusterSpec {
    spec_levels(n, mode, 2)
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

#[test]
fn no_lease_during_start_up_grace_then_epoch_one_for_everyone() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(300), &ALL3);
    let early = h.take();
    assert!(
        early
            .iter()
            .all(|a| !matches!(a, Action::Ack { lease: Some(_), .. }))
    );
    h.run(ms(600), &ALL3);
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
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
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
            Action::Persist(Delta::FenceConfirmed {
                intent,
                node: 3,
                instance: 3,
                boot: 0,
                operator: None,
            }),
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
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
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
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
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

/// Node 2 cut from both its peers; its two links are seen to break one
/// heartbeat apart (2–3 first). Which nodes are fenced?
fn one_node_cut_links_breaking_apart(mutant: Option<Mutant>) -> Vec<(NodeId, usize)> {
    let mut h = H::with(
        spec(3, QuorumMode::LastManStanding),
        Persisted::default(),
        mutant,
    );
    h.run(ms(800), &ALL3);
    h.take();
    h.run(ms(100), &[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    h.run(ms(700), &[(1, &[3]), (2, &[]), (3, &[1])]);
    fences(&h.take())
}

/// Found end to end under load (the test of finding 6, about one run in
/// eight): with 2–3 settled down and 1–2 still going down, {1,2} and {1,3}
/// tie, and the tie-breaker fenced healthy node 3. A verdict is now held
/// while an edge going down would change who leaves.
#[test]
fn a_node_cut_from_its_peers_is_fenced_not_the_peer_whose_link_broke_first() {
    assert_eq!(one_node_cut_links_breaking_apart(None), vec![(2, 0)]);
    let broken = one_node_cut_links_breaking_apart(Some(Mutant::DecideOnHalfSettledEdges));
    assert_eq!(broken.first(), Some(&(3, 0)), "{broken:?}");
}

#[test]
fn storm_limit_holds_instead_of_shooting_most_nodes() {
    let mut h = H::new(spec(5, QuorumMode::LastManStanding));
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
    let mut h = H::new(spec(3, QuorumMode::TieBreaker));
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
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
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
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
        },
    );
    assert!(matches!(out.as_slice(), [Action::Refuse { node: 1, .. }]));
    assert_eq!(h.core.node(1).unwrap().last_heard, None);
    assert_eq!(h.core.status(), before);
}

/// Found by the 100,000-seed run (seed 62563): node 4 removed from the
/// configuration while it ran (it holds epoch 2), then the store lost. The
/// refused node still reports its epoch; the fencing token must not go
/// back below it for the nodes that remain.
#[test]
fn a_removed_node_still_running_keeps_the_epoch_from_going_back() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
    let out = h.core.step(
        ms(1),
        Event::Connected {
            node: 4,
            session: 4,
            known_epoch: 2,
            instance: 4,
            boot: 0,
        },
    );
    assert!(
        matches!(
            out.as_slice(),
            [
                Action::Notice(Notice::EpochBehind {
                    node: 4,
                    reported: 2,
                    ..
                }),
                Action::Refuse { node: 4, .. }
            ]
        ),
        "{out:?}"
    );
    h.run(ms(1500), &ALL3);
    let epochs: Vec<u64> = h
        .take()
        .iter()
        .filter_map(|a| match a {
            Action::Ack {
                lease: Some(_),
                epoch,
                ..
            } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert!(
        !epochs.is_empty() && epochs.iter().all(|&e| e > 2),
        "{epochs:?}"
    );
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
        off: [].into(),
        ..Default::default()
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
            instance: 5,
            boot: 0,
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
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [
            Action::Notice(Notice::ContactRegained { .. }),
            Action::Ack {
                lease: None,
                epoch: 4,
                ..
            }
        ]
    ));
}

#[test]
fn a_silent_heavyweight_never_outvotes_fresh_nodes_with_its_stale_report() {
    // Node 3 has more votes than 1 and 2 together. When it goes silent its
    // last report still says it reaches everyone; deciding on it would fence
    // the two live nodes.
    let mut s = spec(3, QuorumMode::LastManStanding);
    s.nodes.get_mut(&3).unwrap().votes = 3;
    let mut h = H::new(s);
    h.run(ms(800), &ALL3);
    h.take();
    h.run(ms(1000), &[(1, &[2]), (2, &[1])]);
    let out = h.take();
    assert_eq!(fences(&out), vec![(3, 0)]);
}

// Findings of issue 8, each shown against the mutant that restores the old
// rule (so the test would have caught it).

/// Finding 2: after the arbiter heard from nobody for 2 s (its own network
/// blip), the first node back used to be the verdict alone, and the other,
/// healthy node was fenced.
fn arbiter_blip(mutant: Option<Mutant>, stall: bool) -> Vec<Action> {
    let mut h = H::with(
        spec(2, QuorumMode::LastManStanding),
        Persisted::default(),
        mutant,
    );
    let both: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];
    h.run(ms(800), &both);
    h.take();
    if stall {
        // The arbiter itself does not run for 2 s (no step at all).
        h.now += ms(2000);
    } else {
        // Its port is blocked: it runs, and hears nobody.
        h.run(ms(2000), &[]);
    }
    // Node 1 is back first; node 2 reconnects 300 ms later.
    h.run(ms(300), &[(1, &[2])]);
    h.run(ms(1000), &both);
    h.take()
}

#[test]
fn the_arbiters_own_blip_fences_nobody_and_the_first_back_keeps_its_lease() {
    let out = arbiter_blip(None, false);
    assert!(fences(&out).is_empty(), "{out:?}");
    assert!(out.contains(&Action::Notice(Notice::ContactLost)));
    assert!(leased(&out, 1) && leased(&out, 2));
    // The mutant with the old rule shoots the healthy node 2.
    assert_eq!(
        fences(&arbiter_blip(Some(Mutant::NoRegraceAfterIsolation), false)),
        vec![(2, 0)]
    );
}

#[test]
fn an_arbiter_stall_is_no_evidence_against_anyone() {
    let out = arbiter_blip(None, true);
    assert!(fences(&out).is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Notice(Notice::Stalled { .. })))
    );
    assert_eq!(
        fences(&arbiter_blip(Some(Mutant::NoRegraceAfterIsolation), true)),
        vec![(2, 0)]
    );
}

#[test]
fn a_node_that_never_comes_back_is_fenced_after_the_reconnect_allowance() {
    let mut h = H::new(spec(2, QuorumMode::LastManStanding));
    let both: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];
    h.run(ms(800), &both);
    h.run(ms(2000), &[]);
    h.take();
    let t = Timing::default();
    // Within lost_after + allowance of contact: held.
    h.run(t.lost_after + t.reconnect_allowance - ms(100), &[(1, &[])]);
    assert!(fences(&h.take()).is_empty());
    h.run(ms(300), &[(1, &[])]);
    assert_eq!(fences(&h.take()), vec![(2, 0)]);
}

/// Finding 1: a node being fenced stayed a candidate, so a slow fence and
/// a recovering heuristic could flip the verdict and fence the other side
/// too.
fn slow_fence_then_heuristic(mutant: Option<Mutant>) -> Vec<Action> {
    let mut h = H::with(
        spec(2, QuorumMode::LastManStanding),
        Persisted::default(),
        mutant,
    );
    let both: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];
    h.run(ms(800), &both);
    h.take();
    // The 1-2 link breaks; both still reach the arbiter: node 1 wins the
    // tie, node 2's fence starts and its device is slow.
    h.run(ms(600), &[(1, &[]), (2, &[])]);
    // Node 2's heuristic recovers: it now outranks node 1.
    h.heur.insert(2, 5);
    h.run(ms(600), &[(1, &[]), (2, &[])]);
    h.take()
}

#[test]
fn a_node_being_fenced_is_no_candidate() {
    assert_eq!(fences(&slow_fence_then_heuristic(None)), vec![(2, 0)]);
    let both_off = fences(&slow_fence_then_heuristic(Some(
        Mutant::CandidatesIncludeFencing,
    )));
    assert_eq!(
        both_off,
        vec![(2, 0), (1, 0)],
        "the old rule shoots both sides"
    );
}

/// Finding 3: state naming nodes no longer configured.
#[test]
fn nodes_removed_from_the_configuration_do_not_panic_and_their_intents_are_reported() {
    let persisted = Persisted {
        epoch: 3,
        backed: [1, 2, 4].into(),
        gone: [5].into(),
        open_intents: [(4, 9), (2, 8)].into(),
        next_intent: 10,
        off: [].into(),
        alerts: [(4, "wrong outlet".to_string())].into(),
        ..Default::default()
    };
    let mut h = H::with(spec(3, QuorumMode::LastManStanding), persisted, None);
    h.run(ms(1500), &ALL3);
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Notice(Notice::ConfigChanged { .. })))
    );
    // An alert standing for a removed node is said, not silently kept.
    assert!(out.iter().any(
        |a| matches!(a, Action::Notice(Notice::ConfigChanged { detail })
        if detail.contains("node 4") && detail.contains("alive-after-off alert"))
    ));
    assert!(out.contains(&Action::Notice(Notice::OrphanIntent { node: 4, intent: 9 })));
    assert_eq!(h.core.status().orphan_intents, [(4, 9)].into());
    // Node 2's intent is resumed as before.
    assert_eq!(fences(&out)[0], (2, 0));
}

/// Finding 5: with the store lost, the epoch must not go back.
fn store_lost(mutant: Option<Mutant>) -> Vec<Action> {
    let mut core = ArbiterCore::with_mutant(
        spec(2, QuorumMode::LastManStanding),
        Persisted::default(),
        Duration::ZERO,
        mutant,
    );
    let mut out = Vec::new();
    for n in [1, 2] {
        out.extend(core.step(
            Duration::ZERO,
            Event::Connected {
                node: n,
                session: 1,
                known_epoch: 7,
                instance: 1,
                boot: 0,
            },
        ));
    }
    let mut now = Duration::ZERO;
    for i in 1..=10u64 {
        now += ms(100);
        for (n, peer) in [(1, 2), (2, 1)] {
            out.extend(core.step(
                now,
                Event::Heartbeat {
                    node: n,
                    session: 1,
                    seq: i,
                    sent_at_us: 0,
                    reachable: vec![peer],
                    heuristics: 0,
                    known_epoch: 7,
                    applied_seq: 0,
                    groups: Vec::new(),
                    acked_seq: 0,
                    ridden: std::time::Duration::ZERO,
                },
            ));
        }
        out.extend(core.step(now, Event::Tick));
    }
    out
}

#[test]
fn the_epoch_never_goes_back_even_with_the_store_lost() {
    let out = store_lost(None);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Notice(Notice::EpochBehind {
            reported: 7,
            stored: 0,
            ..
        })
    )));
    let lease_epochs: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Ack {
                lease: Some(_),
                epoch,
                ..
            } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert!(
        !lease_epochs.is_empty() && lease_epochs.iter().all(|&e| e > 7),
        "{lease_epochs:?}"
    );
    let broken = store_lost(Some(Mutant::IgnoreReportedEpochs));
    assert!(broken.iter().any(|a| matches!(
        a,
        Action::Ack {
            lease: Some(_),
            epoch: 1,
            ..
        }
    )));
}

/// Finding 6: a node confirmed off that speaks again.
#[test]
fn a_node_alive_after_its_confirmed_fence_raises_an_alert_and_gets_no_lease() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    h.take();
    // Node 3 loses its peers but not the arbiter: it is fenced.
    h.run(ms(600), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let (intent, attempt) = first_fence(&h.take());
    // The device lies: "off", but node 3 runs on, heartbeating.
    h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::ConfirmedOff,
        },
    );
    h.run(ms(300), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Notice(Notice::AliveAfterOff { node: 3, .. }))),
        "{out:?}"
    );
    assert!(h.core.status().alerts.contains_key(&3));
    // Its agent reconnects (same instance): still no lease, alert stays.
    h.core.step(
        h.now,
        Event::Connected {
            node: 3,
            session: 33,
            known_epoch: 2,
            instance: 3,
            boot: 0,
        },
    );
    let ack = h.core.step(
        h.now + ms(1),
        Event::Heartbeat {
            node: 3,
            session: 33,
            seq: 1,
            sent_at_us: 0,
            reachable: vec![],
            heuristics: 0,
            known_epoch: 2,
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
        },
    );
    assert!(!leased(&ack, 3));
    assert!(h.core.status().alerts.contains_key(&3));
    // Cleared by an operator, it may rejoin.
    let out = h.core.step(h.now + ms(2), Event::Clear { node: 3 });
    assert!(out.contains(&Action::Notice(Notice::AlertCleared { node: 3 })));
    assert!(h.core.status().alerts.is_empty());
}

#[test]
fn a_rebooted_node_is_a_new_instance_and_rejoins_without_alert() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    h.run(ms(600), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let (intent, attempt) = first_fence(&h.take());
    h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::ConfirmedOff,
        },
    );
    h.run(ms(500), &[(1, &[2]), (2, &[1])]);
    h.core.step(
        h.now,
        Event::Connected {
            node: 3,
            session: 33,
            known_epoch: 0,
            instance: 99,
            boot: 0,
        },
    );
    h.seq.insert(3, 0);
    // (The harness heartbeats node 3 on session 3; use the new one.)
    let mut now = h.now;
    let mut out = Vec::new();
    for i in 1..=10u64 {
        now += ms(100);
        out.extend(h.core.step(
            now,
            Event::Heartbeat {
                node: 3,
                session: 33,
                seq: i,
                sent_at_us: 0,
                reachable: vec![1, 2],
                heuristics: 0,
                known_epoch: 0,
                applied_seq: 0,
                groups: Vec::new(),
                acked_seq: 0,
                ridden: std::time::Duration::ZERO,
            },
        ));
        for n in [1u32, 2] {
            let peers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&p| p != n).collect();
            out.extend(h.core.step(
                now,
                Event::Heartbeat {
                    node: n,
                    session: u64::from(n),
                    seq: 100 + i,
                    sent_at_us: 0,
                    reachable: peers,
                    heuristics: 0,
                    known_epoch: 0,
                    applied_seq: 0,
                    groups: Vec::new(),
                    acked_seq: 0,
                    ridden: std::time::Duration::ZERO,
                },
            ));
        }
        out.extend(h.core.step(now, Event::Tick));
    }
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Notice(Notice::AliveAfterOff { .. })))
    );
    assert!(leased(&out, 3), "the rebooted node rejoins");
    assert!(h.core.status().gone.is_empty());
}

/// Finding 9: the largest node id works in a running core.
#[test]
fn the_largest_node_id_runs() {
    let mut s = spec(1, QuorumMode::LastManStanding);
    let n = s.nodes.remove(&1).unwrap();
    s.nodes.insert(NodeId::MAX, n.clone());
    s.nodes.insert(7, n);
    let mut h = H::new(s);
    h.run(ms(800), &[(7, &[NodeId::MAX]), (NodeId::MAX, &[7])]);
    let out = h.take();
    assert!(leased(&out, 7) && leased(&out, NodeId::MAX));
}

/// Two processes claiming one node (a restarted agent whose old process
/// lives on, a cloned VM): when does the newcomer get its first lease, and
/// the bound on the first instance's lease it must wait out?
fn second_instance_first_lease(mutant: Option<Mutant>) -> (Duration, Duration) {
    let mut h = H::with(
        spec(2, QuorumMode::LastManStanding),
        Persisted::default(),
        mutant,
    );
    h.run(ms(800), &[(1, &[2]), (2, &[1])]);
    h.take();
    let last_grant = h.now;
    h.core.step(
        h.now,
        Event::Connected {
            node: 2,
            session: 22,
            known_epoch: 1,
            instance: 77,
            boot: 0,
        },
    );
    let hb = |seq, at: Duration, core: &mut ArbiterCore| {
        core.step(
            at,
            Event::Heartbeat {
                node: 2,
                session: 22,
                seq,
                sent_at_us: 0,
                reachable: vec![1],
                heuristics: 0,
                known_epoch: 1,
                applied_seq: 0,
                groups: Vec::new(),
                acked_seq: 0,
                ridden: std::time::Duration::ZERO,
            },
        )
    };
    h.run(ms(50), &[(1, &[2])]);
    let early = hb(1, h.now, &mut h.core);
    assert!(!leased(&early, 2), "{early:?}");
    // The bound allows for the arbiter's own clock having jumped forward
    // by up to `stall_after` unnoticed.
    let t = Timing::default();
    let bound = last_grant + t.lease_max() + t.stall_after();
    let mut seq = 1;
    loop {
        h.run(ms(10), &[(1, &[2])]);
        seq += 1;
        if leased(&hb(seq, h.now, &mut h.core), 2) {
            return (h.now, bound);
        }
        assert!(h.now < bound + ms(500), "no lease after the bound");
    }
}

#[test]
fn a_second_instance_of_a_node_waits_out_the_first_ones_lease() {
    let (at, bound) = second_instance_first_lease(None);
    assert!(at >= bound, "lease at {at:?}, before the bound {bound:?}");
    // A bound without the clock-jump margin would let it in earlier.
    let (at, bound) = second_instance_first_lease(Some(Mutant::NoClockJumpInLeaseBound));
    assert!(at < bound, "lease at {at:?}, bound {bound:?}");
}

/// What the store holds after these actions, starting from `from`.
fn stored(from: &Persisted, actions: &[Action]) -> Persisted {
    let mut p = from.clone();
    for a in actions {
        if let Action::Persist(d) = a {
            p.apply(d);
        }
    }
    p
}

/// Found by the simulation's wrong-outlet fault (seed 1404): a fence
/// confirmed just before the arbiter stopped, survivors not told yet. The
/// restarted arbiter must still know the node is off, and which agent ran
/// on it, or that agent (never switched off) gets a lease back silently.
#[test]
fn a_confirmed_off_survives_an_arbiter_restart_before_the_commit() {
    let s = spec(3, QuorumMode::LastManStanding);
    let mut h = H::new(s.clone());
    h.run(ms(800), &ALL3);
    h.run(ms(600), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let mut log = h.take();
    let (intent, attempt) = first_fence(&log);
    // The device confirms "off" (a wrong outlet: node 3 runs on); the
    // arbiter stops before the commit, which waits out node 3's lease.
    log.extend(h.core.step(
        h.now,
        Event::FenceFinished {
            node: 3,
            intent,
            level: 0,
            attempt,
            outcome: LevelOutcome::ConfirmedOff,
        },
    ));
    let store = stored(&Persisted::default(), &log);
    assert_eq!(store.backed, [1, 2, 3].into(), "not committed yet");
    assert_eq!(
        store.off,
        [(3, 3)].into(),
        "off, with the instance that ran"
    );

    // Restarted: node 3's same agent instance speaks again.
    let mut h = H::with(s.clone(), store.clone(), None);
    h.run(ms(1500), &[(1, &[2]), (2, &[1]), (3, &[])]);
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Notice(Notice::AliveAfterOff { node: 3, .. }))),
        "{out:?}"
    );
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::Ack {
            node: 3,
            lease: Some(_),
            ..
        }
    )));
    // The survivors keep their leases; they do not take over from a node
    // proven alive: no new epoch until an operator acts.
    assert!(fences(&out).is_empty(), "{out:?}");
    let store = stored(&store, &out);
    assert_eq!(store.backed, [1, 2, 3].into());
    assert!(leased(&out, 1) && leased(&out, 2));

    // Cleared by an operator: durable, so another restart raises nothing.
    let cleared = h.core.step(h.now, Event::Clear { node: 3 });
    assert!(cleared.contains(&Action::Persist(Delta::AlertCleared { node: 3 })));
    let store = stored(&store, &cleared);
    assert!(store.off.is_empty());
    let mut h = H::with(s, store, None);
    h.run(ms(1500), &ALL3);
    assert!(
        !h.take()
            .iter()
            .any(|a| matches!(a, Action::Notice(Notice::AliveAfterOff { .. })))
    );
}

/// A heartbeat on a session that is not the node's current one is dropped
/// whatever it reports (it may name a node a new configuration removed):
/// refusing it would refuse a well-behaved agent.
#[test]
fn a_stale_session_naming_an_unknown_node_is_dropped_not_refused() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding));
    h.run(ms(800), &ALL3);
    let out = h.core.step(
        h.now,
        Event::Heartbeat {
            node: 2,
            session: 999,
            seq: 50,
            sent_at_us: 0,
            reachable: vec![1, 3, 4],
            heuristics: 0,
            known_epoch: 0,
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
        },
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Refuse { .. })),
        "{out:?}"
    );
}
