//! Review of the issue-8 core (commit c113109): scenario tests that show
//! where the core breaks DESIGN.md. Each test is expected to FAIL against
//! the core as reviewed; see the comment above each for the scenario, the
//! rule it breaks and a suggested fix.
//!
//! Run: `cargo test --release -p arbiter --lib core::review_tests`

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn spec(n: u32, mode: QuorumMode) -> ClusterSpec {
    ClusterSpec {
        name: "review".into(),
        nodes: (1..=n)
            .map(|id| {
                (
                    id,
                    NodeSpec {
                        votes: 1,
                        priority: 0,
                        fence_levels: 1,
                    },
                )
            })
            .collect(),
        quorum_mode: mode,
        tie_breaker: TieBreaker::LowestNodeId,
        timing: Timing::default(),
        storm_limit: ClusterSpec::default_storm_limit(n as usize),
    }
}

/// Like `tests::Harness`: 10 ms ticks, heartbeats every 100 ms from the
/// nodes listed, each on session `id` (unless re-connected by hand).
struct H {
    core: ArbiterCore,
    now: Duration,
    seq: BTreeMap<NodeId, u64>,
    session: BTreeMap<NodeId, u64>,
    heur: BTreeMap<NodeId, u32>,
    /// Epoch each node reports (default: the core's).
    report_epoch: BTreeMap<NodeId, u64>,
    log: Vec<(Duration, Action)>,
}

impl H {
    fn new(spec: ClusterSpec, persisted: Persisted) -> Self {
        let mut core = ArbiterCore::new(spec, persisted, Duration::ZERO);
        let ids: Vec<NodeId> = core.spec().nodes.keys().copied().collect();
        let mut log = Vec::new();
        for &id in &ids {
            for a in core.step(
                Duration::ZERO,
                Event::Connected {
                    node: id,
                    session: u64::from(id),
                    known_epoch: 0,
                    instance: u64::from(id),
                },
            ) {
                log.push((Duration::ZERO, a));
            }
        }
        H {
            core,
            now: Duration::ZERO,
            seq: BTreeMap::new(),
            session: ids.iter().map(|&i| (i, u64::from(i))).collect(),
            heur: BTreeMap::new(),
            report_epoch: BTreeMap::new(),
            log,
        }
    }

    fn step(&mut self, ev: Event) -> Vec<Action> {
        let out = self.core.step(self.now, ev);
        self.log.extend(out.iter().cloned().map(|a| (self.now, a)));
        out
    }

    fn heartbeat(&mut self, id: NodeId, reach: &[NodeId]) -> Vec<Action> {
        let seq = self.seq.entry(id).or_default();
        *seq += 1;
        let seq = *seq;
        let ev = Event::Heartbeat {
            node: id,
            session: self.session[&id],
            seq,
            sent_at_us: self.now.as_micros() as u64,
            reachable: reach.to_vec(),
            heuristics: self.heur.get(&id).copied().unwrap_or(0),
            known_epoch: self
                .report_epoch
                .get(&id)
                .copied()
                .unwrap_or(self.core.epoch()),
        };
        self.step(ev)
    }

    fn connect(&mut self, id: NodeId, session: u64, instance: u64) -> Vec<Action> {
        self.session.insert(id, session);
        self.seq.insert(id, 0);
        let known_epoch = self.core.epoch();
        self.step(Event::Connected {
            node: id,
            session,
            known_epoch,
            instance,
        })
    }

    fn run(&mut self, dur: Duration, reach: &[(NodeId, &[NodeId])]) {
        let end = self.now + dur;
        while self.now < end {
            self.now += ms(10);
            if self.now.as_millis() % 100 == 0 {
                for &(id, r) in reach {
                    self.heartbeat(id, r);
                }
            }
            self.step(Event::Tick);
        }
    }

    fn fences(&self) -> Vec<(Duration, NodeId)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Fence { node, level: 0, .. } => Some((*t, *node)),
                _ => None,
            })
            .collect()
    }

    fn fence_of(&self, node: NodeId) -> Option<(u64, u64)> {
        self.log.iter().rev().find_map(|(_, a)| match a {
            Action::Fence {
                node: n,
                intent,
                attempt,
                ..
            } if *n == node => Some((*intent, *attempt)),
            _ => None,
        })
    }

    fn notices(&self) -> Vec<&Notice> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Notice(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

const ALL3: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])];

/// R1. A storm hold gives no re-grace (DESIGN "Availability": "when it has
/// heard from less than a quorate set (or held a storm), it decides nothing
/// until every node has had `lost_after` plus a reconnect allowance to come
/// back"; issue 8 says the same).
///
/// 3 nodes, last-man-standing (storm limit 1). The arbiter's own network
/// fault cuts it from nodes 2 and 3 for 2 s; node 1 (say, on the arbiter's
/// switch) stays in contact, so contact is never lost and nothing is
/// pending. The arbiter rightly holds a storm (leaving {2,3} > 1). At the
/// heal node 2 is back first; node 3 reconnects 300 ms later. The moment
/// node 2 is back, leaving = {3} is within the storm limit and healthy node
/// 3 is fenced: the "first back wins, the slower one is shot" bug of issue 8,
/// through the storm path instead of the contact path.
///
/// Fix: treat a storm hold like a loss of contact: while a storm is held
/// (and when it clears) restart the per-member allowance, e.g. keep a
/// `regrace_since` set to `now` on every tick a storm is held and use
/// `max(contact_since, regrace_since)` as `since` in `pending()`.
#[test]
fn r1_storm_hold_then_staggered_heal_fences_nobody() {
    let mut h = H::new(spec(3, QuorumMode::LastManStanding), Persisted::default());
    h.run(ms(800), &ALL3);
    assert_eq!(h.core.epoch(), 1);
    // The arbiter hears only node 1 (which still reaches 2 and 3) for 2 s.
    h.run(ms(2000), &[(1, &[2, 3])]);
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::StormHold { .. })),
        "the arbiter holds a storm"
    );
    assert!(h.fences().is_empty());
    // Heal: node 2 back first, node 3 300 ms later.
    h.run(ms(300), &[(1, &[2, 3]), (2, &[1, 3])]);
    h.run(ms(1000), &ALL3);
    assert!(
        h.fences().is_empty(),
        "healthy node fenced after a storm hold: {:?}",
        h.fences()
    );
}

/// R2. One heartbeat with `known_epoch = u64::MAX` (a buggy or hostile
/// agent, a corrupted field) overflows `epoch_floor + 1`: a panic with
/// overflow checks (the cluster task dies, the arbiter exits), and in
/// release builds (no overflow checks) the epoch wraps to 0: the fencing
/// token goes back and every running agent refuses every later ack (their
/// epoch is higher), so the whole cluster loses its leases for good.
/// DESIGN "Security": hostile input gets a clear error and changes no state;
/// "the epoch never goes back".
///
/// Fix: checked arithmetic; refuse (and alert on) a reported epoch that
/// cannot be exceeded (e.g. `>= u64::MAX / 2`), never adopt it as floor.
#[test]
fn r2_a_reported_epoch_of_u64_max_neither_panics_nor_sends_the_epoch_back() {
    let mut h = H::new(spec(2, QuorumMode::LastManStanding), Persisted::default());
    let both: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];
    h.run(ms(800), &both);
    let before = h.core.epoch();
    assert!(before >= 1);
    h.report_epoch.insert(2, u64::MAX);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.run(ms(300), &both);
    }));
    assert!(r.is_ok(), "the core panicked on a reported epoch");
    assert!(
        h.core.epoch() >= before,
        "epoch went back from {before} to {}",
        h.core.epoch()
    );
}
