//! Votes and quorum, as corosync-qdevice counts them.
//!
//! Every node has votes; the arbiter has votes set by the mode. A set is
//! quorate iff its votes, plus the arbiter's when the arbiter backs it, are
//! more than half of all *configured* votes (never of "nodes seen").
//!
//! **Invariant:** the arbiter backs one set at a time, so two disjoint sets
//! can never both be quorate: one of them lacks the arbiter's votes, and
//! `2·(a + arb) > T` and `2·b > T` with `a + b + arb ≤ T` is impossible.

use serde::{Deserialize, Serialize};

/// How many votes the arbiter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuorumMode {
    /// Arbiter votes = node votes − 1: any set the arbiter backs is quorate,
    /// a set without it never is. A lone survivor can run.
    LastManStanding,
    /// Arbiter votes = 1: the arbiter only settles even splits; it never
    /// hands the cluster to a minority of nodes.
    TieBreaker,
}

impl QuorumMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumMode::LastManStanding => "last-man-standing",
            QuorumMode::TieBreaker => "tie-breaker",
        }
    }
}

/// Vote arithmetic of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub node_votes: u64,
    pub arbiter_votes: u64,
}

impl Quorum {
    /// `node_votes` is the sum of every configured node's votes.
    pub fn new(mode: QuorumMode, node_votes: u64) -> Self {
        let arbiter_votes = match mode {
            QuorumMode::LastManStanding => node_votes.saturating_sub(1),
            QuorumMode::TieBreaker => 1,
        };
        Quorum {
            node_votes,
            arbiter_votes,
        }
    }

    pub fn total(&self) -> u64 {
        self.node_votes + self.arbiter_votes
    }

    /// Is a set holding `votes` node votes quorate, with or without the
    /// arbiter's backing?
    pub fn is_quorate(&self, votes: u64, backed_by_arbiter: bool) -> bool {
        let with = votes
            + if backed_by_arbiter {
                self.arbiter_votes
            } else {
                0
            };
        2 * with > self.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_man_standing_lets_a_lone_node_run() {
        let q = Quorum::new(QuorumMode::LastManStanding, 3);
        assert_eq!(q.arbiter_votes, 2);
        assert!(q.is_quorate(1, true));
        assert!(!q.is_quorate(2, false));
        assert!(!q.is_quorate(0, true));
    }

    #[test]
    fn tie_breaker_settles_even_splits_only() {
        let q = Quorum::new(QuorumMode::TieBreaker, 4);
        assert!(q.is_quorate(2, true));
        assert!(!q.is_quorate(2, false));
        assert!(!q.is_quorate(1, true));
        let q3 = Quorum::new(QuorumMode::TieBreaker, 3);
        assert!(q3.is_quorate(2, true));
        assert!(!q3.is_quorate(1, true));
    }
}
