//! `fencectl resources` and `fencectl move`.

use proto::v1 as pb;
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, connect, exit};

/// One group as `fencectl resources` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub cluster: String,
    pub group: String,
    /// `None`: not placed.
    pub holder: Option<u32>,
    pub holder_name: String,
    pub state: String,
    pub since_ms: u64,
    pub waiting_for: Vec<u32>,
    pub resources: Vec<String>,
}

pub async fn fetch_groups(url: &str, cluster: &str) -> Result<Vec<GroupView>, CliError> {
    let mut c = connect(url).await?;
    let r = c
        .resources(pb::ResourcesRequest {
            cluster: cluster.into(),
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    Ok(r.groups
        .into_iter()
        .map(|g| GroupView {
            cluster: g.cluster,
            group: g.name,
            holder: (g.holder != 0).then_some(g.holder),
            holder_name: g.holder_name,
            state: g.state,
            since_ms: g.since_ms,
            waiting_for: g.waiting_for,
            resources: g.resources,
        })
        .collect())
}

pub fn render_groups(groups: &[GroupView]) -> String {
    if groups.is_empty() {
        return "no resource groups configured\n".into();
    }
    let mut s = format!(
        "{:<12} {:<16} {:<14} {:<10} {:>10}  {}\n",
        "CLUSTER", "GROUP", "HOLDER", "STATE", "SINCE", "RESOURCES"
    );
    for g in groups {
        let holder = match g.holder {
            Some(id) => format!("{} ({id})", g.holder_name),
            None => "-".into(),
        };
        let mut state = g.state.clone();
        if !g.waiting_for.is_empty() {
            state = format!("{state} (for {:?})", g.waiting_for);
        }
        s.push_str(&format!(
            "{:<12} {:<16} {:<14} {:<10} {:>9}s  {}\n",
            g.cluster,
            g.group,
            holder,
            state,
            g.since_ms / 1000,
            g.resources.join(", ")
        ));
    }
    s
}

pub async fn resources(url: &str, cluster: &str, out: Output) -> Result<u8, CliError> {
    let groups = fetch_groups(url, cluster).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&groups).expect("serializable")
        ),
        Output::Text => print!("{}", render_groups(&groups)),
    }
    Ok(exit::OK)
}

/// Move `group` to `node` (an id or a node name).
pub async fn move_group(
    url: &str,
    cluster: &str,
    group: &str,
    node: &str,
    out: Output,
) -> Result<u8, CliError> {
    if cluster.is_empty() {
        return Err(CliError::Usage("name the cluster with --cluster".into()));
    }
    let node_id = crate::commands::control::resolve_node(url, cluster, node).await?;
    let mut c = connect(url).await?;
    let r = c
        .r#move(pb::MoveRequest {
            cluster: cluster.into(),
            group: group.into(),
            node_id,
            operator: crate::commands::control::operator_user(),
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    match out {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "group": group, "node": node_id, "message": r.message })
        ),
        Output::Text => println!("{}", r.message),
    }
    Ok(exit::OK)
}
