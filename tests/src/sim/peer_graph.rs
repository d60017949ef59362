//! The ground truth of the links between nodes over time, and the question
//! the availability rule asks of it: could a correct arbiter, seeing these
//! links, have left this node out of the survivor set?
//!
//! The decision keeps the clique of the reachability graph with the most
//! votes (then priority, heuristics and the tie-breaker, which a node's own
//! state can move either way). So a broken link explains fencing a node
//! only when some clique with the most votes leaves it out, in a graph the
//! arbiter could have seen. An agent reports a peer lost only once it has
//! heard nothing from it for three probe intervals, and reports it back at
//! the next probe; so the arbiter sees a link down when it has been down
//! without a break for about that long (each `lag` tried in turn, the same
//! for every link), and a state of that graph shorter than `steady` is
//! half-settled (the design waits for the graph to stop changing). A node
//! cut off from every peer at once explains fencing that node, never the
//! peers it lost: they still form the bigger clique.

use std::collections::BTreeSet;

use arbiter::core::NodeId;

/// Links down either way between two nodes, as pairs `(a, b)` with `a < b`.
pub type Broken = BTreeSet<(NodeId, NodeId)>;

#[derive(Debug)]
pub struct PeerGraph {
    /// From each time on, the links that were down (the last entry runs
    /// until now).
    history: Vec<(u64, Broken)>,
    lags_us: Vec<u64>,
    gap_us: u64,
    steady_us: u64,
}

impl PeerGraph {
    pub fn new(lags_us: Vec<u64>, gap_us: u64, steady_us: u64) -> Self {
        PeerGraph {
            history: vec![(0, Broken::new())],
            lags_us,
            gap_us,
            steady_us,
        }
    }

    /// The links down at `now`; entries older than `keep_us` are dropped.
    pub fn observe(&mut self, now_us: u64, broken: Broken, keep_us: u64) {
        if self.history.last().is_some_and(|(_, b)| *b == broken) {
            return;
        }
        self.history.push((now_us, broken));
        let lag = self.lags_us.iter().copied().max().unwrap_or(0);
        let horizon = now_us.saturating_sub(keep_us + lag + self.steady_us);
        // Keep the entry in force at the horizon and everything after it.
        let first = self
            .history
            .iter()
            .rposition(|(t, _)| *t <= horizon)
            .unwrap_or(0);
        self.history.drain(..first);
    }

    /// The graphs the arbiter could have decided on within `[from, now]`:
    /// for each lag, each state of the links down for that lag that lasted
    /// at least `steady`.
    pub fn steady_states(&self, from_us: u64, now_us: u64) -> Vec<Broken> {
        let mut states = Vec::new();
        for runs in self.runs(now_us) {
            for (i, (start, seen)) in runs.iter().enumerate() {
                let end = runs.get(i + 1).map_or(now_us, |(t, _)| *t);
                if end >= from_us && end - start >= self.steady_us && !states.contains(seen) {
                    states.push(seen.clone());
                }
            }
        }
        states
    }

    /// Did the graphs the arbiter could have seen leave a node out (as
    /// `leaves_out` tells) for at least `steady` without a break, ending
    /// within `[from, now]`? The graph may change meanwhile — one node's
    /// links land a probe apart, another link heals — as long as every
    /// state of the run leaves the node out: the arbiter settles each edge
    /// on its own, not the whole graph at once.
    pub fn left_out_steadily(
        &self,
        from_us: u64,
        now_us: u64,
        leaves_out: &dyn Fn(&Broken) -> bool,
    ) -> bool {
        self.runs(now_us).iter().any(|runs| {
            let mut since: Option<u64> = None;
            runs.iter().enumerate().any(|(i, (start, seen))| {
                let end = runs.get(i + 1).map_or(now_us, |(t, _)| *t);
                if !leaves_out(seen) {
                    since = None;
                    return false;
                }
                let s = *since.get_or_insert(*start);
                end >= from_us && end - s >= self.steady_us
            })
        })
    }

    /// For each lag (and each gap a link up may have carried no probe in),
    /// the graph seen from each instant on, runs of the same merged.
    fn runs(&self, now_us: u64) -> Vec<Vec<(u64, Broken)>> {
        let mut all = Vec::new();
        for &lag in &self.lags_us {
            let mut cuts: Vec<u64> = self
                .history
                .iter()
                .flat_map(|&(t, _)| [t, t + lag])
                .filter(|&t| t <= now_us)
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            for gap in [0, self.gap_us] {
                // The graph seen from each cut on, runs of the same merged.
                let mut runs: Vec<(u64, Broken)> = Vec::new();
                for &start in &cuts {
                    let seen = self.down_throughout(start.saturating_sub(lag), start, gap);
                    if runs.last().is_none_or(|(_, b)| *b != seen) {
                        runs.push((start, seen));
                    }
                }
                all.push(runs);
            }
        }
        all
    }

    /// The links down at every time in `[from, at]`, counting a link up
    /// only for a stretch of at least `gap` (a shorter one may carry no
    /// probe).
    fn down_throughout(&self, from: u64, at: u64, gap: u64) -> Broken {
        let span = |i: usize| {
            let until = self.history.get(i + 1).map_or(u64::MAX, |(n, _)| *n);
            (self.history[i].0, until)
        };
        let links: Broken = self
            .history
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        links
            .into_iter()
            .filter(|l| {
                // No stretch up of at least `gap` overlaps [from, at].
                let mut up_since: Option<u64> = None;
                for i in 0..self.history.len() {
                    let (t, until) = span(i);
                    let down = self.history[i].1.contains(l);
                    if !down {
                        up_since.get_or_insert(t);
                    }
                    let run_ends = down || until == u64::MAX;
                    if let (true, Some(u)) = (run_ends, up_since) {
                        let end = if down { t } else { until };
                        if end - u >= gap && end > from && u <= at {
                            return false;
                        }
                        up_since = None;
                    }
                }
                true
            })
            .collect()
    }
}

/// Is there a clique of `nodes` (weighted by `votes`) with the most votes
/// that leaves `node` out, when the links in `broken` are down?
pub fn can_leave_out(nodes: &[(NodeId, u64)], broken: &Broken, node: NodeId) -> bool {
    let without: Vec<(NodeId, u64)> = nodes.iter().copied().filter(|&(n, _)| n != node).collect();
    max_clique_votes(&without, broken) >= max_clique_votes(nodes, broken)
}

/// The most votes a clique of `nodes` holds when `broken` links are down.
pub fn max_clique_votes(nodes: &[(NodeId, u64)], broken: &Broken) -> u64 {
    let linked = |a: NodeId, b: NodeId| !broken.contains(&(a.min(b), a.max(b)));
    let adj: Vec<u64> = nodes
        .iter()
        .map(|&(a, _)| {
            nodes
                .iter()
                .enumerate()
                .filter(|&(_, &(b, _))| b != a && linked(a, b))
                .fold(0u64, |m, (j, _)| m | 1 << j)
        })
        .collect();
    let weights: Vec<u64> = nodes.iter().map(|&(_, v)| v).collect();
    let all = if nodes.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << nodes.len()) - 1
    };
    let mut best = 0;
    grow(&adj, &weights, 0, all, &mut best);
    best
}

/// Branch and bound: `have` votes so far, `open` the nodes linked to all.
fn grow(adj: &[u64], weights: &[u64], have: u64, open: u64, best: &mut u64) {
    *best = (*best).max(have);
    let bound: u64 = (0..adj.len())
        .filter(|&i| open & (1 << i) != 0)
        .map(|i| weights[i])
        .sum();
    if have + bound <= *best {
        return;
    }
    let mut rest = open;
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= !(1 << i);
        grow(adj, weights, have + weights[i], rest & adj[i], best);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(NodeId, NodeId)]) -> Broken {
        pairs.iter().copied().collect()
    }

    const THREE: [(NodeId, u64); 3] = [(1, 1), (2, 1), (3, 1)];

    #[test]
    fn one_broken_link_can_leave_out_either_end_but_not_the_third_node() {
        let broken = b(&[(1, 2)]);
        assert!(can_leave_out(&THREE, &broken, 1));
        assert!(can_leave_out(&THREE, &broken, 2));
        assert!(!can_leave_out(&THREE, &broken, 3));
    }

    #[test]
    fn a_node_cut_from_every_peer_is_the_only_one_to_leave_out() {
        let broken = b(&[(1, 3), (2, 3)]);
        assert!(can_leave_out(&THREE, &broken, 3));
        assert!(!can_leave_out(&THREE, &broken, 1));
        assert!(!can_leave_out(&THREE, &broken, 2));
        assert_eq!(max_clique_votes(&THREE, &broken), 2);
    }

    #[test]
    fn votes_decide_which_end_of_a_broken_link_may_go() {
        let nodes = [(1, 2), (2, 1)];
        let broken = b(&[(1, 2)]);
        assert!(can_leave_out(&nodes, &broken, 2));
        assert!(!can_leave_out(&nodes, &broken, 1));
    }

    #[test]
    fn a_whole_graph_leaves_out_nobody() {
        assert!(!can_leave_out(&THREE, &Broken::new(), 2));
    }

    #[test]
    fn a_state_shorter_than_steady_is_not_a_graph_the_arbiter_could_use() {
        // Link 2-3 breaks at 1000, link 1-3 10 us later: node 3 cut off.
        let mut g = PeerGraph::new(vec![100], 0, 50);
        g.observe(1000, b(&[(2, 3)]), 10_000);
        g.observe(1010, b(&[(1, 3), (2, 3)]), 10_000);
        let states = g.steady_states(0, 5000);
        assert!(!states.contains(&b(&[(2, 3)])), "{states:?}");
        assert!(states.contains(&b(&[(1, 3), (2, 3)])), "{states:?}");
        // Seen only once down for the lag.
        assert_eq!(g.steady_states(0, 1090), vec![Broken::new()]);
        // Healed at 2000: seen up at once.
        g.observe(2000, Broken::new(), 10_000);
        let states = g.steady_states(1900, 2100);
        assert!(states.contains(&Broken::new()), "{states:?}");
    }

    #[test]
    fn a_link_down_for_less_than_the_lag_is_never_seen() {
        // A flapping link: down 80 us, up 10 us, down 80 us...
        let mut g = PeerGraph::new(vec![100], 0, 50);
        let mut t = 1000;
        for _ in 0..10 {
            g.observe(t, b(&[(1, 2)]), 10_000);
            g.observe(t + 80, Broken::new(), 10_000);
            t += 90;
        }
        assert_eq!(g.steady_states(0, t), vec![Broken::new()]);
        // With a shorter lag it is.
        let mut g2 = PeerGraph::new(vec![60], 0, 10);
        g2.observe(1000, b(&[(1, 2)]), 10_000);
        g2.observe(1080, Broken::new(), 10_000);
        assert!(g2.steady_states(0, 2000).contains(&b(&[(1, 2)])));
    }
}
