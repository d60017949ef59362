//! The stand-in watchdog (`watchdog_standin`): a magic close disarms it; a
//! close without it resets the "machine" (kills the armed session); a peer
//! in the stand-in's own session is refused.

use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_watchdog_standin");
const ARM_MS: u64 = 400;

/// The stand-in, in this test's session; stopped with SIGTERM on drop.
struct StandIn {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl StandIn {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("wd.sock");
        let log = dir.path().join("wd.log");
        let child = Command::new(BIN)
            .arg("--socket")
            .arg(&sock)
            .arg("--log")
            .arg(&log)
            .spawn()
            .unwrap();
        StandIn {
            child,
            sock,
            log,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn event_names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The "machine's agent": the stand-in binary in client mode.
fn client(
    s: &StandIn,
    kick_for_ms: u64,
    magic_close: bool,
    new_session: bool,
    sleep: bool,
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--client")
        .arg(&s.sock)
        .args(["--arm-ms", &ARM_MS.to_string()])
        .args(["--kick-for-ms", &kick_for_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if magic_close {
        cmd.arg("--magic-close");
    }
    if new_session {
        cmd.arg("--new-session");
    }
    if sleep {
        cmd.args(["--spawn-sleep", "30"]);
    }
    let mut child = cmd.spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines.next().expect("client output ended").unwrap()
}

fn child_pid(line: &str) -> i32 {
    line.strip_prefix("child ").unwrap().parse().unwrap()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn magic_close_disarms_and_the_machine_lives() {
    let s = StandIn::start();
    let (mut c, mut out) = client(&s, 2 * ARM_MS, true, true, true);
    let sleep = child_pid(&next_line(&mut out));
    assert_eq!(next_line(&mut out), format!("armed {ARM_MS}"));
    assert_eq!(next_line(&mut out), "disarmed");
    assert!(c.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(2 * ARM_MS));
    let alive_after = alive(sleep);
    let _ = kill(Pid::from_raw(sleep), Signal::SIGKILL);
    assert!(alive_after, "the sleep {sleep} died after a magic close");
    assert_eq!(s.event_names(), ["armed", "disarmed"]);
    let armed = &s.events()[0];
    assert_eq!(armed["ms"], ARM_MS);
    assert_eq!(armed["pid"], c.id());
    assert!(armed["at_ms"].as_u64().unwrap() > 0);
}

#[test]
fn close_without_magic_resets_the_machine() {
    let s = StandIn::start();
    let (mut c, mut out) = client(&s, ARM_MS, false, true, true);
    let sleep = child_pid(&next_line(&mut out));
    assert_eq!(next_line(&mut out), format!("armed {ARM_MS}"));
    assert_eq!(next_line(&mut out), "closed");
    let closed = Instant::now();
    let limit = Duration::from_millis(ARM_MS + 1000);
    while alive(sleep) && closed.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead_after = closed.elapsed();
    let alive_after = alive(sleep);
    if alive_after {
        let _ = kill(Pid::from_raw(sleep), Signal::SIGKILL);
        let _ = c.kill();
    }
    assert!(
        !alive_after,
        "the sleep {sleep} still runs {limit:?} after the close"
    );
    // The agent itself was killed too.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(c.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    // The log line is written after the kill loop ends.
    while s.event_names().len() < 3 && closed.elapsed() < limit + Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        s.event_names(),
        ["armed", "unexpected-close", "reset"],
        "after {dead_after:?}"
    );
    let reset = &s.events()[2];
    let killed: Vec<u64> = reset["killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(killed.contains(&(sleep as u64)), "{reset}");
    assert!(killed.contains(&u64::from(c.id())), "{reset}");
    assert_eq!(reset["sid"], s.events()[0]["sid"]);
    assert_eq!(reset["sid"], c.id(), "the client led its own session");
}

#[test]
fn a_peer_in_the_stand_ins_own_session_is_refused() {
    let s = StandIn::start();
    // With --magic-close: were the refusal broken, the stand-in would be
    // disarmed at once rather than kill this session.
    let (c, _out) = client(&s, 0, true, false, false);
    let done = c.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        err.contains("refused") && err.contains("own session"),
        "{err}"
    );
    assert_eq!(s.event_names(), ["refused"]);
}
