//! The drivers configured from [`Params`](crate::params::Params) (all but
//! `exec`, whose parameters are its agent's): their metadata, checking a
//! configuration, and building one by name. One table, [`DRIVERS`].

use std::sync::Arc;

use crate::params::Params;
use crate::{DriverMetadata, FenceDriver, FenceError};

/// A built device, shared by the levels that use it.
pub type Device = Arc<dyn FenceDriver>;

/// One driver: its name, metadata and constructor.
pub struct Entry {
    pub name: &'static str,
    pub metadata: fn() -> DriverMetadata,
    build: fn(&str, &Params) -> Result<Device, FenceError>,
}

fn arc<D: FenceDriver + 'static>(
    r: Result<D, FenceError>,
) -> Result<Arc<dyn FenceDriver>, FenceError> {
    r.map(|d| Arc::new(d) as Arc<dyn FenceDriver>)
}

pub const DRIVERS: &[Entry] = &[
    Entry {
        name: "ipmi",
        metadata: crate::ipmi::metadata,
        build: |n, p| arc(crate::ipmi::IpmiDriver::from_params(n, p)),
    },
    Entry {
        name: "snmp",
        metadata: crate::snmp::metadata,
        build: |n, p| arc(crate::snmp::SnmpDriver::from_params(n, p)),
    },
    Entry {
        name: "redfish",
        metadata: crate::redfish::metadata,
        build: |n, p| arc(crate::redfish::RedfishDriver::from_params(n, p)),
    },
    Entry {
        name: "ssh",
        metadata: crate::ssh::metadata,
        build: |n, p| arc(crate::ssh::SshDriver::from_params(n, p)),
    },
    Entry {
        name: "plugin",
        metadata: crate::plugin::metadata,
        build: |n, p| arc(crate::plugin::PluginDriver::from_params(n, p)),
    },
    Entry {
        name: "sim",
        metadata: crate::sim::metadata,
        build: |n, p| arc(crate::sim::SimPowerDevice::from_params(n, p)),
    },
];

pub fn find(driver: &str) -> Option<&'static Entry> {
    DRIVERS.iter().find(|e| e.name == driver)
}

pub fn metadata(driver: &str) -> Option<DriverMetadata> {
    find(driver).map(|e| (e.metadata)())
}

fn unknown(driver: &str) -> FenceError {
    FenceError::InvalidParameter {
        key: "driver".into(),
        reason: format!("unknown driver {driver:?}"),
    }
}

/// Every problem with a device's parameters that can be seen without
/// secrets or I/O (what config validation reports).
pub fn problems(driver: &str, p: &Params) -> Vec<FenceError> {
    let Some(e) = find(driver) else {
        return vec![unknown(driver)];
    };
    let meta = (e.metadata)();
    match driver {
        // A plugin's own parameters are checked by the plugin (Validate).
        "plugin" => crate::plugin::check(p).err().into_iter().collect(),
        "ssh" => {
            let mut out = p.problems(&meta);
            out.extend(crate::ssh::value_problems(p));
            out
        }
        _ => p.problems(&meta),
    }
}

/// Does a device of this driver, so configured, read real power state
/// (so that `off` can be confirmed)? The driver's metadata says, except
/// where a parameter decides (`ssh`'s `confirm`).
pub fn confirms_power_state(driver: &str, p: &Params) -> bool {
    match driver {
        "ssh" => crate::ssh::confirms(p),
        _ => metadata(driver).is_some_and(|m| m.confirms_power_state),
    }
}

/// Why a device that [`confirms_power_state`] denies cannot be a fence level.
pub fn cannot_confirm(driver: &str) -> String {
    let hint = if driver == "ssh" {
        "; set confirm = \"unreachable\" on it if \"no longer answers on its SSH port\" may count as off"
    } else {
        ""
    };
    format!("({driver}) cannot read power state, so it can never confirm a fence{hint}")
}

/// Build a device: parameters checked, secrets loaded; the device itself
/// is first contacted on first use (or `validate` / `monitor`).
pub fn build(driver: &str, name: &str, p: &Params) -> Result<Device, FenceError> {
    match find(driver) {
        Some(e) => (e.build)(name, p),
        None => Err(unknown(driver)),
    }
}
