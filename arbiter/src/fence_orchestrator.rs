//! Runs one fence level: every device of the level is switched off and
//! confirmed off by status polling, concurrently, within the level's
//! deadline. The outcome goes back to the core as `Event::FenceFinished`.
//!
//! **Invariant:** a level succeeds only when every device *confirmed* the
//! port off by its status; an error, a timeout or an unconfirmed status is
//! a failure (even when the device may have acted: the retry asks again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::{FenceDriver, FenceError, confirm_off};
use tokio::task::JoinSet;

use crate::config::{DeviceConfig, FenceTarget};
use crate::core::LevelOutcome;

/// Build the configured devices. Config validation already checked their
/// settings; building runs what needs I/O (an `exec` agent's metadata and
/// `validate-all`). Errors name the device and the parameter.
pub async fn build_devices(
    devices: &BTreeMap<String, DeviceConfig>,
    levels: &BTreeMap<u32, Vec<Vec<FenceTarget>>>,
) -> Result<BTreeMap<String, Arc<dyn FenceDriver>>, FenceError> {
    let mut out: BTreeMap<String, Arc<dyn FenceDriver>> = BTreeMap::new();
    let named = |name: &str, e: FenceError| match e {
        FenceError::InvalidParameter { key, reason } => FenceError::InvalidParameter {
            key: format!("device {name:?}: {key}"),
            reason,
        },
        other => other,
    };
    for (name, d) in devices {
        let driver: Arc<dyn FenceDriver> = match d.driver.as_str() {
            "exec" => {
                let p = d
                    .exec_params(name)
                    .map_err(|errs| config_errors(name, &errs))?;
                // A port this device will be asked about, for validate-all.
                let sample = levels
                    .values()
                    .flatten()
                    .flatten()
                    .find(|t| &t.device == name)
                    .map(|t| t.port.as_str());
                let drv = fence_drivers::exec::ExecDriver::with_sample_port(
                    name.clone(),
                    &p.agent,
                    p.params,
                    p.secrets,
                    p.timeout,
                    sample,
                )
                .await
                .map_err(|e| named(name, e))?;
                Arc::new(drv)
            }
            native => {
                let p = d
                    .driver_params(name, &[])
                    .map_err(|errs| config_errors(name, &errs))?;
                fence_drivers::native::build(native, name, &p).map_err(|e| named(name, e))?
            }
        };
        match driver.validate().await {
            Ok(()) => {}
            // A plugin not running yet is not a configuration error: the
            // device monitor reports it until it answers.
            Err(e @ (FenceError::Unreachable { .. } | FenceError::Timeout { .. })) => {
                tracing::warn!(device = %name, error = %e, "fence device not validated: it does not answer yet");
            }
            Err(e) => return Err(named(name, e)),
        }
        out.insert(name.clone(), driver);
    }
    Ok(out)
}

/// A device's configuration problems as one error naming the device.
fn config_errors(name: &str, errs: &[crate::config::ConfigError]) -> FenceError {
    FenceError::InvalidParameter {
        key: format!("device {name:?}"),
        reason: errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A step of a level, reported for the timeline.
#[derive(Debug, Clone)]
pub enum Progress {
    OffSent { device: String, port: String },
    ConfirmedOff { device: String, port: String },
}

/// Run one level; `progress` is told of each step as it happens.
pub async fn run_level(
    targets: &[FenceTarget],
    devices: &BTreeMap<String, Arc<dyn FenceDriver>>,
    timeout: Duration,
    poll: Duration,
    progress: impl Fn(Progress) + Send + Sync + Clone + 'static,
) -> LevelOutcome {
    // Nothing switched off is nothing confirmed.
    if targets.is_empty() {
        return LevelOutcome::Failed("this fence level has no devices".into());
    }
    let mut set = JoinSet::new();
    for t in targets {
        let Some(dev) = devices.get(&t.device).cloned() else {
            return LevelOutcome::Failed(format!("device {:?} is not configured", t.device));
        };
        let t = t.clone();
        let progress = progress.clone();
        set.spawn(async move {
            let work = async {
                // An error is a failed level, even from a device that may
                // have acted: nothing tells, for every driver, that the
                // request arrived (ssh's `unreachable` would infer "off"
                // from the very silence that made it fail). The retry
                // sends `off` again.
                dev.off(&t.port).await?;
                progress(Progress::OffSent {
                    device: t.device.clone(),
                    port: t.port.clone(),
                });
                confirm_off(dev.as_ref(), &t.port, timeout, poll).await?;
                progress(Progress::ConfirmedOff {
                    device: t.device.clone(),
                    port: t.port.clone(),
                });
                Ok::<(), FenceError>(())
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "{}:{}: no confirmed off within {timeout:?}",
                    t.device, t.port
                )),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("fence task failed: {e}")),
        }
    }
    if failures.is_empty() {
        LevelOutcome::ConfirmedOff
    } else {
        LevelOutcome::Failed(failures.join("; "))
    }
}

/// Power a fenced node back on (an operator's unfence): every device of
/// its topology, last level first (an outlet before the BMC behind it),
/// one after the other, each within `timeout`. A device that cannot switch
/// on (`Unsupported`: ssh, say) is skipped; `Ok` lists the devices that
/// accepted `on`, and needs at least one, with no other error.
pub async fn power_on(
    levels: &[Vec<FenceTarget>],
    devices: &BTreeMap<String, Arc<dyn FenceDriver>>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // One deadline for the whole unfence, not one per device: a fence level
    // of the node waits for it, and must still run within its own deadline.
    let deadline = tokio::time::Instant::now() + timeout;
    for t in levels.iter().rev().flatten() {
        if !seen.insert((t.device.clone(), t.port.clone())) {
            continue;
        }
        let Some(dev) = devices.get(&t.device) else {
            failures.push(format!("device {:?} is not configured", t.device));
            continue;
        };
        match tokio::time::timeout_at(deadline, dev.on(&t.port)).await {
            Ok(Ok(())) => done.push(format!("{}:{}", t.device, t.port)),
            Ok(Err(FenceError::Unsupported { .. })) => {
                skipped.push(format!("{}:{}", t.device, t.port));
            }
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push(format!(
                "{}:{}: no answer to `on` within the unfence's {timeout:?}",
                t.device, t.port
            )),
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{}{}",
            failures.join("; "),
            if done.is_empty() {
                String::new()
            } else {
                format!(" (switched on: {})", done.join(", "))
            }
        ));
    }
    if done.is_empty() {
        return Err(if skipped.is_empty() {
            "the node has no fence device".to_string()
        } else {
            format!(
                "no device of the node can switch it on ({} cannot); power it on by hand",
                skipped.join(", ")
            )
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_level_without_devices_is_never_confirmed() {
        let outcome = run_level(
            &[],
            &BTreeMap::new(),
            Duration::from_secs(1),
            Duration::from_millis(10),
            |_| {},
        )
        .await;
        assert_eq!(
            outcome,
            LevelOutcome::Failed("this fence level has no devices".into())
        );
    }

    /// The `ssh` driver with `confirm = "unreachable"` (an operator's
    /// opt-in: no connection for `unreachable_for` *after the off command*
    /// counts as off), its node's sshd on 127.0.0.1:`port`.
    fn ssh_unreachable(dir: &std::path::Path, port: u16) -> Arc<dyn FenceDriver> {
        let key = dir.join("id");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success());
        let known = dir.join("known_hosts");
        std::fs::write(&known, "").unwrap();
        let values: BTreeMap<String, String> = [
            ("ip", "127.0.0.1".to_string()),
            ("ipport", port.to_string()),
            ("known_hosts", known.display().to_string()),
            ("confirm", "unreachable".to_string()),
            ("unreachable_for", "1s".to_string()),
            ("timeout", "1s".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let secrets = [("identity".to_string(), format!("file:{}", key.display()))].into();
        let p = fence_drivers::params::Params::new(values, secrets);
        Arc::new(fence_drivers::ssh::SshDriver::from_params("ssh", &p).unwrap())
    }

    async fn run_ssh(dev: Arc<dyn FenceDriver>) -> LevelOutcome {
        let devices: BTreeMap<String, Arc<dyn FenceDriver>> = [("ssh".to_string(), dev)].into();
        let targets = [FenceTarget {
            device: "ssh".into(),
            port: "n1".into(),
        }];
        run_level(
            &targets,
            &devices,
            Duration::from_secs(8),
            Duration::from_millis(100),
            |_| {},
        )
        .await
    }

    /// Found by review (`review7_o1`, `review8_o1`): while an error on `off`
    /// was checked against the status, an `off` that never reached the node
    /// (port closed: `Unreachable`; a handshake that never finished:
    /// `Device`) was confirmed by the silence that made it fail. Both must
    /// fail the level.
    #[tokio::test]
    async fn an_ssh_off_that_never_reached_the_node_is_never_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let keys = tempfile::tempdir_in(dir.path()).unwrap();
        let dev = ssh_unreachable(keys.path(), closed);
        let off = dev.off("n1").await;
        assert!(off.is_err(), "off reached nobody yet succeeded: {off:?}");
        let outcome = run_ssh(dev).await;
        assert!(
            matches!(outcome, LevelOutcome::Failed(_)),
            "an off that never reached the node was confirmed: {outcome:?}"
        );
        // Accepts one connection, then stops listening; holds it silent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = listener.local_addr().unwrap().port();
        let holder = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            drop(listener);
            std::thread::sleep(Duration::from_secs(4));
            drop(conn);
        });
        let keys2 = tempfile::tempdir_in(dir.path()).unwrap();
        let outcome = run_ssh(ssh_unreachable(keys2.path(), silent)).await;
        assert!(
            matches!(outcome, LevelOutcome::Failed(_)),
            "an off whose handshake never finished was confirmed: {outcome:?}"
        );
        holder.join().unwrap();
    }

    /// A device that answers `off` with an error fails the level, whether
    /// it refused before acting or switched off and then erred: an error
    /// is never taken for "off". Once it answers properly, it confirms.
    #[tokio::test]
    async fn an_error_from_off_fails_the_level() {
        let dir = tempfile::tempdir().unwrap();
        let dev = fence_drivers::sim::SimPowerDevice::new("power", dir.path()).unwrap();
        // The node: a process the device kills when it switches n1 off.
        let mut node = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        dev.register("n1", node.id()).unwrap();
        let devices: BTreeMap<String, Arc<dyn FenceDriver>> =
            [("power".to_string(), Arc::new(dev) as Arc<dyn FenceDriver>)].into();
        let targets = [FenceTarget {
            device: "power".into(),
            port: "n1".into(),
        }];
        let run = || {
            run_level(
                &targets,
                &devices,
                Duration::from_secs(1),
                Duration::from_millis(10),
                |_| {},
            )
        };
        std::fs::write(dir.path().join("fail-n1"), "").unwrap();
        match run().await {
            LevelOutcome::Failed(e) => assert!(e.contains("fail-n1"), "{e}"),
            o => panic!("a refused off confirmed: {o:?}"),
        }
        std::fs::remove_file(dir.path().join("fail-n1")).unwrap();
        std::fs::write(dir.path().join("fail-after-off-n1"), "").unwrap();
        match run().await {
            LevelOutcome::Failed(e) => assert!(e.contains("after switching off"), "{e}"),
            o => panic!("an error taken for off: {o:?}"),
        }
        std::fs::remove_file(dir.path().join("fail-after-off-n1")).unwrap();
        assert_eq!(run().await, LevelOutcome::ConfirmedOff);
        node.wait().unwrap();
    }

    /// An unfence has one deadline, not one per device: two devices each
    /// slower than half of it fail it (a fence level of the node waits for
    /// the unfence, and must still end within the core's deadline).
    #[tokio::test]
    async fn an_unfence_has_one_deadline_for_all_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let mut devices: BTreeMap<String, Arc<dyn FenceDriver>> = BTreeMap::new();
        let mut levels = Vec::new();
        for name in ["bmc", "pdu"] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("slow-on-n1"), "600").unwrap();
            let dev = fence_drivers::sim::SimPowerDevice::new(name, &d).unwrap();
            // (Registered so the port exists; `on` never kills.)
            dev.register("n1", std::process::id()).unwrap();
            devices.insert(name.into(), Arc::new(dev));
            levels.push(vec![FenceTarget {
                device: name.into(),
                port: "n1".into(),
            }]);
        }
        let started = std::time::Instant::now();
        let r = power_on(&levels, &devices, Duration::from_millis(1000)).await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("bmc:n1") && e.contains("switched on: pdu:n1")),
            "{r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        // Within the deadline, both switch on, last level first.
        let r = power_on(&levels, &devices, Duration::from_millis(2000)).await;
        assert_eq!(r, Ok(vec!["pdu:n1".to_string(), "bmc:n1".to_string()]));
    }
}
