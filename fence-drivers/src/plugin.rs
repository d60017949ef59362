//! `plugin`: a fence driver in a process of its own, called over gRPC (the
//! `FenceDriver` service of `proto/fence/v1/driver.proto`) on a Unix socket
//! or a loopback TCP port.
//!
//! Every call carries the device's parameters and secret values (the
//! plugin holds no configuration) and has a deadline. The arbiter's rules
//! hold whatever the plugin answers: `off` is only "accepted"; a fence
//! counts once `status` says off; a plugin whose metadata says it cannot
//! read power state is refused; messages are redacted of secret values.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use proto::driver as pb;
use proto::driver::fence_driver_client::FenceDriverClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::params::{Params, param};
use crate::secret::Secret;
use crate::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

/// The plugin driver's own keys; every other key goes to the plugin.
const OWN: &[&str] = &["endpoint", "timeout"];

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "plugin".into(),
        description: "A fence driver plugin in its own process, called over gRPC (fence.driver.v1.FenceDriver); \
                      every key but these, and every secret, is passed to the plugin."
            .into(),
        parameters: vec![
            param("endpoint", true, false, "\"unix:/run/fence/NAME.sock\" or \"http://127.0.0.1:PORT\" (loopback only)"),
            param("timeout", false, false, "deadline of one call (default 5s)"),
        ],
        confirms_power_state: true,
    }
}

/// Check what can be checked without the plugin (no I/O, no runtime needed).
pub fn check(p: &Params) -> Result<(), FenceError> {
    endpoint(p)?;
    p.duration("timeout", Duration::from_secs(5))?;
    Ok(())
}

/// Where the plugin listens.
enum Where {
    Unix(String),
    Tcp(Box<Endpoint>),
}

/// A lazily connecting channel (needs a Tokio runtime).
fn channel(w: Where) -> Channel {
    match w {
        Where::Tcp(ep) => ep.connect_lazy(),
        Where::Unix(path) => Endpoint::from_static("http://plugin.invalid")
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            })),
    }
}

/// Parse and check the endpoint; no I/O.
fn endpoint(p: &Params) -> Result<Where, FenceError> {
    let bad = |reason: String| FenceError::InvalidParameter {
        key: "endpoint".into(),
        reason,
    };
    let e = p.required("endpoint")?;
    if let Some(path) = e.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(bad(format!("{e:?}: a Unix socket needs an absolute path")));
        }
        return Ok(Where::Unix(path.to_string()));
    }
    let uri: Uri = e.parse().map_err(|err| bad(format!("{e:?}: {err}")))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if uri.scheme_str() != Some("http") || !loopback || uri.port().is_none() {
        return Err(bad(format!(
            "{e:?}: expected unix:/path or http://127.0.0.1:PORT (plugins are local: loopback only)"
        )));
    }
    Endpoint::from_shared(e.to_string())
        .map(|ep| Where::Tcp(Box::new(ep)))
        .map_err(|err| bad(format!("{e:?}: {err}")))
}

#[derive(Debug)]
pub struct PluginDriver {
    name: String,
    client: FenceDriverClient<Channel>,
    timeout: Duration,
    params: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl PluginDriver {
    /// Parameters checked, secrets loaded; the plugin is first called on
    /// [`FenceDriver::validate`] or first use.
    pub fn from_params(name: impl Into<String>, p: &Params) -> Result<Self, FenceError> {
        let channel = channel(endpoint(p)?);
        let mut secrets = BTreeMap::new();
        for k in p.secrets.keys() {
            secrets.insert(k.clone(), p.required_secret(k)?);
        }
        Ok(PluginDriver {
            name: name.into(),
            client: FenceDriverClient::new(channel),
            timeout: p.duration("timeout", Duration::from_secs(5))?,
            params: p
                .values
                .iter()
                .filter(|(k, _)| !OWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            secrets,
        })
    }

    fn request(&self, port: &str) -> tonic::Request<pb::DeviceRequest> {
        let mut r = tonic::Request::new(pb::DeviceRequest {
            device: Some(pb::DeviceConfig {
                name: self.name.clone(),
                params: self.params.clone().into_iter().collect(),
                secrets: self
                    .secrets
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect(),
            }),
            port: port.to_string(),
        });
        r.set_timeout(self.timeout);
        r
    }

    fn redact(&self, text: &str) -> String {
        crate::secret::redact(text, self.secrets.values())
    }

    fn error(&self, action: &'static str, port: &str, s: tonic::Status) -> FenceError {
        use tonic::Code;
        let device = self.name.clone();
        let reason = format!("plugin {action}: {}", self.redact(s.message()));
        match s.code() {
            Code::NotFound => FenceError::NoSuchPort {
                device,
                port: port.into(),
            },
            Code::Unavailable => FenceError::Unreachable { device, reason },
            Code::Unauthenticated | Code::PermissionDenied => {
                FenceError::Credentials { device, reason }
            }
            Code::FailedPrecondition => FenceError::Refused { device, reason },
            Code::InvalidArgument => FenceError::InvalidParameter {
                key: format!("device {:?}", self.name),
                reason,
            },
            Code::Unimplemented => FenceError::Unsupported {
                device,
                action,
                reason,
            },
            Code::DeadlineExceeded | Code::Cancelled => FenceError::Timeout {
                device,
                timeout: self.timeout,
            },
            _ => FenceError::Device { device, reason },
        }
    }

    /// Run one call within the deadline, whatever the plugin does.
    async fn call<T, F>(&self, action: &'static str, port: &str, f: F) -> Result<T, FenceError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout + Duration::from_millis(50), f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(self.error(action, port, s)),
            Err(_) => Err(FenceError::Timeout {
                device: self.name.clone(),
                timeout: self.timeout,
            }),
        }
    }
}

fn state(s: i32) -> PowerState {
    match pb::PowerState::try_from(s) {
        Ok(pb::PowerState::On) => PowerState::On,
        Ok(pb::PowerState::Off) => PowerState::Off,
        _ => PowerState::Unknown,
    }
}

#[async_trait]
impl FenceDriver for PluginDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        metadata()
    }

    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        let mut c = self.client.clone();
        let r = self
            .call("status", port, c.status(self.request(port)))
            .await?;
        Ok(state(r.state))
    }

    async fn on(&self, port: &str) -> Result<(), FenceError> {
        let mut c = self.client.clone();
        self.call("on", port, c.on(self.request(port)))
            .await
            .map(|_| ())
    }

    async fn off(&self, port: &str) -> Result<(), FenceError> {
        let mut c = self.client.clone();
        self.call("off", port, c.off(self.request(port)))
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let mut c = self.client.clone();
        let r = self.call("list", "", c.list(self.request(""))).await?;
        Ok(r.ports
            .into_iter()
            .map(|p| Port {
                id: p.id,
                state: state(p.state),
            })
            .collect())
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        let mut c = self.client.clone();
        self.call("monitor", "", c.monitor(self.request("")))
            .await
            .map(|_| ())
    }

    /// The plugin's metadata must promise real power state, and its
    /// Validate must find no problem with this device's parameters.
    async fn validate(&self) -> Result<(), FenceError> {
        let mut c = self.client.clone();
        let mut req = tonic::Request::new(pb::MetadataRequest {});
        req.set_timeout(self.timeout);
        let meta = self.call("metadata", "", c.metadata(req)).await?;
        if !meta.confirms_power_state {
            return Err(FenceError::InvalidParameter {
                key: "endpoint".into(),
                reason: format!(
                    "plugin {:?} cannot read power state, so it can never confirm a fence",
                    meta.name
                ),
            });
        }
        let r = self
            .call("validate", "", c.validate(self.request("")))
            .await?;
        if let Some(p) = r.problems.first() {
            return Err(FenceError::InvalidParameter {
                key: p.key.clone(),
                reason: format!("plugin {:?}: {}", meta.name, self.redact(&p.reason)),
            });
        }
        Ok(())
    }
}
