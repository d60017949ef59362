//! The native `ssh` driver against a real OpenSSH server on loopback
//! (forced command records instead of running): host key checking, key
//! authentication, and what a confirmation means without and with the
//! operator's opt-in.

// Tests hold a std mutex across awaits on purpose: one at a time.
#![allow(clippy::await_holding_lock)]

use std::time::Duration;

use fence_drivers::params::Params;
use fence_drivers::ssh::SshDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, confirm_off};
use tests::driver_checks::{assert_never_confirmed, assert_off_refused};
use tests::peers::{Sshd, required, serial};

fn sshd() -> Option<Sshd> {
    required("ssh", Sshd::start())
}

fn params(s: &Sshd, extra: &[(&str, &str)]) -> Params {
    let mut p = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", s.get("FENCE_SSHD_PORT")),
        ("username", s.get("FENCE_SSHD_USER")),
        ("known_hosts", s.get("FENCE_SSHD_KNOWN_HOSTS")),
        ("off_command", "echo o > /proc/sysrq-trigger"),
        ("timeout", "2s"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        p.values.insert(k.into(), v.into());
    }
    p.secrets.insert(
        "identity".into(),
        format!("file:{}", s.get("FENCE_SSHD_KEY")),
    );
    p
}

#[tokio::test]
async fn by_default_ssh_runs_the_command_but_never_confirms_off() {
    let _g = serial();
    let Some(s) = sshd() else { return };
    let d = SshDriver::from_params("node3-ssh", &params(&s, &[])).unwrap();
    assert!(!d.metadata().confirms_power_state);
    d.monitor().await.unwrap();
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
    d.off("").await.unwrap();
    assert!(
        s.actions().contains("echo o > /proc/sysrq-trigger"),
        "{}",
        s.actions()
    );
    // The node no longer answers: that is "unknown", never "off".
    s.down();
    assert_eq!(d.status("").await.unwrap(), PowerState::Unknown);
    let e = confirm_off(
        &d,
        "",
        Duration::from_millis(300),
        Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FenceError::NotConfirmed { .. }), "{e}");
    let e = d.on("").await.unwrap_err();
    assert!(matches!(e, FenceError::Unsupported { .. }), "{e}");
}

#[tokio::test]
async fn with_the_opt_in_no_answer_after_off_counts_as_off() {
    let _g = serial();
    let Some(mut s) = sshd() else { return };
    let d =
        SshDriver::from_params("node3-ssh", &params(&s, &[("confirm", "unreachable")])).unwrap();
    assert!(d.metadata().confirms_power_state);
    // The recorder does not power anything off: the node still answers.
    assert_never_confirmed(&d, "", Duration::from_millis(600)).await;
    s.down();
    confirm_off(&d, "", Duration::from_secs(2), Duration::from_millis(50))
        .await
        .unwrap();
    // A failing command is refused; the warm session reconnects after a restart.
    s.up().unwrap();
    std::fs::write(s.dir().join("fail-exit-code"), "1").unwrap();
    assert_off_refused(&d, "", "exited with 1").await;
}

#[tokio::test]
async fn a_changed_host_key_or_a_refused_key_is_never_off() {
    let _g = serial();
    let Some(s) = sshd() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Another machine answers on that address (its key differs).
    let other = dir.path().join("known_hosts");
    let known = std::fs::read_to_string(s.get("FENCE_SSHD_KNOWN_HOSTS")).unwrap();
    let host = known.split_whitespace().next().unwrap();
    std::fs::write(
        &other,
        format!(
            "{host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        ),
    )
    .unwrap();
    let p = params(
        &s,
        &[
            ("known_hosts", other.to_str().unwrap()),
            ("confirm", "unreachable"),
        ],
    );
    let d = SshDriver::from_params("n", &p).unwrap();
    let e = d.status("").await.unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("HOST KEY CHANGED"), "{e}");
    assert!(s.actions().is_empty(), "nothing ran: {}", s.actions());

    // A key the server does not know.
    let key = dir.path().join("id");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let mut p = params(&s, &[("confirm", "unreachable")]);
    p.secrets
        .insert("identity".into(), format!("file:{}", key.display()));
    let e = SshDriver::from_params("n", &p)
        .unwrap()
        .status("")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
}
