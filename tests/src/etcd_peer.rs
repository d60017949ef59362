//! A real etcd cluster on loopback for the tests: Debian's `etcd-server`,
//! three members (or any number) on free ports of 127.0.0.1, each in its
//! own data directory under a temporary base, with short raft timings
//! (heartbeat 50 ms, election 500 ms). Members are killed and restarted by
//! their PID; everything started is killed when the cluster is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `etcd` binary: `$FENCE_ETCD`, else `/usr/bin/etcd`.
pub fn etcd_binary() -> Result<PathBuf, String> {
    let p = std::env::var_os("FENCE_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/etcd".into());
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found (Debian package etcd-server; scripts/test installs it as root)",
            p.display()
        ))
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    base: tempfile::TempDir,
    binary: PathBuf,
    token: String,
    members: Vec<Member>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl EtcdCluster {
    /// Start `n` members and wait until the cluster answers.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        let binary = etcd_binary()?;
        let base = tempfile::Builder::new()
            .prefix("fence-etcd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut c = EtcdCluster {
            token: format!("fence-test-{}", std::process::id()),
            base,
            binary,
            members,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        c.wait_healthy(Duration::from_secs(20))?;
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.path().join(format!("{}.log", m.name)))
            .map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.base.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Client URLs of every member, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// `GET /health` of member `i` says healthy.
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.members[i].client).into(),
            Duration::from_millis(300),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("\"health\":\"true\"")
    }

    /// Every running member healthy (a leader elected), within `within`.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        let until = Instant::now() + within;
        loop {
            let running: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some())
                .collect();
            if running.iter().all(|&i| self.healthy(i)) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "etcd not healthy within {within:?}; logs in {}: {}",
                    self.base.path().display(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.base.path().join("m0.log")).unwrap_or_default();
        log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    }

    /// SIGKILL member `i` (by its PID) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Start member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.spawn(i)
    }

    /// The index of the member that is the raft leader now, by asking each
    /// member's `/v3/maintenance/status` (JSON gateway).
    pub fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let Ok(mut s) = TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.members[i].client).into(),
                Duration::from_millis(300),
            ) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
            let body = "{}";
            let req = format!(
                "POST /v3/maintenance/status HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(req.as_bytes()).is_err() {
                continue;
            }
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            let field = |name: &str| {
                out.split(&format!("\"{name}\":\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_string)
            };
            if let (Some(leader), Some(member)) = (field("leader"), field("member_id")) {
                if leader == member {
                    return Some(i);
                }
            }
        }
        None
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
