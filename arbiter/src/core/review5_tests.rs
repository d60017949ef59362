//! Review of abeb7bc (the hold timed per verdict in `held`; a same-instance
//! reconnect keeps the node's edges).
//!
//! Run: `cargo test -p arbiter --lib review5`

use super::test_support::*;
use super::*;

// ---------------------------------------------------------------------------
// S1 (availability (b)): an earlier glitch that held the same verdict.
// ---------------------------------------------------------------------------

/// Four nodes, LMS, lowest id wins ties. Report phases: 4 at 0, 3 at 40,
/// 1 and 2 at 50.
///
/// - Glitch (if `glitch`): node 1's probes to 4 fail for a while (one way:
///   4 keeps reporting 1): node 1 omits 4 at 1050, 1150, 1250. Edge 1–4
///   settles down at 1250; the verdict {1,2,3} drops the healthy 4, the
///   edge is half-up, so `held[{1,2,3}]` starts: since 1250. Node 1
///   reports 4 again at 1350: edge up, verdict whole, nothing fenced.
///   The entry (last held 1340) is kept until 1840.
/// - Node 1 is then cut from every peer (~1300; reports flip after the
///   probe window): 4 omits 1 from 1600, 3 from 1640, 1 and 2 from 1650.
///   Edge 1–4 settles down at 1800, 1–3 at 1840, 1–2 at 1850. For 40 ms
///   the graph is half-way through node 1's isolation and its best clique
///   is {1,2,3} again: the same verdict as the glitch's, whose hold
///   started 550 ms ago: decided at once, node 4 fenced.
fn glitch_then_isolation(glitch: bool) -> H {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 50), (3, 40), (4, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if glitch && n == 1 && (1050..=1250).contains(&t) {
            drop.push(4);
        }
        let flip = match n {
            4 => 1600,
            3 => 1640,
            _ => 1650,
        };
        if t >= flip {
            if n == 1 {
                drop.extend([2, 3, 4]);
            } else {
                drop.push(1);
            }
        }
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(2600), &phase, &reach);
    h
}

/// FAILS on abeb7bc: node 4 fenced at 1800 (node 1, cut from every peer,
/// kept in the verdict, fenced too 50 ms later). On 75c7e29 the hold's
/// start was forgotten when the glitch ended, so this passed there: a
/// regression of the per-verdict hold.
#[test]
fn review5_s1_glitch_then_isolation_same_verdict_fences_healthy_node() {
    let h = glitch_then_isolation(true);
    let fenced = fenced_nodes(&h);
    if fenced.iter().any(|&(_, n)| n == 4) {
        dump(&h, 1790, u64::MAX);
    }
    assert!(
        !fenced.iter().any(|&(_, n)| n == 4),
        "healthy node 4 fenced; node 1 is the one cut from every peer: fences {fenced:?}"
    );
}

/// Control: the same isolation without the glitch fences node 1 only.
/// Passes.
#[test]
fn review5_s1_control_isolation_alone_fences_the_isolated_node() {
    let h = glitch_then_isolation(false);
    let fenced = fenced_nodes(&h);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![1],
        "{fenced:?}"
    );
}

// ---------------------------------------------------------------------------
// S2 (liveness (c)): verdicts that take turns each get a fresh hold.
// ---------------------------------------------------------------------------

/// Five nodes, LMS, every report at phase 0. From 1000 node 5's probes to
/// node 1 fail for good (one way: 1 keeps reporting 5): edge 1–5 is down
/// from 1200 and half-up for ever; someone must be fenced. Two more
/// one-way links flap with a 900 ms period from 1300 (c = (t-1300) % 900):
/// node 2 omits 4 for c in [100,600), node 1 omits 4 for c in [400,900).
/// The verdict then takes three values, 300 ms each, each dropping a member
/// with a hold reason (a half-up edge whose healed graph keeps it):
///   c in [0,300):   {1,2,3,4}   drops 5
///   c in [300,600): {1,2,3}     drops 4, 5   (2–4 settled down)
///   c in [600,900): {2,3,4,5}   drops 1      (1–4 settled down, 2–4 up)
/// Each verdict is held < 500 ms and absent 600 ms > 500 ms, so its entry
/// is forgotten and its next hold starts afresh: nobody is ever fenced,
/// while nodes 1 and 5 (no link between them) keep their leases.
fn three_verdicts(h: &mut H, until: u64) {
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if n == 5 && t >= 1000 {
            drop.push(1);
        }
        if t >= 1300 {
            let c = (t - 1300) % 900;
            if n == 2 && (100..600).contains(&c) {
                drop.push(4);
            }
            if n == 1 && (400..900).contains(&c) {
                drop.push(4);
            }
        }
        Some(all_but(n, 5, &drop))
    };
    drive(h, ms(until), &phase, &reach);
}

/// FAILS on abeb7bc: nobody fenced in 10 s; the held map cycles.
#[test]
fn review5_s2_three_verdicts_taking_turns_postpone_a_needed_fence_forever() {
    let mut h = H::new(spec_levels(5, QuorumMode::LastManStanding, 1));
    three_verdicts(&mut h, 11_000);
    let fenced = fenced_nodes(&h);
    let late = |n| h.grants(n).into_iter().filter(|t| *t > ms(10_000)).count();
    let decisions: Vec<_> = h
        .notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::Decision { .. }))
        .collect();
    assert!(
        !fenced.is_empty(),
        "edge 1-5 down (one way) for 10 s, nobody fenced; leases granted in the last second: \
         node 1 {}, node 5 {}; held entries now {:?}; decisions {decisions:?}",
        late(1),
        late(5),
        h.core.hold
    );
}

// ---------------------------------------------------------------------------
// S3 (liveness (c)): a node whose own probes fail (one way) and whose
// arbiter session keeps restarting (same instance) is young for ever.
// ---------------------------------------------------------------------------

/// Four nodes, LMS. From 1000 node 4 reaches none of its peers (its probes
/// fail; theirs to it succeed: they keep reporting 4). Edges need both
/// sides, so 4 must be fenced (and is, without reconnects: the control).
/// If node 4's agent re-opens its arbiter session every `period` ms (same
/// instance, as review4's reconnect loop), `session_since` restarts and 4
/// is young: `says(4, y)` is true whatever 4 reports, its peers report it,
/// so its edges count up, and it is never dropped. Keeping the edges of a
/// same-instance reconnect (abeb7bc) does not help: the comment's own
/// premise (the same process kept probing) means its reports are not stale,
/// yet youth discards them.
fn one_way_reconnect_loop(period: Option<u64>) -> (Vec<(u128, NodeId)>, usize) {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 0), (2, 0), (3, 0), (4, 50)];
    const B: u64 = 1000;
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B && n == 4 {
            return Some(vec![]);
        }
        Some(all_but(n, 4, &[]))
    };
    drive(&mut h, ms(B), &phase, &reach);
    let mut s = 100u64;
    while h.now < ms(B + 4000) {
        let next = h.now + ms(period.unwrap_or(100));
        drive(&mut h, next, &phase, &reach);
        if period.is_some() {
            s += 1;
            h.connect(4, s, 4);
        }
    }
    let late = h
        .grants(4)
        .into_iter()
        .filter(|t| *t > ms(B + 3000))
        .count();
    (fenced_nodes(&h), late)
}

/// FAILS on abeb7bc (and before): node 4 never fenced, leases renewed.
#[test]
fn review5_s3_one_way_cut_node_reconnecting_same_instance_never_fenced() {
    let (fenced, late) = one_way_reconnect_loop(Some(150));
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![4],
        "node 4 reports no peer for 4 s: fences {fenced:?}, leases granted to 4 in the last second: {late}"
    );
}

/// Control: the same node without reconnects is fenced. Passes.
#[test]
fn review5_s3_control_one_way_cut_node_is_fenced() {
    let (fenced, _) = one_way_reconnect_loop(None);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![4],
        "{fenced:?}"
    );
}

/// S3 without any reconnect: node 4's arbiter link loses two heartbeats in
/// three (one arrives every 300 ms). Each arrival is "back from a silence"
/// (> `fresh_within`), so `session_since` restarts and 4 is young for the
/// next 300 ms; in between it is suspect and nothing is decided. FAILS
/// (pre-existing: the back-from-silence rule predates abeb7bc).
#[test]
fn review5_s3b_one_way_cut_node_with_lossy_arbiter_link_never_fenced() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    const B: u64 = 1000;
    let phase = [(1, 0), (2, 0), (3, 0), (4, 50)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= B && n == 4 {
            // Only one heartbeat in three reaches the arbiter.
            return (t / 100).is_multiple_of(3).then(Vec::new);
        }
        Some(all_but(n, 4, &[]))
    };
    drive(&mut h, ms(B + 4000), &phase, &reach);
    let fenced = fenced_nodes(&h);
    let late = h
        .grants(4)
        .into_iter()
        .filter(|t| *t > ms(B + 3000))
        .count();
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![4],
        "fences {fenced:?}, leases to 4 in the last second: {late}"
    );
}

// ---------------------------------------------------------------------------
// S4 (liveness (c), pre-existing): the joiner-settling hold is unbounded.
// ---------------------------------------------------------------------------

/// Five nodes, LMS, backed {1,2,3,4} at epoch 1; node 5 (a rebooted node,
/// a new instance) is joining with a flaky link: its reports alternate
/// [1] and [2] (nodes 1 and 2 report it, 3 and 4 do not). Each of its
/// edges 1–5 and 2–5 is raw up for 100 ms < settle, by turns, so at every
/// tick some joiner edge is "settling". Node 4 crashes at 1500. The
/// verdict {1,2,3} drops it, and `drops_member && self.edges.settling()`
/// returns `None` with no bound: the crashed member is never fenced.
fn crashed_member_with_flaky_joiner(flaky: bool) -> H {
    let spec = spec_levels(5, QuorumMode::LastManStanding, 1);
    let persisted = Persisted {
        epoch: 1,
        backed: [1, 2, 3, 4].into(),
        next_intent: 1,
        ..Persisted::default()
    };
    let mut h = H::boot(spec, persisted, &[1, 2, 3, 4, 5]);
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if n == 4 && t >= 1500 {
            return None;
        }
        if n == 5 {
            if !flaky {
                return Some(vec![]);
            }
            return Some(if (t / 100).is_multiple_of(2) {
                vec![1]
            } else {
                vec![2]
            });
        }
        let mut r = all_but(n, 5, &[5]);
        if t >= 1800 {
            r.retain(|&m| m != 4);
        }
        if flaky && (n == 1 || n == 2) {
            r.push(5);
        }
        Some(r)
    };
    drive(&mut h, ms(6000), &phase, &reach);
    h
}

/// FAILS: the crashed member 4 is never fenced.
#[test]
fn review5_s4_flaky_joiner_holds_a_crashed_members_fence_forever() {
    let h = crashed_member_with_flaky_joiner(true);
    let fenced = fenced_nodes(&h);
    assert!(
        fenced.iter().any(|&(t, n)| n == 4 && t <= 3000),
        "crashed member 4 not fenced by 3000 (run to 6000): {fenced:?}; at 6000: node 4 alive {}, \
         joiner edge settling {}, verdict {:?}, phase of 5 {:?}",
        h.core.nodes[&4].is_alive(h.now, h.spec.timing.lost_after),
        h.core.edges.settling(),
        h.core.status().verdict,
        h.core.nodes[&5].phase.name()
    );
}

/// Control: the same crash with a joiner that reaches nobody. Passes.
#[test]
fn review5_s4_control_crashed_member_fenced() {
    let fenced = fenced_nodes(&crashed_member_with_flaky_joiner(false));
    assert!(
        fenced.iter().any(|&(t, n)| n == 4 && t <= 3000),
        "{fenced:?}"
    );
}

// ---------------------------------------------------------------------------
// Ruled out: an arbiter stall in the middle of a hold.
// ---------------------------------------------------------------------------

/// S1's isolation without the glitch; the hold of {1,2,3} starts at 1800
/// and the arbiter stalls from 1810 to 2200 (no step at all; nodes 1–3
/// flip during the stall). The hold's clock ran through the stall (390 of
/// its 500 ms), but every node is "back from a silence" on resume, young
/// for 300 ms: all edges count up, then go down together and settle at
/// once. Node 1 is fenced, node 4 is not. Passes.
#[test]
fn review5_ruled_out_stall_mid_hold() {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let phase = [(1, 50), (2, 50), (3, 40), (4, 0)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let flip = match n {
            4 => 1600,
            3 => 1840,
            _ => 1850,
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
    assert!(h.core.hold.is_some());
    h.now = ms(2190); // stalled: the next step is at 2200
    drive(&mut h, ms(3500), &phase, &reach);
    let fenced = fenced_nodes(&h);
    assert_eq!(
        fenced.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![1],
        "{fenced:?}"
    );
}

// ---------------------------------------------------------------------------
// S6 (availability (b), low): edges kept across the reconnects that follow
// the arbiter's own isolation join two glitches into one outage.
// ---------------------------------------------------------------------------

/// Four nodes, LMS, all at phase 0. At 1000 one report each of nodes 1 and
/// 4 omits the other (a short glitch of link 1–4, back at 1100): edge 1–4
/// starts going down (down_since 1000). From 1010 the arbiter hears
/// nobody (its own network) until 3000; the agents' sessions fail and they
/// reconnect (same instances, new sessions): 1, 2, 3 at 3000, node 4 (slow)
/// at 3400. At 3400 link 1–4 glitches again for one report each. Node 1's
/// session is 400 ms old (not young); 4 is young. The edge state kept from
/// 1000 (`down_since` 1000) meets node 1's one report of 3400: "down for
/// settle by the reports", settled at once, and {1,2,3} drops node 4 with
/// no hold reason: fenced on two one-report glitches 2.4 s apart, across
/// the arbiter's own outage (DESIGN: "a single lost probe does not fence
/// anyone"; "the arbiter's own isolation ... is never evidence"). Before
/// abeb7bc the reconnect cleared the edge and 3400 began a new 200 ms
/// settle (healed at 3500).
fn isolation_then_glitches(second_glitch: bool, mutant: Option<Mutant>) -> Vec<(u128, NodeId)> {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    h.core.mutant = mutant;
    let phase = [(1, 0), (2, 0), (3, 0), (4, 0)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if (1010..3000).contains(&t) || (n == 4 && (1010..3400).contains(&t)) {
            return None;
        }
        let glitch = t == 1000 || (second_glitch && t == 3400);
        let drop = match n {
            1 if glitch => vec![4],
            4 if glitch => vec![1],
            _ => vec![],
        };
        Some(all_but(n, 4, &drop))
    };
    drive(&mut h, ms(1000), &phase, &reach);
    drive(&mut h, ms(2990), &phase, &reach);
    for n in [1, 2, 3] {
        h.connect(n, 100 + u64::from(n), u64::from(n));
    }
    drive(&mut h, ms(3390), &phase, &reach);
    h.connect(4, 104, 4);
    drive(&mut h, ms(5000), &phase, &reach);
    fenced_nodes(&h)
}

/// FAILS on abeb7bc: node 4 fenced at 3400.
#[test]
fn review5_s6_two_glitches_across_the_arbiters_isolation_fence_a_node() {
    let fenced = isolation_then_glitches(true, None);
    assert!(fenced.is_empty(), "{fenced:?}");
}

/// Control: with the old rule (`ForgetEdgesOnReconnect`: every new session
/// clears the node's edges) the same two glitches fence nobody. Passes.
#[test]
fn review5_s6_control_old_rule_two_glitches() {
    let fenced = isolation_then_glitches(true, Some(Mutant::ForgetEdgesOnReconnect));
    assert!(fenced.is_empty(), "{fenced:?}");
}

/// Control: the first glitch alone fences nobody. Passes.
#[test]
fn review5_s6_control_one_glitch() {
    let fenced = isolation_then_glitches(false, None);
    assert!(fenced.is_empty(), "{fenced:?}");
}
