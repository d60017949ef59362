use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resources::ocf::{agent_metadata, parse_metadata};
use resources::{Health, Resource, ResourceError, ResourceSpec};

use crate::common::{env, gone_within, read_pid, require, script};

const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";
const IPADDR2: &str = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2";

fn heartbeat() -> bool {
    require(
        "resource-agents (/usr/lib/ocf/resource.d/heartbeat/Dummy and IPaddr2)",
        Path::new(DUMMY).exists() && Path::new(IPADDR2).exists(),
    )
}

fn ocf(agent: &str, params: &[(&str, &str)]) -> ResourceSpec {
    ResourceSpec::Ocf {
        agent: agent.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        start_timeout: None,
        stop_timeout: None,
        monitor_timeout: None,
    }
}

#[tokio::test]
async fn dummy_starts_monitors_and_stops() {
    if !heartbeat() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dummy.state");
    let state_s = state.to_str().unwrap();
    let mut r = Resource::new(ocf("heartbeat:Dummy", &[("state", state_s)]), "g", 0)
        .unwrap()
        .with_ocf_root("/usr/lib/ocf");
    let e = env(7);
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    r.start(&e).await.unwrap();
    assert!(
        state.exists(),
        "Dummy did not write its state file {state_s}"
    );
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Running);
    r.stop(&e, false).await.unwrap();
    assert!(!state.exists());
    assert_eq!(r.monitor(&e).await.unwrap(), Health::Stopped);
    // Stopping a stopped resource succeeds.
    r.stop(&e, true).await.unwrap();
}

#[tokio::test]
async fn meta_data_of_dummy_and_ipaddr2() {
    if !heartbeat() {
        return;
    }
    let root = Path::new("/usr/lib/ocf");
    let m = agent_metadata(root, "heartbeat:Dummy", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(m.name, "Dummy");
    let state = m
        .parameters
        .iter()
        .find(|p| p.name == "state")
        .expect("Dummy has a state parameter");
    assert!(state.unique && !state.required, "{state:?}");
    assert_eq!(
        state.default.as_deref(),
        Some("/run/resource-agents/Dummy-RESOURCE_ID.state")
    );
    assert_eq!(state.description, "State file");
    assert!(m.parameters.iter().any(|p| p.name == "fake"));

    let m = agent_metadata(root, "heartbeat:IPaddr2", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(m.name, "IPaddr2");
    let ip = m
        .parameters
        .iter()
        .find(|p| p.name == "ip")
        .expect("IPaddr2 has ip");
    assert!(ip.required && ip.unique, "{ip:?}");
    assert!(
        m.parameters
            .iter()
            .any(|p| p.name == "cidr_netmask" && !p.required)
    );
}

#[test]
fn meta_data_that_is_not_an_agents_is_refused() {
    let e = parse_metadata("<html/>").unwrap_err();
    assert!(e.contains("<html>"), "{e}");
    let e = parse_metadata("not xml").unwrap_err();
    assert!(e.contains("not XML"), "{e}");
    let m = parse_metadata(
        r#"<resource-agent name="x"><parameters><parameter name="a" required="1"><content type="string" default="d"/></parameter></parameters></resource-agent>"#,
    )
    .unwrap();
    assert_eq!(m.parameters.len(), 1);
    assert!(m.parameters[0].required && !m.parameters[0].unique);
    assert_eq!(m.parameters[0].default.as_deref(), Some("d"));
}

#[tokio::test]
async fn check_installed_flags_unknown_missing_and_absent() {
    if !heartbeat() {
        return;
    }
    let root = Path::new("/usr/lib/ocf");
    let p = ocf("heartbeat:Dummy", &[("state", "/tmp/x"), ("bogus", "1")])
        .check_installed_in(root)
        .await;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("params.bogus: OCF agent heartbeat:Dummy does not take this parameter"),
        "{p:#?}"
    );
    assert!(
        p[0].contains("state"),
        "the message lists what it takes: {p:#?}"
    );

    let p = ocf("heartbeat:IPaddr2", &[("cidr_netmask", "24")])
        .check_installed_in(root)
        .await;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("params.ip: required by OCF agent heartbeat:IPaddr2 and missing"),
        "{p:#?}"
    );

    assert_eq!(
        ocf("heartbeat:IPaddr2", &[("ip", "192.0.2.10")])
            .check_installed_in(root)
            .await,
        Vec::<String>::new()
    );

    let p = ocf("heartbeat:NoSuchAgent", &[])
        .check_installed_in(root)
        .await;
    assert_eq!(
        p,
        [
            "OCF agent heartbeat:NoSuchAgent: /usr/lib/ocf/resource.d/heartbeat/NoSuchAgent does not exist"
        ]
    );
}

/// A temporary OCF_ROOT holding `resource.d/test/<name>`.
fn fake_root(dir: &Path, name: &str, body: &str) -> PathBuf {
    let agents = dir.join("resource.d/test");
    std::fs::create_dir_all(&agents).unwrap();
    script(&agents, name, body);
    dir.to_path_buf()
}

#[tokio::test]
async fn a_hung_agent_times_out_and_its_process_group_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let root = fake_root(
        dir.path(),
        "Hang",
        "#!/bin/sh\ncase \"$1\" in\n  start) sleep 300 & echo $! > \"$OCF_RESKEY_pidfile\"; wait;;\n  *) exit 0;;\nesac\n",
    );
    let spec = ResourceSpec::Ocf {
        agent: "test:Hang".into(),
        params: BTreeMap::from([("pidfile".to_owned(), pidfile.display().to_string())]),
        start_timeout: Some(Duration::from_millis(400)),
        stop_timeout: None,
        monitor_timeout: None,
    };
    let mut r = Resource::new(spec, "g", 2).unwrap().with_ocf_root(&root);
    let started = tokio::time::Instant::now();
    let e = r.start(&env(1)).await.unwrap_err();
    assert!(
        matches!(
            e,
            ResourceError::Timeout {
                action: "start",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("g-2 (ocf:test:Hang): start did not finish within 400ms"),
        "{msg}"
    );
    let child = read_pid(&pidfile).await;
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "the agent's child {child} survived the timeout"
    );
}

#[tokio::test]
async fn exit_codes_are_named_with_the_agents_last_stderr_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = fake_root(
        dir.path(),
        "Unconf",
        "#!/bin/sh\ncase \"$1\" in\n  start) echo 'checking' >&2; echo 'ERROR: parameter foo is not set' >&2; exit 6;;\n  monitor) echo 'disk gone' >&2; exit 1;;\n  stop) exit 7;;\nesac\n",
    );
    let mut r = Resource::new(ocf("test:Unconf", &[]), "g", 0)
        .unwrap()
        .with_ocf_root(&root);
    let e = r.start(&env(1)).await.unwrap_err();
    assert!(matches!(e, ResourceError::Ocf { code: 6, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "g-0 (ocf:test:Unconf): start failed: OCF exit code 6 (not configured): ERROR: parameter foo is not set"
    );
    assert_eq!(
        r.monitor(&env(1)).await.unwrap(),
        Health::Failed("OCF exit code 1 (generic error): disk gone".into())
    );
    // "not running" from stop is as good as stopped.
    r.stop(&env(1), false).await.unwrap();

    let mut missing = Resource::new(ocf("test:Absent", &[]), "g", 1)
        .unwrap()
        .with_ocf_root(&root);
    let e = missing.start(&env(1)).await.unwrap_err();
    assert!(matches!(e, ResourceError::Spawn { .. }), "{e:?}");
    assert!(e.to_string().contains("resource.d/test/Absent"), "{e}");
}

#[tokio::test]
async fn the_agent_sees_the_epoch_and_its_ocf_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let root = fake_root(
        dir.path(),
        "Env",
        "#!/bin/sh\n[ \"$1\" = start ] || exit 0\necho \"$FENCE_EPOCH $FENCE_GROUP $FENCE_NODE $FENCE_NODE_ID $OCF_RESOURCE_INSTANCE $OCF_RESOURCE_PROVIDER $OCF_RESOURCE_TYPE $OCF_RESKEY_colour $OCF_RESKEY_CRM_meta_timeout $OCF_ROOT\" > \"$OCF_RESKEY_out\"\n",
    );
    let spec = ResourceSpec::Ocf {
        agent: "test:Env".into(),
        params: BTreeMap::from([
            ("out".to_owned(), out.display().to_string()),
            ("colour".to_owned(), "blue".to_owned()),
        ]),
        start_timeout: Some(Duration::from_secs(7)),
        stop_timeout: None,
        monitor_timeout: None,
    };
    let mut r = Resource::new(spec, "g", 4).unwrap().with_ocf_root(&root);
    r.start(&env(42)).await.unwrap();
    let seen = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        seen.trim(),
        format!("42 g n1 3 g-4 test Env blue 7000 {}", root.display())
    );
}
