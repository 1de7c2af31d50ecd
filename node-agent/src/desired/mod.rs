//! The NodePolicy as the agent enforces it: parsed once, when a revision
//! reaches the reconciler, into typed values every backend and check reads.
//!
//! ```text
//!  NodePolicySpec (text) ──parse──▶ Desired ──▶ backend::iptables::render
//!        │ refused whole,               ├──▶ conntrack: which connections to cut
//!        ▼ naming rule and field        └──▶ reconcile: peers, routes, interface
//!   Invalid (previous state stays)
//! ```
//!
//! Parsing is where "fail closed" is decided: a rule over a set the spec does
//! not define, an address that does not parse, a port out of range — any of
//! these refuses the whole NodePolicy ([`Invalid`]) rather than skipping the
//! part, because a skipped Deny opens what it should close. Addresses come out
//! canonical (host bits cleared, `/32` and `/128` as bare addresses, IPv6 in
//! RFC 5952 form), which is how `ipset save` and `iptables-save` print them,
//! so what the agent compares with the kernel is never a spelling difference.

mod parse;
pub mod verdict;

use std::net::IpAddr;

use ipnet::IpNet;
use meshguard_crds::{Action, Protocol};

pub use parse::{Invalid, parse};

/// A NodePolicy spec, checked and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub revision: String,
    pub mesh_ip: IpAddr,
    pub listen_port: u16,
    /// `interface.routedIPs`: with the mesh IP, this node's own addresses.
    pub routed: Vec<IpNet>,
    pub peers: Vec<Peer>,
    /// Installed only under agent-wide audit.
    pub audit_peers: Vec<Peer>,
    pub sets: Vec<AddressSet>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub public_key: [u8; 32],
    /// As written (`host:port`); names are resolved by [`crate::endpoints`].
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<IpNet>,
}

/// A named address set: its networks, canonical, in the spec's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressSet {
    pub name: String,
    pub nets: Vec<IpNet>,
}

/// Which addresses a rule's peer side covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    All,
    /// An index into [`Desired::sets`].
    Set(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `<policy>/<rule>`, as metrics and logs name it.
    pub id: String,
    pub action: Action,
    pub audit: bool,
    pub remote: Remote,
    /// The local addresses the rule covers (an index into [`Desired::sets`]); `None`: all.
    pub local: Option<usize>,
    /// `None`: all traffic.
    pub traffic: Option<Vec<Traffic>>,
}

/// A protocol and, for TCP, UDP and SCTP, optionally an inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traffic {
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
}

impl Desired {
    /// This node's own addresses: the mesh IP and the routed subnets.
    pub fn own(&self) -> impl Iterator<Item = IpNet> + '_ {
        std::iter::once(IpNet::from(self.mesh_ip)).chain(self.routed.iter().copied())
    }
}

/// The text the kernel prints for a network: a bare address for a host
/// prefix, else the network with its host bits cleared.
pub fn canonical(net: &IpNet) -> String {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}
