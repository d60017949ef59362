//! Heuristics: commands an agent runs periodically (for example "reaches the
//! gateway"); the sum of the weights of those passing (exit status 0) is
//! reported in every heartbeat. The arbiter uses it to order candidate
//! survivor sets after votes and priority.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Heuristic;

/// The current result of every heuristic.
#[derive(Debug, Default)]
pub struct Heuristics {
    items: Vec<(Heuristic, AtomicBool)>,
}

impl Heuristics {
    pub fn new(list: Vec<Heuristic>) -> Arc<Self> {
        Arc::new(Heuristics {
            items: list
                .into_iter()
                .map(|h| (h, AtomicBool::new(false)))
                .collect(),
        })
    }

    /// Sum of the weights of passing heuristics.
    pub fn score(&self) -> u32 {
        self.items
            .iter()
            .filter(|(_, ok)| ok.load(Ordering::Relaxed))
            .map(|(h, _)| h.weight)
            .fold(0u32, u32::saturating_add)
    }

    /// Start one tracked task per heuristic.
    pub fn spawn(self: &Arc<Self>, node: u32, tracker: &TaskTracker, token: &CancellationToken) {
        for i in 0..self.items.len() {
            let this = self.clone();
            let token = token.child_token();
            tracker.spawn(async move {
                let (h, state) = &this.items[i];
                loop {
                    let pass = run_once(h).await;
                    if state.swap(pass, Ordering::Relaxed) != pass {
                        if pass {
                            info!(node.id = node, heuristic = %h.name, weight = h.weight, "heuristic passes");
                        } else {
                            warn!(node.id = node, heuristic = %h.name, weight = h.weight, "heuristic fails");
                        }
                    }
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(h.interval) => {}
                    }
                }
            });
        }
    }
}

async fn run_once(h: &Heuristic) -> bool {
    let Some((prog, args)) = h.command.split_first() else {
        return false;
    };
    let child = Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(h.timeout, child).await, Ok(Ok(st)) if st.success())
}

/// Default timeout: half the interval.
pub fn default_timeout(interval: Duration) -> Duration {
    interval / 2
}
