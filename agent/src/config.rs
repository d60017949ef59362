//! The agent's configuration: a small TOML file. Cluster shape and timings
//! come from the arbiter (in the Welcome), so every node's file stays short.
//!
//! ```toml
//! cluster = "prod"
//! node = 2
//! arbiter = "http://10.0.0.100:7400"   # where fence-arbiter listens
//! listen = "10.0.0.2:7501"             # where this agent serves peer probes
//! insecure_plaintext = true             # required until mTLS lands
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
    /// The arbiter's URL, `http://host:port`.
    pub arbiter: String,
    /// Address to serve peer probes on; must equal the arbiter's
    /// `cluster.node.address` for this node.
    pub listen: String,
    /// Plain TCP without TLS. Must be `true` today.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    #[serde(default)]
    pub fault_injection: FaultInjection,
}

/// Test and demo switches. Never enable in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    /// When true, SIGUSR1 toggles isolation: the agent drops its arbiter
    /// session and refuses and stops sending probes (a node cut off from
    /// the network while alive). Default false.
    #[serde(default)]
    pub enabled: bool,
}

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
    pub arbiter: String,
    pub listen: SocketAddr,
    pub listen_text: String,
    pub json_logs: bool,
    pub fault_injection: bool,
    /// SHA-256 of the effective configuration (hex), sent in Hello.
    pub fingerprint: String,
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
        if !(self.arbiter.starts_with("http://") || self.arbiter.starts_with("https://")) {
            e(
                "arbiter",
                format!(
                    "{:?} must be a URL such as http://127.0.0.1:7400",
                    self.arbiter
                ),
            );
        }
        let listen = self.listen.parse::<SocketAddr>();
        if let Err(err) = &listen {
            e(
                "listen",
                format!("{:?} is not an ip:port address: {err}", self.listen),
            );
        }
        if !self.insecure_plaintext {
            e(
                "insecure_plaintext",
                "mTLS is not available yet; set `insecure_plaintext = true` to run on plain TCP (loopback or a trusted network only)".into(),
            );
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
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut h = Sha256::new();
        for part in [
            self.cluster.as_str(),
            &self.node.to_string(),
            &self.arbiter,
            &self.listen,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let fingerprint = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(AgentPlan {
            cluster: self.cluster.clone(),
            node: self.node,
            arbiter: self.arbiter.clone(),
            listen: listen.expect("checked"),
            listen_text: self.listen.clone(),
            json_logs,
            fault_injection: self.fault_injection.enabled,
            fingerprint,
        })
    }
}
