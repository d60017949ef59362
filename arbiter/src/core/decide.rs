//! The survivor decision: the best quorate clique of the reachability graph.
//!
//! Pure and total: the same candidates and edges give the same verdict in any
//! input order. Candidate sets are ordered by, in turn:
//!
//! 1. total votes (more wins),
//! 2. total priority (an operator's weight, more wins),
//! 3. total heuristics score reported by agents (more wins),
//! 4. the tie-breaker: a set holding the named tie-breaker node wins; then
//!    the set whose sorted node ids are lexicographically smaller wins (so by
//!    default the set holding the lowest node id).
//!
//! Since every node has at least one vote, a clique always beats its own
//! subsets, so only maximal cliques need scoring: they are enumerated with
//! Bron–Kerbosch with pivoting over `u64` bitsets (clusters of up to 64
//! nodes). `tests` checks it against brute force.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::quorum::Quorum;
use super::NodeId;

/// Largest cluster the bitset search supports.
pub const MAX_NODES: usize = 64;

/// What the decision knows of one live candidate node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub votes: u32,
    pub priority: u32,
    pub heuristics: u32,
}

/// How ties that votes, priority and heuristics leave are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TieBreaker {
    /// The set holding the lowest node id wins.
    #[default]
    LowestNodeId,
    /// The set holding this node wins; then as `LowestNodeId`.
    Node(NodeId),
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The arbiter backs exactly these nodes.
    Survivors(BTreeSet<NodeId>),
    /// The best clique is not quorate even with the arbiter's votes: the
    /// arbiter backs nobody and fences nobody.
    NoQuorum { best: BTreeSet<NodeId> },
}

/// Score of a set, compared lexicographically (votes, priority, heuristics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    votes: u64,
    priority: u64,
    heuristics: u64,
}

fn score(cands: &[Candidate], set: u64) -> Score {
    let mut s = Score {
        votes: 0,
        priority: 0,
        heuristics: 0,
    };
    for (i, c) in cands.iter().enumerate() {
        if set & (1u64 << i) != 0 {
            s.votes += u64::from(c.votes);
            s.priority += u64::from(c.priority);
            s.heuristics += u64::from(c.heuristics);
        }
    }
    s
}

/// Total order over candidate sets: `Greater` means `a` is the better set.
/// `cands` must be sorted by id, so bit order is id order.
fn compare(cands: &[Candidate], tie: TieBreaker, a: u64, b: u64) -> Ordering {
    score(cands, a)
        .cmp(&score(cands, b))
        .then_with(|| {
            if let TieBreaker::Node(n) = tie {
                if let Some(i) = cands.iter().position(|c| c.id == n) {
                    let bit = 1u64 << i;
                    return (a & bit != 0).cmp(&(b & bit != 0));
                }
            }
            Ordering::Equal
        })
        .then_with(|| {
            // Lexicographically smaller sorted id list wins; a strict prefix
            // loses to the longer list (it holds fewer nodes).
            let (mut x, mut y) = (a, b);
            loop {
                match (x == 0, y == 0) {
                    (true, true) => return Ordering::Equal,
                    (true, false) => return Ordering::Less,
                    (false, true) => return Ordering::Greater,
                    _ => {}
                }
                let (ix, iy) = (x.trailing_zeros(), y.trailing_zeros());
                if ix != iy {
                    // The set with the lower next id wins.
                    return iy.cmp(&ix);
                }
                x &= x - 1;
                y &= y - 1;
            }
        })
}

/// Decide the survivor set. `edges` holds unordered pairs (either order)
/// among candidate ids; pairs naming non-candidates are ignored. Candidates
/// beyond [`MAX_NODES`] are a configuration error caught at load time; here
/// they are ignored, never a panic.
pub fn decide(
    candidates: &[Candidate],
    edges: &BTreeSet<(NodeId, NodeId)>,
    quorum: &Quorum,
    tie: TieBreaker,
) -> Verdict {
    let mut cands: Vec<Candidate> = candidates.to_vec();
    cands.sort_by_key(|c| c.id);
    cands.dedup_by_key(|c| c.id);
    cands.truncate(MAX_NODES);
    let adj = adjacency(&cands, edges);
    let best = best_clique(&cands, &adj, tie);
    let votes = score(&cands, best).votes;
    let set = to_ids(&cands, best);
    if best != 0 && quorum.is_quorate(votes, true) {
        Verdict::Survivors(set)
    } else {
        Verdict::NoQuorum { best: set }
    }
}

fn adjacency(cands: &[Candidate], edges: &BTreeSet<(NodeId, NodeId)>) -> Vec<u64> {
    let index = |id: NodeId| cands.binary_search_by_key(&id, |c| c.id).ok();
    let mut adj = vec![0u64; cands.len()];
    for &(a, b) in edges {
        if a == b {
            continue;
        }
        if let (Some(i), Some(j)) = (index(a), index(b)) {
            adj[i] |= 1 << j;
            adj[j] |= 1 << i;
        }
    }
    adj
}

fn to_ids(cands: &[Candidate], set: u64) -> BTreeSet<NodeId> {
    cands
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1u64 << i) != 0)
        .map(|(_, c)| c.id)
        .collect()
}

/// Best maximal clique by Bron–Kerbosch with pivoting.
fn best_clique(cands: &[Candidate], adj: &[u64], tie: TieBreaker) -> u64 {
    let n = cands.len();
    if n == 0 {
        return 0;
    }
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut best = 0u64;
    let mut found = false;
    bron_kerbosch(0, all, 0, adj, &mut |clique| {
        if !found || compare(cands, tie, clique, best) == Ordering::Greater {
            best = clique;
            found = true;
        }
    });
    best
}

fn bron_kerbosch(r: u64, mut p: u64, mut x: u64, adj: &[u64], report: &mut impl FnMut(u64)) {
    if p == 0 {
        if x == 0 {
            report(r);
        }
        return;
    }
    // Pivot: the vertex of P ∪ X with most neighbours in P.
    let px = p | x;
    let mut pivot = px.trailing_zeros() as usize;
    let mut most = 0;
    let mut rest = px;
    while rest != 0 {
        let u = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let c = (p & adj[u]).count_ones();
        if c > most {
            most = c;
            pivot = u;
        }
    }
    let mut todo = p & !adj[pivot];
    while todo != 0 {
        let v = todo.trailing_zeros() as usize;
        todo &= todo - 1;
        let bit = 1u64 << v;
        bron_kerbosch(r | bit, p & adj[v], x & adj[v], adj, report);
        p &= !bit;
        x |= bit;
    }
}

/// The verdict given the set the arbiter backs now (`incumbents`).
///
/// Nodes joining never cost a running member its place: the best clique is
/// chosen among live incumbents first (the order above), then joiners are
/// added one by one (most votes, priority, heuristics, then lowest id first)
/// while the set stays a clique. Only when the incumbents alone cannot form
/// a quorate set (first start, or most of them gone) is the best clique of
/// all live candidates taken.
pub fn decide_with_incumbents(
    candidates: &[Candidate],
    edges: &BTreeSet<(NodeId, NodeId)>,
    incumbents: &BTreeSet<NodeId>,
    quorum: &Quorum,
    tie: TieBreaker,
) -> Verdict {
    let (inc, joiners): (Vec<Candidate>, Vec<Candidate>) =
        candidates.iter().partition(|c| incumbents.contains(&c.id));
    let Verdict::Survivors(mut set) = decide(&inc, edges, quorum, tie) else {
        return decide(candidates, edges, quorum, tie);
    };
    let mut joiners = joiners;
    joiners.sort_by(|a, b| {
        (b.votes, b.priority, b.heuristics)
            .cmp(&(a.votes, a.priority, a.heuristics))
            .then(a.id.cmp(&b.id))
    });
    joiners.dedup_by_key(|c| c.id);
    let linked = |a: NodeId, b: NodeId| edges.contains(&(a, b)) || edges.contains(&(b, a));
    for j in joiners {
        if set.len() < MAX_NODES && set.iter().all(|&m| linked(m, j.id)) {
            set.insert(j.id);
        }
    }
    Verdict::Survivors(set)
}

/// Reference implementation for tests: every subset, keep the best clique.
#[doc(hidden)]
pub fn decide_brute_force(
    candidates: &[Candidate],
    edges: &BTreeSet<(NodeId, NodeId)>,
    quorum: &Quorum,
    tie: TieBreaker,
) -> Verdict {
    let mut cands: Vec<Candidate> = candidates.to_vec();
    cands.sort_by_key(|c| c.id);
    cands.dedup_by_key(|c| c.id);
    assert!(cands.len() <= 16, "brute force is for small clusters");
    let adj = adjacency(&cands, edges);
    let mut best = 0u64;
    for set in 1u64..(1u64 << cands.len()) {
        let is_clique = (0..cands.len())
            .filter(|i| set & (1 << i) != 0)
            .all(|i| set & !(1u64 << i) & !adj[i] == 0);
        if is_clique && (best == 0 || compare(&cands, tie, set, best) == Ordering::Greater) {
            best = set;
        }
    }
    let ids = to_ids(&cands, best);
    if best != 0 && quorum.is_quorate(score(&cands, best).votes, true) {
        Verdict::Survivors(ids)
    } else {
        Verdict::NoQuorum { best: ids }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quorum::QuorumMode;
    use super::*;

    fn c(id: NodeId) -> Candidate {
        Candidate {
            id,
            votes: 1,
            priority: 0,
            heuristics: 0,
        }
    }

    fn full(ids: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
        let mut e = BTreeSet::new();
        for &a in ids {
            for &b in ids {
                if a < b {
                    e.insert((a, b));
                }
            }
        }
        e
    }

    #[test]
    fn broken_link_between_two_nodes_that_both_reach_a_third_fences_one() {
        // A–B broken, both reach C: {1,3} and {2,3} tie; lowest id wins.
        let q = Quorum::new(QuorumMode::TieBreaker, 3);
        let edges: BTreeSet<_> = [(1, 3), (2, 3)].into_iter().collect();
        let v = decide(&[c(1), c(2), c(3)], &edges, &q, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::Survivors([1, 3].into()));
        let v = decide(&[c(1), c(2), c(3)], &edges, &q, TieBreaker::Node(2));
        assert_eq!(v, Verdict::Survivors([2, 3].into()));
    }

    #[test]
    fn priority_beats_lower_id() {
        let q = Quorum::new(QuorumMode::TieBreaker, 4);
        let mut cands = vec![c(1), c(2), c(3), c(4)];
        cands[3].priority = 10;
        let edges: BTreeSet<_> = [(1, 2), (3, 4)].into_iter().collect();
        let v = decide(&cands, &edges, &q, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::Survivors([3, 4].into()));
    }

    #[test]
    fn minority_is_not_quorate_in_tie_breaker_mode() {
        let q = Quorum::new(QuorumMode::TieBreaker, 5);
        let v = decide(&[c(1), c(2)], &full(&[1, 2]), &q, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::NoQuorum { best: [1, 2].into() });
        let lms = Quorum::new(QuorumMode::LastManStanding, 5);
        let v = decide(&[c(4)], &BTreeSet::new(), &lms, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::Survivors([4].into()));
    }

    #[test]
    fn no_candidates_no_quorum() {
        let q = Quorum::new(QuorumMode::LastManStanding, 3);
        let v = decide(&[], &BTreeSet::new(), &q, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::NoQuorum { best: BTreeSet::new() });
    }
}
