//! `bench etcd`: a group of arbiters on a real etcd (three members on
//! 127.0.0.1, Debian's `etcd-server`).
//!
//! 1. Intent writes: `EtcdStore::apply(FenceIntent)` one after the other
//!    (each a conditioned etcd transaction, committed by the raft quorum
//!    with its fsyncs), against `RedbStore` in the same directory's disk,
//!    in the same run, as a ratio.
//! 2. Handovers: two `fence-arbiter` processes and three agents; the
//!    leader is killed (SIGKILL) `rounds` times; from the kill to every
//!    node holding a lease from the other arbiter (`fencectl nodes`
//!    polled every 25 ms). The killed one comes back as a standby.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::core::Delta;
use arbiter::etcd::Etcd;
use arbiter::etcd_store::EtcdStore;
use arbiter::leadership;
use arbiter::store::{RedbStore, Store};
use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tokio_util::sync::CancellationToken;

use crate::e2e::{binaries, unix_us};
use crate::etcd_peer::EtcdCluster;

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99), v[v.len() - 1])
}

fn intent_latencies(store: &dyn Store, writes: usize) -> Vec<f64> {
    (1..=writes as u64)
        .map(|i| {
            let t = unix_us();
            store
                .apply(
                    "bench",
                    &Delta::FenceIntent {
                        intent: i,
                        node: 3,
                        reason: "bench".into(),
                    },
                    t / 1000,
                )
                .expect("store write");
            (unix_us() - t) as f64
        })
        .collect()
}

/// Wait until arbiter `k` leads: every node of `nodes` holds a lease it
/// granted (`c.url` then points at it); `false` after `within`.
pub async fn leads(c: &mut LocalCluster, k: usize, nodes: &[u32], within: Duration) -> bool {
    c.url = c.arbiter_url(k);
    let until = Instant::now() + within;
    while Instant::now() < until {
        let epoch = tokio::time::timeout(Duration::from_secs(1), c.wait_all_leased_among(nodes))
            .await
            .unwrap_or(0);
        if epoch > 0 {
            return true;
        }
    }
    false
}

/// A group of two arbiters (arbiter 0 leads, 1 stands by) on `etcd`, and
/// three agents, every node leased.
pub async fn group(etcd: &EtcdCluster) -> Result<LocalCluster, String> {
    group_with(etcd, ClusterOptions::default()).await
}

/// [`group`] with `opts` (its `etcd` and `more_arbiters` set here).
pub async fn group_with(etcd: &EtcdCluster, opts: ClusterOptions) -> Result<LocalCluster, String> {
    let opts = ClusterOptions {
        etcd: etcd.endpoints(),
        etcd_tls: etcd
            .tls()
            .map(|t| (t.ca.clone(), t.cert.clone(), t.key.clone())),
        more_arbiters: 1,
        ..opts
    };
    let mut c = LocalCluster::start(&binaries(), &opts)
        .await
        .map_err(|e| e.to_string())?;
    // (With a ride-out, the very first leases wait it out.)
    c.wait_all_leased(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    c.spawn_arbiter(1).map_err(|e| e.to_string())?;
    for _ in 0..200 {
        if c.log("arbiter-1").contains("standing by") {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("arbiter 1 never stood by: {}", c.log("arbiter-1")))
}

pub fn run(writes: usize, rounds: usize, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("bench dir");
    let etcd = EtcdCluster::start(3).expect("etcd (Debian etcd-server)");
    let client =
        Arc::new(Etcd::connect(&etcd.endpoints(), Duration::from_secs(3), None).expect("etcd"));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let m = client.members();
        client.spawn(async move {
            let me = leadership::LeaderInfo {
                name: "bench".into(),
                url: String::new(),
            };
            let (seen, _) = tokio::sync::watch::channel(None);
            let r = leadership::campaign(
                m,
                "/bench",
                &me,
                Duration::from_secs(2),
                &seen,
                CancellationToken::new(),
            )
            .await;
            let _ = tx.send(r);
        });
    }
    let won = Arc::new(
        rx.recv_timeout(Duration::from_secs(15))
            .expect("leadership")
            .expect("campaign")
            .expect("won"),
    );
    let stop = CancellationToken::new();
    {
        let (m, l, s) = (client.members(), won.clone(), stop.clone());
        client.spawn(async move { leadership::keep(m, &l, Duration::from_secs(2), s).await });
    }
    let on_etcd = EtcdStore::new(
        client.clone(),
        "/bench",
        Some(won.guard.clone()),
        "bench#1".into(),
    );
    let d = tempfile::tempdir_in(dir).expect("tempdir");
    let redb = RedbStore::open(d.path()).expect("redb");
    let e = percentiles(intent_latencies(&on_etcd, writes));
    let r = percentiles(intent_latencies(&redb, writes));
    println!(
        "| intent write, {writes} writes | p50 | p99 | max |\n|---|---|---|---|\n\
         | etcd (3 members on 127.0.0.1, conditioned txn) | {:.0} µs | {:.0} µs | {:.0} µs |\n\
         | redb (fsync, {}) | {:.0} µs | {:.0} µs | {:.0} µs |\n\nratio etcd / redb, p50: {:.2}, p99: {:.2}\n",
        e.0,
        e.1,
        e.2,
        dir.display(),
        r.0,
        r.1,
        r.2,
        e.0 / r.0,
        e.1 / r.1
    );
    stop.cancel();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for ride_out in ["0s", "5s"] {
        rt.block_on(handovers(&etcd, rounds, ride_out));
    }
    rt.block_on(frozen_during_handovers(&etcd, rounds.min(10)));
}

/// `rounds` times: node 3 frozen (SIGSTOP) as the leader is SIGKILLed:
/// the time to its `off` at the device (ordered by the new leader) and to
/// nodes 1 and 2 leased by it; then node 3 boots again and rejoins.
async fn frozen_during_handovers(etcd: &EtcdCluster, rounds: usize) {
    let opts = ClusterOptions {
        cluster_extra: "ride_out = \"5s\"\n".into(),
        ..ClusterOptions::default()
    };
    let mut c = group_with(etcd, opts).await.expect("arbiter group");
    let offs = |c: &LocalCluster| {
        c.device
            .events()
            .expect("device events")
            .iter()
            .filter(|e| e.action == "off" && e.port == "node3")
            .count()
    };
    let mut leader = 0;
    let (mut to_off, mut to_leased) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let next = 1 - leader;
        let before = offs(&c);
        let t = Instant::now();
        c.freeze(3).expect("freeze node 3");
        c.kill_arbiter(leader);
        while offs(&c) == before {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {round}: node 3 never fenced; logs in {}",
                c.dir().display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        to_off.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(
            leads(&mut c, next, &[1, 2], Duration::from_secs(15)).await,
            "round {round}: nodes 1 and 2 not leased by arbiter {next}"
        );
        to_leased.push(t.elapsed().as_secs_f64() * 1000.0);
        let healthy = c
            .device
            .events()
            .expect("device events")
            .iter()
            .filter(|e| e.action == "off" && e.port != "node3")
            .count();
        assert_eq!(healthy, 0, "round {round}: a healthy node was fenced");
        // Node 3 boots again once its fence is confirmed (booted before,
        // it would be on again at the device, and the fence unconfirmed).
        let url = c.arbiter_url(next);
        loop {
            let fenced = fencectl::commands::status::fetch_status(&url, "demo")
                .await
                .is_ok_and(|s| s.clusters[0].fenced.contains(&3));
            if fenced {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(40),
                "round {round}: node 3's fence never confirmed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.spawn_arbiter(leader).expect("restart as standby");
        c.start_agent(3).expect("boot node 3");
        if !leads(&mut c, next, &[1, 2, 3], Duration::from_secs(30)).await {
            let kept = c.keep();
            panic!(
                "round {round}: node 3 did not rejoin; logs in {}",
                kept.display()
            );
        }
        leader = next;
    }
    let (om, op99, omax) = percentiles(to_off);
    let (lm, lp99, lmax) = percentiles(to_leased);
    println!(
        "| node 3 frozen as the leader is SIGKILLed, {rounds} rounds, leader_ttl 1 s, ride_out 5s | median | p99 | max |\n|---|---|---|---|\n\
         | to node 3's `off` at the device (new leader) | {om:.0} ms | {op99:.0} ms | {omax:.0} ms |\n\
         | to nodes 1 and 2 leased by the new leader | {lm:.0} ms | {lp99:.0} ms | {lmax:.0} ms |\n\n\
         healthy nodes fenced: 0\n"
    );
}

/// Seconds since midnight of a JSON log line's timestamp.
fn log_time(line: &str) -> Option<f64> {
    let t = line.split("\"timestamp\":\"").nth(1)?.split('T').nth(1)?;
    let t = t.trim_end_matches(|c: char| !c.is_ascii_digit());
    let mut f = t.split(':');
    let (h, m, s): (f64, f64, f64) = (
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
        f.next()?.get(..9)?.trim_end_matches('Z').parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Per agent log: how often the lease was lost after `from` (log time),
/// and for how long in all (until the next lease acquired).
fn interruptions(log: &str, from: f64) -> (usize, f64) {
    let (mut n, mut total, mut lost_at) = (0, 0.0, None);
    for line in log.lines() {
        let Some(t) = log_time(line).filter(|&t| t >= from) else {
            continue;
        };
        if line.contains("lease lost: resources must stop now") {
            n += 1;
            lost_at = Some(t);
        } else if line.contains("lease acquired") {
            if let Some(l) = lost_at.take() {
                total += t - l;
            }
        }
    }
    (n, total)
}

/// `rounds` handovers by SIGKILL with `ride_out`: their time, and the
/// service interruption the agents saw (leases lost, time without one).
async fn handovers(etcd: &EtcdCluster, rounds: usize, ride_out: &str) {
    {
        let opts = ClusterOptions {
            cluster_extra: format!("ride_out = \"{ride_out}\"\n"),
            ..ClusterOptions::default()
        };
        let mut c = group_with(etcd, opts).await.expect("arbiter group");
        let all = [1, 2, 3];
        // Seconds since midnight (UTC), as `log_time` reads the agents' logs.
        let from = (unix_us() % 86_400_000_000) as f64 / 1e6;
        let mut leader = 0;
        let mut took = Vec::new();
        for round in 0..rounds {
            let next = 1 - leader;
            let t = Instant::now();
            c.kill_arbiter(leader);
            assert!(
                leads(&mut c, next, &all, Duration::from_secs(15)).await,
                "round {round}: arbiter {next} did not take over; logs in {}",
                c.dir().display()
            );
            took.push(t.elapsed().as_secs_f64() * 1000.0);
            c.spawn_arbiter(leader).expect("restart as standby");
            tokio::time::sleep(Duration::from_millis(500)).await;
            leader = next;
        }
        let fenced = c
            .device
            .events()
            .expect("device events")
            .iter()
            .filter(|e| e.action == "off")
            .count();
        let (m, p99, max) = percentiles(took);
        let (lost, without) = all.iter().fold((0, 0.0), |(n, t), i| {
            let (a, b) = interruptions(&c.log(&format!("agent{i}")), from);
            (n + a, t + b)
        });
        println!(
            "| leader SIGKILLed to every node leased by the new leader, {rounds} handovers, leader_ttl 1 s, ride_out {ride_out} | median | p99 | max |\n|---|---|---|---|\n| handover | {m:.0} ms | {p99:.0} ms | {max:.0} ms |\n\n\
             nodes fenced by the handovers: {fenced}; leases lost: {lost} (3 nodes x {rounds} handovers); time without a lease, per node and handover: {:.0} ms\n",
            without * 1000.0 / (3 * rounds) as f64
        );
    }
}
