//! A node recorded off must stay silent (issue 8, finding 6): what the core
//! remembers of the agents it confirmed off — their sessions, process
//! instances and boots — and for how long.

use super::test_support::*;
use super::*;

/// Three nodes on machines with boots 0xb1, 0xb2, 0xb3; node 3 goes silent
/// and its fence is "confirmed" by a device that switched another outlet:
/// node 3's machine runs on, its agent silent (hung, or restarting).
fn node3_recorded_off(mutant: Option<Mutant>) -> H {
    let mut h = three_with_boots(mutant);
    h.run(ms(900), &TWO);
    h.confirm_off(3);
    h.run(ms(300), &TWO);
    assert!(h.announces_gone(3).len() == 1, "the fence completed");
    h.take();
    h
}

/// Node 3's agent restarts (a new process instance) in the boot that was
/// confirmed off: the machine never went down. An alert, no lease. The
/// same with a new boot is a reboot: it rejoins without one.
#[test]
fn an_agent_restarted_in_the_boot_confirmed_off_is_alive_after_off() {
    for (boot, mutant, alert) in [
        (0xb3, None, true),
        (0xb33, None, false),
        (0xb3, Some(Mutant::IgnoreBootId), false),
    ] {
        let mut h = node3_recorded_off(mutant);
        h.boot.insert(3, boot);
        h.connect(3, 300, 30);
        h.run(ms(1500), &ALL3);
        let leased = h.grants(3).iter().any(|&t| t > h.now - ms(1500));
        assert_eq!(alerted(&h, 3), alert, "boot {boot:#x} {mutant:?}");
        assert_eq!(leased, !alert, "boot {boot:#x} {mutant:?}");
        assert_eq!(h.core.status().alerts.contains_key(&3), alert);
    }
}

/// A second process speaking as node 3 (a duplicate identity, another
/// machine) is taken for node 3 back after a reboot, and joins. The
/// original agent, never switched off, speaks again later: it is alive
/// after off, even though the node "came back" in between. Forgetting the
/// fenced agent at the "reboot" lets it back in silently (seed 390685).
#[test]
fn a_duplicate_taken_for_the_reboot_does_not_wash_out_the_off_record() {
    for (mutant, alert) in [(None, true), (Some(Mutant::ForgetFencedAgents), false)] {
        let mut h = node3_recorded_off(mutant);
        h.boot.insert(3, 0xc10e);
        h.connect(3, 300, 1000);
        h.run(ms(1500), &ALL3);
        assert!(
            !alerted(&h, 3),
            "{mutant:?}: the duplicate looks like a reboot"
        );
        // The duplicate stops; the original agent reconnects as it was.
        h.run(ms(600), &TWO);
        h.boot.insert(3, 0xb3);
        h.connect(3, 301, 3);
        h.run(ms(600), &ALL3);
        assert_eq!(alerted(&h, 3), alert, "{mutant:?}");
        if alert {
            let late = h.now - ms(500);
            assert!(!h.grants(3).iter().any(|&t| t > late));
        }
    }
}

/// The agents confirmed off are persisted: after an arbiter restart, and
/// after the node came back in a new boot, the old boot speaking again is
/// still caught. An operator's clear forgets them.
#[test]
fn fenced_agents_outlive_a_restart_until_an_operator_clears_them() {
    let mut h = node3_recorded_off(None);
    assert_eq!(
        h.store.fenced.get(&3).map(Vec::as_slice),
        Some(
            &[FencedAgent {
                instance: 3,
                boot: 0xb3
            }][..]
        )
    );
    // A real reboot: node 3 rejoins; the record of its old boot stays.
    h.boot.insert(3, 0xb34);
    h.connect(3, 300, 30);
    h.run(ms(1500), &ALL3);
    assert!(!alerted(&h, 3));
    assert!(h.store.off.is_empty() && h.store.fenced.contains_key(&3));
    h.restart(&[1, 2]);
    h.boot.insert(3, 0xb34);
    h.connect(3, 3000, 30);
    h.run(ms(1500), &ALL3);
    // Its old boot speaks: the device had lied after all.
    h.take();
    h.boot.insert(3, 0xb3);
    h.connect(3, 3001, 31);
    h.run(ms(300), &ALL3);
    assert!(alerted(&h, 3));
    h.step(Event::Clear { node: 3 });
    assert!(!h.store.fenced.contains_key(&3));
    assert!(h.core.node(3).is_some_and(|v| v.fenced.is_empty()));
}

/// Only the last `FENCED_AGENTS_KEPT` agents are kept per node.
#[test]
fn the_record_of_fenced_agents_is_bounded() {
    let mut p = Persisted::default();
    for i in 1..=10u64 {
        p.apply(&Delta::FenceIntent {
            intent: i,
            node: 3,
            reason: String::new(),
        });
        p.apply(&Delta::FenceConfirmed {
            intent: i,
            node: 3,
            instance: i,
            boot: 0xb00 + i,
            operator: None,
        });
    }
    let kept: Vec<u64> = p.fenced[&3].iter().map(|f| f.instance).collect();
    assert_eq!(
        kept,
        (11 - membership::FENCED_AGENTS_KEPT as u64..=10).collect::<Vec<_>>()
    );
}
