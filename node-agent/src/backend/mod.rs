//! Packet-filter backends: what turns a NodePolicy's ingress and egress
//! lists into kernel state, behind one [`Backend`] contract: `iptables`
//! (iptables + ipset, in netfilter's hooks) and `ebpf` (TC programs on the
//! mesh interface, maps pinned under a bpffs).

pub mod contract;
pub mod counted;
pub mod ebpf;
pub mod iptables;

pub use contract::{
    Applied, Backend, BackendError, Changes, Direction, Drift, Enforcement, Family, Filter,
    RuleCounter,
};
