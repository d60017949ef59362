//! `ipmi`: native IPMI 2.0 over LAN (RMCP+, "lanplus"), in process on tokio.
//!
//! Built on `ipmi-rs-core` for the IPMI message model (`Message`, `NetFn`,
//! completion codes, privilege levels and its `IpmiCommand` trait, which
//! our Chassis Control / Get Chassis Status / Set Session Privilege Level /
//! Close Session implement). The RMCP+ transport is ours: `ipmi-rs` 0.6's
//! is blocking, proposes only suite 3, panics when a BMC picks
//! HMAC-SHA256, never raises the session privilege, never retransmits and
//! checks no sequence numbers.
//!
//! - [`crypto`]: suites 3 and 17 (known-answer tests), pure.
//! - [`wire`]: packet and message framing, pure, never panics.
//! - [`session`]: negotiation (17, else 3), RAKP, privilege, requests with
//!   retries, close.
//!
//! The session is kept warm between calls; a warm session that no longer
//! answers is dropped and a new one opened, transparently. A BMC controls
//! one machine: the fence target's port is not used.

pub mod commands;
pub mod crypto;
pub mod session;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use ipmi_rs_core::app::auth::PrivilegeLevel;
use ipmi_rs_core::connection::IpmiCommand;
use tokio::sync::Mutex;

use self::commands::{ChassisControl, CommandError, GetChassisStatus};
use self::crypto::CipherSuite;
use self::session::{IpmiError, Session, Target};
use crate::params::{Params, param};
use crate::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "ipmi".into(),
        description:
            "Native IPMI 2.0 over LAN (RMCP+): Chassis Control off/on, Get Chassis Status. \
                      One BMC per machine; the fence target's port is not used."
                .into(),
        parameters: vec![
            param("ip", true, false, "BMC address or host name"),
            param("ipport", false, false, "BMC UDP port (default 623)"),
            param("username", true, false, "BMC user"),
            param(
                "password",
                true,
                true,
                "BMC password (a secret: file: or env:)",
            ),
            param(
                "kg",
                false,
                true,
                "BMC key K_G, when the BMC has one (a secret)",
            ),
            param(
                "cipher",
                false,
                false,
                "auto (17, falling back to 3; default), 17 or 3",
            ),
            param(
                "privlvl",
                false,
                false,
                "administrator (default) or operator",
            ),
            param("timeout", false, false, "wait for one answer (default 1s)"),
            param(
                "retries",
                false,
                false,
                "resends after the first try (default 3)",
            ),
        ],
        confirms_power_state: true,
    }
}

/// A BMC reached over RMCP+.
#[derive(Debug)]
pub struct IpmiDriver {
    name: String,
    target: Target,
    session: Mutex<Option<Session>>,
    /// Sessions opened so far (a warm session is reused, not reopened).
    opened: std::sync::atomic::AtomicU64,
}

impl IpmiDriver {
    /// Check the parameters and load the secrets; no I/O to the BMC yet.
    pub fn from_params(name: impl Into<String>, p: &Params) -> Result<Self, FenceError> {
        p.check(&metadata())?;
        let addr = p.socket_addr(623)?;
        let suites = match p.choice("cipher", &["auto", "17", "3"], "auto")? {
            "17" => vec![CipherSuite::S17],
            "3" => vec![CipherSuite::S3],
            _ => vec![CipherSuite::S17, CipherSuite::S3],
        };
        let privilege =
            match p.choice("privlvl", &["administrator", "operator"], "administrator")? {
                "operator" => PrivilegeLevel::Operator,
                _ => PrivilegeLevel::Administrator,
            };
        let user = p.required("username")?.to_string();
        if user.len() > 16 {
            return Err(FenceError::InvalidParameter {
                key: "username".into(),
                reason: "IPMI user names have at most 16 bytes".into(),
            });
        }
        let password = p.required_secret("password")?;
        if password.as_bytes().len() > 20 {
            return Err(FenceError::InvalidParameter {
                key: "secrets.password".into(),
                reason: "IPMI 2.0 passwords have at most 20 bytes".into(),
            });
        }
        let timeout = p.duration("timeout", Duration::from_secs(1))?;
        if timeout.is_zero() {
            return Err(FenceError::InvalidParameter {
                key: "timeout".into(),
                reason: "must be more than 0".into(),
            });
        }
        Ok(IpmiDriver {
            name: name.into(),
            target: Target {
                addr,
                user,
                password,
                kg: p.secret("kg")?,
                privilege,
                suites,
                timeout,
                retries: p.parse("retries", 3)?,
            },
            session: Mutex::new(None),
            opened: Default::default(),
        })
    }

    /// How many sessions this driver has opened.
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The suite of the warm session, if one is open.
    pub async fn session_suite(&self) -> Option<CipherSuite> {
        self.session.lock().await.as_ref().map(Session::suite)
    }

    fn error(&self, e: IpmiError) -> FenceError {
        let device = self.name.clone();
        let reason = e.to_string();
        match e {
            IpmiError::NoAnswer { .. } | IpmiError::Io(_) => {
                FenceError::Unreachable { device, reason }
            }
            IpmiError::UnsupportedSuite { .. } => FenceError::Unsupported {
                device,
                action: "session",
                reason,
            },
            IpmiError::WrongUser { .. }
            | IpmiError::WrongPassword { .. }
            | IpmiError::WrongKg
            | IpmiError::Privilege { .. } => FenceError::Credentials { device, reason },
            IpmiError::SessionRefused(_) | IpmiError::Completion { .. } => {
                FenceError::Refused { device, reason }
            }
            IpmiError::BadResponse { .. } => FenceError::Device { device, reason },
        }
    }

    /// Run a command on the warm session, or on a new one.
    async fn call<C>(&self, name: &'static str, command: C) -> Result<C::Output, FenceError>
    where
        C: IpmiCommand<Error = CommandError> + Clone,
    {
        let t = &self.target;
        let mut warm = self.session.lock().await;
        if let Some(s) = warm.as_mut() {
            match s.call(t, name, command.clone(), 1).await {
                Ok(v) => return Ok(v),
                Err(IpmiError::NoAnswer { .. }) => {
                    tracing::info!(device = %self.name, "warm IPMI session stopped answering; opening a new one");
                    *warm = None;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        let mut s = Session::open(t).await.map_err(|e| self.error(e))?;
        let n = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        tracing::debug!(device = %self.name, suite = s.suite().id(), sessions = n, "IPMI session open");
        let r = s.call(t, name, command, t.retries + 1).await;
        *warm = Some(s);
        r.map_err(|e| self.error(e))
    }

    /// Close the warm session (the BMC would time it out otherwise).
    pub async fn close(&self) {
        if let Some(s) = self.session.lock().await.take() {
            s.close(&self.target).await;
        }
    }
}

#[async_trait]
impl FenceDriver for IpmiDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        metadata()
    }

    async fn status(&self, _port: &str) -> Result<PowerState, FenceError> {
        let s = self.call("Get Chassis Status", GetChassisStatus).await?;
        Ok(if s.power_on {
            PowerState::On
        } else {
            PowerState::Off
        })
    }

    async fn on(&self, _port: &str) -> Result<(), FenceError> {
        self.call("Chassis Control (power up)", ChassisControl::PowerUp)
            .await
    }

    async fn off(&self, _port: &str) -> Result<(), FenceError> {
        self.call("Chassis Control (power down)", ChassisControl::PowerDown)
            .await
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let state = self.status("").await?;
        Ok(vec![Port {
            id: "chassis".into(),
            state,
        }])
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        self.status("").await.map(|_| ())
    }

    async fn close(&self) {
        IpmiDriver::close(self).await
    }
}
