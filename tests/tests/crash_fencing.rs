//! Crash safety of a fence: the running `fence-arbiter` is killed with
//! SIGKILL at every point of a fence, over and over, and restarted on the
//! same directory; the truth is then read from sources the arbiter does not
//! write: the BMCs' own power logs (OpenIPMI `ipmi_sim`, reached with the
//! native RMCP+ driver as every node's first fence level), the agents' JSON
//! logs, and the admin API polled from outside all along.
//!
//! One cluster of three nodes. Each round one node fails — its agent
//! crashes (SIGKILL), freezes (SIGSTOP) or is cut off from its peers while
//! it still reaches the arbiter — and the arbiter is killed at the points of
//! a plan, one per life of the arbiter, each restart resuming the fence:
//! before the intent (right after the failure), right after `fence_intent`,
//! once the BMC switched the node off (`off` sent), after
//! `fence_status_off`, after `fence_confirmed`, between the confirmation
//! and the announcement (0–5 ms after `fence_confirmed`, or at a random
//! moment of a restarted arbiter that has the confirmation but has not
//! announced), and at random moments. A trigger is whichever of the watch
//! stream (re-subscribed at once after each restart; its task kills on the
//! event itself), the arbiter's log or the BMC's log shows the point first;
//! where the fence was already past it, the kill happens all the same and
//! the point it reached is reported (with kills per point, at the end).
//! The machine "behind" a BMC is its agent: when the BMC's power goes off,
//! the test kills the agent process (as losing power would); the node is
//! brought back by powering it on through its BMC and booting a new agent.
//! The BMC takes 0, 50 or 120 ms per chassis command, by round.
//!
//! Checked, after every restart and at the end:
//! - the epoch never goes down: the Status epoch polled all along, the one a
//!   restarted arbiter shows against every epoch an agent logged before, and
//!   each agent process's own epochs;
//! - no intent is forgotten: every intent the arbiter logged as persisted is
//!   in the restarted arbiter's history, never lowered (pending → confirmed
//!   → stamped with its epoch); one intent per failure, resumed (the node is
//!   `fencing` at once) and ending confirmed and announced;
//! - no survivor told "gone" without a power-off: every announcement (the
//!   arbiter's log, the watch stream, each survivor's log) names only nodes
//!   whose BMC log shows them off at that instant; no BMC of a healthy node
//!   ever switched anything;
//! - no lease to a node being fenced: once its intent is stored, the node's
//!   agent never acquires a lease again in that boot, and Nodes never shows
//!   it holding one past the end of a lease granted before the intent;
//! - at least 100 SIGKILLs in all.
//!
//! Then the store: killed once more, `state/arbiter.redb` is corrupted in
//! the middle, replaced by garbage, truncated and replaced by a directory;
//! each time `fence-arbiter` must stop at start, non-zero, with an error
//! naming the store's path, and leave the file as it was (no fresh store in
//! its place). The intact file put back, the arbiter starts with the same
//! epoch and history. (The store is corrupted as a crash leaves it: redb
//! then verifies its checksums at open. Not asserted here: a store closed
//! cleanly is not verified at open, so a few corrupt pages end in a panic
//! inside redb or go unnoticed until read; one hitting only the pages of
//! the last commit of a crashed store is rolled back to the commit before,
//! silently; an empty file is taken for a new store.)
//!
//! Timings: the cluster's defaults but `reconnect_allowance = "1s"` (a
//! restart before the intent waits that long for the failed node): about
//! 23 rounds and 125 kills in 70 s in release mode. `CRASH_SEED` draws the
//! same plans and random delays again (printed at the start).

// One test, on its own runtime; the serial guard held across awaits is the
// point (peers and daemons on a 2-core machine, one test at a time).
#![allow(clippy::await_holding_lock)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fence_drivers::FenceDriver;
use fence_drivers::ipmi::IpmiDriver;
use fence_drivers::params::Params;
use fencectl::commands::status::{fetch_nodes, fetch_status};
use fencectl::commands::watch::{EventView, subscribe};
use fencectl::local_cluster::{BmcAccess, ClusterOptions, LocalCluster};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proto::v1 as pb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tests::e2e::{binaries, json_log, unix_us};
use tests::peers::{Bmc, required, serial};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// SIGKILLs the test must deliver in all.
const MIN_KILLS: usize = 100;
/// Rounds go on until this many kills (a margin over `MIN_KILLS`)...
const TARGET_KILLS: usize = 120;
/// ...or this many rounds.
const MAX_ROUNDS: usize = 30;
/// How long to wait for any one step of a fence.
const STEP: Duration = Duration::from_secs(20);
/// The longest a lease granted before an intent may still run after it, as
/// the arbiter bounds it (`lease_max + stall_after` at the default 300 ms
/// lease and 100 ms heartbeat), plus the poller's own lag.
const LEASE_TAIL_US: u64 = 300_000 + 6_000 + 1_000 + 200_000 + 100_000;

type Res<T> = anyhow::Result<T>;

/// How far a fence has got, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Failed,
    Intent,
    OffSent,
    StatusOff,
    Confirmed,
    Announced,
}

/// Where to kill the arbiter in one of its lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    BeforeIntent,
    AfterIntent,
    AfterOffSent,
    AfterStatusOff,
    AfterConfirmed,
    BeforeAnnounce,
    Random,
}

const CHAIN: [Point; 6] = [
    Point::BeforeIntent,
    Point::AfterIntent,
    Point::AfterOffSent,
    Point::AfterStatusOff,
    Point::AfterConfirmed,
    Point::BeforeAnnounce,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Crash,
    Freeze,
    CutFromPeers,
}

/// One line of a BMC's power log: `<unix>\t<request>\t<before>\t<after>\t<note>`.
#[derive(Debug, Clone)]
struct PowerEvent {
    us: u64,
    request: String,
    after: String,
}

/// New complete lines of a file that only grows.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    fn new(path: impl Into<PathBuf>) -> Tail {
        Tail {
            path: path.into(),
            offset: 0,
            partial: String::new(),
        }
    }

    fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let done: String = self.partial.drain(..=end).collect();
        done.lines().map(str::to_string).collect()
    }
}

/// The node ids in a `{1, 3}` (a set's Debug form), from a log field or
/// an event's detail.
fn id_set(s: &str) -> BTreeSet<u32> {
    let inner = s
        .split_once('{')
        .and_then(|(_, r)| r.split_once('}'))
        .map_or("", |(i, _)| i);
    inner
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

fn gone_of(fields: &serde_json::Value) -> BTreeSet<u32> {
    fields["gone"].as_str().map(id_set).unwrap_or_default()
}

/// `(unix µs, gone, epoch)` of every line of an agent's JSON log that
/// carries an epoch; `gone` is filled for the "nodes confirmed fenced"
/// notice.
fn agent_epochs(log: &str) -> Vec<(u64, BTreeSet<u32>, u64)> {
    let text: String = log
        .lines()
        .filter(|l| l.contains("lease.epoch"))
        .collect::<Vec<_>>()
        .join("\n");
    json_log(&text)
        .into_iter()
        .filter_map(|(t, m, f)| {
            let e = f["lease.epoch"].as_u64()?;
            let gone = if m.starts_with("new epoch: nodes confirmed fenced") {
                gone_of(&f)
            } else {
                BTreeSet::new()
            };
            Some((t, gone, e))
        })
        .collect()
}

/// Everything the test sees of the arbiter while it runs: the watch stream
/// (across restarts), the arbiter's own log and the power logs of every
/// node's two fence levels: its BMC, and the power device `power` (port
/// `node<n>`) the arbiter falls back to when the BMC does not answer.
struct Observer {
    rx: mpsc::UnboundedReceiver<EventView>,
    events: Vec<EventView>,
    arbiter: Tail,
    log: Vec<(u64, String, serde_json::Value)>,
    bmc: BTreeMap<u32, Tail>,
    /// The second level, and how many of its events were read.
    device: fence_drivers::sim::SimPowerDevice,
    device_read: usize,
    /// Per node, both levels' switchings in time order.
    power: BTreeMap<u32, Vec<PowerEvent>>,
}

impl Observer {
    fn pump(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.events.push(e);
        }
        let lines = self.arbiter.lines();
        if !lines.is_empty() {
            self.log.extend(json_log(&lines.join("\n")));
        }
        for (n, t) in self.bmc.iter_mut() {
            for l in t.lines() {
                let f: Vec<&str> = l.split('\t').collect();
                let Some(secs) = f.first().and_then(|s| s.parse::<f64>().ok()) else {
                    continue;
                };
                self.power.entry(*n).or_default().push(PowerEvent {
                    us: (secs * 1e6) as u64,
                    request: f.get(1).unwrap_or(&"").to_string(),
                    after: f.get(3).unwrap_or(&"").to_string(),
                });
            }
        }
        // The second level switches too (a BMC that did not answer in
        // time): its "off" and "on" count like the BMC's.
        let device = self.device.events().unwrap_or_default();
        for e in device.iter().skip(self.device_read) {
            let Some(n) = e.port.strip_prefix("node").and_then(|n| n.parse().ok()) else {
                continue;
            };
            let (request, after) = match e.action.as_str() {
                "off" => ("power-off", "off"),
                "on" => ("power-on", "on"),
                _ => continue,
            };
            self.power.entry(n).or_default().push(PowerEvent {
                us: e.unix_us,
                request: request.into(),
                after: after.into(),
            });
        }
        self.device_read = self.device_read.max(device.len());
        for evs in self.power.values_mut() {
            evs.sort_by_key(|e| e.us);
        }
    }

    /// What the arbiter's log says it had persisted about `node`'s fence
    /// since `since` (intent, confirmation, announcement).
    fn logged(&self, node: u32, since: u64) -> Stage {
        let mut s = Stage::Failed;
        for (_, msg, f) in self.log.iter().filter(|(t, _, _)| *t >= since) {
            let this = f["node.id"].as_u64() == Some(u64::from(node));
            let reached = match msg.as_str() {
                "fence intent persisted" if this => Stage::Intent,
                "fence confirmed and persisted" if this => Stage::Confirmed,
                "survivors notified" if gone_of(f).contains(&node) => Stage::Announced,
                _ => continue,
            };
            s = s.max(reached);
        }
        s
    }

    /// How far `node`'s fence got in the arbiter's life that began at
    /// `since`, from every source.
    fn live(&self, node: u32, since: u64) -> Stage {
        let mut s = self.logged(node, since);
        if self
            .power
            .get(&node)
            .is_some_and(|p| p.iter().any(|e| e.us >= since && e.request == "power-off"))
        {
            s = s.max(Stage::OffSent);
        }
        for e in self.events.iter().filter(|e| e.unix_us >= since) {
            if let Some(reached) = event_stage(e, node) {
                s = s.max(reached);
            }
        }
        s
    }

    /// The intents the arbiter logged as persisted, and as confirmed.
    fn logged_intents(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let mut stored = BTreeSet::new();
        let mut confirmed = BTreeSet::new();
        for (_, msg, f) in &self.log {
            let Some(i) = f["fence.intent"].as_u64() else {
                continue;
            };
            match msg.as_str() {
                "fence intent persisted" => {
                    stored.insert(i);
                }
                "fence confirmed and persisted" => {
                    confirmed.insert(i);
                }
                _ => {}
            }
        }
        (stored, confirmed)
    }

    /// Node `n`'s power at `us`, by the power logs of its BMC and of its
    /// second level ("on" before any event).
    fn power_at(&self, n: u32, us: u64) -> String {
        self.power
            .get(&n)
            .and_then(|p| p.iter().rev().find(|e| e.us <= us))
            .map_or("on".to_string(), |e| e.after.clone())
    }
}

/// Admin API samples taken all along, arbiter up or not.
#[derive(Default)]
struct Samples {
    /// (unix µs, epoch) from Status.
    epochs: Vec<(u64, u64)>,
    /// (unix µs, node, state) of every node Nodes shows holding a lease.
    leases: Vec<(u64, u32, String)>,
}

fn spawn_poller(
    url: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Samples>>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let s = samples.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(st) = fetch_status(&url, "demo").await {
                let t = unix_us();
                s.lock().unwrap().epochs.push((t, st.clusters[0].epoch));
            }
            if let Ok(nodes) = fetch_nodes(&url, "demo").await {
                let t = unix_us();
                let mut g = s.lock().unwrap();
                for n in nodes.iter().filter(|n| n.lease) {
                    g.leases.push((t, n.node, n.state.clone()));
                }
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    (samples, task)
}

/// The stage of `node`'s fence a watch event shows, if any.
fn event_stage(e: &EventView, node: u32) -> Option<Stage> {
    Some(match e.kind.as_str() {
        "fence_intent" if e.node == node => Stage::Intent,
        "fence_off_sent" if e.node == node => Stage::OffSent,
        "fence_status_off" if e.node == node => Stage::StatusOff,
        "fence_confirmed" if e.node == node => Stage::Confirmed,
        "survivors_notified" if id_set(&e.detail).contains(&node) => Stage::Announced,
        _ => return None,
    })
}

/// A kill the watch task carries out itself the moment the event comes
/// (no polling delay): the arbiter `pid` once `node`'s fence shows `want`
/// in an event at or after `since`. `kill` false: only note it (the main
/// loop kills after a delay of its own).
struct Armed {
    node: u32,
    want: Stage,
    since: u64,
    pid: u32,
    kill: bool,
    fired: Option<Stage>,
}

/// The watch stream, subscribed again at once whenever it ends (each
/// restart), forwarding every event and firing the armed kill.
fn spawn_watch(
    url: String,
    tx: mpsc::UnboundedSender<EventView>,
    armed: Arc<Mutex<Option<Armed>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(mut s) = subscribe(&url, "demo").await {
                while let Ok(Some(e)) = s.message().await {
                    let e: EventView = e.into();
                    if let Some(a) = armed.lock().unwrap().as_mut()
                        && a.fired.is_none()
                        && e.unix_us >= a.since
                        && let Some(st) = event_stage(&e, a.node)
                        && st >= a.want
                    {
                        if a.kill {
                            // Not reaped before the main loop disarms
                            // (under this lock): the pid is still ours.
                            let _ = kill(Pid::from_raw(a.pid as i32), Signal::SIGKILL);
                        }
                        a.fired = Some(st);
                    }
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// "Power" behind a BMC: once the BMC says off, the node's agent dies (a
/// thread polling the BMC's state file every half millisecond). Returns
/// when it did, or when told to stop.
fn couple_power(
    state_file: PathBuf,
    pid: Option<u32>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<u64>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if std::fs::read_to_string(&state_file).is_ok_and(|s| s.trim() == "off") {
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                return Some(unix_us());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        None
    })
}

async fn history(url: &str) -> Res<Vec<pb::FenceRecord>> {
    let mut admin = fencectl::client::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("admin: {e}"))?;
    Ok(admin
        .history(pb::HistoryRequest {
            cluster: "demo".into(),
            limit: 10_000,
        })
        .await?
        .into_inner()
        .fences)
}

/// One kill: what was aimed at, how far the fence had got in that life as
/// the test saw it, and what the arbiter's log says it had stored.
#[derive(Debug)]
struct Kill {
    round: usize,
    target: Point,
    live: Stage,
    stored: Stage,
    timed_out: bool,
}

struct Run {
    c: LocalCluster,
    obs: Observer,
    armed: Arc<Mutex<Option<Armed>>>,
    samples: Arc<Mutex<Samples>>,
    rng: ChaCha8Rng,
    bmcs: Vec<Bmc>,
    on_drivers: BTreeMap<u32, IpmiDriver>,
    kills: Vec<Kill>,
    /// Per node, when each of its agent processes started (unix µs).
    agent_starts: BTreeMap<u32, Vec<u64>>,
    /// Intent → (node, outcome, epoch) as the last history showed it.
    history: BTreeMap<u64, (u32, String, u64)>,
    /// (round, node, start µs, end µs) of each round.
    rounds: Vec<(usize, u32, u64, u64)>,
    /// When the running arbiter, and the current round, began (unix µs).
    life_start: u64,
    round_start: u64,
    restarts_ms: Vec<u128>,
    /// Kills the watch task made on the event itself.
    on_event: usize,
    /// Rounds whose survivors learned the new epoch without the agent's
    /// "nodes confirmed fenced" notice (from a Welcome).
    silent: Vec<(usize, u32)>,
}

impl Run {
    /// SIGKILL the running arbiter (it must still be running: it never
    /// stops on its own here) and reap it.
    fn kill_arbiter(&mut self) -> Res<()> {
        // Disarm first: once this returns, the watch task kills nothing.
        let armed = self.armed.lock().unwrap().take();
        if armed.as_ref().is_some_and(|a| a.kill && a.fired.is_some()) {
            self.on_event += 1;
            self.c.stop_arbiter();
            return Ok(());
        }
        if let Some(st) = self.c.arbiter_exit_status() {
            bail!(
                "the arbiter exited on its own ({st}): {}",
                tail(&self.c.log("arbiter"), 20)
            );
        }
        let pid = self.c.arbiter_pid().context("no arbiter process")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).context("SIGKILL to the arbiter")?;
        // Reaps it (SIGKILL cannot be caught: it is gone already).
        self.c.stop_arbiter();
        Ok(())
    }

    /// Start the arbiter on the same directory and check what it shows
    /// against everything seen before the kill.
    async fn restart(&mut self) -> Res<()> {
        // Everything known before the restart.
        self.obs.pump();
        let before = self.max_known_epoch();
        let (stored, confirmed) = self.obs.logged_intents();
        let t = Instant::now();
        self.life_start = unix_us();
        self.c
            .start_arbiter()
            .await
            .map_err(|e| anyhow::anyhow!("restart: {e}"))?;
        self.restarts_ms.push(t.elapsed().as_millis());
        let st = fetch_status(&self.c.url, "demo")
            .await
            .map_err(|e| anyhow::anyhow!("status: {e}"))?;
        let cl = &st.clusters[0];
        ensure!(
            cl.epoch >= before,
            "the restarted arbiter shows epoch {} but epoch {before} was known before the kill",
            cl.epoch
        );
        let hist = history(&self.c.url).await?;
        let now: BTreeMap<u64, &pb::FenceRecord> = hist.iter().map(|f| (f.intent_id, f)).collect();
        for i in &stored {
            ensure!(
                now.contains_key(i),
                "intent {i} was persisted (arbiter log) but the restarted arbiter's history lacks it: {hist:?}"
            );
        }
        for i in &confirmed {
            ensure!(
                now[i].outcome == "confirmed",
                "intent {i} was confirmed and persisted, the restarted arbiter has {:?}",
                now[i]
            );
        }
        for (i, (node, outcome, epoch)) in &self.history {
            let f = now
                .get(i)
                .with_context(|| format!("intent {i} (node {node}, {outcome}) vanished from history after a restart: {hist:?}"))?;
            ensure!(
                f.node_id == *node,
                "intent {i} changed node: {node} -> {}",
                f.node_id
            );
            ensure!(
                !(outcome == "confirmed" && f.outcome != "confirmed"),
                "intent {i} went from confirmed to {}",
                f.outcome
            );
            ensure!(
                *epoch == 0 || f.epoch == *epoch,
                "intent {i} was announced in epoch {epoch}, now {}",
                f.epoch
            );
        }
        // An open intent is being resumed: the node is fencing at once
        // (the status was read before the history that shows it open).
        for f in hist.iter().filter(|f| f.outcome == "pending") {
            ensure!(
                cl.fencing.contains(&f.node_id),
                "intent {} of node {} is open but the restarted arbiter is not fencing it: {:?}",
                f.intent_id,
                f.node_id,
                cl
            );
        }
        self.history = hist
            .iter()
            .map(|f| (f.intent_id, (f.node_id, f.outcome.clone(), f.epoch)))
            .collect();
        Ok(())
    }

    /// The highest epoch anyone has shown: Status samples, the arbiter's
    /// announcements, every agent's log.
    fn max_known_epoch(&self) -> u64 {
        let polled = self
            .samples
            .lock()
            .unwrap()
            .epochs
            .iter()
            .map(|(_, e)| *e)
            .max()
            .unwrap_or(0);
        let announced = self
            .obs
            .log
            .iter()
            .filter(|(_, m, _)| m == "survivors notified")
            .filter_map(|(_, _, f)| f["lease.epoch"].as_u64())
            .max()
            .unwrap_or(0);
        let agents = (1..=3)
            .flat_map(|n| {
                let text: String = self
                    .c
                    .log(&format!("agent{n}"))
                    .lines()
                    .filter(|l| l.contains("lease.epoch"))
                    .collect::<Vec<_>>()
                    .join("\n");
                json_log(&text)
            })
            .filter_map(|(_, _, f)| f["lease.epoch"].as_u64())
            .max()
            .unwrap_or(0);
        polled.max(announced).max(agents)
    }

    /// Wait until `point` is reached in this life of the arbiter (or the
    /// fence is already past it), then return. `Err` only on a real error.
    async fn wait_point(&mut self, node: u32, point: Point, stored: Stage) -> (Stage, bool) {
        let since = self.life_start.max(self.round_start);
        let want = match point {
            Point::BeforeIntent => Stage::Failed,
            Point::AfterIntent => Stage::Intent,
            Point::AfterOffSent => Stage::OffSent,
            Point::AfterStatusOff => Stage::StatusOff,
            Point::AfterConfirmed | Point::BeforeAnnounce => Stage::Confirmed,
            Point::Random => {
                let ms = self.rng.random_range(0..400);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.obs.pump();
                return (self.obs.live(node, since).max(stored), false);
            }
        };
        // Past it already (stored before this life), or the fence is over:
        // a resumed fence sends `off` again, but never a second intent, and
        // nothing runs once the node is confirmed off.
        let over = stored >= want
            && (want != Stage::OffSent && want != Stage::StatusOff || stored >= Stage::Confirmed);
        if point == Point::BeforeAnnounce && stored >= Stage::Confirmed {
            // A restarted arbiter with the confirmation stored, before it
            // announces: any moment of its first few hundred ms.
            let ms = self.rng.random_range(0..150);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.obs.pump();
            return (self.obs.live(node, since).max(stored), false);
        }
        if over || want == Stage::Failed {
            self.obs.pump();
            return (self.obs.live(node, since).max(stored), false);
        }
        let pid = self.c.arbiter_pid().unwrap_or(0);
        *self.armed.lock().unwrap() = Some(Armed {
            node,
            want,
            since,
            pid,
            kill: point != Point::BeforeAnnounce && pid != 0,
            fired: None,
        });
        let end = Instant::now() + STEP;
        loop {
            self.obs.pump();
            let fired = self.armed.lock().unwrap().as_ref().and_then(|a| a.fired);
            let live = self
                .obs
                .live(node, since)
                .max(stored)
                .max(fired.unwrap_or(Stage::Failed));
            if live >= want {
                if point == Point::BeforeAnnounce {
                    let us = self.rng.random_range(0..5_000);
                    tokio::time::sleep(Duration::from_micros(us)).await;
                    self.obs.pump();
                    return (self.obs.live(node, since).max(stored), false);
                }
                return (live, false);
            }
            if Instant::now() > end {
                return (live, true);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn round(&mut self, r: usize) -> Res<()> {
        let node = (r % 3) as u32 + 1;
        let failure = [Failure::Crash, Failure::Freeze, Failure::CutFromPeers][(r / 3 + r) % 3];
        let delay = ["0", "0.05", "0.12"][(r / 3) % 3];
        let bmc_dir = self.bmcs[node as usize - 1].dir();
        if delay == "0" {
            let _ = std::fs::remove_file(bmc_dir.join("delay-seconds"));
        } else {
            std::fs::write(bmc_dir.join("delay-seconds"), delay)?;
        }
        let mut plan: Vec<Point> = CHAIN.to_vec();
        if r % 7 < CHAIN.len() {
            plan.remove(r % 7);
        }
        if r % 4 == 1 {
            let at = self.rng.random_range(0..=plan.len());
            plan.insert(at, Point::Random);
        }
        let started = unix_us();
        self.round_start = started;
        let t0 = Instant::now();
        let pid = self.c.agent_pid(node).context("agent pid")?;
        let stop = Arc::new(AtomicBool::new(false));
        let power_file =
            PathBuf::from(self.bmcs[node as usize - 1].get("FENCE_IPMI_POWER_STATE_FILE"));
        let coupler = couple_power(
            power_file,
            (failure != Failure::Crash).then_some(pid),
            stop.clone(),
        );
        match failure {
            Failure::Crash => self.c.kill_agent(node),
            Failure::Freeze => self.c.freeze(node),
            Failure::CutFromPeers => self.c.cut_from_peers(node),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;

        let mut stored = Stage::Failed;
        let mut lives = Vec::new();
        for &point in &plan {
            let (live, timed_out) = self.wait_point(node, point, stored).await;
            self.kill_arbiter()?;
            self.obs.pump();
            stored = self.obs.logged(node, started);
            lives.push(format!(
                "{point:?}->{live:?}/{stored:?}{}",
                if timed_out { "(timeout)" } else { "" }
            ));
            self.kills.push(Kill {
                round: r,
                target: point,
                live,
                stored,
                timed_out,
            });
            self.restart().await?;
        }

        // The last life finishes the fence: the history stamps it with the
        // epoch of its announcement, and both survivors' own logs show
        // that epoch (the agent's "nodes confirmed fenced" notice, or, after
        // a kill between the new epoch's commit and its announcement, the
        // epoch of a Welcome or an ack).
        let survivors: Vec<u32> = (1..=3).filter(|&s| s != node).collect();
        let end = Instant::now() + STEP;
        let epoch = loop {
            let stamped = history(&self.c.url).await.ok().and_then(|h| {
                h.iter()
                    .find(|f| {
                        f.node_id == node
                            && f.started_unix_ms * 1000 + 1000 >= started
                            && f.epoch != 0
                    })
                    .map(|f| f.epoch)
            });
            if let Some(e) = stamped {
                let heard = survivors.iter().all(|&s| {
                    agent_epochs(&self.c.log(&format!("agent{s}")))
                        .iter()
                        .any(|(t, _, ep)| *t >= started && *ep >= e)
                });
                if heard {
                    break e;
                }
            }
            if Instant::now() > end {
                self.obs.pump();
                bail!(
                    "round {r}: node {node} ({failure:?}) not announced to both survivors within {STEP:?} (epoch {stamped:?}); kills {lives:?}; status {:?}",
                    fetch_status(&self.c.url, "demo")
                        .await
                        .map(|s| format!("{:?}", s.clusters[0])),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for &s in &survivors {
            let noticed = agent_epochs(&self.c.log(&format!("agent{s}")))
                .iter()
                .any(|(t, notice, ep)| *t >= started && *ep == epoch && notice.contains(&node));
            if !noticed {
                self.silent.push((r, s));
            }
        }
        let coupled = Instant::now() + Duration::from_secs(1);
        while !coupler.is_finished() && Instant::now() < coupled {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let off_at = coupler.join().unwrap_or(None);
        // Switched off by its BMC, or (a BMC too slow to answer) by the
        // second level, the power device, which kills the node's agent.
        let port = format!("node{node}");
        let second_level_off = self
            .c
            .device
            .events()
            .unwrap_or_default()
            .iter()
            .any(|e| e.port == port && e.action == "off" && e.unix_us >= started);
        ensure!(
            self.bmcs[node as usize - 1].power() == "off" || second_level_off,
            "round {r}: node {node} announced gone but its BMC says {} and its second level never switched it off",
            self.bmcs[node as usize - 1].power()
        );
        ensure!(
            off_at.is_some() || second_level_off,
            "round {r}: neither the BMC nor the second level went off"
        );

        // One intent for this failure, confirmed and announced, and every
        // intent seen open was this one.
        let hist = history(&self.c.url).await?;
        let mine: Vec<&pb::FenceRecord> = hist
            .iter()
            .filter(|f| f.node_id == node && f.started_unix_ms * 1000 + 1000 >= started)
            .collect();
        ensure!(
            mine.len() == 1,
            "round {r}: node {node} has {} intents for one failure: {mine:?}",
            mine.len()
        );
        ensure!(
            mine[0].outcome == "confirmed" && mine[0].epoch == epoch,
            "round {r}: the intent ended {:?}, announced in epoch {epoch}",
            mine[0]
        );
        let first_intent_us = self
            .obs
            .log
            .iter()
            .find(|(t, m, f)| {
                *t >= started
                    && m == "fence intent persisted"
                    && f["node.id"].as_u64() == Some(u64::from(node))
            })
            .map(|(t, _, _)| *t)
            .context("no intent logged")?;

        // The node's machine comes back: the agent process of the old boot
        // is reaped, the BMC powers it on, a new boot starts its agent.
        if failure != Failure::Crash {
            self.c
                .kill_agent(node)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        self.on_drivers[&node]
            .on("")
            .await
            .with_context(|| format!("power node {node} on through its BMC"))?;
        ensure!(self.bmcs[node as usize - 1].power() == "on");
        let back = unix_us();
        self.c
            .start_agent(node)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.agent_starts.entry(node).or_default().push(back);
        self.c
            .wait_all_leased(STEP)
            .await
            .map_err(|e| anyhow::anyhow!("round {r}: {e}"))?;

        // No lease to the node once its intent was stored: its agent of
        // that boot never acquired one again...
        let own = json_log(&self.c.log(&format!("agent{node}")));
        if let Some((t, m, _)) = own
            .iter()
            .find(|(t, m, _)| *t >= first_intent_us && *t < back && m.starts_with("lease acquired"))
        {
            bail!(
                "round {r}: node {node}'s agent acquired a lease at {t} after its fence intent at {first_intent_us}: {m}"
            );
        }
        // ...and the arbiter never showed it holding one past what a lease
        // granted before the intent could last.
        let late: Vec<(u64, u32, String)> = self
            .samples
            .lock()
            .unwrap()
            .leases
            .iter()
            .filter(|(t, n, _)| *n == node && *t > first_intent_us + LEASE_TAIL_US && *t < back)
            .cloned()
            .collect();
        ensure!(
            late.is_empty(),
            "round {r}: the arbiter showed node {node} holding a lease after its intent at {first_intent_us}: {late:?}"
        );
        self.rounds.push((r, node, started, unix_us()));
        println!(
            "round {r:2}: node {node} {failure:?} (BMC {delay} s) epoch {epoch}, {} kills [{}], {:.1} s",
            lives.len(),
            lives.join(", "),
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The checks over the whole run.
    async fn final_checks(&mut self) -> Res<()> {
        self.obs.pump();
        let hist = history(&self.c.url).await?;
        // Epochs polled from outside never went down.
        let s = self.samples.lock().unwrap();
        for w in s.epochs.windows(2) {
            ensure!(
                w[1].1 >= w[0].1,
                "the Status epoch went from {} to {} (at {} -> {})",
                w[0].1,
                w[1].1,
                w[0].0,
                w[1].0
            );
        }
        let samples = s.epochs.len();
        drop(s);
        ensure!(samples > 100, "only {samples} Status samples");

        // Every announcement names only nodes switched off by their BMC at
        // that instant: the arbiter's log, the watch stream, the survivors.
        let mut announcements = 0;
        for (t, m, f) in &self.obs.log {
            if m == "survivors notified" {
                for n in gone_of(f) {
                    announcements += 1;
                    ensure!(
                        self.obs.power_at(n, *t) == "off",
                        "the arbiter announced node {n} gone at {t} while its BMC had it {}: {f}",
                        self.obs.power_at(n, *t)
                    );
                }
            }
        }
        for e in self
            .obs
            .events
            .iter()
            .filter(|e| e.kind == "survivors_notified")
        {
            for n in id_set(&e.detail) {
                ensure!(
                    self.obs.power_at(n, e.unix_us) == "off",
                    "watch: node {n} announced gone at {} while its BMC and its second level had it on: {e:?}",
                    e.unix_us
                );
            }
        }
        // A fence is confirmed only once its BMC has the node off, and an
        // epoch that makes nodes gone reaches no survivor, by any message
        // (announcement, ack, Welcome), before they are off.
        let mut gone_in: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for f in hist.iter().filter(|f| f.outcome == "confirmed") {
            let at = f.finished_unix_ms * 1000 + 999;
            ensure!(
                self.obs.power_at(f.node_id, at) == "off",
                "intent {} confirmed node {} off at {at} while its BMC and its second level had it on",
                f.intent_id,
                f.node_id
            );
            if f.epoch != 0 {
                gone_in.entry(f.epoch).or_default().insert(f.node_id);
            }
        }
        ensure!(
            gone_in.values().map(BTreeSet::len).sum::<usize>() >= self.rounds.len(),
            "fewer announced fences than rounds: {gone_in:?}"
        );
        let mut told = 0;
        for s in 1..=3u32 {
            let starts = self.agent_starts.get(&s).cloned().unwrap_or_default();
            let mut last: Option<(usize, u64)> = None;
            let mut seen = BTreeSet::new();
            for (t, notice, e) in agent_epochs(&self.c.log(&format!("agent{s}"))) {
                // The first time this node hears of epoch `e` (later lines
                // in `e` may come once the node is back: a new boot).
                let mut gone = if seen.insert(e) {
                    gone_in.get(&e).cloned().unwrap_or_default()
                } else {
                    BTreeSet::new()
                };
                gone.extend(notice);
                for n in gone.into_iter().filter(|&n| n != s) {
                    told += 1;
                    ensure!(
                        self.obs.power_at(n, t) == "off",
                        "node {s} heard epoch {e} (node {n} gone) at {t} while node {n}'s BMC and second level had it on"
                    );
                }
                // Each agent process's epochs only grow.
                let life = starts.iter().filter(|&&b| b <= t).count();
                if let Some((l, prev)) = last {
                    ensure!(
                        l != life || e >= prev,
                        "node {s}'s agent went from epoch {prev} to {e} at {t}"
                    );
                }
                last = Some((life, e));
            }
        }
        ensure!(
            told >= self.rounds.len() * 2,
            "only {told} survivor notices"
        );
        ensure!(announcements > 0, "no announcement in the arbiter's log");

        // No healthy node ever switched off (by its BMC or second level): every power-off falls in a
        // round of that node.
        for (n, evs) in &self.obs.power {
            for e in evs.iter().filter(|e| e.request == "power-off") {
                ensure!(
                    self.rounds
                        .iter()
                        .any(|(_, rn, a, b)| rn == n && e.us >= *a && e.us <= *b),
                    "node {n} switched off (BMC or second level) at {} outside a round of its node",
                    e.us
                );
            }
        }
        Ok(())
    }

    fn report(&self) {
        let mut by_target: BTreeMap<Point, (usize, BTreeMap<Stage, usize>)> = BTreeMap::new();
        for k in &self.kills {
            let e = by_target.entry(k.target).or_default();
            e.0 += 1;
            *e.1.entry(k.live).or_default() += 1;
        }
        println!("kills by point aimed at -> stage reached in that life (as the test saw it):");
        for (p, (n, stages)) in &by_target {
            println!("  {p:?}: {n} -> {stages:?}");
        }
        let mut by_stored: BTreeMap<Stage, usize> = BTreeMap::new();
        for k in &self.kills {
            *by_stored.entry(k.stored).or_default() += 1;
        }
        println!("kills by what the store held (arbiter log): {by_stored:?}");
        let timeouts: Vec<&Kill> = self.kills.iter().filter(|k| k.timed_out).collect();
        for k in timeouts {
            println!(
                "round {}: {:?} not reached within {STEP:?} (killed at {:?}, store {:?})",
                k.round, k.target, k.live, k.stored
            );
        }
        let failed = self
            .obs
            .events
            .iter()
            .filter(|e| e.kind == "fence_failed" || e.kind == "fence_round_failed")
            .count();
        println!("fence levels or rounds failed (watch): {failed}");
        println!(
            "kills on the watch event itself: {}; survivors that learned a new epoch without the \"nodes confirmed fenced\" notice (round, node): {:?}",
            self.on_event, self.silent
        );
        let mut ms = self.restarts_ms.clone();
        ms.sort_unstable();
        if !ms.is_empty() {
            println!(
                "restarts: {}, admin API up after {} ms median, {} ms max",
                ms.len(),
                ms[ms.len() / 2],
                ms[ms.len() - 1]
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Start `fence-arbiter --config` directly on a store that must stop it:
/// it exits non-zero within 10 s; returns its stderr.
fn start_must_fail(config: &Path, what: &str) -> Res<String> {
    let mut child = std::process::Command::new(binaries().join("fence-arbiter"))
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > end {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!(
                "{what}: fence-arbiter still ran after 10 s (killed): {}",
                tail(&err, 10)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    ensure!(
        !status.success(),
        "{what}: fence-arbiter exited successfully: {err}"
    );
    Ok(err)
}

/// The store checks: corrupt, garbage, truncated, a directory: each stops
/// the start with an error naming the store, and leaves it as it was.
async fn store_checks(run: &mut Run) -> Res<()> {
    run.kill_arbiter()?;
    run.kills.push(Kill {
        round: usize::MAX,
        target: Point::Random,
        live: Stage::Announced,
        stored: Stage::Announced,
        timed_out: false,
    });
    let dir = run.c.dir().to_path_buf();
    let store = dir.join("state").join("arbiter.redb");
    let config = dir.join("arbiter.toml");
    let good = std::fs::read(&store).context("read the store")?;
    ensure!(good.len() > 8192, "store of {} bytes", good.len());
    let path = store.display().to_string();
    let check = |what: &str, err: &str| -> Res<()> {
        ensure!(
            err.contains(&path) && err.contains("store"),
            "{what}: the error does not name the store {path}: {err}"
        );
        println!("{what}: refused: {}", err.lines().last().unwrap_or(""));
        Ok(())
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut garbage = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.random()).collect() };

    // Bytes overwritten in the middle of the file: its middle half.
    let mut bad = good.clone();
    let (a, b) = (good.len() / 4, good.len() * 3 / 4);
    bad[a..b].copy_from_slice(&garbage(b - a));
    std::fs::write(&store, &bad)?;
    let err = start_must_fail(&config, "corrupt in the middle")?;
    check("corrupt in the middle", &err)?;
    ensure!(
        std::fs::read(&store)? == bad,
        "the corrupt store was rewritten"
    );

    // The whole file garbage.
    let bad = garbage(good.len());
    std::fs::write(&store, &bad)?;
    let err = start_must_fail(&config, "garbage")?;
    check("garbage", &err)?;
    ensure!(
        std::fs::read(&store)? == bad,
        "the garbage store was rewritten"
    );

    // Truncated: its head only.
    let bad = good[..good.len() / 3].to_vec();
    std::fs::write(&store, &bad)?;
    let err = start_must_fail(&config, "truncated")?;
    check("truncated", &err)?;
    ensure!(
        std::fs::read(&store)? == bad,
        "the truncated store was rewritten"
    );

    // Unreadable: a directory where the file was.
    std::fs::remove_file(&store)?;
    std::fs::create_dir(&store)?;
    let err = start_must_fail(&config, "a directory")?;
    check("a directory", &err)?;
    ensure!(store.is_dir(), "the directory was replaced");
    std::fs::remove_dir(&store)?;

    // The intact store back: same epoch, same history.
    std::fs::write(&store, &good)?;
    let before_epoch = run.max_known_epoch();
    run.restart().await?;
    let st = fetch_status(&run.c.url, "demo")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        st.clusters[0].epoch == before_epoch,
        "after the store checks: epoch {} (was {before_epoch})",
        st.clusters[0].epoch
    );
    Ok(())
}

async fn body(run: &mut Run) -> Res<()> {
    let mut r = 0;
    while run.kills.len() < TARGET_KILLS && r < MAX_ROUNDS {
        run.round(r).await?;
        r += 1;
    }
    run.final_checks().await?;
    store_checks(run).await?;
    ensure!(
        run.kills.len() >= MIN_KILLS,
        "only {} SIGKILLs in {r} rounds",
        run.kills.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_arbiter_at_every_point_of_a_fence_forgets_nothing_and_lowers_no_epoch() {
    let _g = serial();
    let began = Instant::now();
    let mut bmcs = Vec::new();
    for i in 1..=3 {
        let Some(b) = required("IPMI", Bmc::start(&format!("bmc{i}"))) else {
            return;
        };
        bmcs.push(b);
    }
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| unix_us() % 1_000_000);
    println!("CRASH_SEED={seed}");
    let mut opts = ClusterOptions {
        cluster_extra: "reconnect_allowance = \"1s\"".into(),
        arbiter_extra: "metrics = \"off\"".into(),
        ..ClusterOptions::default()
    };
    let mut on_drivers = BTreeMap::new();
    for (i, b) in bmcs.iter().enumerate() {
        let n = i as u32 + 1;
        opts.bmcs.insert(
            n,
            BmcAccess {
                port: b.get("FENCE_IPMI_PORT").parse().unwrap(),
                username: b.get("FENCE_IPMI_USER").to_string(),
                password_file: b.get("FENCE_IPMI_PASSWORD_FILE").into(),
                native: true,
            },
        );
        let mut p = Params::default();
        for (k, v) in [
            ("ip", "127.0.0.1"),
            ("ipport", b.get("FENCE_IPMI_PORT")),
            ("username", b.get("FENCE_IPMI_USER")),
            ("timeout", "1s"),
        ] {
            p.values.insert(k.into(), v.into());
        }
        p.secrets.insert(
            "password".into(),
            format!("file:{}", b.get("FENCE_IPMI_PASSWORD_FILE")),
        );
        on_drivers.insert(
            n,
            IpmiDriver::from_params(format!("test-bmc{n}"), &p).unwrap(),
        );
    }
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    let cluster_started = unix_us();
    c.wait_all_leased(STEP).await.expect("all leased");
    let (tx, rx) = mpsc::unbounded_channel();
    let armed = Arc::new(Mutex::new(None));
    let watch = spawn_watch(c.url.clone(), tx, armed.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (samples, poller) = spawn_poller(c.url.clone(), stop.clone());
    let mut arbiter = Tail::new(c.dir().join("arbiter.log"));
    let mut obs_bmc = BTreeMap::new();
    for (i, b) in bmcs.iter().enumerate() {
        obs_bmc.insert(i as u32 + 1, Tail::new(b.get("FENCE_IPMI_EVENTS_LOG")));
    }
    let log = json_log(&arbiter.lines().join("\n"));
    let device = c.device.clone();
    let mut run = Run {
        c,
        obs: Observer {
            rx,
            events: Vec::new(),
            arbiter,
            log,
            bmc: obs_bmc,
            device,
            device_read: 0,
            power: BTreeMap::new(),
        },
        armed,
        samples,
        rng: ChaCha8Rng::seed_from_u64(seed),
        bmcs,
        on_drivers,
        kills: Vec::new(),
        agent_starts: (1..=3).map(|n| (n, vec![cluster_started])).collect(),
        history: BTreeMap::new(),
        rounds: Vec::new(),
        life_start: cluster_started,
        round_start: cluster_started,
        restarts_ms: Vec::new(),
        on_event: 0,
        silent: Vec::new(),
    };
    let result = body(&mut run).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    watch.abort();
    run.report();
    println!(
        "{} SIGKILLs in {} rounds, {:.0} s in all",
        run.kills.len(),
        run.rounds.len(),
        began.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        for d in run.on_drivers.values() {
            d.close().await;
        }
        let Run { c, .. } = run;
        let kept = c.keep();
        panic!(
            "{e:#}\nthe cluster's directory (logs, store) is kept in {}",
            kept.display()
        );
    }
    for d in run.on_drivers.values() {
        d.close().await;
    }
}
