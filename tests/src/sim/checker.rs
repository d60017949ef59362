//! The safety checker: DESIGN.md's invariants, checked after every event.
//!
//! - **lease exclusivity**: any two nodes holding a lease at the same real
//!   time agree: the holder of the older epoch is a survivor in the newer
//!   grant (no node runs on a lease from before it was declared gone);
//! - **gone only after a confirmed fence**: when survivors are told a node is
//!   gone (in an announcement or in any ack), the power device has that node
//!   off; or, counted fenced by the watchdog rule, its watchdog reset it or
//!   it stands at rest: running no group, holding no lease;
//! - **a watchdog resets only a faulty node**: a machine's watchdog runs
//!   out only where a fault of the node's own (agent frozen or dead, a stop
//!   hung or failed) was active within its timeout;
//! - **fence only what must be fenced** (from the simulation's ground
//!   truth, judged when the arbiter decides): a running node may be
//!   switched off only when a fault of its own explains it, within `window`:
//!   the node frozen, crashed or restarted, or its link to the arbiter cut
//!   or lossy *while a quorate set of other nodes kept contact with the
//!   arbiter*; or when the links between nodes, as they stood, leave it out
//!   of some clique with the most votes (`peer_graph`: each graph the
//!   arbiter could have seen, the links down for about three probe
//!   intervals, lasting at least half of `settle`; the nodes with faults of
//!   their own counted in or out). So a broken link explains fencing
//!   either end, but a node cut off from every peer never explains fencing
//!   a peer it lost. The arbiter's own crash, isolation, stall or clock
//!   jump explains nothing;
//! - **persist before acting**: no fence without its open intent in the
//!   store; no ack or announcement with an epoch above the stored one;
//! - **the fencing token never goes back**: no lease under an epoch below
//!   one already granted;
//! - **no lease to a node being fenced**: from its first `Fence` until
//!   that node starts again;
//! - **a node alive after off stays out**: when a device wired to the wrong
//!   outlet confirms a node off that still runs, no agent in that boot (the
//!   same process, or one restarted without a reboot) gets a lease until an
//!   operator clears the alert; survivors may be told it is
//!   gone only once it holds no lease (the lease, not the power, is what
//!   keeps them apart then);
//! - **start-up grace**: a (re)started arbiter grants no lease before every
//!   lease of its earlier life has expired;
//! - **one runner per group** (checked by the simulation itself, `Sim::group_step`,
//!   on its ground truth of what runs where): a resource group runs on a
//!   node from the moment its start begins until a stop of it succeeds or
//!   the machine is switched off (an agent crash or freeze stops nothing);
//!   no group starts on a node while it runs on another, unless that other
//!   is a node recorded off that still runs (a device that lied: the
//!   alert, and the rule above, cover it);
//! - **durability**: epochs only grow across restarts; every fence intent is
//!   eventually confirmed (none lost across a restart);
//! - **ride-out** (leases an agent extends on the whole mesh while no
//!   arbiter grants one, `Timing::ride_out`): *bounded*, no lease runs
//!   past its grant plus `ride_out`; *on a whole mesh*, no lease is ridden
//!   out while a link between two nodes of its survivor set has been down
//!   (or one of them stopped) for longer than a lease and the probe window
//!   (`ride_window`); *without an arbiter*, no lease is ridden out while
//!   another node of its survivor set has been taking granted leases every
//!   interval for a lease and more: that node hears an arbiter, so the
//!   rider is cut off, not the arbiter gone; *not through a fence*, no
//!   lease is ridden out while another node of its survivor set has known
//!   of a fence in progress (its last acknowledgement named one) for a
//!   lease and more. (Two holders through a ridden
//!   lease are caught by lease exclusivity, one holder per node and the
//!   group truth, which read the lease as the agent holds it.)
//! - **liveness** (at the end, after a fault-free phase): every node runs,
//!   holding a lease under the same epoch with every node a survivor.

use std::collections::{BTreeMap, BTreeSet};

use arbiter::core::{ClusterSpec, Delta, NodeId, Persisted};

use super::peer_graph::{self, Broken, PeerGraph};
use super::{Agent, AgentState};

type Check = Result<(), (&'static str, String)>;

pub struct Checker {
    /// Per node: the last time a fault of its own was active.
    node_fault: BTreeMap<NodeId, u64>,
    /// The links between nodes over time.
    peers: PeerGraph,
    /// Nodes whose fence the arbiter started (cleared when they start again).
    fencing: BTreeSet<NodeId>,
    /// Per fence intent: why it was not justified when it started (`None`:
    /// it was). Judged when the arbiter decides, used when the device acts.
    judged: BTreeMap<(u64, NodeId, u64), Option<String>>,
    /// Store generation (intent ids start again after a store loss).
    pub generation: u64,
    window_us: u64,
    lease_max_us: u64,
    intents: BTreeMap<u64, NodeId>,
    /// Per node: last lease grant sent, last power-off by the device.
    last_grant: BTreeMap<NodeId, u64>,
    last_off: BTreeMap<NodeId, u64>,
    confirmed: BTreeSet<u64>,
    /// Nodes the arbiter recorded off while they ran (a wrong outlet): the
    /// agent instance that ran then, and whether an operator cleared the
    /// alert. Kept until the node is switched off or gets a lease again.
    /// (`None`: an instance the arbiter never heard, restarted just
    /// before the confirmation; it cannot tell it from a reboot.)
    off_but_alive: BTreeMap<NodeId, (Option<u64>, bool)>,
    /// Fences the availability rule could not judge (more than
    /// `MAX_IN_DOUBT` nodes in doubt): its blind spot, counted.
    pub unjudged: u32,
    /// Nodes the arbiter counted fenced by the watchdog rule (cleared when
    /// switched off or reset).
    by_watchdog: BTreeSet<NodeId>,
    /// Per link between two nodes (lower id first): down (either way, or
    /// an end stopped) without a break since this instant.
    down_since: BTreeMap<(NodeId, NodeId), u64>,
    ride_out_us: u64,
    /// How long a link down (or a peer granted leases) keeps every lease
    /// of its survivor set from being ridden out, at most.
    ride_window_us: u64,
    /// Taking granted leases at most this far apart is "hearing an
    /// arbiter" (agents say so for one and a half intervals; clocks
    /// drift by 1%).
    contact_gap_us: u64,
    lease_us: u64,
    /// Per node: its agent has known of a fence in progress, without a
    /// break, since this instant.
    fence_known_since: BTreeMap<NodeId, u64>,
}

/// Nodes with faults of their own the availability rule counts both in and
/// out (2^n graphs per fence).
const MAX_IN_DOUBT: usize = 8;

impl Checker {
    pub fn new(spec: &ClusterSpec) -> Self {
        let t = spec.timing;
        let window = t.lost_after + t.settle + t.heartbeat_interval * 6;
        Checker {
            node_fault: BTreeMap::new(),
            peers: PeerGraph::new(
                // Agents count a peer reached if heard within three probe
                // intervals; the last probe came up to one interval before
                // the cut, or (lost messages) up to two.
                [1, 2, 3, 4]
                    .map(|k| (t.heartbeat_interval * k).as_micros() as u64)
                    .to_vec(),
                // An agent probes once an interval: a link up for less may
                // carry no probe.
                t.heartbeat_interval.as_micros() as u64,
                (t.settle / 2).as_micros() as u64,
            ),
            fencing: BTreeSet::new(),
            judged: BTreeMap::new(),
            generation: 0,
            window_us: window.as_micros() as u64,
            lease_max_us: t.lease_max().as_micros() as u64,
            intents: BTreeMap::new(),
            last_grant: BTreeMap::new(),
            last_off: BTreeMap::new(),
            confirmed: BTreeSet::new(),
            off_but_alive: BTreeMap::new(),
            unjudged: 0,
            by_watchdog: BTreeSet::new(),
            down_since: BTreeMap::new(),
            ride_out_us: t.ride_out.as_micros() as u64,
            ride_window_us: (t.lease_max() + t.lease / 50 + t.heartbeat_interval * 6).as_micros()
                as u64,
            contact_gap_us: (t.heartbeat_interval * 7 / 5).as_micros() as u64,
            lease_us: (t.lease + t.lease / 50).as_micros() as u64,
            fence_known_since: BTreeMap::new(),
        }
    }

    /// A fault of `node` itself is active at `now`.
    pub fn node_fault(&mut self, now_us: u64, node: NodeId) {
        self.node_fault.insert(node, now_us);
    }

    /// The links between nodes down (either way) at `now`.
    pub fn peer_links(&mut self, now_us: u64, broken: Broken) {
        self.down_since.retain(|l, _| broken.contains(l));
        for &l in &broken {
            self.down_since.entry(l).or_insert(now_us);
        }
        self.peers.observe(now_us, broken, self.window_us);
    }

    /// The ride-out rules (see the module's documentation) for the lease
    /// `a`, node `id`'s, at `now`.
    fn ride_out(
        &self,
        now_us: u64,
        id: NodeId,
        a: &Agent,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        let local = a.local(now_us);
        let Some(l) = a.keeper.lease(local) else {
            return Ok(());
        };
        let over = l
            .until
            .saturating_sub(l.granted_until)
            .saturating_sub(std::time::Duration::from_micros(self.ride_out_us));
        if !over.is_zero() {
            return Err((
                "ride-out bounded",
                format!(
                    "node {id} holds a lease {over:?} past its grant plus ride_out ({}us)",
                    self.ride_out_us
                ),
            ));
        }
        if l.ridden().is_zero() {
            return Ok(());
        }
        let since = now_us.saturating_sub(self.ride_window_us);
        for (&(p, q), &down) in &self.down_since {
            if down < since && l.survivors.contains(&p) && l.survivors.contains(&q) {
                return Err((
                    "ride-out on a whole mesh",
                    format!(
                        "node {id} rides its lease out ({:?} past its grant, survivors {:?}) although the link {p}-{q} has been down since t={:.3}s",
                        l.ridden(),
                        l.survivors,
                        down as f64 / 1e6
                    ),
                ));
            }
        }
        let before = now_us.saturating_sub(self.lease_us + self.contact_gap_us);
        for (&p, &t) in &self.fence_known_since {
            if p != id && t < before && l.survivors.contains(&p) {
                return Err((
                    "ride-out not through a fence",
                    format!(
                        "node {id} rides its lease out ({:?} past its grant) while node {p} has known of a fence in progress since t={:.3}s",
                        l.ridden(),
                        t as f64 / 1e6
                    ),
                ));
            }
        }
        let from = now_us.saturating_sub(self.lease_us + self.contact_gap_us);
        for (&p, b) in agents {
            if p == id || !l.survivors.contains(&p) || b.state != AgentState::Running {
                continue;
            }
            let g = &b.grants_taken;
            let covered = g.iter().any(|&t| t <= from)
                && g.back()
                    .is_some_and(|&t| now_us - t.min(now_us) < self.contact_gap_us)
                && g.iter()
                    .zip(g.iter().skip(1))
                    .filter(|&(_, &y)| y > from)
                    .all(|(&x, &y)| y - x < self.contact_gap_us);
            if covered {
                return Err((
                    "ride-out without an arbiter",
                    format!(
                        "node {id} rides its lease out ({:?} past its grant) while node {p} took a granted lease at least every {}us since t={:.3}s",
                        l.ridden(),
                        self.contact_gap_us,
                        from as f64 / 1e6
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The arbiter ran `Fence` for `node`.
    pub fn fence_started(
        &mut self,
        now_us: u64,
        node: NodeId,
        store: &Persisted,
        intent: u64,
        agents: &BTreeMap<NodeId, Agent>,
        spec: &ClusterSpec,
    ) -> Check {
        let key = (self.generation, node, intent);
        if !self.judged.contains_key(&key) {
            // (Only with the fence-before-intent mutant.)
            let verdict = self.unexplained(now_us, node, agents, spec, &store.backed);
            self.judged.insert(key, verdict);
        }
        self.fencing.insert(node);
        if store.open_intents.get(&node) != Some(&intent) {
            return Err((
                "persist before acting",
                format!(
                    "fence of node {node} (intent {intent}) started without its intent in the store ({:?})",
                    store.open_intents
                ),
            ));
        }
        Ok(())
    }

    /// The arbiter recorded `node` off while it runs in boot `boot` (`None`:
    /// the arbiter cannot know that boot).
    pub fn off_but_alive(&mut self, node: NodeId, boot: Option<u64>) {
        // (The arbiter's record of this node is the watchdog rule's, not
        // this device's: a late result of the device counts for nothing.)
        if self.by_watchdog.contains(&node) {
            return;
        }
        self.off_but_alive.insert(node, (boot, false));
        if boot.is_none() {
            // Its fence is over, and nothing can tell it never went off.
            self.fencing.remove(&node);
        }
    }

    /// The arbiter did not take the result that would have recorded
    /// `node` off.
    pub fn not_recorded_off(&mut self, node: NodeId) {
        self.off_but_alive.remove(&node);
    }

    pub fn is_off_but_alive(&self, node: NodeId) -> bool {
        self.off_but_alive.contains_key(&node)
    }

    /// An operator cleared `node`'s alert: it may join again as it is.
    pub fn cleared(&mut self, node: NodeId) {
        if let Some((_, cleared)) = self.off_but_alive.get_mut(&node) {
            *cleared = true;
            self.fencing.remove(&node);
        }
    }

    /// `node`'s agent (re)started: a new life.
    pub fn started(&mut self, node: NodeId) {
        self.fencing.remove(&node);
    }

    /// The store was lost: its intents went with it.
    pub fn store_lost(&mut self) {
        self.intents.clear();
        self.fencing.clear();
        self.confirmed.clear();
        self.generation += 1;
        // Its off records went with it: nothing can tell those nodes ran.
        for (boot, _) in self.off_but_alive.values_mut() {
            *boot = None;
        }
    }

    /// An ack or announcement leaves the arbiter with this epoch.
    pub fn sends_epoch(&self, epoch: u64, store: &Persisted) -> Check {
        if epoch > store.epoch {
            return Err((
                "persist before acting",
                format!("epoch {epoch} sent while the store holds {}", store.epoch),
            ));
        }
        Ok(())
    }

    /// Leases held at once agree: two nodes' leases under one epoch name
    /// the same survivors, and a lease under an older epoch is held only by
    /// a survivor of the newer one. `clones` are second processes speaking
    /// as a node (a duplicate identity): they and the node's own agent
    /// never hold a lease at once.
    pub fn after_event(
        &mut self,
        now_us: u64,
        agents: &BTreeMap<NodeId, Agent>,
        clones: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        for (&id, c) in clones {
            let holds = |a: &Agent| {
                matches!(a.state, AgentState::Running | AgentState::Frozen)
                    && a.keeper.lease(a.local(now_us)).is_some()
            };
            if holds(c) && agents.get(&id).is_some_and(holds) {
                return Err((
                    "one holder per node",
                    format!(
                        "node {id}'s agent and a second process speaking as node {id} both hold a lease"
                    ),
                ));
            }
        }
        for (&id, a) in agents {
            let knows =
                a.state == AgentState::Running && a.keeper.own_report(a.local(now_us)).fence_known;
            if knows {
                self.fence_known_since.entry(id).or_insert(now_us);
            } else {
                self.fence_known_since.remove(&id);
            }
        }
        for (&id, a) in agents.iter().chain(clones).filter(|_| self.ride_out_us > 0) {
            if matches!(a.state, AgentState::Running | AgentState::Frozen) {
                self.ride_out(now_us, id, a, agents)?;
            }
        }
        let holders: Vec<(NodeId, u64, &BTreeSet<NodeId>)> = agents
            .iter()
            .chain(clones)
            .filter(|(_, a)| matches!(a.state, AgentState::Running | AgentState::Frozen))
            .filter_map(|(&id, a)| {
                a.keeper
                    .lease(a.local(now_us))
                    .map(|l| (id, l.epoch, &l.survivors))
            })
            .collect();
        for (i, &(a, ea, sa)) in holders.iter().enumerate() {
            for &(b, eb, sb) in &holders[i + 1..] {
                let ok = match ea.cmp(&eb) {
                    std::cmp::Ordering::Less => sb.contains(&a),
                    std::cmp::Ordering::Greater => sa.contains(&b),
                    std::cmp::Ordering::Equal => sa == sb,
                };
                if !ok {
                    return Err((
                        "lease exclusivity",
                        format!(
                            "node {a} holds a lease (epoch {ea}, survivors {sa:?}) while node {b} holds one (epoch {eb}, survivors {sb:?})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Why fencing `node` now is not explained by a fault of its own or of
    /// its links; `None` if it is. `backed` is the survivor set the store
    /// holds (the decision keeps the best clique of those first).
    fn unexplained(
        &mut self,
        now_us: u64,
        node: NodeId,
        agents: &BTreeMap<NodeId, Agent>,
        spec: &ClusterSpec,
        backed: &BTreeSet<NodeId>,
    ) -> Option<String> {
        if agents[&node].state != AgentState::Running || !spec.nodes.contains_key(&node) {
            return None;
        }
        let from = now_us.saturating_sub(self.window_us);
        let recent = |t: Option<&u64>| t.is_some_and(|&t| t >= from);
        if recent(self.node_fault.get(&node)) {
            return None;
        }
        // The nodes that could have been candidates: configured, running
        // or not yet noticed as stopped, not off, not being fenced. Those
        // with a fault of their own in the window may or may not have been.
        let eligible = |m: &NodeId| {
            *m == node
                || (spec.nodes.contains_key(m)
                    // (A machine its watchdog reset is down as a crashed
                    // one is: the arbiter may not know yet.)
                    && agents
                        .get(m)
                        .is_some_and(|a| a.state != AgentState::Off || a.own_fault)
                    && !self.fencing.contains(m))
        };
        let unsure: Vec<NodeId> = spec
            .nodes
            .keys()
            .copied()
            .filter(|m| {
                *m != node
                    && eligible(m)
                    && (recent(self.node_fault.get(m))
                        || self.off_but_alive.contains_key(m)
                        || agents[m].state != AgentState::Running)
            })
            .collect();
        if unsure.len() > MAX_IN_DOUBT {
            // Too many nodes in doubt to enumerate: no verdict (counted:
            // the blind spot is reported with the totals).
            self.unjudged += 1;
            return None;
        }
        let all: BTreeSet<NodeId> = spec.nodes.keys().copied().filter(eligible).collect();
        let incumbents: BTreeSet<NodeId> = all
            .iter()
            .copied()
            .filter(|m| *m == node || backed.contains(m))
            .collect();
        for base in [&incumbents, &all] {
            for mask in 0u32..1 << unsure.len() {
                let nodes: Vec<(NodeId, u64)> = base
                    .iter()
                    .copied()
                    .filter(|m| {
                        unsure
                            .iter()
                            .position(|u| u == m)
                            .is_none_or(|i| mask & (1 << i) == 0)
                    })
                    .map(|m| (m, u64::from(spec.nodes[&m].votes)))
                    .collect();
                if self.peers.left_out_steadily(from, now_us, &|broken| {
                    peer_graph::can_leave_out(&nodes, broken, node)
                }) {
                    return None;
                }
            }
        }
        let states = self.peers.steady_states(from, now_us);
        Some(format!(
            "no fault of its own within {} ms when its fence started (last own fault {:?}us), and it is in every clique with the most votes of each graph of the links as they stood: {states:?} (being fenced: {:?}, in doubt: {unsure:?})",
            self.window_us / 1000,
            self.node_fault.get(&node),
            self.fencing
        ))
    }

    /// The device is about to switch `node` off for `intent` (ordered under
    /// store `generation`).
    pub fn fenced(
        &mut self,
        node: NodeId,
        intent: u64,
        generation: u64,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        if agents[&node].state != AgentState::Running {
            return Ok(());
        }
        // Judged when the arbiter decided (or, at the latest, started it).
        let why = self
            .judged
            .get(&(generation, node, intent))
            .cloned()
            .flatten();
        match why {
            None => Ok(()),
            Some(why) => Err((
                "fence only what must be fenced",
                format!("healthy node {node} switched off (intent {intent}): {why}"),
            )),
        }
    }

    /// Survivors are being told these nodes are gone: each must have been
    /// switched off by the device since its last lease (it may be back on,
    /// rebooted, without a lease).
    pub fn announced(
        &mut self,
        now_us: u64,
        gone: &BTreeSet<NodeId>,
        agents: &BTreeMap<NodeId, Agent>,
        runners: &BTreeSet<NodeId>,
    ) -> Check {
        for n in gone {
            // Counted fenced by the watchdog rule and not reset: it must
            // stand at rest, running no group and holding no lease.
            if self.by_watchdog.contains(n) {
                let a = &agents[n];
                let holds = matches!(a.state, AgentState::Running | AgentState::Frozen)
                    && a.keeper.lease(a.local(now_us)).is_some();
                if holds || runners.contains(n) {
                    return Err((
                        "gone only after a confirmed fence",
                        format!(
                            "survivors told node {n} is gone (watchdog rule) while it {}",
                            if holds {
                                "holds a lease"
                            } else {
                                "still runs a resource group"
                            }
                        ),
                    ));
                }
                continue;
            }
            if self.off_but_alive.contains_key(n) {
                let a = &agents[n];
                let holds = matches!(a.state, AgentState::Running | AgentState::Frozen)
                    && a.keeper.lease(a.local(now_us)).is_some();
                if holds {
                    return Err((
                        "gone only after a confirmed fence",
                        format!(
                            "survivors told node {n} is gone while it runs (wrong outlet) and still holds a lease"
                        ),
                    ));
                }
                continue;
            }
            let off = self.last_off.get(n).copied();
            let grant = self.last_grant.get(n).copied().unwrap_or(0);
            if off.is_none_or(|off| off < grant) {
                return Err((
                    "gone only after a confirmed fence",
                    format!(
                        "survivors told node {n} is gone, but it was not switched off since its last lease (agent {:?}, last off {off:?}us, last grant {grant}us)",
                        agents[n].state
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The device switched `node` off, or its watchdog reset it.
    pub fn powered_off(&mut self, now_us: u64, node: NodeId) {
        self.last_off.insert(node, now_us);
        self.off_but_alive.remove(&node);
        self.by_watchdog.remove(&node);
    }

    /// The arbiter counted `node` fenced by the watchdog rule.
    /// Its fence is over: a node at rest that was not reset may rejoin
    /// (and get a lease) at the next epoch.
    pub fn counted_by_watchdog(&mut self, node: NodeId) {
        self.by_watchdog.insert(node);
        self.fencing.remove(&node);
        // (What a device said of it before counts for nothing: the
        // arbiter's record is the watchdog rule's.)
        self.off_but_alive.remove(&node);
    }

    /// `node`'s watchdog resets it: only a node with a fault of its own
    /// (its agent frozen or dead, a stop that hangs or failed) within the
    /// watchdog's timeout is ever reset. A reset of a node at rest or
    /// holding its lease shoots a healthy node.
    pub fn reset(&mut self, now_us: u64, node: NodeId, timeout: std::time::Duration) -> Check {
        let within = timeout.as_micros() as u64 + self.window_us;
        match self.node_fault.get(&node) {
            Some(&t) if now_us.saturating_sub(t) <= within => Ok(()),
            last => Err((
                "fence only what must be fenced",
                format!(
                    "healthy node {node} reset by its watchdog (its last fault of its own: {:?}us ago)",
                    last.map(|t| now_us - t)
                ),
            )),
        }
    }

    /// A delta is about to be persisted. A fence intent is judged here, when
    /// the arbiter decides (a resumed intent is fenced later, as decided).
    pub fn persisted(
        &mut self,
        now_us: u64,
        store: &Persisted,
        delta: &Delta,
        agents: &BTreeMap<NodeId, Agent>,
        spec: &ClusterSpec,
    ) -> Check {
        if let Delta::FenceIntent { intent, node, .. } = delta {
            let verdict = self.unexplained(now_us, *node, agents, spec, &store.backed);
            self.judged
                .insert((self.generation, *node, *intent), verdict);
        }
        match delta {
            Delta::Backed { epoch, .. } | Delta::EpochRaised { epoch } if *epoch <= store.epoch => {
                Err((
                    "epochs only grow",
                    format!("epoch {epoch} persisted after epoch {}", store.epoch),
                ))
            }
            Delta::FenceIntent { intent, node, .. } => {
                if self.intents.insert(*intent, *node).is_some() {
                    return Err((
                        "intent ids are unique",
                        format!("intent {intent} written twice"),
                    ));
                }
                Ok(())
            }
            Delta::FenceConfirmed { intent, node, .. } => {
                if self.intents.get(intent) != Some(node) {
                    return Err((
                        "confirmations match intents",
                        format!("intent {intent} for node {node} confirmed but never written"),
                    ));
                }
                self.confirmed.insert(*intent);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A lease is granted under `epoch`. The fencing token must not go
    /// back below an epoch a running agent knows (it reports it; only an
    /// epoch nobody alive remembers can be lost with the store).
    pub fn lease_granted(
        &mut self,
        now_us: u64,
        node: NodeId,
        started_us: u64,
        epoch: u64,
        agents: &BTreeMap<NodeId, Agent>,
        to_clone: bool,
    ) -> Check {
        // (A grant answering heartbeats queued while the arbiter stalled,
        // sent to a machine already off — its watchdog reset it — reaches
        // no process: nothing holds it.)
        if to_clone || agents.get(&node).is_none_or(|a| a.state != AgentState::Off) {
            self.last_grant.insert(node, now_us);
            self.by_watchdog.remove(&node);
        }
        // (A grant to a second process speaking as the node, a duplicate
        // identity, is checked against the node's own agent in
        // `after_event`; the node's alert, if any, is not about it.)
        if !to_clone && self.off_but_alive.get(&node) == Some(&(Some(agents[&node].boot), false)) {
            return Err((
                "a node alive after off stays out",
                format!(
                    "lease to node {node}, recorded off yet running, before its alert was cleared"
                ),
            ));
        }
        // Cleared, or a new boot: it is back.
        if !to_clone {
            self.off_but_alive.remove(&node);
        }
        // (To a second process speaking as the node: only while a fence of
        // the node runs; once it is confirmed off, the node's own agent is
        // down and the arbiter cannot tell the clone from a reboot.)
        let being_fenced = if to_clone {
            self.intents
                .iter()
                .any(|(i, &n)| n == node && !self.confirmed.contains(i))
        } else {
            self.fencing.contains(&node)
        };
        if being_fenced {
            return Err((
                "no lease to a node being fenced",
                format!("lease to node {node} while its fence runs"),
            ));
        }
        let known = agents
            .values()
            .filter(|a| a.state == AgentState::Running)
            .map(|a| a.keeper.epoch())
            .max()
            .unwrap_or(0);
        if epoch < known {
            return Err((
                "the fencing token never goes back",
                format!(
                    "lease to node {node} under epoch {epoch} while a running agent holds epoch {known}"
                ),
            ));
        }
        // Real time: the arbiter's own clock may run up to 1% fast.
        if now_us - started_us < self.lease_max_us * 99 / 100 {
            return Err((
                "start-up grace",
                format!(
                    "lease granted {} ms after the arbiter started",
                    (now_us - started_us) / 1000
                ),
            ));
        }
        Ok(())
    }

    /// At the end, with `configured` the nodes of the configuration in
    /// force: an open intent may remain only for a node removed from it
    /// (kept and reported, for an operator to settle).
    pub fn at_end(
        &mut self,
        now_us: u64,
        agents: &BTreeMap<NodeId, Agent>,
        store: &Persisted,
        configured: &BTreeSet<NodeId>,
    ) -> Check {
        let lost: Vec<u64> = self
            .intents
            .iter()
            .filter(|(i, n)| !self.confirmed.contains(i) && configured.contains(n))
            .map(|(&i, _)| i)
            .collect();
        let open = store.open_intents.keys().any(|n| configured.contains(n));
        if !lost.is_empty() || open {
            return Err((
                "no intent lost",
                format!(
                    "intents {lost:?} never confirmed; store still has open {:?}",
                    store.open_intents
                ),
            ));
        }
        for (&id, a) in agents.iter().filter(|(id, _)| !configured.contains(id)) {
            if let Some(l) = a.keeper.lease(a.local(now_us)) {
                return Err((
                    "liveness",
                    format!("node {id}, removed from the configuration, still holds a lease {l:?}"),
                ));
            }
        }
        let all = configured;
        for (&id, a) in agents.iter().filter(|(id, _)| configured.contains(id)) {
            let lease = a.keeper.lease(a.local(now_us));
            let healthy = a.state == AgentState::Running
                && lease.is_some_and(|l| l.epoch == store.epoch && &l.survivors == all);
            if !healthy {
                return Err((
                    "liveness",
                    format!(
                        "after the fault-free phase node {id} is {:?} with lease {:?}; store epoch {} backed {:?}",
                        a.state, lease, store.epoch, store.backed
                    ),
                ));
            }
        }
        Ok(())
    }
}
