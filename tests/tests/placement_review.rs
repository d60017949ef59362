//! Review 19 (helper): the agent's half of the placement protocol, on the
//! real resource runner (`agent::resource_runner`) and real `exec`
//! resources. The arbiter frees a node from a group's `possible` when the
//! node reports the group `stopped` or `failed` after applying a
//! withdrawal; so neither may be reported while a resource of the group
//! still runs there.

use std::path::Path;
use std::time::Duration;

use agent::groups::GroupRun;
use agent::resource_runner::{self, RunnerHandle};
use proto::v1::GroupDefinition;

fn state(r: &RunnerHandle, group: &str) -> GroupRun {
    r.report()
        .states
        .iter()
        .find(|(g, _)| g == group)
        .map_or(GroupRun::Stopped, |(_, s)| *s)
}

/// Wait until the runner has applied ack `applied` and web's state is `ok`.
async fn until(
    r: &RunnerHandle,
    applied: u64,
    what: &str,
    ok: impl Fn(GroupRun) -> bool,
) -> GroupRun {
    for _ in 0..200 {
        let s = state(r, "web");
        if r.report().applied_seq >= applied && ok(s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: web stayed {:?}", state(r, "web"));
}

/// `web`: resource 0 writes `marker` when it starts, and its stop fails
/// while the marker is there (a service that refuses to stop; when it is
/// not running, its stop succeeds); resource 1 fails to start.
fn web(marker: &Path) -> GroupDefinition {
    let m = marker.display();
    let resources = format!(
        r#"[{{"kind":"exec","start":["sh","-c","touch {m}"],"stop":["sh","-c","test ! -e {m}"]}},
            {{"kind":"exec","start":["false"],"stop":["true"]}}]"#
    );
    GroupDefinition {
        name: "web".into(),
        resources_json: resources,
        monitor_interval_ms: 60_000,
        max_restarts: 0,
        restart_window_ms: 60_000,
    }
}

/// Finding 1. A start fails at resource 1; the group stops what it had
/// started (resource 0), and that stop fails: `Group::start` returns
/// `GroupError::StopFailed`, but the runner turns every start error into
/// `StartDone { ok: false }`, so the keeper reports `failed` — which the
/// arbiter takes as stopped: it bans the node, moves the group, and once
/// the node applied the withdrawal (`failed` becomes `stopped`) frees it,
/// while resource 0 still runs. It must be `stop-failed` (the node fenced).
#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_rollback_stop_fails_is_never_reported_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("r0-running");
    let runner = resource_runner::spawn(1, None, &Default::default(), Default::default());
    runner.define("node1".into(), vec![web(&marker)]);
    // The cleanup stop of a group first defined succeeds (nothing runs).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&runner, "web"), GroupRun::Stopped, "cleaned up");
    // Granted with a lease: the start fails, its rollback stop fails.
    runner.ack(1, true, 1, vec![("web".into(), true)]);
    let s = until(&runner, 1, "the start ends", |s| {
        !matches!(s, GroupRun::Starting | GroupRun::Stopped)
    })
    .await;
    assert!(
        marker.exists(),
        "resource 0 started and could not be stopped"
    );
    // The arbiter, seeing `failed`, moves the group away (ack 2 no longer
    // places it here).
    runner.ack(2, true, 1, vec![]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = runner.report();
    let after = state(&runner, "web");
    assert!(marker.exists(), "resource 0 still runs");
    assert!(
        !matches!(after, GroupRun::Stopped | GroupRun::Failed),
        "with resource 0 still running, web was reported {s:?} after the start, then {after:?} \
         with ack {} applied: the arbiter frees this node and starts web elsewhere",
        report.applied_seq
    );
    assert_eq!(after, GroupRun::StopFailed);
}

/// The same group, started and then moved away with resource 1 starting
/// fine: a stop that fails is reported `stop-failed` (kept as a contrast:
/// the runner's stop path is right).
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_that_fails_is_reported_stop_failed() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("r0-running");
    let m = marker.display();
    let mut def = web(&marker);
    def.resources_json = format!(
        r#"[{{"kind":"exec","start":["sh","-c","touch {m}"],"stop":["sh","-c","test ! -e {m}"]}}]"#
    );
    let runner = resource_runner::spawn(1, None, &Default::default(), Default::default());
    runner.define("node1".into(), vec![def]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.ack(1, true, 1, vec![("web".into(), true)]);
    until(&runner, 1, "the start ends", |s| s == GroupRun::Running).await;
    runner.ack(2, true, 1, vec![]);
    let s = until(&runner, 2, "the stop ends", |s| s != GroupRun::Stopping).await;
    assert_eq!(s, GroupRun::StopFailed);
    assert!(marker.exists());
}
