//! `ssh`: runs a command on the node itself over SSH (russh, in process; no
//! `ssh` fork), with the host key checked against a known_hosts file and
//! key authentication.
//!
//! **What a confirmation means here.** SSH cannot read power state: a node
//! that answers is on, and a node that does not answer may be off, or cut
//! off from us and still running. So by default (`confirm = "never"`)
//! `status` is `on` when the node answers and `unknown` otherwise, the
//! driver never confirms a power-off, and the arbiter refuses it in a fence
//! level. `confirm = "unreachable"` is the operator's explicit opt-in:
//! after the off command, "no longer accepts TCP connections on its SSH
//! port" counts as off — but only when that lasted: `status` probes every
//! [`PROBE_EVERY`] and reports off only once every connection attempt
//! (refused, no route, or no answer within `min(timeout, 1s)`) failed for a
//! whole `unreachable_for` window (default 5s); one connection that succeeds
//! is "on" and the next `status` starts the window again. A network blip or
//! an sshd that stops early in a shutdown is not a power-off. That is still
//! only as safe as the network path from the arbiter to the node: use it
//! where that path is the cluster's own, or as a last level, and keep
//! `unreachable_for` longer than any time a running node may refuse SSH. A
//! changed host key or refused credentials is never "off".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio::sync::Mutex;

use crate::params::{Params, param};
use crate::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

/// How often `status` tries to connect while it waits out `unreachable_for`.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A probe without an answer within this long (or `timeout`, if shorter)
/// counts as a failed attempt.
const PROBE_ANSWER: Duration = Duration::from_secs(1);
/// Default and least `unreachable_for`.
pub const DEFAULT_UNREACHABLE_FOR: Duration = Duration::from_secs(5);
pub const MIN_UNREACHABLE_FOR: Duration = Duration::from_secs(1);

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "ssh".into(),
        description: "Runs a command on the node over SSH (host key checked, key authentication). \
                      Cannot read power state: never confirms a fence unless confirm = \"unreachable\"."
            .into(),
        parameters: vec![
            param("ip", true, false, "the node's address or host name"),
            param("ipport", false, false, "SSH port (default 22)"),
            param("username", false, false, "remote user (default root)"),
            param("identity", true, true, "private key (a secret: file:/etc/fence/id_ed25519)"),
            param("identity_passphrase", false, true, "the key's pass phrase, if it has one (a secret)"),
            param("known_hosts", true, false, "known_hosts file holding the node's host key"),
            param("off_command", false, false, "default \"echo o > /proc/sysrq-trigger\" (immediate power-off)"),
            param("on_command", false, false, "none by default: a node that is off runs no command"),
            param("confirm", false, false, "\"never\" (default) or \"unreachable\" (see the driver's documentation)"),
            param(
                "unreachable_for",
                false,
                false,
                "with confirm = \"unreachable\": off only after every connection attempt (one each 250ms) failed for this long \
                 (default 5s, at least 1s); a connection that succeeds restarts it. Keep fence_timeout above it plus the off command",
            ),
            param("timeout", false, false, "connect and each command (default 5s)"),
        ],
        confirms_power_state: false,
    }
}

/// What "off" is confirmed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Never,
    Unreachable,
}

/// Does this device configuration confirm power-off? (Config validation
/// refuses a fence level that can never be confirmed.)
pub fn confirms(p: &Params) -> bool {
    p.get("confirm") == Some("unreachable")
}

/// `confirm` and `unreachable_for` as configured.
fn confirm_params(p: &Params) -> Result<(Confirm, Duration), FenceError> {
    let confirm = match p.choice("confirm", &["never", "unreachable"], "never")? {
        "unreachable" => Confirm::Unreachable,
        _ => Confirm::Never,
    };
    let bad = |reason: String| FenceError::InvalidParameter {
        key: "unreachable_for".into(),
        reason,
    };
    let window = p.duration("unreachable_for", DEFAULT_UNREACHABLE_FOR)?;
    if p.get("unreachable_for").is_some() && confirm != Confirm::Unreachable {
        return Err(bad(
            "only means something with confirm = \"unreachable\"".into()
        ));
    }
    if window < MIN_UNREACHABLE_FOR {
        return Err(bad(format!(
            "{window:?}: must be at least {MIN_UNREACHABLE_FOR:?} (a shorter window takes a blip for a power-off)"
        )));
    }
    Ok((confirm, window))
}

/// Problems with the values of `confirm` and `unreachable_for` (config
/// validation reports them with the rest, without reading secrets).
pub fn value_problems(p: &Params) -> Vec<FenceError> {
    confirm_params(p).err().into_iter().collect()
}

/// Checks the server key against known_hosts; remembers why it refused.
struct KnownHosts {
    host: String,
    port: u16,
    path: PathBuf,
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for KnownHosts {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let why = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.path) {
                    Ok(true) => return Ok(true),
                    Ok(false) => format!(
                        "the host key of {}:{} is not in {}",
                        self.host,
                        self.port,
                        self.path.display()
                    ),
                    Err(russh::keys::Error::KeyChanged { line }) => format!(
                        "HOST KEY CHANGED for {}:{} (known_hosts line {line}): another machine, or an attack",
                        self.host, self.port
                    ),
                    Err(e) => format!("known_hosts {}: {e}", self.path.display()),
                }
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                "host certificates are not supported; list the host key in known_hosts".into()
            }
        };
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        Ok(false)
    }
}

pub struct SshDriver {
    name: String,
    host: String,
    port: u16,
    user: String,
    key: Arc<PrivateKey>,
    known_hosts: PathBuf,
    off_command: String,
    on_command: Option<String>,
    confirm: Confirm,
    /// With `Confirm::Unreachable`: how long every attempt must fail.
    unreachable_for: Duration,
    timeout: Duration,
    session: Mutex<Option<Handle<KnownHosts>>>,
}

impl std::fmt::Debug for SshDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshDriver")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("confirm", &self.confirm)
            .field("unreachable_for", &self.unreachable_for)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownHosts({})", self.path.display())
    }
}

/// How talking to the node failed.
enum Trouble {
    /// No TCP connection (refused, unreachable, timed out).
    NoConnection(String),
    /// The command was sent; no exit status came within the timeout (a
    /// node powering off may simply go silent).
    Silent,
    Fence(FenceError),
}

impl SshDriver {
    pub fn from_params(name: impl Into<String>, p: &Params) -> Result<Self, FenceError> {
        p.check(&metadata())?;
        let bad = |key: &str, reason: String| FenceError::InvalidParameter {
            key: key.into(),
            reason,
        };
        let identity = p.required_secret("identity")?;
        let passphrase = p.secret("identity_passphrase")?;
        let key = russh::keys::decode_secret_key(
            identity.expose(),
            passphrase.as_ref().map(|s| s.expose()),
        )
        .map_err(|e| bad("secrets.identity", format!("not a usable private key: {e}")))?;
        let known_hosts = PathBuf::from(p.required("known_hosts")?);
        if !known_hosts.is_file() {
            return Err(bad(
                "known_hosts",
                format!("{} does not exist", known_hosts.display()),
            ));
        }
        let (confirm, unreachable_for) = confirm_params(p)?;
        Ok(SshDriver {
            name: name.into(),
            host: p.required("ip")?.to_string(),
            port: p.parse("ipport", 22)?,
            user: p.get("username").unwrap_or("root").to_string(),
            key: Arc::new(key),
            known_hosts,
            off_command: p
                .get("off_command")
                .unwrap_or("echo o > /proc/sysrq-trigger")
                .to_string(),
            on_command: p.get("on_command").map(str::to_string),
            confirm,
            unreachable_for,
            timeout: p.duration("timeout", Duration::from_secs(5))?,
            session: Mutex::new(None),
        })
    }

    /// Connect and log in; the TCP connection gets `tcp_within`, the SSH
    /// handshake and authentication `timeout` each.
    async fn connect(&self, tcp_within: Duration) -> Result<Handle<KnownHosts>, Trouble> {
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let handler = KnownHosts {
            host: self.host.clone(),
            port: self.port,
            path: self.known_hosts.clone(),
            refusal: refusal.clone(),
        };
        let tcp = tokio::time::timeout(
            tcp_within,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| Trouble::NoConnection(format!("no TCP connection within {tcp_within:?}")))?
        .map_err(|e| Trouble::NoConnection(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        let fence = |e: String| {
            Trouble::Fence(FenceError::Device {
                device: self.name.clone(),
                reason: e,
            })
        };
        let mut h =
            tokio::time::timeout(self.timeout, client::connect_stream(config, tcp, handler))
                .await
                .map_err(|_| {
                    fence(format!(
                        "SSH handshake did not finish within {:?}",
                        self.timeout
                    ))
                })?
                .map_err(|e| {
                    let why = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match why {
                        Some(why) => Trouble::Fence(FenceError::Credentials {
                            device: self.name.clone(),
                            reason: why,
                        }),
                        None => fence(format!("SSH handshake: {e}")),
                    }
                })?;
        let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
        let auth = tokio::time::timeout(
            self.timeout,
            h.authenticate_publickey(
                &self.user,
                PrivateKeyWithHashAlg::new(self.key.clone(), hash),
            ),
        )
        .await
        .map_err(|_| fence("authentication did not finish in time".into()))?
        .map_err(|e| fence(format!("authentication: {e}")))?;
        if !auth.success() {
            return Err(Trouble::Fence(FenceError::Credentials {
                device: self.name.clone(),
                reason: format!(
                    "the node refused key authentication for user {:?}",
                    self.user
                ),
            }));
        }
        Ok(h)
    }

    /// A session channel on the warm connection, reconnecting once if the
    /// warm one went stale.
    async fn channel(
        &self,
        warm: &mut Option<Handle<KnownHosts>>,
    ) -> Result<russh::Channel<client::Msg>, Trouble> {
        if let Some(h) = warm.as_ref()
            && let Ok(c) = h.channel_open_session().await
        {
            return Ok(c);
        }
        let h = self.connect(self.timeout).await?;
        let c = h
            .channel_open_session()
            .await
            .map_err(|e| Trouble::NoConnection(e.to_string()))?;
        *warm = Some(h);
        Ok(c)
    }

    /// Run `command`. `Ok(None)`: the command was sent but the connection
    /// dropped before an exit status (what a node powering off does).
    async fn run(&self, command: &str) -> Result<Option<u32>, Trouble> {
        let mut warm = self.session.lock().await;
        let mut channel = self.channel(&mut warm).await?;
        let sent = channel.exec(true, command).await;
        if let Err(e) = sent {
            *warm = None;
            return Err(Trouble::NoConnection(format!("sending the command: {e}")));
        }
        let work = async {
            let mut code = None;
            while let Some(msg) = channel.wait().await {
                if let ChannelMsg::ExitStatus { exit_status } = msg {
                    code = Some(exit_status);
                }
            }
            code
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(code) => {
                if code.is_none() {
                    *warm = None;
                }
                Ok(code)
            }
            Err(_) => {
                *warm = None;
                Err(Trouble::Silent)
            }
        }
    }

    /// `confirm = "unreachable"`: probe every [`PROBE_EVERY`] until the node
    /// answers (on) or every attempt has failed for `unreachable_for` (off),
    /// measured from the start of the first failed attempt to the end of
    /// the last one.
    async fn unreachable_for_the_window(&self) -> Result<PowerState, FenceError> {
        let within = self.timeout.min(PROBE_ANSWER);
        let since = tokio::time::Instant::now();
        let mut failed = 0u32;
        loop {
            let attempt = tokio::time::Instant::now();
            match self.connect(within).await {
                Ok(h) => {
                    *self.session.lock().await = Some(h);
                    if failed > 0 {
                        tracing::info!(
                            device = %self.name,
                            failed,
                            after = ?since.elapsed(),
                            "ssh: the node answers again before unreachable_for ({:?}) ran out: on, not off",
                            self.unreachable_for
                        );
                    }
                    return Ok(PowerState::On);
                }
                Err(Trouble::NoConnection(why)) => {
                    failed += 1;
                    let down = since.elapsed();
                    if down >= self.unreachable_for {
                        tracing::info!(
                            device = %self.name,
                            failed,
                            last = %why,
                            "ssh: {}:{} refused or ignored every connection for {down:?} \
                             (unreachable_for {:?}): counted as off (confirm = \"unreachable\")",
                            self.host,
                            self.port,
                            self.unreachable_for
                        );
                        return Ok(PowerState::Off);
                    }
                    if failed == 1 {
                        tracing::info!(
                            device = %self.name,
                            reason = %why,
                            "ssh: {}:{} does not answer; off only if no connection succeeds for {:?}",
                            self.host,
                            self.port,
                            self.unreachable_for
                        );
                    }
                }
                Err(Trouble::Fence(e)) => return Err(e),
                Err(Trouble::Silent) => return Err(self.silent()),
            }
            tokio::time::sleep_until(attempt + PROBE_EVERY).await;
        }
    }

    fn silent(&self) -> FenceError {
        FenceError::Timeout {
            device: self.name.clone(),
            timeout: self.timeout,
        }
    }

    fn no_connection(&self, why: String) -> FenceError {
        FenceError::Unreachable {
            device: self.name.clone(),
            reason: format!("{}:{}: {why}", self.host, self.port),
        }
    }

    /// Run a command; success is exit 0, or for `off` only, a connection
    /// that dropped or went silent after the command was sent (the node
    /// went down under it). Either way `off` is only "accepted": `status`
    /// (the unreachable window) confirms.
    async fn command(&self, command: &str, what: &str) -> Result<(), FenceError> {
        match self.run(command).await {
            Ok(Some(0)) => Ok(()),
            Ok(None) | Err(Trouble::Silent) if what == "off" => Ok(()),
            Err(Trouble::Silent) => Err(self.silent()),
            Ok(None) => Err(FenceError::Device {
                device: self.name.clone(),
                reason: format!("{what} command: the connection dropped before an exit status"),
            }),
            Ok(Some(code)) => Err(FenceError::Refused {
                device: self.name.clone(),
                reason: format!("{what} command exited with {code}"),
            }),
            Err(Trouble::NoConnection(why)) => Err(self.no_connection(why)),
            Err(Trouble::Fence(e)) => Err(e),
        }
    }
}

#[async_trait]
impl FenceDriver for SshDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        let mut m = metadata();
        m.confirms_power_state = self.confirm == Confirm::Unreachable;
        m
    }

    /// On if the node answers now. Off, with `confirm = "unreachable"`,
    /// only after it refused or ignored every connection for
    /// `unreachable_for` (this call lasts that long then); otherwise a node
    /// that does not answer is unknown.
    async fn status(&self, _port: &str) -> Result<PowerState, FenceError> {
        // A fresh connection each time: a warm session says nothing about now.
        let h = self.session.lock().await.take();
        if let Some(h) = h {
            let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
        }
        if self.confirm == Confirm::Unreachable {
            return self.unreachable_for_the_window().await;
        }
        match self.connect(self.timeout).await {
            Ok(h) => {
                *self.session.lock().await = Some(h);
                Ok(PowerState::On)
            }
            Err(Trouble::NoConnection(why)) => {
                tracing::debug!(
                    device = %self.name,
                    reason = %why,
                    "ssh: no answer: power state unknown (confirm = \"never\")"
                );
                Ok(PowerState::Unknown)
            }
            Err(Trouble::Fence(e)) => Err(e),
            Err(Trouble::Silent) => Err(self.silent()),
        }
    }

    async fn on(&self, _port: &str) -> Result<(), FenceError> {
        match &self.on_command {
            Some(c) => self.command(c, "on").await,
            None => Err(FenceError::Unsupported {
                device: self.name.clone(),
                action: "on",
                reason:
                    "a node that is off runs no command; set on_command for a node that is not off"
                        .into(),
            }),
        }
    }

    async fn off(&self, _port: &str) -> Result<(), FenceError> {
        self.command(&self.off_command, "off").await
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        Ok(vec![Port {
            id: self.host.clone(),
            state: self.status("").await?,
        }])
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        self.command("true", "monitor").await
    }

    async fn close(&self) {
        if let Some(h) = self.session.lock().await.take() {
            let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(kv: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in kv {
            p.values.insert((*k).into(), (*v).into());
        }
        p
    }

    #[test]
    fn unreachable_for_defaults_to_5s_and_is_checked() {
        let un = ("confirm", "unreachable");
        assert_eq!(
            confirm_params(&with(&[un])).unwrap(),
            (Confirm::Unreachable, Duration::from_secs(5))
        );
        assert_eq!(
            confirm_params(&with(&[un, ("unreachable_for", "1s")])).unwrap(),
            (Confirm::Unreachable, Duration::from_secs(1))
        );
        assert_eq!(confirm_params(&with(&[])).unwrap().0, Confirm::Never);
        for (kv, why) in [
            (vec![un, ("unreachable_for", "500ms")], "at least 1s"),
            (vec![un, ("unreachable_for", "soon")], "soon"),
            (vec![("unreachable_for", "10s")], "only means something"),
            (
                vec![("confirm", "never"), ("unreachable_for", "10s")],
                "only means something",
            ),
        ] {
            let e = value_problems(&with(&kv));
            assert_eq!(e.len(), 1, "{kv:?}: {e:?}");
            let e = e[0].to_string();
            assert!(
                e.contains("unreachable_for") && e.contains(why),
                "{kv:?}: {e}"
            );
        }
        // Config validation sees them with the rest.
        let p = with(&[
            ("ip", "127.0.0.1"),
            ("known_hosts", "/etc/fence/known_hosts"),
            un,
            ("unreachable_for", "100ms"),
        ]);
        let e = crate::native::problems("ssh", &p);
        assert!(
            e.iter().any(|e| e.to_string().contains("unreachable_for")),
            "{e:?}"
        );
        assert!(
            metadata()
                .parameters
                .iter()
                .any(|p| p.name == "unreachable_for" && p.description.contains("default 5s"))
        );
    }
}
