//! `fencectl`: parses the command line and dispatches; exit codes are in
//! [`fencectl::client::exit`].

use std::process::ExitCode;

use clap::Parser;
use fencectl::cli::{Cli, Cmd, DriverCmd, OnOff};
use fencectl::client::exit;
use fencectl::demo::DemoOptions;
use fencectl::{Output, commands};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fencectl: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match (&cli.ca, &cli.cert, &cli.key) {
        (Some(ca), Some(cert), Some(key)) => {
            match fencectl::client::ClientTls::load(ca, cert, key, &cli.arbiter_name) {
                Ok(t) => fencectl::client::register_tls(&cli.arbiter, t),
                Err(e) => {
                    eprintln!("fencectl: {e}");
                    return ExitCode::from(exit::USAGE);
                }
            }
        }
        (None, None, None) => {}
        _ => {
            eprintln!("fencectl: --ca, --cert and --key go together");
            return ExitCode::from(exit::USAGE);
        }
    }
    fencectl::client::set_no_follow(cli.no_follow);
    let r = rt.block_on(async {
        let mut arbiter = cli.arbiter.clone();
        // A standby refers the command to the leader: follow it, once.
        let mut followed = false;
        loop {
            match dispatch(&cli, &arbiter).await {
                Err(fencectl::client::CliError::Standby {
                    message,
                    leader: Some(leader),
                }) if !cli.no_follow && !followed && leader != arbiter => {
                    eprintln!("fencectl: {message}; asking the leader");
                    fencectl::client::share_tls(&arbiter, &leader);
                    arbiter = leader;
                    followed = true;
                }
                r => break r,
            }
        }
    });
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fencectl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Run one command against `arbiter`.
async fn dispatch(cli: &Cli, arbiter: &str) -> Result<u8, fencectl::client::CliError> {
    match &cli.command {
        Cmd::Driver(d) => match d {
            DriverCmd::List => commands::driver::list(cli.output),
            DriverCmd::Metadata { name } => commands::driver::metadata(&name, cli.output).await,
            DriverCmd::Validate { config } => commands::driver::validate(&config, cli.output).await,
            DriverCmd::Test {
                node,
                config,
                cluster,
                action,
                yes,
            } => commands::driver::test(config, cluster, *node, *action, *yes, cli.output).await,
        },
        Cmd::Certs {
            dir,
            cluster,
            nodes,
        } => {
            let issued = fencectl::certs::generate(&dir, &cluster, &nodes)?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&issued).expect("serializable")
                ),
                Output::Text => {
                    println!("CA: {}", dir.join("ca.pem").display());
                    for i in &issued {
                        println!(
                            "{:<24} {}  {}",
                            i.identity,
                            i.cert.display(),
                            i.key.display()
                        );
                    }
                }
            }
            Ok(exit::OK)
        }
        Cmd::Status { cluster } => commands::status::status(arbiter, &cluster, cli.output).await,
        Cmd::Nodes { cluster } => commands::status::nodes(arbiter, &cluster, cli.output).await,
        Cmd::History { cluster, limit } => {
            commands::history::history(arbiter, cluster, *limit, cli.output).await
        }
        Cmd::Clear { node, cluster, yes } => {
            commands::status::clear(arbiter, cluster, *node, *yes, cli.output).await
        }
        Cmd::Fence {
            node,
            cluster,
            reason,
            yes,
        } => commands::control::fence(arbiter, cluster, node, reason, *yes, cli.output).await,
        Cmd::Confirm { node, cluster, yes } => {
            commands::control::confirm(arbiter, cluster, node, *yes, cli.output).await
        }
        Cmd::Unfence { node, cluster } => {
            commands::control::unfence(arbiter, &cluster, &node, cli.output).await
        }
        Cmd::Maintenance {
            state,
            node,
            cluster,
        } => {
            commands::control::maintenance(
                arbiter,
                &cluster,
                node.as_deref(),
                matches!(state, OnOff::On),
                cli.output,
            )
            .await
        }
        Cmd::Resources { cluster } => {
            commands::resources::resources(arbiter, &cluster, cli.output).await
        }
        Cmd::Move {
            group,
            node,
            cluster,
        } => commands::resources::move_group(arbiter, &cluster, &group, &node, cli.output).await,
        Cmd::Watch { cluster } => commands::watch::watch(arbiter, &cluster, cli.output).await,
        Cmd::Demo {
            scenario,
            bin_dir,
            keep,
        } => {
            let json = cli.output == Output::Json;
            let report = fencectl::demo::run(DemoOptions {
                scenario: *scenario,
                bin_dir: bin_dir.clone(),
                quiet: json,
                keep: *keep,
                cluster_extra: String::new(),
                arbiter_extra: String::new(),
            })
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializable")
                );
            }
            Ok(exit::OK)
        }
    }
}
