//! The node's WireGuard interface: exactly the allowed peers, changed by
//! difference, never flushed.
//!
//! The agent configures an interface it does not own: a userspace daemon
//! (`uapi`: boringtun or wireguard-go, started outside the agent) or the
//! kernel module (`kernel`). Stopping the agent changes nothing on the wire.

pub mod diff;
pub mod handshake;
pub mod kernel;
pub mod uapi;

use std::net::SocketAddr;

use ipnet::IpNet;

/// A peer as the NodePolicy wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
}

/// A peer as the device reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What the device reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub public_key: Option<[u8; 32]>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerState>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {
    #[error("WireGuard socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("WireGuard daemon refused {operation}: errno {errno}")]
    Errno { operation: &'static str, errno: i32 },
    #[error("WireGuard daemon answered {operation} without errno")]
    NoErrno { operation: &'static str },
    #[error("WireGuard daemon sent a line that is not key=value: {0:?}")]
    Garbled(String),
    #[error("WireGuard daemon's reply cannot be read: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Kernel(String),
}

/// Something that holds a WireGuard interface's configuration.
pub trait Device: Send {
    fn get(&mut self) -> Result<DeviceState, WireGuardError>;
    /// Sets the private key and listen port, leaving peers alone.
    fn configure(&mut self, private_key: &[u8; 32], listen_port: u16)
    -> Result<(), WireGuardError>;
    fn remove_peers(&mut self, keys: &[[u8; 32]]) -> Result<(), WireGuardError>;
    fn add_peers(&mut self, peers: &[PeerConfig]) -> Result<(), WireGuardError>;
}

/// Lower-case hex, as the UAPI writes keys.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
