//! Connecting to the arbiter's admin API, with errors that say what to do.

use std::time::Duration;

use proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

/// Exit codes scripts can rely on.
pub mod exit {
    /// Success (for `status`: every cluster quorate, nothing being fenced).
    pub const OK: u8 = 0;
    /// The request failed (unknown cluster, server error, demo failure).
    pub const FAILED: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// `status`: reachable, but some cluster is not healthy (no quorum,
    /// fencing in progress, or in start-up grace).
    pub const DEGRADED: u8 = 3;
    /// The arbiter cannot be reached (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the arbiter at {url}: {reason}\n  Is fence-arbiter running? Start it with `fence-arbiter --config FILE`,\n  or point fencectl at it with --arbiter URL (or the FENCECTL_ARBITER variable)."
    )]
    Unreachable { url: String, reason: String },
    #[error("the arbiter refused: {0}")]
    Refused(String),
    /// A standby of a group of arbiters referred the request to the leader
    /// (its URL, when the standby knows it).
    #[error(
        "{message}\n  fencectl follows the leader unless --no-follow is given; with --no-follow a standby answers status and history from the store"
    )]
    Standby {
        message: String,
        leader: Option<String>,
    },
    /// Wrong or missing command-line arguments (exit 64).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } | CliError::Standby { .. } => exit::UNAVAILABLE,
            CliError::Usage(_) => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    pub fn from_status(url: &str, s: tonic::Status) -> Self {
        if let Some(leader) = proto::standby::leader_of(&s) {
            return CliError::Standby {
                message: format!("{url}: {}", s.message()),
                leader,
            };
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => CliError::Unreachable {
                url: url.into(),
                reason: s.message().to_string(),
            },
            _ => CliError::Refused(s.message().to_string()),
        }
    }
}

/// Client credentials for mutual TLS with one arbiter.
#[derive(Clone)]
pub struct ClientTls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// The name in the arbiter's certificate (default `arbiter`).
    pub arbiter_name: String,
}

impl ClientTls {
    /// Read the PEM files; errors name the flag.
    pub fn load(
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
        arbiter_name: &str,
    ) -> Result<Self, CliError> {
        let read = |flag: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| CliError::Other(format!("{flag} {}: {e}", p.display())))
        };
        Ok(ClientTls {
            ca: read("--ca", ca)?,
            cert: read("--cert", cert)?,
            key: read("--key", key)?,
            arbiter_name: arbiter_name.into(),
        })
    }
}

/// TLS credentials per arbiter URL. The CLI registers the one it talks to;
/// a test harness may register several. Plain HTTP for unregistered URLs.
static TLS: std::sync::Mutex<std::collections::BTreeMap<String, ClientTls>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// `--no-follow`: requests ask a standby to answer itself.
static NO_FOLLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_no_follow(on: bool) {
    NO_FOLLOW.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A request to the admin API, marked `fence-no-follow` under `--no-follow`.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if NO_FOLLOW.load(std::sync::atomic::Ordering::Relaxed) {
        r.metadata_mut().insert(
            proto::standby::NO_FOLLOW,
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    r
}

/// The credentials registered for `from`, for `to` too (a standby named
/// `to` as its leader: the same CA and client certificate serve both).
pub fn share_tls(from: &str, to: &str) {
    let mut m = TLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = m.get(from).cloned() {
        m.entry(to.to_string()).or_insert(t);
    }
}

/// Use these credentials for every connection to `url`.
pub fn register_tls(url: &str, tls: ClientTls) {
    TLS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(url.to_string(), tls);
}

pub async fn connect(url: &str) -> Result<AdminClient<Channel>, CliError> {
    let mut ep = Endpoint::from_shared(url.to_string()).map_err(|e| {
        CliError::Other(format!(
            "--arbiter {url:?} is not a URL such as http://127.0.0.1:7400: {e}"
        ))
    })?;
    let tls = TLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(url)
        .cloned();
    if let Some(t) = tls {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&t.ca))
            .identity(Identity::from_pem(&t.cert, &t.key))
            .domain_name(t.arbiter_name);
        ep = ep
            .tls_config(cfg)
            .map_err(|e| CliError::Other(format!("TLS setup: {e}")))?;
    } else if url.starts_with("https://") {
        return Err(CliError::Other(
            "an https:// arbiter needs --ca, --cert and --key (or FENCECTL_CA, FENCECTL_CERT, FENCECTL_KEY)".into(),
        ));
    }
    let ep = ep
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let ch = ep.connect().await.map_err(|e| CliError::Unreachable {
        url: url.into(),
        reason: {
            // The whole cause chain: "tcp connect error: Connection refused".
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        },
    })?;
    Ok(AdminClient::new(ch))
}
