//! Review of 9b34d21 (one bounded hold for every reason; a spent hold
//! decides on the landing graph; youth moves only for a new agent process
//! or once per `lost_after + settle`; contact regained restarts edges going
//! down and the hold).
//!
//! Run: `cargo test -p arbiter --lib review6`

use super::test_support::*;
use super::*;

// ---------------------------------------------------------------------------
// R1 (availability (b)): a spent hold counts an edge down on one report.
// ---------------------------------------------------------------------------

/// Five nodes, LMS, every report at phase 0. From 1000 node 5's probes to
/// node 3 fail for good (one way: 3 keeps reporting 5): edge 3–5 settles
/// down at 1200, the verdict {1,2,3,4} drops 5 with a hold reason (the
/// edge is half-up: healed, it keeps 5), so the hold starts at 1200 and is
/// spent at 1700. A needed fence: node 5.
///
/// At `glitch` link 1–2 loses one report each way (1 omits 2, 2 omits 1,
/// back at the next report). Edge 1–2 is going down (one report, nowhere
/// near `settle`) and neither side reports it up, so `landed_verdict`
/// counts it down: best cliques of size 3, lowest ids win: {1,3,4}, which
/// drops the healthy node 2 with node 5.
fn one_way_link_then_glitch(glitch: Option<u64>, mutant: Option<Mutant>) -> H {
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    h.core.mutant = mutant;
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if n == 5 && t >= 1000 {
            drop.push(3);
        }
        if glitch == Some(t) {
            match n {
                1 => drop.push(2),
                2 => drop.push(1),
                _ => {}
            }
        }
        Some(all_but(n, 5, &drop))
    };
    drive(&mut h, ms(2500), &phase, &reach);
    h
}

/// FAILS on 9b34d21: nodes 2 and 5 fenced at 1700.
#[test]
fn review6_r1_spent_hold_counts_a_single_lost_report_down() {
    let h = one_way_link_then_glitch(Some(1700), None);
    let fenced = fenced_nodes(&h);
    if fenced.iter().any(|&(_, n)| n == 2) {
        dump(&h, 1690, u64::MAX);
    }
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![5],
        "link 1-2 lost one report each way at 1700 (the instant the hold is spent): {fenced:?}"
    );
}

/// Control: the same glitch 100 ms earlier (while the hold still holds)
/// fences node 5 only. Passes.
#[test]
fn review6_r1_control_glitch_while_held() {
    let h = one_way_link_then_glitch(Some(1600), None);
    let fenced = fenced_nodes(&h);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![5],
        "{fenced:?}"
    );
}

/// Control: `ExpiredHoldDecidesOnHalfWayGraph` (the spent hold decides on
/// the graph as it stands) fences node 5 only with the same glitch.
/// Passes: the landing graph is what fences node 2.
#[test]
fn review6_r1_control_current_graph_fences_only_the_needed_node() {
    let h = one_way_link_then_glitch(Some(1700), Some(Mutant::ExpiredHoldDecidesOnHalfWayGraph));
    let fenced = fenced_nodes(&h);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![5],
        "{fenced:?}"
    );
}

// ---------------------------------------------------------------------------
// R2 (availability (b)): a break arriving is landed as a heal.
// ---------------------------------------------------------------------------

/// Four nodes, LMS. Phases: 1 at 0, 4 at 10, 3 at 40, 2 at 90.
///
/// - From 1540 node 3's probes to node 2 fail (one way; 2 keeps reporting
///   3). Edge 2–3 settles down at 1740; the verdict {1,2,4} drops 3 with a
///   reason (half-up): the hold starts at 1740, spent at 2240.
/// - Node 1 is cut from every peer (about 1900); the reports flip after
///   the probe window at each node's phase: 1 at 2200 (omits 2, 3, 4), 4 at
///   2210, 3 at 2240, 2 at 2290.
/// - At 2240 the hold is spent. Edges 1–3 and 1–4: both sides report down,
///   going down, counted down. Edge 1–2: node 1 has reported 2 lost for
///   40 ms while 2 still reports 1: half-up for less than `settle`, landed
///   as "a heal on its way", counted up. Landing graph: 1–2, 2–4, 3–4: best
///   cliques of two, lowest ids: {1,2}. Nodes 3 and 4 are fenced; node 1
///   (cut from every peer) is kept. Node 4 never lost a link: in every
///   graph the links made (2–3 down; then node 1 isolated too), every
///   clique with the most votes holds it ({1,2,4}/{1,3,4}, then {2,4}/
///   {3,4}).
fn isolation_lands_as_heal(mutant: Option<Mutant>) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = mutant;
    let phase = [(1, 0), (2, 90), (3, 40), (4, 10)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if n == 3 && t >= 1540 {
            drop.push(2);
        }
        if t >= 2200 {
            if n == 1 {
                drop.extend([2, 3, 4]);
            } else {
                drop.push(1);
            }
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(3500), &phase, &reach);
    h
}

/// FAILS on 9b34d21: nodes 3 and 4 fenced at 2240, node 1 kept.
#[test]
fn review6_r2_isolated_nodes_break_arriving_landed_as_a_heal_fences_healthy_node() {
    let h = isolation_lands_as_heal(None);
    let fenced = fenced_nodes(&h);
    if fenced.iter().any(|&(_, n)| n == 4) {
        dump(&h, 2190, u64::MAX);
    }
    assert!(
        !fenced.iter().any(|&(_, n)| n == 4),
        "healthy node 4 fenced; node 1 is cut from every peer: {fenced:?}, verdict {:?}",
        h.core.status().verdict
    );
}

/// Control: deciding the spent hold on the graph as it stands fences 3
/// (an end of the one-way link 2–3) then node 1, never 4. Passes.
#[test]
fn review6_r2_control_current_graph() {
    let h = isolation_lands_as_heal(Some(Mutant::ExpiredHoldDecidesOnHalfWayGraph));
    let fenced = fenced_nodes(&h);
    eprintln!("r2 control: {fenced:?}");
    assert!(!fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
}

// ---------------------------------------------------------------------------
// P1 (availability (b), pre-existing, not from this diff): an edge settles
// down across a stretch in which no update ran.
// ---------------------------------------------------------------------------

/// Four nodes, LMS, all at phase 0. Link 1–4 loses one report each way at
/// 1000 and again at 1300 (reports at 1100 and 1200 are good). Node 2's
/// link to the arbiter loses its heartbeats of 900 to 1200, so from 1010
/// to 1290 node 2 is suspect and `decide` returns before
/// `Edges::update`: the good reports of 1100 and 1200 are never folded in.
/// At 1300 the edge still has `down_since` 1000 and the reports of 1300
/// say down: "down for settle by the reports" (300 ms), settled at once;
/// no hold reason (symmetric, no young member); {1,2,3} drops node 4.
/// Two one-report glitches 300 ms apart, with the link up in between.
fn two_glitches_across_a_suspect(silent_node: bool) -> Vec<(u128, NodeId)> {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if silent_node && n == 2 && (900..1300).contains(&t) {
            return None;
        }
        let glitch = t == 1000 || t == 1300;
        let drop = match n {
            1 if glitch => vec![4],
            4 if glitch => vec![1],
            _ => vec![],
        };
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(2500), &phase, &reach);
    fenced_nodes(&h)
}

/// FAILS (pre-existing): node 4 fenced at 1300.
#[test]
fn review6_p1_edge_settles_across_a_suspect_blind_stretch() {
    let fenced = two_glitches_across_a_suspect(true);
    assert!(fenced.is_empty(), "{fenced:?}");
}

/// Control: the same two glitches with node 2 heard throughout. Passes.
#[test]
fn review6_p1_control_two_glitches_seen() {
    let fenced = two_glitches_across_a_suspect(false);
    assert!(fenced.is_empty(), "{fenced:?}");
}

// ---------------------------------------------------------------------------
// Latency: node 4 cut from every peer at 1000 (reports flip after the
// 300 ms probe window, at each node's phase), with and without an
// unrelated hold reason present all along (node 2's agent restarting every
// 250 ms as a new instance, reporting nobody while young: `unproven`).
// Prints cut -> fence start. Passes if node 4 is the one fenced.
// ---------------------------------------------------------------------------

#[test]
fn review6_latency_isolation_with_and_without_a_standing_reason() {
    use std::cell::Cell;
    use std::rc::Rc;
    for restarts in [false, true] {
        let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
        let phase = [(1, 30), (2, 60), (3, 90), (4, 0), (5, 20)];
        const B: u64 = 1000;
        let session_at = Rc::new(Cell::new(0u64));
        let sa = session_at.clone();
        let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
            let t = now.as_millis() as u64;
            if restarts && t >= B - 200 && n == 2 && t < sa.get() + 300 {
                return Some(vec![]);
            }
            let mut drop = vec![];
            if t >= B + 300 {
                if n == 4 {
                    drop.extend([1, 2, 3, 5]);
                } else {
                    drop.push(4);
                }
            }
            Some(all_but(n, 5, &drop))
        };
        drive(&mut h, ms(B - 150), &phase, &reach);
        let mut s = 100u64;
        while h.now < ms(B + 2500) {
            if restarts {
                s += 1;
                session_at.set(h.now.as_millis() as u64);
                h.connect(2, s, s);
            }
            let next = h.now + ms(250);
            drive(&mut h, next, &phase, &reach);
        }
        let fenced = fenced_nodes(&h);
        eprintln!(
            "standing reason {restarts}: cut at {B}, reports flip {}..{}, fences {fenced:?}",
            B + 300,
            B + 390
        );
        assert_eq!(fenced.first().map(|f| f.1), Some(4), "{fenced:?}");
    }
}

// ---------------------------------------------------------------------------
// Ruled out (c): youth never brings a down edge back, yet a node back from
// a freeze as the links heal is not kept out.
// ---------------------------------------------------------------------------

/// Five nodes, LMS, all at phase 0. From 1000 every link is down (every
/// report empty): all edges settle down at 1200, the verdict {1} would
/// drop four members: a storm hold, nobody fenced. The links come back at
/// 2000, but node 3 is frozen from 1900 to 2200 (silent), and its first
/// report after the freeze (2200) is still empty (it has not probed yet);
/// from 2300 it reports everyone. Its edges stay down while it is young
/// (its peers report it), then come up on its own reports: nobody fenced,
/// every node holds a lease again by 2600. Passes.
#[test]
fn review6_ruled_out_frozen_node_rejoins_after_storm_heal() {
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if n == 3 && (1900..2200).contains(&t) {
            return None;
        }
        if (1000..2000).contains(&t) || (n == 3 && t == 2200) {
            return Some(vec![]);
        }
        Some(all_but(n, 5, &[]))
    };
    drive(&mut h, ms(3000), &phase, &reach);
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::StormHold { .. }))
    );
    let fenced = fenced_nodes(&h);
    assert!(fenced.is_empty(), "{fenced:?}");
    for n in 1..=5 {
        let late = h.grants(n).into_iter().filter(|t| *t > ms(2600)).count();
        assert!(late > 0, "node {n} holds no lease after the heal");
    }
}

// ---------------------------------------------------------------------------
// Ruled out (b): the arbiter's own outage in the middle of an isolation.
// ---------------------------------------------------------------------------

/// Four nodes, LMS; phases 4 at 0, 3 at 40, 1 and 2 at 50. Node 1 is cut
/// from every peer: reports flip at 1600 (4), 1640 (3), 1650 (1, 2). At
/// 1800 edge 1–4 has settled down, 1–2 and 1–3 are going down: the half-way
/// graph keeps 1 and drops the healthy 4, held. The arbiter then hears
/// nobody from 1810 to 2100 (its own network): contact lost, regained at
/// 2100 with `restart_going_down` and the hold forgotten, every node young
/// (back from a silence). 1–4 stays down (youth does not bring it back);
/// 1–2 and 1–3 stand on youth for 300 ms and must settle again. Node 1 is
/// fenced, node 4 is not. Passes.
#[test]
fn review6_ruled_out_arbiter_outage_mid_isolation() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 50), (3, 40), (4, 0)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if (1810..2100).contains(&t) {
            return None;
        }
        let flip = match n {
            4 => 1600,
            3 => 1640,
            _ => 1650,
        };
        let mut drop = vec![];
        if t >= flip {
            if n == 1 {
                drop.extend([2, 3, 4]);
            } else {
                drop.push(1);
            }
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(1810), &phase, &reach);
    assert!(h.core.hold.is_some(), "held at 1810");
    drive(&mut h, ms(3500), &phase, &reach);
    assert!(h.notices().iter().any(|n| matches!(n, Notice::ContactLost)));
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::ContactRegained { .. }))
    );
    let fenced = fenced_nodes(&h);
    eprintln!("outage mid-isolation: {fenced:?}");
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![1],
        "{fenced:?}"
    );
}
