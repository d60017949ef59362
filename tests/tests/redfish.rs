//! Redfish against OpenStack's `sushy-emulator` over HTTPS on loopback:
//! the native `redfish` driver (CA-verified, pinned, insecure; a lying and
//! a failing BMC; wrong credentials) and the `exec` driver running the real
//! ClusterLabs `fence_redfish`.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::collections::BTreeMap;
use std::time::Duration;

use fence_drivers::exec::ExecDriver;
use fence_drivers::params::Params;
use fence_drivers::redfish::RedfishDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use sha2::Digest;
use tests::driver_checks::{assert_never_confirmed, assert_off_refused};
use tests::peers::{Redfish, required, serial};

fn bmc() -> Option<Redfish> {
    required("Redfish", Redfish::start("rf1"))
}

fn params(b: &Redfish, tls: (&str, &str)) -> Params {
    let mut p = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_REDFISH_PORT")),
        ("username", b.get("FENCE_REDFISH_USER")),
        ("timeout", "3s"),
        tls,
    ] {
        p.values.insert(k.into(), v.into());
    }
    p.secrets.insert(
        "password".into(),
        format!("file:{}", b.get("FENCE_REDFISH_PASSWORD_FILE")),
    );
    p
}

fn last_reset(b: &Redfish) -> String {
    b.events()
        .lines()
        .filter_map(|l| l.split('\t').nth(2))
        .rfind(|w| w.starts_with("reset:"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn native_redfish_verified_by_ca_switches_off_and_confirms() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d =
        RedfishDriver::from_params("rf1", &params(&b, ("ca", b.get("FENCE_REDFISH_CA")))).unwrap();
    d.monitor().await.unwrap();
    assert_eq!(
        d.status("").await.unwrap(),
        PowerState::On,
        "the only system"
    );
    off_and_confirm(&d, "", Duration::from_secs(5), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(last_reset(&b), "reset:ForceOff", "{}", b.events());
    assert_eq!(
        d.status(b.system()).await.unwrap(),
        PowerState::Off,
        "by id"
    );
    d.on(b.system()).await.unwrap();
    assert_eq!(last_reset(&b), "reset:On");
    assert_eq!(d.list().await.unwrap().len(), 1);
    let e = d.status("no-such-system").await.unwrap_err();
    assert!(matches!(e, FenceError::NoSuchPort { .. }), "{e}");
}

#[tokio::test]
async fn pinned_insecure_and_wrong_certificates() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    // The pin: SHA-256 of the server certificate's DER.
    let pem = std::fs::read(b.dir().join("cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let pin: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let d = RedfishDriver::from_params("rf1", &params(&b, ("fingerprint", &pin))).unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    let wrong = format!("{}00", &pin[..pin.len() - 2]);
    let d = RedfishDriver::from_params("rf1", &params(&b, ("fingerprint", &wrong))).unwrap();
    let e = d.status("").await.unwrap_err();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("pinned fingerprint"), "{e}");
    let d = RedfishDriver::from_params("rf1", &params(&b, ("insecure", "true"))).unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    // A CA that did not sign it.
    let other = tempfile::NamedTempFile::new().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["other-ca".into()]).unwrap();
    std::fs::write(other.path(), ca.cert.pem()).unwrap();
    let d = RedfishDriver::from_params("rf1", &params(&b, ("ca", other.path().to_str().unwrap())))
        .unwrap();
    let e = d.status("").await.unwrap_err();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    // None chosen: refused before any I/O.
    let mut p = params(&b, ("insecure", "false"));
    p.values.remove("insecure");
    let e = RedfishDriver::from_params("rf1", &p).unwrap_err();
    assert!(e.to_string().contains("exactly one of ca"), "{e}");
}

#[tokio::test]
async fn a_lying_or_failing_bmc_and_a_wrong_password() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let d =
        RedfishDriver::from_params("rf1", &params(&b, ("ca", b.get("FENCE_REDFISH_CA")))).unwrap();
    std::fs::write(b.dir().join("stuck"), "").unwrap();
    assert_never_confirmed(&d, "", Duration::from_millis(800)).await;
    std::fs::remove_file(b.dir().join("stuck")).unwrap();
    std::fs::write(b.dir().join("fail-reset"), "").unwrap();
    assert_off_refused(&d, "", "500").await;
    std::fs::remove_file(b.dir().join("fail-reset")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("pw");
    std::fs::write(&wrong, "wrong-password\n").unwrap();
    let mut p = params(&b, ("ca", b.get("FENCE_REDFISH_CA")));
    p.secrets
        .insert("password".into(), format!("file:{}", wrong.display()));
    let e = RedfishDriver::from_params("rf1", &p)
        .unwrap()
        .off("")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("wrong-password"), "{e}");
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn exec_runs_the_real_fence_redfish() {
    let _g = serial();
    let Some(b) = bmc() else { return };
    let params: BTreeMap<String, String> = [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_REDFISH_PORT")),
        ("username", b.get("FENCE_REDFISH_USER")),
        ("ssl_insecure", "1"),
        ("systems_uri", b.get("FENCE_REDFISH_SYSTEM_URI")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let secrets = [(
        "password".to_string(),
        format!("file:{}", b.get("FENCE_REDFISH_PASSWORD_FILE")),
    )]
    .into();
    let d = ExecDriver::new(
        "rf1",
        "fence_redfish",
        params,
        secrets,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    off_and_confirm(&d, "", Duration::from_secs(30), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(last_reset(&b), "reset:ForceOff", "{}", b.events());
}
