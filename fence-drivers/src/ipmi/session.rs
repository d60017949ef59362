//! One RMCP+ session with a BMC, async on tokio: cipher suite negotiation
//! (17, falling back to 3), RAKP 1-4, Set Session Privilege Level, then
//! authenticated and encrypted requests with retransmission and inbound
//! sequence-number checks; Close Session at the end.

use std::net::SocketAddr;
use std::time::Duration;

use ipmi_rs_core::app::auth::PrivilegeLevel;
use ipmi_rs_core::connection::{IpmiCommand, Message};
use tokio::net::UdpSocket;

use super::commands::{CloseSession, CommandError, SetSessionPrivilegeLevel, completion_text};
use super::crypto::{CipherSuite, Handshake, SessionKeys};
use super::wire::{self, IpmiResponse};
use crate::secret::Secret;
use crate::udp;

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub user: String,
    pub password: Secret,
    /// The BMC key K_G, if the BMC has one set.
    pub kg: Option<Secret>,
    pub privilege: PrivilegeLevel,
    /// Suites to propose, in order.
    pub suites: Vec<CipherSuite>,
    /// Wait for one answer.
    pub timeout: Duration,
    /// Sends after the first one (as ipmitool's `-R`).
    pub retries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error("no answer from the BMC at {addr} after {tries} tries of {timeout:?}{note}")]
    NoAnswer {
        addr: SocketAddr,
        tries: u32,
        timeout: Duration,
        note: &'static str,
    },
    #[error("the BMC supports none of the cipher suites proposed ({tried}): {reason}")]
    UnsupportedSuite { tried: String, reason: String },
    #[error("the BMC does not accept user {user:?}: {reason}")]
    WrongUser { user: String, reason: String },
    #[error(
        "authentication failed for user {user:?}: wrong password (the BMC's RAKP 2 key exchange code does not match ours)"
    )]
    WrongPassword { user: String },
    #[error(
        "authentication failed: wrong BMC key (K_G) (the BMC's RAKP 4 check value does not match ours)"
    )]
    WrongKg,
    #[error("user {user:?} may not act at {level:?} privilege: {reason}")]
    Privilege {
        user: String,
        level: PrivilegeLevel,
        reason: String,
    },
    #[error("the BMC refused the session: {0}")]
    SessionRefused(String),
    #[error("{command} answered {reason}")]
    Completion {
        command: &'static str,
        code: u8,
        reason: String,
    },
    #[error("{command}: {source}")]
    BadResponse {
        command: &'static str,
        source: CommandError,
    },
    #[error("UDP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Inbound session sequence numbers: each accepted once, within a window
/// of 16 behind the highest seen (§6.12.13 asks for a sliding window).
#[derive(Debug, Default)]
struct SeqWindow {
    high: u32,
    seen: u16,
}

impl SeqWindow {
    fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if self.high == 0 || seq > self.high {
            let shift = seq.wrapping_sub(self.high);
            if self.high != 0 && shift > 32 {
                return false;
            }
            self.seen = if shift >= 16 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.high = seq;
            return true;
        }
        let back = self.high - seq;
        if back >= 16 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// [`udp::exchange`], its silence as [`IpmiError::NoAnswer`].
async fn exchange<T>(
    sock: &UdpSocket,
    addr: SocketAddr,
    timeout: Duration,
    tries: u32,
    make: impl FnMut() -> Vec<u8>,
    accept: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, IpmiError> {
    udp::exchange(sock, timeout, tries, make, accept)
        .await?
        .map_err(|e| IpmiError::NoAnswer {
            addr,
            tries: tries.max(1),
            timeout,
            note: if e.refused {
                " (port unreachable: nothing listens there)"
            } else {
                ""
            },
        })
}

/// An established session.
#[derive(Debug)]
pub struct Session {
    sock: UdpSocket,
    addr: SocketAddr,
    keys: SessionKeys,
    bmc_sid: u32,
    console_sid: u32,
    out_seq: u32,
    rq_seq: u8,
    window: SeqWindow,
}

impl Session {
    pub fn suite(&self) -> CipherSuite {
        self.keys.suite
    }

    /// Negotiate a suite, authenticate, and raise the privilege level.
    pub async fn open(t: &Target) -> Result<Session, IpmiError> {
        let sock = udp::connect(t.addr).await?;
        let console_sid = rand::random::<u32>() | 1;
        let tries = t.retries + 1;
        let mut refusals = Vec::new();
        for (i, &suite) in t.suites.iter().enumerate() {
            let tag = i as u8;
            let req = wire::build(
                wire::PT_OPEN_REQ,
                0,
                0,
                &wire::open_session_request(tag, console_sid, suite),
                None,
            );
            let resp = exchange(
                &sock,
                t.addr,
                t.timeout,
                tries,
                || req.clone(),
                |b| {
                    let p = wire::parse(b, None).ok()?;
                    let r = wire::open_session_response(&p.payload).ok()?;
                    (p.payload_type == wire::PT_OPEN_RESP && r.tag == tag).then_some(r)
                },
            )
            .await?;
            if resp.status != 0 {
                if wire::suite_refused(resp.status) {
                    refusals.push(format!(
                        "{}: {}",
                        suite.id(),
                        wire::status_text(resp.status)
                    ));
                    continue;
                }
                return Err(IpmiError::SessionRefused(
                    wire::status_text(resp.status).into(),
                ));
            }
            let want = (
                suite.auth_alg(),
                suite.integrity_alg(),
                suite.confidentiality_alg(),
            );
            if resp.algorithms != want || resp.console_sid != console_sid {
                refusals.push(format!(
                    "{}: the BMC answered with other algorithms {:?}",
                    suite.id(),
                    resp.algorithms
                ));
                continue;
            }
            return Self::authenticate(sock, t, suite, console_sid, resp.bmc_sid, tag).await;
        }
        Err(IpmiError::UnsupportedSuite {
            tried: t
                .suites
                .iter()
                .map(|s| s.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            reason: refusals.join("; "),
        })
    }

    async fn authenticate(
        sock: UdpSocket,
        t: &Target,
        suite: CipherSuite,
        console_sid: u32,
        bmc_sid: u32,
        tag: u8,
    ) -> Result<Session, IpmiError> {
        let tries = t.retries + 1;
        let console_rand: [u8; 16] = rand::random();
        // Name-only lookup (bit 4), as ipmitool asks by default.
        let role = 0x10 | u8::from(t.privilege);
        let user = t.user.as_bytes();
        let m1 = wire::build(
            wire::PT_RAKP1,
            0,
            0,
            &wire::rakp1(tag, bmc_sid, &console_rand, role, user),
            None,
        );
        let r2 = exchange(
            &sock,
            t.addr,
            t.timeout,
            tries,
            || m1.clone(),
            |b| {
                let p = wire::parse(b, None).ok()?;
                let r = wire::rakp2(&p.payload).ok()?;
                (p.payload_type == wire::PT_RAKP2
                    && r.tag == tag
                    && (r.status != 0 || r.console_sid == console_sid))
                    .then_some(r)
            },
        )
        .await?;
        match r2.status {
            0 => {}
            0x0d => {
                return Err(IpmiError::WrongUser {
                    user: t.user.clone(),
                    reason: wire::status_text(r2.status).into(),
                });
            }
            0x09 | 0x0a => {
                return Err(IpmiError::Privilege {
                    user: t.user.clone(),
                    level: t.privilege,
                    reason: wire::status_text(r2.status).into(),
                });
            }
            s => return Err(IpmiError::SessionRefused(wire::status_text(s).into())),
        }
        let hs = Handshake {
            suite,
            password: t.password.as_bytes(),
            kg: t.kg.as_ref().map(Secret::as_bytes),
            console_sid,
            bmc_sid,
            console_rand,
            bmc_rand: r2.bmc_rand,
            bmc_guid: r2.bmc_guid,
            role,
            username: user,
        };
        if r2.code != hs.rakp2_code() {
            return Err(IpmiError::WrongPassword {
                user: t.user.clone(),
            });
        }
        let m3 = wire::build(
            wire::PT_RAKP3,
            0,
            0,
            &wire::rakp3(tag, bmc_sid, &hs.rakp3_code()),
            None,
        );
        let r4 = exchange(
            &sock,
            t.addr,
            t.timeout,
            tries,
            || m3.clone(),
            |b| {
                let p = wire::parse(b, None).ok()?;
                let r = wire::rakp4(&p.payload).ok()?;
                (p.payload_type == wire::PT_RAKP4 && r.tag == tag).then_some(r)
            },
        )
        .await?;
        if r4.status != 0 {
            return Err(if wire::credentials_refused(r4.status) {
                IpmiError::WrongPassword {
                    user: t.user.clone(),
                }
            } else {
                IpmiError::SessionRefused(wire::status_text(r4.status).into())
            });
        }
        let sik = hs.sik();
        if r4.console_sid != console_sid || r4.icv != hs.rakp4_icv(&sik) {
            return Err(IpmiError::WrongKg);
        }
        let mut s = Session {
            sock,
            addr: t.addr,
            keys: SessionKeys::derive(suite, &sik),
            bmc_sid,
            console_sid,
            out_seq: 0,
            rq_seq: 0,
            window: SeqWindow::default(),
        };
        // A session starts at USER privilege; power control needs more.
        match s
            .call(
                t,
                "Set Session Privilege Level",
                SetSessionPrivilegeLevel(t.privilege),
                tries,
            )
            .await
        {
            Ok(_) => Ok(s),
            Err(IpmiError::Completion {
                code: 0x80 | 0x81 | 0x82 | 0xd4,
                reason,
                ..
            }) => {
                s.close(t).await;
                Err(IpmiError::Privilege {
                    user: t.user.clone(),
                    level: t.privilege,
                    reason,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// One request, sent up to `tries` times; the answer must be
    /// authentic, decryptable, fresh and match the request.
    pub async fn request(
        &mut self,
        timeout: Duration,
        message: &Message,
        tries: u32,
    ) -> Result<IpmiResponse, IpmiError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let rq_seq = self.rq_seq;
        let (netfn, cmd) = (message.netfn_raw(), message.cmd());
        let msg = wire::ipmi_request(netfn, cmd, rq_seq, message.data());
        let keys = &self.keys;
        let (bmc_sid, console_sid) = (self.bmc_sid, self.console_sid);
        let out_seq = &mut self.out_seq;
        let window = &mut self.window;
        exchange(
            &self.sock,
            self.addr,
            timeout,
            tries,
            || {
                // Each send, retransmissions too, takes a new sequence number.
                *out_seq = out_seq.wrapping_add(1).max(1);
                wire::build(
                    wire::PT_IPMI,
                    bmc_sid,
                    *out_seq,
                    &msg,
                    Some((keys, rand::random())),
                )
            },
            |b| {
                let p = wire::parse(b, Some(keys)).ok()?;
                if p.payload_type != wire::PT_IPMI || p.session_id != console_sid {
                    return None;
                }
                if !window.accept(p.seq) {
                    return None;
                }
                let r = wire::ipmi_response(&p.payload).ok()?;
                (r.netfn == netfn | 1 && r.cmd == cmd && r.rq_seq == rq_seq).then_some(r)
            },
        )
        .await
    }

    /// Run an `ipmi-rs-core` command; a completion code other than 0 is an
    /// error naming the command.
    pub async fn call<C>(
        &mut self,
        t: &Target,
        name: &'static str,
        command: C,
        tries: u32,
    ) -> Result<C::Output, IpmiError>
    where
        C: IpmiCommand<Error = CommandError>,
    {
        let message: Message = command.into();
        let r = self.request(t.timeout, &message, tries).await?;
        if r.completion != 0 {
            return Err(IpmiError::Completion {
                command: name,
                code: r.completion,
                reason: completion_text(r.completion),
            });
        }
        C::parse_success_response(&r.data).map_err(|source| IpmiError::BadResponse {
            command: name,
            source,
        })
    }

    /// Close Session, once, best effort (the BMC times it out otherwise).
    pub async fn close(mut self, t: &Target) {
        let timeout = t.timeout.min(Duration::from_millis(300));
        let m: Message = CloseSession(self.bmc_sid).into();
        let _ = self.request(timeout, &m, 1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_window_accepts_each_number_once() {
        let mut w = SeqWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(3));
        assert!(w.accept(2), "late but inside the window");
        assert!(!w.accept(2));
        assert!(w.accept(30));
        assert!(!w.accept(3), "too old");
        assert!(!w.accept(100), "too far ahead");
        assert!(w.accept(31));
    }
}
