//! Review of commit 2a78bac (off records persisted, lease bounds that allow
//! for an unnoticed jump of the arbiter's clock, a rebooted node joining
//! before the commit, alive-after-off members leaving like off ones).
//!
//! Each test here failed against the core as reviewed (a helper's
//! adversarial review); each passes since the fix: a noticed gap of the
//! arbiter's clock moves every lease bound still to be waited out (F1), and
//! an epoch raised above an agent's has its own delta, which keeps the
//! persisted off records (F2). See the comment above each test.
//!
//! Run: `cargo test -q --release -p arbiter --lib review2`

use super::test_support::*;
use super::*;

/// F1a. A *noticed* forward step of the arbiter's clock erases the wait for
/// a previous agent instance's lease (DESIGN/ARCHITECTURE "One process per
/// node: a different agent instance of a node gets no lease while the
/// previous one's may still run").
///
/// Change 2 sets `lease_bound = grant + lease_max + stall_after` so that an
/// *unnoticed* jump (≤ `stall_after`) of the arbiter's clock cannot cut the
/// wait short. A larger jump is noticed (`Stalled`) — the core itself says
/// a gap may be "a stall, a suspended process, a clock jump", and restarts
/// its start-up grace for it while `!ready` — but once ready it only drops
/// contact: `lease_bound` and `no_lease_before` stay in the old timeline,
/// so after a 1 s step both have "passed" although almost no real time did.
///
/// 3 nodes, LMS. Node 1 (instance 1) renews its lease at t = 1000 ms. 10 ms
/// later a second instance (111) of node 1 connects: it must wait until
/// ≈ 1507 ms. The arbiter's clock then steps 1 s forward. The next heartbeat
/// of the new instance regains contact by itself (LMS) and gets a lease,
/// 100 ms of real time after the first instance's lease was renewed: two
/// processes of node 1 hold a lease at the same real time.
///
/// Fix: on a noticed gap, treat it as possibly no real time at all: push
/// every `lease_bound` and `no_lease_before` forward by the gap (or, more
/// simply, forbid taking over from any lease bound until `now + grace`,
/// as the start-up grace does when `!ready`).
#[test]
fn f1a_noticed_clock_jump_lets_a_second_instance_hold_a_lease_with_the_first() {
    let mut h = H::boot(
        spec_levels(3, QuorumMode::LastManStanding, 1),
        Persisted::default(),
        &[1, 2, 3],
    );
    h.run(ms(1000), &ALL3);
    let first_grant = *h.grants(1).last().expect("node 1 holds a lease");
    assert_eq!(first_grant, ms(1000));
    h.now += ms(10);
    h.connect(1, 11, 111);
    // The arbiter's clock steps 1 s forward (no real time passes).
    h.now += ms(1000);
    h.jump += ms(1000);
    let before = h.log.len();
    h.run(ms(280), &[(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])]);
    assert!(
        h.log[before..]
            .iter()
            .any(|(_, a)| matches!(a, Action::Notice(Notice::Stalled { .. }))),
        "the jump is noticed"
    );
    // The first instance's lease (agent clock, from its send time) runs
    // until real 1300 ms; every ack in this window is before that.
    let second: Vec<Duration> = h.log[before..]
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Ack {
                node: 1,
                session: 11,
                lease: Some(_),
                ..
            } => Some(*t - h.jump),
            _ => None,
        })
        .collect();
    assert!(
        second.is_empty(),
        "second instance of node 1 leased at real {second:?}, while the first \
         instance's lease (renewed at real {first_grant:?}) still runs"
    );
}

/// F1b. The same noticed step lets survivors take over from a node whose
/// device lied before that node's lease has ended: the belt-and-braces
/// wait of `commit` (change 2: "survivors take over only once every lease
/// the fenced nodes held has ended too, so even a device that lied (a
/// wrong outlet) cannot make two holders") is measured on a clock that
/// jumped.
///
/// 3 nodes, LMS. At 1000 ms node 3's links to 1 and 2 break (it still
/// reaches the arbiter, and keeps renewing its lease until the edge is
/// settled down at 1300 ms). Node 3 is fenced; the device reports it off at
/// once (wrong outlet: node 3 runs on, its lease valid until real
/// ≈ 1600 ms). `commit` rightly waits node 3's bound (≈ 1807 ms). At
/// 1310 ms the arbiter's clock steps 1 s forward: at the next heartbeats
/// contact is regained, the verdict {1,2} is taken again, and the bound
/// has "passed": node 3 is announced gone at real ≈ 1400 ms while it still
/// holds its lease (two holders).
///
/// Fix: as F1a.
#[test]
fn f1b_noticed_clock_jump_cuts_short_the_commits_wait_for_a_fenced_nodes_lease() {
    let mut h = H::boot(
        spec_levels(3, QuorumMode::LastManStanding, 1),
        Persisted::default(),
        &[1, 2, 3],
    );
    h.run(ms(1000), &ALL3);
    let split: [(NodeId, &[NodeId]); 3] = [(1, &[2]), (2, &[1]), (3, &[])];
    // Until node 3 is being fenced.
    while h.fence_of(3).is_none() {
        h.run(ms(10), &split);
        assert!(h.now < ms(3000), "node 3 is never fenced");
    }
    let last_grant = *h.grants(3).last().expect("node 3 held a lease");
    // The device lies: "off" (node 3 runs on).
    h.confirm_off(3);
    assert!(
        h.announces_gone(3).is_empty(),
        "commit waits node 3's lease"
    );
    h.run(ms(10), &[]);
    // The arbiter's clock steps 1 s forward.
    h.now += ms(1000);
    h.jump += ms(1000);
    h.run(ms(300), &[(1, &[2]), (2, &[1])]);
    let lease_end = last_grant + Timing::default().lease_max();
    let early: Vec<Duration> = h
        .announces_gone(3)
        .into_iter()
        .map(|t| t - h.jump)
        .filter(|&real| real < lease_end)
        .collect();
    assert!(
        early.is_empty(),
        "node 3 announced gone at real {early:?}, before its lease (granted at \
         {last_grant:?}) can have ended ({lease_end:?})"
    );
}

/// F2. A `Backed` written by `raise_epoch_above_floor` drops the off record
/// of a node confirmed off in the current transition, so an arbiter restart
/// before the commit forgets it again: the very bug change 1 fixes (seed
/// 1404), reopened. `Persisted::apply(Backed)` keeps `off` only for nodes
/// in `gone`; the commit puts the off nodes in `gone`, but
/// `raise_epoch_above_floor` persists `Backed { survivors: backed, gone }`
/// with the node still in `backed` and not in `gone`.
///
/// 4 nodes, LMS. The store is behind the agents (restored from a backup, or
/// a replica behind): epoch 5, backed {1,2,3,4}, an open intent for node 3;
/// agents hold epoch 7. At start the intent is resumed and the device
/// reports node 3 off (a wrong outlet): `off = {3: 3}` is persisted. Node 4
/// is down, so the commit waits (node 4 is pending for lost_after + the
/// reconnect allowance). After the grace node 1 renews its lease: the epoch
/// is raised above 7 and `Backed` persisted, which empties `off`. The
/// arbiter restarts (before the commit). Node 3 is a plain member again; the
/// agent instance that ran when its fence was confirmed speaks: no alert,
/// and it gets a lease (DESIGN "Off stays silent ... if it does: alert, no
/// lease"; "(a) a lease to a node alive-after-off").
///
/// Fix: the epoch raise must not drop off records: give it a delta of its
/// own (e.g. `EpochRaised { epoch }`) that leaves `off` alone, or have
/// `apply(Backed)` drop an off record only for a node back in the survivor
/// set while no longer confirmed off (the core knows; the store does not,
/// so a separate delta is simpler).
#[test]
fn f2_an_epoch_raise_before_the_commit_loses_the_off_record() {
    let s = spec_levels(4, QuorumMode::LastManStanding, 1);
    let persisted = Persisted {
        epoch: 5,
        backed: [1, 2, 3, 4].into(),
        gone: [].into(),
        open_intents: [(3, 17)].into(),
        next_intent: 18,
        off: [].into(),
        ..Default::default()
    };
    let mut h = H::boot(s, persisted, &[]);
    for id in [1, 2, 3] {
        h.report_epoch.insert(id, 7);
        h.connect(id, u64::from(id), u64::from(id));
    }
    let alive3: [(NodeId, &[NodeId]); 2] = [(1, &[2]), (2, &[1])];
    h.run(ms(50), &alive3);
    assert!(h.fence_of(3).is_some(), "the open intent is resumed");
    h.confirm_off(3);
    assert_eq!(
        h.store.off,
        [(3, 3)].into(),
        "off, with the instance that ran"
    );
    // Past the grace: node 1 gets a lease (epoch raised above 7).
    h.run(ms(650), &alive3);
    assert!(!h.grants(1).is_empty(), "node 1 leased after the grace");
    assert!(
        h.announces_gone(3).is_empty(),
        "not committed yet (node 4 pending)"
    );
    assert_eq!(h.store.backed, [1, 2, 3, 4].into());
    // The arbiter restarts before the commit; the agent that ran on node 3
    // when its fence was confirmed (instance 3) comes back.
    h.restart(&[1, 2, 3]);
    let before = h.log.len();
    h.run(ms(1000), &[(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])]);
    let alert = h
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::AliveAfterOff { node: 3, .. }));
    let leased3 = h.log[before..].iter().any(|(_, a)| {
        matches!(
            a,
            Action::Ack {
                node: 3,
                lease: Some(_),
                ..
            }
        )
    });
    assert!(
        alert && !leased3,
        "off record lost (store.off = {:?}): alert raised {alert}, node 3's fenced \
         instance leased {leased3}",
        h.store.off
    );
}
