//! The safety checker: DESIGN.md's invariants, checked after every event.
//!
//! - **lease exclusivity**: any two nodes holding a lease at the same real
//!   time agree: the holder of the older epoch is a survivor in the newer
//!   grant (no node runs on a lease from before it was declared gone);
//! - **gone only after a confirmed fence**: when survivors are told a node is
//!   gone (in an announcement or in any ack), the power device has that node
//!   off;
//! - **fence only what must be fenced** (from the simulation's ground
//!   truth): a running node may be switched off only when a fault of that
//!   node or of its own links explains it, within `window` of the fault
//!   ending: the node frozen or crashed, its link to the arbiter cut or lossy
//!   *while a quorate set of other nodes kept contact with the arbiter*, or
//!   a link to a peer broken while that peer is neither off nor being fenced
//!   (a broken link explains fencing one of its two ends, not both). The
//!   arbiter's own crash, isolation, stall or clock jump explains nothing;
//! - **persist before acting**: no fence without its open intent in the
//!   store; no ack or announcement with an epoch above the stored one;
//! - **the fencing token never goes back**: no lease under an epoch below
//!   one already granted;
//! - **no lease to a node being fenced**: from its first `Fence` until
//!   that node starts again;
//! - **start-up grace**: a (re)started arbiter grants no lease before every
//!   lease of its earlier life has expired;
//! - **durability**: epochs only grow across restarts; every fence intent is
//!   eventually confirmed (none lost across a restart);
//! - **liveness** (at the end, after a fault-free phase): every node runs,
//!   holding a lease under the same epoch with every node a survivor.

use std::collections::{BTreeMap, BTreeSet};

use arbiter::core::{ClusterSpec, Delta, NodeId, Persisted};

use super::{Agent, AgentState};

type Check = Result<(), (&'static str, String)>;

pub struct Checker {
    /// Per node: the last time a fault of its own was active.
    node_fault: BTreeMap<NodeId, u64>,
    /// Per peer link (a < b): the last time it was broken or lossy.
    link_fault: BTreeMap<(NodeId, NodeId), u64>,
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
}

impl Checker {
    pub fn new(spec: &ClusterSpec) -> Self {
        let t = spec.timing;
        let window = t.lost_after + t.settle + t.heartbeat_interval * 6;
        Checker {
            node_fault: BTreeMap::new(),
            link_fault: BTreeMap::new(),
            fencing: BTreeSet::new(),
            judged: BTreeMap::new(),
            generation: 0,
            window_us: window.as_micros() as u64,
            lease_max_us: t.lease_max().as_micros() as u64,
            intents: BTreeMap::new(),
            last_grant: BTreeMap::new(),
            last_off: BTreeMap::new(),
            confirmed: BTreeSet::new(),
        }
    }

    /// A fault of `node` itself is active at `now`.
    pub fn node_fault(&mut self, now_us: u64, node: NodeId) {
        self.node_fault.insert(node, now_us);
    }

    /// The link between two nodes is broken or lossy at `now`.
    pub fn link_fault(&mut self, now_us: u64, a: NodeId, b: NodeId) {
        self.link_fault.insert((a.min(b), a.max(b)), now_us);
    }

    /// The arbiter ran `Fence` for `node`.
    pub fn fence_started(
        &mut self,
        now_us: u64,
        node: NodeId,
        store: &Persisted,
        intent: u64,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        let key = (self.generation, node, intent);
        if !self.judged.contains_key(&key) {
            // (Only with the fence-before-intent mutant.)
            let verdict = self.unexplained(now_us, node, agents);
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

    pub fn after_event(&mut self, now_us: u64, agents: &BTreeMap<NodeId, Agent>) -> Check {
        let holders: Vec<(NodeId, u64, &BTreeSet<NodeId>)> = agents
            .iter()
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
    /// its links; `None` if it is.
    fn unexplained(
        &self,
        now_us: u64,
        node: NodeId,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Option<String> {
        if agents[&node].state != AgentState::Running {
            return None;
        }
        let recent =
            |t: Option<&u64>| t.is_some_and(|&t| now_us.saturating_sub(t) <= self.window_us);
        if recent(self.node_fault.get(&node)) {
            return None;
        }
        let explained_by_link = agents.iter().any(|(&m, a)| {
            m != node
                && recent(self.link_fault.get(&(node.min(m), node.max(m))))
                && a.state != AgentState::Off
                && !self.fencing.contains(&m)
        });
        if explained_by_link {
            return None;
        }
        Some(format!(
            "no fault of its own or of its links within {} ms when its fence started (last own fault {:?}us; being fenced: {:?})",
            self.window_us / 1000,
            self.node_fault.get(&node),
            self.fencing
        ))
    }

    /// The device is about to switch `node` off for `intent` (ordered under
    /// store `generation`).
    pub fn fenced(
        &mut self,
        now_us: u64,
        node: NodeId,
        intent: u64,
        generation: u64,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        if agents[&node].state != AgentState::Running {
            return Ok(());
        }
        let why = match self.judged.get(&(generation, node, intent)) {
            Some(j) => j.clone(),
            None => self.unexplained(now_us, node, agents),
        };
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
        gone: &BTreeSet<NodeId>,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        for n in gone {
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

    /// The device switched `node` off.
    pub fn powered_off(&mut self, now_us: u64, node: NodeId) {
        self.last_off.insert(node, now_us);
    }

    /// A delta is about to be persisted. A fence intent is judged here, when
    /// the arbiter decides (a resumed intent is fenced later, as decided).
    pub fn persisted(
        &mut self,
        now_us: u64,
        store: &Persisted,
        delta: &Delta,
        agents: &BTreeMap<NodeId, Agent>,
    ) -> Check {
        if let Delta::FenceIntent { intent, node, .. } = delta {
            let verdict = self.unexplained(now_us, *node, agents);
            self.judged
                .insert((self.generation, *node, *intent), verdict);
        }
        match delta {
            Delta::Backed { epoch, .. } if *epoch <= store.epoch => Err((
                "epochs only grow",
                format!("epoch {epoch} persisted after epoch {}", store.epoch),
            )),
            Delta::FenceIntent { intent, node, .. } => {
                if self.intents.insert(*intent, *node).is_some() {
                    return Err((
                        "intent ids are unique",
                        format!("intent {intent} written twice"),
                    ));
                }
                Ok(())
            }
            Delta::FenceConfirmed { intent, node } => {
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
    ) -> Check {
        self.last_grant.insert(node, now_us);
        if self.fencing.contains(&node) {
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

    pub fn at_end(
        &mut self,
        now_us: u64,
        agents: &BTreeMap<NodeId, Agent>,
        store: &Persisted,
    ) -> Check {
        let lost: Vec<u64> = self
            .intents
            .keys()
            .filter(|i| !self.confirmed.contains(i))
            .copied()
            .collect();
        if !lost.is_empty() || !store.open_intents.is_empty() {
            return Err((
                "no intent lost",
                format!(
                    "intents {lost:?} never confirmed; store still has open {:?}",
                    store.open_intents
                ),
            ));
        }
        let all: BTreeSet<NodeId> = agents.keys().copied().collect();
        for (&id, a) in agents {
            let lease = a.keeper.lease(a.local(now_us));
            let healthy = a.state == AgentState::Running
                && lease.is_some_and(|l| l.epoch == store.epoch && l.survivors == all);
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
