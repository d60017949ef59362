//! Fence drivers: one async trait ([`FenceDriver`]) and its drivers.
//!
//! Today: [`sim::SimPowerDevice`], a simulated power device with durable
//! state for demos and tests, and [`exec::ExecDriver`], which runs any
//! ClusterLabs `fence_*` agent. The native IPMI, SNMP, Redfish and ssh
//! drivers come next and implement the same trait.
//!
//! **Invariants:** a driver never reports success it did not confirm; a
//! timeout is [`PowerState::Unknown`] or an error, never "off"; secrets never
//! reach logs or argv.

pub mod confirm;
pub mod exec;
pub mod ipmi;
pub mod native;
pub mod params;
pub mod plugin;
pub mod redfish;
pub mod secret;
pub mod sim;
pub mod snmp;
pub mod ssh;
pub mod udp;

use std::time::Duration;

use async_trait::async_trait;

pub use confirm::{confirm_off, off_and_confirm};

/// Power state as a device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
    /// The device answered but the state cannot be told.
    Unknown,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        })
    }
}

/// One parameter a driver takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
    pub secret: bool,
    pub description: String,
}

/// What a driver is and takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriverMetadata {
    pub name: String,
    pub description: String,
    pub parameters: Vec<Parameter>,
    /// Does `status` read real power state (so `off` can be confirmed)?
    pub confirms_power_state: bool,
}

/// A port (outlet, plug, system) the device controls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Port {
    pub id: String,
    pub state: PowerState,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("invalid driver parameter `{key}`: {reason}")]
    InvalidParameter { key: String, reason: String },
    #[error("device {device} cannot be reached: {reason}")]
    Unreachable { device: String, reason: String },
    #[error("device {device} refused the request: {reason}")]
    Refused { device: String, reason: String },
    #[error("device {device} has no port {port:?}")]
    NoSuchPort { device: String, port: String },
    #[error("device {device} did not answer within {timeout:?}")]
    Timeout { device: String, timeout: Duration },
    #[error(
        "device {device} did not confirm port {port:?} off within {timeout:?}; last status {last}"
    )]
    NotConfirmed {
        device: String,
        port: String,
        timeout: Duration,
        last: PowerState,
    },
    #[error("device {device}: {action} is not supported: {reason}")]
    Unsupported {
        device: String,
        action: &'static str,
        reason: String,
    },
    #[error("device {device} refused our credentials: {reason}")]
    Credentials { device: String, reason: String },
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },
}

/// A fence device. One instance per configured device; `port` names the
/// node's outlet, plug or system on it.
#[async_trait]
pub trait FenceDriver: Send + Sync + std::fmt::Debug {
    /// The configured device's name (for logs and errors).
    fn device(&self) -> &str;
    fn metadata(&self) -> DriverMetadata;
    async fn status(&self, port: &str) -> Result<PowerState, FenceError>;
    async fn on(&self, port: &str) -> Result<(), FenceError>;
    /// Ask for power off. Success means the device accepted the command;
    /// only [`confirm_off`] says the port *is* off.
    async fn off(&self, port: &str) -> Result<(), FenceError>;
    /// Off, confirmed off, then on. Success is the confirmed off: a device's
    /// own "cycle" is never trusted.
    async fn reboot(&self, port: &str, confirm_timeout: Duration) -> Result<(), FenceError> {
        off_and_confirm(self, port, confirm_timeout, Duration::from_millis(20)).await?;
        self.on(port).await
    }
    async fn list(&self) -> Result<Vec<Port>, FenceError>;
    /// Is the device reachable and usable now?
    async fn monitor(&self) -> Result<(), FenceError>;
    /// Check the configuration with the device's software where that needs
    /// I/O (a plugin's `Validate`); run before first use.
    async fn validate(&self) -> Result<(), FenceError> {
        Ok(())
    }
    /// Release what the driver keeps open (a BMC session); it reopens on
    /// the next call.
    async fn close(&self) {}
}

/// Bytes from hex, for known-answer tests.
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
