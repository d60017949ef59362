//! systemd's notify protocol, for `Type=notify` and `WatchdogSec=`:
//! `READY=1` once the agent is set up (its probe port bound, what an
//! earlier agent left swept, its session started), `WATCHDOG=1` at half
//! the watchdog period while the session's loop runs, `STOPPING=1` at
//! shutdown. Outside systemd (`NOTIFY_SOCKET` unset) it does nothing.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::watchdog::Shared;

/// Run until `token` is cancelled.
pub async fn run(shared: Arc<Shared>, token: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let Some(period) = sd_notify::watchdog_enabled() else {
        token.cancelled().await;
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        return;
    };
    let beat = (period / 2).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(beat);
    loop {
        tokio::select! {
            _ = token.cancelled() => {
                let _ = sd_notify::notify(&[NotifyState::Stopping]);
                return;
            }
            _ = tick.tick() => {}
        }
        // The session ticks its lease core at least every heartbeat
        // interval; a loop silent for a whole beat is stuck.
        if shared.last_tick().is_some_and(|t| t.elapsed() < beat) {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            warn!("the session's loop has not run for a watchdog beat: no keep-alive");
        }
    }
}
