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
use tokio::time::Instant;

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
async fn with_the_opt_in_no_answer_for_the_whole_window_counts_as_off() {
    let _g = serial();
    let Some(mut s) = sshd() else { return };
    let window = Duration::from_secs(1);
    let d = SshDriver::from_params(
        "node3-ssh",
        &params(&s, &[("confirm", "unreachable"), ("unreachable_for", "1s")]),
    )
    .unwrap();
    assert!(d.metadata().confirms_power_state);
    // The recorder does not power anything off: the node still answers.
    assert_never_confirmed(&d, "", Duration::from_millis(600)).await;
    s.down();
    // One refused connection is not "off": a confirmation that cannot wait
    // out the window never confirms.
    let e = confirm_off(
        &d,
        "",
        Duration::from_millis(600),
        Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FenceError::NotConfirmed { .. }), "{e}");
    // Gone for the whole window: off, and not before.
    let t = Instant::now();
    assert_eq!(d.status("").await.unwrap(), PowerState::Off);
    assert!(t.elapsed() >= window, "off after {:?}", t.elapsed());
    let t = Instant::now();
    confirm_off(&d, "", Duration::from_secs(3), Duration::from_millis(50))
        .await
        .unwrap();
    assert!(t.elapsed() >= window, "confirmed after {:?}", t.elapsed());
    // A failing command is refused; the warm session reconnects after a restart.
    s.up().unwrap();
    std::fs::write(s.dir().join("fail-exit-code"), "1").unwrap();
    assert_off_refused(&d, "", "exited with 1").await;
}

/// sshd stops for a moment (a network blip, or sshd stopping early in a
/// shutdown that does not finish) and comes back on the same port: no
/// status says off while status is polled throughout, so the fence is never
/// confirmed. (An 8s window: the stop and start scripts take a second or
/// two on a loaded machine, and the blip must stay well inside it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_shorter_than_the_window_never_confirms_a_fence() {
    let _g = serial();
    let Some(mut s) = sshd() else { return };
    let p = params(&s, &[("confirm", "unreachable"), ("unreachable_for", "8s")]);
    let d = SshDriver::from_params("node3-ssh", &p).unwrap();
    d.off("").await.unwrap();
    let mut blip = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        s.down();
        std::thread::sleep(Duration::from_millis(500));
        s.up().unwrap();
        let gone = t.elapsed();
        (s, gone)
    });
    // Poll status as a fence confirmation does, through the blip and a
    // second after it.
    let mut seen = Vec::new();
    let mut done = None;
    let mut back_at = None;
    loop {
        let t = Instant::now();
        let st = d.status("").await;
        seen.push((format!("{st:?}"), t.elapsed()));
        if done.is_none() && (blip.is_finished() || matches!(st, Ok(PowerState::Off))) {
            done = Some((&mut blip).await.unwrap());
            back_at = Some(Instant::now());
        }
        if let (Ok(PowerState::Off), Some((_, gone))) = (&st, &done) {
            panic!("sshd gone for {gone:?} (window 8s) confirmed off: {seen:?}");
        }
        if back_at.is_some_and(|b| b.elapsed() > Duration::from_secs(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, gone) = done.unwrap();
    assert!(
        gone < Duration::from_secs(6),
        "the blip lasted {gone:?}: too close to the 8s window to test anything"
    );
    // A status call waited through the blip (the window was exercised) and
    // ended on, and the node answers at the end.
    assert!(
        seen.iter()
            .any(|(st, took)| st == "Ok(On)" && *took >= Duration::from_millis(400)),
        "no status waited through the blip: {seen:?}"
    );
    assert_eq!(seen.last().unwrap().0, "Ok(On)", "{seen:?}");
    let e = confirm_off(
        &d,
        "",
        Duration::from_millis(500),
        Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FenceError::NotConfirmed { .. }), "{e}");
    drop(s);
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

/// A node powering off may just go silent after the off command: `off` is
/// accepted (no Timeout error that would fail the level before the window
/// is tried), yet nothing is confirmed while sshd still answers. Any other
/// command going silent is a timeout.
#[tokio::test]
async fn a_silent_off_is_accepted_but_confirmed_only_by_the_window() {
    let _g = serial();
    let Some(s) = sshd() else { return };
    let delay = std::path::Path::new(s.get("FENCE_SSHD_DIR")).join("delay-seconds");
    std::fs::write(&delay, "4").unwrap();
    let d = SshDriver::from_params(
        "node3-ssh",
        &params(
            &s,
            &[
                ("timeout", "1s"),
                ("confirm", "unreachable"),
                ("unreachable_for", "1s"),
            ],
        ),
    )
    .unwrap();
    let r = d.off("").await;
    let m = d.monitor().await;
    std::fs::remove_file(&delay).unwrap();
    r.expect("a silent off is accepted");
    assert!(matches!(m, Err(FenceError::Timeout { .. })), "{m:?}");
    // sshd answers: never off.
    assert_eq!(d.status("").await.unwrap(), PowerState::On);
}
