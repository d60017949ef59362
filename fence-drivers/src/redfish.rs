//! `redfish`: native Redfish over HTTPS (hyper + rustls): `PowerState` of a
//! ComputerSystem for status, `ComputerSystem.Reset` with a `ResetType` the
//! system advertises for on/off.
//!
//! TLS is verified against a CA file, or the server certificate is pinned
//! by its SHA-256 fingerprint; only an explicit `insecure = true` accepts
//! any certificate (logged as a warning). Warm: the HTTPS connection is
//! pooled (keep-alive) and the system's reset target and allowed reset
//! types are cached; a cached target that stops working is re-read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::params::{Params, param};
use crate::secret::Secret;
use crate::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "redfish".into(),
        description:
            "Native Redfish over HTTPS: ComputerSystem.Reset (ForceOff / On) and PowerState. \
                      The port is the system's id; empty = `systems_uri`, or the only system."
                .into(),
        parameters: vec![
            param("ip", true, false, "BMC address or host name"),
            param("ipport", false, false, "HTTPS port (default 443)"),
            param("username", true, false, "BMC user"),
            param(
                "password",
                true,
                true,
                "BMC password (a secret: file: or env:)",
            ),
            param(
                "systems_uri",
                false,
                false,
                "the ComputerSystem, e.g. /redfish/v1/Systems/1 (default: by port, or the only one)",
            ),
            param(
                "ca",
                false,
                false,
                "PEM file of the CA that signed the BMC's certificate",
            ),
            param(
                "fingerprint",
                false,
                false,
                "SHA-256 of the BMC's certificate (hex, colons allowed): pin it",
            ),
            param(
                "insecure",
                false,
                false,
                "true: accept any certificate (no protection against impostors)",
            ),
            param("timeout", false, false, "one HTTP request (default 5s)"),
        ],
        confirms_power_state: true,
    }
}

/// Accepts exactly one server certificate, by SHA-256, and checks the
/// handshake signatures with it.
#[derive(Debug)]
struct Pinned {
    sha256: Vec<u8>,
    any: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.any || Sha256::digest(end_entity.as_ref())[..] == self.sha256[..] {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the BMC's certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn bad(key: &str, reason: impl Into<String>) -> FenceError {
    FenceError::InvalidParameter {
        key: key.into(),
        reason: reason.into(),
    }
}

fn tls_config(p: &Params) -> Result<(rustls::ClientConfig, bool), FenceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("ca", e.to_string()))?;
    let insecure = p.flag("insecure", false)?;
    let chosen = [
        p.get("ca").is_some(),
        p.get("fingerprint").is_some(),
        insecure,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen != 1 {
        return Err(bad(
            "ca",
            "set exactly one of ca (a CA file), fingerprint (pin the certificate) or insecure = true",
        ));
    }
    if let Some(ca) = p.get("ca") {
        let pem = std::fs::read(ca).map_err(|e| bad("ca", format!("{ca}: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| bad("ca", format!("{ca}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad("ca", format!("{ca}: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("ca", format!("{ca}: no PEM certificate in it")));
        }
        return Ok((
            builder.with_root_certificates(roots).with_no_client_auth(),
            false,
        ));
    }
    let sha256 = match p.get("fingerprint") {
        Some(f) => {
            let hex: String = f
                .trim_start_matches("sha256:")
                .chars()
                .filter(|c| *c != ':')
                .collect();
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            match bytes {
                Some(b) if b.len() == 32 => b,
                _ => {
                    return Err(bad(
                        "fingerprint",
                        format!("{f:?}: expected 64 hex digits (SHA-256)"),
                    ));
                }
            }
        }
        None => vec![],
    };
    let verifier = Pinned {
        sha256,
        any: insecure,
        provider,
    };
    Ok((
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
        insecure,
    ))
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The system's reset action, as read from the BMC.
#[derive(Debug, Clone)]
struct System {
    uri: String,
    reset_target: String,
    /// Empty when the BMC does not say.
    allowed: Vec<String>,
}

#[derive(Debug)]
pub struct RedfishDriver {
    name: String,
    base: String,
    user: String,
    /// `Basic base64(user:password)`, made once.
    authorization: Secret,
    systems_uri: Option<String>,
    timeout: Duration,
    client: Client<Https, Full<Bytes>>,
    systems: Mutex<std::collections::BTreeMap<String, System>>,
}

impl RedfishDriver {
    pub fn from_params(name: impl Into<String>, p: &Params) -> Result<Self, FenceError> {
        p.check(&metadata())?;
        let name = name.into();
        let host = p.required("ip")?;
        let port: u16 = p.parse("ipport", 443)?;
        let (tls, insecure) = tls_config(p)?;
        if insecure {
            tracing::warn!(device = %name, "redfish: insecure = true: the BMC's certificate is NOT verified");
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Small requests: never let Nagle and delayed ACKs stall them.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let systems_uri = p.get("systems_uri").map(str::to_string);
        if let Some(u) = &systems_uri
            && !u.starts_with("/redfish/v1/")
        {
            return Err(bad(
                "systems_uri",
                format!("{u:?}: expected /redfish/v1/Systems/<id>"),
            ));
        }
        Ok(RedfishDriver {
            name,
            base: format!("https://{host}:{port}"),
            user: p.required("username")?.to_string(),
            authorization: {
                use base64::Engine;
                let user = p.required("username")?;
                let pw = p.required_secret("password")?;
                Secret::derived(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{}", pw.expose()))
                ))
            },
            systems_uri,
            timeout: p.duration("timeout", Duration::from_secs(5))?,
            client,
            systems: Mutex::new(Default::default()),
        })
    }

    fn err(&self, reason: impl Into<String>) -> FenceError {
        FenceError::Device {
            device: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// One request with basic auth; the status and JSON body (if any).
    async fn http(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, serde_json::Value), FenceError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", self.authorization.expose())
            .header("accept", "application/json");
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| self.err(format!("request {path}: {e}")))?;
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let mut reason = e.to_string();
                let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = src {
                    reason = format!("{reason}: {s}");
                    src = s.source();
                }
                FenceError::Unreachable {
                    device: self.name.clone(),
                    reason: format!("{}{path}: {reason}", self.base),
                }
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.err(format!("{path}: reading the answer: {e}")))?
                .to_bytes();
            let json = if body.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
            };
            Ok((status, json))
        };
        let (status, json) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FenceError::Timeout {
                device: self.name.clone(),
                timeout: self.timeout,
            })??;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FenceError::Credentials {
                device: self.name.clone(),
                reason: format!("HTTP {status} for user {:?} on {path}", self.user),
            });
        }
        Ok((status, json))
    }

    /// The system a port names.
    async fn system(&self, port: &str) -> Result<System, FenceError> {
        if let Some(s) = self.systems.lock().await.get(port) {
            return Ok(s.clone());
        }
        let uri = match (&self.systems_uri, port) {
            (Some(u), _) => u.clone(),
            (None, p) if !p.is_empty() => format!("/redfish/v1/Systems/{p}"),
            (None, _) => {
                let (st, j) = self.http(Method::GET, "/redfish/v1/Systems", None).await?;
                let members: Vec<&str> = j["Members"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|x| x["@odata.id"].as_str()).collect())
                    .unwrap_or_default();
                match (st.is_success(), members.as_slice()) {
                    (true, [one]) => one.to_string(),
                    (true, many) => {
                        return Err(self.err(format!(
                            "{} systems: set systems_uri or give the system id as the port",
                            many.len()
                        )));
                    }
                    (false, _) => {
                        return Err(self.err(format!("GET /redfish/v1/Systems: HTTP {st}")));
                    }
                }
            }
        };
        let (st, j) = self.http(Method::GET, &uri, None).await?;
        if st == StatusCode::NOT_FOUND {
            return Err(FenceError::NoSuchPort {
                device: self.name.clone(),
                port: port.into(),
            });
        }
        if !st.is_success() {
            return Err(self.err(format!("GET {uri}: HTTP {st}")));
        }
        let action = &j["Actions"]["#ComputerSystem.Reset"];
        let reset_target = action["target"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{uri}/Actions/ComputerSystem.Reset"));
        let allowed = action["ResetType@Redfish.AllowableValues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let s = System {
            uri,
            reset_target,
            allowed,
        };
        self.systems
            .lock()
            .await
            .insert(port.to_string(), s.clone());
        Ok(s)
    }

    /// POST Reset with the first of `choices` the system allows.
    async fn reset(
        &self,
        port: &str,
        choices: &[&str],
        what: &'static str,
    ) -> Result<(), FenceError> {
        let s = self.system(port).await?;
        let kind = if s.allowed.is_empty() {
            choices[0]
        } else {
            choices
                .iter()
                .find(|c| s.allowed.iter().any(|a| a == *c))
                .copied()
                .ok_or_else(|| FenceError::Unsupported {
                    device: self.name.clone(),
                    action: what,
                    reason: format!(
                        "{} allows ResetType {:?}, none of {choices:?}",
                        s.uri, s.allowed
                    ),
                })?
        };
        let (st, j) = self
            .http(
                Method::POST,
                &s.reset_target,
                Some(serde_json::json!({ "ResetType": kind })),
            )
            .await?;
        if st.is_success() {
            return Ok(());
        }
        if st == StatusCode::NOT_FOUND {
            // The cached target went stale (BMC firmware reloaded?): re-read.
            self.systems.lock().await.remove(port);
        }
        let msg = j["error"]["message"].as_str().unwrap_or_default();
        Err(FenceError::Refused {
            device: self.name.clone(),
            reason: format!("ResetType {kind} on {}: HTTP {st} {msg}", s.uri),
        })
    }
}

#[async_trait]
impl FenceDriver for RedfishDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        metadata()
    }

    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        let s = self.system(port).await?;
        let (st, j) = self.http(Method::GET, &s.uri, None).await?;
        if !st.is_success() {
            return Err(self.err(format!("GET {}: HTTP {st}", s.uri)));
        }
        Ok(match j["PowerState"].as_str() {
            Some("On") => PowerState::On,
            Some("Off") => PowerState::Off,
            // PoweringOff is not off; PoweringOn is not confirmed on.
            _ => PowerState::Unknown,
        })
    }

    async fn on(&self, port: &str) -> Result<(), FenceError> {
        self.reset(port, &["On", "ForceOn"], "on").await
    }

    async fn off(&self, port: &str) -> Result<(), FenceError> {
        self.reset(port, &["ForceOff"], "off").await
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let (st, j) = self.http(Method::GET, "/redfish/v1/Systems", None).await?;
        if !st.is_success() {
            return Err(self.err(format!("GET /redfish/v1/Systems: HTTP {st}")));
        }
        let mut out = Vec::new();
        for m in j["Members"].as_array().cloned().unwrap_or_default() {
            if let Some(id) = m["@odata.id"].as_str().and_then(|u| u.rsplit('/').next()) {
                out.push(Port {
                    id: id.to_string(),
                    state: self.status(id).await?,
                });
            }
        }
        Ok(out)
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        self.status("").await.map(|_| ())
    }
}
