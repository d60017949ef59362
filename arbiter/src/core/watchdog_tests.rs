//! The `watchdog` fence level: a node counts as fenced once every lease it
//! may hold has ended and the timeout of the watchdog its agent reported
//! armed, plus a margin, has passed; never for a node without one, and
//! never on the word of an agent of another machine.

use super::test_support::*;
use super::*;

const BOOT3: u64 = 0xb3;

/// Three nodes; node 3's topology: a device (level 0), then the watchdog
/// (level 1). Every agent tells its boot.
fn cluster(mutant: Option<Mutant>) -> H {
    let mut spec = spec_levels(3, QuorumMode::LastManStanding, 2);
    spec.nodes.get_mut(&3).expect("node 3").watchdog_level = Some(1);
    let mut h = H::with_mutant(spec, Persisted::default(), mutant);
    for id in 1..=3 {
        h.boot.insert(id, 0xb0 + u64::from(id));
        h.connect(id, u64::from(id), u64::from(id));
    }
    h
}

fn arm(h: &mut H, node: NodeId, timeout: Option<Duration>) {
    let session = h.session[&node];
    h.step(Event::Watchdog {
        node,
        session,
        timeout,
    });
}

/// Node 3 falls silent; its device fails: the fence reaches the watchdog
/// level. Returns the arbiter time the level began.
fn to_the_watchdog_level(h: &mut H) -> Duration {
    until_fence_of_3(h);
    device_fails(h, 3);
    h.now
}

fn waits(h: &H) -> Vec<Duration> {
    h.notices()
        .into_iter()
        .filter_map(|n| match n {
            Notice::WatchdogWait { node: 3, until, .. } => Some(*until),
            _ => None,
        })
        .collect()
}

/// Why fences of node 3 failed, level by level.
fn failures(h: &H) -> Vec<String> {
    h.notices()
        .into_iter()
        .filter_map(|n| match n {
            Notice::FenceFailed {
                node: 3, detail, ..
            } => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

/// `node`'s fence fails at its device (level 0).
fn device_fails(h: &mut H, node: NodeId) {
    h.level_done(node, LevelOutcome::Failed("BMC unreachable".into()));
}

fn confirmed(h: &H) -> Option<Duration> {
    h.log.iter().find_map(|(t, a)| match a {
        Action::Persist(Delta::FenceConfirmed { node: 3, .. }) => Some(*t),
        _ => None,
    })
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn an_armed_node_counts_as_fenced_after_its_lease_the_timeout_and_the_margin() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    let last_lease_bound = h.core.nodes[&3].lease_bound.expect("3 held a lease");
    let began = to_the_watchdog_level(&mut h);
    // No device runs for the watchdog level.
    assert!(
        !h.log.iter().any(|(_, a)| matches!(
            a,
            Action::Fence {
                node: 3,
                level: 1,
                ..
            }
        )),
        "the shell is never asked to run the watchdog level"
    );
    assert!(
        failures(&h).iter().all(|d| !d.contains("watchdog")),
        "the rule applies"
    );
    let until = waits(&h)[0];
    let t = h.spec.timing;
    assert_eq!(
        until,
        last_lease_bound + SECOND + t.watchdog_margin(SECOND),
        "lease, then the watchdog's timeout, then the margin"
    );
    assert!(until > began);
    // Not one tick early, past the level's ordinary deadline too.
    h.run(until - h.now - ms(10), &TWO);
    assert_eq!(confirmed(&h), None, "not before lease + timeout + margin");
    assert_eq!(h.core.nodes[&3].phase.name(), "fencing");
    h.run(ms(20), &TWO);
    assert!(confirmed(&h).is_some_and(|c| c >= until));
    assert!(
        h.notices()
            .iter()
            .any(|n| matches!(n, Notice::WatchdogFenced { node: 3, .. }))
    );
    h.run(ms(500), &TWO);
    assert!(!h.announces_gone(3).is_empty(), "survivors are told");
    // ...that the watchdog rule, not a device, counted it (the node, alive
    // at rest, may rejoin); stored across restarts.
    assert!(h.core.gone_by_watchdog().contains(&3));
    assert!(h.store.by_watchdog.contains(&3));
    h.restart(&[1, 2]);
    assert!(h.core.gone_by_watchdog().contains(&3));
}

#[test]
fn a_fence_confirmed_by_a_device_is_not_the_watchdogs() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    until_fence_of_3(&mut h);
    h.confirm_off(3);
    h.run(ms(500), &TWO);
    assert!(!h.announces_gone(3).is_empty());
    assert!(
        !h.core.gone_by_watchdog().contains(&3),
        "a device switched it off"
    );
    assert!(!h.store.by_watchdog.contains(&3));
}

#[test]
fn the_planted_rule_without_the_timeout_is_caught() {
    let mut h = cluster(Some(Mutant::WatchdogWithoutTimeout));
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    let bound = h.core.nodes[&3].lease_bound.expect("lease");
    to_the_watchdog_level(&mut h);
    h.run(ms(50), &TWO);
    let c = confirmed(&h).expect("the mutant confirms at once");
    assert!(
        c < bound + SECOND,
        "the test above fails on this mutant: confirmed at {c:?}"
    );
}

#[test]
fn without_an_armed_watchdog_the_level_fails_and_the_rounds_go_on() {
    let mut h = cluster(None);
    h.run(ms(800), &ALL3);
    to_the_watchdog_level(&mut h);
    h.run(ms(3000), &TWO);
    assert_eq!(confirmed(&h), None);
    assert!(waits(&h).is_empty(), "the rule cannot apply");
    assert!(
        failures(&h).iter().any(|d| d.contains("no armed watchdog")),
        "{:?}",
        failures(&h)
    );
    assert!(
        h.store.open_intents.contains_key(&3),
        "the intent stays open"
    );
    assert!(
        h.log.iter().any(|(_, a)| matches!(
            a,
            Action::Persist(Delta::FenceAttemptFailed { node: 3, .. })
        )),
        "the round failed at every level"
    );
    assert!(h.fences().len() >= 2, "and retries from the device's level");
}

#[test]
fn a_watchdog_disarmed_while_waiting_fails_the_level() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    to_the_watchdog_level(&mut h);
    // (Its session still stands: the report is taken.)
    arm(&mut h, 3, None);
    h.run(ms(3000), &TWO);
    assert_eq!(confirmed(&h), None);
}

/// A second process claims node 3 from another machine (a cloned VM, a
/// copied certificate) and reports a watchdog armed there: it cannot
/// vouch for the real node 3, which may still run.
fn clone_with_watchdog(mutant: Option<Mutant>) -> H {
    let mut h = cluster(mutant);
    h.run(ms(800), &ALL3);
    h.boot.insert(3, 0xc10e);
    h.connect(3, 33, 333);
    arm(&mut h, 3, Some(SECOND));
    to_the_watchdog_level(&mut h);
    h.run(ms(4000), &TWO);
    h
}

#[test]
fn a_watchdog_on_another_machine_vouches_for_nothing() {
    let h = clone_with_watchdog(None);
    assert_eq!(confirmed(&h), None);
    assert!(waits(&h).is_empty(), "the rule cannot apply");
    assert!(
        failures(&h).iter().any(|d| d.contains("another boot")),
        "{:?}",
        failures(&h)
    );
    // The planted bug takes its word.
    let h = clone_with_watchdog(Some(Mutant::WatchdogOfAnyBoot));
    assert!(confirmed(&h).is_some(), "the mutant is caught by the above");
}

#[test]
fn another_instance_must_report_its_own_watchdog() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    // The agent restarts in the same boot and has not armed yet.
    h.connect(3, 34, 334);
    to_the_watchdog_level(&mut h);
    h.run(ms(3000), &TWO);
    assert_eq!(confirmed(&h), None, "the old instance's report is void");
}

#[test]
fn a_restarted_arbiter_counts_on_the_stored_watchdog_after_its_grace() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    assert_eq!(h.store.watchdogs[&3].timeout_ms, 1000);
    assert_eq!(h.store.watchdogs[&3].boot, BOOT3);
    // The arbiter restarts; node 3 never speaks to it again.
    h.restart(&[1, 2]);
    let restarted = h.now;
    to_the_watchdog_level(&mut h);
    let until = *waits(&h).first().expect("the stored watchdog applies");
    let t = h.spec.timing;
    assert!(
        until >= restarted + t.lease_max() + SECOND + t.watchdog_margin(SECOND),
        "every lease of the earlier life ends first: {until:?}"
    );
    h.run(until.saturating_sub(h.now) + ms(20), &TWO);
    assert!(confirmed(&h).is_some());
}

#[test]
fn a_node_counted_fenced_by_its_watchdog_may_speak_again_and_rejoin() {
    let mut h = cluster(None);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(800), &ALL3);
    to_the_watchdog_level(&mut h);
    h.run(ms(3000), &TWO);
    assert!(confirmed(&h).is_some());
    // It stood at rest (every group stopped, no lease): the same agent
    // reconnects. No alert: the watchdog rule never claimed it was reset.
    h.connect(3, 35, 3);
    h.run(ms(1500), &ALL3);
    assert!(!alerted(&h, 3));
    assert_eq!(h.core.nodes[&3].phase.name(), "member");
    assert!(h.grants(3).last().is_some_and(|&t| t > h.now - ms(200)));
}

#[test]
fn the_configured_level_is_the_only_one_the_rule_applies_to() {
    // Node 2 has no watchdog level: a watchdog it reports changes nothing.
    let mut h = cluster(None);
    arm(&mut h, 2, Some(SECOND));
    h.run(ms(800), &ALL3);
    for _ in 0..800 {
        if h.fence_of(2).is_some() {
            break;
        }
        h.run(ms(10), &[(1, &[3]), (3, &[1])]);
    }
    device_fails(&mut h, 2);
    assert!(
        h.log.iter().any(|(_, a)| matches!(
            a,
            Action::Fence {
                node: 2,
                level: 1,
                ..
            }
        )),
        "level 1 of node 2 is a device level"
    );
}

/// Node 3 runs `web`, is cut off from its peers but still speaks to the
/// arbiter, reporting `web` stopping for ever (its stop hangs), and its
/// watchdog does not reset it (a watchdog whose action is "none").
fn hung_and_not_reset(mutant: Option<Mutant>) -> H {
    let mut spec = spec_levels(3, QuorumMode::LastManStanding, 2);
    spec.nodes.get_mut(&3).expect("node 3").watchdog_level = Some(1);
    spec.groups = vec![GroupSpec {
        name: "web".into(),
        nodes: vec![3, 1, 2],
        failback: false,
    }];
    let mut h = H::with_mutant(spec, Persisted::default(), mutant);
    for id in 1..=3 {
        h.boot.insert(id, 0xb0 + u64::from(id));
        h.connect(id, u64::from(id), u64::from(id));
    }
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(1000), &ALL3);
    h.group_states
        .insert(3, vec![("web".into(), RunState::Running)]);
    h.run(ms(300), &ALL3);
    // Cut off from its peers only.
    let cut: [(NodeId, &[NodeId]); 3] = [(1, &[2]), (2, &[1]), (3, &[])];
    for _ in 0..300 {
        if h.fence_of(3).is_some() {
            break;
        }
        h.run(ms(10), &cut);
    }
    device_fails(&mut h, 3);
    h.group_states
        .insert(3, vec![("web".into(), RunState::Stopping)]);
    h.run(ms(4000), &cut);
    h
}

#[test]
fn a_node_still_reporting_a_group_past_its_watchdog_is_not_counted_fenced() {
    let h = hung_and_not_reset(None);
    assert_eq!(
        confirmed(&h),
        None,
        "it speaks: its watchdog did not reset it"
    );
    assert!(
        h.notices().iter().any(|n| matches!(n,
            Notice::FenceFailed { node: 3, detail, .. } if detail.contains("did not reset it"))),
        "the failure says why"
    );
    assert_eq!(h.store.groups["web"].possible.contains(&3), true);
    // The planted bug believes the rule over the node's own reports.
    let h = hung_and_not_reset(Some(Mutant::WatchdogBelievedOverReports));
    assert!(confirmed(&h).is_some(), "the mutant is caught by the above");
}

#[test]
fn a_node_rebooted_without_a_fence_keeps_its_watchdog_level() {
    let mut h = cluster(None);
    h.run(ms(800), &ALL3);
    // A routine reboot: a new boot and agent; it arms and reports at rest.
    h.boot.insert(3, 0xb33);
    h.connect(3, 36, 336);
    arm(&mut h, 3, Some(SECOND));
    h.run(ms(1000), &ALL3);
    assert_eq!(h.core.nodes[&3].boots_heard, BTreeSet::from([0xb33]));
    to_the_watchdog_level(&mut h);
    h.run(ms(3000), &TWO);
    assert!(confirmed(&h).is_some(), "the old boot ran nothing: pruned");
}
