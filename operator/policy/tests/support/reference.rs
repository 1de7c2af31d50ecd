//! The reference evaluator: the policy semantics written as directly as
//! possible, on the raw API types, sharing no code with the compiler. Slow
//! and obviously correct is the point.

use std::net::IpAddr;

use ipnet::IpNet;
use meshguard_crds::{
    Action, MeshPolicy, PeerSelector, PolicyMode, Protocol, selector::LabelOperator,
};
use meshguard_policy::members::Member;

/// Traffic of one flow. `Other` stands for every IP protocol the API cannot name (GRE, ESP, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    Port(Protocol, u16),
    Icmp,
    Other,
}

/// Who an address is: a member (by its mesh IP) or just an address.
fn member_at(members: &[Member], ip: IpAddr) -> Option<&Member> {
    members.iter().find(|m| m.mesh_ip == ip)
}

fn selector_matches(selector: &PeerSelector, members: &[Member], ip: IpAddr) -> bool {
    let member = member_at(members, ip);
    if let Some(names) = &selector.nodes {
        return member.is_some_and(|m| names.contains(&m.name));
    }
    if let Some(labels) = &selector.node_selector {
        let Some(m) = member else { return false };
        let equal = labels
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| m.labels.get(k) == Some(v));
        let expressions = labels.match_expressions.iter().flatten().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match (e.operator, m.labels.get(&e.key)) {
                (LabelOperator::In, Some(v)) => values.contains(v),
                (LabelOperator::In, None) => false,
                (LabelOperator::NotIn, Some(v)) => !values.contains(v),
                (LabelOperator::NotIn, None) => true,
                (LabelOperator::Exists, v) => v.is_some(),
                (LabelOperator::DoesNotExist, v) => v.is_none(),
            }
        });
        return equal && expressions;
    }
    if let Some(blocks) = &selector.cidrs {
        return blocks.iter().any(|b| {
            let cidr: IpNet = b.cidr.parse().unwrap();
            cidr.trunc().contains(&ip)
                && !b
                    .except
                    .iter()
                    .flatten()
                    .any(|e| e.parse::<IpNet>().unwrap().trunc().contains(&ip))
        });
    }
    selector.all == Some(true)
}

fn ports_match(rule: &meshguard_crds::PolicyRule, traffic: Traffic) -> bool {
    let Some(ports) = &rule.ports else {
        return true;
    };
    ports.iter().any(|p| match traffic {
        Traffic::Other => false,
        Traffic::Icmp => p.protocol == Protocol::ICMP,
        Traffic::Port(protocol, port) => {
            p.protocol == protocol
                && match p.port {
                    None => true,
                    Some(first) => (first..=p.end_port.unwrap_or(first)).contains(&(port as i32)),
                }
        }
    })
}

/// The rule that decides, as (policy name, rule index); `None` is the default deny.
pub fn decide(
    policies: &[MeshPolicy],
    members: &[Member],
    src: IpAddr,
    dst: IpAddr,
    traffic: Traffic,
) -> Option<(String, usize, Action)> {
    let mut ordered: Vec<&MeshPolicy> = policies.iter().collect();
    ordered.sort_by_key(|p| (p.spec.priority, p.metadata.name.clone()));
    for policy in ordered {
        if policy.spec.mode == PolicyMode::Audit {
            continue; // never decides
        }
        for (i, rule) in policy.spec.rules.iter().enumerate() {
            if rule.action == Action::Log {
                continue; // records and goes on
            }
            if rule.from.iter().any(|s| selector_matches(s, members, src))
                && rule.to.iter().any(|s| selector_matches(s, members, dst))
                && ports_match(rule, traffic)
            {
                return Some((
                    policy.metadata.name.clone().unwrap_or_default(),
                    i,
                    rule.action,
                ));
            }
        }
    }
    None
}

pub fn allowed(
    policies: &[MeshPolicy],
    members: &[Member],
    src: IpAddr,
    dst: IpAddr,
    traffic: Traffic,
) -> bool {
    matches!(
        decide(policies, members, src, dst, traffic),
        Some((_, _, Action::Allow))
    )
}

/// Every kind of traffic that can be told apart by these policies: each
/// protocol at every port where some rule's ranges begin or end, ICMP, other.
pub fn traffic_samples(policies: &[MeshPolicy]) -> Vec<Traffic> {
    let mut ports = vec![1u16, 65535];
    for rule in policies.iter().flat_map(|p| &p.spec.rules) {
        for p in rule.ports.iter().flatten() {
            if let Some(first) = p.port {
                let last = p.end_port.unwrap_or(first);
                for q in [first - 1, first, last, last + 1] {
                    if (1..=65535).contains(&q) {
                        ports.push(q as u16);
                    }
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    let mut out = vec![Traffic::Icmp, Traffic::Other];
    for protocol in [Protocol::TCP, Protocol::UDP, Protocol::SCTP] {
        out.extend(ports.iter().map(|&p| Traffic::Port(protocol, p)));
    }
    out
}

/// The member an address belongs to on the mesh: a member's own mesh IP, or
/// the longest `allowedIPs` prefix containing it (ties: first by name).
pub fn owner(members: &[Member], ip: IpAddr) -> Option<&Member> {
    if let Some(m) = member_at(members, ip) {
        return Some(m);
    }
    let mut best: Option<(&Member, u8)> = None;
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for m in sorted {
        for p in &m.allowed_ips {
            let net: IpNet = p.to_string().parse().unwrap();
            if net.contains(&ip) && best.is_none_or(|(_, len)| net.prefix_len() > len) {
                best = Some((m, net.prefix_len()));
            }
        }
    }
    best.map(|(m, _)| m)
}

/// Every address a member owns: its mesh IP and each address of its subnets it wins.
pub fn owned(members: &[Member], member: &Member) -> Vec<IpAddr> {
    let mut out = vec![member.mesh_ip];
    for p in &member.allowed_ips {
        let net: IpNet = p.to_string().parse().unwrap();
        for ip in hosts(net) {
            if owner(members, ip).is_some_and(|o| o.name == member.name) && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Every address of a (small) prefix, network and broadcast included.
pub fn hosts(net: IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let first = u32::from(n.network());
            (0..=(u32::MAX >> n.prefix_len()).min(255))
                .map(|i| IpAddr::V4((first + i).into()))
                .collect()
        }
        IpNet::V6(n) => {
            let first = u128::from(n.network());
            (0..=(u128::MAX >> n.prefix_len()).min(255))
                .map(|i| IpAddr::V6((first + i).into()))
                .collect()
        }
    }
}

/// Semantics 6: peers exactly when some traffic between their addresses, in
/// either direction, is allowed.
pub fn peers(policies: &[MeshPolicy], members: &[Member], a: &Member, b: &Member) -> bool {
    if a.name == b.name {
        return false;
    }
    let samples = traffic_samples(policies);
    let (xs, ys) = (owned(members, a), owned(members, b));
    xs.iter().any(|&x| {
        ys.iter().any(|&y| {
            samples.iter().any(|&t| {
                allowed(policies, members, x, y, t) || allowed(policies, members, y, x, t)
            })
        })
    })
}
