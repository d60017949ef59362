//! The operator's controls: `fence`, `confirm`, `unfence`, `maintenance`
//! (admin identity). The arbiter's core checks each and says why not; each
//! is kept in the history with who asked (`fencectl history`).

use proto::v1 as pb;
use proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use crate::Output;
use crate::client::{CliError, connect, exit};
use crate::commands::status::fetch_nodes;

/// What `confirm` can corrupt, said before it is sent.
pub const CONFIRM_WARNING: &str = "\
`fencectl confirm` tells the arbiter that the node is powered off, without any device to prove it.
The survivors take over its resources (addresses, disks, databases) once its lease has ended.
If the node is in fact running, two nodes hold the same resources: shared data can be corrupted.
Confirm only a node you have seen off (its power cords pulled, its BMC dead with it), then add --yes.";

/// The user fencectl runs as (recorded with the certificate's identity):
/// `SUDO_USER` first, then `USER`/`LOGNAME`, then the uid.
pub fn operator_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// A node by id, or by its name in `cluster`.
pub async fn resolve_node(url: &str, cluster: &str, node: &str) -> Result<u32, CliError> {
    if let Ok(id) = node.parse::<u32>() {
        return Ok(id);
    }
    fetch_nodes(url, cluster)
        .await?
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.node)
        .ok_or_else(|| CliError::Usage(format!("cluster {cluster:?} has no node named {node:?}")))
}

/// Sends one control and prints the arbiter's answer: `report` (the
/// control, cluster and node) with its `message` as JSON, or the message.
async fn send<F, Fut>(
    url: &str,
    out: Output,
    mut report: serde_json::Value,
    call: F,
) -> Result<u8, CliError>
where
    F: FnOnce(AdminClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<pb::CommandReply>, tonic::Status>>,
{
    let r = call(connect(url).await?)
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    match out {
        Output::Json => {
            report["message"] = r.message.into();
            println!("{report}");
        }
        Output::Text => println!("{}", r.message),
    }
    Ok(exit::OK)
}

fn need_cluster(cluster: &str) -> Result<(), CliError> {
    if cluster.is_empty() {
        return Err(CliError::Usage("name the cluster with --cluster".into()));
    }
    Ok(())
}

/// `fencectl fence NODE --cluster C [--reason R] --yes`.
pub async fn fence(
    url: &str,
    cluster: &str,
    node: &str,
    reason: &str,
    yes: bool,
    out: Output,
) -> Result<u8, CliError> {
    need_cluster(cluster)?;
    if !yes {
        return Err(CliError::Usage(format!(
            "this powers node {node} off through its fence devices, whatever its health; add --yes"
        )));
    }
    let node_id = resolve_node(url, cluster, node).await?;
    let report = serde_json::json!({ "control": "fence", "cluster": cluster, "node": node_id });
    let req = pb::FenceRequest {
        cluster: cluster.into(),
        node_id,
        reason: reason.into(),
        operator: operator_user(),
    };
    send(url, out, report, |mut c| async move { c.fence(req).await }).await
}

/// `fencectl confirm NODE --cluster C --yes`.
pub async fn confirm(
    url: &str,
    cluster: &str,
    node: &str,
    yes: bool,
    out: Output,
) -> Result<u8, CliError> {
    need_cluster(cluster)?;
    if !yes {
        return Err(CliError::Usage(CONFIRM_WARNING.into()));
    }
    let node_id = resolve_node(url, cluster, node).await?;
    let report = serde_json::json!({ "control": "confirm", "cluster": cluster, "node": node_id });
    let req = pb::ConfirmRequest {
        cluster: cluster.into(),
        node_id,
        operator: operator_user(),
    };
    send(
        url,
        out,
        report,
        |mut c| async move { c.confirm(req).await },
    )
    .await
}

/// `fencectl unfence NODE --cluster C`.
pub async fn unfence(url: &str, cluster: &str, node: &str, out: Output) -> Result<u8, CliError> {
    need_cluster(cluster)?;
    let node_id = resolve_node(url, cluster, node).await?;
    let report = serde_json::json!({ "control": "unfence", "cluster": cluster, "node": node_id });
    let req = pb::UnfenceRequest {
        cluster: cluster.into(),
        node_id,
        operator: operator_user(),
    };
    send(
        url,
        out,
        report,
        |mut c| async move { c.unfence(req).await },
    )
    .await
}

/// `fencectl maintenance on|off [--node N] --cluster C`.
pub async fn maintenance(
    url: &str,
    cluster: &str,
    node: Option<&str>,
    on: bool,
    out: Output,
) -> Result<u8, CliError> {
    need_cluster(cluster)?;
    let node_id = match node {
        Some(n) => resolve_node(url, cluster, n).await?,
        None => 0,
    };
    let report = serde_json::json!({
        "control": "maintenance", "cluster": cluster, "node": (node_id != 0).then_some(node_id),
        "enabled": on,
    });
    let req = pb::MaintenanceRequest {
        cluster: cluster.into(),
        node_id,
        enabled: on,
        whole_cluster: node.is_none(),
        operator: operator_user(),
    };
    send(url, out, report, |mut c| async move {
        c.set_maintenance(req).await
    })
    .await
}
