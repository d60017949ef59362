//! The operator-written spec of one resource: parsed from TOML by the
//! arbiter, shipped to the agents as JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default `arp_count` of an address.
pub const DEFAULT_ARP_COUNT: u32 = 5;
/// Default `arp_interval` of an address.
pub const DEFAULT_ARP_INTERVAL: Duration = Duration::from_millis(200);
/// Default `refresh` of an address.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
/// Default timeout of each OCF action and of each exec command.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `stop_timeout` of a process.
pub const DEFAULT_PROCESS_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `check_installed` lets an OCF agent's `meta-data` run.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many announcements after an address is added.
pub const MAX_ARP_COUNT: u32 = 100;

/// One resource of a group, tagged by `kind`. The crate docs list each
/// kind's keys and defaults; the accessors (`arp_count()`, ...) apply them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ResourceSpec {
    /// A floating IPv4/IPv6 address, added and removed through netlink.
    Address {
        /// `"192.0.2.10/24"` or `"fd00::10/64"`.
        address: String,
        /// Interface name, e.g. `eth0`.
        interface: String,
        /// Announcements after the address is added (default 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arp_count: Option<u32>,
        /// Time between two announcements (default 200ms).
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        arp_interval: Option<Duration>,
        /// One more announcement this often while held (default 10s; 0 = never).
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        refresh: Option<Duration>,
    },
    /// Any OCF resource agent, `"provider:type"` e.g. `"heartbeat:Dummy"`.
    Ocf {
        agent: String,
        /// Passed as `OCF_RESKEY_<name>`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
        /// Default 20s.
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        start_timeout: Option<Duration>,
        /// Default 20s.
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        stop_timeout: Option<Duration>,
        /// Default 20s.
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        monitor_timeout: Option<Duration>,
    },
    /// A service the agent runs itself.
    Process {
        /// Program and arguments (no shell).
        command: Vec<String>,
        /// SIGTERM, this long, then SIGKILL of the whole group (default 5s).
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        stop_timeout: Option<Duration>,
    },
    /// start/stop/monitor commands.
    Exec {
        start: Vec<String>,
        stop: Vec<String>,
        /// Exit 0 = running, 7 = stopped, else failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        monitor: Option<Vec<String>>,
        /// Each command's deadline (default 20s).
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    },
}

/// Timeouts of the three OCF actions, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcfTimeouts {
    pub start: Duration,
    pub stop: Duration,
    pub monitor: Duration,
}

impl ResourceSpec {
    /// `kind` as written in the spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Address { .. } => "address",
            Self::Ocf { .. } => "ocf",
            Self::Process { .. } => "process",
            Self::Exec { .. } => "exec",
        }
    }

    /// A short human description: `address 192.0.2.10/24 on eth0`,
    /// `ocf:heartbeat:Dummy`, `process nginx`, `exec start.sh`.
    pub fn label(&self) -> String {
        match self {
            Self::Address {
                address, interface, ..
            } => format!("address {address} on {interface}"),
            Self::Ocf { agent, .. } => format!("ocf:{agent}"),
            Self::Process { command, .. } => format!("process {}", program_name(command)),
            Self::Exec { start, .. } => format!("exec {}", program_name(start)),
        }
    }

    /// `arp_count` with its default (0 for other kinds).
    pub fn arp_count(&self) -> u32 {
        match self {
            Self::Address { arp_count, .. } => arp_count.unwrap_or(DEFAULT_ARP_COUNT),
            _ => 0,
        }
    }

    /// `arp_interval` with its default.
    pub fn arp_interval(&self) -> Duration {
        match self {
            Self::Address { arp_interval, .. } => arp_interval.unwrap_or(DEFAULT_ARP_INTERVAL),
            _ => DEFAULT_ARP_INTERVAL,
        }
    }

    /// `refresh` with its default; `None` when refreshes are off (`0s`).
    pub fn refresh(&self) -> Option<Duration> {
        match self {
            Self::Address { refresh, .. } => {
                Some(refresh.unwrap_or(DEFAULT_REFRESH)).filter(|d| !d.is_zero())
            }
            _ => None,
        }
    }

    /// The OCF timeouts with their defaults (the defaults for other kinds).
    pub fn ocf_timeouts(&self) -> OcfTimeouts {
        match self {
            Self::Ocf {
                start_timeout,
                stop_timeout,
                monitor_timeout,
                ..
            } => OcfTimeouts {
                start: start_timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT),
                stop: stop_timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT),
                monitor: monitor_timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT),
            },
            _ => OcfTimeouts {
                start: DEFAULT_ACTION_TIMEOUT,
                stop: DEFAULT_ACTION_TIMEOUT,
                monitor: DEFAULT_ACTION_TIMEOUT,
            },
        }
    }

    /// How long an urgent stop (the lease ended) may take before it counts
    /// as failed: the OCF stop timeout, the exec timeout, a second for an
    /// address or a process (killed, not asked).
    pub fn urgent_stop_bound(&self) -> Duration {
        match self {
            Self::Address { .. } | Self::Process { .. } => Duration::from_secs(1),
            Self::Ocf { .. } => self.ocf_timeouts().stop,
            Self::Exec { timeout, .. } => timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT),
        }
    }

    /// How long a start, a graceful stop or a monitor may take, each
    /// (`(start, stop, monitor)`): the OCF timeouts, the exec timeout, a
    /// process's `stop_timeout`, a second otherwise.
    pub fn action_bounds(&self) -> (Duration, Duration, Duration) {
        let second = Duration::from_secs(1);
        match self {
            Self::Address { .. } => (second, second, second),
            Self::Ocf { .. } => {
                let t = self.ocf_timeouts();
                (t.start, t.stop, t.monitor)
            }
            Self::Process { .. } => (second, self.process_stop_timeout(), second),
            Self::Exec { timeout, .. } => {
                let t = timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT);
                (t, t, t)
            }
        }
    }

    /// How long the urgent stop of a group of `specs` may take once the
    /// lease ends: what may hold the group then (its start, a graceful
    /// stop or a monitor, whichever is longest) and then its urgent stop.
    pub fn group_lapse_bound(specs: &[ResourceSpec]) -> Duration {
        let (mut start, mut stop, mut monitor) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for r in specs {
            let (a, b, c) = r.action_bounds();
            start += a;
            stop += b;
            monitor = monitor.max(c);
        }
        let urgent: Duration = specs.iter().map(|r| r.urgent_stop_bound()).sum();
        start.max(stop).max(monitor) + urgent
    }

    /// A process's `stop_timeout` with its default.
    pub fn process_stop_timeout(&self) -> Duration {
        match self {
            Self::Process { stop_timeout, .. } => {
                stop_timeout.unwrap_or(DEFAULT_PROCESS_STOP_TIMEOUT)
            }
            _ => DEFAULT_PROCESS_STOP_TIMEOUT,
        }
    }

    /// An exec's `timeout` with its default.
    pub fn exec_timeout(&self) -> Duration {
        match self {
            Self::Exec { timeout, .. } => timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT),
            _ => DEFAULT_ACTION_TIMEOUT,
        }
    }

    /// Every static problem of the spec (nothing on this node is looked
    /// at), each message self-contained; the caller prefixes where the
    /// spec is (`cluster.group[0].resources[1]: ...`). Empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self {
            Self::Address {
                address,
                interface,
                arp_count,
                arp_interval,
                refresh: _,
            } => {
                if let Err(e) = parse_cidr(address) {
                    p.push(e);
                }
                if let Err(e) = check_interface_name(interface) {
                    p.push(e);
                }
                let count = arp_count.unwrap_or(DEFAULT_ARP_COUNT);
                if count > MAX_ARP_COUNT {
                    p.push(format!(
                        "arp_count {count} is more than {MAX_ARP_COUNT} announcements"
                    ));
                }
                if count > 1 && arp_interval.is_some_and(|d| d.is_zero()) {
                    p.push(format!(
                        "arp_interval is 0 with arp_count {count}: the announcements need time between them"
                    ));
                }
            }
            Self::Ocf {
                agent,
                params,
                start_timeout,
                stop_timeout,
                monitor_timeout,
            } => {
                if let Err(e) = split_agent(agent) {
                    p.push(e);
                }
                for (name, value) in params {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        p.push(format!(
                            "params: {name:?} is not a parameter name (letters, digits and _ only: it becomes OCF_RESKEY_{name})"
                        ));
                    }
                    if value.contains('\0') {
                        p.push(format!("params.{name}: the value contains a NUL byte"));
                    }
                }
                for (key, t) in [
                    ("start_timeout", start_timeout),
                    ("stop_timeout", stop_timeout),
                    ("monitor_timeout", monitor_timeout),
                ] {
                    if t.is_some_and(|d| d.is_zero()) {
                        p.push(format!("{key} is 0: give the action some time"));
                    }
                }
            }
            Self::Process {
                command,
                stop_timeout,
            } => {
                check_command("command", command, &mut p);
                if stop_timeout.is_some_and(|d| d.is_zero()) {
                    p.push("stop_timeout is 0: give the process some time to stop after SIGTERM (an urgent stop SIGKILLs it anyway)".to_owned());
                }
            }
            Self::Exec {
                start,
                stop,
                monitor,
                timeout,
            } => {
                check_command("start", start, &mut p);
                check_command("stop", stop, &mut p);
                if let Some(m) = monitor {
                    check_command("monitor", m, &mut p);
                }
                if timeout.is_some_and(|d| d.is_zero()) {
                    p.push("timeout is 0: give the commands some time".to_owned());
                }
            }
        }
        p
    }

    /// What is missing on this node for the resource to run: the interface
    /// of an address; an OCF agent that is not installed or not executable,
    /// parameters its `meta-data` does not list, required ones missing; a
    /// program of a process or exec that is not found or not executable.
    /// Async because it runs the OCF agent's `meta-data` (at most
    /// [`METADATA_TIMEOUT`]). OCF agents are looked up under `$OCF_ROOT`
    /// (default `/usr/lib/ocf`).
    pub async fn check_installed(&self) -> Vec<String> {
        self.check_installed_in(&crate::ocf::ocf_root()).await
    }

    /// [`Self::check_installed`] with OCF agents under `ocf_root`.
    pub async fn check_installed_in(&self, ocf_root: &Path) -> Vec<String> {
        let mut p = Vec::new();
        match self {
            Self::Address { interface, .. } => {
                if check_interface_name(interface).is_ok()
                    && nix::net::if_::if_nametoindex(interface.as_str()).is_err()
                {
                    p.push(format!("interface {interface} does not exist on this node"));
                }
            }
            Self::Ocf { agent, params, .. } => {
                let path = match crate::ocf::agent_path(ocf_root, agent) {
                    Ok(path) => path,
                    Err(e) => return vec![e],
                };
                if let Err(e) = check_executable(&path) {
                    return vec![format!("OCF agent {agent}: {e}")];
                }
                match crate::ocf::agent_metadata(ocf_root, agent, METADATA_TIMEOUT).await {
                    Ok(meta) => p.extend(crate::ocf::check_params(agent, &meta, params)),
                    Err(e) => p.push(format!("OCF agent {agent}: {e}")),
                }
            }
            Self::Process { command, .. } => {
                if let Some(program) = command.first()
                    && let Err(e) = find_program(program)
                {
                    p.push(format!("command: {e}"));
                }
            }
            Self::Exec {
                start,
                stop,
                monitor,
                ..
            } => {
                for (key, cmd) in [
                    ("start", Some(start)),
                    ("stop", Some(stop)),
                    ("monitor", monitor.as_ref()),
                ] {
                    if let Some(program) = cmd.and_then(|c| c.first())
                        && let Err(e) = find_program(program)
                    {
                        p.push(format!("{key}: {e}"));
                    }
                }
            }
        }
        p
    }
}

fn program_name(command: &[String]) -> String {
    command
        .first()
        .map(|p| {
            Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.clone())
        })
        .unwrap_or_else(|| "(empty command)".to_owned())
}

fn check_command(key: &str, command: &[String], p: &mut Vec<String>) {
    match command.first() {
        None => p.push(format!("{key} is empty: it needs at least the program")),
        Some(program) if program.trim().is_empty() => {
            p.push(format!("{key}: the program (first element) is empty"))
        }
        Some(_) => {}
    }
    for (i, arg) in command.iter().enumerate() {
        if arg.contains('\0') {
            p.push(format!("{key}[{i}] contains a NUL byte"));
        }
    }
}

/// Parse `"192.0.2.10/24"` or `"fd00::10/64"`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((ip, prefix)) = s.split_once('/') else {
        return Err(format!(
            "address {s:?} has no prefix length: write it as ADDRESS/PREFIX, e.g. 192.0.2.10/24"
        ));
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("address {s:?}: {ip:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
        format!("address {s:?}: prefix length {prefix:?} is not a number from 0 to {max}")
    })?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(format!(
            "address {s:?} is an unspecified, loopback or multicast address: not one a node can float"
        ));
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err(format!("address {s:?} is the broadcast address"));
    }
    Ok((ip, prefix))
}

/// The kernel's rule for an interface name (`dev_valid_name`).
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface is empty".to_owned());
    }
    if name.len() > 15 {
        return Err(format!(
            "interface {name:?} is longer than 15 bytes, the kernel's limit for an interface name"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface {name:?} is not a valid interface name (no '/', ':', whitespace, '.' or '..')"
        ));
    }
    Ok(())
}

/// Split `"provider:type"`.
pub fn split_agent(agent: &str) -> Result<(&str, &str), String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match agent.split_once(':') {
        Some((provider, kind)) if ok(provider) && ok(kind) => Ok((provider, kind)),
        _ => Err(format!(
            "agent {agent:?} is not \"provider:type\" (e.g. \"heartbeat:IPaddr2\"; letters, digits, '_', '-', '.')"
        )),
    }
}

/// Find a program as `execvp` would: a name with a `/` as is, else in `PATH`.
pub fn find_program(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        check_executable(&path).map(|()| path)
    } else {
        let path_var = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path_var)
            .map(|dir| dir.join(program))
            .find(|p| check_executable(p).is_ok())
            .ok_or_else(|| format!("program {program} is not found in PATH"))
    }
}

/// The path is a regular file with an execute bit.
pub(crate) fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} does not exist", path.display()))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(m) if !m.is_file() => Err(format!("{} is not a regular file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(format!("{} is not executable", path.display()))
        }
        Ok(_) => Ok(()),
    }
}
