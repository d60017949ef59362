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
//! Every criterion is a sum of per-node weights (the last one too: a bitmask
//! with the lowest id most significant), so the search is a maximum-weight
//! clique problem under a lexicographic key. It runs as branch and bound over
//! `u64` bitsets (clusters of up to 64 nodes) with a greedy-colouring upper
//! bound, lowest ids first. The property tests check it against brute force
//! (an independent comparison function over every subset).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::NodeId;
use super::quorum::Quorum;

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
            if let TieBreaker::Node(n) = tie
                && let Some(i) = cands.iter().position(|c| c.id == n)
            {
                let bit = 1u64 << i;
                return (a & bit != 0).cmp(&(b & bit != 0));
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

/// Per-vertex weights whose sums, compared lexicographically, are exactly
/// the documented order (votes, priority, heuristics, named tie-breaker,
/// then the lexicographically smallest id list, encoded as a bitmask with the
/// lowest id most significant). Every set of vertices gets a distinct key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Key {
    votes: u64,
    priority: u64,
    heuristics: u64,
    named: u64,
    mask: u128,
}

impl Key {
    fn add(self, o: Key) -> Key {
        Key {
            votes: self.votes + o.votes,
            priority: self.priority + o.priority,
            heuristics: self.heuristics + o.heuristics,
            named: self.named + o.named,
            mask: self.mask + o.mask,
        }
    }

    fn max(self, o: Key) -> Key {
        Key {
            votes: self.votes.max(o.votes),
            priority: self.priority.max(o.priority),
            heuristics: self.heuristics.max(o.heuristics),
            named: self.named.max(o.named),
            mask: self.mask.max(o.mask),
        }
    }
}

/// Deterministic cap on search steps. Real reachability graphs (whole
/// meshes, splits, a few broken links) finish in a few thousand steps; an
/// adversarial graph of 64 nodes could take longer, and then the best clique
/// found so far is used: still a clique, still deterministic for the input.
const STEP_BUDGET: u64 = 2_000_000;

struct Search<'a> {
    adj: &'a [u64],
    w: Vec<Key>,
    best: u64,
    best_key: Key,
    steps: u64,
}

impl Search<'_> {
    /// Upper bound of any clique extending a clique of key `rk` with
    /// vertices of `p`: greedy colouring of `p` into independent sets (a
    /// clique takes at most one vertex of each) and the component-wise
    /// maximum weight of each class. For any extension S, each component of
    /// key(S) is at most the bound's, so key(S) <= bound lexicographically.
    fn bound(&self, rk: Key, mut p: u64) -> Key {
        let mut ub = rk;
        while p != 0 {
            // One colour class: a maximal independent set, lowest ids first.
            let mut class = p;
            let mut pick = 0u64;
            let mut cls_max = Key::default();
            while class != 0 {
                let v = class.trailing_zeros() as usize;
                let bit = 1u64 << v;
                pick |= bit;
                cls_max = cls_max.max(self.w[v]);
                class &= !bit & !self.adj[v];
            }
            p &= !pick;
            ub = ub.add(cls_max);
        }
        ub
    }

    fn expand(&mut self, r: u64, rk: Key, mut p: u64) {
        self.steps += 1;
        if rk > self.best_key {
            self.best = r;
            self.best_key = rk;
        }
        while p != 0 {
            if self.steps >= STEP_BUDGET || self.bound(rk, p) <= self.best_key {
                return;
            }
            // Lowest id first: the first cliques found are the likely winners.
            let v = p.trailing_zeros() as usize;
            let bit = 1u64 << v;
            self.expand(r | bit, rk.add(self.w[v]), p & self.adj[v]);
            p &= !bit;
        }
    }
}

/// The best clique under the documented order, by branch and bound.
fn best_clique(cands: &[Candidate], adj: &[u64], tie: TieBreaker) -> u64 {
    let n = cands.len();
    if n == 0 {
        return 0;
    }
    let w = cands
        .iter()
        .enumerate()
        .map(|(i, c)| Key {
            votes: u64::from(c.votes),
            priority: u64::from(c.priority),
            heuristics: u64::from(c.heuristics),
            named: u64::from(matches!(tie, TieBreaker::Node(x) if x == c.id)),
            mask: 1u128 << (63 - i),
        })
        .collect();
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut s = Search {
        adj,
        w,
        best: 0,
        best_key: Key::default(),
        steps: 0,
    };
    s.expand(0, Key::default(), all);
    s.best
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
        assert_eq!(
            v,
            Verdict::NoQuorum {
                best: [1, 2].into()
            }
        );
        let lms = Quorum::new(QuorumMode::LastManStanding, 5);
        let v = decide(&[c(4)], &BTreeSet::new(), &lms, TieBreaker::LowestNodeId);
        assert_eq!(v, Verdict::Survivors([4].into()));
    }

    #[test]
    fn no_candidates_no_quorum() {
        let q = Quorum::new(QuorumMode::LastManStanding, 3);
        let v = decide(&[], &BTreeSet::new(), &q, TieBreaker::LowestNodeId);
        assert_eq!(
            v,
            Verdict::NoQuorum {
                best: BTreeSet::new()
            }
        );
    }
}
