//! The agent's hardware watchdog: when it is armed, when it is fed, when
//! it is disarmed. The rule is pure ([`Rule`]); [`run`] is its shell, a
//! task that opens the device ([`crate::watchdog_device`]) and feeds it.
//!
//! - **Armed** once the agent is at rest: the arbiter defined its groups
//!   and every one of them is stopped (the first cleanup, which also
//!   stops what an earlier agent process left running). Until then it
//!   reports no watchdog, and the arbiter's `watchdog` fence level does not
//!   count on one.
//! - **Fed** only while the agent holds a lease or is at rest. A lease that
//!   ends with a group still running or stopping starves it: if the stop
//!   does not finish within the timeout, the machine is reset. A frozen or
//!   killed agent feeds nothing either.
//! - **Disarmed** (magic close) when the agent stops cleanly at rest; a
//!   stop that leaves a group not stopped keeps it counting.
//!
//! So `timeout` after the end of its last lease, a node with an armed
//! watchdog has been reset or stands at rest with no lease: what the
//! arbiter's watchdog rule counts on.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::WatchdogConfig;
use crate::resource_runner::RunnerHandle;
use crate::watchdog_device::WatchdogDevice;

/// What a watchdog's timeout must exceed beyond the slowest urgent stop.
pub const STOP_MARGIN: Duration = Duration::from_secs(1);

/// Does a watchdog of `timeout` outlast urgent stops taking up to `bound`?
pub fn outlasts(timeout: Duration, bound: Duration) -> bool {
    timeout > bound + STOP_MARGIN
}

/// What the rule decides at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not armed and not to be armed yet.
    Wait,
    /// Open the device and arm it.
    Arm,
    /// Restart the countdown.
    Feed,
    /// Let it count: the lease ended and a group is not stopped.
    Starve,
}

/// The pure rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    armed: bool,
}

impl Rule {
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// One look: does the agent hold a lease now, and is it at rest?
    pub fn step(&mut self, lease_held: bool, at_rest: bool) -> Step {
        if !self.armed {
            if at_rest {
                self.armed = true;
                return Step::Arm;
            }
            return Step::Wait;
        }
        if lease_held || at_rest {
            Step::Feed
        } else {
            Step::Starve
        }
    }

    /// The agent stops: disarm only at rest.
    pub fn may_disarm(&self, at_rest: bool) -> bool {
        self.armed && at_rest
    }
}

/// What the session shares with the watchdog task, and reads back.
#[derive(Debug, Default)]
pub struct Shared {
    /// The local instant the current lease ends (`None`: no lease).
    lease_until: Mutex<Option<Instant>>,
    /// The armed watchdog's timeout in ms (0: none), for Hello and
    /// heartbeats.
    armed_ms: AtomicU32,
    /// The watchdog went unfed longer than its timeout, yet this process
    /// lives: it does not reset the machine.
    ran_out: std::sync::atomic::AtomicBool,
    /// When the session's loop last ran (systemd's watchdog keep-alive
    /// goes out only while it does).
    last_tick: Mutex<Option<Instant>>,
}

impl Shared {
    /// The session's loop ran now.
    pub fn tick(&self) {
        *self.last_tick.lock().expect("tick lock") = Some(Instant::now());
    }

    /// When the session's loop last ran.
    pub fn last_tick(&self) -> Option<Instant> {
        *self.last_tick.lock().expect("tick lock")
    }

    pub fn set_lease_until(&self, until: Option<Instant>) {
        *self.lease_until.lock().expect("lease lock") = until;
    }

    fn lease_held(&self) -> bool {
        self.lease_until
            .lock()
            .expect("lease lock")
            .is_some_and(|u| Instant::now() < u)
    }

    /// The armed watchdog's timeout in ms (0: none).
    pub fn armed_ms(&self) -> u32 {
        self.armed_ms.load(Ordering::Relaxed)
    }

    /// Did the watchdog go unfed past its timeout without resetting?
    pub fn ran_out(&self) -> bool {
        self.ran_out.load(Ordering::Relaxed)
    }
}

/// Hold the watchdog until `token` is cancelled and `groups_done` fires
/// (the runner finished stopping), then disarm it if at rest.
pub async fn run(
    cfg: WatchdogConfig,
    node: u32,
    shared: Arc<Shared>,
    runner: RunnerHandle,
    token: CancellationToken,
    groups_done: impl std::future::Future<Output = ()>,
) {
    let mut rule = Rule::default();
    let mut device: Option<WatchdogDevice> = None;
    let mut starving: Option<Instant> = None;
    // When it was last fed (armed): alive longer than its timeout after
    // that, this process saw a watchdog that does not reset the machine.
    let mut last_fed: Option<Instant> = None;
    let mut open_failed = false;
    let mut too_short_said = false;
    // Often enough that a feed never comes late: a quarter of the timeout.
    let period = (cfg.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut groups_done = std::pin::pin!(groups_done);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = token.cancelled(), if !stopping => { stopping = true; }
            _ = &mut groups_done, if stopping => break,
        }
        if let (Some(t), Some(d)) = (last_fed, device.as_ref())
            && t.elapsed() > d.timeout() + d.timeout() / 10
            && !shared.ran_out()
        {
            error!(node.id = node, watchdog.timeout = ?d.timeout(), unfed_for = ?t.elapsed(),
                   "CRITICAL: the watchdog went unfed past its timeout and did not reset this machine (check its action: reset, not none); this node will not rejoin on the watchdog's word");
            shared.ran_out.store(true, Ordering::Relaxed);
        }
        let report = runner.report();
        let at_rest = report.at_rest;
        let lease_held = shared.lease_held();
        // A lease that ends stops every group at once; the watchdog must
        // outlast the slowest such stop, or a healthy node is reset when
        // the arbiter restarts.
        let (bound, group) = &report.stop_bound;
        if !rule.armed() && at_rest && !outlasts(cfg.timeout, *bound) {
            if !too_short_said {
                error!(node.id = node, watchdog.timeout = ?cfg.timeout, group = %group, stop_bound = ?bound,
                       "watchdog NOT armed: when a lease ends this group's stop may take longer than the watchdog's timeout less {STOP_MARGIN:?}; raise [watchdog] timeout or lower its resources' stop timeouts");
                too_short_said = true;
            }
            continue;
        }
        if rule.armed() && !outlasts(cfg.timeout, *bound) && !too_short_said {
            error!(node.id = node, watchdog.timeout = ?cfg.timeout, group = %group, stop_bound = ?bound,
                   "a group defined since the watchdog was armed may stop slower than its timeout: a lapsed lease may reset this node (the watchdog stays armed)");
            too_short_said = true;
        }
        match rule.step(lease_held, at_rest) {
            Step::Wait => {}
            Step::Arm => match WatchdogDevice::open(&cfg.device, cfg.timeout) {
                Ok(d) => {
                    let ms = u32::try_from(d.timeout().as_millis()).unwrap_or(u32::MAX);
                    info!(node.id = node, watchdog.device = %cfg.device.display(), watchdog.identity = d.identity(),
                          watchdog.timeout = ?d.timeout(), stand_in = d.is_stand_in(),
                          "watchdog armed: fed while this node holds a lease or runs no group");
                    shared.armed_ms.store(ms, Ordering::Relaxed);
                    device = Some(d);
                    last_fed = Some(Instant::now());
                }
                Err(e) => {
                    if !open_failed {
                        error!(node.id = node, error = %e, "cannot arm the watchdog; the arbiter's watchdog fence level will not count on this node; retrying");
                        open_failed = true;
                    }
                    rule = Rule::default();
                }
            },
            Step::Feed => {
                if starving.take().is_some() {
                    info!(node.id = node, "watchdog fed again");
                }
                if let Some(d) = device.as_mut() {
                    match d.keepalive() {
                        Ok(()) => last_fed = Some(Instant::now()),
                        Err(e) => error!(node.id = node, error = %e, "cannot feed the watchdog"),
                    }
                }
            }
            Step::Starve => {
                if starving.is_none() {
                    error!(node.id = node, watchdog.timeout = ?cfg.timeout,
                           "lease ended with a resource group not stopped: the watchdog is no longer fed; the machine resets unless every group stops in time");
                    starving = Some(Instant::now());
                }
            }
        }
    }
    let at_rest = runner.report().at_rest;
    if let Some(d) = device {
        if rule.may_disarm(at_rest) {
            match d.disarm() {
                Ok(()) => info!(node.id = node, "watchdog disarmed (every group stopped)"),
                Err(e) => error!(node.id = node, error = %e, "cannot disarm the watchdog"),
            }
        } else {
            error!(
                node.id = node,
                "stopping with a resource group not stopped: the watchdog stays armed and will reset the machine"
            );
            drop(d);
        }
        shared.armed_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn armed_only_at_rest_then_fed_on_a_lease_or_at_rest() {
        let mut r = Rule::default();
        assert_eq!(
            r.step(true, false),
            Step::Wait,
            "a lease alone arms nothing"
        );
        assert_eq!(r.step(false, true), Step::Arm);
        assert_eq!(r.step(false, true), Step::Feed);
        assert_eq!(r.step(true, false), Step::Feed);
        assert_eq!(r.step(false, false), Step::Starve);
        assert!(!r.may_disarm(false));
        assert!(r.may_disarm(true));
    }

    #[test]
    fn a_watchdog_must_outlast_the_slowest_urgent_stop_by_a_second() {
        let s = Duration::from_secs;
        assert!(outlasts(s(5), s(3)));
        assert!(!outlasts(s(5), s(4)), "a margin of a second");
        assert!(!outlasts(s(5), s(20)), "the default OCF stop timeout");
    }

    proptest! {
        /// Whatever happens, once armed the watchdog is fed exactly when
        /// a lease is held or every group is stopped.
        #[test]
        fn never_fed_without_a_lease_while_a_group_is_not_stopped(
            looks in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..50)
        ) {
            let mut r = Rule::default();
            for (lease, rest) in looks {
                let was_armed = r.armed();
                let s = r.step(lease, rest);
                if s == Step::Feed {
                    prop_assert!(lease || rest);
                }
                if was_armed {
                    prop_assert_eq!(s == Step::Feed, lease || rest);
                } else {
                    prop_assert!(s != Step::Feed && (s == Step::Arm) == rest);
                }
            }
        }
    }
}
