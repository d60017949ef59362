//! One leader among the arbiter processes that share an etcd prefix.
//!
//! The leader holds the key `<prefix>/leader` under an etcd lease of
//! `leader_ttl` and renews the lease every third of it. A standby polls the
//! key and creates it (in a transaction: only if absent) once the leader's
//! lease has expired or was revoked (a clean stop resigns at once).
//!
//! Two rules keep two leaders from ever granting at once:
//!
//! - **Writes** are conditioned on the leader key's create revision
//!   ([`crate::etcd_store::Guard`]): a deposed leader can never write.
//! - **Leases to agents** are granted only while [`LeaderClock::holds`]:
//!   until the time the last renewal was *sent* plus the TTL etcd granted.
//!   etcd counts the TTL from when it received the renewal, later, so the
//!   lease in etcd outlives the clock; a new leader can win only after it
//!   expired, and grants nothing for `lease_max` after it won (the start-up
//!   grace), so every lease the old leader granted has ended by then.
//!   A leader frozen (SIGSTOP) past its lease wakes with the clock expired
//!   and grants nothing before it learns it lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fence_drivers::{DriverMetadata, FenceDriver, FenceError, Port, PowerState};

use proto::etcd::{LeaseKeepAliveRequest, TxnRequest, lease_client::LeaseClient};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::etcd::{self, EtcdError, Members};
use crate::etcd_store::Guard;

/// A point in time on CLOCK_BOOTTIME: unlike the monotonic clock it goes
/// on while the machine is suspended, so a leader that wakes from a
/// suspend sees its lease lapsed (etcd's clock went on too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(Duration);

impl Instant {
    pub fn now() -> Instant {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .expect("CLOCK_BOOTTIME is readable on Linux");
        Instant(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now().0.saturating_sub(self.0)
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d)
    }
}

/// Until when this process may grant leases and act on devices as the
/// leader.
#[derive(Debug, Default)]
pub struct LeaderClock {
    /// Nanoseconds on CLOCK_BOOTTIME; 0: not (or no longer) the leader.
    until_ns: AtomicU64,
}

impl LeaderClock {
    /// Leadership holds now.
    pub fn holds(&self) -> bool {
        (Instant::now().0.as_nanos() as u64) < self.until_ns.load(Ordering::Acquire)
    }

    /// How long leadership holds from now (zero: it does not).
    pub fn remaining(&self) -> Duration {
        Duration::from_nanos(self.until_ns.load(Ordering::Acquire)).saturating_sub(Instant::now().0)
    }

    fn extend(&self, until: Instant) {
        self.until_ns
            .fetch_max(until.0.as_nanos() as u64, Ordering::AcqRel);
    }

    fn end(&self) {
        self.until_ns.store(0, Ordering::Release);
    }
}

/// This process leads.
pub struct Leadership {
    pub guard: Guard,
    pub lease: i64,
    pub clock: Arc<LeaderClock>,
    /// Cancelled when leadership was lost: the lease could not be renewed
    /// in time, or the leader key is no longer ours.
    pub lost: CancellationToken,
}

/// Who leads a group: the value of its leader key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// The leader's `arbiter.etcd.name`.
    pub name: String,
    /// Where agents and fencectl reach it (`arbiter.etcd.advertise`).
    #[serde(default)]
    pub url: String,
}

impl LeaderInfo {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("two strings serialize")
    }

    /// The leader key's value: JSON, or (written by an earlier version)
    /// the bare name.
    pub fn decode(value: &[u8]) -> LeaderInfo {
        serde_json::from_slice(value).unwrap_or_else(|_| LeaderInfo {
            name: String::from_utf8_lossy(value).into_owned(),
            url: String::new(),
        })
    }
}

/// Wait until this process leads (or `stop` is cancelled: `Ok(None)`).
/// Logs who leads meanwhile and tells `seen` (`None` while nobody does,
/// or etcd does not answer).
pub async fn campaign(
    members: Arc<Members>,
    prefix: &str,
    me: &LeaderInfo,
    ttl: Duration,
    seen: &tokio::sync::watch::Sender<Option<LeaderInfo>>,
    stop: CancellationToken,
) -> Result<Option<Leadership>, EtcdError> {
    let name = me.name.as_str();
    let key = format!("{prefix}/leader").into_bytes();
    let poll = (ttl / 8).clamp(Duration::from_millis(50), Duration::from_millis(250));
    let mut shown: Option<LeaderInfo> = None;
    let mut failing = false;
    loop {
        if stop.is_cancelled() {
            return Ok(None);
        }
        match members.get(&key).await {
            Ok(Some(kv)) => {
                let leader = LeaderInfo::decode(&kv.value);
                if shown.as_ref() != Some(&leader) {
                    info!(leader = %leader.name, leader.url = %leader.url, "standing by: another arbiter leads");
                    shown = Some(leader.clone());
                }
                seen.send_replace(Some(leader));
                failing = false;
            }
            Ok(None) => {
                seen.send_replace(None);
                let sent = Instant::now();
                match members.grant(ttl).await {
                    Ok((lease, granted)) => {
                        let won = members
                            .txn(TxnRequest {
                                compare: vec![etcd::created_at(&key, 0)],
                                success: vec![etcd::put(key.clone(), me.encode(), lease)],
                                failure: vec![],
                            })
                            .await;
                        match won {
                            Ok(r) if r.succeeded => {
                                let revision = r.header.map(|h| h.revision).unwrap_or_default();
                                let clock = Arc::new(LeaderClock::default());
                                clock.extend(sent + granted);
                                info!(leader = %name, lease, etcd.revision = revision, "this arbiter leads");
                                return Ok(Some(Leadership {
                                    guard: Guard {
                                        key,
                                        create_revision: revision,
                                    },
                                    lease,
                                    clock,
                                    lost: CancellationToken::new(),
                                }));
                            }
                            Ok(_) => {
                                let _ = members.revoke(lease).await;
                            }
                            Err(e) => {
                                // Maybe it was applied: the lease is not kept
                                // alive, so the key goes with it in `ttl`.
                                warn!(error = %e, "campaign write failed; trying again");
                                let _ = members.revoke(lease).await;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "campaign: no lease from etcd; trying again"),
                }
            }
            Err(e) => {
                seen.send_replace(None);
                if !failing {
                    warn!(error = %e, "standing by: etcd does not answer");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Keep the leader's lease alive until `stop` (then resign: revoke it, so a
/// standby takes over at once) or until it is lost (`lost` is cancelled,
/// the clock ended). Each renewal extends the clock to its send time plus
/// the TTL etcd granted; every round also checks that the leader key is
/// still ours.
pub async fn keep(
    members: Arc<Members>,
    leadership: &Leadership,
    ttl: Duration,
    stop: CancellationToken,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let lease = leadership.lease;
    let clock = &leadership.clock;
    let lost = |why: &str| {
        error!(reason = %why, "leadership lost: this arbiter stops granting leases");
        clock.end();
        leadership.lost.cancel();
    };
    loop {
        let (url, ch) = members.current();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // etcd answers the stream's headers with its first renewal: the
        // first request goes in before the call is awaited.
        let mut sent = Instant::now();
        let _ = tx.try_send(LeaseKeepAliveRequest { id: lease });
        let opened = tokio::time::timeout(
            period,
            LeaseClient::new(ch).lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await;
        let mut inbound = match opened {
            Ok(Ok(r)) => Some(r.into_inner()),
            Ok(Err(e)) => {
                warn!(etcd = %url, error = %e.message(), "lease keep-alive refused; trying another member");
                None
            }
            Err(_) => {
                warn!(etcd = %url, "lease keep-alive: no answer; trying another member");
                None
            }
        };
        // Whether the leader key was ours when last read (checked while
        // waiting for the next renewal, so a slow read never delays one).
        let mut key_ours = true;
        while let Some(stream) = inbound.as_mut() {
            match tokio::time::timeout(period, stream.message()).await {
                // Extended only while the key is ours: an etcd lease kept
                // alive under a key someone removed is no leadership.
                Ok(Ok(Some(r))) if r.ttl > 0 && key_ours => {
                    clock.extend(sent + Duration::from_secs(r.ttl as u64))
                }
                Ok(Ok(Some(r))) if r.ttl > 0 => {}
                Ok(Ok(Some(_))) => return lost("the leader's etcd lease expired"),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    warn!(etcd = %url, "lease keep-alive broke; trying another member");
                    break;
                }
            }
            if !clock.holds() {
                return lost("the lease was not renewed in time");
            }
            let check =
                async { tokio::time::timeout(period, members.get(&leadership.guard.key)).await };
            let (checked, stopped) = tokio::join!(check, async {
                tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tokio::time::sleep(period) => false,
                }
            });
            if stopped {
                clock.end();
                let revoked = tokio::time::timeout(members.timeout(), members.revoke(lease)).await;
                info!(
                    resigned = matches!(revoked, Ok(Ok(()))),
                    "leadership given up (shutdown)"
                );
                return;
            }
            match checked {
                Ok(Ok(Some(kv))) if kv.create_revision == leadership.guard.create_revision => {
                    key_ours = true
                }
                Ok(Ok(_)) => return lost("the leader key is no longer this arbiter's"),
                Ok(Err(e)) => {
                    key_ours = false;
                    warn!(error = %e, "cannot read the leader key")
                }
                Err(_) => {
                    key_ours = false;
                    warn!("the leader key's read did not answer in time")
                }
            }
            sent = Instant::now();
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                break;
            }
        }
        members.skip();
        if !clock.holds() {
            return lost("the lease was not renewed in time");
        }
        tokio::select! {
            _ = stop.cancelled() => {
                clock.end();
                let _ = tokio::time::timeout(members.timeout(), members.revoke(lease)).await;
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// A fence device that acts only while this arbiter leads: a leader that
/// was frozen (or cut off) past its etcd lease and wakes sends no `off`
/// or `on` any more, even from a fence level already running; the new
/// leader decides. (A command sent before the freeze cannot be recalled.)
#[derive(Debug)]
pub struct LeaderOnly {
    inner: Arc<dyn FenceDriver>,
    clock: Arc<LeaderClock>,
}

impl LeaderOnly {
    pub fn wrap(inner: Arc<dyn FenceDriver>, clock: Arc<LeaderClock>) -> Arc<dyn FenceDriver> {
        Arc::new(LeaderOnly { inner, clock })
    }

    fn check(&self, action: &'static str) -> Result<(), FenceError> {
        if self.clock.holds() {
            Ok(())
        } else {
            Err(FenceError::Refused {
                device: self.inner.device().to_string(),
                reason: format!(
                    "{action} not sent: this arbiter no longer leads its group (its etcd lease lapsed)"
                ),
            })
        }
    }
}

#[async_trait::async_trait]
impl FenceDriver for LeaderOnly {
    fn device(&self) -> &str {
        self.inner.device()
    }
    fn metadata(&self) -> DriverMetadata {
        self.inner.metadata()
    }
    async fn status(&self, port: &str) -> Result<PowerState, FenceError> {
        self.inner.status(port).await
    }
    async fn on(&self, port: &str) -> Result<(), FenceError> {
        self.check("on")?;
        self.inner.on(port).await
    }
    async fn off(&self, port: &str) -> Result<(), FenceError> {
        self.check("off")?;
        self.inner.off(port).await
    }
    async fn reboot(&self, port: &str, confirm_timeout: Duration) -> Result<(), FenceError> {
        self.check("reboot")?;
        self.inner.reboot(port, confirm_timeout).await
    }
    async fn list(&self) -> Result<Vec<Port>, FenceError> {
        self.inner.list().await
    }
    async fn monitor(&self) -> Result<(), FenceError> {
        self.inner.monitor().await
    }
    async fn validate(&self) -> Result<(), FenceError> {
        self.inner.validate().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader key names the leader and its URL; a bare name (written
    /// by an earlier version) still reads, with no URL.
    #[test]
    fn the_leader_key_reads_old_and_new_values() {
        let l = LeaderInfo {
            name: "arbiter-a".into(),
            url: "https://127.0.0.1:7400".into(),
        };
        assert_eq!(LeaderInfo::decode(&l.encode()), l);
        assert_eq!(
            LeaderInfo::decode(b"127.0.0.1:7401"),
            LeaderInfo {
                name: "127.0.0.1:7401".into(),
                url: String::new()
            }
        );
    }

    /// A device behind `LeaderOnly` switches nothing once the clock lapsed
    /// (a thawed, deposed leader's fence level), and acts while it holds;
    /// status reads go through either way.
    #[tokio::test]
    async fn a_device_acts_only_while_leadership_holds() {
        let dir = tempfile::tempdir().unwrap();
        let sim = fence_drivers::sim::SimPowerDevice::new("power", dir.path()).unwrap();
        sim.register("n1", std::process::id()).unwrap();
        let events = || {
            fence_drivers::sim::SimPowerDevice::new("power", dir.path())
                .unwrap()
                .events()
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "on" || e.action == "off")
                .count()
        };
        let clock = Arc::new(LeaderClock::default());
        let dev = LeaderOnly::wrap(Arc::new(sim), clock.clone());
        let e = dev.on("n1").await.expect_err("on without leadership");
        assert!(e.to_string().contains("no longer leads"), "{e}");
        assert!(dev.off("n1").await.is_err());
        assert_eq!(events(), 0, "a device acted without leadership");
        assert!(dev.status("n1").await.is_ok());
        clock.extend(Instant::now() + Duration::from_secs(5));
        assert!(clock.holds());
        dev.on("n1").await.expect("on while leading");
        assert_eq!(events(), 1);
        clock.end();
        assert!(!clock.holds() && clock.remaining().is_zero());
        assert!(dev.off("n1").await.is_err());
        assert_eq!(events(), 1);
    }
}
