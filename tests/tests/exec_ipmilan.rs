//! The `exec` driver with the real ClusterLabs `fence_ipmilan` against a
//! real simulated BMC (OpenIPMI `ipmi_sim`) on loopback.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Mutex;

use fence_drivers::exec::ExecDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use fencectl::local_cluster::{BmcAccess, ClusterOptions, LocalCluster};
use tests::e2e::{Watcher, binaries, unix_us};
use tests::peers::{Bmc, in_ci};

/// One test at a time: each starts BMCs and Python agents on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn bmc() -> Option<Bmc> {
    start_bmc("bmc1")
}

fn start_bmc(name: &str) -> Option<Bmc> {
    match Bmc::start(name) {
        Ok(b) => Some(b),
        Err(e) if in_ci() => panic!("the IPMI peer must run under CI: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

async fn driver(b: &Bmc) -> ExecDriver {
    let params: BTreeMap<String, String> = [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_IPMI_PORT")),
        ("username", b.get("FENCE_IPMI_USER")),
        ("lanplus", "1"),
        ("cipher", "3"),
        ("power_wait", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let secrets = [(
        "password".to_string(),
        format!("file:{}", b.get("FENCE_IPMI_PASSWORD_FILE")),
    )]
    .into();
    ExecDriver::new(
        "bmc1",
        "fence_ipmilan",
        params,
        secrets,
        Duration::from_secs(30),
    )
    .await
    .expect("valid device")
}

#[tokio::test]
async fn fence_ipmilan_switches_a_simulated_bmc_off_and_confirms() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d = driver(&b).await;
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    off_and_confirm(&d, "", Duration::from_secs(30), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(b.power(), "off", "the BMC's own state");
    assert!(b.events().contains("power-off"), "{}", b.events());
    d.on("").await.unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    assert_eq!(b.power(), "on");
}

#[tokio::test]
async fn a_lying_or_failing_bmc_is_never_a_confirmed_fence() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d = driver(&b).await;
    // Acknowledges the command, changes nothing: only status polling catches it.
    std::fs::write(b.dir().join("stuck"), "").unwrap();
    let r = off_and_confirm(&d, "", Duration::from_secs(8), Duration::from_millis(200)).await;
    assert!(r.is_err(), "a stuck BMC must not confirm: {r:?}");
    assert_eq!(b.power(), "on");
    std::fs::remove_file(b.dir().join("stuck")).unwrap();
    // Refuses the command outright.
    std::fs::write(b.dir().join("fail-set"), "").unwrap();
    let r = d.off("").await;
    assert!(matches!(r, Err(FenceError::Refused { .. })), "{r:?}");
    // The password never shows in the error.
    let pw = std::fs::read_to_string(b.get("FENCE_IPMI_PASSWORD_FILE")).unwrap();
    assert!(!format!("{r:?}").contains(pw.trim()));
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("pw");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let params: BTreeMap<String, String> = [
        ("ip", "127.0.0.1".to_string()),
        ("ipport", b.get("FENCE_IPMI_PORT").to_string()),
        ("username", "admin".to_string()),
        ("lanplus", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let secrets = [("password".to_string(), format!("file:{}", wrong.display()))].into();
    let d = ExecDriver::new(
        "bmc1",
        "fence_ipmilan",
        params,
        secrets,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let r = d.status("").await;
    assert!(r.is_err(), "{r:?}");
    let msg = r.unwrap_err().to_string();
    eprintln!("wrong password: {msg}");
    assert!(!msg.contains("not-the-password"));
    assert!(msg.contains("fence_ipmilan status exited with 1"), "{msg}");
}

/// Seconds (as unix microseconds) of the first line of a BMC event log
/// whose request is `request`.
fn first_event_us(log: &str, request: &str) -> Option<u64> {
    log.lines()
        .find(|l| l.split('\t').nth(1) == Some(request))
        .and_then(|l| {
            let secs: f64 = l.split('\t').next()?.parse().ok()?;
            Some((secs * 1e6) as u64)
        })
}

/// The cluster with real BMCs: each node's first fence level is its BMC
/// through fence_ipmilan, the second the simulated power device. A node cut
/// off is switched off by its BMC before the survivors are told; when a BMC
/// refuses, the arbiter falls through to the second level.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_fences_through_ipmi_bmcs_and_falls_through_to_the_second_level() {
    let _g = serial();
    let mut bmcs = Vec::new();
    for i in 1..=3 {
        let Some(b) = start_bmc(&format!("bmc{i}")) else {
            return;
        };
        bmcs.push(b);
    }
    let mut opts = ClusterOptions::default();
    for (i, b) in bmcs.iter().enumerate() {
        opts.bmcs.insert(
            i as u32 + 1,
            BmcAccess {
                port: b.get("FENCE_IPMI_PORT").parse().unwrap(),
                username: b.get("FENCE_IPMI_USER").to_string(),
                password_file: b.get("FENCE_IPMI_PASSWORD_FILE").into(),
            },
        );
    }
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(20))
        .await
        .expect("all leased");
    let mut w = Watcher::start(&c.url).await;

    // Node 3 cut off: its BMC switches it off before the survivors hear.
    c.isolate(3).unwrap();
    let told = w
        .wait_for(Duration::from_secs(30), |e| {
            e.kind == "survivors_notified" && e.detail.contains('3')
        })
        .await
        .unwrap_or_else(|| panic!("node 3 not announced: {:?}", w.seen));
    assert_eq!(bmcs[2].power(), "off");
    let off = first_event_us(&bmcs[2].events(), "power-off").expect("BMC 3 logged a power-off");
    assert!(
        off <= told.unix_us,
        "BMC 3 went off at {off}, survivors told at {}",
        told.unix_us
    );
    for b in &bmcs[..2] {
        assert_eq!(
            b.power(),
            "on",
            "a survivor's BMC was touched: {}",
            b.events()
        );
    }

    // Node 2's BMC refuses: the arbiter falls to level 2 (the power device).
    std::fs::write(bmcs[1].dir().join("fail-set"), "").unwrap();
    let t = unix_us();
    c.freeze(2).unwrap();
    let told2 = w
        .wait_for(Duration::from_secs(40), |e| {
            e.kind == "survivors_notified" && e.epoch > told.epoch
        })
        .await
        .unwrap_or_else(|| panic!("node 2 not announced: {:?}", w.seen));
    assert!(
        w.seen
            .iter()
            .any(|e| e.kind == "fence_failed" && e.node == 2 && e.unix_us >= t),
        "{:?}",
        w.seen
    );
    let rec = c.device.events().unwrap();
    let off2 = rec
        .iter()
        .find(|e| e.port == "node2" && e.action == "off" && e.unix_us >= t)
        .expect("level 2 switched node 2 off");
    assert!(off2.unix_us <= told2.unix_us);
    assert_eq!(bmcs[1].power(), "on", "the failing BMC changed nothing");
    assert_eq!(bmcs[0].power(), "on");
    // The BMC password never reached our logs, nor our processes' argv.
    let pw = std::fs::read_to_string(bmcs[0].get("FENCE_IPMI_PASSWORD_FILE")).unwrap();
    let pw = pw.trim();
    assert!(!pw.is_empty());
    for log in ["arbiter", "agent1", "agent2", "agent3"] {
        assert!(!c.log(log).contains(pw), "the password is in {log}.log");
    }
    let pid = c.arbiter_pid().unwrap();
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&argv).contains(pw));
}
