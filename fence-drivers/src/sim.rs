//! A simulated power device with durable state, for demos and tests.
//!
//! The device lives in a directory: `state.json` holds each port's power
//! flag and the PID of the process that plays the machine plugged into it;
//! `events.jsonl` records every action with a wall-clock timestamp, so a
//! test can check *when* a node was switched off. Several processes may use
//! one device (the demo registers PIDs, the arbiter fences); a lock file
//! serialises them and writes are atomic (write, fsync, rename).
//!
//! - `off` sets the port off and kills the registered process with SIGKILL.
//! - `status` reports off once the port is off *and* the process is gone (a
//!   zombie counts as gone; a reused PID is recognised by its start time).
//! - `on` sets the port on and forgets the PID (a new process may register).
//!
//! Fault injection, as in the peer scripts: a file `fail-<port>` in the
//! directory makes `off` fail; a file `hang` makes every action hang; a
//! file `lie-<port>` makes the device lie, as a miswired outlet would:
//! `off` switches nothing and `status` reports off; a file
//! `fail-after-off-<port>` makes `off` switch the port off and then report
//! a failure (a device that answers "error" although it acted); a file
//! `slow-off-<port>` holding a number of milliseconds makes `off` take that
//! long, and switch the port off even when its caller has given up;
//! `slow-on-<port>` makes `on` take that long; a file `panic-on-<port>`
//! makes `on` panic (a driver bug: the arbiter must survive it).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::{DriverMetadata, FenceDriver, FenceError, Parameter, Port, PowerState};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortState {
    pub power: bool,
    pub pid: Option<u32>,
    /// Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22).
    pub pid_start: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct DeviceState {
    ports: BTreeMap<String, PortState>,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceEvent {
    pub unix_us: u64,
    pub port: String,
    /// register | off | on | status
    pub action: String,
    /// For status: on | off.
    pub result: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct SimPowerDevice {
    name: String,
    dir: PathBuf,
}

pub fn metadata() -> DriverMetadata {
    DriverMetadata {
        name: "sim".into(),
        description: "Simulated power device: `off` kills the process registered on a port (SIGKILL by PID); \
                      `status` reports off once that process is gone. For demos and tests."
            .into(),
        parameters: vec![Parameter {
            name: "dir".into(),
            required: true,
            secret: false,
            description: "Directory holding the device's state.json and events.jsonl (created if missing)".into(),
        }],
        confirms_power_state: true,
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Is `pid` a live (non-zombie) process started at `start`?
fn process_alive(pid: u32, start: Option<u64>) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("X");
    if state == "Z" || state == "X" || state == "x" {
        return false;
    }
    match (start, fields.get(19).and_then(|s| s.parse::<u64>().ok())) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    }
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl SimPowerDevice {
    /// From its one parameter, `dir`.
    pub fn from_params(name: &str, p: &crate::params::Params) -> Result<Self, FenceError> {
        p.check(&metadata())?;
        Self::new(name, p.required("dir")?)
    }

    /// A device named `name` keeping its state in `dir`.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Result<Self, FenceError> {
        let name = name.into();
        let dir = dir.into();
        if dir.as_os_str().is_empty() {
            return Err(FenceError::InvalidParameter {
                key: "dir".into(),
                reason: "must not be empty".into(),
            });
        }
        fs::create_dir_all(&dir).map_err(|e| FenceError::InvalidParameter {
            key: "dir".into(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        Ok(SimPowerDevice { name, dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, reason: impl std::fmt::Display) -> FenceError {
        FenceError::Device {
            device: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn lock(&self) -> Result<Flock<File>, FenceError> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .map_err(|e| self.err(format!("lock file: {e}")))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| self.err(format!("lock: {e}")))
    }

    fn load(&self) -> Result<DeviceState, FenceError> {
        match fs::read(self.dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| self.err(format!("state.json is corrupt: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceState::default()),
            Err(e) => Err(self.err(format!("state.json: {e}"))),
        }
    }

    fn save(&self, s: &DeviceState) -> Result<(), FenceError> {
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(s).map_err(|e| self.err(e))?;
        let mut f = File::create(&tmp).map_err(|e| self.err(format!("state.json: {e}")))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| self.err(format!("state.json: {e}")))?;
        fs::rename(&tmp, self.dir.join("state.json"))
            .map_err(|e| self.err(format!("state.json: {e}")))
    }

    fn record(
        &self,
        port: &str,
        action: &str,
        result: &str,
        detail: String,
    ) -> Result<(), FenceError> {
        let ev = DeviceEvent {
            unix_us: now_us(),
            port: port.into(),
            action: action.into(),
            result: result.into(),
            detail,
        };
        let mut line = serde_json::to_string(&ev).map_err(|e| self.err(e))?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events.jsonl"))
            .map_err(|e| self.err(format!("events.jsonl: {e}")))?;
        f.write_all(line.as_bytes())
            .map_err(|e| self.err(format!("events.jsonl: {e}")))
    }

    /// Plug the machine played by process `pid` into `port` (power on).
    pub fn register(&self, port: &str, pid: u32) -> Result<(), FenceError> {
        let _guard = self.lock()?;
        let mut s = self.load()?;
        s.ports.insert(
            port.to_string(),
            PortState {
                power: true,
                pid: Some(pid),
                pid_start: process_start(pid),
            },
        );
        self.save(&s)?;
        self.record(port, "register", "on", format!("pid {pid}"))
    }

    /// Every recorded event, oldest first. A last line still being written
    /// (no newline yet) is left for the next read.
    pub fn events(&self) -> Result<Vec<DeviceEvent>, FenceError> {
        let text = match fs::read_to_string(self.dir.join("events.jsonl")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(format!("events.jsonl: {e}"))),
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| self.err(format!("events.jsonl line {}: {e}", i + 1)))
            })
            .collect()
    }

    async fn faults(&self, port: &str) -> Result<(), FenceError> {
        if self.dir.join("hang").exists() {
            // A device that never answers: callers must time out.
            std::future::pending::<()>().await;
        }
        if self.dir.join(format!("fail-{port}")).exists() {
            return Err(FenceError::Refused {
                device: self.name.clone(),
                reason: format!("injected failure (fail-{port} exists)"),
            });
        }
        Ok(())
    }

    /// Fault injection: a miswired outlet (`lie-<port>` exists).
    fn lies(&self, port: &str) -> bool {
        self.dir.join(format!("lie-{port}")).exists()
    }

    /// Fault injection: a device slow to switch (`slow-off-<port>` or
    /// `slow-on-<port>` holds the milliseconds `action` takes).
    fn slow(&self, action: &str, port: &str) -> Result<Option<Duration>, FenceError> {
        let path = self.dir.join(format!("slow-{action}-{port}"));
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
        let ms: u64 = text.trim().parse().map_err(|_| {
            self.err(format!(
                "{}: {:?} is not a number of milliseconds",
                path.display(),
                text.trim()
            ))
        })?;
        Ok(Some(Duration::from_millis(ms)))
    }

    /// Switch `port` off: kill the process registered on it, record it.
    fn switch_off(&self, port: &str) -> Result<(), FenceError> {
        let _guard = self.lock()?;
        let mut s = self.load()?;
        let mut p = self.port_state(&s, port)?;
        let mut detail = String::from("no process registered");
        if let Some(pid) = p.pid {
            if process_alive(pid, p.pid_start) {
                let pid_i =
                    i32::try_from(pid).map_err(|_| self.err(format!("pid {pid} out of range")))?;
                // SIGKILL also ends a SIGSTOPped process.
                kill(Pid::from_raw(pid_i), Signal::SIGKILL)
                    .map_err(|e| self.err(format!("SIGKILL pid {pid}: {e}")))?;
                detail = format!("SIGKILL sent to pid {pid}");
            } else {
                detail = format!("pid {pid} already gone");
            }
        }
        p.power = false;
        s.ports.insert(port.into(), p);
        self.save(&s)?;
        self.record(port, "off", "", detail)?;
        if self.dir.join(format!("fail-after-off-{port}")).exists() {
            return Err(FenceError::Refused {
                device: self.name.clone(),
                reason: format!(
                    "injected failure after switching off (fail-after-off-{port} exists)"
                ),
            });
        }
        Ok(())
    }

    fn port_state(&self, s: &DeviceState, port: &str) -> Result<PortState, FenceError> {
        s.ports
            .get(port)
            .cloned()
            .ok_or_else(|| FenceError::NoSuchPort {
                device: self.name.clone(),
                port: port.into(),
            })
    }
}

/// Off only once the power flag is off *and* the process is gone. A process
/// that died by itself with power on is a crashed machine: still "on".
fn state_of(p: &PortState) -> PowerState {
    if p.power || p.pid.is_some_and(|pid| process_alive(pid, p.pid_start)) {
        PowerState::On
    } else {
        PowerState::Off
    }
}

#[async_trait]
impl FenceDriver for SimPowerDevice {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        metadata()
    }

    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        if self.dir.join("hang").exists() {
            std::future::pending::<()>().await;
        }
        let _guard = self.lock()?;
        let p = self.port_state(&self.load()?, port)?;
        let st = if self.lies(port) {
            PowerState::Off
        } else {
            state_of(&p)
        };
        self.record(port, "status", &st.to_string(), String::new())?;
        Ok(st)
    }

    async fn on(&self, port: &str) -> Result<(), FenceError> {
        self.faults(port).await?;
        if self.dir.join(format!("panic-on-{port}")).exists() {
            panic!("sim device {}: panic-on-{port} fault", self.dir.display());
        }
        if let Some(delay) = self.slow("on", port)? {
            tokio::time::sleep(delay).await;
        }
        let _guard = self.lock()?;
        let mut s = self.load()?;
        self.port_state(&s, port)?;
        s.ports.insert(
            port.into(),
            PortState {
                power: true,
                pid: None,
                pid_start: None,
            },
        );
        self.save(&s)?;
        self.record(port, "on", "", String::new())
    }

    async fn off(&self, port: &str) -> Result<(), FenceError> {
        self.faults(port).await?;
        if self.lies(port) {
            let _guard = self.lock()?;
            return self.record(
                port,
                "off",
                "",
                format!("lied (lie-{port} exists): nothing switched"),
            );
        }
        if let Some(delay) = self.slow("off", port)? {
            // A slow device goes on with the action after its caller gave
            // up (timed out): the switching happens on the device's own
            // time, in a thread of its own, like the hardware it stands
            // for; the caller may or may not still be waiting.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (me, port) = (self.clone(), port.to_string());
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(me.switch_off(&port));
            });
            return rx
                .await
                .map_err(|_| self.err("the slow switching thread ended without a result"))?;
        }
        self.switch_off(port)
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let _guard = self.lock()?;
        Ok(self
            .load()?
            .ports
            .iter()
            .map(|(id, p)| Port {
                id: id.clone(),
                state: state_of(p),
            })
            .collect())
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        if !self.dir.is_dir() {
            return Err(FenceError::Unreachable {
                device: self.name.clone(),
                reason: format!("{} is not a directory", self.dir.display()),
            });
        }
        let _guard = self.lock()?;
        self.load().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::off_and_confirm;
    use std::time::Duration;

    #[tokio::test]
    async fn off_kills_the_registered_process_and_status_confirms() {
        let dir = tempfile::tempdir().unwrap();
        let dev = SimPowerDevice::new("pdu", dir.path()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        dev.register("n1", child.id()).unwrap();
        assert_eq!(dev.status("n1").await.unwrap(), PowerState::On);
        off_and_confirm(&dev, "n1", Duration::from_secs(2), Duration::from_millis(5))
            .await
            .unwrap();
        // Killed by the device, not by us.
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        let ev = dev.events().unwrap();
        assert!(
            ev.iter()
                .any(|e| e.action == "off" && e.detail.contains("SIGKILL"))
        );
        assert!(ev.iter().any(|e| e.action == "status" && e.result == "off"));
    }

    #[tokio::test]
    async fn injected_failure_and_unknown_port_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dev = SimPowerDevice::new("pdu", dir.path()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        dev.register("n1", child.id()).unwrap();
        std::fs::write(dir.path().join("fail-n1"), "").unwrap();
        assert!(matches!(
            dev.off("n1").await,
            Err(FenceError::Refused { .. })
        ));
        assert_eq!(dev.status("n1").await.unwrap(), PowerState::On);
        assert!(matches!(
            dev.status("n9").await,
            Err(FenceError::NoSuchPort { .. })
        ));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_hung_device_is_a_timeout_never_success() {
        let dir = tempfile::tempdir().unwrap();
        let dev = SimPowerDevice::new("pdu", dir.path()).unwrap();
        dev.register("n1", std::process::id()).unwrap();
        std::fs::write(dir.path().join("hang"), "").unwrap();
        let r = off_and_confirm(
            &dev,
            "n1",
            Duration::from_millis(100),
            Duration::from_millis(10),
        )
        .await;
        assert!(matches!(r, Err(FenceError::Timeout { .. })), "{r:?}");
    }
}
