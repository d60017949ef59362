//! Review 20 (helper): the operator's controls (`operator.rs`),
//! adversarially. Each test states a rule the controls must keep; each
//! failed on the code under review and passes since the fix (findings 1:
//! the quorum check counts only nodes still candidates; 2: a member held
//! out by maintenance is no incumbent and comes back only where it fits;
//! 3: confirm refused while a session is open or was opened within
//! `lost_after`).

use super::test_support::*;
use super::*;

const ALL4: [(NodeId, &[NodeId]); 4] = [
    (1, &[2, 3, 4]),
    (2, &[1, 3, 4]),
    (3, &[1, 2, 4]),
    (4, &[1, 2, 3]),
];

/// Finding 1. "A manual fence refused when it would end quorum": the check
/// counts the last verdict taken, and a verdict is not retaken while
/// decisions are held (start-up grace, a suspect node, a member pending, a
/// hold). Four nodes, tie-breaker (5 votes: 3 needed). Right after an
/// arbiter restart, the operator fences 4, then 3 — {1, 2} with the
/// arbiter is 3 of 5, still quorate — then 2: that leaves {1}, 2 of 5,
/// no quorum: every node loses its lease. The third must be refused.
#[test]
fn a_second_manual_fence_while_the_verdict_is_held_is_checked_against_the_nodes_left() {
    let mut spec = spec_levels(4, QuorumMode::TieBreaker, 1);
    spec.storm_limit = 4;
    let mut h = H::new(spec);
    h.run(ms(1500), &ALL4);
    assert_eq!(h.core.status().backed, [1, 2, 3, 4].into());
    h.restart(&[1, 2, 3, 4]);
    h.run(ms(100), &ALL4);
    assert!(h.core.status().in_grace);
    assert!(
        fence(&mut h, 4)
            .iter()
            .any(|a| matches!(a, Action::Fence { node: 4, .. }))
    );
    assert!(
        fence(&mut h, 3)
            .iter()
            .any(|a| matches!(a, Action::Fence { node: 3, .. }))
    );
    let third = h.core.check_control(
        h.now,
        &Control::Fence {
            node: 2,
            reason: String::new(),
        },
    );
    assert!(
        third.is_err(),
        "fencing 2 after 3 and 4 leaves node 1 alone without quorum, yet: {third:?}"
    );
}

/// Finding 2. A member in maintenance that the verdict leaves out stays a
/// candidate (and an incumbent), unlike a node being fenced: "Nodes being
/// fenced are not candidates, so a slow fence can never let a changed
/// heuristic or a second broken link flip the verdict to the other side."
/// Link 2–3 breaks; {1, 2} wins the tie, node 3 (in maintenance) is held,
/// not shot. Then node 3's heuristics rise: the verdict flips to {1, 3},
/// and node 2 — the survivor of that link, healthy — is fenced by the
/// automatic path, while node 3 gets a lease at once (node 2's still runs).
#[test]
fn a_maintenance_hold_never_flips_the_verdict_onto_the_survivor_of_the_broken_link() {
    let mut h = three_with_boots(None);
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    assert_eq!(h.core.status().verdict, Some([1, 2].into()));
    // Node 3's gateway check now passes (heuristics 5).
    h.heur.insert(3, 5);
    h.run(ms(2000), &cut);
    assert!(
        h.fence_of(2).is_none(),
        "node 2, healthy and the survivor of the broken link, fenced: verdict {:?}",
        h.core.status().verdict
    );
}

/// The planted bug `MaintenanceHeldStaysIncumbent` (finding 2 as it was)
/// is caught by the test above's scenario.
#[test]
fn the_maintenance_flip_is_caught_with_the_planted_bug() {
    let mut h = three_with_boots(Some(Mutant::MaintenanceHeldStaysIncumbent));
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    h.heur.insert(3, 5);
    h.run(ms(2000), &cut);
    assert!(h.fence_of(2).is_some(), "the planted bug went unseen");
}

/// Finding 2, its lease side: when the verdict flips onto the node in
/// maintenance, that node (cut off from node 2) gets a lease at once,
/// while node 2 — outside the verdict now, being fenced — still holds the
/// lease it was granted under the other side's verdict: two nodes that
/// cannot reach each other, both with a lease. (Without maintenance a
/// member the verdict leaves out is fenced at once and gets no lease
/// before the commit, which waits for every leaving node's lease.)
#[test]
fn a_member_held_in_maintenance_gets_no_lease_while_the_other_end_of_its_broken_link_holds_one() {
    let mut h = three_with_boots(None);
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    let flip_from = h.now;
    h.heur.insert(3, 5);
    h.run(ms(2000), &cut);
    let lease_of_2 = h
        .grants(2)
        .into_iter()
        .filter(|t| *t <= flip_from + ms(2000))
        .max()
        .expect("node 2 held leases");
    let bound_2 = lease_of_2 + h.spec.timing.lease_max() + h.spec.timing.stall_after();
    let overlapping: Vec<Duration> = h
        .grants(3)
        .into_iter()
        .filter(|t| *t > flip_from && *t < bound_2)
        .collect();
    assert!(
        overlapping.is_empty(),
        "node 3 granted leases at {overlapping:?} while node 2's lease (last granted {lease_of_2:?}) runs to {bound_2:?}"
    );
}

/// Finding 2, by a manual fence: five nodes (LMS), 4 and 5 in
/// maintenance; links 1–4, 1–5, 3–4, 3–5 broken. The cliques {1, 2, 3} and
/// {2, 4, 5} tie; {1, 2, 3} wins, 4 and 5 are held. The operator fences
/// node 1 (quorum is kept: {2, 3} with the arbiter's 4 votes is 6 of 9):
/// the verdict becomes {2, 4, 5} and node 3, healthy, is fenced by the
/// automatic path.
#[test]
fn a_manual_fence_never_gets_a_healthy_member_fenced_automatically() {
    let mut h = H::with(
        spec_levels(5, QuorumMode::LastManStanding, 1),
        Persisted::default(),
        None,
    );
    let all5: [(NodeId, &[NodeId]); 5] = [
        (1, &[2, 3, 4, 5]),
        (2, &[1, 3, 4, 5]),
        (3, &[1, 2, 4, 5]),
        (4, &[1, 2, 3, 5]),
        (5, &[1, 2, 3, 4]),
    ];
    h.run(ms(1500), &all5);
    maintenance(&mut h, Some(4), true);
    maintenance(&mut h, Some(5), true);
    let cut: [(NodeId, &[NodeId]); 5] = [
        (1, &[2, 3]),
        (2, &[1, 3, 4, 5]),
        (3, &[1, 2]),
        (4, &[2, 5]),
        (5, &[2, 4]),
    ];
    h.run(ms(2000), &cut);
    assert!(h.fences().is_empty(), "fenced: {:?}", h.fences());
    assert_eq!(h.core.status().verdict, Some([1, 2, 3].into()));
    assert!(
        fence(&mut h, 1)
            .iter()
            .any(|a| matches!(a, Action::Fence { node: 1, .. }))
    );
    h.run(ms(2000), &cut);
    assert!(
        h.fence_of(3).is_none(),
        "node 3, healthy, fenced after a manual fence of node 1: verdict {:?}",
        h.core.status().verdict
    );
}

/// Finding 3 (minor). "Confirm refused while the node speaks" looks only
/// at heartbeats: an agent that has just opened a session (its Hello is
/// in, its first heartbeat not yet) is speaking, yet confirm is accepted.
/// Node 3 is cut off and being fenced, its BMC failing; its agent comes
/// back (a new session of the same instance); the operator, reading a
/// status from a second ago, confirms it off within the next interval.
#[test]
fn confirm_is_refused_right_after_the_node_said_hello() {
    let mut h = three_with_boots(None);
    until_fence_of_3(&mut h);
    h.level_done(3, LevelOutcome::Failed("BMC unreachable".into()));
    h.run(ms(1000), &TWO);
    h.connect(3, 33, 3);
    h.run(ms(20), &[]);
    let checked = h.core.check_control(h.now, &Control::Confirm { node: 3 });
    assert!(
        checked.is_err(),
        "node 3's agent opened a session 20 ms ago, yet confirm: {checked:?}"
    );
}
