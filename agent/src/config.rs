//! The agent's configuration: a small TOML file. Cluster shape and timings
//! come from the arbiter (in the Welcome), so every node's file stays short.
//!
//! ```toml
//! cluster = "prod"
//! node = 2
//! arbiter = "https://192.0.2.100:7400"  # where fence-arbiter listens
//! listen = "192.0.2.2:7501"             # where this agent serves peer probes
//!
//! [tls]                                 # or insecure_plaintext = true (demos)
//! ca = "/etc/fence/pki/ca.pem"
//! cert = "/etc/fence/pki/node2.prod.pem"
//! key = "/etc/fence/pki/node2.prod.key"
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Cluster name, as in the arbiter's `[[cluster]] name`.
    pub cluster: String,
    /// This node's id, as in the arbiter's `[[cluster.node]] id`.
    pub node: u32,
    /// The arbiter's URL, `http://host:port` (`https://` with `[tls]`), or
    /// a list of them: the arbiter processes of one group sharing an etcd
    /// store, of which one leads (the others do not listen). The agent
    /// tries them in turn, a new attempt every 100 ms, and stays with the
    /// one that answers.
    pub arbiter: ArbiterUrls,
    /// Address to serve peer probes on; must equal the arbiter's
    /// `cluster.node.address` for this node.
    pub listen: String,
    /// Mutual TLS: this node's certificate (for `<node name>.<cluster>`),
    /// its key, and the cluster's CA. Required unless `insecure_plaintext`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plain TCP without TLS (local demos and tests only). Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How long one attempt to reach the arbiter may take: TCP, TLS and
    /// HTTP/2 handshake, and again the wait for its Welcome. Default: three
    /// heartbeat intervals as the arbiter last announced them (100 ms before
    /// the first Welcome), at least 200 ms and at most 2 s. Attempts start
    /// every 100 ms whatever this is.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<std::time::Duration>,
    #[serde(default)]
    pub fault_injection: FaultInjection,
    /// Checks whose passing weights are reported to the arbiter.
    #[serde(default, rename = "heuristic")]
    pub heuristics: Vec<HeuristicConfig>,
    /// A file holding this machine's boot id (a UUID), sent in every Hello:
    /// an agent restarted in the boot its fence was confirmed in proves the
    /// machine was never switched off. Default
    /// `/proc/sys/kernel/random/boot_id` (if unreadable, none is sent).
    /// Set `""` to send none, where a fence restarts a container or a
    /// process rather than the kernel; the arbiter then tells a restart by
    /// the agent's process instance alone.
    #[serde(default)]
    pub boot_id_file: Option<std::path::PathBuf>,
    /// An optional hardware watchdog (none by default). See
    /// [`WatchdogConfig`].
    #[serde(default)]
    pub watchdog: Option<WatchdogConfig>,
    /// Where the pids of `process` resources are recorded (under
    /// `node<id>/`), so that an agent restarted after being killed stops
    /// what the killed one left running. Default `/run/fence-agent` (a
    /// tmpfs: a reboot clears it, as it clears the processes).
    #[serde(default = "default_run_dir")]
    pub run_dir: std::path::PathBuf,
}

/// One arbiter URL or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ArbiterUrls {
    One(String),
    Many(Vec<String>),
}

impl ArbiterUrls {
    pub fn list(&self) -> Vec<String> {
        match self {
            ArbiterUrls::One(u) => vec![u.clone()],
            ArbiterUrls::Many(v) => v.clone(),
        }
    }
}

/// Default `run_dir`.
pub const DEFAULT_RUN_DIR: &str = "/run/fence-agent";

fn default_run_dir() -> std::path::PathBuf {
    DEFAULT_RUN_DIR.into()
}

/// The hardware watchdog the agent holds and feeds.
///
/// ```toml
/// [watchdog]
/// device = "/dev/watchdog"   # required
/// timeout = "5s"             # default 5s; whole seconds on hardware
/// ```
///
/// The agent arms it once every resource group it was given has stopped
/// (its first cleanup), and feeds it only while it holds a lease or every
/// group is stopped: a node whose stop hangs, whose agent is frozen or
/// killed, is reset `timeout` after its lease ended. A clean stop of the
/// agent disarms it (magic close) once every group is stopped. The
/// arbiter's `watchdog` fence level counts on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    pub device: std::path::PathBuf,
    #[serde(default = "default_watchdog_timeout", with = "humantime_serde")]
    pub timeout: std::time::Duration,
}

fn default_watchdog_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

/// Where the kernel keeps the current boot's id.
pub const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One heuristic: a command run every `interval`; exit 0 = pass.
///
/// ```toml
/// [[heuristic]]
/// name = "gateway"
/// command = ["/usr/bin/ping", "-c1", "-W1", "192.0.2.1"]
/// weight = 1          # default 1
/// interval = "1s"     # default 1s, at least 100ms
/// timeout = "500ms"   # default interval / 2, at most interval
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeuristicConfig {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<std::time::Duration>,
}

fn one() -> u32 {
    1
}

/// A validated heuristic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heuristic {
    pub name: String,
    pub command: Vec<String>,
    pub weight: u32,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
}

/// PEM files for mutual TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The name in the arbiter's certificate. Default `arbiter`.
    #[serde(default = "default_arbiter_name")]
    pub arbiter_name: String,
}

fn default_arbiter_name() -> String {
    "arbiter".into()
}

/// The PEM contents, read once at start.
#[derive(Clone)]
pub struct TlsPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub arbiter_name: String,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsPem {{ arbiter_name: {:?}, .. }}", self.arbiter_name) // never the key
    }
}

/// Test and demo switches. Never enable in production.
/// SIGUSR1 toggles full isolation (arbiter session and probes); SIGUSR2
/// toggles probe isolation only (peers unreachable, arbiter still reached).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    /// When true, SIGUSR1 toggles isolation: the agent drops its arbiter
    /// session and refuses and stops sending probes (a node cut off from
    /// the network while alive); SIGUSR2 toggles probe isolation only.
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
}

/// Bounds of an explicit `connect_timeout`.
const MIN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);
const MAX_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn default_log_format() -> String {
    "text".into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub cluster: String,
    pub node: u32,
    /// Every arbiter URL, comma-separated (for logs).
    pub arbiter: String,
    /// Every arbiter URL, in the order given.
    pub arbiters: Vec<String>,
    pub listen: SocketAddr,
    pub listen_text: String,
    pub json_logs: bool,
    /// `None`: derived from the heartbeat interval (see
    /// [`AgentConfig::connect_timeout`]).
    pub connect_timeout: Option<std::time::Duration>,
    pub fault_injection: bool,
    /// SHA-256 of the effective configuration (hex), sent in Hello.
    pub fingerprint: String,
    pub heuristics: Vec<Heuristic>,
    /// `None`: plain TCP (`insecure_plaintext`).
    pub tls: Option<TlsPem>,
    /// This machine's boot id, as read at start (empty: none sent).
    pub boot_id: String,
    /// The watchdog to hold (`None`: none).
    pub watchdog: Option<WatchdogConfig>,
    /// See [`AgentConfig::run_dir`].
    pub run_dir: std::path::PathBuf,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentPlan, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                key: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            }]
        })?;
        let cfg: AgentConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(0);
            vec![ConfigError {
                key: format!("line {line}"),
                reason: e.message().to_string(),
            }]
        })?;
        cfg.validate()
    }

    pub fn validate(&self) -> Result<AgentPlan, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut e = |key: &str, reason: String| {
            errs.push(ConfigError {
                key: key.into(),
                reason,
            })
        };
        if self.cluster.is_empty() {
            e("cluster", "must not be empty".into());
        }
        if self.node == 0 {
            e("node", "node ids start at 1".into());
        }
        let arbiters = self.arbiter.list();
        let arbiter = arbiters.join(",");
        if arbiters.is_empty() {
            e("arbiter", "at least one arbiter URL is required".into());
        }
        for u in &arbiters {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                e(
                    "arbiter",
                    format!("{u:?} must be a URL such as http://127.0.0.1:7400"),
                );
            }
        }
        let listen = self.listen.parse::<SocketAddr>();
        if let Err(err) = &listen {
            e(
                "listen",
                format!("{:?} is not an ip:port address: {err}", self.listen),
            );
        }
        let tls = match (&self.tls, self.insecure_plaintext) {
            (Some(_), true) => {
                e(
                    "insecure_plaintext",
                    "set either [tls] or insecure_plaintext = true, not both".into(),
                );
                None
            }
            (None, false) => {
                e(
                    "tls",
                    "mutual TLS is required: set [tls] ca, cert and key (`fencectl certs` makes them), or insecure_plaintext = true for a local demo".into(),
                );
                None
            }
            (None, true) => None,
            (Some(t), false) => {
                let mut read = |name: &str, p: &std::path::Path| match std::fs::read(p) {
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => {
                        e(&format!("tls.{name}"), format!("{} is empty", p.display()));
                        Vec::new()
                    }
                    Err(err) => {
                        e(
                            &format!("tls.{name}"),
                            format!("cannot read {}: {err}", p.display()),
                        );
                        Vec::new()
                    }
                };
                let pem = TlsPem {
                    ca: read("ca", &t.ca),
                    cert: read("cert", &t.cert),
                    key: read("key", &t.key),
                    arbiter_name: t.arbiter_name.clone(),
                };
                for u in arbiters.iter().filter(|u| !u.starts_with("https://")) {
                    e(
                        "arbiter",
                        format!("{u:?}: with [tls] the URL must start with https://"),
                    );
                }
                Some(pem)
            }
        };
        for u in arbiters
            .iter()
            .filter(|u| tls.is_none() && u.starts_with("https://"))
        {
            e("arbiter", format!("{u:?}: https:// needs [tls]"));
        }
        let json_logs = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                e(
                    "log_format",
                    format!("{other:?}: expected \"text\" or \"json\""),
                );
                false
            }
        };
        if let Some(t) = self.connect_timeout
            && !(MIN_CONNECT_TIMEOUT..=MAX_CONNECT_TIMEOUT).contains(&t)
        {
            e(
                "connect_timeout",
                format!(
                    "{t:?} must be between {MIN_CONNECT_TIMEOUT:?} and {MAX_CONNECT_TIMEOUT:?}"
                ),
            );
        }
        if let Some(w) = &self.watchdog {
            use std::os::unix::fs::FileTypeExt;
            match std::fs::metadata(&w.device) {
                Ok(m) if m.file_type().is_char_device() || m.file_type().is_socket() => {}
                Ok(_) => e(
                    "watchdog.device",
                    format!(
                        "{} is neither a watchdog device nor a stand-in's socket",
                        w.device.display()
                    ),
                ),
                Err(err) => e(
                    "watchdog.device",
                    format!(
                        "{}: {err} (is a watchdog driver loaded? e.g. modprobe softdog)",
                        w.device.display()
                    ),
                ),
            }
            if w.timeout < std::time::Duration::from_millis(100)
                || w.timeout > std::time::Duration::from_secs(600)
            {
                e(
                    "watchdog.timeout",
                    format!("{:?} must be between 100ms and 600s", w.timeout),
                );
            }
        }
        let mut heuristics = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in self.heuristics.iter().enumerate() {
            let at = format!("heuristic[{i}]");
            if h.name.is_empty() || !names.insert(h.name.clone()) {
                e(
                    &format!("{at}.name"),
                    format!("{:?}: must be non-empty and unique", h.name),
                );
            }
            if h.command.first().is_none_or(|p| p.is_empty()) {
                e(
                    &format!("{at}.command"),
                    "must name a program, e.g. [\"/usr/bin/ping\", \"-c1\", \"192.0.2.1\"]".into(),
                );
            }
            if h.weight == 0 {
                e(&format!("{at}.weight"), "must be at least 1".into());
            }
            let interval = h.interval.unwrap_or(std::time::Duration::from_secs(1));
            if interval < std::time::Duration::from_millis(100) {
                e(
                    &format!("{at}.interval"),
                    format!("{interval:?} is below the 100ms minimum"),
                );
            }
            let timeout = h
                .timeout
                .unwrap_or_else(|| crate::heuristics::default_timeout(interval));
            if timeout.is_zero() || timeout > interval {
                e(
                    &format!("{at}.timeout"),
                    format!(
                        "{timeout:?} must be more than 0 and at most the interval ({interval:?})"
                    ),
                );
            }
            heuristics.push(Heuristic {
                name: h.name.clone(),
                command: h.command.clone(),
                weight: h.weight,
                interval,
                timeout,
            });
        }
        let boot_id = match &self.boot_id_file {
            None => std::fs::read_to_string(KERNEL_BOOT_ID)
                .map(|t| t.trim().to_string())
                .ok()
                .filter(|t| proto::boot_id_digest(t).is_ok())
                .unwrap_or_default(),
            Some(p) if p.as_os_str().is_empty() => String::new(),
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => {
                    let t = t.trim().to_string();
                    if let Err(err) = proto::boot_id_digest(&t) {
                        e("boot_id_file", format!("{}: {err}", p.display()));
                    }
                    t
                }
                Err(err) => {
                    e(
                        "boot_id_file",
                        format!("cannot read {}: {err}", p.display()),
                    );
                    String::new()
                }
            },
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut h = Sha256::new();
        for part in [
            self.cluster.as_str(),
            &self.node.to_string(),
            &arbiter,
            &self.listen,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for x in &heuristics {
            h.update(format!("{x:?}").as_bytes());
            h.update([0]);
        }
        // Only when set, so that files without it keep their fingerprint.
        if let Some(t) = self.connect_timeout {
            h.update(format!("connect_timeout={t:?}").as_bytes());
            h.update([0]);
        }
        let fingerprint = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(AgentPlan {
            cluster: self.cluster.clone(),
            node: self.node,
            arbiter,
            arbiters,
            listen: listen.expect("checked"),
            listen_text: self.listen.clone(),
            json_logs,
            connect_timeout: self.connect_timeout,
            fault_injection: self.fault_injection.enabled,
            fingerprint,
            heuristics,
            boot_id,
            tls,
            watchdog: self.watchdog.clone(),
            run_dir: self.run_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<AgentPlan, Vec<String>> {
        let text = format!(
            "cluster = \"c\"\nnode = 1\narbiter = \"http://127.0.0.1:7400\"\nlisten = \"127.0.0.1:7501\"\ninsecure_plaintext = true\n{extra}"
        );
        let cfg: AgentConfig = toml::from_str(&text).map_err(|e| vec![e.to_string()])?;
        cfg.validate()
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn heuristics_get_defaults_and_change_the_fingerprint() {
        let plain = parse("").unwrap();
        let p = parse("[[heuristic]]\nname = \"gw\"\ncommand = [\"/bin/true\"]\n").unwrap();
        assert_eq!(p.heuristics[0].interval, std::time::Duration::from_secs(1));
        assert_eq!(
            p.heuristics[0].timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(p.heuristics[0].weight, 1);
        assert_ne!(plain.fingerprint, p.fingerprint);
    }

    #[test]
    fn the_boot_id_is_read_checked_and_can_be_turned_off() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("boot");
        std::fs::write(&good, "e4fa9fa9-97fb-40c3-80e9-f676163b4ee8\n").unwrap();
        let p = parse(&format!("boot_id_file = {:?}\n", good)).unwrap();
        assert_eq!(p.boot_id, "e4fa9fa9-97fb-40c3-80e9-f676163b4ee8");
        // Where it lives does not change the configuration's fingerprint.
        assert_eq!(p.fingerprint, parse("").unwrap().fingerprint);
        assert_eq!(parse("boot_id_file = \"\"\n").unwrap().boot_id, "");
        let kernel = std::fs::read_to_string(KERNEL_BOOT_ID).unwrap_or_default();
        assert_eq!(parse("").unwrap().boot_id, kernel.trim());
        let bad = d.path().join("bad");
        std::fs::write(&bad, "not a boot id").unwrap();
        for (file, want) in [
            (&bad, "not a UUID"),
            (&d.path().join("none"), "cannot read"),
        ] {
            let e = parse(&format!("boot_id_file = {file:?}\n")).unwrap_err();
            assert!(
                e[0].starts_with("boot_id_file") && e[0].contains(want),
                "{e:?}"
            );
        }
    }

    #[test]
    fn bad_heuristics_are_named() {
        let e =
            parse("[[heuristic]]\nname = \"gw\"\ncommand = []\nweight = 0\ninterval = \"10ms\"\n")
                .unwrap_err();
        for want in [
            "heuristic[0].command",
            "heuristic[0].weight",
            "heuristic[0].interval",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want} in {e:?}");
        }
        let e = parse("[[heuristic]]\nname = \"gw\"\ncommand = [\"x\"]\ntimeout = \"2s\"\n")
            .unwrap_err();
        assert!(e[0].starts_with("heuristic[0].timeout"), "{e:?}");
        let e = parse("connect_timeout = \"10ms\"\n").unwrap_err();
        assert!(e[0].starts_with("connect_timeout"), "{e:?}");
        let p = parse("connect_timeout = \"500ms\"\n").unwrap();
        assert_eq!(
            p.connect_timeout,
            Some(std::time::Duration::from_millis(500))
        );
        assert_ne!(p.fingerprint, parse("").unwrap().fingerprint);
        let e = parse("secret = 1\n").unwrap_err();
        assert!(e[0].contains("secret"), "{e:?}");
    }

    #[test]
    fn plaintext_must_be_explicit() {
        let text = "cluster = \"c\"\nnode = 1\narbiter = \"http://127.0.0.1:7400\"\nlisten = \"127.0.0.1:7501\"\n";
        let cfg: AgentConfig = toml::from_str(text).unwrap();
        let e = cfg.validate().unwrap_err();
        assert_eq!(e[0].key, "tls");
        assert!(e[0].reason.contains("fencectl certs"), "{e:?}");
    }
}
