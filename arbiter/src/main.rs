//! `fence-arbiter --config FILE`: parses, validates (exit 64 on a bad
//! config), then runs [`arbiter::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;

use arbiter::cli::Args;
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
    let plan = match arbiter::config::Config::load(&args.config) {
        Ok(p) => p,
        Err(errs) => {
            say!(
                "fence-arbiter: invalid configuration {}:",
                args.config.display()
            );
            for e in errs {
                say!("  {e}");
            }
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            say!("fence-arbiter: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    if args.check_config {
        // Build every device too: an `exec` agent's metadata and validate-all.
        for (name, c) in &plan.clusters {
            if let Err(e) = rt.block_on(arbiter::fence_orchestrator::build_devices(
                &c.devices, &c.levels,
            )) {
                say!(
                    "fence-arbiter: invalid configuration {}:\n  cluster.{name}: {e}",
                    args.config.display()
                );
                return ExitCode::from(64);
            }
        }
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_tracing(plan.json_logs);
    // A file size limit (systemd's LimitFSIZE, a quota) must be a store
    // write error, which stops the arbiter cleanly before it acts, not
    // SIGXFSZ's core dump in the middle of a commit. (tokio keeps the
    // handler for the life of the process.)
    let _ = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
            nix::sys::signal::Signal::SIGXFSZ as i32,
        ))
    });
    match rt.block_on(arbiter::run(plan, shutdown_signal(), |_| {})) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fence-arbiter failed");
            say!("fence-arbiter: {e}");
            let config_problem = matches!(
                e,
                arbiter::ArbiterError::Device(fence_drivers::FenceError::InvalidParameter { .. })
            );
            ExitCode::from(if config_problem { 64 } else { 70 })
        }
    }
}

fn init_tracing(json: bool) {
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
    if json {
        b.json().init();
    } else {
        b.init();
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
