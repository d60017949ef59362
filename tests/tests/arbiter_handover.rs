//! Two `fence-arbiter` processes sharing a real etcd cluster (three
//! members on 127.0.0.1) serve one cluster of three agents that list both.
//! The leader is killed with SIGKILL, frozen with SIGSTOP, again and again;
//! each time the other takes over: every node holds a lease again, no node
//! is fenced because of the handover, no epoch ever goes back, and the
//! arbiter killed comes back as a standby that disturbs nothing. A node
//! that dies during a handover is fenced by the new leader.

use std::time::{Duration, Instant};

use fencectl::local_cluster::LocalCluster;
use nix::sys::signal::Signal;
use tests::etcd_peer::EtcdCluster;
use tests::peers::{required, serial};

/// Wait until `k` leads with every `nodes` leased; returns the epoch.
async fn leads(c: &mut LocalCluster, k: usize, nodes: &[u32], within: Duration) -> u64 {
    assert!(
        tests::etcd_bench::leads(c, k, nodes, within).await,
        "arbiter {k} did not lead with {nodes:?} leased within {within:?}; logs in {}",
        c.dir().display()
    );
    c.wait_all_leased_among(nodes).await
}

fn offs(c: &LocalCluster, port: &str) -> usize {
    c.device
        .events()
        .expect("device events")
        .iter()
        .filter(|e| e.port == port && e.action == "off")
        .count()
}

async fn group(etcd: &EtcdCluster) -> LocalCluster {
    tests::etcd_bench::group(etcd)
        .await
        .expect("arbiter group on etcd")
}

/// Ten handovers (five by SIGKILL, five by SIGSTOP of the leader, which
/// is killed while frozen): the other arbiter takes over each time, every
/// node is leased again, nobody is fenced, the epoch never goes back.
#[tokio::test(flavor = "multi_thread")]
async fn the_leader_killed_or_frozen_ten_times_hands_over_and_fences_nobody() {
    let _g = serial();
    let Some(etcd) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let mut c = group(&etcd).await;
    let all = [1, 2, 3];
    let mut leader = 0;
    let mut epoch = leads(&mut c, 0, &all, Duration::from_secs(5)).await;
    let mut took = Vec::new();
    for round in 0..10 {
        let next = 1 - leader;
        let t = Instant::now();
        if round % 2 == 0 {
            c.kill_arbiter(leader);
        } else {
            // Frozen: its lease lapses while it cannot act.
            c.signal_arbiter(leader, Signal::SIGSTOP).expect("SIGSTOP");
        }
        let e = leads(&mut c, next, &all, Duration::from_secs(15)).await;
        took.push(t.elapsed());
        assert!(
            e >= epoch,
            "round {round}: epoch went back from {epoch} to {e}"
        );
        epoch = e;
        if round % 2 == 1 {
            // Thawed, the deposed leader stops by itself (its etcd lease
            // lapsed): an error exit, no lease granted, no device touched.
            c.signal_arbiter(leader, Signal::SIGCONT).expect("SIGCONT");
            let until = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(st) = c.arbiter_exited(leader) {
                    break st;
                }
                assert!(
                    Instant::now() < until,
                    "round {round}: the thawed, deposed leader did not stop"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            assert!(!status.success(), "round {round}: {status}");
            // Every node still holds its lease from the new leader.
            leads(&mut c, next, &all, Duration::from_secs(2)).await;
        }
        for n in all {
            assert_eq!(
                offs(&c, &format!("node{n}")),
                0,
                "round {round}: node {n} was fenced by a handover"
            );
        }
        // The old leader comes back, as a standby.
        c.spawn_arbiter(leader).expect("restart");
        let log = if leader == 0 {
            "arbiter".to_string()
        } else {
            format!("arbiter-{leader}")
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            c.arbiter_k_pid(leader).is_some(),
            "round {round}: the restarted arbiter exited; {}",
            c.log(&log)
        );
        leader = next;
    }
    took.sort();
    eprintln!(
        "handover (leader killed or frozen -> every node leased by the other): median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// The leader and node 3 die together: the new leader decides after its
/// grace as usual, fences node 3, and nodes 1 and 2 hold leases again.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_dies_during_the_handover_is_fenced_by_the_new_leader() {
    let _g = serial();
    let Some(etcd) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let mut c = group(&etcd).await;
    let before = leads(&mut c, 0, &[1, 2, 3], Duration::from_secs(5)).await;
    c.kill_arbiter(0);
    c.kill_agent(3).expect("kill agent 3");
    let after = leads(&mut c, 1, &[1, 2], Duration::from_secs(15)).await;
    let until = Instant::now() + Duration::from_secs(10);
    while offs(&c, "node3") == 0 {
        assert!(
            Instant::now() < until,
            "node 3 was never fenced; {}",
            c.log("arbiter-1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offs(&c, "node1") + offs(&c, "node2"), 0);
    assert!(after >= before);
}
