//! The operator's controls, alerts and metrics, end to end: a real
//! `fence-arbiter`, three `fence-agent`s and the simulated power device on
//! loopback, driven with the `fencectl` binary; the alert hook is a script
//! that appends what it is given to a file; the metrics are scraped over
//! HTTP from the arbiter's endpoint.

use std::path::Path;
use std::time::Duration;

use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tests::e2e::{Watcher, binaries, fencectl, free_port, script, wait_until};
use tests::peers::serial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` on 127.0.0.1:`port`: the body.
async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the sample `series` (name and labels, as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The alert hook's record: one JSON object per line.
fn alerts(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_alert(file: &Path, kind: &str, node: u32) -> bool {
    alerts(file)
        .iter()
        .any(|a| a["kind"] == kind && a["node"] == node)
}

fn json(out: Result<String, String>) -> serde_json::Value {
    serde_json::from_str(&out.expect("fencectl succeeds")).expect("JSON output")
}

/// Device actions on `port` (`off`, `on`).
fn device_actions(c: &LocalCluster, port: &str, action: &str) -> usize {
    c.device
        .events()
        .expect("device events")
        .iter()
        .filter(|e| e.port == port && e.action == action)
        .count()
}

/// `fencectl status -o json`: its exit code and output.
fn status_json(url: &str) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(binaries().join("fencectl"))
        .args([
            "--arbiter",
            url,
            "status",
            "--cluster",
            "demo",
            "-o",
            "json",
        ])
        .output()
        .expect("fencectl");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

struct Setup {
    c: LocalCluster,
    w: Watcher,
    epoch: u64,
    metrics: u16,
    alerts: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let alerts = tmp.path().join("alerts.jsonl");
    let hook = script(
        tmp.path(),
        "hook",
        &format!("cat >> '{}'", alerts.display()),
    );
    let metrics = free_port();
    let opts = ClusterOptions {
        arbiter_extra: format!(
            "metrics = \"127.0.0.1:{metrics}\"\nalerts = {{ command = [\"{hook}\"], timeout = \"2s\", backoff_min = \"100ms\" }}\n"
        ),
        cluster_extra: "fence_retry_min = \"300ms\"\nfence_retry_max = \"600ms\"\n".into(),
        ..ClusterOptions::default()
    };
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    let epoch = c
        .wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let w = Watcher::start(&c.url).await;
    Setup {
        c,
        w,
        epoch,
        metrics,
        alerts,
        _tmp: tmp,
    }
}

/// Maintenance holds a node's fence (reported, not shot); `confirm`
/// records it off without any device and the survivors take over; a
/// manual fence switches a healthy node off through its device; `unfence`
/// switches it on. Each is in the history with who asked, and the alerts
/// and metrics follow.
#[tokio::test(flavor = "multi_thread")]
async fn maintenance_confirm_fence_and_unfence_end_to_end() {
    let _g = serial();
    let Setup {
        mut c,
        mut w,
        epoch,
        metrics,
        alerts: alert_file,
        _tmp,
    } = setup().await;
    let url = c.url.clone();
    // The watch begins with the state as it is.
    let snap = w
        .wait_for(Duration::from_secs(2), |e| {
            e.kind == "snapshot" && e.node == 3
        })
        .await
        .expect("a snapshot event per node");
    assert!(snap.detail.starts_with("member"), "{snap:?}");
    let m0 = scrape(metrics).await;
    assert!(sample(&m0, "fence_arbiter_lease_grants_total{cluster=\"demo\"}") > 0.0);
    assert_eq!(
        sample(
            &m0,
            "fence_arbiter_fences_total{cluster=\"demo\",result=\"confirmed\"}"
        ),
        0.0
    );
    // The node gauges are set about once a second.
    let mut members = 0.0;
    for _ in 0..30 {
        members = sample(
            &scrape(metrics).await,
            "fence_arbiter_nodes{cluster=\"demo\",state=\"member\"}",
        );
        if members == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(members, 3.0);

    // 1. Node 3 in maintenance dies: reported, not fenced.
    fencectl(
        &url,
        &["maintenance", "on", "--node", "3", "--cluster", "demo"],
    )
    .expect("maintenance on");
    c.kill_agent(3).expect("kill agent 3");
    let held = w
        .wait_for(Duration::from_secs(8), |e| {
            e.kind == "maintenance_hold" && e.nodes.contains(&3)
        })
        .await;
    assert!(held.is_some(), "no maintenance hold: {:?}", w.seen);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !w.seen
            .iter()
            .any(|e| e.kind == "fence_intent" && e.node == 3),
        "node 3 fenced in maintenance"
    );
    let nodes = json(fencectl(
        &url,
        &["nodes", "--cluster", "demo", "-o", "json"],
    ));
    let n3 = nodes
        .as_array()
        .and_then(|v| v.iter().find(|n| n["node"] == 3))
        .expect("node 3");
    assert_eq!(n3["maintenance"], true, "{n3}");
    let (code, status) = status_json(&url);
    assert_eq!(code, Some(3), "status in maintenance is degraded: {status}");
    assert_eq!(status["clusters"][0]["maintenance_nodes"][0], 3, "{status}");

    // 2. Confirm: refused without --yes (with the warning), refused for a
    //    node that speaks, then taken.
    let warn = fencectl(&url, &["confirm", "3", "--cluster", "demo"]).expect_err("needs --yes");
    assert!(warn.contains("corrupt"), "{warn}");
    let live =
        fencectl(&url, &["confirm", "2", "--cluster", "demo", "--yes"]).expect_err("node 2 speaks");
    assert!(live.contains("not off"), "{live}");
    fencectl(&url, &["confirm", "3", "--cluster", "demo", "--yes"]).expect("confirm");
    let told = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "survivors_notified" && e.epoch > epoch && e.detail.contains('3')
        })
        .await;
    assert!(told.is_some(), "survivors never told: {:?}", w.seen);
    assert_eq!(
        device_actions(&c, "node3", "off"),
        0,
        "a device ran for a confirm"
    );
    let history = json(fencectl(
        &url,
        &["history", "--cluster", "demo", "-o", "json"],
    ));
    let f3 = &history["fences"][0];
    assert_eq!(f3["node"], 3, "{history}");
    assert!(
        f3["confirmed_by"].as_str().is_some_and(|b| !b.is_empty()),
        "{history}"
    );
    let actions: Vec<&str> = history["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert_eq!(actions, ["confirm", "maintenance_on"], "{history}");
    let m1 = scrape(metrics).await;
    assert_eq!(
        sample(
            &m1,
            "fence_arbiter_fences_total{cluster=\"demo\",result=\"manual_confirmed\"}"
        ),
        1.0
    );

    // 3. Maintenance off; node 3 boots again and rejoins.
    fencectl(
        &url,
        &["maintenance", "off", "--node", "3", "--cluster", "demo"],
    )
    .expect("maintenance off");
    c.start_agent(3).expect("boot node 3");
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .expect("node 3 back");

    // 4. A manual fence of healthy node 2: its device switches it off.
    fencectl(
        &url,
        &[
            "fence",
            "2",
            "--cluster",
            "demo",
            "--yes",
            "--reason",
            "e2e test",
        ],
    )
    .expect("fence");
    let confirmed = w
        .wait_for(Duration::from_secs(8), |e| {
            e.kind == "fence_confirmed" && e.node == 2
        })
        .await;
    assert!(confirmed.is_some(), "{:?}", w.seen);
    assert!(device_actions(&c, "node2", "off") >= 1);
    let history = json(fencectl(
        &url,
        &["history", "--cluster", "demo", "-o", "json"],
    ));
    let reason = history["fences"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("manual") && reason.contains("e2e test"),
        "{history}"
    );
    let m2 = scrape(metrics).await;
    assert_eq!(
        sample(
            &m2,
            "fence_arbiter_fences_total{cluster=\"demo\",result=\"confirmed\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &m2,
            "fence_arbiter_fence_duration_seconds_count{cluster=\"demo\"}"
        ) >= 2.0
    );
    assert!(
        sample(&m2, "fence_arbiter_lease_grants_total{cluster=\"demo\"}")
            > sample(&m1, "fence_arbiter_lease_grants_total{cluster=\"demo\"}")
    );
    assert!(sample(&m2, "fence_arbiter_store_write_duration_seconds_count") > 0.0);

    // 5. Unfence: refused for a member, taken for node 2 (its device
    //    switches it on); it rejoins once booted.
    let member = fencectl(&url, &["unfence", "1", "--cluster", "demo"]).expect_err("a member");
    assert!(member.contains("not fenced"), "{member}");
    wait_until(Duration::from_secs(5), || {
        w.seen
            .iter()
            .any(|e| e.kind == "survivors_notified" && e.detail.contains('2'))
            .then_some(())
    })
    .await;
    fencectl(&url, &["unfence", "2", "--cluster", "demo"]).expect("unfence");
    assert_eq!(device_actions(&c, "node2", "on"), 1);
    c.start_agent(2).expect("boot node 2");
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .expect("node 2 back");

    // 6. The alert hook heard it all.
    let heard = wait_until(Duration::from_secs(5), || {
        (has_alert(&alert_file, "fence_started", 2)
            && has_alert(&alert_file, "fence_confirmed", 2)
            && has_alert(&alert_file, "fence_confirmed", 3))
        .then_some(())
    })
    .await;
    assert!(heard.is_some(), "{:#?}", alerts(&alert_file));
    let all = alerts(&alert_file);
    assert!(
        all.iter().any(|a| a["kind"] == "start_without_history"),
        "{all:#?}"
    );
    let by_hand = all
        .iter()
        .find(|a| a["kind"] == "fence_confirmed" && a["node"] == 3)
        .expect("confirm alert");
    assert!(by_hand["detail"]["confirmed_by"].is_string(), "{by_hand}");
    let m3 = scrape(metrics).await;
    assert!(
        sample(
            &m3,
            "fence_arbiter_alert_deliveries_total{target=\"command\",result=\"ok\"}"
        ) >= 4.0
    );
}

/// A fence that keeps failing (the device refuses every `off`): status
/// shows since when, the rounds, the last error of the level and the next
/// retry; a `fence_failed` alert comes each round; `confirm` ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_fence_that_keeps_failing_shows_why_and_confirm_ends_it() {
    let _g = serial();
    let Setup {
        mut c,
        mut w,
        epoch,
        metrics,
        alerts: alert_file,
        _tmp,
    } = setup().await;
    let url = c.url.clone();
    std::fs::write(c.device.dir().join("fail-node3"), "").expect("fault");
    c.kill_agent(3).expect("kill agent 3");
    let failing = wait_until(Duration::from_secs(10), || {
        let (_, v) = status_json(&url);
        let f = v["clusters"][0]["fences"][0].clone();
        (f["rounds_failed"].as_u64()? >= 2).then_some(f)
    })
    .await
    .expect("a fence failing two rounds");
    assert_eq!(failing["node"], 3, "{failing}");
    assert!(
        failing["level_errors"][0]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{failing}"
    );
    assert!(failing["running_ms"].as_u64().unwrap_or(0) > 0, "{failing}");
    let text = std::process::Command::new(binaries().join("fencectl"))
        .args(["--arbiter", &url, "status", "--cluster", "demo"])
        .output()
        .expect("fencectl");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("rounds failed") && text.contains("level 1:"),
        "{text}"
    );
    let heard = wait_until(Duration::from_secs(5), || {
        has_alert(&alert_file, "fence_failed", 3).then_some(())
    })
    .await;
    assert!(heard.is_some(), "{:#?}", alerts(&alert_file));
    let m = scrape(metrics).await;
    assert!(
        sample(
            &m,
            "fence_arbiter_fence_level_failures_total{cluster=\"demo\"}"
        ) >= 2.0
    );
    assert!(
        sample(
            &m,
            "fence_arbiter_fences_total{cluster=\"demo\",result=\"failed\"}"
        ) >= 2.0
    );
    // The operator has seen node 3 off.
    fencectl(&url, &["confirm", "3", "--cluster", "demo", "--yes"]).expect("confirm");
    let told = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "survivors_notified" && e.epoch > epoch && e.detail.contains('3')
        })
        .await;
    assert!(told.is_some(), "{:?}", w.seen);
    let (_, status) = status_json(&url);
    assert_eq!(
        status["clusters"][0]["fences"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
}

/// Review 21, finding 3: `confirm` ends a fence in the core, not the
/// level's `off` already on its way to the device. An `unfence` right
/// after must not be overtaken by that stale `off` (the node switched off
/// again once it was on): the `on` waits for the level to finish.
#[tokio::test(flavor = "multi_thread")]
async fn an_unfence_after_a_confirm_is_never_overtaken_by_the_fence_still_running() {
    let _g = serial();
    let Setup {
        mut c, mut w, _tmp, ..
    } = setup().await;
    let url = c.url.clone();
    // The device takes 2.5 s to switch node 3 off, and does it even if
    // nobody waits any more.
    std::fs::write(c.device.dir().join("slow-off-node3"), "2500").expect("fault");
    c.kill_agent(3).expect("kill agent 3");
    let started = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_level_started" && e.node == 3
        })
        .await;
    assert!(started.is_some(), "{:?}", w.seen);
    let asked = std::time::SystemTime::now();
    fencectl(&url, &["confirm", "3", "--cluster", "demo", "--yes"]).expect("confirm");
    fencectl(&url, &["unfence", "3", "--cluster", "demo"]).expect("unfence");
    // Long enough for the slow `off` to land, wherever it falls.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let events: Vec<_> = c
        .device
        .events()
        .expect("device events")
        .into_iter()
        .filter(|e| e.port == "node3" && (e.action == "off" || e.action == "on"))
        .collect();
    let asked_us = asked
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let last_off = events
        .iter()
        .filter(|e| e.action == "off")
        .map(|e| e.unix_us)
        .max();
    let on = events
        .iter()
        .filter(|e| e.action == "on")
        .map(|e| e.unix_us)
        .max();
    assert!(
        last_off.is_some_and(|off| off > asked_us),
        "the slow off landed after the confirm: {events:?}"
    );
    assert!(
        matches!((last_off, on), (Some(off), Some(on)) if on > off),
        "the node was switched off again after its unfence: {events:?}"
    );
}

/// The `off` and `on` actions `port`'s device carried out, oldest first,
/// as (action, wall-clock µs).
fn switches(c: &LocalCluster, port: &str) -> Vec<(String, u64)> {
    c.device
        .events()
        .expect("device events")
        .into_iter()
        .filter(|e| e.port == port && (e.action == "off" || e.action == "on"))
        .map(|e| (e.action, e.unix_us))
        .collect()
}

/// An unfence that waits for a stale fence level is dropped when a newer
/// fence of the node starts meanwhile: its `on` would otherwise fire once
/// that newer fence's level ended, switching on a node just fenced (and
/// recorded off) for a new reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_unfence_is_dropped_when_the_node_is_fenced_again() {
    let _g = serial();
    let Setup {
        mut c, mut w, _tmp, ..
    } = setup().await;
    let url = c.url.clone();
    std::fs::write(c.device.dir().join("slow-off-node3"), "4000").expect("fault");
    c.kill_agent(3).expect("kill agent 3");
    let first = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "fence_level_started" && e.node == 3
        })
        .await;
    assert!(first.is_some(), "{:?}", w.seen);
    fencectl(&url, &["confirm", "3", "--cluster", "demo", "--yes"]).expect("confirm");
    // The unfence waits for the first level (its `off` is on its way).
    let unfence = unfence_recorded(&c, &mut w).await;
    // Node 3 was switched on by hand meanwhile: it rejoins, and is fenced
    // again before the first level has ended.
    c.start_agent(3).expect("boot node 3");
    c.wait_all_leased(Duration::from_secs(3))
        .await
        .expect("node 3 back before the first level ends");
    let asked = fence_confirmed(&c, &mut w, "e2e: fenced again").await;
    let answer = unfence.await.expect("unfence thread");
    assert!(
        answer.as_ref().is_err_and(|e| e.contains("dropped")),
        "the waiting unfence must be dropped: {answer:?}"
    );
    // Long enough for any `on` still coming.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<_> = switches(&c, "node3")
        .into_iter()
        .filter(|(_, t)| *t > asked)
        .collect();
    assert!(
        after.iter().any(|(a, _)| a == "off") && after.iter().all(|(a, _)| a == "off"),
        "node 3, fenced again, was switched on: {after:?}"
    );
}

/// A fence level of a node whose unfence `on` is still on its way waits
/// for it: otherwise the `on` may land after the level's `off`, and the
/// node runs although its fence was confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_fence_level_is_never_overtaken_by_an_unfence_still_running() {
    let _g = serial();
    let Setup {
        mut c, mut w, _tmp, ..
    } = setup().await;
    fence_confirmed(&c, &mut w, "e2e: first fence").await;
    // The device takes 3 s to switch node 3 on.
    std::fs::write(c.device.dir().join("slow-on-node3"), "3000").expect("fault");
    let unfence = unfence_recorded(&c, &mut w).await;
    // Node 3 is switched on by hand meanwhile, rejoins, and is fenced
    // again while the unfence's `on` is still on its way.
    c.start_agent(3).expect("boot node 3");
    c.wait_all_leased(Duration::from_secs(3))
        .await
        .expect("node 3 back before the unfence's on lands");
    // The second fence ends (the `on` forgot the agent's registration, so
    // the device reports off without killing it; its alert is beside the
    // point here).
    let asked = fence_confirmed(&c, &mut w, "e2e: fenced again").await;
    let answer = unfence.await.expect("unfence thread");
    assert!(answer.is_ok(), "the unfence itself succeeds: {answer:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after: Vec<_> = switches(&c, "node3")
        .into_iter()
        .filter(|(_, t)| *t > asked)
        .collect();
    assert!(
        after.last().is_some_and(|(a, _)| a == "off"),
        "node 3's second fence was overtaken by the unfence's on: {after:?}"
    );
    assert!(after.iter().any(|(a, _)| a == "on"), "{after:?}");
}

/// `fencectl unfence 3` in the background, once the arbiter recorded it
/// (the `operator` event); its answer comes from the handle.
async fn unfence_recorded(
    c: &LocalCluster,
    w: &mut Watcher,
) -> tokio::task::JoinHandle<Result<String, String>> {
    let u = c.url.clone();
    let unfence =
        tokio::task::spawn_blocking(move || fencectl(&u, &["unfence", "3", "--cluster", "demo"]));
    let recorded = w
        .wait_for(Duration::from_secs(5), |e| {
            e.kind == "operator" && e.detail.contains("unfence")
        })
        .await;
    assert!(recorded.is_some(), "{:?}", w.seen);
    unfence
}

/// Fence node 3 by hand and wait until the fence is confirmed; returns
/// the wall-clock µs at which it was asked.
async fn fence_confirmed(c: &LocalCluster, w: &mut Watcher, reason: &str) -> u64 {
    let asked = tests::e2e::unix_us();
    fencectl(
        &c.url,
        &[
            "fence",
            "3",
            "--cluster",
            "demo",
            "--yes",
            "--reason",
            reason,
        ],
    )
    .expect("fence");
    let confirmed = w
        .wait_for(Duration::from_secs(15), |e| {
            e.kind == "fence_confirmed" && e.node == 3 && e.unix_us > asked
        })
        .await;
    assert!(confirmed.is_some(), "{:?}", w.seen);
    asked
}

/// Two operators unfence the same node at once: one `on` reaches the
/// device (the second unfence joins the first), and both are answered
/// once it landed. Two `on`s would let the second land after a later
/// fence of the node.
#[tokio::test(flavor = "multi_thread")]
async fn two_unfences_at_once_switch_the_node_on_once() {
    let _g = serial();
    let Setup { c, mut w, _tmp, .. } = setup().await;
    fence_confirmed(&c, &mut w, "e2e: fence").await;
    std::fs::write(c.device.dir().join("slow-on-node3"), "1500").expect("fault");
    let asked = tests::e2e::unix_us();
    let first = unfence_recorded(&c, &mut w).await;
    let u = c.url.clone();
    let second =
        tokio::task::spawn_blocking(move || fencectl(&u, &["unfence", "3", "--cluster", "demo"]));
    let (a, b) = (first.await.expect("thread"), second.await.expect("thread"));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let ons: Vec<_> = switches(&c, "node3")
        .into_iter()
        .filter(|(a, t)| a == "on" && *t > asked)
        .collect();
    assert_eq!(ons.len(), 1, "one unfence, one `on`: {ons:?}");
}

/// `confirm` is refused while an unfence is switching the node on: the
/// `on` could land after the operator swore the node is off.
#[tokio::test(flavor = "multi_thread")]
async fn confirm_is_refused_while_an_unfence_switches_the_node_on() {
    let _g = serial();
    let Setup {
        mut c, mut w, _tmp, ..
    } = setup().await;
    fence_confirmed(&c, &mut w, "e2e: fence").await;
    std::fs::write(c.device.dir().join("slow-on-node3"), "5000").expect("fault");
    let unfence = unfence_recorded(&c, &mut w).await;
    // Node 3 is switched on by hand meanwhile, rejoins, and is lost again:
    // its fence starts while the unfence's `on` is on its way.
    c.start_agent(3).expect("boot node 3");
    c.wait_all_leased(Duration::from_secs(3))
        .await
        .expect("node 3 back before the unfence's on lands");
    c.kill_agent(3).expect("kill agent 3");
    let lost = w
        .wait_for(Duration::from_secs(3), |e| {
            e.kind == "fence_level_started" && e.node == 3
        })
        .await;
    assert!(lost.is_some(), "{:?}", w.seen);
    // Silent for longer than `lost_after` (500 ms): otherwise the confirm
    // would be refused for that.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let confirm = fencectl(&c.url, &["confirm", "3", "--cluster", "demo", "--yes"]);
    assert!(
        confirm
            .as_ref()
            .is_err_and(|e| e.contains("unfence is switching node 3 on")),
        "{confirm:?}"
    );
    let _ = unfence.await;
}

/// A device driver that panics during an unfence ends the unfence with an
/// error; the node's next fence still runs (nothing waits for the
/// panicked `on` forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_driver_panic_during_an_unfence_ends_it_and_fencing_goes_on() {
    let _g = serial();
    let Setup {
        mut c, mut w, _tmp, ..
    } = setup().await;
    fence_confirmed(&c, &mut w, "e2e: fence").await;
    let panic = c.device.dir().join("panic-on-node3");
    std::fs::write(&panic, "").expect("fault");
    let answer = fencectl(&c.url, &["unfence", "3", "--cluster", "demo"]);
    assert!(
        answer.as_ref().is_err_and(|e| e.contains("task failed")),
        "{answer:?}"
    );
    std::fs::remove_file(&panic).expect("fault off");
    c.start_agent(3).expect("boot node 3");
    c.wait_all_leased(Duration::from_secs(5))
        .await
        .expect("node 3 back");
    fence_confirmed(&c, &mut w, "e2e: fenced again").await;
}
