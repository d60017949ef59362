//! Request and answer over UDP, as IPMI and SNMP both do: send, wait for
//! the datagram that answers, resend on silence.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

/// No datagram was taken within the tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoAnswer {
    /// The peer's port answered "unreachable" (ICMP): nothing listens.
    pub refused: bool,
}

/// A UDP socket of the address family of `peer`, connected to it.
pub async fn connect(peer: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(peer).await?;
    Ok(sock)
}

/// Send `make()` up to `tries` times (at least once), each time waiting
/// `timeout` for a datagram `accept` takes; other datagrams are ignored.
pub async fn exchange<T>(
    sock: &UdpSocket,
    timeout: Duration,
    tries: u32,
    mut make: impl FnMut() -> Vec<u8>,
    mut accept: impl FnMut(&[u8]) -> Option<T>,
) -> std::io::Result<Result<T, NoAnswer>> {
    let mut buf = vec![0u8; 65536];
    let mut refused = false;
    for _ in 0..tries.max(1) {
        match sock.send(&make()).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: wait out the try.
                    refused = true;
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    if let Some(t) = accept(&buf[..n]) {
                        return Ok(Ok(t));
                    }
                }
            }
        }
    }
    Ok(Err(NoAnswer { refused }))
}
