//! RMCP+ cryptography for the two cipher suites we speak (IPMI 2.0 §13.28,
//! §13.31, §13.32, Table 22-19):
//!
//! | suite | authentication | integrity | confidentiality |
//! |---|---|---|---|
//! | 3  | RAKP-HMAC-SHA1   | HMAC-SHA1-96    | AES-CBC-128 |
//! | 17 | RAKP-HMAC-SHA256 | HMAC-SHA256-128 | AES-CBC-128 |
//!
//! Pure functions: the session code feeds them bytes from the wire.

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// A cipher suite we can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    S3,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    S17,
}

impl CipherSuite {
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::S3 => 3,
            CipherSuite::S17 => 17,
        }
    }

    /// Authentication algorithm number (Table 13-17).
    pub fn auth_alg(self) -> u8 {
        match self {
            CipherSuite::S3 => 0x01,
            CipherSuite::S17 => 0x03,
        }
    }

    /// Integrity algorithm number (Table 13-18).
    pub fn integrity_alg(self) -> u8 {
        match self {
            CipherSuite::S3 => 0x01,
            CipherSuite::S17 => 0x04,
        }
    }

    /// Confidentiality algorithm number (Table 13-19): AES-CBC-128 for both.
    pub fn confidentiality_alg(self) -> u8 {
        0x01
    }

    /// Length of the RAKP 2/3 key exchange authentication code.
    pub fn rakp_code_len(self) -> usize {
        match self {
            CipherSuite::S3 => 20,
            CipherSuite::S17 => 32,
        }
    }

    /// Length of the RAKP 4 integrity check value and of a packet's AuthCode.
    pub fn icv_len(self) -> usize {
        match self {
            CipherSuite::S3 => 12,
            CipherSuite::S17 => 16,
        }
    }

    /// The suite's HMAC over the concatenation of `parts`.
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            CipherSuite::S3 => {
                let mut m =
                    <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            CipherSuite::S17 => {
                let mut m =
                    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
        }
    }
}

/// What both sides of the RAKP exchange hash.
#[derive(Debug, Clone)]
pub struct Handshake<'a> {
    pub suite: CipherSuite,
    /// K_UID: the user's password.
    pub password: &'a [u8],
    /// K_G: the BMC key, when the BMC has one; otherwise K_UID is used.
    pub kg: Option<&'a [u8]>,
    pub console_sid: u32,
    pub bmc_sid: u32,
    pub console_rand: [u8; 16],
    pub bmc_rand: [u8; 16],
    pub bmc_guid: [u8; 16],
    /// Requested role byte as sent in RAKP 1 (privilege | lookup bit).
    pub role: u8,
    pub username: &'a [u8],
}

impl Handshake<'_> {
    /// The code the BMC must put in RAKP 2 (§13.21): proves it knows K_UID.
    pub fn rakp2_code(&self) -> Vec<u8> {
        self.suite.hmac(
            self.password,
            &[
                &self.console_sid.to_le_bytes(),
                &self.bmc_sid.to_le_bytes(),
                &self.console_rand,
                &self.bmc_rand,
                &self.bmc_guid,
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// The code we put in RAKP 3 (§13.22).
    pub fn rakp3_code(&self) -> Vec<u8> {
        self.suite.hmac(
            self.password,
            &[
                &self.bmc_rand,
                &self.console_sid.to_le_bytes(),
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// The session integrity key (§13.31).
    pub fn sik(&self) -> Vec<u8> {
        self.suite.hmac(
            self.kg.unwrap_or(self.password),
            &[
                &self.console_rand,
                &self.bmc_rand,
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// The integrity check value the BMC must put in RAKP 4 (§13.23).
    pub fn rakp4_icv(&self, sik: &[u8]) -> Vec<u8> {
        let mut v = self.suite.hmac(
            sik,
            &[
                &self.console_rand,
                &self.bmc_sid.to_le_bytes(),
                &self.bmc_guid,
            ],
        );
        v.truncate(self.suite.icv_len());
        v
    }
}

/// Keys of an established session.
#[derive(Clone)]
pub struct SessionKeys {
    pub suite: CipherSuite,
    k1: Vec<u8>,
    k2: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKeys({:?}, ***)", self.suite)
    }
}

/// Why a payload could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("encrypted payload of {0} bytes is not an IV plus whole AES blocks")]
    Length(usize),
    #[error("confidentiality padding is malformed")]
    Padding,
}

impl SessionKeys {
    /// K1 = HMAC(SIK, 20 × 0x01), K2 = HMAC(SIK, 20 × 0x02) (§13.32); the
    /// AES key is the first 16 bytes of K2.
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> Self {
        let k1 = suite.hmac(sik, &[&[0x01; 20]]);
        let k2full = suite.hmac(sik, &[&[0x02; 20]]);
        let mut k2 = [0u8; 16];
        k2.copy_from_slice(&k2full[..16]);
        SessionKeys { suite, k1, k2 }
    }

    /// A packet's AuthCode: the integrity HMAC with K1, truncated.
    pub fn auth_code(&self, signed: &[u8]) -> Vec<u8> {
        let mut v = self.suite.hmac(&self.k1, &[signed]);
        v.truncate(self.suite.icv_len());
        v
    }

    /// AES-CBC-128 with the IPMI pad (1, 2, 3, … then the pad length):
    /// returns IV ‖ ciphertext.
    pub fn encrypt(&self, plain: &[u8], iv: [u8; 16]) -> Vec<u8> {
        let pad = (16 - (plain.len() + 1) % 16) % 16;
        let mut buf = Vec::with_capacity(16 + plain.len() + pad + 1);
        buf.extend_from_slice(plain);
        buf.extend((1..=pad).map(|i| i as u8));
        buf.push(pad as u8);
        let ct = cbc::Encryptor::<Aes128>::new(&self.k2.into(), &iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(&buf);
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// The inverse of [`SessionKeys::encrypt`]; never panics on bad input.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if data.len() < 32 || !data.len().is_multiple_of(16) {
            return Err(CryptoError::Length(data.len()));
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&data[..16]);
        let mut plain = cbc::Decryptor::<Aes128>::new(&self.k2.into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(&data[16..])
            .map_err(|_| CryptoError::Length(data.len()))?;
        let pad = *plain.last().ok_or(CryptoError::Padding)? as usize;
        if pad + 1 > plain.len() {
            return Err(CryptoError::Padding);
        }
        let body = plain.len() - pad - 1;
        if plain[body..plain.len() - 1]
            .iter()
            .enumerate()
            .any(|(i, b)| *b as usize != i + 1)
        {
            return Err(CryptoError::Padding);
        }
        plain.truncate(body);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_hex as hex;

    fn handshake(suite: CipherSuite) -> Handshake<'static> {
        Handshake {
            suite,
            password: b"s3cret-passw0rd",
            kg: None,
            console_sid: 0xa0a1_a2a3,
            bmc_sid: 0x0102_0304,
            console_rand: *b"0123456789abcdef",
            bmc_rand: *b"ghijklmnopqrstuv",
            bmc_guid: [0x11; 16],
            role: 0x14,
            username: b"admin",
        }
    }

    // Known answers computed independently of this code, with OpenSSL and
    // the spec's formulas: `kat-gen.py` next to this file made `kat.rs`.
    include!("kat.rs");

    #[test]
    fn suite17_known_answers() {
        let h = handshake(CipherSuite::S17);
        assert_eq!(h.rakp2_code(), hex(KAT17_RAKP2));
        assert_eq!(h.rakp3_code(), hex(KAT17_RAKP3));
        let sik = h.sik();
        assert_eq!(sik, hex(KAT17_SIK));
        assert_eq!(h.rakp4_icv(&sik), hex(KAT17_RAKP4));
        let keys = SessionKeys::derive(CipherSuite::S17, &sik);
        assert_eq!(keys.k1, hex(KAT17_K1));
        assert_eq!(keys.k2.to_vec(), hex(KAT17_K2)[..16].to_vec());
        assert_eq!(keys.auth_code(KAT_SIGNED), hex(KAT17_AUTHCODE));
        let ct = keys.encrypt(KAT_PLAIN, [0x42; 16]);
        assert_eq!(ct, hex(KAT17_CIPHERTEXT));
        assert_eq!(keys.decrypt(&ct).unwrap(), KAT_PLAIN);
    }

    #[test]
    fn suite3_known_answers() {
        let h = handshake(CipherSuite::S3);
        assert_eq!(h.rakp2_code(), hex(KAT3_RAKP2));
        assert_eq!(h.rakp3_code(), hex(KAT3_RAKP3));
        let sik = h.sik();
        assert_eq!(sik, hex(KAT3_SIK));
        assert_eq!(h.rakp4_icv(&sik), hex(KAT3_RAKP4));
        let keys = SessionKeys::derive(CipherSuite::S3, &sik);
        assert_eq!(keys.k1, hex(KAT3_K1));
        assert_eq!(keys.k2.to_vec(), hex(KAT3_K2)[..16].to_vec());
        assert_eq!(keys.auth_code(KAT_SIGNED), hex(KAT3_AUTHCODE));
        let ct = keys.encrypt(KAT_PLAIN, [0x42; 16]);
        assert_eq!(ct, hex(KAT3_CIPHERTEXT));
    }

    #[test]
    fn kg_replaces_the_password_only_in_the_sik() {
        let mut h = handshake(CipherSuite::S17);
        let without = (h.rakp2_code(), h.sik());
        h.kg = Some(b"bmc-key");
        assert_eq!(h.rakp2_code(), without.0);
        assert_ne!(h.sik(), without.1);
    }

    #[test]
    fn decrypt_rejects_garbage_without_panicking() {
        let keys = SessionKeys::derive(CipherSuite::S3, b"sik");
        for len in [0, 1, 15, 16, 17, 31, 33, 48] {
            let _ = keys.decrypt(&vec![0xAB; len]);
        }
        assert!(keys.decrypt(&[0u8; 16]).is_err());
        // Every length of plaintext round-trips.
        for n in 0..40 {
            let p: Vec<u8> = (0..n as u8).collect();
            assert_eq!(keys.decrypt(&keys.encrypt(&p, [7; 16])).unwrap(), p);
        }
    }
}
