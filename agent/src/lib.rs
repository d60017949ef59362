//! The node agent: its pure lease core ([`lease`]) and the shell around it:
//! configuration ([`config`]), peer probes ([`peer_probe`]) and the arbiter
//! session ([`session`]).

pub mod config;
pub mod lease;
pub mod peer_probe;
pub mod session;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use config::AgentPlan;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot install the SIGUSR1 handler: {0}")]
    Signal(std::io::Error),
}

/// Run the agent until `shutdown` resolves.
pub async fn run(plan: AgentPlan, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let isolated = Arc::new(AtomicBool::new(false));
    let probes = peer_probe::SharedProbes::default();

    let listener = TcpListener::bind(plan.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: plan.listen.to_string(),
            source,
        })?;
    warn!(listen = %plan.listen, "serving peer probes on plain TCP without TLS (insecure_plaintext = true)");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let server = tonic::transport::Server::builder()
        .add_service(proto::v1::peer_probe_server::PeerProbeServer::new(
            peer_probe::ProbeServer {
                cluster: plan.cluster.clone(),
                node: plan.node,
                isolated: isolated.clone(),
            },
        ))
        .serve_with_incoming_shutdown(incoming, token.clone().cancelled_owned());
    tracker.spawn(server);
    tracker.spawn(peer_probe::run_prober(
        plan.cluster.clone(),
        plan.node,
        probes.clone(),
        isolated.clone(),
        token.child_token(),
    ));
    if plan.fault_injection {
        warn!("fault injection enabled: SIGUSR1 toggles isolation from the network");
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .map_err(AgentError::Signal)?;
        let iso = isolated.clone();
        let t = token.child_token();
        let node = plan.node;
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = usr1.recv() => {
                        let now = !iso.load(Ordering::Relaxed);
                        iso.store(now, Ordering::Relaxed);
                        warn!(node.id = node, isolated = now, "fault injection: isolation toggled");
                    }
                }
            }
        });
    }
    info!(node.id = plan.node, cluster = %plan.cluster, arbiter = %plan.arbiter, listen = %plan.listen, "fence-agent started");
    let session = session::Session::new(plan, probes, isolated, token.child_token());
    tracker.spawn(session.run());

    shutdown.await;
    info!("shutdown requested");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        warn!("shutdown grace period ran out; exiting anyway");
    }
    info!("fence-agent stopped");
    Ok(())
}
