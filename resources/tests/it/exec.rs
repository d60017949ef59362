use std::time::Duration;

use resources::{Health, Resource, ResourceError, ResourceSpec};

use crate::common::{env, sh};

#[tokio::test]
async fn start_stop_and_monitor_commands_see_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.display();
    let spec = ResourceSpec::Exec {
        start: sh(&format!(
            "echo \"$FENCE_EPOCH $FENCE_GROUP $FENCE_NODE $FENCE_NODE_ID\" > {s}"
        )),
        stop: sh(&format!("rm -f {s}")),
        monitor: Some(sh(&format!("test -f {s} || exit 7"))),
        timeout: None,
    };
    let mut r = Resource::new(spec, "g", 0).unwrap();
    let e = env(42);
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    r.start(&e).await.unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "42 g n1 3\n");
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Running);
    r.stop(&e, false).await.unwrap();
    assert!(!state.exists());
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
}

#[tokio::test]
async fn failures_and_timeouts_are_reported() {
    let spec = ResourceSpec::Exec {
        start: sh("echo 'no license' >&2; exit 4"),
        stop: sh("sleep 30"),
        monitor: Some(sh("echo degraded; exit 1")),
        timeout: Some(Duration::from_millis(300)),
    };
    let mut r = Resource::new(spec, "g", 5).unwrap();
    let e = env(1);
    let err = r.start(&e).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "g-5 (exec sh): start failed: exit code 4: no license"
    );
    assert_eq!(
        r.monitor(&e).await.unwrap(),
        Health::Failed("monitor exit code 1: degraded".into())
    );
    let t = tokio::time::Instant::now();
    let err = r.stop(&e, false).await.unwrap_err();
    assert!(
        matches!(err, ResourceError::Timeout { action: "stop", .. }),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn without_a_monitor_command_monitor_reports_the_last_action() {
    let spec = ResourceSpec::Exec {
        start: vec!["true".into()],
        stop: vec!["true".into()],
        monitor: None,
        timeout: None,
    };
    let mut r = Resource::new(spec, "g", 0).unwrap();
    let e = env(1);
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    r.start(&e).await.unwrap();
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Running);
    r.stop(&e, false).await.unwrap();
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
}
