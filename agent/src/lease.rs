//! The agent's functional core: heartbeat timing and lease keeping.
//!
//! Pure: `step(now, input) -> Vec<Output>`, with `now` the agent's own
//! monotonic clock. A lease runs from the moment the agent *sent* the
//! heartbeat the arbiter acknowledged, so the agent's copy always ends
//! before the arbiter's. The agent never trusts the echoed send time: it
//! looks up its own record of that sequence number.
//!
//! Invariants: the epoch the agent knows never decreases; an acknowledgement
//! from an older epoch grants nothing; a lease only grows until the arbiter
//! denies one, which revokes it at once.
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

/// The lease the agent holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Agent-local instant at which the lease ends.
    pub until: Duration,
    pub epoch: u64,
    /// The survivor set it was granted under.
    pub survivors: BTreeSet<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Tick,
    /// A session opened; the arbiter told the timings.
    Welcome {
        heartbeat_interval: Duration,
        epoch: u64,
    },
    /// The session ended; no acks will come until the next Welcome.
    Disconnected,
    Ack {
        seq: u64,
        lease: Option<Duration>,
        epoch: u64,
        survivors: BTreeSet<NodeId>,
        gone: BTreeSet<NodeId>,
    },
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
        }
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
            } => {
                self.interval = Some(
                    heartbeat_interval.clamp(Duration::from_millis(1), Duration::from_secs(60)),
                );
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
                self.advance_epoch(epoch, &survivors, &gone, &mut out);
                match lease {
                    Some(d) => {
                        let Some(until) = sent_at.checked_add(d) else {
                            return self.expire(now, out);
                        };
                        let held = self.lease(now).cloned();
                        let until = match &held {
                            // Same grant renewed: a reordered older ack never shortens it.
                            Some(l) if l.epoch == epoch && l.survivors == survivors => {
                                l.until.max(until)
                            }
                            _ => until,
                        };
                        if until > now {
                            let lease = Lease {
                                until,
                                epoch,
                                survivors,
                            };
                            self.first_held.get_or_insert(epoch);
                            self.lease = Some(lease.clone());
                            if held.is_none() {
                                out.push(Output::LeaseAcquired { lease });
                            }
                        }
                    }
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

    fn expire(&mut self, now: Duration, mut out: Vec<Output>) -> Vec<Output> {
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
            },
        );
        assert_eq!(
            out,
            vec![Output::SendHeartbeat {
                seq: 1,
                sent_at: ms(0),
                known_epoch: 0
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
        }
    }

    fn welcome(epoch: u64) -> Input {
        Input::Welcome {
            heartbeat_interval: ms(100),
            epoch,
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
            },
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::LeaseAcquired { .. }))
        );
        k.step(Duration::MAX, Input::Tick);
    }
}
