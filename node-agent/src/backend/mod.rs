//! Packet-filter backends: what turns a NodePolicy's ingress and egress
//! lists into kernel state, behind one [`Backend`] contract. Today
//! `iptables` (iptables + ipset); the eBPF backend arrives with its issue.

pub mod contract;
pub mod iptables;

pub use contract::{
    Applied, Backend, Changes, Direction, Drift, Enforcement, Family, Filter, RuleCounter,
};
