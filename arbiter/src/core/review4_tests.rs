//! Review of 75c7e29 (holds for heals arriving, half-up edges, unproven
//! edges of young members; edges settle on reports; the hold bounded at
//! `settle + 3 heartbeats` from `half_settled_since`).
//!
//! Run: `cargo test -p arbiter --lib review4`

use super::test_support::*;
use super::*;

/// Scenario for F1: four nodes, LMS, lowest id wins ties.
///
/// - From B+540 node 3 stops reporting node 2 while node 2 still reports
///   node 3 (a one-way link: 2's probes to 3 succeed, 3's to 2 fail, e.g. a
///   stateful firewall). Edge 2–3 settles down at B+740; the verdict
///   {1,2,4} drops 3; the edge is half-up, so the hold starts:
///   `half_settled_since` = B+740, expiring at B+1240.
/// - Node 1 is cut from every peer at B+700 (arbiter link fine). With a
///   300 ms probe window the reports flip: node 4 (phase 0) at B+1000,
///   node 3 (phase 40) at B+1040, nodes 1 and 2 (phase 50) at B+1050. So
///   1–4 settles down at B+1200, 1–3 at B+1240, 1–2 at B+1250: for 50 ms
///   the graph is half-way through node 1's isolation and its best clique
///   is {1,2}, which drops the healthy node 4.
/// - The hold started for the 2–3 link has not been forgotten (a member,
///   3, was dropped with a reason at every evaluation), so at B+1240 it
///   expires on that half-settled graph: nodes 3 and 4 are fenced, and the
///   node cut from every peer (1) stays in the verdict.
///
/// `one_way_at`: when node 3 stops reporting node 2 (None: never).
fn isolation_during_an_older_hold(one_way_at: Option<u64>) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 50), (3, 40), (4, 0)];
    const B: u64 = 1000;
    let cut_reports = B + 1000; // cut at B+700, plus the probe window
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if t >= cut_reports {
            if n == 1 {
                drop.extend([2, 3, 4]);
            } else {
                drop.push(1);
            }
        }
        if n == 3 && one_way_at.is_some_and(|a| t >= B + a) {
            drop.push(2);
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(B), &phase, &reach);
    assert!(h.fences().is_empty());
    // Long enough for a hold of its whole bound (settle + 3 heartbeats)
    // from the moment node 1's edges settle.
    drive(&mut h, ms(B + 2200), &phase, &reach);
    h
}

/// F1 (availability (b)): the healthy node 4 is fenced, and node 1, cut
/// from every peer, is kept. FAILS on 75c7e29.
#[test]
fn review4_f1_hold_started_for_one_link_expires_on_another_nodes_half_settled_isolation() {
    let h = isolation_during_an_older_hold(Some(540));
    let fenced = fenced_nodes(&h);
    for (t, a) in &h.log {
        if *t >= ms(1700) && !matches!(a, Action::Ack { .. }) {
            eprintln!("{} {a:?}", t.as_millis());
        }
    }
    eprintln!(
        "grants 1 after 2240: {}, grants 2 after 2240: {}",
        h.grants(1).iter().filter(|t| **t > ms(2240)).count(),
        h.grants(2).iter().filter(|t| **t > ms(2240)).count()
    );
    assert!(
        !fenced.iter().any(|&(_, n)| n == 4),
        "healthy node 4 fenced (node 1 is the one cut from every peer): fences {fenced:?}, \
         verdict {:?}",
        h.core.status().verdict
    );
}

/// F1 control: the same isolation without the one-way link: node 1 is
/// fenced, node 4 is not (the fresh hold waits for 1–2 and 1–3). Passes.
#[test]
fn review4_f1_control_same_isolation_alone_fences_the_isolated_node() {
    let h = isolation_during_an_older_hold(None);
    let fenced = fenced_nodes(&h);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![1],
        "{fenced:?}"
    );
}

/// F1 control 2: the one-way link 250 ms later (its hold starts at
/// B+990, so still running at B+1250): node 4 is not fenced; node 1 is,
/// once its own hold has run its bound (the one-way link keeps a reason).
#[test]
fn review4_f1_control_later_one_way_link_node_4_survives() {
    let h = isolation_during_an_older_hold(Some(790));
    let fenced = fenced_nodes(&h);
    assert!(!fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
    assert!(fenced.iter().any(|&(_, n)| n == 1), "{fenced:?}");
}

/// F2 (liveness (c)): the start of the hold is forgotten whenever the
/// verdict drops nobody, so a link that comes back for one report every
/// 400 ms restarts the hold every time and its node is never fenced.
///
/// Four nodes, LMS. Node 1 reports node 4 unreachable three heartbeats out
/// of four (its probes to 4 fail; 4's to 1 succeed: 4 keeps reporting 1).
/// Each time edge 1–4 settles down (third report), the verdict {1,2,3}
/// drops 4 with the edge half-up (a hold reason); one heartbeat later the
/// edge is up again, the verdict keeps everyone and `half_settled_since`
/// is reset. Before 75c7e29 node 4 was fenced at the first settle (the old
/// hold only counted edges going down). Node 4 keeps its lease throughout.
/// FAILS on 75c7e29 (never fenced in 5 s).
#[test]
fn review4_f2_link_down_three_reports_in_four_never_fences() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    const B: u64 = 1000;
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let k = t / 100;
        if t >= B && n == 1 && k % 4 != 3 {
            return Some(vec![2, 3]);
        }
        Some(all_but(n, 4, &[]))
    };
    drive(&mut h, ms(B), &phase, &reach);
    drive(&mut h, ms(B + 5000), &phase, &reach);
    let fenced = fenced_nodes(&h);
    let late_grants_4 = h
        .grants(4)
        .into_iter()
        .filter(|t| *t > ms(B + 4000))
        .count();
    assert!(
        !fenced.is_empty(),
        "edge 1-4 down 300 of every 400 ms for 5 s, nobody fenced; node 4 granted {late_grants_4} leases in the last second"
    );
}

/// F2 control: the planted `DecideOnHalfHealedEdges` (no half-up/heal
/// hold) fences node 4 at the first settle. Passes.
#[test]
fn review4_f2_control_without_the_new_holds_node_4_is_fenced() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = Some(Mutant::DecideOnHalfHealedEdges);
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    const B: u64 = 1000;
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B && n == 1 && (t / 100) % 4 != 3 {
            return Some(vec![2, 3]);
        }
        Some(all_but(n, 4, &[]))
    };
    drive(&mut h, ms(B + 1000), &phase, &reach);
    let fenced = fenced_nodes(&h);
    assert_eq!(fenced.first().map(|&(_, n)| n), Some(4), "{fenced:?}");
}

/// Ruled out (c): a node that is always dropped (crashed) is fenced within
/// the bound even while a hold reason is present at every evaluation:
/// node 2's agent restarts every 250 ms (a new instance, so always young)
/// (half-way between heartbeats) and reports nobody on its young
/// sessions, while its peers keep reporting it: its edges are `unproven`
/// all the time. Passes (node 5 is lost at B+400, its hold ends at the
/// bound, about B+900).
#[test]
fn review4_ruled_out_crashed_node_fenced_within_bound_despite_constant_reasons() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    const B: u64 = 1000;
    let session_at = Rc::new(Cell::new(0u64));
    let sa = session_at.clone();
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B && n == 5 {
            return None; // crashed
        }
        if t >= B && n == 2 && t < sa.get() + 300 {
            return Some(vec![]); // a new instance, not probed yet
        }
        let mut drop = vec![];
        if t >= B {
            drop.push(5);
        }
        Some(all_but(n, 5, &drop))
    };
    drive(&mut h, ms(B - 50), &phase, &reach);
    let mut s = 100u64;
    while h.now < ms(B + 3000) {
        s += 1;
        session_at.set(h.now.as_millis() as u64);
        h.connect(2, s, s); // a new instance: young again
        let next = h.now + ms(250);
        drive(&mut h, next, &phase, &reach);
    }
    let fenced = fenced_nodes(&h);
    let at = fenced.iter().find(|&&(_, n)| n == 5).map(|&(t, _)| t);
    eprintln!("crashed node 5 fenced at {at:?}; fences {fenced:?}");
    assert!(
        at.is_some_and(|t| t <= u128::from(B) + 1020),
        "crashed node 5 fenced at {at:?} (fences {fenced:?})"
    );
    assert!(!fenced.iter().any(|&(_, n)| n != 5), "{fenced:?}");
}

/// Found by the review (pre-existing): a node cut from every peer whose
/// agent re-opens its arbiter session every 150 ms (same instance) had its
/// edges forgotten at each `Connected` and re-created up, so they never
/// stayed down for `settle`: never fenced, lease renewed throughout. Only a
/// new agent instance clears a node's edges now.
fn reconnect_loop(mutant: Option<Mutant>) -> Vec<(u128, NodeId)> {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = mutant;
    let phase = [(1, 0), (2, 0), (3, 0), (4, 50)];
    const B: u64 = 1000;
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B {
            return Some(if n == 4 { vec![] } else { all_but(n, 4, &[4]) });
        }
        Some(all_but(n, 4, &[]))
    };
    drive(&mut h, ms(B), &phase, &reach);
    let mut s = 100u64;
    while h.now < ms(B + 3000) {
        let next = h.now + ms(150);
        drive(&mut h, next, &phase, &reach);
        s += 1;
        h.connect(4, s, 4);
    }
    fenced_nodes(&h)
}

#[test]
fn review4_a_node_cut_from_its_peers_that_keeps_reconnecting_is_fenced() {
    let fenced = reconnect_loop(None);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![4],
        "{fenced:?}"
    );
    assert!(reconnect_loop(Some(Mutant::ForgetEdgesOnReconnect)).is_empty());
}

/// Latency: node 4 cut from every peer with report phases spread (4 at 0,
/// 1 at 30, 2 at 60, 3 at 90). Prints when the fence starts. Passes if
/// node 4 is the one fenced.
#[test]
fn review4_latency_plain_isolation() {
    for (label, reason) in [("plain", false), ("with a one-way link elsewhere", true)] {
        let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
        let phase = [(1, 30), (2, 60), (3, 90), (4, 0), (5, 20)];
        const B: u64 = 1000;
        let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
            let t = now.as_millis() as u64;
            let mut drop = vec![];
            // cut at B, reports flip after the 300 ms probe window
            if t >= B + 300 {
                if n == 4 {
                    drop.extend([1, 2, 3, 5]);
                } else {
                    drop.push(4);
                }
            }
            if reason && n == 5 && t >= B + 100 {
                drop.push(3);
            }
            Some(all_but(n, 5, &drop))
        };
        drive(&mut h, ms(B), &phase, &reach);
        drive(&mut h, ms(B + 2000), &phase, &reach);
        let fenced = fenced_nodes(&h);
        eprintln!("latency {label}: cut at {B} ms, fences {fenced:?}");
        assert!(fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
    }
}

/// F2 variant: the same outage seen by both ends (symmetric reports): no
/// half-up edge, and the heal 300 ms before the next settle is older than
/// `settle`: fenced at the first settle. Passes.
#[test]
fn review4_f2_symmetric_outage_is_fenced() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    const B: u64 = 1000;
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let down = t >= B && (t / 100) % 4 != 3;
        match n {
            1 if down => Some(vec![2, 3]),
            4 if down => Some(vec![2, 3]),
            _ => Some(all_but(n, 4, &[])),
        }
    };
    drive(&mut h, ms(B + 2000), &phase, &reach);
    let fenced = fenced_nodes(&h);
    eprintln!("symmetric: {fenced:?}");
    assert!(!fenced.is_empty());
}

/// Latency, worst case of the hold: node 4 cut from every peer (reports
/// flip 300 ms later), while an unrelated hold reason is present
/// throughout (node 2's agent restarting every 250 ms, reporting nobody
/// while young: `unproven`). The fence is confirmed 50 ms after it starts.
/// Prints cut -> fence start, cut -> survivors told, and node 4's last
/// lease grant (renewed during the hold, since the held verdict keeps it).
#[test]
fn review4_latency_worst_case_hold() {
    use std::cell::Cell;
    use std::rc::Rc;
    for restarts in [false, true] {
        let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
        let phase = [(1, 30), (2, 60), (3, 90), (4, 0), (5, 20)];
        const B: u64 = 1000;
        let session_at = Rc::new(Cell::new(0u64));
        let sa = session_at.clone();
        let off = Rc::new(Cell::new(false));
        let off4 = off.clone();
        let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
            let t = now.as_millis() as u64;
            if n == 4 && off4.get() {
                return None;
            }
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
        let mut confirmed = false;
        while h.now < ms(B + 3000) {
            if restarts {
                s += 1;
                session_at.set(h.now.as_millis() as u64);
                h.connect(2, s, s);
            }
            let next = h.now + ms(250);
            while h.now < next {
                let step_to = h.now + ms(10);
                drive(&mut h, step_to, &phase, &reach);
                if !confirmed
                    && let Some(&(t, 4)) = h.fences().first()
                    && h.now >= t + ms(50)
                {
                    h.confirm_off(4);
                    off.set(true);
                    confirmed = true;
                }
            }
        }
        let fence = h.fences().first().map(|&(t, n)| (t.as_millis() - 1000, n));
        let told = h.announces_gone(4).first().map(|t| t.as_millis() - 1000);
        let last_grant = h.grants(4).last().map(|t| t.as_millis() as i64 - 1000);
        eprintln!(
            "restarting node 2: {restarts}: cut->fence {fence:?} ms, cut->told {told:?} ms, node 4 last grant at cut{last_grant:+?} ms"
        );
        if told.is_none() {
            for (t, a) in &h.log {
                if *t >= ms(1400) && !matches!(a, Action::Ack { .. }) {
                    eprintln!("{} {a:?}", t.as_millis());
                }
            }
        }
        assert_eq!(fence.map(|f| f.1), Some(4));
    }
}

/// F3 (liveness (c)), for the hold's reset on *any* step that needs no
/// hold (the uncommitted `holding` change found in the working tree, not
/// in 75c7e29): the crashed node 5 is dropped at every evaluation with a
/// hold reason (node 2's agent restarting every 250 ms, reporting nobody
/// while young: `unproven`), but node 3's arbiter link loses one heartbeat
/// in four and delays the next by 20 ms, so every 400 ms one tick finds it
/// suspect (silent 210 ms) and `decide` returns early. On 75c7e29 that
/// early return keeps `half_settled_since` and node 5 is fenced at the
/// bound; if it forgets the hold's start, the 500 ms bound never expires.
#[test]
fn review4_f3_intermittent_suspect_does_not_reset_the_bound() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    const B: u64 = 1000;
    let session_at = Rc::new(Cell::new(0u64));
    let sa = session_at.clone();
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B && n == 5 {
            return None; // crashed
        }
        if t >= B && n == 2 && t < sa.get() + 300 {
            return Some(vec![]);
        }
        let mut drop = vec![];
        if t >= B {
            drop.push(5);
        }
        Some(all_but(n, 5, &drop))
    };
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    drive(&mut h, ms(B - 50), &phase, &reach);
    let mut s = 100u64;
    let mut next_session = h.now;
    while h.now < ms(B + 4000) {
        if h.now >= next_session {
            s += 1;
            session_at.set(h.now.as_millis() as u64);
            h.connect(2, s, s);
            next_session = h.now + ms(250);
        }
        h.now += ms(10);
        let t = h.now.as_millis() as u64;
        for n in [1, 2, 4] {
            if t.is_multiple_of(100)
                && let Some(r) = reach(n, h.now)
            {
                h.heartbeat(n, &r);
            }
        }
        // Node 3: at k*100, except k = 1 mod 4 lost and k = 2 mod 4 at +20.
        let k = t / 100;
        let due = if t < B {
            t.is_multiple_of(100)
        } else {
            (t.is_multiple_of(100) && k % 4 != 1 && k % 4 != 2) || (t % 100 == 20 && k % 4 == 2)
        };
        if due && let Some(r) = reach(3, h.now) {
            h.heartbeat(3, &r);
        }
        h.step(Event::Tick);
    }
    let fenced = fenced_nodes(&h);
    eprintln!("F3 fences {fenced:?}");
    let at = fenced.iter().find(|&&(_, n)| n == 5).map(|&(t, _)| t);
    assert!(
        at.is_some_and(|t| t <= u128::from(B) + 1200),
        "crashed node 5 fenced at {at:?} (fences {fenced:?})"
    );
}
