use std::time::Duration;

use resources::{Health, Resource, ResourceError, ResourceSpec};
use tokio::time::Instant;

use crate::common::{alive, env, gone_within, read_pid, sh};

fn process(command: Vec<String>, stop_timeout: Option<Duration>) -> Resource {
    Resource::new(
        ResourceSpec::Process {
            command,
            stop_timeout,
        },
        "g",
        0,
    )
    .unwrap()
}

#[tokio::test]
async fn sleep_starts_runs_and_stops() {
    let mut r = process(vec!["sleep".into(), "1000".into()], None);
    let e = env(1);
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    r.start(&e).await.unwrap();
    let pid = r.pid().expect("a running process has a pid") as i32;
    assert!(alive(pid));
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Running);
    // Starting a running process is a no-op.
    r.start(&e).await.unwrap();
    assert_eq!(r.pid(), Some(pid as u32));
    let t = Instant::now();
    r.stop(&e, false).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "sleep dies of SIGTERM at once: {:?}",
        t.elapsed()
    );
    assert!(!alive(pid), "{pid} survived stop");
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    assert_eq!(r.pid(), None);
    r.stop(&e, false).await.unwrap();
}

/// A shell that ignores SIGTERM, with a child that inherits that.
fn stubborn(pidfile: &std::path::Path) -> Vec<String> {
    sh(&format!(
        "trap '' TERM; sleep 1000 & echo $! > {}; wait",
        pidfile.display()
    ))
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_with_its_group_after_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let mut r = process(stubborn(&pidfile), Some(Duration::from_millis(500)));
    let e = env(1);
    r.start(&e).await.unwrap();
    let leader = r.pid().unwrap() as i32;
    let child = read_pid(&pidfile).await;
    let t = Instant::now();
    r.stop(&e, false).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "SIGKILL came before stop_timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!alive(leader), "the leader {leader} survived");
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "the child {child} survived"
    );
}

#[tokio::test]
async fn what_the_leader_leaves_behind_is_killed_after_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    // The shell dies of SIGTERM; its child ignores it.
    let mut r = process(
        sh(&format!(
            "(trap '' TERM; exec sleep 1000) & echo $! > {}; wait",
            pidfile.display()
        )),
        Some(Duration::from_millis(500)),
    );
    let e = env(1);
    r.start(&e).await.unwrap();
    let leader = r.pid().unwrap() as i32;
    let child = read_pid(&pidfile).await;
    let t = Instant::now();
    r.stop(&e, false).await.unwrap();
    let took = t.elapsed();
    assert!(!alive(leader));
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "the child {child} survived its leader's stop"
    );
}

#[tokio::test]
async fn an_urgent_stop_kills_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let mut r = process(stubborn(&pidfile), Some(Duration::from_secs(20)));
    let e = env(1);
    r.start(&e).await.unwrap();
    let leader = r.pid().unwrap() as i32;
    let child = read_pid(&pidfile).await;
    let t = Instant::now();
    r.stop(&e, true).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(!alive(leader));
    assert!(
        gone_within(child, Duration::from_secs(1)).await,
        "the child {child} survived"
    );
}

#[tokio::test]
async fn monitor_detects_the_exit() {
    let mut r = process(sh("sleep 0.3; echo 'out of cheese' >&2; exit 3"), None);
    let e = env(1);
    r.start(&e).await.unwrap();
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Running);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let Health::Failed(why) = r.monitor(&e).await.unwrap() else {
        panic!("an exited process is not failed");
    };
    assert!(why.contains("exit code 3"), "{why}");
    assert!(why.contains("out of cheese"), "{why}");
    // Still failed until it is stopped.
    assert!(matches!(r.monitor(&e).await.unwrap(), Health::Failed(_)));
    r.stop(&e, false).await.unwrap();
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
}

#[tokio::test]
async fn a_command_that_exits_at_once_or_is_missing_does_not_start() {
    let e = env(1);
    let mut r = process(sh("echo 'bad flag' >&2; exit 2"), None);
    let err = r.start(&e).await.unwrap_err();
    assert!(
        matches!(
            err,
            ResourceError::Failed {
                action: "start",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("exit code 2") && msg.contains("bad flag"),
        "{msg}"
    );
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);

    let mut r = process(vec!["/nonexistent/daemon".into()], None);
    let err = r.start(&e).await.unwrap_err();
    assert!(matches!(err, ResourceError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/daemon"), "{err}");
}

#[tokio::test]
async fn the_process_sees_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("epoch");
    let mut r = process(
        sh(&format!(
            "echo $FENCE_EPOCH $FENCE_NODE > {}; exec sleep 1000",
            out.display()
        )),
        None,
    );
    let e = env(99);
    r.start(&e).await.unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = std::fs::read_to_string(&out).unwrap_or_default();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.trim(), "99 n1");
    r.stop(&e, true).await.unwrap();
}

/// The cgroup v2 path, against a stand-in hierarchy: the host here may have
/// cgroup v1 only. A stand-in cannot kill anything, so this checks that the
/// command is moved into its cgroup before it runs, with its arguments
/// intact, and that stop still works through the process group.
#[tokio::test]
async fn on_cgroup_v2_the_process_runs_in_its_own_cgroup() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("cgroup.controllers"), "").unwrap();
    let cgroup = root.path().join("fence-agent/node3/g-0");
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), "").unwrap();
    let out = root.path().join("args");
    let mut r = Resource::new(
        ResourceSpec::Process {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo \"$1|$2\" > {}; exec sleep 1000", out.display()),
                "sh".into(),
                "two words".into(),
                "$HOME".into(),
            ],
            stop_timeout: None,
        },
        "g",
        0,
    )
    .unwrap()
    .with_cgroup_root(root.path());
    let e = env(1);
    r.start(&e).await.unwrap();
    let pid = r.pid().unwrap();
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert_eq!(
        procs.trim(),
        pid.to_string(),
        "the process did not join its cgroup"
    );
    let mut args = String::new();
    for _ in 0..100 {
        args = std::fs::read_to_string(&out).unwrap_or_default();
        if !args.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(args.trim(), "two words|$HOME");
    r.stop(&e, false).await.unwrap();
    assert!(!alive(pid as i32));
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cgroup.kill")).unwrap(),
        "1"
    );
}

/// An agent killed with SIGKILL stops nothing: the process it started runs
/// on. With a state root, the next agent process's stop (its cleanup of a
/// group it did not start) kills it and what it spawned, by the recorded
/// pid (checked against its start time), and leaves an unrelated process
/// that reused nothing alone.
#[tokio::test]
async fn a_later_agent_process_stops_what_a_killed_one_left_running() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let e = env(1);
    let spec = ResourceSpec::Process {
        command: sh(&format!(
            "sleep 1000 & echo $! > {}; wait",
            pidfile.display()
        )),
        stop_timeout: None,
    };
    let mut first = Resource::new(spec.clone(), "g", 0)
        .unwrap()
        .with_state(state.path(), "c");
    first.start(&e).await.unwrap();
    let leader = first.pid().unwrap() as i32;
    let child = read_pid(&pidfile).await;
    let record = state.path().join("node3").join("g-0.pid");
    assert!(record.exists(), "the pid is recorded");
    // The agent dies: nothing is stopped (the process is not its child any
    // more once it is gone; dropping it here kills nothing).
    std::mem::forget(first);
    assert!(alive(leader) && alive(child));
    // Without a state root, a new agent's stop finds nothing to stop.
    let mut blind = Resource::new(spec.clone(), "g", 0).unwrap();
    blind.stop(&e, true).await.unwrap();
    assert!(alive(leader), "nothing recorded, nothing stopped");
    // The next agent process, with the state root: its cleanup stop kills
    // the group.
    let mut next = Resource::new(spec, "g", 0)
        .unwrap()
        .with_state(state.path(), "c");
    next.stop(&e, true).await.unwrap();
    assert!(
        gone_within(leader, Duration::from_secs(2)).await,
        "leader {leader} survived"
    );
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "child {child} survived"
    );
    assert!(!record.exists(), "the record is gone with it");
    // A record of a pid that is not the recorded process any more (its
    // start time differs) kills nothing.
    let mut other = tokio::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let other_pid = other.id().unwrap();
    std::fs::write(&record, format!("{other_pid} 1\n")).unwrap();
    next.stop(&e, true).await.unwrap();
    assert!(
        alive(other_pid as i32),
        "a pid whose start time differs is left alone"
    );
    other.kill().await.unwrap();
}

/// At its start, an agent kills everything an earlier process of its node
/// recorded, whatever group it was (renamed or removed since).
#[tokio::test]
async fn a_sweep_at_start_stops_every_leftover_of_the_node() {
    let state = tempfile::tempdir().unwrap();
    let no_cgroups = tempfile::tempdir().unwrap();
    let e = env(1);
    let spec = ResourceSpec::Process {
        command: vec!["sleep".into(), "1000".into()],
        stop_timeout: None,
    };
    let mut r = Resource::new(spec, "old-name", 0)
        .unwrap()
        .with_state(state.path(), "c");
    r.start(&e).await.unwrap();
    let pid = r.pid().unwrap() as i32;
    std::mem::forget(r);
    // Another node's record is not this node's business.
    let other = state.path().join("node9");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("x-0.pid"), format!("{} 1\n", std::process::id())).unwrap();
    let swept = resources::process::sweep_leftovers(state.path(), no_cgroups.path(), "c", 3)
        .await
        .unwrap();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "{pid} survived"
    );
    assert!(other.join("x-0.pid").exists());
}
