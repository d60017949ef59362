//! Review of 80c03d6 (the hold pauses without quorum; a link that bounced
//! during a hold lands down only by settling; the heartbeat bound of the
//! hold counts from a session's first heartbeat and proves beats - 1
//! intervals).
//!
//! Run: `cargo test -p arbiter --lib review11`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// B2 (healthy node fenced, change 4): a link of the cut node that bounced
// during the hold and then breaks for good "lands down only by settling":
// at the spend it counts UP. The landed graph is then exactly the half-way
// graph `landed_verdict` exists to avoid, and it ties a healthy node
// against the cut node (lowest id wins).
// ---------------------------------------------------------------------------

/// Three nodes, LMS; phases 1 at 0, 2 at 50, 3 at 20.
///
/// - 1000: node 1 is cut from node 3 for good. Link 1–2 goes bad too: it
///   works only for reports at (t - 1000) % 300 in [200, 300) (node 1 at
///   1200, 1500; node 2 at 1250, 1550), lost otherwise; from `dead` on it is
///   dead for good. Node 1 is cut from every peer from `dead` on.
/// - 1200: 1–3 settles down. Settled graph {1–2, 2–3}: {1,2} and {2,3} tie,
///   {1,2} wins (lowest id) and drops 3; `saved_once_settled` (1–2 landing
///   down saves 3) → hold from 1200.
/// - 1250, 1550: 1–2 comes back raw-up (bounce: `bounced_at`), then goes
///   down again from 1300 / 1600 (reports of both sides say lost).
/// - 1720: hold spent. 1–2 is going down on two reports of a side (1600,
///   1700 of node 1) but bounced at 1550 ≥ 1200: not counted down. Landed
///   graph = {1–2, 2–3} → {1,2}: node 3 fenced. (1–2 settles at 1800.)
fn bounce_then_dead(dead: u64, mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), mutant);
    let phase = [(1, 0), (2, 50), (3, 20)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t < 1000 {
            return Some(all_but(n, 3, &[]));
        }
        let link12 = t < dead && (t - 1000) % 300 >= 200;
        Some(match n {
            1 if link12 => vec![2],
            1 => vec![],
            2 if link12 => vec![1, 3],
            2 => vec![3],
            _ => vec![2],
        })
    };
    drive(&mut h, ms(3000), &phase, &reach);
    h
}

/// FAILED on 80c03d6 (fixed since): node 3 (whose only broken link is to node 1, cut from every peer
/// since 1600) is fenced at 1720 instead of node 1; at 1800 (1–2 settled)
/// the verdict becomes {1}: the isolated node keeps the leases.
#[test]
fn review11_b2_bounced_link_breaking_for_good_lands_on_the_half_way_graph() {
    let h = bounce_then_dead(1600, None);
    let fenced = fenced_nodes(&h);
    dump(&h, 1000, 2000);
    assert!(
        fenced.iter().all(|&(_, n)| n == 1) && !fenced.is_empty(),
        "node 1, cut from every peer since 1600, must be the one fenced: {fenced:?}"
    );
}

/// Control (passes): counting the bounced edge down at the spend
/// (`FlapLandsDown`, the code before 80c03d6) fences node 1 alone, at the
/// same tick.
#[test]
fn review11_b2_control_flap_landing_down_fences_the_cut_node() {
    let fenced = fenced_nodes(&bounce_then_dead(1600, Some(Mutant::FlapLandsDown)));
    assert_eq!(fenced.first().map(|&(_, n)| n), Some(1), "{fenced:?}");
    assert!(fenced.iter().all(|&(_, n)| n == 1), "{fenced:?}");
}

/// Pins (passes): before da3efba (`BreakComingBackIsNoHeal`) the first
/// bounce (1250, 1–2 really up for a moment, 1–3 settled down) left no
/// reason to hold and node 3 was fenced then, by the A–B rule ("A–B
/// broken, both reach C: lowest id wins"). So B2 is a gap in 80c03d6's fix
/// of review10 B1, not a regression from before da3efba. The current code
/// also leaves node 1 — cut from every peer — the sole lease holder after
/// 1800 (1–2 settled: {1} and {2} tie, lowest id; node 2 storm-held).
/// Fixed since: a break that began after the hold did is unsure when the
/// hold is spent, so the hold waits until 1–2 settles (1800) and fences
/// node 1, cut from every peer, alone.
#[test]
fn review11_b2_pin_before_break_back_heal_and_aftermath() {
    let old = fenced_nodes(&bounce_then_dead(
        1600,
        Some(Mutant::BreakComingBackIsNoHeal),
    ));
    assert_eq!(old, vec![(1250, 3)]);
    let h = bounce_then_dead(1600, None);
    assert_eq!(fenced_nodes(&h), vec![(1800, 1)]);
}

// ---------------------------------------------------------------------------
// B3 (healthy node fenced, changes 1 + 4): the exclusion is keyed to a
// bounce since the hold began. A link between two healthy nodes whose
// first short break of the hold (two lost reports, never `settle`) falls
// on the spend still counts down. Change 1 makes such long holds common:
// any other link flapping gives a "healing" reason at every tick.
// ---------------------------------------------------------------------------

/// Seven nodes, LMS (storm limit 3); nodes 1, 2 heartbeat at phase 0,
/// 3, 4, 6, 7 at 50, node 5 at 20.
///
/// - From 1000 link 3–4 flaps (lost at t ≡ 150, 250, reached at t ≡ 50 mod
///   300: back at t ≡ 50, "healing" until t ≡ 250) and link 6–7 the same
///   200 ms later (lost at t ≡ 50, 150, reached at t ≡ 250: healing until
///   t ≡ 150). Neither ever settles; together they give a "healing" reason
///   at every tick (as in review10 B1), so any verdict dropping a member is
///   held for the whole bound.
/// - 2000: node 5 cut from every peer; its edges settle ~2200; {1,2,3,4,6,7}
///   drops 5 with a reason at every tick: hold from ~2200, spent ~2700..2800.
/// - `blip`: link 1–2 lost on one pair of reports of each side (nodes 1
///   and 2 report each other lost at `blip` and `blip`+100), else fine:
///   down 200 ms at most, never settled, never bounced before.
///
/// If the spend falls in [`blip`+100, `blip`+200), 1–2 is going down on
/// two reports and did not bounce since the hold began: the landed graph
/// lacks 1–2, {1,3,4,6,7} wins (lowest id), node 2 is fenced (with 5).
fn flap_blip_and_cut(blip: u64, mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(7, QuorumMode::LastManStanding, 1), mutant);
    let phase = [(1, 0), (2, 0), (3, 50), (4, 50), (5, 20), (6, 50), (7, 50)];
    let iso = 2000;
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if t >= iso {
            if n == 5 {
                return Some(vec![]);
            }
            drop.push(5);
        }
        if t >= 1000 {
            let m = t % 300;
            match n {
                3 | 4 if m == 150 || m == 250 => drop.push(7 - n),
                6 | 7 if m == 50 || m == 150 => drop.push(13 - n),
                _ => {}
            }
        }
        if matches!(n, 1 | 2) && (t == blip || t == blip + 100) {
            drop.push(3 - n);
        }
        Some(all_but(n, 7, &drop))
    };
    drive(&mut h, ms(iso + 2500), &phase, &reach);
    h
}

/// Blip starts (ms) at which a node other than 5 is fenced.
fn b3_window(mutant: Option<Mutant>) -> Vec<(u64, Vec<(u128, NodeId)>)> {
    others_fenced((0..8).map(|k| 2400 + k * 100), 5, |blip| {
        flap_blip_and_cut(blip, mutant)
    })
}

/// FAILED on 80c03d6 (fixed since): for the blip that coincides with the spend, node 1 or 2 (healthy,
/// one link lost for two reports) is fenced with node 5.
#[test]
fn review11_b3_first_short_break_on_the_spend_lands_down() {
    let hit = b3_window(None);
    assert!(hit.is_empty(), "healthy nodes fenced: {hit:?}");
}

/// Control (passes): before change 1 (`BreakComingBackIsNoHeal`) 3–4's
/// flaps are no reason to hold: node 5 alone is fenced, whatever the blip.
#[test]
fn review11_b3_control_without_break_back_heal() {
    let hit = b3_window(Some(Mutant::BreakComingBackIsNoHeal));
    assert!(hit.is_empty(), "healthy nodes fenced: {hit:?}");
    let f = fenced_nodes(&flap_blip_and_cut(
        2500,
        Some(Mutant::BreakComingBackIsNoHeal),
    ));
    assert!(f.iter().any(|&(_, n)| n == 5), "{f:?}");
}

// ---------------------------------------------------------------------------
// L2 (liveness, change 2): the pause only bridges spells without quorum
// shorter than the bound; "a hold whose last step is older than bound is
// dropped" also drops a PAUSED hold. Review10 L1 with a longer period: each
// spell without quorum (~700 ms) ends the hold, each quorate spell with a
// reason (~400 ms: heal 200 + going down 200) is shorter than the bound.
// Node 3, cut from both peers for good, is never fenced, and nobody gets a
// lease again (verdict `None` at every NoQuorum, kept by every held step).
// ---------------------------------------------------------------------------

/// Three nodes, tie-breaker mode (3 of 4 votes needed); phases 1 at 0, 2 at
/// 50, 3 at 20. From 1000 node 3 is cut from both peers for good. Link 1–2
/// flaps with a 1100 ms period: down (both sides report the other lost)
/// for the first 900 ms, up for 200 ms.
///
/// - ~1200: 1–2 settles down → NoQuorum (verdict `None`).
/// - 1950: 1–2 back up → {1,2} drops 3; "healing" → hold from 1950.
/// - 2100..2300: 1–2 going down (`saved_once_settled`), settles ~2300 →
///   NoQuorum: hold paused at held ≈ 350 < 500.
/// - 3050: 1–2 back up: the hold's last step (2290) is older than the
///   bound → dropped, a new hold from 3050... for ever.
fn long_no_quorum_spells(mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::TieBreaker, 1), mutant);
    let phase = [(1, 0), (2, 50), (3, 20)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t < 1000 {
            return Some(all_but(n, 3, &[]));
        }
        let flap_down = (t - 1000) % 1100 < 900;
        Some(match n {
            3 => vec![],
            1 | 2 if flap_down => vec![],
            1 => vec![2],
            _ => vec![1],
        })
    };
    drive(&mut h, ms(12000), &phase, &reach);
    h
}

/// FAILED on 80c03d6 (fixed since): node 3, cut from both peers since 1000, is never fenced by
/// 12000; nodes 1 and 2 get no lease after 1200, even in their quorate
/// spells.
#[test]
fn review11_l2_long_no_quorum_spells_drop_the_paused_hold_forever() {
    let h = long_no_quorum_spells(None);
    let fenced = fenced_nodes(&h);
    let grants: Vec<usize> = [1, 2]
        .iter()
        .map(|&n| h.grants(n).into_iter().filter(|&t| t > ms(2000)).count())
        .collect();
    dump(&h, 1000, 3400);
    assert!(
        fenced.iter().any(|&(_, n)| n == 3),
        "node 3 cut off since 1000 never fenced by 12000: fenced {fenced:?}; \
         leases granted to 1, 2 after 2000: {grants:?}"
    );
}

/// With the pause planted out (`HoldOutlivesNoQuorum`), node 3 is never
/// fenced (the test above catches it). (Before the fix, the hold expired
/// during a long pause: the expiry rule predates da3efba, so this was not a
/// regression; a paused hold now expires on time with quorum only.)
#[test]
fn review11_l2_pin_not_a_regression() {
    let m = Mutant::HoldOutlivesNoQuorum;
    assert_eq!(
        fenced_nodes(&long_no_quorum_spells(Some(m))),
        vec![],
        "{m:?}"
    );
}
