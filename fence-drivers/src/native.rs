//! The built-in drivers configured from [`Params`](crate::params::Params):
//! their metadata, and building one by name.

use std::sync::Arc;

use crate::params::Params;
use crate::{DriverMetadata, FenceDriver, FenceError};

/// Names of the native drivers.
pub const DRIVERS: &[&str] = &["ipmi", "snmp", "redfish", "ssh", "plugin"];

pub fn metadata(driver: &str) -> Option<DriverMetadata> {
    match driver {
        "ipmi" => Some(crate::ipmi::metadata()),
        "snmp" => Some(crate::snmp::metadata()),
        "redfish" => Some(crate::redfish::metadata()),
        "ssh" => Some(crate::ssh::metadata()),
        "plugin" => Some(crate::plugin::metadata()),
        _ => None,
    }
}

/// Check the parameters against the driver's metadata (no secrets read,
/// no I/O): what config validation runs.
pub fn check(driver: &str, p: &Params) -> Result<(), FenceError> {
    match metadata(driver) {
        // A plugin's own parameters are checked by the plugin.
        Some(_) if driver == "plugin" => crate::plugin::check(p),
        Some(m) => p.check(&m),
        None => Err(FenceError::InvalidParameter {
            key: "driver".into(),
            reason: format!("unknown driver {driver:?}"),
        }),
    }
}

/// Build a device: parameters checked, secrets loaded; the device itself
/// is first contacted on first use (or `monitor`).
pub fn build(driver: &str, name: &str, p: &Params) -> Result<Arc<dyn FenceDriver>, FenceError> {
    match driver {
        "ipmi" => Ok(Arc::new(crate::ipmi::IpmiDriver::from_params(name, p)?)),
        "snmp" => Ok(Arc::new(crate::snmp::SnmpDriver::from_params(name, p)?)),
        "redfish" => Ok(Arc::new(crate::redfish::RedfishDriver::from_params(
            name, p,
        )?)),
        "ssh" => Ok(Arc::new(crate::ssh::SshDriver::from_params(name, p)?)),
        "plugin" => Ok(Arc::new(crate::plugin::PluginDriver::from_params(name, p)?)),
        other => Err(FenceError::InvalidParameter {
            key: "driver".into(),
            reason: format!("unknown driver {other:?}"),
        }),
    }
}
