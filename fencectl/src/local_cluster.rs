//! A whole cluster on loopback, run as real child processes of the real
//! binaries: one fence-arbiter and N fence-agents, with ephemeral ports, a
//! temporary directory and a simulated power device whose ports are the
//! agents' PIDs. Used by `fencectl demo`, the end-to-end tests and the
//! benchmarks. Everything it starts it stops, by PID, also on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fence_drivers::sim::SimPowerDevice;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::client::CliError;
use crate::commands::status::{fetch_nodes, fetch_status};

fn err(s: impl Into<String>) -> CliError {
    CliError::Other(s.into())
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u32,
    /// Agents accept SIGUSR1 to isolate themselves.
    pub fault_injection: bool,
    /// Give every node a second fence level on a second device, `backup`.
    pub second_level: bool,
    /// Extra lines for the `[[cluster]]` table (timings, quorum...).
    pub cluster_extra: String,
    /// Extra lines for node i's agent config (e.g. `[[heuristic]]` tables).
    pub agent_extra: std::collections::BTreeMap<u32, String>,
    /// Mutual TLS with certificates made by `fencectl certs` (else plain TCP).
    pub tls: bool,
    /// Fence every node with the ClusterLabs `fence_dummy` agent through the
    /// `exec` driver (its "power" is `DIR/dummy.status`) instead of `power`.
    pub exec_dummy: bool,
    /// Per node, a BMC reached with `fence_ipmilan` through the `exec`
    /// driver: the node's first level; `power` becomes its second.
    pub bmcs: std::collections::BTreeMap<u32, BmcAccess>,
    /// Per node, an outlet of an APC PDU reached with the native `snmp`
    /// driver (SNMPv3 authPriv): the node's first level; `power` its second.
    pub pdu_outlets: std::collections::BTreeMap<u32, PduAccess>,
    /// A fence driver plugin (`endpoint`, and the `dir` parameter it
    /// takes) as every node's first level, port `node<i>`; `power` second.
    pub plugin: Option<(String, std::path::PathBuf)>,
    /// Start the agents this far apart (default: at once). Agents started
    /// together heartbeat in step, and after a common outage reconnect in
    /// step; real nodes booted at different times do not.
    pub agent_start_gap: Duration,
    /// Extra environment for the arbiter process (a test's `LD_PRELOAD`
    /// shim, say), kept across its restarts.
    pub arbiter_env: Vec<(String, String)>,
    /// Run arbiter `k` with group id `base + k` (the real and effective
    /// gid; needs root): a test tells its packets apart with nftables'
    /// `meta skgid`, to cut one arbiter off the network.
    pub arbiter_gid_base: Option<u32>,
    /// `[[cluster.group]]` tables (resource groups), appended to the
    /// arbiter's config.
    pub groups: String,
    /// Per node, its fence topology as TOML (e.g. `[["power:node3"],
    /// ["watchdog"]]`), instead of the one the options above make.
    pub topology: std::collections::BTreeMap<u32, String>,
    /// Start every agent in a session of its own (`setsid`): the processes
    /// of that session are "its machine" (what a watchdog stand-in resets).
    pub own_sessions: bool,
    /// Extra keys for the `[arbiter]` table (`metrics = "..."`, `alerts =
    /// { ... }` as an inline table): keys only, no table headers.
    pub arbiter_extra: String,
    /// etcd client URLs: the arbiter keeps its state in etcd
    /// (`[arbiter.etcd]`, prefix unique to this cluster, `leader_ttl`
    /// 1 s). Empty: the embedded store.
    pub etcd: Vec<String>,
    /// With `etcd` (`https://` URLs): the CA, client certificate and key
    /// for TLS to etcd (`[arbiter.etcd.tls]`).
    pub etcd_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// With `etcd`: this many more arbiter processes of the same group
    /// (`arbiter-<k>.toml`, k = 1..), not started; the agents list every
    /// arbiter's URL.
    pub more_arbiters: u32,
}

/// One node's outlet on a PDU, over SNMPv3 authPriv.
#[derive(Debug, Clone)]
pub struct PduAccess {
    pub port: u16,
    pub user: String,
    pub auth_file: std::path::PathBuf,
    pub priv_file: std::path::PathBuf,
    pub outlet: String,
}

/// How to reach one node's BMC: with `fence_ipmilan` through `exec`, or
/// with the native `ipmi` driver.
#[derive(Debug, Clone)]
pub struct BmcAccess {
    pub port: u16,
    pub username: String,
    pub password_file: std::path::PathBuf,
    pub native: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            fault_injection: true,
            second_level: false,
            cluster_extra: String::new(),
            agent_extra: Default::default(),
            tls: false,
            exec_dummy: false,
            bmcs: Default::default(),
            pdu_outlets: Default::default(),
            plugin: None,
            agent_start_gap: Duration::ZERO,
            arbiter_env: Vec::new(),
            arbiter_gid_base: None,
            groups: String::new(),
            topology: Default::default(),
            own_sessions: false,
            arbiter_extra: String::new(),
            etcd: Vec::new(),
            etcd_tls: None,
            more_arbiters: 0,
        }
    }
}

/// One more arbiter process of a group sharing etcd.
struct MoreArbiter {
    url: String,
    child: Option<Child>,
}

pub struct LocalCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub url: String,
    pub nodes: u32,
    /// The primary power device (`power`), port `node<i>` per node.
    pub device: SimPowerDevice,
    /// The second-level device (`backup`), when configured.
    pub backup: Option<SimPowerDevice>,
    arbiter: Option<Child>,
    agents: Vec<(u32, Child)>,
    /// Second processes speaking as a node (`start_duplicate_agent`).
    duplicates: Vec<(u32, Child)>,
    arbiter_env: Vec<(String, String)>,
    arbiter_gid_base: Option<u32>,
    arbiter_starts: u32,
    own_sessions: bool,
    /// Arbiters 1.. of a group on etcd (arbiter 0 is `arbiter`).
    more: Vec<MoreArbiter>,
    /// Arbiter 0's URL (`url` follows whichever arbiter leads).
    first_url: String,
}

/// Find the daemons next to this executable or in `bin_dir`, building them
/// first when run under `cargo run` (the `CARGO` variable is set).
pub fn locate_binaries(bin_dir: Option<&Path>, say: &dyn Fn(&str)) -> Result<PathBuf, CliError> {
    let exe =
        std::env::current_exe().map_err(|e| err(format!("cannot locate this executable: {e}")))?;
    let dir = match bin_dir {
        Some(d) => d.to_path_buf(),
        None => exe
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| err("executable has no directory"))?,
    };
    if bin_dir.is_none()
        && let Ok(cargo) = std::env::var("CARGO")
    {
        let release = dir.file_name().is_some_and(|n| n == "release");
        say("building fence-arbiter and fence-agent (cargo build)...");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "arbiter", "-p", "agent"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .map_err(|e| err(format!("cannot run cargo build: {e}")))?;
        if !status.success() {
            return Err(err("cargo build of fence-arbiter and fence-agent failed"));
        }
    }
    for b in ["fence-arbiter", "fence-agent"] {
        if !dir.join(b).is_file() {
            return Err(err(format!(
                "{} not found; build it with `cargo build --release -p arbiter -p agent`, or pass --bin-dir",
                dir.join(b).display()
            )));
        }
    }
    Ok(dir)
}

/// Ports picked by binding 127.0.0.1:0 and releasing them.
fn free_ports(n: usize) -> Result<Vec<u16>, CliError> {
    let socks: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("cannot find free loopback ports: {e}")))?;
    socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("cannot find free loopback ports: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Write a fresh boot id to `path` (the kernel hands out a new random
/// UUID on every read).
fn draw_boot_id(path: &Path) -> Result<(), CliError> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| err(format!("cannot draw a boot id: {e}")))?;
    write(path, uuid.trim())
}

fn spawn(bin: &Path, config: &Path, log: &Path, own_session: bool) -> Result<Child, CliError> {
    spawn_in(bin, config, log, &[], own_session, None)
}

/// Arbiter `k`'s file names (config, log) without their extension.
fn arbiter_name(k: usize) -> String {
    match k {
        0 => "arbiter".to_string(),
        k => format!("arbiter-{k}"),
    }
}

/// An arbiter: `env` added, and group id `gid` when given.
fn spawn_with(
    bin: &Path,
    config: &Path,
    log: &Path,
    env: &[(String, String)],
    gid: Option<u32>,
) -> Result<Child, CliError> {
    spawn_in(bin, config, log, env, false, gid)
}

fn spawn_in(
    bin: &Path,
    config: &Path,
    log: &Path,
    env: &[(String, String)],
    own_session: bool,
    gid: Option<u32>,
) -> Result<Child, CliError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| err(format!("{}: {e}", log.display())))?;
    // In a session of its own: through util-linux `setsid`, which execs
    // in place (the child is no process group leader), keeping the pid.
    let mut cmd = if own_session {
        let mut c = Command::new("setsid");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    if let Some(g) = gid {
        std::os::unix::process::CommandExt::gid(&mut cmd, g);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))
}

/// SIGTERM (after SIGCONT, for a frozen one), wait up to 5 s, then SIGKILL.
fn stop_child(c: &mut Child) {
    if let Ok(None) = c.try_wait() {
        let pid = Pid::from_raw(c.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
    }
    for _ in 0..500 {
        match c.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl LocalCluster {
    pub async fn start(bin: &Path, opts: &ClusterOptions) -> Result<LocalCluster, CliError> {
        let dir = tempfile::Builder::new()
            .prefix("fence-cluster-")
            .tempdir()
            .map_err(|e| err(format!("temporary directory: {e}")))?;
        let n = opts.nodes;
        let more = if opts.etcd.is_empty() {
            0
        } else {
            opts.more_arbiters as usize
        };
        let ports = free_ports(n as usize + 1 + more)?;
        let scheme = if opts.tls { "https" } else { "http" };
        let more_urls: Vec<String> = (0..more)
            .map(|k| format!("{scheme}://127.0.0.1:{}", ports[n as usize + 1 + k]))
            .collect();
        let d = dir.path();
        let certs = d.join("certs");
        let (url, arbiter_security) = if opts.tls {
            let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
            crate::certs::generate(&certs, "demo", &names)?;
            let url = format!("https://127.0.0.1:{}", ports[0]);
            let tls = crate::client::ClientTls::load(
                &certs.join("ca.pem"),
                &certs.join("admin.pem"),
                &certs.join("admin.key"),
                "arbiter",
            )?;
            crate::client::register_tls(&url, tls);
            let c = certs.display();
            (
                url,
                format!(
                    "[arbiter.tls]\nca = \"{c}/ca.pem\"\ncert = \"{c}/arbiter.pem\"\nkey = \"{c}/arbiter.key\"\n"
                ),
            )
        } else {
            (
                format!("http://127.0.0.1:{}", ports[0]),
                "insecure_plaintext = true\n".to_string(),
            )
        };
        let etcd = if opts.etcd.is_empty() {
            String::new()
        } else {
            let endpoints: Vec<String> = opts.etcd.iter().map(|e| format!("{e:?}")).collect();
            let tls = opts
                .etcd_tls
                .as_ref()
                .map_or(String::new(), |(ca, cert, key)| {
                    format!(
                        "[arbiter.etcd.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
                        ca.display().to_string(),
                        cert.display().to_string(),
                        key.display().to_string()
                    )
                });
            format!(
                "[arbiter.etcd]\nendpoints = [{}]\nprefix = \"/{}\"\nleader_ttl = \"1s\"\ntimeout = \"2s\"\n{tls}",
                endpoints.join(", "),
                d.file_name()
                    .map_or("fence".into(), |f| f.to_string_lossy().to_string())
            )
        };
        let mut toml = format!(
            "[arbiter]\nlisten = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\nlog_format = \"json\"\n{}\n{arbiter_security}\n{etcd}\n\
             [[cluster]]\nname = \"demo\"\n{}\n\n[[cluster.device]]\nname = \"power\"\ndriver = \"sim\"\ndir = \"{}\"\n",
            ports[0],
            d.join("state").display(),
            opts.arbiter_extra,
            opts.cluster_extra,
            d.join("power").display()
        );
        if opts.exec_dummy {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"dummy\"\ndriver = \"exec\"\nagent = \"fence_dummy\"\nstatus_file = \"{}\"\n",
                d.join("dummy.status").display()
            );
        }
        for (i, b) in opts.bmcs.iter().filter(|(_, b)| b.native) {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"bmc{i}\"\ndriver = \"ipmi\"\nip = \"127.0.0.1\"\n\
                 ipport = {}\nusername = \"{}\"\ntimeout = \"250ms\"\n\
                 secrets = {{ password = \"file:{}\" }}\n",
                b.port,
                b.username,
                b.password_file.display()
            );
        }
        if let Some((endpoint, dir)) = &opts.plugin {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"ext\"\ndriver = \"plugin\"\nendpoint = \"{endpoint}\"\n\
                 timeout = \"1s\"\ndir = \"{}\"\n",
                dir.display()
            );
        }
        for (i, o) in &opts.pdu_outlets {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"pdu{i}\"\ndriver = \"snmp\"\nip = \"127.0.0.1\"\nipport = {}\n\
                 version = \"3\"\nusername = \"{}\"\ntimeout = \"300ms\"\n\
                 secrets = {{ auth_password = \"file:{}\", priv_password = \"file:{}\" }}\n",
                o.port,
                o.user,
                o.auth_file.display(),
                o.priv_file.display()
            );
        }
        for (i, b) in opts.bmcs.iter().filter(|(_, b)| !b.native) {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"bmc{i}\"\ndriver = \"exec\"\nagent = \"fence_ipmilan\"\nip = \"127.0.0.1\"\n\
                 ipport = {}\nusername = \"{}\"\nlanplus = true\ncipher = 3\npower_wait = 0\n\
                 secrets = {{ password = \"file:{}\" }}\n",
                b.port,
                b.username,
                b.password_file.display()
            );
        }
        if opts.second_level {
            toml += &format!(
                "\n[[cluster.device]]\nname = \"backup\"\ndriver = \"sim\"\ndir = \"{}\"\n",
                d.join("backup").display()
            );
        }
        for i in 1..=n {
            let levels = if let Some(t) = opts.topology.get(&i) {
                t.clone()
            } else if opts.plugin.is_some() {
                format!("[[\"ext:node{i}\"], [\"power:node{i}\"]]")
            } else if let Some(o) = opts.pdu_outlets.get(&i) {
                format!("[[\"pdu{i}:{}\"], [\"power:node{i}\"]]", o.outlet)
            } else if opts.bmcs.contains_key(&i) {
                format!("[[\"bmc{i}:\"], [\"power:node{i}\"]]")
            } else if opts.exec_dummy {
                "[[\"dummy\"]]".to_string()
            } else if opts.second_level {
                format!("[[\"power:node{i}\"], [\"backup:node{i}\"]]")
            } else {
                format!("[[\"power:node{i}\"]]")
            };
            toml += &format!(
                "\n[[cluster.node]]\nid = {i}\naddress = \"127.0.0.1:{}\"\nfence = {levels}\n",
                ports[i as usize]
            );
            let arbiters = if more_urls.is_empty() {
                format!("{url:?}")
            } else {
                let all: Vec<String> = std::iter::once(&url)
                    .chain(&more_urls)
                    .map(|u| format!("{u:?}"))
                    .collect();
                format!("[{}]", all.join(", "))
            };
            let agent = format!(
                "cluster = \"demo\"\nnode = {i}\narbiter = {arbiters}\nlisten = \"127.0.0.1:{}\"\nlog_format = \"json\"\nboot_id_file = \"{}\"\nrun_dir = \"{}\"\n{}\n[fault_injection]\nenabled = {}\n{}\n",
                ports[i as usize],
                d.join(format!("boot{i}")).display(),
                d.join("run").display(),
                if opts.tls {
                    let c = certs.display();
                    format!(
                        "[tls]\nca = \"{c}/ca.pem\"\ncert = \"{c}/node{i}.demo.pem\"\nkey = \"{c}/node{i}.demo.key\"\n"
                    )
                } else {
                    "insecure_plaintext = true\n".to_string()
                },
                opts.fault_injection,
                opts.agent_extra.get(&i).map_or("", String::as_str)
            );
            write(&d.join(format!("agent{i}.toml")), &agent)?;
        }
        toml += &opts.groups;
        write(&d.join("arbiter.toml"), &toml)?;
        for k in 0..more {
            let port = ports[n as usize + 1 + k];
            let other = toml
                .replacen(
                    &format!("listen = \"127.0.0.1:{}\"", ports[0]),
                    &format!("listen = \"127.0.0.1:{port}\"\nmetrics = \"off\""),
                    1,
                )
                .replacen(
                    &format!("state_dir = \"{}\"", d.join("state").display()),
                    &format!(
                        "state_dir = \"{}\"",
                        d.join(format!("state-{}", k + 1)).display()
                    ),
                    1,
                );
            write(&d.join(format!("{}.toml", arbiter_name(k + 1))), &other)?;
        }
        let device =
            SimPowerDevice::new("power", d.join("power")).map_err(|e| err(e.to_string()))?;
        let backup = if opts.second_level {
            Some(SimPowerDevice::new("backup", d.join("backup")).map_err(|e| err(e.to_string()))?)
        } else {
            None
        };
        let mut c = LocalCluster {
            dir,
            bin: bin.to_path_buf(),
            url: url.clone(),
            nodes: n,
            device,
            backup,
            arbiter: None,
            agents: Vec::new(),
            duplicates: Vec::new(),
            arbiter_env: opts.arbiter_env.clone(),
            arbiter_gid_base: opts.arbiter_gid_base,
            arbiter_starts: 0,
            own_sessions: opts.own_sessions,
            more: more_urls
                .iter()
                .map(|u| MoreArbiter {
                    url: u.clone(),
                    child: None,
                })
                .collect(),
            first_url: url.clone(),
        };
        c.start_arbiter().await?;
        for i in 1..=n {
            if i > 1 && !opts.agent_start_gap.is_zero() {
                tokio::time::sleep(opts.agent_start_gap).await;
            }
            c.start_agent(i)?;
        }
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Start (or restart) the arbiter and wait for its admin API.
    pub async fn start_arbiter(&mut self) -> Result<(), CliError> {
        let d = self.dir.path();
        self.arbiter = Some(spawn_with(
            &self.bin.join("fence-arbiter"),
            &d.join("arbiter.toml"),
            &d.join("arbiter.log"),
            &self.arbiter_env,
            self.arbiter_gid_base,
        )?);
        self.arbiter_starts += 1;
        for _ in 0..200 {
            if fetch_status(&self.url, "").await.is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.arbiter.as_mut().map(|a| a.try_wait()) {
                return Err(err(format!(
                    "fence-arbiter exited ({st}); see {}",
                    d.join("arbiter.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(err(format!(
            "the arbiter did not come up; see {}",
            d.join("arbiter.log").display()
        )))
    }

    /// Arbiter `k`'s URL (0: the first; 1..: `more_arbiters`).
    pub fn arbiter_url(&self, k: usize) -> String {
        match k {
            0 => self.first_url.clone(),
            k => self.more[k - 1].url.clone(),
        }
    }

    /// How many arbiter processes the group has.
    pub fn arbiter_count(&self) -> usize {
        1 + self.more.len()
    }

    /// Start arbiter `k` without waiting for it (a standby listens, and
    /// refers agents and fencectl to the leader); its log is `arbiter.log`
    /// or `arbiter-<k>.log`.
    pub fn spawn_arbiter(&mut self, k: usize) -> Result<(), CliError> {
        let d = self.dir.path().to_path_buf();
        let name = arbiter_name(k);
        let child = spawn_with(
            &self.bin.join("fence-arbiter"),
            &d.join(format!("{name}.toml")),
            &d.join(format!("{name}.log")),
            &self.arbiter_env,
            self.arbiter_gid_base.map(|b| b + k as u32),
        )?;
        match k {
            0 => self.arbiter = Some(child),
            k => self.more[k - 1].child = Some(child),
        }
        Ok(())
    }

    /// Arbiter `k`'s PID, while it runs.
    pub fn arbiter_k_pid(&self, k: usize) -> Option<u32> {
        match k {
            0 => self.arbiter.as_ref().map(|c| c.id()),
            k => self.more[k - 1].child.as_ref().map(|c| c.id()),
        }
    }

    /// Arbiter `k`'s exit status, once it has exited on its own (it is
    /// then reaped and no longer counted as running).
    pub fn arbiter_exited(&mut self, k: usize) -> Option<std::process::ExitStatus> {
        let slot = match k {
            0 => &mut self.arbiter,
            k => &mut self.more[k - 1].child,
        };
        let status = slot.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            *slot = None;
        }
        status
    }

    /// SIGKILL arbiter `k` (by its PID) and reap it.
    pub fn kill_arbiter(&mut self, k: usize) {
        let child = match k {
            0 => self.arbiter.take(),
            k => self.more[k - 1].child.take(),
        };
        if let Some(mut c) = child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Send `sig` to arbiter `k` (SIGSTOP / SIGCONT: a frozen arbiter).
    pub fn signal_arbiter(&self, k: usize, sig: Signal) -> Result<(), CliError> {
        let pid = self
            .arbiter_k_pid(k)
            .ok_or_else(|| err(format!("arbiter {k} does not run")))?;
        kill(Pid::from_raw(pid as i32), sig)
            .map_err(|e| err(format!("{sig:?} to arbiter {k} (pid {pid}): {e}")))
    }

    /// The arbiter's exit status, once it has exited on its own.
    pub fn arbiter_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.arbiter
            .as_mut()
            .and_then(|a| a.try_wait().ok().flatten())
    }

    /// Stop the arbiter gracefully (SIGTERM).
    pub fn stop_arbiter(&mut self) {
        if let Some(mut a) = self.arbiter.take() {
            stop_child(&mut a);
        }
    }

    /// Boot node `i`: a new boot id (every node of the cluster runs on
    /// this one machine, so each has a boot id file of its own), then its
    /// agent, plugged into both devices.
    pub fn start_agent(&mut self, i: u32) -> Result<u32, CliError> {
        draw_boot_id(&self.dir.path().join(format!("boot{i}")))?;
        self.restart_agent(i)
    }

    /// Start node `i`'s agent again in the same boot (the agent process
    /// restarted; the machine never went down), plugged into both devices.
    pub fn restart_agent(&mut self, i: u32) -> Result<u32, CliError> {
        let d = self.dir.path();
        let child = spawn(
            &self.bin.join("fence-agent"),
            &d.join(format!("agent{i}.toml")),
            &d.join(format!("agent{i}.log")),
            self.own_sessions,
        )?;
        let pid = child.id();
        self.device
            .register(&format!("node{i}"), pid)
            .map_err(|e| err(e.to_string()))?;
        if let Some(b) = &self.backup {
            b.register(&format!("node{i}"), pid)
                .map_err(|e| err(e.to_string()))?;
        }
        self.agents.retain(|(n, _)| *n != i);
        self.agents.push((i, child));
        Ok(pid)
    }

    /// A second machine configured as node `i` (a duplicate identity: a
    /// copied configuration, a cloned VM): node `i`'s agent configuration
    /// with a listening port and a boot id of its own, logging to
    /// `agent<i>-dup.log`. Not plugged into any power device: switching
    /// node `i` off does not stop it. Stopped with the cluster, or by
    /// `kill_duplicate_agent`.
    pub fn start_duplicate_agent(&mut self, i: u32) -> Result<u32, CliError> {
        let d = self.dir.path();
        let original = std::fs::read_to_string(d.join(format!("agent{i}.toml")))
            .map_err(|e| err(format!("node {i} has no agent configuration: {e}")))?;
        let port = free_ports(1)?[0];
        let boot = d.join(format!("boot{i}-dup"));
        draw_boot_id(&boot)?;
        let config: String = original
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    format!("listen = \"127.0.0.1:{port}\"")
                } else if l.starts_with("boot_id_file = ") {
                    format!("boot_id_file = \"{}\"", boot.display())
                } else if l.starts_with("run_dir = ") {
                    // (Another machine: its own /run.)
                    format!("run_dir = \"{}\"", d.join(format!("run{i}-dup")).display())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = d.join(format!("agent{i}-dup.toml"));
        write(&path, &config)?;
        let child = spawn(
            &self.bin.join("fence-agent"),
            &path,
            &d.join(format!("agent{i}-dup.log")),
            false,
        )?;
        let pid = child.id();
        self.duplicates.push((i, child));
        Ok(pid)
    }

    /// Kill node `i`'s duplicate (`start_duplicate_agent`).
    pub fn kill_duplicate_agent(&mut self, i: u32) -> Result<(), CliError> {
        let Some(at) = self.duplicates.iter().position(|(n, _)| *n == i) else {
            return Err(err(format!("node {i} has no duplicate agent")));
        };
        let (_, mut c) = self.duplicates.remove(at);
        let pid = Pid::from_raw(c.id() as i32);
        kill(pid, Signal::SIGKILL).map_err(|e| err(format!("SIGKILL to pid {pid}: {e}")))?;
        let _ = c.wait();
        Ok(())
    }

    pub fn agent_pid(&self, i: u32) -> Option<u32> {
        self.agents
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, c)| c.id())
    }

    pub fn arbiter_pid(&self) -> Option<u32> {
        self.arbiter.as_ref().map(|c| c.id())
    }

    /// The arbiter's and every agent's PID.
    pub fn pids(&self) -> Vec<u32> {
        self.arbiter_pid()
            .into_iter()
            .chain(self.agents.iter().map(|(_, c)| c.id()))
            .collect()
    }

    fn signal(&self, i: u32, sig: Signal) -> Result<(), CliError> {
        let pid = self
            .agent_pid(i)
            .ok_or_else(|| err(format!("node {i} has no agent")))?;
        kill(Pid::from_raw(pid as i32), sig)
            .map_err(|e| err(format!("{sig:?} to node {i} (pid {pid}): {e}")))
    }

    /// A hung node: SIGSTOP. Its "power" stays on.
    pub fn freeze(&self, i: u32) -> Result<(), CliError> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// A frozen agent runs again.
    pub fn thaw(&self, i: u32) -> Result<(), CliError> {
        self.signal(i, Signal::SIGCONT)
    }

    /// A node alive but cut off: the agent's fault-injection switch. It
    /// toggles: a second call reconnects the node.
    pub fn isolate(&self, i: u32) -> Result<(), CliError> {
        self.signal(i, Signal::SIGUSR1)
    }

    /// A node cut off from its peers only; it still reaches the arbiter.
    pub fn cut_from_peers(&self, i: u32) -> Result<(), CliError> {
        self.signal(i, Signal::SIGUSR2)
    }

    /// The agent process dies (power stays on: the machine still runs).
    pub fn kill_agent(&mut self, i: u32) -> Result<(), CliError> {
        self.signal(i, Signal::SIGKILL)?;
        if let Some((_, c)) = self.agents.iter_mut().find(|(n, _)| *n == i) {
            let _ = c.wait();
        }
        Ok(())
    }

    /// Wait until every node is a member holding a lease; returns the epoch.
    pub async fn wait_all_leased(&self, within: Duration) -> Result<u64, CliError> {
        let end = tokio::time::Instant::now() + within;
        loop {
            if let Ok(nodes) = fetch_nodes(&self.url, "demo").await
                && nodes.len() == self.nodes as usize
                && nodes.iter().all(|n| n.lease && n.state == "member")
            {
                return Ok(fetch_status(&self.url, "demo").await?.clusters[0].epoch);
            }
            if tokio::time::Instant::now() > end {
                return Err(err(format!(
                    "not every node held a lease within {within:?}; logs in {}",
                    self.dir().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait until these nodes all hold a lease as members; returns the epoch.
    pub async fn wait_all_leased_among(&self, ids: &[u32]) -> u64 {
        for _ in 0..400 {
            if let Ok(nodes) = fetch_nodes(&self.url, "demo").await
                && ids.iter().all(|i| {
                    nodes
                        .iter()
                        .any(|n| n.node == *i && n.lease && n.state == "member")
                })
                && let Ok(st) = fetch_status(&self.url, "demo").await
            {
                return st.clusters[0].epoch;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        0
    }

    /// Arbiter `k`'s log so far.
    pub fn arbiter_log(&self, k: usize) -> String {
        self.log(&arbiter_name(k))
    }

    /// The port arbiter `k` listens on (from its URL).
    pub fn arbiter_port(&self, k: usize) -> Option<u16> {
        self.arbiter_url(k)
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Stop everything, agents first.
    pub fn stop(&mut self) {
        for (_, c) in self.agents.iter_mut().chain(self.duplicates.iter_mut()) {
            stop_child(c);
        }
        self.agents.clear();
        self.duplicates.clear();
        self.stop_arbiter();
        for m in &mut self.more {
            if let Some(mut c) = m.child.take() {
                stop_child(&mut c);
            }
        }
    }

    /// Keep the directory after drop (for debugging); returns its path.
    pub fn keep(self) -> PathBuf {
        let mut this = self;
        this.stop();
        let dir = std::mem::replace(&mut this.dir, tempfile::tempdir().expect("tempdir"));
        dir.keep()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
