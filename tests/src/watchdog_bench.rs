//! The watchdog's scenario, shared by its end-to-end test and its
//! benchmark: a group `web` of one `exec` resource (a `sleep` in the
//! node's session) preferring node 3, whose stop hangs on node 3 once the
//! file `hang` exists; and the benchmark itself: node 3 cut off, its stop
//! hanging, fenced by a working device or, with its BMC dead, by the
//! watchdog rule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fencectl::local_cluster::{ClusterOptions, LocalCluster};

use crate::e2e::{Watcher, script, unix_us, wait_until as until};
use crate::standin::StandIn;

/// `[[cluster.group]]` for `web`; its scripts are written into `dir` and
/// log `start <node> <unix_us>` to `dir/web.log`.
pub fn web_group(dir: &Path) -> String {
    let log = dir.join("web.log");
    let stamp = "$(date +%s%6N)";
    let start = script(
        dir,
        "start",
        &format!(
            "sleep 100000 >/dev/null 2>&1 &\necho $! > {d}/pid.$FENCE_NODE\necho \"start $FENCE_NODE {stamp}\" >> {log}",
            d = dir.display(),
            log = log.display()
        ),
    );
    let stop = script(
        dir,
        "stop",
        &format!(
            "[ \"$FENCE_NODE\" = node3 ] && [ -e {d}/hang ] && sleep 100000\n[ -e {d}/pid.$FENCE_NODE ] && kill $(cat {d}/pid.$FENCE_NODE)\nrm -f {d}/pid.$FENCE_NODE; exit 0",
            d = dir.display()
        ),
    );
    let monitor = script(
        dir,
        "monitor",
        &format!(
            "[ -e {d}/pid.$FENCE_NODE ] && kill -0 $(cat {d}/pid.$FENCE_NODE) 2>/dev/null || exit 7",
            d = dir.display()
        ),
    );
    format!(
        "\n[[cluster.group]]\nname = \"web\"\nnodes = [\"node3\", \"node1\", \"node2\"]\nmonitor_interval = \"500ms\"\n\
         resources = [ {{ kind = \"exec\", start = [\"{start}\"], stop = [\"{stop}\"], monitor = [\"{monitor}\"], timeout = \"400ms\" }} ]\n"
    )
}

/// When `web` first started on `node` (unix µs), from `dir/web.log`.
pub fn started_on(dir: &Path, node: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join("web.log"))
        .ok()?
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(node))
        .find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

/// One run's times from the cut, in ms.
#[derive(Debug, Clone)]
pub struct Run {
    /// Node 3's watchdog reset it (none when the device switched it off).
    pub reset_ms: Option<f64>,
    /// Node 3 confirmed fenced (by the device or the watchdog rule).
    pub fenced_ms: f64,
    /// `web` started on node 1.
    pub started_ms: f64,
}

/// One run in `bin` (the built daemons and `watchdog_standin`): node 3,
/// running `web`, with a watchdog of `timeout`, is cut off and its stop
/// hangs; its device works (`device_works`) or its BMC is dead.
pub async fn run_once(bin: &Path, timeout: Duration, device_works: bool) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d: PathBuf = dir.path().to_path_buf();
    let wd3 =
        StandIn::start(&bin.join("watchdog_standin"), &d, "wd3").map_err(|e| e.to_string())?;
    let opts = ClusterOptions {
        groups: web_group(&d),
        agent_extra: [(3, wd3.agent_config(timeout))].into(),
        topology: [(3, "[[\"power:node3\"], [\"watchdog\"]]".to_string())].into(),
        own_sessions: true,
        ..ClusterOptions::default()
    };
    let mut c = LocalCluster::start(bin, &opts)
        .await
        .map_err(|e| e.to_string())?;
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let mut w = Watcher::start(&c.url).await;
    until(Duration::from_secs(10), || started_on(&d, "node3"))
        .await
        .ok_or("web never started on node3")?;
    until(Duration::from_secs(10), || wd3.event("armed"))
        .await
        .ok_or("node 3's watchdog never armed")?;
    // (The arbiter hears of it with the next heartbeat.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    if !device_works {
        std::fs::write(c.dir().join("power").join("fail-node3"), "").map_err(|e| e.to_string())?;
    }
    std::fs::write(d.join("hang"), "").map_err(|e| e.to_string())?;
    let cut = unix_us();
    c.isolate(3).map_err(|e| e.to_string())?;
    let kind = if device_works {
        "fence_confirmed"
    } else {
        "watchdog_fenced"
    };
    let fenced = w
        .wait_for(Duration::from_secs(30), |e| e.kind == kind && e.node == 3)
        .await
        .ok_or(format!(
            "no {kind} for node 3; logs in {}",
            c.dir().display()
        ))?;
    let started = until(Duration::from_secs(30), || started_on(&d, "node1"))
        .await
        .ok_or("web never started on node1")?;
    let reset = wd3
        .event("reset")
        .and_then(|e| e["at_ms"].as_u64())
        .map(|ms| (ms * 1000).saturating_sub(cut) as f64 / 1000.0);
    c.stop();
    let ms = |t: u64| t.saturating_sub(cut) as f64 / 1000.0;
    Ok(Run {
        reset_ms: reset,
        fenced_ms: ms(fenced.unix_us),
        started_ms: ms(started),
    })
}
