//! The operator's controls (`operator.rs`): each rule, and the bug each
//! test would catch.

use super::test_support::*;
use super::*;

/// The operator confirms `node` off; its agent's stream has closed (a
/// node that lost power: the arbiter's keepalive ends its session).
fn confirm(h: &mut H, node: NodeId) -> Vec<Action> {
    if let Some(&session) = h.session.get(&node) {
        h.step(Event::Disconnected { node, session });
    }
    control(h, Control::Confirm { node })
}

fn operator_records(h: &H) -> Vec<(&'static str, Option<NodeId>)> {
    h.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Persist(Delta::Operator { action, node, .. }) => Some((*action, *node)),
            _ => None,
        })
        .collect()
}

fn confirmed_by(h: &H, node: NodeId) -> Option<Option<String>> {
    h.log.iter().find_map(|(_, a)| match a {
        Action::Persist(Delta::FenceConfirmed {
            node: n, operator, ..
        }) if *n == node => Some(operator.clone()),
        _ => None,
    })
}

/// Node 3 is healthy; an operator fences it. The history first, then the
/// intent (with who and why), then the device; no lease to it from that
/// step on; the survivors hear it gone only once the fence is confirmed
/// and its lease has ended.
#[test]
fn a_manual_fence_persists_its_intent_first_and_commits_only_after_the_confirmation() {
    let mut h = three_with_boots(None);
    h.run(ms(400), &ALL3);
    assert!(!h.grants(3).is_empty());
    let at = h.log.len();
    let out = fence(&mut h, 3);
    let kinds: Vec<&str> = out
        .iter()
        .map(|a| match a {
            Action::Persist(Delta::Operator { .. }) => "operator",
            Action::Persist(Delta::FenceIntent { .. }) => "intent",
            Action::Fence { .. } => "fence",
            _ => "other",
        })
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(kinds, ["operator", "intent", "fence"]);
    assert!(out.iter().any(|a| matches!(a,
        Action::Persist(Delta::FenceIntent { node: 3, reason, .. })
            if reason.contains("manual") && reason.contains("alice") && reason.contains("disk controller"))));
    // Node 3 keeps heartbeating (it is healthy): no lease any more.
    h.run(ms(300), &ALL3);
    let later: Vec<Duration> = h
        .grants(3)
        .into_iter()
        .filter(|t| *t > h.log[at].0)
        .collect();
    assert!(later.is_empty(), "leases to a node being fenced: {later:?}");
    assert!(
        h.announces_gone(3).is_empty(),
        "gone before any confirmation"
    );
    let lease_end = h
        .core
        .node(3)
        .and_then(|v| v.lease_bound)
        .expect("a lease bound");
    h.confirm_off(3);
    h.run(ms(1500), &TWO);
    let gone = h.announces_gone(3);
    assert!(!gone.is_empty(), "never announced gone");
    assert!(
        gone[0] >= lease_end,
        "announced at {:?}, its lease ran to {lease_end:?}",
        gone[0]
    );
    assert_eq!(
        confirmed_by(&h, 3),
        Some(None),
        "a device confirmed this one"
    );
    assert_eq!(operator_records(&h), [("fence", Some(3))]);
}

/// A fence that would leave a quorate cluster without quorum is refused
/// (every node would lose its lease); one that leaves it quorate is not.
#[test]
fn a_manual_fence_that_would_end_quorum_is_refused() {
    let mut spec = spec_levels(3, QuorumMode::TieBreaker, 1);
    spec.storm_limit = 3;
    let mut h = H::new(spec);
    h.run(ms(800), &ALL3);
    // Node 3 fails and is fenced: {1, 2} with the arbiter's vote (3 of 4).
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(1500), &TWO);
    assert!(!h.announces_gone(3).is_empty());
    let why = h
        .core
        .check_control(
            h.now,
            &Control::Fence {
                node: 2,
                reason: String::new(),
            },
        )
        .expect_err("refused");
    assert!(why.contains("without quorum"), "{why}");
    let out = fence(&mut h, 2);
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Fence { node: 2, .. }))
    );
    assert!(
        operator_records(&h).is_empty(),
        "a refused control is no history"
    );
    // In a healthy three-node cluster (LMS) fencing one is allowed.
    let mut h = three_with_boots(None);
    assert!(
        h.core
            .check_control(
                h.now,
                &Control::Fence {
                    node: 2,
                    reason: String::new()
                }
            )
            .is_ok()
    );
    let out = fence(&mut h, 2);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Fence { node: 2, .. }))
    );
    // Twice is refused: it is already being fenced.
    assert!(
        h.core
            .check_control(
                h.now,
                &Control::Fence {
                    node: 2,
                    reason: String::new()
                }
            )
            .is_err()
    );
}

/// Node 3 fails with its BMC (every round fails). The job shows since
/// when, the rounds and the last error per level; the operator confirms it
/// off: the fence ends, the confirmation names the operator, the survivors
/// take over after its lease, and the intent is closed in the store.
#[test]
fn confirm_ends_a_fence_that_keeps_failing() {
    let mut h = three_with_boots(None);
    until_fence_of_3(&mut h);
    let started = h.now;
    for _ in 0..3 {
        h.level_done(3, LevelOutcome::Failed("BMC unreachable".into()));
        h.run(ms(1200), &TWO);
    }
    let Some(Phase::Leaving(job)) = h.core.node(3).map(|v| v.phase.clone()) else {
        panic!("node 3 is not being fenced");
    };
    assert!(job.rounds_failed >= 2, "rounds {}", job.rounds_failed);
    assert!(job.since <= started);
    assert_eq!(job.errors[0].as_deref(), Some("BMC unreachable"));
    assert!(job.last_failure.is_some());
    assert!(h.notices().iter().any(|n| matches!(
        n,
        Notice::FenceRoundFailed {
            node: 3,
            rounds: 1,
            ..
        }
    )));
    assert!(h.announces_gone(3).is_empty());
    let intent = job.intent;
    confirm(&mut h, 3);
    assert_eq!(confirmed_by(&h, 3), Some(Some(BY.to_string())));
    assert!(
        !h.store.open_intents.contains_key(&3),
        "the intent stays open"
    );
    assert_eq!(
        h.store.off.get(&3),
        Some(&3),
        "the agent that ran is recorded off"
    );
    // A late result of the level that was running changes nothing.
    h.level_done(3, LevelOutcome::Failed("late".into()));
    h.run(ms(1000), &TWO);
    assert!(
        !h.announces_gone(3).is_empty(),
        "the survivors never took over"
    );
    assert!(
        !h.log
            .iter()
            .any(|(_, a)| matches!(a, Action::Fence { node: 3, intent: i, .. } if *i != intent))
    );
}

/// A node that speaks is not off: confirm is refused (a manual fence of a
/// healthy node, say, cannot be cut short by a hasty confirmation).
#[test]
fn confirm_is_refused_while_the_node_speaks() {
    let mut h = three_with_boots(None);
    fence(&mut h, 3);
    h.run(ms(200), &ALL3);
    // Its last heartbeat was 50 ms ago.
    h.run(ms(50), &[]);
    let why = h
        .core
        .check_control(h.now, &Control::Confirm { node: 3 })
        .expect_err("refused");
    assert!(why.contains("heard"), "{why}");
    confirm(&mut h, 3);
    assert_eq!(confirmed_by(&h, 3), None);
    assert!(matches!(
        h.core.node(3).map(|v| &v.phase),
        Some(Phase::Leaving(_))
    ));
}

/// The agent that ran when the operator confirmed the node off speaks
/// again: the confirmation was wrong, and that is the alive-after-off
/// alert (no lease for it), as after a device that lied.
#[test]
fn a_node_confirmed_off_by_hand_that_speaks_again_is_alive_after_off() {
    let mut h = three_with_boots(None);
    until_fence_of_3(&mut h);
    h.level_done(3, LevelOutcome::Failed("BMC unreachable".into()));
    h.run(ms(1000), &TWO);
    confirm(&mut h, 3);
    h.run(ms(1000), &TWO);
    // The same agent (session 3, instance 3, boot 0xb3) speaks again.
    h.connect(3, 3, 3);
    h.run(ms(500), &ALL3);
    assert!(
        alerted(&h, 3),
        "no alert for a node confirmed off that speaks"
    );
    assert!(
        h.grants(3).iter().all(|t| *t < ms(800) + ms(100)),
        "a lease after the alert"
    );
}

/// A member silent, not being fenced (a maintenance hold, say): confirm
/// records it off with an intent of its own and the transition commits.
#[test]
fn confirm_of_a_silent_member_not_being_fenced_commits() {
    let mut h = three_with_boots(None);
    control(
        &mut h,
        Control::Maintenance {
            node: Some(3),
            on: true,
        },
    );
    h.run(ms(3000), &TWO);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    confirm(&mut h, 3);
    let intent = h.log.iter().find_map(|(_, a)| match a {
        Action::Persist(Delta::FenceIntent {
            node: 3, reason, ..
        }) => Some(reason.clone()),
        _ => None,
    });
    assert!(intent.is_some_and(|r| r.contains("confirmed off by an operator")));
    h.run(ms(1000), &TWO);
    assert!(!h.announces_gone(3).is_empty());
    assert!(h.fence_of(3).is_none(), "no device was run");
}

/// Maintenance of node 3: silent, it is reported, not fenced, and the
/// transition waits (the survivors keep their leases); the state survives
/// a restart; maintenance off fences it.
#[test]
fn maintenance_reports_a_node_leaving_and_fences_nobody_until_it_ends() {
    let mut h = three_with_boots(None);
    control(
        &mut h,
        Control::Maintenance {
            node: Some(3),
            on: true,
        },
    );
    assert!(h.store.maintenance.contains(&3));
    h.run(ms(3000), &TWO);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::MaintenanceHold { nodes } if nodes.contains(&3)))
    );
    assert!(h.announces_gone(3).is_empty());
    let recent = |h: &H, n: NodeId| h.grants(n).into_iter().any(|t| t + ms(200) >= h.now);
    assert!(
        recent(&h, 1) && recent(&h, 2),
        "survivors lost their leases"
    );
    h.restart(&[1, 2]);
    h.run(ms(4000), &TWO);
    assert!(
        h.fence_of(3).is_none(),
        "fenced after a restart in maintenance"
    );
    control(
        &mut h,
        Control::Maintenance {
            node: Some(3),
            on: false,
        },
    );
    h.run(ms(1000), &TWO);
    assert!(h.fence_of(3).is_some(), "not fenced once maintenance ended");
}

/// The whole cluster in maintenance: nobody is fenced.
#[test]
fn cluster_maintenance_fences_nobody() {
    let mut h = three_with_boots(None);
    control(
        &mut h,
        Control::Maintenance {
            node: None,
            on: true,
        },
    );
    assert!(h.store.maintenance_all);
    h.run(ms(3000), &TWO);
    assert!(h.fence_of(3).is_none());
    control(
        &mut h,
        Control::Maintenance {
            node: None,
            on: false,
        },
    );
    h.run(ms(1000), &TWO);
    assert!(h.fence_of(3).is_some());
}

/// Unfence powers on a fenced node only.
#[test]
fn unfence_powers_on_a_fenced_node_only() {
    let mut h = three_with_boots(None);
    assert!(
        h.core
            .check_control(h.now, &Control::Unfence { node: 3 })
            .is_err()
    );
    let out = control(&mut h, Control::Unfence { node: 3 });
    assert!(!out.iter().any(|a| matches!(a, Action::PowerOn { .. })));
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(1000), &TWO);
    let out = control(&mut h, Control::Unfence { node: 3 });
    assert!(out.iter().any(|a| matches!(a, Action::PowerOn { node: 3 })));
    assert_eq!(operator_records(&h), [("unfence", Some(3))]);
}

/// Finding 4 of review 19, settled: node 4 ran `web` and was removed from
/// the configuration without being recorded off; `web` waits for it. The
/// operator, having powered it off, confirms it: `web` starts elsewhere.
#[test]
fn confirm_releases_the_groups_of_a_node_no_longer_configured() {
    let web = |n: u32, nodes: Vec<NodeId>| {
        let mut spec = spec_levels(n, QuorumMode::LastManStanding, 1);
        spec.groups = vec![GroupSpec {
            name: "web".into(),
            nodes,
            failback: false,
        }];
        spec
    };
    let all4: [(NodeId, &[NodeId]); 4] = [
        (1, &[2, 3, 4]),
        (2, &[1, 3, 4]),
        (3, &[1, 2, 4]),
        (4, &[1, 2, 3]),
    ];
    let mut h = H::with(web(4, vec![4, 1, 2]), Persisted::default(), None);
    h.run(ms(1000), &all4);
    h.group_states
        .insert(4, vec![("web".to_string(), RunState::Running)]);
    h.run(ms(300), &all4);
    let store = h.store.clone();
    let mut h = H::with(web(3, vec![1, 2]), store, None);
    h.run(ms(6000), &ALL3);
    let starts_on_1 = |h: &H| {
        h.log.iter().any(|(_, a)| {
            matches!(a, Action::Ack { node: 1, grants, .. } if grants.iter().any(|g| g.group == "web" && g.start))
        })
    };
    assert!(!starts_on_1(&h), "web started while node 4 may run it");
    assert!(
        h.core
            .check_control(h.now, &Control::Confirm { node: 9 })
            .is_err()
    );
    confirm(&mut h, 4);
    h.run(ms(1000), &ALL3);
    assert!(
        starts_on_1(&h),
        "web never starts: {:?}",
        h.core.status().groups
    );
    assert_eq!(confirmed_by(&h, 4), Some(Some(BY.to_string())));
}

/// A node in maintenance that was held out (its agent stopped for a
/// while, say for a planned reboot) comes back into the verdict once it
/// reaches every member again, gets a lease, and is never fenced, also
/// after maintenance ends.
#[test]
fn a_node_back_from_maintenance_rejoins_and_is_never_fenced() {
    let mut h = three_with_boots(None);
    control(
        &mut h,
        Control::Maintenance {
            node: Some(3),
            on: true,
        },
    );
    h.run(ms(3000), &TWO);
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::MaintenanceHold { nodes } if nodes.contains(&3)))
    );
    assert_eq!(h.core.status().verdict, Some([1, 2].into()));
    // Its agent is back (a new instance in a new boot: the reboot).
    h.boot.insert(3, 0xc3);
    h.connect(3, 30, 30);
    h.run(ms(3000), &ALL3);
    assert_eq!(h.core.status().verdict, Some([1, 2, 3].into()));
    let back = h.now;
    assert!(
        h.grants(3).iter().any(|t| *t + ms(1000) > back),
        "no lease after it came back"
    );
    control(
        &mut h,
        Control::Maintenance {
            node: Some(3),
            on: false,
        },
    );
    h.run(ms(2000), &ALL3);
    assert!(h.fence_of(3).is_none(), "fenced after it came back");
}

/// `awaits_level` answers for the run the job waits for only: the shell
/// drops a fence level it held back (behind an unfence's `on`) once the
/// core no longer awaits it, so its late `off` never hits a node the core
/// stopped fencing that way. A query that kept answering yes (for an old
/// attempt, an ended job) would let that `off` through.
#[test]
fn awaits_level_is_true_for_the_running_attempt_only() {
    let mut h = three_with_boots(None);
    until_fence_of_3(&mut h);
    let running = h.log.iter().rev().find_map(|(_, a)| match a {
        Action::Fence {
            node: 3,
            intent,
            attempt,
            ..
        } => Some((*intent, *attempt)),
        _ => None,
    });
    let (intent, attempt) = running.expect("a level of node 3 runs");
    assert!(h.core.awaits_level(3, intent, attempt));
    assert!(!h.core.awaits_level(3, intent + 1, attempt));
    assert!(!h.core.awaits_level(2, intent, attempt));
    // The level fails: the next one runs under a new attempt.
    h.level_done(3, LevelOutcome::Failed("BMC unreachable".into()));
    h.run(ms(50), &TWO);
    assert!(!h.core.awaits_level(3, intent, attempt), "an old attempt");
    // Confirmed by hand: the job ended, no attempt is awaited.
    confirm(&mut h, 3);
    let last = h.log.iter().rev().find_map(|(_, a)| match a {
        Action::Fence {
            node: 3, attempt, ..
        } => Some(*attempt),
        _ => None,
    });
    assert!(!h.core.awaits_level(3, intent, last.expect("a level ran")));
}
