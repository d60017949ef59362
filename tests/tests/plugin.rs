//! The `plugin` driver with the example plugin (a real separate process,
//! `fence-plugin-example`) over a Unix socket and loopback TCP: the
//! contract works, and a misbehaving plugin (hangs, crashes, lies about
//! success) never yields a confirmed fence.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use fence_drivers::params::Params;
use fence_drivers::plugin::PluginDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, confirm_off, off_and_confirm};
use tests::e2e::binaries;

/// The example plugin, stopped (by PID) when dropped.
struct Plugin {
    child: Child,
    endpoint: String,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(listen: &str, endpoint: String, ready: &dyn Fn() -> bool) -> Plugin {
    let child = Command::new(binaries().join("fence-plugin-example"))
        .args(["--listen", listen])
        .spawn()
        .expect("start fence-plugin-example");
    for _ in 0..200 {
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Plugin { child, endpoint }
}

fn unix_plugin(dir: &Path) -> Plugin {
    let sock = dir.join("plugin.sock");
    let s = sock.clone();
    start(
        &format!("unix:{}", sock.display()),
        format!("unix:{}", sock.display()),
        &move || s.exists(),
    )
}

/// A device directory with outlets node1..node3 on and a token.
fn device(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("outlets");
    std::fs::create_dir_all(&d).unwrap();
    for i in 1..=3 {
        std::fs::write(d.join(format!("node{i}.state")), "on\n").unwrap();
    }
    std::fs::write(d.join("token"), "t0ken-s3cret\n").unwrap();
    std::fs::write(dir.join("token.secret"), "t0ken-s3cret\n").unwrap();
    d
}

fn params(dir: &Path, plugin: &Plugin, timeout: &str) -> Params {
    let mut p = Params::default();
    p.values.insert("endpoint".into(), plugin.endpoint.clone());
    p.values.insert("timeout".into(), timeout.into());
    p.values
        .insert("dir".into(), dir.join("outlets").display().to_string());
    p.secrets.insert(
        "token".into(),
        format!("file:{}", dir.join("token.secret").display()),
    );
    p
}

#[tokio::test]
async fn the_contract_over_a_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let outlets = device(tmp.path());
    let plugin = unix_plugin(tmp.path());
    let d = PluginDriver::from_params("ext", &params(tmp.path(), &plugin, "2s")).unwrap();
    d.validate().await.unwrap();
    d.monitor().await.unwrap();
    assert_eq!(d.status("node2").await.unwrap(), PowerState::On);
    off_and_confirm(
        &d,
        "node2",
        Duration::from_secs(2),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(outlets.join("node2.state")).unwrap(),
        "off\n"
    );
    d.reboot("node2", Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(outlets.join("node2.state")).unwrap(),
        "on\n"
    );
    let ports = d.list().await.unwrap();
    assert_eq!(ports.len(), 3);
    let e = d.status("node9").await.unwrap_err();
    assert!(matches!(e, FenceError::NoSuchPort { .. }), "{e}");

    // The secret reaches the plugin (it checks it) but no error message.
    std::fs::write(tmp.path().join("token.secret"), "wrong\n").unwrap();
    let e = PluginDriver::from_params("ext", &params(tmp.path(), &plugin, "2s"))
        .unwrap()
        .off("node1")
        .await
        .unwrap_err();
    assert!(matches!(e, FenceError::Credentials { .. }), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");

    // The plugin's Validate names a bad parameter.
    let mut p = params(tmp.path(), &plugin, "2s");
    p.values.insert("colour".into(), "blue".into());
    let e = PluginDriver::from_params("ext", &p)
        .unwrap()
        .validate()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
}

#[tokio::test]
async fn a_lying_hanging_or_crashing_plugin_never_confirms_a_fence() {
    let tmp = tempfile::tempdir().unwrap();
    let outlets = device(tmp.path());
    let mut plugin = unix_plugin(tmp.path());
    let d = PluginDriver::from_params("ext", &params(tmp.path(), &plugin, "300ms")).unwrap();

    // Lies: "off" succeeds, the outlet stays on, status says on.
    std::fs::write(outlets.join("lie"), "").unwrap();
    let e = off_and_confirm(
        &d,
        "node1",
        Duration::from_millis(500),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            FenceError::NotConfirmed {
                last: PowerState::On,
                ..
            }
        ),
        "{e}"
    );
    std::fs::remove_file(outlets.join("lie")).unwrap();

    // Hangs: every call ends at its deadline, as a timeout.
    std::fs::write(outlets.join("hang"), "").unwrap();
    let t = tokio::time::Instant::now();
    let e = d.off("node1").await.unwrap_err();
    assert!(matches!(e, FenceError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let e = confirm_off(
        &d,
        "node1",
        Duration::from_millis(400),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err();
    // A hung status is a timeout, or "not confirmed" with nothing read.
    assert!(
        matches!(
            e,
            FenceError::Timeout { .. }
                | FenceError::NotConfirmed {
                    last: PowerState::Unknown,
                    ..
                }
        ),
        "{e}"
    );
    std::fs::remove_file(outlets.join("hang")).unwrap();

    // Crashes in the middle of "off": an error, never a success.
    std::fs::write(outlets.join("crash"), "").unwrap();
    let e = d.off("node1").await.unwrap_err();
    assert!(
        matches!(
            e,
            FenceError::Unreachable { .. } | FenceError::Device { .. }
        ),
        "{e}"
    );
    let status = plugin.child.wait().unwrap();
    assert_eq!(status.code(), Some(70), "the plugin exited");
    let e = d.status("node1").await.unwrap_err();
    assert!(matches!(e, FenceError::Unreachable { .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(outlets.join("node1.state")).unwrap(),
        "on\n"
    );
}

#[tokio::test]
async fn loopback_tcp_works_and_other_addresses_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    device(tmp.path());
    let port = tests::e2e::free_port();
    let addr = format!("127.0.0.1:{port}");
    let a = addr.clone();
    let plugin = start(&addr, format!("http://{addr}"), &move || {
        std::net::TcpStream::connect(&a).is_ok()
    });
    let d = PluginDriver::from_params("ext", &params(tmp.path(), &plugin, "2s")).unwrap();
    assert_eq!(d.status("node3").await.unwrap(), PowerState::On);

    let mut p = params(tmp.path(), &plugin, "2s");
    p.values
        .insert("endpoint".into(), "http://fence-plugin.invalid:7000".into());
    let e = PluginDriver::from_params("ext", &p).unwrap_err();
    assert!(e.to_string().contains("loopback only"), "{e}");
}

/// A cluster whose nodes' first fence level is the example plugin (a
/// separate process on a Unix socket), the second the simulated power
/// device: a frozen node is fenced through the plugin, confirmed by its
/// status, before the survivors are told; when the plugin lies about
/// `off`, the level fails and the arbiter falls through to the second.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_fences_through_the_plugin_and_falls_through_when_it_lies() {
    use fencectl::local_cluster::{ClusterOptions, LocalCluster};
    use tests::e2e::Watcher;

    let tmp = tempfile::tempdir().unwrap();
    let outlets = device(tmp.path());
    std::fs::remove_file(outlets.join("token")).unwrap();
    let plugin = unix_plugin(tmp.path());
    let opts = ClusterOptions {
        plugin: Some((plugin.endpoint.clone(), outlets.clone())),
        cluster_extra: "fence_timeout = \"1s\"".into(),
        ..Default::default()
    };
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(20))
        .await
        .expect("all leased");
    let mut w = Watcher::start(&c.url).await;
    let state = |n: u32| {
        std::fs::read_to_string(outlets.join(format!("node{n}.state")))
            .unwrap()
            .trim()
            .to_string()
    };

    c.freeze(3).unwrap();
    let told = w
        .wait_for(Duration::from_secs(20), |e| {
            e.kind == "survivors_notified" && e.detail.contains('3')
        })
        .await
        .unwrap_or_else(|| panic!("node 3 not announced: {:?}", w.seen));
    assert_eq!(state(3), "off", "fenced through the plugin");
    assert!(
        !w.seen
            .iter()
            .any(|e| e.kind == "fence_failed" && e.node == 3),
        "{:?}",
        w.seen
    );

    std::fs::write(outlets.join("lie"), "").unwrap();
    c.freeze(2).unwrap();
    w.wait_for(Duration::from_secs(30), |e| {
        e.kind == "survivors_notified" && e.epoch > told.epoch
    })
    .await
    .unwrap_or_else(|| panic!("node 2 not announced: {:?}", w.seen));
    assert!(
        w.seen
            .iter()
            .any(|e| e.kind == "fence_failed" && e.node == 2),
        "the lying plugin's level must fail: {:?}",
        w.seen
    );
    assert_eq!(state(2), "on", "the plugin changed nothing");
    let rec = c.device.events().unwrap();
    assert!(
        rec.iter().any(|e| e.port == "node2" && e.action == "off"),
        "level 2 switched node 2 off"
    );
}
