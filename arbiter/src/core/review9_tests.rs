//! Review of 2c3988a (a break counts on two consecutive reports of one
//! side; a landing verdict unclear past the spent hold for `settle` + an
//! interval more is taken on the graph as it stands).
//!
//! Run: `cargo test -p arbiter --lib review9`

use super::test_support::*;
use super::*;

// ---------------------------------------------------------------------------
// B1 (healthy node fenced (b)): a hold spent on an earlier, unrelated fault
// stays "spent" for up to `bound` after its last reason. A node cut from
// its peers a heartbeat apart in that window is decided at once: its
// landing is unclear (the slow peer still reports it), and since the hold
// has already run `bound + settle + interval`, on the half-way graph.
// ---------------------------------------------------------------------------

/// Four nodes, LMS; phases 4 at 10, 3 at 40, 1 at 50, 2 at 90 (review8 B1).
///
/// Fault 1 (`prior`): from 1540 node 3's probes to node 2 fail one way:
/// 2–3 settles down at 1740, the verdict {1,2,4} drops 3 with a reason
/// (half-up 2–3): hold from 1740, spent at 2240, node 3 fenced (right).
/// The hold stays `(1740, 2240)` until 2740.
///
/// Fault 2 (`iso`: shift of node 1's isolation, ms): node 1 is cut from
/// every peer, its links a heartbeat apart (DESIGN: "a node cut from its
/// peers loses its links a heartbeat apart"):
/// - node 1 reports 2 lost from 2450+iso, 2 and 4 (and 3) from 2550+iso;
/// - node 2 reports 1 lost from 2490+iso, node 3 from 2540+iso;
/// - node 4 (slowest to notice) reports 1 lost from 2710+iso.
///
/// At 2650+iso 1–2 settles down (node 1's reports 2450..2650), 1–4 is going
/// down on node 1's two reports and half-up (4 still says 1, since
/// 2550+iso): the graph as it stands is 1–4, 2–4 → {1,4}; landed it is
/// {2,4}; with 1–4 "unsure" the landing is unclear. Hold held = 910+iso
/// at least 800: decided on the graph as it stands, fencing healthy node 2.
/// One report later (2710+iso) node 4 says 1 lost and only node 1 would go.
fn isolation_after_spent_hold(prior: bool, iso: i64) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 90), (3, 40), (4, 10)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if prior && n == 3 && t >= 1540 {
            drop.push(2);
        }
        let cut = |from: u64| t as i64 >= from as i64 + iso;
        match n {
            1 if cut(2550) => drop.extend([2, 3, 4]),
            1 if cut(2450) => drop.push(2),
            2 if cut(2490) => drop.push(1),
            3 if cut(2540) => drop.push(1),
            4 if cut(2710) => drop.push(1),
            _ => {}
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(4500), &phase, &reach);
    h
}

/// FAILS on 2c3988a: healthy node 2 is fenced at 2650 on the half-way
/// graph {1,4} (the cut node 1 kept); at 2750 the verdict {1} would drop 4
/// too (only the storm limit stops it). The same isolation 100 ms later
/// (hold reset at 2740) or without fault 1 fences node 1 alone.
#[test]
fn review9_b1_isolation_in_a_spent_hold_decides_on_the_half_way_graph() {
    let h = isolation_after_spent_hold(true, 0);
    let fenced = fenced_nodes(&h);
    dump(&h, 2200, 2800);
    assert!(
        !fenced.iter().any(|&(_, n)| n == 2),
        "healthy node 2 fenced (node 1 was the one cut off): {fenced:?}"
    );
}

/// Control (passes): the same isolation without the earlier fault: node 1
/// alone is fenced, at 2740 (a fresh hold waits out the landing).
#[test]
fn review9_b1_control_no_prior_hold() {
    let fenced = fenced_nodes(&isolation_after_spent_hold(false, 0));
    assert_eq!(fenced, vec![(2740, 1)]);
}

/// Control (passes): the isolation 100 ms later, after the hold ended
/// (2240 + bound): nodes 3 then 1 fenced, as they should be. (Node 3 at
/// 2250 since the hold counts the intervals its heartbeats prove: the first
/// one after the hold began proves none.)
#[test]
fn review9_b1_control_after_the_hold_ended() {
    let fenced = fenced_nodes(&isolation_after_spent_hold(true, 100));
    assert_eq!(fenced, vec![(2250, 3), (2850, 1)]);
}

/// The window: before the hold was reset once it decided, the critical
/// tick (2650 + iso) fenced node 2 exactly when it fell in [since plus
/// bound, settle and an interval; last plus bound] = [2540, 2740]: iso
/// -150..=-50 and 0. Now no offset fences node 2.
#[test]
fn review9_b1_window() {
    let hit: Vec<i64> = (-4..=4)
        .map(|k| k * 50)
        .filter(|&iso| {
            fenced_nodes(&isolation_after_spent_hold(true, iso))
                .iter()
                .any(|&(_, n)| n == 2)
        })
        .collect();
    assert!(hit.is_empty(), "node 2 fenced for iso in {hit:?}");
}

// ---------------------------------------------------------------------------
// C1 (postponed forever (c)): `suspect` returns before anything is decided
// whenever any live candidate is silent longer than `fresh_within`. Two
// live nodes whose heartbeats arrive every 420 ms (alive: < lost_after),
// half a period apart, keep one of them suspect at every tick: a crashed
// node is never fenced although the arbiter hears a quorate set fresh.
// ---------------------------------------------------------------------------

fn late_pair(late: bool) -> H {
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    let until = ms(8000);
    while h.now < until {
        h.now += ms(10);
        let t = h.now.as_millis() as u64;
        for n in 1..=5u32 {
            let due = match n {
                5 if t >= 1500 => false, // crashed
                3 if late && t >= 1000 => t.is_multiple_of(420),
                4 if late && t >= 1000 => t % 420 == 210,
                _ => t.is_multiple_of(100),
            };
            if due {
                let r = all_but(n, 5, if t >= 1500 { &[5] } else { &[] });
                h.heartbeat(n, &r);
            }
        }
        h.step(Event::Tick);
    }
    h
}

/// FAILS on 2c3988a: node 5 crashed at 1500 and is never fenced; nodes 1
/// and 2 (and the arbiter) were heard fresh all along.
#[test]
fn review9_c1_two_late_heartbeaters_out_of_phase_postpone_fence_forever() {
    let h = late_pair(true);
    let fenced = fenced_nodes(&h);
    assert!(
        fenced.iter().any(|&(_, n)| n == 5),
        "crashed node 5 never fenced: {fenced:?}"
    );
}

/// Control (passes): without the late heartbeats node 5 is fenced.
#[test]
fn review9_c1_control() {
    let fenced = fenced_nodes(&late_pair(false));
    assert!(fenced.iter().any(|&(_, n)| n == 5), "{fenced:?}");
}
