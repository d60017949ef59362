//! Real third-party peers on loopback, started by the project's own copies
//! of the peer scripts (`tests/peers/`). Under `CI=true` a peer that cannot
//! start is a failure; elsewhere the caller may skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A simulated BMC: OpenIPMI's `ipmi_sim` behind `tests/peers/ipmi-up.sh`.
pub struct Bmc {
    pub name: String,
    pub base: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl Bmc {
    /// Start one BMC on a free UDP port of 127.0.0.1, power on.
    pub fn start(name: &str) -> Result<Bmc, String> {
        let base = tempfile::Builder::new()
            .prefix("fence-bmc-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let out = Command::new(script("ipmi-up.sh"))
            .args([name, &port.to_string()])
            .env("FENCE_IPMI_BASE", base.path())
            .env("FENCE_IPMI_POWER", "on")
            .output()
            .map_err(|e| format!("ipmi-up.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ipmi-up.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Bmc {
            name: name.into(),
            base,
            env,
        })
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get("FENCE_IPMI_DIR"))
    }

    pub fn power(&self) -> String {
        std::fs::read_to_string(self.get("FENCE_IPMI_POWER_STATE_FILE"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn events(&self) -> String {
        std::fs::read_to_string(self.get("FENCE_IPMI_EVENTS_LOG")).unwrap_or_default()
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = Command::new(script("ipmi-down.sh"))
            .args([self.name.as_str(), "--purge"])
            .env("FENCE_IPMI_BASE", self.base.path())
            .output();
    }
}

/// A simulated APC switched PDU: net-snmp `snmpd` with the APC outlet
/// tables served by `tests/peers/apc-pdu-agent.py`, via `pdu-up.sh`.
pub struct Pdu {
    pub name: String,
    pub base: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl Pdu {
    /// Start one PDU on a free UDP port of 127.0.0.1; outlets named
    /// `node1..node<outlets>`, all on.
    pub fn start(name: &str, outlets: u32) -> Result<Pdu, String> {
        let base = tempfile::Builder::new()
            .prefix("fence-pdu-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let names: Vec<String> = (1..=outlets).map(|i| format!("node{i}")).collect();
        let out = Command::new(script("pdu-up.sh"))
            .args([name, &port.to_string()])
            .env("FENCE_PDU_BASE", base.path())
            .env("FENCE_PDU_OUTLETS", outlets.to_string())
            .env("FENCE_PDU_OUTLET_NAMES", names.join(","))
            .env("FENCE_PDU_POWER", "on")
            .output()
            .map_err(|e| format!("pdu-up.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pdu-up.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Pdu {
            name: name.into(),
            base,
            env,
        })
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get("FENCE_PDU_DIR"))
    }

    /// "on" or "off", from the PDU's own outlet file.
    pub fn outlet(&self, n: u32) -> String {
        std::fs::read_to_string(
            PathBuf::from(self.get("FENCE_PDU_OUTLETS_DIR")).join(format!("{n}.state")),
        )
        .unwrap_or_default()
        .trim()
        .to_string()
    }
}

impl Drop for Pdu {
    fn drop(&mut self) {
        let _ = Command::new(script("pdu-down.sh"))
            .args([self.name.as_str(), "--purge"])
            .env("FENCE_PDU_BASE", self.base.path())
            .output();
    }
}
