//! The command line of `fence-agent` (clap): parsed by `main.rs`, and read
//! by `xtask` to generate the man page and shell completions.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fence-agent",
    version,
    about = "Node agent of the fencing-first split-brain arbiter"
)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub check_config: bool,
}
