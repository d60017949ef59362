//! Real third-party peers on loopback, started by the project's own copies
//! of the peer scripts (`tests/peers/<kind>-up.sh`, stopped by PID with
//! `<kind>-down.sh`). Under `CI=true` a peer that cannot start is a
//! failure; elsewhere the caller may skip.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// One test at a time within a test binary: each starts peers and daemons,
/// and the machine has 2 cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer that started, or `None` to skip the test where the peer's
/// software is not installed. Under `CI=true` a missing peer fails the test.
pub fn required<T>(what: &str, started: Result<T, String>) -> Option<T> {
    match started {
        Ok(p) => Some(p),
        Err(e) if in_ci() => panic!("the {what} peer must run under CI: {e}"),
        Err(e) => {
            eprintln!("skipped: {what} peer: {e}");
            None
        }
    }
}

/// One running peer instance in its own temporary base directory, with the
/// `KEY=VALUE` parameters its up script printed.
pub struct Peer {
    kind: &'static str,
    pub name: String,
    base: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Peer {
    /// `<kind>-up.sh NAME PORT` on a free UDP port of 127.0.0.1, with
    /// `FENCE_<KIND>_BASE` set to a fresh directory and `vars` added. A
    /// daemon that dies at start gets two more tries on fresh ports; the
    /// last error is returned. (The "exited at start, empty log" seen with
    /// ipmi_sim and snmpd was the up scripts checking the child's cmdline
    /// before its exec; our copies now check that the child is alive.)
    fn start(kind: &'static str, name: &str, vars: &[(&str, String)]) -> Result<Peer, String> {
        let mut last = String::new();
        for attempt in 1..=3 {
            match Self::start_once(kind, name, vars) {
                Ok(p) => return Ok(p),
                Err(e) => {
                    eprintln!("{kind} peer {name}: start attempt {attempt} failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn start_once(kind: &'static str, name: &str, vars: &[(&str, String)]) -> Result<Peer, String> {
        let base = tempfile::Builder::new()
            .prefix(&format!("fence-{kind}-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let up = format!("{kind}-up.sh");
        let out = Command::new(script(&up))
            .args([name, &port.to_string()])
            .env(format!("FENCE_{}_BASE", kind.to_uppercase()), base.path())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("{up}: {e}"))?;
        if !out.status.success() {
            // The script may have judged a slow daemon dead while it still
            // started: stop whatever it left before the directory goes.
            let _ = Command::new(script(&format!("{kind}-down.sh")))
                .args([name, "--purge"])
                .env(format!("FENCE_{}_BASE", kind.to_uppercase()), base.path())
                .output();
            return Err(format!(
                "{up} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Peer {
            kind,
            name: name.into(),
            base,
            env,
        })
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// Stop the daemon and start it again on the same port and directory
    /// (a BMC or PDU that rebooted: sessions and engine state are gone).
    pub fn restart(&mut self, vars: &[(&str, String)]) -> Result<(), String> {
        let kind_up = self.kind.to_uppercase();
        let port = self.get(&format!("FENCE_{kind_up}_PORT")).to_string();
        let base_var = format!("FENCE_{kind_up}_BASE");
        let down = Command::new(script(&format!("{}-down.sh", self.kind)))
            .arg(&self.name)
            .env(&base_var, self.base.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !down.status.success() {
            return Err(String::from_utf8_lossy(&down.stderr).into_owned());
        }
        let up = Command::new(script(&format!("{}-up.sh", self.kind)))
            .args([self.name.as_str(), &port])
            .env(&base_var, self.base.path())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| e.to_string())?;
        if !up.status.success() {
            return Err(String::from_utf8_lossy(&up.stderr).into_owned());
        }
        for (k, v) in String::from_utf8_lossy(&up.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
        {
            self.env.insert(k.to_string(), v.to_string());
        }
        Ok(())
    }

    /// The instance directory (failure-injection files go here).
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get(&format!("FENCE_{}_DIR", self.kind.to_uppercase())))
    }

    fn read(&self, key: &str) -> String {
        std::fs::read_to_string(self.get(key)).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new(script(&format!("{}-down.sh", self.kind)))
            .args([self.name.as_str(), "--purge"])
            .env(
                format!("FENCE_{}_BASE", self.kind.to_uppercase()),
                self.base.path(),
            )
            .output();
    }
}

/// A simulated BMC: OpenIPMI's `ipmi_sim` behind `ipmi-up.sh`.
pub struct Bmc(Peer);

impl Deref for Bmc {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl std::ops::DerefMut for Bmc {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.0
    }
}

impl Bmc {
    /// Power on at start.
    pub fn start(name: &str) -> Result<Bmc, String> {
        Peer::start("ipmi", name, &[("FENCE_IPMI_POWER", "on".into())]).map(Bmc)
    }

    /// "on" or "off", from the BMC's own state file.
    pub fn power(&self) -> String {
        self.read("FENCE_IPMI_POWER_STATE_FILE").trim().to_string()
    }

    pub fn events(&self) -> String {
        self.read("FENCE_IPMI_EVENTS_LOG")
    }
}

/// A simulated APC switched PDU: net-snmp `snmpd` with the APC outlet
/// tables served by `apc-pdu-agent.py`, behind `pdu-up.sh`.
pub struct Pdu(Peer);

impl Deref for Pdu {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl std::ops::DerefMut for Pdu {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.0
    }
}

impl Pdu {
    /// Outlets named `node1..node<outlets>`, all on.
    pub fn start(name: &str, outlets: u32) -> Result<Pdu, String> {
        Self::start_model(name, outlets, "rpdu")
    }

    /// `model` "rpdu", or "ms" (an APC MasterSwitch: sPDUOutletCtl).
    pub fn start_model(name: &str, outlets: u32, model: &str) -> Result<Pdu, String> {
        let names: Vec<String> = (1..=outlets).map(|i| format!("node{i}")).collect();
        let vars = [
            ("FENCE_PDU_OUTLETS", outlets.to_string()),
            ("FENCE_PDU_OUTLET_NAMES", names.join(",")),
            ("FENCE_PDU_POWER", "on".to_string()),
            ("FENCE_PDU_MODEL", model.to_string()),
        ];
        Peer::start("pdu", name, &vars).map(Pdu)
    }

    /// "on" or "off", from the PDU's own outlet file.
    pub fn outlet(&self, n: u32) -> String {
        let dir = PathBuf::from(self.get("FENCE_PDU_OUTLETS_DIR"));
        std::fs::read_to_string(dir.join(format!("{n}.state")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// A Redfish BMC: OpenStack's `sushy-emulator` (fake driver) over HTTPS,
/// behind `redfish-up.sh`. Its venv is shared by every test run on this
/// machine (`$TMPDIR/fence-harness-redfish-venv`).
pub struct Redfish(Peer);

impl Deref for Redfish {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Redfish {
    /// One system, power on; power changes show at the next read.
    pub fn start(name: &str) -> Result<Redfish, String> {
        let venv = std::env::temp_dir().join("fence-harness-redfish-venv");
        let vars = [
            ("FENCE_REDFISH_VENV", venv.display().to_string()),
            ("FENCE_REDFISH_POWER", "on".to_string()),
            ("FENCE_REDFISH_POWER_DELAY", "0".to_string()),
        ];
        Peer::start("redfish", name, &vars).map(Redfish)
    }

    /// The system's id (its UUID).
    pub fn system(&self) -> &str {
        self.get("FENCE_REDFISH_SYSTEM_IDS")
    }

    /// `<unix-time>\t<system>\t<what>\t<before>\t<after>` lines.
    pub fn events(&self) -> String {
        self.read("FENCE_REDFISH_EVENTS_LOG")
    }
}

/// A throwaway OpenSSH server (`sshd-up.sh`) on a free loopback port in its
/// own directory; the client key's forced command records what it is asked
/// to run instead of running it.
pub struct Sshd {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    port: u16,
}

impl Sshd {
    pub fn start() -> Result<Sshd, String> {
        let dir = tempfile::Builder::new()
            .prefix("fence-sshd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut s = Sshd {
            dir,
            env: BTreeMap::new(),
            port,
        };
        s.up()?;
        Ok(s)
    }

    fn sshd_dir(&self) -> PathBuf {
        self.dir.path().join("sshd")
    }

    /// Start (again): the host comes back with the same host key.
    pub fn up(&mut self) -> Result<(), String> {
        let out = Command::new(script("sshd-up.sh"))
            .env("FENCE_SSHD_DIR", self.sshd_dir())
            .env("FENCE_SSHD_PORT", self.port.to_string())
            .output()
            .map_err(|e| format!("sshd-up.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "sshd-up.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(())
    }

    /// Stop the server: to a client the "host" is gone.
    pub fn down(&self) {
        let _ = Command::new(script("sshd-down.sh"))
            .env("FENCE_SSHD_DIR", self.sshd_dir())
            .env("FENCE_SSHD_PORT", self.port.to_string())
            .output();
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    pub fn dir(&self) -> PathBuf {
        self.sshd_dir()
    }

    /// The commands the server was asked to run, one per line.
    pub fn actions(&self) -> String {
        std::fs::read_to_string(self.get("FENCE_SSHD_ACTIONS_LOG")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new(script("sshd-down.sh"))
            .arg("--purge")
            .env("FENCE_SSHD_DIR", self.sshd_dir())
            .env("FENCE_SSHD_PORT", self.port.to_string())
            .output();
    }
}

/// Build the `LD_PRELOAD` shim `tests/peers/<name>.c` into `dir` with the
/// system C compiler (the one Rust links with); returns its path.
/// `slow_fsync`: `fsync`/`fdatasync` sleep `SLOW_FSYNC_MS` while the file
/// `SLOW_FSYNC_FILE` exists. `clock_step`: the process's monotonic clocks
/// jump forward by the milliseconds written in the file `CLOCK_STEP_FILE`.
pub fn shim(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let out = dir.join(format!("{name}.so"));
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(script(&format!("{name}.c")))
        .arg("-ldl")
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !st.status.success() {
        return Err(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    Ok(out)
}
