//! A kernel blackhole for one TCP port, in a private network namespace.
//!
//! [`in_private_netns`] runs a closure on a new thread that first moves into
//! a network namespace of its own (`unshare(CLONE_NEWNET)`: a loopback
//! interface and nothing else), so every thread, tokio worker and child
//! process it starts lives there too, and nothing on the machine's own
//! network is touched. The namespace has no name and disappears with the
//! last process in it: a crashed test leaves nothing behind.
//!
//! [`PortBlackhole`] then drops, with nftables on the input hook, every TCP
//! packet to or from one port: packets are lost, not refused (no RST, no
//! ICMP), exactly as when a host's network goes dark. Established
//! connections stall and retransmit; new ones see their SYN vanish.
//! Healing removes the rule; the kernel's own retransmissions resume.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables): `scripts/test` installs
//! them. Where they are missing the caller skips, unless `CI=true`.

use std::process::Command;

use nix::sched::{CloneFlags, unshare};

const TABLE: &str = "fence_blackhole";

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `f` on a new thread inside a new, private network namespace with
/// loopback up and nftables usable. `Err` if that cannot be set up here
/// (not root, no `ip` or `nft`, no namespace support): `f` did not run.
pub fn in_private_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let setup = || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e} (needs root)"))?;
        run(&["ip", "link", "set", "lo", "up"])?;
        // Prove nftables works in here before the test relies on it.
        run(&["nft", "add", "table", "inet", TABLE])?;
        run(&[
            "nft",
            "add chain inet fence_blackhole input { type filter hook input priority 0; policy accept; }",
        ])?;
        run(&[
            "nft",
            "add chain inet fence_blackhole output { type filter hook output priority 0; policy accept; }",
        ])?;
        Ok(())
    };
    std::thread::Builder::new()
        .name("private-netns".into())
        .spawn(move || setup().map(|()| f()))
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Drops every TCP packet to or from `port` while blocked. Only usable from
/// inside [`in_private_netns`].
pub struct PortBlackhole {
    port: u16,
}

impl PortBlackhole {
    pub fn new(port: u16) -> PortBlackhole {
        PortBlackhole { port }
    }

    /// From now on every TCP packet to or from the port is lost.
    pub fn block(&self) -> Result<(), String> {
        let p = self.port;
        run(&[
            "nft",
            &format!(
                "add rule inet {TABLE} input tcp dport {p} drop; add rule inet {TABLE} input tcp sport {p} drop"
            ),
        ])
    }

    /// Packets flow again (both rules go in one transaction).
    pub fn heal(&self) -> Result<(), String> {
        run(&["nft", &format!("flush chain inet {TABLE} input")])
    }
}

/// Cuts one process off the network (every TCP packet it sends or should
/// receive is lost) while blocked: the process runs with its own group id
/// (`meta skgid` on the output hook), the connections it sends on are
/// marked in conntrack so their packets to it are dropped on the input
/// hook too, and its listening port takes no new connection. Only usable
/// from inside [`in_private_netns`]; one cut at a time.
pub struct ProcessCut {
    gid: u32,
    port: u16,
}

impl ProcessCut {
    /// The process running with group id `gid` and listening on `port`.
    pub fn new(gid: u32, port: u16) -> ProcessCut {
        ProcessCut { gid, port }
    }

    /// From now on the process is cut off: no packet in or out.
    pub fn block(&self) -> Result<(), String> {
        let (g, p) = (self.gid, self.port);
        // The gid as conntrack mark: each process's connections keep
        // their own mark across cuts.
        run(&[
            "nft",
            &format!(
                "add rule inet {TABLE} output meta skgid {g} ct mark set {g}; \
                 add rule inet {TABLE} output ct mark {g} drop; \
                 add rule inet {TABLE} input ct mark {g} drop; \
                 add rule inet {TABLE} input tcp dport {p} drop; \
                 add rule inet {TABLE} input tcp sport {p} drop"
            ),
        ])
    }

    /// Packets flow again (one transaction).
    pub fn heal(&self) -> Result<(), String> {
        run(&[
            "nft",
            &format!("flush chain inet {TABLE} input; flush chain inet {TABLE} output"),
        ])
    }
}
