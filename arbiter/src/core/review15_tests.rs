#![allow(clippy::collapsible_if)]
//! Review of 4b17d00, 5bc88b3 and 8307c96 (the edges take in the reports
//! of the start-up grace; edges proven down before the arbiter's own
//! outage are proven again after it; a hold renewed for a member it was
//! not for; the agent last heard and the alive-after-off alert persisted).
//!
//! Findings (each section below says more):
//! - A1 (healthy node fenced; FAILED on 8307c96, passes since 5d115f5):
//!   one flap of a node cut from its peers fills a hold's chain with every
//!   member; the next flap resumes that spent hold and it decides mid-way
//!   through a heal. (Renewal once per member cannot cover it; 5d115f5's
//!   re-proving of down edges when a heal begins does.)
//! - C1 (alert lost; FAILS on 8307c96): an alert raised while the node's
//!   fence runs is not restored by a restart; the node later rejoins with a
//!   lease, no operator involved.
//! - B1 (liveness, passes, quantified): renewals postpone a cut node's fence
//!   by up to one hold per member dropped in turn.
//! - G1, G2, D (pass): the grace change (a heal around its end; no lease in
//!   it, a stall restarting it), and random events with restarts from the
//!   store (no panic, no lease in any grace, none to a node alive after
//!   off).
//! - The `explore_*` tests (ignored) are the sweeps behind these.
//!
//! Run: `cargo test -p arbiter --lib review15`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Exploration helpers.
// ---------------------------------------------------------------------------

/// Drive `h` until `until`: node `n` heartbeats at `now % 100 == phase`,
/// reporting the peers `m` whose link was up at some instant within the
/// last `lag(n, m)` ms (an agent's probe answered within three intervals).
fn drive_links(
    h: &mut H,
    until: u64,
    phase: &[(NodeId, u64)],
    k: u32,
    lag: &dyn Fn(NodeId, NodeId) -> u64,
    link: &dyn Fn(NodeId, NodeId, u64) -> bool,
) {
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        Some(
            (1..=k)
                .filter(|&m| m != n)
                .filter(|&m| {
                    // Probes every 100 ms at phase `lag(n, m)`; reachable
                    // = a probe answered within three intervals.
                    let pp = lag(n, m) % 100;
                    (0..30).any(|i| {
                        let s = t.checked_sub(i * 10);
                        s.is_some_and(|s| s % 100 == pp && link(n.min(m), n.max(m), s))
                    })
                })
                .collect(),
        )
    };
    drive(h, ms(until), phase, &reach);
}

/// A random scenario: `k` nodes, LMS; `flappers` nodes each cut from every
/// peer in random spells; random phases and per-pair probe lags. Returns
/// the fences of nodes never cut, and the run.
fn random_cuts(
    seed: u64,
    k: u32,
    flappers: &[NodeId],
    mutant: Option<Mutant>,
) -> (Vec<(u128, NodeId)>, H, String) {
    let mut r = Lcg(seed);
    let mut spells: BTreeMap<NodeId, Vec<(u64, u64)>> = BTreeMap::new();
    for &f in flappers {
        let mut t = 1000 + r.below(400);
        let mut v = vec![];
        for _ in 0..(1 + r.below(5)) {
            let c = 100 + r.below(15) * 50;
            v.push((t, t + c));
            t += c + 100 + r.below(15) * 50;
        }
        spells.insert(f, v);
    }
    let phase: Vec<(NodeId, u64)> = (1..=k).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=k {
        for b in 1..=k {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let desc = format!("seed {seed} spells {spells:?} phases {phase:?} lags {lags:?}");
    let sp = spells.clone();
    let link = move |a: NodeId, b: NodeId, t: u64| {
        ![a, b].iter().any(|n| {
            sp.get(n)
                .is_some_and(|v| v.iter().any(|&(s, e)| (s..e).contains(&t)))
        })
    };
    let lag = |n: NodeId, m: NodeId| lags[&(n, m)];
    let mut h = h_with(spec_levels(k, QuorumMode::LastManStanding, 1), mutant);
    drive_links(&mut h, 6000, &phase, k, &lag, &link);
    let bad = fenced_nodes(&h)
        .into_iter()
        .filter(|(_, n)| !spells.contains_key(n))
        .collect();
    (bad, h, desc)
}

/// Sweep: nodes cut from every peer in random spells (>= 100 ms each),
/// realistic probes; counts fences of nodes never cut. On 8307c96: 3-node
/// runs 1/2000 (A1), 4 nodes with two flappers 7/2000, 5 nodes 2/2000 —
/// the same as on 0577625 (one fewer); on 5d115f5: 0, 5 and 2 (A1's
/// kind gone). The 4- and 5-node ones are two
/// nodes isolated at overlapping times, whose half-way graph ties a
/// healthy node out with no change in flight yet (pre-existing, not these
/// changes). `R15_SEEDS` sets the count.
#[test]
#[ignore]
fn explore_random_cuts() {
    let seeds: u64 = std::env::var("R15_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for (k, flappers) in [
        (3u32, vec![1]),
        (3, vec![2]),
        (4, vec![1, 2]),
        (5, vec![1, 3]),
        (4, vec![2]),
    ] {
        for mutant in [None, Some(Mutant::HoldSpentOnAnotherMember)] {
            let mut n = 0;
            for seed in 0..seeds {
                let (bad, _, desc) = random_cuts(seed, k, &flappers, mutant);
                if !bad.is_empty() {
                    println!("BAD {k} {flappers:?} {mutant:?} {seed} {bad:?}");
                    n += 1;
                    if n <= 3 {
                        eprintln!("  {k} {flappers:?} {mutant:?} {desc}: {bad:?}");
                    }
                }
            }
            eprintln!(
                "{k} nodes, flappers {flappers:?}, {mutant:?}: {n}/{seeds} fence a node never cut"
            );
        }
    }
}

/// Three nodes, LMS; heartbeat phases 1 at 80, 2 at 0, 3 at 20. Node 1 is
/// cut from both peers (both ways) in each of `spells`; every agent probes
/// each peer every 100 ms (phases: node 1 probes 2 at 10, 3 at 70; node 2
/// probes 1 at 30; node 3 probes 1 at 10) and reports it reached while a
/// probe was answered within three intervals. Nodes 2 and 3 never have a
/// fault of their own.
fn flapping_1(spells: &'static [(u64, u64)], until: u64, mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), mutant);
    let link = move |a: NodeId, _b: NodeId, t: u64| {
        a != 1 || !spells.iter().any(|&(s, e)| (s..e).contains(&t))
    };
    let lag = |n: NodeId, m: NodeId| match (n, m) {
        (1, 2) => 10,
        (1, 3) => 70,
        (2, 1) => 30,
        (3, 1) => 10,
        (2, 3) => 80,
        _ => 10,
    };
    drive_links(&mut h, until, &[(1, 80), (2, 0), (3, 20)], 3, &lag, &link);
    h
}

// ---------------------------------------------------------------------------
// A1 (healthy node fenced; change 3 does not cover it): a hold's chain
// holds every member after one flap of node 1 (a heal arriving one report
// at a time drops 3, then 1, then 2: two renewals in 100 ms). The next
// flap within `bound` of the chain's last step resumes that hold (idle ->
// resume), already spent by its age; the verdict mid-way through the next
// heal drops node 2 again, which the chain was already for: no renewal.
// `landed_verdict` has no notion of an edge that came back up within
// `settle` (`came_up_within`, the "healing" reason to hold): the 1–2 edge,
// down and not yet reported up by either side, counts down, the landed
// graph {1–3, 2–3} is "clear" ({1,3} either way) and node 2 is fenced.
//
// Trace (8307c96): 2420 drops {3} (hold); 2480 drops {1} (renewed);
// 2520 drops {2} (renewed: renewed {1,3}, drops {2}, since 2520); 2590
// last held step; 3020 drops {3} again (resume: started 3020, since 2520);
// 3120 drops {2}, held 500 (spent), landed {1,3}: node 2 fenced.
// ---------------------------------------------------------------------------

const FLAPS: &[(u64, u64)] = &[(1992, 2442), (2592, 3042)];

/// FAILED on 8307c96 (and on 0577625, and with `HoldSpentOnAnotherMember`;
/// passes since 5d115f5, which re-proves the down 1–2 edge when the heal
/// begins): node 1, cut from every peer twice for 450 ms with 150 ms
/// between, is the only node with a fault; node 2 was fenced at 3120,
/// mid-way through the second heal.
#[test]
fn review15_a1_a_spent_chain_decides_on_a_heal_mid_way() {
    let h = flapping_1(FLAPS, 6000, None);
    let f = fenced_nodes(&h);
    assert!(
        f.iter().all(|&(_, n)| n == 1),
        "node 1 alone has a fault (cut from every peer in {FLAPS:?}): fenced {f:?}"
    );
}

/// Pins the cause (passes): just before 3120 the hold is the one renewed
/// at 2520 and its chain already holds every member, so the drop of
/// node 2 at 3120 renews nothing.
#[test]
fn review15_a1_pin_the_chain_holds_every_member() {
    let h = flapping_1(FLAPS, 3110, None);
    let hold = h.core.hold.clone().expect("a hold runs");
    let chain: BTreeSet<NodeId> = hold.renewed.union(&hold.drops).copied().collect();
    assert_eq!(chain, [1, 2, 3].into(), "{hold:?}");
    assert!(
        hold.since < ms(2600) && hold.started >= ms(3000),
        "{hold:?}"
    );
}

/// Control (passes): the second flap alone, or the first alone, fences
/// nobody healthy: it is the chain the first flap left behind.
#[test]
fn review15_a1_control_one_flap_alone_is_fine() {
    for spells in [&FLAPS[..1], &FLAPS[1..]] {
        let f = fenced_nodes(&flapping_1(spells, 6000, None));
        assert!(f.iter().all(|&(_, n)| n == 1), "{spells:?}: {f:?}");
    }
}

// ---------------------------------------------------------------------------
// C1: an alert raised while the node's fence runs is not restored by a
// restart (`build` skips nodes with an open intent).
// ---------------------------------------------------------------------------

/// Node 3 (boot 0xb3, agent 3) is fenced and recorded off by a device that
/// lied; agent 30 (boot 0xb30) is taken for the reboot and becomes a
/// member; node 3 is cut off and fenced again; while that fence runs,
/// agent 3 (never switched off) speaks: alive after off, alert persisted.
/// Returns the harness just after the alert.
fn alert_during_a_fence(mutant: Option<Mutant>) -> H {
    let mut h = three_with_boots(mutant);
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(300), &TWO);
    assert_eq!(h.announces_gone(3).len(), 1);
    // "Rebooted": another agent in another boot.
    h.boot.insert(3, 0xb30);
    h.connect(3, 300, 30);
    h.run(ms(1500), &ALL3);
    assert!(h.store.backed.contains(&3) && !alerted(&h, 3), "came back");
    // Cut off again: a second fence starts.
    let before = h.fences().len();
    for _ in 0..800 {
        if h.fences().len() > before {
            break;
        }
        h.run(ms(10), &TWO);
    }
    assert!(h.fences().len() > before, "fenced again");
    // The agent the first fence recorded off speaks.
    h.boot.insert(3, 0xb3);
    h.connect(3, 301, 3);
    h.run(ms(100), &TWO);
    assert!(
        alerted(&h, 3) && h.store.alerts.contains_key(&3),
        "alert raised and persisted"
    );
    assert!(
        h.store.open_intents.contains_key(&3),
        "the second intent is open"
    );
    h
}

/// C1 (FAILS on 8307c96): the arbiter restarts with the alert and the open
/// intent of node 3 in its store. The alert must stand (status shows it)
/// and node 3 get no lease until an operator clears it, as it would have
/// without the restart; instead the alert is skipped (the node is
/// `Leaving`), the resumed fence is confirmed, node 3 is announced gone,
/// and a new agent of node 3 rejoins with a lease, no operator involved.
#[test]
fn review15_c1_an_alert_raised_during_a_fence_is_lost_by_a_restart() {
    let mut h = alert_during_a_fence(None);
    // Without a restart: the alert stands, node 3 never gets a lease.
    let mut control = alert_during_a_fence(None);
    control.run(ms(500), &TWO);
    let back = control.now;
    control.boot.insert(3, 0xb31);
    control.connect(3, 400, 31);
    control.run(ms(3000), &ALL3);
    assert!(
        control.core.status().alerts.contains_key(&3)
            && !control.grants(3).iter().any(|&t| t >= back),
        "without a restart the alert stands"
    );
    // With a restart.
    h.restart(&[1, 2]);
    h.run(ms(20), &TWO);
    let after_restart = h.core.status().alerts.contains_key(&3);
    if let Some(Phase::Leaving(_)) = h.core.node(3).map(|v| v.phase.clone()) {
        h.confirm_off(3);
    }
    h.run(ms(1500), &TWO);
    let back = h.now;
    h.boot.insert(3, 0xb31);
    h.connect(3, 400, 31);
    h.run(ms(3000), &ALL3);
    let leased = h.grants(3).iter().any(|&t| t >= back);
    assert!(
        after_restart && !leased && h.core.status().alerts.contains_key(&3),
        "after the restart: alert shown {after_restart}, node 3 leased {leased}, alert now {:?}, gone announced {}",
        h.core.status().alerts.get(&3),
        h.announces_gone(3).len()
    );
}

/// As `random_cuts`, with the first flapper cut from every peer for good
/// from `perm` (after its spells): how long after `perm` it is fenced
/// (`None`: never by 8000), and whether a node never cut was fenced.
fn random_then_cut(
    seed: u64,
    k: u32,
    flappers: &[NodeId],
    perm: u64,
    mutant: Option<Mutant>,
) -> (Option<u64>, bool) {
    let mut r = Lcg(seed);
    let mut spells: BTreeMap<NodeId, Vec<(u64, u64)>> = BTreeMap::new();
    for &f in flappers {
        let mut t = perm - 1500 + r.below(400);
        let mut v = vec![];
        while t < perm {
            let c = 100 + r.below(9) * 50;
            v.push((t, (t + c).min(perm)));
            t += c + 100 + r.below(9) * 50;
        }
        spells.insert(f, v);
    }
    spells.get_mut(&flappers[0]).unwrap().push((perm, u64::MAX));
    let phase: Vec<(NodeId, u64)> = (1..=k).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=k {
        for b in 1..=k {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let sp = spells.clone();
    let link = move |a: NodeId, b: NodeId, t: u64| {
        ![a, b].iter().any(|n| {
            sp.get(n)
                .is_some_and(|v| v.iter().any(|&(s, e)| (s..e).contains(&t)))
        })
    };
    let lag = |n: NodeId, m: NodeId| lags[&(n, m)];
    let mut h = h_with(spec_levels(k, QuorumMode::LastManStanding, 1), mutant);
    drive_links(&mut h, 8000, &phase, k, &lag, &link);
    let f = fenced_nodes(&h);
    let healthy = f.iter().any(|(_, n)| !spells.contains_key(n));
    let delay = f
        .iter()
        .find(|&&(t, n)| n == flappers[0] && t >= u128::from(perm))
        .map(|&(t, _)| t as u64 - perm);
    (delay, healthy)
}

/// Sweep: a node flapping, then cut for good: delay to its fence. Worst
/// 570 ms on 8307c96, the same with `HoldSpentOnAnotherMember` and on
/// 0577625 (random flaps do not reach the chains of B1).
#[test]
#[ignore]
fn explore_delay_after_flaps() {
    let seeds: u64 = std::env::var("R15_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for (k, flappers) in [
        (3u32, vec![1]),
        (3, vec![3]),
        (4, vec![1, 2]),
        (5, vec![5, 1, 3]),
        (5, vec![1, 2, 3, 4]),
    ] {
        for mutant in [None, Some(Mutant::HoldSpentOnAnotherMember)] {
            let (mut worst, mut never, mut fenced_before) = ((0, 0), 0, 0);
            let mut hist: BTreeMap<u64, u32> = BTreeMap::new();
            for seed in 0..seeds {
                match random_then_cut(seed, k, &flappers, 4000, mutant) {
                    (Some(d), _) => {
                        *hist.entry(d / 100 * 100).or_default() += 1;
                        if d > worst.0 {
                            worst = (d, seed);
                        }
                    }
                    (None, _) => {
                        // fenced before the permanent cut, or never
                        never += 1;
                    }
                }
                let _ = &mut fenced_before;
            }
            println!(
                "DELAY {k} {flappers:?} {mutant:?}: worst {worst:?}, not fenced after the cut {never}, histogram {hist:?}"
            );
        }
    }
}

/// Five nodes, LMS; phases 1 at 0, 2 at 20, 3 at 40, 4 at 60, 5 at 80.
/// From 1000 node 5 is cut one way for good: its peers report it lost, it
/// reports them all (its own link fault; the edges half up). `blips`: node
/// `who` reports `peer` lost in [start, end) (a one-way fault of that link
/// of its own, healed at `end`).
fn chain5(blips: &[(NodeId, NodeId, u64, u64)], mutant: Option<Mutant>) -> H {
    let mut h = h_with(spec_levels(5, QuorumMode::LastManStanding, 1), mutant);
    let blips = blips.to_vec();
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop: Vec<NodeId> = blips
            .iter()
            .filter(|&&(w, _, s, e)| w == n && (s..e).contains(&t))
            .map(|&(_, p, _, _)| p)
            .collect();
        if t >= 1000 && n != 5 {
            drop.push(5);
        }
        Some(all_but(n, 5, &drop))
    };
    drive(
        &mut h,
        ms(9000),
        &[(1, 0), (2, 20), (3, 40), (4, 60), (5, 80)],
        &reach,
    );
    h
}

// ---------------------------------------------------------------------------
// B1 (liveness, change 3): bounded, but by one hold per member, not by the
// bound. Node 5 is cut one way for good from 1000 (a hold from 1200, spent
// at 1700; fenced at 1720 with no other fault). Four short one-way faults
// of other links (each healed within 240 ms: a reason to hold, half up),
// timed to settle just as the running hold is spent, make the verdict drop
// 4, then 3, then 2, then 1 in turn: four renewals, each a fresh hold of
// `bound`, and each spent on an unclear landing (the next fault's half-up
// edge is unsure) that waits another settle + interval. Node 5 is fenced at
// 4420: 3.4 s after its cut instead of 0.72 s, +0.68 s per renewal. In a
// cluster of n members the same costs up to (n - 1) x (bound + settle +
// interval) (~43 s at 64 nodes; up to 2 x bound + settle + interval each
// for a resumed hold); ARCHITECTURE.md still says the hold costs "at most
// the bound, 500 ms by default".
// ---------------------------------------------------------------------------

const TURNS: [(NodeId, NodeId, u64, u64); 5] = [
    (4, 3, 1660, 1900),
    (3, 2, 2340, 2580),
    (2, 1, 3020, 3260),
    (1, 2, 3700, 3940),
    (1, 3, 3700, 3940),
];

/// Quantifies (passes): the fence of node 5 waits one renewed hold per
/// member the verdict drops in turn.
#[test]
fn review15_b1_verdicts_taking_turns_postpone_a_fence_by_a_hold_per_member() {
    let alone = fenced_nodes(&chain5(&[], None));
    assert_eq!(alone, vec![(1720, 5)]);
    let turns = fenced_nodes(&chain5(&TURNS, None));
    // (4420 before the chain was capped: a hold is renewed only while its
    // chain is younger than 2 x bound + settle + interval, 1300 ms.)
    // (Node 3 too, at 2540, while its own link 3–2 is cut one way,
    // 2340–2580: a fault of its link explains it.)
    assert_eq!(
        turns,
        vec![(2540, 3), (2540, 5)],
        "renewals within the chain's cap"
    );

    // Without the renewal node 5 is fenced on the first spent hold (on
    // 8307c96 at 1860, with node 4, whose one-way fault settled on that
    // tick).
    let old = fenced_nodes(&chain5(&TURNS, Some(Mutant::HoldSpentOnAnotherMember)));
    assert!(old.first().is_some_and(|&(t, _)| t < 2000), "{old:?}");
}

/// Drive `h` until `until`: node `n` sends a heartbeat at `now % 100 ==
/// phase`, reporting `reach(n, t)` as of its sending; those sent in
/// `[o1, o2)` (the arbiter's own network down) are queued and delivered
/// from `o2` on, one per node per tick (`burst_gap` ms apart), in order,
/// before that node's later ones.
fn drive_outage(
    h: &mut H,
    until: u64,
    phase: &[(NodeId, u64)],
    outage: (u64, u64),
    burst_gap: u64,
    reach: &dyn Fn(NodeId, u64) -> Vec<NodeId>,
) {
    drive_outages(h, until, phase, &[outage], burst_gap, reach)
}

/// As `drive_outage`, with several outages.
fn drive_outages(
    h: &mut H,
    until: u64,
    phase: &[(NodeId, u64)],
    outages: &[(u64, u64)],
    burst_gap: u64,
    reach: &dyn Fn(NodeId, u64) -> Vec<NodeId>,
) {
    let mut queue: BTreeMap<NodeId, std::collections::VecDeque<Vec<NodeId>>> = BTreeMap::new();
    let mut next_release = 0;
    while h.now < ms(until) {
        h.now += ms(10);
        let t = h.now.as_millis() as u64;
        for &(n, p) in phase {
            if t % 100 == p {
                let r = reach(n, t);
                let q = queue.entry(n).or_default();
                if outages.iter().any(|o| (o.0..o.1).contains(&t)) || !q.is_empty() {
                    q.push_back(r);
                } else {
                    h.heartbeat(n, &r);
                }
            }
        }
        let out = outages.iter().any(|o| (o.0..o.1).contains(&t));
        if !out && t >= next_release {
            for n in queue.keys().copied().collect::<Vec<_>>() {
                if let Some(r) = queue.get_mut(&n).unwrap().pop_front() {
                    h.heartbeat(n, &r);
                }
            }
            next_release = t + burst_gap;
        }
        h.step(Event::Tick);
    }
}

/// As `outage_heal`, node `c` the cut one.
fn outage_heal_node(
    c: NodeId,
    cut: u64,
    heal: u64,
    outage: (u64, u64),
    gap: u64,
    phases: [u64; 3],
    mutant: Option<Mutant>,
) -> (Vec<(u128, NodeId)>, H) {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), mutant);
    let reach = move |n: NodeId, t: u64| -> Vec<NodeId> {
        let cutting = (cut..heal).contains(&t);
        if !cutting {
            all_but(n, 3, &[])
        } else if n == c {
            vec![]
        } else {
            all_but(n, 3, &[c])
        }
    };
    drive_outage(
        &mut h,
        5000,
        &[(1, phases[0]), (2, phases[1]), (3, phases[2])],
        outage,
        gap,
        &reach,
    );
    (fenced_nodes(&h), h)
}

/// Sweeps for the re-proving (5bc88b3): a node cut from its peers, the
/// arbiter's own network down (reports queued, delivered one per tick
/// after), the cut healing during the outage; and the same after an
/// earlier outage (so that the nodes back from the second are not young
/// again: one probe window per `lost_after + settle`). 0 wrong fences in
/// ~62,000 runs — but 0 with `DownEdgesOutliveTheOutage` too: the young
/// window after every silence masks the queued stale reports, and I found
/// no core scenario that reaches the re-proving with an edge proven before
/// the outage and no fence yet. (Note: re-proving accepts two reports of
/// one side any distance apart, 10 ms will do, unlike the two-report rule
/// of `landed_verdict`, which wants them half an interval apart; a burst of
/// queued reports from a node that is not young would prove it.)
#[test]
#[ignore]
fn explore_outage_heal_node() {
    let mut diff = 0;
    let mut bad_none = 0;
    let mut total = 0;
    for c in [1u32, 2, 3] {
        for o1 in (1150..=1500).step_by(10) {
            for out_len in (210..=490).step_by(70) {
                for heal_in in (0..out_len).step_by(70) {
                    for gap in [0u64, 10] {
                        for phases in [[0, 50, 20], [0, 30, 60], [50, 0, 80], [10, 20, 30]] {
                            let o2 = o1 + out_len;
                            let heal = o1 + heal_in;
                            total += 1;
                            let wrong = |f: &Vec<(u128, NodeId)>| {
                                f.iter()
                                    .any(|&(t, n)| n != c || t as u64 > o2.max(heal) + 400)
                            };
                            let (f, _) =
                                outage_heal_node(c, 1000, heal, (o1, o2), gap, phases, None);
                            let (fm, _) = outage_heal_node(
                                c,
                                1000,
                                heal,
                                (o1, o2),
                                gap,
                                phases,
                                Some(Mutant::DownEdgesOutliveTheOutage),
                            );
                            if wrong(&f) {
                                bad_none += 1;
                                if bad_none <= 5 {
                                    println!(
                                        "OUTN None c {c} outage {o1}..{o2} heal {heal} gap {gap} {phases:?}: {f:?}"
                                    );
                                }
                            }
                            if wrong(&fm) && !wrong(&f) {
                                diff += 1;
                                if diff <= 5 {
                                    println!(
                                        "OUTN mutant-only c {c} outage {o1}..{o2} heal {heal} gap {gap} {phases:?}: {fm:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    println!("OUTN total {total} wrong now {bad_none} wrong with the mutant only {diff}");
}

#[test]
#[ignore]
fn explore_two_outages() {
    let mut diff = 0;
    let mut bad_none = 0;
    let mut total = 0;
    for c in [1u32, 3] {
        for z1 in (1000..=1300).step_by(20) {
            for zl in [210u64, 250] {
                for gap_between in (100..=400).step_by(30) {
                    for out_len in [210u64, 300, 400] {
                        for heal_in in (0..out_len).step_by(50) {
                            for phases in [[0, 50, 20], [0, 30, 60], [50, 0, 80]] {
                                let o1 = z1 + zl + gap_between;
                                let o2 = o1 + out_len;
                                let heal = o1 + heal_in;
                                total += 1;
                                let wrong = |f: &Vec<(u128, NodeId)>| {
                                    f.iter()
                                        .any(|&(t, n)| n != c || t as u64 > o2.max(heal) + 400)
                                };
                                let run = |m| {
                                    let mut h =
                                        h_with(spec_levels(3, QuorumMode::LastManStanding, 1), m);
                                    let reach = move |n: NodeId, t: u64| -> Vec<NodeId> {
                                        if !(1000..heal).contains(&t) {
                                            all_but(n, 3, &[])
                                        } else if n == c {
                                            vec![]
                                        } else {
                                            all_but(n, 3, &[c])
                                        }
                                    };
                                    drive_outages(
                                        &mut h,
                                        4000,
                                        &[(1, phases[0]), (2, phases[1]), (3, phases[2])],
                                        &[(z1, z1 + zl), (o1, o2)],
                                        10,
                                        &reach,
                                    );
                                    fenced_nodes(&h)
                                };
                                let f = run(None);
                                let fm = run(Some(Mutant::DownEdgesOutliveTheOutage));
                                if wrong(&f) {
                                    bad_none += 1;
                                    if bad_none <= 5 {
                                        println!(
                                            "TWO None c {c} z {z1}+{zl} outage {o1}..{o2} heal {heal} {phases:?}: {f:?}"
                                        );
                                    }
                                }
                                if wrong(&fm) && !wrong(&f) {
                                    diff += 1;
                                    if diff <= 5 {
                                        println!(
                                            "TWO mutant-only c {c} z {z1}+{zl} outage {o1}..{o2} heal {heal} {phases:?}: {fm:?}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    println!("TWO total {total} wrong now {bad_none} wrong with the mutant only {diff}");
}

// ---------------------------------------------------------------------------
// D: random events, restarts from what the store holds (stored alerts,
// agents, off records, intents, some naming nodes not configured), clock
// jumps: nothing panics; no lease within the start-up grace of any life
// of the core; no lease to a node alive after off.
// ---------------------------------------------------------------------------

fn fuzz_one(seed: u64) -> (usize, usize, usize) {
    let mut r = Lcg(seed);
    let k = 3 + r.below(3) as u32;
    let mut spec = spec_levels(
        k,
        if r.below(2) == 0 {
            QuorumMode::LastManStanding
        } else {
            QuorumMode::TieBreaker
        },
        1 + r.below(2) as usize,
    );
    spec.storm_limit = 1 + r.below(k as u64) as usize;
    let mut persisted = Persisted::default();
    if r.below(2) == 0 {
        persisted.epoch = 1 + r.below(5);
        persisted.backed = (1..=k).filter(|_| r.below(4) != 0).collect();
        for n in 1..=k + 1 {
            match r.below(8) {
                0 => {
                    persisted.alerts.insert(n, "stored".into());
                }
                1 => {
                    persisted.open_intents.insert(n, 1 + r.below(3));
                }
                2 => {
                    persisted.off.insert(n, r.below(3));
                }
                3 => {
                    persisted.gone.insert(n);
                    persisted.backed.remove(&n);
                }
                _ => {}
            }
            if r.below(3) == 0 {
                persisted.agents.insert(
                    n,
                    FencedAgent {
                        instance: r.below(4),
                        boot: r.below(3),
                    },
                );
            }
            if r.below(4) == 0 {
                persisted.fenced.insert(
                    n,
                    (0..r.below(6))
                        .map(|i| FencedAgent {
                            instance: i,
                            boot: r.below(3),
                        })
                        .collect(),
                );
            }
        }
        persisted.next_intent = 1 + r.below(4);
    }
    let mut h = H::boot(spec.clone(), persisted, &[]);
    let grace = spec.timing.lease_max() + spec.timing.stall_after();
    let mut life_start = Duration::ZERO;
    let mut sessions: u64 = 100;
    for _ in 0..3000 {
        let checked = h.log.len();
        match r.below(100) {
            0..=39 => {
                h.now += ms(10);
                h.step(Event::Tick);
            }
            40..=69 => {
                let n = 1 + r.below(k as u64 + 1) as u32;
                if h.session.contains_key(&n) {
                    let reach: Vec<NodeId> =
                        (1..=k).filter(|&m| m != n && r.below(5) != 0).collect();
                    h.heartbeat(n, &reach);
                }
            }
            70..=77 => {
                let n = 1 + r.below(k as u64 + 1) as u32;
                sessions += 1;
                h.boot.insert(n, r.below(3));
                let instance = r.below(4);
                h.connect(n, sessions, instance);
            }
            78..=82 => {
                let nodes: Vec<NodeId> = h.fences().iter().map(|&(_, n)| n).collect();
                if let Some(&n) = nodes.get(r.below(nodes.len() as u64 + 1) as usize) {
                    if let Some((intent, attempt)) = h.fence_of(n) {
                        let outcome = if r.below(3) == 0 {
                            LevelOutcome::Failed("x".into())
                        } else {
                            LevelOutcome::ConfirmedOff
                        };
                        h.step(Event::FenceFinished {
                            node: n,
                            intent,
                            level: r.below(2) as usize,
                            attempt,
                            outcome,
                        });
                    }
                }
            }
            83..=84 => {
                let n = 1 + r.below(k as u64 + 1) as u32;
                h.step(Event::Clear { node: n });
            }
            85..=86 => {
                let n = 1 + r.below(k as u64) as u32;
                if let Some(&s) = h.session.get(&n) {
                    h.step(Event::Disconnected {
                        node: n,
                        session: s,
                    });
                }
            }
            87..=88 => {
                // A stall or clock jump.
                h.now += ms(150 + r.below(300));
            }
            89 => {
                h.core = ArbiterCore::new(spec.clone(), h.store.clone(), h.now);
                life_start = h.now;
                // Every stored alert (of a configured node) stands.
                for (n, _) in h.store.alerts.clone() {
                    if let Some(v) = h.core.node(n) {
                        assert!(
                            matches!(v.phase, Phase::AliveAfterOff { .. })
                                || matches!(v.phase, Phase::Leaving(_)),
                            "seed {seed}: stored alert of node {n} not restored: {:?}",
                            v.phase
                        );
                    }
                }
            }
            _ => {
                h.now += ms(100);
                let all: Vec<NodeId> = (1..=k).collect();
                for &n in &all {
                    if h.session.contains_key(&n) {
                        let reach: Vec<NodeId> = all.iter().copied().filter(|&m| m != n).collect();
                        h.heartbeat(n, &reach);
                    }
                }
                h.step(Event::Tick);
            }
        }
        for (t, a) in &h.log[checked..] {
            if let Action::Ack {
                node,
                lease: Some(_),
                ..
            } = a
            {
                assert!(
                    *t >= life_start + grace,
                    "seed {seed}: lease to {node} at {t:?} within the grace of the life begun at {life_start:?}"
                );
                let p = &h.core.node(*node).unwrap().phase;
                assert!(
                    !matches!(p, Phase::AliveAfterOff { .. }),
                    "seed {seed}: lease to {node}, alive after off"
                );
            }
        }
    }
    let leases = h
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Ack { lease: Some(_), .. }))
        .count();
    let alerts = h
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Notice(Notice::AliveAfterOff { .. })))
        .count();
    (leases, alerts, h.fences().len())
}

/// Passes: 2,000 random runs.
#[test]
fn review15_d_random_events_and_restarts_do_not_panic_nor_lease_in_grace() {
    let n: u64 = std::env::var("R15_FUZZ")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (mut leases, mut alerts, mut fences) = (0, 0, 0);
    for seed in 0..n {
        let (l, a, f) = fuzz_one(seed);
        leases += l;
        alerts += a;
        fences += f;
    }
    // (The runs did grant leases, raise alerts and fence.)
    assert!(
        leases > 0 && alerts > 0 && fences > 0,
        "{leases} {alerts} {fences}"
    );
    eprintln!("leases {leases}, alerts {alerts}, fences {fences}");
}

/// A restarted arbiter (members 1, 2, 3 stored, epoch 1); node 3 cut from
/// both peers (both ways) from the start until `heal`; probes as in
/// `drive_links` with per-pair phases from `seed`.
fn grace_heal(heal: u64, seed: u64, mutant: Option<Mutant>) -> H {
    let stored = Persisted {
        epoch: 1,
        backed: [1, 2, 3].into(),
        ..Default::default()
    };
    let mut h = H::with(
        spec_levels(3, QuorumMode::LastManStanding, 1),
        stored,
        mutant,
    );
    let mut r = Lcg(seed);
    let phase: Vec<(NodeId, u64)> = (1..=3).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=3 {
        for b in 1..=3 {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let lag = |n: NodeId, m: NodeId| lags[&(n, m)];
    let link = move |_a: NodeId, b: NodeId, t: u64| b != 3 || t >= heal;
    drive_links(&mut h, 3000, &phase, 3, &lag, &link);
    h
}

/// Sweep behind G1, with `NoEdgesInGrace` for comparison: 0 wrong fences
/// either way (the grace's edges fence node 3 more often, and only while
/// cut or just healed).
#[test]
#[ignore]
fn explore_grace_heal() {
    for m in [None, Some(Mutant::NoEdgesInGrace)] {
        let mut bad = 0;
        let mut total = 0;
        let mut stats: BTreeMap<&str, u32> = BTreeMap::new();
        for heal in (300..=1100).step_by(20) {
            for seed in 0..40 {
                total += 1;
                let f = fenced_nodes(&grace_heal(heal, seed, m));
                *stats
                    .entry(if f.is_empty() { "none" } else { "fenced" })
                    .or_default() += 1;
                if f.iter().any(|&(t, n)| n != 3 || t as u64 > heal + 400) {
                    bad += 1;
                    if bad <= 5 {
                        println!("GRACE {m:?} heal {heal} seed {seed}: {f:?}");
                    }
                }
            }
        }
        println!("GRACE {m:?}: {bad}/{total} {stats:?}");
    }
}

/// Passes: a restarted arbiter (its edges now taking in the reports of the
/// grace) with node 3 cut from its peers through the grace and healing at
/// any time from 300 to 1100 ms, with random heartbeat and probe phases:
/// no node but 3 is fenced, and 3 only while cut or within 400 ms of the
/// heal (its last reports of the cut).
#[test]
fn review15_g1_a_cut_healing_around_the_end_of_the_grace() {
    for heal in (300..=1100).step_by(40) {
        for seed in 0..12 {
            let f = fenced_nodes(&grace_heal(heal, seed, None));
            assert!(
                f.iter().all(|&(t, n)| n == 3 && t as u64 <= heal + 400),
                "heal {heal} seed {seed}: {f:?}"
            );
        }
    }
}

/// Passes: during the start-up grace the core now decides (the edges take
/// in the reports) but grants nothing, even to members in the stored
/// verdict whose edges are all up; the first lease comes at the first
/// heartbeat after `lease_max + stall_after`; a stall in the grace
/// restarts it.
#[test]
fn review15_g2_no_lease_in_the_grace() {
    let stored = Persisted {
        epoch: 4,
        backed: [1, 2, 3].into(),
        ..Default::default()
    };
    let mut h = H::with(spec_levels(3, QuorumMode::LastManStanding, 1), stored, None);
    let t = h.spec.timing;
    let grace = t.lease_max() + t.stall_after();
    h.run(ms(300), &ALL3);
    // A stall of 250 ms in the grace.
    h.now += ms(250);
    let stalled_at = h.now;
    h.run(ms(1500), &ALL3);
    let first = [1, 2, 3]
        .iter()
        .filter_map(|&n| h.grants(n).first().copied())
        .min();
    assert!(
        first.is_some_and(|f| f >= stalled_at + grace && f <= stalled_at + grace + ms(110)),
        "{first:?}"
    );
    assert!(h.fences().is_empty());
}
