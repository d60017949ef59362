use std::collections::BTreeMap;
use std::time::Duration;

use resources::ResourceSpec;
use resources::spec::{DEFAULT_ACTION_TIMEOUT, DEFAULT_PROCESS_STOP_TIMEOUT};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    resources: Vec<ResourceSpec>,
}

fn parse(toml_text: &str) -> Result<Vec<ResourceSpec>, String> {
    toml::from_str::<Doc>(toml_text)
        .map(|d| d.resources)
        .map_err(|e| e.to_string())
}

#[test]
fn the_documented_toml_parses_with_defaults() {
    let r = parse(
        r#"resources = [
  { kind = "address", address = "192.0.2.10/24", interface = "eth0" },
  { kind = "ocf", agent = "heartbeat:Filesystem", params = { device = "/dev/drbd0", directory = "/srv", fstype = "ext4" } },
  { kind = "process", command = ["/usr/sbin/nginx", "-g", "daemon off;"] },
  { kind = "exec", start = ["/bin/true"], stop = ["/bin/true"] },
]"#,
    )
    .unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(
        r[0],
        ResourceSpec::Address {
            address: "192.0.2.10/24".into(),
            interface: "eth0".into(),
            arp_count: None,
            arp_interval: None,
            refresh: None,
        }
    );
    assert_eq!(r[0].arp_count(), 5);
    assert_eq!(r[0].arp_interval(), Duration::from_millis(200));
    assert_eq!(r[0].refresh(), Some(Duration::from_secs(10)));
    let ResourceSpec::Ocf { agent, params, .. } = &r[1] else {
        panic!("not ocf: {:?}", r[1]);
    };
    assert_eq!(agent, "heartbeat:Filesystem");
    assert_eq!(
        params,
        &BTreeMap::from([
            ("device".to_owned(), "/dev/drbd0".to_owned()),
            ("directory".to_owned(), "/srv".to_owned()),
            ("fstype".to_owned(), "ext4".to_owned()),
        ])
    );
    let t = r[1].ocf_timeouts();
    assert_eq!(
        (t.start, t.stop, t.monitor),
        (
            DEFAULT_ACTION_TIMEOUT,
            DEFAULT_ACTION_TIMEOUT,
            DEFAULT_ACTION_TIMEOUT
        )
    );
    assert_eq!(DEFAULT_ACTION_TIMEOUT, Duration::from_secs(20));
    let ResourceSpec::Process {
        command,
        stop_timeout,
    } = &r[2]
    else {
        panic!("not process: {:?}", r[2]);
    };
    assert_eq!(command, &["/usr/sbin/nginx", "-g", "daemon off;"]);
    assert_eq!(*stop_timeout, None);
    assert_eq!(r[2].process_stop_timeout(), DEFAULT_PROCESS_STOP_TIMEOUT);
    assert_eq!(DEFAULT_PROCESS_STOP_TIMEOUT, Duration::from_secs(5));
    assert!(matches!(
        &r[3],
        ResourceSpec::Exec {
            monitor: None,
            timeout: None,
            ..
        }
    ));
    assert_eq!(r[3].exec_timeout(), Duration::from_secs(20));
    for s in &r {
        assert_eq!(s.validate(), Vec::<String>::new(), "{s:?}");
    }
}

#[test]
fn durations_are_humantime_and_refresh_zero_means_never() {
    let r = parse(
        r#"resources = [
  { kind = "address", address = "fd00::10/64", interface = "eth1", arp_count = 2, arp_interval = "50ms", refresh = "0s" },
  { kind = "ocf", agent = "heartbeat:Dummy", start_timeout = "1m", stop_timeout = "90s", monitor_timeout = "5s" },
  { kind = "process", command = ["sleep", "1"], stop_timeout = "250ms" },
  { kind = "exec", start = ["a"], stop = ["b"], monitor = ["c", "d"], timeout = "3s" },
]"#,
    )
    .unwrap();
    assert_eq!(r[0].arp_count(), 2);
    assert_eq!(r[0].arp_interval(), Duration::from_millis(50));
    assert_eq!(r[0].refresh(), None);
    let t = r[1].ocf_timeouts();
    assert_eq!(
        (t.start, t.stop, t.monitor),
        (
            Duration::from_secs(60),
            Duration::from_secs(90),
            Duration::from_secs(5)
        )
    );
    assert_eq!(r[2].process_stop_timeout(), Duration::from_millis(250));
    assert!(matches!(&r[3], ResourceSpec::Exec { monitor: Some(m), .. } if m == &["c", "d"]));
    assert_eq!(r[3].exec_timeout(), Duration::from_secs(3));
    // And the JSON the arbiter ships reads back the same.
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""kind":"address""#), "{json}");
    assert!(json.contains(r#""arp_interval":"50ms""#), "{json}");
    let back: Vec<ResourceSpec> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn an_unknown_key_is_rejected_by_name() {
    let e = parse(r#"resources = [ { kind = "address", address = "192.0.2.10/24", interface = "eth0", arp_cont = 3 } ]"#)
        .unwrap_err();
    assert!(e.contains("arp_cont"), "{e}");
    let e = parse(r#"resources = [ { kind = "process", command = ["x"], stop_timeot = "1s" } ]"#)
        .unwrap_err();
    assert!(e.contains("stop_timeot"), "{e}");
    let e = parse(
        r#"resources = [ { kind = "ocf", agent = "heartbeat:Dummy", param = { a = "b" } } ]"#,
    )
    .unwrap_err();
    assert!(e.contains("param"), "{e}");
    let e = serde_json::from_str::<ResourceSpec>(
        r#"{"kind":"exec","start":["a"],"stop":["b"],"monitr":["c"]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("monitr"), "{e}");
    let e = parse(r#"resources = [ { kind = "vip", address = "192.0.2.10/24" } ]"#).unwrap_err();
    assert!(e.contains("vip"), "{e}");
    let e = parse(r#"resources = [ { kind = "address", interface = "eth0" } ]"#).unwrap_err();
    assert!(e.contains("address"), "{e}");
    let e = parse(r#"resources = [ { kind = "address", address = "192.0.2.10/24", interface = "eth0", arp_interval = "soon" } ]"#)
        .unwrap_err();
    assert!(
        e.contains("soon") || e.contains("arp_interval") || e.contains("duration"),
        "{e}"
    );
}

fn problems(toml_line: &str) -> Vec<String> {
    let r = parse(&format!("resources = [ {toml_line} ]")).unwrap();
    r[0].validate()
}

fn has(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}: {problems:#?}"
    );
}

#[test]
fn validate_finds_every_static_problem() {
    let p = problems(r#"{ kind = "address", address = "192.0.2.10", interface = "eth 0" }"#);
    assert_eq!(p.len(), 2, "{p:#?}");
    has(&p, "has no prefix length");
    has(&p, "\"eth 0\" is not a valid interface name");
    has(
        &problems(r#"{ kind = "address", address = "192.0.2.300/24", interface = "eth0" }"#),
        "is not an IPv4 or IPv6 address",
    );
    has(
        &problems(r#"{ kind = "address", address = "192.0.2.10/33", interface = "eth0" }"#),
        "prefix length \"33\"",
    );
    has(
        &problems(r#"{ kind = "address", address = "fd00::1/129", interface = "eth0" }"#),
        "from 0 to 128",
    );
    has(
        &problems(r#"{ kind = "address", address = "127.0.0.1/8", interface = "eth0" }"#),
        "loopback",
    );
    has(
        &problems(
            r#"{ kind = "address", address = "192.0.2.10/24", interface = "averyveryverylongname" }"#,
        ),
        "longer than 15 bytes",
    );
    has(
        &problems(
            r#"{ kind = "address", address = "192.0.2.10/24", interface = "eth0", arp_count = 3, arp_interval = "0s" }"#,
        ),
        "arp_interval is 0",
    );
    has(
        &problems(
            r#"{ kind = "address", address = "192.0.2.10/24", interface = "eth0", arp_count = 1000 }"#,
        ),
        "arp_count 1000",
    );

    let p = problems(
        r#"{ kind = "ocf", agent = "Dummy", params = { "bad-name" = "x" }, stop_timeout = "0s" }"#,
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    has(&p, "agent \"Dummy\" is not \"provider:type\"");
    has(&p, "\"bad-name\" is not a parameter name");
    has(&p, "stop_timeout is 0");
    has(
        &problems(r#"{ kind = "ocf", agent = "../x:y" }"#),
        "is not \"provider:type\"",
    );

    let p = problems(r#"{ kind = "process", command = [], stop_timeout = "0s" }"#);
    assert_eq!(p.len(), 2, "{p:#?}");
    has(&p, "command is empty");
    has(&p, "stop_timeout is 0");

    let p =
        problems(r#"{ kind = "exec", start = [""], stop = [], monitor = [], timeout = "0ms" }"#);
    assert_eq!(p.len(), 4, "{p:#?}");
    has(&p, "start: the program (first element) is empty");
    has(&p, "stop is empty");
    has(&p, "monitor is empty");
    has(&p, "timeout is 0");
}

#[test]
fn labels_are_short() {
    let r = parse(
        r#"resources = [
  { kind = "address", address = "192.0.2.10/24", interface = "eth0" },
  { kind = "ocf", agent = "heartbeat:Dummy" },
  { kind = "process", command = ["/usr/sbin/nginx", "-g", "daemon off;"] },
  { kind = "exec", start = ["/opt/app/start.sh"], stop = ["/opt/app/stop.sh"] },
]"#,
    )
    .unwrap();
    let labels: Vec<String> = r.iter().map(ResourceSpec::label).collect();
    assert_eq!(
        labels,
        [
            "address 192.0.2.10/24 on eth0",
            "ocf:heartbeat:Dummy",
            "process nginx",
            "exec start.sh"
        ]
    );
}

#[tokio::test]
async fn check_installed_finds_missing_programs_and_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    let r = parse(
        &r#"resources = [
  { kind = "process", command = ["no-such-program-here"] },
  { kind = "process", command = ["sleep", "1"] },
  { kind = "exec", start = ["/bin/true"], stop = ["PLAIN"], monitor = ["/nonexistent/x"] },
  { kind = "address", address = "192.0.2.10/24", interface = "nosuchif0" },
  { kind = "address", address = "192.0.2.10/24", interface = "lo" },
]"#
        .replace("PLAIN", plain.to_str().unwrap()),
    )
    .unwrap();
    let p = r[0].check_installed().await;
    assert_eq!(
        p,
        ["command: program no-such-program-here is not found in PATH"]
    );
    assert_eq!(r[1].check_installed().await, Vec::<String>::new());
    let p = r[2].check_installed().await;
    assert_eq!(p.len(), 2, "{p:#?}");
    has(&p, &format!("stop: {} is not executable", plain.display()));
    has(&p, "monitor: /nonexistent/x does not exist");
    assert_eq!(
        r[3].check_installed().await,
        ["interface nosuchif0 does not exist on this node"]
    );
    assert_eq!(r[4].check_installed().await, Vec::<String>::new());
}

#[test]
fn a_group_stops_within_what_holds_it_plus_its_urgent_stop() {
    use std::time::Duration;
    let s = Duration::from_secs;
    let ocf = ResourceSpec::Ocf {
        agent: "heartbeat:Dummy".into(),
        params: Default::default(),
        start_timeout: Some(s(30)),
        stop_timeout: None,
        monitor_timeout: Some(s(5)),
    };
    let process = ResourceSpec::Process {
        command: vec!["sleep".into(), "1".into()],
        stop_timeout: Some(s(8)),
    };
    // A start in flight (30 + 1 s), then the urgent stop (20 + 1 s).
    assert_eq!(
        ResourceSpec::group_lapse_bound(&[ocf.clone(), process.clone()]),
        s(31) + s(21)
    );
    // A graceful stop in flight (8 s) is the longest for a process alone.
    assert_eq!(ResourceSpec::group_lapse_bound(&[process]), s(8) + s(1));
    assert_eq!(ResourceSpec::group_lapse_bound(&[]), Duration::ZERO);
}
