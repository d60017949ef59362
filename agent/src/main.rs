//! `fence-agent --config FILE`: validates (exit 64 on a bad config), then
//! runs [`agent::run`] until SIGTERM or SIGINT. Exit 3: the arbiter recorded
//! this node as fenced while it still runs (wrong outlet or a lying device);
//! do not restart it.

use std::process::ExitCode;

use agent::cli::Args;
use clap::Parser;

/// `eprintln!` that never panics: stderr may be a file past a size limit
/// (systemd's LimitFSIZE) or a closed pipe, and the exit status must still
/// say what happened.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match agent::config::AgentConfig::load(&args.config) {
        Ok(p) => p,
        Err(errs) => {
            say!(
                "fence-agent: invalid configuration {}:",
                args.config.display()
            );
            for e in errs {
                say!("  {e}");
            }
            return ExitCode::from(64);
        }
    };
    if args.check_config {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log write that fails (a file past its size limit) is dropped:
        // the subscriber's own report of it would panic (eprintln!).
        .log_internal_errors(false);
    if plan.json_logs {
        b.json().init();
    } else {
        b.init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            say!("fence-agent: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match rt.block_on(agent::run(plan, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ agent::AgentError::Fenced { .. }) => {
            say!("fence-agent: {e}; stopping (exit 3: do not restart)");
            ExitCode::from(3)
        }
        Err(e) => {
            say!("fence-agent: {e}");
            ExitCode::from(70)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
