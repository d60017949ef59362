//! Deterministic simulation of whole clusters.
//!
//! The real cores (`arbiter::core::ArbiterCore`, `agent::lease::LeaseKeeper`)
//! run against a fake clock and a simulated network ([`network`]) with
//! symmetric, one-way and flapping splits, node crashes, freezes, message
//! loss, duplication and reordering, arbiter crashes (also in the middle of
//! an action batch) and restarts from the persisted state, and a simulated
//! power device whose levels fail or hang. After every event the
//! [`checker`] verifies the safety invariants of DESIGN.md; a final
//! fault-free phase checks that the cluster recovers (liveness).
//!
//! Everything is drawn from one seeded ChaCha RNG and one event queue
//! ordered by (time, sequence number), so a seed replays exactly.
//!
//! The peer-probe and session logic of the agent shell is modelled here
//! (connect, reconnect after 3 heartbeat intervals without an answer, probe
//! every peer every interval, report peers answered within 3 intervals):
//! the daemon does the same over gRPC.

pub mod checker;
pub mod network;
pub mod peer_graph;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use agent::groups::{GroupInput, GroupKeeper, GroupOutput, GroupRun};
use agent::lease::{Input, LeaseKeeper, Output, PeerReport, RideMutant};
use agent::watchdog::{Rule as WatchdogRule, Step as WatchdogStep};
use arbiter::core::{
    Action, ArbiterCore, ClusterSpec, Event, GroupSpec, LevelOutcome, Mutant as CoreMutant, NodeId,
    NodeSpec, Notice, Persisted, Quorum, QuorumMode, RunState, TieBreaker, Timing,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use checker::Checker;
use network::{ARBITER, Delivery, Endpoint, Network};

/// A rule broken on purpose, to show the checker is not blind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// Tell survivors a node is gone as soon as its fence starts.
    AnnounceAtFenceStart,
    /// The power device reports "off" without switching anything off.
    LyingDevice,
    /// The agent feeds its watchdog only while it holds a lease (sbd's
    /// rule without "at rest"): an arbiter outage resets healthy nodes.
    WatchdogFedOnlyWithLease,
    /// A rule of the arbiter's core broken (see `arbiter::core::Mutant`).
    Core(CoreMutant),
    /// A rule of the agents' ride-out broken (see `agent::lease::RideMutant`).
    Ride(RideMutant),
}

impl Mutant {
    /// Every mutant, by the name the `sim` binary takes.
    pub const ALL: [(&'static str, Mutant); 46] = [
        ("ride-without-cap", Mutant::Ride(RideMutant::NoCap)),
        (
            "ride-on-own-probes",
            Mutant::Ride(RideMutant::IgnorePeerReach),
        ),
        (
            "ride-beside-an-arbiter",
            Mutant::Ride(RideMutant::IgnoreArbiterContact),
        ),
        (
            "ride-through-a-fence",
            Mutant::Ride(RideMutant::IgnoreFence),
        ),
        ("ignore-ride-out", Mutant::Core(CoreMutant::IgnoreRideOut)),
        ("announce-at-fence-start", Mutant::AnnounceAtFenceStart),
        ("lying-device", Mutant::LyingDevice),
        (
            "lease-to-fencing-node",
            Mutant::Core(CoreMutant::LeaseToFencingNode),
        ),
        ("short-grace", Mutant::Core(CoreMutant::ShortGrace)),
        (
            "gone-in-ack-before-confirm",
            Mutant::Core(CoreMutant::GoneInAckBeforeConfirm),
        ),
        (
            "fence-before-intent",
            Mutant::Core(CoreMutant::FenceBeforeIntent),
        ),
        (
            "candidates-include-fencing",
            Mutant::Core(CoreMutant::CandidatesIncludeFencing),
        ),
        (
            "no-regrace-after-isolation",
            Mutant::Core(CoreMutant::NoRegraceAfterIsolation),
        ),
        (
            "ignore-reported-epochs",
            Mutant::Core(CoreMutant::IgnoreReportedEpochs),
        ),
        (
            "lease-to-alive-after-off",
            Mutant::Core(CoreMutant::LeaseToAliveAfterOff),
        ),
        (
            "forget-off-records",
            Mutant::Core(CoreMutant::ForgetOffRecords),
        ),
        (
            "any-instance-is-a-reboot",
            Mutant::Core(CoreMutant::AnyInstanceIsAReboot),
        ),
        ("ignore-boot-id", Mutant::Core(CoreMutant::IgnoreBootId)),
        (
            "forget-fenced-agents",
            Mutant::Core(CoreMutant::ForgetFencedAgents),
        ),
        (
            "decide-on-half-settled-edges",
            Mutant::Core(CoreMutant::DecideOnHalfSettledEdges),
        ),
        ("settle-by-clock", Mutant::Core(CoreMutant::SettleByClock)),
        (
            "expired-hold-decides-on-half-way-graph",
            Mutant::Core(CoreMutant::ExpiredHoldDecidesOnHalfWayGraph),
        ),
        (
            "decide-on-half-healed-edges",
            Mutant::Core(CoreMutant::DecideOnHalfHealedEdges),
        ),
        (
            "decide-on-unproven-edges",
            Mutant::Core(CoreMutant::DecideOnUnprovenEdges),
        ),
        (
            "break-coming-back-is-no-heal",
            Mutant::Core(CoreMutant::BreakComingBackIsNoHeal),
        ),
        (
            "hold-outlives-no-quorum",
            Mutant::Core(CoreMutant::HoldOutlivesNoQuorum),
        ),
        (
            "hold-by-clock-only",
            Mutant::Core(CoreMutant::HoldByClockOnly),
        ),
        ("flap-lands-down", Mutant::Core(CoreMutant::FlapLandsDown)),
        (
            "hold-outlives-its-incident",
            Mutant::Core(CoreMutant::HoldOutlivesItsIncident),
        ),
        (
            "resumed-hold-lands-blips",
            Mutant::Core(CoreMutant::ResumedHoldLandsBlips),
        ),
        (
            "lease-to-another-process-at-once",
            Mutant::Core(CoreMutant::LeaseToAnotherProcessAtOnce),
        ),
        (
            "no-edges-in-grace",
            Mutant::Core(CoreMutant::NoEdgesInGrace),
        ),
        (
            "down-edges-outlive-the-outage",
            Mutant::Core(CoreMutant::DownEdgesOutliveTheOutage),
        ),
        (
            "forget-agents-across-restarts",
            Mutant::Core(CoreMutant::ForgetAgentsAcrossRestarts),
        ),
        (
            "hold-spent-on-another-member",
            Mutant::Core(CoreMutant::HoldSpentOnAnotherMember),
        ),
        (
            "no-reprove-on-heal",
            Mutant::Core(CoreMutant::NoReproveOnHeal),
        ),
        ("no-young-heals", Mutant::Core(CoreMutant::NoYoungHeals)),
        ("no-deaf-gaps", Mutant::Core(CoreMutant::NoDeafGaps)),
        (
            "no-one-sided-heals",
            Mutant::Core(CoreMutant::NoOneSidedHeals),
        ),
        (
            "start-before-stopped",
            Mutant::Core(CoreMutant::StartBeforeStopped),
        ),
        (
            "watchdog-without-timeout",
            Mutant::Core(CoreMutant::WatchdogWithoutTimeout),
        ),
        (
            "watchdog-of-any-boot",
            Mutant::Core(CoreMutant::WatchdogOfAnyBoot),
        ),
        (
            "watchdog-fed-only-with-lease",
            Mutant::WatchdogFedOnlyWithLease,
        ),
        (
            "maintenance-held-stays-incumbent",
            Mutant::Core(CoreMutant::MaintenanceHeldStaysIncumbent),
        ),
        (
            "held-fenced-while-young",
            Mutant::Core(CoreMutant::HeldFencedWhileYoung),
        ),
        (
            "decides-on-stale-hold",
            Mutant::Core(CoreMutant::DecidesOnStaleHold),
        ),
    ];

    pub fn by_name(name: &str) -> Option<Mutant> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }
}

/// A narrower mix of faults, to reach one kind of scenario often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// Links between nodes cut while heuristics flap and fence devices are
    /// slow: a verdict that flips during a fence.
    FlipDuringSlowFence,
    /// The arbiter cut off from every node, or stalled, and healed.
    ArbiterOutages,
    /// Every fence device wired to an unused outlet: every node the arbiter
    /// fences keeps running.
    WrongOutlets,
    /// Arbiter outages of every length (cut off, stalled, crashed) with
    /// agents riding their leases out, and partitions, crashes and freezes
    /// of nodes during them.
    RideOut,
    /// Nodes cut off from every peer (still reaching the arbiter), single
    /// links cut, one way or flapping, and heals: the links of one node do
    /// not all settle at the same instant.
    PeerCuts,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub mutant: Option<Mutant>,
    pub focus: Option<Focus>,
    pub verbose: bool,
    /// Simulated time with faults, then without.
    pub chaos: Duration,
    pub liveness: Duration,
    /// Faults added after the regression seeds were recorded: the
    /// configuration changed across an arbiter restart (votes, priority,
    /// fence levels, a node added or removed) and a fence device wired to
    /// the wrong outlet. They draw from their own random stream, so a seed
    /// that meets none of them runs as it did before.
    pub config_faults: bool,
    /// A node cut off from every peer while it still reaches the arbiter
    /// (the case an end-to-end test found: the arbiter must fence that
    /// node, not a peer whose link to it happened to settle first). Its own
    /// random stream too, added after the configuration faults.
    pub peer_cuts: bool,
    /// A second process speaking as one node for a while (a cloned
    /// machine or a copied certificate: a duplicate identity), on another
    /// host that every link reaches. Its own random stream too, added after
    /// the peer cuts; never with a `focus`.
    pub duplicates: bool,
    /// Hardware watchdogs on some nodes, a `watchdog` fence level after
    /// their devices, devices that fail more, and stops that hang on those
    /// nodes after a lease ends. Its own random stream, added after the
    /// duplicates.
    pub watchdogs: bool,
    /// An operator who switches maintenance on and off (per node and for
    /// the whole cluster) during the chaos, in a quarter of the runs, and
    /// ends every maintenance when the chaos ends. Its own random stream,
    /// added after the watchdogs.
    pub operator: bool,
    /// Agents that ride their leases out on the whole mesh while no
    /// arbiter grants one (`Timing::ride_out` of 0.4 s to 1.5 s), in half
    /// the runs; its own random stream, added after the operator. With a
    /// ride-out mutant or `Focus::ArbiterOutages`, in every run.
    pub ride_out: bool,
}

impl Options {
    pub fn new(seed: u64) -> Self {
        Options {
            seed,
            mutant: None,
            focus: None,
            verbose: false,
            chaos: Duration::from_secs(4),
            liveness: Duration::from_secs(6),
            config_faults: true,
            peer_cuts: true,
            duplicates: true,
            watchdogs: true,
            operator: true,
            ride_out: true,
        }
    }
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    pub at_us: u64,
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} violated `{}` at t={:.3}s: {}\n  replay: cargo run --release -p tests --bin sim -- --replay {} --verbose",
            self.seed,
            self.rule,
            self.at_us as f64 / 1e6,
            self.detail,
            self.seed
        )
    }
}

/// What one run did (to see the scenarios are not empty).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: u32,
    pub events: u64,
    pub fences_confirmed: u64,
    pub final_epoch: u64,
    pub arbiter_restarts: u32,
    pub faults: u32,
    /// Configuration changes applied at an arbiter restart.
    pub config_changes: u32,
    /// Fences confirmed by a device wired to the wrong outlet while the
    /// node ran on.
    pub confirmed_but_alive: u32,
    /// "Alive after off" alerts the arbiter raised.
    pub alive_after_off_alerts: u32,
    /// Second processes that spoke as a node (duplicate identities).
    pub duplicate_identities: u32,
    /// Fences the availability rule could not judge (too many nodes in
    /// doubt): the checker's blind spot.
    pub unjudged_fences: u32,
    /// Machines reset by their watchdog.
    pub watchdog_resets: u32,
    /// Nodes the arbiter counted fenced by the watchdog rule.
    pub watchdog_fences: u32,
    /// Maintenance switched on or off by the operator (accepted).
    pub maintenance_controls: u32,
    /// Transitions a maintenance held (a node reported, not fenced).
    pub maintenance_holds: u32,
    /// Leases agents began to ride out past their grant, and the longest
    /// ride (ms).
    pub ride_outs: u32,
    pub longest_ride_ms: u64,
}

/// A machine's hardware watchdog.
#[derive(Debug, Clone)]
struct MachineWatchdog {
    timeout: Duration,
    /// Its timer runs this much slower than real time (ppm, at least 1e6).
    rate_ppm: u64,
    /// Last fed (or armed), real time; `None`: not counting.
    fed_us: Option<u64>,
    /// A `WatchdogCheck` is scheduled.
    check_pending: bool,
}

impl MachineWatchdog {
    fn fires_at(&self) -> Option<u64> {
        let t = u128::from(self.timeout.as_micros() as u64) * u128::from(self.rate_ppm) / 1_000_000;
        self.fed_us.map(|f| f + t as u64)
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Connect {
        node: NodeId,
        session: u64,
        known_epoch: u64,
        instance: u64,
        boot: u64,
        watchdog_ms: u64,
    },
    Heartbeat {
        node: NodeId,
        session: u64,
        seq: u64,
        sent_at_us: u64,
        reach: Vec<NodeId>,
        heuristics: u32,
        known_epoch: u64,
        applied_seq: u64,
        groups: Vec<(String, RunState)>,
        watchdog_ms: u64,
        acked_seq: u64,
        ridden: Duration,
    },
    Welcome {
        session: u64,
        epoch: u64,
        peers: BTreeSet<NodeId>,
    },
    Ack {
        session: u64,
        seq: u64,
        lease: Option<Duration>,
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
        grants: Vec<(String, bool)>,
        /// The nodes of `gone` the watchdog rule counted fenced.
        by_watchdog: BTreeSet<NodeId>,
        leaving: BTreeSet<NodeId>,
        undecided: bool,
    },
    Announce {
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
        by_watchdog: BTreeSet<NodeId>,
    },
    Probe {
        from: NodeId,
        seq: u64,
        /// The prober's clock when it sent the probe (echoed).
        sent_at: Duration,
    },
    ProbeReply {
        from: NodeId,
        sent_at: Duration,
        /// What the answering agent says of itself (for riding out).
        epoch: u64,
        reaches: BTreeSet<NodeId>,
        fence_known: bool,
        arbiter_contact: bool,
    },
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        to: Endpoint,
        from: Endpoint,
        msg: Msg,
    },
    ArbiterTick {
        inc: u32,
    },
    /// An agent's timer; `node` is its endpoint (a clone's is not the
    /// node it speaks as).
    AgentTick {
        node: Endpoint,
        inc: u32,
    },
    /// A second process starts speaking as `node` (a duplicate identity).
    CloneStart {
        node: NodeId,
    },
    CloneStop {
        node: NodeId,
    },
    Fault,
    DeviceDone {
        node: NodeId,
        intent: u64,
        level: usize,
        attempt: u64,
        inc: u32,
        ok: bool,
        /// The store generation the fence was ordered under.
        generation: u64,
    },
    PowerOn {
        node: NodeId,
    },
    /// An operator clears a node's "alive after off" alert.
    OperatorClear {
        node: NodeId,
    },
    /// The operator switches maintenance on or off.
    OperatorMaintenance {
        node: Option<NodeId>,
        on: bool,
    },
    AgentRestart {
        node: NodeId,
    },
    /// A resource group's start or stop finished on `node` (agent `inc`).
    GroupDone {
        node: NodeId,
        inc: u32,
        group: String,
        start: bool,
        ok: bool,
    },
    Unfreeze {
        node: NodeId,
    },
    /// A machine's watchdog may have run out.
    WatchdogCheck {
        node: NodeId,
    },
    ArbiterRestart,
    /// End an isolation of the arbiter from every node.
    HealArbiter,
    /// A node's heuristics score changes (flapping heuristics).
    Heuristics {
        node: NodeId,
        score: u32,
        left: u32,
    },
    Flap {
        from: Endpoint,
        to: Endpoint,
        left: u32,
    },
    EndChaos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Running,
    Frozen,
    /// Process died; power still on (the arbiter must fence it).
    Crashed,
    /// Powered off by the device.
    Off,
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub(crate) state: AgentState,
    inc: u32,
    /// Its machine's boot (new at every power-on, kept by an agent
    /// restart), as the kernel's boot id would be.
    pub(crate) boot: u64,
    pub(crate) keeper: LeaseKeeper,
    session: Option<u64>,
    welcomed: bool,
    next_session: u64,
    connect_retry_at: Duration,
    last_from_arbiter: Duration,
    probe_ok: BTreeMap<NodeId, Duration>,
    probe_seq: u64,
    next_probe: Duration,
    offset_us: u64,
    /// Clock rate in parts per million of real time.
    rate_ppm: u64,
    heuristics: u32,
    /// Real time before which the agent opens no session (a slow
    /// reconnect).
    connect_after_us: u64,
    /// The peers the arbiter named in its last welcome: the agent probes
    /// these and reports only these.
    peers: BTreeSet<NodeId>,
    /// The agent's resource groups (the real core).
    pub(crate) groups: GroupKeeper,
    /// Its watchdog's timeout and the agent's rule (the real one), where
    /// the machine has one.
    watchdog: Option<(Duration, WatchdogRule)>,
    /// A fault of this machine's own lasts: a stop of a group hangs
    /// (never finishes), or its watchdog reset it and it is not back yet.
    pub(crate) own_fault: bool,
    /// The last ack or announcement naming it gone said the watchdog rule
    /// counted it.
    gone_by_watchdog: bool,
    /// The ride-out rule its lease core breaks (a mutant run).
    ride_mutant: Option<RideMutant>,
    /// Real times at which its lease core took a lease an ack granted
    /// (the last few): the checker's view of "an arbiter in contact".
    pub(crate) grants_taken: std::collections::VecDeque<u64>,
}

impl Agent {
    fn new(
        node: NodeId,
        (inc, boot): (u32, u64),
        offset_us: u64,
        rate_ppm: u64,
        peers: BTreeSet<NodeId>,
        ride_mutant: Option<RideMutant>,
    ) -> Self {
        Agent {
            state: AgentState::Running,
            inc,
            boot,
            keeper: LeaseKeeper::with_mutant(node, ride_mutant),
            ride_mutant,
            grants_taken: std::collections::VecDeque::new(),
            groups: GroupKeeper::new(),
            watchdog: None,
            own_fault: false,
            gone_by_watchdog: false,
            session: None,
            welcomed: false,
            next_session: 1,
            connect_retry_at: Duration::ZERO,
            last_from_arbiter: Duration::ZERO,
            probe_ok: BTreeMap::new(),
            probe_seq: 0,
            next_probe: Duration::ZERO,
            offset_us,
            rate_ppm,
            heuristics: 0,
            connect_after_us: 0,
            peers: peers.into_iter().filter(|&p| p != node).collect(),
        }
    }

    /// The agent's monotonic clock at real time `t_us`.
    pub(crate) fn local(&self, t_us: u64) -> Duration {
        Duration::from_micros(
            self.offset_us + (u128::from(t_us) * u128::from(self.rate_ppm) / 1_000_000) as u64,
        )
    }
}

struct Arbiter {
    core: Option<ArbiterCore>,
    inc: u32,
    started_us: u64,
    crash_mid_batch: bool,
    /// The arbiter runs nothing before this real time (a stall, a slow fsync).
    stalled_until_us: u64,
    /// Its monotonic clock: rate (ppm of real time) and forward steps.
    rate_ppm: u64,
    step_us: u64,
    /// The store is lost at the next restart.
    lose_store: bool,
    /// Persisting fails (write error) with this probability.
    write_error: f64,
}

pub struct Sim {
    opts: Options,
    rng: ChaCha8Rng,
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Ev>>,
    free: Vec<usize>,
    spec: ClusterSpec,
    net: Network,
    arbiter: Arbiter,
    store: Persisted,
    agents: BTreeMap<NodeId, Agent>,
    /// Device: per level, probability of failure and of hanging.
    level_fail: Vec<f64>,
    hang: f64,
    chaos: bool,
    checker: Checker,
    report: Report,
    /// The stream the configuration faults draw from.
    rng_config: ChaCha8Rng,
    /// Resource groups: their spec and start/stop timings.
    rng_groups: ChaCha8Rng,
    /// Ground truth: the nodes each resource group really runs on (from
    /// the moment its start begins until a stop of it succeeded or the
    /// machine is off; an agent crash stops nothing).
    group_truth: BTreeMap<String, BTreeSet<NodeId>>,
    /// The stream of the peer cuts (see `Options::peer_cuts`).
    rng_peers: ChaCha8Rng,
    /// The stream of the duplicate identities (see `Options::duplicates`).
    rng_dup: ChaCha8Rng,
    /// Second processes speaking as a node, by the node they claim (at
    /// endpoint `net.clone_of(node)`).
    clones: BTreeMap<NodeId, Agent>,
    /// Per node, the boot of the last agent whose Hello the arbiter took in
    /// whole (its batch ran to the end), in any of its lives since the
    /// store was last lost: the agent a fence confirmed now must record.
    boot_heard: BTreeMap<NodeId, u64>,
    /// The endpoint that opened each session: the arbiter answers on the
    /// session's connection, whoever claims to be at the other end.
    sessions: BTreeMap<u64, Endpoint>,
    /// (prober, peer): a probe between them or its reply was lost and no
    /// reply has reached the prober since (the link carried no probe: the
    /// agent's view of it is that of a link down).
    probe_silent: BTreeSet<(NodeId, NodeId)>,
    /// The links between nodes last seen down (see `observe_links`).
    links_seen: Vec<(NodeId, NodeId)>,
    links_scratch: Vec<(NodeId, NodeId)>,
    /// The configuration the arbiter takes at its next restart.
    pending_spec: Option<ClusterSpec>,
    /// Nodes to start once the arbiter runs with the new configuration.
    to_add: Vec<NodeId>,
    /// Nodes removed from the configuration (they may still run).
    removed: BTreeSet<NodeId>,
    /// Nodes whose fence device switches an unused outlet.
    miswired: BTreeSet<NodeId>,
    /// Nodes with a standing "alive after off" alert.
    alerted: BTreeSet<NodeId>,
    /// The machines with a hardware watchdog.
    watchdogs: BTreeMap<NodeId, MachineWatchdog>,
    /// Probability that an urgent stop hangs on a machine with a watchdog.
    hang_stop: f64,
    /// Per node, the watchdog its session last reported to the arbiter.
    wd_reported: BTreeMap<NodeId, (u64, u64)>,
    /// The stream of the watchdogs and hung stops.
    rng_wd: ChaCha8Rng,
    /// The operator's stream, and whether this run has one.
    rng_op: ChaCha8Rng,
    operator: bool,
    /// Nodes whose lease is ridden out now (for the report).
    riding: BTreeSet<NodeId>,
}

const TICK_US: u64 = 10_000;
/// The agent instance of a second process speaking as a node.
const CLONE_INC: u32 = 1_000;
/// The boot of a second process speaking as a node (another machine).
const CLONE_BOOT: u64 = 0xc10e << 48;

/// A node's first boot; later ones count up from it.
fn first_boot(node: NodeId) -> u64 {
    u64::from(node) << 32 | 1
}
/// Node ids a configuration fault may add beyond the initial ones.
const SPARE_NODES: u32 = 2;

pub fn run(opts: &Options) -> Result<Report, Violation> {
    let mut sim = Sim::new(opts.clone());
    sim.run_to_end()?;
    Ok(sim.report)
}

/// What the seeds of one run did, summed (so a test can check the
/// scenarios it claims to cover did happen).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub seeds: u64,
    pub fences_confirmed: u64,
    pub config_changes: u64,
    pub confirmed_but_alive: u64,
    pub alive_after_off_alerts: u64,
    pub duplicate_identities: u64,
    pub unjudged_fences: u64,
    pub watchdog_resets: u64,
    pub watchdog_fences: u64,
    pub maintenance_controls: u64,
    pub maintenance_holds: u64,
    pub ride_outs: u64,
    pub longest_ride_ms: u64,
}

impl Totals {
    /// Fold another run's totals in.
    pub fn merge(&mut self, o: &Totals) {
        self.seeds += o.seeds;
        self.fences_confirmed += o.fences_confirmed;
        self.config_changes += o.config_changes;
        self.confirmed_but_alive += o.confirmed_but_alive;
        self.alive_after_off_alerts += o.alive_after_off_alerts;
        self.duplicate_identities += o.duplicate_identities;
        self.unjudged_fences += o.unjudged_fences;
        self.watchdog_resets += o.watchdog_resets;
        self.watchdog_fences += o.watchdog_fences;
        self.maintenance_controls += o.maintenance_controls;
        self.maintenance_holds += o.maintenance_holds;
        self.ride_outs += o.ride_outs;
        self.longest_ride_ms = self.longest_ride_ms.max(o.longest_ride_ms);
    }

    fn add(&mut self, r: &Report) {
        self.seeds += 1;
        self.fences_confirmed += r.fences_confirmed;
        self.config_changes += u64::from(r.config_changes);
        self.confirmed_but_alive += u64::from(r.confirmed_but_alive);
        self.alive_after_off_alerts += u64::from(r.alive_after_off_alerts);
        self.duplicate_identities += u64::from(r.duplicate_identities);
        self.unjudged_fences += u64::from(r.unjudged_fences);
        self.watchdog_resets += u64::from(r.watchdog_resets);
        self.watchdog_fences += u64::from(r.watchdog_fences);
        self.maintenance_controls += u64::from(r.maintenance_controls);
        self.maintenance_holds += u64::from(r.maintenance_holds);
        self.ride_outs += u64::from(r.ride_outs);
        self.longest_ride_ms = self.longest_ride_ms.max(r.longest_ride_ms);
    }
}

/// Run every seed of `seeds` with `template`'s options (its seed replaced)
/// on `threads` threads; `on_failure` hears each violation as it comes.
pub fn run_many(
    seeds: std::ops::Range<u64>,
    template: &Options,
    threads: usize,
    on_failure: impl Fn(&Violation) + Sync,
) -> (Totals, Vec<Violation>) {
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let failures = std::sync::Mutex::new(Vec::new());
    let totals = std::sync::Mutex::new(Totals::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let mut o = template.clone();
                    o.seed = seed;
                    match run(&o) {
                        Ok(r) => totals.lock().expect("lock").add(&r),
                        Err(v) => {
                            on_failure(&v);
                            failures.lock().expect("lock").push(v);
                        }
                    }
                }
            });
        }
    });
    (
        totals.into_inner().expect("lock"),
        failures.into_inner().expect("lock"),
    )
}

impl Sim {
    fn new(opts: Options) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let n: u32 = if rng.random_bool(0.1) {
            rng.random_range(7..=16)
        } else {
            rng.random_range(2..=6)
        };
        let levels = rng.random_range(1..=2usize);
        let mode = if rng.random_bool(0.5) {
            QuorumMode::LastManStanding
        } else {
            QuorumMode::TieBreaker
        };
        let nodes: BTreeMap<NodeId, NodeSpec> = (1..=n)
            .map(|id| {
                let votes = if rng.random_bool(0.2) { 2 } else { 1 };
                let priority = if rng.random_bool(0.2) {
                    rng.random_range(1..3)
                } else {
                    0
                };
                (
                    id,
                    NodeSpec {
                        votes,
                        priority,
                        fence_levels: levels,
                        watchdog_level: None,
                    },
                )
            })
            .collect();
        let tie_breaker = if rng.random_bool(0.3) {
            TieBreaker::Node(rng.random_range(1..=n))
        } else {
            TieBreaker::LowestNodeId
        };
        let mut rng_ride = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x1f83_d9ab_fb41_bd6b);
        let ride_mutant = match opts.mutant {
            Some(Mutant::Ride(m)) => Some(m),
            _ => None,
        };
        let rides = opts.ride_out
            && (ride_mutant.is_some()
                || opts.mutant == Some(Mutant::Core(CoreMutant::IgnoreRideOut))
                || matches!(opts.focus, Some(Focus::ArbiterOutages | Focus::RideOut))
                || rng_ride.random_bool(0.5));
        let ride_out = if rides {
            Duration::from_millis([400, 1_000, 1_500][rng_ride.random_range(0..3)])
        } else {
            Duration::ZERO
        };
        let timing = Timing {
            fence_timeout: Duration::from_millis(300),
            fence_retry_min: Duration::from_millis(100),
            fence_retry_max: Duration::from_millis(800),
            ride_out,
            ..Timing::default()
        };
        let storm_limit = if rng.random_bool(0.5) {
            n as usize
        } else {
            ClusterSpec::default_storm_limit(n as usize)
        };
        let spec = ClusterSpec {
            name: "sim".into(),
            nodes,
            quorum_mode: mode,
            tie_breaker,
            timing,
            storm_limit,
            groups: Vec::new(),
        };
        // Resource groups (a stream of their own: the other faults of a
        // seed stay as they were).
        let mut rng_groups = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x2545_f491_4f6c_dd1d);
        let mut spec = spec;
        for g in 0..rng_groups.random_range(1..=3u32) {
            let mut nodes: Vec<NodeId> = spec.nodes.keys().copied().collect();
            nodes.shuffle(&mut rng_groups);
            nodes.truncate(rng_groups.random_range(1..=nodes.len()));
            spec.groups.push(GroupSpec {
                name: format!("g{g}"),
                nodes,
                failback: rng_groups.random_bool(0.5),
            });
        }
        let spec = spec;
        // Room for nodes added by configuration faults.
        let mut net = Network::new(n + SPARE_NODES);
        net.loss = [0.0, 0.0, 0.01, 0.05][rng.random_range(0..4)];
        net.duplicate = if rng.random_bool(0.3) { 0.02 } else { 0.0 };
        net.slow = if rng.random_bool(0.3) { 0.01 } else { 0.0 };
        let level_fail = (0..levels)
            .map(|_| {
                if rng.random_bool(0.4) {
                    rng.random_range(0.1..0.6)
                } else {
                    0.0
                }
            })
            .collect();
        let mut hang = if rng.random_bool(0.2) { 0.2 } else { 0.0 };
        if opts.focus == Some(Focus::FlipDuringSlowFence) {
            hang = 0.5;
        }
        let agents = (1..=n)
            .map(|id| {
                let offset = rng.random_range(0..1_000_000_000);
                let rate = rng.random_range(990_000..=1_010_000);
                let peers = spec.nodes.keys().copied().collect();
                (
                    id,
                    Agent::new(id, (1, first_boot(id)), offset, rate, peers, ride_mutant),
                )
            })
            .collect();
        let core_mutant = match opts.mutant {
            Some(Mutant::Core(m)) => Some(m),
            _ => None,
        };
        let core = ArbiterCore::with_mutant(
            spec.clone(),
            Persisted::default(),
            Duration::ZERO,
            core_mutant,
        );
        let checker = Checker::new(&spec);
        let mut sim = Sim {
            rng,
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            net,
            arbiter: Arbiter {
                core: Some(core),
                inc: 1,
                started_us: 0,
                crash_mid_batch: false,
                stalled_until_us: 0,
                rate_ppm: 1_000_000,
                step_us: 0,
                lose_store: false,
                write_error: 0.0,
            },
            store: Persisted::default(),
            agents,
            level_fail,
            hang,
            chaos: true,
            checker,
            report: Report {
                nodes: n,
                ..Report::default()
            },
            rng_config: ChaCha8Rng::seed_from_u64(opts.seed ^ 0xc0f1_9c4a_11e5_0b5e),
            rng_groups,
            group_truth: BTreeMap::new(),
            rng_peers: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x9e37_79b9_7f4a_7c15),
            rng_dup: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5851_f42d_4c95_7f2d),
            clones: BTreeMap::new(),
            boot_heard: BTreeMap::new(),
            sessions: BTreeMap::new(),
            probe_silent: BTreeSet::new(),
            links_seen: Vec::new(),
            links_scratch: Vec::new(),
            pending_spec: None,
            to_add: Vec::new(),
            removed: BTreeSet::new(),
            miswired: if opts.focus == Some(Focus::WrongOutlets) {
                spec.nodes.keys().copied().collect()
            } else {
                BTreeSet::new()
            },
            alerted: BTreeSet::new(),
            watchdogs: BTreeMap::new(),
            hang_stop: 0.0,
            wd_reported: BTreeMap::new(),
            rng_wd: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x3c6e_f372_fe94_f82b),
            rng_op: ChaCha8Rng::seed_from_u64(opts.seed ^ 0xa54f_f53a_5f1d_36f1),
            operator: false,
            riding: BTreeSet::new(),
            spec,
            opts,
        };
        sim.add_watchdogs();
        sim.operator = sim.opts.operator && sim.rng_op.random_bool(0.25);
        sim.schedule(0, Ev::ArbiterTick { inc: 1 });
        for id in 1..=n {
            let start = sim.rng.random_range(0..50_000);
            sim.schedule(start, Ev::AgentTick { node: id, inc: 1 });
        }
        let first_fault = sim.rng.random_range(800_000..1_500_000);
        sim.schedule(first_fault, Ev::Fault);
        sim.schedule(sim.opts.chaos.as_micros() as u64, Ev::EndChaos);
        // (Not with a focus: each focuses on other faults.)
        if sim.opts.duplicates && sim.opts.focus.is_none() && sim.rng_dup.random_bool(0.08) {
            let node = sim.rng_dup.random_range(1..=n);
            let start = sim.rng_dup.random_range(900_000..3_000_000);
            let life = sim.rng_dup.random_range(200_000..=1_500_000);
            // Stopped by an operator before the faults are over.
            let stop = (start + life).min(sim.opts.chaos.as_micros() as u64 - 100_000);
            sim.schedule(start, Ev::CloneStart { node });
            sim.schedule(stop, Ev::CloneStop { node });
        }
        sim
    }

    /// Count leases that began to be ridden out, and the longest ride.
    fn count_rides(&mut self) {
        if self.spec.timing.ride_out.is_zero() {
            return;
        }
        for (&id, a) in &self.agents {
            let ridden = a
                .keeper
                .lease(a.local(self.now_us))
                .map_or(Duration::ZERO, |l| l.ridden());
            if ridden.is_zero() {
                self.riding.remove(&id);
            } else {
                if self.riding.insert(id) {
                    self.report.ride_outs += 1;
                }
                self.report.longest_ride_ms =
                    self.report.longest_ride_ms.max(ridden.as_millis() as u64);
            }
        }
    }

    /// The ride-out rule agents break in this run (a mutant run).
    fn ride_mutant(&self) -> Option<RideMutant> {
        match self.opts.mutant {
            Some(Mutant::Ride(m)) => Some(m),
            _ => None,
        }
    }

    /// Hardware watchdogs on some machines (see `Options::watchdogs`).
    fn add_watchdogs(&mut self) {
        if !self.opts.watchdogs || !self.rng_wd.random_bool(0.35) {
            return;
        }
        let ids: Vec<NodeId> = self.spec.nodes.keys().copied().collect();
        for id in ids {
            if !self.rng_wd.random_bool(0.7) {
                continue;
            }
            let timeout = Duration::from_millis([500, 1000, 2000][self.rng_wd.random_range(0..3)]);
            let rate_ppm = self.rng_wd.random_range(1_000_000..=1_050_000);
            let s = self.spec.nodes.get_mut(&id).expect("node");
            s.watchdog_level = Some(s.fence_levels);
            s.fence_levels += 1;
            self.watchdogs.insert(
                id,
                MachineWatchdog {
                    timeout,
                    rate_ppm,
                    fed_us: None,
                    check_pending: false,
                },
            );
            self.agents.get_mut(&id).expect("node").watchdog =
                Some((timeout, WatchdogRule::default()));
        }
        if self.watchdogs.is_empty() {
            return;
        }
        // Devices that fail more often, so that the watchdog level runs.
        for f in &mut self.level_fail {
            if self.rng_wd.random_bool(0.6) {
                *f = self.rng_wd.random_range(0.3..0.9);
            }
        }
        self.hang_stop = if self.rng_wd.random_bool(0.5) {
            0.1
        } else {
            0.0
        };
        let core_mutant = match self.opts.mutant {
            Some(Mutant::Core(m)) => Some(m),
            _ => None,
        };
        self.arbiter.core = Some(ArbiterCore::with_mutant(
            self.spec.clone(),
            Persisted::default(),
            Duration::ZERO,
            core_mutant,
        ));
        self.checker = Checker::new(&self.spec);
    }

    /// `node`'s agent looks at its watchdog: the real rule decides.
    fn feed_watchdog(&mut self, node: NodeId) {
        let now_us = self.now_us;
        let only_with_lease = self.opts.mutant == Some(Mutant::WatchdogFedOnlyWithLease);
        let Some(a) = self.agents.get_mut(&node) else {
            return;
        };
        let local = a.local(now_us);
        let lease = a.keeper.lease(local).is_some();
        let rest = a.groups.at_rest();
        let Some((_, rule)) = a.watchdog.as_mut() else {
            return;
        };
        let mut step = rule.step(lease, rest);
        if only_with_lease && step == WatchdogStep::Feed && !lease {
            step = WatchdogStep::Starve;
        }
        if !matches!(step, WatchdogStep::Arm | WatchdogStep::Feed) {
            return;
        }
        let w = self.watchdogs.get_mut(&node).expect("machine watchdog");
        w.fed_us = Some(now_us);
        if !w.check_pending {
            w.check_pending = true;
            let at = w.fires_at().expect("fed");
            self.schedule(at - now_us, Ev::WatchdogCheck { node });
        }
    }

    /// The watchdog ran out: the machine resets (off, then on again).
    fn watchdog_reset(&mut self, node: NodeId) -> Result<(), Violation> {
        self.watchdogs.get_mut(&node).expect("watchdog").fed_us = None;
        // (A machine switched off runs no watchdog.)
        if self.agents[&node].state == AgentState::Off {
            return Ok(());
        }
        self.observe();
        let timeout = self.watchdogs[&node].timeout;
        self.checker
            .reset(self.now_us, node, timeout)
            .map_err(|(rule, detail)| self.violation(rule, detail))?;
        for on in self.group_truth.values_mut() {
            on.remove(&node);
        }
        self.checker.powered_off(self.now_us, node);
        self.checker.node_fault(self.now_us, node);
        let a = self.agents.get_mut(&node).expect("node");
        a.state = AgentState::Off;
        // (Down by a fault of its own until it is back: `observe`.)
        a.own_fault = true;
        a.keeper = LeaseKeeper::with_mutant(node, a.ride_mutant);
        self.report.watchdog_resets += 1;
        let d = if self.chaos {
            self.rng_wd.random_range(300_000..2_000_000)
        } else {
            self.rng_wd.random_range(100_000..800_000)
        };
        self.trace(|| {
            format!(
                "node {node} reset by its watchdog; back on in {}ms",
                d / 1000
            )
        });
        self.schedule(d, Ev::PowerOn { node });
        Ok(())
    }

    /// The nodes gone that the arbiter's watchdog rule counted fenced.
    fn by_watchdog(&self) -> BTreeSet<NodeId> {
        self.arbiter
            .core
            .as_ref()
            .map(|c| c.gone_by_watchdog().clone())
            .unwrap_or_default()
    }

    /// The nodes a resource group runs on (ground truth).
    fn runners(&self) -> BTreeSet<NodeId> {
        self.group_truth.values().flatten().copied().collect()
    }

    /// Tell the arbiter which watchdog the agent of `session` holds armed.
    fn report_watchdog(&mut self, node: NodeId, session: u64, ms: u64) -> Result<(), Violation> {
        self.wd_reported.insert(node, (session, ms));
        self.arbiter_step(Event::Watchdog {
            node,
            session,
            timeout: (ms > 0).then(|| Duration::from_millis(ms)),
        })
    }

    fn schedule(&mut self, delay_us: u64, ev: Ev) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue
            .push(Reverse((self.now_us + delay_us, self.seq, slot)));
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.opts.verbose {
            println!("{:>10.3}ms {}", self.now_us as f64 / 1000.0, what());
        }
    }

    fn run_to_end(&mut self) -> Result<(), Violation> {
        self.trace(|| format!("{:?}", self.spec));
        // A new agent process may wait out a ride of its predecessor (and
        // the watchdog rule, a ride) before it is leased: the fault-free
        // phase is longer by twice the ride-out.
        let end = (self.opts.chaos + self.opts.liveness + self.spec.timing.ride_out * 2).as_micros()
            as u64;
        while let Some(Reverse((t, _, slot))) = self.queue.pop() {
            if t > end {
                break;
            }
            self.now_us = t;
            let ev = self.slots[slot].take().expect("scheduled event");
            self.free.push(slot);
            self.report.events += 1;
            self.handle(ev)?;
            // Any event may start or stop an agent or change a link.
            self.observe_links();
            self.checker
                .after_event(self.now_us, &self.agents, &self.clones)
                .map_err(|(rule, detail)| self.violation(rule, detail))?;
            self.count_rides();
        }
        self.now_us = end;
        self.checker
            .at_end(
                self.now_us,
                &self.agents,
                &self.store,
                &self.spec.nodes.keys().copied().collect(),
            )
            .map_err(|(rule, detail)| self.violation(rule, detail))?;
        self.report.final_epoch = self.store.epoch;
        self.report.unjudged_fences = self.checker.unjudged;
        Ok(())
    }

    fn violation(&self, rule: &'static str, detail: String) -> Violation {
        Violation {
            seed: self.opts.seed,
            at_us: self.now_us,
            rule,
            detail,
        }
    }

    fn send(&mut self, from: Endpoint, to: Endpoint, msg: Msg) {
        match self.net.send(&mut self.rng, from, to) {
            Delivery::Dropped => {
                // A probe or its reply lost on a link up (seeded loss):
                // the prober hears nothing from that peer until a reply
                // gets through.
                let silent = match msg {
                    Msg::Probe { .. } => Some((from, to)),
                    Msg::ProbeReply { .. } => Some((to, from)),
                    _ => None,
                };
                // (Only a message lost on a link up: a link down is in the
                // checker's history already, with its lags.)
                if let Some(pair) = silent
                    && self.net.is_up(from, to)
                    && self.agents.contains_key(&pair.0)
                    && self.agents.contains_key(&pair.1)
                    && self.probe_silent.insert(pair)
                {
                    self.observe_links();
                }
                self.lossy(from, to)
            }
            Delivery::After(delays) => {
                for d in delays {
                    self.schedule(
                        d,
                        Ev::Deliver {
                            to,
                            from,
                            msg: msg.clone(),
                        },
                    );
                }
            }
        }
    }

    /// The ground truth of faults, for the checker: every node frozen or
    /// crashed, or cut from the arbiter while a quorate set of other nodes
    /// keeps contact with it, has a fault of its own; and the links between
    /// nodes down at this instant, or with an end stopped (the checker keeps
    /// their history). Called
    /// around every change of the network, of an agent or of the arbiter,
    /// so a fault's end is recorded too.
    fn observe(&mut self) {
        let now = self.now_us;
        let ids: Vec<NodeId> = self.agents.keys().copied().collect();
        let contact: BTreeSet<NodeId> = ids
            .iter()
            .copied()
            .filter(|&m| self.in_contact(m))
            .collect();
        for &node in &ids {
            let a = &self.agents[&node];
            let own = matches!(a.state, AgentState::Frozen | AgentState::Crashed)
                || (a.state == AgentState::Off && a.own_fault)
                || ((!self.net.is_up(ARBITER, node) || !self.net.is_up(node, ARBITER))
                    && self.quorate_without(&contact, node));
            if own {
                self.checker.node_fault(now, node);
            }
        }
        for (&node, c) in &self.clones {
            if c.state == AgentState::Running {
                self.checker.node_fault(now, node);
            }
        }
        self.observe_links();
    }

    /// The links between nodes down at this instant, or with an end stopped
    /// (no probe crosses those either), for the checker's history. Cheap
    /// when nothing changed: it runs after every event.
    fn observe_links(&mut self) {
        let mut broken = std::mem::take(&mut self.links_scratch);
        broken.clear();
        let stopped = |n: &Agent| n.state != AgentState::Running;
        // Links whose probes were lost until the prober dropped the peer
        // from its reports (nothing heard for three intervals): to that
        // agent, and so to the arbiter, the link is down; a lost probe or
        // two is not.
        let hb = self.spec.timing.heartbeat_interval;
        // A node stopped (frozen, crashed, off) has its links counted down
        // while it is; what its probes missed before or meanwhile is its
        // own fault's, not a link's: once it runs again, its stale view
        // counts only through new losses.
        let agents = &self.agents;
        let running = |n: &NodeId| {
            agents
                .get(n)
                .is_some_and(|a| a.state == AgentState::Running)
        };
        self.probe_silent.retain(|(x, y)| running(x) && running(y));
        let silent: Vec<(NodeId, NodeId)> = self
            .probe_silent
            .iter()
            .copied()
            .filter(|(x, y)| {
                self.agents.get(x).is_some_and(|a| {
                    let local = a.local(self.now_us);
                    a.state == AgentState::Running
                        && a.peers.contains(y)
                        && a.probe_ok
                            .get(y)
                            .is_none_or(|&t| local.saturating_sub(t) > hb * 3)
                })
            })
            .collect();
        for (&a, na) in &self.agents {
            for (&b, nb) in self.agents.range(a + 1..) {
                if stopped(na)
                    || stopped(nb)
                    || !self.net.is_up(a, b)
                    || !self.net.is_up(b, a)
                    || silent.contains(&(a, b))
                    || silent.contains(&(b, a))
                {
                    broken.push((a, b));
                }
            }
        }
        if broken != self.links_seen {
            self.checker
                .peer_links(self.now_us, broken.iter().copied().collect());
            std::mem::swap(&mut self.links_seen, &mut broken);
        }
        self.links_scratch = broken;
    }

    /// Does `m` have working links with a running arbiter?
    /// (A second process speaking as `m`, a duplicate identity, keeps
    /// contact for it as far as the arbiter can tell.)
    fn in_contact(&self, m: NodeId) -> bool {
        let reaches = |ep: Endpoint, a: Option<&Agent>| {
            a.is_some_and(|a| a.state == AgentState::Running)
                && self.net.is_up(ARBITER, ep)
                && self.net.is_up(ep, ARBITER)
        };
        self.arbiter.core.is_some()
            && self.now_us >= self.arbiter.stalled_until_us
            && (reaches(m, self.agents.get(&m))
                || reaches(self.net.clone_of(m), self.clones.get(&m)))
    }

    fn quorate_without(&self, contact: &BTreeSet<NodeId>, node: NodeId) -> bool {
        let votes: u64 = contact
            .iter()
            .filter(|&&m| m != node)
            .filter_map(|m| self.spec.nodes.get(m))
            .map(|s| u64::from(s.votes))
            .sum();
        let total: u64 = self.spec.nodes.values().map(|s| u64::from(s.votes)).sum();
        votes > 0 && Quorum::new(self.spec.quorum_mode, total).is_quorate(votes, true)
    }

    /// A message between `from` and `to` was lost.
    fn lossy(&mut self, from: Endpoint, to: Endpoint) {
        let now = self.now_us;
        match (from, to) {
            (ARBITER, x) | (x, ARBITER) => {
                let contact: BTreeSet<NodeId> = self
                    .agents
                    .keys()
                    .copied()
                    .filter(|&m| self.in_contact(m))
                    .collect();
                if self.quorate_without(&contact, x) {
                    self.checker.node_fault(now, x);
                }
            }
            // A lost probe between two nodes is not a broken link: the
            // design fences nobody for one (edges settle).
            _ => {}
        }
    }

    fn arbiter_event(ev: &Ev) -> bool {
        matches!(
            ev,
            Ev::ArbiterTick { .. }
                | Ev::Deliver { to: ARBITER, .. }
                | Ev::DeviceDone { .. }
                | Ev::OperatorClear { .. }
                | Ev::OperatorMaintenance { .. }
        )
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        if self.now_us < self.arbiter.stalled_until_us && Self::arbiter_event(&ev) {
            // The arbiter is stalled: it takes this up when it runs again.
            let wait = self.arbiter.stalled_until_us - self.now_us;
            self.schedule(wait, ev);
            return Ok(());
        }
        match ev {
            Ev::ArbiterTick { inc } => {
                if inc == self.arbiter.inc && self.arbiter.core.is_some() {
                    self.arbiter_step(Event::Tick)?;
                    self.schedule(TICK_US, Ev::ArbiterTick { inc });
                }
            }
            Ev::AgentTick { node, inc } => self.agent_tick(node, inc)?,
            Ev::CloneStart { node } => {
                if self.agents.contains_key(&node) && self.spec.nodes.contains_key(&node) {
                    self.trace(|| {
                        format!("a second process speaks as node {node} (duplicate identity)")
                    });
                    let offset = self.rng_dup.random_range(0..1_000_000_000);
                    let rate = self.rng_dup.random_range(990_000..=1_010_000);
                    let peers = self.spec.nodes.keys().copied().collect();
                    let mut clone = Agent::new(
                        node,
                        (CLONE_INC, CLONE_BOOT | u64::from(node)),
                        offset,
                        rate,
                        peers,
                        self.ride_mutant(),
                    );
                    // Where the node counts on a watchdog, the other
                    // machine may hold one armed (it runs no group: at
                    // rest, fed): it vouches for that machine only.
                    if self.watchdogs.contains_key(&node) && self.rng_wd.random_bool(0.5) {
                        let mut rule = WatchdogRule::default();
                        rule.step(false, true);
                        clone.watchdog = Some((Duration::from_secs(1), rule));
                    }
                    self.clones.insert(node, clone);
                    self.checker.node_fault(self.now_us, node);
                    self.report.duplicate_identities += 1;
                    let ep = self.net.clone_of(node);
                    self.schedule(
                        0,
                        Ev::AgentTick {
                            node: ep,
                            inc: CLONE_INC,
                        },
                    );
                }
            }
            Ev::CloneStop { node } => {
                if let Some(c) = self.clones.get_mut(&node) {
                    c.state = AgentState::Crashed;
                    self.trace(|| format!("the second process speaking as node {node} stops"));
                    self.checker.node_fault(self.now_us, node);
                }
            }
            Ev::Deliver { to, from, msg } => self.deliver(to, from, msg)?,
            Ev::Fault => {
                if self.chaos {
                    self.observe();
                    self.fault();
                    if self.opts.config_faults {
                        self.config_fault();
                    }
                    if self.opts.peer_cuts && self.rng_peers.random_bool(0.06) {
                        let n = self.report.nodes;
                        let node = self.rng_peers.random_range(1..=n);
                        self.cut_from_peers(node);
                    }
                    if self.operator && self.rng_op.random_bool(0.3) {
                        let n = self.report.nodes;
                        let node = (!self.rng_op.random_bool(0.2))
                            .then(|| self.rng_op.random_range(1..=n));
                        let on = self.rng_op.random_bool(0.5);
                        self.handle(Ev::OperatorMaintenance { node, on })?;
                    }
                    self.observe();
                    let next = self.rng.random_range(150_000..700_000);
                    self.schedule(next, Ev::Fault);
                }
            }
            Ev::DeviceDone {
                node,
                intent,
                level,
                attempt,
                inc,
                ok,
                generation,
            } => {
                let miswired = self.miswired.contains(&node);
                if miswired {
                    self.trace(|| format!("device switches the wrong outlet for node {node}"));
                    // (A machine its watchdog reset is off all the same.)
                    if ok && self.agents[&node].state == AgentState::Off {
                        self.checker.powered_off(self.now_us, node);
                    }
                } else if ok && self.opts.mutant != Some(Mutant::LyingDevice) {
                    self.power_off(node, intent, generation)?;
                }
                // A device may switch the node off and still report failure.
                let reported_ok = ok && !(self.chaos && self.rng.random_bool(0.05));
                if inc == self.arbiter.inc && self.arbiter.core.is_some() {
                    let outcome = if reported_ok {
                        LevelOutcome::ConfirmedOff
                    } else {
                        LevelOutcome::Failed("simulated device error".into())
                    };
                    // A wrong outlet: the node runs, yet the arbiter will
                    // record it off (if it takes this result) and may tell
                    // survivors at once.
                    let a = &self.agents[&node];
                    let a_boot = a.boot;
                    let alive = miswired && reported_ok && a.state != AgentState::Off;
                    let earlier = self.checker.is_off_but_alive(node);
                    if alive {
                        self.checker.off_but_alive(node, Some(a_boot));
                    }
                    self.arbiter_step(Event::FenceFinished {
                        node,
                        intent,
                        level,
                        attempt,
                        outcome,
                    })?;
                    let recorded = self.store.off.get(&node).copied();
                    let recorded_off = recorded.is_some()
                        || self
                            .arbiter
                            .core
                            .as_ref()
                            .and_then(|c| c.node(node))
                            .is_some_and(|v| v.off.is_some());
                    if alive && recorded_off {
                        self.trace(|| format!("node {node} recorded off, yet it runs"));
                        self.report.confirmed_but_alive += 1;
                        // The arbiter records the boot of the agent it
                        // last heard on the node, in any life since its
                        // store was lost; if that was another (a second
                        // process speaking as the node) or none, nothing
                        // tells the node never went off.
                        if self.boot_heard.get(&node) != Some(&a_boot) {
                            self.checker.off_but_alive(node, None);
                        }
                    } else if alive && !earlier {
                        self.checker.not_recorded_off(node);
                    }
                }
            }
            Ev::OperatorMaintenance { node, on } => {
                // As the admin service does: the core checks the control
                // first; a refused one changes nothing. An arbiter that is
                // down is asked again until it is back (only the end of
                // every maintenance, after the chaos, matters then).
                let now = self.arbiter_now();
                let control = arbiter::core::Control::Maintenance { node, on };
                match self
                    .arbiter
                    .core
                    .as_ref()
                    .map(|c| c.check_control(now, &control))
                {
                    Some(Ok(_)) => {
                        self.trace(|| {
                            format!(
                                "operator: maintenance {} for {node:?}",
                                if on { "on" } else { "off" }
                            )
                        });
                        self.report.maintenance_controls += 1;
                        self.arbiter_step(Event::Operator {
                            by: "sim operator".into(),
                            control,
                        })?;
                    }
                    Some(Err(why)) => {
                        self.trace(|| format!("operator: maintenance refused: {why}"))
                    }
                    None if !self.chaos => {
                        self.schedule(100_000, Ev::OperatorMaintenance { node, on })
                    }
                    None => {}
                }
            }
            Ev::OperatorClear { node } => {
                if self.arbiter.core.is_some() {
                    self.trace(|| format!("operator clears node {node}'s alert"));
                    self.alerted.remove(&node);
                    self.checker.cleared(node);
                    self.arbiter_step(Event::Clear { node })?;
                } else if self.alerted.contains(&node) {
                    self.schedule(100_000, Ev::OperatorClear { node });
                }
            }
            Ev::PowerOn { node } => {
                let a = &self.agents[&node];
                if a.state == AgentState::Off && !self.removed.contains(&node) {
                    self.trace(|| format!("node {node} powered on"));
                    self.start_agent(node, true);
                }
            }
            Ev::AgentRestart { node } => {
                if self.agents[&node].state == AgentState::Crashed {
                    self.trace(|| format!("node {node} agent restarted"));
                    self.observe();
                    self.start_agent(node, false);
                }
            }
            Ev::GroupDone {
                node,
                inc,
                group,
                start,
                ok,
            } => {
                let a = self.agents.get_mut(&node).expect("node");
                if a.inc != inc || a.state == AgentState::Off {
                    // Its agent is gone: a stop under way never reported
                    // (the truth keeps the group: a crash stops nothing).
                    return Ok(());
                }
                if a.state == AgentState::Frozen {
                    // The action ran on; the frozen agent hears of it later.
                    self.schedule(
                        10_000,
                        Ev::GroupDone {
                            node,
                            inc,
                            group,
                            start,
                            ok,
                        },
                    );
                    return Ok(());
                }
                if !start && ok {
                    if let Some(on) = self.group_truth.get_mut(&group) {
                        on.remove(&node);
                    }
                }
                if !ok {
                    self.checker.node_fault(self.now_us, node);
                    self.trace(|| format!("node {node}: stop of group {group} FAILED"));
                }
                let input = if start {
                    GroupInput::StartDone { group, ok }
                } else {
                    GroupInput::StopDone { group, ok }
                };
                if self.agents[&node].state == AgentState::Running {
                    self.group_step(node, input)?;
                }
            }
            Ev::WatchdogCheck { node } => {
                let Some(w) = self.watchdogs.get_mut(&node) else {
                    return Ok(());
                };
                w.check_pending = false;
                let Some(at) = w.fires_at() else {
                    return Ok(());
                };
                if self.now_us >= at {
                    self.watchdog_reset(node)?;
                } else {
                    w.check_pending = true;
                    self.schedule(at - self.now_us, Ev::WatchdogCheck { node });
                }
            }
            Ev::Unfreeze { node } => {
                let a = self.agents.get_mut(&node).expect("node");
                if a.state == AgentState::Frozen {
                    self.observe();
                    let a = self.agents.get_mut(&node).expect("node");
                    a.state = AgentState::Running;
                    let inc = a.inc;
                    self.checker.node_fault(self.now_us, node);
                    self.trace(|| format!("node {node} unfrozen"));
                    self.schedule(0, Ev::AgentTick { node, inc });
                }
            }
            Ev::ArbiterRestart => {
                if self.arbiter.core.is_none() {
                    self.observe();
                    self.wd_reported.clear();
                    self.arbiter.inc += 1;
                    self.arbiter.started_us = self.now_us;
                    self.arbiter.rate_ppm = self.rng.random_range(990_000..=1_010_000);
                    self.arbiter.step_us = 0;
                    self.report.arbiter_restarts += 1;
                    if std::mem::take(&mut self.arbiter.lose_store) {
                        self.trace(|| "the arbiter's store is lost".into());
                        self.store = Persisted::default();
                        self.boot_heard.clear();
                        self.checker.store_lost();
                    }
                    let core_mutant = match self.opts.mutant {
                        Some(Mutant::Core(m)) => Some(m),
                        _ => None,
                    };
                    if let Some(spec) = self.pending_spec.take() {
                        self.trace(|| {
                            format!("the arbiter restarts with a new configuration: {spec:?}")
                        });
                        self.report.config_changes += 1;
                        self.spec = spec;
                        for id in std::mem::take(&mut self.to_add) {
                            // The new node's machine starts with it.
                            let offset = self.rng_config.random_range(0..1_000_000_000);
                            let rate = self.rng_config.random_range(990_000..=1_010_000);
                            let peers = self.spec.nodes.keys().copied().collect();
                            let ride = self.ride_mutant();
                            self.agents.insert(
                                id,
                                Agent::new(id, (1, first_boot(id)), offset, rate, peers, ride),
                            );
                            self.report.nodes = self.report.nodes.max(id);
                            self.schedule(0, Ev::AgentTick { node: id, inc: 1 });
                        }
                    }
                    let core = ArbiterCore::with_mutant(
                        self.spec.clone(),
                        self.store.clone(),
                        Duration::ZERO,
                        core_mutant,
                    );
                    self.arbiter.core = Some(core);
                    self.trace(|| format!("arbiter restarted from {:?}", self.store));
                    let inc = self.arbiter.inc;
                    self.schedule(0, Ev::ArbiterTick { inc });
                }
            }
            Ev::HealArbiter => {
                if self.chaos {
                    self.observe();
                    for x in 1..=self.report.nodes {
                        self.net.set_link(ARBITER, x, true);
                        self.net.set_link(x, ARBITER, true);
                    }
                    self.trace(|| "arbiter's network back".into());
                    self.observe();
                }
            }
            Ev::Heuristics { node, score, left } => {
                if let Some(a) = self.agents.get_mut(&node) {
                    a.heuristics = if self.chaos { score } else { 0 };
                }
                if self.chaos && left > 0 {
                    let next = self.rng.random_range(50_000..400_000);
                    let score = self.rng.random_range(0..4);
                    self.schedule(
                        next,
                        Ev::Heuristics {
                            node,
                            score,
                            left: left - 1,
                        },
                    );
                }
            }
            Ev::Flap { from, to, left } => {
                if self.chaos && left > 0 {
                    let up = !self.net.is_up(from, to);
                    self.set_link_both(from, to, up);
                    let next = self.rng.random_range(30_000..250_000);
                    self.schedule(
                        next,
                        Ev::Flap {
                            from,
                            to,
                            left: left - 1,
                        },
                    );
                }
            }
            Ev::EndChaos => {
                self.observe();
                self.chaos = false;
                self.net.heal();
                self.level_fail.iter_mut().for_each(|p| *p = 0.0);
                self.hang = 0.0;
                self.arbiter.write_error = 0.0;
                for a in self.agents.values_mut() {
                    a.heuristics = 0;
                }
                self.miswired.clear();
                for node in self.alerted.clone() {
                    self.schedule(1_000, Ev::OperatorClear { node });
                }
                if self.operator {
                    // Every maintenance ends: the held nodes are decided.
                    self.schedule(
                        1_000,
                        Ev::OperatorMaintenance {
                            node: None,
                            on: false,
                        },
                    );
                    for node in 1..=self.report.nodes {
                        self.schedule(
                            1_000,
                            Ev::OperatorMaintenance {
                                node: Some(node),
                                on: false,
                            },
                        );
                    }
                }
                self.trace(|| "chaos over: network healed, devices fixed".into());
                if self.arbiter.core.is_none() {
                    self.schedule(1_000, Ev::ArbiterRestart);
                }
                let ids: Vec<NodeId> = self.agents.keys().copied().collect();
                for id in ids {
                    match self.agents[&id].state {
                        AgentState::Frozen => self.schedule(0, Ev::Unfreeze { node: id }),
                        AgentState::Crashed => self.schedule(1_000, Ev::AgentRestart { node: id }),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn set_link_both(&mut self, a: Endpoint, b: Endpoint, up: bool) {
        self.observe();
        self.net.set_link(a, b, up);
        self.net.set_link(b, a, up);
        self.observe();
    }

    fn fault(&mut self) {
        self.report.faults += 1;
        let n = self.report.nodes;
        let node = self.rng.random_range(1..=n);
        let roll = match self.opts.focus {
            None => self.rng.random_range(0..100),
            Some(Focus::FlipDuringSlowFence) => {
                [22, 28, 78, 79, 80, 81, 100, 101][self.rng.random_range(0..8)]
            }
            Some(Focus::ArbiterOutages) => [62, 63, 70, 71, 99][self.rng.random_range(0..5)],
            Some(Focus::RideOut) => {
                [62, 62, 63, 70, 54, 100, 101, 12, 36, 46, 102, 99][self.rng.random_range(0..12)]
            }
            // Faults that get nodes fenced (isolation, a freeze, a crash),
            // arbiter crashes and forward steps of its clock.
            Some(Focus::WrongOutlets) => {
                [12, 13, 36, 37, 46, 54, 75, 99][self.rng.random_range(0..8)]
            }
            Some(Focus::PeerCuts) => {
                [102, 102, 102, 100, 22, 28, 99, 99][self.rng.random_range(0..8)]
            }
        };
        match roll {
            102 => self.cut_from_peers(node),
            100..=101 => {
                // A link between two nodes cut both ways; both still reach
                // the arbiter.
                let other = self.rng.random_range(1..=n);
                if other != node {
                    self.trace(|| format!("link {node} <-> {other} cut"));
                    self.net.set_link(node, other, false);
                    self.net.set_link(other, node, false);
                }
            }
            0..=11 => {
                // Symmetric split: a random side (the arbiter may be on either).
                let side: Vec<Endpoint> = (0..=n).filter(|_| self.rng.random_bool(0.5)).collect();
                self.trace(|| format!("split {side:?} from the rest"));
                self.net.split(&side);
            }
            12..=21 => {
                self.trace(|| format!("isolate node {node}"));
                self.net.split(&[node]);
            }
            22..=27 => {
                let from = self.rng.random_range(0..=n);
                let to = self.rng.random_range(0..=n);
                if from != to {
                    self.trace(|| format!("one-way cut {from} -> {to}"));
                    self.net.set_link(from, to, false);
                }
            }
            28..=35 => {
                let other = self.rng.random_range(0..=n);
                if other != node {
                    self.trace(|| format!("flapping link {node} <-> {other}"));
                    let flips = self.rng.random_range(3..12);
                    self.schedule(
                        0,
                        Ev::Flap {
                            from: node,
                            to: other,
                            left: flips,
                        },
                    );
                }
            }
            36..=45 => {
                let a = self.agents.get_mut(&node).expect("node");
                if a.state == AgentState::Running {
                    a.state = AgentState::Frozen;
                    let d = self.rng.random_range(50_000..1_500_000);
                    self.trace(|| format!("node {node} frozen for {}ms", d / 1000));
                    self.schedule(d, Ev::Unfreeze { node });
                }
            }
            46..=53 => {
                let a = self.agents.get_mut(&node).expect("node");
                if a.state == AgentState::Running || a.state == AgentState::Frozen {
                    a.state = AgentState::Crashed;
                    a.keeper = LeaseKeeper::with_mutant(node, a.ride_mutant);
                    let d = self.rng.random_range(100_000..1_500_000);
                    self.trace(|| format!("node {node} agent crashed; restarts in {}ms", d / 1000));
                    self.schedule(d, Ev::AgentRestart { node });
                }
            }
            54..=61 => {
                if self.arbiter.core.is_some() {
                    if self.rng.random_bool(0.3) {
                        self.arbiter.crash_mid_batch = true;
                        self.trace(|| {
                            "arbiter will crash in the middle of its next action batch".into()
                        });
                    } else {
                        self.crash_arbiter();
                    }
                }
            }
            62..=69 => {
                // The arbiter's own network: cut off from every node.
                let d = if self.opts.focus == Some(Focus::RideOut) {
                    self.rng.random_range(50_000..4_000_000)
                } else {
                    self.rng.random_range(300_000..2_500_000)
                };
                self.trace(|| format!("arbiter cut off from every node for {}ms", d / 1000));
                self.net.split(&[ARBITER]);
                self.schedule(d, Ev::HealArbiter);
            }
            70..=74 => {
                // A stall (or a slow fsync): the arbiter runs nothing.
                let d = self.rng.random_range(100_000..2_000_000);
                self.trace(|| format!("arbiter stalls for {}ms", d / 1000));
                self.arbiter.stalled_until_us = self.arbiter.stalled_until_us.max(self.now_us + d);
            }
            75..=77 => {
                let d = self.rng.random_range(50_000..1_000_000);
                self.trace(|| format!("arbiter clock steps {}ms forward", d / 1000));
                self.arbiter.step_us += d;
            }
            78..=81 => {
                let flips = self.rng.random_range(3..12);
                self.trace(|| format!("node {node} heuristics flap"));
                self.schedule(
                    0,
                    Ev::Heuristics {
                        node,
                        score: 3,
                        left: flips,
                    },
                );
            }
            82..=83 => {
                if self.arbiter.core.is_some() {
                    self.trace(|| "the arbiter crashes and loses its store".into());
                    self.arbiter.lose_store = true;
                    self.crash_arbiter();
                }
            }
            84..=85 => {
                self.trace(|| "the store starts failing writes".into());
                self.arbiter.write_error = 0.2;
            }
            86..=89 => {
                // The arbiter restarts and some agents are slow to come back
                // (within the reconnect allowance): not their fault.
                if self.arbiter.core.is_some() {
                    let allowance = self.spec.timing.reconnect_allowance.as_micros() as u64;
                    let late: Vec<NodeId> = (1..=n).filter(|_| self.rng.random_bool(0.5)).collect();
                    let mut delays = Vec::new();
                    for &l in &late {
                        let d = self.rng.random_range(0..allowance * 2 / 3);
                        delays.push(d);
                        let until = self.now_us + d;
                        let a = self.agents.get_mut(&l).expect("node");
                        a.connect_after_us = a.connect_after_us.max(until);
                    }
                    self.trace(|| {
                        format!("arbiter restarts; nodes {late:?} reconnect late by {delays:?}us")
                    });
                    self.crash_arbiter();
                }
            }
            _ => {
                self.trace(|| "network healed".into());
                self.net.heal();
            }
        }
    }

    /// Cut `node` off from every other node; it still reaches the arbiter.
    fn cut_from_peers(&mut self, node: NodeId) {
        self.trace(|| format!("node {node} cut off from every peer"));
        for other in 1..=self.net.capacity() {
            if other != node {
                self.set_link_both(node, other, false);
            }
        }
    }

    /// The faults drawn from their own stream (see `Options::config_faults`):
    /// an operator changes the configuration and restarts the arbiter, or a
    /// node's fence device gets wired to an unused outlet.
    fn config_fault(&mut self) {
        let roll = self.rng_config.random_range(0..100);
        match roll {
            0..=2 if self.arbiter.core.is_some() && self.pending_spec.is_none() => {
                self.change_config();
            }
            3..=4 => {
                let ids: Vec<NodeId> = self.spec.nodes.keys().copied().collect();
                let node = ids[self.rng_config.random_range(0..ids.len())];
                self.trace(|| format!("node {node}'s fence device now switches an unused outlet"));
                self.miswired.insert(node);
            }
            _ => {}
        }
    }

    /// A new configuration for the next restart: votes or priority changed,
    /// a node moved between fence levels, a node added, or one removed (the
    /// operator may first power it off, or leave it running).
    fn change_config(&mut self) {
        let mut spec = self.spec.clone();
        let ids: Vec<NodeId> = spec.nodes.keys().copied().collect();
        let node = ids[self.rng_config.random_range(0..ids.len())];
        let what = match self.rng_config.random_range(0..4) {
            0 => {
                let s = spec.nodes.get_mut(&node).expect("configured");
                s.votes = self.rng_config.random_range(1..=2);
                s.priority = self.rng_config.random_range(0..3);
                format!(
                    "node {node} now has {} votes, priority {}",
                    s.votes, s.priority
                )
            }
            1 => {
                let s = spec.nodes.get_mut(&node).expect("configured");
                let wd = usize::from(s.watchdog_level.is_some());
                let devices = if s.fence_levels - wd == 1 { 2 } else { 1 };
                s.fence_levels = devices + wd;
                s.watchdog_level = s.watchdog_level.map(|_| devices);
                format!("node {node} now has {} fence levels", s.fence_levels)
            }
            2 if self.report.nodes < self.net.capacity() => {
                let id = self.report.nodes + 1;
                let levels = spec.nodes[&node].fence_levels;
                let watchdog_level = spec.nodes[&node].watchdog_level;
                spec.nodes.insert(
                    id,
                    NodeSpec {
                        votes: 1,
                        priority: 0,
                        fence_levels: levels,
                        watchdog_level,
                    },
                );
                self.to_add.push(id);
                format!("node {id} added")
            }
            3 if ids.len() > 2 => {
                spec.nodes.remove(&node);
                if spec.tie_breaker == TieBreaker::Node(node) {
                    spec.tie_breaker = TieBreaker::LowestNodeId;
                }
                spec.storm_limit = spec.storm_limit.min(spec.nodes.len());
                self.removed.insert(node);
                let a = self.agents.get_mut(&node).expect("node");
                if self.rng_config.random_bool(0.5) {
                    a.state = AgentState::Off;
                    a.keeper = LeaseKeeper::with_mutant(node, a.ride_mutant);
                    for on in self.group_truth.values_mut() {
                        on.remove(&node);
                    }
                    format!("node {node} powered off by the operator and removed")
                } else {
                    format!("node {node} removed while it still runs")
                }
            }
            _ => return,
        };
        self.trace(|| format!("configuration change: {what}; the arbiter restarts"));
        self.pending_spec = Some(spec);
        self.crash_arbiter();
    }

    fn crash_arbiter(&mut self) {
        self.arbiter.core = None;
        self.arbiter.crash_mid_batch = false;
        self.arbiter.write_error = 0.0;
        let down = self.rng.random_range(20_000..800_000);
        self.trace(|| format!("arbiter crashed; restarts in {}ms", down / 1000));
        self.schedule(down, Ev::ArbiterRestart);
    }

    /// `node`'s agent starts again: after a power-on (`reboot`, a new
    /// boot) or a crash of the agent alone (the same boot).
    fn start_agent(&mut self, node: NodeId, reboot: bool) {
        let offset = self.rng.random_range(0..1_000_000_000);
        let rate = self.rng.random_range(990_000..=1_010_000);
        let before = &self.agents[&node];
        let inc = before.inc + 1;
        let boot = before.boot + u64::from(reboot);
        let peers = self.spec.nodes.keys().copied().collect();
        let mut agent = Agent::new(node, (inc, boot), offset, rate, peers, self.ride_mutant());
        if let Some(w) = self.watchdogs.get_mut(&node) {
            agent.watchdog = Some((w.timeout, WatchdogRule::default()));
            if reboot {
                w.fed_us = None;
            }
        }
        self.agents.insert(node, agent);
        self.checker.started(node);
        self.checker.node_fault(self.now_us, node);
        self.schedule(0, Ev::AgentTick { node, inc });
    }

    fn power_off(&mut self, node: NodeId, intent: u64, generation: u64) -> Result<(), Violation> {
        self.observe();
        self.checker
            .fenced(node, intent, generation, &self.agents)
            .map_err(|(rule, detail)| self.violation(rule, detail))?;
        let a = self.agents.get_mut(&node).expect("node");
        if a.state == AgentState::Off {
            // Already off (its watchdog reset it): the device finds it off
            // now, whatever the arbiter granted meanwhile from heartbeats
            // queued while it stalled.
            self.checker.powered_off(self.now_us, node);
        }
        if a.state != AgentState::Off {
            for on in self.group_truth.values_mut() {
                on.remove(&node);
            }
            self.checker.powered_off(self.now_us, node);
            if let Some(w) = self.watchdogs.get_mut(&node) {
                w.fed_us = None;
            }
            let a = self.agents.get_mut(&node).expect("node");
            a.state = AgentState::Off;
            a.keeper = LeaseKeeper::with_mutant(node, a.ride_mutant);
            self.report.fences_confirmed += 1;
            let d = if self.chaos {
                self.rng.random_range(300_000..2_000_000)
            } else {
                self.rng.random_range(100_000..800_000)
            };
            self.trace(|| format!("device: node {node} powered off; back on in {}ms", d / 1000));
            self.schedule(d, Ev::PowerOn { node });
        }
        Ok(())
    }

    /// The arbiter's monotonic clock: drifting, and stepped forward by
    /// clock faults.
    fn arbiter_now(&self) -> Duration {
        let real = u128::from(self.now_us - self.arbiter.started_us);
        let t = (real * u128::from(self.arbiter.rate_ppm) / 1_000_000) as u64;
        Duration::from_micros(t + self.arbiter.step_us)
    }

    fn arbiter_step(&mut self, event: Event) -> Result<(), Violation> {
        let now = self.arbiter_now();
        let Some(core) = self.arbiter.core.as_mut() else {
            return Ok(());
        };
        let actions = core.step(now, event);
        let cut = if self.arbiter.crash_mid_batch && !actions.is_empty() {
            Some(self.rng.random_range(0..actions.len()))
        } else {
            None
        };
        for (i, action) in actions.into_iter().enumerate() {
            let write_fails = matches!(action, Action::Persist(_))
                && self.arbiter.write_error > 0.0
                && self.rng.random_bool(self.arbiter.write_error);
            if write_fails {
                // The shell stops the arbiter when the store fails a write.
                self.trace(|| format!("store write fails: {action:?}; the arbiter stops"));
                self.crash_arbiter();
                return Ok(());
            }
            if cut == Some(i) {
                self.trace(|| format!("arbiter crashes before action {i}: {action:?}"));
                self.crash_arbiter();
                return Ok(());
            }
            self.execute(action)?;
        }
        Ok(())
    }

    fn execute(&mut self, action: Action) -> Result<(), Violation> {
        let check = |r: Result<(), (&'static str, String)>, s: &Self| {
            r.map_err(|(rule, d)| s.violation(rule, d))
        };
        match action {
            Action::Persist(delta) => {
                self.trace(|| format!("persist {delta:?}"));
                self.observe();
                let r = self.checker.persisted(
                    self.now_us,
                    &self.store,
                    &delta,
                    &self.agents,
                    &self.spec,
                );
                check(r, self)?;
                self.store.apply(&delta);
            }
            Action::Ack {
                node,
                session,
                seq,
                lease,
                epoch,
                backed: survivors,
                gone,
                grants,
                leaving,
                undecided,
                ..
            } => {
                check(self.checker.sends_epoch(epoch, &self.store), self)?;
                check(
                    self.checker
                        .announced(self.now_us, &gone, &self.agents, &self.runners()),
                    self,
                )?;
                let to = self.sessions.get(&session).copied().unwrap_or(node);
                if lease.is_some() {
                    let r = self.checker.lease_granted(
                        self.now_us,
                        node,
                        self.arbiter.started_us,
                        epoch,
                        &self.agents,
                        to != node,
                    );
                    check(r, self)?;
                }
                self.send(
                    ARBITER,
                    to,
                    Msg::Ack {
                        session,
                        seq,
                        lease,
                        epoch,
                        survivors,
                        gone,
                        grants: grants.into_iter().map(|g| (g.group, g.start)).collect(),
                        by_watchdog: self.by_watchdog(),
                        leaving,
                        undecided,
                    },
                );
            }
            Action::Fence {
                node,
                intent,
                level,
                attempt,
            } => {
                self.trace(|| format!("fence node {node} intent {intent} level {level}"));
                self.observe();
                let r = self.checker.fence_started(
                    self.now_us,
                    node,
                    &self.store,
                    intent,
                    &self.agents,
                    &self.spec,
                );
                check(r, self)?;
                let inc = self.arbiter.inc;
                let fail_p = self.level_fail.get(level).copied().unwrap_or(0.0);
                if self.hang > 0.0 && self.rng.random_bool(self.hang) {
                    self.trace(|| "device hangs".into());
                } else {
                    let ok = !(fail_p > 0.0 && self.rng.random_bool(fail_p));
                    // Now and then the result comes after the core gave up.
                    let d = if self.chaos && self.rng.random_bool(0.03) {
                        self.rng.random_range(400_000..900_000)
                    } else {
                        self.rng.random_range(1_000..40_000)
                    };
                    self.schedule(
                        d,
                        Ev::DeviceDone {
                            node,
                            intent,
                            level,
                            attempt,
                            inc,
                            ok,
                            generation: self.checker.generation,
                        },
                    );
                }
                if self.opts.mutant == Some(Mutant::AnnounceAtFenceStart) {
                    let epoch = self.store.epoch + 1;
                    let survivors: BTreeSet<NodeId> = self
                        .store
                        .backed
                        .iter()
                        .copied()
                        .filter(|&n| n != node)
                        .collect();
                    let gone: BTreeSet<NodeId> = [node].into();
                    let r =
                        self.checker
                            .announced(self.now_us, &gone, &self.agents, &self.runners());
                    check(r, self)?;
                    for &to in &survivors {
                        self.send(
                            ARBITER,
                            to,
                            Msg::Announce {
                                epoch,
                                survivors: survivors.clone(),
                                gone: gone.clone(),
                                by_watchdog: BTreeSet::new(),
                            },
                        );
                    }
                }
            }
            Action::Announce {
                to,
                epoch,
                survivors,
                gone,
            } => {
                self.trace(|| {
                    format!("announce epoch {epoch} survivors {survivors:?} gone {gone:?}")
                });
                check(self.checker.sends_epoch(epoch, &self.store), self)?;
                let r = self
                    .checker
                    .announced(self.now_us, &gone, &self.agents, &self.runners());
                check(r, self)?;
                for n in to {
                    self.send(
                        ARBITER,
                        n,
                        Msg::Announce {
                            epoch,
                            survivors: survivors.clone(),
                            gone: gone.clone(),
                            by_watchdog: self.by_watchdog(),
                        },
                    );
                }
            }
            Action::PowerOn { node } => {
                return Err(self.violation(
                    "power on without an unfence",
                    format!("node {node}: no operator asked"),
                ));
            }
            Action::Refuse { node, reason, .. } if self.removed.contains(&node) => {
                self.trace(|| format!("removed node {node} refused: {reason}"));
            }
            Action::Refuse { node, reason, .. } => {
                return Err(self.violation(
                    "well-formed input refused",
                    format!("node {node}: {reason}"),
                ));
            }
            Action::Notice(Notice::AliveAfterOff { node, detail }) => {
                self.trace(|| format!("ALERT node {node} alive after off: {detail}"));
                self.report.alive_after_off_alerts += 1;
                // The operator fixes the wiring first; meanwhile the alert
                // stands.
                if self.alerted.insert(node) && !self.chaos {
                    self.schedule(200_000, Ev::OperatorClear { node });
                }
            }
            Action::Notice(Notice::WatchdogFenced { node, intent }) => {
                self.trace(|| {
                    format!("node {node} counted fenced by the watchdog rule (intent {intent})")
                });
                self.report.watchdog_fences += 1;
                self.checker.counted_by_watchdog(node);
            }
            Action::Notice(Notice::MaintenanceHold { nodes }) => {
                self.trace(|| format!("maintenance holds {nodes:?}: reported, not fenced"));
                self.report.maintenance_holds += 1;
            }
            Action::Notice(n) => self.trace(|| format!("notice {n:?}")),
        }
        Ok(())
    }

    fn deliver(&mut self, to: Endpoint, from: Endpoint, msg: Msg) -> Result<(), Violation> {
        if to == ARBITER {
            if self.arbiter.core.is_none() {
                return Ok(());
            }
            match msg {
                Msg::Connect {
                    node,
                    session,
                    known_epoch,
                    instance,
                    boot,
                    watchdog_ms,
                } => {
                    self.arbiter_step(Event::Connected {
                        node,
                        session,
                        known_epoch,
                        instance,
                        boot,
                    })?;
                    self.report_watchdog(node, session, watchdog_ms)?;
                    if self.arbiter.core.is_some() {
                        self.boot_heard.insert(node, boot);
                    }
                    // A node the configuration does not have is refused
                    // (the core said so); the others are welcomed with the
                    // peers they are to probe.
                    if let Some(core) = self
                        .arbiter
                        .core
                        .as_ref()
                        .filter(|c| c.node(node).is_some())
                    {
                        let epoch = core.epoch();
                        let peers = core.spec().nodes.keys().copied().collect();
                        let to = self.sessions.get(&session).copied().unwrap_or(node);
                        self.send(
                            ARBITER,
                            to,
                            Msg::Welcome {
                                session,
                                epoch,
                                peers,
                            },
                        );
                    }
                }
                Msg::Heartbeat {
                    node,
                    session,
                    seq,
                    sent_at_us,
                    reach,
                    heuristics,
                    known_epoch,
                    applied_seq,
                    groups,
                    watchdog_ms,
                    acked_seq,
                    ridden,
                } => {
                    self.trace(|| format!("arbiter hears node {node} seq {seq} reach {reach:?} groups {groups:?} applied {applied_seq}"));
                    if self.wd_reported.get(&node) != Some(&(session, watchdog_ms)) {
                        self.report_watchdog(node, session, watchdog_ms)?;
                    }
                    self.arbiter_step(Event::Heartbeat {
                        node,
                        session,
                        seq,
                        sent_at_us,
                        reachable: reach,
                        heuristics,
                        known_epoch,
                        applied_seq,
                        groups,
                        acked_seq,
                        ridden,
                    })?;
                }
                _ => {}
            }
            return Ok(());
        }
        let now_us = self.now_us;
        let hb = self.spec.timing.heartbeat_interval;
        let ride_out = self.spec.timing.ride_out;
        let me = self.net.speaks_as(to);
        let group_names: Vec<String> = self.spec.groups.iter().map(|g| g.name.clone()).collect();
        let Some(a) = self.agent_mut(to) else {
            return Ok(()); // a spare address nobody uses yet
        };
        if a.state != AgentState::Running {
            return Ok(());
        }
        let local = a.local(now_us);
        let mut group_input = None;
        let input = match msg {
            Msg::Welcome {
                session,
                epoch,
                peers,
            } => {
                if a.session != Some(session) || a.welcomed {
                    return Ok(());
                }
                a.welcomed = true;
                a.peers = peers.into_iter().filter(|&p| p != me).collect();
                let keep = &a.peers;
                a.probe_ok.retain(|p, _| keep.contains(p));
                a.last_from_arbiter = local;
                group_input = Some(GroupInput::Defined {
                    groups: group_names,
                });
                Input::Welcome {
                    heartbeat_interval: hb,
                    epoch,
                    ride_out,
                }
            }
            Msg::Ack {
                session,
                seq,
                lease,
                epoch,
                survivors,
                gone,
                grants,
                by_watchdog,
                leaving,
                undecided,
            } => {
                if a.session != Some(session) || !a.welcomed {
                    return Ok(());
                }
                if gone.contains(&me) {
                    a.gone_by_watchdog = by_watchdog.contains(&me);
                }
                a.last_from_arbiter = local;
                // (An undecided arbiter places nothing: the groups of a
                // ridden lease run on, as the agent does.)
                if !(undecided && lease.is_none() && !ride_out.is_zero()) {
                    group_input = Some(GroupInput::Ack {
                        seq,
                        leased: false, // (set below, once the lease core took the ack)
                        grants,
                    });
                }
                Input::Ack {
                    seq,
                    lease,
                    epoch,
                    survivors,
                    gone,
                    leaving,
                    undecided,
                }
            }
            Msg::Announce {
                epoch,
                survivors,
                gone,
                by_watchdog,
            } => {
                if gone.contains(&me) {
                    a.gone_by_watchdog = by_watchdog.contains(&me);
                }
                Input::Announcement {
                    epoch,
                    survivors,
                    gone,
                }
            }
            Msg::Probe { from, seq, sent_at } => {
                let _ = seq;
                let own = a.keeper.own_report(local);
                let reaches = a
                    .probe_ok
                    .iter()
                    .filter(|(_, t)| local.saturating_sub(**t) <= hb * 3)
                    .map(|(&p, _)| p)
                    .collect();
                self.send(
                    to,
                    from,
                    Msg::ProbeReply {
                        from: to,
                        sent_at,
                        epoch: own.epoch,
                        reaches,
                        fence_known: own.fence_known,
                        arbiter_contact: own.arbiter_contact,
                    },
                );
                return Ok(());
            }
            Msg::ProbeReply {
                from,
                sent_at,
                epoch,
                reaches,
                fence_known,
                arbiter_contact,
            } => {
                // (A late reply from a peer the arbiter no longer names
                // counts for nothing.)
                if !a.peers.contains(&from) {
                    return Ok(());
                }
                a.probe_ok.insert(from, local);
                if self.probe_silent.remove(&(to, from)) {
                    self.observe_links();
                }
                // (Without a ride-out the answer's content is not read.)
                if ride_out.is_zero() {
                    return Ok(());
                }
                Input::Peers(vec![PeerReport {
                    node: from,
                    sent_at,
                    epoch,
                    reaches,
                    fence_known,
                    arbiter_contact,
                }])
            }
            Msg::Connect { .. } | Msg::Heartbeat { .. } => return Ok(()),
        };
        let _ = from;
        let Some(a) = self.agent_mut(to) else {
            return Ok(());
        };
        let granting = matches!(input, Input::Ack { lease: Some(_), .. });
        let before = a.keeper.lease(local).map(|l| l.granted_until);
        let outs = a.keeper.step(local, input);
        let leased = a.keeper.lease(local).is_some();
        if granting && a.keeper.lease(local).map(|l| l.granted_until) != before {
            a.grants_taken.push_back(now_us);
            while a.grants_taken.len() > 64 {
                a.grants_taken.pop_front();
            }
        }
        if self.agent_outputs(to, outs) {
            self.group_step(me, GroupInput::LeaseLost)?;
        }
        if let Some(mut gi) = group_input
            && to == me
        {
            // (A second process speaking as the node runs no groups.)
            if let GroupInput::Ack { leased: l, .. } = &mut gi {
                *l = leased;
            }
            self.group_step(me, gi)?;
        }
        Ok(())
    }

    /// Feed node `node`'s group keeper; run what it asks.
    fn group_step(&mut self, node: NodeId, input: GroupInput) -> Result<(), Violation> {
        let Some(a) = self.agents.get_mut(&node) else {
            return Ok(());
        };
        let inc = a.inc;
        let outs = a.groups.step(input);
        for o in outs {
            let (group, start, urgent) = match o {
                GroupOutput::Start { group } => (group, true, false),
                GroupOutput::Stop { group, urgent } => (group, false, urgent),
            };
            if start {
                let on = self.group_truth.entry(group.clone()).or_default();
                // (A node recorded off that runs on — a device that lied,
                // or switched the wrong outlet — is the device's fault: an
                // alert, and the rule of one holder per node, cover it.)
                if let Some(&other) = on
                    .iter()
                    .find(|&&n| n != node && !self.checker.is_off_but_alive(n))
                {
                    return Err(self.violation(
                        "one runner per group",
                        format!("node {node} starts group {group} while node {other} runs it"),
                    ));
                }
                on.insert(node);
                self.trace(|| format!("node {node} starts group {group}"));
            } else {
                self.trace(|| format!("node {node} stops group {group} (urgent {urgent})"));
            }
            let mut d = if urgent {
                self.rng_groups.random_range(1_000..20_000)
            } else {
                self.rng_groups.random_range(5_000..80_000)
            };
            // On a machine with a watchdog, an urgent stop may hang (a
            // fault of the node: its watchdog must reset it).
            if urgent
                && self.hang_stop > 0.0
                && self.chaos
                && self.opts.focus != Some(Focus::ArbiterOutages)
                && self.watchdogs.contains_key(&node)
                && self.rng_wd.random_bool(self.hang_stop)
            {
                d = 60_000_000;
                self.agents.get_mut(&node).expect("node").own_fault = true;
                self.checker.node_fault(self.now_us, node);
                self.trace(|| format!("node {node}: stop of group {group} hangs"));
            }
            // A stop fails now and then: the node cannot be trusted.
            // (Not where only the arbiter fails: a node whose stop failed
            // is rightly fenced.)
            let ok = start
                || !self.chaos
                || self.opts.focus == Some(Focus::ArbiterOutages)
                || !self.rng_groups.random_bool(0.002);
            self.schedule(
                d,
                Ev::GroupDone {
                    node,
                    inc,
                    group,
                    start,
                    ok,
                },
            );
        }
        Ok(())
    }

    fn agent_tick(&mut self, node: NodeId, inc: u32) -> Result<(), Violation> {
        let now_us = self.now_us;
        let hb = self.spec.timing.heartbeat_interval;
        let me = self.net.speaks_as(node);
        let a = self.agent_mut(node).expect("agent");
        if a.inc != inc || a.state != AgentState::Running {
            return Ok(());
        }
        let local = a.local(now_us);
        let mut sends: Vec<(Endpoint, Msg)> = Vec::new();
        // Session upkeep: reconnect after 3 intervals without an answer.
        if a.session.is_some() && a.welcomed && local.saturating_sub(a.last_from_arbiter) > hb * 3 {
            a.session = None;
            a.welcomed = false;
            a.keeper.step(local, Input::Disconnected);
        }
        if a.session.is_some() && !a.welcomed && local >= a.connect_retry_at {
            a.session = None;
        }
        if a.session.is_none() && now_us >= a.connect_after_us {
            let session = (u64::from(me) << 48) | (u64::from(a.inc) << 24) | a.next_session;
            a.next_session += 1;
            a.session = Some(session);
            a.welcomed = false;
            a.connect_retry_at = local + hb;
            sends.push((
                ARBITER,
                Msg::Connect {
                    node: me,
                    session,
                    known_epoch: a.keeper.epoch(),
                    instance: u64::from(a.inc),
                    boot: a.boot,
                    watchdog_ms: armed_ms(a),
                },
            ));
        }
        if local >= a.next_probe {
            a.probe_seq += 1;
            for &peer in &a.peers {
                sends.push((
                    peer,
                    Msg::Probe {
                        from: node,
                        seq: a.probe_seq,
                        sent_at: local,
                    },
                ));
            }
            while a.next_probe <= local {
                a.next_probe += hb;
            }
        }
        let outs = a.keeper.step(local, Input::Tick);
        for (to, msg) in sends {
            if let Msg::Connect { session, .. } = msg {
                self.sessions.insert(session, node);
            }
            self.send(node, to, msg);
        }
        if self.agent_outputs(node, outs) && node == me {
            self.group_step(me, GroupInput::LeaseLost)?;
        }
        // A stop that failed is a fault of this node while it lasts. Once
        // the faults are over, a node still in that state (not fenced: it
        // never was a member) gets its agent restarted by an operator, who
        // fixed the resource; the new agent stops everything first.
        let a = self.agent(node).expect("agent");
        if node == me
            && a.groups
                .report()
                .1
                .iter()
                .any(|(_, r)| *r == GroupRun::StopFailed)
        {
            self.checker.node_fault(now_us, me);
            if !self.chaos {
                let a = self.agents.get_mut(&me).expect("node");
                a.state = AgentState::Crashed;
                a.keeper = LeaseKeeper::with_mutant(me, a.ride_mutant);
                self.trace(|| format!("operator restarts node {me}'s agent (a stop had failed)"));
                self.schedule(1_000, Ev::AgentRestart { node: me });
                return Ok(());
            }
        }
        if node == me {
            if self.agents[&me].own_fault {
                self.checker.node_fault(now_us, me);
            }
            self.feed_watchdog(me);
        }
        // Wake for the next heartbeat, probe or lease end; at least every
        // 10 ms for session upkeep.
        let a = self.agent(node).expect("agent");
        let local = a.local(now_us);
        let mut next = a.next_probe.min(local + Duration::from_micros(TICK_US));
        if let Some(d) = a.keeper.next_deadline() {
            next = next.min(d);
        }
        let wait_local = next.saturating_sub(local).as_micros() as u64;
        // Convert an agent-clock wait to real time (round up).
        let wait = (u128::from(wait_local) * 1_000_000).div_ceil(u128::from(a.rate_ppm)) as u64;
        self.schedule(wait.max(1), Ev::AgentTick { node, inc });
        Ok(())
    }

    /// The agent at endpoint `ep`: a node's, or a second process's
    /// speaking as one.
    fn agent(&self, ep: Endpoint) -> Option<&Agent> {
        if ep > self.net.capacity() {
            self.clones.get(&self.net.speaks_as(ep))
        } else {
            self.agents.get(&ep)
        }
    }

    fn agent_mut(&mut self, ep: Endpoint) -> Option<&mut Agent> {
        if ep > self.net.capacity() {
            self.clones.get_mut(&self.net.speaks_as(ep))
        } else {
            self.agents.get_mut(&ep)
        }
    }

    /// What the agent at endpoint `node` does (see `agent`); true if its
    /// node's own agent lost its lease (its groups must stop).
    fn agent_outputs(&mut self, node: Endpoint, outs: Vec<Output>) -> bool {
        let hb = self.spec.timing.heartbeat_interval;
        let me = self.net.speaks_as(node);
        let mut lost = false;
        for o in outs {
            match o {
                Output::SendHeartbeat {
                    seq,
                    sent_at,
                    known_epoch,
                    acked_seq,
                } => {
                    let a = self.agent(node).expect("agent");
                    let Some(session) = a.session.filter(|_| a.welcomed) else {
                        continue;
                    };
                    let local = a.local(self.now_us);
                    let reach: Vec<NodeId> = a
                        .probe_ok
                        .iter()
                        .filter(|(_, t)| local.saturating_sub(**t) <= hb * 3)
                        .map(|(&p, _)| p)
                        .collect();
                    let (applied_seq, groups) = if node == me {
                        let (applied, states) = a.groups.report();
                        (
                            applied,
                            states.into_iter().map(|(g, r)| (g, run_state(r))).collect(),
                        )
                    } else {
                        (0, Vec::new())
                    };
                    let msg = Msg::Heartbeat {
                        node: me,
                        session,
                        seq,
                        sent_at_us: sent_at.as_micros() as u64,
                        reach,
                        heuristics: a.heuristics,
                        known_epoch,
                        applied_seq,
                        groups,
                        watchdog_ms: armed_ms(a),
                        acked_seq,
                        ridden: a.keeper.lease(local).map_or(Duration::ZERO, |l| l.ridden()),
                    };
                    self.send(node, ARBITER, msg);
                }
                Output::Fenced { epoch } => {
                    // The agent stops at once (it exits with status 3).
                    self.trace(|| {
                        format!("node {node} learns it was fenced in epoch {epoch}: stops")
                    });
                    let a = self.agent_mut(node).expect("agent");
                    // Counted fenced by the watchdog rule while at rest:
                    // it rejoins (as the real agent does).
                    if node == me
                        && a.gone_by_watchdog
                        && a.groups.at_rest()
                        && a.watchdog.as_ref().is_some_and(|(_, r)| r.armed())
                    {
                        a.keeper.rejoin();
                        a.session = None;
                        a.welcomed = false;
                        self.trace(|| {
                            format!("node {node} at rest with its watchdog armed: rejoins")
                        });
                        continue;
                    }
                    a.state = AgentState::Crashed;
                    a.keeper = LeaseKeeper::with_mutant(me, a.ride_mutant);
                    // It stays down (exit status 3) until an operator
                    // starts it again, once the faults are over (a second
                    // process speaking as the node is not started again).
                    if !self.chaos && node == me {
                        self.schedule(500_000, Ev::AgentRestart { node });
                    }
                }
                Output::LeaseLost { reason } if node == me => {
                    self.trace(|| format!("node {node}: lease lost ({reason:?})"));
                    lost = true;
                }
                other => self.trace(|| format!("node {node}: {other:?}")),
            }
        }
        lost
    }
}

/// The watchdog an agent reports armed (ms; 0: none).
fn armed_ms(a: &Agent) -> u64 {
    a.watchdog
        .as_ref()
        .filter(|(_, r)| r.armed())
        .map_or(0, |(t, _)| t.as_millis() as u64)
}

/// An agent's group state as the arbiter's core reads it (the shells
/// convert the wire form the same way).
pub fn run_state(r: GroupRun) -> RunState {
    match r {
        GroupRun::Stopped => RunState::Stopped,
        GroupRun::Starting => RunState::Starting,
        GroupRun::Running => RunState::Running,
        GroupRun::Stopping => RunState::Stopping,
        GroupRun::Failed => RunState::Failed,
        GroupRun::StopFailed => RunState::StopFailed,
    }
}
