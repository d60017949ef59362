//! Heals and outages reaching the arbiter one report at a time: a gap in
//! which the arbiter heard nobody, and a heal arriving as new sessions
//! whose peers have not probed them yet (soak seeds 219446 and 186947).

use super::test_support::*;
use super::*;

const PHASES5: [(NodeId, u64); 5] = [(1, 10), (2, 30), (3, 50), (4, 70), (5, 90)];

/// Five nodes running; from 2000 the arbiter hears nobody for `gap` ms;
/// then every node but 4 is heard again, and node 4 (its session lapsed
/// meanwhile, reconnecting) stays silent until `back` ms, when it opens a
/// new session (`None`: never).
fn deaf_gap(gap: u64, back: Option<u64>, mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(5, QuorumMode::LastManStanding, 1), mutant);
    drive(&mut h, ms(2000), &PHASES5, &|n, _| Some(all_but(n, 5, &[])));
    drive(&mut h, ms(2000 + gap), &PHASES5, &|_, _| None);
    let until = back.unwrap_or(8000);
    drive(&mut h, ms(until), &PHASES5, &|n, _| {
        (n != 4).then(|| all_but(n, 5, &[]))
    });
    if back.is_some() {
        h.connect(4, 44, 4);
        drive(&mut h, ms(until + 1000), &PHASES5, &|n, _| {
            Some(all_but(n, 5, &[]))
        });
    }
    h
}

/// The arbiter heard nobody for 180 ms: a node whose session lapsed then
/// and that takes a second to reconnect is not fenced (the gap is
/// confirmed when a second node heard before it is heard after it). (Planted bug
/// `NoDeafGaps`: it is, 500 ms after its last report.)
#[test]
fn a_gap_in_which_the_arbiter_heard_nobody_is_no_evidence() {
    let h = deaf_gap(180, Some(3000), None);
    assert_eq!(fenced_nodes(&h), vec![], "{:?}", h.notices());
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::DeafGap { excused, .. } if excused.contains(&4))),
        "the gap is confirmed and excuses node 4: {:?}",
        h.notices()
    );
    let h = deaf_gap(180, Some(3000), Some(Mutant::NoDeafGaps));
    assert_eq!(fenced_nodes(&h).first().map(|f| f.1), Some(4));
}

/// Bounded: a node that never comes back after such a gap is fenced once
/// its reconnect allowance is over (as after any loss of contact).
#[test]
fn a_node_silent_after_a_deaf_gap_is_fenced_after_its_allowance() {
    let h = deaf_gap(180, None, None);
    let f = fenced_nodes(&h);
    let t = h.spec.timing;
    let latest = 2180 + (t.lost_after + t.reconnect_allowance + t.settle).as_millis() + 300;
    assert!(
        matches!(f.first(), Some(&(at, 4)) if at <= latest),
        "node 4 fenced by {latest} ms: {f:?}"
    );
}

/// One lost report, or the silence of a single node, is no deaf gap: a
/// dead node beside it is fenced on time.
#[test]
fn a_single_lost_report_delays_no_fence() {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), None);
    let phases = [(1, 10), (2, 60), (3, 30)];
    drive(&mut h, ms(2000), &phases, &|n, _| Some(all_but(n, 3, &[])));
    // Node 3 dies at 2000; node 1's report at 2210 and node 2's at 2360
    // are lost (gaps of 150 ms at most with both peers left).
    drive(&mut h, ms(4000), &phases, &|n, now| {
        let t = now.as_millis();
        match n {
            3 => None,
            1 if t == 2210 => None,
            2 if t == 2360 => None,
            _ => Some(all_but(n, 3, &[3])),
        }
    });
    assert!(
        !h.notices()
            .iter()
            .any(|n| matches!(n, Notice::ContactLost | Notice::DeafGap { .. })),
        "no loss of contact, no deaf gap: {:?}",
        h.notices()
    );
    let f = fenced_nodes(&h);
    assert!(
        matches!(f.first(), Some(&(at, 3)) if at <= 2900),
        "dead node 3 fenced within 900 ms: {f:?}"
    );
}

/// Soak seed 186947, reduced: nodes 1, 2 and 3 crash; nodes 4 and 5 lose
/// each other too (their reports say so, both ways: edge 4–5 down, on
/// proof). No quorum, nobody fenced. Everything heals at 2000: 1, 2 and 3
/// come back on new sessions reporting everyone, while 4 and 5 report
/// nobody until their probes catch up at 2150 (one stale report each). The edges of the new
/// sessions start afresh and count up, so only the heal's new half-ups
/// tell it is arriving: edge 4–5, proven before it, is proven again.
/// (Planted bug `NoYoungHeals`: 4 or 5 is fenced.)
fn heal_on_new_sessions(mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(5, QuorumMode::LastManStanding, 1), mutant);
    drive(&mut h, ms(1000), &PHASES5, &|n, _| Some(all_but(n, 5, &[])));
    drive(&mut h, ms(2000), &PHASES5, &|n, _| (n > 3).then(Vec::new));
    for n in 1..=3 {
        h.connect(n, 100 + u64::from(n), u64::from(n));
    }
    drive(&mut h, ms(4000), &PHASES5, &|n, now| {
        if n > 3 && now < ms(2150) {
            Some(Vec::new())
        } else {
            Some(all_but(n, 5, &[]))
        }
    });
    h
}

#[test]
fn a_heal_arriving_on_new_sessions_proves_old_breaks_again() {
    let h = heal_on_new_sessions(None);
    assert_eq!(fenced_nodes(&h), vec![], "{:?}", h.notices());
    let h = heal_on_new_sessions(Some(Mutant::NoYoungHeals));
    assert!(
        fenced_nodes(&h).iter().any(|&(_, n)| n == 4 || n == 5),
        "the planted bug fences 4 or 5: {:?}",
        fenced_nodes(&h)
    );
}
