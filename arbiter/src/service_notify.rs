//! systemd's notify protocol, for `Type=notify` and `WatchdogSec=`:
//! `READY=1` once every cluster's start-up grace is over (the arbiter
//! grants leases from then on), `WATCHDOG=1` at half the watchdog period
//! while every cluster's task answers, `STOPPING=1` at shutdown; a
//! standby is ready at once ([`standby`]). Outside
//! systemd (`NOTIFY_SOCKET` unset) it does nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::driver::ClusterHandle;

/// A standby of a group on etcd (it serves referrals and read-only
/// status): `READY=1` at once, `WATCHDOG=1` at half the watchdog period,
/// until `leads` is cancelled (then [`run`] takes over).
pub async fn standby(leads: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = sd_notify::notify(&[
        NotifyState::Ready,
        NotifyState::Status("standing by (another arbiter leads)"),
    ]);
    let Some(w) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut beat = tokio::time::interval((w / 2).max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = leads.cancelled() => return,
            _ = beat.tick() => {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        }
    }
}

/// Run until `token` is cancelled.
pub async fn run(clusters: Arc<BTreeMap<String, ClusterHandle>>, token: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let beat = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 2).max(Duration::from_millis(10))
    });
    let mut ready = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // The first keep-alive at once: a standby that took over fed the
    // watchdog until now.
    let mut last_beat = tokio::time::Instant::now() - beat;
    let _ = sd_notify::notify(&[NotifyState::Status("starting: start-up grace")]);
    loop {
        tokio::select! {
            _ = token.cancelled() => {
                let _ = sd_notify::notify(&[NotifyState::Stopping]);
                return;
            }
            _ = tick.tick() => {}
        }
        if !ready {
            let mut in_grace = false;
            for c in clusters.values() {
                match c.snapshot().await {
                    Ok(s) => in_grace |= s.status.in_grace,
                    Err(_) => return,
                }
            }
            if !in_grace {
                ready = true;
                info!("start-up grace over in every cluster: ready (sd_notify READY=1)");
                let _ = sd_notify::notify(&[
                    NotifyState::Ready,
                    NotifyState::Status("granting leases"),
                ]);
            }
        }
        if watchdog.is_some() && last_beat.elapsed() >= beat {
            last_beat = tokio::time::Instant::now();
            // Every cluster's task must answer within half a beat: a task
            // stuck (a hung store write, say) stops the keep-alives and
            // systemd restarts the arbiter.
            let mut alive = true;
            for (name, c) in clusters.iter() {
                if !matches!(
                    tokio::time::timeout(beat / 2, c.snapshot()).await,
                    Ok(Ok(_))
                ) {
                    warn!(cluster = %name, "cluster task does not answer: no watchdog keep-alive");
                    alive = false;
                }
            }
            if alive {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        }
    }
}
