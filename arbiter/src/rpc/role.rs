//! Whether this process leads its group or stands by, as the gRPC services
//! see it.
//!
//! An arbiter on etcd listens from its start. Until it leads, it refuses
//! agents' sessions and the operator's controls with `UNAVAILABLE`, naming
//! the leader in the message and in the `fence-leader-url` metadata (agents
//! and fencectl follow it), and answers `status` and `history` read-only
//! from the store only when asked not to follow (`fence-no-follow`
//! metadata): whoever asks should see the leader's live view.
//! Once it leads, the clusters' tasks are set here and every call is
//! served.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::config::ClusterPlan;
use crate::driver::ClusterHandle;
use crate::leadership::{LeaderClock, LeaderInfo};

use proto::standby::{LEADER_URL, NO_FOLLOW, ROLE};

pub struct Role {
    /// This arbiter's name and URL in its group (name "" without etcd).
    me: LeaderInfo,
    /// Set once this process leads (at once without etcd).
    clusters: OnceLock<Arc<BTreeMap<String, ClusterHandle>>>,
    /// Until when it leads (etcd); a lapsed clock refers every new call away.
    clock: OnceLock<Arc<LeaderClock>>,
    /// Who leads, as the last poll of the leader key saw it (standby only).
    leader: watch::Receiver<Option<LeaderInfo>>,
    /// The configured clusters (what a standby can show).
    plans: BTreeMap<String, Arc<ClusterPlan>>,
}

impl Role {
    pub fn new(
        me: LeaderInfo,
        plans: &BTreeMap<String, ClusterPlan>,
        leader: watch::Receiver<Option<LeaderInfo>>,
    ) -> Role {
        Role {
            me,
            clusters: OnceLock::new(),
            clock: OnceLock::new(),
            leader,
            plans: plans
                .iter()
                .map(|(k, p)| (k.clone(), Arc::new(p.clone())))
                .collect(),
        }
    }

    /// From now on this process serves the clusters, while `clock` holds
    /// (`None`: a lone arbiter, always).
    pub fn lead(
        &self,
        clusters: Arc<BTreeMap<String, ClusterHandle>>,
        clock: Option<Arc<LeaderClock>>,
    ) {
        if let Some(c) = clock {
            let _ = self.clock.set(c);
        }
        let _ = self.clusters.set(clusters);
    }

    /// The clusters, if this process serves them; else the refusal that
    /// names the leader (or says this one's leadership lapsed: a leader
    /// that was frozen or cut off past its etcd lease, about to stop).
    pub fn serving(&self) -> Result<&Arc<BTreeMap<String, ClusterHandle>>, Status> {
        let clusters = self.clusters.get().ok_or_else(|| self.refusal())?;
        if self.clock.get().is_some_and(|c| !c.holds()) {
            return Err(Status::unavailable(format!(
                "arbiter {:?} no longer leads (its etcd lease lapsed); it stops, another takes over",
                self.me.name
            )));
        }
        Ok(clusters)
    }

    pub fn leads(&self) -> bool {
        self.clusters.get().is_some()
    }

    /// "leader" or "standby"; "" for a lone arbiter (no etcd).
    pub fn name(&self) -> &'static str {
        match (self.me.name.is_empty(), self.leads()) {
            (true, _) => "",
            (false, true) => "leader",
            (false, false) => "standby",
        }
    }

    /// This arbiter's name and URL in its group.
    pub fn me(&self) -> &LeaderInfo {
        &self.me
    }

    /// Who leads, as a standby last saw it.
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    pub fn plans(&self) -> &BTreeMap<String, Arc<ClusterPlan>> {
        &self.plans
    }

    /// A standby answers this request itself (read-only) rather than
    /// referring it to the leader: it was asked to (`fencectl --no-follow`).
    pub fn answers_itself<T>(&self, req: &Request<T>) -> bool {
        !self.leads() && req.metadata().contains_key(NO_FOLLOW)
    }

    /// `UNAVAILABLE`: this arbiter stands by; the message and the
    /// `fence-leader-url` metadata say who leads.
    pub fn refusal(&self) -> Status {
        if self.me.name.is_empty() {
            // A lone arbiter between binding its port and starting its
            // clusters' tasks.
            return Status::unavailable("the arbiter is starting");
        }
        let who = format!("arbiter {:?}", self.me.name);
        let leader = self.leader();
        if leader.as_ref().is_some_and(|l| l.name == self.me.name) {
            // It just won and starts its clusters' tasks, or the leader key
            // still names its last run (the lease lapses within leader_ttl):
            // no referral (to itself), a plain "try again".
            return Status::unavailable(format!(
                "{who} is starting (the leader key names it: it just won, or its last run's lease has not lapsed yet)"
            ));
        }
        let mut s = Status::unavailable(match &leader {
            Some(l) if l.url.is_empty() => format!(
                "{who} stands by; the leader is {:?} (its URL unknown: an older version)",
                l.name
            ),
            Some(l) => format!("{who} stands by; the leader is {:?} at {}", l.name, l.url),
            None => format!(
                "{who} stands by and knows of no leader yet (etcd unreachable, or an election under way)"
            ),
        });
        s.metadata_mut()
            .insert(ROLE, MetadataValue::from_static("standby"));
        if let Some(Ok(v)) = leader
            .filter(|l| !l.url.is_empty())
            .map(|l| MetadataValue::try_from(l.url.as_str()))
        {
            s.metadata_mut().insert(LEADER_URL, v);
        }
        s
    }
}
