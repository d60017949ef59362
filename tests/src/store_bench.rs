//! `bench store`: what the durable store costs the fencing path.
//!
//! 1. Intent writes: `RedbStore::apply(FenceIntent)` one after the other,
//!    each a durable redb commit (fsync), as the arbiter writes an intent
//!    before it touches a device.
//! 2. Restart to resumed fence: a store holding `history` confirmed fences
//!    (each with its epoch) and one open intent, then the real
//!    `fence-arbiter` started on it: from the spawn to the simulated power
//!    device's `off` for the open intent's node (no agent runs; a resumed
//!    intent is fenced at the first tick, grace or not). The same with an
//!    empty history, for the ratio.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use arbiter::core::Delta;
use arbiter::store::{RedbStore, Store};
use fence_drivers::sim::SimPowerDevice;

use crate::e2e::{binaries, unix_us};

const CLUSTER: &str = "bench";

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99), v[v.len() - 1])
}

fn apply(store: &RedbStore, delta: Delta) {
    store
        .apply(CLUSTER, &delta, unix_us() / 1000)
        .expect("store write");
}

/// Intent write latency (µs): p50, p99, max.
pub fn intent_writes(dir: &Path, writes: usize) -> (f64, f64, f64) {
    let d = tempfile::tempdir_in(dir).expect("tempdir");
    let store = RedbStore::open(d.path()).expect("store");
    let mut lat = Vec::with_capacity(writes);
    for i in 1..=writes as u64 {
        let t = unix_us();
        apply(
            &store,
            Delta::FenceIntent {
                intent: i,
                node: 3,
                reason: "bench".into(),
            },
        );
        lat.push((unix_us() - t) as f64);
    }
    percentiles(lat)
}

/// A state directory with `history` confirmed fences of node 2 and an open
/// intent for node 3.
fn seeded_state(dir: &Path, history: u64) -> tempfile::TempDir {
    let d = tempfile::tempdir_in(dir).expect("tempdir");
    let store = RedbStore::open(&d.path().join("state")).expect("store");
    for i in 1..=history {
        apply(
            &store,
            Delta::FenceIntent {
                intent: i,
                node: 2,
                reason: "bench history".into(),
            },
        );
        apply(
            &store,
            Delta::FenceConfirmed {
                intent: i,
                node: 2,
                instance: 0,
                boot: 0,
                operator: None,
            },
        );
        apply(
            &store,
            Delta::Backed {
                epoch: i,
                survivors: BTreeSet::from([1, 3]),
                gone: BTreeSet::from([2]),
            },
        );
    }
    apply(
        &store,
        Delta::FenceIntent {
            intent: history + 1,
            node: 3,
            reason: "bench: open at the restart".into(),
        },
    );
    d
}

/// Spawn the arbiter on `state` and time (ms) until the device switched
/// node 3 off.
fn restart_to_off(state: &Path) -> f64 {
    let power = state.join("power");
    let device = SimPowerDevice::new("power", &power).expect("sim device");
    // The machine plugged into node 3's outlet: a process the device's
    // `off` kills.
    let mut machine = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn the machine");
    device
        .register("node3", machine.id())
        .expect("register node 3");
    let port = crate::e2e::free_port();
    let conf = state.join("arbiter.toml");
    let mut nodes = String::new();
    for i in 1..=3 {
        nodes += &format!(
            "\n[[cluster.node]]\nid = {i}\naddress = \"127.0.0.1:{}\"\nfence = [[\"power:node{i}\"]]\n",
            i
        );
    }
    std::fs::write(
        &conf,
        format!(
            "[arbiter]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\ninsecure_plaintext = true\nmetrics = \"off\"\nlog_format = \"json\"\n\n\
             [[cluster]]\nname = \"{CLUSTER}\"\n\n[[cluster.device]]\nname = \"power\"\ndriver = \"sim\"\ndir = \"{}\"\n{nodes}",
            state.join("state").display(),
            power.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(state.join("arbiter.log")).expect("log");
    let t0 = unix_us();
    let mut child = std::process::Command::new(binaries().join("fence-arbiter"))
        .arg("--config")
        .arg(&conf)
        .stderr(log)
        .spawn()
        .expect("spawn fence-arbiter");
    let end = t0 + 30_000_000;
    let off = loop {
        let hit = device.events().ok().and_then(|ev| {
            ev.iter()
                .find(|e| e.port == "node3" && e.action == "off")
                .map(|e| e.unix_us)
        });
        if let Some(t) = hit {
            break t;
        }
        if unix_us() > end {
            let _ = child.kill();
            let _ = child.wait();
            let _ = machine.kill();
            let _ = machine.wait();
            let log = std::fs::read_to_string(state.join("arbiter.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            panic!(
                "the resumed fence never switched node 3 off; the arbiter's log ends:\n{tail:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = machine.kill();
    let _ = machine.wait();
    (off.saturating_sub(t0)) as f64 / 1000.0
}

pub fn run(writes: usize, history: u64, runs: usize, dir: &Path) {
    std::fs::create_dir_all(dir).expect("bench dir");
    let (p50, p99, max) = intent_writes(dir, writes);
    println!(
        "| intent write (redb commit, fsync), {writes} writes in {} | p50 | p99 | max |\n|---|---|---|---|\n| latency | {:.0} µs | {:.0} µs | {:.0} µs |\n",
        dir.display(),
        p50,
        p99,
        max
    );
    let mut medians = Vec::new();
    println!(
        "| restart to the resumed fence's `off`, {runs} runs | median | p99 | max |\n|---|---|---|---|"
    );
    for h in [0, history] {
        let seed = seeded_state(dir, h);
        let mut times = Vec::new();
        for _ in 0..runs {
            // A fresh copy of the seeded store each run (the run fences
            // and records node 3).
            let d = tempfile::tempdir_in(dir).expect("tempdir");
            std::fs::create_dir_all(d.path().join("state")).expect("state dir");
            std::fs::copy(
                seed.path().join("state/arbiter.redb"),
                d.path().join("state/arbiter.redb"),
            )
            .expect("copy the store");
            times.push(restart_to_off(d.path()));
        }
        let (m, p99, max) = percentiles(times);
        medians.push(m);
        println!("| {h} fences in the history | {m:.1} ms | {p99:.1} ms | {max:.1} ms |");
    }
    println!(
        "\nratio (history {history} / empty), medians: {:.2}",
        medians[1] / medians[0]
    );
}
