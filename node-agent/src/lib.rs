//! The meshguard node agent (DaemonSet, one per node).
//!
//! ```text
//!  state source (NodePolicy watch | --state-file) ──▶ reconcile
//!      ├─ wireguard: exactly the allowed peers (netlink | UAPI)
//!      ├─ backend: iptables+ipset | eBPF at TC
//!      └─ L7 chains ──▶ ext_proc gRPC server for Envoy
//!  status · metrics · health · drift repair
//! ```
//!
//! The modules arrive with the agent issue; the crate exists now so the
//! workspace has its final shape and dependencies are declared once.

#![forbid(unsafe_code)]
