//! What the core is told at construction: the cluster's shape and timings
//! (from validated config) and the state recovered from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::NodeId;
use super::action::Delta;
use super::decide::TieBreaker;
use super::placement::{GroupRecord, GroupSpec};
use super::quorum::QuorumMode;

/// Cluster timings. Defaults are DESIGN.md's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub lease: Duration,
    pub lost_after: Duration,
    pub settle: Duration,
    /// Deadline for one fence level (all its devices' off + confirmation).
    pub fence_timeout: Duration,
    /// First retry delay after the last level failed; doubles per round.
    pub fence_retry_min: Duration,
    /// Cap on the retry delay.
    pub fence_retry_max: Duration,
    /// After the arbiter could not hear a quorate set (its own start,
    /// isolation, stall or clock jump), how long beyond `lost_after` a node
    /// not yet heard again is waited for before its silence counts against
    /// it. Covers agents noticing the dead session and reconnecting.
    pub reconnect_allowance: Duration,
    /// How far beyond its last grant an agent may ride its lease out while
    /// no arbiter grants one and its cluster's mesh is whole (zero: never).
    /// Every wait for a node's lease to end allows for it.
    pub ride_out: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: Duration::from_millis(100),
            lease: Duration::from_millis(300),
            lost_after: Duration::from_millis(500),
            settle: Duration::from_millis(200),
            fence_timeout: Duration::from_secs(10),
            fence_retry_min: Duration::from_millis(500),
            fence_retry_max: Duration::from_secs(10),
            reconnect_allowance: Duration::from_secs(3),
            ride_out: Duration::ZERO,
        }
    }
}

impl Timing {
    /// The longest a lease granted by the arbiter can last in real time,
    /// allowing for the agent's clock running up to 2% slow, plus 1 ms.
    /// A restarted arbiter waits this long before granting anything.
    pub fn lease_max(&self) -> Duration {
        self.lease + self.lease / 50 + Duration::from_millis(1)
    }

    /// The longest a ride-out can last in real time beyond the grant it
    /// extends (the agent's clock up to 2% slow; zero when off).
    pub fn ride_out_max(&self) -> Duration {
        if self.ride_out.is_zero() {
            return Duration::ZERO;
        }
        self.ride_out + self.ride_out / 50 + Duration::from_millis(1)
    }

    /// A live node silent for longer than this is *suspect*: its last
    /// report is stale, so no verdict is taken on it; and the arbiter that
    /// heard from no quorate set within it has lost contact.
    pub fn fresh_within(&self) -> Duration {
        self.heartbeat_interval * 2
    }

    /// A gap between two steps longer than this means the arbiter itself
    /// was not running (a stall, a suspended process, a clock jump): what
    /// it did not hear meanwhile is no evidence against anyone.
    pub fn stall_after(&self) -> Duration {
        self.heartbeat_interval * 2
    }

    /// What the watchdog rule adds to a watchdog's `timeout` beyond the
    /// end of the node's last lease: a tenth of the timeout for the
    /// watchdog's own clock, `stall_after` for an unnoticed forward jump of
    /// the arbiter's, and a heartbeat interval for the agent's loop.
    pub fn watchdog_margin(&self, timeout: Duration) -> Duration {
        timeout / 10 + self.stall_after() + self.heartbeat_interval
    }
}

/// One node as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub votes: u32,
    pub priority: u32,
    /// Number of fence levels in this node's topology (at least 1).
    pub fence_levels: usize,
    /// The level that is the `watchdog` rule rather than devices: the node
    /// counts as fenced once every lease it may hold has ended and its
    /// armed watchdog's timeout, plus a margin, has passed since
    /// ([`Timing::watchdog_margin`]).
    pub watchdog_level: Option<usize>,
}

/// One cluster as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub nodes: BTreeMap<NodeId, NodeSpec>,
    pub quorum_mode: QuorumMode,
    pub tie_breaker: TieBreaker,
    pub timing: Timing,
    /// Most nodes that may be fenced in one transition; more than that at
    /// once is a storm: the arbiter holds, alerts and fences nobody.
    pub storm_limit: usize,
    /// Resource groups, each placed on one survivor.
    pub groups: Vec<GroupSpec>,
}

impl ClusterSpec {
    /// Default storm limit: half the nodes (rounded down), at least 1.
    pub fn default_storm_limit(nodes: usize) -> usize {
        (nodes / 2).max(1)
    }
}

/// Durable state of one cluster, as last persisted (the stores keep exactly
/// this, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub epoch: u64,
    /// The survivor set the arbiter backs.
    pub backed: BTreeSet<NodeId>,
    /// Nodes confirmed fenced and not yet rejoined.
    pub gone: BTreeSet<NodeId>,
    /// Fence intents written but not yet confirmed: node -> intent id.
    pub open_intents: BTreeMap<NodeId, u64>,
    /// Next intent id to hand out.
    pub next_intent: u64,
    /// Nodes confirmed off and not back since: node -> the agent instance
    /// that ran on it when its fence was confirmed (0: unknown). A node
    /// confirmed off whose survivors were not told yet (the arbiter stopped
    /// in between) is here and still in `backed`.
    #[serde(default)]
    pub off: BTreeMap<NodeId, u64>,
    /// Per node, the agents confirmed off (the last
    /// [`FENCED_AGENTS_KEPT`](super::membership::FENCED_AGENTS_KEPT)), kept
    /// after the node came back and until an operator clears its alert: if
    /// one speaks again, the device lied.
    #[serde(default)]
    pub fenced: BTreeMap<NodeId, Vec<FencedAgent>>,
    /// Per node, the agent last heard (a fence confirmed before the node
    /// speaks to a restarted arbiter records this one).
    #[serde(default)]
    pub agents: BTreeMap<NodeId, FencedAgent>,
    /// Per node, the "alive after off" alert raised and not cleared yet.
    #[serde(default)]
    pub alerts: BTreeMap<NodeId, String>,
    /// Per resource group, its holder and the nodes that may be running it.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupRecord>,
    /// Per node, the watchdog its last agent reported armed (that agent's
    /// instance and the timeout): what the `watchdog` fence level of a
    /// node not heard since a restart counts on.
    #[serde(default)]
    pub watchdogs: BTreeMap<NodeId, ArmedWatchdog>,
    /// Nodes gone (or off) that the watchdog rule counted fenced, not a
    /// device.
    #[serde(default)]
    pub by_watchdog: BTreeSet<NodeId>,
    /// Nodes in maintenance (no automatic fence), and whether the whole
    /// cluster is.
    #[serde(default)]
    pub maintenance: BTreeSet<NodeId>,
    #[serde(default)]
    pub maintenance_all: bool,
    /// Members a maintenance hold keeps out of the verdict (they would be
    /// fenced): no incumbents, no lease, across a restart too.
    #[serde(default)]
    pub maintenance_held: BTreeSet<NodeId>,
}

/// A watchdog an agent reported armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArmedWatchdog {
    pub instance: u64,
    pub boot: u64,
    pub timeout_ms: u64,
}

/// An agent confirmed off: its process instance and its machine's boot (a
/// digest of the kernel's boot id); 0 where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FencedAgent {
    pub instance: u64,
    #[serde(default)]
    pub boot: u64,
}

impl Persisted {
    /// Fold one persisted change in. Every store backend applies deltas
    /// through this, so what a restarted core sees is what was written.
    pub fn apply(&mut self, delta: &Delta) {
        match delta {
            Delta::WatchdogFenced { node, .. } => {
                self.by_watchdog.insert(*node);
            }
            Delta::FenceIntent { intent, node, .. } => {
                self.by_watchdog.remove(node);
                self.open_intents.insert(*node, *intent);
                self.next_intent = self.next_intent.max(intent + 1);
            }
            Delta::FenceAttemptFailed { .. } | Delta::Operator { .. } => {}
            Delta::MaintenanceHeld { nodes } => self.maintenance_held = nodes.clone(),
            Delta::Maintenance { node, on } => match node {
                Some(n) if *on => {
                    self.maintenance.insert(*n);
                }
                Some(n) => {
                    self.maintenance.remove(n);
                }
                None => self.maintenance_all = *on,
            },
            Delta::FenceConfirmed {
                intent,
                node,
                instance,
                boot,
                ..
            } => {
                if self.open_intents.get(node) == Some(intent) {
                    self.open_intents.remove(node);
                    self.off.insert(*node, *instance);
                    // (An unknown agent, or a fence by the watchdog rule,
                    // names none that must never speak again.)
                    if *instance != 0 || *boot != 0 {
                        let fenced = self.fenced.entry(*node).or_default();
                        fenced.push(FencedAgent {
                            instance: *instance,
                            boot: *boot,
                        });
                        let extra = fenced
                            .len()
                            .saturating_sub(super::membership::FENCED_AGENTS_KEPT);
                        fenced.drain(..extra);
                    }
                }
            }
            Delta::AlertCleared { node } => {
                self.off.remove(node);
                self.fenced.remove(node);
                self.alerts.remove(node);
            }
            Delta::AliveAfterOff { node, detail } => {
                self.alerts.insert(*node, detail.clone());
            }
            Delta::AgentSeen {
                node,
                instance,
                boot,
            } => {
                self.agents.insert(
                    *node,
                    FencedAgent {
                        instance: *instance,
                        boot: *boot,
                    },
                );
            }
            Delta::Watchdog {
                node,
                instance,
                boot,
                timeout_ms,
            } => {
                if *timeout_ms == 0 {
                    self.watchdogs.remove(node);
                } else {
                    self.watchdogs.insert(
                        *node,
                        ArmedWatchdog {
                            instance: *instance,
                            boot: *boot,
                            timeout_ms: *timeout_ms,
                        },
                    );
                }
            }
            Delta::EpochRaised { epoch } => self.epoch = *epoch,
            Delta::Unconfigured { nodes } => {
                self.backed.retain(|n| !nodes.contains(n));
                self.gone.retain(|n| !nodes.contains(n));
            }
            Delta::Group { group, record } => {
                self.groups.insert(group.clone(), record.clone());
            }
            Delta::Backed {
                epoch,
                survivors,
                gone,
            } => {
                self.epoch = *epoch;
                self.backed = survivors.clone();
                self.gone = gone.clone();
                // A node back in the survivor set (or rejoining) is no
                // longer off.
                self.off.retain(|n, _| gone.contains(n));
                self.by_watchdog.retain(|n| gone.contains(n));
            }
        }
    }
}
