//! The arbiter's configuration: one TOML file, parsed with serde and checked
//! in one place ([`Config::validate`]) with errors that name the key.
//!
//! ```toml
//! [arbiter]
//! listen = "127.0.0.1:7400"         # gRPC for agents and fencectl
//! state_dir = "/var/lib/fence-arbiter"
//!
//! [arbiter.tls]                     # or insecure_plaintext = true (demos)
//! ca = "/etc/fence/pki/ca.pem"
//! cert = "/etc/fence/pki/arbiter.pem"
//! key = "/etc/fence/pki/arbiter.key"
//!
//! [[cluster]]
//! name = "prod"
//! quorum = "last-man-standing"      # or "tie-breaker"
//!
//! [[cluster.node]]
//! id = 1
//! address = "127.0.0.1:7501"        # where the node's agent serves probes
//! fence = [["pdu:outlet1"]]         # levels of "device[:port]"
//!
//! [[cluster.device]]
//! name = "pdu"
//! driver = "sim"
//! dir = "/var/lib/fence-sim/pdu"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fence_drivers::params::Params;
use serde::Deserialize;

use crate::core::{self, ClusterSpec, GroupSpec, NodeId, NodeSpec, QuorumMode, TieBreaker, Timing};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub arbiter: ArbiterSection,
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<ClusterConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArbiterSection {
    /// Address the gRPC server binds. Default `127.0.0.1:7400`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the embedded store. Required.
    pub state_dir: PathBuf,
    /// Mutual TLS: the arbiter's certificate and key, and the CA that signs
    /// agents' and fencectl's certificates. Required unless
    /// `insecure_plaintext = true`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Serve plain TCP without TLS (local demos and tests only); the arbiter
    /// logs a warning at start. Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How long shutdown waits for in-flight work. Default 5 s.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The Prometheus endpoint (`GET /metrics`): an address, or `"off"`.
    /// Default `127.0.0.1:9464` (loopback only; if that port is taken the
    /// arbiter logs an error and runs without it; an address set here must
    /// bind, or the arbiter does not start).
    #[serde(default)]
    pub metrics: Option<String>,
    /// `[arbiter.alerts]`: the alert hook (a command and/or an HTTP POST).
    /// Default: none (alerts are only logged).
    #[serde(default)]
    pub alerts: crate::alert::AlertConfig,
    /// `[arbiter.etcd]`: keep the state in etcd instead of the embedded
    /// store, and share it with other arbiter processes (one leads, the
    /// others stand by). Default: none (the embedded store in `state_dir`).
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

/// The etcd store and leader election (`[arbiter.etcd]`).
///
/// ```toml
/// [arbiter.etcd]
/// endpoints = ["http://etcd-1:2379", "http://etcd-2:2379", "http://etcd-3:2379"]
/// prefix = "/fence-arbiter"   # default; arbiters that share it form one group
/// name = "arbiter-a"          # default: the listen address
/// leader_ttl = "2s"           # default; whole seconds
/// timeout = "2s"              # default
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:port`, or
    /// `https://host:port` with `[arbiter.etcd.tls]`). Required.
    pub endpoints: Vec<String>,
    /// Key prefix of this group of arbiters. Default `/fence-arbiter`.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// This arbiter's name in the leader key (shown by the standbys).
    /// Default: its `listen` address.
    #[serde(default)]
    pub name: Option<String>,
    /// The leader's etcd lease, whole seconds: a standby takes over about
    /// this long after the leader died. Default 2 s (etcd refuses shorter
    /// leases than about 1.5 times its election timeout).
    #[serde(default = "default_leader_ttl", with = "humantime_serde")]
    pub leader_ttl: Duration,
    /// How long one store operation may take, over every member. Default 2 s.
    #[serde(default = "default_etcd_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The URL agents and fencectl reach this arbiter at, which the
    /// standbys tell them while it leads. Default `https://<listen>`
    /// (`http://` with `insecure_plaintext`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// TLS to etcd (`https://` endpoints): the CA that signed the members'
    /// certificates, and this arbiter's client certificate and key.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

fn default_etcd_prefix() -> String {
    "/fence-arbiter".into()
}
fn default_leader_ttl() -> Duration {
    Duration::from_secs(2)
}
fn default_etcd_timeout() -> Duration {
    Duration::from_secs(2)
}

/// `[arbiter.etcd]`, checked.
#[derive(Debug, Clone)]
pub struct EtcdPlan {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub name: String,
    pub advertise: String,
    pub leader_ttl: Duration,
    pub timeout: Duration,
    /// `None`: plain `http://`.
    pub tls: Option<TlsPem>,
}

impl EtcdConfig {
    fn validate(&self, listen: &str, plaintext: bool, errs: &mut Vec<ConfigError>) -> EtcdPlan {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.endpoints.is_empty() {
            errs.push(err(
                "arbiter.etcd.endpoints",
                "at least one etcd member is required",
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let ok = e
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !ok {
                let why = match (scheme, e.starts_with("https://")) {
                    ("http", true) => "https:// needs [arbiter.etcd.tls] (ca, cert, key)",
                    ("https", false) if e.starts_with("http://") => {
                        "with [arbiter.etcd.tls] every member is https://"
                    }
                    _ => "",
                };
                errs.push(err(
                    format!("arbiter.etcd.endpoints[{i}]"),
                    format!(
                        "{e:?}: expected {scheme}://host:port{}{why}",
                        if why.is_empty() { "" } else { ": " }
                    ),
                ));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 {
            errs.push(err(
                "arbiter.etcd.prefix",
                format!(
                    "{:?}: expected a key prefix such as \"/fence-arbiter\"",
                    self.prefix
                ),
            ));
        }
        if self.leader_ttl.subsec_nanos() != 0 || self.leader_ttl < Duration::from_secs(1) {
            errs.push(err(
                "arbiter.etcd.leader_ttl",
                format!(
                    "{:?}: etcd leases are whole seconds, at least 1 s",
                    self.leader_ttl
                ),
            ));
        }
        if self.timeout < Duration::from_millis(100) {
            errs.push(err(
                "arbiter.etcd.timeout",
                format!("{:?}: at least 100 ms", self.timeout),
            ));
        }
        let name = self.name.clone().unwrap_or_else(|| listen.to_string());
        if name.is_empty() {
            errs.push(err("arbiter.etcd.name", "must not be empty"));
        }
        let wildcard = listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_unspecified());
        if self.advertise.is_none() && wildcard {
            errs.push(err(
                "arbiter.etcd.advertise",
                format!(
                    "required when listen ({listen}) is a wildcard address: the URL agents and fencectl reach this arbiter at, e.g. https://arbiter-a.example:7400"
                ),
            ));
        }
        let advertise = self
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{}://{listen}", if plaintext { "http" } else { "https" }));
        let unspecified = advertise
            .split_once("://")
            .and_then(|(_, hp)| hp.parse::<SocketAddr>().ok())
            .is_some_and(|a| a.ip().is_unspecified());
        if self.advertise.is_some() && unspecified {
            errs.push(err(
                "arbiter.etcd.advertise",
                format!("{advertise:?}: a wildcard address is no place to reach this arbiter at"),
            ));
        }
        let url_ok = advertise
            .strip_prefix("http://")
            .or_else(|| advertise.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ']));
        if !url_ok {
            errs.push(err(
                "arbiter.etcd.advertise",
                format!("{advertise:?}: expected a URL such as https://arbiter-a.example:7400"),
            ));
        }
        let tls = match &self.tls {
            None => None,
            Some(files) => match files.read("arbiter.etcd.tls") {
                Ok(pem) => Some(pem),
                Err(e) => {
                    errs.extend(e);
                    None
                }
            },
        };
        EtcdPlan {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.trim_end_matches('/').to_string(),
            name,
            advertise,
            leader_ttl: self.leader_ttl,
            timeout: self.timeout,
            tls,
        }
    }
}

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    /// The default address: a port already taken is logged, not fatal.
    Default(SocketAddr),
    /// An address the configuration names: it must bind.
    Configured(SocketAddr),
}

/// The metrics endpoint's default address.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

/// PEM files for mutual TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate that signed every peer's certificate.
    pub ca: PathBuf,
    /// This process's certificate (identity `arbiter` for the arbiter).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The PEM contents, read once at start.
#[derive(Clone)]
pub struct TlsPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }") // never print the key
    }
}

impl TlsFiles {
    /// Read the three files; errors name `at.ca`, `at.cert`, `at.key`.
    pub fn read(&self, at: &str) -> Result<TlsPem, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut read = |name: &str, p: &Path| match std::fs::read(p) {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => {
                errs.push(err(
                    format!("{at}.{name}"),
                    format!("{} is empty", p.display()),
                ));
                Vec::new()
            }
            Err(e) => {
                errs.push(err(
                    format!("{at}.{name}"),
                    format!("cannot read {}: {e}", p.display()),
                ));
                Vec::new()
            }
        };
        let pem = TlsPem {
            ca: read("ca", &self.ca),
            cert: read("cert", &self.cert),
            key: read("key", &self.key),
        };
        if errs.is_empty() { Ok(pem) } else { Err(errs) }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7400".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    /// `last-man-standing` (default) or `tie-breaker`.
    #[serde(default = "default_quorum")]
    pub quorum: String,
    /// `lowest` (default: the set holding the lowest node id wins a tie) or
    /// a node id.
    #[serde(default)]
    pub tie_breaker: Option<toml::Value>,
    /// Default 100 ms.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    /// Default 300 ms. Must be more than twice the heartbeat interval and
    /// less than `lost_after`.
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    /// Default 500 ms.
    #[serde(default, with = "humantime_serde")]
    pub lost_after: Option<Duration>,
    /// Default 200 ms.
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
    /// Deadline of one fence level (off + confirmation). Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub fence_timeout: Option<Duration>,
    /// How often every fence device is checked (`monitor`), which also keeps
    /// warm sessions (an IPMI session) alive. Default 20 s; "0s" turns it off.
    #[serde(default, with = "humantime_serde")]
    pub monitor_interval: Option<Duration>,
    /// First retry delay after every level failed. Default 500 ms.
    #[serde(default, with = "humantime_serde")]
    pub fence_retry_min: Option<Duration>,
    /// Cap of the doubling retry delay. Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub fence_retry_max: Option<Duration>,
    /// After the arbiter heard no quorate set (its start, its own
    /// isolation, a stall), how long beyond `lost_after` a node not heard
    /// again is waited for before its silence counts. Default 3 s.
    #[serde(default, with = "humantime_serde")]
    pub reconnect_allowance: Option<Duration>,
    /// How far beyond the arbiter's last grant an agent may ride its lease
    /// out while no arbiter grants one (a handover, a restart) and the
    /// cluster's mesh is whole. Every wait for a node's lease to end
    /// allows for it (the watchdog rule, a restarted agent). Default 0 s:
    /// off; at most 60 s.
    #[serde(default, with = "humantime_serde")]
    pub ride_out: Option<Duration>,
    /// Most nodes fenced in one transition. Default: half the nodes (≥ 1).
    #[serde(default)]
    pub storm_limit: Option<usize>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// Resource groups, each placed on one survivor.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
}

/// One resource group (`[[cluster.group]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// Node names (or ids) it may run on, most preferred first.
    pub nodes: Vec<toml::Value>,
    /// Move back to a more preferred node when it is available again.
    /// Default false: stay where it runs.
    #[serde(default)]
    pub failback: bool,
    /// How often each resource's monitor runs. Default 2 s.
    #[serde(default, with = "humantime_serde")]
    pub monitor_interval: Option<Duration>,
    /// Monitor failures restarted in place within `restart_window` before
    /// the group is stopped and moved. Default 3.
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// Default 60 s.
    #[serde(default, with = "humantime_serde")]
    pub restart_window: Option<Duration>,
    /// Started in this order, stopped in reverse.
    pub resources: Vec<resources::ResourceSpec>,
}

/// A validated group: what agents are sent.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub name: String,
    pub resources: Vec<resources::ResourceSpec>,
    pub monitor_interval: Duration,
    pub max_restarts: u32,
    pub restart_window: Duration,
}

fn default_quorum() -> String {
    "last-man-standing".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Display name. Default `node<id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Address the node's agent serves peer probes on.
    pub address: String,
    /// Default 1; at least 1.
    #[serde(default = "one")]
    pub votes: u32,
    /// Operator weight in the survivor order. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Fence topology: levels tried in order; a level is a list of
    /// `device[:port]` that must all confirm off. The port defaults to the
    /// node's name. A level `["watchdog"]` is the watchdog rule instead of
    /// a device: the node counts as fenced once its last lease ended and
    /// the timeout of the watchdog its agent reported armed, plus a
    /// margin, passed (it fails at once for a node without one).
    #[serde(default)]
    pub fence: Vec<Vec<String>>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeviceConfig {
    pub name: String,
    pub driver: String,
    /// Driver parameters, checked by the driver.
    #[serde(flatten)]
    pub params: BTreeMap<String, toml::Value>,
}

/// One problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The fence level that is the watchdog rule (a reserved device name).
pub const WATCHDOG_LEVEL: &str = "watchdog";

/// A fence step of one node: a device and the port on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceTarget {
    pub device: String,
    pub port: String,
}

/// A validated cluster, ready to run.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub spec: ClusterSpec,
    pub names: BTreeMap<NodeId, String>,
    pub addresses: BTreeMap<NodeId, String>,
    /// Per node, per level, the devices to switch off.
    pub levels: BTreeMap<NodeId, Vec<Vec<FenceTarget>>>,
    pub devices: BTreeMap<String, DeviceConfig>,
    /// `None`: devices are not monitored.
    pub monitor_interval: Option<Duration>,
    /// The resource groups, in configuration order.
    pub groups: Vec<GroupPlan>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub listen: SocketAddr,
    /// `None`: plain TCP (`insecure_plaintext`).
    pub tls: Option<TlsPem>,
    pub state_dir: PathBuf,
    pub json_logs: bool,
    pub shutdown_grace: Duration,
    pub metrics: MetricsListen,
    pub alerts: crate::alert::AlertConfig,
    /// `None`: the embedded store in `state_dir`.
    pub etcd: Option<EtcdPlan>,
    pub clusters: BTreeMap<String, ClusterPlan>,
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigError>> {
        toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    format!(
                        "line {}",
                        text[..s.start.min(text.len())].lines().count().max(1)
                    )
                })
                .unwrap_or_else(|| "config".into());
            vec![err(key, e.message().to_string())]
        })
    }

    pub fn load(path: &Path) -> Result<Plan, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![err(path.display().to_string(), format!("cannot read: {e}"))])?;
        Config::from_toml(&text)?.validate()
    }

    /// Every check in one place; all problems are reported at once.
    pub fn validate(&self) -> Result<Plan, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let listen = match self.arbiter.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(err(
                    "arbiter.listen",
                    format!("{:?} is not an address: {e}", self.arbiter.listen),
                ));
                None
            }
        };
        if self.arbiter.state_dir.as_os_str().is_empty() {
            errs.push(err("arbiter.state_dir", "must not be empty"));
        }
        let tls = match (&self.arbiter.tls, self.arbiter.insecure_plaintext) {
            (Some(_), true) => {
                errs.push(err(
                    "arbiter.insecure_plaintext",
                    "set either [arbiter.tls] or insecure_plaintext = true, not both",
                ));
                None
            }
            (None, false) => {
                errs.push(err(
                    "arbiter.tls",
                    "mutual TLS is required: set [arbiter.tls] ca, cert and key (`fencectl certs` makes them), \
                     or insecure_plaintext = true for a local demo",
                ));
                None
            }
            (Some(files), false) => match files.read("arbiter.tls") {
                Ok(pem) => Some(pem),
                Err(e) => {
                    errs.extend(e);
                    None
                }
            },
            (None, true) => None,
        };
        let json_logs = match self.arbiter.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                errs.push(err(
                    "arbiter.log_format",
                    format!("{other:?}: expected \"text\" or \"json\""),
                ));
                false
            }
        };
        let metrics = match self.arbiter.metrics.as_deref() {
            None => MetricsListen::Default(DEFAULT_METRICS.parse().expect("a socket address")),
            Some("off") => MetricsListen::Off,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(addr) => MetricsListen::Configured(addr),
                Err(e) => {
                    errs.push(err(
                        "arbiter.metrics",
                        format!("{a:?} is not an address (or \"off\"): {e}"),
                    ));
                    MetricsListen::Off
                }
            },
        };
        errs.extend(
            self.arbiter
                .alerts
                .validate("arbiter.alerts")
                .into_iter()
                .map(|(key, reason)| err(key, reason)),
        );
        let etcd = self.arbiter.etcd.as_ref().map(|e| {
            e.validate(
                &self.arbiter.listen,
                self.arbiter.insecure_plaintext,
                &mut errs,
            )
        });
        if self.clusters.is_empty() {
            errs.push(err("cluster", "at least one [[cluster]] is required"));
        }
        let mut clusters = BTreeMap::new();
        for (ci, c) in self.clusters.iter().enumerate() {
            let at = if c.name.is_empty() {
                format!("cluster[{ci}]")
            } else {
                format!("cluster.{}", c.name)
            };
            if c.name.is_empty() {
                errs.push(err(format!("{at}.name"), "must not be empty"));
            }
            if etcd.is_some() && c.name.contains('/') {
                errs.push(err(
                    format!("{at}.name"),
                    "must not contain '/' with [arbiter.etcd] (it is part of the cluster's keys)",
                ));
            }
            if clusters.contains_key(&c.name) {
                errs.push(err(
                    format!("{at}.name"),
                    format!("duplicate cluster name {:?}", c.name),
                ));
            }
            if let Some(plan) = validate_cluster(c, &at, &mut errs) {
                clusters.insert(c.name.clone(), plan);
            }
        }
        if errs.is_empty() {
            Ok(Plan {
                listen: listen.expect("checked"),
                tls,
                state_dir: self.arbiter.state_dir.clone(),
                json_logs,
                shutdown_grace: self.arbiter.shutdown_grace,
                metrics,
                alerts: self.arbiter.alerts.clone(),
                etcd,
                clusters,
            })
        } else {
            Err(errs)
        }
    }
}

/// Driver parameter check; the drivers crate owns the rules.
fn validate_device(d: &DeviceConfig, at: &str, errs: &mut Vec<ConfigError>) {
    match d.driver.as_str() {
        "exec" => validate_exec(d, at, errs),
        n if fence_drivers::native::find(n).is_some() => validate_native(d, at, errs),
        other => errs.push(err(
            format!("{at}.driver"),
            format!(
                "unknown driver {other:?}; available: exec, {}",
                fence_drivers::native::DRIVERS
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The `exec` device's own settings; every other key is an agent parameter.
const EXEC_KEYS: &[&str] = &["agent", "timeout", "secrets"];

/// What the `exec` driver is built from (checked here; the agent's own
/// metadata and `validate-all` are checked when the device is built).
#[derive(Debug, Clone)]
pub struct ExecParams {
    pub agent: String,
    pub timeout: Duration,
    pub params: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

impl DeviceConfig {
    /// Plain parameters and secret sources of this device, each checked for
    /// type; `own` keys belong to the device entry, not to the driver.
    pub fn driver_params(&self, at: &str, own: &[&str]) -> Result<Params, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut secrets = BTreeMap::new();
        match self.params.get("secrets") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (k, v) in t {
                    match v.as_str() {
                        Some(src) if src.starts_with("file:") || src.starts_with("env:") => {
                            secrets.insert(k.clone(), src.to_string());
                        }
                        _ => errs.push(err(
                            format!("{at}.secrets.{k}"),
                            "must be \"file:/path\" or \"env:VARIABLE\" (never the secret itself)",
                        )),
                    }
                }
            }
            Some(_) => errs.push(err(
                format!("{at}.secrets"),
                "must be a table such as { password = \"file:/etc/fence/bmc.pass\" }",
            )),
        }
        let mut values = BTreeMap::new();
        for (k, v) in self
            .params
            .iter()
            .filter(|(k, _)| k.as_str() != "secrets" && !own.contains(&k.as_str()))
        {
            if fence_drivers::secret::is_secret_name(k) {
                errs.push(err(format!("{at}.{k}"), format!("a secret never goes in the config: use secrets = {{ {k} = \"file:/path\" }}")));
                continue;
            }
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => {
                    if *b {
                        "1".into()
                    } else {
                        "0".into()
                    }
                }
                _ => {
                    errs.push(err(
                        format!("{at}.{k}"),
                        "must be a string, an integer or a boolean",
                    ));
                    continue;
                }
            };
            values.insert(k.clone(), text);
        }
        if errs.is_empty() {
            Ok(Params::new(values, secrets))
        } else {
            Err(errs)
        }
    }

    /// The `exec` settings of this device, or the problems, each with its key.
    pub fn exec_params(&self, at: &str) -> Result<ExecParams, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let agent = match self.params.get("agent") {
            Some(toml::Value::String(a)) => match fence_drivers::exec::resolve_agent(a) {
                Ok(_) => a.clone(),
                Err(e) => {
                    errs.push(err(format!("{at}.agent"), e.to_string()));
                    String::new()
                }
            },
            _ => {
                errs.push(err(
                    format!("{at}.agent"),
                    "required: the fence agent to run, e.g. \"fence_ipmilan\"",
                ));
                String::new()
            }
        };
        let timeout = match self.params.get("timeout") {
            None => Duration::from_secs(20),
            Some(toml::Value::String(t)) => humantime::parse_duration(t).unwrap_or_else(|e| {
                errs.push(err(format!("{at}.timeout"), format!("{t:?}: {e}")));
                Duration::from_secs(20)
            }),
            Some(_) => {
                errs.push(err(
                    format!("{at}.timeout"),
                    "must be a duration such as \"20s\"",
                ));
                Duration::from_secs(20)
            }
        };
        let params = self.driver_params(at, EXEC_KEYS).unwrap_or_else(|e| {
            errs.extend(e);
            Params::default()
        });
        if errs.is_empty() {
            Ok(ExecParams {
                agent,
                timeout,
                params: params.values,
                secrets: params.secrets,
            })
        } else {
            Err(errs)
        }
    }
}

/// A native driver's parameters, checked against its metadata: every
/// problem, each with its key.
fn validate_native(d: &DeviceConfig, at: &str, errs: &mut Vec<ConfigError>) {
    match d.driver_params(at, &[]) {
        Err(e) => errs.extend(e),
        Ok(p) => errs.extend(
            fence_drivers::native::problems(&d.driver, &p)
                .into_iter()
                .map(|e| match e {
                    fence_drivers::FenceError::InvalidParameter { key, reason } => {
                        err(format!("{at}.{key}"), reason)
                    }
                    other => err(at.to_string(), other.to_string()),
                }),
        ),
    }
}

fn validate_exec(d: &DeviceConfig, at: &str, errs: &mut Vec<ConfigError>) {
    if let Err(e) = d.exec_params(at) {
        errs.extend(e);
    }
}

fn validate_cluster(
    c: &ClusterConfig,
    at: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<ClusterPlan> {
    let before = errs.len();
    let quorum_mode = match c.quorum.as_str() {
        "last-man-standing" => QuorumMode::LastManStanding,
        "tie-breaker" => QuorumMode::TieBreaker,
        other => {
            errs.push(err(
                format!("{at}.quorum"),
                format!("{other:?}: expected \"last-man-standing\" or \"tie-breaker\""),
            ));
            QuorumMode::LastManStanding
        }
    };
    let d = Timing::default();
    let timing = Timing {
        heartbeat_interval: c.heartbeat_interval.unwrap_or(d.heartbeat_interval),
        lease: c.lease.unwrap_or(d.lease),
        lost_after: c.lost_after.unwrap_or(d.lost_after),
        settle: c.settle.unwrap_or(d.settle),
        fence_timeout: c.fence_timeout.unwrap_or(d.fence_timeout),
        fence_retry_min: c.fence_retry_min.unwrap_or(d.fence_retry_min),
        fence_retry_max: c.fence_retry_max.unwrap_or(d.fence_retry_max),
        reconnect_allowance: c.reconnect_allowance.unwrap_or(d.reconnect_allowance),
        ride_out: c.ride_out.unwrap_or(d.ride_out),
    };
    if timing.ride_out > Duration::from_secs(60) {
        errs.push(err(
            format!("{at}.ride_out"),
            format!(
                "{:?} is more than the {:?} an agent accepts",
                timing.ride_out,
                Duration::from_secs(60)
            ),
        ));
    }
    if !timing.ride_out.is_zero() && timing.ride_out < timing.lease {
        errs.push(err(
            format!("{at}.ride_out"),
            format!(
                "{:?} is shorter than one lease ({:?}): it would ride nothing out (use 0s to turn it off)",
                timing.ride_out, timing.lease
            ),
        ));
    }
    if timing.heartbeat_interval < Duration::from_millis(1) {
        errs.push(err(
            format!("{at}.heartbeat_interval"),
            "must be at least 1ms",
        ));
    }
    if timing.lease <= timing.heartbeat_interval * 2 {
        errs.push(err(
            format!("{at}.lease"),
            format!(
                "{:?} must be more than twice heartbeat_interval ({:?})",
                timing.lease, timing.heartbeat_interval
            ),
        ));
    }
    if timing.lease_max() >= timing.lost_after {
        errs.push(err(
            format!("{at}.lease"),
            format!(
                "{:?} (with the 2% + 1ms clock margin: {:?}) must be shorter than lost_after ({:?}): a node cut off must stop before the arbiter fences it",
                timing.lease,
                timing.lease_max(),
                timing.lost_after
            ),
        ));
    }
    if timing.fence_timeout.is_zero() {
        errs.push(err(format!("{at}.fence_timeout"), "must be more than 0"));
    }
    if timing.fence_retry_min.is_zero() || timing.fence_retry_max < timing.fence_retry_min {
        errs.push(err(
            format!("{at}.fence_retry_max"),
            "retry delays must be > 0 and fence_retry_max >= fence_retry_min",
        ));
    }
    let mut devices = BTreeMap::new();
    for (i, dev) in c.devices.iter().enumerate() {
        let dat = format!("{at}.device[{i}]");
        if dev.name.is_empty() || dev.name.contains(':') {
            errs.push(err(
                format!("{dat}.name"),
                "must be non-empty and hold no ':'",
            ));
        }
        if dev.name == WATCHDOG_LEVEL {
            errs.push(err(
                format!("{dat}.name"),
                "\"watchdog\" is reserved for the watchdog fence level; name the device otherwise",
            ));
        }
        if devices.insert(dev.name.clone(), dev.clone()).is_some() {
            errs.push(err(
                format!("{dat}.name"),
                format!("duplicate device name {:?}", dev.name),
            ));
        }
        validate_device(dev, &dat, errs);
    }
    if c.nodes.is_empty() {
        errs.push(err(
            format!("{at}.node"),
            "a cluster needs at least one [[cluster.node]]",
        ));
    }
    if c.nodes.len() > core::decide::MAX_NODES {
        errs.push(err(
            format!("{at}.node"),
            format!("at most {} nodes per cluster", core::decide::MAX_NODES),
        ));
    }
    let mut nodes = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    let mut levels = BTreeMap::new();
    let mut seen_names = BTreeSet::new();
    let mut seen_addr = BTreeSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let nat = format!("{at}.node[{i}]");
        if n.id == 0 {
            errs.push(err(format!("{nat}.id"), "node ids start at 1"));
        }
        if nodes.contains_key(&n.id) {
            errs.push(err(
                format!("{nat}.id"),
                format!("duplicate node id {}", n.id),
            ));
        }
        let name = n.name.clone().unwrap_or_else(|| format!("node{}", n.id));
        if !seen_names.insert(name.clone()) {
            errs.push(err(
                format!("{nat}.name"),
                format!("duplicate node name {name:?}"),
            ));
        }
        if n.address.parse::<SocketAddr>().is_err() {
            errs.push(err(
                format!("{nat}.address"),
                format!("{:?} is not an ip:port address", n.address),
            ));
        } else if !seen_addr.insert(n.address.clone()) {
            errs.push(err(
                format!("{nat}.address"),
                format!("{:?} is used by another node", n.address),
            ));
        }
        if n.votes == 0 {
            errs.push(err(format!("{nat}.votes"), "must be at least 1"));
        }
        if n.fence.is_empty() {
            errs.push(err(
                format!("{nat}.fence"),
                format!(
                    "node {} has no fence device: add fence = [[\"<device>[:<port>]\"]]",
                    n.id
                ),
            ));
        }
        let mut node_levels = Vec::new();
        let mut watchdog_level = None;
        for (li, level) in n.fence.iter().enumerate() {
            if level.is_empty() {
                errs.push(err(
                    format!("{nat}.fence[{li}]"),
                    "a level needs at least one device",
                ));
            }
            if level.iter().any(|e| e == WATCHDOG_LEVEL) {
                if level.len() != 1 {
                    errs.push(err(
                        format!("{nat}.fence[{li}]"),
                        "\"watchdog\" is a level of its own: write [\"watchdog\"] with no device beside it",
                    ));
                } else if watchdog_level.is_some() {
                    errs.push(err(
                        format!("{nat}.fence[{li}]"),
                        "\"watchdog\" may be only one level of a node's topology",
                    ));
                } else {
                    watchdog_level = Some(li);
                }
                node_levels.push(Vec::new());
                continue;
            }
            let mut targets = Vec::new();
            for entry in level {
                let (dev, port) = match entry.split_once(':') {
                    Some((d, p)) => (d.to_string(), p.to_string()),
                    None => (entry.clone(), name.clone()),
                };
                match devices.get(&dev) {
                    None => errs.push(err(
                        format!("{nat}.fence[{li}]"),
                        format!("no device named {dev:?} in {at}.device"),
                    )),
                    Some(d)
                        if d.driver != "exec"
                            && !d.driver_params(&dev, &[]).is_ok_and(|p| {
                                fence_drivers::native::confirms_power_state(&d.driver, &p)
                            }) =>
                    {
                        errs.push(err(
                            format!("{nat}.fence[{li}]"),
                            format!(
                                "device {dev:?} {}",
                                fence_drivers::native::cannot_confirm(&d.driver)
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                targets.push(FenceTarget { device: dev, port });
            }
            node_levels.push(targets);
        }
        nodes.insert(
            n.id,
            NodeSpec {
                votes: n.votes,
                priority: n.priority,
                fence_levels: n.fence.len().max(1),
                watchdog_level,
            },
        );
        names.insert(n.id, name);
        addresses.insert(n.id, n.address.clone());
        levels.insert(n.id, node_levels);
    }
    let tie_breaker = match &c.tie_breaker {
        None => TieBreaker::LowestNodeId,
        Some(toml::Value::String(s)) if s == "lowest" => TieBreaker::LowestNodeId,
        Some(toml::Value::Integer(i))
            if u32::try_from(*i).is_ok_and(|id| nodes.contains_key(&id)) =>
        {
            TieBreaker::Node(*i as u32)
        }
        Some(other) => {
            errs.push(err(
                format!("{at}.tie_breaker"),
                format!("{other}: expected \"lowest\" or the id of a node of this cluster"),
            ));
            TieBreaker::LowestNodeId
        }
    };
    let storm_limit = c
        .storm_limit
        .unwrap_or_else(|| ClusterSpec::default_storm_limit(nodes.len()));
    if storm_limit == 0 {
        errs.push(err(format!("{at}.storm_limit"), "must be at least 1"));
    }
    let (group_specs, groups) = validate_groups(c, at, &names, errs);
    if errs.len() > before {
        return None;
    }
    Some(ClusterPlan {
        spec: ClusterSpec {
            name: c.name.clone(),
            nodes,
            quorum_mode,
            tie_breaker,
            timing,
            storm_limit,
            groups: group_specs,
        },
        groups,
        names,
        addresses,
        levels,
        devices,
        monitor_interval: match c.monitor_interval {
            None => Some(Duration::from_secs(20)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        },
    })
}

/// The `[[cluster.group]]` tables: unique names, known nodes, every
/// resource checked (`resources::ResourceSpec::validate`).
fn validate_groups(
    c: &ClusterConfig,
    at: &str,
    names: &BTreeMap<NodeId, String>,
    errs: &mut Vec<ConfigError>,
) -> (Vec<GroupSpec>, Vec<GroupPlan>) {
    let mut specs = Vec::new();
    let mut plans = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, g) in c.groups.iter().enumerate() {
        let gat = format!("{at}.group[{i}]");
        if g.name.is_empty()
            || !g
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            errs.push(err(
                format!("{gat}.name"),
                format!("{:?}: use letters, digits, '-', '_' or '.'", g.name),
            ));
        }
        if !seen.insert(g.name.clone()) {
            errs.push(err(
                format!("{gat}.name"),
                format!("group {:?} is defined twice", g.name),
            ));
        }
        let mut nodes = Vec::new();
        for (k, v) in g.nodes.iter().enumerate() {
            let found = match v {
                toml::Value::String(n) => {
                    names.iter().find(|(_, name)| *name == n).map(|(&id, _)| id)
                }
                toml::Value::Integer(id) => {
                    u32::try_from(*id).ok().filter(|id| names.contains_key(id))
                }
                _ => None,
            };
            match found {
                Some(id) if nodes.contains(&id) => errs.push(err(
                    format!("{gat}.nodes[{k}]"),
                    format!("{v} is listed twice"),
                )),
                Some(id) => nodes.push(id),
                None => errs.push(err(
                    format!("{gat}.nodes[{k}]"),
                    format!("{v}: not a node name or id of this cluster"),
                )),
            }
        }
        if g.nodes.is_empty() {
            errs.push(err(format!("{gat}.nodes"), "name at least one node"));
        }
        if g.resources.is_empty() {
            errs.push(err(
                format!("{gat}.resources"),
                "name at least one resource",
            ));
        }
        for (k, r) in g.resources.iter().enumerate() {
            for problem in r.validate() {
                errs.push(err(format!("{gat}.resources[{k}]"), problem));
            }
        }
        let monitor_interval = g.monitor_interval.unwrap_or(Duration::from_secs(2));
        if monitor_interval < Duration::from_millis(100) {
            errs.push(err(
                format!("{gat}.monitor_interval"),
                "must be at least 100ms",
            ));
        }
        let restart_window = g.restart_window.unwrap_or(Duration::from_secs(60));
        specs.push(GroupSpec {
            name: g.name.clone(),
            nodes,
            failback: g.failback,
        });
        plans.push(GroupPlan {
            name: g.name.clone(),
            resources: g.resources.clone(),
            monitor_interval,
            max_restarts: g.max_restarts.unwrap_or(3),
            restart_window,
        });
    }
    (specs, plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[arbiter]
state_dir = "/tmp/x"
insecure_plaintext = true

[[cluster]]
name = "c"

[[cluster.node]]
id = 1
address = "127.0.0.1:7501"
fence = [["sim"]]

[[cluster.node]]
id = 2
address = "127.0.0.1:7502"
fence = [["sim:two"]]

[[cluster.device]]
name = "sim"
driver = "sim"
dir = "/tmp/sim"
"#;

    fn errors(text: &str) -> Vec<String> {
        match Config::from_toml(text).and_then(|c| c.validate()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// `[arbiter.etcd]`: TLS to etcd and the advertised URL, each error
    /// naming its key; the default URL is the listen address.
    #[test]
    fn etcd_tls_and_the_advertised_url_are_checked_by_key() {
        let with = |etcd: &str| errors(&format!("{GOOD}\n[arbiter.etcd]\n{etcd}"));
        let e = with("endpoints = [\"https://127.0.0.1:2379\"]\n");
        assert!(
            e.iter().any(|e| e.contains("arbiter.etcd.endpoints[0]")
                && e.contains("needs [arbiter.etcd.tls]")),
            "{e:?}"
        );
        let e = with(
            "endpoints = [\"http://127.0.0.1:2379\"]\n[arbiter.etcd.tls]\nca = \"/nonexistent/ca.pem\"\n\
             cert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n",
        );
        assert!(
            e.iter().any(|e| e.contains("arbiter.etcd.endpoints[0]")
                && e.contains("every member is https://")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("arbiter.etcd.tls.ca") && e.contains("cannot read")),
            "{e:?}"
        );
        let e = with("endpoints = [\"http://127.0.0.1:2379\"]\nadvertise = \"127.0.0.1:7400\"\n");
        assert!(
            e.iter().any(|e| e.contains("arbiter.etcd.advertise")),
            "{e:?}"
        );
        let e =
            with("endpoints = [\"http://127.0.0.1:2379\"]\nadvertise = \"http://0.0.0.0:7400\"\n");
        assert!(
            e.iter()
                .any(|e| e.contains("arbiter.etcd.advertise") && e.contains("wildcard")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{}\n[arbiter.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n",
            GOOD.replace("state_dir", "listen = \"0.0.0.0:7400\"\nstate_dir")
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("arbiter.etcd.advertise") && e.contains("required")),
            "{e:?}"
        );
        let plan = Config::from_toml(&format!(
            "{GOOD}\n[arbiter.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
        let etcd = plan.etcd.expect("etcd");
        assert_eq!(etcd.advertise, "http://127.0.0.1:7400");
        assert!(etcd.tls.is_none());
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let plan = Config::from_toml(GOOD).unwrap().validate().unwrap();
        let c = &plan.clusters["c"];
        assert_eq!(c.spec.timing, Timing::default());
        assert_eq!(
            c.levels[&1][0][0],
            FenceTarget {
                device: "sim".into(),
                port: "node1".into()
            }
        );
        assert_eq!(c.levels[&2][0][0].port, "two");
    }

    #[test]
    fn a_watchdog_level_is_a_level_of_its_own() {
        let plan = Config::from_toml(
            &GOOD.replace("fence = [[\"sim\"]]", "fence = [[\"sim\"], [\"watchdog\"]]"),
        )
        .unwrap()
        .validate()
        .unwrap();
        let c = &plan.clusters["c"];
        assert_eq!(c.spec.nodes[&1].watchdog_level, Some(1));
        assert_eq!(c.spec.nodes[&1].fence_levels, 2);
        assert_eq!(c.spec.nodes[&2].watchdog_level, None);
        let e = errors(&GOOD.replace("fence = [[\"sim\"]]", "fence = [[\"sim\", \"watchdog\"]]"));
        assert!(
            e.iter()
                .any(|e| e
                    .starts_with("cluster.c.node[0].fence[0]: \"watchdog\" is a level of its own")),
            "{e:?}"
        );
        let e = errors(&GOOD.replace(
            "fence = [[\"sim\"]]",
            "fence = [[\"watchdog\"], [\"watchdog\"]]",
        ));
        assert!(
            e.iter()
                .any(|e| e
                    .starts_with("cluster.c.node[0].fence[1]: \"watchdog\" may be only one level")),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("name = \"sim\"\n", "name = \"watchdog\"\n"));
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.device[0].name: \"watchdog\" is reserved")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let e = errors(&GOOD.replace("name = \"c\"", "name = \"c\"\nlease_ms = 3"));
        assert!(e[0].contains("lease_ms"), "{e:?}");
    }

    #[test]
    fn duplicate_node_id_is_refused() {
        let e = errors(&GOOD.replace("id = 2", "id = 1"));
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.node[1].id: duplicate node id 1")),
            "{e:?}"
        );
    }

    #[test]
    fn missing_fence_device_is_refused() {
        let e = errors(&GOOD.replace("fence = [[\"sim:two\"]]", ""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.node[1].fence: node 2 has no fence device")),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("sim:two", "pdu9:two"));
        assert!(
            e.iter().any(|e| e.contains("no device named \"pdu9\"")),
            "{e:?}"
        );
    }

    #[test]
    fn lease_with_its_clock_margin_must_be_shorter_than_lost_after() {
        // 495 ms < 500 ms, but with the 2% + 1 ms margin it is 505.9 ms.
        let e = errors(&GOOD.replace("name = \"c\"", "name = \"c\"\nlease = \"495ms\""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.lease:") && e.contains("clock margin")),
            "{e:?}"
        );
        let ok = errors(&GOOD.replace("name = \"c\"", "name = \"c\"\nlease = \"480ms\""));
        assert!(
            !ok.iter().any(|e| e.starts_with("cluster.c.lease:")),
            "{ok:?}"
        );
    }

    #[test]
    fn lease_must_be_shorter_than_lost_after() {
        let e = errors(&GOOD.replace("name = \"c\"", "name = \"c\"\nlease = \"600ms\""));
        assert!(e.iter().any(|e| e.starts_with("cluster.c.lease:") && e.contains("shorter than lost_after")), "{e:?}");
    }

    #[test]
    fn native_drivers_are_checked_and_ssh_must_opt_in_to_confirm() {
        let ssh = |extra: &str| {
            format!(
                "{GOOD}\n[[cluster.device]]\nname = \"ssh\"\ndriver = \"ssh\"\nip = \"127.0.0.1\"\n\
                 known_hosts = \"/etc/fence/known_hosts\"\nsecrets = {{ identity = \"file:/etc/fence/id\" }}\n{extra}"
            )
            .replace("fence = [[\"sim:two\"]]", "fence = [[\"ssh\"]]")
        };
        let e = errors(&ssh(""));
        assert!(
            e.iter().any(|e| e.starts_with(
                "cluster.c.node[1].fence[0]: device \"ssh\" (ssh) cannot read power state"
            )),
            "{e:?}"
        );
        assert_eq!(
            errors(&ssh("confirm = \"unreachable\"")),
            Vec::<String>::new()
        );
        let e = errors(&ssh("password = \"hunter2\""));
        assert!(
            e.iter()
                .any(|e| e.contains("password") && e.contains("secret")),
            "{e:?}"
        );
        let ipmi = GOOD.replace(
            "driver = \"sim\"\ndir = \"/tmp/sim\"",
            "driver = \"ipmi\"\nip = \"127.0.0.1\"\nusername = \"admin\"\ncipher = \"5\"",
        );
        let e = errors(&ipmi);
        assert!(
            e.iter().any(|e| e.starts_with("cluster.c.device[0]")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_driver_parameters_are_named() {
        let e = errors(&GOOD.replace("dir = \"/tmp/sim\"", "directory = \"/tmp/sim\""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.device[0].dir: required")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("cluster.c.device[0].directory: unknown parameter")),
            "{e:?}"
        );
    }

    #[test]
    fn tls_or_explicit_plaintext() {
        let e = errors(&GOOD.replace("insecure_plaintext = true\n", ""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("arbiter.tls: mutual TLS is required")),
            "{e:?}"
        );
        let tls = "insecure_plaintext = true\n[arbiter.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/a.pem\"\nkey = \"/nonexistent/a.key\"\n";
        let e = errors(&GOOD.replace("insecure_plaintext = true\n", tls));
        assert!(e.iter().any(|e| e.contains("not both")), "{e:?}");
        let e = errors(&GOOD.replace(
            "insecure_plaintext = true\n",
            &tls.replace("insecure_plaintext = true\n", ""),
        ));
        for k in [
            "arbiter.tls.ca: cannot read",
            "arbiter.tls.cert: cannot read",
            "arbiter.tls.key: cannot read",
        ] {
            assert!(e.iter().any(|e| e.starts_with(k)), "{k} in {e:?}");
        }
    }
}
