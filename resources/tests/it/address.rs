//! The address kind, for real: in network namespaces this test makes (and
//! always removes), through the `fence-resource` binary under `ip netns
//! exec`, with a capture in the peer namespace of a veth pair.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, recv, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::common::require;

const BIN: &str = env!("CARGO_BIN_EXE_fence-resource");

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; deleted on drop, even on panic.
struct Netns {
    agent: String,
    peer: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.agent]);
        let _ = ip(&["netns", "del", &self.peer]);
    }
}

fn fence_resource(ns: &str, action: &str, json: &str) -> Output {
    Command::new("ip")
        .args([
            "netns", "exec", ns, BIN, action, "--group", "vip", "--epoch", "9", "--node", "n1",
            json,
        ])
        .output()
        .expect("cannot run ip netns exec")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Capture every frame in namespace `ns` until `stop`; says when ready.
fn capture(
    ns: String,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), String>>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let setup = || -> Result<std::os::fd::OwnedFd, String> {
            let f = File::open(format!("/run/netns/{ns}"))
                .map_err(|e| format!("open netns {ns}: {e}"))?;
            // Only this thread moves.
            setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))?;
            let fd = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
            .map_err(|e| format!("packet socket: {e}"))?;
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
                .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
            Ok(fd)
        };
        let fd = match setup() {
            Ok(fd) => {
                let _ = ready.send(Ok(()));
                fd
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return Vec::new();
            }
        };
        let mut frames = Vec::new();
        let mut buf = [0u8; 2048];
        // Until told to stop; by itself after 10 s of silence (200 receives
        // timing out after 50 ms) or 10 000 frames.
        let mut idle = 0;
        while !stop.load(Ordering::Relaxed) && idle < 200 && frames.len() < 10_000 {
            match recv(
                fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Ok(n) => frames.push(buf[..n].to_vec()),
                Err(_) => idle += 1,
            }
        }
        frames
    })
}

fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v[0]["address"].as_str().unwrap();
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// Gratuitous ARP requests for `ip` from `mac`.
fn garps(frames: &[Vec<u8>], mac: [u8; 6], ip: Ipv4Addr) -> usize {
    frames
        .iter()
        .filter(|f| {
            f.len() >= 42
                && f[0..6] == [0xff; 6]
                && f[6..12] == mac
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 1] // request
                && f[22..28] == mac // sender MAC
                && f[28..32] == ip.octets() // sender IP
                && f[38..42] == ip.octets() // target IP
        })
        .count()
}

/// Unsolicited neighbour advertisements for `ip` with `mac` as target
/// link-layer address, to ff02::1, hop limit 255, override set.
fn nas(frames: &[Vec<u8>], mac: [u8; 6], ip: Ipv6Addr) -> usize {
    frames
        .iter()
        .filter(|f| {
            f.len() >= 14 + 40 + 32
                && f[6..12] == mac
                && f[12..14] == [0x86, 0xdd]
                && f[14 + 6] == 58 // next header: ICMPv6
                && f[14 + 7] == 255 // hop limit
                && f[14 + 24..14 + 40] == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
                && f[54] == 136
                && f[58] & 0x20 != 0 // override
                && f[58] & 0x40 == 0 // not solicited
                && f[62..78] == ip.octets()
                && f[78..80] == [2, 1]
                && f[80..86] == mac
        })
        .count()
}

#[test]
fn an_address_is_added_announced_and_removed_in_a_namespace() {
    let root = nix::unistd::geteuid().is_root();
    if !require("root (to make network namespaces)", root)
        || !require(
            "the ip command (iproute2)",
            Command::new("ip").arg("-V").output().is_ok(),
        )
    {
        return;
    }
    let id = std::process::id();
    let ns = Netns {
        agent: format!("frs-a-{id}"),
        peer: format!("frs-b-{id}"),
    };
    ip_ok(&["netns", "add", &ns.agent]);
    ip_ok(&["netns", "add", &ns.peer]);
    ip_ok(&[
        "-n", &ns.agent, "link", "add", "fr0", "type", "veth", "peer", "name", "fr1", "netns",
        &ns.peer,
    ]);
    ip_ok(&["-n", &ns.agent, "link", "set", "lo", "up"]);
    ip_ok(&["-n", &ns.agent, "link", "set", "fr0", "up"]);
    ip_ok(&["-n", &ns.peer, "link", "set", "fr1", "up"]);
    let mac = mac_of(&ns.agent, "fr0");

    // A private address that exists only inside these namespaces.
    let v4 = Ipv4Addr::new(10, 213, (id % 250) as u8, 10);
    let v6: Ipv6Addr = "fd00:213::10".parse().unwrap();
    let json = serde_json::json!([
        { "kind": "address", "address": format!("{v4}/24"), "interface": "fr0", "arp_count": 3, "arp_interval": "50ms", "refresh": "0s" },
        { "kind": "address", "address": format!("{v6}/64"), "interface": "fr0", "arp_count": 3, "arp_interval": "50ms", "refresh": "0s" },
    ])
    .to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let capture = capture(ns.peer.clone(), Arc::clone(&stop), ready_tx);
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("capture thread")
        .expect("capture set up");

    let check = fence_resource(&ns.agent, "check", &json);
    assert!(check.status.success(), "{}", show(&check));

    let out = fence_resource(&ns.agent, "start", &json);
    assert!(out.status.success(), "{}", show(&out));
    // Starting again: already there is fine.
    let out = fence_resource(&ns.agent, "start", &json);
    assert!(out.status.success(), "{}", show(&out));

    let addrs =
        String::from_utf8_lossy(&ip(&["-n", &ns.agent, "addr", "show", "dev", "fr0"]).stdout)
            .into_owned();
    assert!(addrs.contains(&format!("inet {v4}/24")), "{addrs}");
    let v6_line = addrs
        .lines()
        .find(|l| l.contains(&format!("inet6 {v6}/64")))
        .unwrap_or_else(|| panic!("no {v6}/64 in:\n{addrs}"));
    assert!(
        v6_line.contains("nodad") && !v6_line.contains("tentative"),
        "{v6_line}"
    );

    let out = fence_resource(&ns.agent, "monitor", &json);
    assert!(out.status.success(), "{}", show(&out));

    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let frames = capture.join().unwrap();
    // Two starts, three announcements each.
    let arp = garps(&frames, mac, v4);
    assert!(
        arp >= 6,
        "{arp} gratuitous ARPs for {v4} seen in {} frames",
        frames.len()
    );
    let na = nas(&frames, mac, v6);
    assert!(
        na >= 6,
        "{na} neighbour advertisements for {v6} seen in {} frames",
        frames.len()
    );

    let out = fence_resource(&ns.agent, "stop", &json);
    assert!(out.status.success(), "{}", show(&out));
    let addrs =
        String::from_utf8_lossy(&ip(&["-n", &ns.agent, "addr", "show", "dev", "fr0"]).stdout)
            .into_owned();
    assert!(
        !addrs.contains(&v4.to_string()) && !addrs.contains(&v6.to_string()),
        "{addrs}"
    );

    let out = fence_resource(&ns.agent, "monitor", &json);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resources[0] (address 10.213."),
        "{}",
        show(&out)
    );
    // Stopping a stopped address succeeds.
    let out = fence_resource(&ns.agent, "stop", &json);
    assert!(out.status.success(), "{}", show(&out));

    // An interface that does not exist: start fails and says which.
    let bad = serde_json::json!([{ "kind": "address", "address": format!("{v4}/24"), "interface": "nosuch0" }]).to_string();
    let out = fence_resource(&ns.agent, "start", &bad);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interface nosuch0 does not exist"),
        "{}",
        show(&out)
    );
}
