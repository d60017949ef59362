//! Two processes speaking as one node (a cloned VM or a copied
//! certificate: a duplicate identity): whatever order their sessions and
//! heartbeats come in, the arbiter never lets both hold a lease at once.

use super::test_support::*;
use super::*;
use proptest::prelude::*;

/// What one of the two processes does next, after `ms10` × 10 ms in which
/// the other two nodes keep heartbeating.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Opens a new session (process 0 is instance 1, process 1 instance 77).
    Connect(usize),
    /// Heartbeats on its session, reporting both peers reached.
    Heartbeat(usize),
    /// Heartbeats reporting no peer.
    Lonely(usize),
}

fn op() -> impl Strategy<Value = (Op, u64)> {
    (
        prop_oneof![
            1 => (0usize..2).prop_map(Op::Connect),
            6 => (0usize..2).prop_map(Op::Heartbeat),
            1 => (0usize..2).prop_map(Op::Lonely),
        ],
        0u64..15,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn two_processes_of_one_node_never_hold_leases_at_once(
        ops in proptest::collection::vec(op(), 20..300),
    ) {
        let peers: [(NodeId, &[NodeId]); 2] = [(2, &[1, 3]), (3, &[1, 2])];
        let mut h = H::new(spec_levels(3, QuorumMode::LastManStanding, 1));
        h.run(ms(1000), &ALL3);
        prop_assert!(!h.grants(1).is_empty(), "node 1 never got a lease");
        // Process 0 is the agent H started (session 1, instance 1).
        let instance = [1u64, 77];
        let mut session: [Option<u64>; 2] = [Some(1), None];
        let mut seq = [h.seq[&1], 0];
        let mut next_session = 100u64;
        // The end of the last lease each process was granted, in the
        // arbiter's clock from the grant (later than the agent's own end,
        // which counts from its send time).
        let lease = h.spec.timing.lease;
        let mut until = [h.now + lease, Duration::ZERO];
        for (op, ms10) in ops {
            h.run(ms(10 * ms10), &peers);
            let (p, out) = match op {
                Op::Connect(p) => {
                    next_session += 1;
                    session[p] = Some(next_session);
                    seq[p] = 0;
                    let known_epoch = h.core.epoch();
                    let out = h.step(Event::Connected {
                        node: 1,
                        session: next_session,
                        known_epoch,
                        instance: instance[p],
                        boot: 0,
                    });
                    (p, out)
                }
                Op::Heartbeat(p) | Op::Lonely(p) => {
                    let Some(s) = session[p] else { continue };
                    seq[p] += 1;
                    let reachable = if matches!(op, Op::Lonely(_)) { vec![] } else { vec![2, 3] };
                    let out = h.step(Event::Heartbeat {
                        node: 1,
                        session: s,
                        seq: seq[p],
                        sent_at_us: h.now.as_micros() as u64,
                        reachable,
                        heuristics: 0,
                        known_epoch: h.core.epoch(), applied_seq: 0, groups: Vec::new(),
                        acked_seq: 0,
                        ridden: std::time::Duration::ZERO,
                    });
                    (p, out)
                }
            };
            for a in out {
                if let Action::Ack { node: 1, session: s, lease: Some(l), .. } = a {
                    prop_assert_eq!(Some(s), session[p], "an ack on a session not the sender's");
                    let other = 1 - p;
                    prop_assert!(
                        until[other] <= h.now,
                        "process {} granted a lease at {:?} while process {}'s runs until {:?}",
                        p, h.now, other, until[other]
                    );
                    until[p] = h.now + l;
                }
            }
        }
    }
}
