//! `fencectl`: parses the command line and dispatches; exit codes are in
//! [`fencectl::client::exit`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fencectl::client::exit;
use fencectl::demo::{DemoOptions, Scenario};
use fencectl::{Output, commands};

#[derive(Parser)]
#[command(
    name = "fencectl",
    version,
    about = "Operate the fencing-first split-brain arbiter"
)]
struct Cli {
    /// The arbiter's admin URL.
    #[arg(
        long,
        global = true,
        env = "FENCECTL_ARBITER",
        default_value = "http://127.0.0.1:7400"
    )]
    arbiter: String,
    /// CA certificate that signed the arbiter's certificate (mutual TLS).
    #[arg(long, global = true, env = "FENCECTL_CA")]
    ca: Option<PathBuf>,
    /// fencectl's certificate (identity `admin` or `reader`).
    #[arg(long, global = true, env = "FENCECTL_CERT")]
    cert: Option<PathBuf>,
    /// fencectl's private key.
    #[arg(long, global = true, env = "FENCECTL_KEY")]
    key: Option<PathBuf>,
    /// The name in the arbiter's certificate.
    #[arg(long, global = true, default_value = "arbiter")]
    arbiter_name: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster status: epoch, survivors, fencing. Exit 0 healthy, 3 degraded, 69 unreachable.
    Status {
        /// Only this cluster (default: all).
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Every node: state, lease, connection, reachability.
    Nodes {
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Every fence recorded, newest first: node, outcome, time, epoch.
    History {
        #[arg(long, default_value = "")]
        cluster: String,
        /// At most this many per cluster.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Clear a node's alive-after-off alert (admin): after its fence device
    /// confirmed it off yet it spoke again, it gets no lease until cleared.
    Clear {
        /// The node id.
        node: u32,
        #[arg(long)]
        cluster: String,
        /// Confirm: the fence device's wiring was checked and fixed.
        #[arg(long)]
        yes: bool,
    },
    /// Fence NODE now through its fence devices (admin), whatever its
    /// health; recorded as manual, with who asked and why.
    Fence {
        /// The node: its id or its name.
        node: String,
        #[arg(long)]
        cluster: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Confirm: the node is switched off.
        #[arg(long)]
        yes: bool,
    },
    /// Swear NODE is off (admin): it was powered down by hand, or lost its
    /// power with its BMC, so no device can confirm it. Any fence of it
    /// ends; the survivors take over once its lease has ended. A node that
    /// is in fact running then corrupts shared data: see the warning.
    Confirm {
        /// The node: its id or its name.
        node: String,
        #[arg(long)]
        cluster: String,
        /// Confirm: you have seen the node off.
        #[arg(long)]
        yes: bool,
    },
    /// Power a fenced NODE back on through the devices that can (admin);
    /// it rejoins once its agent runs.
    Unfence {
        /// The node: its id or its name.
        node: String,
        #[arg(long)]
        cluster: String,
    },
    /// Maintenance on or off (admin): no automatic fencing of a node (or of
    /// the whole cluster); a node leaving is reported, not fenced.
    Maintenance {
        #[arg(value_enum)]
        state: OnOff,
        /// Only this node (its id or name); default: the whole cluster.
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        cluster: String,
    },
    /// Every resource group: its holder, state and since when.
    Resources {
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Move a resource group to another node (admin): its holder stops it
    /// and acknowledges, then NODE starts it. It stays there (also with
    /// failback) until moved again or NODE leaves.
    Move {
        /// The group's name.
        group: String,
        /// The node: its id or its name.
        node: String,
        #[arg(long)]
        cluster: String,
    },
    /// Stream cluster events until Ctrl-C.
    Watch {
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Fence drivers: list, metadata, validate a config, test a node's devices.
    #[command(subcommand)]
    Driver(DriverCmd),
    /// Make a private CA and the certificates of a cluster (mutual TLS).
    Certs {
        /// Directory to write ca.pem, arbiter.pem, admin.pem, reader.pem and
        /// <node>.<cluster>.pem (each with its .key).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        cluster: String,
        /// Node names, comma separated (node<id> unless the config names them).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Run a 3-node cluster on loopback and fence a failed node.
    Demo {
        /// What happens to node 3.
        #[arg(long, value_enum, default_value = "freeze")]
        scenario: Scenario,
        /// Directory holding fence-arbiter and fence-agent (default: next to fencectl).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Keep the demo's directory (logs, store, power device record).
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
enum DriverCmd {
    /// Built-in drivers and the ClusterLabs agents installed here.
    List,
    /// Parameters of a driver (sim, exec) or of a ClusterLabs agent (fence_ipmilan).
    Metadata { name: String },
    /// Build every device of an arbiter config as the arbiter would (agents'
    /// metadata and validate-all included).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a real action on every device of NODE's fence levels.
    Test {
        node: u32,
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "")]
        cluster: String,
        #[arg(long, value_enum, default_value = "status")]
        action: commands::driver::TestAction,
        /// Confirm an action that switches real power (off, on, reboot).
        #[arg(long)]
        yes: bool,
    },
}

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
    let r = rt.block_on(async {
        match cli.command {
            Cmd::Driver(d) => match d {
                DriverCmd::List => commands::driver::list(cli.output),
                DriverCmd::Metadata { name } => commands::driver::metadata(&name, cli.output).await,
                DriverCmd::Validate { config } => {
                    commands::driver::validate(&config, cli.output).await
                }
                DriverCmd::Test {
                    node,
                    config,
                    cluster,
                    action,
                    yes,
                } => commands::driver::test(&config, &cluster, node, action, yes, cli.output).await,
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
            Cmd::Status { cluster } => {
                commands::status::status(&cli.arbiter, &cluster, cli.output).await
            }
            Cmd::Nodes { cluster } => {
                commands::status::nodes(&cli.arbiter, &cluster, cli.output).await
            }
            Cmd::History { cluster, limit } => {
                commands::history::history(&cli.arbiter, &cluster, limit, cli.output).await
            }
            Cmd::Clear { node, cluster, yes } => {
                commands::status::clear(&cli.arbiter, &cluster, node, yes, cli.output).await
            }
            Cmd::Fence {
                node,
                cluster,
                reason,
                yes,
            } => {
                commands::control::fence(&cli.arbiter, &cluster, &node, &reason, yes, cli.output)
                    .await
            }
            Cmd::Confirm { node, cluster, yes } => {
                commands::control::confirm(&cli.arbiter, &cluster, &node, yes, cli.output).await
            }
            Cmd::Unfence { node, cluster } => {
                commands::control::unfence(&cli.arbiter, &cluster, &node, cli.output).await
            }
            Cmd::Maintenance {
                state,
                node,
                cluster,
            } => {
                commands::control::maintenance(
                    &cli.arbiter,
                    &cluster,
                    node.as_deref(),
                    matches!(state, OnOff::On),
                    cli.output,
                )
                .await
            }
            Cmd::Resources { cluster } => {
                commands::resources::resources(&cli.arbiter, &cluster, cli.output).await
            }
            Cmd::Move {
                group,
                node,
                cluster,
            } => {
                commands::resources::move_group(&cli.arbiter, &cluster, &group, &node, cli.output)
                    .await
            }
            Cmd::Watch { cluster } => {
                commands::watch::watch(&cli.arbiter, &cluster, cli.output).await
            }
            Cmd::Demo {
                scenario,
                bin_dir,
                keep,
            } => {
                let json = cli.output == Output::Json;
                let report = fencectl::demo::run(DemoOptions {
                    scenario,
                    bin_dir,
                    quiet: json,
                    keep,
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
    });
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fencectl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
