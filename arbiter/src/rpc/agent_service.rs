//! The agent session service: one bidirectional stream per agent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::agent_message::Body;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::role::Role;
use crate::driver::{ClusterHandle, ToDriver};

pub struct AgentSessionService {
    role: Arc<Role>,
    next_session: AtomicU64,
    tracker: TaskTracker,
    token: CancellationToken,
    tls: bool,
}

impl AgentSessionService {
    pub fn new(role: Arc<Role>, tracker: TaskTracker, token: CancellationToken, tls: bool) -> Self {
        AgentSessionService {
            role,
            next_session: AtomicU64::new(1),
            tracker,
            token,
            tls,
        }
    }
}

/// Checks a Hello against the configuration. Changes no state. Returns the
/// cluster and the digest of the agent's boot id (0: not told).
pub fn check_hello<'a>(
    clusters: &'a BTreeMap<String, ClusterHandle>,
    hello: &pb::Hello,
) -> Result<(&'a ClusterHandle, u64), Status> {
    let cluster = clusters.get(&hello.cluster).ok_or_else(|| {
        Status::not_found(format!(
            "cluster {:?} does not exist on this arbiter (it serves: {})",
            hello.cluster,
            clusters.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let Some(addr) = cluster.plan.addresses.get(&hello.node_id) else {
        return Err(Status::not_found(format!(
            "node {} is not a member of cluster {:?}",
            hello.node_id, hello.cluster
        )));
    };
    let boot = proto::boot_id_digest(&hello.boot_id)
        .map_err(|e| Status::invalid_argument(format!("Hello.boot_id: {e}")))?;
    if *addr != hello.probe_address {
        return Err(Status::failed_precondition(format!(
            "node {} says it serves probes on {:?} but the arbiter's config has {:?} (cluster.{}.node.address)",
            hello.node_id, hello.probe_address, addr, hello.cluster
        )));
    }
    Ok((cluster, boot))
}

#[tonic::async_trait]
impl pb::agent_session_server::AgentSession for AgentSessionService {
    type SessionStream = ReceiverStream<Result<pb::ArbiterMessage, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = req.remote_addr();
        // A standby refers the agent to the leader before reading anything.
        let clusters = self.role.serving()?.clone();
        let identities = super::identity::caller(&req, self.tls)?;
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 5s"))??;
        let hello = match first.and_then(|m| m.body) {
            Some(Body::Hello(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be a Hello",
                ));
            }
        };
        let (cluster, boot) = check_hello(&clusters, &hello).inspect_err(|e| {
            warn!(peer = ?peer, cluster = %hello.cluster, node.id = hello.node_id, error = %e.message(), "session refused");
        })?;
        if let Some(ids) = &identities {
            // A node's identity comes from its certificate and must match
            // the node id it claims.
            let name = cluster
                .plan
                .names
                .get(&hello.node_id)
                .cloned()
                .unwrap_or_default();
            let want = format!("{name}.{}", hello.cluster);
            if !ids.contains(&want) {
                warn!(peer = ?peer, node.id = hello.node_id, certificate = ?ids, "session refused: certificate does not match");
                return Err(Status::permission_denied(format!(
                    "node {} of cluster {:?} must present a certificate for {want:?}; this one is for {ids:?}",
                    hello.node_id, hello.cluster
                )));
            }
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let node = hello.node_id;
        let (tx, rx) = mpsc::channel(64);
        cluster
            .tx
            .send(ToDriver::Connected {
                node,
                session,
                known_epoch: hello.known_epoch,
                instance: hello.instance,
                boot,
                fingerprint: hello.config_fingerprint.clone(),
                watchdog_ms: hello.watchdog_timeout_ms,
                out: tx,
            })
            .await
            .map_err(|_| Status::unavailable("arbiter is shutting down"))?;
        let to_driver = cluster.tx.clone();
        let token = self.token.clone();
        self.tracker.spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = token.cancelled() => break,
                    m = inbound.message() => m,
                };
                match msg {
                    Ok(Some(pb::AgentMessage {
                        body: Some(Body::Heartbeat(hb)),
                    })) => {
                        if to_driver
                            .send(ToDriver::Heartbeat { node, session, hb })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(Some(_)) => {
                        warn!(
                            node.id = node,
                            session, "unexpected message after Hello; closing the session"
                        );
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(node.id = node, session, error = %e, "session stream ended");
                        break;
                    }
                }
            }
            let _ = to_driver
                .send(ToDriver::Disconnected { node, session })
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
