//! The meshguard node agent (DaemonSet, one per node).
//!
//! ```text
//!  state source (NodePolicy watch | --state-file) ──▶ reconcile
//!      ├─ wireguard: exactly the allowed peers (kernel netlink | UAPI)
//!      ├─ netdev: address, MTU, routes, fail-closed blackholes
//!      └─ backend: iptables+ipset (eBPF to come)
//!  status · metrics · health · drift repair
//! ```

#![forbid(unsafe_code)]

pub mod agent;
pub mod backend;
pub mod cli;
pub mod command;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod netdev;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod wireguard;
