//! The etcd backend of [`Store`]: the same state, history and controls as
//! the embedded redb store, kept in an etcd cluster so that another
//! arbiter process can take over.
//!
//! Keys, under the configured prefix `P`, for cluster `C`:
//!
//! - `P/clusters/C/state`: the cluster's `Persisted`, in a [`StateDoc`]
//!   (JSON) that also names the write that left it;
//! - `P/clusters/C/history/<intent, 20 digits>`: a [`FenceRecord`];
//! - `P/clusters/C/unannounced/<intent>`: the index of confirmed fences
//!   not yet announced (the node id);
//! - `P/clusters/C/controls/<sequence>`: a [`ControlRecord`];
//! - `P/leader`: the leader's name and URL (JSON), under its etcd lease
//!   ([`crate::leadership`]).
//!
//! Every write is one etcd transaction conditioned on the state key being
//! unchanged since it was read *and* on the leader key still being the one
//! this arbiter created: a deposed arbiter (its lease expired, another one
//! leads) can never write, it gets [`StoreError::Deposed`]. A write whose
//! answer was lost is recognised on the retry by the write id it left in
//! the state, so no delta is ever applied twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::etcd::{TxnRequest, response_op};
use serde::{Deserialize, Serialize};

use crate::core::{Delta, NodeId, Persisted};
use crate::etcd::{self, Etcd, EtcdError};
use crate::store::{
    ControlRecord, FenceRecord, RecordChange, Store, StoreError, decode, encode, record_changes,
};

/// The state key's value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateDoc {
    /// The arbiter process that wrote it, and its write number: a write
    /// whose answer was lost is found applied by these.
    pub writer: String,
    pub seq: u64,
    pub state: Persisted,
}

/// The leader key as this arbiter created it: every write is conditioned
/// on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: Vec<u8>,
    pub create_revision: i64,
}

pub struct EtcdStore {
    etcd: Arc<Etcd>,
    prefix: String,
    guard: Option<Guard>,
    writer: String,
    seq: AtomicU64,
}

/// How often a conditioned write is tried again when the state changed
/// under it (or its answer was lost).
const WRITE_ATTEMPTS: usize = 4;

impl EtcdStore {
    /// A store under `prefix` whose writes hold only while `guard` (the
    /// leader key) is unchanged. `writer` names this process in the state
    /// (unique per process: the arbiter's name and its lease id).
    pub fn new(etcd: Arc<Etcd>, prefix: &str, guard: Option<Guard>, writer: String) -> Self {
        EtcdStore {
            etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
            guard,
            writer,
            seq: AtomicU64::new(0),
        }
    }

    fn key(&self, cluster: &str, rest: &str) -> Vec<u8> {
        format!("{}/clusters/{cluster}/{rest}", self.prefix).into_bytes()
    }

    fn numbered(&self, cluster: &str, table: &str, n: u64) -> Vec<u8> {
        self.key(cluster, &format!("{table}/{n:020}"))
    }

    /// The state and the revision it was last written at (0: never).
    fn read_state(&self, cluster: &str) -> Result<(StateDoc, i64), StoreError> {
        let key = self.key(cluster, "state");
        let kv = self.etcd.block(|m| async move { m.get(&key).await })?;
        match kv {
            None => Ok((StateDoc::default(), 0)),
            Some(kv) => Ok((
                decode(&format!("state of {cluster}"), &kv.value)?,
                kv.mod_revision,
            )),
        }
    }

    fn read_fence(&self, cluster: &str, intent: u64) -> Result<Option<FenceRecord>, StoreError> {
        let key = self.numbered(cluster, "history", intent);
        let kv = self.etcd.block(|m| async move { m.get(&key).await })?;
        kv.map(|kv| decode(&format!("history {cluster}/{intent}"), &kv.value))
            .transpose()
    }

    fn read_unannounced(&self, cluster: &str) -> Result<Vec<(u64, NodeId)>, StoreError> {
        let prefix = self.key(cluster, "unannounced/");
        let kvs = self
            .etcd
            .block(|m| async move { m.list(&prefix, 0, false).await })?;
        kvs.iter()
            .map(|kv| {
                let what = String::from_utf8_lossy(&kv.key).to_string();
                Ok((number_of(&what)?, decode(&what, &kv.value)?))
            })
            .collect()
    }

    fn next_control(&self, cluster: &str) -> Result<u64, StoreError> {
        let prefix = self.key(cluster, "controls/");
        let last = self
            .etcd
            .block(|m| async move { m.list(&prefix, 1, true).await })?;
        match last.first() {
            None => Ok(1),
            Some(kv) => Ok(number_of(&String::from_utf8_lossy(&kv.key))? + 1),
        }
    }

    fn read_newest<T: for<'de> Deserialize<'de>>(
        &self,
        cluster: &str,
        table: &str,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = self.key(cluster, &format!("{table}/"));
        let kvs = self
            .etcd
            .block(move |m| async move { m.list(&prefix, limit as i64, true).await })?;
        kvs.iter()
            .map(|kv| decode(&String::from_utf8_lossy(&kv.key), &kv.value))
            .collect()
    }

    /// One attempt: read, fold, write conditioned. `Ok(true)`: written.
    fn try_write(
        &self,
        cluster: &str,
        delta: &Delta,
        unix_ms: u64,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let (doc, revision) = self.read_state(cluster)?;
        if doc.writer == self.writer && doc.seq == seq {
            return Ok(true); // the earlier attempt landed; its answer was lost
        }
        let mut state = doc.state;
        state.apply(delta);
        let changes = record_changes(
            delta,
            unix_ms,
            |intent| self.read_fence(cluster, intent),
            || self.read_unannounced(cluster),
        )?;
        let state_key = self.key(cluster, "state");
        let mut ops = vec![etcd::put(
            state_key.clone(),
            encode(&StateDoc {
                writer: self.writer.clone(),
                seq,
                state,
            }),
            0,
        )];
        for change in changes {
            ops.push(match change {
                RecordChange::History(rec) => etcd::put(
                    self.numbered(cluster, "history", rec.intent),
                    encode(&rec),
                    0,
                ),
                RecordChange::Unannounced {
                    intent,
                    node: Some(node),
                } => etcd::put(
                    self.numbered(cluster, "unannounced", intent),
                    encode(&node),
                    0,
                ),
                RecordChange::Unannounced { intent, node: None } => {
                    etcd::delete(self.numbered(cluster, "unannounced", intent))
                }
                RecordChange::Control(rec) => {
                    let n = self.next_control(cluster)?;
                    etcd::put(self.numbered(cluster, "controls", n), encode(&rec), 0)
                }
            });
        }
        let mut compare = vec![if revision == 0 {
            etcd::created_at(&state_key, 0)
        } else {
            etcd::modified_at(&state_key, revision)
        }];
        let mut failure = Vec::new();
        if let Some(g) = &self.guard {
            compare.push(etcd::created_at(&g.key, g.create_revision));
            failure.push(etcd::read(g.key.clone()));
        }
        let req = TxnRequest {
            compare,
            success: ops,
            failure,
        };
        let r = self.etcd.block(|m| async move { m.txn(req).await })?;
        if r.succeeded {
            return Ok(true);
        }
        if let Some(g) = &self.guard {
            let leader = r.responses.into_iter().find_map(|op| match op.response {
                Some(response_op::Response::ResponseRange(rr)) => Some(rr.kvs),
                _ => None,
            });
            let now = leader.and_then(|kvs| kvs.into_iter().next());
            if now.as_ref().map(|kv| kv.create_revision) != Some(g.create_revision) {
                return Err(StoreError::Deposed {
                    cluster: cluster.to_string(),
                    leader: now
                        .map(|kv| crate::leadership::LeaderInfo::decode(&kv.value).name)
                        .unwrap_or_else(|| "nobody".into()),
                });
            }
        }
        Ok(false) // the state changed under us: read again
    }
}

fn number_of(key: &str) -> Result<u64, StoreError> {
    key.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: key.to_string(),
            reason: "the key does not end in a number".into(),
        })
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        StoreError::Etcd(e.to_string())
    }
}

impl Store for EtcdStore {
    fn load(&self, cluster: &str) -> Result<Persisted, StoreError> {
        Ok(self.read_state(cluster)?.0.state)
    }

    fn apply(&self, cluster: &str, delta: &Delta, unix_ms: u64) -> Result<(), StoreError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = None;
        for _ in 0..WRITE_ATTEMPTS {
            match self.try_write(cluster, delta, unix_ms, seq) {
                Ok(true) => return Ok(()),
                Ok(false) => last = None,
                // The answer may have been lost after etcd applied it: the
                // next attempt reads the state first and finds it.
                Err(StoreError::Etcd(e)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Etcd(last.unwrap_or_else(|| {
            format!("the state of {cluster} kept changing under the write ({WRITE_ATTEMPTS} attempts): is another arbiter writing without leadership?")
        })))
    }

    fn history(&self, cluster: &str, limit: usize) -> Result<Vec<FenceRecord>, StoreError> {
        self.read_newest(cluster, "history", limit)
    }

    fn controls(&self, cluster: &str, limit: usize) -> Result<Vec<ControlRecord>, StoreError> {
        self.read_newest(cluster, "controls", limit)
    }
}
