//! The agent's shell around its lease core: the arbiter session (connect,
//! Hello, Welcome, heartbeats, acks, announcements), reconnecting fast, and
//! ticking the core on its deadlines during every wait (connecting, the
//! Welcome, the session, the pauses between attempts), so a lease ends on
//! time whatever the network does.
//!
//! Reconnecting: a new attempt (TCP, TLS, HTTP/2, the Hello and the
//! arbiter's first message) starts every [`RETRY`] while earlier ones are
//! still pending, each bounded by the connect timeout (three heartbeat
//! intervals by default, see [`Session::connect_timeout`]). A SYN lost to a
//! blocked port is therefore never waited for (the kernel would resend it
//! only after 1 s, then 3 s): once the path heals, the next attempt gets
//! through within [`RETRY`]. With several arbiters, an attempt pending on
//! one (a frozen arbiter's kernel still accepts connections) does not hold
//! up the others: each new attempt goes to the next arbiter with nothing
//! pending. That matters during a handover: while a lease is ridden out,
//! a peer that reaches the new leader first ends the ride for the nodes
//! that do not, so every agent must reach the new leader within about a
//! lease of the first.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, error, info, warn};

use crate::AgentError;
use crate::config::AgentPlan;
use crate::groups::GroupRun;
use crate::heuristics::Heuristics;
use crate::lease::{Input, LeaseKeeper, Output, PeerReport};
use crate::peer_probe::{Faults, SharedProbes, reachable};
use crate::resource_runner::RunnerHandle;

/// How often a new attempt to reach the arbiter starts.
pub const RETRY: Duration = Duration::from_millis(100);
/// The heartbeat interval assumed before the first Welcome (the clusters'
/// default).
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// Bounds of the connect timeout derived from the heartbeat interval.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection attempts pending at once, at most.
const MAX_PENDING: usize = 20;
/// How long an arbiter that refused this agent is left out (and, when
/// every arbiter refused, the pause before trying again).
const REFUSED_PAUSE: Duration = Duration::from_secs(5);
/// While the arbiter stays unreachable, one warning per this period.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Owns the lease core and the clock origin.
pub struct Session {
    plan: AgentPlan,
    keeper: LeaseKeeper,
    origin: Instant,
    probes: SharedProbes,
    faults: Arc<Faults>,
    heuristics: Arc<Heuristics>,
    token: CancellationToken,
    /// The heartbeat interval of the last Welcome: times connect attempts.
    interval_hint: Duration,
    /// Failed attempts since the arbiter was last reached, for logging.
    streak: Streak,
    /// The arbiter URL (index into `plan.arbiters`) the next connection
    /// attempt goes to.
    next_arbiter: usize,
    /// The leader a standby named last (logged once per change).
    followed: Option<String>,
    /// Lease and epoch events for an observer (tests, resource hooks).
    events: Option<mpsc::UnboundedSender<Output>>,
    /// Runs the resource groups the arbiter places here.
    runner: Option<RunnerHandle>,
    /// The watchdog task's view of the lease, and the watchdog it armed.
    watchdog: Option<Arc<crate::watchdog::Shared>>,
    /// The last acknowledgement or announcement naming this node gone
    /// said the watchdog rule counted it (not a device).
    gone_by_watchdog: bool,
    /// How far the lease ran past its grant at the last step (logged when
    /// riding out starts and ends).
    ridden: Duration,
}

enum Ended {
    Cancelled,
    Retry,
    /// The arbiter recorded this running node as fenced in this epoch.
    Fenced(u64),
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
    /// A standby of a group of arbiters: the leader is elsewhere (its URL,
    /// when the standby knows it).
    #[error("{message}")]
    Standby {
        message: String,
        leader: Option<String>,
    },
    /// An attempt gave up its wait to say Hello to a newer one (no failure).
    #[error("a newer attempt waits to say Hello")]
    Superseded,
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

/// A run of failed attempts to reach the arbiter: the first one is logged
/// as a warning, then one every [`LOG_EVERY`], the rest at debug level.
#[derive(Debug, Default)]
struct Streak {
    failures: u64,
    since: Option<Instant>,
    logged: Option<Instant>,
}

impl Streak {
    /// Count a failure; true when it deserves a warning.
    fn fail(&mut self) -> bool {
        let now = Instant::now();
        self.failures += 1;
        self.since.get_or_insert(now);
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.logged = Some(now);
            return true;
        }
        false
    }

    /// The arbiter answered: the failures and how long they lasted, if any.
    fn reset(&mut self) -> Option<(u64, Duration)> {
        let r = self.since.map(|t| (self.failures, t.elapsed()));
        *self = Streak::default();
        r
    }
}

/// Sleep until `at`, or forever without a deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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
            keeper: LeaseKeeper::new(plan.node),
            plan,
            origin: Instant::now(),
            probes,
            faults,
            heuristics,
            token,
            interval_hint: DEFAULT_INTERVAL,
            streak: Streak::default(),
            next_arbiter: 0,
            followed: None,
            events: None,
            runner: None,
            watchdog: None,
            gone_by_watchdog: false,
            ridden: Duration::ZERO,
        }
    }

    /// Share the lease with the watchdog task, and report its watchdog.
    pub fn with_watchdog(mut self, shared: Arc<crate::watchdog::Shared>) -> Self {
        self.watchdog = Some(shared);
        self
    }

    /// Told it is gone, may this agent rejoin rather than stop? Only when
    /// the watchdog rule (not a device) counted it, its watchdog is armed
    /// and never ran out while this process lived, and it is at rest.
    fn may_rejoin(&self) -> bool {
        self.gone_by_watchdog
            && self
                .watchdog
                .as_ref()
                .is_some_and(|w| w.armed_ms() > 0 && !w.ran_out())
            && self.at_rest()
    }

    /// Every group known and stopped (see [`crate::groups::GroupKeeper::at_rest`]).
    fn at_rest(&self) -> bool {
        self.runner.as_ref().is_some_and(|r| r.report().at_rest)
    }

    fn watchdog_ms(&self) -> u32 {
        self.watchdog.as_ref().map_or(0, |w| w.armed_ms())
    }

    /// Run the resource groups the arbiter places on this node.
    pub fn with_runner(mut self, runner: RunnerHandle) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Every output of the lease core but heartbeats (lease acquired and
    /// lost, new epochs, fenced), as the session applies them.
    pub fn events(&mut self) -> mpsc::UnboundedReceiver<Output> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        rx
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The bound of one attempt to connect (TCP, TLS, HTTP/2) and of the
    /// wait for the Welcome: `connect_timeout` if configured, else three
    /// heartbeat intervals as last announced, within 200 ms ..= 2 s.
    pub fn connect_timeout(&self) -> Duration {
        self.plan.connect_timeout.unwrap_or_else(|| {
            self.interval_hint
                .saturating_mul(3)
                .clamp(MIN_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT)
        })
    }

    /// Run until cancelled, or until the arbiter recorded this running node
    /// as fenced ([`AgentError::Fenced`]).
    pub async fn run(mut self) -> Result<(), AgentError> {
        loop {
            let started = Instant::now();
            let ended = if self.faults.isolated.load(Ordering::Relaxed) {
                self.idle(Duration::from_millis(50)).await
            } else {
                match self.connect_and_serve().await {
                    Ok(e) => e,
                    Err(SessionError::Standby { message, leader }) => {
                        self.follow(leader.as_deref(), &message);
                        self.idle(RETRY.saturating_sub(started.elapsed())).await
                    }
                    Err(e @ SessionError::Refused(_)) => {
                        error!(node.id = self.plan.node, error = %e,
                               "the arbiter refused this agent; check its cluster, node and listen settings; retrying in 5s");
                        self.idle(REFUSED_PAUSE).await
                    }
                    Err(e) => {
                        if self.streak.fail() {
                            warn!(node.id = self.plan.node, error = %e, failures = self.streak.failures,
                                  "arbiter session failed; retrying every {RETRY:?}");
                        } else {
                            debug!(node.id = self.plan.node, error = %e, "arbiter session failed; retrying");
                        }
                        // Attempts start RETRY apart: no pause after a slow
                        // failure (a Welcome that never came).
                        self.idle(RETRY.saturating_sub(started.elapsed())).await
                    }
                }
            };
            match ended {
                Ended::Retry => {}
                Ended::Cancelled => {
                    if self.keeper.lease(self.now()).is_some() {
                        info!(
                            node.id = self.plan.node,
                            "shutting down with a lease: releasing it (resources stop)"
                        );
                    }
                    return Ok(());
                }
                // Counted fenced by the watchdog rule while at rest (its
                // watchdog had nothing to reset): a node that may rejoin.
                Ended::Fenced(epoch) if self.may_rejoin() => {
                    warn!(
                        node.id = self.plan.node,
                        lease.epoch = epoch,
                        "the arbiter counted this node fenced by the watchdog rule while every group stood stopped: rejoining as a new member"
                    );
                    self.keeper.rejoin();
                }
                Ended::Fenced(epoch) => return Err(AgentError::Fenced { epoch }),
            }
        }
    }

    /// When to step the lease core next: at its own deadline, and a lease
    /// that may be ridden out an eighth of an interval before it ends as
    /// well (a step at the end itself is too late to ride on answers that
    /// came just before it: the lease must still be held).
    fn next_wake(&self) -> Option<Instant> {
        let now = self.now();
        let early = if self.keeper.ride_out().is_zero() {
            None
        } else {
            self.keeper
                .lease(now)
                .map(|l| l.until.saturating_sub(self.interval_hint / 8))
                .filter(|&t| t > now)
        };
        [self.keeper.next_deadline(), early]
            .into_iter()
            .flatten()
            .min()
            .map(|t| self.origin + t)
    }

    /// Await `fut`, ticking the lease core on its deadlines meanwhile, so a
    /// lease ends on time however long `fut` takes. `None` when cancelled.
    async fn ticking<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            // At least every 100 ms: the loop's liveness is what systemd's
            // watchdog keep-alive reports (`service_notify`).
            let beat = tokio::time::Instant::now() + Duration::from_millis(100);
            let wake = self.next_wake().map(|t| t.min(beat)).or(Some(beat));
            // A peer's answer may let the lease be ridden out: read at once.
            let answered = self
                .probes
                .lock()
                .expect("probe state lock")
                .answered
                .clone();
            tokio::select! {
                biased;
                _ = self.token.cancelled() => return None,
                _ = sleep_until(wake) => {}
                _ = answered.notified() => {}
                out = &mut fut => return Some(out),
            }
            let input = Input::Peers(self.peer_reports());
            let outs = self.keeper.step(self.now(), input);
            self.apply(outs, None);
        }
    }

    /// The peers' latest answers, on the lease core's clock.
    fn peer_reports(&self) -> Vec<PeerReport> {
        let p = self.probes.lock().expect("probe state lock");
        p.answers
            .iter()
            .filter(|(id, _)| p.peers.contains_key(id))
            .map(|(&node, (sent, a))| PeerReport {
                node,
                sent_at: sent.saturating_duration_since(self.origin),
                epoch: a.epoch,
                reaches: a.reaches.iter().copied().collect(),
                fence_known: a.fence_known,
                arbiter_contact: a.arbiter_contact,
            })
            .collect()
    }

    /// Keep the core ticking without a session for `d`.
    async fn idle(&mut self, d: Duration) -> Ended {
        let outs = self.keeper.step(self.now(), Input::Disconnected);
        self.apply(outs, None);
        match self.ticking(tokio::time::sleep(d)).await {
            Some(()) => Ended::Retry,
            None => Ended::Cancelled,
        }
    }

    /// A standby named the leader: the next attempt goes to it if it is
    /// one of this agent's arbiters, else to the next arbiter in turn.
    /// Logged once per leader named.
    fn follow(&mut self, leader: Option<&str>, message: &str) {
        let norm = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
        let at = leader.and_then(|l| self.plan.arbiters.iter().position(|a| norm(a) == norm(l)));
        let new = self.followed.as_deref() != Some(leader.unwrap_or(""));
        match at {
            Some(k) => {
                self.next_arbiter = k;
                if new {
                    info!(node.id = self.plan.node, leader = %self.plan.arbiters[k], standby = %message,
                          "a standby arbiter answered: following the leader");
                }
            }
            None => {
                self.next_arbiter = self.next_arbiter.wrapping_add(1);
                if new {
                    warn!(node.id = self.plan.node, leader = ?leader, standby = %message,
                          "a standby arbiter answered, and the leader it names is not among this agent's arbiters (agent.arbiter): trying the others in turn");
                }
            }
        }
        self.followed = Some(leader.unwrap_or("").to_string());
    }

    /// One endpoint per configured arbiter URL.
    fn endpoints(&self, timeout: Duration) -> Result<Vec<Endpoint>, SessionError> {
        self.plan
            .arbiters
            .iter()
            .map(|url| self.endpoint(url, timeout))
            .collect()
    }

    fn endpoint(&self, url: &str, timeout: Duration) -> Result<Endpoint, SessionError> {
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("arbiter URL {url:?}: {e}"))?;
        if let Some(t) = &self.plan.tls {
            let cfg = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca))
                .identity(tonic::transport::Identity::from_pem(&t.cert, &t.key))
                .domain_name(t.arbiter_name.clone());
            ep = ep.tls_config(cfg).map_err(|e| format!("TLS setup: {e}"))?;
        }
        Ok(ep
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true))
    }

    /// The Hello this agent opens a session with, as things stand now.
    fn hello(&self) -> pb::Hello {
        pb::Hello {
            cluster: self.plan.cluster.clone(),
            node_id: self.plan.node,
            probe_address: self.plan.listen_text.clone(),
            config_fingerprint: self.plan.fingerprint.clone(),
            known_epoch: self.keeper.epoch(),
            instance: crate::instance(),
            boot_id: self.plan.boot_id.clone(),
            watchdog_timeout_ms: self.watchdog_ms(),
        }
    }

    /// The arbiter the next attempt goes to: the next in turn from
    /// `next_arbiter` with no attempt pending (a frozen arbiter's kernel
    /// accepts and its attempt waits out the timeout: the others are tried
    /// meanwhile), or the next in turn if every one has an attempt
    /// pending; never one `barred` (it refused this agent lately). `None`
    /// when every one is.
    fn pick(&mut self, pending: &[usize], barred: &[bool]) -> Option<usize> {
        let n = pending.len();
        let turn = |i: usize| self.next_arbiter.wrapping_add(i) % n;
        let k = (0..n)
            .map(turn)
            .find(|&k| pending[k] == 0 && !barred[k])
            .or_else(|| (0..n).map(turn).find(|&k| !barred[k]))?;
        self.next_arbiter = k.wrapping_add(1);
        Some(k)
    }

    /// Open a session: a fresh attempt (connect, Hello, the arbiter's first
    /// message) every [`RETRY`] while earlier ones are pending, each bounded
    /// by `timeout`; the first Welcome wins and the others are dropped.
    /// `Ok(None)` when cancelled or isolated; `Err` when every arbiter
    /// refused this agent (one that refused is left out for
    /// [`REFUSED_PAUSE`] while the others are tried).
    ///
    /// Connections race, but each arbiter has at most one Hello
    /// outstanding ([`HelloSlot`]): an arbiter that stalled and then reads
    /// several would make the last its session, while the agent keeps the
    /// first Welcome (and would be cut off at once, and reconnect).
    ///
    /// With several arbiters (one leads, the others stand by) each attempt
    /// goes to the next one in turn, starting with the one that answered
    /// last; a standby's referral sends the next attempt to the leader it
    /// names, at once when nothing is pending there (once per [`RETRY`]).
    async fn open_first(
        &mut self,
        eps: &[Endpoint],
        timeout: Duration,
    ) -> Result<Option<Opened>, SessionError> {
        let n = eps.len();
        let mut attempts = JoinSet::new();
        let mut pending = vec![0usize; n];
        let hello_slots: Vec<Arc<HelloSlot>> = (0..n).map(|_| Arc::default()).collect();
        let mut ticket = 0u64;
        let mut refused_until: Vec<Option<Instant>> = vec![None; n];
        let mut next = Instant::now();
        // An attempt out of turn (to a leader named) at most once per
        // RETRY: standbys naming each other cannot make it spin.
        let mut hurry_allowed_at = Instant::now();
        loop {
            if self.faults.isolated.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= next {
                let barred: Vec<bool> = refused_until
                    .iter()
                    .map(|t| t.is_some_and(|t| now < t))
                    .collect();
                if attempts.len() < MAX_PENDING
                    && let Some(k) = self.pick(&pending, &barred)
                {
                    pending[k] += 1;
                    ticket += 1;
                    let (ep, hello) = (eps[k].clone(), self.hello());
                    let slot = (hello_slots[k].clone(), ticket);
                    let faults = self.faults.clone();
                    attempts
                        .spawn(async move { (k, open(ep, hello, slot, faults, timeout).await) });
                }
                next = now + RETRY;
            }
            let Some(done) = self
                .ticking(async {
                    tokio::select! {
                        Some(r) = attempts.join_next() => Some(r),
                        _ = tokio::time::sleep_until(next) => None,
                    }
                })
                .await
            else {
                return Ok(None);
            };
            let url = |k: usize| self.plan.arbiters[k].clone();
            let error = match done {
                None => continue,
                // A panicked attempt (its arbiter's count stays: it is
                // merely tried after the others).
                Some(Err(e)) => format!("session attempt failed: {e}"),
                Some(Ok((k, result))) => {
                    pending[k] = pending[k].saturating_sub(1);
                    match result {
                        Ok(_) if self.faults.isolated.load(Ordering::Relaxed) => return Ok(None),
                        Ok(opened) => {
                            // The next session starts with the arbiter that answered.
                            self.next_arbiter = k;
                            return Ok(Some(opened));
                        }
                        Err(SessionError::Standby { message, leader }) => {
                            self.follow(leader.as_deref(), &message);
                            let to = self.next_arbiter % n;
                            let now = Instant::now();
                            let barred = refused_until[to].is_some_and(|t| now < t);
                            if now >= hurry_allowed_at && to != k && pending[to] == 0 && !barred {
                                next = now;
                                hurry_allowed_at = now + RETRY;
                            }
                            continue;
                        }
                        Err(SessionError::Superseded) => continue,
                        Err(e @ SessionError::Refused(_)) => {
                            let now = Instant::now();
                            refused_until[k] = Some(now + REFUSED_PAUSE);
                            if refused_until.iter().all(|t| t.is_some_and(|t| now < t)) {
                                return Err(e);
                            }
                            error!(node.id = self.plan.node, arbiter = %url(k), error = %e,
                                   "this arbiter refused this agent; check its cluster, node and listen settings; trying the others");
                            continue;
                        }
                        Err(SessionError::Lost(e)) => format!("{}: {e}", url(k)),
                    }
                }
            };
            if self.streak.fail() {
                warn!(node.id = self.plan.node, error = %error, failures = self.streak.failures,
                      "arbiter unreachable; retrying every {RETRY:?}");
            } else {
                debug!(node.id = self.plan.node, error = %error, "arbiter unreachable; retrying");
            }
        }
    }

    async fn connect_and_serve(&mut self) -> Result<Ended, SessionError> {
        let timeout = self.connect_timeout();
        let eps = self.endpoints(timeout)?;
        let Some(Opened {
            client: _client,
            tx,
            mut inbound,
            first: welcome,
            _slot,
        }) = self.open_first(&eps, timeout).await?
        else {
            return Ok(if self.token.is_cancelled() {
                Ended::Cancelled
            } else {
                Ended::Retry
            });
        };
        let Some(pb::ArbiterMessage {
            body: Some(pb::arbiter_message::Body::Welcome(w)),
        }) = welcome
        else {
            return Err("the arbiter's first message was not a Welcome".into());
        };
        // Bounded whatever the arbiter sends: nothing below overflows.
        let interval = Duration::from_millis(w.heartbeat_interval_ms.clamp(1, 60_000));
        let max_lease = Duration::from_millis(w.lease_ms.min(600_000));
        self.interval_hint = interval;
        {
            let mut p = self.probes.lock().expect("probe state lock");
            p.interval = Some(interval);
            p.peers = w
                .peers
                .iter()
                .map(|p| (p.node_id, (p.probe_address.clone(), p.name.clone())))
                .collect();
            // Report only the peers the arbiter names now: a node removed
            // from its configuration must not be reported (the arbiter
            // refuses reports naming unknown nodes).
            let peers = p.peers.clone();
            p.last_ok.retain(|id, _| peers.contains_key(id));
        }
        if let Some((failures, lasted)) = self.streak.reset() {
            info!(node.id = self.plan.node, failures, lasted = ?lasted, "arbiter reached again");
        }
        info!(node.id = self.plan.node, cluster = %self.plan.cluster, lease.epoch = w.epoch,
              heartbeat_ms = w.heartbeat_interval_ms, lease_ms = w.lease_ms, "session open");
        let outs = self.keeper.step(
            self.now(),
            Input::Welcome {
                heartbeat_interval: interval,
                epoch: w.epoch,
                ride_out: Duration::from_millis(w.ride_out_ms),
            },
        );
        self.apply(outs, Some(&tx));
        if let Some(r) = &self.runner {
            r.define(w.node_name.clone(), w.groups.clone());
        }
        // No answer at all for three intervals: the session is dead.
        let silence = interval * 3;
        let answered = self
            .probes
            .lock()
            .expect("probe state lock")
            .answered
            .clone();
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
                .next_wake()
                .unwrap_or_else(|| Instant::now() + interval)
                .min(last_heard + silence)
                .min(Instant::now() + Duration::from_millis(50));
            let msg = tokio::select! {
                _ = self.token.cancelled() => return Ok(Ended::Cancelled),
                _ = tokio::time::sleep_until(wake) => None,
                // A peer's answer may let the lease be ridden out: read it
                // now, not at the lease's end (too late to ride on it).
                _ = answered.notified() => None,
                m = inbound.message() => Some(m),
            };
            let mut grants = None;
            let input = match msg {
                None => {
                    if last_heard.elapsed() >= silence {
                        return Err(format!("no answer from the arbiter for {silence:?}").into());
                    }
                    Input::Peers(self.peer_reports())
                }
                Some(Err(s)) => return Err(refusal(&s)),
                Some(Ok(None)) => return Err("the arbiter closed the session".into()),
                Some(Ok(Some(m))) => {
                    last_heard = Instant::now();
                    match m.body {
                        Some(pb::arbiter_message::Body::Ack(a)) => {
                            if a.gone.contains(&self.plan.node) {
                                self.gone_by_watchdog =
                                    a.gone_by_watchdog.contains(&self.plan.node);
                            }
                            // An arbiter that cannot decide yet places
                            // nothing: the groups of a lease being ridden
                            // out run on as they are.
                            if !(a.undecided
                                && a.lease_ms == 0
                                && !self.keeper.ride_out().is_zero())
                            {
                                grants = Some((
                                    a.seq,
                                    a.groups
                                        .iter()
                                        .map(|g| (g.group.clone(), g.start))
                                        .collect::<Vec<_>>(),
                                ));
                            }
                            Input::Ack {
                                seq: a.seq,
                                // Never longer than the lease the Welcome announced.
                                lease: (a.lease_ms > 0)
                                    .then(|| Duration::from_millis(a.lease_ms).min(max_lease)),
                                epoch: a.epoch,
                                survivors: a.backed.into_iter().collect(),
                                gone: a.gone.into_iter().collect(),
                                leaving: a.leaving.into_iter().collect(),
                                undecided: a.undecided,
                            }
                        }
                        Some(pb::arbiter_message::Body::Announcement(a)) => {
                            if a.gone.contains(&self.plan.node) {
                                self.gone_by_watchdog =
                                    a.gone_by_watchdog.contains(&self.plan.node);
                            }
                            Input::Announcement {
                                epoch: a.epoch,
                                survivors: a.survivors.into_iter().collect(),
                                gone: a.gone.into_iter().collect(),
                            }
                        }
                        _ => Input::Peers(self.peer_reports()),
                    }
                }
            };
            let outs = self.keeper.step(self.now(), input);
            self.apply(outs, Some(&tx));
            // The placements of this Ack, under the lease as it stands now
            // (an Ack the lease core refused grants no start).
            if let (Some(r), Some((seq, grants))) = (&self.runner, grants) {
                let now = self.now();
                let lease = self.keeper.lease(now);
                r.ack(
                    seq,
                    lease.is_some(),
                    lease.map_or(self.keeper.epoch(), |l| l.epoch),
                    grants,
                );
            }
            if let Some(epoch) = self.keeper.fenced() {
                return Ok(Ended::Fenced(epoch));
            }
        }
    }

    fn apply(&mut self, outs: Vec<Output>, tx: Option<&mpsc::Sender<pb::AgentMessage>>) {
        let node = self.plan.node;
        let now = self.now();
        {
            let mut p = self.probes.lock().expect("probe state lock");
            p.own = Some(self.keeper.own_report(now));
            p.contact_until = self.keeper.contact_until().map(|t| self.origin + t);
            // No grant for an interval and a quarter while holding a lease
            // that may be ridden out: probe faster until it ends (see
            // `ProbeState::hurry`). Contact ends 1.5 intervals after the
            // last grant.
            let interval = self.interval_hint;
            p.hurry = match (self.keeper.contact_until(), self.keeper.lease(now)) {
                (Some(contact), Some(l)) if !self.keeper.ride_out().is_zero() => Some((
                    self.origin + contact.saturating_sub(interval / 4),
                    self.origin + l.until,
                )),
                _ => None,
            };
        }
        let ridden = self
            .keeper
            .lease(now)
            .map_or(Duration::ZERO, |l| l.ridden());
        if ridden.is_zero() != self.ridden.is_zero() {
            if ridden.is_zero() {
                info!(
                    node.id = node,
                    ridden_ms = self.ridden.as_millis() as u64,
                    "lease no longer ridden out (an arbiter granted one, or it lapsed)"
                );
            } else {
                warn!(
                    node.id = node,
                    ride_out_ms = self.keeper.ride_out().as_millis() as u64,
                    "no arbiter grants a lease; riding it out while the mesh is whole"
                );
            }
        }
        self.ridden = ridden;
        if let Some(w) = &self.watchdog {
            w.set_lease_until(self.keeper.lease(self.now()).map(|l| self.origin + l.until));
            w.tick();
        }
        for o in outs {
            if let Some(events) = &self.events
                && !matches!(o, Output::SendHeartbeat { .. })
            {
                let _ = events.send(o.clone());
            }
            match o {
                Output::SendHeartbeat {
                    seq,
                    sent_at,
                    known_epoch,
                    acked_seq,
                } => {
                    let Some(tx) = tx else { continue };
                    let report = self.runner.as_ref().map(|r| r.report()).unwrap_or_default();
                    let hb = pb::Heartbeat {
                        seq,
                        sent_at_us: sent_at.as_micros() as u64,
                        reachable: reachable(&self.probes, Instant::now()),
                        heuristics: self.heuristics.score(),
                        known_epoch,
                        applied_seq: report.applied_seq,
                        acked_seq,
                        ridden_ms: ridden.as_millis() as u64,
                        watchdog_timeout_ms: self.watchdog_ms(),
                        groups: report
                            .states
                            .into_iter()
                            .map(|(group, run)| pb::GroupState {
                                group,
                                state: group_run(run) as i32,
                            })
                            .collect(),
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
                    if let Some(r) = &self.runner {
                        r.lease_lost();
                    }
                }
                Output::Fenced { .. } if self.may_rejoin() => {}
                Output::Fenced { epoch } => {
                    error!(
                        node.id = node,
                        lease.epoch = epoch,
                        instance = format_args!("{:016x}", crate::instance()),
                        "the arbiter recorded this node as fenced (powered off) but it is still running: the fence device switched the wrong outlet or lied; stopping"
                    );
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

fn group_run(r: GroupRun) -> pb::GroupRunState {
    match r {
        GroupRun::Stopped => pb::GroupRunState::Stopped,
        GroupRun::Starting => pb::GroupRunState::Starting,
        GroupRun::Running => pb::GroupRunState::Running,
        GroupRun::Stopping => pb::GroupRunState::Stopping,
        GroupRun::Failed => pb::GroupRunState::Failed,
        GroupRun::StopFailed => pb::GroupRunState::StopFailed,
    }
}

/// One Hello outstanding per arbiter, within one [`Session::open_first`]:
/// an attempt that connected waits here for the one before it to end, and
/// gives up as soon as a newer attempt waits (attempts start [`RETRY`]
/// apart, so at most one waits and none queues behind a stale
/// connection).
#[derive(Debug, Default)]
struct HelloSlot {
    state: std::sync::Mutex<SlotState>,
    freed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    busy: bool,
    /// The newest attempt's ticket seen waiting.
    newest: u64,
}

impl HelloSlot {
    /// The slot for attempt `ticket` (tickets grow with each attempt);
    /// `None` once a newer attempt waits for it.
    async fn take(self: Arc<Self>, ticket: u64) -> Option<SlotHeld> {
        {
            let mut s = self.state.lock().expect("hello slot lock");
            s.newest = s.newest.max(ticket);
        }
        // Older waiters see they were superseded.
        self.freed.notify_waiters();
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.state.lock().expect("hello slot lock");
                if s.newest != ticket {
                    return None;
                }
                if !s.busy {
                    s.busy = true;
                    return Some(SlotHeld(self.clone()));
                }
            }
            freed.await;
        }
    }
}

/// A [`HelloSlot`] taken; freed on drop.
#[derive(Debug)]
struct SlotHeld(Arc<HelloSlot>);

impl Drop for SlotHeld {
    fn drop(&mut self) {
        self.0.state.lock().expect("hello slot lock").busy = false;
        self.0.freed.notify_waiters();
    }
}

/// A session opened: the client (kept for the session's life), the
/// sender of the agent's stream, the arbiter's stream and its first message
/// (a Welcome).
struct Opened {
    client: pb::agent_session_client::AgentSessionClient<Channel>,
    tx: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::ArbiterMessage>,
    first: Option<pb::ArbiterMessage>,
    /// The arbiter's Hello slot, held for the session's life.
    _slot: SlotHeld,
}

/// One attempt at a session: connect (TCP, TLS, HTTP/2) within `timeout`;
/// take the arbiter's `hello_slot` (one Hello outstanding per arbiter; the
/// wait ends when the attempt before ends, within its own timeout, or when
/// a newer attempt connected: the newest connection is the likeliest to
/// work); then,
/// unless isolated meanwhile, open the stream with `hello` and read the
/// arbiter's first message, which must be a Welcome, within a `timeout` of
/// their own (the wait for the slot takes nothing from them). The slot is
/// kept in the session opened, so no later attempt sends a second Hello.
async fn open(
    ep: Endpoint,
    hello: pb::Hello,
    (hello_slot, ticket): (Arc<HelloSlot>, u64),
    faults: Arc<Faults>,
    timeout: Duration,
) -> Result<Opened, SessionError> {
    let channel = tokio::time::timeout(timeout, ep.connect())
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let slot = hello_slot
        .take(ticket)
        .await
        .ok_or(SessionError::Superseded)?;
    if faults.isolated.load(Ordering::Relaxed) {
        return Err("isolated by fault injection".into());
    }
    let session = async move {
        let mut client = pb::agent_session_client::AgentSessionClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(16);
        tx.try_send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(hello)),
        })
        .map_err(|_| "session closed".to_string())?;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        let first = inbound.message().await.map_err(|s| refusal(&s))?;
        if !matches!(
            first,
            Some(pb::ArbiterMessage {
                body: Some(pb::arbiter_message::Body::Welcome(_)),
            })
        ) {
            return Err(SessionError::from(
                "the arbiter's first message was not a Welcome",
            ));
        }
        Ok(Opened {
            client,
            tx,
            inbound,
            first,
            _slot: slot,
        })
    };
    tokio::time::timeout(timeout, session)
        .await
        .map_err(|_| SessionError::Lost(format!("no Welcome within {timeout:?}")))?
}

/// Classify a gRPC error from the arbiter.
fn refusal(s: &tonic::Status) -> SessionError {
    if let Some(leader) = proto::standby::leader_of(s) {
        return SessionError::Standby {
            message: s.message().to_string(),
            leader,
        };
    }
    match s.code() {
        tonic::Code::NotFound | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
            SessionError::Refused(s.message().to_string())
        }
        _ => SessionError::Lost(format!("session error: {} ({:?})", s.message(), s.code())),
    }
}

#[cfg(test)]
mod tests {
    //! The session against a fake arbiter on loopback whose port can serve,
    //! accept connections and never answer ("hold"), or drop new SYNs
    //! ("drop": nothing accepted, the listen queue full), as a blocked port.

    use std::sync::Mutex;

    use tokio::net::{TcpSocket, TcpStream};
    use tokio::sync::watch;

    use super::*;
    use crate::config::AgentConfig;
    use crate::lease::LeaseLossReason;

    const LEASE: Duration = Duration::from_millis(300);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Serve,
        Hold,
        Drop,
    }

    #[derive(Default)]
    struct Seen {
        /// When the heartbeat behind the last lease granted arrived: that
        /// lease ends at most `LEASE` later.
        last_granted: Option<Instant>,
        /// When a connection was first accepted and held unanswered.
        first_held: Option<Instant>,
        held: Vec<TcpStream>,
        instances: Vec<u64>,
        /// Announce this epoch with node 1 gone (a fence that hit another
        /// outlet) on the next heartbeat.
        announce_gone: Option<u64>,
        /// Read each Hello this long before answering it (a slow arbiter).
        welcome_delay: Duration,
        /// Never answer the first Hello (a stall that swallowed it).
        swallow_first: bool,
    }

    struct Fake {
        mode: watch::Sender<Mode>,
        seen: Arc<Mutex<Seen>>,
        addr: std::net::SocketAddr,
        /// Connections that fill the listen queue in drop mode.
        fillers: Mutex<Vec<TcpStream>>,
    }

    #[derive(Clone)]
    struct Service {
        mode: watch::Receiver<Mode>,
        seen: Arc<Mutex<Seen>>,
    }

    #[tonic::async_trait]
    impl pb::agent_session_server::AgentSession for Service {
        type SessionStream = ReceiverStream<Result<pb::ArbiterMessage, tonic::Status>>;

        async fn session(
            &self,
            request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(16);
            let mut mode = self.mode.clone();
            let seen = self.seen.clone();
            tokio::spawn(async move {
                let Ok(Some(pb::AgentMessage {
                    body: Some(pb::agent_message::Body::Hello(h)),
                })) = inbound.message().await
                else {
                    return;
                };
                let (delay, swallow) = {
                    let mut s = seen.lock().unwrap();
                    s.instances.push(h.instance);
                    (s.welcome_delay, s.swallow_first && s.instances.len() == 1)
                };
                if swallow {
                    let _keep = tx;
                    std::future::pending::<()>().await;
                    return;
                }
                tokio::time::sleep(delay).await;
                let welcome = pb::Welcome {
                    heartbeat_interval_ms: 100,
                    lease_ms: LEASE.as_millis() as u64,
                    peers: vec![],
                    epoch: 1,
                    ..Default::default()
                };
                let msg = |b| Ok(pb::ArbiterMessage { body: Some(b) });
                if tx
                    .send(msg(pb::arbiter_message::Body::Welcome(welcome)))
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let m = tokio::select! {
                        r = mode.wait_for(|m| *m != Mode::Serve) => {
                            drop(r);
                            None
                        }
                        m = inbound.message() => Some(m),
                    };
                    let Some(m) = m else {
                        // The path breaks: this session ends now.
                        let _ = tx.send(Err(tonic::Status::unavailable("cut"))).await;
                        return;
                    };
                    let Ok(Some(pb::AgentMessage {
                        body: Some(pb::agent_message::Body::Heartbeat(hb)),
                    })) = m
                    else {
                        return;
                    };
                    let announce = {
                        let mut s = seen.lock().unwrap();
                        if *mode.borrow() != Mode::Serve {
                            continue;
                        }
                        s.last_granted = Some(Instant::now());
                        s.announce_gone.take()
                    };
                    if let Some(epoch) = announce {
                        let a = pb::Announcement {
                            epoch,
                            survivors: vec![2],
                            gone: vec![1],
                            gone_by_watchdog: vec![],
                        };
                        let _ = tx
                            .send(msg(pb::arbiter_message::Body::Announcement(a)))
                            .await;
                        continue;
                    }
                    let ack = pb::Ack {
                        seq: hb.seq,
                        sent_at_us: hb.sent_at_us,
                        lease_ms: LEASE.as_millis() as u64,
                        epoch: 1,
                        backed: vec![1],
                        gone: vec![],
                        reason: String::new(),
                        groups: vec![],
                        gone_by_watchdog: vec![],
                        leaving: vec![],
                        undecided: false,
                    };
                    if tx
                        .send(msg(pb::arbiter_message::Body::Ack(ack)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }
    }

    impl Fake {
        async fn start() -> Fake {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // A queue of one: in drop mode two queued connections fill it,
            // and the kernel drops every later SYN.
            let listener = sock.listen(1).unwrap();
            let addr = listener.local_addr().unwrap();
            let (mode, mut mode_rx) = watch::channel(Mode::Serve);
            let seen = Arc::new(Mutex::new(Seen::default()));
            let service = Service {
                mode: mode_rx.clone(),
                seen: seen.clone(),
            };
            let (conn_tx, conn_rx) = mpsc::channel::<Result<TcpStream, std::io::Error>>(64);
            let s = seen.clone();
            tokio::spawn(async move {
                loop {
                    if *mode_rx.borrow_and_update() == Mode::Drop {
                        if mode_rx.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = mode_rx.changed() => continue,
                    };
                    let Ok((conn, _)) = conn else { return };
                    if *mode_rx.borrow() == Mode::Serve {
                        let _ = conn_tx.send(Ok(conn)).await;
                    } else {
                        let mut s = s.lock().unwrap();
                        s.first_held.get_or_insert_with(Instant::now);
                        s.held.push(conn);
                    }
                }
            });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(pb::agent_session_server::AgentSessionServer::new(service))
                    .serve_with_incoming(ReceiverStream::new(conn_rx)),
            );
            Fake {
                mode,
                seen,
                addr,
                fillers: Mutex::new(Vec::new()),
            }
        }

        /// Switch the port's behaviour; returns when it took effect.
        async fn set(&self, mode: Mode) -> Instant {
            self.mode.send_replace(mode);
            if mode == Mode::Drop {
                // Fill the queue; the acceptor no longer accepts.
                for _ in 0..4 {
                    if let Ok(Ok(c)) = tokio::time::timeout(
                        Duration::from_millis(50),
                        TcpStream::connect(self.addr),
                    )
                    .await
                    {
                        self.fillers.lock().unwrap().push(c);
                    }
                }
                let probe =
                    tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(self.addr))
                        .await;
                assert!(
                    probe.is_err(),
                    "the full listen queue should drop SYNs on this kernel"
                );
            }
            Instant::now()
        }

        /// A session against this arbiter, running, once it holds a lease.
        async fn leased_session(
            &self,
            token: &CancellationToken,
        ) -> (
            mpsc::UnboundedReceiver<Output>,
            tokio::task::JoinHandle<Result<(), AgentError>>,
        ) {
            let mut session = self.session(token);
            let mut events = session.events();
            let task = tokio::spawn(session.run());
            next(&mut events, acquired, "lease").await;
            (events, task)
        }

        fn session(&self, token: &CancellationToken) -> Session {
            session_to(&[self.url()], "", token)
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    /// A standby of a group of arbiters: refers every session to `leader`.
    #[derive(Clone)]
    struct Standby {
        leader: String,
        refused: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[tonic::async_trait]
    impl pb::agent_session_server::AgentSession for Standby {
        type SessionStream = ReceiverStream<Result<pb::ArbiterMessage, tonic::Status>>;

        async fn session(
            &self,
            _: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let mut s = tonic::Status::unavailable(format!(
                "arbiter \"b\" stands by; the leader is \"a\" at {}",
                self.leader
            ));
            s.metadata_mut().insert(
                proto::standby::ROLE,
                tonic::metadata::MetadataValue::from_static("standby"),
            );
            s.metadata_mut().insert(
                proto::standby::LEADER_URL,
                self.leader.parse().expect("an ASCII URL"),
            );
            Err(s)
        }
    }

    /// A standby on loopback naming `leader`: its URL, and how many
    /// sessions it refused.
    async fn standby(leader: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let url = serve(Standby {
            leader,
            refused: refused.clone(),
        })
        .await;
        (url, refused)
    }

    /// Issue 11: a standby's refusal names the leader, and the next attempt
    /// goes straight to it, not to the next arbiter in the agent's list
    /// (here one that accepts connections and never answers).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_s_referral_is_followed_to_the_leader_it_names() {
        let leader = Fake::start().await;
        let silent = Fake::start().await;
        silent.set(Mode::Hold).await;
        let leader_url = leader.url();
        let (standby_url, refused) = standby(leader_url.clone()).await;
        let (mut events, token, task) = run_with(&[standby_url, silent.url(), leader_url], "");
        next(&mut events, acquired, "lease from the leader").await;
        assert!(
            refused.load(Ordering::Relaxed) >= 1,
            "the standby was asked first"
        );
        assert!(
            silent.seen.lock().unwrap().first_held.is_none(),
            "the agent tried the next arbiter in its list instead of the leader the standby named"
        );
        assert!(leader.seen.lock().unwrap().last_granted.is_some());
        token.cancel();
        let _ = task.await;
    }

    /// Issue 11 (CI failure of stop 26): a frozen arbiter's kernel accepts
    /// connections, so an attempt there waits out the whole timeout. That
    /// wait must not hold up the next attempt at the other arbiter: the
    /// first agent to reach a new leader ends the others' ride-out, and
    /// one that lagged by the timeout lost its lease. With a 2 s timeout,
    /// the lease comes from the serving arbiter long before the held
    /// attempt gives up; and the agent keeps to the serving one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_arbiter_that_accepts_and_never_answers_does_not_hold_up_the_others() {
        let frozen = Fake::start().await;
        frozen.set(Mode::Hold).await;
        let leader = Fake::start().await;
        let start = Instant::now();
        let (mut events, token, task) =
            run_with(&[frozen.url(), leader.url()], "connect_timeout = \"2s\"\n");
        let leased = next(&mut events, acquired, "lease from the serving arbiter").await;
        let held = frozen.seen.lock().unwrap().first_held;
        assert!(
            held.is_some_and(|t| t < leased),
            "the first attempt went to the frozen arbiter"
        );
        let took = leased.duration_since(start);
        assert!(
            took < Duration::from_secs(1),
            "leased {took:?} after the start: the attempt on the frozen arbiter held up the next one"
        );
        // Renewals go on with the serving arbiter; the frozen one saw one
        // attempt only (no new one while it was pending, none after).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(frozen.seen.lock().unwrap().held.len(), 1);
        assert!(
            leader
                .seen
                .lock()
                .unwrap()
                .last_granted
                .is_some_and(|t| t > leased)
        );
        token.cancel();
        let _ = task.await;
    }

    /// Review of the change above (finding 1): attempts race, but an
    /// arbiter slow to answer gets one Hello at a time. With several
    /// outstanding, it would make the last one the node's session while
    /// the agent keeps the first Welcome, and every heartbeat would go
    /// unanswered until the session's silence check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_arbiter_gets_one_hello_at_a_time() {
        let slow = Fake::start().await;
        slow.seen.lock().unwrap().welcome_delay = Duration::from_millis(350);
        let (mut events, token, task) = run_with(&[slow.url()], "connect_timeout = \"2s\"\n");
        next(&mut events, acquired, "lease from the slow arbiter").await;
        // Nor a second Hello once the session opened (the slot is kept).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            slow.seen.lock().unwrap().instances.len(),
            1,
            "Hellos sent while the first was unanswered"
        );
        token.cancel();
        let _ = task.await;
    }

    /// Review 2, finding 1: waiting for the Hello slot takes nothing from
    /// the attempt's own time. The first Hello is swallowed (held for the
    /// whole 2 s timeout) and every later one is answered after 150 ms:
    /// the attempt queued behind it still gets its full timeout and the
    /// lease comes. (Counted from each attempt's start, every queued
    /// attempt had about 100 ms left when its turn came, and none ever
    /// opened.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_queued_behind_a_swallowed_hello_gets_its_own_time() {
        let slow = Fake::start().await;
        {
            let mut s = slow.seen.lock().unwrap();
            s.welcome_delay = Duration::from_millis(150);
            s.swallow_first = true;
        }
        let (mut events, token, task) = run_with(&[slow.url()], "connect_timeout = \"2s\"\n");
        next(&mut events, acquired, "lease after the swallowed Hello").await;
        assert_eq!(slow.seen.lock().unwrap().instances.len(), 2);
        token.cancel();
        let _ = task.await;
    }

    /// A session service that refuses every agent as unknown.
    struct Refuser;

    #[tonic::async_trait]
    impl pb::agent_session_server::AgentSession for Refuser {
        type SessionStream = ReceiverStream<Result<pb::ArbiterMessage, tonic::Status>>;

        async fn session(
            &self,
            _: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
            Err(tonic::Status::not_found("no cluster \"c\" here"))
        }
    }

    /// `service` on a loopback port; its URL.
    async fn serve<S>(service: S) -> String
    where
        S: pb::agent_session_server::AgentSession,
    {
        serve_on(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            service,
        )
    }

    /// `service` on `listener`, without Nagle's delay (as the arbiter
    /// serves: a refusal answered in well under a millisecond); its URL.
    fn serve_on<S>(listener: tokio::net::TcpListener, service: S) -> String
    where
        S: pb::agent_session_server::AgentSession,
    {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::agent_session_server::AgentSessionServer::new(service))
                .serve_with_incoming(incoming),
        );
        url
    }

    /// A session of node 1 of cluster "c", over plain TCP, to `arbiters`
    /// (URLs), with `extra` agent config lines, under `token`.
    fn session_to(arbiters: &[String], extra: &str, token: &CancellationToken) -> Session {
        let list: Vec<String> = arbiters.iter().map(|u| format!("{u:?}")).collect();
        let text = format!(
            "cluster = \"c\"\nnode = 1\narbiter = [{}]\nlisten = \"127.0.0.1:1\"\ninsecure_plaintext = true\n{extra}",
            list.join(", ")
        );
        let cfg: AgentConfig = toml::from_str(&text).unwrap();
        Session::new(
            cfg.validate().unwrap(),
            SharedProbes::default(),
            Arc::new(Faults::default()),
            Heuristics::new(vec![]),
            token.child_token(),
        )
    }

    /// [`session_to`], running: its events, its token, its task.
    fn run_with(
        arbiters: &[String],
        extra: &str,
    ) -> (
        mpsc::UnboundedReceiver<Output>,
        CancellationToken,
        tokio::task::JoinHandle<Result<(), AgentError>>,
    ) {
        let token = CancellationToken::new();
        let mut session = session_to(arbiters, extra, &token);
        let events = session.events();
        (events, token, tokio::spawn(session.run()))
    }

    /// Finding 3: one arbiter that refuses this agent (it serves other
    /// clusters) leaves the others tried; the agent does not pause 5 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_arbiter_refusing_leaves_the_others_tried() {
        let refuser = serve(Refuser).await;
        let leader = Fake::start().await;
        let start = Instant::now();
        let (mut events, token, task) = run_with(&[refuser, leader.url()], "");
        let leased = next(&mut events, acquired, "lease from the other arbiter").await;
        let took = leased.duration_since(start);
        assert!(
            took < Duration::from_secs(2),
            "leased {took:?} after the start: the refusal paused every attempt"
        );
        token.cancel();
        let _ = task.await;
    }

    /// Finding 2: two standbys naming each other (stale views during an
    /// election) are not asked in a tight loop: at most one attempt out of
    /// turn per RETRY.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn standbys_naming_each_other_are_asked_at_a_bounded_rate() {
        let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ua, ub) = (
            format!("http://{}", la.local_addr().unwrap()),
            format!("http://{}", lb.local_addr().unwrap()),
        );
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for (listener, leader) in [(la, ub.clone()), (lb, ua.clone())] {
            let refused = refused.clone();
            serve_on(listener, Standby { leader, refused });
        }
        let (_events, token, task) = run_with(&[ua, ub], "");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = refused.load(Ordering::Relaxed);
        // One attempt per RETRY and one out of turn per RETRY: about 20.
        assert!(
            (5..=30).contains(&asked),
            "{asked} attempts in 1 s at two standbys naming each other"
        );
        token.cancel();
        let _ = task.await;
    }

    /// The next event matching `want`, and when it came.
    async fn next(
        events: &mut mpsc::UnboundedReceiver<Output>,
        want: impl Fn(&Output) -> bool,
        what: &str,
    ) -> Instant {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let o = events.recv().await.expect("session running");
                if want(&o) {
                    return Instant::now();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10s"))
    }

    fn acquired(o: &Output) -> bool {
        matches!(o, Output::LeaseAcquired { .. })
    }

    fn expired(o: &Output) -> bool {
        matches!(
            o,
            Output::LeaseLost {
                reason: LeaseLossReason::Expired
            }
        )
    }

    /// Finding 7 of issue 8: the lease used to be reported lost only after
    /// the reconnect's waits (connect, session, Welcome: seconds).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_ends_on_time_while_reconnecting_to_a_silent_arbiter() {
        let fake = Fake::start().await;
        let token = CancellationToken::new();
        let (mut events, task) = fake.leased_session(&token).await;
        tokio::time::sleep(Duration::from_millis(350)).await; // a few renewals
        fake.set(Mode::Hold).await;
        let lost = next(&mut events, expired, "lease lost").await;
        let (granted, held, instances) = {
            let s = fake.seen.lock().unwrap();
            (s.last_granted, s.first_held, s.instances.clone())
        };
        let granted = granted.expect("a lease was granted");
        let held = held.expect("the agent reconnected into the silent port");
        assert!(
            held < lost,
            "the lease must end while the agent waits on the silent arbiter"
        );
        let late = lost.saturating_duration_since(granted + LEASE);
        assert!(
            late <= Duration::from_millis(100),
            "lease lost {late:?} after it ended (must be on time, not after the reconnect's waits)"
        );
        assert!(
            instances == [crate::instance()] && instances[0] != 0,
            "{instances:?}"
        );
        token.cancel();
        task.await.unwrap().unwrap();
    }

    /// Recorded as fenced (powered off) while running, after holding a
    /// lease: the lease is dropped and the session ends with
    /// `AgentError::Fenced`, which `main` turns into exit status 3.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_recorded_fenced_while_running_stops() {
        let fake = Fake::start().await;
        let token = CancellationToken::new();
        let (mut events, task) = fake.leased_session(&token).await;
        fake.seen.lock().unwrap().announce_gone = Some(2);
        next(
            &mut events,
            |o| {
                *o == Output::LeaseLost {
                    reason: LeaseLossReason::Fenced,
                }
            },
            "lease lost (fenced)",
        )
        .await;
        next(&mut events, |o| *o == Output::Fenced { epoch: 2 }, "fenced").await;
        let r = tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the session stops at once")
            .unwrap();
        assert!(matches!(r, Err(AgentError::Fenced { epoch: 2 })), "{r:?}");
    }

    async fn rejoin_after(mode: Mode, within: Duration) {
        let fake = Fake::start().await;
        let token = CancellationToken::new();
        let (mut events, task) = fake.leased_session(&token).await;
        fake.set(mode).await;
        next(&mut events, expired, "lease lost").await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // a real outage
        let healed = fake.set(Mode::Serve).await;
        let back = next(&mut events, acquired, "lease after the heal").await;
        let took = back.duration_since(healed);
        assert!(
            took <= within,
            "{mode:?}: a lease again {took:?} after the heal (want at most {within:?})"
        );
        // Every Hello of the process carries the same instance, never 0.
        let instances = fake.seen.lock().unwrap().instances.clone();
        assert!(
            instances.len() >= 2 && instances.iter().all(|&i| i == crate::instance() && i != 0),
            "{instances:?}"
        );
        token.cancel();
        task.await.unwrap().unwrap();
    }

    /// A port that dropped SYNs (a firewall, a dead link) and is restored:
    /// the next attempt starts within RETRY, not after the kernel's 1 s
    /// SYN retransmission or a 1 s connect timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_then_restored_port_is_rejoined_fast() {
        rejoin_after(Mode::Drop, Duration::from_millis(300)).await;
    }

    /// An arbiter that accepted but did not answer (stalled) and recovers:
    /// rejoined within one connect timeout and a retry, not after HTTP/2
    /// keep-alives give up (3 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_then_answering_arbiter_is_rejoined_fast() {
        rejoin_after(Mode::Hold, Duration::from_millis(500)).await;
    }
}
