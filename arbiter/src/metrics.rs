//! The arbiter's Prometheus endpoint: the metric families ([`Metrics`]),
//! a per-cluster handle for the hot paths ([`ClusterMetrics`]) and a plain
//! HTTP server for `GET /metrics` ([`serve`]).
//!
//! `[arbiter] metrics = "127.0.0.1:9464"` is parsed by the caller; [`serve`]
//! takes the `SocketAddr`, binds it (a bind error is returned, naming the
//! address) and serves on the caller's `TaskTracker` until the
//! `CancellationToken` fires.
//!
//! Every per-cluster series is created, at 0, when the cluster's
//! [`ClusterMetrics`] is made (the fence results and all node states
//! included), so `rate()` and `increase()` see the first event.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `fence_arbiter_nodes` | gauge | `cluster`, `state` | nodes by state; `state` is one of `member`, `joining`, `fencing`, `off`, `gone`, `alive-after-off`; every state is set on each update, so an emptied state reads 0 |
//! | `fence_arbiter_lease_grants_total` | counter | `cluster` | heartbeats acknowledged with a lease |
//! | `fence_arbiter_decisions_total` | counter | `cluster` | survivor decisions taken |
//! | `fence_arbiter_fences_total` | counter | `cluster`, `result` | fence rounds ended: `confirmed` (a device confirmed the node off), `failed` (a round failed every level), `manual_confirmed` (an operator swore the node off) |
//! | `fence_arbiter_fence_duration_seconds` | histogram | `cluster` | from the fence intent to its confirmation (device or operator); buckets 10 ms to 10 min |
//! | `fence_arbiter_fence_level_failures_total` | counter | `cluster` | fence levels that failed (a round may fail several before one succeeds) |
//! | `fence_arbiter_epoch` | gauge | `cluster` | the cluster's current epoch |
//! | `fence_arbiter_storm_holds_total` | counter | `cluster` | decisions held back by the fence-storm guard |
//! | `fence_arbiter_store_write_duration_seconds` | histogram | — | durable store write (commit) time; buckets 50 µs to 1 s |
//! | `fence_arbiter_device_up` | gauge | `cluster`, `device` | 1 if the last monitor of the fence device succeeded, else 0 |
//! | `fence_arbiter_alert_deliveries_total` | counter | `target`, `result` | alert deliveries; `target` is `command` or `http`, `result` is `ok` or `failed` |
//! | `fence_arbiter_quorate` | gauge | `cluster` | 1 if the arbiter currently sees the cluster quorate, else 0 |
//! | `fence_arbiter_in_grace` | gauge | `cluster` | 1 while the cluster is in its grace period, else 0 |
//! | `fence_arbiter_build_info` | gauge | `version` | always 1; the arbiter's version |
//!
//! The endpoint answers `GET` (and `HEAD`) `/metrics` with the OpenMetrics
//! 1.0.0 text format when the scraper's `Accept` asks for
//! `application/openmetrics-text` (Prometheus does), otherwise with the
//! Prometheus text format 0.0.4 (curl, promtool). Any other path is 404, any
//! other method on `/metrics` is 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// The `state` label values of `fence_arbiter_nodes`: the names the core
/// gives its node phases (`Phase::name`).
pub const NODE_STATES: [&str; 6] = [
    "member",
    "joining",
    "fencing",
    "off",
    "gone",
    "alive-after-off",
];

/// Upper bounds of `fence_arbiter_fence_duration_seconds`: 10 ms to 10 min.
const FENCE_DURATION_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Upper bounds of `fence_arbiter_store_write_duration_seconds`: 50 µs to 1 s.
const STORE_WRITE_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After cancellation, how long an in-flight response may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot bind the metrics endpoint {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: cannot read the bound address: {source}")]
    LocalAddr {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// How a fence round ended, the `result` label of `fence_arbiter_fences_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceResult {
    /// A fence device confirmed the node off.
    Confirmed,
    /// The round failed every level.
    Failed,
    /// An operator swore the node off.
    ManualConfirmed,
}

impl FenceResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceResult::Confirmed => "confirmed",
            FenceResult::Failed => "failed",
            FenceResult::ManualConfirmed => "manual_confirmed",
        }
    }
}

/// The alert hook tells the metrics each delivery's fate (a dropped
/// alert counts as failed).
impl crate::alert::DeliveryObserver for Metrics {
    fn delivered(&self, target: &'static str, ok: bool) {
        let t = if target == crate::alert::TARGET_HTTP {
            AlertTarget::Http
        } else {
            AlertTarget::Command
        };
        self.alert_delivery(t, ok);
    }
    fn dropped(&self, target: &'static str) {
        self.delivered(target, false);
    }
}

/// Where an alert went, the `target` label of
/// `fence_arbiter_alert_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertTarget {
    /// A local command.
    Command,
    /// An HTTP webhook.
    Http,
}

impl AlertTarget {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertTarget::Command => "command",
            AlertTarget::Http => "http",
        }
    }
}

/// The text format of an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text (ends with `# EOF`).
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format to answer a request's `Accept` header with: OpenMetrics if
    /// it lists `application/openmetrics-text` with a non-zero quality,
    /// otherwise the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                })
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    cluster: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FenceLabels {
    cluster: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    cluster: String,
    device: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    target: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn fence_duration_histogram() -> Histogram {
    Histogram::new(FENCE_DURATION_BUCKETS)
}

/// The registry and every metric family of the arbiter. Made once at start
/// ([`Metrics::new`]) and shared as `Arc<Metrics>`.
///
/// Per-cluster metrics are reached through [`Metrics::cluster`], whose
/// handle each cluster task keeps; the process-wide ones
/// ([`Metrics::store_write`], [`Metrics::alert_delivery`]) are methods here.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nodes: Family<NodeLabels, Gauge>,
    lease_grants: Family<ClusterLabels, Counter>,
    decisions: Family<ClusterLabels, Counter>,
    fences: Family<FenceLabels, Counter>,
    fence_duration: HistogramFamily<ClusterLabels>,
    level_failures: Family<ClusterLabels, Counter>,
    epoch: Family<ClusterLabels, Gauge<u64, AtomicU64>>,
    storm_holds: Family<ClusterLabels, Counter>,
    store_write: Histogram,
    device_up: Family<DeviceLabels, Gauge>,
    alert_deliveries: Family<AlertLabels, Counter>,
    quorate: Family<ClusterLabels, Gauge>,
    in_grace: Family<ClusterLabels, Gauge>,
}

impl Metrics {
    /// Registers every family under the `fence_arbiter_` prefix and sets
    /// `fence_arbiter_build_info{version}` to 1.
    pub fn new(version: &str) -> Arc<Metrics> {
        let mut m = Metrics {
            registry: Registry::with_prefix("fence_arbiter"),
            nodes: Family::default(),
            lease_grants: Family::default(),
            decisions: Family::default(),
            fences: Family::default(),
            fence_duration: Family::new_with_constructor(fence_duration_histogram),
            level_failures: Family::default(),
            epoch: Family::default(),
            storm_holds: Family::default(),
            store_write: Histogram::new(STORE_WRITE_BUCKETS),
            device_up: Family::default(),
            alert_deliveries: Family::default(),
            quorate: Family::default(),
            in_grace: Family::default(),
        };
        // Every delivery series exists from the start, at 0.
        for target in [AlertTarget::Command, AlertTarget::Http] {
            for result in ["ok", "failed"] {
                drop(m.alert_deliveries.get_or_create(&AlertLabels {
                    target: target.as_str(),
                    result,
                }));
            }
        }
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: version.to_owned(),
            })
            .set(1);

        m.registry
            .register("nodes", "Nodes by state", m.nodes.clone());
        m.registry.register(
            "lease_grants",
            "Heartbeats acknowledged with a lease",
            m.lease_grants.clone(),
        );
        m.registry
            .register("decisions", "Survivor decisions taken", m.decisions.clone());
        m.registry.register(
            "fences",
            "Fence rounds ended, by result (confirmed, failed: every level failed, manual_confirmed: an operator swore the node off)",
            m.fences.clone(),
        );
        m.registry.register_with_unit(
            "fence_duration",
            "Time from a fence intent to its confirmation",
            Unit::Seconds,
            m.fence_duration.clone(),
        );
        m.registry.register(
            "fence_level_failures",
            "Fence levels that failed",
            m.level_failures.clone(),
        );
        m.registry
            .register("epoch", "Current epoch of the cluster", m.epoch.clone());
        m.registry.register(
            "storm_holds",
            "Decisions held back by the fence-storm guard",
            m.storm_holds.clone(),
        );
        m.registry.register_with_unit(
            "store_write_duration",
            "Durable store write time",
            Unit::Seconds,
            m.store_write.clone(),
        );
        m.registry.register(
            "device_up",
            "1 if the last monitor of the fence device succeeded, else 0",
            m.device_up.clone(),
        );
        m.registry.register(
            "alert_deliveries",
            "Alert deliveries by target and result",
            m.alert_deliveries.clone(),
        );
        m.registry.register(
            "quorate",
            "1 if the cluster is quorate, else 0",
            m.quorate.clone(),
        );
        m.registry.register(
            "in_grace",
            "1 while the cluster is in its grace period, else 0",
            m.in_grace.clone(),
        );
        m.registry
            .register("build_info", "Build information; always 1", build_info);
        Arc::new(m)
    }

    /// The handle of one cluster's metrics: its series are created here (at
    /// 0), and its methods are plain atomic operations afterwards. Costs a
    /// few hash-map look-ups and allocations, so a cluster task makes it once
    /// and keeps it; making another for the same cluster shares the series.
    pub fn cluster(&self, name: &str) -> ClusterMetrics {
        let labels = ClusterLabels {
            cluster: name.to_owned(),
        };
        let nodes = NODE_STATES.map(|state| {
            self.nodes.get_or_create_owned(&NodeLabels {
                cluster: name.to_owned(),
                state,
            })
        });
        let fence = |result: FenceResult| {
            self.fences.get_or_create_owned(&FenceLabels {
                cluster: name.to_owned(),
                result: result.as_str(),
            })
        };
        ClusterMetrics {
            nodes,
            lease_grants: self.lease_grants.get_or_create_owned(&labels),
            decisions: self.decisions.get_or_create_owned(&labels),
            fences_confirmed: fence(FenceResult::Confirmed),
            fences_failed: fence(FenceResult::Failed),
            fences_manual: fence(FenceResult::ManualConfirmed),
            fence_duration: self.fence_duration.get_or_create_owned(&labels),
            level_failures: self.level_failures.get_or_create_owned(&labels),
            epoch: self.epoch.get_or_create_owned(&labels),
            storm_holds: self.storm_holds.get_or_create_owned(&labels),
            quorate: self.quorate.get_or_create_owned(&labels),
            in_grace: self.in_grace.get_or_create_owned(&labels),
            device_up: self.device_up.clone(),
            cluster: labels.cluster,
        }
    }

    /// A durable store write took `took`.
    pub fn store_write(&self, took: Duration) {
        self.store_write.observe(took.as_secs_f64());
    }

    /// An alert was delivered to `target` (`ok`) or its delivery failed.
    pub fn alert_delivery(&self, target: AlertTarget, ok: bool) {
        self.alert_deliveries
            .get_or_create(&AlertLabels {
                target: target.as_str(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: Format) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(8 * 1024);
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }
}

/// One cluster's metrics: cloned handles of its series, made by
/// [`Metrics::cluster`]. Cheap to clone; every method but
/// [`ClusterMetrics::device_up`] is lock-free and does not allocate
/// ([`ClusterMetrics::fence_result`] takes the histogram's short lock when
/// it observes a duration).
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    cluster: String,
    nodes: [Gauge; 6],
    lease_grants: Counter,
    decisions: Counter,
    fences_confirmed: Counter,
    fences_failed: Counter,
    fences_manual: Counter,
    fence_duration: Histogram,
    level_failures: Counter,
    epoch: Gauge<u64, AtomicU64>,
    storm_holds: Counter,
    quorate: Gauge,
    in_grace: Gauge,
    device_up: Family<DeviceLabels, Gauge>,
}

impl ClusterMetrics {
    /// The cluster's name (the `cluster` label).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Sets every node state: each of [`NODE_STATES`] to the sum of its
    /// counts in `counts`, 0 if absent. An unknown state is logged and
    /// skipped.
    pub fn set_nodes(&self, counts: &[(&str, i64)]) {
        let mut by_state = [0i64; NODE_STATES.len()];
        for &(state, n) in counts {
            match NODE_STATES.iter().position(|s| *s == state) {
                Some(i) => by_state[i] = by_state[i].saturating_add(n),
                None => warn!(cluster = %self.cluster, state, "metrics: unknown node state"),
            }
        }
        self.store_nodes(by_state);
    }

    /// Sets every node state from one state name per node (e.g. the core's
    /// phase names); states with no node read 0. An unknown state is logged
    /// and skipped.
    pub fn count_nodes<'a>(&self, states: impl IntoIterator<Item = &'a str>) {
        let mut by_state = [0i64; NODE_STATES.len()];
        for state in states {
            match NODE_STATES.iter().position(|s| *s == state) {
                Some(i) => by_state[i] = by_state[i].saturating_add(1),
                None => warn!(cluster = %self.cluster, state, "metrics: unknown node state"),
            }
        }
        self.store_nodes(by_state);
    }

    fn store_nodes(&self, by_state: [i64; NODE_STATES.len()]) {
        for (gauge, n) in self.nodes.iter().zip(by_state) {
            gauge.set(n);
        }
    }

    /// A heartbeat was acknowledged with a lease. One relaxed atomic add.
    pub fn lease_granted(&self) {
        self.lease_grants.inc();
    }

    /// A survivor decision was taken.
    pub fn decision(&self) {
        self.decisions.inc();
    }

    /// A fence round ended with `result`. `took`, from the intent to the
    /// confirmation, is observed in `fence_arbiter_fence_duration_seconds`
    /// for `Confirmed` and `ManualConfirmed`; it is ignored for `Failed`.
    pub fn fence_result(&self, result: FenceResult, took: Option<Duration>) {
        let counter = match result {
            FenceResult::Confirmed => &self.fences_confirmed,
            FenceResult::Failed => &self.fences_failed,
            FenceResult::ManualConfirmed => &self.fences_manual,
        };
        counter.inc();
        if let (Some(took), FenceResult::Confirmed | FenceResult::ManualConfirmed) = (took, result)
        {
            self.fence_duration.observe(took.as_secs_f64());
        }
    }

    /// A fence level failed.
    pub fn level_failed(&self) {
        self.level_failures.inc();
    }

    /// The cluster's epoch is now `epoch`.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.set(epoch);
    }

    /// The fence-storm guard held a decision back.
    pub fn storm_hold(&self) {
        self.storm_holds.inc();
    }

    /// The last monitor of fence device `device` succeeded (`up`) or not.
    /// Looks the series up by name (a short lock and an allocation): meant
    /// for the monitor's pace, not a hot path.
    pub fn device_up(&self, device: &str, up: bool) {
        self.device_up
            .get_or_create(&DeviceLabels {
                cluster: self.cluster.clone(),
                device: device.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Whether the arbiter sees the cluster quorate.
    pub fn set_quorate(&self, quorate: bool) {
        self.quorate.set(i64::from(quorate));
    }

    /// Whether the cluster is in its grace period.
    pub fn set_in_grace(&self, in_grace: bool) {
        self.in_grace.set(i64::from(in_grace));
    }
}

/// Binds `addr` and serves `GET /metrics` on it until `cancel` fires.
///
/// Returns the bound address (so port 0 may be asked for) once the listener
/// is bound; a bind failure is [`MetricsError::Bind`], naming `addr`. The
/// accept loop and one task per connection run on `tracker`. On
/// cancellation the listener closes at once; open connections finish the
/// response in flight (at most 2 s) and close.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::LocalAddr { addr, source })?;
    info!(metrics.addr = %local, "metrics endpoint listening");
    tracker.spawn(accept_loop(
        listener,
        local,
        metrics,
        tracker.clone(),
        cancel,
    ));
    Ok(local)
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(connection(stream, peer, metrics.clone(), cancel.clone()));
            }
            Err(e) => {
                warn!(metrics.addr = %local, error = %e, "metrics endpoint: accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    info!(metrics.addr = %local, "metrics endpoint stopped");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&metrics, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(result) => result,
                Err(_) => {
                    debug!(peer = %peer, "metrics connection dropped at shutdown");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(peer = %peer, error = %e, "metrics connection ended with an error");
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match metrics.render(format) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Err(e) => {
            warn!(error = %e, "metrics endpoint: cannot render");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn assert_line(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[tokio::test]
    async fn render_has_values() -> TestResult {
        let m = Metrics::new("1.2.3");
        let c = m.cluster("c");
        c.fence_result(FenceResult::Confirmed, Some(Duration::from_millis(1500)));
        c.fence_result(FenceResult::Confirmed, Some(Duration::from_millis(500)));
        c.fence_result(FenceResult::Failed, Some(Duration::from_secs(99)));
        for _ in 0..3 {
            c.lease_granted();
        }
        c.decision();
        c.level_failed();
        c.level_failed();
        c.storm_hold();
        c.set_epoch(7);
        c.set_quorate(true);
        c.set_in_grace(false);
        c.device_up("pdu1", true);
        c.device_up("ipmi2", false);
        c.set_nodes(&[("member", 3), ("fencing", 1)]);
        c.count_nodes(["member", "member", "joining", "gone"]);
        m.cluster("other").set_epoch(2);
        m.store_write(Duration::from_micros(200));
        m.alert_delivery(AlertTarget::Http, true);
        m.alert_delivery(AlertTarget::Command, false);
        m.alert_delivery(AlertTarget::Command, false);

        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let text = m.render(format)?;
            for line in [
                r#"fence_arbiter_fences_total{cluster="c",result="confirmed"} 2"#,
                r#"fence_arbiter_fences_total{cluster="c",result="failed"} 1"#,
                r#"fence_arbiter_fences_total{cluster="c",result="manual_confirmed"} 0"#,
                r#"fence_arbiter_fence_duration_seconds_count{cluster="c"} 2"#,
                r#"fence_arbiter_fence_duration_seconds_sum{cluster="c"} 2.0"#,
                r#"fence_arbiter_lease_grants_total{cluster="c"} 3"#,
                r#"fence_arbiter_lease_grants_total{cluster="other"} 0"#,
                r#"fence_arbiter_decisions_total{cluster="c"} 1"#,
                r#"fence_arbiter_fence_level_failures_total{cluster="c"} 2"#,
                r#"fence_arbiter_storm_holds_total{cluster="c"} 1"#,
                r#"fence_arbiter_epoch{cluster="c"} 7"#,
                r#"fence_arbiter_epoch{cluster="other"} 2"#,
                r#"fence_arbiter_quorate{cluster="c"} 1"#,
                r#"fence_arbiter_in_grace{cluster="c"} 0"#,
                r#"fence_arbiter_device_up{cluster="c",device="pdu1"} 1"#,
                r#"fence_arbiter_device_up{cluster="c",device="ipmi2"} 0"#,
                // The second update replaced the first; emptied states read 0.
                r#"fence_arbiter_nodes{cluster="c",state="member"} 2"#,
                r#"fence_arbiter_nodes{cluster="c",state="joining"} 1"#,
                r#"fence_arbiter_nodes{cluster="c",state="fencing"} 0"#,
                r#"fence_arbiter_nodes{cluster="c",state="gone"} 1"#,
                r#"fence_arbiter_nodes{cluster="c",state="alive-after-off"} 0"#,
                r#"fence_arbiter_store_write_duration_seconds_count 1"#,
                r#"fence_arbiter_alert_deliveries_total{target="http",result="ok"} 1"#,
                r#"fence_arbiter_alert_deliveries_total{target="command",result="failed"} 2"#,
                r#"fence_arbiter_build_info{version="1.2.3"} 1"#,
            ] {
                assert_line(&text, line);
            }
        }
        let om = m.render(Format::OpenMetrics)?;
        assert_line(
            &om,
            r#"fence_arbiter_fence_duration_seconds_bucket{le="1.0",cluster="c"} 1"#,
        );
        assert_line(
            &om,
            r#"fence_arbiter_fence_duration_seconds_bucket{le="2.5",cluster="c"} 2"#,
        );
        assert_line(
            &om,
            r#"fence_arbiter_store_write_duration_seconds_bucket{le="0.0001"} 0"#,
        );
        assert_line(
            &om,
            r#"fence_arbiter_store_write_duration_seconds_bucket{le="0.00025"} 1"#,
        );
        assert_line(
            &om,
            r#"fence_arbiter_alert_deliveries_total{target="http",result="failed"} 0"#,
        );
        assert_line(&om, "# TYPE fence_arbiter_fence_duration_seconds histogram");
        assert_line(&om, "# TYPE fence_arbiter_build_info gauge");
        assert!(om.ends_with("# EOF\n"), "no EOF:\n{om}");
        let text = m.render(Format::PrometheusText)?;
        assert_line(&text, "# TYPE fence_arbiter_fences_total counter");
        assert_line(
            &text,
            r#"fence_arbiter_fence_duration_seconds_bucket{cluster="c",le="1"} 1"#,
        );
        assert_line(
            &text,
            r#"fence_arbiter_fence_duration_seconds_bucket{cluster="c",le="+Inf"} 2"#,
        );
        assert!(!text.contains("# EOF"));
        Ok(())
    }

    #[test]
    fn set_nodes_ignores_unknown_states_and_sums_duplicates() -> TestResult {
        let m = Metrics::new("t");
        let c = m.cluster("c");
        c.set_nodes(&[("member", 1), ("member", 2), ("bogus", 5)]);
        let text = m.render(Format::PrometheusText)?;
        assert_line(
            &text,
            r#"fence_arbiter_nodes{cluster="c",state="member"} 3"#,
        );
        assert!(!text.contains("bogus"));
        Ok(())
    }

    #[test]
    fn cluster_handles_share_series() -> TestResult {
        let m = Metrics::new("t");
        m.cluster("c").lease_granted();
        m.cluster("c").lease_granted();
        let c = m.cluster("c");
        c.clone().lease_granted();
        assert_line(
            &m.render(Format::OpenMetrics)?,
            r#"fence_arbiter_lease_grants_total{cluster="c"} 3"#,
        );
        Ok(())
    }

    #[test]
    fn manual_confirmation_observes_duration_failure_does_not() -> TestResult {
        let m = Metrics::new("t");
        let c = m.cluster("c");
        c.fence_result(FenceResult::ManualConfirmed, Some(Duration::from_secs(30)));
        c.fence_result(FenceResult::Failed, Some(Duration::from_secs(5)));
        c.fence_result(FenceResult::Confirmed, None);
        let text = m.render(Format::OpenMetrics)?;
        assert_line(
            &text,
            r#"fence_arbiter_fence_duration_seconds_count{cluster="c"} 1"#,
        );
        assert_line(
            &text,
            r#"fence_arbiter_fence_duration_seconds_sum{cluster="c"} 30.0"#,
        );
        assert_line(
            &text,
            r#"fence_arbiter_fences_total{cluster="c",result="confirmed"} 1"#,
        );
        Ok(())
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text ; q=0, text/plain")),
            Format::PrometheusText
        );
    }

    /// One HTTP/1.1 request with `Connection: close`; the status code, the
    /// raw head and the body.
    async fn get(
        addr: SocketAddr,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(u16, String, String), Box<dyn std::error::Error>> {
        let mut s = TcpStream::connect(addr).await?;
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw)).await??;
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no end of head")?;
        let status = head.split(' ').nth(1).ok_or("no status")?.parse::<u16>()?;
        Ok((status, head.to_owned(), body.to_owned()))
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn serves_metrics_404s_and_stops_on_cancel() -> TestResult {
        let m = Metrics::new("9.9.9");
        let c = m.cluster("c");
        c.fence_result(FenceResult::Confirmed, Some(Duration::from_secs(3)));
        c.fence_result(FenceResult::Confirmed, Some(Duration::from_secs(4)));
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let addr = serve(m.clone(), "127.0.0.1:0".parse()?, &tracker, cancel.clone()).await?;
        assert_ne!(addr.port(), 0);

        let (status, head, body) = get(addr, "/metrics", None).await?;
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            header(&head, "content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_line(
            &body,
            r#"fence_arbiter_fences_total{cluster="c",result="confirmed"} 2"#,
        );
        assert_line(&body, r#"fence_arbiter_build_info{version="9.9.9"} 1"#);

        let (status, head, body) = get(
            addr,
            "/metrics?x=1",
            Some("application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"),
        )
        .await?;
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert_line(
            &body,
            r#"fence_arbiter_fence_duration_seconds_count{cluster="c"} 2"#,
        );
        assert!(body.ends_with("# EOF\n"));

        let (status, _, body) = get(addr, "/other", None).await?;
        assert_eq!(status, 404);
        assert!(!body.contains("fence_arbiter"));
        let (status, _, _) = get(addr, "/", None).await?;
        assert_eq!(status, 404);

        // An idle keep-alive connection must not hold the shutdown up.
        let mut idle = TcpStream::connect(addr).await?;
        idle.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await?;
        assert_eq!(&first, b"HTTP/1.1 200");

        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(1), tracker.wait())
            .await
            .map_err(|_| "the server's tasks did not end within a second of cancel")?;
        // The idle connection is closed (its remaining bytes, then EOF).
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut rest)).await??;
        // And the listener is gone.
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after cancel"
        );
        Ok(())
    }

    #[tokio::test]
    async fn other_methods_are_405() -> TestResult {
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let addr = serve(
            Metrics::new("t"),
            "127.0.0.1:0".parse()?,
            &tracker,
            cancel.clone(),
        )
        .await?;
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("POST /metrics HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw)).await??;
        assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
        assert_eq!(header(&raw, "allow"), Some("GET, HEAD"));
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await?;
        Ok(())
    }

    #[tokio::test]
    async fn bind_in_use_is_an_error_naming_the_address() -> TestResult {
        let taken = TcpListener::bind("127.0.0.1:0").await?;
        let addr = taken.local_addr()?;
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let err = match serve(Metrics::new("t"), addr, &tracker, cancel).await {
            Ok(bound) => return Err(format!("bound {bound} although {addr} is in use").into()),
            Err(e) => e,
        };
        assert!(
            matches!(err, MetricsError::Bind { addr: a, .. } if a == addr),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
        tracker.close();
        assert!(tracker.is_empty(), "a task was spawned for a failed bind");
        Ok(())
    }

    /// Cost of the heartbeat path; run with
    /// `cargo test --release -- --ignored --nocapture lease_granted_cost`.
    #[test]
    #[ignore = "timing, not a check"]
    fn lease_granted_cost() {
        let m = Metrics::new("t");
        let c = m.cluster("c");
        const N: u32 = 10_000_000;
        let start = tokio::time::Instant::now();
        for _ in 0..N {
            std::hint::black_box(&c).lease_granted();
        }
        let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(N);
        let start = tokio::time::Instant::now();
        for _ in 0..N / 10 {
            std::hint::black_box(&m).cluster("c").lease_granted();
        }
        let per_lookup = start.elapsed().as_secs_f64() * 1e9 / f64::from(N / 10);
        println!(
            "ClusterMetrics::lease_granted: {per:.2} ns/op; via Metrics::cluster each time: {per_lookup:.0} ns/op"
        );
    }
}
