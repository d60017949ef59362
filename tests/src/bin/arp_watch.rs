//! `arp_watch`: a client that asks "who has ADDRESS?" every few
//! milliseconds and prints every answer with the MAC that gave it — which
//! machine answers for a floating address, and whether two ever do at once.
//! Runs in a network namespace the failover test (or benchmark) creates.
//!
//! ```text
//! arp_watch --iface IFACE --src CLIENT_IP --target ADDRESS [--target ...] [--interval-ms 5]
//! ```
//!
//! Output, one line each, until killed: `S <unix_us>` for each round of
//! requests sent, `R <unix_us> <target> <mac>` for each reply.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, recv, sendto, setsockopt,
    socket, sockopt,
};
use nix::sys::time::TimeVal;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    iface: String,
    /// This client's IPv4 address (the sender of the requests).
    #[arg(long)]
    src: Ipv4Addr,
    /// Addresses to ask for.
    #[arg(long, required = true)]
    target: Vec<Ipv4Addr>,
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn request(mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.push(6);
    f.push(4);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

fn link(iface: &str) -> anyhow::Result<LinkAddr> {
    for ifa in getifaddrs().context("getifaddrs")? {
        if ifa.interface_name == iface
            && let Some(l) = ifa.address.as_ref().and_then(|a| a.as_link_addr())
        {
            return Ok(*l);
        }
    }
    bail!("interface {iface} has no link-layer address")
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let link = link(&a.iface)?;
    let mac = link.addr().context("interface without a MAC")?;
    let rx = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .context("packet socket (needs CAP_NET_RAW)")?;
    setsockopt(&rx, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000)).context("timeout")?;
    let tx = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("packet socket")?;
    let frames: Vec<Vec<u8>> = a.target.iter().map(|&t| request(mac, a.src, t)).collect();
    let every = Duration::from_millis(a.interval_ms.max(1));
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let o2 = out.clone();
    std::thread::spawn(move || {
        let mut next = std::time::Instant::now();
        loop {
            for f in &frames {
                let _ = sendto(tx.as_raw_fd(), f, &link, MsgFlags::empty());
            }
            {
                let mut o = o2.lock().expect("stdout");
                if writeln!(o, "S {}", unix_us())
                    .and_then(|_| o.flush())
                    .is_err()
                {
                    std::process::exit(0); // the reader is gone
                }
            }
            next += every;
            std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
        }
    });
    let mut buf = [0u8; 2048];
    loop {
        let n = match recv(rx.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("recv: {e}"),
        };
        let f = &buf[..n];
        // Ethernet + ARP reply (opcode 2) for one of our targets, to us.
        if n < 42 || f[12..14] != [0x08, 0x06] || f[20..22] != [0, 2] {
            continue;
        }
        let sender_mac = &f[22..28];
        let sender_ip = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
        let target_ip = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
        if target_ip != a.src || !a.target.contains(&sender_ip) {
            continue;
        }
        let m = sender_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut o = out.lock().expect("stdout");
        if writeln!(o, "R {} {sender_ip} {m}", unix_us())
            .and_then(|_| o.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}
