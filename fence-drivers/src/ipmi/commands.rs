//! The IPMI commands a fence needs, as `ipmi-rs-core` commands: it has the
//! message types and the `IpmiCommand` trait but not these four.

use ipmi_rs_core::app::auth::PrivilegeLevel;
use ipmi_rs_core::connection::{CompletionErrorCode, IpmiCommand, Message, NetFn};

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("response data too short: {0} bytes")]
    Short(usize),
    #[error("response names privilege level {0:#04x}, which does not exist")]
    BadPrivilege(u8),
}

/// Chassis Control (IPMI 2.0 §28.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    PowerDown = 0,
    PowerUp = 1,
    PowerCycle = 2,
    HardReset = 3,
}

impl From<ChassisControl> for Message {
    fn from(c: ChassisControl) -> Message {
        Message::new_request(NetFn::Chassis, 0x02, vec![c as u8])
    }
}

impl IpmiCommand for ChassisControl {
    type Output = ();
    type Error = CommandError;

    fn parse_success_response(_data: &[u8]) -> Result<(), CommandError> {
        Ok(())
    }
}

/// Get Chassis Status (§28.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetChassisStatus;

/// The part of the chassis status a fence reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    pub power_on: bool,
    /// Power overload, interlock, fault or control fault bits.
    pub power_fault: bool,
}

impl From<GetChassisStatus> for Message {
    fn from(_: GetChassisStatus) -> Message {
        Message::new_request(NetFn::Chassis, 0x01, vec![])
    }
}

impl IpmiCommand for GetChassisStatus {
    type Output = ChassisStatus;
    type Error = CommandError;

    fn parse_success_response(data: &[u8]) -> Result<ChassisStatus, CommandError> {
        let b = *data.first().ok_or(CommandError::Short(data.len()))?;
        Ok(ChassisStatus {
            power_on: b & 0x01 != 0,
            power_fault: b & 0x1e != 0,
        })
    }
}

/// Set Session Privilege Level (§22.18): a session starts at USER.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetSessionPrivilegeLevel(pub PrivilegeLevel);

impl From<SetSessionPrivilegeLevel> for Message {
    fn from(c: SetSessionPrivilegeLevel) -> Message {
        Message::new_request(NetFn::App, 0x3b, vec![u8::from(c.0)])
    }
}

impl IpmiCommand for SetSessionPrivilegeLevel {
    type Output = PrivilegeLevel;
    type Error = CommandError;

    fn parse_success_response(data: &[u8]) -> Result<PrivilegeLevel, CommandError> {
        let b = *data.first().ok_or(CommandError::Short(data.len()))?;
        PrivilegeLevel::try_from(b).map_err(|()| CommandError::BadPrivilege(b))
    }
}

/// Close Session (§22.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSession(pub u32);

impl From<CloseSession> for Message {
    fn from(c: CloseSession) -> Message {
        Message::new_request(NetFn::App, 0x3c, c.0.to_le_bytes().to_vec())
    }
}

impl IpmiCommand for CloseSession {
    type Output = ();
    type Error = CommandError;

    fn parse_success_response(_data: &[u8]) -> Result<(), CommandError> {
        Ok(())
    }
}

/// A completion code in words, for errors.
pub fn completion_text(code: u8) -> String {
    match CompletionErrorCode::try_from(code) {
        Err(()) => "success".into(),
        Ok(CompletionErrorCode::InsufficientPrivilege) => {
            "insufficient privilege level (0xD4)".into()
        }
        Ok(c) => format!("{c:?} ({code:#04X})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses() {
        let m: Message = ChassisControl::PowerDown.into();
        assert_eq!((m.netfn_raw(), m.cmd(), m.data()), (0x00, 0x02, &[0u8][..]));
        let m: Message = SetSessionPrivilegeLevel(PrivilegeLevel::Administrator).into();
        assert_eq!((m.netfn_raw(), m.cmd(), m.data()), (0x06, 0x3b, &[4u8][..]));
        assert_eq!(
            GetChassisStatus::parse_success_response(&[0x01, 0x00, 0x00]),
            Ok(ChassisStatus {
                power_on: true,
                power_fault: false
            })
        );
        assert_eq!(
            GetChassisStatus::parse_success_response(&[]),
            Err(CommandError::Short(0))
        );
        assert!(SetSessionPrivilegeLevel::parse_success_response(&[0x09]).is_err());
        assert_eq!(completion_text(0xd4), "insufficient privilege level (0xD4)");
    }
}
