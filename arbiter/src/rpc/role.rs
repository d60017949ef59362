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
use crate::leadership::LeaderInfo;

use proto::standby::{LEADER_URL, NO_FOLLOW, ROLE};

pub struct Role {
    /// This arbiter's name in its group ("" without etcd).
    me: String,
    /// Set once this process leads (at once without etcd).
    clusters: OnceLock<Arc<BTreeMap<String, ClusterHandle>>>,
    /// Who leads, as the last poll of the leader key saw it (standby only).
    leader: watch::Receiver<Option<LeaderInfo>>,
    /// The configured clusters (what a standby can show).
    plans: BTreeMap<String, Arc<ClusterPlan>>,
}

impl Role {
    pub fn new(
        me: String,
        plans: &BTreeMap<String, ClusterPlan>,
        leader: watch::Receiver<Option<LeaderInfo>>,
    ) -> Role {
        Role {
            me,
            clusters: OnceLock::new(),
            leader,
            plans: plans
                .iter()
                .map(|(k, p)| (k.clone(), Arc::new(p.clone())))
                .collect(),
        }
    }

    /// From now on this process serves the clusters.
    pub fn lead(&self, clusters: Arc<BTreeMap<String, ClusterHandle>>) {
        let _ = self.clusters.set(clusters);
    }

    /// The clusters, if this process serves them; else the refusal that
    /// names the leader.
    pub fn serving(&self) -> Result<&Arc<BTreeMap<String, ClusterHandle>>, Status> {
        self.clusters.get().ok_or_else(|| self.refusal())
    }

    pub fn leads(&self) -> bool {
        self.clusters.get().is_some()
    }

    /// "leader" or "standby"; "" for a lone arbiter (no etcd).
    pub fn name(&self) -> &'static str {
        match (self.me.is_empty(), self.leads()) {
            (true, _) => "",
            (false, true) => "leader",
            (false, false) => "standby",
        }
    }

    pub fn me(&self) -> &str {
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
        if self.me.is_empty() {
            // A lone arbiter between binding its port and starting its
            // clusters' tasks.
            return Status::unavailable("the arbiter is starting");
        }
        let who = format!("arbiter {:?}", self.me);
        let leader = self.leader();
        let mut s = Status::unavailable(match &leader {
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
