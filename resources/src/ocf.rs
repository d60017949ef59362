//! OCF resource agents: `$OCF_ROOT/resource.d/<provider>/<type> <action>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::{self, Outcome, RunError};
use crate::env::RunEnv;
use crate::error::ResourceError;
use crate::resource::Health;
use crate::spec::{OcfTimeouts, split_agent};

/// Where OCF lives unless `OCF_ROOT` says otherwise.
pub const DEFAULT_OCF_ROOT: &str = "/usr/lib/ocf";

/// `$OCF_ROOT`, else [`DEFAULT_OCF_ROOT`].
pub fn ocf_root() -> PathBuf {
    std::env::var_os("OCF_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OCF_ROOT))
}

/// `<root>/resource.d/<provider>/<type>` for `"provider:type"`.
pub fn agent_path(root: &Path, agent: &str) -> Result<PathBuf, String> {
    let (provider, kind) = split_agent(agent)?;
    Ok(root.join("resource.d").join(provider).join(kind))
}

/// What an OCF exit code means.
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "generic error",
        2 => "invalid arguments",
        3 => "unimplemented feature",
        4 => "insufficient privileges",
        5 => "not installed",
        6 => "not configured",
        7 => "not running",
        8 => "running promoted",
        9 => "failed promoted",
        _ => "not an OCF exit code",
    }
}

/// What an agent's `meta-data` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcfMetadata {
    /// `<resource-agent name=...>`.
    pub name: String,
    pub parameters: Vec<OcfParameter>,
}

/// One `<parameter>` of an agent's `meta-data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcfParameter {
    pub name: String,
    /// `required="1"`.
    pub required: bool,
    /// `unique="1"`.
    pub unique: bool,
    /// `<content default=...>`.
    pub default: Option<String>,
    /// `<shortdesc>`, trimmed (empty if none).
    pub description: String,
}

fn flag(node: roxmltree::Node<'_, '_>, attr: &str) -> bool {
    matches!(node.attribute(attr), Some("1" | "true" | "yes"))
}

/// Parse an agent's `meta-data` XML.
pub fn parse_metadata(xml: &str) -> Result<OcfMetadata, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts)
        .map_err(|e| format!("meta-data is not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "resource-agent" {
        return Err(format!(
            "meta-data root is <{}>, expected <resource-agent>",
            root.tag_name().name()
        ));
    }
    let name = root.attribute("name").unwrap_or_default().to_owned();
    let mut parameters = Vec::new();
    for params in root.children().filter(|n| n.has_tag_name("parameters")) {
        for p in params.children().filter(|n| n.has_tag_name("parameter")) {
            let Some(pname) = p.attribute("name") else {
                return Err("meta-data has a <parameter> without a name".to_owned());
            };
            let child = |tag: &str| p.children().find(|n| n.has_tag_name(tag));
            parameters.push(OcfParameter {
                name: pname.to_owned(),
                required: flag(p, "required"),
                unique: flag(p, "unique"),
                default: child("content")
                    .and_then(|c| c.attribute("default"))
                    .map(str::to_owned),
                description: child("shortdesc")
                    .and_then(|d| d.text())
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            });
        }
    }
    Ok(OcfMetadata { name, parameters })
}

/// Run `<agent> meta-data` under `root` and parse it.
pub async fn agent_metadata(
    root: &Path,
    agent: &str,
    timeout: Duration,
) -> Result<OcfMetadata, String> {
    let path = agent_path(root, agent)?;
    let envs = vec![("OCF_ROOT".to_owned(), root.display().to_string())];
    let program = path.display().to_string();
    match cmd::run(&program, &["meta-data".to_owned()], &envs, timeout).await {
        Ok(out) if out.status.success() => parse_metadata(&out.stdout),
        Ok(out) => Err(format!(
            "meta-data failed with {}: {}",
            out.describe_status(),
            out.last_line()
        )),
        Err(RunError::Spawn(e) | RunError::Wait(e)) => Err(format!("cannot run {program}: {e}")),
        Err(RunError::Timeout) => Err(format!(
            "meta-data did not answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Parameters the agent does not take, and required ones not given.
pub fn check_params(
    agent: &str,
    meta: &OcfMetadata,
    params: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut p = Vec::new();
    for name in params.keys() {
        if !meta.parameters.iter().any(|m| &m.name == name) {
            let known: Vec<&str> = meta.parameters.iter().map(|m| m.name.as_str()).collect();
            p.push(format!(
                "params.{name}: OCF agent {agent} does not take this parameter (it takes: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for m in meta.parameters.iter().filter(|m| m.required) {
        if !params.contains_key(&m.name) {
            p.push(format!(
                "params.{}: required by OCF agent {agent} and missing{}",
                m.name,
                if m.description.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.description)
                }
            ));
        }
    }
    p
}

/// One OCF resource.
#[derive(Debug)]
pub(crate) struct Ocf {
    resource: String,
    instance: String,
    provider: String,
    kind: String,
    params: BTreeMap<String, String>,
    timeouts: OcfTimeouts,
    root: PathBuf,
}

impl Ocf {
    pub fn new(
        resource: String,
        instance: String,
        agent: &str,
        params: BTreeMap<String, String>,
        timeouts: OcfTimeouts,
    ) -> Result<Self, String> {
        let (provider, kind) = split_agent(agent)?;
        Ok(Self {
            resource,
            instance,
            provider: provider.to_owned(),
            kind: kind.to_owned(),
            params,
            timeouts,
            root: ocf_root(),
        })
    }

    pub fn set_root(&mut self, root: PathBuf) {
        self.root = root;
    }

    fn path(&self) -> PathBuf {
        self.root
            .join("resource.d")
            .join(&self.provider)
            .join(&self.kind)
    }

    async fn run(
        &self,
        action: &'static str,
        timeout: Duration,
        env: &RunEnv,
    ) -> Result<Outcome, ResourceError> {
        let mut envs = vec![
            ("OCF_ROOT".to_owned(), self.root.display().to_string()),
            ("OCF_RA_VERSION_MAJOR".to_owned(), "1".to_owned()),
            ("OCF_RA_VERSION_MINOR".to_owned(), "0".to_owned()),
            ("OCF_RESOURCE_INSTANCE".to_owned(), self.instance.clone()),
            ("OCF_RESOURCE_TYPE".to_owned(), self.kind.clone()),
            ("OCF_RESOURCE_PROVIDER".to_owned(), self.provider.clone()),
            (
                "OCF_RESKEY_CRM_meta_timeout".to_owned(),
                timeout.as_millis().to_string(),
            ),
        ];
        envs.extend(
            self.params
                .iter()
                .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone())),
        );
        envs.extend(env.vars());
        let program = self.path().display().to_string();
        tracing::debug!(resource = %self.resource, action, agent = %program, "running OCF agent");
        match cmd::run(&program, &[action.to_owned()], &envs, timeout).await {
            Ok(out) => {
                tracing::debug!(resource = %self.resource, action, status = %out.describe_status(), "OCF agent finished");
                Ok(out)
            }
            Err(RunError::Spawn(source) | RunError::Wait(source)) => Err(ResourceError::Spawn {
                resource: self.resource.clone(),
                action,
                program,
                source,
            }),
            Err(RunError::Timeout) => Err(ResourceError::Timeout {
                resource: self.resource.clone(),
                action,
                timeout,
            }),
        }
    }

    fn failure(&self, action: &'static str, out: &Outcome) -> ResourceError {
        match out.status.code() {
            Some(code) => ResourceError::Ocf {
                resource: self.resource.clone(),
                action,
                code,
                meaning: exit_meaning(code),
                detail: out.last_line(),
            },
            None => ResourceError::Failed {
                resource: self.resource.clone(),
                action,
                reason: format!(
                    "the agent was {}: {}",
                    out.describe_status(),
                    out.last_line()
                ),
            },
        }
    }

    pub async fn start(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        let out = self.run("start", self.timeouts.start, env).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure("start", &out))
        }
    }

    pub async fn stop(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        let out = self.run("stop", self.timeouts.stop, env).await?;
        match out.status.code() {
            Some(0) => Ok(()),
            // Stopping a stopped resource must return 0; some agents say
            // "not running" instead, which is just as stopped.
            Some(7) => {
                tracing::debug!(resource = %self.resource, "stop said not running: already stopped");
                Ok(())
            }
            _ => Err(self.failure("stop", &out)),
        }
    }

    pub async fn monitor(&mut self, env: &RunEnv) -> Result<Health, ResourceError> {
        let out = self.run("monitor", self.timeouts.monitor, env).await?;
        Ok(match out.status.code() {
            Some(0 | 8) => Health::Running,
            Some(7) => Health::Stopped,
            Some(code) => Health::Failed(format!(
                "OCF exit code {code} ({}): {}",
                exit_meaning(code),
                out.last_line()
            )),
            None => Health::Failed(format!(
                "the agent was {}: {}",
                out.describe_status(),
                out.last_line()
            )),
        })
    }
}
