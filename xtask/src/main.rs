//! `cargo xtask docs --out DIR` | `cargo xtask debs --out DIR [--no-build]`:
//! see [`xtask`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Release tasks: man pages, completions, Debian packages"
)]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Man pages and shell completions, generated from the clap definitions.
    Docs {
        #[arg(long)]
        out: PathBuf,
    },
    /// The fence-arbiter, fence-agent and fencectl .deb packages (cargo-deb).
    Debs {
        #[arg(long, default_value = "target/debian")]
        out: PathBuf,
        /// Package the release binaries already built (do not run cargo build).
        #[arg(long)]
        no_build: bool,
    },
}

fn main() -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let r = match Args::parse().task {
        Task::Docs { out } => xtask::write_docs(&out).map(|f| {
            println!("{} files in {}", f.len(), out.display());
        }),
        Task::Debs { out, no_build } => {
            xtask::build_debs(&workspace, &out, !no_build).map(|debs| {
                for d in debs {
                    println!("{}", d.display());
                }
            })
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
