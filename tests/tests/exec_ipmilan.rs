//! The `exec` driver with the real ClusterLabs `fence_ipmilan` against a
//! real simulated BMC (OpenIPMI `ipmi_sim`) on loopback.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::collections::BTreeMap;
use std::time::Duration;

use fence_drivers::exec::ExecDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use tests::peers::{Bmc, required, serial};

fn bmc() -> Option<Bmc> {
    start_bmc("bmc1")
}

fn start_bmc(name: &str) -> Option<Bmc> {
    required("IPMI", Bmc::start(name))
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
/// The cluster with real BMCs through fence_ipmilan: see
/// [`tests::bmc_cluster`].
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_fences_through_ipmi_bmcs_and_falls_through_to_the_second_level() {
    let _g = serial();
    tests::bmc_cluster::fences_through_bmcs(false).await;
}
