//! A heartbeat load on one real `fence-arbiter`: `clusters` x `nodes` agent
//! sessions over gRPC (plain TCP on 127.0.0.1, one connection per session,
//! as every agent has its own), each sending a heartbeat every interval
//! with a full-mesh reachability report and the last sequence acked, as an
//! agent does. Measured over a window once every session holds a lease:
//! heartbeats acked per second, ack latency (heartbeat sent to its ack
//! read, on this process's clock), and the arbiter's CPU time and resident
//! memory; with the embedded store or with etcd behind it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::e2e::free_port;

pub struct LoadOptions {
    pub clusters: usize,
    pub nodes: u32,
    pub interval: Duration,
    /// Longest wait for every session to hold a lease.
    pub warmup: Duration,
    pub measure: Duration,
    /// etcd client URLs: the arbiter's state in etcd (else redb).
    pub etcd: Vec<String>,
}

#[derive(Debug)]
pub struct LoadReport {
    pub sessions: usize,
    /// Sessions holding a lease when the window began.
    pub leased: usize,
    pub acks_per_sec: f64,
    pub sent_per_sec: f64,
    /// Ack latency percentiles, µs: p50, p99, p99.9.
    pub latency_us: (f64, f64, f64),
    /// The arbiter's CPU time over the window, in % of one core.
    pub cpu_pct: f64,
    /// The arbiter's resident memory at the end, KiB.
    pub rss_kib: u64,
}

/// Raise this process's open-file limit to its hard limit (every session
/// is a connection; the arbiter, a child, inherits the limit).
fn raise_nofile() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The arbiter's configuration: `clusters` clusters `c<i>` of `nodes`
/// nodes, one sim power device each.
fn config(dir: &Path, port: u16, o: &LoadOptions) -> String {
    let mut t = format!(
        "[arbiter]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\ninsecure_plaintext = true\n\
         metrics = \"off\"\nlog_format = \"json\"\n",
        dir.join("state").display()
    );
    if !o.etcd.is_empty() {
        let eps: Vec<String> = o.etcd.iter().map(|e| format!("{e:?}")).collect();
        t += &format!(
            "\n[arbiter.etcd]\nendpoints = [{}]\nprefix = \"/load-{port}\"\nleader_ttl = \"1s\"\n",
            eps.join(", ")
        );
    }
    for c in 0..o.clusters {
        t += &format!(
            "\n[[cluster]]\nname = \"c{c}\"\nheartbeat_interval = \"{}ms\"\n\
             [[cluster.device]]\nname = \"power\"\ndriver = \"sim\"\ndir = \"{}\"\n",
            o.interval.as_millis(),
            dir.join(format!("power{c}")).display()
        );
        for n in 1..=o.nodes {
            t += &format!(
                "[[cluster.node]]\nid = {n}\naddress = \"127.0.0.1:{}\"\nfence = [[\"power\"]]\n",
                20000 + n
            );
        }
    }
    t
}

/// CPU time (user + system) of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): state is field 3; utime
    // and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the sessions share.
struct Shared {
    origin: Instant,
    /// Sessions whose last ack granted a lease.
    leased: AtomicUsize,
    /// Heartbeats sent and acks read inside the window.
    sent: AtomicUsize,
    acked: AtomicUsize,
    /// The window, in µs since `origin` (`from` == `to` == 0 until it is
    /// set): read on every heartbeat and ack, so no lock.
    from: AtomicU64,
    to: AtomicU64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.from.load(Ordering::Acquire) && t < self.to.load(Ordering::Acquire)
    }
}

/// One agent session: Hello, then a heartbeat every interval until
/// `stop`; returns the ack latencies (µs) read inside the window.
async fn session(
    url: String,
    cluster: String,
    node: u32,
    nodes: u32,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Vec<u32>, String> {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = pb::agent_session_client::AgentSessionClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    let hello = pb::Hello {
        cluster,
        node_id: node,
        probe_address: format!("127.0.0.1:{}", 20000 + node),
        instance: rand::random::<u64>() | 1,
        ..Default::default()
    };
    tx.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(hello)),
    })
    .await
    .map_err(|_| "closed")?;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("session: {}", s.message()))?
        .into_inner();
    let welcome = match inbound.message().await {
        Ok(Some(pb::ArbiterMessage {
            body: Some(pb::arbiter_message::Body::Welcome(w)),
        })) => w,
        other => return Err(format!("no Welcome: {other:?}")),
    };
    let interval = Duration::from_millis(welcome.heartbeat_interval_ms.max(1));
    let reachable: Vec<u32> = (1..=nodes).filter(|&n| n != node).collect();
    let (mut epoch, mut seq, mut acked_seq, mut leased) = (welcome.epoch, 0u64, 0u64, false);
    let mut latencies = Vec::new();
    // Spread the sessions over the interval, as independent agents are.
    let first = Instant::now() + interval.mul_f64(rand::random::<f64>());
    let mut tick = tokio::time::interval_at(first, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                seq += 1;
                let now = shared.now_us();
                let hb = pb::Heartbeat {
                    seq,
                    sent_at_us: now,
                    reachable: reachable.clone(),
                    known_epoch: epoch,
                    acked_seq,
                    ..Default::default()
                };
                if tx.send(pb::AgentMessage { body: Some(pb::agent_message::Body::Heartbeat(hb)) }).await.is_err() {
                    return Err("the session closed".into());
                }
                if shared.in_window(now) {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            m = inbound.message() => match m {
                Ok(Some(pb::ArbiterMessage { body: Some(pb::arbiter_message::Body::Ack(a)) })) => {
                    let now = shared.now_us();
                    acked_seq = acked_seq.max(a.seq);
                    epoch = epoch.max(a.epoch);
                    let has = a.lease_ms > 0;
                    if has != leased {
                        leased = has;
                        if has {
                            shared.leased.fetch_add(1, Ordering::Relaxed);
                        } else {
                            shared.leased.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    if shared.in_window(a.sent_at_us) && shared.in_window(now) {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                        latencies.push(now.saturating_sub(a.sent_at_us).min(u32::MAX as u64) as u32);
                    }
                }
                Ok(Some(pb::ArbiterMessage { body: Some(pb::arbiter_message::Body::Announcement(a)) })) => {
                    epoch = epoch.max(a.epoch);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the arbiter ended the session".into()),
                Err(s) => return Err(format!("session: {}", s.message())),
            }
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

struct Arbiter(Child);

impl Drop for Arbiter {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

/// Start the arbiter in `dir`, put the load on it, measure.
pub async fn run(bin: &Path, dir: &Path, o: &LoadOptions) -> Result<LoadReport, String> {
    raise_nofile();
    let port = free_port();
    let cfg = dir.join("arbiter.toml");
    std::fs::write(&cfg, config(dir, port, o)).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("arbiter.log")).map_err(|e| e.to_string())?;
    let child = Command::new(bin.join("fence-arbiter"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("fence-arbiter: {e}"))?;
    let arbiter = Arbiter(child);
    let pid = arbiter.0.id();
    let url = format!("http://127.0.0.1:{port}");
    let up = Instant::now();
    while fencectl::commands::status::fetch_status(&url, "c0")
        .await
        .is_err()
    {
        if up.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the arbiter did not come up; see {}",
                dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        leased: AtomicUsize::new(0),
        sent: AtomicUsize::new(0),
        acked: AtomicUsize::new(0),
        from: AtomicU64::new(0),
        to: AtomicU64::new(0),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..o.clusters {
        for n in 1..=o.nodes {
            tasks.spawn(session(
                url.clone(),
                format!("c{c}"),
                n,
                o.nodes,
                shared.clone(),
                stop.clone(),
            ));
        }
    }
    let sessions = o.clusters * o.nodes as usize;
    let started = Instant::now();
    while shared.leased.load(Ordering::Relaxed) < sessions && started.elapsed() < o.warmup {
        if let Some(Ok(Err(e))) = tasks.try_join_next() {
            stop.cancel();
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leased = shared.leased.load(Ordering::Relaxed);
    let from = shared.now_us();
    let to = from + o.measure.as_micros() as u64;
    shared.from.store(from, Ordering::Release);
    shared.to.store(to, Ordering::Release);
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(o.measure).await;
    let ticks = cpu_ticks(pid) - ticks;
    let rss = rss_kib(pid);
    // Acks of heartbeats sent late in the window arrive just after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(e.to_string()),
        }
    }
    all.sort_unstable();
    // /proc counts CPU time in USER_HZ, 100 on Linux.
    let hz = 100.0;
    let secs = o.measure.as_secs_f64();
    Ok(LoadReport {
        sessions,
        leased,
        acks_per_sec: shared.acked.load(Ordering::Relaxed) as f64 / secs,
        sent_per_sec: shared.sent.load(Ordering::Relaxed) as f64 / secs,
        latency_us: (
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            percentile(&all, 0.999),
        ),
        cpu_pct: ticks as f64 / hz / secs * 100.0,
        rss_kib: rss,
    })
}

/// A markdown row of `r`.
pub fn row(store: &str, r: &LoadReport) -> String {
    format!(
        "| {store} | {} ({} leased) | {:.0} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0}% | {} KiB ({:.1} KiB per node) |",
        r.sessions,
        r.leased,
        r.sent_per_sec,
        r.acks_per_sec,
        r.latency_us.0,
        r.latency_us.1,
        r.latency_us.2,
        r.cpu_pct,
        r.rss_kib,
        r.rss_kib as f64 / r.sessions as f64
    )
}

/// The table's header.
pub const HEADER: &str = "| store | sessions | heartbeats sent/s | acks/s | ack p50 | p99 | p99.9 | arbiter CPU | arbiter RSS |\n|---|---|---|---|---|---|---|---|---|";

/// The bench: the same load on redb and on a three-member etcd, in one run.
pub fn bench(clusters: usize, nodes: u32, interval: Duration, measure: Duration) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bin: PathBuf = crate::e2e::binaries();
    let mut rows = Vec::new();
    let etcd = crate::etcd_peer::EtcdCluster::start(3);
    if let Err(e) = &etcd {
        eprintln!("etcd not started ({e}): redb only");
    }
    let mut stores = vec![("redb".to_string(), Vec::new())];
    if let Ok(e) = &etcd {
        stores.push(("etcd (3 members)".to_string(), e.endpoints()));
    }
    let mut failed = false;
    for (name, endpoints) in stores {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = LoadOptions {
            clusters,
            nodes,
            interval,
            warmup: Duration::from_secs(60),
            measure,
            etcd: endpoints,
        };
        match rt.block_on(run(&bin, dir.path(), &o)) {
            Ok(r) => {
                let line = row(&name, &r);
                println!("{line}");
                rows.push((name, r));
            }
            Err(e) => {
                // Not `exit`: the etcd members are stopped when dropped.
                eprintln!("{name}: {e}");
                failed = true;
                break;
            }
        }
    }
    println!(
        "\n{clusters} clusters x {nodes} nodes, heartbeat every {interval:?}, {measure:?} measured\n\n{HEADER}"
    );
    for (name, r) in &rows {
        println!("{}", row(name, r));
    }
    if let [(_, a), (_, b)] = rows.as_slice() {
        println!(
            "\nratio etcd / redb: acks/s {:.2}, p99 {:.2}",
            b.acks_per_sec / a.acks_per_sec,
            b.latency_us.1 / a.latency_us.1
        );
    }
    drop(etcd);
    if failed {
        std::process::exit(1);
    }
}
