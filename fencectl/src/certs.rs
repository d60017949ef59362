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

/// Write `ca.pem` (and `ca.key`) and one certificate per identity into
/// `dir`: `arbiter`, `admin`, `reader` and `<node>.<cluster>` for each node.
pub fn generate(dir: &Path, cluster: &str, nodes: &[String]) -> Result<Vec<Issued>, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("fence CA for {cluster}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
    std::fs::write(dir.join("ca.pem"), ca.pem()).map_err(|e| err(format!("ca.pem: {e}")))?;
    write_private(&dir.join("ca.key"), &ca_key_pem)?;
    let mut identities = vec![
        "arbiter".to_string(),
        "admin".to_string(),
        "reader".to_string(),
    ];
    identities.extend(nodes.iter().map(|n| format!("{n}.{cluster}")));
    let mut out = Vec::new();
    for id in identities {
        let mut p = CertificateParams::new(vec![id.clone()]).map_err(err)?;
        p.distinguished_name.push(DnType::CommonName, id.clone());
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &ca).map_err(err)?;
        let (cert_path, key_path) = (dir.join(format!("{id}.pem")), dir.join(format!("{id}.key")));
        std::fs::write(&cert_path, cert.pem())
            .map_err(|e| err(format!("{}: {e}", cert_path.display())))?;
        write_private(&key_path, &key.serialize_pem())?;
        out.push(Issued {
            identity: id,
            cert: cert_path,
            key: key_path,
        });
    }
    Ok(out)
}
