//! A floating IP address: added and removed through netlink, announced
//! with unsolicited ARP (IPv4) or neighbour advertisements (IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use futures_util::TryStreamExt;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, sendto, socket};
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::LinkFlags;
use std::os::fd::AsRawFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ResourceError;
use crate::resource::Health;

const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;
const ENODEV: i32 = 19;
/// ARPHRD_ETHER.
const ARPHRD_ETHER: u16 = 1;

#[derive(Debug)]
pub(crate) struct Address {
    resource: String,
    ip: IpAddr,
    prefix: u8,
    interface: String,
    arp_count: u32,
    arp_interval: Duration,
    refresh: Option<Duration>,
    announcer: Option<JoinHandle<()>>,
    /// Becomes true once the first burst of announcements is sent.
    burst_done: Option<watch::Receiver<bool>>,
}

/// A netlink connection for one action; its task ends with the handle.
struct Netlink {
    handle: rtnetlink::Handle,
    task: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn netlink_code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(ErrorMessage { code, .. }) => code.map(|c| -c.get()),
        _ => None,
    }
}

impl Address {
    pub fn new(
        resource: String,
        ip: IpAddr,
        prefix: u8,
        interface: String,
        arp_count: u32,
        arp_interval: Duration,
        refresh: Option<Duration>,
    ) -> Self {
        Self {
            resource,
            ip,
            prefix,
            interface,
            arp_count,
            arp_interval,
            refresh,
            announcer: None,
            burst_done: None,
        }
    }

    fn failed(&self, action: &'static str, reason: impl Into<String>) -> ResourceError {
        ResourceError::Failed {
            resource: self.resource.clone(),
            action,
            reason: reason.into(),
        }
    }

    fn connect(&self, action: &'static str) -> Result<Netlink, ResourceError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| self.failed(action, format!("cannot open a netlink socket: {e}")))?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// The interface's index and whether it is up; `None` if it does not exist.
    async fn link(
        &self,
        nl: &Netlink,
        action: &'static str,
    ) -> Result<Option<(u32, bool)>, ResourceError> {
        let mut links = nl
            .handle
            .link()
            .get()
            .match_name(self.interface.clone())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => {
                let up = msg.header.flags.contains(LinkFlags::Up);
                Ok(Some((msg.header.index, up)))
            }
            Ok(None) => Ok(None),
            Err(e) if netlink_code(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(self.failed(
                action,
                format!("netlink: looking up interface {}: {e}", self.interface),
            )),
        }
    }

    /// Our address as the kernel lists it on `index`, if it is there.
    async fn find(
        &self,
        nl: &Netlink,
        index: u32,
        action: &'static str,
    ) -> Result<Option<AddressMessage>, ResourceError> {
        let mut addrs = nl
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(self.ip)
            .execute();
        loop {
            match addrs.try_next().await {
                Ok(Some(msg)) => {
                    let matches = msg.header.index == index
                        && msg.header.prefix_len == self.prefix
                        && msg.attributes.iter().any(|a| {
                            matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == self.ip)
                        });
                    if matches {
                        return Ok(Some(msg));
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(self.failed(
                        action,
                        format!("netlink: listing the addresses of {}: {e}", self.interface),
                    ));
                }
            }
        }
    }

    pub async fn start(&mut self) -> Result<(), ResourceError> {
        let nl = self.connect("start")?;
        let Some((index, up)) = self.link(&nl, "start").await? else {
            return Err(self.failed(
                "start",
                format!("interface {} does not exist", self.interface),
            ));
        };
        if !up {
            tracing::warn!(resource = %self.resource, interface = %self.interface, "the interface is down: the address is added all the same");
        }
        if self.find(&nl, index, "start").await?.is_some() {
            tracing::info!(resource = %self.resource, "the address is already there");
        } else {
            let mut req = nl.handle.address().add(index, self.ip, self.prefix);
            if self.ip.is_ipv6() {
                let msg = req.message_mut();
                msg.header.flags |= AddressHeaderFlags::Nodad;
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            match req.execute().await {
                Ok(()) => tracing::info!(resource = %self.resource, "address added"),
                Err(e) if netlink_code(&e) == Some(EEXIST) => {
                    tracing::info!(resource = %self.resource, "the address is already there");
                }
                Err(e) => {
                    return Err(self.failed(
                        "start",
                        format!(
                            "netlink: adding {}/{} to {}: {e}",
                            self.ip, self.prefix, self.interface
                        ),
                    ));
                }
            }
        }
        self.stop_announcer();
        let announcer = Announcer {
            resource: self.resource.clone(),
            ip: self.ip,
            interface: self.interface.clone(),
            index,
        };
        // The first one before start returns; the rest on their own.
        if self.arp_count > 0 {
            announcer.announce();
        }
        let (done_tx, done_rx) = watch::channel(self.arp_count <= 1);
        let (count, interval, refresh) = (self.arp_count, self.arp_interval, self.refresh);
        self.announcer = Some(tokio::spawn(async move {
            for _ in 1..count {
                tokio::time::sleep(interval).await;
                announcer.announce();
            }
            let _ = done_tx.send(true);
            if let Some(every) = refresh {
                loop {
                    tokio::time::sleep(every).await;
                    announcer.announce();
                }
            }
        }));
        self.burst_done = Some(done_rx);
        Ok(())
    }

    /// Wait until the first burst of announcements is sent.
    pub async fn announced(&mut self) {
        if let Some(rx) = &mut self.burst_done {
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    fn stop_announcer(&mut self) {
        if let Some(task) = self.announcer.take() {
            task.abort();
        }
        self.burst_done = None;
    }

    pub async fn stop(&mut self) -> Result<(), ResourceError> {
        self.stop_announcer();
        let nl = self.connect("stop")?;
        let Some((index, _)) = self.link(&nl, "stop").await? else {
            tracing::info!(resource = %self.resource, interface = %self.interface, "the interface is gone, and the address with it");
            return Ok(());
        };
        let Some(msg) = self.find(&nl, index, "stop").await? else {
            tracing::info!(resource = %self.resource, "the address is not there: already stopped");
            return Ok(());
        };
        match nl.handle.address().del(msg).execute().await {
            Ok(()) => {
                tracing::info!(resource = %self.resource, "address removed");
                Ok(())
            }
            Err(e) if netlink_code(&e) == Some(EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(self.failed(
                "stop",
                format!(
                    "netlink: removing {}/{} from {}: {e}",
                    self.ip, self.prefix, self.interface
                ),
            )),
        }
    }

    pub async fn monitor(&mut self) -> Result<Health, ResourceError> {
        let nl = self.connect("monitor")?;
        let Some((index, up)) = self.link(&nl, "monitor").await? else {
            return Ok(Health::Failed(format!(
                "interface {} does not exist",
                self.interface
            )));
        };
        if self.find(&nl, index, "monitor").await?.is_none() {
            return Ok(Health::Stopped);
        }
        if !up {
            return Ok(Health::Failed(format!(
                "interface {} is down",
                self.interface
            )));
        }
        Ok(Health::Running)
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        self.stop_announcer();
    }
}

/// Sends one announcement of the address on the interface.
struct Announcer {
    resource: String,
    ip: IpAddr,
    interface: String,
    index: u32,
}

impl Announcer {
    /// Send one; a failure is logged: the address is in place regardless.
    fn announce(&self) {
        let result = match self.ip {
            IpAddr::V4(ip) => self.send_arp(ip),
            IpAddr::V6(ip) => self.send_na(ip),
        };
        match result {
            Ok(true) => {
                tracing::debug!(resource = %self.resource, interface = %self.interface, "announcement sent")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(resource = %self.resource, interface = %self.interface, error = %e, "cannot announce the address")
            }
        }
    }

    /// The interface's link-layer address (for `sendto`) and flags.
    fn link_addr(&self) -> Result<(LinkAddr, InterfaceFlags), String> {
        let addrs = getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
        for ifa in addrs {
            if ifa.interface_name != self.interface {
                continue;
            }
            if let Some(link) = ifa.address.as_ref().and_then(|a| a.as_link_addr()) {
                return Ok((*link, ifa.flags));
            }
        }
        Err(format!(
            "interface {} has no link-layer address",
            self.interface
        ))
    }

    /// An unsolicited ARP request; `Ok(false)` where ARP does not apply.
    fn send_arp(&self, ip: Ipv4Addr) -> Result<bool, String> {
        let (link, flags) = self.link_addr()?;
        if flags.contains(InterfaceFlags::IFF_NOARP)
            || link.hatype() != ARPHRD_ETHER
            || link.halen() != 6
        {
            tracing::debug!(resource = %self.resource, interface = %self.interface, "no ARP on this interface");
            return Ok(false);
        }
        let mac = link.addr().ok_or("the interface has no MAC address")?;
        let frame = arp_announcement(mac, ip);
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("cannot open a packet socket (needs CAP_NET_RAW): {e}"))?;
        sendto(fd.as_raw_fd(), &frame, &link, MsgFlags::empty())
            .map_err(|e| format!("sending the ARP announcement: {e}"))?;
        Ok(true)
    }

    /// An unsolicited neighbour advertisement to ff02::1.
    fn send_na(&self, ip: Ipv6Addr) -> Result<bool, String> {
        let (link, flags) = self.link_addr()?;
        if flags.contains(InterfaceFlags::IFF_NOARP) || link.halen() != 6 {
            tracing::debug!(resource = %self.resource, interface = %self.interface, "no neighbour discovery on this interface");
            return Ok(false);
        }
        let mac = link.addr().ok_or("the interface has no MAC address")?;
        let packet = neighbour_advertisement(mac, ip);
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .map_err(|e| format!("cannot open a raw ICMPv6 socket (needs CAP_NET_RAW): {e}"))?;
        sock.set_multicast_hops_v6(255)
            .and_then(|()| sock.set_unicast_hops_v6(255))
            .and_then(|()| sock.set_multicast_if_v6(self.index))
            .map_err(|e| format!("setting up the ICMPv6 socket: {e}"))?;
        // From the address itself where the kernel lets us; the link-local
        // one otherwise is just as valid.
        if let Err(e) = sock.bind(&SocketAddrV6::new(ip, 0, 0, 0).into()) {
            tracing::debug!(resource = %self.resource, error = %e, "cannot send from the address itself");
        }
        let to = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, self.index);
        sock.send_to(&packet, &to.into())
            .map_err(|e| format!("sending the neighbour advertisement: {e}"))?;
        Ok(true)
    }
}

/// An Ethernet frame holding a gratuitous ARP request: sender and target
/// IP both `ip`, from `mac` to broadcast; padded to the minimum frame size.
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac); // source
    f.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.push(6); // hardware address length
    f.push(4); // protocol address length
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac); // sender hardware address
    f.extend_from_slice(&ip.octets()); // sender IP
    f.extend_from_slice(&[0; 6]); // target hardware address: unknown
    f.extend_from_slice(&ip.octets()); // target IP
    f.resize(60, 0);
    f
}

/// An ICMPv6 neighbour advertisement (type 136) for `ip`, override flag
/// set, with the target link-layer address option. The checksum is left 0:
/// the kernel fills it in for raw ICMPv6 sockets.
pub fn neighbour_advertisement(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.push(136); // type: neighbour advertisement
    p.push(0); // code
    p.extend_from_slice(&[0, 0]); // checksum
    p.extend_from_slice(&[0x20, 0, 0, 0]); // flags: override
    p.extend_from_slice(&ip.octets()); // target address
    p.push(2); // option: target link-layer address
    p.push(1); // length in units of 8 bytes
    p.extend_from_slice(&mac);
    p
}
