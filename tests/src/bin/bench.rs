//! Benchmarks (not timed tests). Results go to BENCHMARKS.md with the
//! command that produced them.
//!
//!     cargo run --release -p tests --bin bench -- decide
//!     cargo run --release -p tests --bin bench -- failover --runs 20 [--scenario freeze|partition]
//!     cargo run --release -p tests --bin bench -- drivers --runs 20 [ipmi snmp redfish]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;

use arbiter::core::decide::decide;
use arbiter::core::{Candidate, NodeId, Quorum, QuorumMode, TieBreaker};
use clap::{Parser, Subcommand};
use fencectl::demo::{DemoOptions, Scenario};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time of one survivor decision for 8, 32 and 64 nodes.
    Decide {
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
    /// The demo, N times: fault to confirmed fence and to survivors notified.
    Failover {
        #[arg(long, default_value_t = 20)]
        runs: u32,
        #[arg(long, value_enum, default_value = "freeze")]
        scenario: Scenario,
        /// `default` (DESIGN.md: 100/300/500/200 ms) or `fast`
        /// (heartbeat 30 ms, lease 90 ms, lost_after 150 ms, settle 60 ms).
        #[arg(long, default_value = "default")]
        timings: String,
    },
    /// Native drivers against the reference tools on the simulated devices
    /// (ipmi_sim, the APC PDU, sushy-emulator), started by the bench itself.
    Drivers {
        #[arg(long, default_value_t = 20)]
        runs: u32,
        /// Any of: ipmi snmp redfish (default: all).
        what: Vec<String>,
    },
}

fn graph(n: u32, kind: &str, rng: &mut rand_chacha::ChaCha8Rng) -> BTreeSet<(NodeId, NodeId)> {
    let mut e = BTreeSet::new();
    for a in 1..=n {
        for b in a + 1..=n {
            let keep = match kind {
                "full mesh" => true,
                "even split" => (a <= n / 2) == (b <= n / 2),
                "5% links down" => !rng.random_bool(0.05),
                "30% links down" => !rng.random_bool(0.30),
                _ => unreachable!(),
            };
            if keep {
                e.insert((a, b));
            }
        }
    }
    e
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99), v[v.len() - 1])
}

fn main() {
    let args = Args::parse();
    match args.cmd {
        Cmd::Drivers { runs, what } => {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let all = what.is_empty();
            let want = |w: &str| all || what.iter().any(|x| x == w);
            if want("ipmi") {
                println!("#### IPMI (ipmi_sim, RMCP+ suite 3, loopback)\n");
                match rt.block_on(tests::driver_bench::ipmi(runs)) {
                    Ok(rows) => println!("{}", tests::driver_bench::table(&rows)),
                    Err(e) => {
                        eprintln!("ipmi: {e}");
                        std::process::exit(1);
                    }
                }
            }
            if want("snmp") {
                println!("#### SNMP (snmpd + APC PowerNet-MIB agent, outlet 3, loopback)\n");
                match rt.block_on(tests::driver_bench::snmp(runs)) {
                    Ok(rows) => println!("{}", tests::driver_bench::table(&rows)),
                    Err(e) => {
                        eprintln!("snmp: {e}");
                        std::process::exit(1);
                    }
                }
            }
            if want("redfish") {
                println!("#### Redfish (sushy-emulator 2.2.0 over HTTPS, loopback)\n");
                match rt.block_on(tests::driver_bench::redfish(runs)) {
                    Ok(rows) => println!("{}", tests::driver_bench::table(&rows)),
                    Err(e) => {
                        eprintln!("redfish: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
        Cmd::Decide { iterations } => {
            println!("| nodes | graph | median | p99 | max |\n|---|---|---|---|---|");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            for n in [8u32, 32, 64] {
                for kind in ["full mesh", "even split", "5% links down", "30% links down"] {
                    let cands: Vec<Candidate> = (1..=n)
                        .map(|id| Candidate {
                            id,
                            votes: 1,
                            priority: id % 3,
                            heuristics: 0,
                        })
                        .collect();
                    let q = Quorum::new(QuorumMode::LastManStanding, u64::from(n));
                    let mut times = Vec::new();
                    for _ in 0..iterations {
                        let e = graph(n, kind, &mut rng);
                        let t = tokio::time::Instant::now();
                        black_box(decide(
                            black_box(&cands),
                            black_box(&e),
                            &q,
                            TieBreaker::LowestNodeId,
                        ));
                        times.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    let (m, p99, max) = stats(times);
                    println!("| {n} | {kind} | {m:.1} µs | {p99:.1} µs | {max:.1} µs |");
                }
            }
        }
        Cmd::Failover {
            runs,
            scenario,
            timings,
        } => {
            let cluster_extra = match timings.as_str() {
                "default" => String::new(),
                "fast" => "heartbeat_interval = \"30ms\"\nlease = \"90ms\"\nlost_after = \"150ms\"\nsettle = \"60ms\"".to_string(),
                other => panic!("--timings {other:?}: expected default or fast"),
            };
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let bin = tests::e2e::binaries();
            let mut confirmed = Vec::new();
            let mut notified = Vec::new();
            let mut detected = Vec::new();
            for i in 0..runs {
                let r = rt
                    .block_on(fencectl::demo::run(DemoOptions {
                        scenario,
                        bin_dir: Some(bin.clone()),
                        quiet: true,
                        keep: false,
                        cluster_extra: cluster_extra.clone(),
                    }))
                    .unwrap_or_else(|e| panic!("run {i}: {e}"));
                eprintln!(
                    "run {i}: detected {:.1} ms, confirmed {:.1} ms, notified {:.1} ms",
                    r.freeze_to_detected_ms, r.freeze_to_confirmed_ms, r.freeze_to_notified_ms
                );
                detected.push(r.freeze_to_detected_ms);
                confirmed.push(r.freeze_to_confirmed_ms);
                notified.push(r.freeze_to_notified_ms);
                std::thread::sleep(Duration::from_millis(100));
            }
            println!(
                "| {scenario:?}, {timings} timings, {runs} runs | median | p99 | max |\n|---|---|---|---|"
            );
            for (name, v) in [
                ("fault → detected", detected),
                ("fault → fence confirmed", confirmed),
                ("fault → survivors notified", notified),
            ] {
                let (m, p99, max) = stats(v);
                println!("| {name} | {m:.1} ms | {p99:.1} ms | {max:.1} ms |");
            }
        }
    }
}
