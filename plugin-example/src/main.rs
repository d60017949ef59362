//! `fence-plugin-example --listen unix:/run/fence/example.sock` (or
//! `--listen 127.0.0.1:7301`): serves the example plugin until SIGTERM.

use anyhow::Context;
use clap::Parser;
use fence_plugin_example::FilePlugin;
use proto::driver::fence_driver_server::FenceDriverServer;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// `unix:/path/to.sock` or `127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop.cancel();
    });
    let server =
        tonic::transport::Server::builder().add_service(FenceDriverServer::new(FilePlugin));
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path).with_context(|| format!("bind {path}"))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
        server
            .serve_with_incoming_shutdown(incoming, token.cancelled())
            .await?;
        let _ = std::fs::remove_file(path);
    } else {
        let addr: std::net::SocketAddr = args.listen.parse().context("--listen")?;
        anyhow::ensure!(addr.ip().is_loopback(), "--listen {addr}: loopback only");
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
        server
            .serve_with_incoming_shutdown(incoming, token.cancelled())
            .await?;
    }
    Ok(())
}
