//! `fencectl history`: every fence the arbiter recorded, and every
//! operator control, newest first.

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
    /// Who confirmed it off by hand (`fencectl confirm`), if anyone did.
    pub confirmed_by: Option<String>,
}

/// One operator control.
#[derive(Debug, Serialize)]
pub struct ControlView {
    pub cluster: String,
    pub unix_ms: u64,
    pub by: String,
    pub action: String,
    /// `None`: the whole cluster.
    pub node: Option<u32>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub fences: Vec<FenceView>,
    pub controls: Vec<ControlView>,
}

pub async fn fetch_history(url: &str, cluster: &str, limit: u32) -> Result<HistoryView, CliError> {
    let mut c = connect(url).await?;
    let r = c
        .history(crate::client::request(pb::HistoryRequest {
            cluster: cluster.into(),
            limit,
        }))
        .await
        .map_err(|s| CliError::from_status(url, s))?
        .into_inner();
    let fences = r
        .fences
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
            confirmed_by: (!f.confirmed_by.is_empty()).then_some(f.confirmed_by),
        })
        .collect();
    let controls = r
        .controls
        .into_iter()
        .map(|c| ControlView {
            cluster: c.cluster,
            unix_ms: c.unix_ms,
            by: c.by,
            action: c.action,
            node: (c.node_id != 0).then_some(c.node_id),
            detail: c.detail,
        })
        .collect();
    Ok(HistoryView { fences, controls })
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
            for f in &v.fences {
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
                    match (&f.confirmed_by, f.failures.is_empty()) {
                        (Some(who), _) => format!(" (confirmed off by hand: {who})"),
                        (None, true) => String::new(),
                        (None, false) => format!(" (failed rounds: {})", f.failures),
                    }
                );
            }
            if !v.controls.is_empty() {
                println!("\nOPERATOR CONTROLS");
                println!(
                    "{:<10} {:<13} {:<16} {:>4}  {:<40}  DETAIL",
                    "CLUSTER", "AT", "CONTROL", "NODE", "BY"
                );
                for c in &v.controls {
                    println!(
                        "{:<10} {:<13} {:<16} {:>4}  {:<40}  {}",
                        c.cluster,
                        clock(c.unix_ms),
                        c.action,
                        c.node.map_or("all".to_string(), |n| n.to_string()),
                        c.by,
                        c.detail
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}
