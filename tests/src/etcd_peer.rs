//! A real etcd cluster on loopback for the tests: Debian's `etcd-server`,
//! three members (or any number) on free ports of 127.0.0.1, each in its
//! own data directory under a temporary base, with short raft timings
//! (heartbeat 50 ms, election 500 ms). Members are killed and restarted by
//! their PID; everything started is killed when the cluster is dropped.
//! [`EtcdCluster::start_tls`] serves clients over TLS only, with client
//! certificates required (`--client-cert-auth`), from a private CA made
//! for the cluster; health is read on each member's plain metrics port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::e2e::free_port;

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
    /// Plain-HTTP `/health` (and `/metrics`), whatever the client side.
    metrics: u16,
    child: Option<Child>,
}

/// PEM files of a TLS etcd: the CA, and one certificate (SAN 127.0.0.1,
/// server and client use) with its key that members and clients share.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct EtcdCluster {
    base: tempfile::TempDir,
    binary: PathBuf,
    token: String,
    members: Vec<Member>,
    tls: Option<EtcdTls>,
}

/// A private CA and one certificate for 127.0.0.1 under `dir`.
fn make_tls(dir: &std::path::Path) -> Result<EtcdTls, String> {
    let ca = fencectl::certs::Ca::new("fence test etcd CA").map_err(|e| e.to_string())?;
    let (cert, key) = ca
        .issue(&["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| e.to_string())?;
    let tls = EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("etcd.pem"),
        key: dir.join("etcd.key"),
    };
    let w =
        |p: &PathBuf, t: String| std::fs::write(p, t).map_err(|e| format!("{}: {e}", p.display()));
    w(&tls.ca, ca.pem())?;
    w(&tls.cert, cert)?;
    w(&tls.key, key)?;
    Ok(tls)
}

impl EtcdCluster {
    /// Start `n` members and wait until the cluster answers.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        Self::start_with(n, false)
    }

    /// Start `n` members serving clients over TLS only (`https://`,
    /// client certificates required): see [`EtcdCluster::tls`].
    pub fn start_tls(n: usize) -> Result<EtcdCluster, String> {
        Self::start_with(n, true)
    }

    /// The PEM files clients need (a TLS cluster only).
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    fn start_with(n: usize, tls: bool) -> Result<EtcdCluster, String> {
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
                metrics: free_port(),
                child: None,
            })
            .collect();
        let tls = if tls {
            Some(make_tls(base.path())?)
        } else {
            None
        };
        let mut c = EtcdCluster {
            token: format!("fence-test-{}", std::process::id()),
            base,
            binary,
            members,
            tls,
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
        let client = self.client_url(m);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new(&self.binary);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.base.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", m.metrics),
            ])
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

    fn client_url(&self, m: &Member) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", m.client)
    }

    /// Client URLs of every member, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| self.client_url(m)).collect()
    }

    /// `GET /health` of member `i` (on its metrics port) says healthy.
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.members[i].metrics).into(),
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
    /// member's `/v3/maintenance/status` (JSON gateway; plain clusters only).
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
