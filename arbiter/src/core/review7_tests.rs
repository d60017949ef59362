//! Review of 0ab9a52 (a spent hold lands a heal only when the side
//! reporting it up spoke last, a break only on reports spanning half an
//! interval; edges fold in every report even while a node is suspect; an
//! error on `off` is checked against the device's status).
//!
//! Run: `cargo test -p arbiter --lib review7`

use super::test_support::*;
use super::*;

// ---------------------------------------------------------------------------
// S1 (availability (b)): "spoke last" lands a break arriving as a heal
// when the peer that notices last happens to speak after the cut node.
// ---------------------------------------------------------------------------

/// Four nodes, LMS. Phases: 4 at 10, 3 at 40, 1 at 50, 2 at 90.
///
/// - From 1540 node 3's probes to node 2 fail (one way; 2 keeps reporting
///   3): edge 2–3 settles down at 1740, the verdict {1,2,4} drops 3 with a
///   reason (half-up): hold from 1740, spent at 2240.
/// - Node 1 is cut from every peer. Node 1 notices first (reports from
///   2050 omit 2, 3, 4), node 4 from 2110, node 3 from 2140; node 2's probe
///   window runs out later (`late_from`): it still reports 1 reached at
///   2090 and 2190.
/// - At 2240 the hold is spent. 1–3 and 1–4 are going down on reports
///   spanning >= 50 ms: counted down. 1–2: half-up since 2050 (< settle),
///   and node 2 (reporting it up) spoke at 2190, after node 1 (2150):
///   "a heal arriving", counted up. Landed graph 1–2, 2–4, 3–4: cliques of
///   two, lowest ids {1,2}: nodes 3 and 4 fenced, node 1 (cut from every
///   peer) kept. Node 4 never lost a link.
fn late_noticer(late_from: u64, mutant: Option<Mutant>) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = mutant;
    let phase = [(1, 50), (2, 90), (3, 40), (4, 10)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if n == 3 && t >= 1540 {
            drop.push(2);
        }
        let noticed = match n {
            1 => 2050,
            2 => late_from,
            3 => 2140,
            _ => 2110,
        };
        if t >= noticed {
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

/// FAILS on 0ab9a52 (expected): healthy node 4 fenced at 2240.
#[test]
fn review7_s1_late_noticer_speaking_last_lands_isolation_as_heal() {
    let h = late_noticer(2290, None);
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

/// Control: node 2 notices with the others (its report of 2190 already
/// omits 1): node 4 is not fenced.
#[test]
fn review7_s1_control_node2_notices_in_time() {
    let h = late_noticer(2190, None);
    let fenced = fenced_nodes(&h);
    eprintln!("s1 control: {fenced:?}");
    assert!(!fenced.iter().any(|&(_, n)| n == 4), "{fenced:?}");
}

// ---------------------------------------------------------------------------
// Ruled out (b): a suspect node's stale report does not settle an edge
// down (evidence is its own `last_heard`, which does not move while it is
// silent).
// ---------------------------------------------------------------------------

/// Four nodes, LMS, all at phase 0. At 1000 link 1–2 loses one report
/// each way (1 omits 2, 2 omits 1); node 2 then goes silent to the arbiter
/// until 1400 (suspect from 1210, never lost). Node 1 reports 2 again from
/// 1100. Nobody is fenced. Passes.
#[test]
fn review7_ruled_out_suspect_stale_glitch_does_not_settle() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if n == 2 && (1100..1400).contains(&t) {
            return None;
        }
        let drop = match (n, t) {
            (1, 1000) => vec![2],
            (2, 1000) => vec![1],
            _ => vec![],
        };
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(2500), &phase, &reach);
    let fenced = fenced_nodes(&h);
    assert!(fenced.is_empty(), "{fenced:?}");
}
