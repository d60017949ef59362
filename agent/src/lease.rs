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
}

#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    interval: Option<Duration>,
    next_send: Duration,
    next_seq: u64,
    in_flight: BTreeMap<u64, Duration>,
    lease: Option<Lease>,
    epoch: u64,
}

impl Default for LeaseKeeper {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseKeeper {
    pub fn new() -> Self {
        LeaseKeeper {
            interval: None,
            next_send: Duration::ZERO,
            next_seq: 1,
            in_flight: BTreeMap::new(),
            lease: None,
            epoch: 0,
        }
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
            } => self.advance_epoch(epoch, &survivors, &gone, &mut out),
        }
        self.expire(now, out)
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
        let mut k = LeaseKeeper::new();
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
        let mut k = LeaseKeeper::new();
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

    #[test]
    fn absurd_values_from_the_wire_do_not_panic() {
        let mut k = LeaseKeeper::new();
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
