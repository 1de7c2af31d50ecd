//! Cutting the established connections a new revision no longer allows.
//!
//! Both chains accept `ESTABLISHED,RELATED` before any rule (semantics rule
//! 5: replies of allowed flows pass), so without this a tightened rule would
//! leave existing connections up until conntrack forgot them (days, for
//! TCP). After an apply the agent lists the connection-tracking table, asks
//! the new [`Desired`] about each mesh connection of this node — the same
//! first-match evaluation the chains run — and deletes the entries it no
//! longer allows. The next packet of such a connection is new to conntrack,
//! meets the rules, and is dropped. Connections still allowed are untouched.
//!
//! A mesh connection of this node: one address is the node's own (mesh IP or
//! routed subnet), the other is not, and lies where only the mesh reaches
//! (the mesh CIDRs or a peer's allowed IPs). Everything else is not ours.
//!
//! [`stale`] is pure; [`cut`] runs `conntrack -L` and `conntrack -D` (package
//! `conntrack`), one deletion per (source, destination, protocol, port).

use std::{collections::BTreeSet, net::IpAddr};

use ipnet::IpNet;
use meshguard_crds::Protocol;

use crate::{
    command::{self, CommandError},
    desired::{
        Desired,
        verdict::{Direction, Flow},
    },
};

/// One conntrack entry's original direction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// As conntrack names it (`tcp`, `icmpv6`): what `-p` takes.
    pub protocol_name: String,
    pub protocol: Option<Protocol>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: Option<u16>,
}

/// Entries of `conntrack -L` output; lines it cannot read are left out
/// (they are not connections a rule could name).
pub fn parse(listing: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let protocol = match name {
            "tcp" => Some(Protocol::TCP),
            "udp" => Some(Protocol::UDP),
            "sctp" => Some(Protocol::SCTP),
            "icmp" | "icmpv6" => Some(Protocol::ICMP),
            _ => None,
        };
        // The first src=, dst=, dport= are the original direction's.
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_owned)
        };
        let (Some(src), Some(dst)) = (
            field("src=").and_then(|s| s.parse().ok()),
            field("dst=").and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        out.push(Entry {
            protocol_name: name.to_owned(),
            protocol,
            src,
            dst,
            dport: field("dport=").and_then(|p| p.parse().ok()),
        });
    }
    out
}

/// The entries of this node's mesh connections that `desired` does not allow.
/// `mesh`: the ranges only the mesh reaches (the agent's mesh CIDRs); peers'
/// allowed IPs are added from `desired`.
pub fn stale<'a>(desired: &Desired, mesh: &[IpNet], entries: &'a [Entry]) -> Vec<&'a Entry> {
    let own: Vec<IpNet> = desired.own().collect();
    let mut remote: Vec<IpNet> = mesh.to_vec();
    remote.extend(
        desired
            .peers
            .iter()
            .chain(&desired.audit_peers)
            .flat_map(|p| p.allowed_ips.iter().copied()),
    );
    let is_own = |ip: &IpAddr| own.iter().any(|n| n.contains(ip));
    let is_remote = |ip: &IpAddr| !is_own(ip) && remote.iter().any(|n| n.contains(ip));
    entries
        .iter()
        .filter(|e| {
            let (direction, remote, local) = if is_own(&e.dst) && is_remote(&e.src) {
                (Direction::Ingress, e.src, e.dst)
            } else if is_own(&e.src) && is_remote(&e.dst) {
                (Direction::Egress, e.dst, e.src)
            } else {
                return false;
            };
            let port = e.protocol.filter(|p| p.has_ports()).and(e.dport);
            !desired.allows(&Flow {
                direction,
                remote,
                local,
                protocol: e.protocol,
                port,
            })
        })
        .collect()
}

/// Lists the table, deletes what `desired` no longer allows; returns how
/// many (source, destination, protocol, port) groups were cut.
pub fn cut(desired: &Desired, mesh: &[IpNet]) -> Result<usize, CommandError> {
    let listing = command::run("conntrack", &["-L"], None)?;
    let entries = parse(&listing);
    let groups: BTreeSet<(String, IpAddr, IpAddr, Option<u16>)> = stale(desired, mesh, &entries)
        .into_iter()
        .map(|e| {
            let port = e.protocol.filter(|p| p.has_ports()).and(e.dport);
            (e.protocol_name.clone(), e.src, e.dst, port)
        })
        .collect();
    for (protocol, src, dst, port) in &groups {
        let (src, dst, port) = (
            src.to_string(),
            dst.to_string(),
            port.map(|p| p.to_string()),
        );
        let mut args = vec!["-D", "-p", protocol.as_str(), "-s", &src, "-d", &dst];
        if let Some(port) = &port {
            args.extend(["--dport", port.as_str()]);
        }
        match command::run("conntrack", &args, None) {
            Ok(_) => {}
            // Gone meanwhile (it timed out, or the connection closed).
            Err(e) if e.message.contains("0 flow entries") => {}
            Err(e) => return Err(e),
        }
        tracing::info!(%protocol, %src, %dst, port = port.as_deref().unwrap_or("-"), "connections the new revision denies were cut");
    }
    Ok(groups.len())
}

#[cfg(test)]
mod tests {
    use meshguard_crds::NodePolicySpec;

    use super::*;
    use crate::desired::parse as parse_spec;

    const LISTING: &str = "\
tcp      6 431999 ESTABLISHED src=100.96.0.2 dst=100.96.0.1 sport=35282 dport=5432 src=100.96.0.1 dst=100.96.0.2 sport=5432 dport=35282 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=100.96.0.2 dst=100.96.0.1 sport=35283 dport=8080 src=100.96.0.1 dst=100.96.0.2 sport=8080 dport=35283 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=100.96.0.1 dst=100.96.0.3 sport=40000 dport=22 src=100.96.0.3 dst=100.96.0.1 sport=22 dport=40000 [ASSURED] mark=0 use=1
udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=51820 dport=51820 src=10.0.0.1 dst=10.0.0.5 sport=51820 dport=51820 mark=0 use=1
icmp     1 29 src=100.96.0.2 dst=100.96.0.1 type=8 code=0 id=29308 src=100.96.0.1 dst=100.96.0.2 type=0 code=0 id=29308 mark=0 use=1
tcp      6 431999 ESTABLISHED src=100.96.0.1 dst=100.96.0.1 sport=1000 dport=2000 src=100.96.0.1 dst=100.96.0.1 sport=2000 dport=1000 [ASSURED] mark=0 use=1
gre      47 29 src=100.96.0.2 dst=100.96.0.1 srckey=0x0 dstkey=0x0 src=100.96.0.1 dst=100.96.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1
";

    #[test]
    fn only_mesh_connections_the_rules_deny_are_stale() {
        let spec: NodePolicySpec = serde_json::from_value(serde_json::json!({
            "revision": "r",
            "interface": { "meshIP": "100.96.0.1", "listenPort": 51820 },
            "peers": [{ "name": "b", "publicKey": "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=", "allowedIPs": ["100.96.0.2/32"] }],
            "addressSets": [{ "name": "b", "addresses": ["100.96.0.2"] }],
            "ingress": [{ "id": "p/db", "action": "Allow", "set": "b", "ports": [{ "protocol": "TCP", "port": 5432 }] }],
        }))
        .unwrap();
        let desired = parse_spec(&spec).unwrap();
        let entries = parse(LISTING);
        assert_eq!(entries.len(), 7);
        let mesh: Vec<IpNet> = vec!["100.96.0.0/12".parse().unwrap()];
        let stale: Vec<String> = stale(&desired, &mesh, &entries)
            .iter()
            .map(|e| format!("{} {}->{} {:?}", e.protocol_name, e.src, e.dst, e.dport))
            .collect();
        assert_eq!(
            stale,
            [
                "tcp 100.96.0.2->100.96.0.1 Some(8080)",
                "tcp 100.96.0.1->100.96.0.3 Some(22)",
                "icmp 100.96.0.2->100.96.0.1 None",
                "gre 100.96.0.2->100.96.0.1 None",
            ],
            "kept: the allowed 5432, the underlay's WireGuard, the node's own loopback"
        );
    }
}
