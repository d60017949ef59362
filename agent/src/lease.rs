//! The agent's functional core: heartbeat timing and lease keeping.
//!
//! Pure: `step(now, input) -> Vec<Output>`, with `now` the agent's own
//! monotonic clock. A lease runs from the moment the agent *sent* the
//! heartbeat the arbiter acknowledged, so the agent's copy always ends
//! before the arbiter's. The agent never trusts the echoed send time: it
//! looks up its own record of that sequence number.
//!
//! Invariants: the epoch the agent knows never decreases; an acknowledgement
//! from an older epoch grants nothing; a lease only grows (granted, or
//! ridden out: below) until the arbiter denies one, which revokes it at
//! once.
//!
//! **Riding out the arbiter's absence** (`ride_out` above zero, told in the
//! Welcome). While no arbiter grants it a lease, a keeper may extend the
//! lease it holds, and only while the mesh is whole: every other node of
//! the lease's survivor set answered a recent probe reporting the same
//! epoch, that it reaches all the others, that it knows of no fence in
//! progress and that no arbiter granted *it* a lease lately either (within
//! one and a half heartbeat intervals). Each extension runs from the send
//! time of the oldest probe it rests on, for one lease, and never past the
//! granted end plus `ride_out`; the moment the evidence stops, the lease
//! lapses at its end like any other. A survivor set of one never rides out
//! (no peer can vouch that the arbiter, not the node, is gone), and a
//! keeper that has had no acknowledgement yet answers "fence known" (it
//! cannot vouch). An arbiter that acknowledges but cannot decide yet (its
//! start-up grace, no quorate set heard, its leadership lapsed) neither
//! grants nor revokes a lease being ridden out; any other refusal revokes
//! it at once.
//!
//! A keeper that held a lease and then reads its own node in the `gone` set
//! of a later epoch was recorded as fenced (powered off) while it still runs:
//! the device switched the wrong outlet or lied. It drops its lease and is
//! [`Output::Fenced`] for good: no heartbeat, no lease, ever again. A fresh
//! keeper (a rebooted node: it never held a lease) reading itself in `gone`
//! is simply rejoining.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub type NodeId = u32;

/// How many unacknowledged heartbeats the agent remembers.
const MAX_IN_FLIGHT: usize = 64;

/// The longest ride-out a Welcome can ask for.
pub const MAX_RIDE_OUT: Duration = Duration::from_secs(60);

/// The lease the agent holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Agent-local instant at which the lease ends (ridden out, perhaps).
    pub until: Duration,
    pub epoch: u64,
    /// The survivor set it was granted under.
    pub survivors: BTreeSet<NodeId>,
    /// Where the arbiter's last grant of it ends: `until` beyond this is
    /// ridden out on the whole mesh.
    pub granted_until: Duration,
    /// The length of the arbiter's last grant: one extension's length.
    pub length: Duration,
}

impl Lease {
    /// How far beyond the arbiter's grant the lease runs (zero: not ridden).
    pub fn ridden(&self) -> Duration {
        self.until.saturating_sub(self.granted_until)
    }
}

/// What a peer said in answer to one of this agent's probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub node: NodeId,
    /// When this agent sent the probe (its own clock): the answer is no
    /// older than this.
    pub sent_at: Duration,
    /// The highest epoch the peer knows.
    pub epoch: u64,
    /// The peers the peer reached by probe lately.
    pub reaches: BTreeSet<NodeId>,
    /// The peer's last acknowledgement named a node being fenced.
    pub fence_known: bool,
    /// An arbiter granted the peer a lease lately.
    pub arbiter_contact: bool,
}

/// What this agent says of itself to a peer's probe (see [`PeerReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnReport {
    pub epoch: u64,
    pub fence_known: bool,
    pub arbiter_contact: bool,
}

/// A rule of the ride-out broken on purpose (the simulation shows its
/// checker catches each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RideMutant {
    /// Extend past the granted end plus `ride_out`.
    NoCap,
    /// Trust the own probes only: ignore what peers reach.
    IgnorePeerReach,
    /// Ride out although a peer hears an arbiter.
    IgnoreArbiterContact,
    /// Ride out although a fence is known to be in progress.
    IgnoreFence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Tick,
    /// A session opened; the arbiter told the timings.
    Welcome {
        heartbeat_interval: Duration,
        epoch: u64,
        /// How far beyond its grant a lease may be ridden out (zero: never).
        ride_out: Duration,
    },
    /// The session ended; no acks will come until the next Welcome.
    Disconnected,
    Ack {
        seq: u64,
        lease: Option<Duration>,
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
        /// Nodes of `survivors` whose fence is in progress (or confirmed
        /// and not yet announced).
        leaving: BTreeSet<NodeId>,
        /// No lease because the arbiter cannot decide yet (start-up grace,
        /// no quorate set heard): a lease being ridden out stands.
        undecided: bool,
    },
    /// The latest answers of peers to this agent's probes.
    Peers(Vec<PeerReport>),
    Announcement {
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send heartbeat `seq`, stamped `sent_at` (agent clock).
    SendHeartbeat {
        seq: u64,
        sent_at: Duration,
        known_epoch: u64,
        /// The highest acknowledgement received (0: none).
        acked_seq: u64,
    },
    LeaseAcquired {
        lease: Lease,
    },
    /// Resources must stop now.
    LeaseLost {
        reason: LeaseLossReason,
    },
    /// The arbiter recorded this node as fenced in `epoch` although this
    /// keeper, which held a lease before, still runs: the agent must stop.
    /// Emitted once; the keeper is inert afterwards.
    Fenced {
        epoch: u64,
    },
    /// A new epoch: these nodes are confirmed fenced; survivors may take over
    /// their work, passing `epoch` on as the fencing token.
    EpochAdvanced {
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLossReason {
    Expired,
    Denied,
    /// This node is in the `gone` set of an epoch: see [`Output::Fenced`].
    Fenced,
}

#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    /// This node: finding it in an epoch's `gone` set may mean it is fenced.
    node: NodeId,
    interval: Option<Duration>,
    next_send: Duration,
    next_seq: u64,
    in_flight: BTreeMap<u64, Duration>,
    lease: Option<Lease>,
    epoch: u64,
    /// The epoch of the first lease this keeper held; `None` while it never
    /// held one (a fresh process: a rebooted node rejoining).
    first_held: Option<u64>,
    /// Set once this node read itself fenced while running; final.
    fenced: Option<u64>,
    /// From the last Welcome: how far a lease may be ridden out.
    ride_out: Duration,
    /// The last heartbeat interval told (kept across sessions).
    last_interval: Duration,
    /// The latest answer of each peer.
    peers: BTreeMap<NodeId, PeerReport>,
    /// The last acknowledgement named a node being fenced.
    fence_known: bool,
    /// When an acknowledgement last granted a lease.
    last_grant: Option<Duration>,
    /// The highest acknowledgement received.
    acked_seq: u64,
    mutant: Option<RideMutant>,
}

impl LeaseKeeper {
    pub fn new(node: NodeId) -> Self {
        LeaseKeeper {
            node,
            interval: None,
            next_send: Duration::ZERO,
            next_seq: 1,
            in_flight: BTreeMap::new(),
            lease: None,
            epoch: 0,
            first_held: None,
            fenced: None,
            ride_out: Duration::ZERO,
            last_interval: Duration::from_millis(100),
            peers: BTreeMap::new(),
            fence_known: false,
            last_grant: None,
            acked_seq: 0,
            mutant: None,
        }
    }

    /// A keeper with one ride-out rule broken (simulation only).
    pub fn with_mutant(node: NodeId, mutant: Option<RideMutant>) -> Self {
        LeaseKeeper {
            mutant,
            ..LeaseKeeper::new(node)
        }
    }

    /// What this agent tells a peer's probe about itself at `now`. An
    /// arbiter is "in contact" while its last grant is at most one and a
    /// half heartbeat intervals old: a grant comes every interval.
    pub fn own_report(&self, now: Duration) -> OwnReport {
        OwnReport {
            epoch: self.epoch,
            // Before its first acknowledgement (a process just started) it
            // cannot vouch that no fence is in progress.
            fence_known: self.fence_known || self.acked_seq == 0,
            arbiter_contact: self.contact_until().is_some_and(|t| now < t),
        }
    }

    /// Until when this agent says an arbiter is in contact (its last grant
    /// plus one and a half intervals); `None`: never granted one.
    pub fn contact_until(&self) -> Option<Duration> {
        let window = self.last_interval + self.last_interval / 2;
        self.last_grant.map(|t| t.saturating_add(window))
    }

    /// The ride-out allowance the last Welcome told.
    pub fn ride_out(&self) -> Duration {
        self.ride_out
    }

    /// Start over as a node rejoining (counted fenced by the watchdog rule
    /// while at rest): no lease, not fenced, never held one; the epoch and
    /// the heartbeat numbering go on (an acknowledgement numbered below
    /// one already applied would be ignored).
    pub fn rejoin(&mut self) {
        self.interval = None;
        self.in_flight.clear();
        self.lease = None;
        self.first_held = None;
        self.fenced = None;
        self.fence_known = false;
        self.last_grant = None;
    }

    /// The epoch in which the arbiter recorded this running node as fenced.
    pub fn fenced(&self) -> Option<u64> {
        self.fenced
    }

    /// The lease, if valid at `now`.
    pub fn lease(&self, now: Duration) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| now < l.until)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When the next tick is needed: the next heartbeat or the lease's end.
    pub fn next_deadline(&self) -> Option<Duration> {
        let hb = self.interval.map(|_| self.next_send);
        let lease = self.lease.as_ref().map(|l| l.until);
        match (hb, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.fenced.is_some() {
            return out; // inert: the agent is stopping
        }
        match input {
            Input::Tick => {}
            Input::Welcome {
                heartbeat_interval,
                epoch,
                ride_out,
            } => {
                let interval =
                    heartbeat_interval.clamp(Duration::from_millis(1), Duration::from_secs(60));
                self.interval = Some(interval);
                self.last_interval = interval;
                self.ride_out = ride_out.min(MAX_RIDE_OUT);
                self.next_send = now;
                self.in_flight.clear();
                self.epoch = self.epoch.max(epoch);
            }
            Input::Disconnected => {
                self.interval = None;
                self.in_flight.clear();
            }
            Input::Ack {
                seq,
                lease,
                epoch,
                survivors,
                gone,
                leaving,
                undecided,
            } => {
                let Some(sent_at) = self.in_flight.remove(&seq) else {
                    return self.expire(now, out); // unknown or duplicate ack
                };
                // Acks for older heartbeats are superseded.
                self.in_flight.retain(|&s, _| s > seq);
                if self.fence_check(now, epoch, &gone, &mut out) {
                    return out;
                }
                if epoch < self.epoch {
                    return self.expire(now, out);
                }
                self.acked_seq = self.acked_seq.max(seq);
                self.fence_known = !leaving.is_empty();
                self.advance_epoch(epoch, &survivors, &gone, &mut out);
                match lease {
                    Some(d) => {
                        let Some(until) = sent_at.checked_add(d) else {
                            return self.expire(now, out);
                        };
                        let held = self.lease(now).cloned();
                        let (until, granted_until) = match &held {
                            // Same grant renewed: a reordered older ack never shortens it.
                            Some(l) if l.epoch == epoch && l.survivors == survivors => {
                                (l.until.max(until), l.granted_until.max(until))
                            }
                            _ => (until, until),
                        };
                        if until > now {
                            let lease = Lease {
                                until,
                                epoch,
                                survivors,
                                granted_until,
                                length: d,
                            };
                            self.last_grant = Some(now);
                            self.first_held.get_or_insert(epoch);
                            self.lease = Some(lease.clone());
                            if held.is_none() {
                                out.push(Output::LeaseAcquired { lease });
                            }
                        }
                    }
                    // An arbiter that cannot decide yet takes nothing away
                    // from a lease ridden out (nor from one it granted
                    // earlier, which ends on its own).
                    None if undecided && self.ride_out > Duration::ZERO => {}
                    None => {
                        if self.lease(now).is_some() {
                            out.push(Output::LeaseLost {
                                reason: LeaseLossReason::Denied,
                            });
                        }
                        self.lease = None;
                    }
                }
            }
            Input::Peers(reports) => {
                for r in reports {
                    if r.node == self.node {
                        continue;
                    }
                    match self.peers.get(&r.node) {
                        Some(old) if old.sent_at >= r.sent_at => {}
                        _ => {
                            self.peers.insert(r.node, r);
                        }
                    }
                }
            }
            Input::Announcement {
                epoch,
                survivors,
                gone,
            } => {
                if self.fence_check(now, epoch, &gone, &mut out) {
                    return out;
                }
                self.advance_epoch(epoch, &survivors, &gone, &mut out)
            }
        }
        self.expire(now, out)
    }

    /// This node in the `gone` set of `epoch` after holding a lease under an
    /// earlier epoch: recorded as powered off while running. Drops the lease
    /// and turns the keeper inert. A keeper that never held a lease, or
    /// first held one in `epoch` itself, is a rebooted node rejoining.
    fn fence_check(
        &mut self,
        now: Duration,
        epoch: u64,
        gone: &BTreeSet<NodeId>,
        out: &mut Vec<Output>,
    ) -> bool {
        if !gone.contains(&self.node) || self.first_held.is_none_or(|e| e >= epoch) {
            return false;
        }
        if self.lease(now).is_some() {
            out.push(Output::LeaseLost {
                reason: LeaseLossReason::Fenced,
            });
        }
        self.lease = None;
        self.interval = None;
        self.in_flight.clear();
        self.epoch = self.epoch.max(epoch);
        self.fenced = Some(epoch);
        out.push(Output::Fenced { epoch });
        true
    }

    fn advance_epoch(
        &mut self,
        epoch: u64,
        survivors: &BTreeSet<NodeId>,
        gone: &BTreeSet<NodeId>,
        out: &mut Vec<Output>,
    ) {
        if epoch > self.epoch {
            self.epoch = epoch;
            out.push(Output::EpochAdvanced {
                epoch,
                survivors: survivors.clone(),
                gone: gone.clone(),
            });
        }
    }

    /// Extend the lease held at `now` as far as the whole mesh proves (see
    /// the module's documentation); never shortens it.
    fn ride(&mut self, now: Duration) {
        let m = self.mutant;
        if self.ride_out.is_zero() || (self.fence_known && m != Some(RideMutant::IgnoreFence)) {
            return;
        }
        let epoch = self.epoch;
        let Some(lease) = self
            .lease
            .as_ref()
            .filter(|l| now < l.until && l.epoch == epoch)
        else {
            return;
        };
        let cap = if m == Some(RideMutant::NoCap) {
            Duration::MAX
        } else {
            lease.granted_until.saturating_add(self.ride_out)
        };
        // A survivor set of one rides nothing out: no peer can vouch that
        // the arbiter, not this node, is gone.
        if lease.survivors.iter().all(|&p| p == self.node) {
            return;
        }
        let mut until = cap;
        for &p in lease.survivors.iter().filter(|&&p| p != self.node) {
            let Some(r) = self.peers.get(&p) else {
                return;
            };
            let reaches_all = m == Some(RideMutant::IgnorePeerReach)
                || lease
                    .survivors
                    .iter()
                    .all(|q| *q == p || r.reaches.contains(q));
            if r.epoch != lease.epoch
                || !reaches_all
                || (r.fence_known && m != Some(RideMutant::IgnoreFence))
                || (r.arbiter_contact && m != Some(RideMutant::IgnoreArbiterContact))
            {
                return;
            }
            until = until.min(r.sent_at.saturating_add(lease.length));
        }
        if let Some(l) = self.lease.as_mut()
            && until > l.until
        {
            l.until = until;
        }
    }

    fn expire(&mut self, now: Duration, mut out: Vec<Output>) -> Vec<Output> {
        self.ride(now);
        if self.lease.as_ref().is_some_and(|l| now >= l.until) {
            self.lease = None;
            out.push(Output::LeaseLost {
                reason: LeaseLossReason::Expired,
            });
        }
        if let Some(interval) = self.interval
            && now >= self.next_send
        {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.in_flight.insert(seq, now);
            while self.in_flight.len() > MAX_IN_FLIGHT {
                self.in_flight.pop_first();
            }
            // Next slot on the same phase; missed slots are skipped rather
            // than sent in a burst. Saturating: no clock value overflows.
            let behind = now.saturating_sub(self.next_send).as_nanos() / interval.as_nanos().max(1);
            let slots = u32::try_from(behind + 1).unwrap_or(u32::MAX);
            let next = self
                .next_send
                .saturating_add(interval.saturating_mul(slots));
            self.next_send = next.max(now.saturating_add(Duration::from_nanos(1)));
            out.push(Output::SendHeartbeat {
                seq,
                sent_at: now,
                known_epoch: self.epoch,
                acked_seq: self.acked_seq,
            });
        }
        out
    }
}

#[cfg(test)]
mod rejoin_tests {
    use super::*;

    #[test]
    fn a_rejoining_keeper_numbers_on_and_is_not_fenced() {
        let mut k = LeaseKeeper::new(3);
        k.next_seq = 500;
        k.epoch = 7;
        k.first_held = Some(5);
        k.fenced = Some(7);
        k.rejoin();
        assert_eq!(k.fenced(), None);
        assert_eq!(k.epoch(), 7);
        assert_eq!(k.next_seq, 500, "heartbeats number on");
        assert_eq!(
            k.first_held, None,
            "a gone set naming it fences nothing until it holds a lease again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ack(seq: u64, lease: Option<u64>, epoch: u64) -> Input {
        Input::Ack {
            seq,
            lease: lease.map(ms),
            epoch,
            survivors: [1, 2].into(),
            gone: [].into(),
            leaving: [].into(),
            undecided: false,
        }
    }

    #[test]
    fn lease_runs_from_send_time_not_receive_time() {
        let mut k = LeaseKeeper::new(1);
        let out = k.step(
            ms(0),
            Input::Welcome {
                heartbeat_interval: ms(100),
                epoch: 0,
                ride_out: Duration::ZERO,
            },
        );
        assert_eq!(
            out,
            vec![Output::SendHeartbeat {
                seq: 1,
                sent_at: ms(0),
                known_epoch: 0,
                acked_seq: 0
            }]
        );
        let out = k.step(ms(50), ack(1, Some(300), 1));
        assert!(
            matches!(&out[..], [Output::EpochAdvanced { epoch: 1, .. }, Output::LeaseAcquired { lease }] if lease.until == ms(300))
        );
        assert!(k.lease(ms(299)).is_some());
        let out = k.step(ms(300), Input::Tick);
        assert!(out.contains(&Output::LeaseLost {
            reason: LeaseLossReason::Expired
        }));
        assert!(k.lease(ms(300)).is_none());
    }

    #[test]
    fn denial_revokes_at_once_and_stale_epochs_grant_nothing() {
        let mut k = LeaseKeeper::new(1);
        k.step(
            ms(0),
            Input::Welcome {
                heartbeat_interval: ms(100),
                epoch: 0,
                ride_out: Duration::ZERO,
            },
        );
        k.step(ms(10), ack(1, Some(300), 2));
        k.step(ms(100), Input::Tick); // sends seq 2
        k.step(ms(200), Input::Tick); // sends seq 3
        let out = k.step(ms(210), ack(3, None, 2));
        assert!(out.contains(&Output::LeaseLost {
            reason: LeaseLossReason::Denied
        }));
        k.step(ms(300), Input::Tick); // seq 4
        let out = k.step(ms(310), ack(4, Some(300), 1));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        assert_eq!(k.epoch(), 2);
        // Acks for unknown or already superseded heartbeats are ignored.
        let out = k.step(ms(320), ack(2, Some(300), 2));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
    }

    fn ack_gone(seq: u64, lease: Option<u64>, epoch: u64, gone: &[NodeId]) -> Input {
        Input::Ack {
            seq,
            lease: lease.map(ms),
            epoch,
            survivors: [1].into(),
            gone: gone.iter().copied().collect(),
            leaving: [].into(),
            undecided: false,
        }
    }

    fn welcome(epoch: u64) -> Input {
        Input::Welcome {
            heartbeat_interval: ms(100),
            epoch,
            ride_out: Duration::ZERO,
        }
    }

    fn fenced(out: &[Output]) -> bool {
        out.iter().any(|o| matches!(o, Output::Fenced { .. }))
    }

    #[test]
    fn a_running_node_recorded_as_fenced_stops_for_good() {
        // Node 2 holds a lease in epoch 1; the arbiter then records it fenced
        // (epoch 2, gone = {2}) while this process still runs.
        let mut k = LeaseKeeper::new(2);
        k.step(ms(0), welcome(1));
        let out = k.step(ms(10), ack_gone(1, Some(300), 1, &[]));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        k.step(ms(100), Input::Tick); // seq 2
        let out = k.step(ms(110), ack_gone(2, None, 2, &[2]));
        assert_eq!(
            out,
            vec![
                Output::LeaseLost {
                    reason: LeaseLossReason::Fenced
                },
                Output::Fenced { epoch: 2 }
            ]
        );
        assert_eq!(k.fenced(), Some(2));
        assert!(k.lease(ms(111)).is_none());
        // Inert: no heartbeat, no lease, no deadline, whatever comes next.
        assert_eq!(k.next_deadline(), None);
        assert!(k.step(ms(200), Input::Tick).is_empty());
        assert!(k.step(ms(300), welcome(2)).is_empty());
        assert!(k.step(ms(310), ack_gone(3, Some(300), 2, &[])).is_empty());
        assert_eq!(k.next_deadline(), None);

        // The same through an Announcement, the lease already expired: no
        // LeaseLost twice, but Fenced all the same.
        let mut k = LeaseKeeper::new(2);
        k.step(ms(0), welcome(1));
        k.step(ms(10), ack_gone(1, Some(300), 1, &[]));
        k.step(ms(50), Input::Disconnected);
        assert!(k.step(ms(300), Input::Tick).contains(&Output::LeaseLost {
            reason: LeaseLossReason::Expired
        }));
        let out = k.step(
            ms(900),
            Input::Announcement {
                epoch: 3,
                survivors: [1].into(),
                gone: [2].into(),
            },
        );
        assert_eq!(out, vec![Output::Fenced { epoch: 3 }]);
    }

    #[test]
    fn a_fresh_process_in_gone_is_a_rebooted_node_rejoining() {
        // Node 2 was fenced in epoch 2 and rebooted: this process never held
        // a lease, so reading itself in `gone` is normal.
        let mut k = LeaseKeeper::new(2);
        k.step(ms(0), welcome(2));
        let out = k.step(
            ms(5),
            Input::Announcement {
                epoch: 2,
                survivors: [1].into(),
                gone: [2].into(),
            },
        );
        assert!(!fenced(&out));
        let out = k.step(ms(10), ack_gone(1, Some(300), 2, &[2]));
        assert!(!fenced(&out));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        // Still epoch 2, still listed gone: first held in epoch 2 itself, so
        // still no Fenced; renewals go on.
        k.step(ms(100), Input::Tick); // seq 2
        let out = k.step(ms(110), ack_gone(2, Some(300), 2, &[2]));
        assert!(!fenced(&out));
        assert!(k.lease(ms(350)).is_some());
        // Another node fenced later: not this one's business either.
        k.step(ms(200), Input::Tick); // seq 3
        let out = k.step(ms(210), ack_gone(3, Some(300), 3, &[3]));
        assert!(!fenced(&out));
        assert_eq!(k.fenced(), None);
        assert!(k.lease(ms(450)).is_some());
    }

    #[test]
    fn absurd_values_from_the_wire_do_not_panic() {
        let mut k = LeaseKeeper::new(1);
        k.step(
            Duration::MAX - ms(1),
            Input::Welcome {
                heartbeat_interval: Duration::MAX,
                epoch: u64::MAX,
                ride_out: Duration::MAX,
            },
        );
        let out = k.step(
            Duration::MAX - ms(1),
            Input::Ack {
                seq: 1,
                lease: Some(Duration::MAX),
                epoch: u64::MAX,
                survivors: [].into(),
                gone: [].into(),
                leaving: [].into(),
                undecided: true,
            },
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        k.step(Duration::MAX, Input::Tick);
    }
}

#[cfg(test)]
mod ride_out_tests {
    //! Riding a lease out on the whole mesh (see the module documentation).
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn welcome(ride_out: Duration) -> Input {
        Input::Welcome {
            heartbeat_interval: ms(100),
            epoch: 1,
            ride_out,
        }
    }

    /// The ack of heartbeat 1: a 300 ms lease in epoch 1 over {1, 2, 3},
    /// naming `leaving`.
    fn first_grant(leaving: &[NodeId]) -> Input {
        Input::Ack {
            seq: 1,
            lease: Some(ms(300)),
            epoch: 1,
            survivors: [1, 2, 3].into(),
            gone: [].into(),
            leaving: leaving.iter().copied().collect(),
            undecided: false,
        }
    }

    /// Node 1 of {1, 2, 3}, holding a 300 ms lease granted at 0 (until
    /// 300), with a 1 s ride-out.
    fn holder(mutant: Option<RideMutant>) -> LeaseKeeper {
        let mut k = LeaseKeeper::with_mutant(1, mutant);
        k.step(ms(0), welcome(ms(1_000)));
        let out = k.step(ms(10), first_grant(&[]));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        k.step(ms(20), Input::Disconnected);
        k
    }

    fn report(node: NodeId, sent_at: u64) -> PeerReport {
        let all: BTreeSet<NodeId> = [1, 2, 3].into();
        PeerReport {
            node,
            sent_at: ms(sent_at),
            epoch: 1,
            reaches: all.into_iter().filter(|&n| n != node).collect(),
            fence_known: false,
            arbiter_contact: false,
        }
    }

    fn until(k: &LeaseKeeper, now: u64) -> Option<Duration> {
        k.lease(ms(now)).map(|l| l.until)
    }

    #[test]
    fn a_whole_mesh_rides_the_lease_out_from_its_oldest_answer_up_to_the_cap() {
        let mut k = holder(None);
        // Both peers answered probes sent at 250 and 260: one lease from
        // the older.
        k.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        assert_eq!(until(&k, 270), Some(ms(550)));
        assert_eq!(k.lease(ms(270)).unwrap().ridden(), ms(250));
        // Fresh answers keep it going, never past the grant plus ride_out.
        for t in (350..1_300).step_by(100) {
            let out = k.step(
                ms(t),
                Input::Peers(vec![report(2, t - 5), report(3, t - 10)]),
            );
            assert!(out.is_empty(), "at {t}: {out:?}");
        }
        assert_eq!(until(&k, 1_299), Some(ms(1_300)), "capped at 300 + 1000");
        let out = k.step(ms(1_300), Input::Tick);
        assert_eq!(
            out,
            vec![Output::LeaseLost {
                reason: LeaseLossReason::Expired
            }]
        );
    }

    #[test]
    fn the_lease_lapses_at_its_end_once_the_evidence_stops() {
        let mut k = holder(None);
        k.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        // Node 3 answers no more: its last answer (to a probe sent at
        // 260) carries the lease to 560, no further.
        k.step(ms(450), Input::Peers(vec![report(2, 440)]));
        assert_eq!(until(&k, 450), Some(ms(560)));
        assert!(k.step(ms(560), Input::Tick).contains(&Output::LeaseLost {
            reason: LeaseLossReason::Expired
        }));
        // A lapsed lease is never ridden again, whatever answers come.
        k.step(ms(560), Input::Peers(vec![report(2, 555), report(3, 555)]));
        assert!(k.lease(ms(560)).is_none());
    }

    #[test]
    fn any_doubt_among_the_answers_rides_nothing_out() {
        type Spoil = fn(&mut PeerReport);
        let spoilers: [(&str, Spoil); 4] = [
            ("another epoch", |r| r.epoch = 2),
            ("a peer not reached", |r| {
                r.reaches.remove(&2);
            }),
            ("a fence known", |r| r.fence_known = true),
            ("an arbiter in contact", |r| r.arbiter_contact = true),
        ];
        for (what, spoil) in spoilers {
            let mut k = holder(None);
            let mut r3 = report(3, 260);
            spoil(&mut r3);
            k.step(ms(270), Input::Peers(vec![report(2, 250), r3]));
            assert_eq!(until(&k, 270), Some(ms(300)), "{what}");
        }
        // A peer that never answered.
        let mut k = holder(None);
        k.step(ms(270), Input::Peers(vec![report(2, 250)]));
        assert_eq!(until(&k, 270), Some(ms(300)));
    }

    #[test]
    fn each_planted_bug_rides_where_the_rule_forbids() {
        let cases: [(RideMutant, fn(&mut PeerReport)); 3] = [
            (RideMutant::IgnorePeerReach, |r| {
                r.reaches.remove(&2);
            }),
            (RideMutant::IgnoreFence, |r| r.fence_known = true),
            (RideMutant::IgnoreArbiterContact, |r| {
                r.arbiter_contact = true
            }),
        ];
        for (m, spoil) in cases {
            let mut k = holder(Some(m));
            let mut r3 = report(3, 260);
            spoil(&mut r3);
            k.step(ms(270), Input::Peers(vec![report(2, 250), r3]));
            assert_eq!(until(&k, 270), Some(ms(550)), "{m:?}");
        }
    }

    #[test]
    fn a_fence_named_in_the_last_ack_rides_nothing_out() {
        let mut k = holder(None);
        k.step(ms(100), Input::Tick); // no session: no heartbeat
        let mut k2 = LeaseKeeper::new(1);
        k2.step(ms(0), welcome(ms(1_000)));
        k2.step(ms(10), first_grant(&[3]));
        assert!(k2.own_report(ms(20)).fence_known);
        k2.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        assert_eq!(until(&k2, 270), Some(ms(300)));
        // The holder without that news rides.
        k.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        assert_eq!(until(&k, 270), Some(ms(550)));
    }

    #[test]
    fn an_undecided_arbiter_leaves_a_ridden_lease_and_a_refusal_revokes_it() {
        let mut k = holder(None);
        k.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        k.step(ms(280), welcome(ms(1_000))); // sends seq 2
        let denial = |undecided| Input::Ack {
            seq: 2,
            lease: None,
            epoch: 1,
            survivors: [1, 2, 3].into(),
            gone: [].into(),
            leaving: [].into(),
            undecided,
        };
        let out = k.step(ms(290), denial(true));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(until(&k, 290), Some(ms(550)));
        assert!(
            !k.own_report(ms(290)).arbiter_contact,
            "no grant: no contact"
        );
        k.step(ms(380), Input::Tick); // seq 3
        let mut refusal = denial(false);
        if let Input::Ack { seq, .. } = &mut refusal {
            *seq = 3;
        }
        let out = k.step(ms(390), refusal);
        assert!(out.contains(&Output::LeaseLost {
            reason: LeaseLossReason::Denied
        }));
    }

    #[test]
    fn without_ride_out_nothing_is_ridden_and_any_refusal_revokes() {
        let mut k = LeaseKeeper::new(1);
        k.step(ms(0), welcome(Duration::ZERO));
        k.step(ms(10), first_grant(&[]));
        k.step(ms(270), Input::Peers(vec![report(2, 250), report(3, 260)]));
        assert_eq!(until(&k, 270), Some(ms(300)));
        k.step(ms(280), Input::Tick); // seq 2... (interval 100: sent at 100, 200)
        let seq = *k.in_flight.keys().last().unwrap();
        let out = k.step(
            ms(290),
            Input::Ack {
                seq,
                lease: None,
                epoch: 1,
                survivors: [1, 2, 3].into(),
                gone: [].into(),
                leaving: [].into(),
                undecided: true,
            },
        );
        assert!(out.contains(&Output::LeaseLost {
            reason: LeaseLossReason::Denied
        }));
    }

    #[test]
    fn a_grant_is_contact_for_one_and_a_half_intervals() {
        let k = holder(None);
        assert!(k.own_report(ms(159)).arbiter_contact);
        assert!(!k.own_report(ms(160)).arbiter_contact);
    }
}
