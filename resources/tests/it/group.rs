use std::path::Path;
use std::time::Duration;

use resources::error::GroupError;
use resources::{Group, Health, ResourceSpec};

use crate::common::{alive, env, sh};

/// An exec resource that logs "start i" / "stop i"; its start or stop
/// fails when asked to.
fn logged(log: &Path, i: usize, fail_start: bool, fail_stop: bool) -> ResourceSpec {
    let l = log.display();
    ResourceSpec::Exec {
        start: sh(&format!(
            "echo 'start {i}' >> {l}; exit {}",
            u8::from(fail_start)
        )),
        stop: sh(&format!(
            "echo 'stop {i}' >> {l}; {}",
            if fail_stop {
                "echo 'device busy' >&2; exit 1"
            } else {
                "exit 0"
            }
        )),
        monitor: None,
        timeout: None,
    }
}

fn log_of(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn starts_in_order_and_stops_in_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let specs = (0..3).map(|i| logged(&log, i, false, false)).collect();
    let mut g = Group::new("web", specs).unwrap();
    let e = env(1);
    g.start(&e).await.unwrap();
    g.monitor(&e).await.unwrap();
    g.stop(&e, false).await.unwrap();
    assert_eq!(
        log_of(&log),
        [
            "start 0", "start 1", "start 2", "stop 2", "stop 1", "stop 0"
        ]
    );
    let err = g.monitor(&e).await.unwrap_err();
    assert!(
        matches!(
            &err,
            GroupError::Unhealthy {
                index: 0,
                health: Health::Stopped,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "group web: resources[0] (exec sh) is stopped"
    );
}

#[tokio::test]
async fn a_failed_start_stops_the_earlier_ones_in_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let specs = (0..4).map(|i| logged(&log, i, i == 2, false)).collect();
    let mut g = Group::new("web", specs).unwrap();
    let err = g.start(&env(1)).await.unwrap_err();
    let GroupError::StartFailed { index, label, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*index, label.as_str()), (2, "exec sh"));
    assert!(err.to_string().starts_with("group web: resources[2] (exec sh) did not start: web-2 (exec sh): start failed: exit code 1"), "{err}");
    assert_eq!(
        log_of(&log),
        ["start 0", "start 1", "start 2", "stop 1", "stop 0"]
    );
}

#[tokio::test]
async fn a_failed_cleanup_is_stop_failed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let specs = (0..3).map(|i| logged(&log, i, i == 2, i == 0)).collect();
    let mut g = Group::new("db", specs).unwrap();
    let err = g.start(&env(1)).await.unwrap_err();
    let GroupError::StopFailed {
        failures,
        during_start: Some(cause),
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 0);
    assert!(
        matches!(**cause, GroupError::StartFailed { index: 2, .. }),
        "{cause:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(
            "resources[0] (exec sh): db-0 (exec sh): stop failed: exit code 1: device busy"
        ),
        "{msg}"
    );
    assert!(msg.contains("while undoing a failed start"), "{msg}");
    assert_eq!(
        log_of(&log),
        ["start 0", "start 1", "start 2", "stop 1", "stop 0"]
    );
}

#[tokio::test]
async fn a_failing_stop_does_not_keep_the_others_from_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let specs = (0..3).map(|i| logged(&log, i, false, i == 1)).collect();
    let mut g = Group::new("web", specs).unwrap();
    let e = env(1);
    g.start(&e).await.unwrap();
    let err = g.stop(&e, false).await.unwrap_err();
    let GroupError::StopFailed {
        failures,
        during_start: None,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), [1]);
    assert_eq!(
        log_of(&log),
        [
            "start 0", "start 1", "start 2", "stop 2", "stop 1", "stop 0"
        ]
    );
}

#[tokio::test]
async fn an_urgent_stop_stops_everything_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.display();
    // Two slow stops: 2 s one after the other, 1 s together.
    let slow = |i: usize| ResourceSpec::Exec {
        start: vec!["true".into()],
        stop: sh(&format!("sleep 1; echo 'stop {i}' >> {l}")),
        monitor: None,
        timeout: None,
    };
    let specs = vec![
        slow(0),
        ResourceSpec::Process {
            command: sh("trap '' TERM; exec sleep 1000"),
            stop_timeout: Some(Duration::from_secs(30)),
        },
        slow(2),
    ];
    let mut g = Group::new("web", specs).unwrap();
    let e = env(1);
    g.start(&e).await.unwrap();
    let pid = g.resources[1].pid().unwrap() as i32;
    g.monitor(&e).await.unwrap();
    let t = tokio::time::Instant::now();
    g.stop(&e, true).await.unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "not concurrent: {took:?}"
    );
    assert!(!alive(pid), "the process {pid} survived an urgent stop");
    let mut stops = log_of(&log);
    stops.sort();
    assert_eq!(stops, ["stop 0", "stop 2"]);
}

#[tokio::test]
async fn an_invalid_spec_names_its_index() {
    let specs = vec![
        ResourceSpec::Exec {
            start: vec!["true".into()],
            stop: vec!["true".into()],
            monitor: None,
            timeout: None,
        },
        ResourceSpec::Process {
            command: vec![],
            stop_timeout: None,
        },
    ];
    let err = Group::new("web", specs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "group web: resources[1]: web-1 (process (empty command)): invalid spec: command is empty: it needs at least the program"
    );
}
