//! The command line of `fencectl` (clap): parsed by `main.rs`, and read by
//! `xtask` to generate the man pages and shell completions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::demo::Scenario;
use crate::{Output, commands};

#[derive(Parser)]
#[command(
    name = "fencectl",
    version,
    about = "Operate the fencing-first split-brain arbiter"
)]
pub struct Cli {
    /// The arbiter's admin URL.
    #[arg(
        long,
        global = true,
        env = "FENCECTL_ARBITER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub arbiter: String,
    /// CA certificate that signed the arbiter's certificate (mutual TLS).
    #[arg(long, global = true, env = "FENCECTL_CA")]
    pub ca: Option<PathBuf>,
    /// fencectl's certificate (identity `admin` or `reader`).
    #[arg(long, global = true, env = "FENCECTL_CERT")]
    pub cert: Option<PathBuf>,
    /// fencectl's private key.
    #[arg(long, global = true, env = "FENCECTL_KEY")]
    pub key: Option<PathBuf>,
    /// The name in the arbiter's certificate.
    #[arg(long, global = true, default_value = "arbiter")]
    pub arbiter_name: String,
    /// Ask the given arbiter itself: a standby of a group on etcd then
    /// answers `status` and `history` read-only from the store, instead of
    /// fencectl following it to the leader (the default).
    #[arg(long, global = true)]
    pub no_follow: bool,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "text")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum DriverCmd {
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
