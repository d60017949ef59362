//! Helpers for the end-to-end tests: locate the built daemons, collect the
//! arbiter's timeline, read the agents' JSON logs.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fencectl::commands::watch::{EventView, subscribe};
use tokio::sync::mpsc;

/// `target/<profile>` of this executable (a test in `deps/`, or a binary
/// such as `bench`), which must hold freshly built `fence-arbiter`,
/// `fence-agent` and `fencectl` (`scripts/test` builds them).
pub fn binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let here = exe.parent().expect("exe dir");
    let dir = if here.file_name().is_some_and(|n| n == "deps") {
        here.parent().expect("target dir")
    } else {
        here
    }
    .to_path_buf();
    for b in [
        "fence-arbiter",
        "fence-agent",
        "fencectl",
        "fence-plugin-example",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the daemons first (`cargo build --release --bins`, as scripts/test does)",
            dir.join(b).display()
        );
    }
    dir
}

/// A TCP port of 127.0.0.1 free a moment ago (the kernel picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The arbiter's watch stream, collected in the background.
pub struct Watcher {
    rx: mpsc::Receiver<EventView>,
    task: tokio::task::JoinHandle<()>,
    pub seen: Vec<EventView>,
}

impl Watcher {
    pub async fn start(url: &str) -> Watcher {
        let mut stream = subscribe(url, "demo").await.expect("watch stream");
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                if tx.send(e.into()).await.is_err() {
                    break;
                }
            }
        });
        Watcher {
            rx,
            task,
            seen: Vec::new(),
        }
    }

    /// Wait for the first event matching `pred` (all events are kept in `seen`).
    pub async fn wait_for(
        &mut self,
        within: Duration,
        pred: impl Fn(&EventView) -> bool,
    ) -> Option<EventView> {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let end = tokio::time::Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) => {
                    let hit = pred(&e);
                    self.seen.push(e.clone());
                    if hit {
                        return Some(e);
                    }
                }
                _ => return None,
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `(unix_us, message, fields)` of each line of a JSON log.
pub fn json_log(text: &str) -> Vec<(u64, String, serde_json::Value)> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let ts = v.get("timestamp")?.as_str()?;
            let t = humantime::parse_rfc3339(ts).ok()?;
            let us = t.duration_since(UNIX_EPOCH).ok()?.as_micros() as u64;
            let fields = v.get("fields")?.clone();
            let msg = fields.get("message")?.as_str()?.to_string();
            Some((us, msg, fields))
        })
        .collect()
}

/// Poll `f` every 5 ms until it gives a value, for at most `within`.
pub async fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// `fencectl --arbiter <url> <args>` (the built binary): Ok(stdout) when it
/// succeeds, Err(stderr) otherwise.
pub fn fencectl(url: &str, args: &[&str]) -> Result<String, String> {
    let (code, out, err) = fencectl_output(url, args)?;
    if code == 0 { Ok(out) } else { Err(err) }
}

/// `fencectl --arbiter <url> <args>`: its exit code, stdout and stderr.
pub fn fencectl_output(url: &str, args: &[&str]) -> Result<(i32, String, String), String> {
    let out = std::process::Command::new(binaries().join("fencectl"))
        .arg("--arbiter")
        .arg(url)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run fencectl: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Write an executable `#!/bin/sh` script `dir/name` running `body`;
/// returns its path.
pub fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&p)
        .status()
        .expect("chmod");
    p.display().to_string()
}
