//! Peer probes: how an agent proves it reaches its peers.
//!
//! Every agent serves the `PeerProbe` gRPC service and calls it on every
//! peer once per heartbeat interval, with the interval as deadline, over one
//! long-lived HTTP/2 connection per peer. A peer answered within the last
//! three intervals is reported reachable in each heartbeat.
//!
//! Why gRPC rather than ICMP or a UDP ping: it crosses the same path, port
//! and (with mTLS) the same authentication as the cluster's own traffic, so
//! "reachable" means "reachable the way it matters", and a forged datagram
//! cannot fake it. The cost is one small unary call per peer per interval.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1 as pb;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::TlsPem;
use tonic::{Request, Response, Status};
use tracing::debug;

/// What the prober knows; shared with the session (which reads it for each
/// heartbeat) and with the session's Welcome (which sets peers and interval).
/// The lock is never held across an await.
#[derive(Debug, Default)]
pub struct ProbeState {
    /// Peer id -> (probe address, name).
    pub peers: BTreeMap<u32, (String, String)>,
    pub interval: Option<Duration>,
    pub last_ok: BTreeMap<u32, Instant>,
    /// Each peer's latest answer and when its probe was sent (for riding a
    /// lease out: what the peer knows).
    pub answers: BTreeMap<u32, (Instant, pb::ProbeReply)>,
    /// What this agent says of itself in its answers (set by the session
    /// after every step of the lease core; `None` before the first)...
    pub own: Option<crate::lease::OwnReport>,
    /// ...but "an arbiter in contact" is judged at each answer: until
    /// this instant.
    pub contact_until: Option<Instant>,
    /// Woken when an answer arrives (the session reads them at once).
    pub answered: Arc<tokio::sync::Notify>,
    /// Probe [`HURRY`] times per interval between these instants (set by
    /// the session): this agent holds a lease that may be ridden out and
    /// no arbiter granted it one for an interval and a quarter (an ack a
    /// little late does not hurry). A ride-out can begin
    /// only on answers that no longer claim an arbiter in contact, and a
    /// peer's last grant may be an interval later than this agent's: at
    /// one probe per interval the answer that would start the ride could
    /// come after the lease ended.
    pub hurry: Option<(Instant, Instant)>,
}

/// Probes per interval while hurried (see [`ProbeState::hurry`]).
pub const HURRY: u32 = 8;

pub type SharedProbes = Arc<Mutex<ProbeState>>;

/// Peers answered within three intervals of `now`.
pub fn reachable(state: &SharedProbes, now: Instant) -> Vec<u32> {
    let s = state.lock().expect("probe state lock");
    let window = s.interval.unwrap_or(Duration::from_millis(100)) * 3;
    s.last_ok
        .iter()
        .filter(|(id, _)| s.peers.contains_key(id))
        .filter(|(_, t)| now.saturating_duration_since(**t) <= window)
        .map(|(&id, _)| id)
        .collect()
}

/// Fault-injection switches (demo and tests only; see `FaultInjection`).
#[derive(Debug, Default)]
pub struct Faults {
    /// Cut off from everything: arbiter session and peers.
    pub isolated: AtomicBool,
    /// Cut off from peers only: probes fail both ways.
    pub probes_cut: AtomicBool,
}

impl Faults {
    pub fn probes_blocked(&self) -> bool {
        self.isolated.load(Ordering::Relaxed) || self.probes_cut.load(Ordering::Relaxed)
    }
}

/// The probe server.
pub struct ProbeServer {
    pub cluster: String,
    pub node: u32,
    pub faults: Arc<Faults>,
    /// Read for what the answer says of this agent.
    pub state: SharedProbes,
}

#[tonic::async_trait]
impl pb::peer_probe_server::PeerProbe for ProbeServer {
    async fn probe(
        &self,
        req: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeReply>, Status> {
        if self.faults.probes_blocked() {
            return Err(Status::unavailable("isolated by fault injection"));
        }
        let r = req.into_inner();
        if r.cluster != self.cluster {
            return Err(Status::invalid_argument(format!(
                "probe for cluster {:?}; this is node {} of cluster {:?}",
                r.cluster, self.node, self.cluster
            )));
        }
        let now = Instant::now();
        let reaches = reachable(&self.state, now);
        let (own, contact_until) = {
            let s = self.state.lock().expect("probe state lock");
            (s.own, s.contact_until)
        };
        Ok(Response::new(pb::ProbeReply {
            node_id: self.node,
            seq: r.seq,
            reaches,
            // Before the lease core's first step: "knows nothing", which
            // lets no peer ride out on this answer.
            epoch: own.map_or(0, |o| o.epoch),
            fence_known: own.is_none_or(|o| o.fence_known),
            arbiter_contact: own.is_none() || contact_until.is_some_and(|t| now < t),
        }))
    }
}

/// When the round after the one started at `round` starts: an interval
/// later, or sooner inside the hurry window (not before its start, and at
/// most [`HURRY`] rounds per interval).
fn next_round(round: Instant, interval: Duration, hurry: Option<(Instant, Instant)>) -> Instant {
    let next = round + interval;
    match hurry {
        Some((from, until)) if from < next && round < until => {
            next.min(from.max(round + interval / HURRY))
        }
        _ => next,
    }
}

/// Probe every known peer once per interval (more often while hurried)
/// until cancelled.
pub async fn run_prober(
    cluster: String,
    node: u32,
    state: SharedProbes,
    faults: Arc<Faults>,
    tls: Option<TlsPem>,
    token: CancellationToken,
) {
    let mut clients: BTreeMap<u32, (String, pb::peer_probe_client::PeerProbeClient<Channel>)> =
        BTreeMap::new();
    let mut seq = 0u64;
    loop {
        let (peers, interval) = {
            let s = state.lock().expect("probe state lock");
            (
                s.peers.clone(),
                s.interval.unwrap_or(Duration::from_millis(100)),
            )
        };
        let round = Instant::now();
        if !faults.probes_blocked() {
            clients.retain(|id, (addr, _)| peers.get(id).map(|p| &p.0) == Some(addr));
            for (id, (addr, name)) in &peers {
                if clients.contains_key(id) {
                    continue;
                }
                let scheme = if tls.is_some() { "https" } else { "http" };
                if let Ok(mut ep) = Endpoint::from_shared(format!("{scheme}://{addr}")) {
                    if let Some(t) = &tls {
                        // The peer must prove it is "<name>.<cluster>".
                        let cfg = ClientTlsConfig::new()
                            .ca_certificate(Certificate::from_pem(&t.ca))
                            .identity(Identity::from_pem(&t.cert, &t.key))
                            .domain_name(format!("{name}.{cluster}"));
                        match ep.tls_config(cfg) {
                            Ok(e) => ep = e,
                            Err(e) => {
                                debug!(node.id = node, peer = id, error = %e, "probe TLS setup failed");
                                continue;
                            }
                        }
                    }
                    let ch = ep
                        .connect_timeout(interval)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(1))
                        .keep_alive_timeout(Duration::from_secs(2))
                        .connect_lazy();
                    clients.insert(
                        *id,
                        (
                            addr.clone(),
                            pb::peer_probe_client::PeerProbeClient::new(ch),
                        ),
                    );
                }
            }
            seq += 1;
            let mut set = tokio::task::JoinSet::new();
            for (&id, (_, client)) in &clients {
                let mut client = client.clone();
                let req = pb::ProbeRequest {
                    cluster: cluster.clone(),
                    from_node: node,
                    seq,
                };
                let sent = Instant::now();
                set.spawn(async move {
                    let r = tokio::time::timeout(interval, client.probe(req)).await;
                    let answer = match r {
                        Ok(Ok(resp)) if resp.get_ref().node_id == id => Some(resp.into_inner()),
                        _ => None,
                    };
                    (id, sent, answer)
                });
            }
            while let Some(r) = set.join_next().await {
                if let Ok((id, sent, answer)) = r {
                    if let Some(answer) = answer {
                        let mut s = state.lock().expect("probe state lock");
                        s.last_ok.insert(id, Instant::now());
                        s.answers.insert(id, (sent, answer));
                        // At once (not at the round's end: one slow peer
                        // would hold the others' answers back); wake-ups
                        // the session has not taken yet coalesce.
                        s.answered.notify_one();
                    } else {
                        debug!(node.id = node, peer = id, "probe failed");
                    }
                }
            }
        }
        let hurry = state.lock().expect("probe state lock").hurry;
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next_round(round, interval, hurry)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cadence: one round per interval, [`HURRY`] inside the window,
    /// the first hurried round at the window's start.
    #[test]
    fn rounds_hurry_only_inside_the_window() {
        let t = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let i = ms(100);
        assert_eq!(next_round(t, i, None), t + i);
        // The window starts within this interval: the next round at its start.
        assert_eq!(
            next_round(t, i, Some((t + ms(60), t + ms(400)))),
            t + ms(60)
        );
        // Inside it: an eighth of an interval apart, never closer.
        assert_eq!(
            next_round(t, i, Some((t - ms(10), t + ms(400)))),
            t + i / HURRY
        );
        // After it, or starting later than the next round: as usual.
        assert_eq!(next_round(t, i, Some((t - ms(500), t - ms(1)))), t + i);
        assert_eq!(next_round(t, i, Some((t + ms(150), t + ms(400)))), t + i);
    }
}
