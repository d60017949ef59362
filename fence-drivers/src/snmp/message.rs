//! SNMP messages: PDUs, v2c community messages (RFC 3416) and v3 USM
//! messages with HMAC-SHA-96 authentication and AES-128-CFB privacy
//! (RFC 3414, RFC 3826). Pure: bytes in, bytes out.

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use super::ber::{self, BerError, Reader};

pub const GET: u8 = 0xa0;
pub const GET_NEXT: u8 = 0xa1;
pub const RESPONSE: u8 = 0xa2;
pub const SET: u8 = 0xa3;
pub const REPORT: u8 = 0xa8;

/// A varbind's value as the agent sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(Vec<u8>),
    Oid(Vec<u32>),
    Null,
    /// noSuchObject (0x80), noSuchInstance (0x81), endOfMibView (0x82).
    Missing(u8),
    Other(u8),
}

/// A decoded PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub tag: u8,
    pub request_id: i32,
    pub error_status: i64,
    pub error_index: i64,
    pub varbinds: Vec<(Vec<u32>, Value)>,
}

/// An outgoing varbind: OID and already encoded value.
pub fn pdu(tag: u8, request_id: i32, varbinds: &[(&[u32], Vec<u8>)]) -> Vec<u8> {
    let vbs: Vec<Vec<u8>> = varbinds
        .iter()
        .map(|(o, v)| ber::seq(ber::SEQUENCE, &[&ber::oid(o), v]))
        .collect();
    let list = ber::tlv(ber::SEQUENCE, &vbs.concat());
    ber::seq(
        tag,
        &[
            &ber::int(request_id as i64),
            &ber::int(0),
            &ber::int(0),
            &list,
        ],
    )
}

pub fn parse_pdu(r: &mut Reader<'_>) -> Result<Pdu, BerError> {
    let (tag, body) = r.any()?;
    let mut b = Reader::new(body);
    let request_id = b.int()? as i32;
    let error_status = b.int()?;
    let error_index = b.int()?;
    let mut list = b.seq(ber::SEQUENCE)?;
    let mut varbinds = Vec::new();
    while !list.is_empty() {
        let mut vb = list.seq(ber::SEQUENCE)?;
        let oid = ber::decode_oid(vb.expect(ber::OID)?)?;
        let (t, c) = vb.any()?;
        let v = match t {
            ber::INTEGER | 0x41 | 0x42 | 0x43 => Value::Int(ber::decode_int(c).unwrap_or(0)),
            ber::OCTETS => Value::Str(c.to_vec()),
            ber::OID => Value::Oid(ber::decode_oid(c)?),
            ber::NULL => Value::Null,
            0x80..=0x82 => Value::Missing(t),
            other => Value::Other(other),
        };
        varbinds.push((oid, v));
    }
    Ok(Pdu {
        tag,
        request_id,
        error_status,
        error_index,
        varbinds,
    })
}

/// SNMPv2c message.
pub fn v2c(community: &[u8], pdu: &[u8]) -> Vec<u8> {
    ber::seq(ber::SEQUENCE, &[&ber::int(1), &ber::octets(community), pdu])
}

pub fn parse_v2c(buf: &[u8]) -> Result<Pdu, BerError> {
    let mut m = Reader::new(buf).seq(ber::SEQUENCE)?;
    if m.int()? != 1 {
        return Err(BerError::Integer);
    }
    m.octets()?;
    parse_pdu(&mut m)
}

/// RFC 3414 A.2.2: a password localized to an engine with SHA-1.
pub fn localize_sha1(password: &[u8], engine_id: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    if !password.is_empty() {
        let mut buf = [0u8; 64];
        let mut idx = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in buf.iter_mut() {
                *b = password[idx % password.len()];
                idx += 1;
            }
            h.update(buf);
        }
    }
    let ku = h.finalize();
    let mut h = Sha1::new();
    h.update(ku);
    h.update(engine_id);
    h.update(ku);
    h.finalize().into()
}

/// A USM user's keys, localized to one engine.
#[derive(Clone)]
pub struct UsmKeys {
    pub user: Vec<u8>,
    auth: [u8; 20],
    privacy: [u8; 16],
}

impl std::fmt::Debug for UsmKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsmKeys({:?}, ***)", String::from_utf8_lossy(&self.user))
    }
}

impl UsmKeys {
    pub fn new(user: &[u8], auth_pass: &[u8], priv_pass: &[u8], engine_id: &[u8]) -> Self {
        let mut privacy = [0u8; 16];
        privacy.copy_from_slice(&localize_sha1(priv_pass, engine_id)[..16]);
        UsmKeys {
            user: user.to_vec(),
            auth: localize_sha1(auth_pass, engine_id),
            privacy,
        }
    }

    fn mac(&self, msg: &[u8]) -> [u8; 12] {
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&self.auth).expect("any key length");
        m.update(msg);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&full[..12]);
        out
    }
}

/// The engine a v3 agent runs, as discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub id: Vec<u8>,
    pub boots: i64,
    pub time: i64,
}

const FLAG_AUTH: u8 = 0x01;
const FLAG_PRIV: u8 = 0x02;
const FLAG_REPORTABLE: u8 = 0x04;

fn security_params(engine: &Engine, user: &[u8], auth: &[u8], salt: &[u8]) -> Vec<u8> {
    ber::seq(
        ber::SEQUENCE,
        &[
            &ber::octets(&engine.id),
            &ber::int(engine.boots),
            &ber::int(engine.time),
            &ber::octets(user),
            &ber::octets(auth),
            &ber::octets(salt),
        ],
    )
}

fn v3_message(msg_id: i32, flags: u8, secparams: &[u8], data: &[u8]) -> Vec<u8> {
    let header = ber::seq(
        ber::SEQUENCE,
        &[
            &ber::int(msg_id as i64),
            &ber::int(65507),
            &ber::octets(&[flags]),
            &ber::int(3),
        ],
    );
    ber::seq(
        ber::SEQUENCE,
        &[&ber::int(3), &header, &ber::octets(secparams), data],
    )
}

/// Engine discovery (RFC 3414 §4): an empty, unauthenticated GET.
pub fn v3_discovery(msg_id: i32, request_id: i32) -> Vec<u8> {
    let engine = Engine {
        id: vec![],
        boots: 0,
        time: 0,
    };
    let scoped = ber::seq(
        ber::SEQUENCE,
        &[
            &ber::octets(&[]),
            &ber::octets(&[]),
            &pdu(GET, request_id, &[]),
        ],
    );
    v3_message(
        msg_id,
        FLAG_REPORTABLE,
        &security_params(&engine, &[], &[], &[]),
        &scoped,
    )
}

/// An authPriv request.
pub fn v3_auth_priv(
    msg_id: i32,
    engine: &Engine,
    keys: &UsmKeys,
    salt: u64,
    pdu: &[u8],
) -> Vec<u8> {
    let scoped = ber::seq(
        ber::SEQUENCE,
        &[&ber::octets(&engine.id), &ber::octets(&[]), pdu],
    );
    let salt = salt.to_be_bytes();
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(engine.boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(engine.time as u32).to_be_bytes());
    iv[8..].copy_from_slice(&salt);
    let mut enc = scoped;
    cfb_mode::Encryptor::<Aes128>::new(&keys.privacy.into(), &iv.into()).encrypt(&mut enc);
    let sp = security_params(engine, &keys.user, &[0u8; 12], &salt);
    let mut msg = v3_message(
        msg_id,
        FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE,
        &sp,
        &ber::octets(&enc),
    );
    if let Ok(range) = auth_params_range(&msg) {
        let mac = keys.mac(&msg);
        msg[range].copy_from_slice(&mac);
    }
    msg
}

/// Where the authentication parameters lie in a v3 message.
fn auth_params_range(msg: &[u8]) -> Result<std::ops::Range<usize>, BerError> {
    let mut m = Reader::new(msg).seq(ber::SEQUENCE)?;
    m.int()?;
    m.seq(ber::SEQUENCE)?;
    let sp = m.octets()?;
    let mut s = Reader::new(sp).seq(ber::SEQUENCE)?;
    s.octets()?;
    s.int()?;
    s.int()?;
    s.octets()?;
    let auth = s.octets()?;
    let start = auth.as_ptr() as usize - msg.as_ptr() as usize;
    Ok(start..start + auth.len())
}

/// A decoded v3 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Reply {
    pub msg_id: i32,
    pub engine: Engine,
    /// The answer was authenticated with our key.
    pub authentic: bool,
    pub pdu: Pdu,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V3Error {
    #[error("{0}")]
    Ber(#[from] BerError),
    #[error("authentication code does not match")]
    BadMac,
    #[error("encrypted answer but no keys")]
    NoKeys,
}

/// Decode (and, with `keys`, verify and decrypt) a v3 message.
pub fn parse_v3(buf: &[u8], keys: Option<&UsmKeys>) -> Result<V3Reply, V3Error> {
    let mut m = Reader::new(buf).seq(ber::SEQUENCE)?;
    if m.int()? != 3 {
        return Err(BerError::Integer.into());
    }
    let mut h = m.seq(ber::SEQUENCE)?;
    let msg_id = h.int()? as i32;
    h.int()?;
    let flags = h.octets()?.first().copied().unwrap_or(0);
    let sp = m.octets()?;
    let mut s = Reader::new(sp).seq(ber::SEQUENCE)?;
    let engine = Engine {
        id: s.octets()?.to_vec(),
        boots: s.int()?,
        time: s.int()?,
    };
    s.octets()?;
    let mac = s.octets()?.to_vec();
    let salt = s.octets()?.to_vec();
    let mut authentic = false;
    if flags & FLAG_AUTH != 0 {
        let k = keys.ok_or(V3Error::NoKeys)?;
        let range = auth_params_range(buf)?;
        let mut zeroed = buf.to_vec();
        zeroed[range].fill(0);
        if mac.len() != 12 || k.mac(&zeroed)[..] != mac[..] {
            return Err(V3Error::BadMac);
        }
        authentic = true;
    }
    let scoped: Vec<u8> = if flags & FLAG_PRIV != 0 {
        let k = keys.ok_or(V3Error::NoKeys)?;
        if salt.len() != 8 {
            return Err(BerError::Length.into());
        }
        let mut iv = [0u8; 16];
        iv[..4].copy_from_slice(&(engine.boots as u32).to_be_bytes());
        iv[4..8].copy_from_slice(&(engine.time as u32).to_be_bytes());
        iv[8..].copy_from_slice(&salt);
        let mut data = m.octets()?.to_vec();
        cfb_mode::Decryptor::<Aes128>::new(&k.privacy.into(), &iv.into()).decrypt(&mut data);
        data
    } else {
        let (_, c) = m.any()?;
        ber::tlv(ber::SEQUENCE, c)
    };
    let mut sc = Reader::new(&scoped).seq(ber::SEQUENCE)?;
    sc.octets()?;
    sc.octets()?;
    let pdu = parse_pdu(&mut sc)?;
    Ok(V3Reply {
        msg_id,
        engine,
        authentic,
        pdu,
    })
}

/// What a Report PDU says, from the usmStats counter it names (RFC 3414 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    UnsupportedSecurityLevel,
    NotInTimeWindow,
    UnknownUserName,
    UnknownEngineId,
    WrongDigest,
    DecryptionError,
    Other,
}

impl Report {
    pub fn of(pdu: &Pdu) -> Report {
        match pdu.varbinds.first().map(|(o, _)| o.as_slice()) {
            Some([1, 3, 6, 1, 6, 3, 15, 1, 1, n, ..]) => match n {
                1 => Report::UnsupportedSecurityLevel,
                2 => Report::NotInTimeWindow,
                3 => Report::UnknownUserName,
                4 => Report::UnknownEngineId,
                5 => Report::WrongDigest,
                6 => Report::DecryptionError,
                _ => Report::Other,
            },
            _ => Report::Other,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Report::UnsupportedSecurityLevel => "unsupported security level",
            Report::NotInTimeWindow => "not in time window",
            Report::UnknownUserName => "unknown user name",
            Report::UnknownEngineId => "unknown engine ID",
            Report::WrongDigest => "wrong digest (wrong authentication password)",
            Report::DecryptionError => "decryption error (wrong privacy password)",
            Report::Other => "a report the agent did not explain",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_hex as hex;

    #[test]
    fn rfc3414_a322_sha1_key_localization() {
        // RFC 3414 A.3.2: "maplesyrup", engine 00..02.
        let k = localize_sha1(b"maplesyrup", &hex("000000000000000000000002"));
        assert_eq!(k.to_vec(), hex("6695febc9288e36282235fc7151f128497b38f3f"));
    }

    #[test]
    fn v3_round_trip_and_tampering() {
        let engine = Engine {
            id: hex("80001f8880aabbccdd"),
            boots: 3,
            time: 1234,
        };
        let keys = UsmKeys::new(b"fence", b"authpass123", b"privpass123", &engine.id);
        let p = pdu(GET, 77, &[(&[1, 3, 6, 1, 2, 1, 1, 2, 0], ber::null())]);
        let msg = v3_auth_priv(5, &engine, &keys, 0x0102030405060708, &p);
        let r = parse_v3(&msg, Some(&keys)).unwrap();
        assert!(r.authentic);
        assert_eq!(
            (r.msg_id, r.pdu.request_id, r.engine.clone()),
            (5, 77, engine.clone())
        );
        let mut bad = msg.clone();
        let n = bad.len() - 3;
        bad[n] ^= 1;
        assert!(parse_v3(&bad, Some(&keys)).is_err());
        let other = UsmKeys::new(b"fence", b"wrongpass1", b"privpass123", &engine.id);
        assert_eq!(parse_v3(&msg, Some(&other)), Err(V3Error::BadMac));
        for n in 0..msg.len() {
            let _ = parse_v3(&msg[..n], Some(&keys));
        }
    }
}
