//! Packet-filter backends: what turns a NodePolicy's ingress and egress
//! lists into kernel state, behind one [`Backend`] contract. Today
//! `iptables` (iptables + ipset); `ebpf` holds the eBPF backend's programs
//! and maps as it is built (not selectable yet).

pub mod contract;
pub mod ebpf;
pub mod iptables;

pub use contract::{
    Applied, Backend, Changes, Direction, Drift, Enforcement, Family, Filter, RuleCounter,
};
