//! Outputs of the core. The shell executes them **in order**; a `Persist`
//! must be durable before any later action of the same batch runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::NodeId;

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
    /// The fence is confirmed: the node is off.
    FenceConfirmed { intent: u64, node: NodeId },
    /// A new survivor set is backed under a new epoch.
    Backed {
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
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
    EpochAcknowledged {
        node: NodeId,
        epoch: u64,
    },
    GraceOver,
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
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
        reason: &'static str,
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
    /// Close a session with this error (bad input); no state changed.
    Refuse {
        node: NodeId,
        session: u64,
        reason: String,
    },
    Notice(Notice),
}
