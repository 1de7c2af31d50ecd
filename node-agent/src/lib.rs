//! The meshguard node agent (DaemonSet, one per node).
//!
//! ```text
//!  state source (NodePolicy watch | --state-file)
//!      ──▶ endpoints: peer names resolved (async, timeout)
//!      ──▶ reconcile: desired (the spec parsed, refused whole if unusable)
//!      ├─ wireguard: exactly the allowed peers (kernel netlink | UAPI)
//!      ├─ netdev: address, MTU, routes, fail-closed blackholes
//!      ├─ backend (one contract): iptables+ipset (eBPF to come)
//!      └─ conntrack: established connections the new rules deny, cut
//!  status · metrics · health · drift repair
//! ```

#![forbid(unsafe_code)]

pub mod agent;
pub mod backend;
pub mod cli;
pub mod command;
pub mod conntrack;
pub mod desired;
pub mod endpoints;
pub mod http;
pub mod keys;
pub mod l7;
pub mod lock;
pub mod metrics;
pub mod netdev;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod wireguard;
