//! The daemons as services: systemd's notify protocol (`READY=1` after the
//! start-up grace, `WATCHDOG=1` while the loops run) spoken to a socket the
//! test binds as systemd would, and logs without colour codes when stderr
//! is not a terminal.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use fencectl::local_cluster::{ClusterOptions, LocalCluster};
use tests::e2e::{binaries, json_log, unix_us};
use tests::peers::serial;

/// A child process killed (SIGKILL, by its pid) and reaped when dropped,
/// also when an assertion fails first.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every datagram on `sock` within `within`, with its arrival time (µs).
fn receive(sock: &UnixDatagram, within: Duration) -> Vec<(u64, String)> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let end = unix_us() + within.as_micros() as u64;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while unix_us() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((unix_us(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
    got
}

/// The arbiter says READY=1 only once its start-up grace is over, then
/// WATCHDOG=1 at half the watchdog period (WATCHDOG_USEC = 400 ms).
#[tokio::test(flavor = "multi_thread")]
async fn the_arbiter_speaks_sd_notify_ready_after_the_grace_and_keeps_the_watchdog_fed() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let started = unix_us();
    let opts = ClusterOptions {
        arbiter_env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        ..ClusterOptions::default()
    };
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    let got = tokio::task::spawn_blocking(move || receive(&sock, Duration::from_secs(4)))
        .await
        .expect("receiver");
    let ready = got
        .iter()
        .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no READY=1: {got:?}"));
    let log = std::fs::read_to_string(c.dir().join("arbiter.log")).expect("arbiter log");
    let grace_over = json_log(&log)
        .into_iter()
        .find(|(_, m, _)| m.starts_with("start-up grace over"))
        .map(|(t, _, _)| t)
        .expect("the grace ended");
    assert!(
        ready >= grace_over && ready > started,
        "READY=1 at {ready} before the grace ended at {grace_over}"
    );
    let beats: Vec<u64> = got
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(beats.len() >= 5, "too few WATCHDOG=1 in 4 s: {got:?}");
    for w in beats.windows(2) {
        assert!(
            w[1] - w[0] < 400_000,
            "a gap of {} µs between keep-alives",
            w[1] - w[0]
        );
    }
}

/// The agent says READY=1 once set up and keeps its watchdog fed while its
/// session runs; frozen (SIGSTOP), it falls silent, as systemd must see.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_keeps_the_watchdog_fed_only_while_its_loop_runs() {
    let _g = serial();
    let c = LocalCluster::start(&binaries(), &ClusterOptions::default())
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(10))
        .await
        .expect("all leased");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    // A fourth process speaking as node 1 would be refused; run node 1's
    // configuration again under another run_dir as a stand-alone agent.
    let conf = std::fs::read_to_string(c.dir().join("agent1.toml")).expect("agent1.toml");
    let run_dir = tmp.path().join("run");
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("run_dir = ") {
                format!("run_dir = \"{}\"", run_dir.display())
            } else if l.starts_with("listen = ") {
                "listen = \"127.0.0.1:0\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf_path = tmp.path().join("agent.toml");
    std::fs::write(&conf_path, conf).expect("write config");
    let child = Killed(
        std::process::Command::new(binaries().join("fence-agent"))
            .arg("--config")
            .arg(&conf_path)
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn fence-agent"),
    );
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    let sock2 = sock.try_clone().expect("clone");
    let got = tokio::task::spawn_blocking(move || receive(&sock2, Duration::from_secs(2)))
        .await
        .expect("receiver");
    assert!(
        got.iter().any(|(_, m)| m.lines().any(|l| l == "READY=1")),
        "no READY=1: {got:?}"
    );
    let beats = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
    assert!(beats >= 3, "too few keep-alives: {got:?}");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
    // (Drain what was sent before the stop.)
    std::thread::sleep(Duration::from_millis(100));
    let _ = tokio::task::spawn_blocking({
        let s = sock.try_clone().expect("clone");
        move || receive(&s, Duration::from_millis(100))
    })
    .await;
    let frozen = tokio::task::spawn_blocking({
        let s = sock.try_clone().expect("clone");
        move || receive(&s, Duration::from_secs(1))
    })
    .await
    .expect("receiver");
    drop(child);
    assert!(
        !frozen.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "keep-alives from a frozen agent: {frozen:?}"
    );
}

/// Text logs carry no ANSI colour codes when stderr is a file or a pipe.
#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let conf = tmp.path().join("arbiter.toml");
    std::fs::write(
        &conf,
        format!(
            "[arbiter]\nlisten = \"{listen}\"\nstate_dir = \"{}\"\ninsecure_plaintext = true\nmetrics = \"off\"\n\n\
             [[cluster]]\nname = \"c\"\n\n[[cluster.device]]\nname = \"power\"\ndriver = \"sim\"\ndir = \"{}\"\n\n\
             [[cluster.node]]\nid = 1\naddress = \"127.0.0.1:1\"\nfence = [[\"power:node1\"]]\n",
            tmp.path().join("state").display(),
            tmp.path().join("power").display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(tmp.path().join("arbiter.log")).expect("log file");
    let child = Killed(
        std::process::Command::new(binaries().join("fence-arbiter"))
            .arg("--config")
            .arg(&conf)
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    drop(child);
    let text = std::fs::read_to_string(tmp.path().join("arbiter.log")).expect("log");
    assert!(text.contains("fence-arbiter started"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text:?}"
    );
}
