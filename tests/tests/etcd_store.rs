//! The etcd store and the leader election against a real etcd cluster
//! (Debian's `etcd-server`, three members on 127.0.0.1): it keeps exactly
//! what the embedded store keeps; a deposed leader can never write; writes
//! go on through the loss of an etcd member and of etcd's leader; a leader
//! that stops resigns, and a standby takes over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::core::{Delta, Persisted};
use arbiter::etcd::Etcd;
use arbiter::etcd_store::EtcdStore;
use arbiter::leadership::{self, Leadership};
use arbiter::store::{RedbStore, Store, StoreError};
use tests::etcd_peer::EtcdCluster;
use tests::peers::{required, serial};
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(1);

fn connect(c: &EtcdCluster) -> Arc<Etcd> {
    Arc::new(Etcd::connect(&c.endpoints(), Duration::from_secs(3), None).expect("etcd client"))
}

/// Stand for leadership as `name` under `prefix` until it is won.
fn win(etcd: &Etcd, prefix: &str, name: &str) -> Leadership {
    let (m, p, n) = (etcd.members(), prefix.to_string(), name.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    etcd.spawn(async move {
        let me = leadership::LeaderInfo {
            name: n,
            url: String::new(),
        };
        let seen = tokio::sync::watch::channel(None).0;
        let r = leadership::campaign(m, &p, &me, TTL, &seen, CancellationToken::new()).await;
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(15))
        .expect("won within 15 s")
        .expect("campaign")
        .expect("not stopped")
}

fn store(etcd: &Arc<Etcd>, prefix: &str, l: &Leadership, name: &str) -> EtcdStore {
    EtcdStore::new(etcd.clone(), prefix, Some(l.guard.clone()), name.into())
}

/// A history with every kind of record change: intents, failed attempts,
/// confirmations (by devices and by hand), epochs, controls, maintenance.
fn deltas() -> Vec<Delta> {
    let mut d = Vec::new();
    for (intent, node) in [(1u64, 3u32), (2, 4), (3, 5)] {
        d.push(Delta::FenceIntent {
            intent,
            node,
            reason: format!("lost {node}"),
        });
    }
    d.push(Delta::FenceAttemptFailed {
        intent: 1,
        node: 3,
        detail: "bmc down".into(),
    });
    d.push(Delta::FenceConfirmed {
        intent: 1,
        node: 3,
        instance: 7,
        boot: 9,
        operator: None,
    });
    d.push(Delta::Operator {
        by: "alice".into(),
        action: "confirm",
        node: Some(4),
        detail: "powered down by hand".into(),
    });
    d.push(Delta::FenceConfirmed {
        intent: 2,
        node: 4,
        instance: 0,
        boot: 0,
        operator: Some("alice".into()),
    });
    d.push(Delta::Backed {
        epoch: 2,
        survivors: [1, 2].into(),
        gone: [3].into(),
    });
    d.push(Delta::Maintenance {
        node: Some(2),
        on: true,
    });
    d.push(Delta::Operator {
        by: "bob".into(),
        action: "maintenance_on",
        node: Some(2),
        detail: String::new(),
    });
    d.push(Delta::Backed {
        epoch: 3,
        survivors: [1, 2].into(),
        gone: [3, 4].into(),
    });
    d
}

fn same_as_redb(s: &dyn Store, cluster: &str, deltas: &[Delta]) {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(dir.path()).unwrap();
    for (i, d) in deltas.iter().enumerate() {
        redb.apply(cluster, d, 1000 + i as u64).unwrap();
    }
    assert_eq!(s.load(cluster).unwrap(), redb.load(cluster).unwrap());
    assert_eq!(
        s.history(cluster, 100).unwrap(),
        redb.history(cluster, 100).unwrap()
    );
    assert_eq!(
        s.history(cluster, 2).unwrap(),
        redb.history(cluster, 2).unwrap()
    );
    assert_eq!(
        s.controls(cluster, 100).unwrap(),
        redb.controls(cluster, 100).unwrap()
    );
}

/// Every delta folds to the same state, history and controls as in the
/// embedded store, read back through a second client (a new leader).
#[test]
fn the_etcd_store_keeps_what_the_embedded_store_keeps() {
    let _g = serial();
    let Some(c) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let etcd = connect(&c);
    let l = win(&etcd, "/t1", "a");
    let s = store(&etcd, "/t1", &l, "a#1");
    assert_eq!(s.load("prod").unwrap(), Persisted::default());
    let deltas = deltas();
    for (i, d) in deltas.iter().enumerate() {
        s.apply("prod", d, 1000 + i as u64).unwrap();
    }
    same_as_redb(&s, "prod", &deltas);
    assert_eq!(s.load("prod").unwrap().epoch, 3);
    // Another cluster under the same prefix is untouched.
    assert_eq!(s.load("prod2").unwrap(), Persisted::default());
    assert!(s.history("prod2", 10).unwrap().is_empty());
    // A second process reads the same.
    let other = connect(&c);
    let reader = EtcdStore::new(other, "/t1", None, "reader".into());
    same_as_redb(&reader, "prod", &deltas);
}

/// The leader's lease ends (it stopped renewing it: frozen, cut off); a
/// standby wins; the old leader's next write is refused as deposed and
/// changes nothing, while the new leader writes on the state it left.
#[test]
fn a_deposed_leader_can_never_write() {
    let _g = serial();
    let Some(c) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let (ea, eb) = (connect(&c), connect(&c));
    let a = win(&ea, "/t2", "a");
    let sa = store(&ea, "/t2", &a, "a#1");
    sa.apply("prod", &Delta::EpochRaised { epoch: 5 }, 1)
        .unwrap();
    // `a` never renews its lease: `b` wins once it expired.
    let started = Instant::now();
    let b = win(&eb, "/t2", "b");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "b won while a's lease ran: {:?}",
        started.elapsed()
    );
    assert!(
        !a.clock.holds(),
        "a's clock still holds after its lease expired"
    );
    let e = sa
        .apply("prod", &Delta::EpochRaised { epoch: 9 }, 2)
        .expect_err("a deposed leader wrote");
    assert!(
        matches!(&e, StoreError::Deposed { leader, .. } if leader == "b"),
        "{e}"
    );
    let sb = store(&eb, "/t2", &b, "b#1");
    assert_eq!(
        sb.load("prod").unwrap().epoch,
        5,
        "a's refused write landed"
    );
    sb.apply("prod", &Delta::EpochRaised { epoch: 6 }, 3)
        .unwrap();
    assert_eq!(sa.load("prod").unwrap().epoch, 6);
}

/// Writes go on while etcd members die: the member the client used first,
/// then etcd's raft leader; with two of three members gone a write fails
/// with a clear error (no quorum), never a silent success.
#[test]
fn writes_go_on_through_the_loss_of_an_etcd_member_and_its_leader() {
    let _g = serial();
    let Some(mut c) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let etcd = connect(&c);
    let l = Arc::new(win(&etcd, "/t3", "a"));
    let stop = CancellationToken::new();
    {
        let (m, l, stop) = (etcd.members(), l.clone(), stop.clone());
        etcd.spawn(async move { leadership::keep(m, &l, TTL, stop).await });
    }
    let s = store(&etcd, "/t3", &l, "a#1");
    let mut epoch = 1;
    let mut write = |s: &EtcdStore| {
        epoch += 1;
        s.apply("prod", &Delta::EpochRaised { epoch }, epoch)
            .map(|_| epoch)
    };
    write(&s).unwrap();
    c.kill(0);
    let e = write(&s).unwrap();
    assert_eq!(s.load("prod").unwrap().epoch, e);
    let leader = wait_leader(&c);
    c.kill(leader);
    // One member of three: no quorum, no write; the error says so.
    let err = write(&s).expect_err("a write without etcd quorum succeeded");
    assert!(err.to_string().contains("etcd"), "{err}");
    c.restart(0).expect("member 0 back");
    c.wait_healthy(Duration::from_secs(20))
        .expect("quorum back");
    // The lease could not be renewed without quorum: the leader knows it
    // lost (an arbiter exits then). A write now is refused as deposed if
    // the lease expired in etcd, or lands if etcd extended it on its new
    // leader; never lost silently.
    assert!(!l.clock.holds() && l.lost.is_cancelled());
    match write(&s) {
        Ok(e) => assert_eq!(s.load("prod").unwrap().epoch, e),
        Err(StoreError::Deposed { .. }) => {}
        Err(e) => panic!("after quorum came back: {e}"),
    }
    stop.cancel();
}

/// The member that is etcd's raft leader, within 10 s.
fn wait_leader(c: &EtcdCluster) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = c.leader() {
            return i;
        }
        assert!(Instant::now() < until, "no etcd leader within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A leader that keeps its lease stays the leader past several TTLs; when
/// it stops it resigns, and a standby takes over within a fraction of the
/// TTL instead of waiting for the lease to expire.
#[test]
fn a_kept_lease_holds_and_a_clean_stop_hands_over_at_once() {
    let _g = serial();
    let Some(c) = required("etcd", EtcdCluster::start(3)) else {
        return;
    };
    let (ea, eb) = (connect(&c), connect(&c));
    let a = Arc::new(win(&ea, "/t4", "a"));
    let stop = CancellationToken::new();
    let keeper = {
        let (m, a, stop) = (ea.members(), a.clone(), stop.clone());
        ea.spawn(async move { leadership::keep(m, &a, TTL, stop).await })
    };
    std::thread::sleep(TTL * 3);
    assert!(a.clock.holds(), "a kept lease lapsed");
    assert!(!a.lost.is_cancelled());
    let sa = store(&ea, "/t4", &a, "a#1");
    sa.apply("prod", &Delta::EpochRaised { epoch: 2 }, 1)
        .expect("the leader writes after 3 TTLs");
    // A standby waits meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let m = eb.members();
        eb.spawn(async move {
            let me = leadership::LeaderInfo {
                name: "b".into(),
                url: "http://127.0.0.1:1".into(),
            };
            let (seen, _) = tokio::sync::watch::channel(None);
            let r = leadership::campaign(m, "/t4", &me, TTL, &seen, CancellationToken::new()).await;
            let _ = tx.send((Instant::now(), r));
        });
    }
    assert!(
        rx.recv_timeout(TTL * 2).is_err(),
        "b won while a kept its lease"
    );
    let stopped = Instant::now();
    stop.cancel();
    let (won_at, r) = rx.recv_timeout(Duration::from_secs(5)).expect("b wins");
    assert!(r.expect("campaign").is_some());
    assert!(
        won_at.duration_since(stopped) < Duration::from_millis(800),
        "handover took {:?}",
        won_at.duration_since(stopped)
    );
    assert!(!a.clock.holds(), "a resigned yet its clock holds");
    drop(keeper);
}
