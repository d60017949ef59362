//! `exec`: runs any ClusterLabs `fence_*` agent with its stdin protocol.
//!
//! The agent gets no arguments; its options come as `key=value` lines on
//! stdin (`action=`, `plug=`, then the device's parameters), so secrets never
//! reach argv or logs. Exit status 0 is success; for `status`, 0 means on and
//! 2 means off. On timeout the agent's whole process group is killed.
//!
//! Parameters are checked against the agent's own `metadata` XML before
//! first use (unknown ones are refused, required ones must be set), then the
//! agent's `validate-all` must pass.
//!
//! Secrets (any parameter whose name contains `passw`, and `community`) are
//! never written as plain parameters: they come from `secrets`, each
//! `"file:/path"` or `"env:VARIABLE"`, and are redacted from every error.
//!
//! Caveat: some agents pass secrets on to tools on *their* command line
//! (`fence_ipmilan` runs `ipmitool -P <password>`), where other local users
//! can read them; that is the agent's doing, not ours.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

use crate::{DriverMetadata, FenceDriver, FenceError, Parameter, Port, PowerState};

pub use crate::secret::{Secret, is_secret_name, load_secret};

/// Find an agent by name (`fence_ipmilan`, looked up in /usr/sbin, /sbin,
/// /usr/bin and PATH) or by path.
pub fn resolve_agent(agent: &str) -> Result<PathBuf, FenceError> {
    let bad = |reason: String| FenceError::InvalidParameter {
        key: "agent".into(),
        reason,
    };
    if agent.contains('/') {
        let p = PathBuf::from(agent);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(bad(format!("{agent} does not exist")))
        };
    }
    if !agent.starts_with("fence_") || agent.contains(char::is_whitespace) {
        return Err(bad(format!(
            "{agent:?}: expected a ClusterLabs agent name such as fence_ipmilan, or a path"
        )));
    }
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(agent))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            bad(format!(
                "{agent} not found in /usr/sbin, /sbin, /usr/bin or PATH (install fence-agents)"
            ))
        })
}

/// An agent's parameters, from its own `metadata` action (same process
/// handling as a fence: stdin, timeout, process-group kill).
pub async fn agent_metadata(agent: &str, timeout: Duration) -> Result<DriverMetadata, FenceError> {
    let mut d = ExecDriver::unchecked(agent.to_string(), agent, timeout)?;
    d.load_metadata().await?;
    Ok(d.metadata)
}

/// Parse a fence agent's `metadata` XML.
pub fn parse_metadata(xml: &str) -> Result<DriverMetadata, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("metadata is not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "resource-agent" {
        return Err(format!(
            "metadata root is <{}>, expected <resource-agent>",
            root.tag_name().name()
        ));
    }
    let name = root.attribute("name").unwrap_or("fence agent").to_string();
    let description = root.attribute("shortdesc").unwrap_or_default().to_string();
    let parameters = root
        .descendants()
        .filter(|n| n.has_tag_name("parameter"))
        .filter_map(|p| {
            let name = p.attribute("name")?.to_string();
            let description = p
                .children()
                .find(|c| c.has_tag_name("shortdesc"))
                .and_then(|c| c.text())
                .unwrap_or_default()
                .to_string();
            Some(Parameter {
                required: p.attribute("required") == Some("1"),
                secret: is_secret_name(&name),
                name,
                description,
            })
        })
        .collect();
    Ok(DriverMetadata {
        name,
        description,
        parameters,
        confirms_power_state: true,
    })
}

/// Pairs (parameter, the older name it replaces) from `obsoletes=`
/// attributes: either name satisfies a requirement on the other.
pub fn parse_aliases(xml: &str) -> Vec<(String, String)> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("parameter"))
        .filter_map(|p| {
            Some((
                p.attribute("name")?.to_string(),
                p.attribute("obsoletes")?.to_string(),
            ))
        })
        .collect()
}

/// Parameters the arbiter sets for each call, never in the config.
const PER_CALL: &[&str] = &["action", "plug", "port", "nodename"];

/// What one run of the agent returned.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

#[derive(Debug, Clone)]
pub struct ExecDriver {
    name: String,
    agent: PathBuf,
    params: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
    timeout: Duration,
    metadata: DriverMetadata,
    aliases: Vec<(String, String)>,
}

impl ExecDriver {
    /// Build and validate: resolve the agent, read its metadata, check the
    /// parameters, run `validate-all`. Blocking-free; call from async code.
    pub async fn new(
        name: impl Into<String>,
        agent: &str,
        params: BTreeMap<String, String>,
        secrets: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, FenceError> {
        Self::with_sample_port(name, agent, params, secrets, timeout, None).await
    }

    /// As [`ExecDriver::new`]; `sample_port` is a port the device will be
    /// asked about (an outlet), passed to `validate-all` for agents whose
    /// metadata requires a plug. Without one such agents skip `validate-all`.
    pub async fn with_sample_port(
        name: impl Into<String>,
        agent: &str,
        params: BTreeMap<String, String>,
        secrets: BTreeMap<String, String>,
        timeout: Duration,
        sample_port: Option<&str>,
    ) -> Result<Self, FenceError> {
        let mut secret_values = BTreeMap::new();
        for (k, source) in &secrets {
            secret_values.insert(k.clone(), load_secret(k, source)?);
        }
        let mut d = ExecDriver::unchecked(name.into(), agent, timeout)?;
        d.params = params;
        d.secrets = secret_values;
        d.load_metadata().await?;
        d.check_params()?;
        let needs_plug = d
            .metadata
            .parameters
            .iter()
            .any(|p| p.required && (p.name == "plug" || p.name == "port"));
        if needs_plug && sample_port.is_none_or(str::is_empty) {
            return Ok(d);
        }
        let v = d
            .run("validate-all", sample_port.filter(|_| needs_plug), true)
            .await?;
        if v.code != Some(0) {
            return Err(FenceError::InvalidParameter {
                key: "agent".into(),
                reason: format!(
                    "{} validate-all failed: {}",
                    d.agent.display(),
                    d.redact(last_line(&v))
                ),
            });
        }
        Ok(d)
    }

    /// The agent resolved, no parameters, metadata not read yet.
    fn unchecked(name: String, agent: &str, timeout: Duration) -> Result<Self, FenceError> {
        Ok(ExecDriver {
            name,
            agent: resolve_agent(agent)?,
            params: BTreeMap::new(),
            secrets: BTreeMap::new(),
            timeout,
            metadata: DriverMetadata {
                name: String::new(),
                description: String::new(),
                parameters: vec![],
                confirms_power_state: true,
            },
            aliases: Vec::new(),
        })
    }

    /// Run the agent's `metadata` action and keep what it says.
    async fn load_metadata(&mut self) -> Result<(), FenceError> {
        let meta = self.run("metadata", None, false).await?;
        if meta.code != Some(0) {
            return Err(self.failed("metadata", &meta));
        }
        self.metadata = parse_metadata(&meta.stdout).map_err(|e| self.device_err(e))?;
        self.aliases = parse_aliases(&meta.stdout);
        Ok(())
    }

    fn check_params(&self) -> Result<(), FenceError> {
        let known: BTreeMap<&str, &Parameter> = self
            .metadata
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        for k in self.params.keys() {
            if is_secret_name(k) {
                return Err(FenceError::InvalidParameter {
                    key: k.clone(),
                    reason: format!(
                        "a secret: give it as secrets = {{ {k} = \"file:/path\" }} or \"env:VAR\""
                    ),
                });
            }
            if PER_CALL.contains(&k.as_str()) {
                return Err(FenceError::InvalidParameter {
                    key: k.clone(),
                    reason: "set by the arbiter for each fence; remove it".into(),
                });
            }
        }
        for k in self.params.keys().chain(self.secrets.keys()) {
            if !known.contains_key(k.as_str()) {
                return Err(FenceError::InvalidParameter {
                    key: k.clone(),
                    reason: format!(
                        "{} does not take this parameter (see its metadata)",
                        self.metadata.name
                    ),
                });
            }
        }
        let given = |n: &str| self.params.contains_key(n) || self.secrets.contains_key(n);
        let alias_given = |n: &str| {
            self.aliases
                .iter()
                .any(|(new, old)| (new == n && given(old)) || (old == n && given(new)))
        };
        for p in &self.metadata.parameters {
            if p.required
                && !PER_CALL.contains(&p.name.as_str())
                && !given(&p.name)
                && !alias_given(&p.name)
            {
                return Err(FenceError::InvalidParameter {
                    key: p.name.clone(),
                    reason: format!("required by {}: {}", self.metadata.name, p.description),
                });
            }
        }
        Ok(())
    }

    fn device_err(&self, reason: impl std::fmt::Display) -> FenceError {
        FenceError::Device {
            device: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Replace every secret value in `text` by `***`.
    fn redact(&self, text: &str) -> String {
        crate::secret::redact(text, self.secrets.values())
    }

    fn failed(&self, action: &str, r: &Run) -> FenceError {
        FenceError::Refused {
            device: self.name.clone(),
            reason: format!(
                "{} {action} exited with {}: {}",
                self.metadata.name,
                r.code.map_or("a signal".to_string(), |c| c.to_string()),
                self.redact(last_line(r))
            ),
        }
    }

    /// Run the agent once. `full` sends the device's parameters and secrets.
    async fn run(&self, action: &str, port: Option<&str>, full: bool) -> Result<Run, FenceError> {
        let mut input = format!("action={action}\n");
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            input += &format!("plug={p}\n");
        }
        if full {
            for (k, v) in &self.params {
                input += &format!("{k}={v}\n");
            }
            for (k, v) in &self.secrets {
                input += &format!("{k}={}\n", v.expose());
            }
        }
        let mut cmd = tokio::process::Command::new(&self.agent);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout kills the tools it started too.
        cmd.as_std_mut().process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.device_err(format!("cannot run {}: {e}", self.agent.display())))?;
        let pgid = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            // An agent that exits without reading is not an error here.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(Run {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(e)) => Err(self.device_err(format!("{}: {e}", self.agent.display()))),
            Err(_) => {
                if let Some(id) = pgid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(id), Signal::SIGKILL);
                }
                Err(FenceError::Timeout {
                    device: self.name.clone(),
                    timeout: self.timeout,
                })
            }
        }
    }
}

/// The most telling line of an agent's output: its last non-empty stderr
/// line, else stdout's.
fn last_line(r: &Run) -> &str {
    fn pick(s: &str) -> Option<&str> {
        s.lines().rev().find(|l| {
            !l.trim().is_empty()
                && !l.contains("DeprecationWarning")
                && !l.trim_start().starts_with("from ")
        })
    }
    pick(&r.stderr)
        .or_else(|| pick(&r.stdout))
        .unwrap_or("no output")
        .trim()
}

#[async_trait]
impl FenceDriver for ExecDriver {
    fn device(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> DriverMetadata {
        self.metadata.clone()
    }

    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        let r = self.run("status", Some(port), true).await?;
        match r.code {
            Some(0) => Ok(PowerState::On),
            Some(2) => Ok(PowerState::Off),
            _ => Err(self.failed("status", &r)),
        }
    }

    async fn on(&self, port: &str) -> Result<(), FenceError> {
        let r = self.run("on", Some(port), true).await?;
        if r.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed("on", &r))
        }
    }

    async fn off(&self, port: &str) -> Result<(), FenceError> {
        let r = self.run("off", Some(port), true).await?;
        if r.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed("off", &r))
        }
    }

    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        let r = self.run("list", None, true).await?;
        if r.code != Some(0) {
            return Err(self.failed("list", &r));
        }
        // "plug,alias" per line.
        Ok(r.stdout
            .lines()
            .filter_map(|l| l.split(',').next())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| Port {
                id: id.to_string(),
                state: PowerState::Unknown,
            })
            .collect())
    }

    async fn monitor(&self) -> Result<(), FenceError> {
        let r = self.run("monitor", None, true).await?;
        if r.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed("monitor", &r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::off_and_confirm;

    /// fence_dummy (from ClusterLabs fence-agents) keeps its "power" in a
    /// status file. Under CI=true a missing agent is a failure.
    fn dummy_available() -> bool {
        let ok = resolve_agent("fence_dummy").is_ok();
        if !ok && std::env::var("CI").as_deref() == Ok("true") {
            panic!("fence_dummy is missing: install fence-agents (scripts/test does it as root)");
        }
        ok
    }

    async fn dummy(dir: &std::path::Path) -> ExecDriver {
        let params = [(
            "status_file".to_string(),
            dir.join("status").display().to_string(),
        )]
        .into();
        ExecDriver::new(
            "dummy",
            "fence_dummy",
            params,
            BTreeMap::new(),
            Duration::from_secs(20),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn fence_dummy_off_on_and_status_through_stdin() {
        if !dummy_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dummy(dir.path()).await;
        assert_eq!(d.metadata().name, "fence_dummy");
        d.on("").await.unwrap();
        assert_eq!(d.status("").await.unwrap(), PowerState::On);
        off_and_confirm(&d, "", Duration::from_secs(20), Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("status"))
                .unwrap()
                .trim(),
            "off"
        );
        d.monitor().await.unwrap();
        // fence_dummy has no list: a clear error, not an empty success.
        assert!(matches!(d.list().await, Err(FenceError::Refused { .. })));
    }

    #[tokio::test]
    async fn parameters_are_checked_against_the_agents_metadata() {
        if !dummy_available() {
            return;
        }
        let t = Duration::from_secs(20);
        let e = ExecDriver::new(
            "d",
            "fence_dummy",
            [("bogus".into(), "1".into())].into(),
            BTreeMap::new(),
            t,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, FenceError::InvalidParameter { key, .. } if key == "bogus"),
            "{e}"
        );
        let e = ExecDriver::new(
            "d",
            "fence_dummy",
            [("password".into(), "hunter2".into())].into(),
            BTreeMap::new(),
            t,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("secrets"), "{e}");
        let e = ExecDriver::new(
            "d",
            "fence_nonexistent_agent",
            BTreeMap::new(),
            BTreeMap::new(),
            t,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
        let e = ExecDriver::new(
            "d",
            "fence_dummy",
            BTreeMap::new(),
            [("password".into(), "hunter2".into())].into(),
            t,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("file:"), "{e}");
    }

    #[tokio::test]
    async fn a_hung_agent_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("fence_hang");
        let pidfile = dir.path().join("child.pid");
        // A fake agent: answers metadata, then hangs with a child of its own.
        std::fs::write(
            &agent,
            format!(
                "#!/bin/sh\nread line\ncase \"$line\" in\n  action=metadata) echo '<resource-agent name=\"fence_hang\"><parameters><parameter name=\"action\" required=\"1\"/></parameters></resource-agent>'; exit 0;;\n  action=validate-all) exit 0;;\nesac\nsleep 300 &\necho $! > {}\nwait\n",
                pidfile.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let d = ExecDriver::new(
            "hang",
            agent.to_str().unwrap(),
            BTreeMap::new(),
            BTreeMap::new(),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        let r = d.off("x").await;
        assert!(matches!(r, Err(FenceError::Timeout { .. })), "{r:?}");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "the agent's child {child} survived the timeout");
    }

    #[tokio::test]
    async fn secrets_go_on_stdin_and_are_redacted_from_errors() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("fence_echo");
        let seen = dir.path().join("stdin.txt");
        // Records its stdin and argv; fails "off" echoing the password.
        std::fs::write(
            &agent,
            format!(
                "#!/bin/sh\ncat > {s}\necho \"argv: $*\" >> {s}\ncase \"$(head -1 {s})\" in\n  action=metadata) echo '<resource-agent name=\"fence_echo\"><parameters><parameter name=\"action\" required=\"1\"/><parameter name=\"password\"/><parameter name=\"ip\" required=\"1\"/></parameters></resource-agent>'; exit 0;;\n  action=off) grep password {s} >&2; exit 1;;\nesac\nexit 0\n",
                s = seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret-Value\n").unwrap();
        let t = Duration::from_secs(5);
        // "ip" is required by this agent's metadata.
        let e = ExecDriver::new(
            "e",
            agent.to_str().unwrap(),
            BTreeMap::new(),
            BTreeMap::new(),
            t,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, FenceError::InvalidParameter { key, .. } if key == "ip"),
            "{e}"
        );
        let d = ExecDriver::new(
            "e",
            agent.to_str().unwrap(),
            [("ip".into(), "127.0.0.1".into())].into(),
            [("password".into(), format!("file:{}", pw.display()))].into(),
            t,
        )
        .await
        .unwrap();
        let e = d.off("node3").await.unwrap_err().to_string();
        assert!(!e.contains("s3cret-Value") && e.contains("***"), "{e}");
        assert!(!format!("{d:?}").contains("s3cret-Value"));
        let recorded = std::fs::read_to_string(&seen).unwrap();
        assert!(recorded.contains("password=s3cret-Value\n"), "on stdin");
        assert!(recorded.contains("plug=node3\n"));
        assert!(recorded.contains("argv: \n"), "nothing on argv: {recorded}");
    }
}
