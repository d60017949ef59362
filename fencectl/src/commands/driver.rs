//! `fencectl driver list | metadata | validate | test`: the fence drivers,
//! from the operator's side, without the arbiter running.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbiter::config::Config;
use fence_drivers::{DriverMetadata, FenceDriver, PowerState, off_and_confirm};
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, exit};

fn other(e: impl std::fmt::Display) -> CliError {
    CliError::Other(e.to_string())
}

fn print<T: Serialize>(out: Output, v: &T, text: impl FnOnce() -> String) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).expect("serializable")),
        Output::Text => print!("{}", text()),
    }
}

#[derive(Serialize)]
struct DriverEntry {
    name: String,
    description: String,
}

/// Built-in drivers, and the ClusterLabs agents `exec` can run here.
pub fn list(out: Output) -> Result<u8, CliError> {
    let mut v = vec![DriverEntry {
        name: "exec".into(),
        description: "runs a ClusterLabs fence_* agent (agent = \"fence_...\")".into(),
    }];
    v.extend(
        fence_drivers::native::DRIVERS
            .iter()
            .map(|e| (e.metadata)())
            .map(|m| DriverEntry {
                name: m.name,
                description: m.description,
            }),
    );
    let mut agents: Vec<String> = ["/usr/sbin", "/sbin"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("fence_") && !n.ends_with(".py"))
        .collect();
    agents.sort();
    agents.dedup();
    v.extend(agents.into_iter().map(|a| DriverEntry {
        description: "exec: ClusterLabs fence agent".into(),
        name: a,
    }));
    print(out, &v, || {
        v.iter()
            .map(|d| format!("{:<24} {}\n", d.name, d.description))
            .collect()
    });
    Ok(exit::OK)
}

/// Parameters of a driver, or of a ClusterLabs agent (its own metadata).
pub async fn metadata(name: &str, out: Output) -> Result<u8, CliError> {
    let meta: DriverMetadata = match name {
        "exec" => DriverMetadata {
            name: "exec".into(),
            description: "Runs a ClusterLabs fence_* agent with its stdin protocol; every key but these is passed to the agent \
                          (see `fencectl driver metadata fence_<agent>`)"
                .into(),
            parameters: vec![
                fence_drivers::Parameter { name: "agent".into(), required: true, secret: false, description: "agent name (fence_ipmilan) or path".into() },
                fence_drivers::Parameter { name: "timeout".into(), required: false, secret: false, description: "per call, default \"20s\"".into() },
                fence_drivers::Parameter {
                    name: "secrets".into(),
                    required: false,
                    secret: true,
                    description: "table of secret parameters, each \"file:/path\" or \"env:VAR\"".into(),
                },
            ],
            confirms_power_state: true,
        },
        agent => match fence_drivers::native::metadata(agent) {
            Some(m) => m,
            None => fence_drivers::exec::agent_metadata(agent, Duration::from_secs(20))
                .await
                .map_err(other)?,
        },
    };
    print(out, &meta, || {
        let mut s = format!("{}: {}\n", meta.name, meta.description);
        for p in &meta.parameters {
            s += &format!(
                "  {:<22} {}{}{}\n",
                p.name,
                if p.required { "(required) " } else { "" },
                if p.secret {
                    "(secret: secrets = { .. }) "
                } else {
                    ""
                },
                p.description
            );
        }
        s
    });
    Ok(exit::OK)
}

/// Load an arbiter config and build every device as the arbiter would.
async fn load(
    config: &Path,
) -> Result<
    (
        arbiter::config::Plan,
        BTreeMap<String, BTreeMap<String, Arc<dyn FenceDriver>>>,
    ),
    CliError,
> {
    let plan = Config::load(config).map_err(|errs| {
        other(format!(
            "invalid configuration {}:\n{}",
            config.display(),
            errs.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    let mut devices = BTreeMap::new();
    for (name, c) in &plan.clusters {
        let d = arbiter::fence_orchestrator::build_devices(&c.devices, &c.levels)
            .await
            .map_err(|e| other(format!("cluster.{name}: {e}")))?;
        devices.insert(name.clone(), d);
    }
    Ok((plan, devices))
}

/// Validate every device of an arbiter config (the agents' metadata and
/// validate-all included); exit 0 when all pass.
pub async fn validate(config: &Path, out: Output) -> Result<u8, CliError> {
    let (_, devices) = load(config).await?;
    let v: BTreeMap<&String, Vec<&String>> = devices
        .iter()
        .map(|(c, d)| (c, d.keys().collect()))
        .collect();
    print(out, &v, || {
        v.iter()
            .map(|(c, d)| {
                format!(
                    "cluster {c}: {} device(s) valid: {}\n",
                    d.len(),
                    d.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            })
            .collect()
    });
    Ok(exit::OK)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestAction {
    Status,
    Monitor,
    Off,
    On,
    Reboot,
}

#[derive(Serialize)]
struct TestResult {
    level: usize,
    device: String,
    port: String,
    action: TestAction,
    ok: bool,
    state: Option<PowerState>,
    error: Option<String>,
}

/// Run a real action against each device of a node's fence levels.
/// `off`, `on` and `reboot` switch real power: they need `yes`.
pub async fn test(
    config: &Path,
    cluster: &str,
    node: u32,
    action: TestAction,
    yes: bool,
    out: Output,
) -> Result<u8, CliError> {
    if matches!(
        action,
        TestAction::Off | TestAction::On | TestAction::Reboot
    ) && !yes
    {
        return Err(other(format!(
            "{action:?} switches real power: add --yes to do it"
        )));
    }
    let (plan, devices) = load(config).await?;
    let cname = if cluster.is_empty() {
        plan.clusters
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| other("the config has no cluster"))?
    } else {
        cluster.to_string()
    };
    let c = plan
        .clusters
        .get(&cname)
        .ok_or_else(|| other(format!("no cluster {cname:?} in {}", config.display())))?;
    let levels = c
        .levels
        .get(&node)
        .ok_or_else(|| other(format!("cluster {cname:?} has no node {node}")))?;
    let mut results = Vec::new();
    for (li, level) in levels.iter().enumerate() {
        for t in level {
            let d = &devices[&cname][&t.device];
            let timeout = c.spec.timing.fence_timeout;
            let r = match action {
                TestAction::Status => d.status(&t.port).await.map(Some),
                TestAction::Monitor => d.monitor().await.map(|_| None),
                TestAction::Off => {
                    off_and_confirm(d.as_ref(), &t.port, timeout, Duration::from_millis(100))
                        .await
                        .map(|_| Some(PowerState::Off))
                }
                TestAction::On => d.on(&t.port).await.map(|_| None),
                TestAction::Reboot => d.reboot(&t.port, timeout).await.map(|_| None),
            };
            results.push(TestResult {
                level: li,
                device: t.device.clone(),
                port: t.port.clone(),
                action,
                ok: r.is_ok(),
                state: r.as_ref().ok().copied().flatten(),
                error: r.err().map(|e| e.to_string()),
            });
        }
    }
    let all_ok = results.iter().all(|r| r.ok);
    print(out, &results, || {
        results
            .iter()
            .map(|r| {
                format!(
                    "level {} {}:{} {:?}: {}\n",
                    r.level,
                    r.device,
                    r.port,
                    r.action,
                    match (&r.error, r.state) {
                        (Some(e), _) => format!("FAILED: {e}"),
                        (None, Some(s)) => format!("ok, {s}"),
                        (None, None) => "ok".into(),
                    }
                )
            })
            .collect()
    });
    Ok(if all_ok { exit::OK } else { exit::FAILED })
}
