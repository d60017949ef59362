//! Resource groups end to end: the real binaries on loopback, a group of an
//! `exec` resource (start/stop/monitor scripts that log to one shared file,
//! the ground truth of where it runs) and the real `ocf:heartbeat:Dummy`
//! agent (Debian resource-agents).
//!
//! Checked: the group starts once, on its preferred node; when that node
//! freezes, it starts on a survivor only after the power device switched
//! the frozen node off and saw it off; `fencectl resources` shows where it
//! runs; `fencectl move` stops it on the old holder before it starts on the
//! new one; every start and stop gets the epoch in `FENCE_EPOCH`.

#![allow(clippy::await_holding_lock)]

use std::path::Path;
use std::time::Duration;

use fencectl::commands::resources::fetch_groups;
use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tests::e2e::{Watcher, binaries, fencectl, script, unix_us, wait_until};
use tests::peers::{in_ci, serial};

/// One line of the shared log: `start|stop <node> <epoch> <unix_us>`.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    what: String,
    node: String,
    epoch: u64,
    at_us: u64,
}

fn lines(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Line {
                what: f.first()?.to_string(),
                node: f.get(1)?.to_string(),
                epoch: f.get(2)?.parse().ok()?,
                at_us: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_moves_only_after_its_holder_is_confirmed_off_and_moves_gracefully_on_request() {
    let _g = serial();
    let dummy = Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists();
    if !dummy && in_ci() {
        panic!("resource-agents (ocf:heartbeat:Dummy) must be installed under CI");
    }
    let scripts = tempfile::tempdir().unwrap();
    let d = scripts.path();
    let log = d.join("web.log");
    let stamp = "$(date +%s%6N)";
    let start = script(
        d,
        "start",
        &format!(
            "echo \"start $FENCE_NODE $FENCE_EPOCH {stamp}\" >> {log}; touch {dir}/running.$FENCE_NODE",
            log = log.display(),
            dir = d.display()
        ),
    );
    let stop = script(
        d,
        "stop",
        &format!(
            "[ -e {dir}/running.$FENCE_NODE ] && echo \"stop $FENCE_NODE $FENCE_EPOCH {stamp}\" >> {log}; rm -f {dir}/running.$FENCE_NODE; exit 0",
            log = log.display(),
            dir = d.display()
        ),
    );
    let monitor = script(
        d,
        "monitor",
        &format!("[ -e {}/running.$FENCE_NODE ] || exit 7", d.display()),
    );
    let ocf = if dummy {
        format!(
            ", {{ kind = \"ocf\", agent = \"heartbeat:Dummy\", params = {{ state = \"{}/dummy.state\" }} }}",
            d.display()
        )
    } else {
        eprintln!("SKIP the OCF part: resource-agents is not installed");
        String::new()
    };
    let opts = ClusterOptions {
        groups: format!(
            "\n[[cluster.group]]\nname = \"web\"\nnodes = [\"node3\", \"node1\", \"node2\"]\nmonitor_interval = \"500ms\"\n\
             resources = [ {{ kind = \"exec\", start = [\"{start}\"], stop = [\"{stop}\"], monitor = [\"{monitor}\"] }}{ocf} ]\n"
        ),
        ..ClusterOptions::default()
    };
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    let epoch = c
        .wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let mut w = Watcher::start(&c.url).await;

    // It starts once, on node3 (the most preferred).
    let first = wait_until(Duration::from_secs(10), || {
        lines(&log).into_iter().find(|l| l.what == "start")
    })
    .await
    .unwrap_or_else(|| panic!("web never started; logs in {}", c.dir().display()));
    assert_eq!(first.node, "node3", "{:?}", lines(&log));
    assert_eq!(first.epoch, epoch, "FENCE_EPOCH is the lease epoch");
    let shown = wait_until(Duration::from_secs(5), || {
        let groups = futures_block(fetch_groups(&c.url, "demo")).unwrap_or_default();
        groups
            .into_iter()
            .find(|g| g.group == "web" && g.state == "running")
    })
    .await
    .expect("fencectl resources shows web running");
    assert_eq!(shown.holder, Some(3));
    assert_eq!(shown.holder_name, "node3");
    if dummy {
        assert!(
            d.join("dummy.state").exists(),
            "the OCF Dummy agent started"
        );
    }

    // node3 freezes: it cannot stop anything. The group starts on node1
    // only after the device switched node3 off and saw it off.
    let t = unix_us();
    c.freeze(3).unwrap();
    let started = wait_until(Duration::from_secs(15), || {
        lines(&log)
            .into_iter()
            .find(|l| l.what == "start" && l.node != "node3")
    })
    .await
    .unwrap_or_else(|| panic!("web never moved; logs in {}", c.dir().display()));
    assert_eq!(started.node, "node1", "the next preferred survivor");
    let record = c.device.events().expect("device record");
    let off = record
        .iter()
        .find(|e| e.port == "node3" && e.action == "off" && e.unix_us >= t)
        .expect("node3 switched off");
    let seen_off = record
        .iter()
        .find(|e| {
            e.port == "node3"
                && e.action == "status"
                && e.result == "off"
                && e.unix_us >= off.unix_us
        })
        .expect("node3 seen off");
    assert!(
        started.at_us > seen_off.unix_us,
        "web started on node1 at {} before the device saw node3 off at {}",
        started.at_us,
        seen_off.unix_us
    );
    assert!(
        started.epoch > epoch,
        "the new holder runs under the new epoch"
    );
    assert!(
        !lines(&log)
            .iter()
            .any(|l| l.node == "node3" && l.what == "stop"),
        "a frozen node stops nothing"
    );
    // The timeline says so too: the fence confirmed, then web running on node1.
    let confirmed = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_confirmed" && e.node == 3
        })
        .await
        .expect("fence_confirmed in the timeline");
    let running = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "group" && e.node == 1 && e.detail == "web: running"
        })
        .await
        .expect("web running on node1 in the timeline");
    assert!(running.unix_us > confirmed.unix_us);

    // A graceful move: node1 stops and acknowledges, then node2 starts.
    if let Err(e) = fencectl(&c.url, &["move", "web", "node2", "--cluster", "demo"]) {
        panic!("fencectl move: {e}");
    }
    let moved = wait_until(Duration::from_secs(10), || {
        lines(&log)
            .into_iter()
            .find(|l| l.what == "start" && l.node == "node2")
    })
    .await
    .unwrap_or_else(|| panic!("web never moved to node2; log {:?}", lines(&log)));
    let stopped = lines(&log)
        .into_iter()
        .find(|l| l.what == "stop" && l.node == "node1")
        .expect("node1 stopped web");
    assert!(stopped.at_us <= moved.at_us, "{:?}", lines(&log));
    // A move to a node the group may not run on is refused, naming why.
    let bad = fencectl(&c.url, &["move", "nosuch", "node2", "--cluster", "demo"])
        .expect_err("a move of no group fails");
    assert!(bad.contains("no group \"nosuch\""), "{bad}");
    eprintln!(
        "freeze at {t}; node3 seen off at {}; web started on node1 at {} ({} ms after the freeze)",
        seen_off.unix_us,
        started.at_us,
        (started.at_us - t) / 1000
    );
    // At no instant did two nodes run web: each start follows the stop (or
    // the confirmed fence) of the one before.
    let all = lines(&log);
    let mut running: Option<String> = None;
    for l in &all {
        match l.what.as_str() {
            "start" => {
                if let Some(r) = &running
                    && r != "node3"
                {
                    panic!("{} started while {r} ran: {all:?}", l.node);
                }
                running = Some(l.node.clone());
            }
            "stop" if running.as_deref() == Some(l.node.as_str()) => running = None,
            _ => {}
        }
    }
}

/// Run a future to completion from a sync closure (the test's polling).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
