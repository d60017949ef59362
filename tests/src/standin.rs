//! The stand-in watchdog (`watchdog_standin`) as the end-to-end tests and
//! the benchmark start it: a Unix socket an agent's `[watchdog] device`
//! points to, and a JSON-lines log of what it did (armed, disarmed,
//! unexpected-close, reset).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub struct StandIn {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl StandIn {
    /// Start `bin` (the built `watchdog_standin`) with its socket and log
    /// in `dir`, named after `name`; waits for the socket.
    pub fn start(bin: &Path, dir: &Path, name: &str) -> std::io::Result<StandIn> {
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .arg("--log")
            .arg(&log)
            .spawn()?;
        let s = StandIn { child, socket, log };
        for _ in 0..200 {
            if s.socket.exists() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other(format!(
            "the stand-in never made {}",
            s.socket.display()
        )))
    }

    /// `[watchdog]` lines for an agent's configuration.
    pub fn agent_config(&self, timeout: Duration) -> String {
        format!(
            "\n[watchdog]\ndevice = \"{}\"\ntimeout = \"{}ms\"\n",
            self.socket.display(),
            timeout.as_millis()
        )
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first event of this kind.
    pub fn event(&self, kind: &str) -> Option<serde_json::Value> {
        self.events().into_iter().find(|e| e["event"] == kind)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
