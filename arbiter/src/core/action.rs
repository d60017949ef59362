//! Outputs of the core. The shell executes them **in order**; a `Persist`
//! must be durable before any later action of the same batch runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::NodeId;
use super::placement::{Grant, GroupRecord, RunState};

/// A change to durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A fence is about to start: written before any device is touched.
    FenceIntent {
        intent: u64,
        node: NodeId,
        reason: String,
    },
    /// One fence round failed at every level (kept for history; the intent
    /// stays open and is retried).
    FenceAttemptFailed {
        intent: u64,
        node: NodeId,
        detail: String,
    },
    /// The fence is confirmed: the node is off. `instance` is the agent
    /// instance that ran on it then and `boot` its machine's boot (0:
    /// unknown): if either speaks again, even after an arbiter restart, the
    /// device lied.
    FenceConfirmed {
        intent: u64,
        node: NodeId,
        instance: u64,
        boot: u64,
        /// `Some(who)`: an operator swore the node off (`fencectl
        /// confirm`); no device confirmed it.
        operator: Option<String>,
    },
    /// An operator's control, for the history (written before its
    /// effects: what was asked is kept even if the arbiter stops midway).
    Operator {
        by: String,
        action: &'static str,
        node: Option<NodeId>,
        detail: String,
    },
    /// Maintenance of `node` (every node: `None`) switched on or off.
    Maintenance { node: Option<NodeId>, on: bool },
    /// The members a maintenance hold now keeps out of the verdict.
    MaintenanceHeld { nodes: BTreeSet<NodeId> },
    /// The epoch alone is raised (above one an agent reported), the backed
    /// set unchanged.
    EpochRaised { epoch: u64 },
    /// An operator cleared the "alive after off" alert of a node: its off
    /// record is dropped.
    AlertCleared { node: NodeId },
    /// A node recorded off spoke again: the alert stands, across restarts,
    /// until an operator clears it.
    AliveAfterOff { node: NodeId, detail: String },
    /// A node's agent is a new one (a new process, or a new boot): the
    /// agent a fence of it would switch off, kept across restarts.
    AgentSeen {
        node: NodeId,
        instance: u64,
        boot: u64,
    },
    /// `node` is counted fenced by the watchdog rule (written with, after,
    /// its `FenceConfirmed`): survivors and the node itself are told so,
    /// and the node, alive at rest, may rejoin.
    WatchdogFenced { node: NodeId, intent: u64 },
    /// A node's agent reported its hardware watchdog armed with this
    /// timeout (0: none armed any more).
    Watchdog {
        node: NodeId,
        instance: u64,
        boot: u64,
        timeout_ms: u64,
    },
    /// A resource group's holder, or the nodes that may be running it,
    /// changed.
    Group { group: String, record: GroupRecord },
    /// A new survivor set is backed under a new epoch.
    Backed {
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
    /// Nodes no longer configured leave the backed and gone sets, under
    /// the same epoch: written when the start-up grace that waited out
    /// every lease of the earlier life (ridden out too) is over, so a later
    /// start finds the smaller set and a node configured again joins anew.
    Unconfigured { nodes: BTreeSet<NodeId> },
}

/// Something worth telling operators (watch stream, logs, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    NodeAlive {
        node: NodeId,
    },
    NodeLost {
        node: NodeId,
    },
    Decision {
        survivors: BTreeSet<NodeId>,
        leaving: BTreeSet<NodeId>,
    },
    NoQuorum {
        best: BTreeSet<NodeId>,
    },
    StormHold {
        leaving: BTreeSet<NodeId>,
    },
    FenceFailed {
        node: NodeId,
        intent: u64,
        level: usize,
        detail: String,
    },
    /// A fence round failed at every level: `rounds` so far; the next
    /// round starts in `retry_in`.
    FenceRoundFailed {
        node: NodeId,
        intent: u64,
        rounds: u32,
        retry_in: Duration,
        detail: String,
    },
    /// Members outside the verdict are in maintenance: reported, not
    /// fenced; the transition waits (an operator confirms them off, or
    /// ends maintenance).
    MaintenanceHold {
        nodes: BTreeSet<NodeId>,
    },
    /// An operator's control took effect.
    Operator {
        by: String,
        action: &'static str,
        node: Option<NodeId>,
        detail: String,
    },
    EpochAcknowledged {
        node: NodeId,
        epoch: u64,
    },
    GraceOver,
    /// The arbiter hears no quorate set any more (its own isolation, or a
    /// stall): it decides nothing until it does again.
    ContactLost,
    /// It hears a quorate set again; these members get `lost_after` plus
    /// the reconnect allowance to come back before their silence counts.
    ContactRegained {
        pending: BTreeSet<NodeId>,
    },
    /// The arbiter heard no node for `gap`, though two or more were
    /// heartbeating just before and came back after it (its own network or
    /// host, likely): these members, not heard since, get `lost_after` plus
    /// the reconnect allowance before their silence counts.
    DeafGap {
        gap: Duration,
        excused: BTreeSet<NodeId>,
    },
    /// The arbiter itself did not run for `gap` (stall, suspended process,
    /// clock jump).
    Stalled {
        gap: Duration,
    },
    /// Critical: a node recorded off spoke again.
    AliveAfterOff {
        node: NodeId,
        detail: String,
    },
    AlertCleared {
        node: NodeId,
    },
    /// An agent holds a higher epoch than the store: the arbiter started
    /// without its history; it persists an epoch above before granting.
    EpochBehind {
        node: NodeId,
        reported: u64,
        stored: u64,
    },
    /// A resource group's state on a node changed (as its agent reported).
    GroupState {
        group: String,
        node: NodeId,
        state: RunState,
    },
    /// A node's agent armed its watchdog (`timeout`), or has none armed
    /// any more (`None`).
    Watchdog {
        node: NodeId,
        timeout: Option<Duration>,
    },
    /// A fence reached a `watchdog` level: the node counts as fenced at
    /// `until`. (Where the rule cannot apply, the level fails at once:
    /// `FenceFailed` says why.)
    WatchdogWait {
        node: NodeId,
        intent: u64,
        until: Duration,
    },
    /// The watchdog rule counted a node fenced: every lease it held ended,
    /// then its watchdog's timeout and margin passed. It was reset, or its
    /// agent stood with every group stopped.
    WatchdogFenced {
        node: NodeId,
        intent: u64,
    },
    /// Stored state names nodes the configuration no longer has.
    ConfigChanged {
        detail: String,
    },
    /// An open fence intent for a node no longer configured: kept open in
    /// the store, not resumed; an operator must settle it.
    OrphanIntent {
        node: NodeId,
        intent: u64,
    },
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write durably (fsync) before running the rest of the batch.
    Persist(Delta),
    /// Answer one heartbeat.
    Ack {
        node: NodeId,
        session: u64,
        seq: u64,
        sent_at_us: u64,
        /// `None`: no lease; the agent must not run resources.
        lease: Option<Duration>,
        epoch: u64,
        /// The backed survivor set of this epoch.
        backed: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
        reason: &'static str,
        /// The resource groups placed on this node.
        grants: Vec<Grant>,
        /// Nodes of `backed` leaving it (fence running, or confirmed and
        /// not yet announced): no agent rides a lease out knowing one.
        leaving: BTreeSet<NodeId>,
        /// No lease because the arbiter cannot decide yet (grace, no
        /// quorate set heard): a lease being ridden out stands.
        undecided: bool,
    },
    /// Run every device of this fence level (off, then confirm by status)
    /// and report back with `Event::FenceFinished`.
    Fence {
        node: NodeId,
        intent: u64,
        level: usize,
        attempt: u64,
    },
    /// Tell survivors the new epoch and who is gone (pushed at once).
    Announce {
        to: BTreeSet<NodeId>,
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
    /// Power a fenced node back on (an operator's unfence) through the
    /// devices of its topology that can; the node rejoins by itself.
    PowerOn {
        node: NodeId,
    },
    /// Close a session with this error (bad input); no state changed.
    Refuse {
        node: NodeId,
        session: u64,
        reason: String,
    },
    Notice(Notice),
}
