//! Runs the deterministic cluster simulation over many seeds.
//!
//!     cargo run --release -p tests --bin sim -- --seeds 10000
//!     cargo run --release -p tests --bin sim -- --replay 1234 --verbose
//!     cargo run --release -p tests --bin sim -- --seeds 1000000 --start 0   # soak

use std::process::ExitCode;

use clap::Parser;
use tests::sim::{self, Focus, Mutant, Options};

#[derive(Parser)]
#[command(about = "Deterministic simulation of whole clusters with a safety checker")]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run this one seed (print its trace with --verbose).
    #[arg(long)]
    replay: Option<u64>,
    #[arg(long)]
    verbose: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Break a rule on purpose (see `Mutant::ALL` for the names).
    #[arg(long)]
    mutant: Option<String>,
    /// A narrower mix of faults: flip-during-slow-fence | arbiter-outages | wrong-outlets | peer-cuts | ride-out.
    #[arg(long)]
    focus: Option<String>,
    /// No second process speaking as a node (as the tests that plant bugs
    /// run their seeds).
    #[arg(long)]
    no_duplicates: bool,
    /// No machine with a watchdog (as the tests run seeds recorded before
    /// there were any).
    #[arg(long)]
    no_watchdogs: bool,
    /// No operator switching maintenance on and off (as the tests run
    /// seeds recorded before there was one).
    #[arg(long)]
    no_operator: bool,
    /// No agent rides its lease out (as the tests run seeds recorded before
    /// agents did)
    #[arg(long)]
    no_ride_out: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mutant = match args.mutant.as_deref() {
        None => None,
        Some(name) => match Mutant::by_name(name) {
            Some(m) => Some(m),
            None => {
                let names: Vec<&str> = Mutant::ALL.iter().map(|(n, _)| *n).collect();
                eprintln!("error: unknown --mutant {name:?}; expected one of {names:?}");
                return ExitCode::from(64);
            }
        },
    };
    let focus = match args.focus.as_deref() {
        None => None,
        Some("flip-during-slow-fence") => Some(Focus::FlipDuringSlowFence),
        Some("arbiter-outages") => Some(Focus::ArbiterOutages),
        Some("wrong-outlets") => Some(Focus::WrongOutlets),
        Some("peer-cuts") => Some(Focus::PeerCuts),
        Some("ride-out") => Some(Focus::RideOut),
        Some(other) => {
            eprintln!(
                "error: unknown --focus {other:?}; expected flip-during-slow-fence, arbiter-outages, wrong-outlets, peer-cuts or ride-out"
            );
            return ExitCode::from(64);
        }
    };
    if let Some(seed) = args.replay {
        let mut o = Options::new(seed);
        o.verbose = args.verbose;
        o.mutant = mutant;
        o.focus = focus;
        o.duplicates = !args.no_duplicates;
        o.watchdogs = !args.no_watchdogs;
        o.operator = !args.no_operator;
        o.ride_out = !args.no_ride_out;
        return match sim::run(&o) {
            Ok(r) => {
                println!("seed {seed}: ok {r:?}");
                ExitCode::SUCCESS
            }
            Err(v) => {
                println!("{v}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = std::time::SystemTime::now();
    let mut template = Options::new(args.start);
    template.mutant = mutant;
    template.focus = focus;
    template.duplicates = !args.no_duplicates;
    template.watchdogs = !args.no_watchdogs;
    template.operator = !args.no_operator;
    template.ride_out = !args.no_ride_out;
    let progress = |v: &sim::Violation| eprintln!("{v}");
    let mut totals = sim::Totals::default();
    let mut failures = Vec::new();
    // In chunks of 10,000 seeds, with a progress line after each.
    let end = args.start + args.seeds;
    let mut from = args.start;
    while from < end {
        let to = (from + 10_000).min(end);
        let (t, f) = sim::run_many(from..to, &template, threads, progress);
        totals.merge(&t);
        failures.extend(f);
        from = to;
        if from < end {
            eprintln!("... seed {from}");
        }
    }
    let secs = started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    println!(
        "{} seeds from {} in {:.1}s: {} failed, {} fences confirmed ({} configuration changes, {} fences confirmed while the node ran on, {} alive-after-off alerts, {} duplicate identities, {} fences too tangled to judge, {} watchdog resets, {} nodes counted fenced by the watchdog rule, {} maintenance controls, {} maintenance holds, {} leases ridden out, longest {} ms)",
        args.seeds,
        args.start,
        secs,
        failures.len(),
        totals.fences_confirmed,
        totals.config_changes,
        totals.confirmed_but_alive,
        totals.alive_after_off_alerts,
        totals.duplicate_identities,
        totals.unjudged_fences,
        totals.watchdog_resets,
        totals.watchdog_fences,
        totals.maintenance_controls,
        totals.maintenance_holds,
        totals.ride_outs,
        totals.longest_ride_ms,
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
