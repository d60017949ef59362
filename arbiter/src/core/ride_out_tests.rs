//! With `ride_out`, agents may extend their leases on the whole mesh while
//! no arbiter grants one: every wait for a node's lease to end allows for
//! it, cut short once a peer acknowledged the node's fence (the peer then
//! answers that node's probes "fence known", so the ride stops within a
//! lease).

use super::test_support::*;
use super::*;

const RIDE: Duration = Duration::from_secs(2);

fn riding(mutant: Option<Mutant>, watchdog: bool) -> H {
    let mut spec = spec_levels(3, QuorumMode::LastManStanding, if watchdog { 2 } else { 1 });
    spec.timing.ride_out = RIDE;
    if watchdog {
        spec.nodes.get_mut(&3).expect("node 3").watchdog_level = Some(1);
    }
    let mut h = H::with_mutant(spec, Persisted::default(), mutant);
    for id in 1..=3 {
        h.boot.insert(id, 0xb0 + u64::from(id));
        h.connect(id, u64::from(id), u64::from(id));
    }
    // A first start: no agent the store knows of, so any may be riding a
    // lease of a life the store lost: the first leases wait the ride out.
    h.run(ms(800), &ALL3);
    assert!(h.grants(1).is_empty() || mutant.is_some());
    h.run(RIDE, &ALL3);
    assert!(!h.grants(1).is_empty());
    h
}

/// Run the nodes of `reach` until `node`'s fence starts.
fn until_fence_of(h: &mut H, node: NodeId, reach: &[(NodeId, &[NodeId])]) {
    for _ in 0..300 {
        if h.fence_of(node).is_some() {
            return;
        }
        h.run(ms(10), reach);
    }
    panic!("node {node} was never fenced");
}

/// When `node` was first granted a lease after `t`.
fn first_grant_after(h: &H, node: NodeId, t: Duration) -> Duration {
    h.grants(node)
        .into_iter()
        .find(|&g| g > t)
        .unwrap_or_else(|| panic!("node {node} leased again after {t:?}"))
}

/// The acks sent to `node` name `leaving` as leaving.
fn told_leaving(h: &H, node: NodeId, leaving: NodeId) -> Vec<Duration> {
    h.log
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Ack {
                node: n,
                leaving: l,
                ..
            } if *n == node && l.contains(&leaving) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn survivors_take_over_a_lease_later_once_a_peer_knows_of_the_fence() {
    let mut h = riding(None, false);
    let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(1_500), &TWO);
    let told = told_leaving(&h, 1, 3)[0];
    let gone = h.announces_gone(3)[0];
    let t = h.spec.timing;
    // Node 1's next heartbeat after the ack that told it (100 ms later)
    // proves it knows; node 3 rides no lease past one more lease.
    assert!(
        gone >= told + ms(100) + t.lease_max() + t.stall_after(),
        "survivors waited for the ride to stop: told {told:?}, gone {gone:?}"
    );
    assert!(
        gone < last_grant + RIDE,
        "...not for the whole ride-out: gone {gone:?}, last grant {last_grant:?}"
    );
}

#[test]
fn without_word_from_a_peer_survivors_wait_out_the_whole_ride() {
    let mut h = riding(None, false);
    h.acks_untold = [1, 2, 3].into();
    let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(3_000), &TWO);
    let gone = h.announces_gone(3)[0];
    assert!(
        gone >= last_grant + h.spec.timing.ride_out_max(),
        "gone {gone:?} before the ride could end ({:?})",
        last_grant + h.spec.timing.ride_out_max()
    );
    // The planted bug: the ride-out forgotten.
    let mut h = riding(Some(Mutant::IgnoreRideOut), false);
    h.acks_untold = [1, 2, 3].into();
    let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(3_000), &TWO);
    assert!(h.announces_gone(3)[0] < last_grant + RIDE);
}

#[test]
fn the_watchdog_rule_waits_out_the_ride_unless_a_peer_knows() {
    for untold in [true, false] {
        let mut h = riding(None, true);
        h.acks_untold = if untold {
            [1, 2, 3].into()
        } else {
            BTreeSet::new()
        };
        let session = h.session[&3];
        h.step(Event::Watchdog {
            node: 3,
            session,
            timeout: Some(Duration::from_secs(1)),
        });
        h.run(ms(300), &ALL3);
        let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
        until_fence_of_3(&mut h);
        // The device fails some time later (as a timeout would): by then
        // the peers have heard of the fence, unless they never tell.
        h.run(ms(400), &TWO);
        h.level_done(3, LevelOutcome::Failed("BMC unreachable".into()));
        h.run(ms(100), &TWO);
        let until = h
            .notices()
            .into_iter()
            .find_map(|n| match n {
                Notice::WatchdogWait { node: 3, until, .. } => Some(*until),
                _ => None,
            })
            .expect("the watchdog level runs");
        let t = h.spec.timing;
        let wd = Duration::from_secs(1) + t.watchdog_margin(Duration::from_secs(1));
        if untold {
            assert_eq!(until, last_grant + t.ride_out_max() + wd);
        } else {
            assert!(until < last_grant + t.ride_out_max() + wd, "{until:?}");
            assert!(until > last_grant + wd, "{until:?}");
        }
    }
}

#[test]
fn another_instance_of_a_node_waits_out_a_ride_the_last_may_be_on() {
    let mut h = riding(None, false);
    let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    // The same process on a new session: no wait.
    h.connect(3, 30, 3);
    h.run(ms(200), &ALL3);
    let regrant = *h.grants(3).last().expect("granted");
    assert!(regrant < last_grant + ms(200));
    // Another process: not before the ride of the last one surely ended.
    let bound = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    h.connect(3, 31, 33);
    h.run(ms(3_000), &ALL3);
    let first = h
        .grants(3)
        .into_iter()
        .find(|&t| t > regrant + ms(150))
        .expect("granted in the end");
    assert!(
        first >= bound + h.spec.timing.ride_out_max(),
        "{first:?} < {:?}",
        bound + h.spec.timing.ride_out_max()
    );
}

#[test]
fn a_new_life_lets_the_instance_it_knew_go_on_and_makes_another_wait() {
    let mut h = riding(None, false);
    h.run(ms(200), &ALL3);
    h.take();
    // The arbiter restarts (a handover): nodes 1 and 2 come back as the
    // same processes, node 3 as another one.
    h.core = ArbiterCore::with_mutant(h.spec.clone(), h.store.clone(), h.now, None);
    let restart = h.now;
    h.connect(1, 101, 1);
    h.connect(2, 102, 2);
    h.connect(3, 103, 33);
    let acks = h.take();
    assert!(
        !acks.iter().any(|a| matches!(a, Action::Ack { .. })),
        "nothing acked before a heartbeat"
    );
    h.run(ms(100), &ALL3);
    // In the grace: no lease, and the arbiter says it is undecided (a
    // ridden lease stands).
    assert!(h.take().iter().any(|a| matches!(
        a,
        Action::Ack {
            lease: None,
            undecided: true,
            ..
        }
    )));
    h.run(ms(2_900), &ALL3);
    let first = |h: &H, n| {
        h.grants(n)
            .into_iter()
            .find(|&t| t > restart)
            .expect("granted")
    };
    let grace = h.spec.timing.lease_max() + h.spec.timing.stall_after();
    assert!(first(&h, 1) < restart + grace + ms(200));
    assert!(first(&h, 2) < restart + grace + ms(200));
    assert!(
        first(&h, 3) >= restart + grace + h.spec.timing.ride_out_max(),
        "another instance of node 3 waits out the ride of the one the last life knew"
    );
}

/// Only the word of a peer the ride rests on stops it: a node outside the
/// survivor set of the lease (here a fenced node back, joining) is never
/// asked by the rider, so its knowing the fence stops nothing.
#[test]
fn only_a_peer_the_ride_rests_on_cuts_it_short() {
    let mut h = riding(None, false);
    // Node 2 is fenced and comes back rebooted, cut from its peers: it
    // stays joining, out of the backed set.
    let two: [(NodeId, &[NodeId]); 2] = [(1, &[3]), (3, &[1])];
    until_fence_of(&mut h, 2, &two);
    h.confirm_off(2);
    h.run(ms(3_000), &two);
    assert!(!h.announces_gone(2).is_empty(), "node 2 gone");
    h.boot.insert(2, 0xb22);
    h.connect(2, 20, 22);
    let with_2: [(NodeId, &[NodeId]); 3] = [(1, &[3]), (3, &[1]), (2, &[])];
    h.run(ms(500), &with_2);
    assert_eq!(h.core.nodes[&2].phase.name(), "joining");
    // Node 3 falls silent; node 1 never says it heard of the fence, node
    // 2 (joining) does.
    h.acks_untold = [1].into();
    let last_grant = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    let one_and_2: [(NodeId, &[NodeId]); 2] = [(1, &[]), (2, &[])];
    until_fence_of(&mut h, 3, &one_and_2);
    h.confirm_off(3);
    h.run(ms(3_000), &one_and_2);
    assert!(!told_leaving(&h, 2, 3).is_empty(), "node 2 was told");
    let gone = h.announces_gone(3)[0];
    assert!(
        gone >= last_grant + h.spec.timing.ride_out_max(),
        "gone {gone:?}: node 2's word cut the ride of node 3 short"
    );
}

/// A grant under a larger backed set (a node admitted) that the agent has
/// not confirmed receiving: it may still ride the lease of the grant
/// before, which rests on the old set only, so the admitted node's word
/// stops nothing.
#[test]
fn an_admitted_node_does_not_cut_a_ride_on_a_grant_from_before_its_admission() {
    let mut h = riding(None, false);
    // Node 2 is fenced, comes back rebooted and is admitted again.
    let two: [(NodeId, &[NodeId]); 2] = [(1, &[3]), (3, &[1])];
    until_fence_of(&mut h, 2, &two);
    h.confirm_off(2);
    h.run(ms(3_000), &two);
    assert!(!h.announces_gone(2).is_empty(), "node 2 gone");
    let epoch_without_2 = h.core.epoch();
    // From here node 1's agent receives no grant it confirms, and node 3
    // never tells either: only node 2, admitted, will.
    h.acks_untold = [1, 3].into();
    h.boot.insert(2, 0xb22);
    h.connect(2, 20, 22);
    for _ in 0..500 {
        if h.core.epoch() > epoch_without_2 {
            break;
        }
        h.run(ms(10), &ALL3);
    }
    assert!(h.core.epoch() > epoch_without_2, "node 2 admitted");
    assert_eq!(h.core.status().backed, [1, 2, 3].into());
    h.run(ms(300), &ALL3);
    let last_grant = h.core.nodes[&1].lease_bound.expect("1 held a lease");
    // Node 1 falls silent.
    let others: [(NodeId, &[NodeId]); 2] = [(2, &[3]), (3, &[2])];
    until_fence_of(&mut h, 1, &others);
    h.confirm_off(1);
    h.run(ms(3_000), &others);
    assert!(!told_leaving(&h, 2, 1).is_empty(), "node 2 was told");
    let gone = h.announces_gone(1)[0];
    assert!(
        gone >= last_grant + h.spec.timing.ride_out_max(),
        "gone {gone:?}: node 2's word cut short a ride that may rest on the grant before its admission"
    );
}

/// Soak seed 82587: the arbiter restarts with a configuration that no
/// longer has node 3 (still running). Its removal leaves the backed set
/// without a new epoch, so nodes 1 and 2 may still ride leases of the
/// earlier life under the old set {1, 2, 3}: nothing is granted under the
/// new one, {1, 2}, before every such ride has ended.
#[test]
fn a_member_removed_at_a_restart_waits_out_the_earlier_life_s_rides() {
    for mutant in [None, Some(Mutant::GrantAtOnceAfterRemoval)] {
        let mut h = riding(mutant, false);
        h.spec.nodes.remove(&3);
        h.restart(&[1, 2]);
        let restarted = h.now;
        h.run(RIDE + Duration::from_secs(1), &TWO);
        let t = h.spec.timing;
        let first = first_grant_after(&h, 1, restarted);
        let rides_end = restarted + t.lease_max() + t.stall_after() + t.ride_out_max();
        match mutant {
            None => assert!(
                first >= rides_end,
                "granted at {first:?}, before the earlier life's rides end ({rides_end:?})"
            ),
            Some(_) => assert!(first < rides_end, "the planted bug shows: {first:?}"),
        }
    }
}

/// Review of the fix above: a stall (or a clock jump) during that longer
/// grace moves its end with the gap, as it moves every lease bound, instead
/// of cutting it back to a plain grace.
#[test]
fn a_stall_in_the_grace_after_a_removal_keeps_the_rides_waited_out() {
    let mut h = riding(None, false);
    h.spec.nodes.remove(&3);
    h.restart(&[1, 2]);
    let restarted = h.now;
    h.run(ms(300), &TWO);
    let gap = ms(400);
    h.now += gap;
    h.run(RIDE + Duration::from_secs(1), &TWO);
    let t = h.spec.timing;
    let first = first_grant_after(&h, 1, restarted);
    let rides_end = restarted + t.lease_max() + t.stall_after() + t.ride_out_max() + gap;
    assert!(
        first >= rides_end,
        "granted at {first:?}, before the earlier life's rides end ({rides_end:?})"
    );
}

/// Review of the fix above: the removal is written to the store once the
/// rides are waited out, so a later start knows the smaller set (no longer
/// grace) and a node configured again joins under a new epoch: it never
/// gets a lease naming the old set beside its peers' under the new one.
#[test]
fn a_removal_is_stored_once_waited_out_and_a_node_configured_again_joins_anew() {
    let mut h = riding(None, false);
    let epoch = h.core.epoch;
    let full = h.spec.clone();
    h.spec.nodes.remove(&3);
    h.restart(&[1, 2]);
    assert!(
        h.store.backed.contains(&3),
        "not before the rides are waited out"
    );
    h.run(RIDE + Duration::from_secs(1), &TWO);
    assert!(!h.store.backed.contains(&3), "{:?}", h.store.backed);
    assert_eq!(h.store.epoch, epoch);
    // Configured again: a plain grace, and node 3 joins with a new epoch.
    h.spec = full;
    h.restart(&[1, 2, 3]);
    let restarted = h.now;
    h.run(Duration::from_secs(3), &ALL3);
    let acks_to_3: Vec<u64> = h
        .log
        .iter()
        .filter(|(t, _)| *t > restarted)
        .filter_map(|(_, a)| match a {
            Action::Ack {
                node: 3,
                lease: Some(_),
                epoch,
                ..
            } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert!(!acks_to_3.is_empty(), "node 3 joined");
    assert!(
        acks_to_3.iter().all(|&e| e > epoch),
        "node 3 leased under the epoch its peers hold without it: {acks_to_3:?}"
    );
}
