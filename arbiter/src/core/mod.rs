//! The arbiter's functional core: membership, the survivor decision, leases
//! and the fencing orchestration of one cluster, as a pure state machine.
//!
//! ```text
//!   Event (Tick, Connected, Heartbeat, FenceFinished, Clear)   now: Duration
//!                         │
//!                         ▼
//!               ArbiterCore::step(now, event)
//!                         │
//!                         ▼
//!   Vec<Action> (Persist, Ack, Fence, Announce, Refuse, Notice), in order
//! ```
//!
//! **Architecture invariant:** nothing here does I/O, reads a clock, spawns
//! or draws random numbers; `now` is an input. The shell (`driver.rs`) and the
//! simulation (`tests/`) run the very same code.
//!
//! Every node is in one [`Phase`] (joining, member, leaving with its fence
//! job, off, gone, alive-after-off) and every rule reads it. The rules, in
//! DESIGN.md's terms:
//!
//! - **Contact.** The arbiter is *in contact* while it has heard, within
//!   `fresh_within`, from a set of candidates that is quorate with its own
//!   votes. Losing it (its own isolation), or a gap between two steps longer
//!   than `stall_after` (a stall or clock jump), ends contact; nothing is
//!   decided without it.
//! - **Only a node's own fault counts against it.** A node is *lost* only
//!   when it has been silent for `lost_after` while the arbiter was in
//!   contact: a member not heard since contact (re)started gets
//!   `lost_after + reconnect_allowance` from that instant (exactly as at
//!   start-up). While a member is in that allowance (*pending*), or a live
//!   candidate is *suspect* (silent longer than `fresh_within`), the verdict
//!   is held: no fence starts, no epoch changes.
//! - **Candidates** are the live joining and member nodes; a node being
//!   fenced, off, gone or alive-after-off is never one.
//! - **Leases** go only to members in the current verdict, after the
//!   start-up grace (`Timing::lease_max` plus `stall_after`), while in contact, under an epoch
//!   above any epoch an agent reported.
//! - **Fences** start only for members outside the verdict, each with a
//!   persisted intent first; more than `storm_limit` nodes leaving one
//!   transition fences nobody (hold and alert).
//! - **Commit:** the backed set changes and the epoch grows only once no
//!   fence runs and every node leaving is confirmed off; only then are the
//!   survivors told who is gone.
//! - **Off stays silent:** the agent instance (or session) that ran when a
//!   fence was confirmed speaking again is a critical alert; that node gets
//!   no lease until an operator clears it.

pub mod action;
pub mod decide;
pub mod event;
pub mod fence_plan;
pub mod membership;
pub mod operator;
pub mod placement;
pub mod quorum;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use action::{Action, Delta, Notice};
pub use decide::{Candidate, TieBreaker, Verdict};
pub use event::{Control, Event, LevelOutcome};
pub use fence_plan::{FenceJob, JobState, JobStep};
pub use membership::{Edges, NodeView, OffRecord, Phase};
pub use placement::{Grant, GroupRecord, GroupSpec, GroupStatus, Placement, RunState};
pub use quorum::{Quorum, QuorumMode};
pub use spec::{ClusterSpec, FencedAgent, NodeSpec, Persisted, Timing};

/// Who confirmed a node off.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfirmedBy {
    /// Every device of a level (`FenceFinished(ConfirmedOff)`).
    Devices,
    /// The watchdog rule (`route_watchdog_levels`).
    Watchdog,
    /// An operator's word (`fencectl confirm`), and who.
    Operator(String),
}

/// Node identifier, unique within a cluster.
pub type NodeId = u32;

/// The highest epoch an agent may report: no arbiter counts that far (one
/// epoch a microsecond for 290,000 years), so a higher one is hostile or
/// corrupt input and is refused, never adopted (the epoch could not grow
/// past it).
pub const MAX_EPOCH: u64 = u64::MAX / 2;

/// A rule of the core broken on purpose. Only the simulation's checker
/// tests set one, to show each checker rule catches the bug it names;
/// production code never does (`ArbiterCore::new` starts without).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// Waits for a node's lease to end ignore that it may be ridden out.
    IgnoreRideOut,
    /// A start that removed a member of the backed set grants after the
    /// plain grace, while leases under the old set may still be ridden out.
    GrantAtOnceAfterRemoval,
    /// A node being fenced still gets leases.
    LeaseToFencingNode,
    /// The start-up grace is half a lease instead of `lease_max`.
    ShortGrace,
    /// Acks list nodes as gone while their fence is still running.
    GoneInAckBeforeConfirm,
    /// The device is told to fence before the intent is persisted.
    FenceBeforeIntent,
    /// Nodes being fenced stay candidates and incumbents (finding 1).
    CandidatesIncludeFencing,
    /// No re-grace after the arbiter lost contact or stalled (finding 2).
    NoRegraceAfterIsolation,
    /// Epochs agents report are ignored (finding 5).
    IgnoreReportedEpochs,
    /// Edges down before the arbiter's own outage count down after it as
    /// proven: a heal during the outage is taken for breaks.
    DownEdgesOutliveTheOutage,
    /// The agent last heard on a node is not persisted: a fence confirmed
    /// after a restart, before the node spoke again, records no agent.
    ForgetAgentsAcrossRestarts,
    /// The "alive after off" alert is not persisted: a restart ends it.
    ForgetAlertsAcrossRestarts,
    /// Edges down are not proven again when a heal begins to arrive: both
    /// ends' last reports, from before the heal reached their probes,
    /// count.
    NoReproveOnHeal,
    /// A new session reporting a peer reached that does not report it back
    /// is no heal arriving (the edge started afresh counts up): the peers'
    /// other reports, from before the heal reached their probes, count.
    NoYoungHeals,
    /// A gap in which the arbiter heard nobody, though two nodes or more
    /// were heartbeating just before, is no loss of contact: a node whose
    /// silence spans it, reconnecting, is fenced.
    NoDeafGaps,
    /// One side reporting an edge going down back up, the other still
    /// reporting it lost, is no heal arriving: an edge settled down
    /// elsewhere on reports from before the heal counts.
    NoOneSidedHeals,
    /// A spent hold decides on a member it was not for (another incident's
    /// hold, mid-way through a heal).
    HoldSpentOnAnotherMember,
    /// The edges take in no report during the start-up grace: the graph
    /// starts from scratch when it ends.
    NoEdgesInGrace,
    /// A node recorded off that spoke again (alive after off) still gets
    /// leases (finding 6).
    LeaseToAliveAfterOff,
    /// A restarted arbiter ignores the stored off records (a fence
    /// confirmed just before it stopped is forgotten).
    ForgetOffRecords,
    /// Any agent instance reconnecting is taken for a rebooted node (the
    /// off record dropped, the node joining again).
    AnyInstanceIsAReboot,
    /// A new agent instance in the boot that was confirmed off is taken
    /// for a rebooted node (the boot id is not compared).
    IgnoreBootId,
    /// Only the last fence's agent is remembered, and only until the node
    /// comes back: a duplicate identity taken for the reboot washes out the
    /// record of the agent that was never switched off.
    ForgetFencedAgents,
    /// A verdict is taken while edges are still going down, on a graph
    /// half-way through one node's isolation.
    DecideOnHalfSettledEdges,
    /// An edge settles down by the clock alone, on the last report of a
    /// node whose reports stopped coming.
    SettleByClock,
    /// The hold waits for edges going down but not for a heal arriving
    /// (an edge just back up, or one side already reporting the other).
    DecideOnHalfHealedEdges,
    /// The hold does not wait for a young member's edges to be proven.
    DecideOnUnprovenEdges,
    /// Every new session of a node clears its edges, even the same agent
    /// reconnecting (so a node cut off from its peers that keeps
    /// reconnecting is never fenced).
    ForgetEdgesOnReconnect,
    /// A spent hold decides on the half-way graph it held, not on the
    /// graph as it is landing.
    ExpiredHoldDecidesOnHalfWayGraph,
    /// A break on its way that comes back before it settled is no heal:
    /// the hold does not wait for the node's other edges to come back.
    BreakComingBackIsNoHeal,
    /// A spell without quorum counts toward a hold: the hold is spent by
    /// the time quorum is back, and decides mid-heal.
    HoldOutlivesNoQuorum,
    /// Another process speaking as a node (a restarted agent, a duplicate
    /// identity) gets a lease at once, while the previous one may still
    /// hold one.
    LeaseToAnotherProcessAtOnce,
    /// A spent hold counts an edge down that is going down on two reports
    /// even when its break began after the hold did (a link flapping, a
    /// blip on the spent tick): a healthy node taken out.
    FlapLandsDown,
    /// A hold outlives an incident that healed before it was spent: the
    /// next incident inherits its age and decides on a half-way graph.
    HoldOutlivesItsIncident,
    /// A hold that resumed lands a break begun just before it resumed
    /// (a blip) down at once.
    ResumedHoldLandsBlips,
    /// The hold runs by the arbiter's clock alone: an unnoticed forward
    /// jump spends it before any report has seen it through.
    HoldByClockOnly,
    /// The lease bound leaves out an unnoticed forward jump of the
    /// arbiter's own clock (caught by a core test; the simulation has not
    /// reached it in 8,000 seeds).
    NoClockJumpInLeaseBound,
    /// A group's new holder may start it at once, without waiting for the
    /// previous holder to acknowledge its stop or be confirmed off.
    StartBeforeStopped,
    /// The watchdog rule counts a node fenced as soon as its leases ended,
    /// without waiting out its watchdog's timeout.
    WatchdogWithoutTimeout,
    /// The watchdog rule confirms a node that still speaks and reports a
    /// group not stopped past its watchdog's timeout.
    WatchdogBelievedOverReports,
    /// A member held out by maintenance stays an incumbent, and a candidate
    /// like any (review 20, finding 2).
    MaintenanceHeldStaysIncumbent,
    /// A held member whose maintenance ends is fenced at once, before its
    /// young session has proved its links (review 21, finding 1).
    HeldFencedWhileYoung,
    /// A held member whose proving window has run out is decided while
    /// still counted held (no candidate, no incumbent): left out by the
    /// very step that ends its hold, it is fenced on a verdict it never
    /// had a part in (seeds 1932 and 34362 of the simulation).
    DecidesOnStaleHold,
    /// The watchdog rule takes the word of any agent heard on the node,
    /// from any machine (a duplicate identity's watchdog vouches for the
    /// real node).
    WatchdogOfAnyBoot,
}

/// A verdict that drops a member held back while evidence still arrives
/// (see `decide`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    /// When it began, or last began to drop a member again after a step
    /// that dropped nobody (`idle`): breaks begun later are late.
    started: Duration,
    /// Since when it runs, moved on by every spell without quorum it
    /// paused for.
    since: Duration,
    /// Its last step (moved on likewise).
    last: Duration,
    /// Since when it has been paused (no quorum).
    paused: Option<Duration>,
    /// The members the verdict dropped when it began.
    drops: BTreeSet<NodeId>,
    /// Members earlier holds of this one's chain were for: a verdict that
    /// drops a member neither they nor this one were for starts a hold of
    /// its own, once per member, and only while the chain is younger than
    /// twice the bound plus `settle` and an interval (so it is bounded).
    renewed: BTreeSet<NodeId>,
    /// When the first hold of this chain began.
    chain_started: Duration,
    /// The verdict dropped nobody at some step since the last one held.
    idle: bool,
    /// Each live node's session and heartbeat number when the hold began
    /// (or when it was first seen live during it): see `held`.
    seqs: BTreeMap<NodeId, (Option<u64>, u64)>,
}

const GRACE: &str = "arbiter start-up grace period";
const NO_QUORATE_SET_HEARD: &str = "the arbiter hears no quorate set";
const NO_VERDICT: &str = "no quorate survivor set";
/// Lease refusals that mean "not decided yet" rather than "not you".
const UNDECIDED: [&str; 3] = [GRACE, NO_QUORATE_SET_HEARD, NO_VERDICT];

/// A read-only snapshot for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    pub epoch: u64,
    pub backed: BTreeSet<NodeId>,
    pub verdict: Option<BTreeSet<NodeId>>,
    pub fencing: BTreeSet<NodeId>,
    pub gone: BTreeSet<NodeId>,
    pub in_grace: bool,
    /// Is the arbiter hearing from a quorate set?
    pub in_contact: bool,
    /// Members given until this instant to come back before their silence
    /// counts (after start-up or a loss of contact).
    pub pending: BTreeSet<NodeId>,
    /// Critical alerts per node (alive after a confirmed fence).
    pub alerts: BTreeMap<NodeId, String>,
    /// Open intents for nodes no longer in the configuration.
    pub orphan_intents: BTreeMap<NodeId, u64>,
    pub total_votes: u64,
    pub arbiter_votes: u64,
    /// Every resource group: holder, state, since when.
    pub groups: Vec<GroupStatus>,
}

/// A gap in which the arbiter heard no node (see
/// `ArbiterCore::note_deaf_gap`): when it ended, the nodes heard just
/// before it, and those of them heard again since.
#[derive(Debug, Clone)]
struct DeafGap {
    started: Duration,
    ended: Duration,
    before: BTreeSet<NodeId>,
    back: BTreeSet<NodeId>,
}

/// The core of one cluster.
#[derive(Debug, Clone)]

pub struct ArbiterCore {
    spec: ClusterSpec,
    quorum: Quorum,
    /// No lease before this instant (start-up grace).
    ready_at: Duration,
    /// Nodes no longer configured that the store still has in its backed
    /// or gone set: written out of it when the grace is over.
    unconfigured: BTreeSet<NodeId>,
    grace: Duration,
    ready: bool,
    /// Every lease granted in an earlier life of the arbiter has ended by
    /// this instant (the first grace's end; moved by clock jumps).
    earlier_leases_end: Duration,
    /// Nodes off or gone that the watchdog rule counted fenced (durable).
    by_watchdog: BTreeSet<NodeId>,
    nodes: BTreeMap<NodeId, NodeView>,
    edges: Edges,
    epoch: u64,
    /// The backed survivor set of this epoch (durable).
    backed: BTreeSet<NodeId>,
    /// Nodes confirmed fenced and not yet rejoined (durable).
    gone: BTreeSet<NodeId>,
    /// The last verdict; `None` without quorum.
    verdict: Option<BTreeSet<NodeId>>,
    last_decision: Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    no_quorum_noticed: bool,
    storm_noticed: Option<BTreeSet<NodeId>>,
    /// Nodes in maintenance, and whether the whole cluster is (durable):
    /// no automatic fence of them; the members held out, as last told.
    maintenance: BTreeSet<NodeId>,
    maintenance_all: bool,
    maintenance_noticed: Option<BTreeSet<NodeId>>,
    /// Per held member, when its maintenance ended: it stays held for a
    /// proving window from then (a restart starts the window again).
    maintenance_ended: BTreeMap<NodeId, Duration>,
    /// Members outside the verdict that maintenance keeps from being
    /// fenced: no incumbents, back only where they fit (see `decide`).
    maintenance_held: BTreeSet<NodeId>,
    /// Since when the arbiter has heard from a quorate set without a break.
    contact_since: Option<Duration>,
    /// When the arbiter last heard a heartbeat from any node.
    last_any_heard: Option<Duration>,
    /// A gap in which the arbiter heard nobody, over but not confirmed yet.
    deaf_gap: Option<DeafGap>,
    /// Members whose silence a confirmed deaf gap excuses, until when.
    excused: BTreeMap<NodeId, Duration>,
    /// The last instant a storm was held: like a loss of contact, what
    /// happened before it is no evidence against anyone.
    storm_held_at: Option<Duration>,
    contact_noticed: bool,
    last_step: Option<Duration>,
    /// When the arbiter last came back from a stall (messages queued meanwhile
    /// are all taken up then).
    resumed_at: Duration,
    /// The highest epoch any agent reported.
    epoch_floor: u64,
    /// Intents recovered from the store, whose first level runs at the
    /// first tick.
    to_resume: Vec<NodeId>,
    /// Said once, at the first step (configuration changes).
    start_notices: Vec<Notice>,
    orphan_intents: BTreeMap<NodeId, u64>,
    next_intent: u64,
    next_attempt: u64,
    /// The hold (see `decide`).
    hold: Option<Hold>,
    /// Since when some live node has been suspect at every step.
    suspect_since: Option<Duration>,
    /// The last decision's inputs and result: the search runs only when
    /// the live nodes, their settled edges or the incumbents change.
    decision_cache: Option<(DecisionInput, Verdict)>,
    /// Where each resource group runs.
    placement: Placement,
    /// Nodes no longer configured that the store recorded off.
    removed_off: BTreeSet<NodeId>,
    mutant: Option<Mutant>,
}

type DecisionInput = (Vec<Candidate>, BTreeSet<(NodeId, NodeId)>, BTreeSet<NodeId>);

impl ArbiterCore {
    /// A core starting at `now` from durable state. It grants no lease
    /// until every lease it may have granted in an earlier life has expired,
    /// and decides nothing until every member had `lost_after` plus the
    /// reconnect allowance to come back.
    ///
    /// State naming nodes the configuration no longer has is reconciled
    /// here, with a notice each: they leave the backed and gone sets; an
    /// open intent for one is kept open in the store and reported.
    pub fn new(spec: ClusterSpec, persisted: Persisted, now: Duration) -> Self {
        Self::build(spec, persisted, now, None)
    }

    /// As [`ArbiterCore::new`], with one rule broken (checker tests only).
    #[doc(hidden)]
    pub fn with_mutant(
        spec: ClusterSpec,
        persisted: Persisted,
        now: Duration,
        mutant: Option<Mutant>,
    ) -> Self {
        Self::build(spec, persisted, now, mutant)
    }

    fn build(
        spec: ClusterSpec,
        persisted: Persisted,
        now: Duration,
        mutant: Option<Mutant>,
    ) -> Self {
        let votes = spec.nodes.values().map(|n| u64::from(n.votes)).sum();
        let quorum = Quorum::new(spec.quorum_mode, votes);
        let t = spec.timing;
        // Every lease of an earlier life has ended after `lease_max`; the
        // arbiter's own clock may also jump forward by up to `stall_after`
        // unnoticed (a longer jump restarts the grace).
        let grace = if mutant == Some(Mutant::ShortGrace) {
            t.lease / 2
        } else {
            t.lease_max() + t.stall_after()
        };
        let mut nodes: BTreeMap<NodeId, NodeView> = spec
            .nodes
            .keys()
            .map(|&id| (id, NodeView::default()))
            .collect();
        let mut start_notices = Vec::new();
        let removed = |set: &BTreeSet<NodeId>| -> BTreeSet<NodeId> {
            set.iter()
                .filter(|n| !spec.nodes.contains_key(n))
                .copied()
                .collect()
        };
        let (gone_removed, backed_removed) = (removed(&persisted.gone), removed(&persisted.backed));
        // A member removed from the configuration leaves the backed set
        // without a new epoch: a lease of the earlier life ridden out under
        // the old set (up to `ride_out_max` past the earlier life's last
        // grant) must end before anything is granted under the new one.
        let first_grant = if backed_removed.is_empty()
            || matches!(
                mutant,
                Some(Mutant::IgnoreRideOut | Mutant::GrantAtOnceAfterRemoval)
            ) {
            grace
        } else {
            grace + t.ride_out_max()
        };
        let removed_off: BTreeSet<NodeId> = gone_removed
            .iter()
            .copied()
            .chain(
                persisted
                    .off
                    .keys()
                    .copied()
                    .filter(|n| !spec.nodes.contains_key(n)),
            )
            .collect();
        if !backed_removed.is_empty() || !gone_removed.is_empty() {
            start_notices.push(Notice::ConfigChanged {
                detail: format!(
                    "nodes no longer configured leave the stored state: survivors {backed_removed:?}, gone {gone_removed:?}"
                ),
            });
        }
        let backed: BTreeSet<NodeId> = persisted
            .backed
            .difference(&backed_removed)
            .copied()
            .collect();
        let gone: BTreeSet<NodeId> = persisted.gone.difference(&gone_removed).copied().collect();
        for n in &backed {
            nodes.get_mut(n).expect("configured").phase = Phase::Member;
        }
        for n in &gone {
            nodes.get_mut(n).expect("configured").phase = Phase::Gone;
        }
        let mut next_attempt = 1;
        let mut to_resume = Vec::new();
        let mut orphan_intents = BTreeMap::new();
        for (&node, &intent) in &persisted.open_intents {
            match nodes.get_mut(&node) {
                Some(v) => {
                    next_attempt += 1;
                    let levels = spec.nodes[&node].fence_levels;
                    v.phase = Phase::Leaving(FenceJob::start(
                        node,
                        intent,
                        levels,
                        next_attempt,
                        now,
                        &t,
                    ));
                    to_resume.push(node);
                }
                None => {
                    orphan_intents.insert(node, intent);
                    start_notices.push(Notice::OrphanIntent { node, intent });
                }
            }
        }
        // Nodes confirmed off: a member among them was confirmed off after
        // the last epoch (survivors not told yet), so it is off again, and
        // the commit completes after the grace. The agent instance that ran
        // then is known, so if it speaks again it is alive after off.
        let forgotten = BTreeMap::new();
        let off_records = if mutant == Some(Mutant::ForgetOffRecords) {
            &forgotten
        } else {
            &persisted.off
        };
        let forgotten_agents = BTreeMap::new();
        let fenced_agents = if mutant == Some(Mutant::ForgetOffRecords) {
            &forgotten_agents
        } else {
            &persisted.fenced
        };
        for (node, agents) in fenced_agents {
            if let Some(v) = nodes.get_mut(node) {
                v.fenced = agents
                    .iter()
                    .map(|a| OffRecord::new(None, a.instance, a.boot, now))
                    .collect();
            }
        }
        for (node, &agent) in &persisted.agents {
            if let Some(v) = nodes.get_mut(node) {
                v.seen = Some(agent);
                v.boots_heard.insert(agent.boot);
                // The watchdog that agent reported armed, known since now.
                if let Some(w) = persisted.watchdogs.get(node)
                    && w.instance == agent.instance
                    && w.boot == agent.boot
                {
                    v.watchdog = Some((Duration::from_millis(w.timeout_ms), now));
                }
            }
        }
        for (&node, &instance) in off_records {
            let Some(v) = nodes.get_mut(&node) else {
                continue;
            };
            if matches!(v.phase, Phase::Member | Phase::Gone) {
                if v.phase == Phase::Member {
                    v.phase = Phase::Off;
                }
                let boot = v
                    .fenced
                    .iter()
                    .rev()
                    .find(|f| f.instance == (instance != 0).then_some(instance))
                    .and_then(|f| f.boot)
                    .unwrap_or(0);
                let off = OffRecord::new(None, instance, boot, now);
                // (A store written before the fenced agents were kept.)
                if v.fenced.is_empty() {
                    v.fenced.push(off.clone());
                }
                v.off = Some(off);
            }
        }
        // An "alive after off" alert stands until an operator clears it,
        // across restarts too (said again at start).
        let forgotten_alerts = BTreeMap::new();
        let alerts = if mutant == Some(Mutant::ForgetAlertsAcrossRestarts) {
            &forgotten_alerts
        } else {
            &persisted.alerts
        };
        // (Over a fence that was running too, as when the alert is raised:
        // its node spoke after off, so no fence of it is taken at its word
        // until an operator has cleared the alert.)
        for (&node, detail) in alerts {
            if let Some(v) = nodes.get_mut(&node) {
                v.phase = Phase::AliveAfterOff {
                    detail: detail.clone(),
                };
                start_notices.push(Notice::AliveAfterOff {
                    node,
                    detail: detail.clone(),
                });
            } else {
                // Kept (the node may be configured again, with the same
                // wrong outlet), and said at every start.
                start_notices.push(Notice::ConfigChanged {
                    detail: format!(
                        "node {node}, no longer configured, has an alive-after-off alert standing ({detail}); it is kept and stands again if the node is configured again"
                    ),
                });
            }
        }
        // Until the first decision, the last backed set stands (its members
        // may renew their leases once the grace is over); nodes leaving it
        // are not in it.
        // Members a maintenance hold kept out of the verdict stay out of it
        // (no lease) and no incumbents, as before the restart.
        let maintenance_held: BTreeSet<NodeId> = persisted
            .maintenance_held
            .iter()
            .copied()
            .filter(|n| spec.nodes.contains_key(n))
            .collect();
        let verdict = (!backed.is_empty()).then(|| {
            backed
                .iter()
                .filter(|n| nodes[n].phase == Phase::Member && !maintenance_held.contains(n))
                .copied()
                .collect()
        });
        // A store with no history (first start, or lost): groups without a
        // record may run anywhere they are allowed.
        let fresh =
            persisted.epoch == 0 && persisted.backed.is_empty() && persisted.groups.is_empty();
        let mut placement = Placement::new(spec.groups.clone(), &persisted.groups, fresh, now);
        if mutant == Some(Mutant::StartBeforeStopped) {
            placement.set_ignore_possible();
        }
        ArbiterCore {
            quorum,
            unconfigured: backed_removed.union(&gone_removed).copied().collect(),
            ready_at: now + first_grant,
            grace,
            ready: false,
            earlier_leases_end: now + grace,
            by_watchdog: persisted.by_watchdog.clone(),
            nodes,
            edges: Edges::new(
                mutant == Some(Mutant::BreakComingBackIsNoHeal),
                // (The two planted bugs before it take its later, second
                // defence out with them, so that what they break shows.)
                matches!(
                    mutant,
                    Some(
                        Mutant::NoReproveOnHeal
                            | Mutant::BreakComingBackIsNoHeal
                            | Mutant::ResumedHoldLandsBlips
                    )
                ),
                // Two reports proving an edge down again must be at least
                // half an interval apart (a burst of queued ones is not).
                spec.timing.heartbeat_interval / 2,
            )
            .with_no_young_heals(mutant == Some(Mutant::NoYoungHeals))
            .with_no_one_sided_heals(mutant == Some(Mutant::NoOneSidedHeals)),
            epoch: persisted.epoch,
            backed,
            gone,
            verdict,
            last_decision: None,
            no_quorum_noticed: false,
            storm_noticed: None,
            maintenance: persisted
                .maintenance
                .iter()
                .copied()
                .filter(|n| spec.nodes.contains_key(n))
                .collect(),
            maintenance_all: persisted.maintenance_all,
            maintenance_noticed: None,
            maintenance_ended: maintenance_held.iter().map(|&n| (n, now)).collect(),
            maintenance_held,
            contact_since: None,
            last_any_heard: None,
            deaf_gap: None,
            excused: BTreeMap::new(),
            storm_held_at: None,
            contact_noticed: false,
            // A first step long after construction is a stall like any.
            last_step: Some(now),
            resumed_at: now,
            epoch_floor: 0,
            to_resume,
            start_notices,
            orphan_intents,
            next_intent: persisted.next_intent.max(1),
            next_attempt,
            hold: None,
            suspect_since: None,
            decision_cache: None,
            placement,
            removed_off,
            mutant,
            spec,
        }
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.get(&id)
    }

    /// Whether the fence of `node` still waits for this level run (its
    /// intent is the node's open job, and `attempt` the run it waits for):
    /// a run the shell held back may have been overtaken meanwhile (the
    /// job timed it out, moved on, was confirmed by hand, or ended).
    pub fn awaits_level(&self, node: NodeId, intent: u64, attempt: u64) -> bool {
        matches!(
            self.nodes.get(&node).map(|v| &v.phase),
            Some(Phase::Leaving(job)) if job.intent == intent
                && matches!(job.state, JobState::Running { attempt: a, .. } if a == attempt)
        )
    }

    pub fn status(&self) -> CoreStatus {
        let phase_of = |f: fn(&Phase) -> bool| -> BTreeSet<NodeId> {
            self.nodes
                .iter()
                .filter(|(_, v)| f(&v.phase))
                .map(|(&id, _)| id)
                .collect()
        };
        CoreStatus {
            epoch: self.epoch,
            backed: self.backed.clone(),
            verdict: self.verdict.clone(),
            fencing: phase_of(|p| matches!(p, Phase::Leaving(_))),
            gone: self.gone.clone(),
            in_grace: !self.ready,
            in_contact: self.contact_since.is_some(),
            pending: self.pending(self.last_step.unwrap_or_default()),
            alerts: self
                .nodes
                .iter()
                .filter_map(|(&id, v)| match &v.phase {
                    Phase::AliveAfterOff { detail } => Some((id, detail.clone())),
                    _ => None,
                })
                .collect(),
            orphan_intents: self.orphan_intents.clone(),
            total_votes: self.quorum.total(),
            arbiter_votes: self.quorum.arbiter_votes,
            groups: self.placement.status(),
        }
    }

    /// Feed one event; returns the actions to execute in order.
    pub fn step(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out: Vec<Action> = std::mem::take(&mut self.start_notices)
            .into_iter()
            .map(Action::Notice)
            .collect();
        if let Some(last) = self.last_step {
            let gap = now.saturating_sub(last);
            if gap > self.spec.timing.stall_after()
                && self.mutant != Some(Mutant::NoRegraceAfterIsolation)
            {
                // The arbiter did not run: what it did not hear meanwhile
                // is no evidence against anyone.
                out.push(Action::Notice(Notice::Stalled { gap }));
                self.resumed_at = now;
                self.lose_contact(&mut out);
                if !self.ready {
                    // A clock that jumped may have cut the grace short (and
                    // a grace made longer to wait rides out moves with it).
                    self.ready_at = (now + self.grace).max(self.ready_at + gap);
                }
                // The gap may be a clock jump with no real time behind it:
                // every lease bound still to be waited out moves with it.
                for v in self.nodes.values_mut() {
                    for t in [
                        &mut v.lease_bound,
                        &mut v.no_lease_before,
                        &mut v.watchdog_deadline,
                        &mut v.ride_stopped,
                    ] {
                        if let Some(b) = t.as_mut()
                            && *b > last
                        {
                            *b += gap;
                        }
                    }
                }
                if self.earlier_leases_end > last {
                    self.earlier_leases_end += gap;
                }
            }
        }
        self.last_step = Some(now);
        match event {
            Event::Tick => self.tick(now, &mut out),
            Event::Connected {
                node,
                session,
                known_epoch,
                instance,
                boot,
            } => self.connected(now, node, session, known_epoch, (instance, boot), &mut out),
            Event::Watchdog {
                node,
                session,
                timeout,
            } => self.watchdog_reported(now, node, session, timeout, &mut out),
            Event::Disconnected { node, session } => {
                if let Some(v) = self.nodes.get_mut(&node)
                    && v.session == Some(session)
                {
                    v.connected = false;
                }
            }
            Event::Heartbeat {
                node,
                session,
                seq,
                sent_at_us,
                reachable,
                heuristics,
                known_epoch,
                applied_seq,
                groups,
                acked_seq,
                ridden,
            } => self.heartbeat(
                now,
                node,
                session,
                (seq, sent_at_us),
                reachable,
                heuristics,
                known_epoch,
                (applied_seq, groups),
                (acked_seq, ridden),
                &mut out,
            ),
            Event::Move { group, node } => {
                if self.check_move(&group, node).is_ok() {
                    let deltas = self.placement.move_group(now, &group, node);
                    out.extend(deltas.into_iter().map(Action::Persist));
                }
            }
            Event::FenceFinished {
                node,
                intent,
                level: _,
                attempt,
                outcome,
            } => self.fence_finished(now, node, intent, attempt, outcome, &mut out),
            Event::Clear { node } => self.clear(now, node, &mut out),
            Event::Operator { by, control } => self.operator(now, by, control, &mut out),
        }
        // Fence levels that are the watchdog rule run here, not in the
        // shell: route them, and settle those whose outcome is known.
        while self.route_watchdog_levels(now, &mut out) {}
        out
    }

    /// Refuse a Hello or heartbeat from `node` reporting `known_epoch`
    /// that is not well-formed (an unknown node, an epoch beyond any real
    /// one). True if refused. The only state a refused node changes is the
    /// epoch floor: a node removed from the configuration while it ran
    /// still holds the epoch it had, and the fencing token must not go
    /// back below it (say, after a lost store).
    fn refused(
        &mut self,
        node: NodeId,
        session: u64,
        known_epoch: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        let reason = if !self.nodes.contains_key(&node) {
            if known_epoch <= MAX_EPOCH {
                self.note_reported_epoch(node, known_epoch, out);
            }
            format!(
                "node {node} is not a member of cluster {:?}",
                self.spec.name
            )
        } else if known_epoch > MAX_EPOCH {
            format!("node {node} reports epoch {known_epoch}, beyond any real epoch ({MAX_EPOCH})")
        } else {
            return false;
        };
        out.push(Action::Refuse {
            node,
            session,
            reason,
        });
        true
    }

    /// Note the highest epoch an agent holds: a store that is behind it
    /// (lost, replaced) must never hand out a lower fencing token.
    fn note_reported_epoch(&mut self, node: NodeId, known_epoch: u64, out: &mut Vec<Action>) {
        if self.mutant == Some(Mutant::IgnoreReportedEpochs) {
            return;
        }
        if known_epoch > self.epoch && known_epoch > self.epoch_floor {
            self.epoch_floor = known_epoch;
            out.push(Action::Notice(Notice::EpochBehind {
                node,
                reported: known_epoch,
                stored: self.epoch,
            }));
        }
    }

    /// Persist an epoch above every epoch an agent reported (before any
    /// lease or announcement under it).
    fn raise_epoch_above_floor(&mut self, out: &mut Vec<Action>) {
        if self.epoch_floor >= self.epoch {
            self.epoch = self.epoch_floor + 1;
            out.push(Action::Persist(Delta::EpochRaised { epoch: self.epoch }));
        }
    }

    /// Is this a message from an agent (its session, its process or its
    /// boot) that ran when one of the node's fences was confirmed, arriving
    /// later than a message in flight could?
    fn speaks_after_off(
        &self,
        now: Duration,
        v: &NodeView,
        session: Option<u64>,
        instance: Option<u64>,
        boot: Option<u64>,
    ) -> bool {
        // A message sent before the node went off may still be in flight
        // (or queued): only one arriving later than a heartbeat interval
        // after the confirmation counts. Messages queued while the arbiter
        // stalled arrive at once when it resumes: only later ones count.
        let boot = if self.mutant == Some(Mutant::IgnoreBootId) {
            None
        } else {
            boot
        };
        let fenced: &[OffRecord] = if matches!(
            self.mutant,
            Some(Mutant::ForgetFencedAgents | Mutant::AnyInstanceIsAReboot)
        ) {
            &[]
        } else {
            &v.fenced
        };
        v.off.iter().chain(fenced).any(|off| {
            now > off.at.max(self.resumed_at) + self.spec.timing.heartbeat_interval
                && off.same_agent(session, instance, boot)
        })
    }

    fn alive_after_off(&mut self, node: NodeId, detail: String, out: &mut Vec<Action>) {
        let v = self.nodes.get_mut(&node).expect("known node");
        if matches!(v.phase, Phase::AliveAfterOff { .. }) {
            return;
        }
        v.phase = Phase::AliveAfterOff {
            detail: detail.clone(),
        };
        if self.mutant != Some(Mutant::ForgetAlertsAcrossRestarts) {
            out.push(Action::Persist(Delta::AliveAfterOff {
                node,
                detail: detail.clone(),
            }));
        }
        out.push(Action::Notice(Notice::AliveAfterOff { node, detail }));
    }

    fn connected(
        &mut self,
        now: Duration,
        node: NodeId,
        session: u64,
        known_epoch: u64,
        (instance, boot): (u64, u64),
        out: &mut Vec<Action>,
    ) {
        if self.refused(node, session, known_epoch, out) {
            return;
        }
        let v = &self.nodes[&node];
        let any_is_reboot = self.mutant == Some(Mutant::AnyInstanceIsAReboot);
        let (instance_is, boot_is) = (
            (instance != 0).then_some(instance),
            (boot != 0).then_some(boot),
        );
        if !any_is_reboot && self.speaks_after_off(now, v, None, instance_is, None) {
            self.alive_after_off(
                node,
                format!("its fence was confirmed, yet the same agent (instance {instance:#x}) opened a new session: wrong outlet or lying device"),
                out,
            );
        } else if !any_is_reboot && self.speaks_after_off(now, v, None, None, boot_is) {
            self.alive_after_off(
                node,
                format!("its fence was confirmed, yet its agent restarted in the same boot (boot id digest {boot:#x}): the machine was never switched off; wrong outlet or lying device"),
                out,
            );
        } else if any_is_reboot
            || v.off.as_ref().is_none_or(|o| {
                !o.same_agent(None, instance_is, boot_is)
                    || self.mutant == Some(Mutant::IgnoreBootId) && o.instance != instance_is
            })
        {
            // A new agent instance (or one never seen fenced): the node was
            // off and came back. It joins at once, even when its fence was
            // confirmed in this transition (it is still in the backed set
            // until the commit): it counts for contact and may be in the
            // next verdict, so survivors without quorum of their own can
            // complete the transition.
            let v = self.nodes.get_mut(&node).expect("known node");
            v.off = None;
            if matches!(v.phase, Phase::Gone | Phase::Off) {
                v.phase = Phase::Joining;
            }
        }
        // (The same instance within a heartbeat interval of its fence: a
        // Hello that was in flight. The off record stays; if that session
        // heartbeats later, it is alive after off.)
        // A node whose stop failed, where the watchdog rule is configured:
        // once its armed watchdog's timeout and margin have passed since
        // its last lease, its watchdog has reset it (it was not at rest),
        // whatever machine speaks now: the failed stop is over.
        let reset_by_watchdog = self.spec.nodes[&node].watchdog_level.is_some()
            && self.placement.untrusted(node)
            && self.watchdog_until(node).is_ok_and(|t| now >= t);
        // With ride-out, the instance heard last (in this life or an
        // earlier one) may be riding its lease out: any other waits until
        // that lease surely ended.
        let rider_bound = {
            let v = &self.nodes[&node];
            let rider = if v.instance != 0 {
                v.instance
            } else {
                v.seen.map_or(0, |a| a.instance)
            };
            if instance == 0 || instance != rider {
                self.lease_end_bound(node)
            } else {
                None
            }
        };
        let v = self.nodes.get_mut(&node).expect("known node");
        if v.session != Some(session) {
            v.session_since = now;
            // Another process claiming this node (a restarted agent, or a
            // duplicate identity) gets no lease while the previous one may
            // still hold one: never two holders for one node.
            let other = instance != v.instance || instance == 0;
            if other
                && v.lease_bound.is_some_and(|b| b > now)
                && self.mutant != Some(Mutant::LeaseToAnotherProcessAtOnce)
            {
                v.no_lease_before = v.lease_bound;
            }
            if let Some(b) = rider_bound.filter(|&b| b > now)
                && self.mutant != Some(Mutant::LeaseToAnotherProcessAtOnce)
            {
                v.no_lease_before = Some(v.no_lease_before.map_or(b, |t| t.max(b)));
            }
            // What its peers reported of a previous process is stale; the
            // same process reconnecting kept probing (and its peers kept
            // probing it), so its edges stand: a node cut off from its
            // peers does not clear its broken edges by reconnecting.
            if other {
                self.placement
                    .new_instance(node, (boot != 0 && boot == v.boot) || reset_by_watchdog);
                // Its watchdog, if any, is told right after (Hello).
                v.watchdog = None;
            }
            if other || self.mutant == Some(Mutant::ForgetEdgesOnReconnect) {
                self.edges.forget(node);
                v.probing_since = now;
            }
        }
        v.session = Some(session);
        v.instance = instance;
        v.boot = boot;
        v.boots_heard.insert(boot);
        v.connected = true;
        let agent = FencedAgent { instance, boot };
        if v.seen != Some(agent) {
            v.seen = Some(agent);
            if self.mutant != Some(Mutant::ForgetAgentsAcrossRestarts) {
                out.push(Action::Persist(Delta::AgentSeen {
                    node,
                    instance,
                    boot,
                }));
            }
        }
        v.last_seq = 0;
        v.known_epoch = v.known_epoch.max(known_epoch);
        self.note_reported_epoch(node, known_epoch, out);
    }

    /// Why `node` gets no lease now; `None`: it gets one.
    ///
    /// The refusals in [`UNDECIDED`] say the arbiter cannot decide yet: a
    /// lease an agent rides out stands through them.
    fn lease_refusal(&self, now: Duration, node: NodeId) -> Option<&'static str> {
        let v = &self.nodes[&node];
        let in_verdict = self.verdict.as_ref().is_some_and(|s| s.contains(&node));
        match &v.phase {
            _ if !self.ready => Some(GRACE),
            Phase::Leaving(_) if self.mutant == Some(Mutant::LeaseToFencingNode) => None,
            Phase::Leaving(_) => Some("node is being fenced"),
            Phase::Off | Phase::Gone => Some("node was fenced; it rejoins at the next epoch"),
            Phase::AliveAfterOff { .. } if self.mutant == Some(Mutant::LeaseToAliveAfterOff) => {
                None
            }
            Phase::AliveAfterOff { .. } => Some(
                "recorded off by its fence device, yet alive: wrong outlet or lying device; an operator must clear it",
            ),
            _ if self.placement.untrusted(node) => {
                Some("a resource of this node failed to stop; it is fenced")
            }
            _ if v.no_lease_before.is_some_and(|t| now < t) => {
                Some("another agent instance of this node may still hold a lease")
            }
            _ if self.contact_since.is_none() => Some(NO_QUORATE_SET_HEARD),
            _ if self.verdict.is_none() => Some(NO_VERDICT),
            Phase::Joining => Some("not in the backed survivor set"),
            Phase::Member if !in_verdict => Some("outside the current verdict"),
            Phase::Member => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn heartbeat(
        &mut self,
        now: Duration,
        node: NodeId,
        session: u64,
        (seq, sent_at_us): (u64, u64),
        reachable: Vec<NodeId>,
        heuristics: u32,
        known_epoch: u64,
        (applied_seq, groups): (u64, Vec<(String, RunState)>),
        (acked_seq, ridden): (u64, Duration),
        out: &mut Vec<Action>,
    ) {
        if self.refused(node, session, known_epoch, out) {
            return;
        }
        let v = &self.nodes[&node];
        if v.session != Some(session) {
            if self.speaks_after_off(now, v, Some(session), None, None) {
                self.alive_after_off(
                    node,
                    "its fence was confirmed, yet it still heartbeats on the session it had: wrong outlet or lying device".into(),
                    out,
                );
            }
            return; // a stale session
        }
        if seq <= v.last_seq {
            return; // replayed or reordered
        }
        // (Checked on the live session only: a stale one is dropped above,
        // whatever it reports.)
        if let Some(bad) = reachable.iter().find(|r| !self.nodes.contains_key(r)) {
            out.push(Action::Refuse {
                node,
                session,
                reason: format!(
                    "heartbeat from node {node} reports node {bad}, which cluster {:?} does not have",
                    self.spec.name
                ),
            });
            return;
        }
        if self.speaks_after_off(now, v, None, Some(v.instance), Some(v.boot)) {
            self.alive_after_off(
                node,
                "its fence was confirmed, yet the same agent heartbeats on a new session: wrong outlet or lying device".into(),
                out,
            );
        }
        // (Before `last_any_heard` moves: this report may end or confirm a
        // gap in which the arbiter heard nobody.)
        self.note_deaf_gap(now, node, out);
        self.last_any_heard = Some(now);
        let fresh = self.spec.timing.fresh_within();
        let v = self.nodes.get_mut(&node).expect("checked above");
        if v.last_heard.is_some_and(|h| now.saturating_sub(h) > fresh) {
            // Back from a silence (a freeze, a stalled link): what it and
            // its peers reported meanwhile reflects the silence, not a
            // broken link. Its edges hold for a probe window — once per
            // `lost_after + settle`, so a lossy link to the arbiter cannot
            // keep a node young (excused) for ever.
            v.session_since = now;
            if now.saturating_sub(v.probing_since)
                > self.spec.timing.lost_after + self.spec.timing.settle
            {
                v.probing_since = now;
            }
        }
        v.last_seq = seq;
        v.last_heard = Some(now);
        v.reach = reachable.into_iter().filter(|&r| r != node).collect();
        v.heuristics = heuristics;
        v.ridden = ridden;
        if known_epoch > v.known_epoch {
            v.known_epoch = known_epoch;
            if known_epoch == self.epoch {
                out.push(Action::Notice(Notice::EpochAcknowledged {
                    node,
                    epoch: known_epoch,
                }));
            }
        }
        self.note_reported_epoch(node, known_epoch, out);
        self.note_fence_news_received(now, node, session, acked_seq);
        // Another process of this node (restarted, or a duplicate) may still
        // hold a lease: its groups run until that lease ends, whatever
        // this one says of its own.
        let may_acknowledge = self.nodes[&node].no_lease_before.is_none_or(|t| now >= t);
        let (deltas, changed) =
            self.placement
                .report(node, session, applied_seq, &groups, may_acknowledge);
        out.extend(deltas.into_iter().map(Action::Persist));
        // No group may run on this node: agents of its other boots (a
        // reboot, or a clone) run nothing the watchdog must vouch for.
        let v = self.nodes.get_mut(&node).expect("checked above");
        if v.boots_heard.len() > 1 && self.placement.may_run(node).is_none() {
            let boot = v.boot;
            v.boots_heard.retain(|&b| b == boot);
        }
        out.extend(
            changed
                .into_iter()
                .map(|(group, state)| Action::Notice(Notice::GroupState { group, node, state })),
        );
        // This heartbeat is itself fresh contact: a lease it renews must not
        // wait for the next tick to see the arbiter hears a quorate set.
        self.update_contact(now, out);
        let reason = self.lease_refusal(now, node);
        if reason.is_none() {
            self.raise_epoch_above_floor(out);
        }
        let lease = reason.is_none().then_some(self.spec.timing.lease);
        // In this arbiter's clock, which may also have jumped forward by up
        // to `stall_after` unnoticed (as the start-up grace allows for):
        // waiting until the bound must outlast the lease in real time.
        let bound = if self.mutant == Some(Mutant::NoClockJumpInLeaseBound) {
            self.spec.timing.lease_max()
        } else {
            self.spec.timing.lease_max() + self.spec.timing.stall_after()
        };
        let v = self.nodes.get_mut(&node).expect("checked above");
        if lease.is_some() {
            v.lease_bound = Some(now + bound);
        }
        let mut gone = self.gone.clone();
        if self.mutant == Some(Mutant::GoneInAckBeforeConfirm) {
            gone.extend(self.status().fencing);
        }
        // Placements: chosen on what this heartbeat changed, and a start
        // persisted before the acknowledgement that allows it leaves.
        self.place(now, out);
        let (grants, deltas) = self.placement.grants(node, session, seq, lease.is_some());
        out.extend(deltas.into_iter().map(Action::Persist));
        let leaving = self.leaving_backed();
        // Ride-out bookkeeping (nothing to keep without a ride-out): which
        // fences this node was told of, and the peers a ride of the lease
        // granted now rests on (only their word stops it).
        if !self.spec.timing.ride_out.is_zero() {
            let v = self.nodes.get_mut(&node).expect("checked above");
            v.told_leaving
                .retain(|x, (s, _)| leaving.contains(x) && *s == session);
            for &x in leaving.iter().filter(|&&x| x != node) {
                v.told_leaving.entry(x).or_insert((session, seq));
            }
            if lease.is_some() {
                v.ride_stopped = None;
                v.granted(session, seq, &self.backed);
            }
        }
        out.push(Action::Ack {
            node,
            session,
            seq,
            sent_at_us,
            lease,
            epoch: self.epoch,
            backed: self.backed.clone(),
            gone,
            reason: reason.unwrap_or(""),
            grants,
            leaving,
            undecided: reason.is_some_and(|r| UNDECIDED.contains(&r)),
        });
    }

    /// Nodes of the backed set leaving it: a fence running, or confirmed
    /// and not yet announced (what agents must know to ride nothing out).
    fn leaving_backed(&self) -> BTreeSet<NodeId> {
        self.backed
            .iter()
            .filter(|n| {
                self.nodes.get(n).is_some_and(|v| {
                    matches!(
                        v.phase,
                        Phase::Leaving(_) | Phase::Off | Phase::AliveAfterOff { .. }
                    )
                })
            })
            .copied()
            .collect()
    }

    /// `node`'s agent received every acknowledgement up to `acked_seq` on
    /// `session`: each node it was told is leaving answers its probes
    /// "fence known" since, so no lease of that node is ridden out past
    /// now plus one lease (with the margins of `lease_bound`).
    fn note_fence_news_received(
        &mut self,
        now: Duration,
        node: NodeId,
        session: u64,
        acked_seq: u64,
    ) {
        if self.spec.timing.ride_out.is_zero() {
            return;
        }
        let Some(v) = self.nodes.get_mut(&node) else {
            return;
        };
        v.acked(session, acked_seq);
        let known: Vec<NodeId> = v
            .told_leaving
            .iter()
            .filter(|(_, (s, seq))| *s == session && acked_seq >= *seq)
            .map(|(&x, _)| x)
            .collect();
        let stop = now + self.spec.timing.lease_max() + self.spec.timing.stall_after();
        for x in known {
            // Only a peer the ride rests on (one of the survivor set of
            // the lease granted in this life) stops it by knowing.
            if let Some(w) = self.nodes.get_mut(&x)
                && w.lease_bound.is_some()
                && w.ride_peers().contains(&node)
            {
                w.ride_stopped = Some(w.ride_stopped.map_or(stop, |t| t.min(stop)));
            }
        }
    }

    /// The latest instant a lease of `node` may run, ridden out or not:
    /// its last grant's bound, or, with `ride_out`, that bound (or an
    /// earlier life's leases' end) plus the ride-out, unless a peer
    /// acknowledged its fence earlier (`ride_stopped`).
    fn lease_end_bound(&self, node: NodeId) -> Option<Duration> {
        let v = self.nodes.get(&node)?;
        let ride = self.spec.timing.ride_out_max();
        if ride.is_zero() || self.mutant == Some(Mutant::IgnoreRideOut) {
            return v.lease_bound;
        }
        let granted = v
            .lease_bound
            .unwrap_or_default()
            .max(self.earlier_leases_end);
        let capped = granted + ride;
        Some(
            v.ride_stopped
                .map_or(capped, |t| t.min(capped))
                .max(granted),
        )
    }

    fn fence_finished(
        &mut self,
        now: Duration,
        node: NodeId,
        intent: u64,
        attempt: u64,
        outcome: LevelOutcome,
        out: &mut Vec<Action>,
    ) {
        let Some(v) = self.nodes.get_mut(&node) else {
            return;
        };
        let Phase::Leaving(job) = &mut v.phase else {
            return;
        };
        if job.intent != intent || !job.is_current(attempt) {
            return; // a late result of a level already given up on
        }
        match outcome {
            LevelOutcome::ConfirmedOff => {
                self.confirmed_off(now, node, intent, ConfirmedBy::Devices, out)
            }
            LevelOutcome::Failed(detail) => {
                let level = match job.state {
                    JobState::Running { level, .. } => level,
                    JobState::Backoff { .. } => 0,
                };
                out.push(Action::Notice(Notice::FenceFailed {
                    node,
                    intent,
                    level,
                    detail: detail.clone(),
                }));
                job.note_error(now, &detail);
                self.next_attempt += 1;
                let step = job.level_failed(now, self.next_attempt, &self.spec.timing);
                job_step(now, job, step, detail, out);
            }
        }
    }

    /// A fence of `node` is confirmed: by its devices, or by the watchdog
    /// rule (`by_watchdog`: the node was reset, or its agent stands with
    /// every group stopped and no lease; either way it may still be heard,
    /// so no agent of it is recorded as one that must never speak again).
    fn confirmed_off(
        &mut self,
        now: Duration,
        node: NodeId,
        intent: u64,
        by: ConfirmedBy,
        out: &mut Vec<Action>,
    ) {
        let Some(v) = self.nodes.get_mut(&node) else {
            return;
        };
        let by_watchdog = by == ConfirmedBy::Watchdog;
        let operator = match by {
            ConfirmedBy::Operator(who) => Some(who),
            _ => None,
        };
        // The agent that ran: the one last heard, in this life of the
        // arbiter or an earlier one (a node being fenced is often cut off
        // and never speaks to a restarted arbiter). None by the watchdog.
        let agent = if by_watchdog {
            out.push(Action::Notice(Notice::WatchdogFenced { node, intent }));
            FencedAgent::default()
        } else {
            v.seen.unwrap_or_default()
        };
        out.push(Action::Persist(Delta::FenceConfirmed {
            intent,
            node,
            instance: agent.instance,
            boot: agent.boot,
            operator,
        }));
        if by_watchdog {
            out.push(Action::Persist(Delta::WatchdogFenced { node, intent }));
            self.by_watchdog.insert(node);
        }
        // The node is off: forget its session; it rejoins with a new one (a
        // new agent instance) once it is back.
        let session = if by_watchdog { None } else { v.session };
        let off = OffRecord::new(session, agent.instance, agent.boot, now);
        if !by_watchdog {
            v.fenced.push(off.clone());
            let extra = v
                .fenced
                .len()
                .saturating_sub(membership::FENCED_AGENTS_KEPT);
            v.fenced.drain(..extra);
        }
        v.off = Some(off);
        v.phase = Phase::Off;
        v.session = None;
        v.connected = false;
        v.last_heard = None;
        v.reach.clear();
        // Every process of it is off (or, by the watchdog, at rest).
        v.boots_heard.clear();
        self.placement.confirmed_off(node);
        // Complete the transition now rather than at the next tick.
        self.evaluate(now, out);
    }

    /// The nodes in `gone` (or off) that the watchdog rule counted fenced:
    /// acknowledgements and announcements say so, so that such a node,
    /// alive at rest, rejoins rather than stops.
    pub fn gone_by_watchdog(&self) -> &BTreeSet<NodeId> {
        &self.by_watchdog
    }

    /// The agent of `session` says which watchdog it holds armed.
    fn watchdog_reported(
        &mut self,
        now: Duration,
        node: NodeId,
        session: u64,
        timeout: Option<Duration>,
        out: &mut Vec<Action>,
    ) {
        let Some(v) = self.nodes.get_mut(&node) else {
            return;
        };
        if v.session != Some(session) || v.watchdog.map(|w| w.0) == timeout {
            return;
        }
        v.watchdog = timeout.map(|t| (t, now));
        out.push(Action::Persist(Delta::Watchdog {
            node,
            instance: v.instance,
            boot: v.boot,
            timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
        }));
        out.push(Action::Notice(Notice::Watchdog { node, timeout }));
    }

    /// When the watchdog rule counts `node` fenced, or why it cannot.
    fn watchdog_until(&self, node: NodeId) -> Result<Duration, String> {
        let v = &self.nodes[&node];
        let Some((timeout, known_since)) = v.watchdog else {
            return Err(format!(
                "node {node}'s agent reported no armed watchdog (or another agent instance claimed the node since)"
            ));
        };
        // The agent last heard, in this life or (stored) an earlier one.
        let boot = v.seen.map_or(0, |a| a.boot);
        if boot == 0
            || (v.boots_heard.iter().any(|&b| b != boot)
                && self.mutant != Some(Mutant::WatchdogOfAnyBoot))
        {
            return Err(format!(
                "agents of node {node} from another boot (or machine) were heard since it was last off; its watchdog vouches only for the machine it resets"
            ));
        }
        let mutant_short = self.mutant == Some(Mutant::WatchdogWithoutTimeout);
        // From when no lease of it can be running: its own, one of another
        // instance of it, and one of an earlier life of the arbiter.
        let leases_end = [self.lease_end_bound(node), v.no_lease_before]
            .into_iter()
            .flatten()
            .chain([known_since, self.earlier_leases_end])
            .max()
            .unwrap_or_default();
        if mutant_short {
            return Ok(leases_end);
        }
        Ok(leases_end + timeout + self.spec.timing.watchdog_margin(timeout))
    }

    /// Take fence levels that are the watchdog rule out of `out` (the shell
    /// has no device to run for them) and settle every job waiting at one.
    /// True if that changed `out` in a way that needs another pass.
    fn route_watchdog_levels(&mut self, now: Duration, out: &mut Vec<Action>) -> bool {
        let mut routed = Vec::new();
        out.retain(|a| match a {
            Action::Fence {
                node,
                intent,
                level,
                ..
            } if self.spec.nodes.get(node).and_then(|n| n.watchdog_level) == Some(*level) => {
                routed.push((*node, *intent));
                false
            }
            _ => true,
        });
        for &(node, intent) in &routed {
            if let Some(v) = self.nodes.get_mut(&node)
                && let Phase::Leaving(job) = &mut v.phase
            {
                // Settled below, however long the rule needs.
                job.without_deadline();
            }
            let until = self.watchdog_until(node).ok();
            if let Some(v) = self.nodes.get_mut(&node) {
                v.watchdog_deadline = until;
            }
            if let Some(until) = until {
                out.push(Action::Notice(Notice::WatchdogWait {
                    node,
                    intent,
                    until,
                }));
            }
        }
        let waiting: Vec<(NodeId, u64, u64)> = self
            .nodes
            .iter()
            .filter_map(|(&node, v)| match &v.phase {
                Phase::Leaving(job) => match job.state {
                    JobState::Running { level, attempt, .. }
                        if self.spec.nodes[&node].watchdog_level == Some(level) =>
                    {
                        Some((node, job.intent, attempt))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let before = out.len();
        for (node, intent, attempt) in waiting {
            // Never before the deadline set when the level began (a clock
            // jump since moved it; the bounds it was computed from may be
            // past, and not moved).
            let deadline = self.nodes[&node].watchdog_deadline;
            let until = self
                .watchdog_until(node)
                .map(|t| deadline.map_or(t, |d| d.max(t)));
            match until {
                Ok(until) if now >= until => {
                    // Still talking, and still running a group, past its
                    // watchdog's timeout: its watchdog did not reset it.
                    let v = &self.nodes[&node];
                    let talking = v.session.is_some()
                        && v.last_heard.is_some_and(|h| {
                            now.saturating_sub(h) <= self.spec.timing.fresh_within()
                        });
                    if let Some(group) = self.placement.may_run(node).filter(|_| talking)
                        && self.mutant != Some(Mutant::WatchdogBelievedOverReports)
                    {
                        let detail = format!(
                            "node {node} still speaks and may still run group {group:?} past its watchdog's timeout: its watchdog did not reset it (check the watchdog's action: reset, not none)"
                        );
                        self.fence_finished(
                            now,
                            node,
                            intent,
                            attempt,
                            LevelOutcome::Failed(detail),
                            out,
                        );
                        continue;
                    }
                    // (`waiting` holds only the current attempt of each job.)
                    self.confirmed_off(now, node, intent, ConfirmedBy::Watchdog, out);
                }
                Ok(_) => {}
                Err(detail) => {
                    self.fence_finished(
                        now,
                        node,
                        intent,
                        attempt,
                        LevelOutcome::Failed(detail),
                        out,
                    );
                }
            }
        }
        out.len() != before
    }

    /// An operator cleared the alert of a node that spoke after its fence
    /// was confirmed: it is fenced again if it is a member outside the
    /// verdict, or joins like any node.
    fn clear(&mut self, now: Duration, node: NodeId, out: &mut Vec<Action>) {
        let Some(v) = self.nodes.get_mut(&node) else {
            return;
        };
        if !matches!(v.phase, Phase::AliveAfterOff { .. }) {
            return;
        }
        v.off = None;
        v.fenced.clear();
        out.push(Action::Persist(Delta::AlertCleared { node }));
        v.phase = if self.backed.contains(&node) {
            Phase::Member
        } else {
            Phase::Joining
        };
        out.push(Action::Notice(Notice::AlertCleared { node }));
        self.evaluate(now, out);
    }

    fn lose_contact(&mut self, out: &mut Vec<Action>) {
        if self.contact_since.take().is_some() || !self.contact_noticed {
            self.contact_noticed = true;
            out.push(Action::Notice(Notice::ContactLost));
        }
    }

    /// Track whether the arbiter hears from a quorate set of candidates.
    fn update_contact(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.mutant == Some(Mutant::NoRegraceAfterIsolation) {
            self.contact_since.get_or_insert(Duration::ZERO);
            return;
        }
        let fresh = self.spec.timing.fresh_within();
        let votes: u64 = self
            .nodes
            .iter()
            .filter(|(_, v)| {
                v.phase.is_candidate()
                    && v.session.is_some()
                    && v.last_heard.is_some_and(|h| now.saturating_sub(h) <= fresh)
            })
            .map(|(id, _)| u64::from(self.spec.nodes[id].votes))
            .sum();
        let heard = votes > 0 && self.quorum.is_quorate(votes, true);
        match (heard, self.contact_since) {
            (true, None) => {
                self.contact_since = Some(now);
                // Reports from before the arbiter's own outage do not add
                // up with reports after it: an edge going down starts over,
                // and so does a hold.
                self.edges.restart_going_down(now);
                self.hold = None;
                let pending = self.pending(now);
                out.push(Action::Notice(Notice::ContactRegained { pending }));
            }
            (false, Some(_)) => self.lose_contact(out),
            _ => {}
        }
    }

    /// A gap of an interval and a quarter in which the arbiter heard no
    /// node at all, two or more having been heartbeating just before it
    /// (so one lost report of one of two is none): their
    /// silences began together, and the arbiter's own network (or host) is
    /// the likelier cause. How long the arbiter may go without hearing
    /// anyone before it asks.
    fn deaf_after(&self) -> Duration {
        let hb = self.spec.timing.heartbeat_interval;
        hb + hb / 4
    }

    /// The nodes heard within `deaf_after` before `last`.
    fn heard_before(&self, last: Duration) -> BTreeSet<NodeId> {
        let deaf_after = self.deaf_after();
        self.nodes
            .iter()
            .filter(|(_, v)| {
                v.last_heard
                    .is_some_and(|h| h <= last && last.saturating_sub(h) <= deaf_after)
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// Is a deaf gap in doubt: under way (nobody heard for `deaf_after`,
    /// two or more heard just before), or over but neither confirmed nor
    /// ruled out yet? No verdict is taken meanwhile (at most `lost_after`
    /// from the last report of a node heard before it).
    fn deaf_in_doubt(&self, now: Duration) -> bool {
        if self.mutant == Some(Mutant::NoDeafGaps) {
            return false;
        }
        let under_way = self.last_any_heard.is_some_and(|last| {
            now.saturating_sub(last) > self.deaf_after() && self.heard_before(last).len() >= 2
        });
        under_way
            || self
                .deaf_gap
                .as_ref()
                .is_some_and(|g| !self.ruled_out(g, now))
    }

    /// A gap is ruled out once every node heard before it and not since
    /// has been silent for `lost_after`: it died (or was cut) just before
    /// another's report went missing; there was no gap.
    fn ruled_out(&self, g: &DeafGap, now: Duration) -> bool {
        let lost_after = self.spec.timing.lost_after;
        g.before.difference(&g.back).all(|n| {
            self.nodes
                .get(n)
                .and_then(|v| v.last_heard)
                .is_none_or(|h| now.saturating_sub(h) > lost_after)
        })
    }

    /// A heartbeat from `node` at `now`, before it is recorded: does it end
    /// a gap in which the arbiter heard nobody, or confirm one? A gap is
    /// confirmed once two of the nodes heard just before it are heard
    /// again after it (a node that died just before the survivor's one
    /// report went missing is never heard again: no gap). Then each member
    /// heard just before it and not since is excused: `lost_after` plus the
    /// reconnect allowance from now before its silence counts (its session
    /// may have lapsed in the gap). A node silent for longer is not: a dead
    /// node's fence is put off only when it died within `deaf_after` of a
    /// gap. What the reports said across the gap does not
    /// add up either: edges going down start over, and so does a hold.
    fn note_deaf_gap(&mut self, now: Duration, node: NodeId, out: &mut Vec<Action>) {
        if self.mutant == Some(Mutant::NoDeafGaps) {
            return;
        }
        if self
            .deaf_gap
            .as_ref()
            .is_some_and(|g| self.ruled_out(g, now))
        {
            self.deaf_gap = None;
        }
        if self.deaf_gap.is_none()
            && let Some(last) = self.last_any_heard
            && now.saturating_sub(last) > self.deaf_after()
        {
            let before = self.heard_before(last);
            if before.len() >= 2 {
                self.deaf_gap = Some(DeafGap {
                    started: last,
                    ended: now,
                    before,
                    back: BTreeSet::new(),
                });
            }
        }
        let Some(g) = self.deaf_gap.as_mut() else {
            return;
        };
        if g.before.contains(&node) {
            g.back.insert(node);
        }
        if g.back.len() < 2 {
            return;
        }
        let g = self.deaf_gap.take().expect("checked above");
        let t = self.spec.timing;
        let until = now + t.lost_after + t.reconnect_allowance;
        let excused: BTreeSet<NodeId> = g
            .before
            .difference(&g.back)
            .copied()
            .filter(|id| {
                self.nodes.get(id).is_some_and(|v| {
                    v.phase == Phase::Member && v.last_heard.is_some_and(|h| h < g.ended)
                })
            })
            .collect();
        for &n in &excused {
            self.excused.insert(n, until);
        }
        self.edges.restart_going_down(now);
        self.hold = None;
        out.push(Action::Notice(Notice::DeafGap {
            gap: g.ended.saturating_sub(g.started),
            excused,
        }));
    }

    /// Members not alive whose silence does not count yet: not heard since
    /// contact (re)started, and within `lost_after + reconnect_allowance`
    /// of it. Without contact, every member not alive.
    ///
    /// Without any history (epoch 0: a first start, or a lost store) every
    /// configured node is waited for like a member (corosync's
    /// `wait_for_all`): each may hold a higher epoch to report.
    ///
    /// A storm hold counts like a loss of contact (the arbiter that lost
    /// most nodes at once is likely the one cut off), and a member whose
    /// new session opened less than `lost_after` ago is on its way back.
    fn pending(&self, now: Duration) -> BTreeSet<NodeId> {
        let t = self.spec.timing;
        let no_history = self.epoch == 0;
        let since = self
            .contact_since
            .map(|c| c.max(self.storm_held_at.unwrap_or_default()));
        self.nodes
            .iter()
            .filter(|(_, v)| {
                (v.phase == Phase::Member || (no_history && v.phase == Phase::Joining))
                    && !v.is_alive(now, t.lost_after)
            })
            .filter(|(id, v)| match since {
                // Excused by a deaf gap (see `note_deaf_gap`).
                _ if self.excused.get(id).is_some_and(|&until| now < until) => true,
                None => true,
                Some(since) => {
                    let reconnecting =
                        v.session.is_some() && now.saturating_sub(v.session_since) < t.lost_after;
                    reconnecting
                        || (v.last_heard.is_none_or(|h| h < since)
                            && now < since + t.lost_after + t.reconnect_allowance)
                }
            })
            .map(|(&id, _)| id)
            .collect()
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        // Resume intents recovered from the store: fencing is always safe.
        for node in std::mem::take(&mut self.to_resume) {
            if let Phase::Leaving(job) = &self.nodes[&node].phase
                && let JobState::Running { attempt, .. } = job.state
            {
                out.push(Action::Fence {
                    node,
                    intent: job.intent,
                    level: 0,
                    attempt,
                });
            }
        }
        // Fence timers.
        let timing = self.spec.timing;
        for (&node, v) in self.nodes.iter_mut() {
            let Phase::Leaving(job) = &mut v.phase else {
                continue;
            };
            let attempt = self.next_attempt + 1;
            if let Some(step) = job.on_tick(now, attempt, &timing) {
                self.next_attempt = attempt;
                let intent = job.intent;
                if matches!(step, JobStep::RoundFailed { .. }) {
                    out.push(Action::Notice(Notice::FenceFailed {
                        node,
                        intent,
                        level: job.levels - 1,
                        detail: "no result within the fence timeout".into(),
                    }));
                }
                job_step(now, job, step, "fence level timed out".into(), out);
            }
        }
        // Liveness notices.
        for (&id, v) in self.nodes.iter_mut() {
            let alive = v.is_alive(now, timing.lost_after);
            if alive != v.alive {
                v.alive = alive;
                out.push(Action::Notice(if alive {
                    Notice::NodeAlive { node: id }
                } else {
                    Notice::NodeLost { node: id }
                }));
            }
        }
        self.update_contact(now, out);
        if !self.ready && now >= self.ready_at {
            self.ready = true;
            out.push(Action::Notice(Notice::GraceOver));
            // Every lease of the earlier life has ended: the removal of
            // nodes no longer configured is made durable.
            let unconfigured = std::mem::take(&mut self.unconfigured);
            if !unconfigured.is_empty() {
                out.push(Action::Persist(Delta::Unconfigured {
                    nodes: unconfigured,
                }));
            }
            let configured: BTreeSet<NodeId> = self.spec.nodes.keys().copied().collect();
            let (deltas, dropped, kept) = self
                .placement
                .forget_unconfigured(&configured, &self.removed_off);
            out.extend(deltas.into_iter().map(Action::Persist));
            if !dropped.is_empty() {
                out.push(Action::Notice(Notice::ConfigChanged {
                    detail: format!(
                        "nodes {dropped:?}, no longer configured and recorded off, run no resource group"
                    ),
                }));
            }
            if !kept.is_empty() {
                out.push(Action::Notice(Notice::ConfigChanged {
                    detail: format!(
                        "nodes {kept:?}, no longer configured, may still run resource groups (their agents learn none to stop): those groups wait; configure the nodes again, or power them off and `fencectl confirm` them, to release them"
                    ),
                }));
            }
        }
        // (In the grace too: the edges take in the reports; nothing is
        // decided before it ends.)
        self.evaluate(now, out);
        self.place(now, out);
    }

    /// The members a resource group may be placed on: in the verdict and
    /// the backed set, members, given a lease now.
    fn group_candidates(&self, now: Duration) -> BTreeSet<NodeId> {
        let Some(verdict) = &self.verdict else {
            return BTreeSet::new();
        };
        verdict
            .iter()
            .filter(|n| self.backed.contains(n))
            .filter(|n| self.nodes[n].phase == Phase::Member)
            .filter(|&&n| self.lease_refusal(now, n).is_none())
            .copied()
            .collect()
    }

    /// Place the resource groups (only while a verdict stands: without
    /// one, nobody's placement changes).
    fn place(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.placement.is_empty() || self.verdict.is_none() {
            return;
        }
        let candidates = self.group_candidates(now);
        // A node confirmed off leaves `possible` once every lease it held
        // has ended too (belt and braces: a lying device cannot make two
        // runners).
        let ends: BTreeMap<NodeId, Option<Duration>> = self
            .nodes
            .keys()
            .map(|&n| (n, self.lease_end_bound(n)))
            .collect();
        let nodes = &self.nodes;
        let cleared = |n: NodeId| {
            nodes.get(&n).is_some_and(|v| {
                matches!(v.phase, Phase::Off | Phase::Gone)
                    && ends.get(&n).copied().flatten().is_none_or(|b| b <= now)
            })
        };
        let deltas = self.placement.place(now, &candidates, cleared);
        out.extend(deltas.into_iter().map(Action::Persist));
    }

    /// Check an operator's move of `group` to `node`.
    pub fn check_move(&self, group: &str, node: NodeId) -> Result<(), String> {
        let now = self.last_step.unwrap_or_default();
        self.placement
            .check_move(group, node, &self.group_candidates(now))
    }

    /// Decide, start the fences the verdict needs, commit what is done.
    fn evaluate(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.release_proven_holds(now, out);
        let Some(verdict) = self.decide(now, out) else {
            return;
        };
        if self.start_fences(now, &verdict, out) {
            self.commit(now, &verdict, out);
        }
    }

    /// The verdict, if one may be taken now; `None` holds the last one.
    fn decide(&mut self, now: Duration, out: &mut Vec<Action>) -> Option<BTreeSet<NodeId>> {
        if self.contact_since.is_none()
            || (!self.ready && self.mutant == Some(Mutant::NoEdgesInGrace))
        {
            return None;
        }
        let t = self.spec.timing;
        let fencing_counts = self.mutant == Some(Mutant::CandidatesIncludeFencing);
        let candidate =
            |p: &Phase| p.is_candidate() || (fencing_counts && matches!(p, Phase::Leaving(_)));
        // A joiner whose session is younger than the agents' probe window
        // has not reported its peers yet: it is no candidate until it has
        // (else a just-rebooted node could be the whole verdict and shoot
        // every member).
        let probe_window = t.heartbeat_interval * 3;
        let alive: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, v)| candidate(&v.phase) && v.is_alive(now, t.lost_after))
            // A node that reported a failed stop cannot be trusted: it
            // leaves the verdict and is fenced.
            .filter(|(id, _)| !self.placement.untrusted(**id))
            .filter(|(_, v)| {
                v.phase != Phase::Joining || now.saturating_sub(v.probing_since) >= probe_window
            })
            .map(|(&id, _)| id)
            .collect();
        // Suspect: a live node silent longer than `fresh_within` has a stale
        // report; deciding on it could let a stale clique outvote fresh
        // nodes. Pending: a member still within its reconnect allowance.
        let suspect = alive.iter().any(|id| {
            self.nodes[id]
                .last_heard
                .is_some_and(|h| now.saturating_sub(h) > t.fresh_within())
        });
        // A member held out by maintenance (it would be fenced) is no
        // incumbent: like a node being fenced, it must never flip the
        // verdict onto its side; it comes back only where it fits with
        // every member of the verdict (below).
        let incumbents: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, _)| {
                !self.maintenance_held.contains(id)
                    || self.mutant == Some(Mutant::MaintenanceHeldStaysIncumbent)
            })
            .filter(|(_, v)| {
                v.phase == Phase::Member || (fencing_counts && matches!(v.phase, Phase::Leaving(_)))
            })
            .map(|(&id, _)| id)
            .collect();
        // A member's new session (or one back from a silence) has not
        // probed its peers yet: for three heartbeat intervals (the agents'
        // probe window) its edges hold.
        let young: BTreeSet<NodeId> = alive
            .iter()
            .filter(|id| {
                now.saturating_sub(self.nodes[id].probing_since) < t.heartbeat_interval * 3
            })
            .copied()
            .collect();
        let edges = self.edges.update(
            now,
            t.settle,
            self.mutant == Some(Mutant::SettleByClock),
            &young,
            &alive,
            &incumbents,
            &self.nodes,
        );
        // (The edges take in every report first, even when nothing may be
        // decided: a good report must reset an edge going down.) A suspect
        // blocks for at most `lost_after` on end: nodes late by turns (each
        // still alive) must not keep a dead node's fence waiting for ever;
        // by then every report in play is younger than `lost_after`.
        let blocked = if suspect {
            let since = *self.suspect_since.get_or_insert(now);
            now.saturating_sub(since) <= t.lost_after
        } else {
            self.suspect_since = None;
            false
        };
        // (The start-up grace, too, comes after the edges: what the nodes
        // report meanwhile is evidence, and a graph started from scratch
        // when the grace ends would take a heal arriving then for breaks.)
        if !self.ready || blocked || self.deaf_in_doubt(now) || !self.pending(now).is_empty() {
            return None;
        }
        // A cluster forming (no member yet) waits for its edges to settle
        // rather than back whoever settled first: nobody runs meanwhile.
        if incumbents.is_empty() && self.edges.settling() {
            return None;
        }
        let held_out = self.mutant != Some(Mutant::MaintenanceHeldStaysIncumbent);
        let in_maintenance: Vec<NodeId> = alive
            .iter()
            .copied()
            .filter(|id| held_out && self.maintenance_held.contains(id))
            .collect();
        let held_edges = (!in_maintenance.is_empty()).then(|| edges.clone());
        let candidates: Vec<Candidate> = alive
            .iter()
            .filter(|id| !in_maintenance.contains(id))
            .map(|&id| {
                let s = &self.spec.nodes[&id];
                Candidate {
                    id,
                    votes: s.votes,
                    priority: s.priority,
                    heuristics: self.nodes[&id].heuristics,
                }
            })
            .collect();
        let input = (candidates, edges, incumbents);
        let decided = match &self.decision_cache {
            Some((i, v)) if *i == input => v.clone(),
            _ => {
                let v = decide::decide_with_incumbents(
                    &input.0,
                    &input.1,
                    &input.2,
                    &self.quorum,
                    self.spec.tie_breaker,
                );
                self.decision_cache = Some((input, v.clone()));
                v
            }
        };
        // Members held out by maintenance rejoin the verdict only where
        // they fit with all of it: they never cost anyone a place.
        let decided = match (decided, held_edges) {
            (Verdict::Survivors(mut s), Some(edges)) => {
                for h in in_maintenance {
                    if s.iter().all(|&m| edges.contains(&(m.min(h), m.max(h)))) {
                        s.insert(h);
                    }
                }
                Verdict::Survivors(s)
            }
            (v, _) => v,
        };
        // (The set is built only when a hold begins or resumes; every
        // other step asks `drops`, on the heartbeat path, without one.)
        let dropped = |verdict: &BTreeSet<NodeId>, nodes: &BTreeMap<NodeId, NodeView>| {
            nodes
                .iter()
                .filter(|(id, v)| v.phase == Phase::Member && !verdict.contains(id))
                .map(|(&id, _)| id)
                .collect::<BTreeSet<NodeId>>()
        };
        let drops = |verdict: &BTreeSet<NodeId>, nodes: &BTreeMap<NodeId, NodeView>| {
            nodes
                .iter()
                .any(|(id, v)| v.phase == Phase::Member && !verdict.contains(id))
        };
        let verdict = match decided {
            Verdict::Survivors(s) => {
                self.no_quorum_noticed = false;
                // Quorum is back: a paused hold runs on, its time moved on
                // by the pause (only time with quorum counts, and a long
                // spell without it does not expire the hold) — if it still
                // holds the same members out; otherwise this is another
                // incident, with a hold of its own.
                if let Some(h) = self.hold.as_mut()
                    && let Some(paused) = h.paused.take()
                {
                    let d = now.saturating_sub(paused);
                    h.since += d;
                    h.last += d;
                    if dropped(&s, &self.nodes) != h.drops {
                        self.hold = None;
                    }
                }
                s
            }
            Verdict::NoQuorum { best } => {
                if !self.no_quorum_noticed {
                    self.no_quorum_noticed = true;
                    out.push(Action::Notice(Notice::NoQuorum { best }));
                }
                self.verdict = None;
                // A spell without quorum pauses the hold: it runs on once
                // quorum is back (above). Time without quorum is no
                // evidence landing, and a hold spent meanwhile would decide
                // at once on whatever arrives first when quorum is back.
                if self.mutant != Some(Mutant::HoldOutlivesNoQuorum)
                    && let Some(h) = self.hold.as_mut()
                {
                    h.paused.get_or_insert(now);
                }
                return None;
            }
        };
        // The hold. A verdict that drops a member is taken on evidence
        // still arriving while:
        // - a joiner's edges are still settling (it may reach them all a
        //   moment later);
        // - edges going down, or reported up by one side only, would save
        //   a member it drops once landed: the links of one node cut from
        //   its peers do not all settle at the same instant, and in between
        //   the graph can tie another, healthy node against it (found end
        //   to end under load);
        // - an edge came back up within `settle`: a heal reaches the
        //   arbiter one report at a time, and in between the graph can
        //   leave out a node that is whole again a moment later;
        // - an edge counts up only on a young session's silence.
        let mut verdict = verdict;
        let bound = t.settle + t.heartbeat_interval * 3;
        if self
            .hold
            .as_ref()
            .is_some_and(|h| now.saturating_sub(h.last) > bound)
        {
            self.hold = None;
        }
        if drops(&verdict, &self.nodes) && self.mutant != Some(Mutant::DecideOnHalfSettledEdges) {
            let healing = self.mutant != Some(Mutant::DecideOnHalfHealedEdges)
                && self.edges.came_up_within(now, t.settle);
            let unproven =
                self.mutant != Some(Mutant::DecideOnUnprovenEdges) && self.edges.unproven();
            if self.edges.settling() || healing || unproven || self.saved_once_settled(&verdict) {
                // Bounded: a young session proves itself within three
                // heartbeats, an edge going down settles within `settle`.
                // The hold runs from its first step and ends only after a
                // whole bound without a reason, so neither a flapping link
                // nor verdicts taking turns can postpone a fence for ever.
                let fresh = |renewed: BTreeSet<NodeId>, chain_started: Duration| Hold {
                    started: now,
                    since: now,
                    last: now,
                    paused: None,
                    drops: dropped(&verdict, &self.nodes),
                    idle: false,
                    seqs: BTreeMap::new(),
                    renewed,
                    chain_started,
                };
                let chain_cap = bound * 2 + t.settle + t.heartbeat_interval;
                // A member this hold was not for (nor any before it in its
                // chain): the evidence against it is arriving now, and a
                // hold spent on another member's incident must not decide
                // on it mid-way (a heal landing on a spent hold fenced a
                // healthy node).
                if let Some(h) = self.hold.as_ref()
                    && self.mutant != Some(Mutant::HoldSpentOnAnotherMember)
                    && now.saturating_sub(h.chain_started) < chain_cap
                    && self.nodes.iter().any(|(id, v)| {
                        v.phase == Phase::Member
                            && !verdict.contains(id)
                            && !h.drops.contains(id)
                            && !h.renewed.contains(id)
                    })
                {
                    let renewed = h.renewed.union(&h.drops).copied().collect();
                    self.hold = Some(fresh(renewed, h.chain_started));
                }
                let h = self.hold.get_or_insert_with(|| fresh(BTreeSet::new(), now));
                h.last = now;
                if h.idle {
                    // Dropping a member again after a step that dropped
                    // nobody (a heal, then perhaps another incident): only
                    // breaks from now on are late, and the graph as it
                    // stands may decide no sooner than it would for a hold
                    // of its own (an old hold's age must not spend it at
                    // once, on a half-way graph).
                    h.idle = false;
                    h.started = now;
                }
                let (since, started) = (h.since, h.started);
                let held = if self.mutant == Some(Mutant::HoldByClockOnly) {
                    now.saturating_sub(since)
                } else {
                    held(h, &self.nodes, &alive, now, t.heartbeat_interval)
                };
                if held < bound {
                    return None;
                }
                // Spent: decide on the graph as it is landing (every edge
                // going down counted down), never on the half-way one —
                // while that graph stays unclear for up to another
                // `settle` and interval (links that flap out of phase keep
                // it unclear for ever): then on the graph as it stands.
                // A hold that resumed (its incident healed, then a member
                // dropped again) is spent at once by its age: for `settle`
                // and an interval after it resumed, every break on its way
                // is unsure (a blip begun just before counts neither way),
                // and an unclear landing waits — but not past twice the
                // bound and the fallback, so a link flapping in step with
                // the heartbeats cannot postpone a fence for ever.
                // (A new hold is never spent that soon: only a resumed one.)
                let resuming = now.saturating_sub(started) < t.settle + t.heartbeat_interval
                    && self.mutant != Some(Mutant::ResumedHoldLandsBlips);
                if self.mutant != Some(Mutant::ExpiredHoldDecidesOnHalfWayGraph) {
                    match self.landed_verdict(now, started, resuming) {
                        Some(v) => verdict = v,
                        None if held < bound + t.settle + t.heartbeat_interval
                            || (resuming && held < bound * 2 + t.settle + t.heartbeat_interval) =>
                        {
                            return None;
                        }
                        None => {}
                    }
                }
                // Decided: the next incident gets a hold of its own.
                self.hold = None;
            }
        } else if !drops(&verdict, &self.nodes)
            && self.mutant != Some(Mutant::HoldOutlivesItsIncident)
            && let Some(h) = self.hold.as_mut()
        {
            // The incident healed before its hold was spent. If the
            // verdict drops a member again, the hold runs on (a link back
            // for one report in four must not postpone a fence for ever),
            // but what it lands on starts over (below).
            h.idle = true;
        }
        self.verdict = Some(verdict.clone());
        let leaving: BTreeSet<NodeId> = self.backed.difference(&verdict).copied().collect();
        let decision = (verdict.clone(), leaving.clone());
        if self.last_decision.as_ref() != Some(&decision)
            && (verdict != self.backed || !leaving.is_empty())
        {
            out.push(Action::Notice(Notice::Decision {
                survivors: verdict.clone(),
                leaving,
            }));
        }
        self.last_decision = Some(decision);
        Some(verdict)
    }

    /// The verdict on the graph as it is landing, if it is clear: every
    /// edge going down on two reports or more counted down (one lost report
    /// is no break); an edge one side has reported up and the other down
    /// for less than `settle` is a heal or a break on its way, no telling
    /// which (the peer that notices a break last may speak after the cut
    /// node): the verdict must come out the same either way, else `None`
    /// (wait: such an edge resolves within `settle`). `None` too without
    /// quorum: nobody is fenced.
    fn landed_verdict(
        &self,
        now: Duration,
        started: Duration,
        every_break_unsure: bool,
    ) -> Option<BTreeSet<NodeId>> {
        let ((candidates, edges, incumbents), _) = self.decision_cache.as_ref()?;
        let t = self.spec.timing;
        let mut unsure = self.edges.half_up_within(now, t.settle);
        let breaking = self.edges.going_down_on_reports(t.heartbeat_interval / 2);
        // A break that began after the hold did is no part of what it held
        // for: a link flapping, or a blip on the spent tick, as likely as a
        // break. Such an edge is unsure too (it settles or comes back
        // within `settle`).
        // (One lost report is no break either way: still counted up.)
        let late: BTreeSet<(NodeId, NodeId)> = if self.mutant == Some(Mutant::FlapLandsDown) {
            BTreeSet::new()
        } else if every_break_unsure {
            breaking.clone()
        } else {
            self.edges
                .going_down_since(started)
                .intersection(&breaking)
                .copied()
                .collect()
        };
        let breaking: BTreeSet<(NodeId, NodeId)> = breaking.difference(&late).copied().collect();
        unsure.extend(late);
        unsure.extend(self.reproving());
        let down: BTreeSet<(NodeId, NodeId)> = edges
            .difference(&breaking)
            .filter(|e| !unsure.contains(e))
            .copied()
            .collect();
        let up: BTreeSet<(NodeId, NodeId)> = down.union(&unsure).copied().collect();
        let verdict = |landed: &BTreeSet<(NodeId, NodeId)>| match decide::decide_with_incumbents(
            candidates,
            landed,
            incumbents,
            &self.quorum,
            self.spec.tie_breaker,
        ) {
            Verdict::Survivors(v) => Some(v),
            Verdict::NoQuorum { .. } => None,
        };
        let either = verdict(&down)?;
        (unsure.is_empty() || verdict(&up)? == either).then_some(either)
    }

    /// Edges down on a proof from before the arbiter's own outage, not
    /// proven again since: a heal during the outage reaches the arbiter one
    /// report at a time, so they count as on their way either way.
    fn reproving(&self) -> BTreeSet<(NodeId, NodeId)> {
        if self.mutant == Some(Mutant::DownEdgesOutliveTheOutage) {
            return BTreeSet::new();
        }
        self.edges.reproving()
    }

    /// Would a member this verdict drops be kept once the changes in
    /// flight have landed: every edge going down settled down, and every
    /// edge only one side reports up either up (a heal arriving) or down
    /// (a break arriving: one side notices before the other)?
    fn saved_once_settled(&self, verdict: &BTreeSet<NodeId>) -> bool {
        let going = self.edges.going_down();
        let Some(((candidates, edges, incumbents), _)) = &self.decision_cache else {
            return false;
        };
        let mut half_up = if self.mutant == Some(Mutant::DecideOnHalfHealedEdges) {
            BTreeSet::new()
        } else {
            self.edges.half_up()
        };
        half_up.extend(self.reproving());
        if going.is_empty() && half_up.is_empty() {
            return false;
        }
        // (A half-up edge still counted up is going down, so `settled`
        // is also the graph with every half-up edge down.)
        let settled: BTreeSet<(NodeId, NodeId)> = edges.difference(&going).copied().collect();
        let healed: BTreeSet<(NodeId, NodeId)> = settled.union(&half_up).copied().collect();
        [settled, healed].iter().any(|landed| {
            let kept = match decide::decide_with_incumbents(
                candidates,
                landed,
                incumbents,
                &self.quorum,
                self.spec.tie_breaker,
            ) {
                Verdict::Survivors(kept) => Some(kept),
                // Without quorum once landed, the arbiter would fence nobody.
                Verdict::NoQuorum { .. } => None,
            };
            self.nodes.iter().any(|(id, v)| {
                v.phase == Phase::Member
                    && !verdict.contains(id)
                    && kept.as_ref().is_none_or(|k| k.contains(id))
            })
        })
    }

    /// Fence every member outside the verdict (intent persisted first),
    /// unless the transition is a storm. Returns whether it may commit.
    fn start_fences(
        &mut self,
        now: Duration,
        verdict: &BTreeSet<NodeId>,
        out: &mut Vec<Action>,
    ) -> bool {
        let leaving: BTreeSet<NodeId> = self.backed.difference(verdict).copied().collect();
        let mut to_start: Vec<NodeId> = leaving
            .iter()
            .filter(|n| self.nodes[n].phase == Phase::Member)
            .copied()
            .collect();
        // A node not in the survivor set whose resource failed to stop (a
        // clean-up at its agent's start, say) cannot be trusted either:
        // it is fenced too — a fault it reported itself, not a storm.
        let mut untrusted: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, v)| v.phase == Phase::Joining && self.placement.untrusted(**id))
            .map(|(&id, _)| id)
            .collect();
        // Maintenance: a node that would be fenced is reported, not shot,
        // and the transition waits (nothing commits without its fence).
        // A node held out until now whose maintenance ended stays held for
        // a proving window from that end (the agents' probe window, then
        // `settle`): a node back from its planned reboot reports no peer
        // yet, and a link healed a moment ago is not proven up yet; ending
        // maintenance then must not shoot it. After that it is decided:
        // back in the verdict where it fits with every member, else
        // fenced. (Bounded from the end itself: new sessions of the node,
        // or more "maintenance off", do not stretch it.)
        let held: BTreeSet<NodeId> = to_start
            .iter()
            .chain(&untrusted)
            .filter(|n| self.still_held(**n, now))
            .copied()
            .collect();
        // Held members are no incumbents (`decide`): that must survive a
        // restart, or a held member would flip the verdict onto its side.
        if held != self.maintenance_held {
            out.push(Action::Persist(Delta::MaintenanceHeld {
                nodes: held.clone(),
            }));
        }
        self.maintenance_ended.retain(|n, _| held.contains(n));
        self.maintenance_held = held.clone();
        if !held.is_empty() {
            to_start.retain(|n| !held.contains(n));
            untrusted.retain(|n| !held.contains(n));
            if self.maintenance_noticed.as_ref() != Some(&held) {
                self.maintenance_noticed = Some(held.clone());
                out.push(Action::Notice(Notice::MaintenanceHold {
                    nodes: held.clone(),
                }));
            }
        } else {
            self.maintenance_noticed = None;
        }
        if to_start.is_empty() && untrusted.is_empty() {
            return held.is_empty();
        }
        // Every node leaving in this transition counts, fenced or not: a
        // storm arriving one node at a time is still a storm.
        if leaving.len() > self.spec.storm_limit {
            self.storm_held_at = Some(now);
            if self.storm_noticed.as_ref() != Some(&leaving) {
                self.storm_noticed = Some(leaving.clone());
                out.push(Action::Notice(Notice::StormHold { leaving }));
            }
            return false;
        }
        let members = to_start.len();
        to_start.extend(untrusted);
        for (k, node) in to_start.into_iter().enumerate() {
            let intent = self.next_intent;
            self.next_intent += 1;
            self.next_attempt += 1;
            let reason = if k < members && !self.placement.untrusted(node) {
                format!("left the survivor set; verdict {verdict:?}")
            } else if k < members {
                format!("a resource failed to stop on it; verdict {verdict:?}")
            } else {
                "a resource failed to stop on it (not a member)".to_string()
            };
            let persist = Action::Persist(Delta::FenceIntent {
                intent,
                node,
                reason,
            });
            self.by_watchdog.remove(&node);
            let fence = Action::Fence {
                node,
                intent,
                level: 0,
                attempt: self.next_attempt,
            };
            if self.mutant == Some(Mutant::FenceBeforeIntent) {
                out.extend([fence, persist]);
            } else {
                out.extend([persist, fence]);
            }
            let levels = self.spec.nodes[&node].fence_levels;
            self.nodes.get_mut(&node).expect("configured").phase = Phase::Leaving(FenceJob::start(
                node,
                intent,
                levels,
                self.next_attempt,
                now,
                &self.spec.timing,
            ));
        }
        false
    }

    /// Back the verdict under a new epoch once no fence runs and every node
    /// leaving is confirmed off; tell the survivors who is gone.
    fn commit(&mut self, now: Duration, verdict: &BTreeSet<NodeId>, out: &mut Vec<Action>) {
        let any_running = self
            .nodes
            .values()
            .any(|v| matches!(v.phase, Phase::Leaving(_)));
        // A member joining again is one confirmed off and rebooted since
        // (its old instance is off): it has left too. A member recorded
        // off that spoke again (alive after off) has not: survivors take
        // over only after a fence that holds, so the transition waits for
        // an operator (`fencectl clear`, then a real fence).
        let left = |v: &NodeView| matches!(v.phase, Phase::Off | Phase::Joining);
        let all_off = self
            .backed
            .difference(verdict)
            .all(|n| left(&self.nodes[n]));
        let off: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, v)| {
                v.phase == Phase::Off
                    || (left(v) && self.backed.contains(id) && !verdict.contains(id))
            })
            .map(|(&id, _)| id)
            .collect();
        let admits = verdict
            .iter()
            .any(|n| self.nodes[n].phase == Phase::Joining);
        if any_running || !all_off || (*verdict == self.backed && off.is_empty() && !admits) {
            return;
        }
        // Belt and braces: survivors take over only once every lease the
        // fenced nodes held has ended too, so even a device that lied (a
        // wrong outlet) cannot make two holders.
        if off
            .iter()
            .any(|&n| self.lease_end_bound(n).is_some_and(|b| b > now))
        {
            return;
        }
        self.epoch = self.epoch.max(self.epoch_floor) + 1;
        let mut gone: BTreeSet<NodeId> = self.gone.union(&off).copied().collect();
        gone.retain(|n| !verdict.contains(n));
        self.by_watchdog.retain(|n| gone.contains(n));
        self.gone = gone;
        self.backed = verdict.clone();
        for (id, v) in self.nodes.iter_mut() {
            v.phase = match v.phase {
                // (A node rebooted since is `Joining` already.)
                Phase::Off => Phase::Gone,
                Phase::Joining if verdict.contains(id) => Phase::Member,
                _ => continue,
            };
        }
        self.storm_noticed = None;
        out.push(Action::Persist(Delta::Backed {
            epoch: self.epoch,
            survivors: self.backed.clone(),
            gone: self.gone.clone(),
        }));
        out.push(Action::Announce {
            to: self.backed.clone(),
            epoch: self.epoch,
            survivors: self.backed.clone(),
            gone: off,
        });
    }
}

/// How long `hold` has run: by the arbiter's clock since `hold.since`, and
/// no longer than the intervals the heartbeats some node of `alive` has
/// sent since it began prove (by their sequence numbers, so lost ones
/// count). A clock that jumped forward by less than a stall must not spend
/// a hold that no report has seen through. (Some node, not every node: one
/// that keeps opening new sessions must not keep a hold from ending.)
fn held(
    hold: &mut Hold,
    nodes: &BTreeMap<NodeId, NodeView>,
    alive: &BTreeSet<NodeId>,
    now: Duration,
    interval: Duration,
) -> Duration {
    let mut beats = 0;
    for id in alive {
        let v = &nodes[id];
        if v.last_seq == 0 {
            continue; // no heartbeat on this session yet
        }
        let start = hold.seqs.entry(*id).or_insert((v.session, v.last_seq));
        if start.0 != v.session || start.1 > v.last_seq {
            // A new session counts from its first heartbeat seen (the
            // agent numbers on from its previous session).
            *start = (v.session, v.last_seq);
        }
        beats = beats.max(v.last_seq - start.1);
    }
    // The heartbeat counted from may have been sent up to an interval
    // before the hold began: `beats` heartbeats since prove `beats - 1`.
    let proven =
        interval.saturating_mul(u32::try_from(beats.saturating_sub(1)).unwrap_or(u32::MAX));
    now.saturating_sub(hold.since).min(proven)
}

fn job_step(now: Duration, job: &FenceJob, step: JobStep, detail: String, out: &mut Vec<Action>) {
    let (node, intent) = (job.node, job.intent);
    match step {
        JobStep::RunLevel { level, attempt } => out.push(Action::Fence {
            node,
            intent,
            level,
            attempt,
        }),
        JobStep::RoundFailed { retry_at } => {
            let detail = format!("every fence level failed; last: {detail}");
            out.push(Action::Persist(Delta::FenceAttemptFailed {
                intent,
                node,
                detail: detail.clone(),
            }));
            out.push(Action::Notice(Notice::FenceRoundFailed {
                node,
                intent,
                rounds: job.rounds_failed,
                retry_in: retry_at.saturating_sub(now),
                detail,
            }));
        }
        JobStep::Wait => {}
    }
}

#[cfg(test)]
mod heal_arrival_tests;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod off_record_tests;
#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod review10_tests;
#[cfg(test)]
mod review11_tests;
#[cfg(test)]
mod review12_tests;
#[cfg(test)]
mod review13_tests;
#[cfg(test)]
mod review14_tests;
#[cfg(test)]
mod review15_tests;
#[cfg(test)]
mod review16_tests;
#[cfg(test)]
mod review17_tests;
#[cfg(test)]
mod review18_tests;
#[cfg(test)]
mod review19_tests;
#[cfg(test)]
mod review20_tests;
#[cfg(test)]
mod review21_tests;
#[cfg(test)]
mod review2_tests;
#[cfg(test)]
mod review3_tests;
#[cfg(test)]
mod review4_tests;
#[cfg(test)]
mod review5_tests;
#[cfg(test)]
mod review6_tests;
#[cfg(test)]
mod review7_tests;
#[cfg(test)]
mod review8_tests;
#[cfg(test)]
mod review9_tests;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod ride_out_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod watchdog_tests;
