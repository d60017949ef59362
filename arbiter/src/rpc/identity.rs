//! Who is calling: the DNS names of the client certificate (mutual TLS).
//!
//! Identities: `<node name>.<cluster>` for agents, `admin` and `reader` for
//! fencectl (see `fencectl certs`). Without TLS (`insecure_plaintext`)
//! nobody is identified and every check passes: that mode is for demos.

use tonic::{Request, Status};

/// DNS subject alternative names of a DER certificate.
pub fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The caller's identities, or `None` when the server runs without TLS.
pub fn caller<T>(req: &Request<T>, tls: bool) -> Result<Option<Vec<String>>, Status> {
    if !tls {
        return Ok(None);
    }
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let first = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    Ok(Some(dns_names(first.as_ref())))
}

/// Require one of `allowed` among the caller's identities (TLS only).
pub fn require<T>(req: &Request<T>, tls: bool, allowed: &[&str], what: &str) -> Result<(), Status> {
    match caller(req, tls)? {
        None => Ok(()),
        Some(ids) if ids.iter().any(|i| allowed.contains(&i.as_str())) => Ok(()),
        Some(ids) => Err(Status::permission_denied(format!(
            "{what} needs a certificate for {}; this one is for {ids:?}",
            allowed.join(" or ")
        ))),
    }
}
