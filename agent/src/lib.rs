//! The node agent: its pure lease core ([`lease`]) and the shell around it:
//! configuration ([`config`]), peer probes ([`peer_probe`]) and the arbiter
//! session ([`session`]).

pub mod cli;
pub mod config;
pub mod groups;
pub mod heuristics;
pub mod lease;
pub mod peer_probe;
pub mod resource_runner;
pub mod service_notify;
pub mod session;
pub mod watchdog;
pub mod watchdog_device;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
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
    #[error("TLS setup: {0}")]
    Tls(tonic::transport::Error),
    /// The arbiter recorded this node as fenced (powered off) in `epoch`
    /// while this process, which held a lease before, still runs. Exit
    /// status 3: a supervisor must not restart the agent
    /// (`RestartPreventExitStatus=3`), an operator must look at the node and
    /// its fence device.
    #[error(
        "the arbiter recorded this node as fenced (powered off) in epoch {epoch} but it is still running: the fence device switched the wrong outlet or lied"
    )]
    Fenced { epoch: u64 },
    #[error("the arbiter session task failed: {0}")]
    Session(String),
    /// `run_dir` cannot be made, or what an earlier agent left running
    /// there cannot be stopped: the agent does not start (it could not
    /// clean up after itself either).
    #[error("run_dir {dir}: {reason}")]
    RunDir { dir: String, reason: String },
}

/// This process's instance: a random number drawn once when the process
/// starts, never 0, sent in every Hello. The arbiter tells a rebooted node
/// (a new instance) from one that was never switched off (the same instance
/// speaking after a confirmed fence).
pub fn instance() -> u64 {
    static INSTANCE: OnceLock<u64> = OnceLock::new();
    *INSTANCE.get_or_init(|| {
        loop {
            let x: u64 = rand::random();
            if x != 0 {
                return x;
            }
        }
    })
}

/// Run the agent until `shutdown` resolves, or until the arbiter recorded
/// this running node as fenced ([`AgentError::Fenced`]).
pub async fn run(plan: AgentPlan, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let faults = Arc::new(peer_probe::Faults::default());
    let probes = peer_probe::SharedProbes::default();
    let heuristics = heuristics::Heuristics::new(plan.heuristics.clone());
    heuristics.spawn(plan.node, &tracker, &token);

    let listener = TcpListener::bind(plan.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: plan.listen.to_string(),
            source,
        })?;
    if plan.tls.is_none() {
        warn!(listen = %plan.listen, "PLAIN TCP WITHOUT TLS (insecure_plaintext = true): demos and trusted networks only");
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &plan.tls {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let cfg = ServerTlsConfig::new()
            .identity(Identity::from_pem(&t.cert, &t.key))
            .client_ca_root(Certificate::from_pem(&t.ca));
        builder = builder.tls_config(cfg).map_err(AgentError::Tls)?;
    }
    let server = builder
        .add_service(proto::v1::peer_probe_server::PeerProbeServer::new(
            peer_probe::ProbeServer {
                cluster: plan.cluster.clone(),
                node: plan.node,
                faults: faults.clone(),
                state: probes.clone(),
            },
        ))
        .serve_with_incoming_shutdown(incoming, token.clone().cancelled_owned());
    tracker.spawn(server);
    tracker.spawn(peer_probe::run_prober(
        plan.cluster.clone(),
        plan.node,
        probes.clone(),
        faults.clone(),
        plan.tls.clone(),
        token.child_token(),
    ));
    if plan.fault_injection {
        warn!(
            "fault injection enabled: SIGUSR1 toggles isolation from the network, SIGUSR2 from peers only"
        );
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(AgentError::Signal)?;
        let mut usr2 = signal(SignalKind::user_defined2()).map_err(AgentError::Signal)?;
        let f = faults.clone();
        let t = token.child_token();
        let node = plan.node;
        tracker.spawn(async move {
            loop {
                let (flag, fault) = tokio::select! {
                    _ = t.cancelled() => return,
                    _ = usr1.recv() => (&f.isolated, "network"),
                    _ = usr2.recv() => (&f.probes_cut, "peers"),
                };
                let on = !flag.load(Ordering::Relaxed);
                flag.store(on, Ordering::Relaxed);
                warn!(
                    node.id = node,
                    isolated_from = fault,
                    on,
                    "fault injection toggled"
                );
            }
        });
    }
    info!(node.id = plan.node, cluster = %plan.cluster, arbiter = %plan.arbiter, listen = %plan.listen,
          instance = format_args!("{:016x}", instance()), boot_id = %plan.boot_id, "fence-agent started");
    // Where the pids of `process` resources are kept (per cluster, per
    // node): what an earlier agent process left running is killed before
    // anything else, whatever group it belonged to.
    let state_root = plan.run_dir.join(&plan.cluster);
    let run_dir_error = |reason: String| AgentError::RunDir {
        dir: state_root.display().to_string(),
        reason,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_root)
            .map_err(|e| {
                run_dir_error(format!(
                    "{e} (set run_dir to a directory this user may write, on a tmpfs)"
                ))
            })?;
    }
    // One agent per node on this machine: a second one (started by hand
    // beside the service) would take the first one's processes for
    // leftovers. Held until this process exits.
    let lock_path = state_root.join(format!("node{}.lock", plan.node));
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| run_dir_error(format!("{}: {e}", lock_path.display())))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            run_dir_error(format!(
                "{}: {e}: another agent for node {} of cluster {:?} runs on this machine",
                lock_path.display(),
                plan.node,
                plan.cluster
            ))
        })?;
    let swept = resources::process::sweep_leftovers(
        &state_root,
        std::path::Path::new(resources::process::CGROUP_ROOT),
        &plan.cluster,
        plan.node,
    )
    .await
    .map_err(run_dir_error)?;
    if !swept.is_empty() {
        warn!(node.id = plan.node, stopped = ?swept, "stopped what an earlier agent process left running");
    }
    let runner = resource_runner::spawn(
        plan.node,
        Some((state_root.clone(), plan.cluster.clone())),
        &tracker,
        token.child_token(),
    );
    let shared = Arc::new(watchdog::Shared::default());
    if let Some(cfg) = plan.watchdog.clone() {
        tracker.spawn(watchdog::run(
            cfg,
            plan.node,
            shared.clone(),
            runner.clone(),
            token.child_token(),
            runner.finished(),
        ));
    }
    tracker.spawn(service_notify::run(shared.clone(), token.child_token()));
    let session = session::Session::new(plan, probes, faults, heuristics, token.child_token())
        .with_runner(runner)
        .with_watchdog(shared);
    let mut session = tracker.spawn(session.run());

    let result = tokio::select! {
        _ = shutdown => {
            info!("shutdown requested");
            Ok(())
        }
        r = &mut session => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(AgentError::Session(e.to_string())),
        },
    };
    token.cancel();
    tracker.close();
    // (Resource groups still running are stopped first: their stops have
    // timeouts of their own.)
    if tokio::time::timeout(Duration::from_secs(60), tracker.wait())
        .await
        .is_err()
    {
        warn!("shutdown grace period ran out; exiting anyway");
    }
    info!("fence-agent stopped");
    result
}
