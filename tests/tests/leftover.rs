//! An agent killed with SIGKILL stops nothing: the `process` resource it
//! started runs on. Restarted in the same boot (as systemd restarts it, in
//! well under `lost_after`, so the node is not fenced), the new agent's
//! first cleanup stops what the killed one left, by the pid it recorded in
//! `run_dir`, before the group may start anywhere else.

use std::time::Duration;

use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tests::e2e::{alive, binaries, wait_until};
use tests::peers::serial;

/// The pid of node 3's `sleep` (the resource), from `pid.node3`.
fn pid_of(dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pid.node3"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_stops_the_process_a_killed_one_left_running() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The process writes its own pid where the test can find it.
    let opts = ClusterOptions {
        groups: format!(
            "\n[[cluster.group]]\nname = \"svc\"\nnodes = [\"node3\", \"node1\", \"node2\"]\n\
             resources = [ {{ kind = \"process\", command = [\"/bin/sh\", \"-c\", \"echo $$ > {}/pid.$FENCE_NODE; exec sleep 100000\"] }} ]\n",
            d.display()
        ),
        ..ClusterOptions::default()
    };
    let mut c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let pid = wait_until(Duration::from_secs(10), || pid_of(d).filter(|&p| alive(p)))
        .await
        .unwrap_or_else(|| panic!("svc never ran on node3; logs in {}", c.dir().display()));
    c.kill_agent(3).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(alive(pid), "a killed agent stops nothing");
    c.restart_agent(3).unwrap();
    let gone = wait_until(Duration::from_secs(5), || (!alive(pid)).then_some(())).await;
    assert!(
        gone.is_some(),
        "the restarted agent left {pid} running; logs in {}",
        c.dir().display()
    );
    assert!(
        c.log("agent3")
            .contains("a process an earlier agent left running"),
        "the agent says what it stopped"
    );
    c.stop();
}
