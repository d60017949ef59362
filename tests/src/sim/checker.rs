//! The safety checker: DESIGN.md's invariants, checked after every event.
//!
//! - **lease exclusivity**: any two nodes holding a lease at the same real
//!   time agree: the holder of the older epoch is a survivor in the newer
//!   grant (no node runs on a lease from before it was declared gone);
//! - **gone only after a confirmed fence**: when survivors are told a node is
//!   gone, the power device has that node off;
//! - **no node fenced in a healthy cluster**: when no endpoint (node, link or
//!   arbiter) was disturbed for a whole detection window, nobody is fenced.
//!   (A healthy node *can* rightly lose to a troubled peer that still reaches
//!   the arbiter: their broken edge means one of the two must go, and the
//!   documented order picks which.);
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
    n: u32,
    /// Per endpoint (0 = arbiter): last time something disturbed it.
    last_disturbed: Vec<u64>,
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
        let n = spec.nodes.len() as u32;
        let t = spec.timing;
        let window = t.lost_after + t.settle + t.heartbeat_interval * 6;
        Checker {
            n,
            last_disturbed: vec![0; n as usize + 1],
            window_us: window.as_micros() as u64,
            lease_max_us: t.lease_max().as_micros() as u64,
            intents: BTreeMap::new(),
            last_grant: BTreeMap::new(),
            last_off: BTreeMap::new(),
            confirmed: BTreeSet::new(),
        }
    }

    pub fn disturbed(&mut self, now_us: u64, endpoint: u32) {
        if let Some(t) = self.last_disturbed.get_mut(endpoint as usize) {
            *t = now_us;
        }
    }

    pub fn arbiter_restarted(&mut self, now_us: u64) {
        for t in &mut self.last_disturbed {
            *t = now_us;
        }
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

    /// The device is about to switch `node` off.
    pub fn fenced(&mut self, now_us: u64, node: NodeId, agents: &BTreeMap<NodeId, Agent>) -> Check {
        if agents[&node].state != AgentState::Running {
            return Ok(());
        }
        let quiet_since = self.last_disturbed.iter().copied().max().unwrap_or(0);
        if now_us.saturating_sub(quiet_since) > self.window_us {
            return Err((
                "no node fenced in a healthy cluster",
                format!(
                    "node {node} fenced although no node, link or arbiter was disturbed for {} ms (n={})",
                    (now_us - quiet_since) / 1000,
                    self.n
                ),
            ));
        }
        Ok(())
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

    pub fn persisted(&mut self, store: &Persisted, delta: &Delta) -> Check {
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

    pub fn lease_granted(&mut self, now_us: u64, node: NodeId, started_us: u64) -> Check {
        self.last_grant.insert(node, now_us);
        if now_us - started_us < self.lease_max_us {
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
