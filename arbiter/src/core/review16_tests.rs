#![allow(clippy::type_complexity)]
//! Review of 5d115f5 (edges down are proven again when a heal begins to
//! arrive elsewhere, and an edge that settles down while one arrives),
//! run on d39413e (which added a half-interval span between the two
//! proving reports and capped hold chains; neither changes the findings).
//!
//! Findings (each section says more):
//! - A1 (liveness, FAILS): three nodes, node 1 cut from both peers for
//!   good, link 2–3 lossy one way (node 2 misses node 3 in 4 reports of
//!   7): node 1 is never fenced and ends up the only lease holder; without
//!   the change it is fenced at 2250 (750 ms after the cut).
//! - A2 (liveness, FAILS): beside a joiner whose link to one member works
//!   one way only (half-up for good), every edge that settles down is
//!   "settling while a heal arrives" and must be proven again; a node cut
//!   from its peers 500 ms in every second is never fenced (100/100 random
//!   timings, 4 nodes), fenced at ~1520 ms without the joiner or the change.
//! - A3 (liveness, measured, passes): a node cut for good is fenced up to
//!   +200 ms later beside such a joiner (every run with 4 nodes), up to
//!   +730 ms beside a lossy link, +1020 ms with periodic loss (4-5 nodes):
//!   bounded by the hold. A4 (passes): a frozen node is not delayed.
//! - B1 (healthy node fenced, FAILS): A2's kind of flapping node beside the
//!   joiner keeps one hold alive across flaps; resumed past its own age
//!   limit it decides at once on a half-way graph: healthy node 3 fenced
//!   at 4080 (without the change: node 1 at 1560, nobody else).
//! - B2, B3, B4 (the rule not kept, FAIL, `Edges` level): a heal is not
//!   seen beginning while any other edge is half-up (B2); an edge already
//!   being proven again keeps its old first report, so one stale report
//!   after a new heal proves it (B3); an edge settling one update after a
//!   heal brought another edge back is not marked (B4).
//! - C (passes): random chaos then a cut: no panic, the cut fenced in time.
//! - `review16_explore_*` (ignored): the sweeps behind the numbers.
//!
//! Run: `CARGO_BUILD_JOBS=1 cargo test --release -p arbiter --lib review16`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

use super::membership::{Edges, NodeView};

// ---------------------------------------------------------------------------
// Helpers: agents as the simulation models them (probe every peer every
// interval, report a peer reached while a probe was answered within three
// intervals), links given per instant.
// ---------------------------------------------------------------------------

/// A scenario of agents as the simulation models them: node `n`
/// heartbeats at `now % 100 == phase` (unless `silent(n, t)`), reporting
/// the peers `m` for which a probe sent at phase `lag(n, m)` in the last
/// 300 ms found the directed link `link(n, m, t)` up (a probe answered
/// within three intervals).
struct Sc {
    h: H,
    k: u32,
    phase: Vec<(NodeId, u64)>,
    lag: Box<dyn Fn(NodeId, NodeId) -> u64>,
    link: Box<dyn Fn(NodeId, NodeId, u64) -> bool>,
    silent: Box<dyn Fn(NodeId, u64) -> bool>,
    /// Reports lost from a heartbeat (`n`, time, the peers reported).
    mangle: Box<dyn Fn(NodeId, u64, &mut Vec<NodeId>)>,
}

impl Sc {
    fn new(k: u32, mutant: Option<Mutant>, phase: &[(NodeId, u64)]) -> Sc {
        Sc {
            h: h_with(spec_levels(k, QuorumMode::LastManStanding, 1), mutant),
            k,
            phase: phase.to_vec(),
            lag: Box::new(|_, _| 10),
            link: Box::new(|_, _, _| true),
            silent: Box::new(|_, _| false),
            mangle: Box::new(|_, _, _| {}),
        }
    }

    fn to(&mut self, until: u64) -> &mut Self {
        let (k, lag, link, silent, mangle) =
            (self.k, &self.lag, &self.link, &self.silent, &self.mangle);
        let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
            let t = now.as_millis() as u64;
            if silent(n, t) {
                return None;
            }
            let mut r: Vec<NodeId> = (1..=k)
                .filter(|&m| m != n)
                .filter(|&m| {
                    let pp = lag(n, m) % 100;
                    (0..30).any(|i| {
                        let s = t.checked_sub(i * 10);
                        s.is_some_and(|s| s % 100 == pp && link(n, m, s))
                    })
                })
                .collect();
            mangle(n, t, &mut r);
            Some(r)
        };
        drive(&mut self.h, ms(until), &self.phase, &reach);
        self
    }

    /// Run to `to`, printing the edges' state every 10 ms from `from`.
    #[allow(dead_code)]
    fn trace(&mut self, from: u64, to: u64) {
        let mut t = self.h.now.as_millis() as u64;
        while t < to {
            t += 10;
            self.to(t);
            if t >= from {
                eprintln!("{t}: {}", state(&self.h));
            }
        }
    }
}

/// A random scenario: `k` nodes, LMS; `flappers` each cut from every peer
/// in random spells; random phases and probe lags. With `joiner`, node
/// `k + 1` is a joiner whose link to node `k` works one way only (it
/// hears `k`, `k` does not hear it) throughout: an edge one side reports
/// up for good. Returns the fences of nodes never cut.
fn random_cuts(
    seed: u64,
    k: u32,
    flappers: &[NodeId],
    joiner: bool,
    mutant: Option<Mutant>,
) -> (Vec<(u128, NodeId)>, Sc, String) {
    let (sc, spells, desc) = random_scenario(seed, k, flappers, joiner, mutant, 6000);
    let bad = fenced_nodes(&sc.h)
        .into_iter()
        .filter(|(_, n)| !spells.contains_key(n))
        .collect();
    (bad, sc, desc)
}

/// The scenario of `random_cuts`, run to `until`; its spells, described.
#[allow(clippy::type_complexity)]
fn random_scenario(
    seed: u64,
    k: u32,
    flappers: &[NodeId],
    joiner: bool,
    mutant: Option<Mutant>,
    until: u64,
) -> (Sc, BTreeMap<NodeId, Vec<(u64, u64)>>, String) {
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
    let n = if joiner { k + 1 } else { k };
    let phase: Vec<(NodeId, u64)> = (1..=n).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=n {
        for b in 1..=n {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let desc = format!("seed {seed} spells {spells:?} phases {phase:?}");
    let sp = spells.clone();
    let mut sc = Sc::new(n, mutant, &phase);
    sc.link = Box::new(move |a: NodeId, b: NodeId, t: u64| {
        if joiner && a == k && b == k + 1 {
            return false;
        }
        ![a, b].iter().any(|n| {
            sp.get(n)
                .is_some_and(|v| v.iter().any(|&(s, e)| (s..e).contains(&t)))
        })
    });
    sc.lag = Box::new(move |a, b| lags[&(a, b)]);
    sc.to(until);
    (sc, spells, desc)
}

/// A deterministic hash of a probe: (seed, from, to, time) to 0..1000.
fn h1000(seed: u64, a: NodeId, b: NodeId, t: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(a) << 40)
        .wrapping_add(u64::from(b) << 32)
        .wrapping_add(t);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x % 1000
}

/// What else goes on while node 1 is cut from every peer for good.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Noise {
    None,
    /// Node `k + 1`, a joiner, hears node `k`, which does not hear it.
    OneWayJoiner,
    /// Probes between nodes 2 and 3 lost with this probability (‰).
    Lossy(u64),
    /// Node 2's reports leave node 3 out with this probability (‰): one
    /// side of link 2–3 lossy at the report level (as review13's L1).
    ReportLoss(u64),
}

/// `k` nodes, LMS, random phases and probe lags (by `seed`); node 1 cut
/// from every peer from `cut` on (for good), with `noise`. Returns the
/// first fence (ms after `cut`, node) and the scenario.
fn cut_with_noise(
    seed: u64,
    k: u32,
    cut: u64,
    noise: Noise,
    mutant: Option<Mutant>,
    until: u64,
) -> (Option<(u64, NodeId)>, Sc) {
    cut_or_freeze(seed, k, cut, false, noise, mutant, until)
}

/// `cut_with_noise`, or with `frozen` node 1 frozen from `cut` on (silent
/// to the arbiter, and to its peers' probes).
fn cut_or_freeze(
    seed: u64,
    k: u32,
    cut: u64,
    frozen: bool,
    noise: Noise,
    mutant: Option<Mutant>,
    until: u64,
) -> (Option<(u64, NodeId)>, Sc) {
    let mut r = Lcg(seed ^ 0x5eed);
    let n = if noise == Noise::OneWayJoiner {
        k + 1
    } else {
        k
    };
    let phase: Vec<(NodeId, u64)> = (1..=n).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=n {
        for b in 1..=n {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let mut sc = Sc::new(n, mutant, &phase);
    sc.link = Box::new(move |a: NodeId, b: NodeId, t: u64| {
        if (a == 1 || b == 1) && t >= cut {
            return false;
        }
        let pair = (a.min(b), a.max(b)) == (2, 3);
        match noise {
            Noise::None => true,
            Noise::OneWayJoiner => !(a == k && b == k + 1),
            Noise::Lossy(p) => !(pair && t >= 1000 && h1000(seed, a, b, t) < p),
            Noise::ReportLoss(_) => true,
        }
    });
    if let Noise::ReportLoss(p) = noise {
        sc.mangle = Box::new(move |n, t, r| {
            if n == 2 && t >= 1000 && h1000(seed, 2, 3, t) < p {
                r.retain(|&m| m != 3);
            }
        });
    }
    sc.lag = Box::new(move |a, b| lags[&(a, b)]);
    if frozen {
        sc.silent = Box::new(move |n, t| n == 1 && t >= cut);
    }
    sc.to(until);
    let first = fenced_nodes(&sc.h)
        .first()
        .map(|&(t, n)| ((t as u64).saturating_sub(cut), n));
    (first, sc)
}

/// `k` nodes, LMS, random phases and lags (by `seed`): node 1 cut from
/// every peer for `down` ms of every `period` from 1000 on (a node
/// flapping); optionally a one-way joiner. Returns the fences and the run.
fn flapping_node(
    seed: u64,
    k: u32,
    down: u64,
    period: u64,
    joiner: bool,
    mutant: Option<Mutant>,
    until: u64,
) -> (Vec<(u128, NodeId)>, Sc) {
    let mut r = Lcg(seed ^ 0xf1a9);
    let n = if joiner { k + 1 } else { k };
    let phase: Vec<(NodeId, u64)> = (1..=n).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=n {
        for b in 1..=n {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let off = r.below(100);
    let mut sc = Sc::new(n, mutant, &phase);
    sc.link = Box::new(move |a: NodeId, b: NodeId, t: u64| {
        if (a == 1 || b == 1) && t >= 1000 + off && (t - 1000 - off) % period < down {
            return false;
        }
        !(joiner && a == k && b == k + 1)
    });
    sc.lag = Box::new(move |a, b| lags[&(a, b)]);
    sc.to(until);
    (fenced_nodes(&sc.h), sc)
}

/// Sweep (ignored): a node flapping (cut `down` of every `period` ms).
#[test]
#[ignore]
fn review16_explore_flapping_node() {
    let seeds: u64 = std::env::var("R16_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for k in [3u32, 4, 5] {
        for joiner in [false, true] {
            for (down, period) in [
                (400, 800),
                (500, 1000),
                (550, 1000),
                (600, 900),
                (700, 1000),
                (800, 1100),
            ] {
                let mut line = format!("k={k} joiner={joiner} down {down}/{period}:");
                for mutant in [None, Some(Mutant::NoReproveOnHeal)] {
                    let mut never = 0;
                    let mut healthy = 0;
                    let mut times = vec![];
                    let mut ex = vec![];
                    for seed in 0..seeds {
                        let (f, _) = flapping_node(seed, k, down, period, joiner, mutant, 12_000);
                        if f.iter().any(|&(_, n)| n != 1) {
                            healthy += 1;
                            if ex.len() < 3 {
                                ex.push((seed, f.clone()));
                            }
                        }
                        match f.iter().find(|&&(_, n)| n == 1) {
                            Some(&(t, _)) => times.push(t),
                            None => never += 1,
                        }
                    }
                    times.sort();
                    line += &format!(
                        " [{:?}: never {never}, healthy fenced {healthy} {ex:?}, median {:?} max {:?}]",
                        mutant.map(|_| "without").unwrap_or("now"),
                        times.get(times.len() / 2),
                        times.last()
                    );
                }
                eprintln!("{line}");
            }
        }
    }
}

/// Three nodes, LMS; node 1 cut from both peers from `cut` on (for good);
/// node 2's reports leave node 3 out by `pattern` (bit `i` of a period of
/// `len` reports, from 1000 on): link 2–3 lossy one way (node 3 always
/// hears 2). Phases: 1 at `p[0]`, 2 at `p[1]`, 3 at `p[2]`.
fn cut_beside_lossy_pair(
    pattern: u32,
    len: u32,
    p: [u64; 3],
    cut: u64,
    until: u64,
    mutant: Option<Mutant>,
) -> H {
    let mut h = h_with(spec_levels(3, QuorumMode::LastManStanding, 1), mutant);
    lossy_pair_to(&mut h, pattern, len, p, cut, until);
    h
}

/// Drive `h` (see `cut_beside_lossy_pair`) until `until`.
fn lossy_pair_to(h: &mut H, pattern: u32, len: u32, p: [u64; 3], cut: u64, until: u64) {
    let k = h.spec.nodes.len() as u32;
    let phase: Vec<(NodeId, u64)> = (1..=k)
        .map(|n| {
            (
                n,
                p.get(n as usize - 1)
                    .copied()
                    .unwrap_or(30 * u64::from(n) % 100),
            )
        })
        .collect();
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if t >= cut {
            if n == 1 {
                drop.extend(2..=k);
            } else {
                drop.push(1);
            }
        }
        if n == 2 && t >= 1000 && pattern >> ((t / 100) % u64::from(len)) & 1 == 1 {
            drop.push(3);
        }
        Some(all_but(n, k, &drop))
    };
    drive(h, ms(until), &phase, &reach);
}

/// One line of the edges' and the hold's state (for traces).
fn state(h: &H) -> String {
    let c = &h.core;
    format!(
        "reproving {:?} half_up {:?} going {:?} hold {:?} verdict {:?} fences {:?}",
        c.edges.reproving(),
        c.edges.half_up(),
        c.edges.going_down(),
        c.hold.as_ref().map(|h| (
            h.since.as_millis(),
            h.started.as_millis(),
            h.drops.clone(),
            h.renewed.clone(),
            h.idle
        )),
        c.verdict,
        fenced_nodes(h)
    )
}

#[test]
#[ignore]
fn review16_explore_lossy_pair_patterns_k() {
    for k in [4u32, 5] {
        let mut worst = vec![];
        for len in 3..=9u32 {
            for pattern in 1..(1u32 << len) - 1 {
                for p in [
                    [50, 50, 60],
                    [0, 50, 20],
                    [80, 0, 40],
                    [0, 0, 0],
                    [30, 60, 90],
                ] {
                    let run = |m| {
                        let mut h = h_with(spec_levels(k, QuorumMode::LastManStanding, 1), m);
                        lossy_pair_to(&mut h, pattern, len, p, 1500, 12_000);
                        h.fences()
                            .into_iter()
                            .find(|&(_, n)| n == 1)
                            .map(|(t, _)| t.as_millis())
                    };
                    let (a, b) = (run(None), run(Some(Mutant::NoReproveOnHeal)));
                    let d = a.unwrap_or(20_000) as i64 - b.unwrap_or(20_000) as i64;
                    worst.push((d, len, pattern, p, a, b));
                }
            }
        }
        worst.sort_by_key(|w| std::cmp::Reverse(w.0));
        eprintln!("k={k}: {:?}", &worst[..8]);
    }
}

#[test]
#[ignore]
fn review16_explore_lossy_pair_patterns() {
    let mut found = vec![];
    for len in 3..=9u32 {
        for pattern in 1..(1u32 << len) - 1 {
            for p in [
                [50, 50, 60],
                [0, 50, 20],
                [80, 0, 40],
                [0, 0, 0],
                [30, 60, 90],
            ] {
                let now = cut_beside_lossy_pair(pattern, len, p, 1500, 12_000, None);
                let first_now = now
                    .fences()
                    .into_iter()
                    .find(|&(_, n)| n == 1)
                    .map(|(t, _)| t.as_millis());
                if first_now.is_some_and(|t| t < 3000) {
                    continue;
                }
                let old = cut_beside_lossy_pair(
                    pattern,
                    len,
                    p,
                    1500,
                    12_000,
                    Some(Mutant::NoReproveOnHeal),
                );
                let first_old = old
                    .fences()
                    .into_iter()
                    .find(|&(_, n)| n == 1)
                    .map(|(t, _)| t.as_millis());
                if first_old.is_some_and(|o| first_now.is_none_or(|n| n > o + 1500)) {
                    found.push((
                        len,
                        pattern,
                        p,
                        first_now,
                        first_old,
                        fenced_nodes(&now).len(),
                        fenced_nodes(&old).len(),
                    ));
                }
            }
        }
    }
    found.sort_by_key(|f| (f.1.count_ones() * 100 / f.0, f.3.is_some()));
    for f in found.iter().take(40) {
        eprintln!("{f:?}");
    }
    eprintln!("{} found", found.len());
}

// ---------------------------------------------------------------------------
// A1 (liveness): node 1 of three cut from both peers for good, beside a
// link 2–3 lossy one way. Every new half-up of 2–3 is "a heal beginning":
// node 1's down edges are proven again (two reports of one side), so a
// reason to hold while the verdict {2,3} drops node 1, and the spent
// hold's landing stays unclear until 2–3 settles down — the one instant in
// the cycle where the landed verdict is {1} (2–3 down: three singletons,
// lowest id). That verdict is taken (survivors {1}, leaving {2,3}: a storm
// with the 3-node storm limit of 1, so nobody is fenced) and the hold ends;
// the next hold does the same, every 700 ms, for ever. Node 1, the one
// with the fault, keeps the lease alone; 2 and 3 get none.
// ---------------------------------------------------------------------------

/// Node 2's reports leave node 3 out at report slots 0, 2, 3, 4 of 7.
const LOSSY_2_3: u32 = 0b0011101;

/// FAILS: node 1 cut from both peers at 1500 is not fenced by 10 s (nor
/// by 30 s); in the last second it got 10 leases, nodes 2 and 3 none.
/// Without the change: fenced at 2250.
#[test]
fn review16_a1_cut_node_beside_a_lossy_pair_is_never_fenced() {
    let h = cut_beside_lossy_pair(LOSSY_2_3, 7, [50, 50, 60], 1500, 10_000, None);
    let late = |n| h.grants(n).into_iter().filter(|t| *t > ms(9000)).count();
    let f = fenced_nodes(&h);
    assert!(
        f.iter().any(|&(t, n)| n == 1 && t < 4500),
        "node 1 (cut from both peers at 1500) not fenced: fences {f:?}; leases in the last \
         second: node 1 {}, node 2 {}, node 3 {}; verdict {:?}",
        late(1),
        late(2),
        late(3),
        h.core.verdict
    );
}

/// Control (passes): with the change planted out, node 1 is fenced at
/// 2250, and 2 and 3 hold the leases at the end.
#[test]
fn review16_a1_control_without_the_change() {
    let h = cut_beside_lossy_pair(
        LOSSY_2_3,
        7,
        [50, 50, 60],
        1500,
        10_000,
        Some(Mutant::NoReproveOnHeal),
    );
    assert_eq!(fenced_nodes(&h).first(), Some(&(2250, 1)));
    let late = |n| h.grants(n).into_iter().filter(|t| *t > ms(9000)).count();
    assert_eq!((late(1), late(2), late(3)), (0, 10, 10));
}

// ---------------------------------------------------------------------------
// A2 (liveness): a persistent half-up edge anywhere (here a joiner, node
// 5, that hears node 4 while 4 does not hear it: never admitted, never
// fenced) keeps `was_healing` set for good, so every edge that settles
// down is marked "settled while a heal arrives" and counts as unsure until
// two more reports of one side prove it. Node 1, cut from every peer for
// 500 ms in every 1000 (from 1057; phases 1@90, 2@20, 3@60, 4@90, 5@80),
// then always heals before its edges are proven: never fenced.
// ---------------------------------------------------------------------------

/// FAILS: not fenced by 6 s; without the joiner (or without the change)
/// it is fenced at 1520 (1590).
/// Still open (ignored): with heals detected per edge (after this review)
/// the joiner's edge no longer delays a cut node (A3), but a node cut 500
/// ms in every second beside it is still not fenced in 10 s; without the
/// change it is at 1520 ms. Run with `--ignored`.
#[test]
#[ignore = "at the threshold: a cut no longer than detection is not acted on (see the test after the control)"]
fn review16_a2_flapping_node_beside_a_one_way_joiner_is_never_fenced() {
    let (f, sc) = flapping_node(0, 4, 500, 1000, true, None, 6000);
    assert!(
        f.iter().any(|&(t, n)| n == 1 && t < 3000),
        "node 1 (cut from every peer 500 ms in every second) not fenced: {f:?}; \
         leases to node 1 in the last second: {}",
        sc.h.grants(1).iter().filter(|t| **t > ms(5000)).count()
    );
}

/// Control (passes): the same flaps without the joiner, or with the
/// change planted out, are fenced in the first cut.
#[test]
fn review16_a2_control_without_the_joiner_or_the_change() {
    let (f, _) = flapping_node(0, 4, 500, 1000, false, None, 6000);
    assert_eq!(f.first(), Some(&(1520, 1)));
    let (f, _) = flapping_node(0, 4, 500, 1000, true, Some(Mutant::NoReproveOnHeal), 6000);
    assert_eq!(f.first(), Some(&(1590, 1)));
}

// ---------------------------------------------------------------------------
// A3 (liveness, measured): node 1 cut from every peer for good, random
// phases and probe lags, 100 timings per case; first fence with and
// without the change. Bounded (the hold's fallback), but every run is
// slower beside a one-way joiner.
// ---------------------------------------------------------------------------

/// Measurement (passes; --nocapture prints it). When written (delay of
/// node 1's first fence, now minus without the change): 4 nodes, joiner:
/// slower in 100/100, median +130, worst +200 ms (640 vs 440 after the
/// cut); node 2 losing node 3 in 50 % of its reports: worst +630 (1110 vs
/// 480); 70 %: +700 (1200 vs 500). 5 nodes: joiner 41/100 slower, worst
/// +200; 50 %: +550; 70 %: +730. (Periodic loss patterns, 4 nodes: up to
/// +1020, 2720 vs 1700 ms; `review16_explore_lossy_pair_patterns_k`.)
/// Asserted: never more than 1.1 s later, and with 4 nodes and the joiner
/// later in every run.
#[test]
fn review16_a3_measure_delay_of_a_cut() {
    for k in [4u32, 5] {
        for noise in [
            Noise::OneWayJoiner,
            Noise::ReportLoss(500),
            Noise::ReportLoss(700),
        ] {
            let mut d = vec![];
            for seed in 0..100 {
                let cut = 1500 + (seed % 10) * 10;
                let (a, _) = cut_with_noise(seed, k, cut, noise, None, cut + 4000);
                let (b, _) = cut_with_noise(
                    seed,
                    k,
                    cut,
                    noise,
                    Some(Mutant::NoReproveOnHeal),
                    cut + 4000,
                );
                // (Report loss this heavy may fence 2 or 3 first: their own link.)
                if let (Some((ta, 1)), Some((tb, 1))) = (a, b) {
                    d.push((ta as i64 - tb as i64, seed, ta, tb));
                }
            }
            d.sort();
            let slower = d.iter().filter(|x| x.0 > 0).count();
            eprintln!(
                "k={k} {noise:?}: {} runs node 1 first both ways; slower in {slower}; \
                 delay median {:?}, worst {:?} (delay, seed, now, without)",
                d.len(),
                d.get(d.len() / 2).map(|x| x.0),
                d.last()
            );
            assert!(d.last().is_none_or(|x| x.0 <= 1100), "{:?}", d.last());
            // (Before heals were detected per edge, the joiner's one-way
            // edge made every run slower, +130 ms median; now none is.)
            if noise == Noise::OneWayJoiner && k == 4 {
                assert_eq!(slower, 0, "joiner: no run slower");
            }
        }
    }
}

/// A4 (passes, a false alarm): a frozen node (silent to the arbiter and to
/// its peers) is fenced at the same instant with and without the change,
/// beside the joiner or a lossy pair alike: its edges go with it (only
/// live nodes have edges), and no edge among the others can keep it.
#[test]
fn review16_a4_a_frozen_node_is_not_delayed() {
    for noise in [Noise::OneWayJoiner, Noise::ReportLoss(500)] {
        for seed in 0..50 {
            let cut = 1500 + (seed % 10) * 10;
            let (a, _) = cut_or_freeze(seed, 4, cut, true, noise, None, cut + 3000);
            let (b, _) = cut_or_freeze(
                seed,
                4,
                cut,
                true,
                noise,
                Some(Mutant::NoReproveOnHeal),
                cut + 3000,
            );
            assert_eq!(a, b, "{noise:?} seed {seed}");
            assert_eq!(a.map(|x| x.1), Some(1));
        }
    }
}

// ---------------------------------------------------------------------------
// B1 (healthy node fenced): A2's mechanism with random flaps. Four nodes
// and the one-way joiner (node 5 hears 4, 4 does not hear 5); node 1 cut
// from every peer in [1063, 1613), [2263, 2813), [3063, 3513),
// [3663, 4163), [4663, 5213); phases 1@80, 2@60, 3@90, 4@70, 5@60.
// Without the change node 1 is fenced at 1560 (its first cut). With it,
// its edges settling "while a heal arrives" (the joiner's half-up) must be
// proven again each time, the heal comes first, and node 1 is never
// fenced. The flaps keep one hold alive (since 2760: idle between flaps
// for less than `bound`, resumed at 3480, idle again at 3690). At 4080,
// half-way through the fourth cut (1–3 settled first, 1–2, 1–4, 1–5 still
// going down), the verdict {1,2,4} drops node 3: the hold resumes 1320 ms
// old, past the resumed hold's own limit (2 × bound + settle + interval =
// 1300), so it decides at once on the graph as it stands, and node 3 — no
// fault of its own — is fenced. (The resumed-hold fallback is older code;
// the change is what lets node 1 flap unfenced long enough to reach it.
// Sweep: 2 in 3,000 such runs, 0 without the change;
// `review16_explore_random_cuts`.)
// ---------------------------------------------------------------------------

/// FAILS: node 3 fenced at 4080.
#[test]
fn review16_b1_flapping_node_beside_a_one_way_joiner_gets_a_healthy_node_fenced() {
    let (bad, sc, desc) = random_cuts(652, 4, &[1], true, None);
    assert!(
        bad.is_empty(),
        "nodes never cut fenced: {bad:?} ({desc}); all fences {:?}",
        fenced_nodes(&sc.h)
    );
}

/// Control (passes): with the change planted out, node 1 is fenced in its
/// first cut and nobody else.
#[test]
fn review16_b1_control_without_the_change() {
    let (bad, sc, _) = random_cuts(652, 4, &[1], true, Some(Mutant::NoReproveOnHeal));
    assert!(bad.is_empty());
    assert_eq!(fenced_nodes(&sc.h).first(), Some(&(1560, 1)));
}

// ---------------------------------------------------------------------------
// Edges-level: what `Edges::update` marks for proving again.
// ---------------------------------------------------------------------------

/// The graph of `Edges::update` driven by hand: every node a member.
struct G {
    e: Edges,
    nodes: BTreeMap<NodeId, NodeView>,
    alive: BTreeSet<NodeId>,
}

impl G {
    fn new(k: u32) -> G {
        let nodes = (1..=k)
            .map(|n| {
                (
                    n,
                    NodeView {
                        session: Some(1),
                        last_heard: Some(Duration::ZERO),
                        reach: (1..=k).filter(|&m| m != n).collect(),
                        ..NodeView::default()
                    },
                )
            })
            .collect();
        G {
            e: Edges::new(false, false, ms(50)),
            nodes,
            alive: (1..=k).collect(),
        }
    }

    /// Node `n` reports at `t` reaching every node but `lost`, then the
    /// arbiter folds it in.
    fn report(&mut self, n: NodeId, t: u64, lost: &[NodeId]) {
        let k = self.alive.len() as u32;
        let v = self.nodes.get_mut(&n).unwrap();
        v.last_heard = Some(ms(t));
        v.reach = all_but(n, k, lost).into_iter().collect();
        let none = BTreeSet::new();
        self.e.update(
            ms(t),
            ms(200),
            false,
            &none,
            &self.alive,
            &self.alive,
            &self.nodes,
        );
    }
}

/// Five nodes, node 1 cut from every peer from 100 on (every report from
/// 100 says so; all five report at the same instants, 100 ms apart, to
/// 1000); with `one_way`, node 4 has not heard node 5 from the start
/// (node 5 hears it: a link cut one way, half-up for good). At 1005 the
/// heal of node 1 begins: node 3 reports it reached (half-up 1–3); the
/// others' reports are still those of 1000.
fn heal_beside(one_way: bool) -> G {
    let mut g = G::new(5);
    for t in (0..=1000).step_by(100) {
        for n in 1..=5 {
            let mut lost: Vec<NodeId> = match (n, t >= 100) {
                (1, true) => vec![2, 3, 4, 5],
                (_, true) => vec![1],
                _ => vec![],
            };
            if one_way && n == 4 {
                lost.push(5);
            }
            g.report(n, t, &lost);
        }
    }
    g.report(3, 1005, &[]);
    g
}

/// B2 (FAILS): a heal beginning is recognised by the rise of one flag for
/// the whole graph (`healing && !was_healing`), so any edge one side
/// reports up elsewhere — here a link cut one way for good, 4–5 — hides
/// every heal from then on: node 1's edges, down on both ends' reports of
/// 1000 (which may predate the heal), are not proven again and count down
/// in the hold and the landing.
#[test]
fn review16_b2_a_one_way_link_elsewhere_hides_every_heal() {
    let g = heal_beside(true);
    assert_eq!(g.e.half_up(), [(1, 3), (4, 5)].into());
    let r = g.e.reproving();
    assert!(
        [(1, 2), (1, 4), (1, 5)].iter().all(|k| r.contains(k)),
        "heal of node 1 arriving (1–3 half-up): its other down edges are not proven again \
         (reproving {r:?}) because 4–5 was already half-up"
    );
}

/// Control (passes): without the one-way link the same heal marks node
/// 1's other down edges.
#[test]
fn review16_b2_control_without_the_one_way_link() {
    let g = heal_beside(false);
    assert_eq!(g.e.half_up(), [(1, 3)].into());
    let r = g.e.reproving();
    assert!(
        [(1, 2), (1, 4), (1, 5)].iter().all(|k| r.contains(k)),
        "{r:?}"
    );
}

/// Four nodes, node 1 cut from every peer from 100 (all report at the same
/// instants, 100 ms apart, to 1000: its edges settle down). At 1000 node 3
/// reports node 1 reached once (a blip: half-up 1–3, a heal beginning:
/// 1–2 and 1–4 are proven again from 1000); at 1010 it reports it lost
/// again. Node 2 reports 1 lost at 1100 (one report after 1000). At 1150
/// the real heal of node 1 begins: node 4 reports it reached (half-up
/// 1–4). At 1160 node 2 reports 1 lost once more — a report that may
/// well predate the heal reaching its probes, as the change itself says.
fn second_heal() -> G {
    let mut g = G::new(4);
    for t in (0..=1000).step_by(100) {
        for n in 1..=4 {
            let lost: Vec<NodeId> = match (n, t >= 100) {
                (1, true) => vec![2, 3, 4],
                (_, true) => vec![1],
                _ => vec![],
            };
            if !(n == 3 && t == 1000) {
                g.report(n, t, &lost);
            }
        }
    }
    g.report(3, 1000, &[]);
    assert!(g.e.reproving().contains(&(1, 2)), "{:?}", g.e.reproving());
    g.report(3, 1010, &[1]);
    g.report(2, 1100, &[1]);
    g.report(4, 1150, &[]);
    assert_eq!(g.e.half_up(), [(1, 4)].into());
    g.report(2, 1160, &[1]);
    g
}

/// B3 (FAILS): an edge already being proven again when a new heal begins
/// keeps its old start and its first report (`e.reprove.is_none()`), so
/// one report after the new heal — as stale as the change says it may
/// be — completes the proof: 1–2 counts down again 10 ms after node 1's
/// heal began to arrive.
#[test]
fn review16_b3_a_report_before_the_heal_completes_the_proof() {
    let g = second_heal();
    assert!(
        g.e.reproving().contains(&(1, 2)),
        "1–2 proven down by node 2's reports of 1100 (before the heal of 1150) and 1160 \
         (one after it): reproving {:?}",
        g.e.reproving()
    );
}

/// Three nodes: node 1 loses node 3 from 100 (both sides' reports), and
/// node 2 from 250 (both sides); 1–3 settles down at 300. The heal of
/// node 1 reaches the arbiter at 400 (node 3 reports 1 reached: half-up)
/// and 440 (node 1 reports 3 reached, 2 still lost: 1–3 back up). At 450
/// node 2's report (1 still lost: its probe of 1 not answered yet) settles
/// 1–2 down. Without `landed`, node 1's report of 440 is not made (1–3
/// still half-up at 450).
fn settles_after_a_heal(landed: bool) -> G {
    let mut g = G::new(3);
    for n in 1..=3 {
        g.report(n, 0, &[]);
    }
    for t in [100, 200] {
        g.report(1, t, &[3]);
        g.report(2, t, &[]);
        g.report(3, t, &[1]);
    }
    g.report(1, 250, &[2, 3]);
    g.report(2, 250, &[1]);
    g.report(1, 300, &[2, 3]);
    g.report(3, 300, &[1]);
    assert!(g.e.going_down().iter().all(|&k| k != (1, 3)) && !g.e.half_up().contains(&(1, 3)));
    g.report(1, 350, &[2, 3]);
    g.report(2, 350, &[1]);
    g.report(3, 400, &[]);
    assert_eq!(g.e.half_up(), [(1, 3)].into());
    if landed {
        g.report(1, 440, &[2]);
        assert!(g.e.half_up().is_empty());
    }
    g.report(2, 450, &[1]);
    g
}

/// B4 (FAILS): "an edge that settles down while a heal is arriving on some
/// other edge" is marked only if that other edge was half-up at the last
/// update (`before.keys()`), not if it came back up then (`was_healing`
/// by `back` alone): 1–2, settling on node 2's report 10 ms after node 1's
/// heal brought 1–3 back, counts down on reports that may predate the heal.
#[test]
fn review16_b4_an_edge_settling_just_after_a_heal_landed_is_not_proven_again() {
    let g = settles_after_a_heal(true);
    // 1–2 has settled down (neither going down nor half-up), 1–3 is up.
    assert!(!g.e.going_down().contains(&(1, 2)) && !g.e.half_up().contains(&(1, 2)));
    assert!(g.e.came_up_within(ms(450), ms(200)));
    assert!(
        g.e.reproving().contains(&(1, 2)),
        "reproving {:?}",
        g.e.reproving()
    );
}

/// Control (passes): settling while 1–3 is still half-up marks it.
#[test]
fn review16_b4_control_while_still_half_up() {
    let g = settles_after_a_heal(false);
    assert!(g.e.reproving().contains(&(1, 2)), "{:?}", g.e.reproving());
}

/// One random run: `k` (3 to 5) nodes, 5 s of chaos (per-report losses
/// of random pairs, one-way, at random rates up to 40 %; nodes silent for
/// random spells of 100 to 450 ms; sessions reopened), then node 1 cut
/// from every peer for good and everything else clean. Returns (node 1 a
/// member alive at 5 s, its first fence after 5 s, healthy nodes fenced
/// after 6 s, a description).
fn fuzz_one(seed: u64) -> (bool, Option<u128>, Vec<(u128, NodeId)>, String) {
    use std::cell::RefCell;
    let mut r = Lcg(seed ^ 0xfa22);
    let k = 3 + (r.below(3) as u32);
    let mut h = h_with(spec_levels(k, QuorumMode::LastManStanding, 1), None);
    let phase: Vec<(NodeId, u64)> = (1..=k).map(|n| (n, r.below(10) * 10)).collect();
    let mut loss = BTreeMap::new();
    for a in 1..=k {
        for b in 1..=k {
            if a != b {
                loss.insert((a, b), if r.below(3) == 0 { r.below(400) } else { 0 });
            }
        }
    }
    let mut silent: Vec<(NodeId, u64, u64)> = vec![];
    for _ in 0..r.below(6) {
        let n = 1 + r.below(u64::from(k)) as u32;
        let s = 1000 + r.below(3500);
        silent.push((n, s, s + 100 + r.below(350)));
    }
    let reconnects: Vec<(NodeId, u64)> = (0..r.below(4))
        .map(|_| {
            (
                1 + r.below(u64::from(k)) as u32,
                (1000 + r.below(3500)) / 10 * 10,
            )
        })
        .collect();
    let desc = format!(
        "seed {seed} k {k} phases {phase:?} loss {loss:?} silent {silent:?} reconnects {reconnects:?}"
    );
    let rng = RefCell::new(Lcg(seed ^ 0x77));
    let reach = |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if silent
            .iter()
            .any(|&(m, s, e)| m == n && (s..e).contains(&t))
        {
            return None;
        }
        let mut r = rng.borrow_mut();
        Some(
            (1..=k)
                .filter(|&m| m != n)
                .filter(|&m| {
                    if t >= 5000 {
                        return n != 1 && m != 1;
                    }
                    t < 1000 || r.below(1000) >= loss[&(n, m)]
                })
                .collect(),
        )
    };
    let mut next_session = 100;
    let mut member_at_5 = false;
    while h.now < ms(9000) {
        if h.now == ms(5000) {
            member_at_5 = h.core.nodes[&1].phase == Phase::Member && h.fences().is_empty();
        }
        let t = h.now.as_millis() as u64 + 10;
        if let Some(&(n, _)) = reconnects.iter().find(|&&(_, at)| at == t) {
            next_session += 1;
            h.connect(n, next_session, u64::from(n));
        }
        drive(&mut h, ms(t), &phase, &reach);
    }
    // (Fences are never confirmed here: only runs whose chaos fenced
    // nobody say anything about node 1's cut.)
    let member_at_5 = member_at_5 && h.fences().iter().all(|&(t, n)| n == 1 || t >= ms(6000));
    let first = h
        .fences()
        .into_iter()
        .find(|&(t, n)| n == 1 && t >= ms(5000))
        .map(|(t, _)| t.as_millis());
    let healthy = fenced_nodes(&h)
        .into_iter()
        .filter(|&(t, n)| n != 1 && t >= 6000)
        .collect();
    (member_at_5, first, healthy, desc)
}

#[test]
#[ignore]
fn review16_explore_fuzz() {
    let seeds: u64 = std::env::var("R16_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (mut never, mut bad, mut cut, mut times) = (0, 0, 0, vec![]);
    for seed in 0..seeds {
        let (m, first, healthy, desc) = fuzz_one(seed);
        if !healthy.is_empty() {
            bad += 1;
            eprintln!("HEALTHY {healthy:?} {desc}");
        }
        if m {
            cut += 1;
            match first {
                Some(t) => times.push(t - 5000),
                None => {
                    never += 1;
                    eprintln!("NEVER {desc}");
                }
            }
        }
    }
    times.sort();
    eprintln!(
        "{seeds} runs: node 1 member at 5 s in {cut}; never fenced {never}; healthy fenced {bad}; fence after cut median {:?} max {:?}",
        times.get(times.len() / 2),
        times.last()
    );
}

/// C (passes): 300 random runs of chaos (see `fuzz_one`), then node 1 cut
/// for good: no panic, and wherever the chaos fenced nobody, node 1 is
/// fenced within 400 ms of the cut (290 at most when written) and nobody
/// else after 6 s. (`review16_explore_fuzz`: 1,000 runs, the same.)
#[test]
fn review16_c_random_chaos_then_a_cut() {
    let mut checked = 0;
    for seed in 0..300 {
        let (m, first, healthy, desc) = fuzz_one(seed);
        assert!(healthy.is_empty(), "healthy fenced {healthy:?}: {desc}");
        if m {
            checked += 1;
            assert!(
                first.is_some_and(|t| t <= 5400),
                "node 1 fenced at {first:?}: {desc}"
            );
        }
    }
    assert!(checked > 150, "{checked}");
}

// ---------------------------------------------------------------------------
// Sweeps (ignored).
// ---------------------------------------------------------------------------

/// Sweep (ignored; the numbers are in the report): healthy fences with
/// and without the change, with and without a joiner's one-way link.
#[test]
#[ignore]
fn review16_explore_random_cuts() {
    let seeds: u64 = std::env::var("R16_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for (k, flappers) in [
        (3u32, vec![1]),
        (3, vec![2]),
        (4, vec![1]),
        (4, vec![1, 2]),
        (5, vec![1, 3]),
    ] {
        for joiner in [false, true] {
            for mutant in [None, Some(Mutant::NoReproveOnHeal)] {
                let mut n = 0;
                let mut shown = 0;
                for seed in 0..seeds {
                    let (bad, sc, desc) = random_cuts(seed, k, &flappers, joiner, mutant);
                    let _ = sc;
                    if !bad.is_empty() {
                        n += 1;
                        if shown < 3 {
                            shown += 1;
                            eprintln!(
                                "  BAD {k} {flappers:?} j={joiner} {mutant:?} {desc}: {bad:?}"
                            );
                        }
                    }
                }
                eprintln!(
                    "{k} nodes, flappers {flappers:?}, joiner {joiner}, {mutant:?}: {n}/{seeds}"
                );
            }
        }
    }
}

/// Sweep (ignored): the first fence after node 1 is cut for good, with
/// and without the change, per kind of noise elsewhere.
#[test]
#[ignore]
fn review16_explore_freeze_delay() {
    for k in [3u32, 4, 5] {
        for noise in [
            Noise::None,
            Noise::OneWayJoiner,
            Noise::ReportLoss(500),
            Noise::ReportLoss(700),
        ] {
            let mut d = vec![];
            for seed in 0..200 {
                let cut = 1500 + (seed % 10) * 10;
                let (a, _) = cut_or_freeze(seed, k, cut, true, noise, None, cut + 4000);
                let (b, _) = cut_or_freeze(
                    seed,
                    k,
                    cut,
                    true,
                    noise,
                    Some(Mutant::NoReproveOnHeal),
                    cut + 4000,
                );
                if let (Some((ta, 1)), Some((tb, 1))) = (a, b) {
                    d.push((ta as i64 - tb as i64, seed, ta, tb));
                }
            }
            d.sort();
            eprintln!(
                "frozen k={k} {noise:?}: {} runs; slower in {}; worst {:?}",
                d.len(),
                d.iter().filter(|x| x.0 > 0).count(),
                d.last()
            );
        }
    }
}

#[test]
#[ignore]
fn review16_explore_cut_delay() {
    let seeds: u64 = std::env::var("R16_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for k in [3u32, 4, 5] {
        for noise in [
            Noise::None,
            Noise::OneWayJoiner,
            Noise::Lossy(500),
            Noise::Lossy(700),
            Noise::Lossy(850),
            Noise::ReportLoss(300),
            Noise::ReportLoss(500),
            Noise::ReportLoss(700),
        ] {
            let mut rows = vec![];
            for seed in 0..seeds {
                let cut = 1500 + (seed % 10) * 10;
                let (a, _) = cut_with_noise(seed, k, cut, noise, None, cut + 6000);
                let (b, _) = cut_with_noise(
                    seed,
                    k,
                    cut,
                    noise,
                    Some(Mutant::NoReproveOnHeal),
                    cut + 6000,
                );
                rows.push((seed, a, b));
            }
            let wrong = |x: &Option<(u64, NodeId)>| x.is_none_or(|(_, n)| n != 1);
            let now_wrong = rows.iter().filter(|r| wrong(&r.1)).count();
            let old_wrong = rows.iter().filter(|r| wrong(&r.2)).count();
            let mut d: Vec<i64> = rows
                .iter()
                .filter_map(|(_, a, b)| match (a, b) {
                    (Some((ta, 1)), Some((tb, 1))) => Some(*ta as i64 - *tb as i64),
                    _ => None,
                })
                .collect();
            d.sort();
            let worst = rows
                .iter()
                .filter_map(|(s, a, b)| match (a, b) {
                    (Some((ta, 1)), Some((tb, 1))) => Some((*ta as i64 - *tb as i64, *s, *ta, *tb)),
                    _ => None,
                })
                .max();
            let mut ta: Vec<u64> = rows
                .iter()
                .filter_map(|r| r.1.filter(|x| x.1 == 1).map(|x| x.0))
                .collect();
            let mut tb: Vec<u64> = rows
                .iter()
                .filter_map(|r| r.2.filter(|x| x.1 == 1).map(|x| x.0))
                .collect();
            ta.sort();
            tb.sort();
            eprintln!(
                "k={k} {noise:?}: first fence not node 1 (or none): now {now_wrong}, without {old_wrong}; \
                 node 1 after cut: now median {:?} max {:?}, without median {:?} max {:?}; \
                 delay now-without: median {:?} max {:?} (worst seed, now, without: {worst:?}); slower in {}/{}",
                ta.get(ta.len() / 2),
                ta.last(),
                tb.get(tb.len() / 2),
                tb.last(),
                d.get(d.len() / 2),
                d.last(),
                d.iter().filter(|&&x| x > 0).count(),
                d.len()
            );
            for (s, a, b) in rows.iter().filter(|r| wrong(&r.1) != wrong(&r.2)).take(3) {
                eprintln!("   seed {s}: now {a:?}, without {b:?}");
            }
        }
    }
}

/// A2 narrowed (passes): the gap is at the threshold only. Node 1 cut
/// from every peer for 600 ms or more in every cycle (longer than the
/// agents' probe window and `settle`, 500 ms, so a cut lands before it
/// heals) beside the one-way joiner is fenced in its first cycle, for
/// every timing tried, and nobody else ever is; cut for 500 ms, 7 timings
/// in 8 are. (Seed 0 at 500/1000: each cut heals as its last edges land,
/// and the heal makes them unsure again — like a corosync token timeout
/// longer than the blip, a cut no longer than detection is not acted on.)
#[test]
fn review16_a2_cuts_longer_than_detection_are_fenced_in_their_first_cycle() {
    for (down, period) in [(600u64, 1000u64), (700, 1000), (800, 1100), (600, 900)] {
        for seed in 0..8 {
            let (f, _) = flapping_node(seed, 4, down, period, true, None, 4000);
            assert!(
                f.iter().all(|&(_, n)| n == 1)
                    && f.first()
                        .is_some_and(|&(t, _)| t < u128::from(1000 + period)),
                "cut {down} ms of {period}, timing {seed}: fences {f:?}"
            );
        }
    }
    let fenced = (0..8)
        .filter(|&seed| {
            let (f, _) = flapping_node(seed, 4, 500, 1000, true, None, 4000);
            f.first().is_some_and(|&(t, n)| n == 1 && t < 2000)
        })
        .count();
    assert_eq!(fenced, 7, "cut 500 ms of 1000");
}
