//! End-to-end: the real binaries on loopback. Each test checks, through the
//! admin API and the power device's own record, that a fence was confirmed
//! before the survivors were told and that no quorate node was fenced.
//!
//! Needs `fence-arbiter`, `fence-agent` and `fencectl` built in the same
//! profile first (`scripts/test` does it). Tests run one at a time: they
//! measure sub-second failovers on a 2-core machine.

// Each test runs on its own runtime and thread; the std mutex held across
// awaits is the point: it serialises the clusters.
#![allow(clippy::await_holding_lock)]

use std::process::Command;
use std::time::Duration;

use fencectl::commands::status::{fetch_nodes, fetch_status};
use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use proto::v1 as pb;
use tests::e2e::{Watcher, binaries, json_log, unix_us};
use tests::peers::serial;

/// The fault happened; wait for node `n`'s fence to be announced and check
/// the order of things. Returns the announcement's epoch.
async fn assert_fenced_then_told(c: &LocalCluster, w: &mut Watcher, n: u32, fault_us: u64) -> u64 {
    let told = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "survivors_notified"
                && !e.nodes.contains(&n)
                && e.detail.contains(&n.to_string())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "node {n} was not fenced and announced within 10s; events {:?}; logs in {}",
                w.seen,
                c.dir().display()
            )
        });
    // The device's own record: node n switched off and seen off before the survivors were told.
    let record = c.device.events().expect("device record");
    let port = format!("node{n}");
    let off = record
        .iter()
        .find(|e| e.port == port && e.action == "off" && e.unix_us >= fault_us)
        .expect("device has an off for the node");
    let seen_off = record
        .iter()
        .find(|e| {
            e.port == port && e.action == "status" && e.result == "off" && e.unix_us >= off.unix_us
        })
        .expect("device status reported off");
    assert!(
        seen_off.unix_us <= told.unix_us,
        "survivors told at {} before the device saw node {n} off at {}",
        told.unix_us,
        seen_off.unix_us
    );
    // No quorate node fenced.
    for other in (1..=c.nodes).filter(|&o| o != n) {
        assert!(
            !record
                .iter()
                .any(|e| e.port == format!("node{other}") && e.action == "off"),
            "node {other} was fenced: {record:?}"
        );
    }
    // Through the admin API: status and history agree.
    let st = fetch_status(&c.url, "demo").await.expect("status");
    let cl = &st.clusters[0];
    assert!(cl.fenced.contains(&n), "{cl:?}");
    assert!(!cl.survivors.contains(&n), "{cl:?}");
    assert_eq!(cl.epoch, told.epoch);
    let mut admin = fencectl::client::connect(&c.url).await.expect("admin");
    let hist = admin
        .history(pb::HistoryRequest {
            cluster: "demo".into(),
            limit: 10,
        })
        .await
        .expect("history")
        .into_inner();
    let rec = hist
        .fences
        .iter()
        .find(|f| f.node_id == n && f.outcome == "confirmed")
        .expect("confirmed fence in history");
    assert!(
        rec.finished_unix_ms * 1000 <= told.unix_us + 999,
        "history finished after the announcement"
    );
    assert_eq!(rec.epoch, told.epoch);
    // The survivors themselves: their log shows the new epoch, after the off.
    // (An agent reconnecting at that moment learns it from its next ack:
    // allow it two seconds to say so.)
    for s in (1..=c.nodes).filter(|&o| o != n) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let got = loop {
            let log = json_log(&c.log(&format!("agent{s}")));
            let hit = log.into_iter().find(|(_, msg, f)| {
                msg.starts_with("new epoch: nodes confirmed fenced")
                    && f["lease.epoch"] == told.epoch
            });
            match hit {
                Some(h) => break h,
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                None => panic!("node {s} never logged epoch {}", told.epoch),
            }
        };
        assert!(
            got.0 + 1000 >= off.unix_us,
            "node {s} heard of the fence before the device switched node {n} off"
        );
    }
    told.epoch
}

async fn cluster(opts: ClusterOptions) -> (LocalCluster, Watcher, u64) {
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    let epoch = c
        .wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let w = Watcher::start(&c.url).await;
    (c, w, epoch)
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_agent_is_fenced_before_survivors_are_told() {
    let _g = serial();
    let (c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    let t = unix_us();
    c.freeze(3).unwrap();
    let e = assert_fenced_then_told(&c, &mut w, 3, t).await;
    assert_eq!(e, epoch + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_is_fenced() {
    let _g = serial();
    let (mut c, mut w, _) = cluster(ClusterOptions::default()).await;
    let t = unix_us();
    c.kill_agent(2).unwrap();
    assert_fenced_then_told(&c, &mut w, 2, t).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_off_agent_is_fenced() {
    let _g = serial();
    let (c, mut w, _) = cluster(ClusterOptions::default()).await;
    let t = unix_us();
    c.isolate(1).unwrap();
    assert_fenced_then_told(&c, &mut w, 1, t).await;
    // Node 1 held the lowest id, yet it was the one cut off: the others won.
    let nodes = fetch_nodes(&c.url, "demo").await.unwrap();
    assert!(
        nodes
            .iter()
            .filter(|n| n.node != 1)
            .all(|n| n.state == "member")
    );
}

/// The case keepalived gets wrong: only the traffic between the nodes is
/// lost; node 2 still heartbeats to the arbiter. Its peers stop reaching it,
/// the settled graph drops its edges, and it is fenced.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_from_its_peers_but_not_from_the_arbiter_is_fenced() {
    let _g = serial();
    let (c, mut w, _) = cluster(ClusterOptions::default()).await;
    let t = unix_us();
    c.cut_from_peers(2).unwrap();
    assert_fenced_then_told(&c, &mut w, 2, t).await;
    // It was never lost to the arbiter: the verdict came from reachability.
    assert!(
        !w.seen
            .iter()
            .any(|e| e.kind == "node_lost" && e.node == 2 && e.unix_us < t + 400_000),
        "{:?}",
        w.seen
    );
}

/// Two nodes that cannot reach each other tie on votes and priority; the
/// heuristics reported by the agents decide, before the lowest id would.
#[tokio::test(flavor = "multi_thread")]
async fn heuristics_decide_between_two_equal_halves() {
    let _g = serial();
    let mut opts = ClusterOptions {
        nodes: 2,
        ..ClusterOptions::default()
    };
    opts.agent_extra.insert(
        1,
        "[[heuristic]]\nname = \"gateway\"\ncommand = [\"/bin/false\"]\ninterval = \"200ms\"\n"
            .into(),
    );
    opts.agent_extra.insert(
        2,
        "[[heuristic]]\nname = \"gateway\"\ncommand = [\"/bin/true\"]\ninterval = \"200ms\"\n"
            .into(),
    );
    let (c, mut w, _) = cluster(opts).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = unix_us();
    c.cut_from_peers(1).unwrap();
    assert_fenced_then_told(&c, &mut w, 1, t).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_level_failing_falls_through_to_the_second() {
    let _g = serial();
    let opts = ClusterOptions {
        second_level: true,
        ..ClusterOptions::default()
    };
    let (c, mut w, _) = cluster(opts).await;
    std::fs::write(c.device.dir().join("fail-node3"), "").unwrap();
    let t = unix_us();
    c.freeze(3).unwrap();
    let told = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "survivors_notified" && e.detail.contains('3')
        })
        .await
        .expect("announced");
    assert!(
        w.seen
            .iter()
            .any(|e| e.kind == "fence_failed" && e.node == 3),
        "{:?}",
        w.seen
    );
    let backup = c.backup.as_ref().unwrap().events().unwrap();
    let off = backup
        .iter()
        .find(|e| e.port == "node3" && e.action == "off" && e.unix_us >= t)
        .expect("second level switched it off");
    assert!(off.unix_us <= told.unix_us);
    assert!(
        !c.device.events().unwrap().iter().any(|e| e.action == "off"),
        "the failing first level reported no off"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn arbiter_restart_while_a_node_is_down_keeps_the_epoch_and_fences_it() {
    let _g = serial();
    let (mut c, _w, epoch) = cluster(ClusterOptions::default()).await;
    c.stop_arbiter();
    c.kill_agent(3).unwrap();
    let restart = unix_us();
    c.start_arbiter().await.unwrap();
    let mut w = Watcher::start(&c.url).await;
    let st = fetch_status(&c.url, "demo").await.unwrap();
    assert_eq!(st.clusters[0].epoch, epoch, "epoch survives the restart");
    assert_eq!(st.clusters[0].survivors, vec![1, 2, 3]);
    let told = assert_fenced_then_told(&c, &mut w, 3, restart).await;
    assert_eq!(told, epoch + 1);
    // Start-up grace: no lease granted by the new arbiter before every old
    // lease (300 ms + margin) had expired.
    let grace = w
        .wait_for(Duration::from_secs(1), |e| e.kind == "grace_over")
        .await
        .expect("grace_over event");
    assert!(
        grace.unix_us >= restart + 300_000,
        "grace ended {} us after restart",
        grace.unix_us - restart
    );
    let e2 = c.wait_all_leased_among(&[1, 2]).await;
    assert_eq!(e2, told);
    // The survivors' leases ran out while the arbiter was away (grace >
    // lease), and came back only after the grace ended.
    for s in [1, 2] {
        let log = json_log(&c.log(&format!("agent{s}")));
        let lost = log
            .iter()
            .find(|(t, m, _)| *t + 400_000 >= restart && m.starts_with("lease lost"))
            .unwrap_or_else(|| panic!("node {s} never lost its lease around the restart"));
        let (t, _, _) = log
            .iter()
            .find(|(t, m, _)| *t >= lost.0 && m.starts_with("lease acquired"))
            .unwrap_or_else(|| panic!("node {s} never got a lease from the new arbiter"));
        assert!(
            *t >= grace.unix_us,
            "node {s} got a lease before the grace ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_cluster_unknown_node_and_bad_reports_are_refused_without_state_change() {
    let _g = serial();
    let (c, _w, epoch) = cluster(ClusterOptions::default()).await;
    let before = fetch_nodes(&c.url, "demo").await.unwrap();
    let ch = tonic::transport::Endpoint::from_shared(c.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::agent_session_client::AgentSessionClient::new(ch);
    let hello = |cluster: &str, node: u32, addr: &str| pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            cluster: cluster.into(),
            node_id: node,
            probe_address: addr.into(),
            config_fingerprint: String::new(),
            known_epoch: 0,
            instance: 1,
            boot_id: String::new(),
            watchdog_timeout_ms: 0,
        })),
    };
    assert_eq!(before.len(), 3);
    let r = client
        .session(tokio_stream::iter(vec![hello("nope", 1, "x")]))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
    let r = client
        .session(tokio_stream::iter(vec![hello("demo", 9, "127.0.0.1:1")]))
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        e.message().contains("node 9 is not a member"),
        "{}",
        e.message()
    );
    let r = client
        .session(tokio_stream::iter(vec![hello("demo", 1, "127.0.0.1:1")]))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::FailedPrecondition);
    // A boot id that is not one, from the right address.
    let agent1 = std::fs::read_to_string(c.dir().join("agent1.toml")).unwrap();
    let listen = agent1
        .lines()
        .find_map(|l| l.strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"');
    let mut bad_boot = hello("demo", 1, listen);
    if let Some(pb::agent_message::Body::Hello(h)) = &mut bad_boot.body {
        h.boot_id = "not-a-boot-id".into();
    }
    let e = client
        .session(tokio_stream::iter(vec![bad_boot]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("Hello.boot_id"), "{}", e.message());
    // A heartbeat first, without Hello.
    let hb = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat::default())),
    };
    let r = client.session(tokio_stream::iter(vec![hb])).await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = fetch_nodes(&c.url, "demo").await.unwrap();
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|n| n.state == "member" && n.lease));
    assert_eq!(
        fetch_status(&c.url, "demo").await.unwrap().clusters[0].epoch,
        epoch
    );
    assert!(c.device.events().unwrap().iter().all(|e| e.action != "off"));
}

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binaries().join(bin))
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn bad_configs_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"
[arbiter]
state_dir = "/tmp/never-used"
insecure_plaintext = true
[[cluster]]
name = "c"
[[cluster.device]]
name = "p"
driver = "sim"
dir = "/tmp/never-used-sim"
[[cluster.node]]
id = 1
address = "127.0.0.1:7501"
fence = [["p"]]
[[cluster.node]]
id = 2
address = "127.0.0.1:7502"
fence = [["p"]]
"#;
    let cases_base = [
        (
            good.replace("name = \"c\"", "name = \"c\"\nleese = \"1s\""),
            "leese",
        ),
        (
            good.replace("id = 2", "id = 1"),
            "cluster.c.node[1].id: duplicate node id 1",
        ),
        (
            good.replace("fence = [[\"p\"]]\n[[cluster.node]]", "[[cluster.node]]"),
            "cluster.c.node[0].fence: node 1 has no fence device",
        ),
        (
            good.replace("name = \"c\"", "name = \"c\"\nlease = \"500ms\""),
            "cluster.c.lease:",
        ),
    ];
    let exec_cases = [
        (
            good.replace(
                "driver = \"sim\"\ndir = \"/tmp/never-used-sim\"",
                "driver = \"exec\"\nagent = \"fence_dummy\"\npassword = \"hunter2\"",
            ),
            "cluster.c.device[0].password: a secret never goes in the config",
        ),
        (
            good.replace(
                "driver = \"sim\"\ndir = \"/tmp/never-used-sim\"",
                "driver = \"exec\"\nagent = \"fence_nope\"",
            ),
            "cluster.c.device[0].agent:",
        ),
    ];
    let p = dir.path().join("good.toml");
    std::fs::write(&p, good).unwrap();
    let (code, out, err) = run(
        "fence-arbiter",
        &["--config", p.to_str().unwrap(), "--check-config"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let cases: Vec<(String, &str)> = cases_base.into_iter().chain(exec_cases).collect();
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let (code, _, err) = run("fence-arbiter", &["--config", p.to_str().unwrap()]);
        assert_eq!(code, 64, "case {i}: {err}");
        assert!(err.contains(want), "case {i}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"));
    }
    let p = dir.path().join("agent.toml");
    std::fs::write(&p, "cluster = \"c\"\nnode = 0\narbiter = \"127.0.0.1:7400\"\nlisten = \"nowhere\"\ninsecure_plaintext = true\n").unwrap();
    let (code, _, err) = run("fence-agent", &["--config", p.to_str().unwrap()]);
    assert_eq!(code, 64);
    for want in ["node: node ids start at 1", "arbiter:", "listen:"] {
        assert!(err.contains(want), "expected {want:?} in {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fencectl_exit_codes_and_json_output() {
    let _g = serial();
    // Nothing listens on this port: 69, with advice.
    let port = tests::e2e::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, err) = run("fencectl", &["--arbiter", &url, "status"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("Is fence-arbiter running?"), "{err}");
    let (c, _w, _) = cluster(ClusterOptions::default()).await;
    let (code, out, err) = run(
        "fencectl",
        &["--arbiter", &c.url, "status", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clusters"][0]["survivors"], serde_json::json!([1, 2, 3]));
    assert_eq!(v["healthy"], true);
    let (code, out, _) = run("fencectl", &["--arbiter", &c.url, "nodes", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // watch -o json: one JSON object per line, as events happen.
    let mut watch = Command::new(binaries().join("fencectl"))
        .args(["--arbiter", &c.url, "watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("survivors_notified"))
            .map(|l| serde_json::from_str::<serde_json::Value>(&l).expect("a JSON line"))
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.freeze(3).unwrap();
    let lines = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(
        watch.wait().unwrap().code(),
        Some(0),
        "watch exits 0 on Ctrl-C"
    );
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["kind"].as_str()).collect();
    for want in [
        "node_lost",
        "decision",
        "fence_intent",
        "fence_off_sent",
        "fence_confirmed",
    ] {
        assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
    }
    assert!(
        lines
            .iter()
            .all(|v| v["unix_us"].as_u64().is_some() && v["cluster"] == "demo")
    );
    let (code, _, err) = run(
        "fencectl",
        &["--arbiter", &c.url, "status", "--cluster", "nope"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    // Degraded (exit 3) while a fence cannot complete: the device refuses.
    std::fs::write(c.device.dir().join("fail-node2"), "").unwrap();
    c.freeze(2).unwrap();
    let mut degraded = false;
    for _ in 0..100 {
        let (code, out, _) = run("fencectl", &["--arbiter", &c.url, "status"]);
        if code == 3 {
            assert!(out.contains("fencing"), "{out}");
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(degraded, "status never reported the stuck fence");
    std::fs::remove_file(c.device.dir().join("fail-node2")).unwrap();
    for _ in 0..200 {
        if fetch_status(&c.url, "demo").await.unwrap().clusters[0]
            .fenced
            .contains(&2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (code, _, _) = run("fencectl", &["--arbiter", &c.url, "status"]);
    assert_eq!(code, 0, "healthy again once node 2 is fenced");
}

/// Mutual TLS: agents and fencectl authenticate with certificates from the
/// cluster's CA; a node's identity comes from its certificate.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_cluster_fences_and_refuses_impostors() {
    let _g = serial();
    let opts = ClusterOptions {
        tls: true,
        ..ClusterOptions::default()
    };
    let (c, mut w, _) = cluster(opts).await;
    assert!(c.url.starts_with("https://"));
    let certs = c.dir().join("certs");
    // Node 2's certificate claiming to be node 1: refused.
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")))
        .identity(tonic::transport::Identity::from_pem(
            read("node2.demo.pem"),
            read("node2.demo.key"),
        ))
        .domain_name("arbiter");
    let ch = tonic::transport::Endpoint::from_shared(c.url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::agent_session_client::AgentSessionClient::new(ch);
    let nodes = fetch_nodes(&c.url, "demo").await.unwrap();
    assert_eq!(nodes.len(), 3);
    let addr1 = {
        let text = std::fs::read_to_string(c.dir().join("agent1.toml")).unwrap();
        text.lines()
            .find(|l| l.starts_with("listen"))
            .unwrap()
            .split('"')
            .nth(1)
            .unwrap()
            .to_string()
    };
    let hello = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            cluster: "demo".into(),
            node_id: 1,
            probe_address: addr1,
            config_fingerprint: String::new(),
            known_epoch: 0,
            instance: 1,
            boot_id: String::new(),
            watchdog_timeout_ms: 0,
        })),
    };
    let e = client
        .session(tokio_stream::iter(vec![hello]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());
    assert!(e.message().contains("node1.demo"), "{}", e.message());
    // fencectl: no certificate, a reader's, plain HTTP against TLS.
    let (code, _, err) = run("fencectl", &["--arbiter", &c.url, "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ca"), "{err}");
    let p = |f: &str| certs.join(f).display().to_string();
    let (code, out, err) = run(
        "fencectl",
        &[
            "--arbiter",
            &c.url,
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("reader.pem"),
            "--key",
            &p("reader.key"),
            "status",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let plain = c.url.replace("https://", "http://");
    let (code, _, _) = run("fencectl", &["--arbiter", &plain, "status"]);
    assert_ne!(code, 0);
    // And the cluster still does its job over TLS.
    let t = unix_us();
    c.freeze(3).unwrap();
    assert_fenced_then_told(&c, &mut w, 3, t).await;
    let (code, out, err) = run(
        "fencectl",
        &[
            "--arbiter",
            &c.url,
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("admin.pem"),
            "--key",
            &p("admin.key"),
            "history",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["fences"][0]["node"], 3);
    assert_eq!(h["fences"][0]["outcome"], "confirmed");
}

/// The `exec` driver in the arbiter: node 3 is fenced by the ClusterLabs
/// `fence_dummy` agent (its "power" is a status file), confirmed by the
/// agent's own `status`, before the survivors are told.
#[tokio::test(flavor = "multi_thread")]
async fn exec_driver_fences_through_a_clusterlabs_agent() {
    let _g = serial();
    if fence_drivers::exec::resolve_agent("fence_dummy").is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "fence_dummy missing under CI: install fence-agents"
        );
        eprintln!("skipped: fence_dummy not installed (install fence-agents)");
        return;
    }
    let opts = ClusterOptions {
        exec_dummy: true,
        ..ClusterOptions::default()
    };
    let (c, mut w, _) = cluster(opts).await;
    let status = c.dir().join("dummy.status");
    std::fs::write(&status, "on").unwrap();
    c.freeze(3).unwrap();
    let told = w
        .wait_for(Duration::from_secs(20), |e| {
            e.kind == "survivors_notified" && e.detail.contains('3')
        })
        .await
        .unwrap_or_else(|| panic!("not announced: {:?}", w.seen));
    let off = w
        .seen
        .iter()
        .find(|e| e.kind == "fence_status_off" && e.node == 3)
        .expect("status confirmed off");
    assert!(off.unix_us <= told.unix_us);
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "off");
    let written = std::fs::metadata(&status).unwrap().modified().unwrap();
    let written_us = written
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        written_us <= told.unix_us,
        "the agent switched it off after the survivors were told"
    );
}

/// `fencectl driver` against an arbiter config, without an arbiter.
#[test]
fn fencectl_driver_commands_validate_and_test_real_devices() {
    if fence_drivers::exec::resolve_agent("fence_dummy").is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "fence_dummy missing under CI"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("dummy.status"), "on").unwrap();
    let config = format!(
        "[arbiter]\nstate_dir = \"{d}/state\"\ninsecure_plaintext = true\n[[cluster]]\nname = \"c\"\n\
         [[cluster.device]]\nname = \"dummy\"\ndriver = \"exec\"\nagent = \"fence_dummy\"\nstatus_file = \"{d}/dummy.status\"\n\
         [[cluster.device]]\nname = \"p\"\ndriver = \"sim\"\ndir = \"{d}/p\"\n\
         [[cluster.node]]\nid = 1\naddress = \"127.0.0.1:7501\"\nfence = [[\"dummy:\"]]\n\
         [[cluster.node]]\nid = 2\naddress = \"127.0.0.1:7502\"\nfence = [[\"p\"]]\n"
    );
    let path = dir.path().join("arbiter.toml");
    std::fs::write(&path, &config).unwrap();
    let cfg = path.to_str().unwrap();
    let (code, out, err) = run("fencectl", &["driver", "validate", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 device(s) valid"), "{out}");
    let (code, out, err) = run(
        "fencectl",
        &["driver", "test", "1", "--config", cfg, "-o", "json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "on");
    let (code, _, err) = run(
        "fencectl",
        &["driver", "test", "1", "--config", cfg, "--action", "off"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = run(
        "fencectl",
        &[
            "driver", "test", "1", "--config", cfg, "--action", "off", "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dummy.status"))
            .unwrap()
            .trim(),
        "off"
    );
    // A port the device does not have: a clear failure, exit 1.
    let (code, out, _) = run("fencectl", &["driver", "test", "2", "--config", cfg]);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED") && out.contains("no port"), "{out}");
    // A parameter the agent does not take: named.
    std::fs::write(&path, config.replace("status_file", "statusfile")).unwrap();
    let (code, _, err) = run("fencectl", &["driver", "validate", "--config", cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("statusfile"), "{err}");
    let (code, out, _) = run(
        "fencectl",
        &["driver", "metadata", "fence_dummy", "-o", "json"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "status_file")
    );
}

/// Finding 6 of issue 8: a fence device that reports a node off while it
/// runs on (a miswired outlet). The node speaking again is a critical alert
/// shown by `fencectl status` and `nodes`; it gets no lease, and the
/// survivors are never told it is gone (the transition waits for the
/// fenced node's lease to end, and by then the alert holds it). Once the
/// wiring is fixed and an operator clears the alert, it is fenced for real.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_alive_after_its_confirmed_fence_is_an_alert_until_cleared() {
    let _g = serial();
    let (c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    let lie = c.device.dir().join("lie-node2");
    std::fs::write(&lie, "").unwrap();
    c.cut_from_peers(2).unwrap();
    // The device "confirms" node 2 off; node 2 lives on and speaks again.
    let alert = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "alert" && e.node == 2 && e.detail.contains("alive after off")
        })
        .await;
    assert!(alert.is_some(), "no alert: {:?}", w.seen);
    let status = fetch_status(&c.url, "demo").await.unwrap();
    assert!(!status.healthy);
    assert!(
        status.clusters[0]
            .alerts
            .iter()
            .any(|a| a.contains("node 2")),
        "{status:?}"
    );
    // Its last lease (granted before the fence) runs out; no new one comes,
    // and nobody is told node 2 is gone.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let nodes = fetch_nodes(&c.url, "demo").await.unwrap();
        let n2 = nodes.iter().find(|n| n.node == 2).unwrap();
        assert!(n2.alert.is_some(), "{n2:?}");
        if !n2.lease {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{n2:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = fetch_status(&c.url, "demo").await.unwrap();
    assert_eq!(
        status.clusters[0].epoch, epoch,
        "survivors told of a fence that did not happen"
    );
    let nodes = fetch_nodes(&c.url, "demo").await.unwrap();
    assert!(!nodes.iter().find(|n| n.node == 2).unwrap().lease);
    // Clearing needs --yes; the wiring fixed, it works and node 2 is fenced
    // for real this time.
    let (code, _, err) = run(
        "fencectl",
        &["--arbiter", &c.url, "clear", "2", "--cluster", "demo"],
    );
    assert_eq!(code, 2, "{err}");
    std::fs::remove_file(&lie).unwrap();
    let t = unix_us();
    let (code, out, err) = run(
        "fencectl",
        &[
            "--arbiter",
            &c.url,
            "clear",
            "2",
            "--cluster",
            "demo",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let e = assert_fenced_then_told(&c, &mut w, 2, t).await;
    assert_eq!(e, epoch + 1);
    let status = fetch_status(&c.url, "demo").await.unwrap();
    assert!(status.clusters[0].alerts.is_empty(), "{status:?}");
}

/// The agent of a node whose fence a lying device "confirmed" restarts on
/// the machine that never went down: a new process, the same kernel boot
/// id. It is alive after off (an alert, no lease), not a reboot. A real
/// power-on (a new boot id, as `start_agent` gives) rejoins, as the other
/// tests show.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_on_a_machine_recorded_off_is_caught_by_its_boot_id() {
    let _g = serial();
    let (mut c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    std::fs::write(c.device.dir().join("lie-node2"), "").unwrap();
    c.freeze(2).unwrap();
    // Survivors are told node 2 is gone (the device said so); it is not.
    let told = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "survivors_notified" && !e.nodes.contains(&2)
        })
        .await;
    assert!(told.is_some(), "{:?}", w.seen);
    // Its agent is killed and started again in the same boot: a new
    // process instance, which alone would look like a reboot.
    // (systemd restarts it after `RestartSec`; a Hello within a heartbeat
    // interval of the confirmation could have been in flight.)
    c.kill_agent(2).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.restart_agent(2).unwrap();
    let alert = w
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "alert" && e.node == 2 && e.detail.contains("same boot")
        })
        .await;
    assert!(alert.is_some(), "no alert: {:?}", w.seen);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nodes = fetch_nodes(&c.url, "demo").await.unwrap();
    let n2 = nodes.iter().find(|n| n.node == 2).unwrap();
    assert!(n2.alert.is_some() && !n2.lease, "{n2:?}");
    let status = fetch_status(&c.url, "demo").await.unwrap();
    assert_eq!(status.clusters[0].epoch, epoch + 1, "{status:?}");
    assert!(!status.healthy);
}

/// Finding 3 of issue 8: a node removed from the configuration while it is
/// in the stored survivor set, with an open fence intent, made the cluster
/// task panic at every start. Now the arbiter starts, says what changed,
/// reports the intent it can no longer carry out, and serves the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_removed_from_the_configuration_across_a_restart_is_reported_not_a_panic() {
    let _g = serial();
    let (mut c, mut w, _) = cluster(ClusterOptions::default()).await;
    // Node 3 hangs and its device hangs: its fence intent stays open.
    std::fs::write(c.device.dir().join("hang"), "").unwrap();
    c.freeze(3).unwrap();
    let intent = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_intent" && e.node == 3
        })
        .await;
    assert!(intent.is_some(), "{:?}", w.seen);
    c.stop_arbiter();
    c.kill_agent(3).unwrap();
    std::fs::remove_file(c.device.dir().join("hang")).unwrap();
    let path = c.dir().join("arbiter.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let start = toml
        .find("[[cluster.node]]\nid = 3\n")
        .expect("node 3 in the config");
    let end = toml[start + 1..]
        .find("\n[[")
        .map_or(toml.len(), |e| start + 2 + e);
    std::fs::write(&path, format!("{}{}", &toml[..start], &toml[end..])).unwrap();
    c.start_arbiter().await.unwrap();
    let st = fetch_status(&c.url, "demo").await.unwrap();
    assert!(
        st.clusters[0]
            .alerts
            .iter()
            .any(|a| a.contains("node 3") && a.contains("no longer configured")),
        "{st:?}"
    );
    let log = c.log("arbiter");
    assert!(
        log.contains("configuration changed since the state was stored"),
        "{log}"
    );
    assert!(log.contains("no longer configured"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The rest of the cluster runs on.
    assert!(
        c.wait_all_leased_among(&[1, 2]).await > 0,
        "nodes 1 and 2 hold no lease"
    );
}

/// The arbiter itself stalls (SIGSTOP for 2 s, then SIGCONT): the silence
/// it did not hear is no evidence against anyone. Nobody is fenced and the
/// cluster is whole again within a second.
#[tokio::test(flavor = "multi_thread")]
async fn an_arbiter_stall_fences_nobody() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _g = serial();
    let (c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    let pid = Pid::from_raw(c.arbiter_pid().expect("arbiter runs") as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(pid, Signal::SIGCONT).unwrap();
    let resumed = tokio::time::Instant::now();
    let e = c.wait_all_leased_among(&[1, 2, 3]).await;
    let whole = resumed.elapsed();
    assert_eq!(e, epoch, "the epoch moved: a fence happened");
    assert!(
        whole < Duration::from_secs(1),
        "whole again only after {whole:?}"
    );
    let fenced = w
        .wait_for(Duration::from_millis(500), |e| e.kind == "fence_intent")
        .await;
    assert!(fenced.is_none(), "{fenced:?}");
    assert!(w.seen.iter().any(|e| e.kind == "stalled"), "{:?}", w.seen);
}

/// The arbiter's store is lost (its file deleted) across a restart: the
/// agents report the epoch they hold and the arbiter persists a higher one
/// before granting anything; the fencing token never goes back. It says
/// loudly that it started without its history.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_store_never_sends_the_epoch_back() {
    let _g = serial();
    let (mut c, mut w, _) = cluster(ClusterOptions::default()).await;
    // Move the epoch on: node 3 is fenced, then rejoins (epoch 3).
    c.freeze(3).unwrap();
    let t = unix_us();
    let before = assert_fenced_then_told(&c, &mut w, 3, t).await;
    c.stop_arbiter();
    std::fs::remove_file(c.dir().join("state").join("arbiter.redb")).unwrap();
    c.start_arbiter().await.unwrap();
    let after = c.wait_all_leased_among(&[1, 2]).await;
    assert!(
        after > before,
        "epoch {after} after a lost store, {before} before"
    );
    let log = c.log("arbiter");
    assert!(log.contains("started without its history"), "{log}");
}

/// Heuristics that flap (a gateway check failing every other 200 ms) on a
/// healthy node fence nobody: a heuristic only breaks ties between sides
/// of a split. A node cut off from its peers meanwhile is the only one
/// fenced, by votes, whatever the flapping score says.
#[tokio::test(flavor = "multi_thread")]
async fn flapping_heuristics_fence_nobody_and_a_cut_node_alone_is_fenced() {
    let _g = serial();
    let mut opts = ClusterOptions::default();
    opts.agent_extra.insert(
        2,
        "[[heuristic]]\nname = \"gateway\"\ncommand = [\"/bin/sh\", \"-c\", \"test $(( $(date +%s%N) / 200000000 % 2 )) -eq 0\"]\ninterval = \"100ms\"\n"
            .into(),
    );
    let (c, mut w, epoch) = cluster(opts).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fenced = w
        .wait_for(Duration::from_millis(100), |e| e.kind == "fence_intent")
        .await;
    assert!(fenced.is_none(), "flapping heuristics fenced: {fenced:?}");
    assert_eq!(c.wait_all_leased_among(&[1, 2, 3]).await, epoch);
    // The flapping really happened: node 2's agent logged both results.
    let log = c.log("agent2");
    assert!(
        log.matches("heuristic passes").count() >= 2 && log.matches("heuristic fails").count() >= 2,
        "node 2's heuristic did not flap: {log}"
    );
    let t = unix_us();
    c.cut_from_peers(3).unwrap();
    assert_fenced_then_told(&c, &mut w, 3, t).await;
}

/// Sixteen nodes; five frozen at once, with `storm_limit = 3`: the arbiter
/// holds and alerts instead of fencing five nodes at a stroke (a switch
/// failure looks like that), the eleven others keep their leases. Once
/// the five are back, the cluster is whole with nobody fenced.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_five_in_sixteen_is_held_not_fenced() {
    let _g = serial();
    let opts = ClusterOptions {
        nodes: 16,
        cluster_extra: "storm_limit = 3\n".into(),
        ..ClusterOptions::default()
    };
    let (c, mut w, epoch) = cluster(opts).await;
    let frozen = [12, 13, 14, 15, 16];
    for &n in &frozen {
        c.freeze(n).unwrap();
    }
    let storm = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "alert" && e.detail.contains("storm")
        })
        .await;
    assert!(storm.is_some(), "no storm alert: {:?}", w.seen);
    let survivors: Vec<u32> = (1..=11).collect();
    assert_eq!(c.wait_all_leased_among(&survivors).await, epoch);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !w.seen.iter().any(|e| e.kind == "fence_intent"),
        "a node was fenced in the storm: {:?}",
        w.seen
    );
    let record = c.device.events().expect("device record");
    assert!(
        !record.iter().any(|e| e.action == "off"),
        "the device switched something off: {record:?}"
    );
    for &n in &frozen {
        c.thaw(n).unwrap();
    }
    let all: Vec<u32> = (1..=16).collect();
    assert_eq!(c.wait_all_leased_among(&all).await, epoch);
}

/// A device that switches the node off and then answers "error": the
/// arbiter never takes an error for "off" (for some drivers nothing tells
/// the request even arrived), so the survivors are not told while the
/// device errs; the fence is retried, and once the device answers properly
/// it is confirmed once, with one new epoch, and nobody else is touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_errs_after_switching_off_is_not_taken_at_its_word() {
    let _g = serial();
    let (c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    let fault = c.device.dir().join("fail-after-off-node3");
    std::fs::write(&fault, "").unwrap();
    let t = unix_us();
    c.freeze(3).unwrap();
    let failed = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_failed" && e.node == 3 && e.detail.contains("after switching off")
        })
        .await;
    assert!(failed.is_some(), "{:?}", w.seen);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !w.seen.iter().any(|e| e.kind == "survivors_notified"),
        "survivors told on an error: {:?}",
        w.seen
    );
    std::fs::remove_file(&fault).unwrap();
    let e = assert_fenced_then_told(&c, &mut w, 3, t).await;
    assert_eq!(e, epoch + 1);
    let told = w
        .seen
        .iter()
        .filter(|e| e.kind == "survivors_notified")
        .count();
    assert_eq!(told, 1, "{:?}", w.seen);
}

/// The lease intervals `(from, to)` in unix µs that an agent's JSON log
/// shows (a lease still held at the end runs to `end`).
fn lease_intervals(log: &str, end: u64) -> Vec<(u64, u64)> {
    let mut held: Option<u64> = None;
    let mut out = Vec::new();
    for (t, msg, _) in json_log(log) {
        if msg.starts_with("lease acquired") {
            held.get_or_insert(t);
        } else if msg.starts_with("lease lost")
            && let Some(from) = held.take()
        {
            out.push((from, t));
        }
    }
    out.extend(held.map(|from| (from, end)));
    out
}

/// A duplicate identity: a second machine configured as node 2 (a copied
/// configuration, a cloned VM), with its own address and boot, starts
/// beside node 2 and keeps trying for 3 s. The arbiter refuses it, naming
/// the address it gave and the one configured: node 2's session and lease
/// run on unbroken, nobody is fenced, the duplicate never holds a lease.
/// (One on node 2's very address, which loopback cannot host twice, is
/// covered by the simulation's duplicate identities and the core's
/// `a_second_instance_of_a_node_waits_out_the_first_ones_lease`: the newer
/// session replaces the older, and gets no lease while the older may
/// still hold one.)
#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_identity_from_another_address_is_refused_and_fences_nobody() {
    let _g = serial();
    let (mut c, mut w, epoch) = cluster(ClusterOptions::default()).await;
    let started = unix_us();
    c.start_duplicate_agent(2).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.kill_duplicate_agent(2).unwrap();
    let end = unix_us();
    assert_eq!(c.wait_all_leased_among(&[1, 2, 3]).await, epoch);
    let fenced = w
        .wait_for(Duration::from_millis(300), |e| e.kind == "fence_intent")
        .await;
    assert!(fenced.is_none(), "{fenced:?}");
    let refused = json_log(&c.log("arbiter")).into_iter().any(|(t, m, f)| {
        t >= started
            && m == "session refused"
            && f["node.id"] == 2
            && f["error"].as_str().is_some_and(|e| {
                e.contains("node 2 says it serves probes on")
                    && e.contains("cluster.demo.node.address")
            })
    });
    assert!(
        refused,
        "the duplicate was not refused: {}",
        c.log("arbiter")
    );
    let dup = c.log("agent2-dup");
    assert!(dup.contains("the arbiter refused this agent"), "{dup}");
    assert!(
        lease_intervals(&dup, end).is_empty(),
        "the duplicate held a lease: {dup}"
    );
    // Node 2's own agent held one lease from before the duplicate until
    // after it: never lost.
    let own = lease_intervals(&c.log("agent2"), unix_us());
    assert!(
        own.iter().any(|&(from, to)| from < started && to >= end),
        "node 2's lease broke while the duplicate ran: {own:?}"
    );
}

/// Store write errors: the running arbiter's state file may no longer be
/// written past its first 4 KiB (its file size limit lowered with
/// `prlimit`, as a full disk or a quota would refuse the write). Node 3
/// freezes; the arbiter's first write after that (the fence intent) fails:
/// it says so and stops with exit status 70 before acting on it — no
/// fence without its intent stored, no announcement. Restarted with room,
/// it waits out its grace, fences node 3 and tells the survivors.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_write_error_stops_the_arbiter_before_it_acts() {
    let _g = serial();
    let (mut c, w, epoch) = cluster(ClusterOptions::default()).await;
    let pid = c.arbiter_pid().expect("arbiter runs");
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg("--fsize=4096:4096")
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    let t = unix_us();
    c.freeze(3).unwrap();
    let mut status = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(st) = c.arbiter_exit_status() {
            status = Some(st);
            break;
        }
    }
    let log = c.log("arbiter");
    assert_eq!(status.and_then(|s| s.code()), Some(70), "{log}");
    assert!(
        log.contains("cannot persist; stopping the arbiter"),
        "{log}"
    );
    assert!(
        !c.device.events().unwrap().iter().any(|e| e.action == "off"),
        "a fence ran though its intent was not stored"
    );
    assert!(
        !w.seen.iter().any(|e| e.kind == "survivors_notified"),
        "{:?}",
        w.seen
    );
    // Room again: the restarted arbiter fences node 3 (announced after the
    // device confirmed it off).
    c.start_arbiter().await.unwrap();
    let mut w = Watcher::start(&c.url).await;
    let after = assert_fenced_then_told(&c, &mut w, 3, t).await;
    assert!(after > epoch, "epoch {after} after, {epoch} before");
}

/// A default cluster whose arbiter runs with the `LD_PRELOAD` shim
/// `tests/peers/<name>.c`, built into `dir`, and `env`; `None` (the test
/// skips; under CI it fails) without a C compiler.
async fn cluster_with_shim(
    dir: &std::path::Path,
    name: &str,
    env: &[(&str, String)],
) -> Option<(LocalCluster, Watcher, u64)> {
    let shim = tests::peers::required(
        &format!("C compiler ({name} shim)"),
        tests::peers::shim(dir, name),
    )?;
    let mut arbiter_env = vec![("LD_PRELOAD".to_string(), shim.display().to_string())];
    arbiter_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Some(
        cluster(ClusterOptions {
            arbiter_env,
            ..ClusterOptions::default()
        })
        .await,
    )
}

/// Slow fsyncs: the arbiter's store flushes take 2 s each (an `LD_PRELOAD`
/// shim on the real `fence-arbiter`, switched on by a file), and a store
/// write comes due (node 2's agent restarts: a new agent is recorded).
/// The cluster task waits on the flush, so the arbiter runs nothing for
/// 2 s: a stall. What it did not hear meanwhile is no evidence: nobody is
/// fenced, and once flushes are fast again the cluster is whole.
#[tokio::test(flavor = "multi_thread")]
async fn slow_fsyncs_stall_the_arbiter_and_fence_nobody() {
    let _g = serial();
    let shim_dir = tempfile::tempdir().unwrap();
    let flag = shim_dir.path().join("slow");
    let Some((mut c, mut w, epoch)) = cluster_with_shim(
        shim_dir.path(),
        "slow_fsync",
        &[
            ("SLOW_FSYNC_FILE", flag.display().to_string()),
            ("SLOW_FSYNC_MS", "2000".into()),
        ],
    )
    .await
    else {
        return;
    };
    std::fs::write(&flag, "").unwrap();
    c.kill_agent(2).unwrap();
    c.restart_agent(2).unwrap();
    // The write of the new agent waits 2 s on its flush.
    let stalled = w
        .wait_for(Duration::from_secs(8), |e| e.kind == "stalled")
        .await;
    let gap = stalled
        .as_ref()
        .and_then(|e| e.detail.strip_suffix('s'))
        .filter(|d| !d.ends_with('m') && !d.ends_with('µ'))
        .and_then(|d| d.parse::<f64>().ok());
    assert!(
        gap.is_some_and(|g| g >= 1.5),
        "no 2 s stall seen ({stalled:?}): {:?}",
        w.seen
    );
    std::fs::remove_file(&flag).unwrap();
    let fast = tokio::time::Instant::now();
    assert_eq!(c.wait_all_leased_among(&[1, 2, 3]).await, epoch);
    let whole = fast.elapsed();
    let fenced = w
        .wait_for(Duration::from_millis(500), |e| e.kind == "fence_intent")
        .await;
    assert!(fenced.is_none(), "{fenced:?}");
    assert!(
        !c.device.events().unwrap().iter().any(|e| e.action == "off"),
        "a node was switched off"
    );
    assert!(
        whole < Duration::from_secs(5),
        "whole again only after {whole:?}"
    );
}

/// A forward step of the arbiter's own monotonic clock (a suspend and
/// resume, a paused virtual machine; an `LD_PRELOAD` shim on the real
/// `fence-arbiter`): 1.5 s more on its clock, none in real time. Every
/// silence looks 1.5 s longer than it was; the arbiter takes the jump for
/// a stall, counts nothing in it, fences nobody, and the cluster stays
/// whole under the same epoch.
#[tokio::test(flavor = "multi_thread")]
async fn a_forward_step_of_the_arbiters_clock_fences_nobody() {
    let _g = serial();
    let shim_dir = tempfile::tempdir().unwrap();
    let step = shim_dir.path().join("step");
    std::fs::write(&step, "0").unwrap();
    let Some((c, mut w, epoch)) = cluster_with_shim(
        shim_dir.path(),
        "clock_step",
        &[("CLOCK_STEP_FILE", step.display().to_string())],
    )
    .await
    else {
        return;
    };
    std::fs::write(&step, "1500").unwrap();
    let stalled = w
        .wait_for(Duration::from_secs(5), |e| e.kind == "stalled")
        .await;
    assert!(stalled.is_some(), "the jump was not noticed: {:?}", w.seen);
    let seen = tokio::time::Instant::now();
    assert_eq!(c.wait_all_leased_among(&[1, 2, 3]).await, epoch);
    let whole = seen.elapsed();
    let fenced = w
        .wait_for(Duration::from_millis(1000), |e| e.kind == "fence_intent")
        .await;
    assert!(fenced.is_none(), "{fenced:?}");
    assert!(
        whole < Duration::from_secs(5),
        "whole again only after {whole:?}"
    );
}

/// A device slower than `fence_timeout` (its `off` takes 1.5 s; the level
/// gives up after 600 ms) switches the node off after the arbiter gave up
/// on that attempt. The attempt counts as failed: nobody is told anything
/// on it. The retry finds the node off, confirms it by status, and the
/// survivors are told once, after the device's own record of the off.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_switches_off_after_the_arbiter_gave_up_is_confirmed_on_retry() {
    let _g = serial();
    let opts = ClusterOptions {
        cluster_extra: "fence_timeout = \"600ms\"\n".into(),
        ..ClusterOptions::default()
    };
    let (c, mut w, epoch) = cluster(opts).await;
    let slow = c.device.dir().join("slow-off-node3");
    std::fs::write(&slow, "1500").unwrap();
    let t = unix_us();
    c.freeze(3).unwrap();
    let failed = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_failed" && e.node == 3
        })
        .await;
    assert!(
        failed.is_some(),
        "the slow attempt did not fail: {:?}",
        w.seen
    );
    assert!(
        !w.seen.iter().any(|e| e.kind == "survivors_notified"),
        "survivors told on a timed-out attempt: {:?}",
        w.seen
    );
    // The device finishes on its own time; the next attempt is fast.
    let mut switched = false;
    for _ in 0..60 {
        if c.device.events().unwrap().iter().any(|e| e.action == "off") {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the slow device never switched node 3 off");
    std::fs::remove_file(&slow).unwrap();
    let e = assert_fenced_then_told(&c, &mut w, 3, t).await;
    assert_eq!(e, epoch + 1);
    let told = w
        .seen
        .iter()
        .filter(|e| e.kind == "survivors_notified")
        .count();
    assert_eq!(told, 1, "{:?}", w.seen);
    let intents = w.seen.iter().filter(|e| e.kind == "fence_intent").count();
    assert_eq!(intents, 1, "{:?}", w.seen);
}
