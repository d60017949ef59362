//! What the core's scenario tests share: a cluster spec, and `H`, a core
//! driven by hand with its store and clock.

use super::*;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` nodes of one vote each, `levels` fence levels each, default timing.
pub(super) fn spec_levels(n: u32, mode: QuorumMode, levels: usize) -> ClusterSpec {
    ClusterSpec {
        name: "t".into(),
        nodes: (1..=n)
            .map(|id| {
                (
                    id,
                    NodeSpec {
                        votes: 1,
                        priority: 0,
                        fence_levels: levels,
                        watchdog_level: None,
                    },
                )
            })
            .collect(),
        quorum_mode: mode,
        tie_breaker: TieBreaker::LowestNodeId,
        timing: Timing::default(),
        storm_limit: ClusterSpec::default_storm_limit(n as usize),
        groups: Vec::new(),
    }
}

/// A first start with `mutant` planted (see `H::with`).
pub(super) fn h_with(spec: ClusterSpec, mutant: Option<Mutant>) -> H {
    H::with(spec, Persisted::default(), mutant)
}

/// A small deterministic generator for the explorations.
pub(super) struct Lcg(pub(super) u64);
impl Lcg {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Three nodes, LMS, one fence level, on machines with boots 0xb1, 0xb2,
/// 0xb3 (agent instance = node id), all reaching each other for 800 ms.
pub(super) fn three_with_boots(mutant: Option<Mutant>) -> H {
    let mut h = H::with(
        spec_levels(3, QuorumMode::LastManStanding, 1),
        Persisted::default(),
        mutant,
    );
    for id in 1..=3 {
        h.boot.insert(id, 0xb0 + u64::from(id));
        h.connect(id, u64::from(id), u64::from(id));
    }
    h.run(ms(800), &ALL3);
    h
}

/// Nodes 1 and 2 reaching each other (node 3 silent).
pub(super) const TWO: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];

/// Run nodes 1, 2 only until node 3's fence starts.
pub(super) fn until_fence_of_3(h: &mut H) {
    for _ in 0..800 {
        if h.fence_of(3).is_some() {
            return;
        }
        h.run(ms(10), &TWO);
    }
    panic!("node 3 was never fenced");
}

/// Did the core raise the alive-after-off alert for `node`?
pub(super) fn alerted(h: &H, node: NodeId) -> bool {
    h.notices()
        .iter()
        .any(|n| matches!(n, Notice::AliveAfterOff { node: m, .. } if *m == node))
}

/// Three nodes that all reach each other.
pub(super) const ALL3: [(NodeId, &[NodeId]); 3] = [(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])];

/// A core driven by hand: 10 ms ticks, heartbeats every 100 ms from the
/// nodes listed, each on session `id` (unless re-connected). It folds every `Persist` into `store` (what a
/// restarted core would read), can restart the core from it, and keeps the
/// offset between the arbiter's clock and real time (`jump`), so that a
/// forward step of the arbiter's clock can be modelled.
pub(super) struct H {
    pub(super) spec: ClusterSpec,
    pub(super) core: ArbiterCore,
    /// The arbiter's (monotonic) clock.
    pub(super) now: Duration,
    /// How far the arbiter's clock has jumped ahead of real time.
    pub(super) jump: Duration,
    pub(super) seq: BTreeMap<NodeId, u64>,
    pub(super) session: BTreeMap<NodeId, u64>,
    /// Epoch each node reports (default: the core's).
    pub(super) report_epoch: BTreeMap<NodeId, u64>,
    pub(super) store: Persisted,
    pub(super) log: Vec<(Duration, Action)>,
    /// How much of `log` `take` has handed out.
    taken: usize,
    /// Heuristics score each node reports (default 0).
    pub(super) heur: BTreeMap<NodeId, u32>,
    /// The boot each node's agent reports in its Hello (default 0: not
    /// told, so a new instance is a reboot).
    pub(super) boot: BTreeMap<NodeId, u64>,
    /// The planted bug, kept across `restart`.
    mutant: Option<Mutant>,
    /// The resource group states each node reports (default: none running);
    /// every heartbeat also reports the ack of the one before applied.
    pub(super) group_states: BTreeMap<NodeId, Vec<(String, RunState)>>,
    /// Every heartbeat reports the ack of the one before received
    /// (`acked_seq`), but from these nodes: agents that never tell.
    pub(super) acks_untold: BTreeSet<NodeId>,
}

impl H {
    /// A first start: every configured node connects at once.
    pub(super) fn new(spec: ClusterSpec) -> Self {
        let ids: Vec<NodeId> = spec.nodes.keys().copied().collect();
        Self::boot(spec, Persisted::default(), &ids)
    }

    /// A core built at time 0 from `persisted`; the nodes in `connect`
    /// open session `id` with instance `id`.
    pub(super) fn boot(spec: ClusterSpec, persisted: Persisted, connect: &[NodeId]) -> Self {
        let mut h = Self::bare(spec, persisted, None);
        for &id in connect {
            h.connect(id, u64::from(id), u64::from(id));
        }
        h
    }

    /// A core built at time 0 from `persisted`, with `mutant` planted;
    /// every configured node opens session `id` with instance `id`,
    /// reporting no epoch yet.
    pub(super) fn with(spec: ClusterSpec, persisted: Persisted, mutant: Option<Mutant>) -> Self {
        let mut h = Self::bare(spec, persisted, mutant);
        let ids: Vec<NodeId> = h.spec.nodes.keys().copied().collect();
        for id in ids {
            h.session.insert(id, u64::from(id));
            h.seq.insert(id, 0);
            h.step(Event::Connected {
                node: id,
                session: u64::from(id),
                known_epoch: 0,
                instance: u64::from(id),
                boot: 0,
            });
        }
        h
    }

    /// A core built at time 0 from `persisted`, with `mutant` planted;
    /// no node connected yet.
    pub(super) fn with_mutant(
        spec: ClusterSpec,
        persisted: Persisted,
        mutant: Option<Mutant>,
    ) -> Self {
        Self::bare(spec, persisted, mutant)
    }

    fn bare(spec: ClusterSpec, persisted: Persisted, mutant: Option<Mutant>) -> Self {
        let core =
            ArbiterCore::with_mutant(spec.clone(), persisted.clone(), Duration::ZERO, mutant);
        H {
            spec,
            core,
            now: Duration::ZERO,
            jump: Duration::ZERO,
            seq: BTreeMap::new(),
            session: BTreeMap::new(),
            report_epoch: BTreeMap::new(),
            store: persisted,
            log: Vec::new(),
            taken: 0,
            heur: BTreeMap::new(),
            boot: BTreeMap::new(),
            mutant,
            group_states: BTreeMap::new(),
            acks_untold: BTreeSet::new(),
        }
    }

    /// The actions logged since the last `take`.
    pub(super) fn take(&mut self) -> Vec<Action> {
        let new = self.log[self.taken..]
            .iter()
            .map(|(_, a)| a.clone())
            .collect();
        self.taken = self.log.len();
        new
    }

    pub(super) fn step(&mut self, ev: Event) -> Vec<Action> {
        let out = self.core.step(self.now, ev);
        for a in &out {
            if let Action::Persist(d) = a {
                self.store.apply(d);
            }
        }
        self.log.extend(out.iter().cloned().map(|a| (self.now, a)));
        out
    }

    pub(super) fn epoch_of(&self, id: NodeId) -> u64 {
        self.report_epoch
            .get(&id)
            .copied()
            .unwrap_or(self.core.epoch())
    }

    pub(super) fn heartbeat(&mut self, id: NodeId, reach: &[NodeId]) -> Vec<Action> {
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
            known_epoch: self.epoch_of(id),
            applied_seq: seq - 1,
            groups: self.group_states.get(&id).cloned().unwrap_or_default(),
            acked_seq: if self.acks_untold.contains(&id) {
                0
            } else {
                seq - 1
            },
            ridden: std::time::Duration::ZERO,
        };
        self.step(ev)
    }

    pub(super) fn connect(&mut self, id: NodeId, session: u64, instance: u64) -> Vec<Action> {
        self.session.insert(id, session);
        self.seq.insert(id, 0);
        let known_epoch = self.epoch_of(id);
        self.step(Event::Connected {
            node: id,
            session,
            known_epoch,
            instance,
            boot: self.boot.get(&id).copied().unwrap_or(0),
        })
    }

    /// The arbiter process restarts from what its store holds; the nodes in
    /// `connect` reconnect at once (new session, same agent instance).
    pub(super) fn restart(&mut self, connect: &[NodeId]) {
        self.core =
            ArbiterCore::with_mutant(self.spec.clone(), self.store.clone(), self.now, self.mutant);
        for &id in connect {
            let s = self.session[&id] + 1000;
            self.connect(id, s, u64::from(id));
        }
    }

    pub(super) fn run(&mut self, dur: Duration, reach: &[(NodeId, &[NodeId])]) {
        let end = self.now + dur;
        while self.now < end {
            self.now += ms(10);
            if self.now.as_millis().is_multiple_of(100) {
                for &(id, r) in reach {
                    self.heartbeat(id, r);
                }
            }
            self.step(Event::Tick);
        }
    }

    pub(super) fn fence_of(&self, node: NodeId) -> Option<(u64, u64)> {
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

    /// Arbiter times and nodes of every first-level `Fence`.
    pub(super) fn fences(&self) -> Vec<(Duration, NodeId)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Fence { node, level: 0, .. } => Some((*t, *node)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn confirm_off(&mut self, node: NodeId) -> Vec<Action> {
        self.level_done(node, LevelOutcome::ConfirmedOff)
    }

    /// The shell reports `outcome` for the last fence level ordered for
    /// `node` (reported as level 0: the core goes by the attempt).
    pub(super) fn level_done(&mut self, node: NodeId, outcome: LevelOutcome) -> Vec<Action> {
        let (intent, attempt) = self.fence_of(node).expect("a fence of the node");
        self.step(Event::FenceFinished {
            node,
            intent,
            level: 0,
            attempt,
            outcome,
        })
    }

    /// Arbiter times of the acks that granted `node` a lease.
    pub(super) fn grants(&self, node: NodeId) -> Vec<Duration> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Ack {
                    node: n,
                    lease: Some(_),
                    ..
                } if *n == node => Some(*t),
                _ => None,
            })
            .collect()
    }

    pub(super) fn announces_gone(&self, node: NodeId) -> Vec<Duration> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Announce { gone, .. } if gone.contains(&node) => Some(*t),
                _ => None,
            })
            .collect()
    }

    pub(super) fn notices(&self) -> Vec<&Notice> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Notice(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

/// Drive `h` until `until` in 10 ms ticks: node `n` heartbeats when
/// `now % 100 == phase[n]`, reporting `reach(n, now)` (`None`: silent).
/// (The review tests' clock: report phases spread as real agents' are.)
pub(super) fn drive(
    h: &mut H,
    until: Duration,
    phase: &[(NodeId, u64)],
    reach: &dyn Fn(NodeId, Duration) -> Option<Vec<NodeId>>,
) {
    while h.now < until {
        h.now += ms(10);
        let t = h.now.as_millis() as u64;
        for &(n, p) in phase {
            if t % 100 == p
                && let Some(r) = reach(n, h.now)
            {
                h.heartbeat(n, &r);
            }
        }
        h.step(Event::Tick);
    }
}

/// Nodes `1..=k` but `n` and `drop`: what `n` reports reaching.
pub(super) fn all_but(n: NodeId, k: u32, drop: &[NodeId]) -> Vec<NodeId> {
    (1..=k).filter(|&m| m != n && !drop.contains(&m)).collect()
}

/// The fences started, as (milliseconds, node).
pub(super) fn fenced_nodes(h: &H) -> Vec<(u128, NodeId)> {
    h.fences()
        .into_iter()
        .map(|(t, n)| (t.as_millis(), n))
        .collect()
}

/// For each start time (ms) in `starts`, the scenario `run` builds; those
/// whose fences hit a node other than `cut`, with the fences (a window
/// of timings in which a healthy node is fenced).
pub(super) fn others_fenced(
    starts: impl Iterator<Item = u64>,
    cut: NodeId,
    run: impl Fn(u64) -> H,
) -> Vec<(u64, Vec<(u128, NodeId)>)> {
    starts
        .map(|t| (t, fenced_nodes(&run(t))))
        .filter(|(_, f)| f.iter().any(|&(_, n)| n != cut))
        .collect()
}

/// Print the actions (acks left out) between `from` and `to` ms: a failing
/// scenario's trace.
pub(super) fn dump(h: &H, from: u64, to: u64) {
    for (t, a) in &h.log {
        if *t >= ms(from) && *t <= ms(to) && !matches!(a, Action::Ack { .. }) {
            eprintln!("{} {a:?}", t.as_millis());
        }
    }
}

/// The operator of the controls' tests, as the admin service names one.
pub(super) const BY: &str = "alice (admin, from 127.0.0.1:5000)";

/// One operator control, as `BY`.
pub(super) fn control(h: &mut H, c: Control) -> Vec<Action> {
    h.step(Event::Operator {
        by: BY.into(),
        control: c,
    })
}

/// `fencectl fence NODE --reason "disk controller errors"`.
pub(super) fn fence(h: &mut H, node: NodeId) -> Vec<Action> {
    control(
        h,
        Control::Fence {
            node,
            reason: "disk controller errors".into(),
        },
    )
}

/// `fencectl maintenance on|off [--node NODE]`.
pub(super) fn maintenance(h: &mut H, node: Option<NodeId>, on: bool) -> Vec<Action> {
    control(h, Control::Maintenance { node, on })
}
