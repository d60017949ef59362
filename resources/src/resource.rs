//! One running resource, of any kind.

use std::fmt;
use std::path::PathBuf;

use crate::address::Address;
use crate::env::RunEnv;
use crate::error::ResourceError;
use crate::exec::Exec;
use crate::ocf::Ocf;
use crate::process::Process;
use crate::spec::{ResourceSpec, parse_cidr};

/// What a monitor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Running,
    Stopped,
    /// Failed, and why.
    Failed(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Stopped => f.write_str("stopped"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Address(Address),
    Ocf(Ocf),
    Process(Process),
    Exec(Exec),
}

/// One resource of a group, built from its [`ResourceSpec`]; it keeps the
/// state of what it started (a process's child, an address's announcer).
/// Dropping it stops an address's announcements but not a process: stop
/// it first.
#[derive(Debug)]
pub struct Resource {
    spec: ResourceSpec,
    index: usize,
    instance: String,
    label: String,
    kind: Kind,
}

impl Resource {
    /// Build the resource at `index` of group `group`; its instance name is
    /// `<group>-<index>` (`OCF_RESOURCE_INSTANCE`, the cgroup's name).
    /// Fails if [`ResourceSpec::validate`] finds a problem.
    pub fn new(spec: ResourceSpec, group: &str, index: usize) -> Result<Self, ResourceError> {
        let instance = format!("{group}-{index}");
        let label = spec.label();
        let resource = format!("{instance} ({label})");
        let problems = spec.validate();
        if !problems.is_empty() {
            return Err(ResourceError::Invalid {
                resource,
                problems: problems.join("; "),
            });
        }
        let invalid = |problems: String| ResourceError::Invalid {
            resource: resource.clone(),
            problems,
        };
        let kind = match &spec {
            ResourceSpec::Address {
                address, interface, ..
            } => {
                let (ip, prefix) = parse_cidr(address).map_err(invalid)?;
                Kind::Address(Address::new(
                    resource.clone(),
                    ip,
                    prefix,
                    interface.clone(),
                    spec.arp_count(),
                    spec.arp_interval(),
                    spec.refresh(),
                ))
            }
            ResourceSpec::Ocf { agent, params, .. } => Kind::Ocf(
                Ocf::new(
                    resource.clone(),
                    instance.clone(),
                    agent,
                    params.clone(),
                    spec.ocf_timeouts(),
                )
                .map_err(invalid)?,
            ),
            ResourceSpec::Process { command, .. } => Kind::Process(Process::new(
                resource.clone(),
                instance.clone(),
                command.clone(),
                spec.process_stop_timeout(),
            )),
            ResourceSpec::Exec {
                start,
                stop,
                monitor,
                ..
            } => Kind::Exec(Exec::new(
                resource.clone(),
                start.clone(),
                stop.clone(),
                monitor.clone(),
                spec.exec_timeout(),
            )),
        };
        Ok(Self {
            spec,
            index,
            instance,
            label,
            kind,
        })
    }

    /// Run OCF agents from `root` instead of `$OCF_ROOT` (no effect on other kinds).
    pub fn with_ocf_root(mut self, root: impl Into<PathBuf>) -> Self {
        if let Kind::Ocf(ocf) = &mut self.kind {
            ocf.set_root(root.into());
        }
        self
    }

    /// Look for cgroup v2 at `root` instead of `/sys/fs/cgroup` (no effect
    /// on kinds other than `process`).
    pub fn with_cgroup_root(mut self, root: impl Into<PathBuf>) -> Self {
        if let Kind::Process(p) = &mut self.kind {
            p.set_cgroup_root(root.into());
        }
        self
    }

    /// Record the pid of a `process` resource under `root`
    /// (`<root>/node<id>/<instance>.pid`), and let its stop, in a process
    /// that did not start it, kill what the recorded pid's group and its
    /// cgroup (under `fence-agent/<scope>/node<id>/`, `scope` being the
    /// cluster) still hold (what an agent killed with SIGKILL left). No
    /// effect on other kinds.
    pub fn with_state(mut self, root: impl Into<PathBuf>, scope: &str) -> Self {
        if let Kind::Process(p) = &mut self.kind {
            p.set_state(root.into(), scope);
        }
        self
    }

    pub fn spec(&self) -> &ResourceSpec {
        &self.spec
    }

    /// Its index in the group.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `<group>-<index>`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// See [`ResourceSpec::label`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether this is an `address` (an urgent group stop removes those first).
    pub fn is_address(&self) -> bool {
        matches!(self.kind, Kind::Address(_))
    }

    /// The pid (also the process group id) of a running `process`.
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Process(p) => p.pid(),
            _ => None,
        }
    }

    /// Start it. Starting a running resource succeeds.
    #[tracing::instrument(skip_all, fields(resource = %self.instance, label = %self.label, epoch = env.epoch))]
    pub async fn start(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        tracing::info!("starting");
        match &mut self.kind {
            Kind::Address(a) => a.start().await,
            Kind::Ocf(o) => o.start(env).await,
            Kind::Process(p) => p.start(env).await,
            Kind::Exec(e) => e.start(env).await,
        }
    }

    /// Stop it. `urgent` (the lease lapsed): a process is SIGKILLed at once,
    /// without SIGTERM grace; other kinds stop as usual (OCF and exec under
    /// their stop timeout). Stopping a stopped resource succeeds.
    #[tracing::instrument(skip_all, fields(resource = %self.instance, label = %self.label, epoch = env.epoch, urgent))]
    pub async fn stop(&mut self, env: &RunEnv, urgent: bool) -> Result<(), ResourceError> {
        tracing::info!("stopping");
        match &mut self.kind {
            Kind::Address(a) => a.stop().await,
            Kind::Ocf(o) => o.stop(env).await,
            Kind::Process(p) => p.stop(env, urgent).await,
            Kind::Exec(e) => e.stop(env).await,
        }
    }

    /// Check it. `Err` when the check itself could not be made (the monitor
    /// could not run, or timed out); `Ok(Failed)` when it says failed.
    /// An address's refreshes are sent by a task of their own, not here.
    pub async fn monitor(&mut self, env: &RunEnv) -> Result<Health, ResourceError> {
        let health = match &mut self.kind {
            Kind::Address(a) => a.monitor().await,
            Kind::Ocf(o) => o.monitor(env).await,
            Kind::Process(p) => p.monitor(env).await,
            Kind::Exec(e) => e.monitor(env).await,
        };
        tracing::debug!(resource = %self.instance, health = ?health, "monitor");
        health
    }

    /// For an address: wait until the first burst of announcements after
    /// start is sent (at most `arp_count × arp_interval`). Other kinds:
    /// returns at once.
    pub async fn announced(&mut self) {
        if let Kind::Address(a) = &mut self.kind {
            a.announced().await;
        }
    }
}
