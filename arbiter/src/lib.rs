//! The quorum arbiter: its pure core ([`core`]) and the shell around it:
//! configuration ([`config`]), durable store ([`store`]), per-cluster driver
//! tasks ([`driver`]), fence execution ([`fence_orchestrator`]) and the gRPC
//! services ([`rpc`]).

pub mod alert;
pub mod cli;
pub mod config;
pub mod core;
pub mod driver;
pub mod etcd;
pub mod etcd_store;
pub mod fence_orchestrator;
pub mod leadership;
pub mod metrics;
pub mod rpc;
pub mod service_notify;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use config::Plan;
use driver::{ClusterDriver, ClusterHandle};
use store::{RedbStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("fence device: {0}")]
    Device(#[from] fence_drivers::FenceError),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the task of cluster {cluster:?} panicked: {detail}")]
    ClusterPanicked { cluster: String, detail: String },
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(
        "leadership lost: the etcd lease of this arbiter could not be kept; another arbiter takes over"
    )]
    LeadershipLost,
}

/// Why a cluster task ended the arbiter.
#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error(transparent)]
    Store(StoreError),
    #[error("cluster {cluster:?} panicked: {detail}")]
    Panic { cluster: String, detail: String },
}

fn panic_text(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Run a cluster task in a task of its own so that a panic in it is seen
/// (as a `JoinError`) and reported on `fatal`, which stops the whole
/// arbiter with an error instead of leaving a process that no longer
/// serves that cluster; a store error is reported the same way.
fn supervise(
    tracker: &TaskTracker,
    cluster: String,
    task: impl Future<Output = Result<(), StoreError>> + Send + 'static,
    fatal: mpsc::Sender<Fatal>,
) {
    let task = tokio::spawn(task);
    tracker.spawn(async move {
        let failure = match task.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => Fatal::Store(e),
            Err(join) => Fatal::Panic {
                cluster,
                detail: panic_text(join),
            },
        };
        let _ = fatal.send(failure).await;
    });
}

/// This process leads its group of arbiters (`[arbiter.etcd]`).
struct Leading {
    etcd: Arc<etcd::Etcd>,
    leadership: Arc<leadership::Leadership>,
    store: Arc<dyn Store>,
    /// The task that keeps the leader's lease alive (resigns on shutdown).
    keeper: tokio::task::JoinHandle<()>,
}

/// Stand by until this process leads (`None`: shut down meanwhile); then
/// the etcd store, its writes guarded by the leadership. Who leads
/// meanwhile goes to `seen` (the standby's services name it).
async fn lead(
    e: &config::EtcdPlan,
    client: &Arc<etcd::Etcd>,
    seen: &tokio::sync::watch::Sender<Option<leadership::LeaderInfo>>,
    token: &CancellationToken,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Leading>, ArbiterError> {
    info!(etcd = ?e.endpoints, prefix = %e.prefix, name = %e.name, advertise = %e.advertise,
          etcd.tls = e.tls.is_some(), "etcd store: standing for leadership");
    let stop = token.child_token();
    let me = leadership::LeaderInfo {
        name: e.name.clone(),
        url: e.advertise.clone(),
    };
    let campaign = client.spawn({
        let (m, prefix, ttl, stop, seen) = (
            client.members(),
            e.prefix.clone(),
            e.leader_ttl,
            stop.clone(),
            seen.clone(),
        );
        async move { leadership::campaign(m, &prefix, &me, ttl, &seen, stop).await }
    });
    let won = tokio::select! {
        _ = shutdown.as_mut() => {
            stop.cancel();
            info!("shutdown requested while standing by");
            return Ok(None);
        }
        r = campaign => r
            .map_err(|j| StoreError::Etcd(format!("the campaign task failed: {j}")))?
            .map_err(StoreError::from)?,
    };
    let Some(won) = won else { return Ok(None) };
    seen.send_replace(Some(leadership::LeaderInfo {
        name: e.name.clone(),
        url: e.advertise.clone(),
    }));
    let leadership = Arc::new(won);
    let keeper = client.spawn({
        let (m, l, ttl, stop) = (
            client.members(),
            leadership.clone(),
            e.leader_ttl,
            token.child_token(),
        );
        async move { leadership::keep(m, &l, ttl, stop).await }
    });
    let store = Arc::new(etcd_store::EtcdStore::new(
        client.clone(),
        &e.prefix,
        Some(leadership.guard.clone()),
        format!("{}#{:x}", e.name, leadership.lease),
    ));
    Ok(Some(Leading {
        etcd: client.clone(),
        leadership,
        store,
        keeper,
    }))
}

/// Cancel every task and wait for them (at most `grace`).
async fn stop(token: &CancellationToken, tracker: &TaskTracker, grace: Duration) {
    token.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(grace = ?grace, "shutdown grace period ran out; exiting anyway");
    }
}

/// The metrics endpoint, the alerter and one task per cluster, on `store`.
async fn start_clusters(
    plan: &Plan,
    store: Arc<dyn Store>,
    clock: Option<Arc<leadership::LeaderClock>>,
    tracker: &TaskTracker,
    token: &CancellationToken,
    fatal_tx: mpsc::Sender<Fatal>,
) -> Result<Arc<BTreeMap<String, ClusterHandle>>, ArbiterError> {
    let metrics = metrics::Metrics::new(env!("CARGO_PKG_VERSION"));
    let alerter = alert::Alerter::start(
        plan.alerts.clone(),
        tracker,
        token.child_token(),
        metrics.clone(),
    );
    match plan.metrics {
        config::MetricsListen::Off => info!("metrics endpoint off (arbiter.metrics = \"off\")"),
        config::MetricsListen::Configured(addr) => {
            metrics::serve(metrics.clone(), addr, tracker, token.child_token()).await?;
        }
        config::MetricsListen::Default(addr) => {
            if let Err(e) =
                metrics::serve(metrics.clone(), addr, tracker, token.child_token()).await
            {
                error!(error = %e, "metrics endpoint not served (set arbiter.metrics to another address, or \"off\")");
            }
        }
    }
    let mut handles = BTreeMap::new();
    for (name, cplan) in &plan.clusters {
        let devices = fence_orchestrator::build_devices(&cplan.devices, &cplan.levels).await?;
        let (tx, rx) = mpsc::channel(4096);
        let (events, _) = broadcast::channel(1024);
        let handle = ClusterHandle {
            plan: Arc::new(cplan.clone()),
            tx,
            events,
        };
        let driver = ClusterDriver::new(
            handle.plan.clone(),
            store.clone(),
            devices,
            &handle,
            tracker.clone(),
            token.child_token(),
            alerter.clone(),
            metrics.clone(),
            clock.clone(),
        )?;
        supervise(tracker, name.clone(), driver.run(rx), fatal_tx.clone());
        handles.insert(name.clone(), handle);
    }
    Ok(Arc::new(handles))
}

/// Run the arbiter until `shutdown` resolves (or a cluster task fails on
/// its store). `on_bound` is told the bound address (useful with port 0).
///
/// With `[arbiter.etcd]` it listens from the start, as a standby: agents
/// and the operator's controls are referred to the leader, `status` and
/// `history` answered read-only from etcd when asked ([`rpc::role`]); once
/// it leads, it serves the clusters.
pub async fn run(
    plan: Plan,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ArbiterError> {
    let token = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let client = match &plan.etcd {
        None => None,
        Some(e) => Some(Arc::new(
            etcd::Etcd::connect(&e.endpoints, e.timeout, e.tls.as_ref())
                .map_err(StoreError::from)?,
        )),
    };
    // What the admin service reads (history, a standby's status): the
    // embedded store, or etcd without a guard (reads need none).
    let read_store: Arc<dyn Store> = match (&plan.etcd, &client) {
        (Some(e), Some(c)) => Arc::new(etcd_store::EtcdStore::new(
            c.clone(),
            &e.prefix,
            None,
            format!("{}#reader", e.name),
        )),
        _ => Arc::new(RedbStore::open(&plan.state_dir)?),
    };
    let (seen_tx, seen_rx) = tokio::sync::watch::channel(None);
    let role = Arc::new(rpc::role::Role::new(
        leadership::LeaderInfo {
            name: plan
                .etcd
                .as_ref()
                .map(|e| e.name.clone())
                .unwrap_or_default(),
            url: plan
                .etcd
                .as_ref()
                .map(|e| e.advertise.clone())
                .unwrap_or_default(),
        },
        &plan.clusters,
        seen_rx,
    ));
    let tracker = TaskTracker::new();

    let listener = TcpListener::bind(plan.listen)
        .await
        .map_err(|source| ArbiterError::Bind {
            addr: plan.listen.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ArbiterError::Bind {
        addr: plan.listen.to_string(),
        source,
    })?;
    if plan.tls.is_none() {
        warn!(listen = %bound, "serving PLAIN TCP WITHOUT TLS (arbiter.insecure_plaintext = true): demos and trusted networks only");
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            // Heartbeats are tiny: never let Nagle hold them back.
            let _ = s.set_nodelay(true);
        }
        s
    });
    let tls = plan.tls.is_some();
    let agent_svc = rpc::agent_service::AgentSessionService::new(
        role.clone(),
        tracker.clone(),
        token.child_token(),
        tls,
    );
    let admin_svc = rpc::admin_service::AdminService::new(
        role.clone(),
        read_store.clone(),
        tracker.clone(),
        token.child_token(),
        tls,
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(pem) = &plan.tls {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let cfg = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pem.cert, &pem.key))
            .client_ca_root(Certificate::from_pem(&pem.ca));
        builder = builder.tls_config(cfg).map_err(ArbiterError::Serve)?;
        info!(listen = %bound, "mutual TLS on: agents and fencectl need certificates from the configured CA");
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(2)))
        .add_service(proto::v1::agent_session_server::AgentSessionServer::new(
            agent_svc,
        ))
        .add_service(proto::v1::admin_server::AdminServer::new(admin_svc))
        .serve_with_incoming_shutdown(incoming, token.clone().cancelled_owned());
    let server = tracker.spawn(server);
    on_bound(bound);

    // A standby keeps systemd's watchdog fed until the clusters' tasks and
    // their notifier run (building devices may take seconds).
    let standing = token.child_token();
    let (store, leading): (Arc<dyn Store>, Option<Leading>) = match (&plan.etcd, &client) {
        (Some(e), Some(c)) => {
            info!(listen = %bound, "standing by: agents and controls are referred to the leader");
            tracker.spawn(service_notify::standby(standing.clone()));
            match lead(e, c, &seen_tx, &token, &mut shutdown).await {
                Ok(Some(l)) => (l.store.clone(), Some(l)),
                r => {
                    stop(&token, &tracker, plan.shutdown_grace).await;
                    // Shut down while standing by, or the campaign failed.
                    return r.map(|_| ());
                }
            }
        }
        _ => (read_store.clone(), None),
    };
    let clock = leading.as_ref().map(|l| l.leadership.clock.clone());
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<Fatal>(4);
    let started = start_clusters(&plan, store, clock.clone(), &tracker, &token, fatal_tx).await;
    let clusters = match started {
        Ok(c) => c,
        Err(e) => {
            stop(&token, &tracker, plan.shutdown_grace).await;
            if let Some(l) = leading {
                let _ = tokio::time::timeout(l.etcd.members().timeout(), l.keeper).await;
            }
            return Err(e);
        }
    };
    role.lead(clusters.clone(), clock);
    info!(listen = %bound, clusters = ?clusters.keys().collect::<Vec<_>>(), "fence-arbiter started");
    tracker.spawn(service_notify::run(clusters.clone(), token.child_token()));
    standing.cancel();

    let mut result = Ok(());
    let lost = async {
        match &leading {
            Some(l) => l.leadership.lost.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = &mut shutdown => info!("shutdown requested"),
        _ = lost => {
            error!("leadership lost; shutting down (a standby takes over)");
            result = Err(ArbiterError::LeadershipLost);
        }
        Some(f) = fatal_rx.recv() => {
            error!(error = %f, "a cluster task failed; shutting down");
            result = Err(match f {
                Fatal::Store(e) => e.into(),
                Fatal::Panic { cluster, detail } => ArbiterError::ClusterPanicked { cluster, detail },
            });
        }
    }
    stop(&token, &tracker, plan.shutdown_grace).await;
    if let Some(l) = leading {
        // The keeper resigns (revokes the lease) on the cancelled token.
        let _ = tokio::time::timeout(l.etcd.members().timeout(), l.keeper).await;
    }
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_millis(1), server).await {
        return Err(e.into());
    }
    info!("fence-arbiter stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_cluster_task_is_reported_as_fatal() {
        let tracker = TaskTracker::new();
        let (tx, mut rx) = mpsc::channel(1);
        supervise(
            &tracker,
            "web".into(),
            async { panic!("invariant broken: node 9 not configured") },
            tx.clone(),
        );
        supervise(&tracker, "db".into(), async { Ok(()) }, tx);
        let fatal = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("reported in time")
            .expect("a fatal report");
        match fatal {
            Fatal::Panic { cluster, detail } => {
                assert_eq!(cluster, "web");
                assert!(detail.contains("node 9 not configured"), "{detail}");
            }
            other => panic!("expected a panic report, got {other}"),
        }
        // A task that ends cleanly reports nothing.
        tracker.close();
        tracker.wait().await;
        assert!(rx.recv().await.is_none());
    }
}
