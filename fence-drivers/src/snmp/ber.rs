//! The BER subset SNMP uses (X.690): INTEGER, OCTET STRING, NULL, OBJECT
//! IDENTIFIER, SEQUENCE and the context-tagged PDUs. Decoding never panics.

pub const INTEGER: u8 = 0x02;
pub const OCTETS: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("truncated")]
    Truncated,
    #[error("expected tag {want:#04x}, found {found:#04x}")]
    Tag { want: u8, found: u8 },
    #[error("bad length encoding")]
    Length,
    #[error("integer out of range")]
    Integer,
    #[error("bad object identifier")]
    Oid,
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        v.push(0x80 | bytes.len() as u8);
        v.extend(bytes);
    }
    v.extend_from_slice(content);
    v
}

pub fn int(i: i64) -> Vec<u8> {
    let b = i.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
            || (b[start] == 0xff && b[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(INTEGER, &b[start..])
}

pub fn octets(s: &[u8]) -> Vec<u8> {
    tlv(OCTETS, s)
}

pub fn null() -> Vec<u8> {
    tlv(NULL, &[])
}

pub fn oid(o: &[u32]) -> Vec<u8> {
    let mut c = Vec::new();
    let (a, b) = (
        o.first().copied().unwrap_or(1),
        o.get(1).copied().unwrap_or(3),
    );
    let mut arcs = vec![a * 40 + b];
    arcs.extend(o.iter().skip(2));
    for arc in arcs {
        let mut tmp = vec![(arc & 0x7f) as u8];
        let mut x = arc >> 7;
        while x > 0 {
            tmp.push(0x80 | (x & 0x7f) as u8);
            x >>= 7;
        }
        tmp.reverse();
        c.extend(tmp);
    }
    tlv(OID, &c)
}

pub fn seq(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// Reads TLVs one after another from a buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next TLV: its tag and content.
    pub fn any(&mut self) -> Result<(u8, &'a [u8]), BerError> {
        let b = self.buf;
        if b.len() < 2 {
            return Err(BerError::Truncated);
        }
        let tag = b[0];
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            if n == 0 || n > 4 || b.len() < 2 + n {
                return Err(BerError::Length);
            }
            (
                b[2..2 + n]
                    .iter()
                    .fold(0usize, |a, x| (a << 8) | *x as usize),
                2 + n,
            )
        };
        if b.len() < hdr + len {
            return Err(BerError::Truncated);
        }
        self.buf = &b[hdr + len..];
        Ok((tag, &b[hdr..hdr + len]))
    }

    pub fn expect(&mut self, want: u8) -> Result<&'a [u8], BerError> {
        let (found, c) = self.any()?;
        if found != want {
            return Err(BerError::Tag { want, found });
        }
        Ok(c)
    }

    pub fn int(&mut self) -> Result<i64, BerError> {
        decode_int(self.expect(INTEGER)?)
    }

    pub fn octets(&mut self) -> Result<&'a [u8], BerError> {
        self.expect(OCTETS)
    }

    pub fn seq(&mut self, tag: u8) -> Result<Reader<'a>, BerError> {
        Ok(Reader::new(self.expect(tag)?))
    }
}

pub fn decode_int(c: &[u8]) -> Result<i64, BerError> {
    if c.is_empty() || c.len() > 8 {
        return Err(BerError::Integer);
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for b in c {
        v = (v << 8) | *b as i64;
    }
    Ok(v)
}

pub fn decode_oid(c: &[u8]) -> Result<Vec<u32>, BerError> {
    let mut arcs = Vec::new();
    let mut x: u64 = 0;
    for (i, b) in c.iter().enumerate() {
        x = (x << 7) | (b & 0x7f) as u64;
        if x > u32::MAX as u64 {
            return Err(BerError::Oid);
        }
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (x / 40).min(2);
                arcs.push(first as u32);
                arcs.push((x - first * 40) as u32);
            } else {
                arcs.push(x as u32);
            }
            x = 0;
        } else if i == c.len() - 1 {
            return Err(BerError::Oid);
        }
    }
    if arcs.is_empty() {
        return Err(BerError::Oid);
    }
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for i in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            65507,
            i32::MAX as i64,
            1 << 40,
        ] {
            let e = int(i);
            assert_eq!(Reader::new(&e).int().unwrap(), i, "{i}: {e:02x?}");
        }
        assert_eq!(int(128), vec![0x02, 0x02, 0x00, 0x80]);
        let o = [1, 3, 6, 1, 4, 1, 318, 1, 1, 12, 3, 3, 1, 1, 4, 3];
        let e = oid(&o);
        assert_eq!(&e[..6], &[0x06, 0x10, 0x2b, 0x06, 0x01, 0x04]);
        assert_eq!(decode_oid(Reader::new(&e).expect(OID).unwrap()).unwrap(), o);
        let long = octets(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(Reader::new(&long).octets().unwrap().len(), 300);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let msg = seq(
            SEQUENCE,
            &[&int(1), &octets(b"private"), &oid(&[1, 3, 6, 1])],
        );
        for n in 0..msg.len() {
            let mut r = Reader::new(&msg[..n]);
            let _ = r.seq(SEQUENCE).and_then(|mut s| {
                s.int()?;
                s.octets()?;
                decode_oid(s.expect(OID)?)
            });
        }
        for bad in [
            &[0x30, 0x85, 1, 2, 3, 4, 5][..],
            &[0x02, 0x00],
            &[0x06, 0x01, 0x80],
        ] {
            let mut r = Reader::new(bad);
            let _ = r.any().and_then(|(t, c)| match t {
                INTEGER => decode_int(c).map(|_| ()),
                OID => decode_oid(c).map(|_| ()),
                _ => Ok(()),
            });
        }
        assert!(decode_int(&[]).is_err());
        assert!(decode_oid(&[0x80]).is_err());
    }
}
