//! Inputs of the core.

use super::NodeId;
use super::placement::RunState;

/// The result of one fence level as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelOutcome {
    /// Every device of the level reported the node off.
    ConfirmedOff,
    /// A device failed, timed out, or its status did not confirm off.
    Failed(String),
}

/// What an operator may ask of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Fence `node` through its topology now, whatever the verdict
    /// (recorded as manual, with `reason`).
    Fence { node: NodeId, reason: String },
    /// The operator swears `node` is off (powered down by hand, its BMC
    /// dead with it): any running fence of it ends and the transition
    /// commits as after a confirmed fence. Also settles a node no longer
    /// configured that holds an open intent or may still run a group.
    Confirm { node: NodeId },
    /// Power a fenced node back on through the devices that can; it
    /// rejoins by itself once its agent runs again.
    Unfence { node: NodeId },
    /// No automatic fencing of `node` (of every node: `None`) while on: a
    /// node leaving is reported, not shot, and the transition waits.
    Maintenance { node: Option<NodeId>, on: bool },
}

impl Control {
    /// The stable name of the control (history, watch, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Control::Fence { .. } => "fence",
            Control::Confirm { .. } => "confirm",
            Control::Unfence { .. } => "unfence",
            Control::Maintenance { on: true, .. } => "maintenance_on",
            Control::Maintenance { on: false, .. } => "maintenance_off",
        }
    }

    /// The node it names, if one.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Control::Fence { node, .. } | Control::Confirm { node } | Control::Unfence { node } => {
                Some(*node)
            }
            Control::Maintenance { node, .. } => *node,
        }
    }
}

/// What happened, as seen by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The clock moved; the core checks timers.
    Tick,
    /// An agent opened a session (its Hello passed the shell's checks).
    Connected {
        node: NodeId,
        session: u64,
        known_epoch: u64,
        /// The agent process's random instance number (0: not told). The
        /// instance that ran when a fence was confirmed must never speak
        /// again; a new one is the node back after a reboot.
        instance: u64,
        /// A digest of the agent machine's kernel boot id (0: not told). A
        /// new instance in the boot that was confirmed off is an agent
        /// restarted on a machine that was never switched off.
        boot: u64,
    },
    /// The hardware watchdog the agent of `session` holds armed, as its
    /// Hello or a heartbeat said (`None`: none). The shell sends it after
    /// `Connected` and whenever a heartbeat reports a change.
    Watchdog {
        node: NodeId,
        session: u64,
        timeout: Option<std::time::Duration>,
    },
    /// The session's stream ended.
    Disconnected { node: NodeId, session: u64 },
    Heartbeat {
        node: NodeId,
        session: u64,
        seq: u64,
        sent_at_us: u64,
        reachable: Vec<NodeId>,
        heuristics: u32,
        known_epoch: u64,
        /// The agent has applied the acknowledgement of its heartbeat
        /// `applied_seq` (0: none yet)...
        applied_seq: u64,
        /// ...and its resource groups are in these states (a group not
        /// listed is stopped).
        groups: Vec<(String, RunState)>,
        /// The highest acknowledgement the agent received (0: none).
        acked_seq: u64,
        /// How far its lease runs past the last grant, ridden out.
        ridden: std::time::Duration,
    },
    /// An operator moves a resource group (checked with
    /// [`ArbiterCore::check_move`](super::ArbiterCore::check_move) first).
    Move { group: String, node: NodeId },
    /// An operator cleared a node's alive-after-off alert (after fixing
    /// the fence device's wiring).
    Clear { node: NodeId },
    /// An operator's control (`fencectl`), checked with
    /// [`ArbiterCore::check_control`](super::ArbiterCore::check_control)
    /// first; `by` says who asked (certificate identity, user, address).
    Operator { by: String, control: Control },
    FenceFinished {
        node: NodeId,
        intent: u64,
        level: usize,
        attempt: u64,
        outcome: LevelOutcome,
    },
}
