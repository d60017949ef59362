//! `snmp`: native SNMP power switch, APC PowerNet-MIB outlets (rPDU, or the
//! older MasterSwitch `sPDUOutletCtl`), over SNMP v2c (community) or v3
//! USM authPriv (HMAC-SHA-96 + AES-128-CFB). Outlets by number or by name.
//!
//! - [`ber`]: the BER subset, never panics on input.
//! - [`message`]: PDUs, v2c and v3 messages, key localization.
//!
//! Warm: the UDP socket, the discovered v3 engine and its localized keys
//! and the outlet-name table are kept. A PDU that rebooted (new engine
//! boots/time, or a new engine ID) is rediscovered transparently.

pub mod ber;
pub mod message;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::time::Instant;

use self::message::{Engine, Pdu, UsmKeys, Value};
use crate::params::{Params, param};
use crate::secret::Secret;
use crate::udp;
use crate::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "snmp".into(),
        description: "Native SNMP power switch (APC PowerNet-MIB outlets), v2c or v3 authPriv; \
                      the fence target's port is the outlet number or name."
            .into(),
        parameters: vec![
            param("ip", true, false, "PDU address or host name"),
            param("ipport", false, false, "UDP port (default 161)"),
            param("version", false, false, "\"2c\" (default) or \"3\""),
            param("community", false, true, "v2c write community (a secret)"),
            param("username", false, false, "v3 USM user"),
            param(
                "auth_password",
                false,
                true,
                "v3 SHA authentication pass phrase (a secret)",
            ),
            param(
                "priv_password",
                false,
                true,
                "v3 AES privacy pass phrase (a secret)",
            ),
            param(
                "mib",
                false,
                false,
                "\"rpdu\" (default: rPDUOutletControl/Status) or \"masterswitch\" (sPDUOutletCtl)",
            ),
            param("timeout", false, false, "wait for one answer (default 1s)"),
            param(
                "retries",
                false,
                false,
                "resends after the first try (default 2)",
            ),
        ],
        confirms_power_state: true,
    }
}

const APC: [u32; 7] = [1, 3, 6, 1, 4, 1, 318];
const SYS_OBJECT_ID: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 2, 0];

/// Columns of the outlet table: (control, state, name).
#[derive(Debug, Clone, Copy)]
enum Mib {
    /// rPDUOutletControlOutletCommand, rPDUOutletStatusOutletState,
    /// rPDUOutletControlOutletName.
    Rpdu,
    /// sPDUOutletCtl (read and written), sPDUOutletCtlName.
    MasterSwitch,
}

impl Mib {
    fn column(self, what: &str) -> Vec<u32> {
        let tail: &[u32] = match (self, what) {
            (Mib::Rpdu, "control") => &[1, 1, 12, 3, 3, 1, 1, 4],
            (Mib::Rpdu, "state") => &[1, 1, 12, 3, 5, 1, 1, 4],
            (Mib::Rpdu, _) => &[1, 1, 12, 3, 3, 1, 1, 2],
            (Mib::MasterSwitch, "name") => &[1, 1, 4, 4, 2, 1, 4],
            (Mib::MasterSwitch, _) => &[1, 1, 4, 4, 2, 1, 3],
        };
        APC.iter().chain(tail).copied().collect()
    }
}

#[derive(Debug)]
enum Auth {
    V2c(Secret),
    V3 {
        user: String,
        auth: Secret,
        privacy: Secret,
    },
}

/// What is kept between calls.
#[derive(Debug, Default)]
struct Warm {
    sock: Option<UdpSocket>,
    /// v3: the engine as discovered, when, and the keys localized to it.
    engine: Option<(Engine, Instant, UsmKeys)>,
    names: BTreeMap<String, u32>,
    next_id: i32,
    salt: u64,
}

#[derive(Debug)]
pub struct SnmpDriver {
    name: String,
    addr: SocketAddr,
    auth: Auth,
    mib: Mib,
    timeout: Duration,
    retries: u32,
    warm: Mutex<Warm>,
}

/// A v3 answer: the response, or a Report and the engine state it gave.
type V3Answer = Result<Pdu, (message::Report, Engine)>;

impl SnmpDriver {
    pub fn from_params(name: impl Into<String>, p: &Params) -> Result<Self, FenceError> {
        p.check(&metadata())?;
        let addr = p.socket_addr(161)?;
        let auth = match p.choice("version", &["2c", "3"], "2c")? {
            "3" => {
                let user = p.get("username").unwrap_or_default();
                if user.is_empty() {
                    return Err(FenceError::InvalidParameter {
                        key: "username".into(),
                        reason: "required with version = \"3\"".into(),
                    });
                }
                let auth = p.required_secret("auth_password")?;
                let privacy = p.required_secret("priv_password")?;
                for (k, s) in [("auth_password", &auth), ("priv_password", &privacy)] {
                    if s.as_bytes().len() < 8 {
                        return Err(FenceError::InvalidParameter {
                            key: format!("secrets.{k}"),
                            reason: "USM pass phrases have at least 8 characters".into(),
                        });
                    }
                }
                Auth::V3 {
                    user: user.to_string(),
                    auth,
                    privacy,
                }
            }
            _ => Auth::V2c(p.required_secret("community")?),
        };
        let mib = match p.choice("mib", &["rpdu", "masterswitch"], "rpdu")? {
            "masterswitch" => Mib::MasterSwitch,
            _ => Mib::Rpdu,
        };
        Ok(SnmpDriver {
            name: name.into(),
            addr,
            auth,
            mib,
            timeout: p.duration("timeout", Duration::from_secs(1))?,
            retries: p.parse("retries", 2)?,
            warm: Mutex::new(Warm {
                next_id: (rand::random::<u32>() >> 2) as i32,
                salt: rand::random(),
                ..Warm::default()
            }),
        })
    }

    fn unreachable(&self, why: &str) -> FenceError {
        FenceError::Unreachable {
            device: self.name.clone(),
            reason: format!(
                "no answer from {} after {} tries of {:?}{why}",
                self.addr,
                self.retries + 1,
                self.timeout
            ),
        }
    }

    /// The warm socket, connected on first use.
    async fn socket<'a>(
        &self,
        sock: &'a mut Option<UdpSocket>,
    ) -> Result<&'a UdpSocket, FenceError> {
        if sock.is_none() {
            *sock = Some(
                udp::connect(self.addr)
                    .await
                    .map_err(|e| self.unreachable(&format!(": {e}")))?,
            );
        }
        Ok(sock.as_ref().expect("connected above"))
    }

    /// Send until an answer `accept` takes (`Some`), or give up (`None`).
    /// `make` is given the request id to use; `accept`, the id of the last
    /// request sent.
    async fn exchange<T>(
        &self,
        sock: &UdpSocket,
        next_id: &mut i32,
        mut make: impl FnMut(i32) -> Vec<u8>,
        accept: impl Fn(&[u8], i32) -> Option<T>,
    ) -> Result<Option<T>, FenceError> {
        let sent = AtomicI32::new(0);
        let r = udp::exchange(
            sock,
            self.timeout,
            self.retries + 1,
            || {
                *next_id = next_id.wrapping_add(1) & 0x3fff_ffff;
                sent.store(*next_id, Ordering::Relaxed);
                make(*next_id)
            },
            |b| accept(b, sent.load(Ordering::Relaxed)),
        )
        .await
        .map_err(|e| self.unreachable(&format!(": {e}")))?;
        Ok(r.ok())
    }

    /// One request PDU (`tag`) with `varbinds`; the answer's PDU.
    async fn request(&self, tag: u8, varbinds: &[(&[u32], Vec<u8>)]) -> Result<Pdu, FenceError> {
        let mut guard = self.warm.lock().await;
        let w = &mut *guard;
        match &self.auth {
            Auth::V2c(community) => {
                let sock = self.socket(&mut w.sock).await?;
                let answer = self
                    .exchange(
                        sock,
                        &mut w.next_id,
                        |id| message::v2c(community.as_bytes(), &message::pdu(tag, id, varbinds)),
                        |b, id| {
                            let p = message::parse_v2c(b).ok()?;
                            (p.request_id == id && p.tag == message::RESPONSE).then_some(p)
                        },
                    )
                    .await?;
                answer.ok_or_else(|| {
                    self.unreachable(
                        " (or the community is wrong: agents drop such requests silently)",
                    )
                })
            }
            Auth::V3 {
                user,
                auth,
                privacy,
            } => {
                // At most: discover, time-window resync, engine change.
                for _ in 0..3 {
                    if w.engine.is_none() {
                        self.discover(w, user, auth, privacy).await?;
                    }
                    let sock = self.socket(&mut w.sock).await?;
                    let Some((engine, at, keys)) = w.engine.as_ref() else {
                        continue;
                    };
                    let salt = &mut w.salt;
                    let answer = self
                        .exchange(
                            sock,
                            &mut w.next_id,
                            |id| {
                                *salt = salt.wrapping_add(1);
                                let mut e = engine.clone();
                                e.time += at.elapsed().as_secs() as i64;
                                let p = message::pdu(tag, id, varbinds);
                                message::v3_auth_priv(id, &e, keys, *salt, &p)
                            },
                            |b, id| -> Option<V3Answer> {
                                // A report about our credentials (wrong digest)
                                // is not authenticated: read it without keys.
                                let r = message::parse_v3(b, Some(keys))
                                    .or_else(|_| message::parse_v3(b, None))
                                    .ok()
                                    .filter(|r| r.msg_id == id)?;
                                match r.pdu.tag {
                                    message::RESPONSE if r.authentic => Some(Ok(r.pdu)),
                                    message::REPORT => {
                                        Some(Err((message::Report::of(&r.pdu), r.engine)))
                                    }
                                    _ => None,
                                }
                            },
                        )
                        .await?;
                    match answer {
                        Some(Ok(p)) => return Ok(p),
                        None => {
                            w.engine = None;
                            return Err(self.unreachable(""));
                        }
                        Some(Err((message::Report::NotInTimeWindow, e))) => {
                            if let Some((engine, at, _)) = w.engine.as_mut()
                                && engine.id == e.id
                            {
                                engine.boots = e.boots;
                                engine.time = e.time;
                                *at = Instant::now();
                                continue;
                            }
                            w.engine = None;
                        }
                        Some(Err((message::Report::UnknownEngineId, _))) => w.engine = None,
                        Some(Err((what, _))) => {
                            return Err(FenceError::Credentials {
                                device: self.name.clone(),
                                reason: format!("SNMPv3 user {user:?}: {what}"),
                            });
                        }
                    }
                }
                Err(FenceError::Device {
                    device: self.name.clone(),
                    reason: "SNMPv3 engine keeps changing; giving up".into(),
                })
            }
        }
    }

    async fn discover(
        &self,
        w: &mut Warm,
        user: &str,
        auth: &Secret,
        privacy: &Secret,
    ) -> Result<(), FenceError> {
        let sock = self.socket(&mut w.sock).await?;
        let engine = self
            .exchange(
                sock,
                &mut w.next_id,
                |id| message::v3_discovery(id, id),
                |b, id| {
                    let r = message::parse_v3(b, None).ok()?;
                    (r.msg_id == id && !r.engine.id.is_empty()).then_some(r.engine)
                },
            )
            .await?
            .ok_or_else(|| self.unreachable(" (SNMPv3 engine discovery)"))?;
        let keys = UsmKeys::new(
            user.as_bytes(),
            auth.as_bytes(),
            privacy.as_bytes(),
            &engine.id,
        );
        tracing::debug!(device = %self.name, engine.boots = engine.boots, "SNMPv3 engine discovered");
        w.engine = Some((engine, Instant::now(), keys));
        Ok(())
    }

    fn refused(&self, what: &str, p: &Pdu) -> FenceError {
        let status = match p.error_status {
            2 => "noSuchName",
            4 => "readOnly",
            5 => "genErr",
            6 => "noAccess (a read-only community or user?)",
            7 => "wrongType",
            10 => "wrongValue",
            16 => "authorizationError",
            17 => "notWritable",
            _ => "error",
        };
        FenceError::Refused {
            device: self.name.clone(),
            reason: format!("{what}: {status} (error-status {})", p.error_status),
        }
    }

    /// The outlet index of a port given by number or name.
    async fn outlet(&self, port: &str) -> Result<u32, FenceError> {
        if let Ok(n) = port.parse::<u32>()
            && n > 0
        {
            return Ok(n);
        }
        if let Some(n) = self.warm.lock().await.names.get(port) {
            return Ok(*n);
        }
        let names = self.walk_names().await?;
        let found = names.iter().find(|(_, n)| n == port).map(|(i, _)| *i);
        self.warm.lock().await.names = names.into_iter().map(|(i, n)| (n, i)).collect();
        found.ok_or_else(|| FenceError::NoSuchPort {
            device: self.name.clone(),
            port: port.into(),
        })
    }

    async fn walk_names(&self) -> Result<Vec<(u32, String)>, FenceError> {
        let col = self.mib.column("name");
        let mut out = Vec::new();
        let mut cur = col.clone();
        for _ in 0..1024 {
            let p = self
                .request(message::GET_NEXT, &[(&cur, ber::null())])
                .await?;
            let Some((oid, v)) = p.varbinds.into_iter().next() else {
                break;
            };
            if p.error_status != 0 || !oid.starts_with(&col) || oid.len() != col.len() + 1 {
                break;
            }
            if let Value::Str(s) = v {
                out.push((oid[col.len()], String::from_utf8_lossy(&s).into_owned()));
            }
            cur = oid;
        }
        Ok(out)
    }

    async fn set_outlet(&self, port: &str, command: i64, what: &str) -> Result<(), FenceError> {
        let n = self.outlet(port).await?;
        let mut oid = self.mib.column("control");
        oid.push(n);
        let p = self
            .request(message::SET, &[(&oid, ber::int(command))])
            .await?;
        if p.error_status != 0 {
            return Err(self.refused(what, &p));
        }
        Ok(())
    }
}

#[async_trait]
impl FenceDriver for SnmpDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        metadata()
    }

    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        let n = self.outlet(port).await?;
        let mut oid = self.mib.column("state");
        oid.push(n);
        let p = self.request(message::GET, &[(&oid, ber::null())]).await?;
        if p.error_status != 0 {
            return Err(self.refused("outlet state", &p));
        }
        match p.varbinds.first() {
            Some((_, Value::Int(1))) => Ok(PowerState::On),
            Some((_, Value::Int(2))) => Ok(PowerState::Off),
            Some((_, Value::Missing(_))) => Err(FenceError::NoSuchPort {
                device: self.name.clone(),
                port: port.into(),
            }),
            _ => Ok(PowerState::Unknown),
        }
    }

    async fn on(&self, port: &str) -> Result<(), FenceError> {
        self.set_outlet(port, 1, "outlet on").await
    }

    async fn off(&self, port: &str) -> Result<(), FenceError> {
        self.set_outlet(port, 2, "outlet off").await
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let names = self.walk_names().await?;
        let mut out = Vec::new();
        for (i, name) in names {
            out.push(Port {
                state: self.status(&i.to_string()).await?,
                id: format!("{i} {name}"),
            });
        }
        Ok(out)
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        let p = self
            .request(message::GET, &[(&SYS_OBJECT_ID, ber::null())])
            .await?;
        match p.varbinds.first() {
            Some((_, Value::Oid(o))) if o.starts_with(&APC) => Ok(()),
            Some((_, v)) => Err(FenceError::Device {
                device: self.name.clone(),
                reason: format!("sysObjectID is {v:?}, not an APC device"),
            }),
            None => Err(FenceError::Device {
                device: self.name.clone(),
                reason: "empty answer to sysObjectID".into(),
            }),
        }
    }

    async fn close(&self) {
        let mut w = self.warm.lock().await;
        w.sock = None;
        w.engine = None;
    }
}
