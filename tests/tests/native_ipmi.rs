//! The native `ipmi` driver against a real simulated BMC (OpenIPMI
//! `ipmi_sim`) on loopback: suite negotiation, power control confirmed by
//! status, a lying BMC, each credential error, an unreachable BMC, and a
//! warm session that went stale.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::time::Duration;

use tokio::time::Instant;

use fence_drivers::ipmi::IpmiDriver;
use fence_drivers::ipmi::crypto::CipherSuite;
use fence_drivers::params::Params;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use tests::driver_checks::{assert_never_confirmed, assert_off_refused};
use tests::peers::{Bmc, required, serial};

fn bmc() -> Option<Bmc> {
    required("IPMI", Bmc::start("bmc1"))
}

fn params(b: &Bmc, extra: &[(&str, &str)]) -> Params {
    let mut p = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_IPMI_PORT")),
        ("username", b.get("FENCE_IPMI_USER")),
        ("timeout", "300ms"),
        ("retries", "2"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        p.values.insert(k.into(), v.into());
    }
    p.secrets.insert(
        "password".into(),
        format!("file:{}", b.get("FENCE_IPMI_PASSWORD_FILE")),
    );
    p
}

#[tokio::test]
async fn off_is_confirmed_by_status_after_falling_back_from_suite_17_to_3() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d = IpmiDriver::from_params("bmc1", &params(&b, &[])).unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    // ipmi_sim knows suites 0-14: "auto" proposed 17, was refused, took 3.
    assert_eq!(d.session_suite().await, Some(CipherSuite::S3));
    off_and_confirm(&d, "", Duration::from_secs(5), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(b.power(), "off", "the BMC's own state");
    assert_eq!(d.status("").await.unwrap(), PowerState::Off);
    d.on("").await.unwrap();
    assert_eq!(b.power(), "on");
    let events = b.events();
    assert!(
        events.contains("power-off") && events.contains("power-on"),
        "{events}"
    );
    // reboot = off, confirmed off, on: the BMC logs both, in that order.
    d.reboot("", Duration::from_secs(5)).await.unwrap();
    let events = b.events();
    let tail: Vec<&str> = events
        .lines()
        .rev()
        .take(2)
        .map(|l| l.split('\t').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(tail, vec!["power-on", "power-off"], "{events}");
    assert_eq!(d.list().await.unwrap()[0].state, PowerState::On);
    d.monitor().await.unwrap();
    d.close().await;
}

#[tokio::test]
async fn suite_17_only_is_a_clear_unsupported_error() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d = IpmiDriver::from_params("bmc1", &params(&b, &[("cipher", "17")])).unwrap();
    let e = d.status("").await.unwrap_err();
    assert!(matches!(e, FenceError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("cipher suites proposed (17)"), "{e}");
    let d = IpmiDriver::from_params("bmc1", &params(&b, &[("cipher", "3")])).unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn a_lying_bmc_never_confirms_and_a_refusing_one_is_an_error() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d = IpmiDriver::from_params("bmc1", &params(&b, &[])).unwrap();
    std::fs::write(b.dir().join("stuck"), "").unwrap();
    assert_never_confirmed(&d, "", Duration::from_millis(800)).await;
    std::fs::remove_file(b.dir().join("stuck")).unwrap();
    std::fs::write(b.dir().join("fail-set"), "").unwrap();
    assert_off_refused(&d, "", "0xFF").await;
    assert_eq!(b.power(), "on");
}

#[tokio::test]
async fn wrong_password_wrong_user_and_no_bmc_are_distinct_errors() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let mut p = params(&b, &[]);
    p.secrets
        .insert("password".into(), format!("file:{}", wrong.display()));
    let e = IpmiDriver::from_params("bmc1", &p)
        .unwrap()
        .status("")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("wrong password"), "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");

    let mut p = params(&b, &[]);
    p.values.insert("username".into(), "nobody".into());
    let e = IpmiDriver::from_params("bmc1", &p)
        .unwrap()
        .status("")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(
        e.to_string().contains("does not accept user \"nobody\""),
        "{e}"
    );

    // (A user below ADMINISTRATOR is not tested here: ipmi_sim lets its
    // USER-limited "viewer" raise the session to ADMINISTRATOR over RMCP+,
    // `ipmitool -U viewer -L ADMINISTRATOR chassis power on` works too.)

    // Nothing listens on this port.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port().to_string();
    drop(free);
    let p = params(&b, &[("ipport", &port)]);
    let e = IpmiDriver::from_params("bmc1", &p)
        .unwrap()
        .status("")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("3 tries"), "{e}");
}

#[tokio::test]
async fn a_silent_bmc_is_unreachable_and_a_stale_warm_session_is_reopened() {
    let _g = serial();
    let Some(mut b) = bmc() else { return };
    let d = IpmiDriver::from_params("bmc1", &params(&b, &[])).unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);

    // The warm session is reused: ten more calls, no new login.
    for _ in 0..10 {
        d.status("").await.unwrap();
    }
    assert_eq!(d.sessions_opened(), 1);

    // The BMC reboots: our session is gone on its side.
    b.restart(&[]).unwrap();
    assert_eq!(
        d.status("").await.unwrap(),
        PowerState::On,
        "reopened transparently"
    );
    assert_eq!(d.sessions_opened(), 2, "the stale session was replaced");

    // A silent BMC (SIGSTOP) is unreachable, within timeout × tries.
    let pid = nix::unistd::Pid::from_raw(b.get("FENCE_IPMI_PID").parse().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    let e = d.status("").await.unwrap_err();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
}

#[test]
fn bad_parameters_are_named() {
    let mut p = Params::default();
    p.values.insert("ip".into(), "127.0.0.1".into());
    p.values.insert("username".into(), "admin".into());
    let e = IpmiDriver::from_params("x", &p).unwrap_err().to_string();
    assert!(e.contains("password"), "{e}");
    p.secrets
        .insert("password".into(), "env:FENCE_TEST_NO_SUCH_VAR".into());
    p.values.insert("cipher".into(), "5".into());
    let e = IpmiDriver::from_params("x", &p).unwrap_err().to_string();
    assert!(e.contains("cipher"), "{e}");
    p.values.remove("cipher");
    p.values.insert("password".into(), "plain".into());
    let e = IpmiDriver::from_params("x", &p).unwrap_err().to_string();
    assert!(e.contains("`password`") && e.contains("secret"), "{e}");
    p.values.remove("password");
    p.values.insert("ipprot".into(), "623".into());
    let e = IpmiDriver::from_params("x", &p).unwrap_err().to_string();
    assert!(e.contains("ipprot") && e.contains("ipport"), "{e}");
}

/// Three nodes fenced first natively: nodes 1 and 2 by their BMCs (ipmi),
/// node 3 by its PDU outlet (snmp v3): see [`tests::bmc_cluster`].
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_fences_through_native_ipmi_and_snmp_and_falls_through_to_the_second_level() {
    let _g = serial();
    tests::bmc_cluster::fences_through_bmcs(true).await;
}

fn fencectl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(tests::e2e::binaries().join("fencectl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `fencectl driver` with a native device: listed, described, validated,
/// tested for real (status, then off with --yes) against the BMC.
#[tokio::test]
async fn fencectl_driver_commands_with_a_native_ipmi_device() {
    let _g = serial();
    let (code, out, _) = fencectl(&["driver", "list"]);
    assert_eq!(code, 0);
    for d in ["ipmi", "snmp", "redfish", "ssh", "plugin", "exec", "sim"] {
        assert!(
            out.lines().any(|l| l.starts_with(d)),
            "{d} not listed: {out}"
        );
    }
    let (code, out, _) = fencectl(&["driver", "metadata", "ipmi", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "password" && p["secret"] == true),
        "{out}"
    );
    let Some(b) = bmc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let config = format!(
        "[arbiter]\nstate_dir = \"{d}/state\"\ninsecure_plaintext = true\n[[cluster]]\nname = \"c\"\n\
         [[cluster.device]]\nname = \"bmc1\"\ndriver = \"ipmi\"\nip = \"127.0.0.1\"\nipport = {}\nusername = \"{}\"\n\
         secrets = {{ password = \"file:{}\" }}\n\
         [[cluster.node]]\nid = 1\naddress = \"127.0.0.1:7501\"\nfence = [[\"bmc1:\"]]\n",
        b.get("FENCE_IPMI_PORT"),
        b.get("FENCE_IPMI_USER"),
        b.get("FENCE_IPMI_PASSWORD_FILE")
    );
    let path = dir.path().join("arbiter.toml");
    std::fs::write(&path, &config).unwrap();
    let cfg = path.to_str().unwrap();
    let (code, out, err) = fencectl(&["driver", "validate", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = fencectl(&["driver", "test", "1", "--config", cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "on", "{out}");
    let (code, out, err) = fencectl(&[
        "driver", "test", "1", "--config", cfg, "--action", "off", "--yes",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(b.power(), "off", "the BMC's own state");
    // A secret given in the config itself is refused, naming the key.
    std::fs::write(
        &path,
        config.replace("username =", "password = \"x\"\nusername ="),
    )
    .unwrap();
    let (code, _, err) = fencectl(&["driver", "validate", "--config", cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("password") && err.contains("secret"), "{err}");
}

/// The arbiter checks its devices every `monitor_interval`: a BMC that
/// stops answering is reported before anyone needs it, and again when it
/// is back.
#[tokio::test(flavor = "multi_thread")]
async fn the_arbiter_reports_a_silent_bmc_before_it_is_needed() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let mut opts = fencectl::local_cluster::ClusterOptions {
        cluster_extra: "monitor_interval = \"300ms\"".into(),
        ..Default::default()
    };
    opts.bmcs.insert(
        2,
        fencectl::local_cluster::BmcAccess {
            port: b.get("FENCE_IPMI_PORT").parse().unwrap(),
            username: b.get("FENCE_IPMI_USER").into(),
            password_file: b.get("FENCE_IPMI_PASSWORD_FILE").into(),
            native: true,
        },
    );
    let c = fencectl::local_cluster::LocalCluster::start(&tests::e2e::binaries(), &opts)
        .await
        .expect("cluster starts");
    let pid = nix::unistd::Pid::from_raw(b.get("FENCE_IPMI_PID").parse().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let wait_for = |what: &'static str| {
        let c = &c;
        async move {
            for _ in 0..100 {
                if c.log("arbiter")
                    .lines()
                    .any(|l| l.contains(what) && l.contains("bmc2"))
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    let silent = wait_for("does not answer its monitor check").await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(silent, "no warning: {}", c.log("arbiter"));
    assert!(
        wait_for("answers again").await,
        "no recovery: {}",
        c.log("arbiter")
    );
    assert_eq!(b.power(), "on", "monitoring never touches power");
}
