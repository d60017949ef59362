//! Review of 6b57c99 (heals seen arriving on young sessions and one side
//! coming back; a gap in which the arbiter heard nobody is a loss of
//! contact).
//!
//! Findings:
//! - D1 (liveness, fixed: a gap is confirmed only once two of the nodes
//!   heard before it are heard again after it; no verdict meanwhile, at
//!   most an interval and a half): `deaf` counted the node that just died as one
//!   of the "two or more heartbeating just before": in a two-node cluster
//!   (or whenever one node survives), one lost or 60 ms late report of the
//!   survivor within ~250 ms of the other's death is a "deaf gap"; the
//!   dead node gets lost_after + reconnect allowance from then and is
//!   fenced at 5710 instead of 2470 (+3240 ms), LMS and tie-breaker alike.
//! - R1 (liveness, measured, passes): one-sided heals (a link flickering
//!   both ways) and young heals (a peer's agent restarting) restart the
//!   proof of a cut node's edges each time; bounded by the hold: +300 ms
//!   worst for a 300 ms flicker, up to +800..1030 ms beside a node with
//!   70–90 % probe loss (5 nodes), +470 ms beside an agent restarting
//!   every 500 ms. No case found of never fenced, or of a healthy node
//!   fenced, attributable to the change (`review17_explore_*`, ignored).
//!
//! Run: `CARGO_BUILD_JOBS=1 cargo test -p arbiter --lib review17`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

fn first_fence_of(h: &H, n: NodeId) -> Option<u128> {
    fenced_nodes(h).into_iter().find(|f| f.1 == n).map(|f| f.0)
}

// ---------------------------------------------------------------------------
// D1 (liveness): a lone survivor's one lost (or late) report right after
// its peer died is a "deaf gap": the dead node's own last report counts as
// the second node "heartbeating just before". Contact is lost and regained
// at once, the dead member is pending for lost_after + reconnect allowance
// from then, and its fence comes 3.2 s late.
// ---------------------------------------------------------------------------

/// Two nodes (LMS; phases 1@10, 2@60): node 2 dies at 2000 (last report
/// 1960). Node 1's report of `lost` is lost; with `late`, it arrives at
/// `late` instead.
fn two_node_death(
    mode: QuorumMode,
    lost: Option<u64>,
    late: Option<u64>,
    mutant: Option<Mutant>,
) -> H {
    let mut h = h_with(spec_levels(2, mode, 1), mutant);
    let ph = [(1, 10), (2, 60)];
    let reach = move |n: NodeId, now: Duration| -> Option<Vec<NodeId>> {
        let t = now.as_millis() as u64;
        if t >= 2000 {
            return (n == 1 && Some(t) != lost).then(Vec::new);
        }
        Some(all_but(n, 2, &[]))
    };
    match late {
        None => drive(&mut h, ms(8000), &ph, &reach),
        Some(at) => {
            drive(&mut h, ms(at - 10), &ph, &reach);
            h.now = ms(at);
            h.heartbeat(1, &[]);
            h.step(Event::Tick);
            drive(&mut h, ms(8000), &ph, &reach);
        }
    }
    h
}

/// Failed on 6b57c99: node 2 (dead at 2000) was fenced at 5710 instead of 2470,
/// because node 1's report of 2110 was lost. (Same with the report of
/// 2210 lost: 5810.) A ContactLost notice is raised though the arbiter
/// heard its one live node all along but for one packet.
#[test]
fn review17_d1_one_lost_report_of_the_lone_survivor_delays_the_fence_3s() {
    let h = two_node_death(QuorumMode::LastManStanding, Some(2110), None, None);
    let f = first_fence_of(&h, 2);
    let lost = h.notices().iter().any(|n| matches!(n, Notice::ContactLost));
    assert!(
        f.is_some_and(|t| t <= 2700),
        "dead node 2 fenced at {f:?} (ContactLost raised: {lost}); 2470 without the lost report"
    );
}

/// Failed on 6b57c99: not even a loss: node 1's report due at 2110 arrives 60 ms late
/// (2170; a survivor busy starting the takeover): fenced at 5670.
#[test]
fn review17_d1_one_late_report_of_the_lone_survivor_delays_the_fence_3s() {
    let h = two_node_death(QuorumMode::LastManStanding, Some(2110), Some(2170), None);
    let f = first_fence_of(&h, 2);
    assert!(f.is_some_and(|t| t <= 2700), "dead node 2 fenced at {f:?}");
}

/// Failed on 6b57c99 as well in tie-breaker mode (the classic two-node pair).
#[test]
fn review17_d1_tie_breaker_pair() {
    let h = two_node_death(QuorumMode::TieBreaker, Some(2110), None, None);
    let f = first_fence_of(&h, 2);
    assert!(f.is_some_and(|t| t <= 2700), "dead node 2 fenced at {f:?}");
}

/// Control (passes): no lost report, or the change planted out
/// (`NoDeafGaps`): fenced at 2470.
#[test]
fn review17_d1_control() {
    let h = two_node_death(QuorumMode::LastManStanding, None, None, None);
    assert_eq!(first_fence_of(&h, 2), Some(2470));
    let h = two_node_death(
        QuorumMode::LastManStanding,
        Some(2110),
        None,
        Some(Mutant::NoDeafGaps),
    );
    assert_eq!(first_fence_of(&h, 2), Some(2470));
    let h = two_node_death(QuorumMode::LastManStanding, Some(2010), None, None);
    assert_eq!(
        first_fence_of(&h, 2),
        Some(2470),
        "a loss before 1960 + 150 is no gap"
    );
}

// ---------------------------------------------------------------------------
// Agents as the simulation models them (review16's `Sc`, with restarts).
// ---------------------------------------------------------------------------

/// Node `n` heartbeats at `now % 100 == phase` unless `silent(n, t)`,
/// reporting the peers `m` for which a probe sent at phase `lag(n, m)` in
/// the last 300 ms found the directed link `link(n, m, t)` up and `m`
/// not silent-as-a-process (`down(m, t)`: agent not running, so it
/// answers no probes). At each instant of `restarts[n]` node `n` opens a
/// new session with a new instance (an agent restarted).
struct Sim {
    h: H,
    k: u32,
    phase: Vec<(NodeId, u64)>,
    lag: Box<dyn Fn(NodeId, NodeId) -> u64>,
    link: Box<dyn Fn(NodeId, NodeId, u64) -> bool>,
    /// The agent is not running (no reports, no probe answers, no probes).
    down: Box<dyn Fn(NodeId, u64) -> bool>,
    /// Heartbeats lost on the way to the arbiter.
    lost: Box<dyn Fn(NodeId, u64) -> bool>,
    restarts: BTreeMap<NodeId, Vec<u64>>,
    /// Per node, when its agent (re)started probing.
    started: BTreeMap<NodeId, u64>,
    next_session: u64,
}

impl Sim {
    fn new(k: u32, mutant: Option<Mutant>, phase: &[(NodeId, u64)]) -> Sim {
        Sim {
            h: h_with(spec_levels(k, QuorumMode::LastManStanding, 1), mutant),
            k,
            phase: phase.to_vec(),
            lag: Box::new(|_, _| 10),
            link: Box::new(|_, _, _| true),
            down: Box::new(|_, _| false),
            lost: Box::new(|_, _| false),
            restarts: BTreeMap::new(),
            started: (1..=k).map(|n| (n, 0)).collect(),
            next_session: 1000,
        }
    }

    fn reach(&self, n: NodeId, t: u64) -> Vec<NodeId> {
        let st = self.started[&n];
        (1..=self.k)
            .filter(|&m| m != n)
            .filter(|&m| {
                let pp = (self.lag)(n, m) % 100;
                (0..30).any(|i| {
                    t.checked_sub(i * 10).is_some_and(|s| {
                        s >= st && s % 100 == pp && (self.link)(n, m, s) && !(self.down)(m, s)
                    })
                })
            })
            .collect()
    }

    fn to(&mut self, until: u64) -> &mut Self {
        while self.h.now < ms(until) {
            self.h.now += ms(10);
            let t = self.h.now.as_millis() as u64;
            let restarting: Vec<NodeId> = self
                .restarts
                .iter()
                .filter(|(_, v)| v.contains(&t))
                .map(|(&n, _)| n)
                .collect();
            for n in restarting {
                self.next_session += 1;
                let s = self.next_session;
                self.started.insert(n, t);
                self.h.connect(n, s, s);
            }
            for &(n, p) in &self.phase.clone() {
                if t % 100 == p && !(self.down)(n, t) && !(self.lost)(n, t) {
                    let r = self.reach(n, t);
                    self.h.heartbeat(n, &r);
                }
            }
            self.h.step(Event::Tick);
        }
        self
    }
}

/// Random phases and lags from `seed`.
fn random_sim(seed: u64, k: u32, mutant: Option<Mutant>) -> Sim {
    let mut r = Lcg(seed ^ 0x17);
    let phase: Vec<(NodeId, u64)> = (1..=k).map(|n| (n, r.below(10) * 10)).collect();
    let mut lags = BTreeMap::new();
    for a in 1..=k {
        for b in 1..=k {
            lags.insert((a, b), r.below(10) * 10);
        }
    }
    let mut s = Sim::new(k, mutant, &phase);
    s.lag = Box::new(move |a, b| lags[&(a, b)]);
    s
}

/// Node 1 cut from every peer from `cut` on; link 3–4 down both ways for
/// `d` ms of every `p` (from 1000 + off).
#[allow(clippy::too_many_arguments)]
fn cut_beside_flapping_link(
    seed: u64,
    k: u32,
    cut: u64,
    d: u64,
    p: u64,
    off: u64,
    mutant: Option<Mutant>,
    until: u64,
) -> Sim {
    let mut s = random_sim(seed, k, mutant);
    s.link = Box::new(move |a, b, t| {
        if (a == 1 || b == 1) && t >= cut {
            return false;
        }
        let pair = (a.min(b), a.max(b)) == (3, 4);
        !(pair && t >= 1000 + off && (t - 1000 - off) % p < d)
    });
    s.to(until);
    s
}

#[test]
#[ignore]
fn review17_explore_flapping_link() {
    for k in [3u32, 4] {
        for (d, p) in [
            (450, 700),
            (500, 800),
            (500, 700),
            (550, 900),
            (450, 650),
            (400, 550),
            (350, 550),
        ] {
            let mut rows = vec![];
            let mut never = [0; 3];
            let mut healthy = [0; 3];
            for seed in 0..60 {
                let off = seed * 7 % 100;
                let cut = 1500 + (seed % 10) * 10;
                let mut ts = vec![];
                for (i, m) in [
                    None,
                    Some(Mutant::NoOneSidedHeals),
                    Some(Mutant::NoYoungHeals),
                ]
                .into_iter()
                .enumerate()
                {
                    let s = cut_beside_flapping_link(seed, k, cut, d, p, off, m, cut + 6000);
                    let f = fenced_nodes(&s.h);
                    if f.iter().any(|&(_, n)| n != 1 && n != 3 && n != 4) {
                        healthy[i] += 1;
                    }
                    let t1 = first_fence_of(&s.h, 1).map(|t| t as i64 - cut as i64);
                    if t1.is_none() {
                        never[i] += 1;
                    }
                    ts.push(t1.unwrap_or(99999));
                }
                rows.push((ts[0] - ts[1], seed, ts.clone()));
            }
            rows.sort();
            eprintln!(
                "k={k} {d}/{p}: never {never:?} healthy {healthy:?} worst {:?} median {:?}",
                &rows[rows.len() - 3..],
                rows[rows.len() / 2]
            );
        }
    }
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

/// Node 1 cut from every peer from `cut` on; link `pair` loses probes
/// (both ways, independently) with probability `p` ‰ from 1000 on.
fn cut_beside_lossy_link(
    seed: u64,
    k: u32,
    cut: u64,
    pair: (NodeId, NodeId),
    p: u64,
    mutant: Option<Mutant>,
    until: u64,
) -> Sim {
    let mut s = random_sim(seed, k, mutant);
    s.link = Box::new(move |a, b, t| {
        if (a == 1 || b == 1) && t >= cut {
            return false;
        }
        let on = (a.min(b), a.max(b)) == pair;
        !(on && t >= 1000 && h1000(seed, a, b, t) < p)
    });
    s.to(until);
    s
}

#[test]
#[ignore]
fn review17_explore_lossy_link() {
    for k in [3u32, 4, 5] {
        let pair = if k == 3 { (2, 3) } else { (3, 4) };
        for p in [300u64, 400, 500, 600, 700] {
            let mut rows = vec![];
            let mut never = [0; 3];
            let mut healthy = [0; 3];
            for seed in 0..40 {
                let cut = 1500 + (seed % 10) * 10;
                let mut ts = vec![];
                for (i, m) in [
                    None,
                    Some(Mutant::NoOneSidedHeals),
                    Some(Mutant::NoYoungHeals),
                ]
                .into_iter()
                .enumerate()
                {
                    let s = cut_beside_lossy_link(seed, k, cut, pair, p, m, cut + 6000);
                    let f = fenced_nodes(&s.h);
                    if f.iter().any(|&(_, n)| n != 1 && n != pair.0 && n != pair.1) {
                        healthy[i] += 1;
                    }
                    let t1 = first_fence_of(&s.h, 1).map(|t| t as i64 - cut as i64);
                    if t1.is_none() {
                        never[i] += 1;
                    }
                    ts.push(t1.unwrap_or(99999));
                }
                rows.push((ts[0] - ts[1], seed, ts.clone()));
            }
            rows.sort();
            eprintln!(
                "k={k} p={p}: never {never:?} healthy {healthy:?} worst {:?} median {:?}",
                &rows[rows.len() - 3..],
                rows[rows.len() / 2]
            );
        }
    }
}

/// Node 1's links to every peer lose probes (both ways, independently)
/// with probability `p` ‰ from `cut` on: a node whose own links are
/// failing.
fn lossy_node(seed: u64, k: u32, cut: u64, p: u64, mutant: Option<Mutant>, until: u64) -> Sim {
    let mut s = random_sim(seed, k, mutant);
    s.link = Box::new(move |a, b, t| !((a == 1 || b == 1) && t >= cut && h1000(seed, a, b, t) < p));
    s.to(until);
    s
}

#[test]
#[ignore]
fn review17_explore_lossy_node() {
    for k in [3u32, 4, 5] {
        for p in [700u64, 800, 850, 900, 950, 1000] {
            let mut rows = vec![];
            let mut never = [0; 3];
            let mut healthy = [0; 3];
            for seed in 0..40 {
                let cut = 1500 + (seed % 10) * 10;
                let mut ts = vec![];
                for (i, m) in [
                    None,
                    Some(Mutant::NoOneSidedHeals),
                    Some(Mutant::NoYoungHeals),
                ]
                .into_iter()
                .enumerate()
                {
                    let s = lossy_node(seed, k, cut, p, m, cut + 8000);
                    let f = fenced_nodes(&s.h);
                    if f.iter().any(|&(_, n)| n != 1) {
                        healthy[i] += 1;
                    }
                    let t1 = first_fence_of(&s.h, 1).map(|t| t as i64 - cut as i64);
                    if t1.is_none() {
                        never[i] += 1;
                    }
                    ts.push(t1.unwrap_or(99999));
                }
                rows.push((ts[0] - ts[1], seed, ts.clone()));
            }
            rows.sort();
            let mut med: Vec<i64> = rows.iter().map(|r| r.2[0]).collect();
            med.sort();
            let mut med1: Vec<i64> = rows.iter().map(|r| r.2[1]).collect();
            med1.sort();
            eprintln!(
                "k={k} p={p}: never {never:?} healthy {healthy:?} worst {:?} median now {} without {}",
                &rows[rows.len() - 3..],
                med[med.len() / 2],
                med1[med1.len() / 2]
            );
        }
    }
}

/// Node 1 cut from every peer from `cut` on; node `k`'s agent restarts
/// every `period` ms from `start` on, down for `d` ms each time (then a
/// new session, a new instance).
#[allow(clippy::too_many_arguments)]
fn cut_beside_restarting_agent(
    seed: u64,
    k: u32,
    cut: u64,
    start: u64,
    period: u64,
    d: u64,
    mutant: Option<Mutant>,
    until: u64,
) -> Sim {
    let mut s = random_sim(seed, k, mutant);
    s.link = Box::new(move |a, b, t| !((a == 1 || b == 1) && t >= cut));
    s.down = Box::new(move |n, t| n == k && t >= start && (t - start) % period < d);
    let v: Vec<u64> = (0..40).map(|i| start + i * period + d).collect();
    s.restarts.insert(k, v);
    s.to(until);
    s
}

#[test]
#[ignore]
fn review17_explore_restarting_agent() {
    for k in [3u32, 4, 5] {
        for (period, d) in [
            (600u64, 300u64),
            (700, 350),
            (800, 400),
            (1000, 450),
            (500, 300),
            (900, 300),
            (1200, 450),
        ] {
            let mut rows = vec![];
            let mut never = [0; 3];
            let mut healthy = [0; 3];
            for seed in 0..40 {
                let cut = 1500 + (seed % 10) * 10;
                let start = 1300 + (seed * 37) % 300;
                let mut ts = vec![];
                for (i, m) in [
                    None,
                    Some(Mutant::NoYoungHeals),
                    Some(Mutant::NoOneSidedHeals),
                ]
                .into_iter()
                .enumerate()
                {
                    let s =
                        cut_beside_restarting_agent(seed, k, cut, start, period, d, m, cut + 8000);
                    let f = fenced_nodes(&s.h);
                    if f.iter().any(|&(_, n)| n != 1 && n != k) {
                        healthy[i] += 1;
                    }
                    let t1 = first_fence_of(&s.h, 1).map(|t| t as i64 - cut as i64);
                    if t1.is_none() {
                        never[i] += 1;
                    }
                    ts.push(t1.unwrap_or(99999));
                }
                rows.push((ts[0] - ts[1], seed, ts.clone()));
            }
            rows.sort();
            let mut med: Vec<i64> = rows.iter().map(|r| r.2[0]).collect();
            med.sort();
            let mut med1: Vec<i64> = rows.iter().map(|r| r.2[1]).collect();
            med1.sort();
            eprintln!(
                "k={k} {period}/{d}: never {never:?} healthy {healthy:?} worst {:?} median now {} without {}",
                &rows[rows.len() - 3..],
                med[med.len() / 2],
                med1[med1.len() / 2]
            );
        }
    }
}

/// A random scenario (by `seed`): `k` nodes; node 1 cut from every peer
/// in random spells; node 2's agent restarted at random instants (down
/// 200–450 ms); the arbiter deaf (every report lost) in random short
/// gaps. Returns the run and the nodes touched by a fault.
fn random_chaos(seed: u64, k: u32, mutant: Option<Mutant>, until: u64) -> (Sim, String) {
    let mut r = Lcg(seed);
    let mut spells = vec![];
    let mut t = 1000 + r.below(400);
    for _ in 0..(1 + r.below(5)) {
        let c = 100 + r.below(15) * 50;
        spells.push((t, t + c));
        t += c + 100 + r.below(15) * 50;
    }
    let mut restarts = vec![];
    let mut downs = vec![];
    if r.below(2) == 0 {
        let mut t = 1000 + r.below(1500);
        for _ in 0..(1 + r.below(3)) {
            let d = 200 + r.below(6) * 50;
            downs.push((t, t + d));
            restarts.push(t + d);
            t += d + 200 + r.below(10) * 100;
        }
    }
    let mut deaf = vec![];
    if r.below(2) == 0 {
        let mut t = 1000 + r.below(2000);
        for _ in 0..(1 + r.below(3)) {
            let d = 160 + r.below(6) * 40;
            deaf.push((t, t + d));
            t += d + 100 + r.below(10) * 100;
        }
    }
    let desc = format!("seed {seed} k {k} cut1 {spells:?} restart2 {downs:?} deaf {deaf:?}");
    let mut s = random_sim(seed, k, mutant);
    let sp = spells.clone();
    s.link = Box::new(move |a, b, t| {
        !((a == 1 || b == 1) && sp.iter().any(|&(x, y)| (x..y).contains(&t)))
    });
    let dn = downs.clone();
    s.down = Box::new(move |n, t| n == 2 && dn.iter().any(|&(x, y)| (x..y).contains(&t)));
    let df = deaf.clone();
    s.lost = Box::new(move |_, t| df.iter().any(|&(x, y)| (x..y).contains(&t)));
    s.restarts.insert(2, restarts);
    s.to(until);
    (s, desc)
}

#[test]
#[ignore]
fn review17_explore_random_chaos() {
    let seeds: u64 = std::env::var("R17_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let muts = [
        None,
        Some(Mutant::NoYoungHeals),
        Some(Mutant::NoOneSidedHeals),
        Some(Mutant::NoDeafGaps),
    ];
    let mut bad = [0; 4];
    let mut bad2 = [0; 4];
    for seed in 0..seeds {
        for k in [3u32, 4, 5] {
            let mut row = vec![];
            for m in muts {
                let (s, desc) = random_chaos(seed, k, m, 7000);
                let f = fenced_nodes(&s.h);
                let healthy: Vec<_> = f.iter().filter(|&&(_, n)| n > 2).copied().collect();
                let two = f.iter().any(|&(_, n)| n == 2);
                row.push((healthy, two, f.clone(), desc));
            }
            for i in 0..4 {
                if !row[i].0.is_empty() {
                    bad[i] += 1;
                }
                if row[i].1 {
                    bad2[i] += 1;
                }
            }
            if !row[0].0.is_empty()
                && (row[1].0.is_empty() || row[2].0.is_empty() || row[3].0.is_empty())
            {
                eprintln!(
                    "HEALTHY {}: now {:?} | young {:?} onesided {:?} deaf {:?}",
                    row[0].3, row[0].2, row[1].2, row[2].2, row[3].2
                );
            }
            if row[0].1 && (!row[1].1 || !row[2].1 || !row[3].1) {
                eprintln!(
                    "TWO {}: now {:?} | young {:?} onesided {:?} deaf {:?}",
                    row[0].3, row[0].2, row[1].2, row[2].2, row[3].2
                );
            }
        }
    }
    eprintln!("healthy fenced (nodes > 2) per variant {bad:?}; node 2 fenced {bad2:?}");
}

/// Four nodes (phases 1@20, 2@70, 3@0, 4@50); node 1 cut from every peer
/// from `cut` on; link 3–4 flickers at the report level every 300 ms from
/// 1000 on: node 3 leaves 4 out at slots 0 and 100, node 4 leaves 3 out
/// at 50 and 150 (each side two reports, never settled): every cycle, node
/// 3 reports 4 back at 200 while 4 still says lost (a one-sided heal).
fn cut_beside_flicker(cut: u64, mutant: Option<Mutant>, until: u64) -> H {
    let mut h = h_with(spec_levels(4, QuorumMode::LastManStanding, 1), mutant);
    let phase = [(1, 20), (2, 70), (3, 0), (4, 50)];
    drive(&mut h, ms(until), &phase, &|n, now| {
        let t = now.as_millis() as u64;
        let mut drop = vec![];
        if t >= cut {
            if n == 1 {
                drop.extend([2, 3, 4]);
            } else {
                drop.push(1);
            }
        }
        if t >= 1000 {
            let c = t % 300;
            if n == 3 && (c == 0 || c == 100) {
                drop.push(4);
            }
            if n == 4 && (c == 50 || c == 150) {
                drop.push(3);
            }
        }
        Some(all_but(n, 4, &drop))
    });
    h
}

/// R1 (liveness, measured; passes): a one-sided heal every 300 ms on link
/// 3–4 restarts the proof of node 1's edges each time; the hold bounds
/// it. Cut at 1500..1790: fenced at 1950..2250 against 1720..2020
/// without the rule, at most +300 ms (cut 1610..1670, 1760..1790).
#[test]
fn review17_r1_one_sided_flicker_delays_a_cut_by_300ms_at_most() {
    let mut worst = 0i64;
    for cut in (1500..1800).step_by(10) {
        let a = first_fence_of(&cut_beside_flicker(cut, None, 6000), 1);
        let b = first_fence_of(
            &cut_beside_flicker(cut, Some(Mutant::NoOneSidedHeals), 6000),
            1,
        );
        let (a, b) = (
            a.expect("node 1 fenced") as i64,
            b.expect("node 1 fenced") as i64,
        );
        eprintln!("cut {cut}: now {a} without {b}");
        worst = worst.max(a - b);
    }
    assert!(worst <= 300, "worst delay {worst}");
}

/// Seed 1121's phases and lags (5 nodes): node 1 cut from every peer in
/// `spells`, node 2's agent down 1573–1973 (new session at 1973).
fn seed_1121_with(spells: Vec<(u64, u64)>, mutant: Option<Mutant>) -> H {
    let mut s = random_sim(1121, 5, mutant);
    s.link = Box::new(move |a, b, t| {
        !((a == 1 || b == 1) && spells.iter().any(|&(x, y)| (x..y).contains(&t)))
    });
    s.down = Box::new(|n, t| n == 2 && (1573..1973).contains(&t));
    s.restarts.insert(2, vec![1973]);
    s.to(7000);
    s.h
}

/// Pre-existing, not of this change (ignored; prints): node 1 cut for
/// good from 2043, 70 ms after node 2's agent restarted (down 1573–1973):
/// node 1 never probed node 2 back before its cut, so edge 1–2 is the
/// first down; the tie {1,3,4,5} / {2,3,4,5} goes to the lowest id and
/// node 2 is fenced at 2280 (then node 1 at 2490), with and without the
/// change. With node 1 also cut 1093–1543 (seed 1121 of
/// `review17_explore_random_chaos`), the change spares node 1 in that
/// first cut (a one-sided heal at 1560 makes it hold) where
/// `NoOneSidedHeals` fences node 1 at 1580 and nobody else.
#[test]
#[ignore]
fn review17_note_1121_restarted_peer_loses_the_tie() {
    for spells in [
        vec![(1093, 1543), (2043, 2493)],
        vec![(2043, 2493)],
        vec![(2043, 9000)],
    ] {
        for m in [
            None,
            Some(Mutant::NoOneSidedHeals),
            Some(Mutant::NoYoungHeals),
        ] {
            eprintln!(
                "{spells:?} {m:?}: {:?}",
                fenced_nodes(&seed_1121_with(spells.clone(), m))
            );
        }
    }
}
