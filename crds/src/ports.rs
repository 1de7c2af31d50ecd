//! Protocols and port ranges: the traffic half of a rule.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An IP protocol a rule can name. `ICMP` means ICMP for IPv4 and ICMPv6 for IPv6.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
    ICMP,
}

impl Protocol {
    /// Whether the protocol has ports at all.
    pub fn has_ports(self) -> bool {
        !matches!(self, Protocol::ICMP)
    }
}

/// Traffic a rule applies to: a protocol, and for TCP, UDP and SCTP optionally
/// a port or an inclusive range `port..=endPort`. No port means every port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.protocol != 'ICMP' || (!has(self.port) && !has(self.endPort))"
).message("ICMP takes no port: port and endPort apply to TCP, UDP and SCTP"))]
#[x_kube(validation = Rule::new("!has(self.endPort) || has(self.port)").message("endPort needs port"))]
#[x_kube(validation = Rule::new(
    "!has(self.endPort) || !has(self.port) || self.endPort >= self.port"
).message("endPort must be greater than or equal to port"))]
pub struct PortRule {
    /// TCP, UDP, SCTP or ICMP.
    pub protocol: Protocol,
    /// The port, or the first port of a range. Needs TCP, UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The last port of the range that starts at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}

/// Ports as a NodePolicy carries them: the operator already checked them, so
/// this type has no CEL rules (NodePolicy lists are unbounded, and the API
/// server refuses rules under unbounded lists).
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}
