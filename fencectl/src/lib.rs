//! The operator CLI: commands against the arbiter's admin API, and `demo`.

pub mod certs;
pub mod cli;
pub mod client;
pub mod commands;
pub mod demo;
pub mod local_cluster;

/// Output format of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}
