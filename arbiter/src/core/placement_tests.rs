//! Resource groups through the whole core: placement follows the verdict,
//! a start waits for the previous holder's confirmed fence or acknowledged
//! stop, a failed stop gets its node fenced.

use super::test_support::*;
use super::*;

/// Three nodes, LMS, one fence level, a group `web` preferring 3, then 1, 2.
fn with_web(failback: bool, persisted: Persisted, mutant: Option<Mutant>) -> H {
    let mut spec = spec_levels(3, QuorumMode::LastManStanding, 1);
    spec.groups = vec![GroupSpec {
        name: "web".into(),
        nodes: vec![3, 1, 2],
        failback,
    }];
    H::with(spec, persisted, mutant)
}

/// The `web` grant in the last ack to `node`: `None` not placed there,
/// `Some(start)` placed.
fn grant(h: &H, node: NodeId) -> Option<bool> {
    h.log.iter().rev().find_map(|(_, a)| match a {
        Action::Ack {
            node: n, grants, ..
        } if *n == node => Some(grants.iter().find(|g| g.group == "web").map(|g| g.start)),
        _ => None,
    })?
}

fn running(h: &mut H, node: NodeId) {
    h.group_states
        .insert(node, vec![("web".into(), RunState::Running)]);
}

/// Up and running on node 3, all three reaching each other.
fn web_on_3(mutant: Option<Mutant>) -> H {
    let mut h = with_web(false, Persisted::default(), mutant);
    h.run(ms(1000), &ALL3);
    assert_eq!(grant(&h, 3), Some(true), "web starts on its preferred node");
    assert_eq!(grant(&h, 1), None);
    running(&mut h, 3);
    h.run(ms(300), &ALL3);
    assert_eq!(h.core.status().groups[0].state, "running");
    h
}

#[test]
fn a_group_starts_on_a_survivor_only_after_its_holder_is_confirmed_off() {
    let mut h = web_on_3(None);
    // Node 3 falls silent: it is fenced, and web is placed on node 1 at
    // once, but may not start there until the fence is confirmed.
    until_fence_of_3(&mut h);
    h.run(ms(150), &TWO);
    assert_eq!(grant(&h, 1), Some(false), "placed on 1, waiting for 3");
    assert_eq!(h.core.status().groups[0].waiting_for, BTreeSet::from([3]));
    h.confirm_off(3);
    h.run(ms(400), &TWO);
    assert_eq!(grant(&h, 1), Some(true), "starts once 3 is off");
    assert_eq!(h.store.groups["web"].possible, BTreeSet::from([1]));
}

#[test]
fn the_planted_start_before_stopped_is_caught_by_this_test() {
    let mut h = web_on_3(Some(Mutant::StartBeforeStopped));
    until_fence_of_3(&mut h);
    h.run(ms(150), &TWO);
    assert_eq!(
        grant(&h, 1),
        Some(true),
        "the planted bug starts web on 1 while 3 may still run it"
    );
}

#[test]
fn a_move_waits_for_the_old_holder_to_acknowledge_its_stop() {
    let mut h = web_on_3(None);
    assert!(h.core.check_move("web", 1).is_ok());
    assert!(h.core.check_move("web", 9).is_err());
    assert!(
        h.core
            .check_move("nosuch", 1)
            .unwrap_err()
            .contains("no group")
    );
    h.step(Event::Move {
        group: "web".into(),
        node: 1,
    });
    h.run(ms(300), &ALL3);
    assert_eq!(grant(&h, 3), None, "withdrawn from 3");
    assert_eq!(grant(&h, 1), Some(false), "node 3 still runs it");
    // Node 3 stops it and says so: node 1 may start.
    h.group_states.remove(&3);
    h.run(ms(300), &ALL3);
    assert_eq!(grant(&h, 1), Some(true));
    assert!(h.fences().is_empty(), "a graceful move fences nobody");
}

#[test]
fn a_stopped_report_from_before_the_withdrawal_frees_nobody() {
    let mut h = web_on_3(None);
    h.step(Event::Move {
        group: "web".into(),
        node: 1,
    });
    // A heartbeat that applied only acks from before the move, saying
    // stopped (say, a start not begun yet): no acknowledgement.
    h.group_states.remove(&3);
    let seq = h.seq[&3];
    h.seq.insert(3, seq); // the next heartbeat reports ack `seq` applied
    h.heartbeat(3, &[1, 2]);
    h.heartbeat(1, &[2, 3]);
    assert_eq!(
        grant(&h, 1),
        Some(false),
        "the withdrawal was sent with the ack of heartbeat {}; a report of ack {seq} does not acknowledge it",
        seq + 1
    );
}

#[test]
fn a_failed_stop_gets_its_node_fenced_and_the_group_waits_for_the_fence() {
    let mut h = web_on_3(None);
    h.step(Event::Move {
        group: "web".into(),
        node: 1,
    });
    h.run(ms(200), &ALL3);
    h.group_states
        .insert(3, vec![("web".into(), RunState::StopFailed)]);
    // Node 3 still heartbeats and reaches everyone, but cannot be trusted.
    for _ in 0..300 {
        if h.fence_of(3).is_some() {
            break;
        }
        h.run(ms(10), &ALL3);
    }
    assert!(h.fence_of(3).is_some(), "node 3 is fenced");
    assert_eq!(grant(&h, 1), Some(false), "web waits for the fence");
    assert_eq!(grant(&h, 3), None);
    h.confirm_off(3);
    h.run(ms(800), &TWO);
    assert_eq!(grant(&h, 1), Some(true));
    assert_eq!(
        h.fences().iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![3],
        "only node 3"
    );
}

#[test]
fn a_restarted_arbiter_waits_for_the_stored_runner() {
    let mut h = web_on_3(None);
    // The arbiter restarts; node 3 is gone silent meanwhile.
    h.restart(&[1, 2]);
    h.run(ms(800), &TWO);
    assert_eq!(
        h.store.groups["web"].possible,
        BTreeSet::from([3]),
        "the store still names node 3"
    );
    assert_ne!(grant(&h, 1), Some(true), "no start while 3 may run it");
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(500), &TWO);
    assert_eq!(grant(&h, 1), Some(true));
}

#[test]
fn on_a_store_without_history_a_group_waits_for_every_allowed_node() {
    // A first start (or a lost store): web may run anywhere. Node 2 is
    // down; nodes 1 and 3 report nothing running. Nothing starts until
    // node 2 has reported too (it is no member: it is not fenced).
    let mut h = with_web(false, Persisted::default(), None);
    h.run(ms(3000), &[(1, &[3]), (3, &[1])]);
    assert_ne!(grant(&h, 3), Some(true));
    assert_eq!(h.core.status().groups[0].waiting_for, BTreeSet::from([2]));
    h.run(ms(500), &ALL3);
    assert_eq!(grant(&h, 3), Some(true));
}

#[test]
fn a_group_added_to_a_cluster_with_history_starts_at_once() {
    let mut h = web_on_3(None);
    let mut store = h.store.clone();
    store.groups.clear(); // as if web were new in the configuration
    let spec = h.spec.clone();
    h = H::with(spec, store, None);
    h.run(ms(1500), &[(3, &[1]), (1, &[3])]);
    assert_eq!(
        grant(&h, 3),
        Some(true),
        "no agent was ever told to start it"
    );
}

#[test]
fn failback_moves_a_group_home_and_without_it_the_group_stays() {
    for failback in [false, true] {
        let mut h = with_web(failback, Persisted::default(), None);
        h.run(ms(1000), &ALL3);
        running(&mut h, 3);
        until_fence_of_3(&mut h);
        h.confirm_off(3);
        h.run(ms(800), &TWO);
        assert_eq!(grant(&h, 1), Some(true), "failback {failback}");
        running(&mut h, 1);
        h.group_states.remove(&3);
        // Node 3 reboots and rejoins.
        h.connect(3, 33, 333);
        h.run(ms(2500), &ALL3);
        let holder = h.core.status().groups[0].holder;
        if failback {
            assert_eq!(holder, Some(3), "failback moves it home");
            assert_eq!(grant(&h, 1), None);
        } else {
            assert_eq!(holder, Some(1), "it stays where it runs");
        }
    }
}

#[test]
fn a_removed_node_recorded_off_runs_no_group_and_one_that_may_still_run_holds_it() {
    for recorded_off in [true, false] {
        let mut h = web_on_3(None);
        let mut store = h.store.clone();
        if recorded_off {
            store.gone.insert(3);
        }
        let mut spec = h.spec.clone();
        spec.nodes.remove(&3);
        spec.groups[0].nodes = vec![1, 2];
        h = H::with(spec, store, None);
        h.run(ms(1500), &TWO);
        let notices: Vec<String> = h
            .notices()
            .iter()
            .filter_map(|n| match n {
                Notice::ConfigChanged { detail } => Some(detail.clone()),
                _ => None,
            })
            .collect();
        if recorded_off {
            assert_eq!(grant(&h, 1), Some(true), "{notices:?}");
        } else {
            assert_eq!(grant(&h, 1), Some(false), "node 3 may still run web");
            assert!(
                notices
                    .iter()
                    .any(|d| d.contains("may still run resource groups")),
                "{notices:?}"
            );
        }
    }
}
