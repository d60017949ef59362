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
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } => exit::UNAVAILABLE,
            _ => exit::FAILED,
        }
    }

    pub fn from_status(url: &str, s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => CliError::Unreachable {
                url: url.into(),
                reason: s.message().to_string(),
            },
            _ => CliError::Refused(s.message().to_string()),
        }
    }
}

pub async fn connect(url: &str) -> Result<AdminClient<Channel>, CliError> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| {
            CliError::Other(format!(
                "--arbiter {url:?} is not a URL such as http://127.0.0.1:7400: {e}"
            ))
        })?
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
