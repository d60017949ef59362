//! The native `snmp` driver against a simulated APC PDU (net-snmp `snmpd`
//! with the PowerNet-MIB outlet tables) on loopback: v2c and v3 authPriv,
//! outlets by number and name, a lying and a refusing PDU, each
//! credential error, a PDU that rebooted, the MasterSwitch MIB.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::time::Duration;

use fence_drivers::params::Params;
use fence_drivers::snmp::SnmpDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use tests::driver_checks::{assert_never_confirmed, assert_off_refused};
use tests::peers::{Pdu, required, serial};

fn pdu(model: &str) -> Option<Pdu> {
    required("PDU", Pdu::start_model("pdu1", 4, model))
}

/// A secret in a file of its own in the peer's directory, as `file:PATH`.
fn secret_file(p: &Pdu, name: &str, value: &str) -> String {
    let path = p.dir().join(name);
    std::fs::write(&path, value).unwrap();
    format!("file:{}", path.display())
}

fn v2c(p: &Pdu, extra: &[(&str, &str)]) -> Params {
    let mut params = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", p.get("FENCE_PDU_PORT")),
        ("timeout", "300ms"),
        ("retries", "1"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        params.values.insert(k.into(), v.into());
    }
    params.secrets.insert(
        "community".into(),
        secret_file(p, "test-community", p.get("FENCE_PDU_COMMUNITY")),
    );
    params
}

fn v3(p: &Pdu) -> Params {
    let mut params = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", p.get("FENCE_PDU_PORT")),
        ("version", "3"),
        ("username", p.get("FENCE_PDU_V3_USER")),
        ("timeout", "300ms"),
        ("retries", "1"),
    ] {
        params.values.insert(k.into(), v.into());
    }
    params.secrets.insert(
        "auth_password".into(),
        format!("file:{}", p.get("FENCE_PDU_V3_AUTH_PASS_FILE")),
    );
    params.secrets.insert(
        "priv_password".into(),
        format!("file:{}", p.get("FENCE_PDU_V3_PRIV_PASS_FILE")),
    );
    params
}

#[tokio::test]
async fn v2c_switches_outlets_by_number_and_by_name_and_confirms() {
    let _g = serial();
    let Some(p) = pdu("rpdu") else { return };
    let d = SnmpDriver::from_params("pdu1", &v2c(&p, &[])).unwrap();
    d.monitor().await.unwrap();
    assert_eq!(d.status("3").await.unwrap(), PowerState::On);
    off_and_confirm(&d, "3", Duration::from_secs(3), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(p.outlet(3), "off", "the PDU's own state");
    off_and_confirm(
        &d,
        "node2",
        Duration::from_secs(3),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    assert_eq!(p.outlet(2), "off");
    assert_eq!(p.outlet(1), "on");
    d.on("node2").await.unwrap();
    assert_eq!(p.outlet(2), "on");
    let ports = d.list().await.unwrap();
    assert_eq!(ports.len(), 4, "{ports:?}");
    assert_eq!(ports[2].id, "3 node3");
    assert_eq!(ports[2].state, PowerState::Off);
    let e = d.status("node9").await.unwrap_err();
    assert!(matches!(e, FenceError::NoSuchPort { .. }), "{e}");
}

#[tokio::test]
async fn a_lying_pdu_never_confirms_a_refusing_one_errs_a_wrong_community_is_clear() {
    let _g = serial();
    let Some(p) = pdu("rpdu") else { return };
    let d = SnmpDriver::from_params("pdu1", &v2c(&p, &[])).unwrap();
    std::fs::write(p.dir().join("stuck"), "").unwrap();
    assert_never_confirmed(&d, "1", Duration::from_millis(600)).await;
    std::fs::remove_file(p.dir().join("stuck")).unwrap();
    std::fs::write(p.dir().join("fail-set"), "").unwrap();
    assert_off_refused(&d, "1", "genErr").await;
    assert_eq!(p.outlet(1), "on");

    let mut bad = v2c(&p, &[]);
    bad.secrets.insert(
        "community".into(),
        secret_file(&p, "test-wrong", "not-the-community"),
    );
    let e = SnmpDriver::from_params("pdu1", &bad)
        .unwrap()
        .status("1")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("community is wrong"), "{e}");
    assert!(!e.to_string().contains("not-the-community"), "{e}");
}

#[tokio::test]
async fn v3_auth_priv_fences_and_survives_a_pdu_reboot() {
    let _g = serial();
    let Some(mut p) = pdu("rpdu") else { return };
    let d = SnmpDriver::from_params("pdu1", &v3(&p)).unwrap();
    d.monitor().await.unwrap();
    off_and_confirm(
        &d,
        "node4",
        Duration::from_secs(3),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    assert_eq!(p.outlet(4), "off");
    // The PDU reboots: its engine boots count changes; we resynchronize.
    p.restart(&[("FENCE_PDU_OUTLET_NAMES", "node1,node2,node3,node4".into())])
        .unwrap();
    d.on("4").await.unwrap();
    assert_eq!(p.outlet(4), "on");
}

#[tokio::test]
async fn v3_wrong_pass_phrase_and_unknown_user_are_credential_errors() {
    let _g = serial();
    let Some(p) = pdu("rpdu") else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "wrong-pass-phrase\n").unwrap();
    let mut params = v3(&p);
    params
        .secrets
        .insert("auth_password".into(), format!("file:{}", wrong.display()));
    let e = SnmpDriver::from_params("pdu1", &params)
        .unwrap()
        .off("1")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("wrong digest"), "{e}");
    let mut params = v3(&p);
    params.values.insert("username".into(), "nobody".into());
    let e = SnmpDriver::from_params("pdu1", &params)
        .unwrap()
        .off("1")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("unknown user name"), "{e}");
    assert_eq!(p.outlet(1), "on");
}

#[tokio::test]
async fn the_masterswitch_mib_and_a_silent_pdu() {
    let _g = serial();
    let Some(p) = pdu("ms") else { return };
    let d = SnmpDriver::from_params("pdu1", &v2c(&p, &[("mib", "masterswitch")])).unwrap();
    off_and_confirm(
        &d,
        "node2",
        Duration::from_secs(3),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    assert_eq!(p.outlet(2), "off");
    let pid = nix::unistd::Pid::from_raw(p.get("FENCE_PDU_PID").parse().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let e = d.status("2").await.unwrap_err();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert_eq!(d.status("2").await.unwrap(), PowerState::Off);
}
