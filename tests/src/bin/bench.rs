//! Benchmarks (not timed tests). Results go to BENCHMARKS.md with the
//! command that produced them.
//!
//!     cargo run --release -p tests --bin bench -- decide
//!     cargo run --release -p tests --bin bench -- failover --runs 20 [--scenario freeze|partition]
//!     cargo run --release -p tests --bin bench -- drivers --runs 20 [ipmi snmp redfish]
//!     cargo run --release -p tests --bin bench -- floating-address --runs 20   # as root: ours, then keepalived
//!     cargo run --release -p tests --bin bench -- watchdog --runs 10   # a hung node: by its BMC, then by the watchdog rule

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
        /// With an alert hook (a command that reads its JSON) and the
        /// metrics endpoint on (127.0.0.1, a free port).
        #[arg(long)]
        alerts_and_metrics: bool,
    },
    /// The store: durable intent writes (fsync) one by one, and a restart
    /// of the real `fence-arbiter` on a store with `history` fences and one
    /// open intent, to the resumed fence's `off` at the device; the same
    /// with an empty history, for the ratio.
    Store {
        #[arg(long, default_value_t = 1000)]
        writes: usize,
        #[arg(long, default_value_t = 1000)]
        history: u64,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Where the store files go (a real disk: /tmp may be a tmpfs, where
        /// fsync costs nothing).
        #[arg(long, default_value = "target/bench-store")]
        dir: std::path::PathBuf,
    },
    /// A group of two arbiters on a real etcd (three members, Debian's
    /// etcd-server): intent write latency on etcd against redb, and the
    /// leader killed `rounds` times to every node leased by the other.
    Etcd {
        #[arg(long, default_value_t = 1000)]
        writes: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Where redb's file goes (the same disk as etcd's data under
        /// the system temporary directory).
        #[arg(long, default_value = "target/bench-store")]
        dir: std::path::PathBuf,
    },
    /// Agent sessions heartbeating against one real `fence-arbiter`
    /// (plain TCP on 127.0.0.1, a connection each), with redb and with a
    /// three-member etcd behind it: acks per second, ack latency, the
    /// arbiter's CPU and memory.
    Heartbeats {
        #[arg(long, default_value_t = 100)]
        clusters: usize,
        #[arg(long, default_value_t = 10)]
        nodes: u32,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// A floating address in network namespaces (root): per fault of its
    /// holder, fault to the first answer from the new holder and the time
    /// two MACs answered, for resource groups and for keepalived 2.2.7 in
    /// the same topology, in the same run.
    FloatingAddress {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Dual answers are counted this long after each fault (ms).
        #[arg(long, default_value_t = 6000)]
        window_ms: u64,
        /// Only ours (no keepalived).
        #[arg(long)]
        no_keepalived: bool,
    },
    /// A node cut off while its resource's stop hangs: fenced by a working
    /// device, then (its BMC dead) by the watchdog rule with the stand-in
    /// watchdog: cut to reset, to counted fenced, to the group started on
    /// a survivor.
    Watchdog {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The watchdog's timeout (ms).
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
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

fn watchdog(runs: usize, timeout: Duration) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bin = tests::e2e::binaries();
    let mut medians = Vec::new();
    for (device_works, label) in [
        (true, "device (BMC works)"),
        (false, "watchdog rule (BMC dead)"),
    ] {
        let (mut reset, mut fenced, mut started) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..runs {
            match rt.block_on(tests::watchdog_bench::run_once(&bin, timeout, device_works)) {
                Ok(r) => {
                    eprintln!("{label} run {k}: {r:?}");
                    reset.extend(r.reset_ms);
                    fenced.push(r.fenced_ms);
                    started.push(r.started_ms);
                }
                Err(e) => {
                    eprintln!("{label} run {k}: {e}");
                    std::process::exit(1);
                }
            }
        }
        println!("#### {label}, watchdog timeout {timeout:?}, {runs} runs (ms from the cut)\n");
        println!("| | median | p99 | max |\n|---|---|---|---|");
        for (what, v) in [
            ("reset by the watchdog", &reset),
            ("fence confirmed", &fenced),
            ("web started on node 1", &started),
        ] {
            if v.is_empty() {
                println!("| {what} | - | - | - |");
            } else {
                let (m, p, x) = stats(v.clone());
                println!("| {what} | {m:.0} | {p:.0} | {x:.0} |");
            }
        }
        println!();
        medians.push(stats(started.clone()).0);
    }
    println!(
        "takeover by the watchdog rule / by a working device: {:.2}x (medians)",
        medians[1] / medians[0]
    );
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
        Cmd::FloatingAddress {
            runs,
            window_ms,
            no_keepalived,
        } => floating_address(runs, Duration::from_millis(window_ms), !no_keepalived),
        Cmd::Watchdog { runs, timeout_ms } => watchdog(runs, Duration::from_millis(timeout_ms)),
        Cmd::Store {
            writes,
            history,
            runs,
            dir,
        } => tests::store_bench::run(writes, history, runs, &dir),
        Cmd::Etcd {
            writes,
            rounds,
            dir,
        } => tests::etcd_bench::run(writes, rounds, &dir),
        Cmd::Heartbeats {
            clusters,
            nodes,
            interval_ms,
            seconds,
        } => tests::heartbeat_load::bench(
            clusters,
            nodes,
            Duration::from_millis(interval_ms),
            Duration::from_secs(seconds),
        ),
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
            alerts_and_metrics,
        } => {
            let hook_dir = tempfile::tempdir().expect("tempdir");
            let arbiter_extra = if alerts_and_metrics {
                let hook = tests::e2e::script(
                    hook_dir.path(),
                    "hook",
                    "cat >> \"$(dirname \"$0\")/alerts.jsonl\"",
                );
                let port = tests::e2e::free_port();
                format!("metrics = \"127.0.0.1:{port}\"\nalerts = {{ command = [\"{hook}\"] }}\n")
            } else {
                "metrics = \"off\"\n".to_string()
            };
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
                        arbiter_extra: arbiter_extra.clone(),
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
            if alerts_and_metrics {
                let alerts = std::fs::read_to_string(hook_dir.path().join("alerts.jsonl"))
                    .unwrap_or_default()
                    .lines()
                    .count();
                eprintln!("alerts delivered to the hook: {alerts}");
            }
            let with = if alerts_and_metrics {
                "alerts and metrics on"
            } else {
                "alerts and metrics off"
            };
            println!(
                "| {scenario:?}, {timings} timings, {with}, {runs} runs | median | p99 | max |\n|---|---|---|---|"
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

fn floating_address(runs: usize, window: Duration, keepalived: bool) {
    use tests::netns::{Fault, NetCluster, Outcome};
    let mut results: Vec<(&str, Vec<Outcome>, Vec<f64>)> = Vec::new();
    for ours in [true, false] {
        if !ours && !keepalived {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let prefix = format!("fb{}{}", std::process::id() % 10_000, u8::from(ours));
        let mut c = if ours {
            let c = NetCluster::start(&tests::e2e::binaries(), &prefix, &dir).expect("cluster");
            assert!(
                c.all_leased(Duration::from_secs(30)),
                "cluster never formed"
            );
            c
        } else {
            let c = NetCluster::start_keepalived(&prefix, &dir).expect("keepalived");
            std::thread::sleep(Duration::from_secs(4));
            c
        };
        let mut all = Vec::new();
        let mut lapses = Vec::new();
        for fault in Fault::ALL {
            for run in 0..runs {
                let t0 = tests::e2e::unix_us();
                let o = c.fault_holder_for(fault, Some(window)).unwrap_or_else(|e| {
                    panic!("{} run {run}: {e}; logs in {}", fault.name(), dir.display())
                });
                if ours && fault == Fault::ClusterTraffic {
                    lapses.extend(c.lapse_to_stopped(o.old, "vip", t0));
                }
                eprintln!(
                    "{} {} run {run}: node {} -> {}, takeover {:.1} ms, dual rounds {}",
                    if ours { "groups" } else { "keepalived" },
                    fault.name(),
                    o.old,
                    o.new,
                    o.takeover_ms,
                    o.dual_rounds
                );
                all.push(o);
            }
        }
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
        results.push((
            if ours {
                "resource groups"
            } else {
                "keepalived 2.2.7"
            },
            all,
            lapses,
        ));
    }
    println!(
        "| fault ({runs} runs each) | groups: takeover median | p99 | groups: dual answers (max) | keepalived: takeover median | p99 | keepalived: dual answers median (max) | takeover ratio (keepalived / groups) |\n|---|---|---|---|---|---|---|---|"
    );
    let pick = |who: usize, f: Fault| -> Option<(Vec<f64>, Vec<f64>)> {
        let (_, all, _) = results.get(who)?;
        let o: Vec<&Outcome> = all.iter().filter(|o| o.fault == f).collect();
        Some((
            o.iter().map(|o| o.takeover_ms).collect(),
            o.iter().map(|o| o.dual_rounds as f64 * 5.0).collect(),
        ))
    };
    for f in Fault::ALL {
        let (gt, gd) = pick(0, f).expect("ours");
        let (gm, gp, _) = stats(gt);
        let (_, _, gdmax) = stats(gd);
        match pick(1, f) {
            Some((kt, kd)) => {
                let (km, kp, _) = stats(kt);
                let (kdm, _, kdmax) = stats(kd);
                println!(
                    "| {} | {gm:.0} ms | {gp:.0} ms | {gdmax:.0} ms | {km:.0} ms | {kp:.0} ms | {kdm:.0} ms ({kdmax:.0} ms) | {:.1}x |",
                    f.name(),
                    km / gm
                );
            }
            None => println!(
                "| {} | {gm:.0} ms | {gp:.0} ms | {gdmax:.0} ms | - | - | - | - |",
                f.name()
            ),
        }
    }
    if let Some((_, _, lapses)) = results.first()
        && !lapses.is_empty()
    {
        let n = lapses.len();
        let (m, p99, max) = stats(lapses.clone());
        println!(
            "\nLease lapse to address removed (cluster traffic only dropped, old holder's agent log, {n} runs): median {m:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
    }
    println!(
        "\n(dual answers: 5 ms rounds in which two MACs answered for the address, within {} ms of the fault)",
        window.as_millis()
    );
}
