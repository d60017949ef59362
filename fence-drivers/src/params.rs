//! A native driver's parameters: plain values from the config and secrets
//! (`file:` / `env:` sources), checked against the driver's metadata in one
//! place. Every error names the parameter.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::{Secret, is_secret_name, load_secret};
use crate::{DriverMetadata, FenceError};

/// Parameters of one configured device.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub values: BTreeMap<String, String>,
    /// Secret name → `"file:/path"` or `"env:VAR"`.
    pub secrets: BTreeMap<String, String>,
}

fn bad(key: &str, reason: impl Into<String>) -> FenceError {
    FenceError::InvalidParameter {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Params {
    pub fn new(values: BTreeMap<String, String>, secrets: BTreeMap<String, String>) -> Self {
        Params { values, secrets }
    }

    /// Unknown parameters, missing required ones and secrets given as plain
    /// values are refused; the first problem is the error.
    pub fn check(&self, meta: &DriverMetadata) -> Result<(), FenceError> {
        match self.problems(meta).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem [`Params::check`] would refuse, each naming its key.
    pub fn problems(&self, meta: &DriverMetadata) -> Vec<FenceError> {
        let known = |k: &str| meta.parameters.iter().find(|p| p.name == k);
        let takes = || {
            format!(
                "unknown parameter for driver {:?}; it takes: {}",
                meta.name,
                meta.parameters
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut out = Vec::new();
        for p in meta.parameters.iter().filter(|p| p.required) {
            if !self.values.contains_key(&p.name) && !self.secrets.contains_key(&p.name) {
                out.push(bad(
                    &p.name,
                    format!("required by driver {:?}: {}", meta.name, p.description),
                ));
            }
        }
        for k in self.values.keys() {
            match known(k) {
                None => out.push(bad(k, takes())),
                Some(p) if p.secret || is_secret_name(k) => out.push(bad(
                    k,
                    format!(
                        "a secret never goes in the config: use secrets = {{ {k} = \"file:/path\" }}"
                    ),
                )),
                Some(_) => {}
            }
        }
        for k in self.secrets.keys() {
            match known(k) {
                Some(p) if p.secret => {}
                Some(_) => out.push(bad(&format!("secrets.{k}"), "not a secret parameter")),
                None => out.push(bad(&format!("secrets.{k}"), takes())),
            }
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn required(&self, key: &str) -> Result<&str, FenceError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(key, "required"))
    }

    /// Parse `key` with `FromStr`, or `default` when it is not set.
    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, FenceError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| bad(key, format!("{v:?}: {e}"))),
        }
    }

    /// The device's address: host `ip` (resolved now) and port `ipport`.
    pub fn socket_addr(&self, default_port: u16) -> Result<std::net::SocketAddr, FenceError> {
        use std::net::ToSocketAddrs;
        let host = self.required("ip")?;
        let port: u16 = self.parse("ipport", default_port)?;
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| bad("ip", format!("{host:?} does not resolve")))
    }

    /// A duration such as `"500ms"` or `"2s"`.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, FenceError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).map_err(|e| bad(key, format!("{v:?}: {e}"))),
        }
    }

    /// A boolean given as true/false/1/0/yes/no/on/off.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, FenceError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(bad(key, format!("{v:?}: expected true or false"))),
            },
        }
    }

    /// One of `choices`, or `default`.
    pub fn choice<'a>(
        &'a self,
        key: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, FenceError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if choices.contains(&v) => Ok(v),
            Some(v) => Err(bad(
                key,
                format!("{v:?}: expected one of {}", choices.join(", ")),
            )),
        }
    }

    /// Load the secret `key`, if configured.
    pub fn secret(&self, key: &str) -> Result<Option<Secret>, FenceError> {
        self.secrets
            .get(key)
            .map(|src| load_secret(key, src))
            .transpose()
    }

    pub fn required_secret(&self, key: &str) -> Result<Secret, FenceError> {
        self.secret(key)?.ok_or_else(|| {
            bad(
                &format!("secrets.{key}"),
                format!("required: secrets = {{ {key} = \"file:/path\" }} or \"env:VAR\""),
            )
        })
    }
}

/// A parameter entry for [`DriverMetadata`].
pub(crate) fn param(
    name: &str,
    required: bool,
    secret: bool,
    description: &str,
) -> crate::Parameter {
    crate::Parameter {
        name: name.into(),
        required,
        secret,
        description: description.into(),
    }
}
