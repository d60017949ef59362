//! RMCP+ packets and IPMI LAN messages (IPMI 2.0 §13.6, §13.8, §13.17-13.23):
//! building and parsing, no I/O. Parsing never panics: a short or
//! malformed datagram is an error the session ignores.

use super::crypto::{CipherSuite, SessionKeys};

/// RMCP header: version 6, reserved, sequence 0xFF (no ACK), class IPMI.
const RMCP: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// Authentication type / format: RMCP+.
const AUTH_RMCPP: u8 = 0x06;
/// Session header length from the auth type to the payload length.
const SESSION_HDR: usize = 12;

pub const PT_IPMI: u8 = 0x00;
pub const PT_OPEN_REQ: u8 = 0x10;
pub const PT_OPEN_RESP: u8 = 0x11;
pub const PT_RAKP1: u8 = 0x12;
pub const PT_RAKP2: u8 = 0x13;
pub const PT_RAKP3: u8 = 0x14;
pub const PT_RAKP4: u8 = 0x15;

const ENCRYPTED: u8 = 0x80;
const AUTHENTICATED: u8 = 0x40;

/// Our software ID as requester, and the BMC's slave address.
const RQ_ADDR: u8 = 0x81;
const RS_ADDR: u8 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram too short ({0} bytes)")]
    Short(usize),
    #[error("not an RMCP+ IPMI packet")]
    NotRmcpPlus,
    #[error("payload length {0} runs past the datagram")]
    Length(usize),
    #[error("bad checksum")]
    Checksum,
    #[error("integrity check failed")]
    AuthCode,
    #[error("{0}")]
    Crypto(#[from] super::crypto::CryptoError),
}

/// A received RMCP+ packet, verified and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub payload_type: u8,
    pub session_id: u32,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// Build a packet; with `keys`, the payload is encrypted and authenticated.
pub fn build(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<(&SessionKeys, [u8; 16])>,
) -> Vec<u8> {
    let (pt, body) = match keys {
        Some((k, iv)) => (
            payload_type | ENCRYPTED | AUTHENTICATED,
            k.encrypt(payload, iv),
        ),
        None => (payload_type, payload.to_vec()),
    };
    let mut p = Vec::with_capacity(4 + SESSION_HDR + body.len() + 24);
    p.extend_from_slice(&RMCP);
    p.push(AUTH_RMCPP);
    p.push(pt);
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(body.len() as u16).to_le_bytes());
    p.extend_from_slice(&body);
    if let Some((k, _)) = keys {
        // Integrity pad so that auth type .. next header is a multiple of 4.
        let pad = (4 - (SESSION_HDR + body.len() + 2) % 4) % 4;
        p.extend(std::iter::repeat_n(0xff, pad));
        p.push(pad as u8);
        p.push(0x07);
        let code = k.auth_code(&p[4..]);
        p.extend_from_slice(&code);
    }
    p
}

/// Parse a datagram. `keys` verifies and decrypts session packets; packets
/// that claim integrity are refused without keys.
pub fn parse(buf: &[u8], keys: Option<&SessionKeys>) -> Result<Packet, WireError> {
    if buf.len() < 4 + SESSION_HDR {
        return Err(WireError::Short(buf.len()));
    }
    if buf[..4] != RMCP || buf[4] != AUTH_RMCPP {
        return Err(WireError::NotRmcpPlus);
    }
    let pt = buf[5];
    let session_id = u32::from_le_bytes([buf[6], buf[7], buf[8], buf[9]]);
    let seq = u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]);
    let len = u16::from_le_bytes([buf[14], buf[15]]) as usize;
    let start = 4 + SESSION_HDR;
    let end = start + len;
    if end > buf.len() {
        return Err(WireError::Length(len));
    }
    let body = &buf[start..end];
    let authenticated = pt & AUTHENTICATED != 0;
    let encrypted = pt & ENCRYPTED != 0;
    let mut payload = body.to_vec();
    match keys {
        Some(k) => {
            if !authenticated {
                return Err(WireError::AuthCode);
            }
            let n = k.suite.icv_len();
            if buf.len() < end + 2 + n {
                return Err(WireError::Short(buf.len()));
            }
            let (signed, code) = buf[4..].split_at(buf.len() - 4 - n);
            if k.auth_code(signed) != code {
                return Err(WireError::AuthCode);
            }
            if encrypted {
                payload = k.decrypt(body)?;
            }
        }
        None if authenticated || encrypted => return Err(WireError::AuthCode),
        None => {}
    }
    Ok(Packet {
        payload_type: pt & 0x3f,
        session_id,
        seq,
        payload,
    })
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI request as carried in an RMCP+ IPMI payload.
pub fn ipmi_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let head = [RS_ADDR, netfn << 2];
    let mut m = head.to_vec();
    m.push(checksum(&head));
    let body_start = m.len();
    m.extend_from_slice(&[RQ_ADDR, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    let c = checksum(&m[body_start..]);
    m.push(c);
    m
}

/// An IPMI response: who it answers and its completion code and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse {
    pub netfn: u8,
    pub cmd: u8,
    pub rq_seq: u8,
    pub completion: u8,
    pub data: Vec<u8>,
}

pub fn ipmi_response(m: &[u8]) -> Result<IpmiResponse, WireError> {
    if m.len() < 8 {
        return Err(WireError::Short(m.len()));
    }
    if checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err(WireError::Checksum);
    }
    Ok(IpmiResponse {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        completion: m[6],
        data: m[7..m.len() - 1].to_vec(),
    })
}

/// Open Session Request (§13.17) proposing exactly one suite.
pub fn open_session_request(tag: u8, console_sid: u32, suite: CipherSuite) -> Vec<u8> {
    let mut p = vec![tag, 0x00, 0x00, 0x00];
    p.extend_from_slice(&console_sid.to_le_bytes());
    for (kind, alg) in [
        (0u8, suite.auth_alg()),
        (1, suite.integrity_alg()),
        (2, suite.confidentiality_alg()),
    ] {
        p.extend_from_slice(&[kind, 0, 0, 8, alg, 0, 0, 0]);
    }
    p
}

/// Open Session Response (§13.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub status: u8,
    pub console_sid: u32,
    pub bmc_sid: u32,
    /// (authentication, integrity, confidentiality) algorithms chosen.
    pub algorithms: (u8, u8, u8),
}

pub fn open_session_response(p: &[u8]) -> Result<OpenSessionResponse, WireError> {
    if p.len() < 2 {
        return Err(WireError::Short(p.len()));
    }
    let (tag, status) = (p[0], p[1]);
    if status != 0 {
        let console_sid = if p.len() >= 8 { le32(&p[4..8]) } else { 0 };
        return Ok(OpenSessionResponse {
            tag,
            status,
            console_sid,
            bmc_sid: 0,
            algorithms: (0, 0, 0),
        });
    }
    if p.len() < 36 {
        return Err(WireError::Short(p.len()));
    }
    Ok(OpenSessionResponse {
        tag,
        status,
        console_sid: le32(&p[4..8]),
        bmc_sid: le32(&p[8..12]),
        algorithms: (p[16], p[24], p[32]),
    })
}

/// RAKP Message 1 (§13.20).
pub fn rakp1(tag: u8, bmc_sid: u32, console_rand: &[u8; 16], role: u8, user: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    p.extend_from_slice(console_rand);
    p.extend_from_slice(&[role, 0, 0, user.len() as u8]);
    p.extend_from_slice(user);
    p
}

/// RAKP Message 2 (§13.21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub status: u8,
    pub console_sid: u32,
    pub bmc_rand: [u8; 16],
    pub bmc_guid: [u8; 16],
    pub code: Vec<u8>,
}

pub fn rakp2(p: &[u8]) -> Result<Rakp2, WireError> {
    if p.len() < 2 {
        return Err(WireError::Short(p.len()));
    }
    let mut r = Rakp2 {
        tag: p[0],
        status: p[1],
        console_sid: 0,
        bmc_rand: [0; 16],
        bmc_guid: [0; 16],
        code: vec![],
    };
    if r.status != 0 {
        return Ok(r);
    }
    if p.len() < 40 {
        return Err(WireError::Short(p.len()));
    }
    r.console_sid = le32(&p[4..8]);
    r.bmc_rand.copy_from_slice(&p[8..24]);
    r.bmc_guid.copy_from_slice(&p[24..40]);
    r.code = p[40..].to_vec();
    Ok(r)
}

/// RAKP Message 3 (§13.22).
pub fn rakp3(tag: u8, bmc_sid: u32, code: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    p.extend_from_slice(code);
    p
}

/// RAKP Message 4 (§13.23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub status: u8,
    pub console_sid: u32,
    pub icv: Vec<u8>,
}

pub fn rakp4(p: &[u8]) -> Result<Rakp4, WireError> {
    if p.len() < 2 {
        return Err(WireError::Short(p.len()));
    }
    if p[1] != 0 {
        return Ok(Rakp4 {
            tag: p[0],
            status: p[1],
            console_sid: 0,
            icv: vec![],
        });
    }
    if p.len() < 8 {
        return Err(WireError::Short(p.len()));
    }
    Ok(Rakp4 {
        tag: p[0],
        status: 0,
        console_sid: le32(&p[4..8]),
        icv: p[8..].to_vec(),
    })
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// RMCP+ status codes (Table 13-15), for errors.
pub fn status_text(code: u8) -> &'static str {
    match code {
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// Does this Open Session status mean "I do not speak that suite"?
pub fn suite_refused(status: u8) -> bool {
    matches!(status, 0x03..=0x07 | 0x10 | 0x11 | 0x12)
}

/// Does this RAKP status mean bad credentials or role?
pub fn credentials_refused(status: u8) -> bool {
    matches!(status, 0x09 | 0x0a | 0x0d | 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::crypto::SessionKeys;

    #[test]
    fn session_packets_round_trip_and_tampering_is_caught() {
        for suite in [CipherSuite::S3, CipherSuite::S17] {
            let keys = SessionKeys::derive(suite, b"some sik");
            let msg = ipmi_request(0x00, 0x01, 5, &[]);
            let pkt = build(PT_IPMI, 0x1234, 7, &msg, Some((&keys, [9; 16])));
            // Auth type .. next header is a multiple of 4.
            assert_eq!((pkt.len() - 4 - suite.icv_len()) % 4, 0);
            let got = parse(&pkt, Some(&keys)).unwrap();
            assert_eq!(
                (got.session_id, got.seq, got.payload_type),
                (0x1234, 7, PT_IPMI)
            );
            assert_eq!(got.payload, msg);
            for i in 4..pkt.len() {
                let mut bad = pkt.clone();
                bad[i] ^= 0x01;
                assert!(
                    parse(&bad, Some(&keys)).is_err(),
                    "flipped byte {i} accepted"
                );
            }
            let other = SessionKeys::derive(suite, b"other sik");
            assert_eq!(parse(&pkt, Some(&other)), Err(WireError::AuthCode));
        }
    }

    #[test]
    fn parsing_never_panics_on_truncated_or_random_input() {
        let keys = SessionKeys::derive(CipherSuite::S17, b"k");
        let pkt = build(
            PT_IPMI,
            1,
            1,
            &ipmi_request(6, 0x3b, 1, &[4]),
            Some((&keys, [1; 16])),
        );
        for n in 0..pkt.len() {
            let _ = parse(&pkt[..n], Some(&keys));
            let _ = parse(&pkt[..n], None);
            let _ = ipmi_response(&pkt[..n]);
            let _ = open_session_response(&pkt[..n]);
            let _ = rakp2(&pkt[..n]);
            let _ = rakp4(&pkt[..n]);
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let n = (seed % 80) as usize;
            let buf: Vec<u8> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = parse(&buf, Some(&keys));
            let _ = ipmi_response(&buf);
            let _ = rakp2(&buf);
        }
    }

    #[test]
    fn ipmi_message_checksums() {
        // Get Chassis Status, as ipmitool frames it.
        assert_eq!(
            ipmi_request(0x00, 0x01, 1, &[]),
            vec![0x20, 0x00, 0xe0, 0x81, 0x04, 0x01, 0x7a]
        );
        let resp = [
            0x81, 0x04, 0x7b, 0x20, 0x04, 0x01, 0x00, 0x01, 0x00, 0x00, 0xda,
        ];
        let r = ipmi_response(&resp).unwrap();
        assert_eq!((r.netfn, r.cmd, r.rq_seq, r.completion), (0x01, 0x01, 1, 0));
        assert_eq!(r.data, vec![0x01, 0x00, 0x00]);
        let mut bad = resp;
        bad[7] = 0x00;
        assert_eq!(ipmi_response(&bad), Err(WireError::Checksum));
    }
}
