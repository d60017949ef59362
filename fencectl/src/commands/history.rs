//! `fencectl history`: every fence the arbiter recorded, newest first.

use proto::v1 as pb;
use serde::Serialize;

use crate::Output;
use crate::client::{CliError, connect, exit};

#[derive(Debug, Serialize)]
pub struct FenceView {
    pub cluster: String,
    pub node: u32,
    pub intent: u64,
    pub outcome: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub epoch: u64,
    pub reason: String,
    pub failures: String,
}

pub async fn fetch_history(
    url: &str,
    cluster: &str,
    limit: u32,
) -> Result<Vec<FenceView>, CliError> {
    let mut c = connect(url).await?;
    let r = c
        .history(pb::HistoryRequest {
            cluster: cluster.into(),
            limit,
        })
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    Ok(r.fences
        .into_iter()
        .map(|f| FenceView {
            cluster: f.cluster,
            node: f.node_id,
            intent: f.intent_id,
            outcome: f.outcome,
            started_unix_ms: f.started_unix_ms,
            finished_unix_ms: (f.finished_unix_ms > 0).then_some(f.finished_unix_ms),
            epoch: f.epoch,
            reason: f.reason,
            failures: f.detail,
        })
        .collect())
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

pub async fn history(url: &str, cluster: &str, limit: u32, out: Output) -> Result<u8, CliError> {
    let v = fetch_history(url, cluster, limit).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        ),
        Output::Text => {
            println!(
                "{:<10} {:>4} {:>7}  {:<10} {:<13} {:>9} {:>5}  REASON",
                "CLUSTER", "NODE", "INTENT", "OUTCOME", "STARTED", "TOOK", "EPOCH"
            );
            for f in &v {
                let took = f.finished_unix_ms.map_or("-".to_string(), |e| {
                    format!("{}ms", e.saturating_sub(f.started_unix_ms))
                });
                println!(
                    "{:<10} {:>4} {:>7}  {:<10} {:<13} {:>9} {:>5}  {}{}",
                    f.cluster,
                    f.node,
                    f.intent,
                    f.outcome,
                    clock(f.started_unix_ms),
                    took,
                    f.epoch,
                    f.reason,
                    if f.failures.is_empty() {
                        String::new()
                    } else {
                        format!(" (failed rounds: {})", f.failures)
                    }
                );
            }
        }
    }
    Ok(exit::OK)
}
