//! `fencectl demo`: a whole cluster on loopback, one node frozen or cut off,
//! fenced through the simulated power device, with a timeline.
//!
//! Real child processes of the real binaries talk real gRPC on 127.0.0.1
//! with ephemeral ports and a temporary state directory; everything the demo
//! starts it stops, by PID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fence_drivers::sim::SimPowerDevice;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::client::CliError;
use crate::commands::status::{fetch_nodes, fetch_status, render_status};
use crate::commands::watch::{subscribe, EventView};

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
    pub epoch: u64,
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn err(s: impl Into<String>) -> CliError {
    CliError::Other(s.into())
}

/// The processes the demo started; stopped by PID on drop, whatever happens.
struct Children {
    procs: Vec<(String, Child)>,
}

impl Children {
    fn pid(&self, name: &str) -> Option<u32> {
        self.procs.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// SIGTERM everyone (SIGCONT first for a frozen one), wait, then SIGKILL.
    fn stop(&mut self) {
        for (_, c) in &mut self.procs {
            if let Ok(None) = c.try_wait() {
                let pid = Pid::from_raw(c.id() as i32);
                let _ = kill(pid, Signal::SIGCONT);
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        let deadline = std::time::Duration::from_secs(5);
        let start = tokio::time::Instant::now();
        for (_, c) in &mut self.procs {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if start.elapsed() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        self.procs.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Find (and, under `cargo run`, build) the daemons.
fn locate_binaries(opts: &DemoOptions, say: &impl Fn(&str)) -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|e| err(format!("cannot locate this executable: {e}")))?;
    let dir = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => exe.parent().map(Path::to_path_buf).ok_or_else(|| err("executable has no directory"))?,
    };
    // Under `cargo run`, make sure the daemons are built and current.
    if opts.bin_dir.is_none() {
        if let Ok(cargo) = std::env::var("CARGO") {
            let release = dir.file_name().is_some_and(|n| n == "release");
            say("building fence-arbiter and fence-agent (cargo build)...");
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "arbiter", "-p", "agent"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| err(format!("cannot run cargo build: {e}")))?;
            if !status.success() {
                return Err(err("cargo build of fence-arbiter and fence-agent failed"));
            }
        }
    }
    for b in ["fence-arbiter", "fence-agent"] {
        if !dir.join(b).is_file() {
            return Err(err(format!(
                "{} not found; build it with `cargo build --release -p arbiter -p agent`, or pass --bin-dir",
                dir.join(b).display()
            )));
        }
    }
    Ok(dir)
}

/// Ports picked by binding 127.0.0.1:0 and releasing.
fn free_ports(n: usize) -> Result<Vec<u16>, CliError> {
    let socks: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("cannot find free loopback ports: {e}")))?;
    socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("cannot find free loopback ports: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Child, CliError> {
    let log_file = std::fs::File::create(log).map_err(|e| err(format!("{}: {e}", log.display())))?;
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))
}

pub async fn run(opts: DemoOptions) -> Result<DemoReport, CliError> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("{s}");
        }
    };
    let bin = locate_binaries(&opts, &say)?;
    let tmp = tempfile::Builder::new().prefix("fencectl-demo-").tempdir().map_err(|e| err(format!("temporary directory: {e}")))?;
    let dir = tmp.path().to_path_buf();
    let ports = free_ports(4)?;
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let sim_dir = dir.join("power");
    let mut arbiter_toml = format!(
        "[arbiter]\nlisten = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\ninsecure_plaintext = true\nlog_format = \"json\"\n\n\
         [[cluster]]\nname = \"demo\"\nquorum = \"last-man-standing\"\n\n\
         [[cluster.device]]\nname = \"power\"\ndriver = \"sim\"\ndir = \"{}\"\n",
        ports[0],
        dir.join("state").display(),
        sim_dir.display()
    );
    for i in 1..=3u32 {
        arbiter_toml += &format!(
            "\n[[cluster.node]]\nid = {i}\naddress = \"127.0.0.1:{}\"\nfence = [[\"power:node{i}\"]]\n",
            ports[i as usize]
        );
    }
    write(&dir.join("arbiter.toml"), &arbiter_toml)?;
    for i in 1..=3u32 {
        let t = format!(
            "cluster = \"demo\"\nnode = {i}\narbiter = \"{url}\"\nlisten = \"127.0.0.1:{}\"\ninsecure_plaintext = true\nlog_format = \"json\"\n\n[fault_injection]\nenabled = true\n",
            ports[i as usize]
        );
        write(&dir.join(format!("agent{i}.toml")), &t)?;
    }
    say(&format!("demo cluster in {} (arbiter {url}, nodes 1-3 on loopback)", dir.display()));

    let mut children = Children { procs: Vec::new() };
    children.procs.push(("arbiter".into(), spawn(&bin.join("fence-arbiter"), &dir.join("arbiter.toml"), &dir.join("arbiter.log"))?));
    // Wait for the admin API.
    let mut up = false;
    for _ in 0..100 {
        if fetch_status(&url, "").await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        return Err(err(format!("the arbiter did not come up; see {}", dir.join("arbiter.log").display())));
    }
    let device = SimPowerDevice::new("power", &sim_dir).map_err(|e| err(e.to_string()))?;
    for i in 1..=3u32 {
        let child = spawn(&bin.join("fence-agent"), &dir.join(format!("agent{i}.toml")), &dir.join(format!("agent{i}.log")))?;
        device.register(&format!("node{i}"), child.id()).map_err(|e| err(e.to_string()))?;
        children.procs.push((format!("node{i}"), child));
    }
    let mut events = subscribe(&url, "demo").await?;
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<EventView>(1024);
    let collector = tokio::spawn(async move {
        while let Ok(Some(e)) = events.message().await {
            if ev_tx.send(e.into()).await.is_err() {
                break;
            }
        }
    });

    // Every node holding a lease.
    let mut ready = false;
    let mut epoch0 = 0;
    for _ in 0..200 {
        let nodes = fetch_nodes(&url, "demo").await?;
        if nodes.len() == 3 && nodes.iter().all(|n| n.lease && n.state == "member") {
            epoch0 = nodes.iter().map(|n| n.known_epoch).max().unwrap_or(0);
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        collector.abort();
        return Err(err(format!("the nodes did not all get a lease within 10s; logs in {}", dir.display())));
    }
    say(&format!("all 3 nodes hold a lease (epoch {epoch0})"));
    // Let a few heartbeats pass so the timeline starts from steady state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while ev_rx.try_recv().is_ok() {}

    let pid3 = children.pid("node3").ok_or_else(|| err("node 3 not started"))?;
    let t0 = unix_us();
    let first = match opts.scenario {
        Scenario::Freeze => {
            kill(Pid::from_raw(pid3 as i32), Signal::SIGSTOP).map_err(|e| err(format!("SIGSTOP node 3: {e}")))?;
            format!("node 3 frozen (SIGSTOP pid {pid3}; its power stays on)")
        }
        Scenario::Partition => {
            kill(Pid::from_raw(pid3 as i32), Signal::SIGUSR1).map_err(|e| err(format!("SIGUSR1 node 3: {e}")))?;
            format!("node 3 cut off (fault injection: pid {pid3} drops every connection, keeps running)")
        }
    };
    let mut timeline = vec![Step { offset_ms: 0.0, what: first }];
    let off = |us: u64| (us as f64 - t0 as f64) / 1000.0;
    let mut detected = None;
    let mut confirmed = None;
    let mut notified = None;
    let mut epoch = 0;
    let mut acked: BTreeMap<u32, f64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // After the notification, wait briefly for the survivors' acknowledgements.
        let left = match notified {
            Some(_) if acked.len() >= 2 => break,
            Some(_) => left.min(Duration::from_millis(400)),
            None => left,
        };
        let Ok(Some(e)) = tokio::time::timeout(left, ev_rx.recv()).await else { break };
        let at = off(e.unix_us);
        let what = match e.kind.as_str() {
            "node_lost" if e.node == 3 => {
                detected.get_or_insert(at);
                "arbiter detects node 3 lost (no heartbeat within lost_after)".to_string()
            }
            "decision" => format!("decision: survivors {:?}, node 3 leaves ({})", e.nodes, e.detail),
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
                format!("survivors {:?} notified: node 3 gone, epoch {}", e.nodes, e.epoch)
            }
            "epoch_acknowledged" if notified.is_some() => {
                acked.insert(e.node, at);
                format!("node {} acknowledges epoch {}", e.node, e.epoch)
            }
            _ => continue,
        };
        timeline.push(Step { offset_ms: at, what });
    }
    collector.abort();
    let (Some(detected), Some(confirmed), Some(notified)) = (detected, confirmed, notified) else {
        return Err(err(format!(
            "node 3 was not fenced and announced within 10s; timeline so far: {timeline:?}; logs in {}",
            dir.display()
        )));
    };
    // The device's own record: off before the survivors were told.
    let record = device.events().map_err(|e| err(e.to_string()))?;
    let off_at = record.iter().find(|e| e.port == "node3" && e.action == "off").map(|e| e.unix_us);
    match off_at {
        Some(o) if off(o) <= notified => {}
        _ => return Err(err(format!("the power device has no off for node 3 before the survivors were told: {record:?}"))),
    }

    if !opts.quiet {
        println!("\ntimeline (ms after the fault):");
        for s in &timeline {
            println!("  {:>8.1} ms  {}", s.offset_ms, s.what);
        }
        println!("\n$ fencectl status");
        print!("{}", render_status(&fetch_status(&url, "").await?));
    }
    children.stop();
    if opts.keep {
        let kept = tmp.keep();
        say(&format!("\nkept {}", kept.display()));
    } else {
        say("\nstopped everything the demo started.");
    }
    Ok(DemoReport {
        scenario: opts.scenario,
        timeline,
        freeze_to_detected_ms: detected,
        freeze_to_confirmed_ms: confirmed,
        freeze_to_notified_ms: notified,
        epoch,
    })
}
