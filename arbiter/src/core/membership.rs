//! What the arbiter knows of each node and of the reachability graph.
//!
//! An edge a–b exists when a reports b fresh and b reports a fresh, both
//! alive. Edges come up at once but go down only after the raw edge stayed
//! down for `settle`, so a single lost probe fences nobody; flapping links
//! keep their edge until they stay down. A new edge between two incumbents
//! (members of the backed set, e.g. after an arbiter restart) starts up and
//! must stay down for `settle` too; a new edge to a joining node starts as
//! reported, so a joiner is admitted only once it really reaches everyone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::NodeId;

/// The arbiter's record of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The session heartbeats are accepted from; `None` after a confirmed
    /// fence until the node opens a new session.
    pub session: Option<u64>,
    pub connected: bool,
    pub last_heard: Option<Duration>,
    pub last_seq: u64,
    /// Peers this node reported reaching in its last heartbeat.
    pub reach: BTreeSet<NodeId>,
    pub heuristics: u32,
    pub known_epoch: u64,
    /// Arbiter-side upper bound of the lease last granted.
    pub lease_until: Option<Duration>,
    /// Was the node alive at the last tick (for notices)?
    pub alive: bool,
}

impl NodeView {
    pub fn is_alive(&self, now: Duration, lost_after: Duration) -> bool {
        self.session.is_some()
            && self
                .last_heard
                .is_some_and(|t| now.saturating_sub(t) <= lost_after)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EdgeState {
    up: bool,
    down_since: Option<Duration>,
}

/// Settled reachability edges among alive nodes.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    edges: BTreeMap<(NodeId, NodeId), EdgeState>,
}

impl Edges {
    /// Fold in the raw graph of `alive` nodes at `now` and return the
    /// settled edges (pairs with `a < b`).
    pub fn update(
        &mut self,
        now: Duration,
        settle: Duration,
        alive: &BTreeSet<NodeId>,
        incumbents: &BTreeSet<NodeId>,
        nodes: &BTreeMap<NodeId, NodeView>,
    ) -> BTreeSet<(NodeId, NodeId)> {
        self.edges
            .retain(|(a, b), _| alive.contains(a) && alive.contains(b));
        let mut settled = BTreeSet::new();
        for &a in alive {
            for &b in alive.range(a + 1..) {
                let raw = nodes[&a].reach.contains(&b) && nodes[&b].reach.contains(&a);
                let e = self.edges.entry((a, b)).or_insert(EdgeState {
                    up: raw || (incumbents.contains(&a) && incumbents.contains(&b)),
                    down_since: None,
                });
                if raw {
                    e.up = true;
                    e.down_since = None;
                } else if e.up {
                    let since = *e.down_since.get_or_insert(now);
                    if now.saturating_sub(since) >= settle {
                        e.up = false;
                    }
                }
                if e.up {
                    settled.insert((a, b));
                }
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(reach: &[NodeId]) -> NodeView {
        NodeView {
            session: Some(1),
            last_heard: Some(Duration::ZERO),
            reach: reach.iter().copied().collect(),
            ..NodeView::default()
        }
    }

    #[test]
    fn an_edge_goes_down_only_after_settle() {
        let ms = Duration::from_millis;
        let settle = ms(200);
        let alive: BTreeSet<NodeId> = [1, 2].into();
        let mut nodes: BTreeMap<NodeId, NodeView> = [(1, view(&[2])), (2, view(&[1]))].into();
        let mut e = Edges::default();
        assert_eq!(
            e.update(ms(0), settle, &alive, &BTreeSet::new(), &nodes),
            [(1, 2)].into()
        );
        nodes.get_mut(&1).unwrap().reach.clear();
        assert_eq!(
            e.update(ms(100), settle, &alive, &BTreeSet::new(), &nodes),
            [(1, 2)].into()
        );
        // A single good report in between resets the clock.
        nodes.get_mut(&1).unwrap().reach.insert(2);
        e.update(ms(150), settle, &alive, &BTreeSet::new(), &nodes);
        nodes.get_mut(&1).unwrap().reach.clear();
        assert_eq!(
            e.update(ms(300), settle, &alive, &BTreeSet::new(), &nodes),
            [(1, 2)].into()
        );
        assert_eq!(
            e.update(ms(500), settle, &alive, &BTreeSet::new(), &nodes),
            BTreeSet::new()
        );
        // Up again at once.
        nodes.get_mut(&1).unwrap().reach.insert(2);
        assert_eq!(
            e.update(ms(510), settle, &alive, &BTreeSet::new(), &nodes),
            [(1, 2)].into()
        );
    }
}
