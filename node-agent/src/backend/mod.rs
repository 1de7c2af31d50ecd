//! Packet-filter backends: what turns a NodePolicy's ingress and egress lists
//! into kernel state. Today `iptables` (iptables + ipset); the eBPF backend
//! arrives with its issue.

pub mod iptables;

/// Whether rules decide or only count (agent-wide `--enforcement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Enforcement {
    /// Rules decide: allowed flows pass, everything else is dropped.
    Enforce,
    /// Every rule counts and logs its would-be verdict; nothing is dropped.
    /// The safe first rollout on a live cluster.
    Audit,
}
