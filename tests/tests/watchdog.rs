//! The watchdog end to end: real binaries on loopback, and the stand-in
//! watchdog (`watchdog_standin`) where the machine has no /dev/watchdog. A
//! node's "machine" is its agent's session: the stand-in resets it by
//! killing every process of that session.
//!
//! Node 3 runs group `web`; its power device is dead (the BMC lost with
//! it) and its second fence level is the watchdog rule. Node 3 is cut off
//! and the stop of its resource hangs: its lease ends, its watchdog is no
//! longer fed, the stand-in resets it; the arbiter counts it fenced only
//! after its lease, the watchdog's timeout and the margin; `web` starts on
//! node 1 after the reset, never while node 3's resource still runs. Node 2
//! holds a watchdog too, and its clean stop disarms it (magic close).

use std::time::Duration;

use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tests::e2e::{Watcher, alive, binaries, fencectl, unix_us, wait_until};
use tests::peers::serial;
use tests::standin::StandIn;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_stop_hangs_is_reset_by_its_watchdog_and_counted_fenced_after_lease_timeout_and_margin()
 {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let standin = binaries().join("watchdog_standin");
    let wd2 = StandIn::start(&standin, d, "wd2").expect("stand-in");
    let wd3 = StandIn::start(&standin, d, "wd3").expect("stand-in");
    let log = d.join("web.log");
    let watchdog = |s: &StandIn| s.agent_config(Duration::from_secs(2));
    let opts = ClusterOptions {
        groups: tests::watchdog_bench::web_group(d),
        agent_extra: [(2, watchdog(&wd2)), (3, watchdog(&wd3))].into(),
        topology: [
            (2, "[[\"power:node2\"], [\"watchdog\"]]".to_string()),
            (3, "[[\"power:node3\"], [\"watchdog\"]]".to_string()),
        ]
        .into(),
        own_sessions: true,
        ..ClusterOptions::default()
    };
    let mut c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let mut w = Watcher::start(&c.url).await;
    let pid_file = d.join("pid.node3");
    wait_until(Duration::from_secs(10), || pid_file.exists().then_some(()))
        .await
        .unwrap_or_else(|| panic!("web never started on node3; logs in {}", c.dir().display()));
    let pid3: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Both watchdogs armed (after the agents' first cleanup), and the
    // arbiter heard of node 3's.
    for s in [&wd2, &wd3] {
        wait_until(Duration::from_secs(5), || s.event("armed"))
            .await
            .unwrap_or_else(|| panic!("watchdog never armed: {:?}", s.events()));
    }
    wait_until(Duration::from_secs(5), || {
        c.log("arbiter")
            .lines()
            .any(|l| l.contains("agent holds its watchdog armed") && l.contains("\"node.id\":3"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the arbiter never heard of node 3's watchdog: {}",
            c.log("arbiter")
        )
    });

    // Node 3's BMC dies with it; its resource's stop will hang; it is cut
    // off from the arbiter and its peers.
    std::fs::write(c.dir().join("power").join("fail-node3"), "").unwrap();
    std::fs::write(d.join("hang"), "").unwrap();
    let cut = unix_us();
    c.isolate(3).unwrap();

    let reset = wait_until(Duration::from_secs(10), || wd3.event("reset"))
        .await
        .unwrap_or_else(|| panic!("node 3 never reset: {:?}", wd3.events()));
    let reset_us = reset["at_ms"].as_u64().unwrap() * 1000;
    assert!(!alive(pid3), "the reset killed node 3's resource");
    // Starved from the end of its lease (fed every quarter of the
    // timeout until then): not before three quarters of a timeout.
    assert!(
        reset_us > cut + 1_500_000,
        "reset {}ms after the cut",
        (reset_us - cut) / 1000
    );
    let counted = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "watchdog_fenced" && e.node == 3
        })
        .await
        .unwrap_or_else(|| panic!("node 3 never counted fenced; logs in {}", c.dir().display()));
    // Lease (300 ms) + timeout (2 s) + margin (200 + 200 + 100 ms) after
    // node 3 was last heard.
    assert!(
        counted.unix_us > cut + 2_500_000,
        "counted fenced {}ms after the cut",
        (counted.unix_us - cut) / 1000
    );
    assert!(
        counted.unix_us > reset_us,
        "counted fenced before the reset"
    );
    let started = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().and_then(|t| {
            t.lines()
                .filter(|l| l.starts_with("start node1"))
                .find_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        })
    })
    .await
    .unwrap_or_else(|| panic!("web never started on node1; logs in {}", c.dir().display()));
    assert!(
        started > reset_us,
        "web started on node1 before node 3 was reset"
    );
    assert!(
        wd3.event("disarmed").is_none(),
        "node 3 never disarmed its watchdog"
    );

    // Node 2, healthy and running no group, is cut off from node 1 (it
    // still reaches the arbiter) while its BMC is dead: it leaves the
    // survivor set, is counted fenced by the watchdog rule, and is NOT
    // reset (at rest, its watchdog is fed); once the cut heals, the same
    // agent process rejoins and holds a lease again.
    let pid2 = c.agent_pid(2).expect("node 2's agent");
    std::fs::write(c.dir().join("power").join("fail-node2"), "").unwrap();
    c.cut_from_peers(2).unwrap();
    w.wait_for(Duration::from_secs(15), |e| {
        e.kind == "watchdog_fenced" && e.node == 2
    })
    .await
    .unwrap_or_else(|| panic!("node 2 never counted fenced; logs in {}", c.dir().display()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        wd2.event("reset").is_none(),
        "a node at rest is never reset: {:?}",
        wd2.events()
    );
    assert!(
        alive(pid2 as i32),
        "node 2's agent did not exit: it rejoins"
    );
    c.cut_from_peers(2).unwrap();
    let epoch = c.wait_all_leased_among(&[1, 2]).await;
    assert!(
        epoch > 0,
        "node 2 holds a lease again; logs in {}",
        c.dir().display()
    );
    assert_eq!(c.agent_pid(2), Some(pid2), "the same agent process");
    assert!(
        !c.log("arbiter").contains("CRITICAL"),
        "no alive-after-off alert for a node counted fenced at rest"
    );
    // And it takes groups again: web moved to it starts there (its agent
    // numbers its heartbeats on, so it applies the placements it gets).
    if let Err(e) = fencectl(&c.url, &["move", "web", "node2", "--cluster", "demo"]) {
        panic!("fencectl move: {e}");
    }
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.lines().any(|l| l.starts_with("start node2")))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "web never started on the rejoined node2; logs in {}",
            c.dir().display()
        )
    });

    // Node 2 stops cleanly with nothing running: it disarms (magic close).
    assert!(wd2.event("reset").is_none());
    c.stop();
    let disarmed = wait_until(Duration::from_secs(10), || wd2.event("disarmed")).await;
    assert!(disarmed.is_some(), "node 2 disarmed: {:?}", wd2.events());
    assert!(wd2.event("reset").is_none(), "{:?}", wd2.events());
}
