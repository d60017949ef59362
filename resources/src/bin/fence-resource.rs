//! Run one action on a resource group once, and exit 0 (done) or 1 (not).
//!
//! ```text
//! fence-resource start --group web --epoch 7 --node n1 '[{"kind":"ocf","agent":"heartbeat:Dummy"}]'
//! ```
//!
//! For operators trying a group by hand and for tests (under `ip netns
//! exec`). A `process` resource lives only as long as this command: `start`
//! leaves it running, detached, and a later `stop` does not know it.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use resources::{Group, ResourceSpec, RunEnv};

#[derive(Parser)]
#[command(
    name = "fence-resource",
    about = "Run one action on a resource group, once"
)]
struct Cli {
    /// What to do.
    #[arg(value_enum)]
    action: Action,
    /// The group's name (FENCE_GROUP; resource instances are <group>-<index>).
    #[arg(long)]
    group: String,
    /// The lease epoch (FENCE_EPOCH).
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// This node's name (FENCE_NODE).
    #[arg(long)]
    node: String,
    /// This node's id (FENCE_NODE_ID).
    #[arg(long, default_value_t = 0)]
    node_id: u32,
    /// Stop as when the lease lapsed: processes SIGKILLed at once.
    #[arg(long)]
    urgent: bool,
    /// The resources: a JSON array of resource specs.
    resources: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    /// Start every resource in order (undoing them if one fails).
    Start,
    /// Stop every resource in reverse order.
    Stop,
    /// Exit 0 if every resource is running.
    Monitor,
    /// Validate the specs and check what they need on this node.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let specs = match parse_specs(&cli.resources) {
        Ok(specs) => specs,
        Err(e) => {
            eprintln!("fence-resource: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = RunEnv {
        epoch: cli.epoch,
        group: cli.group.clone(),
        node: cli.node.clone(),
        node_id: cli.node_id,
    };
    if let Action::Check = cli.action {
        let mut problems = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let mut p = spec.validate();
            if p.is_empty() {
                p = spec.check_installed().await;
            }
            problems.extend(
                p.into_iter()
                    .map(|p| format!("resources[{i}] ({}): {p}", spec.label())),
            );
        }
        if problems.is_empty() {
            println!(
                "group {}: {} resource(s), no problem found",
                cli.group,
                specs.len()
            );
            return ExitCode::SUCCESS;
        }
        for p in &problems {
            eprintln!("group {}: {p}", cli.group);
        }
        return ExitCode::FAILURE;
    }
    let mut group = match Group::new(cli.group.clone(), specs) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("fence-resource: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.action {
        Action::Start => {
            let r = group.start(&env).await;
            if r.is_ok() {
                group.announced().await;
            }
            r
        }
        Action::Stop => group.stop(&env, cli.urgent).await,
        Action::Monitor => group.monitor(&env).await,
        Action::Check => Ok(()),
    };
    match result {
        Ok(()) => {
            let what = match cli.action {
                Action::Start => "started",
                Action::Stop => "stopped",
                _ => "running",
            };
            println!("group {}: {what}", cli.group);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fence-resource: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The JSON array of specs; an error names the element that is wrong.
fn parse_specs(json: &str) -> Result<Vec<ResourceSpec>, String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("the resources argument is not a JSON array: {e}"))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| serde_json::from_value(item).map_err(|e| format!("resources[{i}]: {e}")))
        .collect()
}
