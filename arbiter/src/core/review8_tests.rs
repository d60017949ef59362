//! Review of f50c0a9 (a spent hold decides only when the landing verdict
//! is the same whether each young half-up edge is a heal or a break;
//! `run_level` asks the status after an error on `off` only when the error
//! is `Refused` or `Device`).
//!
//! Run: `cargo test -p arbiter --lib review8`

use super::test_support::*;
use super::*;

// ---------------------------------------------------------------------------
// C1 (postponed forever (c)): two one-way flapping links, out of phase,
// keep a young "unsure" edge present at every tick; the spent hold never
// lands, and two crashed nodes are never fenced.
// ---------------------------------------------------------------------------

/// Five nodes, tie-breaker mode (3 node votes + the arbiter's 1 needed out
/// of 6), all heartbeating at phase 0. From 1000: node 1 always reports 2;
/// node 2 reports 1 on even hundreds only (its probes to 1 fail every other
/// interval); node 2 always reports 3, node 3 reports 2 on odd hundreds only.
/// So at every tick exactly one of 1–2, 2–3 is down by the reports, for one
/// report (span 0: never settles, never "breaking"), half-up for < 100 ms
/// (its half-up start reset every 200 ms). Both edges stay counted up: the
/// verdict is {1,2,3}. Nodes 4 and 5 crash at 1500 (2 <= storm limit 2).
///
/// From ~2000 the verdict {1,2,3} drops 4 and 5; the hold's reason at every
/// tick is `saved_once_settled` (the edge going down, counted down, leaves no
/// quorum). Spent at ~2500: `landed_verdict` treats the young half-up edge
/// as unsure, and with it down the graph has no quorum: `None`. The next
/// tick the other edge is the unsure one. For ever.
fn flapping(flap12: bool, flap23: bool) -> H {
    let mut h = H::new(spec_levels(5, QuorumMode::TieBreaker, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let crashed = t >= 1500;
        if crashed && (n == 4 || n == 5) {
            return None;
        }
        let mut drop = vec![];
        if crashed {
            drop.extend([4, 5]);
        }
        let even = (t / 100).is_multiple_of(2);
        if t >= 1000 {
            if flap12 && n == 2 && !even {
                drop.push(1);
            }
            if flap23 && n == 3 && even {
                drop.push(2);
            }
        }
        Some(all_but(n, 5, &drop))
    };
    drive(&mut h, ms(8000), &phase, &reach);
    h
}

/// FAILS on f50c0a9 (expected): nodes 4 and 5 crashed at 1500 and are
/// still not fenced at 8000 (nor ever: the pattern repeats every 200 ms);
/// nodes 1–3 keep their leases under the old verdict meanwhile.
#[test]
fn review8_c1_out_of_phase_one_way_flaps_postpone_fence_forever() {
    let h = flapping(true, true);
    let fenced = fenced_nodes(&h);
    let late_grants = h.grants(1).into_iter().filter(|&t| t > ms(7000)).count();
    // The hold started once 4 and 5 were lost and never ended: spent, and
    // `landed_verdict` answered `None` at every tick since.
    eprintln!("c1: hold (since, last) = {:?}", h.core.hold);
    assert!(
        fenced.iter().any(|&(_, n)| n == 4) && fenced.iter().any(|&(_, n)| n == 5),
        "crashed nodes 4 and 5 never fenced (hold started ~2000, bound 500 ms): \
         fenced {fenced:?}; node 1 granted {late_grants} leases after 7000; verdict {:?}",
        h.core.status().verdict
    );
}

/// Control (passes): one flapping link only. At every tick where it is up
/// by the reports there is no reason to hold: 4 and 5 are fenced.
#[test]
fn review8_c1_control_one_flapping_link_fences() {
    let h = flapping(true, false);
    let fenced = fenced_nodes(&h);
    eprintln!("c1 control one flap: {fenced:?}");
    assert!(fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
}

/// Control (passes): no flapping.
#[test]
fn review8_c1_control_no_flap_fences() {
    let h = flapping(false, false);
    let fenced = fenced_nodes(&h);
    eprintln!("c1 control no flap: {fenced:?}");
    assert!(fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
}

// ---------------------------------------------------------------------------
// B1 (healthy node fenced (b)): one lost report on each side of a healthy
// link, in flight when a hold is spent, counts as a break ("going down on
// reports spanning >= 50 ms").
// ---------------------------------------------------------------------------

/// Four nodes, LMS; phases 4 at 10, 3 at 40, 1 at 50, 2 at 90 (review7 S1).
/// From 1540 node 3's probes to node 2 fail (one way): 2–3 settles down at
/// 1740, the verdict {1,2,4} drops 3 with a reason (half-up 2–3, healed
/// graph keeps 3): hold from 1740, spent at 2240. Fencing 3 is right.
///
/// With `glitch`: link 1–4 loses one probe each way: node 1's report of
/// 2150 omits 4, node 4's of 2210 omits 1; both report each other again
/// from 2250/2310. At 2240 1–4 is "going down on reports spanning 60 ms"
/// (one report from each side), counted down in the landed graph; not
/// half-up, so not "unsure". Landed graph: 1–2, 1–3, 2–4, 3–4: cliques of
/// two, lowest ids {1,2}: healthy node 4 is fenced with 3.
fn glitch_at_spend(glitch: bool) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 90), (3, 40), (4, 10)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if n == 3 && t >= 1540 {
            drop.push(2);
        }
        if glitch && ((n == 1 && t == 2150) || (n == 4 && t == 2210)) {
            drop.push(if n == 1 { 4 } else { 1 });
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(3500), &phase, &reach);
    h
}

/// FAILS on f50c0a9 (expected): healthy node 4 fenced at 2240 for one lost
/// probe each way on 1–4.
#[test]
fn review8_b1_one_lost_report_each_way_counts_as_break_at_spent_hold() {
    let h = glitch_at_spend(true);
    let fenced = fenced_nodes(&h);
    assert!(
        !fenced.iter().any(|&(_, n)| n == 4),
        "healthy node 4 fenced for one lost report on each side of 1-4: {fenced:?}"
    );
}

/// Control (passes): without the glitch only node 3 is fenced, at 2240.
#[test]
fn review8_b1_control_no_glitch() {
    let h = glitch_at_spend(false);
    let fenced = fenced_nodes(&h);
    eprintln!("b1 control: {fenced:?}");
    assert!(fenced.iter().any(|&(_, n)| n == 3), "{fenced:?}");
    assert!(!fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
}
