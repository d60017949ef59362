//! `fencectl demo`: a whole cluster on loopback, one node frozen or cut off,
//! fenced through the simulated power device, with a timeline; its service
//! (a resource group, `web`, of start/stop/monitor scripts) moves to a
//! survivor once the fence is confirmed.
//!
//! Real child processes of the real binaries talk real gRPC on 127.0.0.1
//! with ephemeral ports and a temporary state directory; everything the demo
//! starts it stops, by PID.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::client::CliError;
use crate::commands::resources::{fetch_groups, render_groups};
use crate::commands::status::{fetch_status, render_status};
use crate::commands::watch::{EventView, subscribe};
use crate::local_cluster::{ClusterOptions, LocalCluster, locate_binaries};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Node 3 hangs (SIGSTOP): it stops answering but its power is on.
    Freeze,
    /// Node 3 stays alive but drops every connection (fault injection).
    Partition,
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub scenario: Scenario,
    /// Directory holding fence-arbiter and fence-agent (default: next to
    /// this executable).
    pub bin_dir: Option<PathBuf>,
    pub quiet: bool,
    /// Keep the temporary directory (logs, store, device record).
    pub keep: bool,
    /// Extra `[[cluster]]` settings (e.g. faster timings), TOML lines.
    pub cluster_extra: String,
    /// Extra `[arbiter]` keys (an alert hook, the metrics address).
    pub arbiter_extra: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub offset_ms: f64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub scenario: Scenario,
    pub timeline: Vec<Step>,
    pub freeze_to_detected_ms: f64,
    pub freeze_to_confirmed_ms: f64,
    pub freeze_to_notified_ms: f64,
    /// The service running again, on a survivor.
    pub freeze_to_service_ms: Option<f64>,
    pub epoch: u64,
}

/// The demo's service: scripts that mark where it runs, in `dir`.
fn service_scripts(dir: &std::path::Path) -> Result<String, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let d = dir.display();
    let mut paths = Vec::new();
    for (name, body) in [
        (
            "start",
            format!(
                "echo \"$FENCE_NODE epoch $FENCE_EPOCH\" > {d}/owner; touch {d}/running.$FENCE_NODE"
            ),
        ),
        ("stop", format!("rm -f {d}/running.$FENCE_NODE")),
        (
            "monitor",
            format!("[ -e {d}/running.$FENCE_NODE ] || exit 7"),
        ),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n"))
            .map_err(|e| err(format!("{}: {e}", p.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| err(format!("{}: {e}", p.display())))?;
        paths.push(p.display().to_string());
    }
    Ok(format!(
        "\n[[cluster.group]]\nname = \"web\"\nnodes = [\"node3\", \"node1\", \"node2\"]\nmonitor_interval = \"500ms\"\n\
         resources = [ {{ kind = \"exec\", start = [\"{}\"], stop = [\"{}\"], monitor = [\"{}\"] }} ]\n",
        paths[0], paths[1], paths[2]
    ))
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn err(s: impl Into<String>) -> CliError {
    CliError::Other(s.into())
}

pub async fn run(opts: DemoOptions) -> Result<DemoReport, CliError> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("{s}");
        }
    };
    let bin = locate_binaries(opts.bin_dir.as_deref(), &say)?;
    let service = std::env::temp_dir().join(format!(
        "fence-demo-service-{}-{}",
        std::process::id(),
        unix_us()
    ));
    let cluster_opts = ClusterOptions {
        cluster_extra: opts.cluster_extra.clone(),
        arbiter_extra: opts.arbiter_extra.clone(),
        groups: service_scripts(&service)?,
        ..ClusterOptions::default()
    };
    let started = LocalCluster::start(&bin, &cluster_opts).await;
    let mut cluster = match started {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&service);
            return Err(e);
        }
    };
    // (A guard removes the service's directory whatever happens, unless
    // kept.)
    struct Remove(PathBuf, bool);
    impl Drop for Remove {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
    let service_dir = Remove(service.clone(), opts.keep);
    let url = cluster.url.clone();
    say(&format!(
        "demo cluster in {} (arbiter {url}, nodes 1-3 on loopback)",
        cluster.dir().display()
    ));
    let mut events = subscribe(&url, "demo").await?;
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<EventView>(1024);
    let collector = tokio::spawn(async move {
        while let Ok(Some(e)) = events.message().await {
            if ev_tx.send(e.into()).await.is_err() {
                break;
            }
        }
    });

    let epoch0 = match cluster.wait_all_leased(Duration::from_secs(10)).await {
        Ok(e) => e,
        Err(e) => {
            collector.abort();
            return Err(e);
        }
    };
    say(&format!("all 3 nodes hold a lease (epoch {epoch0})"));
    // The service starts on node 3, its preferred node.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !service.join("running.node3").exists() {
        if tokio::time::Instant::now() > until {
            collector.abort();
            return Err(err(format!(
                "the demo's service never started on node 3; logs in {}",
                cluster.dir().display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    say("service web runs on node 3 (resource group: start/stop/monitor scripts)");
    // Let a few heartbeats pass so the timeline starts from steady state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while ev_rx.try_recv().is_ok() {}

    let pid3 = cluster
        .agent_pid(3)
        .ok_or_else(|| err("node 3 not started"))?;
    let t0 = unix_us();
    let first = match opts.scenario {
        Scenario::Freeze => {
            cluster.freeze(3)?;
            format!("node 3 frozen (SIGSTOP pid {pid3}; its power stays on)")
        }
        Scenario::Partition => {
            cluster.isolate(3)?;
            format!(
                "node 3 cut off (fault injection: pid {pid3} drops every connection, keeps running)"
            )
        }
    };
    let mut timeline = vec![Step {
        offset_ms: 0.0,
        what: first,
    }];
    let off = |us: u64| (us as f64 - t0 as f64) / 1000.0;
    let mut detected = None;
    let mut confirmed = None;
    let mut notified = None;
    let mut epoch = 0;
    let mut service_at = None;
    let mut acked: BTreeMap<u32, f64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // After the notification, wait briefly for the survivors' acknowledgements.
        let left = match notified {
            Some(_) if acked.len() >= 2 && service_at.is_some() => break,
            Some(_) => left.min(Duration::from_millis(1500)),
            None => left,
        };
        let Ok(Some(e)) = tokio::time::timeout(left, ev_rx.recv()).await else {
            break;
        };
        let at = off(e.unix_us);
        let what = match e.kind.as_str() {
            "node_lost" if e.node == 3 => {
                detected.get_or_insert(at);
                "arbiter detects node 3 lost (no heartbeat within lost_after)".to_string()
            }
            "decision" => format!(
                "decision: survivors {:?}, node 3 leaves ({})",
                e.nodes, e.detail
            ),
            "fence_intent" => format!("fence intent persisted for node 3 ({})", e.detail),
            "fence_off_sent" => format!("power off sent to {} (SIGKILL)", e.detail),
            "fence_status_off" => format!("device status reports {} off", e.detail),
            "fence_confirmed" => {
                confirmed.get_or_insert(at);
                "fence confirmed and persisted".to_string()
            }
            "survivors_notified" => {
                notified.get_or_insert(at);
                epoch = e.epoch;
                format!(
                    "survivors {:?} notified: node 3 gone, epoch {}",
                    e.nodes, e.epoch
                )
            }
            "placement" if e.detail.starts_with("web:") => {
                let others: Vec<u32> = e.nodes.iter().copied().filter(|&n| n != e.node).collect();
                match (e.node, others.is_empty(), e.nodes.contains(&e.node)) {
                    (0, _, _) => "service web placed on no node".to_string(),
                    (h, false, _) => format!(
                        "service web placed on node {h}; waits until node(s) {others:?} are off or stopped"
                    ),
                    (h, true, true) => {
                        format!("service web may start on node {h} (persisted first)")
                    }
                    (h, true, false) => {
                        format!("service web placed on node {h}; nothing else may run it")
                    }
                }
            }
            "group" if e.detail == "web: running" && e.node != 3 => {
                service_at.get_or_insert(at);
                format!("service web running on node {} (epoch {})", e.node, e.epoch)
            }
            "group" if e.detail.starts_with("web:") => {
                format!("service web on node {}: {}", e.node, &e.detail[5..])
            }
            "epoch_acknowledged" if notified.is_some() => {
                acked.insert(e.node, at);
                format!("node {} acknowledges epoch {}", e.node, e.epoch)
            }
            _ => continue,
        };
        timeline.push(Step {
            offset_ms: at,
            what,
        });
    }
    collector.abort();
    let (Some(detected), Some(confirmed), Some(notified)) = (detected, confirmed, notified) else {
        return Err(err(format!(
            "node 3 was not fenced and announced within 10s; timeline so far: {timeline:?}; logs in {}",
            cluster.dir().display()
        )));
    };
    // The device's own record: off before the survivors were told.
    let record = cluster.device.events().map_err(|e| err(e.to_string()))?;
    let off_at = record
        .iter()
        .find(|e| e.port == "node3" && e.action == "off")
        .map(|e| e.unix_us);
    match off_at {
        Some(o) if off(o) <= notified => {}
        _ => {
            return Err(err(format!(
                "the power device has no off for node 3 before the survivors were told: {record:?}"
            )));
        }
    }

    if !opts.quiet {
        println!("\ntimeline (ms after the fault):");
        for s in &timeline {
            println!("  {:>8.1} ms  {}", s.offset_ms, s.what);
        }
        println!("\n$ fencectl status");
        print!("{}", render_status(&fetch_status(&url, "").await?));
        println!("\n$ fencectl resources");
        print!("{}", render_groups(&fetch_groups(&url, "").await?));
    }
    if opts.keep {
        let kept = cluster.keep();
        say(&format!(
            "\nkept {} (and the service's scripts in {})",
            kept.display(),
            service_dir.0.display()
        ));
    } else {
        cluster.stop();
        say("\nstopped everything the demo started.");
    }
    Ok(DemoReport {
        scenario: opts.scenario,
        timeline,
        freeze_to_detected_ms: detected,
        freeze_to_confirmed_ms: confirmed,
        freeze_to_notified_ms: notified,
        freeze_to_service_ms: service_at,
        epoch,
    })
}
