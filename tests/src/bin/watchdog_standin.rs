//! `watchdog_standin`: a stand-in for /dev/watchdog, for end-to-end tests on
//! machines without one. The "machine" is the session of the process that
//! arms it; "resetting the machine" SIGKILLs every process of that session.
//!
//! ```text
//! watchdog_standin --socket PATH --log PATH
//! watchdog_standin --client SOCKET --arm-ms N --kick-for-ms M [--magic-close]
//!                  [--new-session] [--spawn-sleep SECS]
//! ```
//!
//! Server protocol (line based, Unix stream socket): `arm <ms>` → `ok <ms>`
//! or `err <reason>`; `kick` restarts the countdown; `V` then close disarms;
//! a close without `V`, or no kick within the timeout, resets at expiry. It
//! refuses a peer whose session is its own or 0/1 (it would kill itself or
//! the test runner). Every event is one JSON line in the log, with `at_ms`
//! (wall clock, ms since the epoch). Exits on SIGTERM.
//!
//! Client mode is the test's "agent": it arms through
//! [`agent::watchdog_device::WatchdogDevice`], kicks every N/4 ms for M ms,
//! then sends `V` and exits (`--magic-close`) or closes without it and
//! sleeps until killed. It prints `child PID` (with `--spawn-sleep`),
//! `armed MS`, then `disarmed` or `closed`; exit status 2 if refused.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::watchdog_device::{WatchdogDevice, WatchdogError};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{Pid, getsid, setsid};
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Serve on this Unix socket.
    #[arg(long, required_unless_present = "client", requires = "log")]
    socket: Option<PathBuf>,
    /// Append the JSON event lines here.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Client mode: arm the stand-in listening on SOCKET.
    #[arg(long, value_name = "SOCKET", conflicts_with = "socket")]
    client: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    arm_ms: u64,
    #[arg(long, default_value_t = 0)]
    kick_for_ms: u64,
    #[arg(long)]
    magic_close: bool,
    /// Client: setsid() first, becoming a "machine" of its own.
    #[arg(long)]
    new_session: bool,
    /// Client: spawn `sleep SECS` (a process of the "machine") first.
    #[arg(long, value_name = "SECS")]
    spawn_sleep: Option<u64>,
}

struct Countdown {
    conn: u64,
    pid: i32,
    sid: i32,
    ms: u64,
    deadline: Instant,
}

struct Shared {
    armed: Mutex<Option<Countdown>>,
    changed: Condvar,
    log: Mutex<File>,
    own_sid: i32,
}

impl Shared {
    fn log(&self, mut event: Value) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        event["at_ms"] = json!(at_ms);
        let mut f = self.log.lock().unwrap();
        let _ = writeln!(f, "{event}").and_then(|()| f.flush());
    }
}

/// (state, session) of `pid`, from /proc/PID/stat: fields 3 and 6, counted
/// after the last ')' (the command name may hold anything).
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.get(s.rfind(')')? + 1..)?.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.nth(2)?.parse().ok()?))
}

/// Live (not zombie) processes of session `sid`, except this one.
fn session_members(sid: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && matches!(stat_of(p), Some((st, s)) if s == sid && st != 'Z'))
        .collect()
}

/// The countdown thread: waits for the armed deadline; at expiry, resets.
fn countdown(sh: &Shared) {
    let mut armed = sh.armed.lock().unwrap();
    loop {
        let now = Instant::now();
        let Some(c) = armed.as_ref() else {
            armed = sh.changed.wait(armed).unwrap();
            continue;
        };
        if now < c.deadline {
            let wait = c.deadline - now;
            armed = sh.changed.wait_timeout(armed, wait).unwrap().0;
            continue;
        }
        let c = armed.take().expect("checked above");
        drop(armed);
        let start = Instant::now();
        let mut killed = BTreeSet::new();
        loop {
            let left = session_members(c.sid);
            if left.is_empty() || start.elapsed() > Duration::from_secs(2) {
                break;
            }
            for p in left {
                if kill(Pid::from_raw(p), Signal::SIGKILL).is_ok() {
                    killed.insert(p);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sh.log(json!({"event": "reset", "sid": c.sid, "ms": c.ms, "killed": killed}));
        armed = sh.armed.lock().unwrap();
    }
}

/// One client connection, until it closes.
fn serve(sh: &Shared, stream: UnixStream, conn: u64) {
    let pid = getsockopt(&stream, sockopt::PeerCredentials).map_or(0, |c| c.pid());
    let sid = stat_of(pid).map_or(0, |(_, s)| s);
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let (mut armed_here, mut magic) = (false, false);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        magic = line == "V";
        if let Some(ms) = line.strip_prefix("arm ") {
            let reason = match ms.trim().parse::<u64>() {
                Ok(0) | Err(_) => Some(format!("bad timeout {ms:?}")),
                _ if sid == sh.own_sid => {
                    Some(format!("peer {pid} is in the stand-in's own session {sid}"))
                }
                _ if sid <= 1 => Some(format!("peer {pid} has session {sid}")),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                sh.log(json!({"event": "refused", "pid": pid, "sid": sid, "reason": reason}));
                let _ = writeln!(out, "err {reason}");
                continue;
            }
            let ms: u64 = ms.trim().parse().expect("checked above");
            *sh.armed.lock().unwrap() = Some(Countdown {
                conn,
                pid,
                sid,
                ms,
                deadline: Instant::now() + Duration::from_millis(ms),
            });
            sh.changed.notify_all();
            armed_here = true;
            sh.log(json!({"event": "armed", "ms": ms, "pid": pid, "sid": sid}));
            let _ = writeln!(out, "ok {ms}");
        } else if line == "kick" {
            let mut armed = sh.armed.lock().unwrap();
            if let Some(c) = armed.as_mut().filter(|c| c.conn == conn) {
                c.deadline = Instant::now() + Duration::from_millis(c.ms);
                sh.changed.notify_all();
            }
        }
    }
    if !armed_here {
        return;
    }
    let mut armed = sh.armed.lock().unwrap();
    let Some(c) = armed.as_ref().filter(|c| c.conn == conn) else {
        return; // already reset, or replaced by a newer arm
    };
    let event = json!({"event": if magic { "disarmed" } else { "unexpected-close" },
                       "ms": c.ms, "pid": c.pid, "sid": c.sid});
    if magic {
        *armed = None;
        sh.changed.notify_all();
    }
    drop(armed);
    sh.log(event);
}

fn server(socket: &Path, log: &Path) -> anyhow::Result<()> {
    // SIGTERM is taken by a thread of its own (blocked here, before any
    // thread starts, so every thread inherits the mask).
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_block()?;
    if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    let sh = Arc::new(Shared {
        armed: Mutex::new(None),
        changed: Condvar::new(),
        log: Mutex::new(File::options().create(true).append(true).open(log)?),
        own_sid: getsid(None)?.as_raw(),
    });
    let sock = socket.to_owned();
    std::thread::spawn(move || {
        let _ = term.wait();
        let _ = std::fs::remove_file(sock);
        std::process::exit(0);
    });
    let s = sh.clone();
    std::thread::spawn(move || countdown(&s));
    for (conn, stream) in (1..).zip(listener.incoming()) {
        let Ok(stream) = stream else { continue };
        let s = sh.clone();
        std::thread::spawn(move || serve(&s, stream, conn));
    }
    Ok(())
}

fn client(a: &Args, socket: &Path) -> anyhow::Result<ExitCode> {
    if a.new_session {
        setsid()?;
    }
    let mut out = std::io::stdout();
    let mut child = None;
    if let Some(secs) = a.spawn_sleep {
        let c = std::process::Command::new("sleep")
            .arg(secs.to_string())
            .spawn()?;
        writeln!(out, "child {}", c.id())?;
        child = Some(c);
    }
    out.flush()?;
    let give_up = Instant::now() + Duration::from_secs(2);
    let mut wd = loop {
        match WatchdogDevice::open(socket, Duration::from_millis(a.arm_ms)) {
            Ok(wd) => break wd,
            Err(WatchdogError::Refused { reason, .. }) => {
                eprintln!("watchdog_standin client: refused: {reason}");
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Ok(ExitCode::from(2));
            }
            Err(e) if Instant::now() > give_up => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    writeln!(out, "armed {}", wd.timeout().as_millis())?;
    out.flush()?;
    let period = wd.timeout() / 4;
    let end = Instant::now() + Duration::from_millis(a.kick_for_ms);
    while Instant::now() < end {
        std::thread::sleep(period);
        wd.keepalive()?;
    }
    if a.magic_close {
        wd.disarm()?;
        writeln!(out, "disarmed")?;
        return Ok(ExitCode::SUCCESS);
    }
    drop(wd);
    writeln!(out, "closed")?;
    out.flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let a = Args::parse();
    match (&a.client, &a.socket, &a.log) {
        (Some(sock), _, _) => client(&a, sock),
        (None, Some(sock), Some(log)) => server(sock, log).map(|()| ExitCode::SUCCESS),
        _ => anyhow::bail!("--socket needs --log"),
    }
}
