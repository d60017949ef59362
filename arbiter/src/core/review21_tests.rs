//! Review 21 (helper): the operator's controls (`operator.rs`) and the
//! maintenance hold, adversarially. Each test states a rule the controls
//! must keep; both failed on the code reviewed (commit 4248ec6): a held
//! node whose maintenance ended was fenced before its new session proved
//! its links, and the held set was not persisted, so after a restart the
//! held member was an incumbent again.

use super::test_support::*;
use super::*;

/// Finding 1. Node 3 is in maintenance and held out (its agent stopped
/// for a planned reboot). It comes back: a new boot, a new agent, whose
/// first heartbeat reports no peer yet (its probes have not answered: the
/// probe window), while both peers already report it. The operator sees
/// it connected and ends maintenance. `maintenance_held` still names it
/// (recomputed only by `start_fences`), so the decision the control runs
/// leaves it out of the candidates and out of `saved_once_settled`'s
/// evidence: no hold, verdict {1, 2}, and node 3 — connected, heard 0 ms
/// ago, reached by both peers — is fenced by the automatic path.
#[test]
fn maintenance_off_right_after_the_node_came_back_fences_nobody() {
    let h = back_from_reboot_then_maintenance_off(None);
    assert!(
        h.fence_of(3).is_none(),
        "node 3, connected and reached by every peer, fenced when maintenance ended: verdict {:?}",
        h.core.status().verdict
    );
    assert_eq!(h.core.status().verdict, Some([1, 2, 3].into()));
}

/// The planted bug `HeldFencedWhileYoung` (finding 1 as it was) is caught.
#[test]
fn the_young_hold_is_caught_with_the_planted_bug() {
    let h = back_from_reboot_then_maintenance_off(Some(Mutant::HeldFencedWhileYoung));
    assert!(h.fence_of(3).is_some(), "the planted bug went unseen");
}

/// A node back in the verdict after its hold is an incumbent again, and a
/// node held out whose links stay broken is fenced once maintenance ends
/// and its session is old enough.
#[test]
fn a_hold_ends_in_the_verdict_or_in_a_fence() {
    let mut h = three_with_boots(None);
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    maintenance(&mut h, Some(3), false);
    h.run(ms(2000), &cut);
    assert!(
        h.fence_of(3).is_some(),
        "the held node outside the verdict was never fenced"
    );
    assert!(h.fence_of(2).is_none(), "the healthy node was fenced");
}

fn back_from_reboot_then_maintenance_off(mutant: Option<Mutant>) -> H {
    let mut h = three_with_boots(mutant);
    maintenance(&mut h, Some(3), true);
    h.run(ms(3000), &TWO);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    assert_eq!(h.core.status().verdict, Some([1, 2].into()));
    // The reboot: a new boot, a new agent instance.
    h.boot.insert(3, 0xc3);
    h.connect(3, 30, 30);
    let young: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1, 3]), (3, &[])];
    h.run(ms(100), &young);
    assert!(
        h.core
            .node(3)
            .is_some_and(|v| v.connected && v.last_heard == Some(h.now)),
        "node 3 is back and heard"
    );
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    maintenance(&mut h, Some(3), false);
    h.run(ms(2000), &ALL3);
    h
}

/// Finding 2. Review 20's finding 2 (a member held out by maintenance
/// must never flip the verdict onto its side) holds only in memory:
/// `maintenance_held` is not persisted, so after an arbiter restart the
/// held member is an incumbent again (it is still in the backed set: the
/// transition never committed). Link 2–3 broken, {1, 2} won, node 3 held;
/// node 3's heuristics rise (no flip before the restart, as review 20
/// tests). The arbiter restarts: at the end of its grace the verdict is
/// {1, 3} and node 2 — the survivor of the broken link, healthy — is
/// fenced automatically.
#[test]
fn a_maintenance_hold_never_flips_the_verdict_across_an_arbiter_restart() {
    let mut h = three_with_boots(None);
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    assert_eq!(h.core.status().verdict, Some([1, 2].into()));
    h.heur.insert(3, 5);
    h.run(ms(1000), &cut);
    assert!(h.fence_of(2).is_none(), "flipped before the restart");
    h.restart(&[1, 2, 3]);
    h.run(ms(3000), &cut);
    assert!(
        h.fence_of(2).is_none(),
        "node 2, healthy and the survivor of the broken link, fenced after an arbiter restart: verdict {:?}",
        h.core.status().verdict
    );
}

/// Review 21's second reading: the proving window after a maintenance
/// ends is bounded from that end. "Maintenance off" said again and again
/// (a reconciler) must not keep a held node undecided, nor block the
/// commit, for ever.
#[test]
fn a_repeated_maintenance_off_does_not_stretch_the_hold() {
    let mut h = three_with_boots(None);
    maintenance(&mut h, Some(3), true);
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1]), (3, &[1])];
    h.run(ms(2000), &cut);
    assert!(h.fence_of(3).is_none(), "fenced in maintenance");
    for _ in 0..10 {
        maintenance(&mut h, Some(3), false);
        maintenance(&mut h, None, false);
        h.run(ms(200), &cut);
    }
    assert!(
        h.fence_of(3).is_some(),
        "the held node outside the verdict was never decided"
    );
    assert!(h.fence_of(2).is_none(), "the healthy node was fenced");
}
