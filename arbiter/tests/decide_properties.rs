//! Property tests of the survivor decision and the quorum arithmetic.

use std::collections::BTreeSet;

use arbiter::core::decide::{decide, decide_brute_force};
use arbiter::core::{Candidate, NodeId, Quorum, QuorumMode, TieBreaker, Verdict};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    all_votes: Vec<u32>,
    cands: Vec<Candidate>,
    edges: BTreeSet<(NodeId, NodeId)>,
    mode: QuorumMode,
    tie: TieBreaker,
}

fn case(max_nodes: usize) -> impl Strategy<Value = Case> {
    (1..=max_nodes)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec((1u32..4, 0u32..3, 0u32..3, any::<bool>()), n),
                proptest::collection::vec(any::<bool>(), n * n),
                prop_oneof![
                    Just(QuorumMode::LastManStanding),
                    Just(QuorumMode::TieBreaker)
                ],
                prop_oneof![Just(None), (1..=n as u32).prop_map(Some)],
            )
        })
        .prop_map(|(nodes, bits, mode, tie)| {
            let n = nodes.len();
            let all_votes = nodes.iter().map(|x| x.0).collect();
            let cands = nodes
                .iter()
                .enumerate()
                .filter(|(_, x)| x.3)
                .map(|(i, x)| Candidate {
                    id: i as NodeId + 1,
                    votes: x.0,
                    priority: x.1,
                    heuristics: x.2,
                })
                .collect();
            let mut edges = BTreeSet::new();
            for a in 0..n {
                for b in a + 1..n {
                    if bits[a * n + b] {
                        edges.insert((a as NodeId + 1, b as NodeId + 1));
                    }
                }
            }
            let tie = tie.map_or(TieBreaker::LowestNodeId, TieBreaker::Node);
            Case {
                all_votes,
                cands,
                edges,
                mode,
                tie,
            }
        })
}

fn quorum(c: &Case) -> Quorum {
    Quorum::new(c.mode, c.all_votes.iter().map(|&v| u64::from(v)).sum())
}

fn is_clique(set: &BTreeSet<NodeId>, edges: &BTreeSet<(NodeId, NodeId)>) -> bool {
    set.iter()
        .all(|&a| set.range(a + 1..).all(|&b| edges.contains(&(a, b))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The clique search equals brute force for up to 10 nodes.
    #[test]
    fn clique_search_equals_brute_force(c in case(10)) {
        let q = quorum(&c);
        prop_assert_eq!(decide(&c.cands, &c.edges, &q, c.tie), decide_brute_force(&c.cands, &c.edges, &q, c.tie));
    }

    /// The verdict does not depend on the order of candidates or edges.
    #[test]
    fn verdict_is_independent_of_input_order(c in case(12), seed in any::<u64>()) {
        let q = quorum(&c);
        let mut shuffled = c.cands.clone();
        // A deterministic permutation from the seed.
        let len = shuffled.len();
        if len > 1 {
            for i in 0..len {
                let j = ((seed >> (i % 60)) as usize + i * 7) % len;
                shuffled.swap(i, j);
            }
        }
        let reversed: BTreeSet<(NodeId, NodeId)> = c.edges.iter().map(|&(a, b)| (b, a)).collect();
        prop_assert_eq!(decide(&c.cands, &c.edges, &q, c.tie), decide(&shuffled, &reversed, &q, c.tie));
    }

    /// A verdict is a quorate clique of live candidates.
    #[test]
    fn survivors_are_a_quorate_clique_of_candidates(c in case(16)) {
        let q = quorum(&c);
        if let Verdict::Survivors(s) = decide(&c.cands, &c.edges, &q, c.tie) {
            prop_assert!(is_clique(&s, &c.edges));
            let ids: BTreeSet<NodeId> = c.cands.iter().map(|x| x.id).collect();
            prop_assert!(s.is_subset(&ids));
            let votes: u64 = c.cands.iter().filter(|x| s.contains(&x.id)).map(|x| u64::from(x.votes)).sum();
            prop_assert!(q.is_quorate(votes, true));
        }
    }

    /// Never two disjoint quorate survivor sets: whatever two views of the
    /// cluster (two partitions' worth of candidates and reachability) the
    /// arbiter decides on, if the verdicts are disjoint at most one is
    /// quorate once the arbiter's votes go to one side only.
    #[test]
    fn never_two_disjoint_quorate_sets(a in case(10), b_mask in any::<u16>(), b_edges in any::<u64>()) {
        let q = quorum(&a);
        let n = a.all_votes.len() as u32;
        // A second view over the same cluster: other candidates, other edges.
        let b_cands: Vec<Candidate> = (1..=n).filter(|i| b_mask & (1 << (i - 1)) != 0).map(|i| Candidate {
            id: i, votes: a.all_votes[(i - 1) as usize], priority: 0, heuristics: 0 }).collect();
        let mut eb = BTreeSet::new();
        let mut k = 0;
        for x in 1..=n { for y in x + 1..=n { if b_edges & (1 << (k % 64)) != 0 { eb.insert((x, y)); } k += 1; } }
        let va = decide(&a.cands, &a.edges, &q, a.tie);
        let vb = decide(&b_cands, &eb, &q, a.tie);
        if let (Verdict::Survivors(sa), Verdict::Survivors(sb)) = (va, vb)
            && sa.is_disjoint(&sb) {
                let votes = |s: &BTreeSet<NodeId>| s.iter().map(|&i| u64::from(a.all_votes[(i - 1) as usize])).sum::<u64>();
                // The arbiter backs one of them; the other stands alone.
                prop_assert!(!(q.is_quorate(votes(&sa), true) && q.is_quorate(votes(&sb), false)));
                prop_assert!(!(q.is_quorate(votes(&sa), false) && q.is_quorate(votes(&sb), true)));
            }
    }

    /// The arithmetic itself: no two disjoint vote counts are both quorate
    /// when only one holds the arbiter's votes.
    #[test]
    fn quorum_arithmetic_excludes_disjoint_majorities((total, a, b) in (1u64..200).prop_flat_map(|t| (Just(t), 0..=t)).prop_flat_map(|(t, a)| (Just(t), Just(a), 0..=t - a)), lms in any::<bool>()) {
        let mode = if lms { QuorumMode::LastManStanding } else { QuorumMode::TieBreaker };
        let q = Quorum::new(mode, total);
        prop_assert!(!(q.is_quorate(a, true) && q.is_quorate(b, false)));
        prop_assert!(!(q.is_quorate(a, false) && q.is_quorate(b, false)));
    }
}
