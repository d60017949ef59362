//! Review of 0577625 (off stays silent, by boot and after a "reboot": the
//! boot id in Hello, every agent confirmed off remembered until cleared).
//!
//! Run: `cargo test -p arbiter --lib review14`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;

fn leased_since(h: &H, node: NodeId, since: Duration) -> bool {
    h.grants(node).iter().any(|&t| t >= since)
}

// ---------------------------------------------------------------------------
// R1 (off does not stay silent across a restart): a fence resumed after an
// arbiter restart is confirmed with the agent unknown. `FenceConfirmed`
// takes `v.instance` / `v.boot`, which a restarted core only knows once the
// node reconnects; a node being fenced is usually cut off from the arbiter,
// so it does not. The record is `{instance: 0, boot: 0}` (matches nothing):
// when the cut heals, the very agent (same process, same boot) that was
// "confirmed off" comes back, is taken for a reboot and gets a lease. The
// arbiter knew that agent when it wrote the intent.
//
// Fix: persist the agent (instance, boot) with the intent (`FenceIntent`
// carries them; `Persisted::open_intents` keeps them; `build` puts them in
// the resumed `FenceJob`), and have `FenceConfirmed` record the job's agent
// when the node's current one is unknown (record both when they differ).
// The wider variant (R1b) needs the last agent of each member persisted
// when it changes (a small `Delta::AgentSeen { node, instance, boot }`).
// ---------------------------------------------------------------------------

/// R1: node 3 is cut off from everyone (the arbiter too); its fence
/// starts; the arbiter restarts before the device answers; the resumed
/// fence is "confirmed" by a device that switched another outlet. Node 3's
/// agent (instance 3, boot 0xb3, never switched off) reconnects later: it
/// must be alive after off, with no lease.
#[test]
fn r1_a_fence_resumed_after_a_restart_forgets_the_agent_it_switched_off() {
    let mut h = three_with_boots(None);
    until_fence_of_3(&mut h);
    h.run(ms(50), &TWO);
    h.restart(&[1, 2]);
    h.run(ms(20), &TWO);
    h.confirm_off(3);
    h.run(ms(4000), &TWO);
    assert_eq!(h.announces_gone(3).len(), 1, "the fence completed");
    let recorded = h.store.fenced.get(&3).cloned().unwrap_or_default();
    // The cut heals: the agent that ran all along reconnects.
    let back = h.now;
    h.connect(3, 500, 3);
    h.run(ms(1500), &ALL3);
    assert!(
        alerted(&h, 3) && !leased_since(&h, 3, back),
        "agent confirmed off recorded as {recorded:?}: alert {}, leased {}",
        alerted(&h, 3),
        leased_since(&h, 3, back)
    );
}

/// R1b: the same with the restart before the fence: node 3 is cut off and
/// the arbiter restarts; it never hears node 3 in its new life, fences it
/// once the reconnect allowance is spent, and the device lies. The agent
/// that ran then (the arbiter's previous life knew it) comes back.
#[test]
fn r1b_a_node_fenced_in_the_arbiters_next_life_is_recorded_without_its_agent() {
    r1b(None);
}

#[test]
#[should_panic(expected = "agent confirmed off recorded as")]
fn r1b_is_caught_with_the_agents_forgotten_across_restarts() {
    r1b(Some(Mutant::ForgetAgentsAcrossRestarts));
}

fn r1b(mutant: Option<Mutant>) {
    let mut h = three_with_boots(mutant);
    h.run(ms(200), &TWO);
    h.restart(&[1, 2]);
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(1000), &TWO);
    assert_eq!(h.announces_gone(3).len(), 1, "the fence completed");
    let recorded = h.store.fenced.get(&3).cloned().unwrap_or_default();
    let back = h.now;
    h.connect(3, 500, 3);
    h.run(ms(1500), &ALL3);
    assert!(
        alerted(&h, 3) && !leased_since(&h, 3, back),
        "agent confirmed off recorded as {recorded:?}: alert {}, leased {}",
        alerted(&h, 3),
        leased_since(&h, 3, back)
    );
}

// ---------------------------------------------------------------------------
// R2 (the alert does not survive a restart): `Phase::AliveAfterOff` lives
// in memory only (there is a persisted `AlertCleared`, but no persisted
// alert). The change makes a node that "came back" (a member again, off
// record gone from `Persisted::off`) alive after off when an agent it
// confirmed off speaks. After an arbiter restart that node is a plain
// member again: the other agent gets a lease and the alert is gone, with
// no operator action, unless the fenced agent happens to speak again
// (DESIGN: "a critical alert, and no lease until an operator acts";
// ARCHITECTURE: "alert, no lease, across restarts and after the node came
// back too").
//
// Fix: persist the alert (`Delta::AliveAfterOff { node, detail }` into a
// `Persisted::alerts` map, removed by `AlertCleared`), restore the phase in
// `build` (as for `off`), so only `fencectl clear` ends it.
// ---------------------------------------------------------------------------

/// Node 3 recorded off by a lying device; a duplicate identity (boot
/// 0xc10e, instance 1000) is taken for the reboot and becomes a member; the
/// original agent (boot 0xb3) speaks: alert. The arbiter restarts; only the
/// duplicate reconnects. The alert must stand and node 3 get no lease.
#[test]
fn r2_an_alert_after_the_node_came_back_is_lost_by_a_restart() {
    r2(None);
}

#[test]
#[should_panic(expected = "after the restart: alert None")]
fn r2_is_caught_with_the_alerts_forgotten_across_restarts() {
    r2(Some(Mutant::ForgetAlertsAcrossRestarts));
}

fn r2(mutant: Option<Mutant>) {
    let mut h = three_with_boots(mutant);
    h.run(ms(900), &TWO);
    h.confirm_off(3);
    h.run(ms(300), &TWO);
    assert_eq!(h.announces_gone(3).len(), 1);
    h.boot.insert(3, 0xc10e);
    h.connect(3, 300, 1000);
    h.run(ms(1500), &ALL3);
    assert!(!alerted(&h, 3) && h.store.backed.contains(&3), "came back");
    // The original agent speaks (and is silent again).
    h.boot.insert(3, 0xb3);
    h.connect(3, 301, 3);
    h.run(ms(300), &TWO);
    assert!(h.core.status().alerts.contains_key(&3), "alert raised");
    // The duplicate keeps reconnecting; the arbiter restarts.
    h.boot.insert(3, 0xc10e);
    h.connect(3, 302, 1000);
    h.run(ms(300), &ALL3);
    h.restart(&[1, 2]);
    let after = h.now;
    h.connect(3, 303, 1000);
    h.run(ms(4000), &ALL3);
    assert!(
        h.core.status().alerts.contains_key(&3) && !leased_since(&h, 3, after),
        "after the restart: alert {:?}, node 3 leased {}",
        h.core.status().alerts.get(&3),
        leased_since(&h, 3, after)
    );
}

// ---------------------------------------------------------------------------
// Scenarios that turned out fine.
// ---------------------------------------------------------------------------

/// A node fenced twice (each time really off: a new boot and a new agent),
/// with an arbiter restart in between: it rejoins and gets a lease both
/// times, no alert; both agents are on record, and either speaking again
/// is caught.
#[test]
fn ok_a_node_fenced_twice_and_rebooted_each_time_rejoins() {
    let mut h = three_with_boots(None);
    for (round, (boot, instance)) in [(0xb31u64, 31u64), (0xb32, 32)].into_iter().enumerate() {
        h.run(ms(900), &TWO);
        h.confirm_off(3);
        h.run(ms(300), &TWO);
        assert_eq!(h.announces_gone(3).len(), round + 1);
        if round == 0 {
            h.restart(&[1, 2]);
            h.run(ms(500), &TWO);
        }
        h.boot.insert(3, boot);
        let back = h.now;
        h.connect(3, 400 + instance, instance);
        h.run(ms(2500), &ALL3);
        assert!(!alerted(&h, 3), "round {round}");
        assert!(leased_since(&h, 3, back), "round {round}: rejoined");
    }
    let kept: Vec<(u64, u64)> = h.store.fenced[&3]
        .iter()
        .map(|f| (f.instance, f.boot))
        .collect();
    assert_eq!(kept, [(3, 0xb3), (31, 0xb31)]);
    // The first life's boot speaks (new process): caught.
    h.boot.insert(3, 0xb3);
    h.connect(3, 900, 99);
    h.run(ms(300), &ALL3);
    assert!(alerted(&h, 3));
}

/// A Hello in flight at the confirmation from a new agent in the boot
/// confirmed off, then the machine really off and rebooted: the in-flight
/// Hello does not make the reboot look alive after off.
#[test]
fn ok_an_in_flight_hello_then_a_real_reboot_is_no_alert() {
    let mut h = three_with_boots(None);
    h.run(ms(900), &TWO);
    h.confirm_off(3);
    h.run(ms(20), &TWO);
    h.connect(3, 350, 35); // sent before the power went
    h.run(ms(500), &TWO);
    h.boot.insert(3, 0xbeef);
    let back = h.now;
    h.connect(3, 360, 36);
    h.run(ms(2500), &ALL3);
    assert!(!alerted(&h, 3));
    assert!(leased_since(&h, 3, back));
}

/// Right after an arbiter restart every agent reconnects at once, within
/// the in-flight window of the restored records (`at = now`): the agent
/// confirmed off (boot 0xb3) connects unnoticed, then a duplicate's
/// session supersedes it, and its heartbeats on the stale session are
/// dropped without a check (restored records have no session). The core
/// alone would never alert; but the driver closes a superseded stream
/// (`sessions.insert` drops its sender) and the agent reconnects, which is
/// checked: the alert comes. (Fine through the shell; noted in the report.)
#[test]
fn ok_a_fenced_agent_superseded_right_after_a_restart_is_caught_when_it_reconnects() {
    let mut h = three_with_boots(None);
    h.run(ms(900), &TWO);
    h.confirm_off(3);
    h.run(ms(300), &TWO);
    h.boot.insert(3, 0xc10e);
    h.connect(3, 300, 1000);
    h.run(ms(1500), &ALL3);
    h.restart(&[1, 2]);
    h.boot.insert(3, 0xb3);
    h.connect(3, 301, 3); // the fenced agent, in the window
    h.run(ms(20), &TWO);
    h.boot.insert(3, 0xc10e);
    h.connect(3, 302, 1000); // the duplicate
    // The fenced agent's heartbeats on its superseded session: no alert.
    for _ in 0..5 {
        h.now += ms(100);
        h.step(Event::Heartbeat {
            node: 3,
            session: 301,
            seq: 1,
            sent_at_us: h.now.as_micros() as u64,
            reachable: vec![1, 2],
            heuristics: 0,
            known_epoch: h.core.epoch(),
            applied_seq: 0,
            groups: Vec::new(),
            acked_seq: 0,
            ridden: std::time::Duration::ZERO,
        });
    }
    assert!(!alerted(&h, 3), "the core alone does not see it");
    // Its stream was closed by the driver: it reconnects.
    h.boot.insert(3, 0xb3);
    h.connect(3, 303, 3);
    h.run(ms(200), &ALL3);
    assert!(alerted(&h, 3));
}

/// An agent that sends no boot id (0) restarted on the node after its fence:
/// a new instance, taken for a reboot (documented); one that sends a boot
/// id after a fence recorded without one is a reboot too; the same
/// instance is still caught.
#[test]
fn ok_boot_zero_falls_back_to_the_instance() {
    for (boot_then, boot_now, instance, alert) in [
        (0u64, 0u64, 30u64, false),
        (0, 0xb3, 30, false),
        (0xb3, 0, 30, false),
        (0, 0, 3, true),
        (0xb3, 0, 3, true),
    ] {
        let mut h = three_with_boots(None);
        h.boot.insert(3, boot_then);
        h.connect(3, 33, 3);
        h.run(ms(200), &ALL3);
        h.run(ms(900), &TWO);
        h.confirm_off(3);
        h.run(ms(300), &TWO);
        h.boot.insert(3, boot_now);
        h.connect(3, 300, instance);
        h.run(ms(1500), &ALL3);
        assert_eq!(
            alerted(&h, 3),
            alert,
            "{boot_then:#x} -> {boot_now:#x}, instance {instance}"
        );
    }
}

/// Bad input changes nothing and panics nowhere: events for unknown nodes,
/// a store with records for an unconfigured node and more than
/// `FENCED_AGENTS_KEPT` records for a node.
#[test]
fn ok_bad_input_does_not_panic() {
    let agents = |n: u64| -> Vec<FencedAgent> {
        (1..=n)
            .map(|i| FencedAgent {
                instance: 100 + i,
                boot: 0xa00 + i,
            })
            .collect()
    };
    let persisted = Persisted {
        epoch: 3,
        backed: [1, 2, 3].into(),
        next_intent: 1,
        off: [(9, 5), (3, 0)].into(),
        fenced: [(9, agents(2)), (3, agents(9))].into(),
        ..Default::default()
    };
    let mut h = H::boot(
        spec_levels(3, QuorumMode::LastManStanding, 1),
        persisted,
        &[1, 2],
    );
    h.step(Event::Clear { node: 42 });
    h.step(Event::Clear { node: 1 });
    h.step(Event::FenceFinished {
        node: 42,
        intent: 1,
        level: 0,
        attempt: 1,
        outcome: LevelOutcome::ConfirmedOff,
    });
    h.step(Event::Connected {
        node: 42,
        session: 7,
        known_epoch: 0,
        instance: 7,
        boot: u64::MAX,
    });
    h.run(ms(500), &TWO);
    // The last agent on record is caught.
    h.boot.insert(3, 0xa09);
    h.connect(3, 50, 555);
    h.run(ms(300), &TWO);
    assert!(alerted(&h, 3));
}
