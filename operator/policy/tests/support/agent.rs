//! What a node's agent does with its NodePolicy, simulated: route by the peers'
//! allowed IPs, then walk the egress list at the source and the ingress list
//! at the destination, first Allow or Deny deciding, default deny.

use std::net::IpAddr;

use ipnet::IpNet;
use meshguard_crds::{
    Action, NodePolicySpec, Protocol,
    node_policy::{ALL_ADDRESSES, FilterRule},
};

use super::reference::Traffic;

fn set_contains(spec: &NodePolicySpec, name: &str, ip: IpAddr) -> bool {
    if name == ALL_ADDRESSES {
        return true;
    }
    let set = spec
        .address_sets
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("rule refers to missing set {name}"));
    set.addresses
        .iter()
        .any(|a| a.parse::<IpAddr>().unwrap() == ip)
        || set
            .cidrs
            .iter()
            .any(|c| c.parse::<IpNet>().unwrap().contains(&ip))
}

fn ports_match(rule: &FilterRule, traffic: Traffic) -> bool {
    let Some(ports) = &rule.ports else {
        return true;
    };
    ports.iter().any(|p| match traffic {
        Traffic::Other => false,
        Traffic::Icmp => p.protocol == Protocol::ICMP,
        Traffic::Port(protocol, port) => {
            p.protocol == protocol
                && p.port.is_none_or(|first| {
                    (first..=p.end_port.unwrap_or(first)).contains(&(port as i32))
                })
        }
    })
}

/// Walks a list: `remote` is the other end, `local` this node's end.
pub fn list_allows(
    spec: &NodePolicySpec,
    list: &[FilterRule],
    remote: IpAddr,
    local: IpAddr,
    traffic: Traffic,
) -> bool {
    for rule in list {
        if !set_contains(spec, &rule.set, remote)
            || rule
                .local
                .as_deref()
                .is_some_and(|l| !set_contains(spec, l, local))
            || !ports_match(rule, traffic)
        {
            continue;
        }
        if rule.audit || rule.action == Action::Log {
            continue;
        }
        return rule.action == Action::Allow;
    }
    false
}

/// The peer WireGuard routes `ip` to on this node: the longest allowed-IPs match.
pub fn route(spec: &NodePolicySpec, ip: IpAddr) -> Option<&str> {
    spec.peers
        .iter()
        .flat_map(|p| {
            p.allowed_ips
                .iter()
                .map(move |a| (p, a.parse::<IpNet>().unwrap()))
        })
        .filter(|(_, net)| net.contains(&ip))
        .max_by_key(|(_, net)| net.prefix_len())
        .map(|(p, _)| p.name.as_str())
}

/// Whether this node owns `ip` on the mesh: its mesh IP or a routed subnet.
/// An agent accepts nothing else from the mesh, and sends nothing else into it.
pub fn owns(spec: &NodePolicySpec, ip: IpAddr) -> bool {
    spec.interface.mesh_ip.parse::<IpAddr>().unwrap() == ip
        || spec
            .interface
            .routed_ips
            .iter()
            .any(|c| c.parse::<IpNet>().unwrap().contains(&ip))
}

/// Whether a packet from `src` (owned by node `from`) reaches `dst` (owned by
/// node `to`): sent by its owner, routed to `to`, accepted by WireGuard on
/// `to` as coming from `from`, addressed to something `to` owns, and allowed
/// by both lists.
pub fn delivers(
    from: (&str, &NodePolicySpec),
    to: (&str, &NodePolicySpec),
    src: IpAddr,
    dst: IpAddr,
    traffic: Traffic,
) -> bool {
    owns(from.1, src)
        && route(from.1, dst) == Some(to.0)
        && route(to.1, src) == Some(from.0)
        && owns(to.1, dst)
        && list_allows(from.1, &from.1.egress, dst, src, traffic)
        && list_allows(to.1, &to.1.ingress, src, dst, traffic)
}
