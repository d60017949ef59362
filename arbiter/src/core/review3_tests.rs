//! Review of commit 0b53319 (a verdict that drops a member is held while
//! the verdict with every edge "going down" counted down differs). The
//! first two tests failed against it (lossy links among the survivors held
//! the fence of an isolated node for ever, its lease renewed meanwhile);
//! they pass since the hold counts only a dropped member the settled graph
//! would keep, for at most `settle`.
//!
//! Run: `cargo test -q --release -p arbiter --lib review3`

use super::test_support::*;
use super::*;

/// Four nodes, LMS. Node 4 is cut from all its peers (it still reaches the
/// arbiter): it must be fenced (DESIGN "A–B broken while both reach C and
/// the arbiter: one of A, B is fenced"; "a node cut off is fenced ... in
/// well under a second"). Meanwhile node 1's probes are lossy: each of its
/// heartbeats misses one of its peers 2 and 3, alternately. Each of the
/// edges 1–2 and 1–3 is down for one heartbeat (100 ms < settle) and back,
/// so both stay settled up and {1,2,3} is the verdict; but at every
/// evaluation one of them is "going down", and with it counted down the
/// verdict would be {1,2} or {1,3}: the hold never ends.
fn isolated_node_with_lossy_survivor(h: &mut H, dur_ms: u64) {
    let mut t = 0;
    let mut odd = false;
    while t < dur_ms {
        let one: &[NodeId] = if odd { &[2] } else { &[3] };
        h.run(ms(100), &[(1, one), (2, &[1, 3]), (3, &[1, 2]), (4, &[])]);
        odd = !odd;
        t += 100;
    }
}

const ALL4: [(NodeId, &[NodeId]); 4] = [
    (1, &[2, 3, 4]),
    (2, &[1, 3, 4]),
    (3, &[1, 2, 4]),
    (4, &[1, 2, 3]),
];

/// Liveness: node 4, cut from every peer, is never fenced while node 1's
/// probes alternate losses (before 0b53319 it was fenced once its edges
/// settled, ≈ 200–300 ms).
#[test]
fn review3_isolated_node_is_fenced_despite_lossy_survivor_links() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.run(ms(800), &ALL4);
    assert!(h.fences().is_empty());
    let cut = h.now;
    isolated_node_with_lossy_survivor(&mut h, 3000);
    let fenced: Vec<_> = h.fences().into_iter().map(|(t, n)| (t - cut, n)).collect();
    assert!(
        fenced.iter().any(|&(t, n)| n == 4 && t <= ms(1000)),
        "node 4 cut from all its peers not fenced within 1 s (3 s run): fences {fenced:?}"
    );
}

/// Harm of the same hold: the held verdict (`self.verdict`, which
/// `lease_refusal` reads) still contains node 4, so the node cut from its
/// peers keeps getting its lease renewed for as long as the hold lasts
/// (here: the whole 3 s), instead of being refused once its edges settle.
#[test]
fn review3_isolated_node_lease_not_renewed_past_settle() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.run(ms(800), &ALL4);
    let cut = h.now;
    assert!(!h.grants(4).is_empty());
    isolated_node_with_lossy_survivor(&mut h, 3000);
    let late: Vec<_> = h
        .grants(4)
        .into_iter()
        .filter(|&t| t > cut + ms(1000))
        .map(|t| t - cut)
        .collect();
    assert!(
        late.is_empty(),
        "node 4 (cut from all peers) still granted leases {late:?} after the cut"
    );
}

/// Control: with the change reverted (the mutant), node 4 is fenced
/// promptly in the same scenario, so the failures above are the hold's.
#[test]
fn review3_control_without_hold_node_4_is_fenced() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = Some(Mutant::DecideOnHalfSettledEdges);
    h.run(ms(800), &ALL4);
    let cut = h.now;
    isolated_node_with_lossy_survivor(&mut h, 3000);
    let fenced: Vec<_> = h.fences().into_iter().map(|(t, n)| (t - cut, n)).collect();
    assert_eq!(fenced.first().map(|&(_, n)| n), Some(4), "{fenced:?}");
    assert!(fenced[0].0 <= ms(1000), "{fenced:?}");
}
