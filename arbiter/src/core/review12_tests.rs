//! Review of ddd6a68 (the spent hold takes a break begun after the hold
//! as unsure; a paused hold neither expires nor runs without quorum).
//!
//! Run: `cargo test -p arbiter --lib review12`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// S1 (healthy node fenced): a hold that is neither spent nor decided — its
// incident healed, the verdict drops nobody any more — is kept for `bound`
// after its last step, with its `since` and `started`. A new incident
// within that bound inherits the old hold's age: it is "spent" at its first
// step and, the landed graph being unclear, decided at once on the
// half-way graph ("the graph as it stands") the hold exists to avoid.
// ---------------------------------------------------------------------------

/// Three nodes, LMS; phases 1 at 0, 2 at 50, 3 at 20.
///
/// - A (`flap`): [1000, 1600) node 1 is cut from node 3 (1 reports [2],
///   3 reports [2]); node 2 loses 1 on two reports out of three (lost at
///   1150, 1250, 1450, 1550; reached at 1050, 1350).
///   1200: 1–3 settles down; {1,2} vs {2,3} tie, {1,2} wins: drops 3, with
///   a reason (1–2 going down: `saved_once_settled`; 1350..1550 a heal
///   arriving): hold from 1200. 1600/1620: 1–3 back up: verdict {1,2,3},
///   nothing dropped; the hold (last step 1610, held 410 < 500) stays.
/// - B: from 1800 node 1 is cut for good: it reports [2] (its probe of 2
///   has not timed out yet), nodes 2 and 3 report it lost. 1–3 settles at
///   2000 (node 1's reports 1800..2000), 1–2 at 2050 (node 2's, 1850..2050).
///   In [2000, 2050) the half-way graph {1–2, 2–3} drops 3, with a reason
///   (1–2 going down). The hold from 1200 (last 1610: within `bound`) runs
///   on: held = min(clock 800+, beats 700 at 2000, 800 at 2020) — spent;
///   `landed_verdict` is unclear (1–2 late: unsure; {1,2} vs {2,3}) and
///   held ≥ bound + settle + interval: decided on the settled graph.
///   Node 3 is fenced at 2020; node 1, cut from every peer, keeps its
///   lease (the verdict is {1,2}).
fn flap_then_cut(flap: bool, cut: u64, mutant: Option<Mutant>) -> H {
    flap_then_cut_stale(flap, cut, u64::MAX, mutant)
}

/// As `flap_then_cut`, node 1 reporting [2] in B only before `stale_until`
/// (its probe of 2 times out then), nobody after.
fn flap_then_cut_stale(flap: bool, cut: u64, stale_until: u64, mutant: Option<Mutant>) -> H {
    flap_then_cut_until(flap, cut, stale_until, cut + 1500, mutant)
}

fn flap_then_cut_until(
    flap: bool,
    cut: u64,
    stale_until: u64,
    until: u64,
    mutant: Option<Mutant>,
) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), mutant);
    let phase = [(1, 0), (2, 50), (3, 20)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if flap && (1000..1600).contains(&t) {
            return Some(match n {
                1 => vec![2],
                2 if matches!(t, 1150 | 1250 | 1450 | 1550) => vec![3],
                2 => vec![1, 3],
                _ => vec![2],
            });
        }
        if t >= cut {
            return Some(match n {
                1 if t < stale_until => vec![2],
                1 => vec![],
                2 => vec![3],
                _ => vec![2],
            });
        }
        Some(all_but(n, 3, &[]))
    };
    drive(&mut h, ms(until), &phase, &reach);
    h
}

/// FAILED on ddd6a68 (fixed since): node 3 (healthy but for its link to node 1) is fenced at 2020 on
/// the half-way graph, and node 1, cut from every peer, keeps running.
#[test]
fn review12_s1_healed_hold_ages_the_next_incident() {
    let h = flap_then_cut(true, 1800, None);
    let fenced = fenced_nodes(&h);
    assert!(
        !fenced.is_empty() && fenced.iter().all(|&(_, n)| n == 1),
        "node 1, cut from every peer since 1800, must be the one fenced: {fenced:?}"
    );
}

/// Control (passes): the same cut without the flap before it (a hold of
/// its own from 2000) or long enough after it (the old hold dropped: last
/// step 1610, more than `bound` before) fences node 1 alone, when that
/// hold is spent (`cut` + 720: node 1's stale report of 2 keeps 1–2 half
/// up, a reason to hold the whole bound). So the earlier, healed incident
/// is what gets node 3 fenced.
#[test]
fn review12_s1_control_fresh_hold_fences_the_cut_node() {
    for (flap, cut) in [(false, 1800), (true, 2200)] {
        let f = fenced_nodes(&flap_then_cut(flap, cut, None));
        // (+800, not +720, since B drops a member A's hold was not for:
        // it gets a hold of its own.)
        assert_eq!(f, vec![(u128::from(cut) + 800, 1)], "flap {flap} cut {cut}");
    }
}

/// Pins the variants. With the fix planted out (`HoldOutlivesItsIncident`)
/// the hold of A is kept through the healed period (begun at 1200, last
/// step 1610) and ages B: node 3 fenced at 2020 (the test above catches
/// it). With the fix the hold is marked idle once the verdict drops
/// nobody (B, dropping a member again, lands afresh), and the variant in which node 1's stale report of 2 ends at 1900 (1–2 only
/// going down on two reports of each side, begun after the hold) fences
/// node 1 alone too.
#[test]
fn review12_s1_pin_variants() {
    let m = Some(Mutant::HoldOutlivesItsIncident);
    let mid = flap_then_cut_until(true, 1800, u64::MAX, 1990, m);
    let hold = mid.core.hold.clone().expect("A's hold kept");
    assert_eq!(
        (hold.started, hold.since, hold.last),
        (ms(1200), ms(1200), ms(1610))
    );
    assert_eq!(mid.core.status().verdict, Some([1, 2, 3].into()));
    assert_eq!(fenced_nodes(&flap_then_cut(true, 1800, m)), vec![(2020, 3)]);
    let mid = flap_then_cut_until(true, 1800, u64::MAX, 1990, None);
    let hold = mid.core.hold.clone().expect("A's hold kept, idle");
    assert!(hold.idle, "the healed incident's hold is idle: {hold:?}");
    let f = fenced_nodes(&flap_then_cut_stale(true, 1800, 1900, None));
    assert!(!f.is_empty() && f.iter().all(|&(_, n)| n == 1), "{f:?}");
}
