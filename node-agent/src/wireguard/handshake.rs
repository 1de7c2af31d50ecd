//! Starting handshakes with peers that were removed and added again.
//!
//! Removing a peer drops its session on this side only. The other side keeps
//! sending with the old session, which this side can no longer decrypt, and
//! starts a new handshake only after 10–15 s without an answer. One datagram
//! from here to the peer makes this side start the handshake at once.
//!
//! The datagram carries [`MARK`] so the egress chain lets it through whatever
//! the policy says (one rule, `meshguard:handshake`); the peer's ingress chain
//! drops it as usual. WireGuard has already done its job by then.

use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The firewall mark on handshake datagrams ("MG" and 1).
pub const MARK: u32 = 0x4d47_0001;
/// The discard port: nothing listens, nothing answers.
pub const PORT: u16 = 9;

/// Sends one datagram to each address; returns how many went out. A failure
/// costs only the shortcut (the handshake comes later by itself), so it is
/// logged, not returned.
pub fn start(addresses: &[IpAddr]) -> usize {
    addresses
        .iter()
        .filter(|address| match send(**address) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%address, error = %e, "handshake datagram not sent");
                false
            }
        })
        .count()
}

fn send(address: IpAddr) -> std::io::Result<()> {
    let target = SocketAddr::new(address, PORT);
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_mark(MARK)?;
    socket.send_to(b"meshguard handshake", &target.into())?;
    Ok(())
}
