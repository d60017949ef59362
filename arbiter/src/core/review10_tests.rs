//! Review of da3efba (a break coming back before it settled is a heal; a
//! spell without quorum ends a hold; the hold runs by heartbeats sent too).
//!
//! Run: `cargo test -p arbiter --lib review10`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// L1 (liveness, change 2): a spell without quorum ends the hold. A link
// that flaps slowly enough to settle down (no quorum) and back up (quorum)
// restarts the hold at every quorate spell; a quorate spell shorter than
// the bound (500 ms) never lets the hold run out. A node really cut off is
// never fenced, and since every NoQuorum sets the verdict to `None` (and a
// held step keeps it), nobody gets a lease again: a whole-cluster outage,
// where before the change the cut node was fenced and {1,2} ran in every
// quorate spell.
// ---------------------------------------------------------------------------

/// Three nodes, tie-breaker mode (2 node votes + the arbiter's 1 needed out
/// of 4); phases 1 at 0, 2 at 50, 3 at 20.
///
/// From 1000 node 3 is cut from both peers for good (it reports nobody,
/// nobody reports it; it still heartbeats to the arbiter). Link 1–2 flaps
/// with a 500 ms period: down (both sides report the other lost) for the
/// first 300 ms of each period, up for 200 ms.
///
/// - ~1220: 1–2 settles down (reports 1000..1200): best clique a single node
///   → NoQuorum, verdict `None`, hold reset.
/// - 1350: 1–2 back up (members: at once) → {1,2} drops 3, reason
///   "healing" (came up within settle): hold from 1350.
/// - 1500..1700: 1–2 going down; reason `saved_once_settled` (landed: no
///   quorum). 1700: settled down → NoQuorum → hold reset (held 350 < 500).
/// - 1850: up again, a new hold... every 500 ms, for ever.
fn no_quorum_oscillation(mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::TieBreaker, 1), mutant);
    let phase = [(1, 0), (2, 50), (3, 20)];
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t < 1000 {
            return Some(all_but(n, 3, &[]));
        }
        let flap_down = (t - 1000) % 500 < 300;
        Some(match n {
            3 => vec![],
            1 if flap_down => vec![],
            1 => vec![2],
            2 if flap_down => vec![],
            _ => vec![1],
        })
    };
    drive(&mut h, ms(8000), &phase, &reach);
    h
}

/// FAILED on da3efba (fixed since): node 3, cut from both peers since 1000, is never
/// fenced, and nodes 1 and 2 get no lease after 1200 (verdict `None` for
/// ever). Before the change (control below) node 3 was fenced at 1850.
#[test]
fn review10_l1_quorum_oscillation_postpones_fence_and_leases_forever() {
    let h = no_quorum_oscillation(None);
    let fenced = fenced_nodes(&h);
    let grants: Vec<usize> = [1, 2]
        .iter()
        .map(|&n| h.grants(n).into_iter().filter(|&t| t > ms(2000)).count())
        .collect();
    dump(&h, 1000, 2400);
    eprintln!(
        "l1: hold {:?} verdict {:?}",
        h.core.hold,
        h.core.status().verdict
    );
    assert!(
        fenced.iter().any(|&(_, n)| n == 3),
        "node 3 cut off since 1000 never fenced by 8000: fenced {fenced:?}; \
         leases granted to 1, 2 after 2000: {grants:?}"
    );
}

/// Control (passes): before the change (`HoldOutlivesNoQuorum`), the hold
/// begun at 1350 outlives the 150 ms NoQuorum spell and is spent at 1850,
/// when 1–2 has just come back: node 3 alone is fenced.
#[test]
fn review10_l1_control_hold_outliving_no_quorum_fences_the_cut_node() {
    let h = no_quorum_oscillation(Some(Mutant::HoldOutlivesNoQuorum));
    let fenced = fenced_nodes(&h);
    // (2050 since a hold is renewed for a member it was not for and edges
    // are proven again when a heal begins on another edge.)
    assert_eq!(fenced.first().copied(), Some((2050, 3)), "{fenced:?}");
    assert!(fenced.iter().all(|&(_, n)| n == 3), "{fenced:?}");
}

// ---------------------------------------------------------------------------
// B1 (healthy node fenced, change 1): a break on its way (two reports of
// one side) that comes back is now a heal, and a heal is a reason to hold.
// Two links flapping that way, out of phase, give a reason at every tick,
// so any verdict that drops a member (here a node really cut off) is held
// for the whole bound and then taken by `landed_verdict`, which counts
// every edge going down on two reports as down: if the spent tick falls in
// a flap, the flapping link's node is fenced although the link never
// stayed down for `settle` (it never counted down at all).
// ---------------------------------------------------------------------------

/// Five nodes, LMS (storm limit 2); nodes 1, 2 heartbeat at phase 0,
/// nodes 3, 4 at 50, node 5 at 20.
///
/// From 1000, link 1–2 flaps (both sides, the same reports): lost at
/// t ≡ 0, 100 (mod 300), reached at t ≡ 200: going down on two reports
/// over [100, 200), back up at 200 ("healing" until 400). Link 3–4 the
/// same 150 ms later: lost at t ≡ 150, 250, reached at t ≡ 50. Neither ever
/// stays down for `settle`: both always count up, and one of them has come
/// back within `settle` at every tick.
///
/// At `iso` node 5 is cut from every peer (it reports nobody, nobody
/// reports it): its edges settle down ~`iso`+200, {1,2,3,4} drops 5 with a
/// reason (a heal) at every tick, hold spent 500 ms later. If that tick
/// falls in 1–2's flap, the landed graph lacks 1–2: verdict {1,3,4},
/// fencing 2 (and 5); in 3–4's flap {1,2,3}, fencing 4 (and 5).
fn two_flaps_and_a_cut(iso: u64, mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(5, QuorumMode::LastManStanding, 1), mutant);
    let phase = [(1, 0), (2, 0), (3, 50), (4, 50), (5, 20)];
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
                1 | 2 if m == 0 || m == 100 => drop.push(3 - n),
                3 | 4 if m == 150 || m == 250 => drop.push(7 - n),
                _ => {}
            }
        }
        Some(all_but(n, 5, &drop))
    };
    drive(&mut h, ms(iso + 2500), &phase, &reach);
    h
}

/// The isolation starts (ms) at which a node other than 5 is fenced.
fn b1_window(mutant: Option<Mutant>) -> Vec<(u64, Vec<(u128, NodeId)>)> {
    others_fenced((0..30).map(|k| 2000 + k * 10), 5, |iso| {
        two_flaps_and_a_cut(iso, mutant)
    })
}

/// FAILED on da3efba (fixed since): for most isolation starts in one 300 ms period a
/// healthy node (2 or 4, whose links never stayed down for `settle`) is
/// fenced along with node 5.
#[test]
fn review10_b1_flapping_links_make_the_spent_hold_land_on_a_flap() {
    let hit = b1_window(None);
    assert!(hit.is_empty(), "healthy nodes fenced: {hit:?}");
}

/// The fix, planted back (`FlapLandsDown`: a spent hold counts a link
/// that bounced during it down on two reports): healthy nodes fenced.
#[test]
fn review10_b1_a_flap_landing_down_is_caught() {
    let hit = b1_window(Some(Mutant::FlapLandsDown));
    assert!(!hit.is_empty(), "the planted bug fenced no healthy node");
}

/// Control (passes): before the change (`BreakComingBackIsNoHeal`), the
/// flaps are no reason to hold: node 5 alone is fenced, for every start.
#[test]
fn review10_b1_control_without_break_back_heal() {
    let hit = b1_window(Some(Mutant::BreakComingBackIsNoHeal));
    assert!(hit.is_empty(), "healthy nodes fenced: {hit:?}");
    let h = two_flaps_and_a_cut(2000, Some(Mutant::BreakComingBackIsNoHeal));
    assert!(fenced_nodes(&h).iter().any(|&(_, n)| n == 5));
}

// ---------------------------------------------------------------------------
// J1 (change 3, the clock-jump guard): `held` counts a node's heartbeats
// since the hold began by sequence numbers, "a new session counting from
// 0". The real agent does not restart its numbers: its `LeaseKeeper`
// (agent/src/lease.rs, `next_seq`) lives as long as the agent process and
// `Session::run` reconnects with the same keeper, so a new session's first
// heartbeat carries the process's running count (thousands after minutes).
// Any live node reconnecting during a hold (the cut node's own session
// resetting, say) makes the report bound huge: the hold runs by the
// arbiter's clock alone again, and an unnoticed forward jump spends it.
// ---------------------------------------------------------------------------

/// Four healthy nodes heartbeating for 1 s (seq 10 each). A hold "begins"
/// at 1000 (baseline taken by `held`). Optionally node 3's agent reconnects
/// at once (new session 103, same instance) and, as the real agent does,
/// keeps numbering from 11. Then the arbiter's clock jumps 190 ms forward
/// unnoticed (one step of 200 ms: not more than `stall_after`), and one
/// round of heartbeats arrives (10 ms of real time after the hold began).
/// Returns `held` at that instant.
fn held_after_jump(reconnect: bool, agent_keeps_numbering: bool) -> Duration {
    let mut h = H::new(spec_levels(4, QuorumMode::LastManStanding, 1));
    let all4: [(NodeId, &[NodeId]); 4] = [
        (1, &[2, 3, 4]),
        (2, &[1, 3, 4]),
        (3, &[1, 2, 4]),
        (4, &[1, 2, 3]),
    ];
    h.run(ms(1000), &all4);
    let alive: BTreeSet<NodeId> = [1, 2, 3, 4].into();
    let since = h.now;
    let mut hold = Hold {
        started: since,
        since,
        last: since,
        paused: None,
        drops: BTreeSet::new(),
        idle: false,
        seqs: BTreeMap::new(),
        renewed: BTreeSet::new(),
        chain_started: since,
    };
    let hb = h.spec.timing.heartbeat_interval;
    assert_eq!(
        held(&mut hold, &h.core.nodes, &alive, since, hb),
        Duration::ZERO
    );
    if reconnect {
        let seq = h.seq[&3];
        h.connect(3, 103, 3);
        if agent_keeps_numbering {
            h.seq.insert(3, seq);
        }
    }
    h.now += ms(190); // unnoticed forward jump of the arbiter's clock
    h.run(ms(10), &all4); // the step lands on 1200: one heartbeat each
    assert!(
        !h.notices()
            .iter()
            .any(|n| matches!(n, Notice::Stalled { .. })),
        "the jump must go unnoticed"
    );
    held(&mut hold, &h.core.nodes, &alive, h.now, hb)
}

/// FAILED on da3efba (fixed since): with the agent's real numbering, node 3's reconnect
/// makes the report bound 1100 ms: `held` = 200 ms (the clock: 190 of them
/// the jump) after 10 ms of real time.
#[test]
fn review10_j1_reconnect_with_the_agents_running_seq_voids_the_report_bound() {
    let held = held_after_jump(true, true);
    assert!(
        held <= ms(100),
        "held {held:?} after 10 ms of real time: only the jumped clock bounds it"
    );
}

/// Was a control pinning a weakness (one heartbeat after the hold began
/// counted a whole interval, so a jump under a stall could spend 100 ms of
/// the hold early); fixed with it: the first heartbeat after the hold began
/// proves no interval, with or without a reconnect.
#[test]
fn review10_j1_a_first_beat_after_the_hold_began_proves_no_interval() {
    assert_eq!(held_after_jump(false, false), Duration::ZERO);
    assert_eq!(held_after_jump(true, false), Duration::ZERO);
}
