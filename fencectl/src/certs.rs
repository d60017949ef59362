//! `fencectl certs`: a private CA and every certificate a cluster needs for
//! mutual TLS, written as PEM files.
//!
//! Identities are DNS subject alternative names:
//! - `arbiter` — the arbiter's server certificate;
//! - `<node name>.<cluster>` — each node's agent (client to the arbiter,
//!   server and client between peers); the arbiter accepts a Hello for node
//!   N only with N's certificate;
//! - `admin` — fencectl with every right; `reader` — read-only fencectl.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::client::CliError;

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::Other(format!("certificate generation: {e}"))
}

/// Files written for one identity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Issued {
    pub identity: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| err(format!("{}: {e}", path.display())))
}

/// A private CA: its certificate and the key it signs with.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Ca, CliError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(err)?;
        Ok(Ca { issuer, key_pem })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for server and client use, its subject alternative
    /// names `names` (DNS names, or IP addresses written as such), the first
    /// also its common name: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[String]) -> Result<(String, String), CliError> {
        let mut p = CertificateParams::new(names.to_vec()).map_err(err)?;
        if let Some(first) = names.first() {
            p.distinguished_name.push(DnType::CommonName, first.clone());
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Write `ca.pem` (and `ca.key`) and one certificate per identity into
/// `dir`: `arbiter`, `admin`, `reader` and `<node>.<cluster>` for each node.
pub fn generate(dir: &Path, cluster: &str, nodes: &[String]) -> Result<Vec<Issued>, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let ca = Ca::new(&format!("fence CA for {cluster}"))?;
    std::fs::write(dir.join("ca.pem"), ca.pem()).map_err(|e| err(format!("ca.pem: {e}")))?;
    write_private(&dir.join("ca.key"), &ca.key_pem)?;
    let mut identities = vec![
        "arbiter".to_string(),
        "admin".to_string(),
        "reader".to_string(),
    ];
    identities.extend(nodes.iter().map(|n| format!("{n}.{cluster}")));
    let mut out = Vec::new();
    for id in identities {
        let (cert, key) = ca.issue(std::slice::from_ref(&id))?;
        let (cert_path, key_path) = (dir.join(format!("{id}.pem")), dir.join(format!("{id}.key")));
        std::fs::write(&cert_path, cert)
            .map_err(|e| err(format!("{}: {e}", cert_path.display())))?;
        write_private(&key_path, &key)?;
        out.push(Issued {
            identity: id,
            cert: cert_path,
            key: key_path,
        });
    }
    Ok(out)
}
