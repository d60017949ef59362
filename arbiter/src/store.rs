//! Durable state: the [`Store`] trait and its embedded backend on redb.
//!
//! What is kept per cluster: the fencing epoch, the backed survivor set, the
//! nodes confirmed gone, the open fence intents, and a history of every
//! fence, with an index of its confirmed fences not yet announced (so an
//! epoch change touches only those records). Every write is one redb transaction, committed durably (fsync)
//! before the caller goes on: the core's "persist before acting" rests on it.
//! The state is folded with [`Persisted::apply`], the same function the
//! simulation uses, so a restarted arbiter sees exactly what was written.
//!
//! The cluster state is stored as the core's own `Persisted`, in JSON; fence
//! records as `FenceRecord`.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use crate::core::{Delta, NodeId, Persisted};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_state");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("fence_history");
/// Confirmed fences not yet announced (their history record still has epoch
/// 0): (cluster, intent) -> node. Filled on `FenceConfirmed`, drained on
/// `Backed`, so an epoch change reads and rewrites only those records, never
/// the whole history.
const UNANNOUNCED: TableDefinition<(&str, u64), NodeId> = TableDefinition::new("fence_unannounced");
/// The operators' controls: (cluster, sequence) -> `ControlRecord`, in
/// the order they were written.
const CONTROLS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("operator_controls");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store record {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("etcd store: {0}")]
    Etcd(String),
    /// This arbiter no longer leads (its etcd lease ended; `leader` leads
    /// now): its write was refused, as every later one will be.
    #[error(
        "write to cluster {cluster:?} refused: this arbiter is no longer the leader (the leader is {leader})"
    )]
    Deposed { cluster: String, leader: String },
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// One fence as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    pub node: NodeId,
    pub intent: u64,
    pub reason: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// pending | confirmed
    pub outcome: String,
    /// Epoch in which survivors were told (0 until then).
    pub epoch: u64,
    /// Failed rounds so far, last first.
    pub failures: Vec<String>,
    /// Who confirmed it off by hand (`fencectl confirm`); `None`: its
    /// devices (or the watchdog rule) did.
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

/// One operator control as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    pub unix_ms: u64,
    pub by: String,
    /// fence | confirm | unfence | maintenance_on | maintenance_off | clear | move
    pub action: String,
    pub node: Option<NodeId>,
    pub detail: String,
}

/// Durable state of every cluster. Backends: [`RedbStore`] (embedded, the
/// default) and [`EtcdStore`](crate::etcd_store::EtcdStore) (replicated,
/// for several arbiter processes).
pub trait Store: Send + Sync {
    fn load(&self, cluster: &str) -> Result<Persisted, StoreError>;
    /// Apply one change durably; returns once it is on disk.
    fn apply(&self, cluster: &str, delta: &Delta, unix_ms: u64) -> Result<(), StoreError>;
    /// Newest first.
    fn history(&self, cluster: &str, limit: usize) -> Result<Vec<FenceRecord>, StoreError>;
    /// The operators' controls, newest first.
    fn controls(&self, cluster: &str, limit: usize) -> Result<Vec<ControlRecord>, StoreError>;
}

pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Open (or create) the store in `dir/arbiter.redb`. The whole file is
    /// checked first (every page's checksum): a file damaged outside redb
    /// stops the start with an error naming it, never a silent reset or a
    /// panic later; so does an empty file (a truncated store is not a new
    /// one: move it away to start without history).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("arbiter.redb");
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(StoreError::Corrupt {
                what: path.display().to_string(),
                reason: "the file is empty (truncated?); refusing to start as if there were no history: move it away to start without one".into(),
            });
        }
        let open = || -> Result<Database, redb::Error> {
            std::fs::create_dir_all(dir).map_err(redb::Error::Io)?;
            let db = redb::Builder::new()
                .set_check_integrity_on_open(true)
                .create(&path)?;
            let tx = db.begin_write()?;
            tx.open_table(STATE)?;
            tx.open_table(HISTORY)?;
            tx.open_table(CONTROLS)?;
            tx.commit()?;
            Ok(db)
        };
        // (redb may still panic on a damaged file the check missed: that
        // is a corrupt store too, not a crash of the arbiter.)
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = open().map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
            let store = RedbStore { db };
            store.index_unannounced()?;
            Ok(store)
        }));
        opened.unwrap_or_else(|_| {
            Err(StoreError::Corrupt {
                what: path.display().to_string(),
                reason: "the store library failed reading it (a damaged file)".into(),
            })
        })
    }

    /// Create the [`UNANNOUNCED`] index if this store predates it: one scan
    /// of the history, at open, for the confirmed fences still at epoch 0.
    fn index_unannounced(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        if tx.list_tables()?.any(|t| t.name() == UNANNOUNCED.name()) {
            return Ok(());
        }
        {
            let hist = tx.open_table(HISTORY)?;
            let mut index = tx.open_table(UNANNOUNCED)?;
            for row in hist.iter()? {
                let (k, v) = row?;
                let (cluster, intent) = k.value();
                let rec: FenceRecord = decode(&format!("history {cluster}/{intent}"), v.value())?;
                if unannounced(&rec) {
                    index.insert((cluster, intent), rec.node)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A confirmed fence whose epoch is not stamped yet.
fn unannounced(rec: &FenceRecord) -> bool {
    rec.outcome == "confirmed" && rec.epoch == 0
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data serializes")
}

impl RedbStore {
    fn load_state(&self, cluster: &str) -> Result<Persisted, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STATE)?;
        match t.get(cluster)? {
            Some(v) => Ok(decode::<Persisted>(
                &format!("state of {cluster}"),
                v.value(),
            )?),
            None => Ok(Persisted::default()),
        }
    }

    fn write(&self, cluster: &str, delta: &Delta, unix_ms: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut state = tx.open_table(STATE)?;
            let mut p: Persisted = match state.get(cluster)? {
                Some(v) => decode::<Persisted>(&format!("state of {cluster}"), v.value())?,
                None => Persisted::default(),
            };
            p.apply(delta);
            state.insert(cluster, encode(&p).as_slice())?;
            let mut hist = tx.open_table(HISTORY)?;
            let mut index = tx.open_table(UNANNOUNCED)?;
            let changes = record_changes(
                delta,
                unix_ms,
                |intent| match hist.get((cluster, intent))? {
                    Some(v) => decode(&format!("history {cluster}/{intent}"), v.value()).map(Some),
                    None => Ok(None),
                },
                || {
                    let mut due = Vec::new();
                    for row in index.range((cluster, 0)..=(cluster, u64::MAX))? {
                        let (k, node) = row?;
                        due.push((k.value().1, node.value()));
                    }
                    Ok(due)
                },
            )?;
            for change in changes {
                match change {
                    RecordChange::History(rec) => {
                        hist.insert((cluster, rec.intent), encode(&rec).as_slice())?;
                    }
                    RecordChange::Unannounced { intent, node } => {
                        match node {
                            Some(node) => index.insert((cluster, intent), node)?,
                            None => index.remove((cluster, intent))?,
                        };
                    }
                    RecordChange::Control(rec) => {
                        let mut controls = tx.open_table(CONTROLS)?;
                        let next = controls
                            .range((cluster, 0)..=(cluster, u64::MAX))?
                            .next_back()
                            .transpose()?
                            .map_or(1, |(k, _)| k.value().1 + 1);
                        controls.insert((cluster, next), encode(&rec).as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A change one delta makes to the records kept beside the state (the
/// history, its index of unannounced fences, the controls): worked out
/// once, by [`record_changes`], for every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordChange {
    /// Write this fence record (new or changed).
    History(FenceRecord),
    /// Index a confirmed fence not yet announced (`Some(node)`), or drop
    /// it from the index (`None`).
    Unannounced { intent: u64, node: Option<NodeId> },
    /// Append this control.
    Control(ControlRecord),
}

/// What `delta` changes in the records beside the state. `fence` reads one
/// history record; `unannounced` reads the whole index, (intent, node), of
/// this cluster. Only a `Backed` delta reads the index, and only the
/// records it names: an epoch change never reads the whole history.
pub(crate) fn record_changes(
    delta: &Delta,
    unix_ms: u64,
    mut fence: impl FnMut(u64) -> Result<Option<FenceRecord>, StoreError>,
    unannounced_fences: impl FnOnce() -> Result<Vec<(u64, NodeId)>, StoreError>,
) -> Result<Vec<RecordChange>, StoreError> {
    let mut out = Vec::new();
    match delta {
        Delta::FenceIntent {
            intent,
            node,
            reason,
        } => {
            out.push(RecordChange::History(FenceRecord {
                node: *node,
                intent: *intent,
                reason: reason.clone(),
                started_unix_ms: unix_ms,
                finished_unix_ms: None,
                outcome: "pending".into(),
                epoch: 0,
                failures: vec![],
                confirmed_by: None,
            }));
            out.push(RecordChange::Unannounced {
                intent: *intent,
                node: None,
            });
        }
        Delta::FenceAttemptFailed { intent, detail, .. } => {
            if let Some(mut rec) = fence(*intent)? {
                rec.failures.insert(0, detail.clone());
                rec.failures.truncate(20);
                out.push(RecordChange::History(rec));
            }
        }
        Delta::FenceConfirmed {
            intent, operator, ..
        } => {
            if let Some(mut rec) = fence(*intent)? {
                rec.outcome = "confirmed".into();
                rec.finished_unix_ms = Some(unix_ms);
                rec.confirmed_by = operator.clone();
                let index = unannounced(&rec).then_some(RecordChange::Unannounced {
                    intent: *intent,
                    node: Some(rec.node),
                });
                out.push(RecordChange::History(rec));
                out.extend(index);
            }
        }
        // Kept in the state (`Persisted::off`); no fence record changes.
        Delta::AlertCleared { .. }
        | Delta::AliveAfterOff { .. }
        | Delta::AgentSeen { .. }
        | Delta::Watchdog { .. }
        | Delta::WatchdogFenced { .. }
        | Delta::Group { .. }
        | Delta::Maintenance { .. }
        | Delta::MaintenanceHeld { .. }
        | Delta::Unconfigured { .. }
        | Delta::EpochRaised { .. } => {}
        Delta::Operator {
            by,
            action,
            node,
            detail,
        } => out.push(RecordChange::Control(ControlRecord {
            unix_ms,
            by: by.clone(),
            action: action.to_string(),
            node: *node,
            detail: detail.clone(),
        })),
        Delta::Backed { epoch, gone, .. } => {
            // Stamp the epoch on confirmed fences not yet announced whose
            // node is gone: only those records are read.
            for (intent, node) in unannounced_fences()? {
                if !gone.contains(&node) {
                    continue;
                }
                if let Some(mut rec) = fence(intent)? {
                    if unannounced(&rec) {
                        rec.epoch = *epoch;
                    }
                    out.push(RecordChange::History(rec));
                }
                // Epoch 0 stamps nothing: the record stays due.
                if *epoch != 0 {
                    out.push(RecordChange::Unannounced { intent, node: None });
                }
            }
        }
    }
    Ok(out)
}

impl Store for RedbStore {
    fn load(&self, cluster: &str) -> Result<Persisted, StoreError> {
        // (A panic of the store library on a damaged file is a corrupt
        // store, reported as such.)
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.load_state(cluster)))
            .unwrap_or_else(|_| {
                Err(StoreError::Corrupt {
                    what: format!("state of {cluster}"),
                    reason: "the store library failed reading it (a damaged file)".into(),
                })
            })
    }

    fn apply(&self, cluster: &str, delta: &Delta, unix_ms: u64) -> Result<(), StoreError> {
        self.write(cluster, delta, unix_ms)
    }

    fn history(&self, cluster: &str, limit: usize) -> Result<Vec<FenceRecord>, StoreError> {
        self.read_newest(HISTORY, cluster, limit)
    }

    fn controls(&self, cluster: &str, limit: usize) -> Result<Vec<ControlRecord>, StoreError> {
        self.read_newest(CONTROLS, cluster, limit)
    }
}

impl RedbStore {
    fn read_newest<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<(&str, u64), &[u8]>,
        cluster: &str,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table) {
            Ok(t) => t,
            // A store from before the table: nothing written yet.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.range((cluster, 0)..=(cluster, u64::MAX))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            out.push(decode(
                &format!("{} {cluster}/{}", table.name(), k.value().1),
                v.value(),
            )?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_history_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            s.apply(
                "c",
                &Delta::FenceIntent {
                    intent: 1,
                    node: 3,
                    reason: "lost".into(),
                },
                10,
            )
            .unwrap();
            s.apply(
                "c",
                &Delta::FenceAttemptFailed {
                    intent: 1,
                    node: 3,
                    detail: "bmc down".into(),
                },
                11,
            )
            .unwrap();
        }
        let s = RedbStore::open(dir.path()).unwrap();
        let p = s.load("c").unwrap();
        assert_eq!(p.open_intents, [(3, 1)].into());
        assert_eq!(p.next_intent, 2);
        s.apply(
            "c",
            &Delta::FenceConfirmed {
                intent: 1,
                node: 3,
                instance: 7,
                boot: 0,
                operator: None,
            },
            12,
        )
        .unwrap();
        s.apply(
            "c",
            &Delta::Backed {
                epoch: 2,
                survivors: [1, 2].into(),
                gone: [3].into(),
            },
            13,
        )
        .unwrap();
        let p = s.load("c").unwrap();
        assert!(p.open_intents.is_empty());
        assert_eq!((p.epoch, p.backed, p.gone), (2, [1, 2].into(), [3].into()));
        let h = s.history("c", 10).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].outcome, "confirmed");
        assert_eq!(h[0].epoch, 2);
        assert_eq!(h[0].failures, vec!["bmc down".to_string()]);
        assert!(s.history("other", 10).unwrap().is_empty());
        assert_eq!(s.load("other").unwrap(), Persisted::default());
    }

    fn intent(s: &RedbStore, intent: u64, node: NodeId) {
        s.apply(
            "c",
            &Delta::FenceIntent {
                intent,
                node,
                reason: "lost".into(),
            },
            intent * 10,
        )
        .unwrap();
    }

    fn confirmed(s: &RedbStore, intent: u64, node: NodeId) {
        s.apply(
            "c",
            &Delta::FenceConfirmed {
                intent,
                node,
                instance: 0,
                boot: 0,
                operator: None,
            },
            intent * 10 + 1,
        )
        .unwrap();
    }

    fn backed(s: &RedbStore, epoch: u64, gone: &[NodeId]) {
        s.apply(
            "c",
            &Delta::Backed {
                epoch,
                survivors: [1, 2].into(),
                gone: gone.iter().copied().collect(),
            },
            epoch * 100,
        )
        .unwrap();
    }

    /// intent -> (outcome, epoch), oldest first.
    fn epochs(s: &RedbStore) -> Vec<(u64, String, u64)> {
        let mut h: Vec<_> = s
            .history("c", 100)
            .unwrap()
            .into_iter()
            .map(|r| (r.intent, r.outcome, r.epoch))
            .collect();
        h.reverse();
        h
    }

    fn index_len(s: &RedbStore) -> usize {
        let tx = s.db.begin_read().unwrap();
        let t = tx.open_table(UNANNOUNCED).unwrap();
        t.iter().unwrap().count()
    }

    #[test]
    fn backed_stamps_its_epoch_on_the_confirmed_fences_of_gone_nodes_only() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            intent(&s, 1, 3);
            confirmed(&s, 1, 3);
            intent(&s, 2, 4);
            confirmed(&s, 2, 4);
            intent(&s, 3, 5);
            // Node 4's fence is confirmed but it is not gone in this epoch.
            backed(&s, 2, &[3]);
            let c = |i, e| (i, "confirmed".to_string(), e);
            assert_eq!(epochs(&s), vec![c(1, 2), c(2, 0), (3, "pending".into(), 0)]);
            backed(&s, 3, &[3, 4]);
            assert_eq!(epochs(&s), vec![c(1, 2), c(2, 3), (3, "pending".into(), 0)]);
            assert_eq!(index_len(&s), 0);
        }
        // The index is durable like the rest.
        let s = RedbStore::open(dir.path()).unwrap();
        confirmed(&s, 3, 5);
        assert_eq!(index_len(&s), 1);
        drop(s);
        let s = RedbStore::open(dir.path()).unwrap();
        backed(&s, 4, &[3, 4, 5]);
        let c = |i, e| (i, "confirmed".to_string(), e);
        assert_eq!(epochs(&s), vec![c(1, 2), c(2, 3), c(3, 4)]);
        let h = s.history("c", 1).unwrap();
        assert_eq!(
            (h[0].started_unix_ms, h[0].finished_unix_ms),
            (30, Some(31)),
            "{h:?}"
        );
        assert_eq!(index_len(&s), 0);
    }

    #[test]
    fn a_backed_write_reads_no_old_history_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        intent(&s, 1, 3);
        confirmed(&s, 1, 3);
        backed(&s, 2, &[3]);
        // An old, announced record that no longer decodes: a Backed write
        // that scanned the history would fail on it.
        let tx = s.db.begin_write().unwrap();
        tx.open_table(HISTORY)
            .unwrap()
            .insert(("c", 1), b"{not json".as_slice())
            .unwrap();
        tx.commit().unwrap();
        intent(&s, 2, 4);
        confirmed(&s, 2, 4);
        backed(&s, 3, &[3, 4]);
        let h = s.history("c", 1).unwrap();
        assert_eq!((h[0].intent, h[0].epoch), (2, 3));
        assert_eq!(s.load("c").unwrap().epoch, 3);
    }

    /// A truncated (empty) store file, or one damaged in the middle, stops
    /// the open with an error naming the file: never taken for a new store,
    /// never a panic.
    #[test]
    fn a_damaged_or_empty_store_is_an_error_not_a_reset() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("arbiter.redb");
        std::fs::write(&path, b"").unwrap();
        let e = RedbStore::open(d.path())
            .err()
            .expect("an empty file is refused");
        assert!(e.to_string().contains("arbiter.redb"), "{e}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "the file was rewritten"
        );
        std::fs::remove_file(&path).unwrap();
        {
            let s = RedbStore::open(d.path()).unwrap();
            for i in 1..=50 {
                intent(&s, i, 2);
                confirmed(&s, i, 2);
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for b in &mut bytes[len / 4..len * 3 / 4] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = RedbStore::open(d.path())
            .err()
            .expect("a damaged file is refused");
        assert!(e.to_string().contains("arbiter.redb"), "{e}");
    }

    #[test]
    fn a_store_written_before_the_index_is_indexed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            intent(&s, 1, 3);
            confirmed(&s, 1, 3);
            intent(&s, 2, 4);
            confirmed(&s, 2, 4);
            backed(&s, 2, &[3]);
            // As an older arbiter left it: no index table.
            let tx = s.db.begin_write().unwrap();
            assert!(tx.delete_table(UNANNOUNCED).unwrap());
            tx.commit().unwrap();
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(index_len(&s), 1);
        backed(&s, 3, &[3, 4]);
        let c = |i, e| (i, "confirmed".to_string(), e);
        assert_eq!(epochs(&s), vec![c(1, 2), c(2, 3)]);
    }
}
