//! Two `fence-arbiter` processes sharing a real etcd cluster (three
//! members on 127.0.0.1) serve one cluster of three agents that list both,
//! with `ride_out = "5s"`. The leader is killed with SIGKILL, frozen with
//! SIGSTOP, cut off the network (in a private network namespace), ten
//! times each; each time the other takes over: the agents
//! ride their leases out on the whole mesh meanwhile, so no lease is lost
//! and the resource group never stops; every node holds a lease from the
//! new leader; no node is fenced because of the handover; no epoch ever
//! goes back; the arbiter killed comes back as a standby that disturbs
//! nothing. A node that dies during a handover, or a partition during
//! one, stops the ride: the new leader decides after its grace as usual.

use std::time::{Duration, Instant};

use fencectl::commands::status::fetch_nodes;
use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use nix::sys::signal::Signal;
use tests::blackhole::{ProcessCut, in_private_netns};
use tests::e2e::script;
use tests::etcd_peer::EtcdCluster;
use tests::peers::{in_ci, required, serial};

const LEASE_LOST: &str = "lease lost: resources must stop now";
const RIDING: &str = "riding it out while the mesh is whole";
const STOOD_BY: &str = "standing by: another arbiter leads";

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

/// The group on `etcd` with `ride_out = "5s"` and a resource group `web`
/// on node 1 whose start and stop scripts append to `dir/web.log`.
async fn group(etcd: &EtcdCluster, dir: &std::path::Path) -> LocalCluster {
    group_gid(etcd, dir, None).await
}

/// As [`group`], arbiter `k` running with group id `gid_base + k`.
async fn group_gid(
    etcd: &EtcdCluster,
    dir: &std::path::Path,
    gid_base: Option<u32>,
) -> LocalCluster {
    let log = dir.join("web.log");
    let start = script(
        dir,
        "start",
        &format!(
            "echo start >> {}; touch {}/running",
            log.display(),
            dir.display()
        ),
    );
    let stop = script(
        dir,
        "stop",
        &format!(
            "echo stop >> {}; rm -f {}/running",
            log.display(),
            dir.display()
        ),
    );
    let monitor = script(
        dir,
        "monitor",
        &format!("[ -e {}/running ] || exit 7", dir.display()),
    );
    let opts = ClusterOptions {
        cluster_extra: "ride_out = \"5s\"\n".into(),
        groups: format!(
            "\n[[cluster.group]]\nname = \"web\"\nnodes = [\"node1\"]\nmonitor_interval = \"500ms\"\n\
             resources = [ {{ kind = \"exec\", start = [\"{start}\"], stop = [\"{stop}\"], monitor = [\"{monitor}\"] }} ]\n"
        ),
        // Heartbeats out of step, as on machines booted apart: a peer's
        // last grant before the leader's loss may come most of an
        // interval after this node's.
        agent_start_gap: Duration::from_millis(37),
        arbiter_gid_base: gid_base,
        ..ClusterOptions::default()
    };
    tests::etcd_bench::group_with(etcd, opts)
        .await
        .expect("arbiter group on etcd")
}

/// What the group's scripts did, in order ("start", "stop").
fn web(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("web.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait (10 s at most) until node 3 is switched off; `log`: the arbiter
/// log shown if it never is.
async fn node3_fenced_by(c: &LocalCluster, log: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while offs(c, "node3") == 0 {
        assert!(
            Instant::now() < until,
            "node 3 was never fenced; {}",
            c.log(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (10 s at most) until the group `web` runs: its last script run
/// was a start. Returns the scripts' runs so far.
async fn web_running(dir: &std::path::Path) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    while web(dir).last().map(String::as_str) != Some("start") {
        assert!(Instant::now() < until, "web never started: {:?}", web(dir));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    web(dir)
}

/// How often `what` appears in agent `n`'s log.
fn in_agent_log(c: &LocalCluster, n: u32, what: &str) -> usize {
    c.log(&format!("agent{n}")).matches(what).count()
}

/// The group of [`group_gid`] started on a fresh three-member etcd, the
/// resource group running, and what every handover round is checked
/// against. (Fields drop in order: the cluster before etcd.)
struct Rig {
    c: LocalCluster,
    scripts: tempfile::TempDir,
    _etcd: EtcdCluster,
    /// The arbiter leading now.
    leader: usize,
    /// The epoch after the last round.
    epoch: u64,
    /// The group's script runs once it ran (a start, never anything again).
    running: Vec<String>,
    /// Each node's count of lost leases before the first round.
    lost_before: Vec<usize>,
    /// Per round, the fault to every node leased by the other arbiter.
    took: Vec<Duration>,
    /// Nodes `fencectl nodes` showed riding their leases out.
    seen_riding: usize,
}

const ALL: [u32; 3] = [1, 2, 3];

impl Rig {
    /// `None` where etcd is not installed (outside CI).
    async fn start(gid_base: Option<u32>) -> Option<Rig> {
        let etcd = required("etcd", EtcdCluster::start(3))?;
        let scripts = tempfile::tempdir().expect("tempdir");
        let mut c = group_gid(&etcd, scripts.path(), gid_base).await;
        let epoch = leads(&mut c, 0, &ALL, Duration::from_secs(5)).await;
        // The group runs on node 1 (each agent stopped it first, at start).
        let running = web_running(scripts.path()).await;
        let lost_before = ALL
            .iter()
            .map(|&n| in_agent_log(&c, n, LEASE_LOST))
            .collect();
        Some(Rig {
            c,
            scripts,
            _etcd: etcd,
            leader: 0,
            epoch,
            running,
            lost_before,
            took: Vec::new(),
            seen_riding: 0,
        })
    }

    /// The leader was struck at `t`: the other arbiter leases every node
    /// (15 s at most), no lease was lost, the group's scripts ran nothing,
    /// nobody was switched off, the epoch did not go back.
    async fn taken_over(&mut self, round: usize, t: Instant) {
        let next = 1 - self.leader;
        self.seen_riding += riding_seen(&self.c, next).await;
        let e = leads(&mut self.c, next, &ALL, Duration::from_secs(15)).await;
        self.took.push(t.elapsed());
        self.undisturbed(round);
        assert!(
            e >= self.epoch,
            "round {round}: epoch went back from {} to {e}",
            self.epoch
        );
        self.epoch = e;
    }

    /// The deposed leader gone for good: every node still with the new
    /// leader, nothing disturbed; the old one comes back as a standby and
    /// the new one is the leader of the next round.
    async fn next_round(&mut self, round: usize) {
        let (old, next) = (self.leader, 1 - self.leader);
        leads(&mut self.c, next, &ALL, Duration::from_secs(2)).await;
        self.undisturbed(round);
        back_as_standby(&mut self.c, old, round).await;
        self.leader = next;
    }

    /// Round `round` lost no lease, the group's scripts ran nothing since
    /// `running`, and no node was switched off.
    fn undisturbed(&self, round: usize) {
        for (i, &lost) in self.lost_before.iter().enumerate() {
            let n = i as u32 + 1;
            assert_eq!(
                in_agent_log(&self.c, n, LEASE_LOST),
                lost,
                "round {round}: node {n} lost its lease during the handover; {}",
                self.c.log(&format!("agent{n}"))
            );
            assert_eq!(
                offs(&self.c, &format!("node{n}")),
                0,
                "round {round}: node {n} was fenced by a handover"
            );
        }
        assert_eq!(
            web(self.scripts.path()),
            self.running,
            "round {round}: the group stopped or started again"
        );
    }

    /// Print the handover times (`what` struck the leader) and check that
    /// `fencectl nodes` showed ridden leases.
    fn report(&mut self, what: &str, more: &str) {
        self.took.sort();
        eprintln!(
            "handover (leader {what} -> every node leased by the other): median {:?}, max {:?}; no lease lost, the group never stopped{more}",
            self.took[self.took.len() / 2],
            self.took[self.took.len() - 1]
        );
        assert!(
            self.seen_riding > 0,
            "fencectl nodes never showed a ridden lease"
        );
    }
}

/// While arbiter `next` takes over (until it leases every node, 15 s at
/// most): how many times `fencectl nodes` showed a node riding its lease
/// out there.
async fn riding_seen(c: &LocalCluster, next: usize) -> usize {
    let mut seen = 0;
    let watch = Instant::now() + Duration::from_secs(15);
    while Instant::now() < watch {
        if let Ok(nodes) = fetch_nodes(&c.arbiter_url(next), "demo").await {
            seen += nodes.iter().filter(|n| n.ridden_ms > 0).count();
            if nodes.iter().all(|n| n.lease) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    seen
}

/// The old leader `k` comes back, as a standby that stays up.
async fn back_as_standby(c: &mut LocalCluster, k: usize, round: usize) {
    c.spawn_arbiter(k).expect("restart");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        c.arbiter_k_pid(k).is_some(),
        "round {round}: the restarted arbiter exited; {}",
        c.arbiter_log(k)
    );
}

/// Twenty handovers (ten by SIGKILL, ten by SIGSTOP of the leader, which
/// stops by itself once thawed): the other arbiter takes over each time, every
/// node is leased again, nobody is fenced, the epoch never goes back.
#[tokio::test(flavor = "multi_thread")]
async fn the_leader_killed_or_frozen_ten_times_each_hands_over_and_fences_nobody() {
    let _g = serial();
    let Some(mut rig) = Rig::start(None).await else {
        return;
    };
    for round in 0..20 {
        let leader = rig.leader;
        let t = Instant::now();
        if round % 2 == 0 {
            rig.c.kill_arbiter(leader);
        } else {
            // Frozen: its lease lapses while it cannot act.
            rig.c
                .signal_arbiter(leader, Signal::SIGSTOP)
                .expect("SIGSTOP");
        }
        rig.taken_over(round, t).await;
        if round % 2 == 1 {
            // Thawed, the deposed leader stops by itself (its etcd lease
            // lapsed): an error exit, no lease granted, no device touched.
            rig.c
                .signal_arbiter(leader, Signal::SIGCONT)
                .expect("SIGCONT");
            let until = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(st) = rig.c.arbiter_exited(leader) {
                    break st;
                }
                assert!(
                    Instant::now() < until,
                    "round {round}: the thawed, deposed leader did not stop"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            assert!(!status.success(), "round {round}: {status}");
        }
        rig.next_round(round).await;
    }
    rig.report("killed or frozen", "");
    for n in ALL {
        assert!(
            in_agent_log(&rig.c, n, RIDING) >= 20,
            "node {n} rode out fewer than twenty handovers: {}",
            rig.c.log(&format!("agent{n}"))
        );
    }
}

/// Group ids of the arbiters in the cut-off test (arbiter k: base + k).
const CUT_GID_BASE: u32 = 47_110;

/// Ten handovers by cutting the leader off the network: in a private
/// network namespace, the kernel drops every packet the leader sends and
/// every packet sent to it (its agents' sessions, its etcd connections),
/// while it runs on. The other arbiter takes over when the leader's etcd
/// lease lapses; no lease is lost, the group never stops, nobody is
/// fenced, the epoch never goes back. Healed, the deposed leader must not
/// lead again: it stops, or stands by; it comes back as a standby.
#[test]
fn the_leader_cut_off_ten_times_hands_over_and_fences_nobody() {
    let _g = serial();
    let ran = in_private_netns(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(cut_rounds(10))
    });
    if let Err(e) = ran {
        if in_ci() {
            panic!("the cut-off test must run under CI: {e}");
        }
        eprintln!("skipped: no private network namespace with nftables here: {e}");
    }
}

async fn cut_rounds(rounds: usize) {
    let Some(mut rig) = Rig::start(Some(CUT_GID_BASE)).await else {
        return;
    };
    let (mut exited, mut stood_by) = (0, 0);
    for round in 0..rounds {
        let leader = rig.leader;
        let cut = ProcessCut::new(
            CUT_GID_BASE + leader as u32,
            rig.c.arbiter_port(leader).expect("the leader's port"),
        );
        let t = Instant::now();
        cut.block().expect("cut the leader off");
        rig.taken_over(round, t).await;
        let stood = rig.c.arbiter_log(leader).matches(STOOD_BY).count();
        cut.heal().expect("heal");
        // Healed, the deposed leader leads nothing: it has stopped, or it
        // stops or stands by within 10 s; every node stays with the new
        // leader meanwhile.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = rig.c.arbiter_exited(leader) {
                assert!(!st.success(), "round {round}: {st}");
                exited += 1;
                break;
            }
            if rig.c.arbiter_log(leader).matches(STOOD_BY).count() > stood {
                rig.c.kill_arbiter(leader);
                stood_by += 1;
                break;
            }
            assert!(
                Instant::now() < until,
                "round {round}: the deposed leader neither stopped nor stood by once healed; {}",
                rig.c.arbiter_log(leader)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        rig.next_round(round).await;
    }
    rig.report(
        "cut off",
        &format!("; healed, the deposed leader stopped {exited} times, stood by {stood_by} times"),
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
    let scripts = tempfile::tempdir().expect("tempdir");
    let mut c = group(&etcd, scripts.path()).await;
    let before = leads(&mut c, 0, &[1, 2, 3], Duration::from_secs(5)).await;
    c.kill_arbiter(0);
    c.kill_agent(3).expect("kill agent 3");
    let after = leads(&mut c, 1, &[1, 2], Duration::from_secs(15)).await;
    node3_fenced_by(&c, "arbiter-1").await;
    assert_eq!(offs(&c, "node1") + offs(&c, "node2"), 0);
    assert!(after >= before);
}

/// A partition during the handover (node 3 cut off from its peers as the
/// leader dies): nobody can prove there is no split, so every node stops
/// at its next lease lapse; the new leader decides after its grace as
/// usual, fences node 3 (the side without quorum), and nodes 1 and 2 run
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_during_the_handover_stops_both_sides_and_the_new_leader_decides() {
    let _g = serial();
    let Some(etcd) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let scripts = tempfile::tempdir().expect("tempdir");
    let mut c = group(&etcd, scripts.path()).await;
    let before = leads(&mut c, 0, &[1, 2, 3], Duration::from_secs(5)).await;
    let running = web_running(scripts.path()).await.len();
    let lost: Vec<usize> = (1..=3).map(|n| in_agent_log(&c, n, LEASE_LOST)).collect();
    c.kill_arbiter(0);
    c.cut_from_peers(3).expect("cut node 3 from its peers");
    let after = leads(&mut c, 1, &[1, 2], Duration::from_secs(20)).await;
    node3_fenced_by(&c, "arbiter-1").await;
    assert_eq!(
        offs(&c, "node1") + offs(&c, "node2"),
        0,
        "only node 3 fenced"
    );
    for n in [1, 2] {
        assert!(
            in_agent_log(&c, n, LEASE_LOST) > lost[n as usize - 1],
            "node {n} rode through a partition: {}",
            c.log(&format!("agent{n}"))
        );
    }
    assert!(after >= before);
    // The group stopped with the lease and started again on node 1.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let w = web(scripts.path())[running..].to_vec();
        if w.first().map(String::as_str) == Some("stop")
            && w.last().map(String::as_str) == Some("start")
        {
            break;
        }
        assert!(Instant::now() < until, "{w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `fencectl --arbiter <url> <args>`: exit code, stdout, stderr.
fn fencectl_run(url: &str, args: &[&str]) -> (i32, String, String) {
    tests::e2e::fencectl_output(url, args).expect("run fencectl")
}

/// Wait until arbiter `k`'s log says it stands by under another leader
/// (the `count`th time).
async fn stands_by(c: &LocalCluster, k: usize, count: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while c.arbiter_log(k).matches(STOOD_BY).count() < count {
        assert!(
            Instant::now() < until,
            "arbiter {k} never stood by: {}",
            c.arbiter_log(k)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Over TLS to etcd (its member requires a client certificate): a standby
/// listens, refers fencectl to the leader (which fencectl follows), answers
/// status and history read-only from etcd when asked not to follow,
/// refuses a control without acting on it, and takes over when the leader
/// is killed; the old leader, back, refers to the new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_on_a_tls_etcd_refers_fencectl_to_the_leader_and_takes_over() {
    let _g = serial();
    let Some(etcd) = required("etcd", EtcdCluster::start_tls(1)) else {
        return;
    };
    let mut c = tests::etcd_bench::group(&etcd)
        .await
        .expect("a group on a TLS etcd");
    let all = [1, 2, 3];
    let (url0, url1) = (c.arbiter_url(0), c.arbiter_url(1));
    let epoch = leads(&mut c, 0, &all, Duration::from_secs(5)).await;
    stands_by(&c, 1, 1).await;

    // Followed: the leader's live status.
    let (code, out, err) = fencectl_run(&url1, &["status"]);
    assert_eq!(code, 0, "fencectl status via the standby: {out}{err}");
    assert!(
        err.contains("stands by; the leader is") && err.contains(&url0),
        "{err}"
    );
    assert!(out.contains("leads its group"), "{out}");

    // Not followed: the standby's own view, from etcd.
    let (code, out, err) = fencectl_run(&url1, &["--no-follow", "-o", "json", "status"]);
    assert_eq!(code, 3, "a standby's view is never 'healthy': {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON status");
    assert_eq!(v["role"], "standby", "{v}");
    assert_eq!(v["leader_url"], url0.as_str(), "{v}");
    assert_eq!(v["clusters"][0]["epoch"], epoch, "{v}");
    assert_eq!(
        v["clusters"][0]["survivors"],
        serde_json::json!([1, 2, 3]),
        "{v}"
    );
    let (code, out, err) = fencectl_run(&url1, &["--no-follow", "history"]);
    assert_eq!(code, 0, "history from the standby: {out}{err}");

    // A control sent to the standby is refused, and nothing happens.
    let (code, out, err) = fencectl_run(
        &url1,
        &[
            "--no-follow",
            "fence",
            "node2",
            "--cluster",
            "demo",
            "--yes",
        ],
    );
    assert_eq!(code, 69, "{out}{err}");
    assert!(err.contains("stands by"), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(offs(&c, "node2"), 0, "the standby fenced");

    // The leader killed: the standby takes over, over TLS to etcd.
    c.kill_arbiter(0);
    leads(&mut c, 1, &all, Duration::from_secs(15)).await;
    for n in all {
        assert_eq!(
            offs(&c, &format!("node{n}")),
            0,
            "node {n} fenced by the handover"
        );
    }
    // The old leader, back, stands by and refers to the new one.
    c.spawn_arbiter(0).expect("restart");
    stands_by(&c, 0, 1).await;
    let (code, out, err) = fencectl_run(&url0, &["nodes"]);
    assert_eq!(code, 0, "fencectl nodes via the old leader: {out}{err}");
    assert!(err.contains(&url1), "{err}");
    assert!(out.contains("node3"), "{out}");
}

/// Which arbiter leads now (the one that answers `status`; a standby
/// refers it), restarting any that exited (a leader that lost its etcd
/// lease stops, and comes back as a standby). 15 s at most.
async fn current_leader(c: &mut LocalCluster) -> usize {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        for k in 0..c.arbiter_count() {
            if c.arbiter_exited(k).is_some() || c.arbiter_k_pid(k).is_none() {
                c.spawn_arbiter(k).expect("restart an arbiter");
            }
        }
        for k in 0..c.arbiter_count() {
            if fencectl::commands::status::fetch_status(&c.arbiter_url(k), "")
                .await
                .is_ok()
            {
                return k;
            }
        }
        assert!(Instant::now() < until, "no arbiter leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// etcd loses a member ten times, and its raft leader ten times (each
/// killed with SIGKILL, then restarted), under two running arbiters and
/// three agents with a resource group: whichever arbiter leads after each
/// loss (the leader keeps its lease through a member's loss, or loses it
/// and the standby takes over) leases every node; no lease is lost, the
/// group never stops, nobody is fenced, the epoch never changes.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_losing_a_member_or_its_leader_ten_times_each_stops_nothing() {
    let _g = serial();
    let Some(mut etcd) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let scripts = tempfile::tempdir().expect("tempdir");
    let mut c = group(&etcd, scripts.path()).await;
    let all = [1, 2, 3];
    let epoch = leads(&mut c, 0, &all, Duration::from_secs(5)).await;
    let running = web_running(scripts.path()).await;
    let lost_before: Vec<usize> = all
        .iter()
        .map(|&n| in_agent_log(&c, n, LEASE_LOST))
        .collect();
    let mut handovers = 0;
    let mut leader = 0;
    for round in 0..20 {
        let raft_leader = etcd.leader().expect("etcd has a raft leader");
        let (victim, what) = if round % 2 == 0 {
            (raft_leader, "raft leader")
        } else {
            ((raft_leader + 1) % 3, "follower")
        };
        etcd.kill(victim);
        // An election (500 ms timeout) and the arbiter's retries.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        etcd.restart(victim).expect("restart the member");
        etcd.wait_healthy(Duration::from_secs(20))
            .expect("etcd healthy");
        let k = current_leader(&mut c).await;
        if k != leader {
            handovers += 1;
            leader = k;
        }
        let e = leads(&mut c, k, &all, Duration::from_secs(15)).await;
        for (i, &n) in all.iter().enumerate() {
            assert_eq!(
                in_agent_log(&c, n, LEASE_LOST),
                lost_before[i],
                "round {round} (etcd {what} killed): node {n} lost its lease; {}",
                c.log(&format!("agent{n}"))
            );
            assert_eq!(
                offs(&c, &format!("node{n}")),
                0,
                "round {round} (etcd {what} killed): node {n} fenced"
            );
        }
        assert_eq!(
            web(scripts.path()),
            running,
            "round {round} (etcd {what} killed): the group stopped or started again"
        );
        assert_eq!(
            e, epoch,
            "round {round} (etcd {what} killed): the epoch changed"
        );
    }
    eprintln!(
        "20 etcd member losses (10 of its raft leader): {handovers} arbiter handovers, nothing stopped"
    );
}
