//! The agent's shell around its lease core: the arbiter session (connect,
//! Hello, Welcome, heartbeats, acks, announcements), reconnecting with a
//! short backoff, and ticking the core on its deadlines even while
//! disconnected, so a lease expires on time whatever the network does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::{error, info, warn};

use crate::config::AgentPlan;
use crate::heuristics::Heuristics;
use crate::lease::{Input, LeaseKeeper, Output};
use crate::peer_probe::{Faults, SharedProbes, reachable};

/// Owns the lease core and the clock origin.
pub struct Session {
    plan: AgentPlan,
    keeper: LeaseKeeper,
    origin: Instant,
    probes: SharedProbes,
    faults: Arc<Faults>,
    heuristics: Arc<Heuristics>,
    token: CancellationToken,
}

enum Ended {
    Cancelled,
    Retry,
}

/// Why a session ended badly.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The arbiter does not accept this agent (wrong cluster, node or
    /// address): retrying fast would only flood both logs.
    #[error("refused by the arbiter: {0}")]
    Refused(String),
    #[error("{0}")]
    Lost(String),
}

impl From<String> for SessionError {
    fn from(s: String) -> Self {
        SessionError::Lost(s)
    }
}

impl From<&str> for SessionError {
    fn from(s: &str) -> Self {
        SessionError::Lost(s.to_string())
    }
}

impl Session {
    pub fn new(
        plan: AgentPlan,
        probes: SharedProbes,
        faults: Arc<Faults>,
        heuristics: Arc<Heuristics>,
        token: CancellationToken,
    ) -> Self {
        Session {
            plan,
            keeper: LeaseKeeper::new(),
            origin: Instant::now(),
            probes,
            faults,
            heuristics,
            token,
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Run until cancelled.
    pub async fn run(mut self) {
        loop {
            let ended = if self.faults.isolated.load(Ordering::Relaxed) {
                self.idle(Duration::from_millis(50)).await
            } else {
                match self.connect_and_serve().await {
                    Ok(e) => e,
                    Err(e @ SessionError::Refused(_)) => {
                        error!(node.id = self.plan.node, error = %e,
                               "the arbiter refused this agent; check its cluster, node and listen settings; retrying in 5s");
                        self.idle(Duration::from_secs(5)).await
                    }
                    Err(e) => {
                        warn!(node.id = self.plan.node, error = %e, "arbiter session failed; retrying");
                        self.idle(Duration::from_millis(100)).await
                    }
                }
            };
            if matches!(ended, Ended::Cancelled) {
                let now = self.now();
                if self.keeper.lease(now).is_some() {
                    info!(
                        node.id = self.plan.node,
                        "shutting down with a lease: releasing it (resources stop)"
                    );
                }
                return;
            }
        }
    }

    /// Keep the core ticking without a session for `d`.
    async fn idle(&mut self, d: Duration) -> Ended {
        let outs = self.keeper.step(self.now(), Input::Disconnected);
        self.apply(outs, None);
        let end = Instant::now() + d;
        loop {
            let wake = self
                .keeper
                .next_deadline()
                .map(|t| self.origin + t)
                .map_or(end, |t| t.min(end));
            tokio::select! {
                _ = self.token.cancelled() => return Ended::Cancelled,
                _ = tokio::time::sleep_until(wake) => {}
            }
            let outs = self.keeper.step(self.now(), Input::Tick);
            self.apply(outs, None);
            if Instant::now() >= end {
                return Ended::Retry;
            }
        }
    }

    async fn connect_and_serve(&mut self) -> Result<Ended, SessionError> {
        let mut ep = Endpoint::from_shared(self.plan.arbiter.clone())
            .map_err(|e| format!("arbiter URL {:?}: {e}", self.plan.arbiter))?;
        if let Some(t) = &self.plan.tls {
            let cfg = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca))
                .identity(tonic::transport::Identity::from_pem(&t.cert, &t.key))
                .domain_name(t.arbiter_name.clone());
            ep = ep.tls_config(cfg).map_err(|e| format!("TLS setup: {e}"))?;
        }
        let ep = ep
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        let channel = tokio::select! {
            _ = self.token.cancelled() => return Ok(Ended::Cancelled),
            c = ep.connect() => c.map_err(|e| format!("cannot connect to {}: {e}", self.plan.arbiter))?,
        };
        let mut client = pb::agent_session_client::AgentSessionClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(16);
        let hello = pb::Hello {
            cluster: self.plan.cluster.clone(),
            node_id: self.plan.node,
            probe_address: self.plan.listen_text.clone(),
            config_fingerprint: self.plan.fingerprint.clone(),
            known_epoch: self.keeper.epoch(),
        };
        tx.send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(hello)),
        })
        .await
        .map_err(|_| "session closed".to_string())?;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        // Welcome first.
        let welcome = tokio::time::timeout(Duration::from_secs(2), inbound.message())
            .await
            .map_err(|_| "no Welcome within 2s".to_string())?
            .map_err(|s| refusal(&s))?;
        let Some(pb::ArbiterMessage {
            body: Some(pb::arbiter_message::Body::Welcome(w)),
        }) = welcome
        else {
            return Err("the arbiter's first message was not a Welcome".into());
        };
        // Bounded whatever the arbiter sends: nothing below overflows.
        let interval = Duration::from_millis(w.heartbeat_interval_ms.clamp(1, 60_000));
        let max_lease = Duration::from_millis(w.lease_ms.min(600_000));
        {
            let mut p = self.probes.lock().expect("probe state lock");
            p.interval = Some(interval);
            p.peers = w
                .peers
                .iter()
                .map(|p| (p.node_id, (p.probe_address.clone(), p.name.clone())))
                .collect();
        }
        info!(node.id = self.plan.node, cluster = %self.plan.cluster, lease.epoch = w.epoch,
              heartbeat_ms = w.heartbeat_interval_ms, lease_ms = w.lease_ms, "session open");
        let outs = self.keeper.step(
            self.now(),
            Input::Welcome {
                heartbeat_interval: interval,
                epoch: w.epoch,
            },
        );
        self.apply(outs, Some(&tx));
        // No answer at all for three intervals: the session is dead.
        let silence = interval * 3;
        let mut last_heard = Instant::now();
        loop {
            if self.faults.isolated.load(Ordering::Relaxed) {
                warn!(
                    node.id = self.plan.node,
                    "fault injection: isolated; dropping the arbiter session"
                );
                return Ok(Ended::Retry);
            }
            let wake = self
                .keeper
                .next_deadline()
                .map(|t| self.origin + t)
                .unwrap_or_else(|| Instant::now() + interval)
                .min(last_heard + silence)
                .min(Instant::now() + Duration::from_millis(50));
            let msg = tokio::select! {
                _ = self.token.cancelled() => return Ok(Ended::Cancelled),
                _ = tokio::time::sleep_until(wake) => None,
                m = inbound.message() => Some(m),
            };
            let input = match msg {
                None => {
                    if last_heard.elapsed() >= silence {
                        return Err(format!("no answer from the arbiter for {silence:?}").into());
                    }
                    Input::Tick
                }
                Some(Err(s)) => return Err(refusal(&s)),
                Some(Ok(None)) => return Err("the arbiter closed the session".into()),
                Some(Ok(Some(m))) => {
                    last_heard = Instant::now();
                    match m.body {
                        Some(pb::arbiter_message::Body::Ack(a)) => Input::Ack {
                            seq: a.seq,
                            // Never longer than the lease the Welcome announced.
                            lease: (a.lease_ms > 0)
                                .then(|| Duration::from_millis(a.lease_ms).min(max_lease)),
                            epoch: a.epoch,
                            survivors: a.survivors.into_iter().collect(),
                            gone: a.gone.into_iter().collect(),
                        },
                        Some(pb::arbiter_message::Body::Announcement(a)) => Input::Announcement {
                            epoch: a.epoch,
                            survivors: a.survivors.into_iter().collect(),
                            gone: a.gone.into_iter().collect(),
                        },
                        _ => Input::Tick,
                    }
                }
            };
            let outs = self.keeper.step(self.now(), input);
            self.apply(outs, Some(&tx));
        }
    }

    fn apply(&mut self, outs: Vec<Output>, tx: Option<&mpsc::Sender<pb::AgentMessage>>) {
        let node = self.plan.node;
        for o in outs {
            match o {
                Output::SendHeartbeat {
                    seq,
                    sent_at,
                    known_epoch,
                } => {
                    let Some(tx) = tx else { continue };
                    let hb = pb::Heartbeat {
                        seq,
                        sent_at_us: sent_at.as_micros() as u64,
                        reachable: reachable(&self.probes, Instant::now()),
                        heuristics: self.heuristics.score(),
                        known_epoch,
                    };
                    if tx
                        .try_send(pb::AgentMessage {
                            body: Some(pb::agent_message::Body::Heartbeat(hb)),
                        })
                        .is_err()
                    {
                        warn!(
                            node.id = node,
                            seq, "heartbeat not sent: session stream full or closed"
                        );
                    }
                }
                Output::LeaseAcquired { lease } => {
                    info!(node.id = node, lease.epoch = lease.epoch, survivors = ?lease.survivors, "lease acquired: resources may run");
                }
                Output::LeaseLost { reason } => {
                    warn!(node.id = node, reason = ?reason, "lease lost: resources must stop now");
                }
                Output::EpochAdvanced {
                    epoch,
                    survivors,
                    gone,
                } => {
                    let gone: BTreeSet<u32> = gone;
                    if gone.is_empty() {
                        info!(node.id = node, lease.epoch = epoch, survivors = ?survivors, "new epoch");
                    } else {
                        info!(node.id = node, lease.epoch = epoch, survivors = ?survivors, gone = ?gone,
                              "new epoch: nodes confirmed fenced; survivors may take over");
                    }
                }
            }
        }
    }
}

/// Classify a gRPC error from the arbiter.
fn refusal(s: &tonic::Status) -> SessionError {
    match s.code() {
        tonic::Code::NotFound | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
            SessionError::Refused(s.message().to_string())
        }
        _ => SessionError::Lost(format!("session error: {} ({:?})", s.message(), s.code())),
    }
}
